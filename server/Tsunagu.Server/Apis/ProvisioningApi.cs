using Microsoft.AspNetCore.Http.HttpResults;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Push;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Apis;

/// <summary>The initial setting server (patent 50): authenticates units and sends their settings (S100-S200).</summary>
public static class ProvisioningApi
{
    public static void MapProvisioningApi(this IEndpointRouteBuilder app)
    {
        app.MapPost(Routes.ProvisioningChallenge, async (ChallengeRequest request, UnitAuthentication auth) =>
            await auth.ChallengeAsync(request, ProofPurpose.Provisional)).RequireRateLimiting(Throttling.UnitAuthPolicy);

        app.MapPost(Routes.ProvisioningSession, (SessionRequest request, UnitAuthentication auth, ServerOptions options, HttpContext http) =>
            auth.Session(request, ProofPurpose.Provisional, TokenScope.Provisional, options.ProvisionalTokenLifetime, http)).RequireRateLimiting(Throttling.UnitAuthPolicy);

        app.MapGet(Routes.ProvisioningSettings, async Task<Results<Ok<UnitSettings>, ProblemHttpResult>> (HttpContext http, TsunaguStore store, ServerEndpoints endpoints, IPushPublisher push, ServerOptions options) =>
        {
            var mac = http.Caller().Subject;
            var unit = await store.Units.GetUnitAsync(mac, http.RequestAborted);
            if (unit is null)
            {
                return Problems.NotFound($"unit {mac} is no longer registered");
            }
            return TypedResults.Ok(new UnitSettings(
                unit.Mac,
                new WanAccount(unit.IspMethod, unit.IspUsername, store.Lifecycle.IspPasswordOf(unit), unit.IpAddress, unit.IspGateway, unit.DnsList),
                unit.IpAddress, unit.Domain, unit.Vpn, unit.GlobalIp,
                options.HostServerUrl ?? AsReachedBy(http, endpoints.HostServerUrl),
                options.MqttPublicUri ?? (push.BrokerUri is { } broker ? AsReachedBy(http, broker) : null),
                checked((int)unit.SettingsRevision)));
        }).RequireTokenScope(TokenScope.Provisional).ProducesProblem(StatusCodes.Status404NotFound);
    }

    /// <summary>
    /// <paramref name="url"/> as the unit can reach it: when no public address is configured and the server listens on a
    /// loopback or unspecified address, the unit came in through a forwarded port (a QEMU guest, a NAT), so it gets the
    /// host name it used for this request, with the URL's own scheme and port.
    /// </summary>
    internal static string AsReachedBy(HttpContext http, string url)
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || !System.Net.IPAddress.TryParse(uri.Host.Trim('[', ']'), out var address)
            || !(System.Net.IPAddress.IsLoopback(address) || address.Equals(System.Net.IPAddress.Any) || address.Equals(System.Net.IPAddress.IPv6Any)))
        {
            return url;
        }
        var reached = http.Request.Host.Host;
        if (string.IsNullOrEmpty(reached) || reached == uri.Host)
        {
            return url;
        }
        return new UriBuilder(uri) { Host = reached }.Uri.ToString();
    }
}

/// <summary>Where units reach the host server, resolved once the server is listening.</summary>
public sealed class ServerEndpoints
{
    public string HostServerUrl { get; set; } = "";
}


