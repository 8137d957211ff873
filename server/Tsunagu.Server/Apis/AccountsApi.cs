using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Apis;

public sealed record SubscriberLogin(string Name, string Password);
/// <summary>An account; <see cref="Contract"/> (subscribers only) names the contract, null keeps the current one (new: the default).</summary>
public sealed record NewSubscriber(string Name, string Password, string? Contract = null);
public sealed record TokenResponse(string Token, string Scope, DateTimeOffset ExpiresAt);
public sealed record SubscriberRevision(long Revision, string Status, string? Error, string Origin);
public sealed record SubscriberConfigView(long? Revision, ServiceConfiguration? Configuration, IReadOnlyList<SubscriberRevision> Revisions);
public sealed record SubscriberChangeView(long Revision, string Status, string? PushWarning);

/// <summary>Operator and subscriber sessions: short-lived scoped tokens; subscribers see only their own units.</summary>
public static class AccountsApi
{
    public static void MapAccountsApi(this IEndpointRouteBuilder app)
    {
        app.MapPost(Routes.Prefix + "/operator/token", (HttpContext http, TokenService tokens, ServerOptions options) =>
        {
            var (token, expires) = tokens.Issue(http.Caller().Subject, TokenScope.Operator, options.OperatorTokenLifetime);
            return Results.Ok(new TokenResponse(token, TokenScope.Operator, expires));
        }).AddEndpointFilter<RequireOperator>().WithTags("Accounts");

        app.MapPost(Routes.Prefix + "/operators", (NewSubscriber r, TsunaguStore store, HttpContext http) =>
        {
            if (string.IsNullOrWhiteSpace(r.Name) || r.Name.Length > 64 || r.Name.Contains(':')) { return Problems.BadRequest("name: required, at most 64 characters, no ':'"); }
            if (string.IsNullOrEmpty(r.Password) || r.Password.Length < 12) { return Problems.BadRequest("password: at least 12 characters"); }
            store.UpsertOperator(r.Name, PasswordHasher.Hash(r.Password));
            store.Audit(http.Caller().Subject, "operator.set", r.Name, null);
            return Results.Ok(new { name = r.Name });
        }).AddEndpointFilter<RequireOperator>().WithTags("Accounts");

        app.MapPost(Routes.Prefix + "/subscribers", (NewSubscriber r, TsunaguStore store, HttpContext http) =>
        {
            if (string.IsNullOrWhiteSpace(r.Name) || r.Name.Length > 64) { return Problems.BadRequest("name: required, at most 64 characters"); }
            if (string.IsNullOrEmpty(r.Password) || r.Password.Length < 8) { return Problems.BadRequest("password: at least 8 characters"); }
            if (r.Contract is not null && store.GetContract(r.Contract) is null) { return Problems.BadRequest($"contract: '{r.Contract}' does not exist"); }
            store.UpsertSubscriber(r.Name, PasswordHasher.Hash(r.Password));
            if (r.Contract is not null) { store.SetSubscriberContract(r.Name, r.Contract); }
            store.Audit(http.Caller().Subject, "subscriber.set", r.Name, null);
            return Results.Ok(new { name = r.Name });
        }).AddEndpointFilter<RequireOperator>().WithTags("Accounts");

        app.MapPost(Routes.Prefix + "/subscriber/token", (SubscriberLogin r, TsunaguStore store, TokenService tokens, ServerOptions options) =>
        {
            if (store.GetSubscriberHash(r.Name ?? "") is not { } hash || !PasswordHasher.Verify(r.Password ?? "", hash))
            {
                return Problems.Unauthorized(ProblemTypes.InvalidToken, "subscriber name or password is wrong");
            }
            var (token, expires) = tokens.Issue(r.Name!, TokenScope.Subscriber, options.SubscriberTokenLifetime);
            return Results.Ok(new TokenResponse(token, TokenScope.Subscriber, expires));
        }).RequireRateLimiting(Throttling.UnitAuthPolicy).WithTags("Accounts");

        app.MapGet(Routes.Prefix + "/subscriber/units", (HttpContext http, TsunaguStore store) =>
            Results.Ok(store.QueryUnits(new UnitQuery(Subscriber: http.Caller().Subject)).Select(OperatorApi.ToView).ToList()))
            .RequireTokenScope(TokenScope.Subscriber).WithTags("Accounts");

        // patent 0069-0070: the subscriber's own settings; a change is recorded provisional, pushed, applied, final
        app.MapGet(Routes.Prefix + "/subscriber/units/{mac}/service-config", (string mac, HttpContext http, Web.SubscriberChanges changes) =>
        {
            var unit = MacAddress.TryNormalize(mac, out var m) ? changes.OwnUnit(http.Caller().Subject, m) : null;
            if (unit is null) { return Problems.NotFound($"unit {mac} is not one of yours"); }
            var current = changes.Current(unit.Mac);
            return Results.Ok(new SubscriberConfigView(current?.Row.Revision, current?.Document,
                changes.Revisions(unit.Mac).Select(r => new SubscriberRevision(r.Revision, r.Status, r.Error, r.Origin)).ToList()));
        }).RequireTokenScope(TokenScope.Subscriber).WithTags("Accounts");

        app.MapPut(Routes.Prefix + "/subscriber/units/{mac}/service-config", async (string mac, ServiceConfiguration config, HttpContext http, Web.SubscriberChanges changes) =>
        {
            if (!MacAddress.TryNormalize(mac, out var m) || changes.OwnUnit(http.Caller().Subject, m) is null)
            {
                return Problems.NotFound($"unit {mac} is not one of yours");
            }
            try
            {
                var result = await changes.ChangeAsync(http.Caller().Subject, m, "settings through the API", _ => config, http.RequestAborted);
                return Results.Ok(new SubscriberChangeView(result.Revision, ConfigStatus.Provisional, result.PushError));
            }
            catch (Web.SubscriberChangeException e)
            {
                return FieldProblem(400, ProblemTypes.Validation, "Invalid request", e.Message, e.Field);
            }
            catch (Catalogue.FieldNotAllowedException e)
            {
                return FieldProblem(403, ProblemTypes.FieldNotAllowed, "Not allowed", e.Message, e.Field);
            }
        }).RequireTokenScope(TokenScope.Subscriber).WithTags("Accounts")
            .WithMetadata(new Microsoft.AspNetCore.Mvc.RequestSizeLimitAttribute(MaxServiceConfigBytes));
    }

    /// <summary>The largest service configuration document a subscriber may send.</summary>
    public const long MaxServiceConfigBytes = 4 * 1024 * 1024;

    /// <summary>A problem response that also names the offending field (`field`), when there is one.</summary>
    private static IResult FieldProblem(int status, string type, string title, string detail, string? field) =>
        Results.Problem(detail: detail, statusCode: status, title: title, type: type,
            extensions: field is null ? null : new Dictionary<string, object?> { ["field"] = field });
}
