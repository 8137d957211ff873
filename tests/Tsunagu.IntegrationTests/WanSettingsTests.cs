using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Dapper;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server.Units.Lifecycle;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// A unit's WAN account in the device management table, on the real server and database: the grammar the unit applies
/// is applied at registration and edit (a refused account changes nothing), a static account's gateway and name servers
/// reach the unit's settings, and an edit of the account raises the settings revision the version check reports.
/// </summary>
public class WanSettingsTests
{
    private const string StaticMac = "02:54:53:00:0e:01";

    private static RegisterUnitRequest Static(WanAccount isp, string mac = StaticMac) =>
        new(mac, "WAN-0001", DemoCatalogue.HardwareVersion, isp, null, null, null, null, null, null);

    private static async Task<UnitSettings> SettingsAsync(TestServer server, string mac)
    {
        using var http = server.PinnedHttp();
        var challenge = (await (await http.PostAsJsonAsync(Routes.ProvisioningChallenge, new ChallengeRequest(mac))).Content.ReadFromJsonAsync<ChallengeResponse>())!;
        var proof = UnitCredentials.ComputeProof(UnitCredentials.DeriveUnitSecret(server.UnitKey, mac), ProofPurpose.Provisional, mac, challenge.ChallengeId, challenge.Nonce);
        var session = (await (await http.PostAsJsonAsync(Routes.ProvisioningSession, new SessionRequest(mac, challenge.ChallengeId, proof))).Content.ReadFromJsonAsync<SessionResponse>())!;
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", session.Token);
        return (await http.GetFromJsonAsync<UnitSettings>(Routes.ProvisioningSettings))!;
    }

    private static async Task<VersionCheckResponse> VersionCheckAsync(TestServer server, string mac)
    {
        var session = await server.HostSessionAsync(mac);
        using var http = server.PinnedHttp();
        using var request = new HttpRequestMessage(HttpMethod.Post, Routes.VersionCheck)
        {
            Content = JsonContent.Create(new VersionCheckRequest(new Inventory(DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion,
                DemoCatalogue.FactoryApplications), new UnitLoad(0, 0), false, null)),
            Headers = { Authorization = new AuthenticationHeaderValue("Bearer", session.Token) },
        };
        using var answer = await http.SendAsync(request);
        Assert.That(answer.StatusCode, Is.EqualTo(HttpStatusCode.OK), await answer.Content.ReadAsStringAsync());
        return (await answer.Content.ReadFromJsonAsync<VersionCheckResponse>())!;
    }

    private static string Units(TestServer server)
    {
        using var c = server.Store.Database.Open();
        return JsonSerializer.Serialize(c.Query("SELECT * FROM units ORDER BY mac").ToList());
    }

    [Test]
    public async Task A_static_units_settings_carry_its_gateway_and_name_servers()
    {
        await using var server = await TestServer.StartAsync();
        using var http = server.OperatorHttp("tsunagu-cli");
        using (var ok = await http.PostAsJsonAsync(Routes.Units, Static(new WanAccount("static", Address: "203.0.113.7/24", Gateway: "203.0.113.1",
                   Dns: ["192.0.2.53", "192.0.2.54"]))))
        {
            Assert.That(ok.StatusCode, Is.EqualTo(HttpStatusCode.Created).Or.EqualTo(HttpStatusCode.OK), await ok.Content.ReadAsStringAsync());
        }
        var settings = await SettingsAsync(server, StaticMac);
        Assert.That(settings.Isp.Method, Is.EqualTo("static"));
        Assert.That(settings.Isp.Address, Is.EqualTo("203.0.113.7/24"));
        Assert.That(settings.Isp.Gateway, Is.EqualTo("203.0.113.1"));
        Assert.That(settings.Isp.Dns, Is.EqualTo(new[] { "192.0.2.53", "192.0.2.54" }));
        Assert.That(settings.SettingsRevision, Is.EqualTo(1));
        Assert.That(WanAccountGrammar.Problem(settings.Isp), Is.Null, "what the server sends passes the unit's own check");
    }

    private static IEnumerable<TestCaseData> Hostile()
    {
        yield return new TestCaseData(new WanAccount("pppoe", "-x", "secret"), "username").SetName("an option-like user name");
        yield return new TestCaseData(new WanAccount("pppoe", "user@isp.example", "pa\nss"), "password").SetName("a control character in the password");
        yield return new TestCaseData(new WanAccount("pppoe", "user\u0001@isp.example", "secret"), "username").SetName("a control character in the user name");
        yield return new TestCaseData(new WanAccount("pppoe", "user@isp.example", "pa\"ss"), "password").SetName("a quote in the password");
        yield return new TestCaseData(new WanAccount("static", Address: "203.0.113.300", Gateway: "203.0.113.1"), "address").SetName("a bad static address");
        yield return new TestCaseData(new WanAccount("static", Address: "203.0.113.7", Gateway: "203.0.113.1 dev lo"), "gateway").SetName("a gateway with more words");
        yield return new TestCaseData(new WanAccount("static", Address: "203.0.113.7", Gateway: "203.0.113.1", Dns: ["192.0.2.53\nnameserver 6.6.6.6"]), "dns").SetName("a name server with a second line");
        yield return new TestCaseData(new WanAccount("static", Address: "203.0.113.7", Gateway: "203.0.113.1", Dns: ["1.1.1.1", "1.0.0.1", "8.8.8.8", "8.8.4.4"]), "dns").SetName("four name servers");
        yield return new TestCaseData(new WanAccount("static", Address: "203.0.113.7"), "gateway").SetName("a static account without gateway");
        yield return new TestCaseData(new WanAccount("dhcp", Gateway: "203.0.113.1"), "gateway").SetName("a gateway on a dhcp account");
        yield return new TestCaseData(new WanAccount("pppoe", "u1,x@isp", "secret"), "isp.username").SetName("a comma in the user name");
        // '$' of a regular expression matches before a final line feed: these passed the grammar once
        yield return new TestCaseData(new WanAccount("static", Address: "203.0.113.7\n", Gateway: "203.0.113.1"), "isp.address").SetName("an address ending in a line feed");
        yield return new TestCaseData(new WanAccount("static", Address: "203.0.113.7", Gateway: "203.0.113.1\n"), "isp.gateway").SetName("a gateway ending in a line feed");
        yield return new TestCaseData(new WanAccount("static", Address: "203.0.113.7", Gateway: "203.0.113.1", Dns: ["192.0.2.53\n"]), "isp.dns").SetName("a name server ending in a line feed");
    }

    [TestCaseSource(nameof(Hostile))]
    public async Task A_hostile_account_is_refused_at_registration_and_edit_and_changes_nothing(WanAccount isp, string field)
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = server.OperatorHttp("tsunagu-cli");
        var before = Units(server);

        using (var refused = await http.PostAsJsonAsync(Routes.Units, Static(isp)))
        {
            var text = await refused.Content.ReadAsStringAsync();
            Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), text);
            Assert.That(text, Does.Contain(field), "the message names the field");
        }
        using (var request = new HttpRequestMessage(HttpMethod.Patch, $"{Routes.Units}/{mac}/record"))
        {
            request.Content = JsonContent.Create(new UnitEditRequest(IspMethod: isp.Method, IspUsername: isp.Username, IspPassword: isp.Password,
                IpAddress: isp.Address, IspGateway: isp.Gateway, IspDns: isp.Dns), options: JsonSerializerOptions.Web);
            request.Headers.TryAddWithoutValidation("If-Match", "\"1\"");
            using var edit = await http.SendAsync(request);
            var text = await edit.Content.ReadAsStringAsync();
            Assert.That(edit.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), text);
            Assert.That(text, Does.Contain(field), "the edit's message names the field");
        }
        Assert.That(Units(server), Is.EqualTo(before), "a refused account changes no row and adds none");
    }

    [Test]
    public async Task An_edit_of_the_isp_password_raises_the_settings_revision_the_version_check_reports()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = server.OperatorHttp("tsunagu-cli");
        Assert.That((await VersionCheckAsync(server, mac)).SettingsRevision, Is.EqualTo(1));

        async Task EditAsync(UnitEditRequest edit, long revision)
        {
            using var request = new HttpRequestMessage(HttpMethod.Patch, $"{Routes.Units}/{mac}/record");
            request.Content = JsonContent.Create(edit, options: JsonSerializerOptions.Web);
            request.Headers.TryAddWithoutValidation("If-Match", $"\"{revision}\"");
            using var answer = await http.SendAsync(request);
            Assert.That(answer.StatusCode, Is.EqualTo(HttpStatusCode.OK), await answer.Content.ReadAsStringAsync());
        }
        await EditAsync(new UnitEditRequest(Domain: "other.example"), 1);
        Assert.That((await VersionCheckAsync(server, mac)).SettingsRevision, Is.EqualTo(1), "a field outside the WAN account leaves it");
        await EditAsync(new UnitEditRequest(IspPassword: "n3w-isp-Pa55word"), 2);
        Assert.That((await VersionCheckAsync(server, mac)).SettingsRevision, Is.EqualTo(2), "a new ISP password raises it");
        var settings = await SettingsAsync(server, mac);
        Assert.That((settings.SettingsRevision, settings.Isp.Password), Is.EqualTo((2, "n3w-isp-Pa55word")), "the settings carry the new revision with the new password");
        await EditAsync(new UnitEditRequest(IspMethod: "static", IpAddress: "203.0.113.7", IspGateway: "203.0.113.1", IspDns: ["192.0.2.53"],
            IspUsername: "", IspPassword: ""), 3);
        Assert.That((await VersionCheckAsync(server, mac)).SettingsRevision, Is.EqualTo(3), "a change of method, address, gateway and name servers raises it");
        Assert.That((await SettingsAsync(server, mac)).Isp, Is.EqualTo(new WanAccount("static", null, null, "203.0.113.7", "203.0.113.1", ["192.0.2.53"])).Using<WanAccount>(
            (a, b) => a.Method == b.Method && a.Address == b.Address && a.Gateway == b.Gateway && a.Dns!.SequenceEqual(b.Dns!) && a.Username == b.Username && a.Password == b.Password));
    }

    [Test]
    public async Task A_csv_table_sets_a_static_units_gateway_and_name_servers_and_one_wrong_wan_cell_refuses_the_whole_table()
    {
        await using var server = await TestServer.StartAsync();
        using var http = server.OperatorHttp("tsunagu-cli");
        const string header = "mac,serial,isp_method,isp_username,isp_password,ip_address,isp_gateway,isp_dns\n";
        const string good = "02:54:53:00:0e:02,WAN-2,static,,,203.0.113.8/24,203.0.113.1,\"192.0.2.53, 192.0.2.54\"\n";
        (string Row, string Field)[] wrong =
        [
            ("02:54:53:00:0e:03,WAN-3,pppoe,\"u3,x@isp\",pw3,,,\n", "isp.username"),
            ("02:54:53:00:0e:04,WAN-4,static,,,203.0.113.9,,\n", "isp.gateway"),
            ("02:54:53:00:0e:05,WAN-5,static,,,203.0.113.10,203.0.113.1,\"192.0.2.53\nnameserver 6.6.6.6\"\n", "isp.dns"),
            ("02:54:53:00:0e:06,WAN-6,static,,,203.0.113.11,203.0.113.1,192.0.2.1 192.0.2.2 192.0.2.3 192.0.2.4\n", "isp.dns"),
            ("02:54:53:00:0e:07,WAN-7,static,,,203.0.113.12,203.0.113.1,192.0.2.53\t192.0.2.54\n", "isp.dns"),
            ("02:54:53:00:0e:08,WAN-8,dhcp,,,,203.0.113.1,\n", "isp: gateway and dns belong to a static account"),
        ];
        var before = HostileInputTests.Snapshot(server);
        using (var refused = await http.PostAsync(Routes.Units + "/bulk", new StringContent(header + good + string.Concat(wrong.Select(w => w.Row)), Encoding.UTF8, "text/csv")))
        {
            var text = await refused.Content.ReadAsStringAsync();
            Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), text);
            var result = JsonSerializer.Deserialize<BulkRegisterResponse>(text, JsonSerializerOptions.Web)!;
            Assert.That(result.Registered, Is.Zero);
            Assert.That(result.Rows.Select(r => r.Error is null), Is.EqualTo(new[] { true }.Concat(wrong.Select(_ => false))), text);
            for (var i = 0; i < wrong.Length; i++)
            {
                Assert.That(result.Rows[i + 1].Error, Does.StartWith(wrong[i].Field), $"row {i + 1} names its field");
            }
        }
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "a table with a wrong row changes nothing");

        using (var ok = await http.PostAsync(Routes.Units + "/bulk", new StringContent(header + good, Encoding.UTF8, "text/csv")))
        {
            Assert.That(ok.StatusCode, Is.EqualTo(HttpStatusCode.OK), await ok.Content.ReadAsStringAsync());
        }
        var settings = await SettingsAsync(server, "02:54:53:00:0e:02");
        Assert.That((settings.Isp.Method, settings.Isp.Address, settings.Isp.Gateway), Is.EqualTo(("static", "203.0.113.8/24", "203.0.113.1")));
        Assert.That(settings.Isp.Dns, Is.EqualTo(new[] { "192.0.2.53", "192.0.2.54" }));
    }

    [Test]
    public async Task The_console_form_sets_a_static_units_gateway_and_name_servers_and_refuses_a_wrong_one_with_400_changing_nothing()
    {
        await using var server = await TestServer.StartAsync();
        using var console = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        var form = await console.GetStringAsync("/console/register");
        Assert.That(form, Does.Contain("name=\"Form.IspGateway\"").And.Contain("name=\"Form.IspDns\""));
        async Task<HttpResponseMessage> RegisterAsync(string gateway, string dns) =>
            await console.PostAsync("/console/register?handler=One", new FormUrlEncodedContent(new Dictionary<string, string>
            {
                ["Form.Mac"] = StaticMac, ["Form.Serial"] = "WAN-C1", ["Form.HardwareVersion"] = DemoCatalogue.HardwareVersion, ["Form.IspMethod"] = "static",
                ["Form.IpAddress"] = "203.0.113.20/24", ["Form.IspGateway"] = gateway, ["Form.IspDns"] = dns, ["__csrf"] = await RoleTests.Csrf(console),
            }));
        foreach (var (gateway, dns, field) in new[]
                 {
                     ("", "192.0.2.53", "isp.gateway"), ("203.0.113.1 dev lo", "192.0.2.53", "isp.gateway"),
                     ("203.0.113.1", "192.0.2.53\nnameserver 6.6.6.6", "isp.dns"), ("203.0.113.1", "192.0.2.53\u0007", "isp.dns"),
                 })
        {
            var before = HostileInputTests.Snapshot(server);
            using var refused = await RegisterAsync(gateway, dns);
            var text = await refused.Content.ReadAsStringAsync();
            Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), $"{gateway} / {dns}");
            Assert.That(text, Does.Contain(field), "the form comes back with the error naming the field");
            Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), $"{gateway} / {dns}: refused, but the database changed");
        }
        using (var ok = await RegisterAsync("203.0.113.1", "192.0.2.53 192.0.2.54"))
        {
            Assert.That(ok.StatusCode, Is.EqualTo(HttpStatusCode.Redirect), await ok.Content.ReadAsStringAsync());
        }
        var row = (await server.Store.Units.GetUnitAsync(StaticMac))!;
        Assert.That((row.IspMethod, row.IpAddress, row.IspGateway), Is.EqualTo(("static", "203.0.113.20/24", "203.0.113.1")));
        Assert.That(row.DnsList, Is.EqualTo(new[] { "192.0.2.53", "192.0.2.54" }));
        var unit = await console.GetStringAsync($"/console/units/{StaticMac}");
        Assert.That(unit, Does.Contain("<dd id=\"unit-gateway\">203.0.113.1</dd>").And.Contain("<dd id=\"unit-dns\">192.0.2.53 192.0.2.54</dd>"));
    }
}
