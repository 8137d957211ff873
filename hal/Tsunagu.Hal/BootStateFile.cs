using System.Globalization;

namespace Tsunagu.Hal;

/// <summary>
/// The boot state file shared with the boot program (a busybox sh script), `DATA/boot/state`: one `key=value` per
/// line. Keys: `primary`, `pending` (a, b or empty), `tries` (boot tries left for the pending slot), `a_version`,
/// `a_good` (0 or 1), `b_version`, `b_good`, `last_failed` (a, b or empty: set by the boot program when it gave up
/// on a pending slot), `a_verity`, `b_verity` (the slot image's dm-verity parameters, empty for an image without a hash
/// tree). Lines it does not know (other keys, comments) are kept as they are, in place; known keys
/// missing from the file are appended, in that order, with their default values.
/// </summary>
public sealed class BootStateFile
{
    public const string Primary = "primary";
    public const string Pending = "pending";
    public const string Tries = "tries";
    public const string LastFailed = "last_failed";

    /// <summary>The known keys and their values in a fresh file, in the order they are written.</summary>
    public static IReadOnlyList<(string Key, string Value)> Defaults { get; } =
    [
        (Primary, ""), (Pending, ""), (Tries, "0"), ("a_version", ""), ("a_good", "0"), ("b_version", ""), ("b_good", "0"), (LastFailed, ""),
        ("a_verity", ""), ("b_verity", ""),
    ];

    private readonly List<string> _lines;

    private BootStateFile(List<string> lines)
    {
        _lines = lines;
        foreach (var (key, value) in Defaults)
        {
            if (Get(key) is null) { _lines.Add($"{key}={value}"); }
        }
    }

    public static BootStateFile Empty() => new([]);

    public static BootStateFile Parse(string text)
    {
        // a carriage return ends a line (CRLF, or stray ones before the newline); kept, it would come back a line shorter on the next read
        var lines = text.Split('\n').Select(l => l.TrimEnd('\r')).ToList();
        if (lines[^1].Length == 0) { lines.RemoveAt(lines.Count - 1); }
        return new BootStateFile(lines);
    }

    /// <summary>The value of <paramref name="key"/> (the first line setting it), or null when absent.</summary>
    public string? Get(string key)
    {
        foreach (var line in _lines)
        {
            var eq = line.IndexOf('=');
            if (eq > 0 && line.AsSpan(0, eq).Trim().SequenceEqual(key)) { return line[(eq + 1)..].Trim(); }
        }
        return null;
    }

    /// <summary>Sets <paramref name="key"/> in place (later duplicates are dropped), or appends it.</summary>
    public void Set(string key, string value)
    {
        if (value.Any(char.IsControl)) { throw new ArgumentException($"boot state {key}: control characters are not allowed in '{value}'", nameof(value)); }
        var found = false;
        for (var i = 0; i < _lines.Count; i++)
        {
            var eq = _lines[i].IndexOf('=');
            if (eq <= 0 || !_lines[i].AsSpan(0, eq).Trim().SequenceEqual(key)) { continue; }
            if (found) { _lines.RemoveAt(i--); continue; }
            _lines[i] = $"{key}={value}";
            found = true;
        }
        if (!found) { _lines.Add($"{key}={value}"); }
    }

    public static string SlotKey(BootSlot slot, string field) => $"{SlotName(slot)}_{field}";

    public static string SlotName(BootSlot slot) => slot == BootSlot.A ? "a" : "b";

    /// <summary>`a` or `b` as a slot; anything else (empty included) is none.</summary>
    public static BootSlot? ParseSlot(string? value) => value switch { "a" => BootSlot.A, "b" => BootSlot.B, _ => null };

    public BootSlot? GetSlot(string key) => ParseSlot(Get(key));

    public void SetSlot(string key, BootSlot? slot) => Set(key, slot is { } s ? SlotName(s) : "");

    public int GetInt(string key) => int.TryParse(Get(key), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var n) ? n : 0;

    public void SetInt(string key, int value) => Set(key, value.ToString(CultureInfo.InvariantCulture));

    /// <summary>The file's text: its lines, then the known keys it lacked (added when it was read), each line ending in a newline.</summary>
    public override string ToString() => string.Concat(_lines.Select(l => l + "\n"));
}
