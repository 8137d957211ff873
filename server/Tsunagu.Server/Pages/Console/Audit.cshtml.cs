using Microsoft.AspNetCore.Mvc;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;
using Tsunagu.Server.Pages.Shared;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Pages.Console;

/// <summary>
/// The audit log, newest first, filtered by who, action, target, the unit an entry names and a time range (the
/// grammar of the operator API's <c>GET /audit</c>, <see cref="AuditFilter"/>); keyset paging (each page starts below
/// the id of the last entry of the one before). A wrong parameter is answered 400 with the reason, and lists nothing.
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
    public string? Unit { get; private set; }
    public string? From { get; private set; }
    public string? To { get; private set; }
    private AuditQuery _query = new();

    public async Task<IActionResult> OnGetAsync(string? actor, string? action, string? target, string? unit, string? from, string? to, string? before)
    {
        (Actor, Action, Target, Unit, From, To) = (Blank(actor), Blank(action), Blank(target), Blank(unit), Blank(from), Blank(to));
        var errors = AuditFilter.Parse(Actor, Action, Target, Unit, From, To, Blank(before), null, PageSize, out _query);
        if (errors.Count > 0)
        {
            Errors = [.. errors.Select(e => e.Field == "before" ? "Page: the link to this page is damaged; start again from the newest entries" : Capitalized(e.Message))];
            Response.StatusCode = StatusCodes.Status400BadRequest;
            return Page();
        }
        Result = await store.Pages.QueryAuditPageAsync(_query, HttpContext.RequestAborted);
        return Page();
    }

    private static string Capitalized(string message) => char.ToUpperInvariant(message[0]) + message[1..];

    /// <summary>This page's filters with the entries below <paramref name="before"/> (null: from the newest).</summary>
    public string Link(long? before) => "/console/audit" + AuditFilter.QueryString(_query with { Before = before }, withLimit: false);
}
