using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.RegularExpressions;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The unit's WireGuard key through the real server and a real supervisor: reported with the ready report, shown to the
/// operator (API, console) and the subscriber (API, portal), the same after a wipe of `data`; a bad report changes nothing.
/// </summary>
[NonParallelizable]
[TestFixture("sqlite")]
[TestFixture("postgres")]
public class VpnKeyTests(string database)
{
    private const string Subscriber = "alice";
    private const string SubscriberPassword = "alice-password";

    [SetUp]
    public void UseDatabase() => TestServer.DatabaseKind.Value = database;

    [Test]
    public async Task The_unit_reports_its_key_the_operator_and_the_subscriber_see_it_and_it_is_the_same_after_a_wipe_of_data()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Operator();
        await client.SendJsonAsync(HttpMethod.Post, "/api/v1/subscribers", new NewSubscriber(Subscriber, SubscriberPassword), CancellationToken.None);
        var identity = server.Identity(1);
        await client.RegisterAsync(TestServer.Registration(identity) with { Subscriber = Subscriber }, CancellationToken.None);
        await client.SendJsonAsync(HttpMethod.Put, $"/api/v1/units/{identity.Mac}/service-config",
            DemoCatalogue.StandardServices with { Vpn = new VpnConfig(true, 51820, "10.9.0.1/24", []) }, CancellationToken.None);
        var unit = await server.Fleet.AddUnitAsync(identity, CancellationToken.None);
        server.Fleet.Start(unit);
        await server.WaitReadyAsync(unit);
        await server.WaitForAsync(async () => (await server.Store.Units.GetUnitAsync(unit.Mac))?.VpnPublicKey is not null, "the host to have the unit's key");

        var keyFile = Path.Combine(unit.Hardware.Data.Root, "services", "state", "wireguard.key");
        var privateKey = File.ReadAllText(keyFile).Trim();
        var expected = await WgPubkeyAsync(privateKey);
        var view = (await client.ListUnitsAsync(null, null, CancellationToken.None)).Single(v => v.Mac == unit.Mac);
        Assert.That(view.Vpn, Is.Not.Null);
        Assert.Multiple(() =>
        {
            Assert.That(view.Vpn!.PublicKey, Is.EqualTo(expected), "the host has the public key of the key wg is given on the unit");
            Assert.That(view.Vpn.PublicKey, Is.EqualTo(WireGuardKeys.ToText(WireGuardKeys.PublicKey(
                WireGuardKeys.DerivePrivateKey(Convert.FromBase64String(identity.UnitSecret))))), "derived from the factory secret");
            Assert.That(view.Vpn.ListenPort, Is.EqualTo(51820));
            Assert.That(view.Vpn.EndpointAddress, Is.Not.Null.And.Not.Empty);
            Assert.That(view.Vpn.ReportedAt, Is.Not.Null);
        });

        using var console = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        var consolePage = WebUtility.HtmlDecode(await console.GetStringAsync($"/console/units/{unit.Mac}")); // Razor writes + and = as entities
        Assert.That(consolePage, Does.Contain(expected), "the console unit page shows the key");
        Assert.That(consolePage, Does.Contain($":51820"), "and the endpoint");

        using var portal = await PortalSession(server);
        var portalPage = WebUtility.HtmlDecode(await portal.GetStringAsync($"/portal/units/{unit.Mac}"));
        var vpnSection = portalPage[portalPage.IndexOf("id=\"vpn\"", StringComparison.Ordinal)..];
        Assert.That(vpnSection, Does.Contain(expected), "the portal shows the key where peers are added");
        Assert.That(vpnSection, Does.Contain(":51820"));
        Assert.That(vpnSection, Does.Contain("Add peer"));

        using var api = server.PinnedHttp();
        var token = (await (await api.PostAsJsonAsync("/api/v1/subscriber/token", new SubscriberLogin(Subscriber, SubscriberPassword))).Content.ReadFromJsonAsync<TokenResponse>())!;
        api.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token.Token);
        var mine = (await api.GetFromJsonAsync<List<UnitView>>("/api/v1/subscriber/units"))!.Single();
        Assert.That(mine.Vpn?.PublicKey, Is.EqualTo(expected), "the subscriber's API has it too");

        // the flash is wiped; the factory partition is not: the unit comes back with the same key, and the host is told
        var reportedAt = (await server.Store.Units.GetUnitAsync(unit.Mac))!.VpnReportedAt;
        await server.Fleet.PowerOffAsync(unit);
        Directory.Delete(unit.Hardware.Data.Root, recursive: true);
        server.Changes.Clear();
        server.Fleet.Start(unit);
        await server.WaitReadyAsync(unit);
        await server.WaitForAsync(async () => (await server.Store.Units.GetUnitAsync(unit.Mac))!.VpnReportedAt != reportedAt, "a new ready report after the wipe");
        Assert.That(server.ChainOf(unit.Mac), Does.Contain(Tsunagu.Firmware.Supervision.StateId.Provisional), "the unit provisioned again from its factory identity");
        Assert.That(File.ReadAllText(keyFile).Trim(), Is.EqualTo(privateKey), "the same private key on the rebuilt data partition");
        var after = (await client.ListUnitsAsync(null, null, CancellationToken.None)).Single(v => v.Mac == unit.Mac);
        Assert.That(after.Vpn?.PublicKey, Is.EqualTo(expected));
        Assert.That((await server.Store.History.ListUnitEventsAsync(unit.Mac)).Select(e => e.Detail), Has.None.Contains("public key changed"), "the key never changed");
    }

    internal static Inventory Factory() =>
        new(DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion, DemoCatalogue.FactoryApplications.ToDictionary(a => a.Key, a => a.Value));

    /// <summary>A client holding a host token of unit <paramref name="mac"/>.</summary>
    internal static async Task<HttpClient> UnitHttp(TestServer server, string mac)
    {
        var http = server.PinnedHttp();
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", (await server.HostSessionAsync(mac)).Token);
        return http;
    }

    /// <summary>Signs in to the portal with its log in form; returns a client holding the session cookie.</summary>
    private static async Task<HttpClient> PortalSession(TestServer server)
    {
        var http = new HttpClient(new SocketsHttpHandler
        {
            CookieContainer = new CookieContainer(), AllowAutoRedirect = false,
            SslOptions = { RemoteCertificateValidationCallback = TrustAnchor.Validator([server.Pin]) },
        })
        { BaseAddress = new Uri(server.Url) };
        var page = await http.GetStringAsync("/portal/login");
        string Field(string pattern) => Regex.Match(page, pattern).Groups[1].Value;
        var posted = await http.PostAsync("/portal/login", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            [Field("name=\"([^\"]*Name)\"")] = Subscriber,
            [Field("name=\"([^\"]*Password)\"")] = SubscriberPassword,
            ["__csrf"] = WebUtility.HtmlDecode(Field("name=\"__csrf\"[^>]*value=\"([^\"]+)\"")),
        }));
        Assert.That(posted.StatusCode, Is.EqualTo(HttpStatusCode.Redirect), "the subscriber signs in to the portal");
        return http;
    }

    /// <summary>`wg pubkey` of a private key (wireguard-tools: APT_PACKAGES in the Makefile).</summary>
    private static async Task<string> WgPubkeyAsync(string privateKey)
    {
        using var wg = Process.Start(new ProcessStartInfo("wg", "pubkey") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true })
                       ?? throw new InvalidOperationException("wg did not start");
        await wg.StandardInput.WriteLineAsync(privateKey);
        wg.StandardInput.Close();
        var output = await wg.StandardOutput.ReadToEndAsync();
        var error = await wg.StandardError.ReadToEndAsync();
        await wg.WaitForExitAsync();
        Assert.That(wg.ExitCode, Is.Zero, error);
        return output.Trim();
    }
}

/// <summary>The host's check of a unit's VPN report (its database snapshot compares SQLite files; the grammar is the server's, the same on both).</summary>
[NonParallelizable]
public class VpnReportInputTests
{
    [SetUp]
    public void UseDatabase() => TestServer.DatabaseKind.Value = "sqlite";

    [Test]
    public async Task A_hostile_or_malformed_vpn_report_is_refused_and_changes_nothing_and_an_older_unit_keeps_the_stored_key()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = await VpnKeyTests.UnitHttp(server, mac);
        var good = WireGuardKeys.ToText(WireGuardKeys.PublicKey(WireGuardKeys.DerivePrivateKey(new byte[32])));
        var other = WireGuardKeys.ToText(WireGuardKeys.PublicKey(WireGuardKeys.DerivePrivateKey(new byte[32].Select((_, i) => (byte)i).ToArray())));
        UnitVpnReport?[] hostile =
        [
            new(good[..43], 51820),
            new(good[..42] + "==", 51820),
            new(good + "A", 51820),
            new(Convert.ToBase64String(new byte[33]), 51820),
            new(good[..40] + "\n[P=", 51820),
            new(good[..20] + "\u0000" + good[21..], 51820),
            new(good.Replace(good[5], '-'), 51820),
            new("", 51820),
            new(null!, 51820),
            new(good, 0),
            new(good, 65536),
            new(good, -1),
        ];
        var before = HostileInputTests.Snapshot(server);
        foreach (var vpn in hostile)
        {
            using var refused = await http.PostAsJsonAsync(Routes.Ready, new ReadyReport(VpnKeyTests.Factory(), null, "203.0.113.7", vpn), ProtocolJson.Default.ReadyReport);
            Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), $"{vpn}: {await refused.Content.ReadAsStringAsync()}");
            if (vpn?.PublicKey is not null) { Assert.That(await refused.Content.ReadAsStringAsync(), Does.Contain("vpn."), "the problem names the field"); }
            Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), $"{vpn}: refused, but the database changed");
        }

        // wrong JSON types in the field: a 400 from the binder, never a 5xx, and nothing stored
        var inventory = System.Text.Json.JsonSerializer.Serialize(VpnKeyTests.Factory(), ProtocolJson.Default.Inventory);
        foreach (var vpn in new[] { "{\"publicKey\":123,\"listenPort\":51820}", $"{{\"publicKey\":\"{good}\",\"listenPort\":\"51820x\"}}", "\"key\"", "[]" })
        {
            using var content = new StringContent($"{{\"inventory\":{inventory},\"configRevision\":null,\"wanAddress\":null,\"vpn\":{vpn}}}", System.Text.Encoding.UTF8, "application/json");
            using var refused = await http.PostAsync(Routes.Ready, content);
            Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), $"{vpn}: {await refused.Content.ReadAsStringAsync()}");
            Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), $"{vpn}: refused, but the database changed");
        }

        using (var accepted = await http.PostAsJsonAsync(Routes.Ready, new ReadyReport(VpnKeyTests.Factory(), null, "203.0.113.7", new UnitVpnReport(good, null)), ProtocolJson.Default.ReadyReport))
        {
            Assert.That(accepted.StatusCode, Is.EqualTo(HttpStatusCode.OK), await accepted.Content.ReadAsStringAsync());
        }
        var row = (await server.Store.Units.GetUnitAsync(mac))!;
        Assert.That((row.VpnPublicKey, row.VpnListenPort, row.VpnEndpoint), Is.EqualTo((good, (long?)null, (string?)null)), "VPN off: a key, no port");
        Assert.That(row.VpnEndpointAddress, Is.Not.Null);

        // a unit older than the field sends no VPN report: accepted, and what the host had is kept
        using (var old = await http.PostAsJsonAsync(Routes.Ready, new ReadyReport(VpnKeyTests.Factory(), null, "203.0.113.7"), ProtocolJson.Default.ReadyReport))
        {
            Assert.That(old.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        }
        Assert.That((await server.Store.Units.GetUnitAsync(mac))!.VpnPublicKey, Is.EqualTo(good));

        // a new key (e.g. a replaced factory partition) is stored and named in the unit's history
        using (var changed = await http.PostAsJsonAsync(Routes.Ready, new ReadyReport(VpnKeyTests.Factory(), null, "203.0.113.7", new UnitVpnReport(other, 51821)), ProtocolJson.Default.ReadyReport))
        {
            Assert.That(changed.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        }
        row = (await server.Store.Units.GetUnitAsync(mac))!;
        Assert.That((row.VpnPublicKey, row.VpnListenPort), Is.EqualTo((other, (long?)51821)));
        Assert.That((await server.Store.History.ListUnitEventsAsync(mac)).Select(e => e.Detail), Has.Some.Contains($"public key changed from {good} to {other}"));
    }
}
