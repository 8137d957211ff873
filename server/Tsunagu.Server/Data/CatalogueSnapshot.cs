using System.Text.Json;
using Tsunagu.Protocol;

namespace Tsunagu.Server.Data;

/// <summary>
/// The parts of the catalogue a version check reads (install patterns, update programs, settings such as the update
/// policy), as of one catalogue stamp. Built once per stamp and shared by every request until a catalogue write
/// anywhere (any replica) changes the stamp; see <see cref="CatalogueStore.CatalogueStampKey"/>. Read-only.
/// </summary>
public sealed class CatalogueSnapshot
{
    private readonly IReadOnlyList<(PatternRow Row, IReadOnlyDictionary<string, string> Apps)> _matchable;
    private readonly IReadOnlyList<UpdateProgramRow> _programs;
    private readonly IReadOnlyDictionary<string, string> _settings;
    private readonly HashSet<string> _wayBack;

    public CatalogueSnapshot(string? stamp, IEnumerable<PatternRow> patterns, IEnumerable<UpdateProgramRow> programs,
        IEnumerable<KeyValuePair<string, string>> settings)
    {
        Stamp = stamp;
        var all = patterns.OrderBy(p => p.Id, StringComparer.Ordinal).ToList();
        // verified patterns are matched before retired ones (units still run retired ones); drafts never match
        _matchable = all.Where(p => p.Status != PatternStatus.Draft)
            .OrderBy(p => p.Status == PatternStatus.Retired)
            .Select(p => (p, (IReadOnlyDictionary<string, string>)(JsonSerializer.Deserialize(p.Applications, ProtocolJson.Default.DictionaryStringString) ?? [])))
            .ToList();
        var verified = all.Where(p => p.Status == PatternStatus.Verified).Select(p => p.Id).ToHashSet(StringComparer.Ordinal);
        // only programs that lead to a verified pattern are ever offered; highest priority first, then by id
        _programs = programs.Where(u => verified.Contains(u.ToPattern))
            .OrderByDescending(u => u.Priority).ThenBy(u => u.Id, StringComparer.Ordinal).ToList();
        _settings = settings.ToDictionary(s => s.Key, s => s.Value, StringComparer.Ordinal);
        // the ways back, once per catalogue stamp (see IsWayBack): each program with a reverse, to the pattern created first
        var createdAt = all.Where(p => p.CreatedAt is not null).ToDictionary(p => p.Id, p => p.CreatedAt!, StringComparer.Ordinal);
        var transitions = _programs.Select(u => (u.FromPattern, u.ToPattern)).ToHashSet();
        _wayBack = _programs.Where(u => transitions.Contains((u.ToPattern, u.FromPattern))
                && createdAt.TryGetValue(u.FromPattern, out var from) && createdAt.TryGetValue(u.ToPattern, out var to)
                && string.CompareOrdinal(to, from) < 0)
            .Select(u => u.Id).ToHashSet(StringComparer.Ordinal);
    }

    /// <summary>The catalogue stamp this snapshot was read at (null before the first catalogue write).</summary>
    public string? Stamp { get; }

    /// <summary>
    /// Whether pattern <paramref name="p"/> (its applications <paramref name="apps"/>) is exactly this hardware, OS and
    /// these application versions: how the host recognises a unit's pattern, and so what makes two patterns the same.
    /// </summary>
    public static bool Holds(PatternRow p, IReadOnlyDictionary<string, string> apps, string hardware, string os, IReadOnlyDictionary<string, string> applications) =>
        p.HardwareVersion == hardware && p.OsVersion == os && apps.Count == applications.Count &&
        apps.All(a => applications.TryGetValue(a.Key, out var v) && v == a.Value);

    /// <summary>
    /// The verified (or retired: units still run it) pattern whose hardware, OS and application versions are
    /// exactly <paramref name="inventory"/>. Drafts never match: no unit is on an unverified combination.
    /// </summary>
    public PatternRow? FindPattern(Inventory inventory)
    {
        foreach (var (p, apps) in _matchable)
        {
            if (Holds(p, apps, inventory.HardwareVersion, inventory.OsVersion, inventory.Applications))
            {
                return p;
            }
        }
        return null;
    }

    /// <summary>
    /// The update program for units on <paramref name="fromPattern"/> (patent fig. 8 (e)): highest priority first,
    /// to a verified pattern only; with a target pattern, only a program that leads there. Without one, never a way back
    /// (<see cref="IsWayBack"/>): a unit that took the way forward would be offered the way back at its next check and
    /// go round between the two; <see cref="FindWayBack"/> finds those.
    /// </summary>
    public UpdateProgramRow? FindUpdateProgram(string fromPattern, string? toPattern = null) =>
        _programs.FirstOrDefault(u => u.FromPattern == fromPattern && (toPattern is null ? !IsWayBack(u) : u.ToPattern == toPattern));

    /// <summary>The first program (by priority) from <paramref name="fromPattern"/> that is a way back; null when none.</summary>
    public UpdateProgramRow? FindWayBack(string fromPattern) =>
        _programs.FirstOrDefault(u => u.FromPattern == fromPattern && IsWayBack(u));

    /// <summary>
    /// Whether <paramref name="program"/> is the way back of a pair: a program leads the other way between the same two
    /// patterns, and <paramref name="program"/> leads to the one created first (the operator defined it earlier). A
    /// program with no reverse is never a way back, whatever the order its patterns were created in; nor is one whose
    /// patterns' creation times are unknown or equal.
    /// </summary>
    public bool IsWayBack(UpdateProgramRow program) => _wayBack.Contains(program.Id);

    public string? Setting(string key) => _settings.GetValueOrDefault(key);
}
