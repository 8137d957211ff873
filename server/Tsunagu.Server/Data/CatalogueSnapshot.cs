using System.Text.Json;
using Tsunagu.Protocol;

namespace Tsunagu.Server.Data;

/// <summary>
/// The parts of the catalogue a version check reads (install patterns, update programs, settings such as the update
/// policy), as of one catalogue stamp. Built once per stamp and shared by every request until a catalogue write
/// anywhere (any replica) changes the stamp; see <see cref="TsunaguStore.CatalogueStampKey"/>. Read-only.
/// </summary>
public sealed class CatalogueSnapshot
{
    private readonly IReadOnlyList<(PatternRow Row, IReadOnlyDictionary<string, string> Apps)> _matchable;
    private readonly IReadOnlyList<UpdateProgramRow> _programs;
    private readonly IReadOnlyDictionary<string, string> _settings;

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
    }

    /// <summary>The catalogue stamp this snapshot was read at (null before the first catalogue write).</summary>
    public string? Stamp { get; }

    /// <summary>
    /// The verified (or retired: units still run it) pattern whose hardware, OS and application versions are
    /// exactly <paramref name="inventory"/>. Drafts never match: no unit is on an unverified combination.
    /// </summary>
    public PatternRow? FindPattern(Inventory inventory)
    {
        foreach (var (p, apps) in _matchable)
        {
            if (p.HardwareVersion == inventory.HardwareVersion && p.OsVersion == inventory.OsVersion &&
                apps.Count == inventory.Applications.Count &&
                apps.All(a => inventory.Applications.TryGetValue(a.Key, out var v) && v == a.Value))
            {
                return p;
            }
        }
        return null;
    }

    /// <summary>
    /// The update program for units on <paramref name="fromPattern"/> (patent fig. 8 (e)): highest priority first,
    /// to a verified pattern only; with a target pattern, only a program that leads there.
    /// </summary>
    public UpdateProgramRow? FindUpdateProgram(string fromPattern, string? toPattern = null) =>
        _programs.FirstOrDefault(u => u.FromPattern == fromPattern && (toPattern is null || u.ToPattern == toPattern));

    public string? Setting(string key) => _settings.GetValueOrDefault(key);
}
