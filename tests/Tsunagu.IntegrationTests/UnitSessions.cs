using System.Net;
using System.Net.Http.Json;
using Tsunagu.Protocol;

namespace Tsunagu.IntegrationTests;

/// <summary>A unit's host session made over HTTPS as the unit makes it (challenge, proof), for tests that need its broker login.</summary>
public static class UnitSessions
{
    public static async Task<SessionResponse> HostSessionAsync(this TestServer server, string mac)
    {
        using var http = server.PinnedHttp();
        var challenge = (await (await http.PostAsJsonAsync(Routes.HostChallenge, new ChallengeRequest(mac))).Content.ReadFromJsonAsync<ChallengeResponse>())!;
        var proof = UnitCredentials.ComputeProof(UnitCredentials.DeriveUnitSecret(server.UnitKey, mac), ProofPurpose.Host, mac, challenge.ChallengeId, challenge.Nonce);
        var answer = await http.PostAsJsonAsync(Routes.HostSession, new SessionRequest(mac, challenge.ChallengeId, proof));
        Assert.That(answer.StatusCode, Is.EqualTo(HttpStatusCode.OK), await answer.Content.ReadAsStringAsync());
        return (await answer.Content.ReadFromJsonAsync<SessionResponse>())!;
    }

    /// <summary>The broker password of a new host session of the unit.</summary>
    public static async Task<string> BrokerPasswordAsync(this TestServer server, string mac) =>
        (await server.HostSessionAsync(mac)).PushPassword ?? throw new AssertionException("the host session carries no broker password");
}
