using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Dapper;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet;
using MQTTnet.Formatter;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Push;
using Tsunagu.Server.Units.Lifecycle;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The device management table as a living record, on the real server and database: edits with revisions (a stale
/// edit changes nothing), decommissioning refused at every endpoint and the broker, replacement (RMA), subscriber
/// transfer, deletion of never-provisioned rows only, and the ISP passwords sealed at rest with a rotatable key.
/// </summary>
[NonParallelizable]
public class UnitLifecycleTests
{
    [TearDown]
    public void TearDown() => TestServer.DatabaseKind.Value = "sqlite";

    private static async Task<HttpResponseMessage> SendAsync(HttpClient http, HttpMethod method, string path, object? body, long? ifMatch = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (body is not null) { request.Content = JsonContent.Create(body, options: JsonSerializerOptions.Web); }
        if (ifMatch is { } r) { request.Headers.TryAddWithoutValidation("If-Match", $"\"{r}\""); }
        return await http.SendAsync(request);
    }

    private static async Task<UnitRecordView> RecordAsync(HttpClient http, string mac) =>
        (await http.GetFromJsonAsync<UnitRecordView>($"{Routes.Units}/{mac}/record", JsonSerializerOptions.Web))!;

    private static async Task<List<UnitRevisionView>> RevisionsAsync(HttpClient http, string mac) =>
        (await http.GetFromJsonAsync<List<UnitRevisionView>>($"{Routes.Units}/{mac}/revisions", JsonSerializerOptions.Web))!;

    private static async Task<string> ProvisionalTokenAsync(TestServer server, string mac)
    {
        using var http = server.PinnedHttp();
        var challenge = (await (await http.PostAsJsonAsync(Routes.ProvisioningChallenge, new ChallengeRequest(mac))).Content.ReadFromJsonAsync<ChallengeResponse>())!;
        var proof = UnitCredentials.ComputeProof(UnitCredentials.DeriveUnitSecret(server.UnitKey, mac), ProofPurpose.Provisional, mac, challenge.ChallengeId, challenge.Nonce);
        var answer = await http.PostAsJsonAsync(Routes.ProvisioningSession, new SessionRequest(mac, challenge.ChallengeId, proof));
        Assert.That(answer.StatusCode, Is.EqualTo(HttpStatusCode.OK), await answer.Content.ReadAsStringAsync());
        return (await answer.Content.ReadFromJsonAsync<SessionResponse>())!.Token;
    }

    private static async Task<HttpStatusCode> WithTokenAsync(TestServer server, string token, HttpMethod method, string path, object? body = null)
    {
        using var http = server.PinnedHttp();
        using var request = new HttpRequestMessage(method, path);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        if (body is not null) { request.Content = JsonContent.Create(body); }
        using var response = await http.SendAsync(request);
        return response.StatusCode;
    }

    private static Task<HttpStatusCode> HostSessionStatusAsync(TestServer server, string mac) =>
        SessionStatusAsync(server, mac, Routes.HostChallenge, Routes.HostSession, ProofPurpose.Host);

    private static Task<HttpStatusCode> ProvisioningSessionStatusAsync(TestServer server, string mac) =>
        SessionStatusAsync(server, mac, Routes.ProvisioningChallenge, Routes.ProvisioningSession, ProofPurpose.Provisional);

    /// <summary>A challenge of <paramref name="challengeRoute"/> answered with the unit's right proof at <paramref name="sessionRoute"/>: the session's status.</summary>
    private static async Task<HttpStatusCode> SessionStatusAsync(TestServer server, string mac, string challengeRoute, string sessionRoute, string purpose)
    {
        using var http = server.PinnedHttp();
        var challenge = (await (await http.PostAsJsonAsync(challengeRoute, new ChallengeRequest(mac))).Content.ReadFromJsonAsync<ChallengeResponse>())!;
        var proof = UnitCredentials.ComputeProof(UnitCredentials.DeriveUnitSecret(server.UnitKey, mac), purpose, mac, challenge.ChallengeId, challenge.Nonce);
        using var answer = await http.PostAsJsonAsync(sessionRoute, new SessionRequest(mac, challenge.ChallengeId, proof));
        return answer.StatusCode;
    }

    /// <summary>The whole row and its configurations and revisions, to compare before and after a refused change.</summary>
    private static string Snapshot(TestServer server, string mac)
    {
        using var c = server.Store.Database.Open();
        var unit = c.QuerySingle("SELECT * FROM units WHERE mac = @mac", new { mac });
        var configs = c.Query("SELECT revision, document FROM unit_configs WHERE mac = @mac ORDER BY revision", new { mac });
        var revisions = c.Query("SELECT revision, action, changes FROM unit_revisions WHERE mac = @mac ORDER BY id", new { mac });
        return JsonSerializer.Serialize(new { unit, configs, revisions });
    }

    [TestCase("sqlite")]
    [TestCase("postgres")]
    public async Task An_edit_at_the_current_revision_is_recorded_and_a_stale_or_invalid_edit_changes_nothing(string database)
    {
        TestServer.DatabaseKind.Value = database;
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = server.OperatorHttp("tsunagu-cli");
        var record = await RecordAsync(http, mac);
        Assert.That(record.Revision, Is.EqualTo(1));
        Assert.That(record.IspPasswordSet, Is.True);

        using (var missing = await SendAsync(http, HttpMethod.Patch, $"{Routes.Units}/{mac}/record", new UnitEditRequest(Domain: "x.example")))
        {
            Assert.That((int)missing.StatusCode, Is.EqualTo(428), "an edit without If-Match is refused");
        }
        using (var ok = await SendAsync(http, HttpMethod.Patch, $"{Routes.Units}/{mac}/record",
                   new UnitEditRequest(Domain: "new.example", IspPassword: "n3w-isp-Pa55word", Subscriber: "alice"), ifMatch: 1))
        {
            Assert.That(ok.StatusCode, Is.EqualTo(HttpStatusCode.OK), await ok.Content.ReadAsStringAsync());
            Assert.That(ok.Headers.ETag?.Tag, Is.EqualTo("\"2\""));
        }
        Assert.That(server.Store.Lifecycle.IspPasswordOf((await server.Store.Units.GetUnitAsync(mac))!), Is.EqualTo("n3w-isp-Pa55word"));
        var before = Snapshot(server, mac);

        using (var stale = await SendAsync(http, HttpMethod.Patch, $"{Routes.Units}/{mac}/record", new UnitEditRequest(Domain: "stale.example", IspPassword: "other"), ifMatch: 1))
        {
            Assert.That(stale.StatusCode, Is.EqualTo(HttpStatusCode.Conflict), await stale.Content.ReadAsStringAsync());
        }
        using (var invalid = await SendAsync(http, HttpMethod.Patch, $"{Routes.Units}/{mac}/record", new UnitEditRequest(Domain: "bad domain\n", IspMethod: "carrier-pigeon"), ifMatch: 2))
        {
            Assert.That(invalid.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), await invalid.Content.ReadAsStringAsync());
        }
        using (var noPassword = await SendAsync(http, HttpMethod.Patch, $"{Routes.Units}/{mac}/record", new UnitEditRequest(IspPassword: ""), ifMatch: 2))
        {
            Assert.That(noPassword.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), "a pppoe account needs its password: same rules as registration");
        }
        Assert.That(Snapshot(server, mac), Is.EqualTo(before), "a refused edit changes nothing: row, configurations, revisions");

        var revisions = await RevisionsAsync(http, mac);
        Assert.That(revisions.Select(r => r.Revision), Is.EqualTo(new long[] { 2 }));
        Assert.That(revisions[0].Actor, Is.EqualTo(DemoCatalogue.OperatorName));
        Assert.That(revisions[0].Changes.Select(c => c.Field), Is.EquivalentTo(new[] { "domain", "isp.password", "subscriber" }));
        var secret = revisions[0].Changes.Single(c => c.Field == "isp.password");
        Assert.That((secret.Secret, secret.From, secret.To), Is.EqualTo((true, (string?)null, (string?)null)), "a secret's values never enter the history");
        using var c = server.Store.Database.Open();
        Assert.That(c.ExecuteScalar<string>("SELECT changes FROM unit_revisions WHERE mac = @mac", new { mac }), Does.Not.Contain("n3w-isp"));
        Assert.That((await server.Store.ListAuditAsync(target: mac)).Select(a => a.Action), Does.Contain("unit.edit"));
    }

    [Test]
    public async Task A_decommissioned_unit_is_refused_at_every_endpoint_and_dropped_by_the_embedded_broker()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        var provisional = await ProvisionalTokenAsync(server, mac);
        var session = await server.HostSessionAsync(mac);
        var artifact = (await server.Store.Catalogue.FindUpdateProgramAsync(DemoCatalogue.Pattern1))!.ArtifactSha256;
        Assert.That(await WithTokenAsync(server, session.Token, HttpMethod.Get, $"{Routes.Artifacts}/{artifact}"), Is.EqualTo(HttpStatusCode.OK), "before: the artifact is served");
        Assert.That(await WithTokenAsync(server, provisional, HttpMethod.Get, Routes.ProvisioningSettings), Is.EqualTo(HttpStatusCode.OK), "before: settings are served");

        var broker = server.App.Services.GetRequiredService<EmbeddedBroker>();
        using var held = new MqttClientFactory().CreateMqttClient();
        var login = BrokerPortTests.UnitOptions("127.0.0.1", broker.Port, server.Pin).WithProtocolVersion(MqttProtocolVersion.V500)
            .WithClientId(UnitCredentials.BrokerClientId(mac)).WithCredentials(UnitCredentials.BrokerUsername(mac), session.PushPassword)
            .WithKeepAlivePeriod(TimeSpan.FromSeconds(30)).WithTimeout(TimeSpan.FromSeconds(20)).Build();
        Assert.That((await held.ConnectAsync(login)).ResultCode, Is.EqualTo(MqttClientConnectResultCode.Success));

        using var http = server.OperatorHttp("tsunagu-cli");
        using (var stale = await SendAsync(http, HttpMethod.Post, $"{Routes.Units}/{mac}/decommission", new DecommissionRequest("stale"), ifMatch: 9))
        {
            Assert.That(stale.StatusCode, Is.EqualTo(HttpStatusCode.Conflict));
        }
        Assert.That((await server.Store.Units.GetUnitAsync(mac))!.DecommissionedAt, Is.Null, "a stale decommission changes nothing");
        using (var done = await SendAsync(http, HttpMethod.Post, $"{Routes.Units}/{mac}/decommission", new DecommissionRequest("returned by the subscriber")))
        {
            Assert.That(done.StatusCode, Is.EqualTo(HttpStatusCode.OK), await done.Content.ReadAsStringAsync());
        }
        // the session is dropped at once, not at the next sweep
        await server.WaitForAsync(() => !held.IsConnected, "the decommissioned unit's broker session to be dropped", TimeSpan.FromSeconds(10));
        using (var again = new MqttClientFactory().CreateMqttClient())
        {
            MqttClientConnectResultCode code;
            try { code = (await again.ConnectAsync(login)).ResultCode; }
            catch (MQTTnet.Adapter.MqttConnectingFailedException e) { TestContext.Out.WriteLine(e.Message); code = MqttClientConnectResultCode.NotAuthorized; }
            Assert.That(code, Is.Not.EqualTo(MqttClientConnectResultCode.Success), "its unexpired broker password is no longer accepted");
        }

        Assert.That(await HostSessionStatusAsync(server, mac), Is.EqualTo(HttpStatusCode.Unauthorized), "authentication");
        Assert.That(await WithTokenAsync(server, session.Token, HttpMethod.Post, Routes.VersionCheck, new { }), Is.EqualTo(HttpStatusCode.Unauthorized), "host API with a token issued before");
        Assert.That(await WithTokenAsync(server, session.Token, HttpMethod.Get, $"{Routes.Artifacts}/{artifact}"), Is.EqualTo(HttpStatusCode.Unauthorized), "artifact download");
        Assert.That(await WithTokenAsync(server, session.Token, HttpMethod.Get, Routes.ServiceConfig), Is.EqualTo(HttpStatusCode.Unauthorized), "service configuration");
        Assert.That(await WithTokenAsync(server, provisional, HttpMethod.Get, Routes.ProvisioningSettings), Is.EqualTo(HttpStatusCode.Unauthorized), "provisioning");

        var row = (await server.Store.Units.GetUnitAsync(mac))!;
        Assert.That((row.State, row.LastSeen is not null), Is.EqualTo((UnitStates.Decommissioned, true)), "the row stays, decommissioned");
        using (var edit = await SendAsync(http, HttpMethod.Patch, $"{Routes.Units}/{mac}/record", new UnitEditRequest(Domain: "x.example"), ifMatch: row.Revision))
        {
            Assert.That(edit.StatusCode, Is.EqualTo(HttpStatusCode.Conflict), "a decommissioned row cannot be edited");
        }
        using (var delete = await SendAsync(http, HttpMethod.Delete, $"{Routes.Units}/{mac}", null))
        {
            Assert.That(delete.StatusCode, Is.EqualTo(HttpStatusCode.Conflict), "a provisioned row is kept for audit");
        }
        Assert.That(await server.Store.Units.GetUnitAsync(mac), Is.Not.Null);
        Assert.That((await RevisionsAsync(http, mac)).Single().Action, Is.EqualTo("decommission"));
    }

    [Test]
    public async Task Every_unit_operation_of_the_OpenAPI_document_refuses_a_decommissioned_unit_whatever_it_held_before()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        var provisional = await ProvisionalTokenAsync(server, mac);
        var session = await server.HostSessionAsync(mac);
        var artifact = (await server.Store.Catalogue.FindUpdateProgramAsync(DemoCatalogue.Pattern1))!.ArtifactSha256;
        // two steady check nonces as the host hands them out: one spent before, one held for after
        var options = server.App.Services.GetRequiredService<Tsunagu.Server.ServerOptions>();
        var nonces = new[] { Tsunagu.Server.Units.SteadyChecks.SteadyCheckApi.NewNonce(mac, TimeProvider.System, options), Tsunagu.Server.Units.SteadyChecks.SteadyCheckApi.NewNonce(mac, TimeProvider.System, options) };
        foreach (var nonce in nonces) { await server.Store.Units.AddChallengeAsync(nonce); }
        var row = (await server.Store.Units.GetUnitAsync(mac))!;
        var inventory = new Inventory(row.HardwareVersion, "1.0", new Dictionary<string, string>());
        async Task<HttpStatusCode> SteadyAsync(Tsunagu.Server.Data.ChallengeRow nonce)
        {
            using var http = server.PinnedHttp();
            var proof = UnitCredentials.ComputeProof(UnitCredentials.DeriveUnitSecret(server.UnitKey, mac), ProofPurpose.SteadyCheck, mac, nonce.Id, nonce.Nonce);
            using var answer = await http.PostAsJsonAsync(Routes.SteadyCheck, new SteadyCheckRequest(mac, nonce.Id, proof, inventory, 0, null), ProtocolJson.Default.SteadyCheckRequest);
            return answer.StatusCode;
        }
        // every operation a unit calls, as the OpenAPI document lists them (a new one is walked here too): what each answers
        using var anonymous = server.PinnedHttp();
        var document = JsonNode.Parse(await anonymous.GetStringAsync("/openapi/v1.json"))!;
        async Task<List<(string Key, HttpStatusCode Status)>> WalkAsync(Tsunagu.Server.Data.ChallengeRow nonce)
        {
            var answers = new List<(string, HttpStatusCode)>();
            foreach (var (template, item) in document["paths"]!.AsObject())
            {
                if (!template.StartsWith(Routes.Prefix + "/host/", StringComparison.Ordinal) && !template.StartsWith(Routes.Prefix + "/provisioning/", StringComparison.Ordinal)) { continue; }
                foreach (var (verb, _) in item!.AsObject())
                {
                    var key = $"{verb.ToUpperInvariant()} {template}";
                    var path = template.Replace("{sha256}", artifact, StringComparison.Ordinal);
                    Assert.That(path, Does.Not.Contain("{"), $"{key}: a path parameter this test does not know");
                    if (template is Routes.HostChallenge or Routes.ProvisioningChallenge)
                    {
                        // a challenge is given to any MAC (it reveals nothing): what it is for is refused
                        using var challenge = await anonymous.PostAsJsonAsync(path, new ChallengeRequest(mac));
                        Assert.That(challenge.StatusCode, Is.EqualTo(HttpStatusCode.OK), key);
                        continue;
                    }
                    var token = template.StartsWith(Routes.Prefix + "/host/", StringComparison.Ordinal) ? session.Token : provisional;
                    answers.Add((key, template switch
                    {
                        Routes.HostSession => await HostSessionStatusAsync(server, mac),
                        Routes.ProvisioningSession => await ProvisioningSessionStatusAsync(server, mac),
                        Routes.SteadyCheck => await SteadyAsync(nonce),
                        _ => await WithTokenAsync(server, token, new HttpMethod(verb.ToUpperInvariant()), path, verb == "get" ? null : new { }),
                    }));
                }
            }
            return answers;
        }

        // before: each of them takes what the unit holds (answers of its own, a 400 for the empty bodies, never a 401)
        var walked = await WalkAsync(nonces[0]);
        Assert.That(walked.Select(a => a.Key), Is.SupersetOf(new[]
        {
            $"POST {Routes.HostSession}", $"POST {Routes.ProvisioningSession}", $"GET {Routes.ProvisioningSettings}", $"POST {Routes.VersionCheck}",
            $"POST {Routes.UpdateReport}", $"GET {Routes.Artifacts}/{{sha256}}", $"GET {Routes.ServiceConfig}", $"POST {Routes.ServiceConfigAck}",
            $"POST {Routes.Ready}", $"POST {Routes.MediaCheck}", $"POST {Routes.SteadyCheck}",
        }), "the document lists every unit operation");
        Assert.That(walked.Where(a => a.Status is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden || (int)a.Status >= 500), Is.Empty,
            "before: the unit's tokens, sessions and nonce are good");

        using var operatorHttp = server.OperatorHttp("tsunagu-cli");
        using (var done = await SendAsync(operatorHttp, HttpMethod.Post, $"{Routes.Units}/{mac}/decommission", new DecommissionRequest("stolen")))
        {
            Assert.That(done.StatusCode, Is.EqualTo(HttpStatusCode.OK), await done.Content.ReadAsStringAsync());
        }
        var before = Snapshot(server, mac);
        var after = await WalkAsync(nonces[1]);
        Assert.That(after.Select(a => a.Key), Is.EqualTo(walked.Select(a => a.Key)));
        Assert.That(after.Where(a => a.Status != HttpStatusCode.Unauthorized), Is.Empty, "a decommissioned unit is refused at every operation");
        Assert.That(Snapshot(server, mac), Is.EqualTo(before), "the refusals changed nothing of the unit");
    }

    [TestCase("sqlite")]
    [TestCase("postgres")]
    public async Task A_replacement_takes_over_subscriber_configuration_and_pattern_exactly_once(string database)
    {
        TestServer.DatabaseKind.Value = database;
        await using var server = await TestServer.StartAsync();
        var units = await server.AddUnitsAsync(2);
        var (oldMac, otherMac) = (units[0].Mac, units[1].Mac);
        using var http = server.OperatorHttp("tsunagu-cli");
        Assert.That((await SendAsync(http, HttpMethod.Patch, $"{Routes.Units}/{oldMac}/record", new UnitEditRequest(Subscriber: "alice", IspPassword: "alice-isp-pw"), 1)).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        await server.App.Services.GetRequiredService<Tsunagu.Server.Catalogue.CatalogueService>().SetTargetPatternAsync(oldMac, DemoCatalogue.Pattern2, "test");
        var config = (await server.Store.ServiceConfigs.ListUnitConfigsAsync(oldMac)).OrderBy(x => x.Revision).Last().Document;
        var newMac = SimulatedFleetMac(40);

        using (var taken = await SendAsync(http, HttpMethod.Post, $"{Routes.Units}/{oldMac}/replace", new ReplaceUnitRequest(otherMac, "RMA-1")))
        {
            Assert.That(taken.StatusCode, Is.EqualTo(HttpStatusCode.Conflict), "a MAC already registered cannot be the replacement");
        }
        Assert.That((await server.Store.Units.GetUnitAsync(oldMac))!.DecommissionedAt, Is.Null, "the refused replacement changed nothing");
        using (var replaced = await SendAsync(http, HttpMethod.Post, $"{Routes.Units}/{oldMac}/replace", new ReplaceUnitRequest(newMac, "RMA-1"), ifMatch: 2))
        {
            Assert.That(replaced.StatusCode, Is.EqualTo(HttpStatusCode.Created), await replaced.Content.ReadAsStringAsync());
        }
        var old = (await server.Store.Units.GetUnitAsync(oldMac))!;
        var fresh = (await server.Store.Units.GetUnitAsync(newMac))!;
        Assert.That((old.State, old.Subscriber, old.ReplacedBy), Is.EqualTo((UnitStates.Decommissioned, (string?)null, newMac)));
        Assert.That((fresh.Subscriber, fresh.TargetPattern, fresh.Serial, fresh.State), Is.EqualTo(("alice", DemoCatalogue.Pattern2, "RMA-1", UnitStates.Registered)));
        Assert.That(server.Store.Lifecycle.IspPasswordOf(fresh), Is.EqualTo("alice-isp-pw"), "the ISP account moves, resealed for the new unit");
        Assert.That((await server.Store.ServiceConfigs.ListUnitConfigsAsync(newMac)).Select(x => (x.Revision, x.Document)), Is.EqualTo(new[] { (1L, config) }), "the configuration, once");
        Assert.That((await server.Store.Units.QueryUnitsAsync(new UnitQuery(Subscriber: "alice"))).Select(u => u.Mac), Is.EqualTo(new[] { newMac }), "the subscriber is on exactly one unit");
        Assert.That((await server.Store.ListAuditAsync(target: oldMac)).Count(a => a.Action == "unit.replace"), Is.EqualTo(1));

        using (var twice = await SendAsync(http, HttpMethod.Post, $"{Routes.Units}/{oldMac}/replace", new ReplaceUnitRequest(SimulatedFleetMac(41), "RMA-2")))
        {
            Assert.That(twice.StatusCode, Is.EqualTo(HttpStatusCode.Conflict), "a decommissioned unit cannot be replaced again");
        }
        Assert.That(await server.Store.Units.GetUnitAsync(SimulatedFleetMac(41)), Is.Null);
        Assert.That(await HostSessionStatusAsync(server, oldMac), Is.EqualTo(HttpStatusCode.Unauthorized), "the old unit is refused");
        Assert.That((await server.HostSessionAsync(newMac)).Token, Is.Not.Empty, "the new unit authenticates");
    }

    private static string SimulatedFleetMac(int index) => Tsunagu.Cli.Fleet.SimulatedFleet.MacFor(index);

    [Test]
    public async Task A_subscriber_moves_with_their_configuration_and_only_never_provisioned_rows_are_deleted()
    {
        await using var server = await TestServer.StartAsync();
        var units = await server.AddUnitsAsync(3);
        var (from, to, other) = (units[0].Mac, units[1].Mac, units[2].Mac);
        using var http = server.OperatorHttp("tsunagu-cli");
        Assert.That((await SendAsync(http, HttpMethod.Patch, $"{Routes.Units}/{from}/record", new UnitEditRequest(Subscriber: "bob"), 1)).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await SendAsync(http, HttpMethod.Patch, $"{Routes.Units}/{other}/record", new UnitEditRequest(Subscriber: "carol"), 1)).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        var document = (await server.Store.ServiceConfigs.ListUnitConfigsAsync(from)).OrderBy(x => x.Revision).Last().Document;
        var before = Snapshot(server, other);
        using (var busy = await SendAsync(http, HttpMethod.Post, $"{Routes.Units}/{from}/transfer-subscriber", new TransferSubscriberRequest(other)))
        {
            Assert.That(busy.StatusCode, Is.EqualTo(HttpStatusCode.Conflict), "a unit with a subscriber does not take another");
        }
        Assert.That(Snapshot(server, other), Is.EqualTo(before));
        Assert.That((await server.Store.Units.GetUnitAsync(from))!.Subscriber, Is.EqualTo("bob"));
        using (var moved = await SendAsync(http, HttpMethod.Post, $"{Routes.Units}/{from}/transfer-subscriber", new TransferSubscriberRequest(to)))
        {
            Assert.That(moved.StatusCode, Is.EqualTo(HttpStatusCode.OK), await moved.Content.ReadAsStringAsync());
        }
        Assert.That((await server.Store.Units.QueryUnitsAsync(new UnitQuery(Subscriber: "bob"))).Select(u => u.Mac), Is.EqualTo(new[] { to }));
        Assert.That((await server.Store.Units.GetUnitAsync(from))!.Subscriber, Is.Null);
        Assert.That((await server.Store.ServiceConfigs.ListUnitConfigsAsync(to)).OrderBy(x => x.Revision).Last().Document, Is.EqualTo(document));
        Assert.That((await RevisionsAsync(http, to)).Last().Action, Is.EqualTo("transfer-in"));
        Assert.That((await RevisionsAsync(http, from)).Last().Action, Is.EqualTo("transfer-out"));

        // never provisioned: deleted with everything of it; once it has reached the server: kept
        using (var delete = await SendAsync(http, HttpMethod.Delete, $"{Routes.Units}/{to}", null))
        {
            Assert.That(delete.StatusCode, Is.EqualTo(HttpStatusCode.NoContent));
        }
        Assert.That((await server.Store.Units.GetUnitAsync(to), (await server.Store.ServiceConfigs.ListUnitConfigsAsync(to)).Count, (await server.Store.Lifecycle.ListUnitRevisionsAsync(to)).Count), Is.EqualTo(((UnitRow?)null, 0, 0)));
        await server.HostSessionAsync(from);
        using (var kept = await SendAsync(http, HttpMethod.Delete, $"{Routes.Units}/{from}", null))
        {
            Assert.That(kept.StatusCode, Is.EqualTo(HttpStatusCode.Conflict));
        }
        Assert.That(await server.Store.Units.GetUnitAsync(from), Is.Not.Null);
    }

    [TestCase("sqlite")]
    [TestCase("postgres")]
    public async Task A_delete_is_checked_at_its_revision_inside_its_transaction_and_a_stale_one_changes_nothing(string database)
    {
        TestServer.DatabaseKind.Value = database;
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = server.OperatorHttp("tsunagu-cli");
        var before = Snapshot(server, mac);
        using (var stale = await SendAsync(http, HttpMethod.Delete, $"{Routes.Units}/{mac}", null, ifMatch: 9))
        {
            Assert.That(stale.StatusCode, Is.EqualTo(HttpStatusCode.Conflict), await stale.Content.ReadAsStringAsync());
        }
        using (var bad = await SendAsync(http, HttpMethod.Delete, $"{Routes.Units}/{mac}", null, ifMatch: 0))
        {
            Assert.That(bad.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), "a revision is 1 or more");
        }
        Assert.That(Snapshot(server, mac), Is.EqualTo(before), "a refused delete changes nothing");

        // the operator deletes what they saw at revision 1; an edit commits while the delete waits at its transaction
        Task<HttpResponseMessage> delete;
        using (var hold = StoreSeam.HoldAt(server.Store, nameof(UnitLifecycleStore.DeleteUnitAsync)))
        {
            delete = SendAsync(http, HttpMethod.Delete, $"{Routes.Units}/{mac}", null, ifMatch: 1);
            await hold.Reached.WaitAsync(TimeSpan.FromSeconds(60));
            using (var edit = await SendAsync(http, HttpMethod.Patch, $"{Routes.Units}/{mac}/record", new UnitEditRequest(Domain: "edited.example"), ifMatch: 1))
            {
                Assert.That(edit.StatusCode, Is.EqualTo(HttpStatusCode.OK), await edit.Content.ReadAsStringAsync());
            }
            hold.Release();
            using var answer = await delete.WaitAsync(TimeSpan.FromSeconds(60));
            Assert.That(answer.StatusCode, Is.EqualTo(HttpStatusCode.Conflict), "the edit made since is not deleted silently: " + await answer.Content.ReadAsStringAsync());
        }
        var row = await server.Store.Units.GetUnitAsync(mac);
        Assert.That((row?.Revision, row?.Domain), Is.EqualTo(((long?)2, "edited.example")), "the edited row stays");
        Assert.That((await server.Store.ListAuditAsync(target: mac)).Count(a => a.Action == "unit.delete"), Is.Zero);

        // at the revision it is at: deleted, once
        using (var done = await SendAsync(http, HttpMethod.Delete, $"{Routes.Units}/{mac}", null, ifMatch: 2))
        {
            Assert.That(done.StatusCode, Is.EqualTo(HttpStatusCode.NoContent), await done.Content.ReadAsStringAsync());
        }
        Assert.That(await server.Store.Units.GetUnitAsync(mac), Is.Null);
        Assert.That((await server.Store.ListAuditAsync(target: mac)).Count(a => a.Action == "unit.delete"), Is.EqualTo(1));
    }

    /// <summary>
    /// The delete passed authorisation and its If-Match check, and waits at its transaction (the store's seam) while the
    /// row is deleted by another request, or the unit's first contact marks it seen: the delete then finds the row gone
    /// (404) or no longer deletable (409), as documented; nothing else changes (every table as the other change left it),
    /// and never a 5xx.
    /// </summary>
    [TestCase("sqlite", "deleted", null)]
    [TestCase("sqlite", "deleted", 1L)]
    [TestCase("sqlite", "seen", null)]
    [TestCase("postgres", "deleted", null)]
    [TestCase("postgres", "deleted", 1L)]
    [TestCase("postgres", "seen", null)]
    public async Task A_delete_whose_row_goes_or_is_seen_after_its_authorisation_answers_404_or_409_and_changes_nothing_else(string database, string meanwhile, long? ifMatch)
    {
        TestServer.DatabaseKind.Value = database;
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = server.OperatorHttp("tsunagu-cli");
        Task<HttpResponseMessage> delete;
        string afterOther;
        using (var hold = StoreSeam.HoldAt(server.Store, nameof(UnitLifecycleStore.DeleteUnitAsync)))
        {
            delete = SendAsync(http, HttpMethod.Delete, $"{Routes.Units}/{mac}", null, ifMatch);
            await hold.Reached.WaitAsync(TimeSpan.FromSeconds(60));
            if (meanwhile == "deleted")
            {
                // the other delete runs its own transaction: the seam holds only the first call
                using var other = await SendAsync(http, HttpMethod.Delete, $"{Routes.Units}/{mac}", null, ifMatch: 1);
                Assert.That(other.StatusCode, Is.EqualTo(HttpStatusCode.NoContent), await other.Content.ReadAsStringAsync());
            }
            else
            {
                Assert.That(await HostSessionStatusAsync(server, mac), Is.EqualTo(HttpStatusCode.OK), "the unit's first contact");
                Assert.That((await server.Store.Units.GetUnitAsync(mac))!.LastSeen, Is.Not.Null, "it marked the row seen");
            }
            afterOther = HostileInputTests.Snapshot(server);
            hold.Release();
            using var answer = await delete.WaitAsync(TimeSpan.FromSeconds(60));
            var body = await answer.Content.ReadAsStringAsync();
            Assert.That((int)answer.StatusCode, Is.LessThan(500), body);
            if (meanwhile == "deleted")
            {
                Assert.That(answer.StatusCode, Is.EqualTo(HttpStatusCode.NotFound), body);
                Assert.That(body, Does.Contain($"unit {mac}"));
            }
            else
            {
                Assert.That(answer.StatusCode, Is.EqualTo(HttpStatusCode.Conflict), body);
                Assert.That(body, Does.Contain("decommission it instead"));
            }
        }
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(afterOther), "the refused delete changed nothing");
        Assert.That((await server.Store.ListAuditAsync(target: mac)).Count(a => a.Action == "unit.delete"), Is.EqualTo(meanwhile == "deleted" ? 1 : 0), "one delete, audited once");
        Assert.That(await server.Store.Units.GetUnitAsync(mac), meanwhile == "deleted" ? Is.Null : Is.Not.Null);
    }

    [Test]
    public async Task A_deleted_unit_is_dropped_by_the_embedded_broker_and_a_host_session_for_it_is_refused()
    {
        await using var server = await TestServer.StartAsync();
        var units = await server.AddUnitsAsync(2);
        var (mac, other) = (units[0].Mac, units[1].Mac);
        // a password a host session issued while the row was being deleted (the session marks the unit seen; this does not)
        var (password, _) = await server.App.Services.GetRequiredService<UnitBrokerLogins>().IssueAsync(mac, CancellationToken.None);
        var broker = server.App.Services.GetRequiredService<EmbeddedBroker>();
        using var held = new MqttClientFactory().CreateMqttClient();
        var login = BrokerPortTests.UnitOptions("127.0.0.1", broker.Port, server.Pin).WithProtocolVersion(MqttProtocolVersion.V500)
            .WithClientId(UnitCredentials.BrokerClientId(mac)).WithCredentials(UnitCredentials.BrokerUsername(mac), password)
            .WithKeepAlivePeriod(TimeSpan.FromSeconds(30)).WithTimeout(TimeSpan.FromSeconds(20)).Build();
        Assert.That((await held.ConnectAsync(login)).ResultCode, Is.EqualTo(MqttClientConnectResultCode.Success));
        Assert.That(await server.Store.Units.GetUnitAsync(mac), Is.Not.Null.And.Property(nameof(UnitRow.LastSeen)).Null, "still deletable");

        using var http = server.OperatorHttp("tsunagu-cli");
        using (var delete = await SendAsync(http, HttpMethod.Delete, $"{Routes.Units}/{mac}", null, ifMatch: 1))
        {
            Assert.That(delete.StatusCode, Is.EqualTo(HttpStatusCode.NoContent), await delete.Content.ReadAsStringAsync());
        }
        await server.WaitForAsync(() => !held.IsConnected, "the deleted unit's broker session to be dropped", TimeSpan.FromSeconds(20));
        Assert.That(await HostSessionStatusAsync(server, mac), Is.EqualTo(HttpStatusCode.Unauthorized), "no host session for a deleted row");
        Assert.That(await server.Store.Units.GetUnitAsync(mac), Is.Null, "a refused session makes no row");
        Assert.That(await HostSessionStatusAsync(server, other), Is.EqualTo(HttpStatusCode.OK), "another unit authenticates");
    }

    [Test]
    public async Task Isp_passwords_are_sealed_at_rest_plain_rows_are_sealed_at_start_and_the_key_rotates()
    {
        await using var server = await TestServer.StartAsync();
        var units = await server.AddUnitsAsync(2);
        var (mac, legacy) = (units[0].Mac, units[1].Mac);
        const string password = "Unmistakable-ISP-Secret-4711";
        const string legacyPassword = "Plain-Legacy-Secret-0815";
        using var http = server.OperatorHttp("tsunagu-cli");
        Assert.That((await SendAsync(http, HttpMethod.Patch, $"{Routes.Units}/{mac}/record", new UnitEditRequest(IspPassword: password), 1)).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        // a row as a server before sealing wrote it: the plain column
        using (var c = server.Store.Database.Open())
        {
            c.Execute("UPDATE units SET isp_password = @legacyPassword, isp_password_sealed = NULL WHERE mac = @legacy", new { legacyPassword, legacy });
        }
        Assert.That(await SecretRotation.SealAtStartAsync(server.Store), Is.EqualTo(1), "the start-up step seals the plain row, only it");

        var dbFile = Path.Combine(server.Root, "server", "tsunagu.db");
        string FileText()
        {
            using (var c = server.Store.Database.Open()) { c.Execute("PRAGMA wal_checkpoint(TRUNCATE)"); }
            return Encoding.Latin1.GetString(File.ReadAllBytes(dbFile)) + (File.Exists(dbFile + "-wal") ? Encoding.Latin1.GetString(File.ReadAllBytes(dbFile + "-wal")) : "");
        }
        Assert.That(FileText(), Does.Not.Contain(password).And.Not.Contain("secret@").And.Contain(server.Store.Secrets.CurrentId), "sealed values name their key");
        var provisional = await ProvisionalTokenAsync(server, legacy);
        using (var settingsHttp = server.PinnedHttp())
        {
            settingsHttp.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", provisional);
            var settings = (await settingsHttp.GetFromJsonAsync<UnitSettings>(Routes.ProvisioningSettings))!;
            Assert.That(settings.Isp.Password, Is.EqualTo(legacyPassword), "the unit still gets its password in its settings");
        }

        var keyFile = Path.Combine(server.Root, "server", "keys", SecretBox.FileName);
        var oldKey = File.ReadAllBytes(keyFile);
        var oldId = server.Store.Secrets.CurrentId;
        var rotated = (await (await SendAsync(http, HttpMethod.Post, UnitLifecycleApi.SecretsRotate, null)).Content.ReadFromJsonAsync<SecretRotationResult>(JsonSerializerOptions.Web))!;
        Assert.That(rotated.Resealed, Is.EqualTo(2));
        Assert.That(File.ReadAllBytes(keyFile), Is.Not.EqualTo(oldKey));
        Assert.That(File.Exists(keyFile + SecretBox.NextSuffix), Is.False);
        Assert.That(rotated.KeyId, Is.Not.EqualTo(oldId));
        using (var c = server.Store.Database.Open())
        {
            var ids = c.Query<string>("SELECT isp_password_sealed FROM units").Select(SecretBox.KeyIdOf).Distinct().ToList();
            Assert.That(ids, Is.EqualTo(new[] { rotated.KeyId }), "every row is under the new key");
        }
        Assert.That(server.Store.Lifecycle.IspPasswordOf((await server.Store.Units.GetUnitAsync(mac))!), Is.EqualTo(password));
        Assert.That(server.Store.Lifecycle.IspPasswordOf((await server.Store.Units.GetUnitAsync(legacy))!), Is.EqualTo(legacyPassword));
        var withOldKeyOnly = new Tsunagu.Server.Data.TsunaguStore(server.Store.Database, TimeProvider.System, LoadBox(oldKey));
        Assert.ThrowsAsync<SecretSealException>(async () => withOldKeyOnly.Lifecycle.IspPasswordOf((await server.Store.Units.GetUnitAsync(mac))!), "the old key opens nothing any more");
        Assert.That((await server.Store.ListAuditAsync()).Select(a => a.Action), Does.Contain("secrets.rotate"));
    }

    private static SecretBox LoadBox(byte[] key)
    {
        var dir = Path.Combine(Path.GetTempPath(), "tsunagu-key-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        File.WriteAllBytes(Path.Combine(dir, SecretBox.FileName), key);
        return SecretBox.LoadOrCreate(dir);
    }
}
