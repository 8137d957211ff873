using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Tsunagu.Cli.Factory;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;

namespace Tsunagu.IntegrationTests;

/// <summary>Patent 0069-0070 through the API: a change is provisional, pushed, applied by the unit, then final.</summary>
[NonParallelizable]
public class SubscriberChangeTests
{
    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    [Test]
    public async Task A_subscriber_change_goes_provisional_applied_final_and_an_operator_can_act_on_their_behalf()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Operator();
        await client.SendJsonAsync(HttpMethod.Post, "/api/v1/subscribers", new NewSubscriber("alice", "alice-password"), CancellationToken.None);
        await client.SendAsync(HttpMethod.Post, "/api/v1/units/bulk", new StringContent(
            "mac,serial,isp_method,isp_username,isp_password,subscriber\n02:54:53:00:00:01,A1,pppoe,a@isp,pw,alice\n02:54:53:00:00:02,B1,pppoe,b@isp,pw,bob\n",
            Encoding.UTF8, "text/csv"), CancellationToken.None);
        var mine = await server.Fleet.AddUnitAsync(server.Identity(1), CancellationToken.None);
        server.Fleet.Start(mine);
        await server.WaitReadyAsync(mine);
        await server.WaitForAsync(() => mine.Supervisor.Context.Push?.IsConnected == true, "the unit listening for pushes");

        using var http = server.PinnedHttp();
        var token = (await (await http.PostAsJsonAsync("/api/v1/subscriber/token", new SubscriberLogin("alice", "alice-password"))).Content.ReadFromJsonAsync<TokenResponse>())!;
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token.Token);

        var view = (await http.GetFromJsonAsync<SubscriberConfigView>($"/api/v1/subscriber/units/{mine.Mac}/service-config"))!;
        Assert.That(view.Revision, Is.EqualTo(1));
        var changed = view.Configuration! with
        {
            Firewall = view.Configuration.Firewall with { PortForwards = [.. view.Configuration.Firewall.PortForwards, new PortForward("udp", 27015, "192.168.10.30", 27015)] },
        };
        var put = await http.PutAsJsonAsync($"/api/v1/subscriber/units/{mine.Mac}/service-config", changed);
        Assert.That(put.StatusCode, Is.EqualTo(HttpStatusCode.OK), await put.Content.ReadAsStringAsync());
        var result = (await put.Content.ReadFromJsonAsync<SubscriberChangeView>())!;
        Assert.That((result.Revision, result.Status, result.PushWarning), Is.EqualTo((2L, "provisional", (string?)null)));
        await server.WaitForAsync(async () => (await server.Store.ServiceConfigs.ListUnitConfigsAsync(mine.Mac)).Single(r => r.Revision == 2).Status == "final", "revision 2 final");
        Assert.That(File.ReadAllText(Path.Combine(mine.Hardware.Data.Root, "services", "current", "nftables.nft")), Does.Contain("27015"));
        Assert.That((await server.Store.ServiceConfigs.ListUnitConfigsAsync(mine.Mac)).Single(r => r.Revision == 2).Origin, Is.EqualTo("subscriber"));

        var invalid = await http.PutAsJsonAsync($"/api/v1/subscriber/units/{mine.Mac}/service-config",
            changed with { Dhcp = changed.Dhcp with { RangeStart = "nonsense" } });
        Assert.That(invalid.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(await invalid.Content.ReadAsStringAsync(), Does.Contain("dhcp.rangeStart"));
        Assert.That(await server.Store.ServiceConfigs.ListUnitConfigsAsync(mine.Mac), Has.Count.EqualTo(2), "a refused change is not recorded");
        Assert.That((await http.GetAsync("/api/v1/subscriber/units/02:54:53:00:00:02/service-config")).StatusCode, Is.EqualTo(HttpStatusCode.NotFound), "bob's unit");
        Assert.That((await http.PutAsJsonAsync("/api/v1/subscriber/units/02:54:53:00:00:02/service-config", changed)).StatusCode, Is.EqualTo(HttpStatusCode.NotFound));

        // the operator, on alice's behalf (phone call): a new revision, pushed at once, final once applied
        var onBehalf = changed with { ContentFilter = changed.ContentFilter with { BlockedDomains = [.. changed.ContentFilter.BlockedDomains, "games.example"] } };
        await client.SendJsonAsync(HttpMethod.Put, $"/api/v1/units/{mine.Mac}/service-config", onBehalf, CancellationToken.None);
        await server.WaitForAsync(async () => (await server.Store.ServiceConfigs.ListUnitConfigsAsync(mine.Mac)).Single(r => r.Revision == 3).Status == "final", "revision 3 final");
        Assert.That(File.ReadAllText(Path.Combine(mine.Hardware.Data.Root, "services", "current", "dnsmasq.conf")), Does.Contain("games.example"));
        Assert.That((await server.Store.ListAuditAsync(10)).First(a => a.Action == "unit.service-config").Actor, Is.EqualTo(DemoCatalogue.OperatorName));
    }

    /// <summary>A server with subscriber alice, her unit (not running: nothing here needs it) and the operator's first revision.</summary>
    internal static async Task<(TestServer Server, OperatorClient Operator, HttpClient Alice, string Mac)> AliceAsync()
    {
        var server = await TestServer.StartAsync();
        var client = server.Operator();
        await client.SendJsonAsync(HttpMethod.Post, "/api/v1/subscribers", new NewSubscriber("alice", "alice-password"), CancellationToken.None);
        var mac = server.Identity(1).Mac;
        await client.RegisterAsync(TestServer.Registration(server.Identity(1)) with { Subscriber = "alice" }, CancellationToken.None);
        await client.SendJsonAsync(HttpMethod.Put, $"/api/v1/units/{mac}/service-config", DemoCatalogue.StandardServices, CancellationToken.None);
        var http = server.PinnedHttp();
        var token = (await (await http.PostAsJsonAsync("/api/v1/subscriber/token", new SubscriberLogin("alice", "alice-password"))).Content.ReadFromJsonAsync<TokenResponse>())!;
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token.Token);
        return (server, client, http, mac);
    }

    /// <summary>Everything a refused request must leave as it was: the unit's revisions and the audit log.</summary>
    internal static async Task<string> SnapshotAsync(TestServer server, string mac) =>
        JsonSerializer.Serialize(new
        {
            configs = (await server.Store.ServiceConfigs.ListUnitConfigsAsync(mac)).Select(c => new { c.Revision, c.Status, c.Document, c.Origin }),
            audit = (await server.Store.ListAuditAsync(1000)).Select(a => new { a.Id, a.Action, a.Target, a.Detail }),
        });

    private static async Task AssertRefusedAsync(HttpResponseMessage response, HttpStatusCode status, string field)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(status), body);
        Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"), body);
        var problem = JsonNode.Parse(body)!;
        Assert.That(problem["field"]?.GetValue<string>(), Is.EqualTo(field), body);
        Assert.That(problem["detail"]?.GetValue<string>(), Does.StartWith(field + ": "), body);
    }

    private static IEnumerable<TestCaseData> Injections()
    {
        var s = DemoCatalogue.StandardServices;
        JsonNode Doc(ServiceConfiguration c) => JsonNode.Parse(JsonSerializer.Serialize(c, ProtocolJson.Default.ServiceConfiguration))!;
        yield return new TestCaseData(Doc(s with { Dhcp = s.Dhcp with { LeaseTime = "12h\ndhcp-script=/tmp/pwn" } }), "dhcp.leaseTime").SetName("{m}(leaseTime: dhcp-script)");
        yield return new TestCaseData(Doc(s with { Dhcp = s.Dhcp with { StaticLeases = [new StaticLease("02:00:00:00:00:09", "192.168.10.9", "printer\nconf-dir=/tmp")] } }),
            "dhcp.staticLeases[0].hostname").SetName("{m}(hostname: conf-dir)");
        yield return new TestCaseData(Doc(s with { Dhcp = s.Dhcp with { StaticLeases = [new StaticLease("02:00:00:00:00:09", "192.168.10.9", "printer\r\nserver=/#/203.0.113.66")] } }),
            "dhcp.staticLeases[0].hostname").SetName("{m}(hostname: server)");
        yield return new TestCaseData(Doc(s with { Dhcp = s.Dhcp with { LeaseTime = "12h,set:x" } }), "dhcp.leaseTime").SetName("{m}(leaseTime: comma)");
        var nullLease = Doc(s);
        nullLease["dhcp"]!["staticLeases"] = new JsonArray(Doc(s with { Dhcp = s.Dhcp with { StaticLeases = [new StaticLease("02:00:00:00:00:09", "192.168.10.9", null)] } })["dhcp"]!["staticLeases"]![0]!.DeepClone(), null);
        yield return new TestCaseData(nullLease, "dhcp.staticLeases[1]").SetName("{m}(null static lease)");
        var nullForward = Doc(s);
        nullForward["firewall"]!["portForwards"] = new JsonArray((JsonNode?)null);
        yield return new TestCaseData(nullForward, "firewall.portForwards[0]").SetName("{m}(null port forward)");
        var nullPeer = Doc(s);
        nullPeer["vpn"]!["peers"] = new JsonArray((JsonNode?)null);
        yield return new TestCaseData(nullPeer, "vpn.peers[0]").SetName("{m}(null peer)");
    }

    [TestCaseSource(nameof(Injections))]
    public async Task A_subscribers_injection_is_refused_naming_the_field_and_nothing_is_stored(JsonNode document, string field)
    {
        var (server, client, alice, mac) = await AliceAsync();
        await using var _ = server;
        using var __ = client;
        using var ___ = alice;
        var before = await SnapshotAsync(server, mac);
        var response = await alice.PutAsync($"/api/v1/subscriber/units/{mac}/service-config",
            new StringContent(document.ToJsonString(), Encoding.UTF8, "application/json"));
        await AssertRefusedAsync(response, HttpStatusCode.BadRequest, field);
        Assert.That(await SnapshotAsync(server, mac), Is.EqualTo(before), "a refused change stores nothing and audits nothing");
    }

    [Test]
    public async Task A_subscriber_may_change_only_what_the_contract_allows_and_the_operator_may_change_the_rest()
    {
        var (server, client, alice, mac) = await AliceAsync();
        await using var _ = server;
        using var __ = client;
        using var ___ = alice;
        var s = DemoCatalogue.StandardServices;
        var standard = JsonNode.Parse(await client.SendAsync(HttpMethod.Get, "/api/v1/contracts/standard", null, CancellationToken.None))!;
        Assert.That(standard["subscriberFields"]!.AsArray().Select(f => f!.GetValue<string>()), Is.EqualTo(new[]
        {
            "firewall.portForwards", "dhcp.lanAddress", "dhcp.prefixLength", "dhcp.rangeStart", "dhcp.rangeEnd", "contentFilter.enabled", "contentFilter.blockedDomains", "contentFilter.categories", "vpn.peers",
        }), "the default contract is what the portal edits");

        var start = (await server.Store.ServiceConfigs.ListUnitConfigsAsync(mac)).Count;
        var before = await SnapshotAsync(server, mac);
        var refused = new (ServiceConfiguration Config, string Field)[]
        {
            (s with { Dns = s.Dns with { Upstreams = ["203.0.113.66"] } }, "dns.upstreams"),
            (s with { Vpn = s.Vpn with { Enabled = true, Address = "10.9.0.1/24" } }, "vpn.enabled"),
            (s with { Cache = new CacheConfig(true, 1_048_576) }, "cache.enabled"),
            (s with { Cache = new CacheConfig(false, 1_048_576) }, "cache.sizeMegabytes"),
            (s with { Firewall = s.Firewall with { DefaultInbound = "reject" } }, "firewall.defaultInbound"),
            (s with { ContentFilter = s.ContentFilter with { BlockedAddresses = ["198.51.100.0/24"] } }, "contentFilter.blockedAddresses"),
            // an allowed change does not carry a forbidden one along
            (s with { Firewall = s.Firewall with { PortForwards = [] }, Dhcp = s.Dhcp with { LeaseTime = "1h" } }, "dhcp.leaseTime"),
        };
        foreach (var (config, field) in refused)
        {
            await AssertRefusedAsync(await alice.PutAsJsonAsync($"/api/v1/subscriber/units/{mac}/service-config", config), HttpStatusCode.Forbidden, field);
        }
        Assert.That(await SnapshotAsync(server, mac), Is.EqualTo(before), "refused changes store nothing");

        var allowed = s with { Firewall = s.Firewall with { PortForwards = [.. s.Firewall.PortForwards, new PortForward("udp", 27015, "192.168.10.30", 27015)] } };
        var ok = await alice.PutAsJsonAsync($"/api/v1/subscriber/units/{mac}/service-config", allowed);
        Assert.That(ok.StatusCode, Is.EqualTo(HttpStatusCode.OK), await ok.Content.ReadAsStringAsync());

        // the operator changes what the subscriber may not
        var operatorChange = allowed with { Dns = allowed.Dns with { Upstreams = ["203.0.113.53"] }, Vpn = allowed.Vpn with { Enabled = true, Address = "10.9.0.1/24" }, Cache = new CacheConfig(true, 2048) };
        await client.SendJsonAsync(HttpMethod.Put, $"/api/v1/units/{mac}/service-config", operatorChange, CancellationToken.None);
        Assert.That((await server.Store.ServiceConfigs.ListUnitConfigsAsync(mac)).Skip(start).Select(c => c.Origin), Is.EqualTo(new[] { "subscriber", "operator" }));
        Assert.That((await server.Store.ServiceConfigs.ListUnitConfigsAsync(mac))[^1].Document, Does.Contain("203.0.113.53").And.Contain("\"sizeMegabytes\":2048"));

        // a contract that leaves the DNS upstreams to the subscriber
        var bad = Assert.ThrowsAsync<OperatorApiException>(() => client.SendJsonAsync(HttpMethod.Put, "/api/v1/contracts/premium",
            new ContractRequest(["dns.upstreams", "dns.servers"]), CancellationToken.None));
        Assert.That(bad!.Status, Is.EqualTo(400));
        Assert.That(bad.Message + bad.Body, Does.Contain("subscriberFields[1]"));
        await client.SendJsonAsync(HttpMethod.Put, "/api/v1/contracts/premium", new ContractRequest([.. ServiceConfigFieldsDefault, "dns.upstreams"]), CancellationToken.None);
        await client.SendJsonAsync(HttpMethod.Post, "/api/v1/subscribers", new NewSubscriber("alice", "alice-password", "premium"), CancellationToken.None);
        var current = (await alice.GetFromJsonAsync<SubscriberConfigView>($"/api/v1/subscriber/units/{mac}/service-config"))!.Configuration!;
        var mine = await alice.PutAsJsonAsync($"/api/v1/subscriber/units/{mac}/service-config", current with { Dns = current.Dns with { Upstreams = ["192.0.2.54"] } });
        Assert.That(mine.StatusCode, Is.EqualTo(HttpStatusCode.OK), await mine.Content.ReadAsStringAsync());
        await AssertRefusedAsync(await alice.PutAsJsonAsync($"/api/v1/subscriber/units/{mac}/service-config", current with { Cache = new CacheConfig(false, 0) }),
            HttpStatusCode.Forbidden, "cache.enabled");
        Assert.That((await server.Store.ServiceConfigs.ListUnitConfigsAsync(mac)).Skip(start).Select(c => c.Origin), Is.EqualTo(new[] { "subscriber", "operator", "subscriber" }));
    }

    private static readonly string[] ServiceConfigFieldsDefault =
        ["firewall.portForwards", "dhcp.lanAddress", "dhcp.prefixLength", "dhcp.rangeStart", "dhcp.rangeEnd", "contentFilter.enabled", "contentFilter.blockedDomains", "contentFilter.categories", "vpn.peers"];

    [Test]
    public async Task A_registration_with_a_domain_that_is_not_a_domain_name_is_refused()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Operator();
        // 10 MB: past the request body limit, refused before anything is read into a registration (413, or the
        // connection closed while the client still sends)
        var huge = string.Join('.', Enumerable.Repeat(new string('a', 63), 10 * 1024 * 1024 / 64));
        var tooBig = Assert.CatchAsync(() => client.RegisterAsync(TestServer.Registration(server.Identity(1)) with { Domain = huge }, CancellationToken.None));
        Assert.That(tooBig, Is.InstanceOf<HttpRequestException>().Or.InstanceOf<OperatorApiException>().With.Property(nameof(OperatorApiException.Status)).EqualTo(413));
        // within the body limit, longer than a domain name may be: refused naming the field
        var longName = string.Join('.', Enumerable.Repeat(new string('a', 63), 5));
        var e = Assert.ThrowsAsync<OperatorApiException>(() => client.RegisterAsync(TestServer.Registration(server.Identity(1)) with { Domain = longName }, CancellationToken.None));
        Assert.That(e!.Status, Is.EqualTo(400));
        Assert.That(e.Message, Does.Contain("domain"));
        var newline = Assert.ThrowsAsync<OperatorApiException>(() => client.RegisterAsync(TestServer.Registration(server.Identity(1)) with { Domain = "unit.example\nx" }, CancellationToken.None));
        Assert.That(newline!.Status, Is.EqualTo(400));
        Assert.That(await server.Store.Units.GetUnitAsync(server.Identity(1).Mac), Is.Null);
    }
}
