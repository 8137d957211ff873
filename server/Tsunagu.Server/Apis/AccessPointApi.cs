using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Http.HttpResults;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;

namespace Tsunagu.Server.Apis;

/// <summary>
/// The provisioning access point's authenticator asks here for a unit's access password (patent 0055): the RADIUS
/// server of the operator's access point (FreeRADIUS's <c>rest</c> module) sends the PPP user name a unit dialled
/// with, and gets the password derived from the operator's unit key for that MAC, in the form FreeRADIUS reads
/// (<c>{"control:Cleartext-Password": ...}</c>), so it can check the unit's CHAP answer itself. The unit key never
/// leaves this server; the access point learns the password of a unit only when that unit is registered and not
/// decommissioned. The caller presents <c>Authorization: Bearer</c> with <see cref="ServerOptions.AccessPointToken"/>;
/// without a token configured the route does not exist (404).
/// </summary>
public static class AccessPointApi
{
    public const string AccountRoute = Routes.Prefix + "/access-point/accounts/{user}";

    public static void MapAccessPointApi(this IEndpointRouteBuilder app, ServerOptions options)
    {
        if (options.AccessPointToken is not { } token)
        {
            return;
        }
        var expected = SHA256.HashData(Encoding.UTF8.GetBytes(token));
        app.MapGet(AccountRoute, async Task<Results<Ok<AccessPointAccount>, ProblemHttpResult>> (string user, HttpContext http, TsunaguStore store, UnitKey unitKey) =>
        {
            if (!Metrics.MetricsEndpoint.Authorized(http.Request.Headers.Authorization.ToString(), expected))
            {
                http.Response.Headers.WWWAuthenticate = "Bearer";
                return Problems.Unauthorized(ProblemTypes.InvalidToken, "the access point needs Authorization: Bearer with the server's AccessPointToken");
            }
            // the user name a unit dials with is its MAC as 12 lower-case hex digits (UnitCredentials.AccessUsername)
            if (user.Length != 12 || !user.All(c => char.IsAsciiDigit(c) || c is >= 'a' and <= 'f'))
            {
                return Problems.BadRequest("a unit's access user name is its MAC as 12 lower-case hex digits", "user");
            }
            var mac = MacAddress.Normalize(user);
            if (!await store.Lifecycle.IsUnitActiveAsync(mac, http.RequestAborted))
            {
                return Problems.NotFound($"no registered unit {mac} (or it was decommissioned)");
            }
            http.Response.Headers.CacheControl = "no-store";
            return TypedResults.Ok(new AccessPointAccount(UnitCredentials.DeriveAccessPassword(unitKey.Bytes, mac)));
        }).ProducesProblem(StatusCodes.Status400BadRequest).ProducesProblem(StatusCodes.Status401Unauthorized).ProducesProblem(StatusCodes.Status404NotFound);
    }
}

/// <summary>The answer to the access point's authenticator: the unit's access password as FreeRADIUS's control list attribute.</summary>
public sealed record AccessPointAccount([property: JsonPropertyName("control:Cleartext-Password")] string CleartextPassword);
