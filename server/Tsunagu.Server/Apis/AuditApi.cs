using System.Globalization;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Http.HttpResults;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Apis;

/// <summary>
/// The audit log: who changed what, newest first, a page at a time. The next (older) page is linked in the
/// <c>Link</c> header (<c>rel="next"</c>); a wrong filter is answered 400 and reads nothing.
/// </summary>
public static class AuditApi
{
    public const int DefaultLimit = 200;

    public static void MapAuditApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup(Routes.Prefix).AddEndpointFilter<RequireOperator>().WithTags("Audit");

        api.MapGet("/audit", async Task<Results<Ok<IReadOnlyList<AuditRow>>, ProblemHttpResult>> (TsunaguStore store, HttpContext http, string? limit, string? actor,
                string? action, string? target, string? unit, string? from, string? to, string? before) =>
            {
                var errors = AuditFilter.Parse(actor, action, target, unit, from, to, before, limit, DefaultLimit, out var query);
                if (errors.Count > 0) { return Problems.BadRequest(string.Join("; ", errors.Select(e => e.Message)), errors[0].Field); }
                var page = await store.Pages.QueryAuditPageAsync(query, http.RequestAborted);
                if (page.Before is { } next)
                {
                    http.Response.Headers.Link = $"<{Routes.Prefix}/audit{AuditFilter.QueryString(query with { Before = next })}>; rel=\"next\"";
                }
                return TypedResults.Ok(page.Rows);
            }).ProducesProblem(StatusCodes.Status400BadRequest).AllowRoles(OperatorRoles.Oversight);
    }
}

/// <summary>
/// The grammar of the audit log's filters, shared by the operator API and the console: actor and target free text
/// (<see cref="InputRules.IsText"/>), action an identifier, unit a MAC, <c>from</c> and <c>to</c> times as
/// <c>yyyy-MM-ddTHH:mm[:ss[.fffffff]]</c> with <c>Z</c> or an offset (none: UTC), <c>from</c> before <c>to</c>,
/// <c>before</c> a positive entry id, <c>limit</c> 1..<see cref="AuditQuery.MaxLimit"/>. Empty values are absent.
/// </summary>
public static partial class AuditFilter
{
    public sealed record Error(string Field, string Message);

    [GeneratedRegex(@"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|[+-]\d{2}:\d{2})?$")]
    private static partial Regex TimeGrammar();

    public static IReadOnlyList<Error> Parse(string? actor, string? action, string? target, string? unit, string? from, string? to, string? before,
        string? limit, int defaultLimit, out AuditQuery query)
    {
        var errors = new List<Error>();
        actor = Blank(actor);
        action = Blank(action);
        target = Blank(target);
        if (actor is not null && !InputRules.IsText(actor)) { errors.Add(new("actor", InputRules.Text("actor"))); }
        if (action is not null && !InputRules.IsIdentifier(action)) { errors.Add(new("action", InputRules.Identifier("action"))); }
        if (target is not null && !InputRules.IsText(target)) { errors.Add(new("target", InputRules.Text("target"))); }
        string? mac = null;
        if (Blank(unit) is { } u && !MacAddress.TryNormalize(u, out mac))
        {
            errors.Add(new("unit", "unit: a MAC address such as 02:00:5e:10:00:01"));
        }
        var fromAt = Time("from", from, errors);
        var toAt = Time("to", to, errors);
        if (fromAt is { } f && toAt is { } t && f >= t) { errors.Add(new("to", "to: must be after from")); }
        long? below = null;
        if (Blank(before) is { } b)
        {
            if (long.TryParse(b, NumberStyles.None, CultureInfo.InvariantCulture, out var id) && id > 0) { below = id; }
            else { errors.Add(new("before", "before: the id of an audit entry (a positive whole number)")); }
        }
        var take = defaultLimit;
        if (Blank(limit) is { } l && !(int.TryParse(l, NumberStyles.None, CultureInfo.InvariantCulture, out take) && take is >= 1 and <= AuditQuery.MaxLimit))
        {
            errors.Add(new("limit", $"limit: a whole number from 1 to {AuditQuery.MaxLimit}"));
        }
        query = new AuditQuery(actor, action, target, mac is { Length: > 0 } ? mac : null, fromAt, toAt, below, take);
        return errors;
    }

    private static DateTimeOffset? Time(string field, string? value, List<Error> errors)
    {
        if (Blank(value) is not { } v) { return null; }
        if (v.Length <= 40 && TimeGrammar().IsMatch(v) &&
            DateTimeOffset.TryParse(v, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var at))
        {
            return at;
        }
        errors.Add(new(field, $"{field}: a time such as 2026-01-31T09:00Z (yyyy-MM-ddTHH:mm[:ss], Z or an offset such as +09:00; none: UTC)"));
        return null;
    }

    private static string? Blank(string? value) => string.IsNullOrEmpty(value) ? null : value;

    /// <summary>The query string that asks for <paramref name="q"/> again (with a leading '?', empty when nothing is set).</summary>
    public static string QueryString(AuditQuery q, bool withLimit = true) => new Microsoft.AspNetCore.Http.Extensions.QueryBuilder(
        new (string Name, string? Value)[]
            {
                ("actor", q.Actor), ("action", q.Action), ("target", q.Target), ("unit", q.Unit),
                ("from", q.From is { } f ? TsunaguStore.Timestamp(f) : null), ("to", q.To is { } t ? TsunaguStore.Timestamp(t) : null),
                ("before", q.Before?.ToString(CultureInfo.InvariantCulture)), ("limit", withLimit ? q.Limit.ToString(CultureInfo.InvariantCulture) : null),
            }
            .Where(v => v.Value is not null).Select(v => new KeyValuePair<string, string>(v.Name, v.Value!))).ToString();
}
