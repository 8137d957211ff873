using System.Globalization;

namespace Tsunagu.Protocol;

/// <summary>
/// A recurring maintenance window of a group, in a unit's local time: <c>HH:MM-HH:MM</c> every day, or
/// <c>DAYS HH:MM-HH:MM</c> with DAYS <c>daily</c>, a day (<c>mon</c> ... <c>sun</c>), a range (<c>mon-fri</c>,
/// <c>fri-mon</c>) or a comma list of them (<c>sat,sun</c>). A window whose end is not after its start runs past
/// midnight and belongs to the day it starts on (<c>fri 22:00-02:00</c> is Friday night into Saturday). The start is in
/// the window, the end not. Read on the local wall clock: on a day clocks change the window is that day's wall-clock
/// hours (shorter or longer by the change).
/// </summary>
public sealed record MaintenanceWindow(IReadOnlySet<DayOfWeek> Days, TimeSpan Start, TimeSpan End)
{
    public const int MaxLength = 64;

    private static readonly string[] DayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

    /// <summary>The grammar, for answers that refuse a window.</summary>
    public const string Rule = "window: HH:MM-HH:MM, optionally after days (daily, mon..sun, a range mon-fri, or a comma list sat,sun), e.g. 'mon-fri 01:00-05:00'";

    /// <summary>The window <paramref name="text"/> writes, or why it is not one (nothing else is accepted).</summary>
    public static (MaintenanceWindow? Window, string? Error) Parse(string? text)
    {
        if (text is null || text.Length is 0 or > MaxLength || !text.All(c => char.IsAsciiLetterOrDigit(c) || c is ':' or '-' or ',' or ' '))
        {
            return (null, $"{Rule}; at most {MaxLength} characters");
        }
        var parts = text.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length is 0 or > 2) { return (null, Rule); }
        var days = new HashSet<DayOfWeek>();
        if (parts.Length == 1 || parts[0].Equals("daily", StringComparison.OrdinalIgnoreCase))
        {
            days.UnionWith(Enum.GetValues<DayOfWeek>());
        }
        else
        {
            foreach (var item in parts[0].Split(','))
            {
                var ends = item.Split('-');
                if (ends.Length > 2 || ends.Any(e => Day(e) is null)) { return (null, $"{Rule}; '{item}' is not a day or a range of days"); }
                var (first, last) = ((int)Day(ends[0])!, (int)Day(ends[^1])!);
                for (var d = first; ; d = (d + 1) % 7)
                {
                    days.Add((DayOfWeek)d);
                    if (d == last) { break; }
                }
            }
        }
        var times = parts[^1].Split('-');
        if (times.Length != 2 || Time(times[0]) is not { } start || Time(times[1]) is not { } end) { return (null, $"{Rule}; '{parts[^1]}' is not HH:MM-HH:MM"); }
        if (start == end) { return (null, $"{Rule}; the window starts and ends at the same time"); }
        return (new MaintenanceWindow(days, start, end), null);
    }

    private static DayOfWeek? Day(string text)
    {
        var i = Array.FindIndex(DayNames, d => d.Equals(text, StringComparison.OrdinalIgnoreCase));
        return i < 0 ? null : (DayOfWeek)i;
    }

    private static TimeSpan? Time(string text) =>
        text.Length == 5 && text[2] == ':' && int.TryParse(text.AsSpan(0, 2), NumberStyles.None, CultureInfo.InvariantCulture, out var h) && h < 24
        && int.TryParse(text.AsSpan(3, 2), NumberStyles.None, CultureInfo.InvariantCulture, out var m) && m < 60
            ? new TimeSpan(h, m, 0) : null;

    /// <summary>Whether the window is open at <paramref name="local"/> (the unit's wall clock).</summary>
    public bool IsOpen(DateTimeOffset local)
    {
        var t = local.TimeOfDay;
        if (Start < End) { return Days.Contains(local.DayOfWeek) && t >= Start && t < End; }
        var yesterday = (DayOfWeek)(((int)local.DayOfWeek + 6) % 7);
        return (Days.Contains(local.DayOfWeek) && t >= Start) || (Days.Contains(yesterday) && t < End);
    }

    /// <summary>The window as it is stored and shown: days in order (or daily), then the hours.</summary>
    public override string ToString()
    {
        var hours = $"{Start:hh\\:mm}-{End:hh\\:mm}";
        if (Days.Count == 7) { return hours; }
        return string.Join(",", Enum.GetValues<DayOfWeek>().Where(Days.Contains).Select(d => DayNames[(int)d])) + " " + hours;
    }
}
