using Microsoft.AspNetCore.Mvc;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;
using Tsunagu.Server.Pages.Shared;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Pages.Console;

/// <summary>
/// The unit list at fleet scale: search by MAC (any part of it), serial, subscriber, domain, pattern and state; sorted by one
/// column; keyset paging (a page starts after the last row of the one before, never at an offset). Query parameters
/// are checked before anything is read: a wrong one is answered 400 with what is wrong, and lists nothing.
/// </summary>
[ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager, OperatorRoles.Support, OperatorRoles.Auditor)]
public sealed class UnitsModel(TsunaguStore store, TimeProvider time) : SessionPageModel("console")
{
    public const int DefaultPageSize = 50;

    /// <summary>The sort orders the list offers, by the name the URL uses.</summary>
    public static readonly IReadOnlyDictionary<string, UnitSort> Sorts = new Dictionary<string, UnitSort>(StringComparer.Ordinal)
    {
        ["mac"] = UnitSort.Mac, ["serial"] = UnitSort.Serial, ["state"] = UnitSort.State, ["pattern"] = UnitSort.Pattern,
        ["subscriber"] = UnitSort.Subscriber, ["last-seen"] = UnitSort.LastSeen,
    };

    /// <summary>The states a unit can be in (the state filter's choices).</summary>
    public static readonly IReadOnlyList<string> States =
    [
        UnitStates.Registered, UnitStates.Provisioning, UnitStates.Connected, UnitStates.Updating, UnitStates.Configuring,
        UnitStates.Ready, UnitStates.OffPattern, UnitStates.Decommissioned,
    ];

    /// <summary>The pattern filter's value for units on no pattern (not an identifier, so no pattern can have it).</summary>
    public const string NoPattern = "-";

    public UnitPage? Result { get; private set; }
    public IReadOnlyList<string> Errors { get; private set; } = [];
    public ListParameters Parameters { get; private set; } = new();
    public DateTimeOffset Now { get; private set; }

    /// <summary>The query parameters as the person gave them (the form shows them again, the links carry them on).</summary>
    public sealed record ListParameters(string? Mac = null, string? Serial = null, string? Subscriber = null, string? Pattern = null,
        string? State = null, string? Sort = null, string? Dir = null, string? Size = null, string? Domain = null);

    public async Task<IActionResult> OnGetAsync(string? mac, string? serial, string? subscriber, string? pattern, string? state, string? sort, string? dir,
        string? after, string? size, string? domain)
    {
        Now = time.GetUtcNow();
        Parameters = new ListParameters(Blank(mac), Blank(serial), Blank(subscriber), Blank(pattern), Blank(state), Blank(sort), Blank(dir), Blank(size), Blank(domain));
        var (query, errors) = Parse(Parameters, Blank(after));
        if (query is null)
        {
            Errors = errors;
            Response.StatusCode = StatusCodes.Status400BadRequest;
            return Page();
        }
        Result = await store.Pages.QueryUnitPageAsync(query, HttpContext.RequestAborted);
        return Page();
    }

    /// <summary>The store query the parameters ask for, or every reason they are wrong.</summary>
    public static (UnitPageQuery? Query, IReadOnlyList<string> Errors) Parse(ListParameters p, string? after)
    {
        var errors = new List<string>();
        string? fragment = null;
        if (p.Mac is { } mac)
        {
            var hex = mac.Replace(":", "", StringComparison.Ordinal).Replace("-", "", StringComparison.Ordinal).Replace(".", "", StringComparison.Ordinal);
            if (mac.Length > 17 || hex.Length is 0 or > 12 || !hex.All(char.IsAsciiHexDigit))
            {
                errors.Add($"MAC: '{InputRules.Quote(mac)}' is not part of a MAC address (1-12 hex digits, separators : - . allowed)");
            }
            else
            {
                fragment = hex.ToLowerInvariant();
            }
        }
        if (p.Serial is { } serial && !InputRules.IsText(serial, InputRules.MaxIdentifier))
        {
            errors.Add(InputRules.Text("Serial", InputRules.MaxIdentifier));
        }
        if (p.Subscriber is { } subscriber && !InputRules.IsText(subscriber, InputRules.MaxIdentifier))
        {
            errors.Add(InputRules.Text("Subscriber", InputRules.MaxIdentifier));
        }
        if (p.Domain is { } domain && !InputRules.IsDomainName(domain))
        {
            errors.Add($"Domain: '{InputRules.Quote(domain)}' is not a DNS name");
        }
        var noPattern = p.Pattern == NoPattern;
        if (p.Pattern is { } pattern && !noPattern && !InputRules.IsIdentifier(pattern))
        {
            errors.Add($"Pattern: '{InputRules.Quote(pattern)}' is not a pattern id ({InputRules.Identifier("a pattern id")}), or '{NoPattern}' for units on none");
        }
        if (p.State is { } state && !States.Contains(state, StringComparer.Ordinal))
        {
            errors.Add($"State: '{InputRules.Quote(state)}' is not a unit state (one of {string.Join(", ", States)})");
        }
        var sort = UnitSort.Mac;
        if (p.Sort is { } s && !Sorts.TryGetValue(s, out sort))
        {
            errors.Add($"Sort: '{InputRules.Quote(s)}' is not a column to sort by (one of {string.Join(", ", Sorts.Keys)})");
        }
        var descending = false;
        if (p.Dir is { } d)
        {
            if (d is "desc") { descending = true; }
            else if (d is not "asc") { errors.Add($"Direction: '{InputRules.Quote(d)}' is neither asc nor desc"); }
        }
        var limit = DefaultPageSize;
        if (p.Size is { } size && (!int.TryParse(size, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out limit) ||
                                   limit is < 1 or > PageStore.MaxPageSize))
        {
            errors.Add($"Page size: '{InputRules.Quote(size)}' is not a whole number from 1 to {PageStore.MaxPageSize}");
        }
        UnitCursor? cursor = null;
        if (after is not null && (cursor = UnitCursor.Decode(after)) is null)
        {
            errors.Add("Page: the link to this page is damaged; start again from the first page");
        }
        return errors.Count > 0
            ? (null, errors)
            : (new UnitPageQuery(fragment, p.Serial, p.Subscriber, noPattern ? null : p.Pattern, noPattern, p.State, sort, descending, cursor, limit, p.Domain), errors);
    }

    /// <summary>The list's URL with these parameters, changed as given (null values are left out).</summary>
    public string Link(string? sort = null, string? dir = null, string? after = null, bool keepOrder = true)
    {
        var p = Parameters;
        var values = new List<KeyValuePair<string, string?>>
        {
            new("mac", p.Mac), new("serial", p.Serial), new("subscriber", p.Subscriber), new("pattern", p.Pattern), new("state", p.State), new("domain", p.Domain),
            new("sort", sort ?? (keepOrder ? p.Sort : null)), new("dir", dir ?? (keepOrder ? p.Dir : null)), new("size", p.Size), new("after", after),
        };
        return "/console/units" + new Microsoft.AspNetCore.Http.Extensions.QueryBuilder(
            values.Where(v => v.Value is not null).Select(v => new KeyValuePair<string, string>(v.Key, v.Value!)));
    }

    /// <summary>The link of a column header: sorts by it, ascending, or the other way when it is the order already.</summary>
    public string SortLink(string column)
    {
        var current = Parameters.Sort ?? "mac";
        var dir = current == column && Parameters.Dir != "desc" ? "desc" : "asc";
        return Link(sort: column, dir: dir);
    }

    /// <summary>aria-sort of a column header: how the list is sorted by it, or none.</summary>
    public string AriaSort(string column) => (Parameters.Sort ?? "mac") != column ? "none" : Parameters.Dir == "desc" ? "descending" : "ascending";
}
