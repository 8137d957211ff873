using System.Text;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;

namespace Tsunagu.Server.Security;

/// <summary>Who made a request, once a filter has checked it.</summary>
/// <remarks><see cref="TokenExpires"/>: when the bearer token the caller used expires (null: a password).
/// <see cref="Role"/>: an operator's role (<see cref="OperatorRoles"/>), null for other callers.</remarks>
public sealed record Caller(string Subject, string Scope, DateTimeOffset? TokenExpires = null, string? Role = null);

public static class CallerExtensions
{
    public static Caller Caller(this HttpContext http) =>
        http.Items[typeof(Caller)] as Caller ?? throw new InvalidOperationException("endpoint reached without an access filter");
}

/// <summary>
/// Admits only bearer tokens of one scope; a unit token also marks the unit as seen; a subscriber token only while
/// the subscriber's security stamp is the one it carries (a new password or a disabling ends it).
/// </summary>
public sealed class RequireScope(string scope, TokenService tokens, TsunaguStore store) : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var claims = tokens.Validate(Bearer(http), out var reason);
        if (claims is null)
        {
            return Problems.Unauthorized(ProblemTypes.InvalidToken, reason);
        }
        if (claims.Scope != scope)
        {
            return Problems.Forbidden(ProblemTypes.WrongScope, $"a {claims.Scope} token cannot be used here; this endpoint needs a {scope} token");
        }
        if (scope == TokenScope.Subscriber && (claims.Stamp is null || claims.Stamp != PasswordHasher.Stamp(await store.Accounts.GetSubscriberHashAsync(claims.Subject))))
        {
            return Problems.Unauthorized(ProblemTypes.InvalidToken, "the token was issued before the account's password changed or it was disabled; sign in again");
        }
        http.Items[typeof(Caller)] = new Caller(claims.Subject, claims.Scope, DateTimeOffset.FromUnixTimeSeconds(claims.ExpiresAtUnix));
        if (scope is TokenScope.Host or TokenScope.Provisional)
        {
            // a token outlives a decommissioning by its lifetime: the unit is refused at once all the same
            if (!await store.Lifecycle.IsUnitActiveAsync(claims.Subject))
            {
                return Problems.Unauthorized(ProblemTypes.UnitRefused, "this unit is not registered or was decommissioned");
            }
            await store.Units.TouchAsync(claims.Subject);
        }
        return await next(context);
    }

    internal static string? Bearer(HttpContext http)
    {
        var header = http.Request.Headers.Authorization.ToString();
        return header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? header[7..].Trim() : null;
    }
}

public static class ScopeFilterExtensions
{
    /// <summary>Admits only bearer tokens of <paramref name="scope"/> to these endpoints (see <see cref="RequireScope"/>).</summary>
    public static TBuilder RequireTokenScope<TBuilder>(this TBuilder builder, string scope) where TBuilder : IEndpointConventionBuilder =>
        builder.AddEndpointFilter((context, next) => new RequireScope(scope,
            context.HttpContext.RequestServices.GetRequiredService<TokenService>(),
            context.HttpContext.RequestServices.GetRequiredService<TsunaguStore>()).InvokeAsync(context, next));
}

/// <summary>
/// Admits operators by HTTP Basic credentials (checked through <see cref="PasswordGuard"/>) or an operator bearer
/// token whose security stamp is still the account's, and only when the account's role is one the endpoint's
/// <see cref="OperatorAccess"/> allows (403 otherwise; an endpoint without one refuses every operator). No challenge (WWW-Authenticate) is ever sent: a browser would
/// then keep and replay the credentials on its own; API clients send them unasked.
/// </summary>
public sealed class RequireOperator(TokenService tokens, TsunaguStore store, PasswordGuard guard) : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var header = http.Request.Headers.Authorization.ToString();
        string name;
        DateTimeOffset? expires = null;
        if (header.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase))
        {
            string decoded;
            try
            {
                decoded = Encoding.UTF8.GetString(Convert.FromBase64String(header[6..].Trim()));
            }
            catch (FormatException)
            {
                return Problems.Unauthorized(ProblemTypes.InvalidToken, "the Basic credentials are not base64");
            }
            var colon = decoded.IndexOf(':');
            if (colon <= 0)
            {
                return Problems.Unauthorized(ProblemTypes.InvalidToken, "the Basic credentials are not name:password");
            }
            name = decoded[..colon];
            var check = await guard.CheckAsync(TokenScope.Operator, name, decoded[(colon + 1)..], http.Connection.RemoteIpAddress,
                store.Accounts.GetOperatorHashAsync, http.RequestAborted);
            if (check.Verdict != PasswordVerdict.Accepted)
            {
                return check.Problem("operator name or password is wrong");
            }
        }
        else
        {
            var claims = tokens.Validate(RequireScope.Bearer(http), out var reason);
            if (claims is null)
            {
                return Problems.Unauthorized(ProblemTypes.InvalidToken, $"operator credentials required ({reason})");
            }
            if (claims.Scope != TokenScope.Operator)
            {
                return Problems.Forbidden(ProblemTypes.WrongScope, $"a {claims.Scope} token cannot be used on the operator API");
            }
            if (claims.Stamp is null || claims.Stamp != PasswordHasher.Stamp(await store.Accounts.GetOperatorHashAsync(claims.Subject)))
            {
                return Problems.Unauthorized(ProblemTypes.InvalidToken, "the token was issued before the account's password changed or it was disabled; sign in again");
            }
            name = claims.Subject;
            expires = DateTimeOffset.FromUnixTimeSeconds(claims.ExpiresAtUnix);
        }
        // the role is read at every request: a changed role takes effect at once, on tokens and sessions alike
        var role = await store.Accounts.GetOperatorRoleAsync(name);
        var access = http.GetEndpoint()?.Metadata.GetMetadata<OperatorAccess>();
        if (access is null || !access.Allows(role))
        {
            return Problems.Forbidden(ProblemTypes.RoleNotAllowed, access is null
                ? "no operator role may use this endpoint"
                : $"the role {role} may not use this endpoint; it needs one of: {string.Join(", ", access.Roles)}");
        }
        http.Items[typeof(Caller)] = new Caller(name, TokenScope.Operator, expires, role);
        return await next(context);
    }
}
