using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;

namespace Tsunagu.Server.Fleet;

/// <summary>
/// The grammar of a unit's tags: 1-64 of a-z 0-9 . _ - : (lowercase, starting with a letter or digit), at most
/// <see cref="MaxPerUnit"/> on one unit. A tag is a word an operator groups units by (region:kanto, lab, beta).
/// </summary>
public static class Tags
{
    public const int MaxLength = 64;
    public const int MaxPerUnit = 32;

    public static bool IsTag([System.Diagnostics.CodeAnalysis.NotNullWhen(true)] string? tag) =>
        tag is { Length: > 0 and <= MaxLength } && (char.IsAsciiLetterLower(tag[0]) || char.IsAsciiDigit(tag[0])) &&
        tag.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '.' or '_' or '-' or ':');

    public static string Rule(string field) =>
        $"{field}: each tag 1-{MaxLength} of a-z 0-9 . _ - : (lowercase, starting with a letter or digit), at most {MaxPerUnit} per unit";

    /// <summary>Why <paramref name="tags"/> cannot be a unit's tags; null when they can (duplicates are one tag).</summary>
    public static string? Invalid(IReadOnlyList<string?>? tags, string field = "tags")
    {
        if (tags is null) { return $"{field}: required, a list (empty clears the unit's tags)"; }
        foreach (var tag in tags)
        {
            if (!IsTag(tag)) { return $"{Rule(field)}; '{InputRules.Quote(tag)}' is not one"; }
        }
        if (tags.Distinct(StringComparer.Ordinal).Count() > MaxPerUnit) { return Rule(field); }
        return null;
    }

    /// <summary>The tags of a device management table cell: separated by spaces or semicolons (the table's fields by commas).</summary>
    public static IReadOnlyList<string> SplitCell(string? cell) =>
        cell is null ? [] : cell.Split([' ', ';'], StringSplitOptions.RemoveEmptyEntries);

    /// <summary>Sorted, each once.</summary>
    public static IReadOnlyList<string> Normal(IEnumerable<string> tags) => tags.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();

    /// <summary>
    /// Replaces the tags of unit <paramref name="mac"/> (normalised) by <paramref name="tags"/>, with the audit entry, in one
    /// transaction: the one rule for the operator API and the console. Returns the tags stored.
    /// </summary>
    /// <exception cref="TagsRuleException">Nothing was changed: the unit is not registered (<see cref="TagsRuleException.NotFound"/>),
    /// is decommissioned (<see cref="TagsRuleException.Conflict"/>), or the tags break the grammar.</exception>
    public static async Task<IReadOnlyList<string>> ReplaceAsync(TsunaguStore store, string mac, IReadOnlyList<string?>? tags, string actor, CancellationToken ct)
    {
        if (await store.Units.GetUnitAsync(mac, ct) is not { } unit) { throw new TagsRuleException($"unit {mac} is not registered", notFound: true); }
        if (unit.DecommissionedAt is not null) { throw new TagsRuleException($"unit {mac} is decommissioned: its tags stay as they were", conflict: true); }
        if (Invalid(tags) is { } error) { throw new TagsRuleException(error); }
        var normal = Normal(tags!.Select(t => t!));
        // the store writes only to a unit that is registered and not decommissioned, in the same transaction as the audit entry
        if (!await store.Fleet.SetTagsAsync(mac, normal, new AuditEntry(actor, "unit.tags", mac, normal.Count == 0 ? "none" : string.Join(' ', normal)), ct))
        {
            // decommissioned or removed since it was read
            throw await store.Units.GetUnitAsync(mac, ct) is null
                ? new TagsRuleException($"unit {mac} is not registered", notFound: true)
                : new TagsRuleException($"unit {mac} is decommissioned: its tags stay as they were", conflict: true);
        }
        return normal;
    }
}

/// <summary>A change of a unit's tags was refused (<see cref="Tags.ReplaceAsync"/>); nothing was changed.</summary>
public sealed class TagsRuleException(string message, bool notFound = false, bool conflict = false) : Exception(message)
{
    public bool NotFound { get; } = notFound;
    public bool Conflict { get; } = conflict;
}
