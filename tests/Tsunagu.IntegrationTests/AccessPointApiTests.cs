using System.Net;
using System.Text.Json;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The provisioning access point's authenticator asks the initial setting server for a unit's access password: only
/// with the server's token, only for a registered, active unit, only for a user name of the unit grammar, and the
/// answer is the password the unit derives (FreeRADIUS's control list form).
/// </summary>
[NonParallelizable]
public class AccessPointApiTests
{
    private const string Token = "access-point-token-for-tests-0123456789";

    [SetUp]
    public void SetUp()
    {
        TestServer.DatabaseKind.Value = "sqlite";
        TestServer.Configure.Value = o => o.AccessPointToken = Token;
    }

    [TearDown]
    public void TearDown() => TestServer.Configure.Value = null;

    private static async Task<(HttpStatusCode Status, string Body)> Ask(HttpClient http, string user, string? authorization = "Bearer " + Token)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, AccessPointApi.AccountRoute.Replace("{user}", user, StringComparison.Ordinal));
        if (authorization is not null) { request.Headers.TryAddWithoutValidation("Authorization", authorization); }
        using var answer = await http.SendAsync(request);
        return (answer.StatusCode, await answer.Content.ReadAsStringAsync());
    }

    [Test]
    public async Task The_access_point_gets_a_registered_units_derived_password_and_nothing_else()
    {
        await using var server = await TestServer.StartAsync();
        var units = await server.AddUnitsAsync(2);
        var mac = units[0].Mac;
        using var http = server.PinnedHttp();

        var (status, body) = await Ask(http, UnitCredentials.AccessUsername(mac));
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body);
        using (var document = JsonDocument.Parse(body))
        {
            Assert.That(document.RootElement.EnumerateObject().Select(p => p.Name), Is.EqualTo(new[] { "control:Cleartext-Password" }), "only the password, as FreeRADIUS reads it");
            Assert.That(document.RootElement.GetProperty("control:Cleartext-Password").GetString(), Is.EqualTo(UnitCredentials.DeriveAccessPassword(server.UnitKey, mac)),
                "the password the factory burned into the unit");
        }
        Assert.That(body, Does.Not.Contain(Convert.ToBase64String(server.UnitKey)), "the unit key stays on the server");
        using (var request = new HttpRequestMessage(HttpMethod.Get, AccessPointApi.AccountRoute.Replace("{user}", UnitCredentials.AccessUsername(mac), StringComparison.Ordinal)))
        {
            request.Headers.TryAddWithoutValidation("Authorization", "Bearer " + Token);
            using var answer = await http.SendAsync(request);
            Assert.That(answer.Headers.CacheControl?.NoStore, Is.True, "a password is never kept by a cache on the way");
        }

        var before = (await server.Store.ListAuditAsync(1000)).Count;
        await Assert.MultipleAsync(async () =>
        {
            Assert.That((await Ask(http, UnitCredentials.AccessUsername(mac), null)).Status, Is.EqualTo(HttpStatusCode.Unauthorized), "no token");
            Assert.That((await Ask(http, UnitCredentials.AccessUsername(mac), "Bearer " + Token[..^1] + "x")).Status, Is.EqualTo(HttpStatusCode.Unauthorized), "a wrong token");
            Assert.That((await Ask(http, UnitCredentials.AccessUsername(mac), "Basic " + Token)).Status, Is.EqualTo(HttpStatusCode.Unauthorized), "another scheme");
            Assert.That((await Ask(http, "02feedfacade")).Status, Is.EqualTo(HttpStatusCode.NotFound), "a MAC that is not registered");
            foreach (var bad in new[] { "taro.yamada%40isp.example", mac.Replace(":", "%3A", StringComparison.Ordinal), "02FEEDFACADE",
                         UnitCredentials.AccessUsername(mac) + "0", "%0a" + UnitCredentials.AccessUsername(mac)[1..], "zzzzzzzzzzzz" })
            {
                var (badStatus, badBody) = await Ask(http, bad);
                Assert.That(badStatus, Is.EqualTo(HttpStatusCode.BadRequest), bad);
                Assert.That(badBody, Does.Contain("12 lower-case hex digits"), bad);
            }
        });
        Assert.That(await server.Store.ListAuditAsync(1000), Has.Count.EqualTo(before), "looking up writes nothing");

        await server.Store.Lifecycle.DecommissionAsync(mac, null, "operator", "returned");
        (status, body) = await Ask(http, UnitCredentials.AccessUsername(mac));
        Assert.That(status, Is.EqualTo(HttpStatusCode.NotFound), "a decommissioned unit cannot dial the access point");
        Assert.That(body, Does.Contain("decommissioned").And.Not.Contain("Cleartext"));
        Assert.That((await Ask(http, UnitCredentials.AccessUsername(units[1].Mac))).Status, Is.EqualTo(HttpStatusCode.OK), "other units unaffected");
    }

    [Test]
    public async Task Without_a_token_configured_the_route_does_not_exist()
    {
        TestServer.Configure.Value = null;
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = server.PinnedHttp();
        var (status, body) = await Ask(http, UnitCredentials.AccessUsername(mac));
        Assert.That(status, Is.EqualTo(HttpStatusCode.NotFound));
        Assert.That(body, Does.Not.Contain("Cleartext"));
    }

    [TestCase("short-token")]
    [TestCase(" access-point-token-for-tests-0123456789")]
    [TestCase("access-point-token-for-tests-0123456789\n")]
    public void A_weak_or_malformed_token_stops_the_server_at_start(string token)
    {
        var options = new Tsunagu.Server.ServerOptions { AccessPointToken = token };
        var e = Assert.Throws<ArgumentException>(options.Validate);
        Assert.That(e!.Message, Does.Contain("AccessPointToken must be 32 to 512 characters"));
    }
}
