using Microsoft.AspNetCore.Http.HttpResults;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Push;
using Tsunagu.Server.Security;
using Tsunagu.Server.Units;
using Tsunagu.Server.Units.ForcedChecks;
using Tsunagu.Server.Units.Lifecycle;
using Tsunagu.Server.Units.Registration;

namespace Tsunagu.Server.Apis;

public sealed record TargetPatternRequest(string? Pattern);
/// <summary>One service configuration revision of a unit, as the operator lists them.</summary>
/// <remarks>
/// <see cref="Attempt"/> n &gt; 1: the host's retry of the failed revision <see cref="RetryOf"/> (patent 0070).
/// <see cref="RetryCancelledBy"/>: who stopped further attempts of this revision (<c>subscriber:NAME</c>) and
/// <see cref="RetryCancelledAt"/> when; null when no one did.
/// </remarks>
public sealed record UnitConfigRevisionView(long Revision, string Status, string? Error, string Origin, string? CreatedAt, string? UpdatedAt,
    long Attempt = 1, long? RetryOf = null, string? RetryCancelledBy = null, string? RetryCancelledAt = null);
/// <summary>The answer to an operator's new service configuration for a unit.</summary>
public sealed record UnitConfigAssigned(string Mac, long Revision, string Status, string? PushWarning);

/// <summary>
/// The operator's units API: the device management table, the fleet view, target patterns, service configurations,
/// forced checks. Registration (<see cref="UnitRegistration"/>) and forced checks (<see cref="ForcedCheckService"/>)
/// are services the console calls too.
/// </summary>
public static class OperatorApi
{
    public static void MapOperatorApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup(Routes.Units).AddEndpointFilter<RequireOperator>();
        api.MapGet("", async Task<Results<Ok<List<UnitView>>, ProblemHttpResult>> (TsunaguStore store, string? pattern, string? state, string? app, string? version,
                DateTimeOffset? seenBefore, DateTimeOffset? seenAfter, bool? online, string? serial, string? subscriber, string? domain, CancellationToken ct) =>
            version is not null && app is null
                ? Problems.BadRequest("version: filtering by version needs app (the application whose version it is)", "version")
                : SearchProblem(serial, subscriber, domain) is { } problem
                    ? problem
                    : TypedResults.Ok((await store.Units.QueryUnitsAsync(new UnitQuery(pattern, state, app, version, seenBefore, seenAfter, online,
                        Blank(subscriber), Blank(serial), Blank(domain)), ct)).Select(UnitViews.View).ToList()))
            .ProducesProblem(StatusCodes.Status400BadRequest).AllowRoles(OperatorRoles.Read);
        api.MapGet("/{mac}", async Task<Results<Ok<UnitView>, ProblemHttpResult>> (string mac, TsunaguStore store) =>
            MacAddress.TryNormalize(mac, out var m) && await store.Units.GetUnitAsync(m) is { } unit
                ? TypedResults.Ok(UnitViews.View(unit))
                : Problems.NotFound($"unit {mac} is not registered")).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Read);
        api.MapPost("", Register).ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Administration);
        api.MapPost("/bulk", RegisterBulk).Accepts<string>("text/csv")
            .ProducesProblem(StatusCodes.Status409Conflict).ProducesProblem(StatusCodes.Status413PayloadTooLarge).WithMetadata(new Microsoft.AspNetCore.Mvc.RequestSizeLimitAttribute(DeviceTable.MaxBytes))
            .AllowRoles(OperatorRoles.Administration);
        api.MapPut("/{mac}/target-pattern", async Task<Results<Ok<UnitView>, ProblemHttpResult>> (string mac, TargetPatternRequest r, TsunaguStore store, Catalogue.CatalogueService catalogue, HttpContext http) =>
            !MacAddress.TryNormalize(mac, out var m) || await store.Units.GetUnitAsync(m, http.RequestAborted) is null
                ? Problems.NotFound($"unit {mac} is not registered")
                : await Problems.GuardAsync(async () =>
                {
                    await catalogue.SetTargetPatternAsync(m, r.Pattern, http.Caller().Subject, ct: http.RequestAborted);
                    return TypedResults.Ok(UnitViews.View((await store.Units.GetUnitAsync(m, http.RequestAborted))!));
                })).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Release);
        api.MapGet("/{mac}/service-config", async Task<Results<Ok<List<UnitConfigRevisionView>>, ProblemHttpResult>> (string mac, TsunaguStore store, HttpContext http) =>
        {
            if (!MacAddress.TryNormalize(mac, out var m) || await store.Units.GetUnitAsync(m, http.RequestAborted) is null) { return Problems.NotFound($"unit {mac} is not registered"); }
            var revisions = await store.ServiceConfigs.ListUnitConfigsAsync(m, http.RequestAborted);
            // the newest revision as ETag: a PUT with it in If-Match is stored only while no one saved meanwhile
            http.Response.Headers.ETag = Units.Lifecycle.UnitLifecycleApi.ETag(revisions.Count == 0 ? 0 : revisions[^1].Revision);
            return TypedResults.Ok(revisions.Select(c => new UnitConfigRevisionView(c.Revision, c.Status, c.Error, c.Origin, c.CreatedAt, c.UpdatedAt, c.Attempt, c.RetryOf,
                c.RetryCancelledBy, c.RetryCancelledAt)).ToList());
        }).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Read);
        api.MapPost("/check", ForceCheck).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Check);
        api.MapGet("/check/{id}", async Task<Results<Ok<ForceCheckStatus>, ProblemHttpResult>> (string id, ForcedCheckService checks, CancellationToken ct) =>
            id.Length is > 0 and <= 32 && id.All(char.IsAsciiHexDigitLower) && await checks.StatusAsync(id, ct) is { } status
                ? TypedResults.Ok(status)
                : Problems.NotFound($"no forced check {id}")).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Read);
        api.MapPut("/{mac}/service-config", AssignServiceConfig).ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .WithMetadata(new Microsoft.AspNetCore.Mvc.RequestSizeLimitAttribute(AccountsApi.MaxServiceConfigBytes)).AllowRoles(OperatorRoles.Help);
        app.MapUnitLifecycleApi();
        Units.Windows.UpdateWindowApi.MapUpdateWindowApi(app);
    }

    /// <summary>
    /// The unit list's search fields by the console's rules (<see cref="Pages.Console.UnitsModel.Parse"/>): a serial or a
    /// subscriber is text of at most 64 characters without control characters, a domain a DNS name; empty means not given.
    /// </summary>
    private static ProblemHttpResult? SearchProblem(string? serial, string? subscriber, string? domain) =>
        Blank(serial) is { } s && !InputRules.IsText(s, InputRules.MaxIdentifier) ? Problems.BadRequest(InputRules.Text("serial", InputRules.MaxIdentifier), "serial")
        : Blank(subscriber) is { } u && !InputRules.IsText(u, InputRules.MaxIdentifier) ? Problems.BadRequest(InputRules.Text("subscriber", InputRules.MaxIdentifier), "subscriber")
        : Blank(domain) is { } d && !InputRules.IsDomainName(d) ? Problems.BadRequest($"domain: '{InputRules.Quote(d)}' is not a DNS name", "domain")
        : null;

    private static string? Blank(string? value) => string.IsNullOrWhiteSpace(value) ? null : value.Trim();

    private static async Task<Results<Created<UnitView>, ProblemHttpResult>> Register(RegisterUnitRequest request, HttpContext http, UnitRegistration registration)
    {
        var (unit, error, conflict) = await registration.RegisterAsync(request, http.Caller().Subject, http.RequestAborted);
        if (unit is null) { return conflict ? Problems.Conflict(error!) : Problems.BadRequest(error!); }
        return TypedResults.Created($"{Routes.Units}/{unit.Mac}", UnitViews.View(unit));
    }

    /// <summary>
    /// Registers every row of a CSV device management table, or none: when any row is wrong, nothing is written
    /// and each wrong row is reported with its line number.
    /// </summary>
    private static async Task<Results<Ok<BulkRegisterResponse>, ProblemHttpResult>> RegisterBulk(HttpRequest request, HttpContext http, UnitRegistration registration)
    {
        string text;
        try
        {
            using var reader = new StreamReader(request.Body, new System.Text.UTF8Encoding(false, throwOnInvalidBytes: true));
            text = await reader.ReadToEndAsync(http.RequestAborted);
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return Problems.TooLarge($"body: a device management table is at most {DeviceTable.MaxBytes / (1024 * 1024)} MB; split it");
        }
        catch (System.Text.DecoderFallbackException)
        {
            return Problems.BadRequest("body: the table is not UTF-8 text");
        }
        var check = await registration.CheckBulkAsync(text, http.RequestAborted);
        if (check.FileError is not null) { return Problems.BadRequest(check.FileError); }
        if (check.Rows.Any(r => r.Error is not null))
        {
            // a problem document that also carries the BulkRegisterResponse fields: every row with its error
            var errors = check.Rows.Count(r => r.Error is not null);
            return Problems.Make(StatusCodes.Status400BadRequest, ProblemTypes.Validation, "Invalid request",
                $"rows: {errors} of {check.Rows.Count} row(s) are wrong (see rows); nothing was registered",
                extensions: new Dictionary<string, object?> { ["registered"] = 0, ["rows"] = check.Rows });
        }
        try
        {
            await registration.CommitBulkAsync(check, http.Caller().Subject, http.RequestAborted);
        }
        catch (StoreConflictException e)
        {
            return Problems.Conflict(e.Message);
        }
        return TypedResults.Ok(new BulkRegisterResponse(check.Valid.Count, check.Rows));
    }

    private static async Task<Results<Ok<ForceCheckResponse>, ProblemHttpResult>> ForceCheck(ForceCheckRequest request, HttpContext http, ForcedCheckService checks,
        CancellationToken ct)
    {
        if (request.Importance is < 1 or > 5) { return Problems.BadRequest($"importance: {request.Importance} is outside 1..5"); }
        IReadOnlyList<string> selected;
        try
        {
            selected = await checks.SelectAsync(request, ct);
        }
        catch (ForcedCheckSelectionException e)
        {
            return e.NotFound ? Problems.NotFound(e.Message) : Problems.BadRequest(e.Message);
        }
        catch (PushException e)
        {
            return Problems.PushUnavailable("Push unavailable", e.Message);
        }
        try
        {
            return TypedResults.Ok(await checks.CheckNowAsync(http.Caller().Subject, selected, request.Importance, ct));
        }
        catch (PushException e)
        {
            return Problems.PushUnavailable("Push failed", e.Message);
        }
    }

    /// <summary>A new revision for the unit (the operator's, or on a subscriber's behalf); the unit is told to check at once (<see cref="Units.ServiceConfigs.ServiceConfigService"/>).</summary>
    private static async Task<Results<Ok<UnitConfigAssigned>, ProblemHttpResult>> AssignServiceConfig(string mac, ServiceConfiguration config, HttpContext http,
        Units.ServiceConfigs.ServiceConfigService configs)
    {
        // the ETag of GET service-config: the newest revision, "0" for none
        var (baseRevision, ifMatchError) = InputRules.IfMatchRevision(http, 0, "a configuration revision (the ETag of GET service-config, e.g. \"3\")");
        if (ifMatchError is not null) { return Problems.BadRequest(ifMatchError); }
        try
        {
            var assigned = await configs.AssignAsync(mac, config, http.Caller().Subject, http.RequestAborted, baseRevision);
            return TypedResults.Ok(new UnitConfigAssigned(assigned.Mac, assigned.Revision, ConfigStatus.Provisional, assigned.PushWarning));
        }
        catch (UnitNotFoundException)
        {
            return Problems.NotFound($"unit {mac} is not registered");
        }
        catch (InvalidServiceConfigException e)
        {
            return Problems.BadRequest(e.Message, e.Field);
        }
        catch (StaleConfigRevisionException e)
        {
            return Problems.Conflict(e.Message);
        }
        catch (StoreConflictException e)
        {
            return Problems.Conflict(e.Message);
        }
    }

}
