using Tsunagu.Protocol;

namespace Tsunagu.Server.Catalogue;

/// <summary>A content-filter category the operator offers (server option <c>FilterCategories</c>): its name and what the portal shows.</summary>
public sealed class FilterCategoryOption
{
    /// <summary>The category's name as configurations carry it (<see cref="FilterCategories.IsName"/>), e.g. "ads".</summary>
    public string? Name { get; set; }

    /// <summary>What the portal and the console show for it, e.g. "Advertising".</summary>
    public string? Title { get; set; }
}

/// <summary>
/// The content-filter categories this server offers (docs/services.md, content filter) and the one rule every stored or
/// proposed service configuration passes (<see cref="Validate"/>): the protocol's grammar, then no category the server
/// does not offer. A category the configuration it replaces already chose stays allowed after the operator stops
/// offering it, so a unit keeps what it has until someone takes it off.
/// </summary>
public sealed class OfferedCategories
{
    /// <summary>Categories one server may offer.</summary>
    public const int MaxOffered = 256;

    /// <summary>Characters of a title.</summary>
    public const int MaxTitle = 64;

    private readonly Dictionary<string, string> titles;

    public OfferedCategories(ServerOptions options)
    {
        if (Problem(options.FilterCategories) is { } problem) { throw new ArgumentException(problem); }
        All = [.. options.FilterCategories.Select(c => (c!.Name!, c.Title!))];
        titles = All.ToDictionary(c => c.Name, c => c.Title, StringComparer.Ordinal);
    }

    /// <summary>The categories offered, in the option's order.</summary>
    public IReadOnlyList<(string Name, string Title)> All { get; }

    public bool IsOffered(string? name) => name is not null && titles.ContainsKey(name);

    /// <summary>The title of an offered category; null for any other name.</summary>
    public string? TitleOf(string? name) => name is not null && titles.TryGetValue(name, out var title) ? title : null;

    /// <summary>
    /// What a form offers to tick: every offered category (its title), then each category <paramref name="chosen"/> names
    /// that is no longer offered (its name alone), so that a form never drops one unseen.
    /// </summary>
    public IReadOnlyList<(string Name, string? Title)> Choices(IReadOnlyList<string>? chosen) =>
        [.. All.Select(c => (c.Name, (string?)c.Title)), .. (chosen ?? []).Where(n => !IsOffered(n)).Distinct(StringComparer.Ordinal).Select(n => (n, (string?)null))];

    /// <summary>
    /// The categories a form's ticked boxes choose: those <paramref name="current"/> chose and still ticked, in its order,
    /// then the others ticked, in the form's order (anything sent is kept, for <see cref="Validate"/> to refuse what is
    /// not offered). None ticked where <paramref name="current"/> had no list stays no list.
    /// </summary>
    public static IReadOnlyList<string>? Chosen(IReadOnlyList<string>? current, IEnumerable<string?>? ticked)
    {
        var sent = (ticked ?? []).Select(t => t ?? "").Distinct(StringComparer.Ordinal).ToList();
        var kept = (current ?? []).Where(sent.Contains).ToList();
        List<string> chosen = [.. kept, .. sent.Where(t => !kept.Contains(t, StringComparer.Ordinal))];
        return chosen.Count == 0 && current is null ? null : chosen;
    }

    /// <summary>Why the option's entries cannot be used (naming the entry), or null when they can.</summary>
    public static string? Problem(IReadOnlyList<FilterCategoryOption?>? entries)
    {
        if (entries is null) { return null; }
        if (entries.Count > MaxOffered) { return $"Tsunagu:FilterCategories: {entries.Count} entries; at most {MaxOffered}"; }
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < entries.Count; i++)
        {
            var entry = $"Tsunagu:FilterCategories:{i}";
            if (entries[i] is not { } e) { return $"{entry}: empty; give Name and Title"; }
            if (e.Name is not { } name || !FilterCategories.IsName(name))
            {
                return $"{entry}: Name {ServiceConfigValidator.Show(e.Name)} is not a category name ({FilterCategories.NameRule})";
            }
            if (!seen.Add(name))
            {
                return $"{entry}: Name '{name}' is offered twice";
            }
            if (e.Title is null || e.Title.Length > MaxTitle || string.IsNullOrWhiteSpace(e.Title) || e.Title.Any(char.IsControl))
            {
                return $"{entry} ({name}): Title {ServiceConfigValidator.Show(e.Title)} must be 1 to {MaxTitle} characters, not only spaces, without control characters";
            }
        }
        return null;
    }

    /// <summary>
    /// The rule for a configuration about to be stored: <see cref="ServiceConfigValidator.Validate"/>, then every category
    /// it chooses is offered or already chosen by <paramref name="basis"/> (the configuration it replaces; null: none).
    /// </summary>
    /// <exception cref="InvalidServiceConfigException">The document cannot be stored; the field is named (<c>contentFilter.categories[1]</c>).</exception>
    public void Validate(ServiceConfiguration config, ServiceConfiguration? basis)
    {
        ServiceConfigValidator.Validate(config);
        var chosen = config.ContentFilter.Categories ?? [];
        var kept = (basis?.ContentFilter?.Categories ?? []).ToHashSet(StringComparer.Ordinal);
        for (var i = 0; i < chosen.Count; i++)
        {
            if (!IsOffered(chosen[i]) && !kept.Contains(chosen[i]))
            {
                throw new InvalidServiceConfigException($"contentFilter.categories[{i}]",
                    $"{ServiceConfigValidator.Show(chosen[i])} is not a category this operator offers; offered: {(All.Count == 0 ? "none" : string.Join(", ", All.Select(c => c.Name)))}");
            }
        }
    }
}
