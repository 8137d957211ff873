using System.Globalization;
using Microsoft.AspNetCore.Mvc;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;
using Tsunagu.Server.Pages.Shared;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Pages.Console;

/// <summary>
/// The audit log, newest first, filtered by who, action and target; keyset paging (each page starts below the id of
/// the last entry of the one before). A wrong parameter is answered 400 with the reason, and lists nothing.
/// </summary>
[ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.Auditor)]
public sealed class AuditModel(TsunaguStore store) : SessionPageModel("console")
{
    public const int PageSize = 100;

    public AuditPage? Result { get; private set; }
    public IReadOnlyList<string> Errors { get; private set; } = [];
    public string? Actor { get; private set; }
    public string? Action { get; private set; }
    public string? Target { get; private set; }

    public IActionResult OnGet(string? actor, string? action, string? target, string? before)
    {
        Actor = Blank(actor);
        Action = Blank(action);
        Target = Blank(target);
        var errors = new List<string>();
        foreach (var (field, value) in new[] { ("Who", Actor), ("Action", Action), ("Target", Target) })
        {
            if (value is not null && !InputRules.IsText(value)) { errors.Add(InputRules.Text(field)); }
        }
        long? below = null;
        if (Blank(before) is { } b)
        {
            if (long.TryParse(b, NumberStyles.None, CultureInfo.InvariantCulture, out var id) && id > 0) { below = id; }
            else { errors.Add("Page: the link to this page is damaged; start again from the newest entries"); }
        }
        if (errors.Count > 0)
        {
            Errors = errors;
            Response.StatusCode = StatusCodes.Status400BadRequest;
            return Page();
        }
        Result = store.QueryAuditPage(PageSize, below, Actor, Action, Target);
        return Page();
    }

    /// <summary>This page's filters with the entries below <paramref name="before"/> (null: from the newest).</summary>
    public string Link(long? before) => "/console/audit" + new Microsoft.AspNetCore.Http.Extensions.QueryBuilder(
        new[] { ("actor", Actor), ("action", Action), ("target", Target), ("before", before?.ToString(CultureInfo.InvariantCulture)) }
            .Where(v => v.Item2 is not null).Select(v => new KeyValuePair<string, string>(v.Item1, v.Item2!)));
}
