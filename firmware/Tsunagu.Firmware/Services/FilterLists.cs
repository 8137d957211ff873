using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Services;

/// <summary>
/// One chosen category as this unit has it: its domains, or why it has none (no list installed, a list it refused).
/// </summary>
public sealed record FilterList(string Category, IReadOnlyList<string>? Domains, string? Problem);

/// <summary>
/// Reads the category lists of the content filter from the installed application <see cref="FilterCategories.Application"/>
/// (`data/apps/filter-lists/current/NAME.domains`, installed and rolled back as any application of an update program). A
/// chosen category without a usable list is not an error of the configuration: the rest of it is applied, the category
/// refuses nothing, and the unit says so (dnsmasq.conf's comment, the log) until a list arrives.
/// </summary>
public static class FilterLists
{
    /// <summary>
    /// The lists of <paramref name="categories"/> in their order, each read and checked whole; a list that would take the
    /// domains of the lists before it past <see cref="FilterCategories.MaxDomainsChosen"/> is refused.
    /// </summary>
    public static IReadOnlyList<FilterList> Load(string? directory, IReadOnlyList<string> categories)
    {
        var lists = new List<FilterList>();
        var total = 0;
        foreach (var category in categories)
        {
            var list = Read(directory, category);
            if (list.Domains is { } domains && total + domains.Count > FilterCategories.MaxDomainsChosen)
            {
                list = list with
                {
                    Domains = null,
                    Problem = $"list refused: its {domains.Count} domains and the {total} of the categories before it are more than {FilterCategories.MaxDomainsChosen}",
                };
            }
            total += list.Domains?.Count ?? 0;
            lists.Add(list);
        }
        return lists;
    }

    private static FilterList Read(string? directory, string category)
    {
        var name = FilterCategories.FileName(category);
        var path = directory is null ? null : Path.Combine(directory, name);
        if (path is null || !File.Exists(path))
        {
            return new FilterList(category, null, $"no list on this unit (the application {FilterCategories.Application} has no {name})");
        }
        try
        {
            var length = new FileInfo(path).Length;
            if (length > FilterCategories.MaxBytes)
            {
                return new FilterList(category, null, $"{name} refused: {length} bytes; at most {FilterCategories.MaxBytes}");
            }
            return new FilterList(category, FilterCategories.Parse(name, File.ReadLines(path)), null);
        }
        catch (InvalidFilterListException e)
        {
            return new FilterList(category, null, $"list refused: {e.Message}");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return new FilterList(category, null, $"{name} unreadable: {e.Message}");
        }
    }
}
