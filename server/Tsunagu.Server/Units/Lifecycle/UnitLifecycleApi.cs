using System.Globalization;
using Microsoft.AspNetCore.Http.HttpResults;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Units.Lifecycle;

/// <summary>
/// The device management table as a living record on the operator API (docs/operator-api.md, "Unit lifecycle"): a row
/// is read with its revision as ETag and edited with If-Match (a stale revision gets 409 and changes nothing);
/// decommission, delete (never-provisioned rows only), replace (RMA), subscriber transfer, revision history, and the
/// rotation of the key that seals the table's secrets.
/// </summary>
public static class UnitLifecycleApi
{
    public const string SecretsRotate = Routes.Prefix + "/secrets/rotate";

    public static void MapUnitLifecycleApi(this IEndpointRouteBuilder app)
    {
        var units = app.MapGroup(Routes.Units).AddEndpointFilter<RequireOperator>().WithTags("Unit lifecycle");
        units.MapGet("/{mac}/record", async Task<Results<Ok<UnitRecordView>, ProblemHttpResult>> (string mac, TsunaguStore store, HttpContext http) =>
        {
            if (!MacAddress.TryNormalize(mac, out var m) || await store.Units.GetUnitAsync(m, http.RequestAborted) is not { } unit) { return Problems.NotFound($"unit {InputRules.Quote(mac)} is not registered"); }
            http.Response.Headers.ETag = ETag(unit.Revision);
            return TypedResults.Ok(UnitLifecycle.View(unit));
        }).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Read);
        units.MapPatch("/{mac}/record", Edit).ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status428PreconditionRequired).AllowRoles(OperatorRoles.Administration);
        units.MapGet("/{mac}/revisions", async Task<Results<Ok<List<UnitRevisionView>>, ProblemHttpResult>> (string mac, TsunaguStore store, CancellationToken ct) =>
            MacAddress.TryNormalize(mac, out var m) && await store.Units.GetUnitAsync(m, ct) is not null
                ? TypedResults.Ok((await store.Lifecycle.ListUnitRevisionsAsync(m, ct)).Select(r => new UnitRevisionView(r.Revision, r.At, r.Actor, r.Action,
                    System.Text.Json.JsonSerializer.Deserialize<List<UnitFieldChange>>(r.Changes, System.Text.Json.JsonSerializerOptions.Web) ?? [])).ToList())
                : Problems.NotFound($"unit {InputRules.Quote(mac)} is not registered")).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Read);
        units.MapPost("/{mac}/decommission", Decommission).ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Administration);
        units.MapDelete("/{mac}", Delete).ProducesProblem(StatusCodes.Status400BadRequest).ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Administration);
        units.MapPost("/{mac}/replace", Replace).ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Administration);
        units.MapPost("/{mac}/transfer-subscriber", Transfer).ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Help);
        app.MapPost(SecretsRotate, async Task<Results<Ok<SecretRotationResult>, ProblemHttpResult>> (SecretRotation rotation, HttpContext http) =>
        {
            try
            {
                var (id, n) = await rotation.RotateAsync(http.Caller().Subject, http.RequestAborted);
                return TypedResults.Ok(new SecretRotationResult(id, n));
            }
            catch (SecretRotationException e)
            {
                return Problems.Conflict(e.Message);
            }
        }).AddEndpointFilter<RequireOperator>().WithTags("Unit lifecycle").ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Administration);
    }

    public static string ETag(long revision) => $"\"{revision.ToString(CultureInfo.InvariantCulture)}\"";

    /// <summary>The revision an If-Match header names: null when absent; an error when it is not one quoted revision.</summary>
    /// <summary>The unit revision an If-Match header names (the ETag of GET record); see <see cref="InputRules.IfMatchRevision"/>.</summary>
    private static (long? Revision, string? Error) IfMatch(HttpContext http) =>
        InputRules.IfMatchRevision(http, 1, "a unit revision (the ETag of GET record, e.g. \"3\")");

    private static ProblemHttpResult Stale(StaleRevisionException e) => Problems.Conflict(e.Message);

    private static async Task<Results<Ok<UnitRecordView>, ProblemHttpResult>> Edit(string mac, UnitEditRequest? request, UnitLifecycle lifecycle, HttpContext http)
    {
        if (!MacAddress.TryNormalize(mac, out var m)) { return Problems.NotFound($"unit {InputRules.Quote(mac)} is not registered"); }
        if (request is null) { return Problems.BadRequest("body: a JSON object with the fields to change is required"); }
        var (expected, error) = IfMatch(http);
        if (error is not null) { return Problems.BadRequest(error); }
        if (expected is null)
        {
            return Problems.Make(StatusCodes.Status428PreconditionRequired, ProblemTypes.Validation, "Precondition required",
                "If-Match: required; send the ETag of GET record, so that an edit made against an older row is refused");
        }
        try
        {
            var (row, problem) = await lifecycle.EditAsync(m, expected.Value, request, http.Caller().Subject, http.RequestAborted);
            if (row is null) { return Problems.BadRequest(problem!); }
            http.Response.Headers.ETag = ETag(row.Revision);
            return TypedResults.Ok(UnitLifecycle.View(row));
        }
        catch (StaleRevisionException e) { return Stale(e); }
        catch (UnitNotFoundException e) { return Problems.NotFound(e.Message); }
        catch (StoreConflictException e) { return Problems.Conflict(e.Message); }
    }

    private static async Task<Results<Ok<UnitRecordView>, ProblemHttpResult>> Decommission(string mac, DecommissionRequest? request, UnitLifecycle lifecycle, HttpContext http)
    {
        if (!MacAddress.TryNormalize(mac, out var m)) { return Problems.NotFound($"unit {InputRules.Quote(mac)} is not registered"); }
        var (expected, error) = IfMatch(http);
        if (error is not null) { return Problems.BadRequest(error); }
        if (!InputRules.IsOptionalText(request?.Reason, 256)) { return Problems.BadRequest(InputRules.Text("reason", 256)); }
        try
        {
            var row = await lifecycle.DecommissionAsync(m, expected, http.Caller().Subject, request?.Reason, http.RequestAborted);
            http.Response.Headers.ETag = ETag(row.Revision);
            return TypedResults.Ok(UnitLifecycle.View(row));
        }
        catch (StaleRevisionException e) { return Stale(e); }
        catch (UnitNotFoundException e) { return Problems.NotFound(e.Message); }
        catch (StoreConflictException e) { return Problems.Conflict(e.Message); }
    }

    private static async Task<Results<NoContent, ProblemHttpResult>> Delete(string mac, UnitLifecycle lifecycle, HttpContext http)
    {
        if (!MacAddress.TryNormalize(mac, out var m)) { return Problems.NotFound($"unit {InputRules.Quote(mac)} is not registered"); }
        var (expected, error) = IfMatch(http);
        if (error is not null) { return Problems.BadRequest(error); }
        try
        {
            await lifecycle.DeleteAsync(m, expected, http.Caller().Subject, http.RequestAborted);
            return TypedResults.NoContent();
        }
        catch (StaleRevisionException e) { return Stale(e); }
        catch (UnitNotFoundException e) { return Problems.NotFound(e.Message); }
        catch (StoreConflictException e) { return Problems.Conflict(e.Message); }
    }

    private static async Task<Results<Created<UnitRecordView>, ProblemHttpResult>> Replace(string mac, ReplaceUnitRequest? request, UnitLifecycle lifecycle, HttpContext http)
    {
        if (!MacAddress.TryNormalize(mac, out var m)) { return Problems.NotFound($"unit {InputRules.Quote(mac)} is not registered"); }
        var (expected, error) = IfMatch(http);
        if (error is not null) { return Problems.BadRequest(error); }
        try
        {
            var (row, problem) = await lifecycle.ReplaceAsync(m, expected, request!, http.Caller().Subject, http.RequestAborted);
            if (row is null) { return Problems.BadRequest(problem!); }
            return TypedResults.Created($"{Routes.Units}/{row.Mac}/record", UnitLifecycle.View(row));
        }
        catch (StaleRevisionException e) { return Stale(e); }
        catch (UnitNotFoundException e) { return Problems.NotFound(e.Message); }
        catch (StoreConflictException e) { return Problems.Conflict(e.Message); }
    }

    private static async Task<Results<Ok<UnitRecordView>, ProblemHttpResult>> Transfer(string mac, TransferSubscriberRequest? request, TsunaguStore store, HttpContext http)
    {
        if (!MacAddress.TryNormalize(mac, out var m)) { return Problems.NotFound($"unit {InputRules.Quote(mac)} is not registered"); }
        if (request is null || !MacAddress.TryNormalize(request.To, out var to)) { return Problems.BadRequest($"to: '{InputRules.Quote(request?.To)}' is not a MAC address"); }
        var (expected, error) = IfMatch(http);
        if (error is not null) { return Problems.BadRequest(error); }
        try
        {
            await store.Lifecycle.TransferSubscriberAsync(m, expected, to, null, request.WithConfig ?? true, http.Caller().Subject, http.RequestAborted);
            return TypedResults.Ok(UnitLifecycle.View((await store.Units.GetUnitAsync(to, http.RequestAborted))!));
        }
        catch (StaleRevisionException e) { return Stale(e); }
        catch (UnitNotFoundException e) { return Problems.NotFound(e.Message); }
        catch (StoreConflictException e) { return Problems.Conflict(e.Message); }
    }
}
