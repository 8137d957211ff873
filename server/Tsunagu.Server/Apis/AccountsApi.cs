using Microsoft.AspNetCore.Http.HttpResults;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;
using Tsunagu.Server.Units;

namespace Tsunagu.Server.Apis;

public sealed record SubscriberLogin(string Name, string Password);
/// <summary>An account; <see cref="Contract"/> (subscribers only) names the contract, null keeps the current one (new: the default).</summary>
public sealed record NewSubscriber(string Name, string Password, string? Contract = null);
public sealed record TokenResponse(string Token, string Scope, DateTimeOffset ExpiresAt);
/// <summary>One revision of the subscriber's unit; <see cref="RetryCancelledBy"/>: who stopped its retries (<c>subscriber:NAME</c>) and when, null when no one did.</summary>
public sealed record SubscriberRevision(long Revision, string Status, string? Error, string Origin, string? RetryCancelledBy = null, string? RetryCancelledAt = null);
public sealed record SubscriberConfigView(long? Revision, ServiceConfiguration? Configuration, IReadOnlyList<SubscriberRevision> Revisions);
public sealed record SubscriberChangeView(long Revision, string Status, string? PushWarning);
/// <summary>The account an operator call set or disabled.</summary>
public sealed record AccountView(string Name);
/// <summary>An operator account to create or whose password to set; <see cref="Role"/> null keeps the current one (new: auditor).</summary>
public sealed record NewOperator(string Name, string Password, string? Role = null);
/// <summary>An operator account as administrators and auditors see it.</summary>
public sealed record OperatorView(string Name, string Role, bool Enabled);
public sealed record RoleRequest(string? Role);

/// <summary>Operator and subscriber sessions: short-lived scoped tokens; subscribers see only their own units.</summary>
/// <summary>The subscriber's cancel of a retried change: the revision whose further attempts were cancelled.</summary>
public sealed record RetryCancelled(string Mac, long Revision);

public static class AccountsApi
{
    /// <summary>An account name: 1-64 characters, no control characters, no leading or trailing space.</summary>
    public static bool IsAccountName([System.Diagnostics.CodeAnalysis.NotNullWhen(true)] string? name) =>
        !string.IsNullOrWhiteSpace(name) && name.Length <= 64 && name.Trim() == name && !name.Any(char.IsControl);

    public static void MapAccountsApi(this IEndpointRouteBuilder app)
    {
        // a token minted with a token keeps that token's expiry: only a password starts a new lifetime
        app.MapPost(Routes.Prefix + "/operator/token", async Task<Ok<TokenResponse>> (HttpContext http, TokenService tokens, TsunaguStore store, ServerOptions options) =>
        {
            var caller = http.Caller();
            var (token, expires) = tokens.Issue(caller.Subject, TokenScope.Operator, options.OperatorTokenLifetime,
                PasswordHasher.Stamp(await store.Accounts.GetOperatorHashAsync(caller.Subject, http.RequestAborted)), caller.TokenExpires);
            return TypedResults.Ok(new TokenResponse(token, TokenScope.Operator, expires));
        }).AddEndpointFilter<RequireOperator>().AllowRoles(OperatorRoles.Read).WithTags("Accounts");

        // disabling ends every token and session of the account; setting a password again enables it
        app.MapPost(Routes.Prefix + "/operators/{name}/disable", async Task<Results<Ok<AccountView>, ProblemHttpResult>> (string name, TsunaguStore store, HttpContext http) =>
        {
            if (string.Equals(name, http.Caller().Subject, StringComparison.Ordinal)) { return Problems.Conflict("name: an operator cannot disable their own account"); }
            if (await store.Accounts.GetOperatorHashAsync(name, http.RequestAborted) is null) { return Problems.NotFound($"operator {name} does not exist"); }
            return await Problems.GuardAsync(async () =>
            {
                await store.Accounts.ChangeOperatorAsync(name, PasswordHasher.Disabled(), null, new AuditEntry(http.Caller().Subject, "operator.disable", name, null), http.RequestAborted);
                return TypedResults.Ok(new AccountView(name));
            });
        }).AddEndpointFilter<RequireOperator>().AllowRoles(OperatorRoles.Administration).WithTags("Accounts")
            .ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict);

        app.MapPost(Routes.Prefix + "/subscribers/{name}/disable", async Task<Results<Ok<AccountView>, ProblemHttpResult>> (string name, TsunaguStore store, HttpContext http) =>
        {
            if (await store.Accounts.GetSubscriberHashAsync(name, http.RequestAborted) is null) { return Problems.NotFound($"subscriber {name} does not exist"); }
            await store.Accounts.UpsertSubscriberAsync(name, PasswordHasher.Disabled(), new AuditEntry(http.Caller().Subject, "subscriber.disable", name, null), ct: http.RequestAborted);
            return TypedResults.Ok(new AccountView(name));
        }).AddEndpointFilter<RequireOperator>().AllowRoles(OperatorRoles.Help).WithTags("Accounts").ProducesProblem(StatusCodes.Status404NotFound);

        // administrators manage operator accounts and roles; the last enabled administrator keeps the role
        app.MapPost(Routes.Prefix + "/operators", async Task<Results<Ok<AccountView>, ProblemHttpResult>> (NewOperator r, TsunaguStore store, HttpContext http) =>
        {
            if (!IsAccountName(r.Name) || r.Name.Contains(':')) { return Problems.BadRequest("name: required, at most 64 printable characters, no ':'"); }
            if (string.IsNullOrEmpty(r.Password) || r.Password.Length is < 12 or > 256) { return Problems.BadRequest("password: at least 12 characters, at most 256"); }
            if (r.Role is not null && !OperatorRoles.IsRole(r.Role)) { return Problems.BadRequest(RoleError(r.Role), "role"); }
            if (r.Role is not null && r.Role != await store.Accounts.GetOperatorRoleAsync(r.Name, http.RequestAborted) && string.Equals(r.Name, http.Caller().Subject, StringComparison.Ordinal))
            {
                return Problems.Conflict("role: an operator cannot change their own role");
            }
            var role = r.Role ?? (await store.Accounts.GetOperatorRoleAsync(r.Name, http.RequestAborted) is null ? OperatorRoles.Auditor : null);
            return await Problems.GuardAsync(async () =>
            {
                await store.Accounts.ChangeOperatorAsync(r.Name, PasswordHasher.Hash(r.Password), role,
                    new AuditEntry(http.Caller().Subject, "operator.set", r.Name, role is null ? null : $"role {role}"), http.RequestAborted);
                return TypedResults.Ok(new AccountView(r.Name));
            });
        }).AddEndpointFilter<RequireOperator>().AllowRoles(OperatorRoles.Administration).WithTags("Accounts").ProducesProblem(StatusCodes.Status409Conflict);

        app.MapGet(Routes.Prefix + "/operators", async (TsunaguStore store, CancellationToken ct) =>
            TypedResults.Ok((await store.Accounts.ListOperatorsAsync(ct)).Select(o => new OperatorView(o.Name, o.Role, o.Enabled)).ToList()))
            .AddEndpointFilter<RequireOperator>().AllowRoles(OperatorRoles.Oversight).WithTags("Accounts");

        app.MapPut(Routes.Prefix + "/operators/{name}/role", async Task<Results<Ok<OperatorView>, ProblemHttpResult>> (string name, RoleRequest r, TsunaguStore store, HttpContext http) =>
        {
            if (!OperatorRoles.IsRole(r.Role)) { return Problems.BadRequest(RoleError(r.Role), "role"); }
            if (await store.Accounts.GetOperatorRoleAsync(name, http.RequestAborted) is not { } current) { return Problems.NotFound($"operator {name} does not exist"); }
            if (string.Equals(name, http.Caller().Subject, StringComparison.Ordinal)) { return Problems.Conflict("name: an operator cannot change their own role"); }
            return await Problems.GuardAsync(async () =>
            {
                await store.Accounts.ChangeOperatorAsync(name, null, r.Role, new AuditEntry(http.Caller().Subject, "operator.role", name, $"{current} -> {r.Role}"), http.RequestAborted);
                return TypedResults.Ok((await store.Accounts.ListOperatorsAsync(http.RequestAborted)).Where(o => o.Name == name).Select(o => new OperatorView(o.Name, o.Role, o.Enabled)).Single());
            });
        }).AddEndpointFilter<RequireOperator>().AllowRoles(OperatorRoles.Administration).WithTags("Accounts")
            .ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict);

        app.MapPost(Routes.Prefix + "/subscribers", async Task<Results<Ok<AccountView>, ProblemHttpResult>> (NewSubscriber r, TsunaguStore store, HttpContext http) =>
        {
            if (!IsAccountName(r.Name)) { return Problems.BadRequest("name: required, at most 64 printable characters"); }
            if (string.IsNullOrEmpty(r.Password) || r.Password.Length is < 8 or > 256) { return Problems.BadRequest("password: at least 8 characters, at most 256"); }
            if (r.Contract is not null && await store.Accounts.GetContractAsync(r.Contract, http.RequestAborted) is null) { return Problems.BadRequest($"contract: '{InputRules.Quote(r.Contract)}' does not exist"); }
            // the same password again (to change only the contract) keeps the hash, and with it the subscriber's
            // sessions and tokens; a new one ends them
            var hash = await store.Accounts.GetSubscriberHashAsync(r.Name, http.RequestAborted) is not { } existing || !PasswordHasher.Verify(r.Password, existing) ? PasswordHasher.Hash(r.Password) : null;
            await store.Accounts.SetSubscriberAsync(r.Name, hash, r.Contract, new AuditEntry(http.Caller().Subject, "subscriber.set", r.Name, null), http.RequestAborted);
            return TypedResults.Ok(new AccountView(r.Name));
        }).AddEndpointFilter<RequireOperator>().AllowRoles(OperatorRoles.Help).WithTags("Accounts");

        app.MapPost(Routes.Prefix + "/subscriber/token", async Task<Results<Ok<TokenResponse>, ProblemHttpResult, RetryAfterResult>> (SubscriberLogin r, TsunaguStore store, TokenService tokens, PasswordGuard guard,
            ServerOptions options, HttpContext http) =>
        {
            if (string.IsNullOrEmpty(r.Name) || r.Name.Length > 64) { return Problems.BadRequest("name: required, at most 64 characters"); }
            if (r.Password is null || r.Password.Length > 256) { return Problems.BadRequest("password: required, at most 256 characters"); }
            var check = await guard.CheckAsync(TokenScope.Subscriber, r.Name, r.Password, http.Connection.RemoteIpAddress, store.Accounts.GetSubscriberHashAsync, http.RequestAborted);
            if (check.Verdict != PasswordVerdict.Accepted)
            {
                return check.Problem("subscriber name or password is wrong");
            }
            var (token, expires) = tokens.Issue(r.Name, TokenScope.Subscriber, options.SubscriberTokenLifetime, PasswordHasher.Stamp(await store.Accounts.GetSubscriberHashAsync(r.Name, http.RequestAborted)));
            return TypedResults.Ok(new TokenResponse(token, TokenScope.Subscriber, expires));
        }).WithTags("Accounts");

        app.MapGet(Routes.Prefix + "/subscriber/units", async Task<Ok<List<UnitView>>> (HttpContext http, TsunaguStore store) =>
            TypedResults.Ok((await store.Units.QueryUnitsAsync(new UnitQuery(Subscriber: http.Caller().Subject), http.RequestAborted)).Select(UnitViews.View).ToList()))
            .RequireTokenScope(TokenScope.Subscriber).WithTags("Accounts");

        // patent 0069-0070: the subscriber's own settings; a change is recorded provisional, pushed, applied, final
        app.MapGet(Routes.Prefix + "/subscriber/units/{mac}/service-config", async Task<Results<Ok<SubscriberConfigView>, ProblemHttpResult>> (string mac, HttpContext http, Subscribers.SubscriberChanges changes) =>
        {
            var unit = MacAddress.TryNormalize(mac, out var m) ? await changes.OwnUnitAsync(http.Caller().Subject, m, http.RequestAborted) : null;
            if (unit is null) { return Problems.NotFound($"unit {mac} is not one of yours"); }
            // one read: the ETag is the newest revision the document was taken with, never one saved between two reads
            var (current, revisions) = await changes.ReadAsync(unit.Mac, http.RequestAborted);
            // the newest revision (of any status) as ETag: a PUT with it in If-Match is stored only while no one saved meanwhile
            http.Response.Headers.ETag = Units.Lifecycle.UnitLifecycleApi.ETag(revisions.Count == 0 ? 0 : revisions[0].Revision);
            return TypedResults.Ok(new SubscriberConfigView(current?.Row.Revision, current?.Document,
                revisions.Select(r => new SubscriberRevision(r.Revision, r.Status, r.Error, r.Origin, r.RetryCancelledBy, r.RetryCancelledAt)).ToList()));
        }).RequireTokenScope(TokenScope.Subscriber).WithTags("Accounts").ProducesProblem(StatusCodes.Status404NotFound);

        app.MapPut(Routes.Prefix + "/subscriber/units/{mac}/service-config", async Task<Results<Ok<SubscriberChangeView>, ProblemHttpResult>> (string mac, ServiceConfiguration config, HttpContext http, Subscribers.SubscriberChanges changes) =>
        {
            if (!MacAddress.TryNormalize(mac, out var m) || await changes.OwnUnitAsync(http.Caller().Subject, m, http.RequestAborted) is null)
            {
                return Problems.NotFound($"unit {mac} is not one of yours");
            }
            // as the operator's PUT service-config: the ETag of GET; malformed 400, stale 409, none: compared with the newest read here
            var (basis, ifMatchError) = InputRules.IfMatchRevision(http, 0, "a configuration revision (the ETag of GET service-config, e.g. \"3\")");
            if (ifMatchError is not null) { return Problems.BadRequest(ifMatchError); }
            try
            {
                var result = await changes.ChangeAsync(http.Caller().Subject, m, "settings through the API", _ => config, http.RequestAborted, basis);
                return TypedResults.Ok(new SubscriberChangeView(result.Revision, ConfigStatus.Provisional, result.PushError));
            }
            catch (Subscribers.SubscriberChangeException e)
            {
                return e.Conflict ? Problems.Conflict(e.Message) : Problems.BadRequest(e.Message, e.Field);
            }
            catch (Catalogue.FieldNotAllowedException e)
            {
                return Problems.Forbidden(ProblemTypes.FieldNotAllowed, e.Message, e.Field);
            }
        }).RequireTokenScope(TokenScope.Subscriber).WithTags("Accounts")
            .ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status413PayloadTooLarge).ProducesProblem(StatusCodes.Status409Conflict)
            .WithMetadata(new Microsoft.AspNetCore.Mvc.RequestSizeLimitAttribute(MaxServiceConfigBytes));

        // patent 0070: the host retries a failed change; the subscriber can stop the further attempts
        app.MapPost(Routes.Prefix + "/subscriber/units/{mac}/service-config/cancel-retry", async Task<Results<Ok<RetryCancelled>, ProblemHttpResult>> (string mac, HttpContext http,
            Subscribers.SubscriberChanges changes, Subscribers.ConfigRetries retries) =>
        {
            if (!MacAddress.TryNormalize(mac, out var m) || await changes.OwnUnitAsync(http.Caller().Subject, m, http.RequestAborted) is null)
            {
                return Problems.NotFound($"unit {mac} is not one of yours");
            }
            return await retries.CancelAsync(m, $"subscriber:{http.Caller().Subject}", http.RequestAborted) is { } revision
                ? TypedResults.Ok(new RetryCancelled(m, revision))
                : Problems.Conflict($"unit {m}: its newest change is not being retried (applied, given up, or cancelled already); nothing was changed");
        }).RequireTokenScope(TokenScope.Subscriber).WithTags("Accounts").ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict);
    }

    private static string RoleError(string? role) =>
        $"role: '{InputRules.Quote(role)}' is not a role; roles: {string.Join(", ", OperatorRoles.All)}";

    /// <summary>The largest service configuration document a subscriber may send.</summary>
    public const long MaxServiceConfigBytes = 4 * 1024 * 1024;
}
