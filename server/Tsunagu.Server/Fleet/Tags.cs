using Tsunagu.Server.Apis;

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
}
