namespace Tsunagu.Protocol;

/// <summary>A category list that cannot be used; the message names the file and the line.</summary>
public sealed class InvalidFilterListException(string file, int line, string problem)
    : Exception(line > 0 ? $"{file}:{line}: {problem}" : $"{file}: {problem}")
{
    public string File { get; } = file;
    public int Line { get; } = line;
}

/// <summary>
/// The content filter's categories (docs/services.md, content filter): lists of domains the operator maintains, shipped
/// to units as the application <see cref="Application"/> of an install pattern (a signed update program like any other),
/// one file per category, `NAME.domains`, one domain per line (blank lines and lines starting with '#' are comments). A
/// unit's configuration names the categories it refuses (<see cref="ContentFilterConfig.Categories"/>); the unit refuses
/// each listed domain and its subdomains.
/// </summary>
public static class FilterCategories
{
    /// <summary>The application whose tree holds the category lists.</summary>
    public const string Application = "filter-lists";

    /// <summary>The extension of a category's list in that tree.</summary>
    public const string Extension = ".domains";

    /// <summary>Categories one configuration may choose.</summary>
    public const int MaxChosen = 64;

    /// <summary>Domains in one category's list.</summary>
    public const int MaxDomains = 200_000;

    /// <summary>The size of one category's list.</summary>
    public const long MaxBytes = 16L * 1024 * 1024;

    /// <summary>
    /// Domains of all the categories one configuration chooses, together: what a unit's dnsmasq holds besides the subscriber's
    /// own (about 100 bytes each in its memory, so 50 MB at most).
    /// </summary>
    public const int MaxDomainsChosen = 500_000;

    public const string NameRule = "a lower-case ASCII letter, then up to 31 lower-case letters, digits or '-'";

    public static bool IsName(string? name) =>
        name is { Length: > 0 and <= 32 } && char.IsAsciiLetterLower(name[0]) &&
        name.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c == '-');

    /// <summary>The file name of <paramref name="category"/>'s list.</summary>
    public static string FileName(string category) => IsName(category)
        ? category + Extension
        : throw new ArgumentException($"{ServiceConfigValidator.Show(category)} is not a category name ({NameRule})", nameof(category));

    /// <summary>
    /// The domains of a list, lower-cased, each once, in file order. Every line is a domain name
    /// (<see cref="ServiceConfigValidator.IsDomainName"/>), a comment or blank; anything else refuses the whole list.
    /// </summary>
    /// <exception cref="InvalidFilterListException">A line is not a domain name, or the list is too long.</exception>
    public static IReadOnlyList<string> Parse(string file, string text) => text.Length > MaxBytes
        ? throw new InvalidFilterListException(file, 0, $"{text.Length} characters; at most {MaxBytes}")
        : Parse(file, text.Split('\n'));

    /// <summary>The same, line by line (a list read from a file as it is read).</summary>
    /// <exception cref="InvalidFilterListException">A line is not a domain name, or the list is too long.</exception>
    public static IReadOnlyList<string> Parse(string file, IEnumerable<string> lines)
    {
        var domains = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var number = 0;
        foreach (var raw in lines)
        {
            number++;
            var line = raw.EndsWith('\r') ? raw[..^1] : raw;
            var trimmed = line.Trim(' ', '\t');
            if (trimmed.Length == 0 || trimmed[0] == '#')
            {
                continue;
            }
            if (!ServiceConfigValidator.IsDomainName(trimmed))
            {
                throw new InvalidFilterListException(file, number, $"{ServiceConfigValidator.Show(trimmed)} is not a domain name");
            }
            var domain = trimmed.ToLowerInvariant();
            if (!seen.Add(domain))
            {
                continue;
            }
            if (domains.Count == MaxDomains)
            {
                throw new InvalidFilterListException(file, number, $"more than {MaxDomains} domains");
            }
            domains.Add(domain);
        }
        return domains;
    }
}
