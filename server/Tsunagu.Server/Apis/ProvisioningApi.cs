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
        app.MapPost(Routes.ProvisioningChallenge, (ChallengeRequest request, UnitAuthentication auth) =>
            auth.Challenge(request, ProofPurpose.Provisional)).RequireRateLimiting(Throttling.UnitAuthPolicy);

        app.MapPost(Routes.ProvisioningSession, (SessionRequest request, UnitAuthentication auth, ServerOptions options) =>
            auth.Session(request, ProofPurpose.Provisional, TokenScope.Provisional, options.ProvisionalTokenLifetime)).RequireRateLimiting(Throttling.UnitAuthPolicy);

        app.MapGet(Routes.ProvisioningSettings, (HttpContext http, TsunaguStore store, ServerEndpoints endpoints, IPushPublisher push) =>
        {
            var mac = http.Caller().Subject;
            var unit = store.GetUnit(mac);
            if (unit is null)
            {
                return Problems.NotFound($"unit {mac} is no longer registered");
            }
            return Results.Ok(new UnitSettings(
                unit.Mac,
                new WanAccount(unit.IspMethod, unit.IspUsername, unit.IspPassword, unit.IpAddress),
                unit.IpAddress, unit.Domain, unit.Vpn, unit.GlobalIp,
                endpoints.HostServerUrl, push.BrokerUri));
        }).RequireTokenScope(TokenScope.Provisional);
    }
}

/// <summary>Where units reach the host server, resolved once the server is listening.</summary>
public sealed class ServerEndpoints
{
    public string HostServerUrl { get; set; } = "";
}


