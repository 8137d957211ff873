using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using Dapper;
using Tsunagu.Cli.Fleet;
using Tsunagu.Demo;
using Tsunagu.Firmware.Supervision;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Fleet;
using Tsunagu.Server.Fleet.Rollouts;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// A Ready unit's periodic check against the real server on SQLite and PostgreSQL: one request when nothing changed,
/// writing what the ready report wrote; the full exchange, ending Ready, after a configuration change, an unknown nonce,
/// a server clock days ahead (its token and nonce expired), an offered update; hostile steady checks change nothing.
/// </summary>
[NonParallelizable]
public class SteadyCheckFlowTests
{
    /// <summary>The system's clock moved by <see cref="Offset"/> (the server's clock set ahead).</summary>
    internal sealed class OffsetTime : TimeProvider
    {
        public TimeSpan Offset { get; set; }
        public override DateTimeOffset GetUtcNow() => System.GetUtcNow() + Offset;
    }

    private ConcurrentQueue<(string Path, int Status)> _requests = new();

    /// <summary>How many requests the last <see cref="CheckAsync"/> returned: any more found later came after the unit was Ready.</summary>
    private int _returned;

    [SetUp]
    public void SetUp()
    {
        _requests = new();
        _returned = -1;
        var requests = _requests;
        TestServer.Middleware.Value = async (http, next) =>
        {
            await next(http);
            requests.Enqueue((http.Request.Path.Value ?? "", http.Response.StatusCode));
        };
    }

    [TearDown]
    public void TearDown()
    {
        TestServer.Middleware.Value = null;
        TestServer.Time.Value = null;
    }

    private static async Task<(TestServer Server, FleetUnit Unit)> StartAsync(string kind, OffsetTime? time = null)
    {
        TestServer.DatabaseKind.Value = kind;
        TestServer.Time.Value = time;
        var server = await TestServer.StartAsync(TestServer.FastUpdateOptions);
        Assert.That(server.Store.Database.Kind == DatabaseKind.Postgres, Is.EqualTo(kind == "postgres"), "the server runs on the database the case names");
        var unit = (await server.AddUnitsAsync(1))[0];
        // held on the factory pattern: nothing to offer until the target is cleared
        await server.Store.Units.SetTargetPatternAsync(unit.Mac, DemoCatalogue.Pattern1);
        server.Fleet.StartAll();
        await server.WaitReadyAsync(unit);
        await server.WaitForAsync(() => unit.Supervisor.Context.ReadyReported && unit.Supervisor.State == StateId.Ready, "the first ready report");
        return (server, unit);
    }

    /// <summary>
    /// One periodic check (not forced, as the unit's timer or a configuration push starts it): returns the requests the
    /// server answered from its start until the unit is Ready again with the host told.
    /// </summary>
    private async Task<List<(string Path, int Status)>> CheckAsync(TestServer server, FleetUnit unit)
    {
        var readies = server.ChainOf(unit.Mac).Count(s => s == StateId.Ready);
        // a request still on its way when the last check ended Ready was logged since: none may be
        if (_returned >= 0) { Assert.That(_requests, Has.Count.EqualTo(_returned), $"no request after the last check ended Ready: {Paths(_requests)}"); }
        _requests.Clear();
        unit.Supervisor.RequestCheck(forced: false);
        await server.WaitForAsync(() => server.ChainOf(unit.Mac).Count(s => s == StateId.Ready) > readies && unit.Supervisor.State == StateId.Ready &&
                                        unit.Supervisor.Context.ReadyReported &&
                                        _requests.Any(r => r.Status == 200 && r.Path is Routes.Ready or Routes.SteadyCheck),
            "the check to end Ready", TimeSpan.FromSeconds(60));
        List<(string Path, int Status)> requests = [.. _requests];
        _returned = requests.Count;
        return requests;
    }

    /// <summary>
    /// What a steady check reads and writes: the unit rows, the challenges and nonces, the history. A refused request
    /// leaves it as it was (a refused proof is audited: the audit log is not part of it).
    /// </summary>
    private static async Task<string> StateAsync(TestServer server)
    {
        await using var c = server.Store.Database.Open();
        var units = await c.QueryAsync<string>("SELECT mac || '|' || state || '|' || COALESCE(last_seen, '') || '|' || COALESCE(last_error, '') || '|' || COALESCE(inventory, '') || '|' || " +
                                               "COALESCE(wan_address, '') || '|' || COALESCE(vpn_reported_at, '') || '|' || COALESCE(cache_reported_at, '') FROM units ORDER BY mac");
        var challenges = await c.QueryAsync<string>("SELECT id || '|' || mac || '|' || purpose FROM challenges ORDER BY id");
        var events = await c.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM unit_events");
        return string.Join("\n", units) + "\n--\n" + string.Join("\n", challenges) + $"\n-- {events} events";
    }

    private static string Paths(IEnumerable<(string Path, int Status)> requests) => string.Join(", ", requests.Select(r => $"{r.Path.Split('/').Last()} {r.Status}"));

    [TestCase("sqlite")]
    [TestCase("postgres")]
    public async Task A_steady_units_periodic_check_is_one_request_that_writes_what_the_ready_report_wrote(string kind)
    {
        var (server, unit) = await StartAsync(kind);
        await using var _ = server;
        var configs = await server.Store.ServiceConfigs.ListUnitConfigsAsync(unit.Mac);
        var before = (await server.Store.Units.GetUnitAsync(unit.Mac))!;
        var events = (await server.Store.History.ListUnitEventsAsync(unit.Mac)).Count;
        for (var i = 0; i < 3; i++)
        {
            await Task.Delay(20);
            var requests = await CheckAsync(server, unit);
            TestContext.Out.WriteLine($"{kind} check {i + 1}: {Paths(requests)}");
            Assert.That(requests, Is.EqualTo(new[] { (Routes.SteadyCheck, 200) }), "exactly one request");
            var after = (await server.Store.Units.GetUnitAsync(unit.Mac))!;
            Assert.Multiple(() =>
            {
                Assert.That(after.State, Is.EqualTo(UnitStates.Ready));
                Assert.That(string.CompareOrdinal(after.LastSeen, before.LastSeen), Is.GreaterThan(0), "last seen moves as a ready report moves it");
                Assert.That(after.Inventory, Is.EqualTo(before.Inventory));
                Assert.That(after.Pattern, Is.EqualTo(DemoCatalogue.Pattern1));
                Assert.That(after.WanAddress, Is.EqualTo(before.WanAddress));
                Assert.That(after.LastError, Is.Null);
            });
            before = after;
        }
        var configsAfter = await server.Store.ServiceConfigs.ListUnitConfigsAsync(unit.Mac);
        Assert.That(configsAfter.Select(c => (c.Revision, c.Status)), Is.EqualTo(configs.Select(c => (c.Revision, c.Status))), "the configuration rows stay as the ready report left them");
        Assert.That(configsAfter.Count == 0 || configsAfter.MaxBy(c => c.Revision)!.Status == "final", Is.True, "the applied revision is final");
        var eventsAfter = await server.Store.History.ListUnitEventsAsync(unit.Mac);
        Assert.That(eventsAfter.Count - events, Is.EqualTo(1), "the ready history entry is written once (it differs from the ready report's), not repeated by every steady check");
        Assert.That(eventsAfter.MaxBy(e => e.Id)!.Kind, Is.EqualTo(UnitEventKinds.Ready));
        Assert.That(server.ChangesOf(unit.Mac).Where(c => c.From == StateId.SteadyCheck).Select(c => c.Outcome), Has.All.EqualTo(Outcome.NothingToDo));
        Assert.That(await CheckAsync(server, unit), Is.EqualTo(new[] { (Routes.SteadyCheck, 200) }), "and no request came after the last check");
    }

    [TestCase("sqlite")]
    [TestCase("postgres")]
    public async Task After_a_change_the_unit_runs_the_full_exchange_ends_Ready_and_its_next_check_is_one_request_again(string kind)
    {
        var time = new OffsetTime();
        var (server, unit) = await StartAsync(kind, time);
        await using var _ = server;
        Assert.That(await CheckAsync(server, unit), Is.EqualTo(new[] { (Routes.SteadyCheck, 200) }));

        async Task FullThenSteadyAsync(string change, int bound)
        {
            var full = await CheckAsync(server, unit);
            TestContext.Out.WriteLine($"{kind}, {change}: {Paths(full)}");
            Assert.Multiple(() =>
            {
                Assert.That(full.Select(r => r.Path), Does.Contain(Routes.VersionCheck), $"{change}: the full exchange");
                Assert.That(full.Last(), Is.EqualTo((Routes.Ready, 200)), $"{change}: it ends with the ready report");
                Assert.That(full, Has.Count.LessThanOrEqualTo(bound), $"{change}: requests of the check");
                Assert.That(full.Where(r => r.Status >= 500), Is.Empty, $"{change}: no server error");
            });
            var steady = await CheckAsync(server, unit);
            Assert.That(steady, Is.EqualTo(new[] { (Routes.SteadyCheck, 200) }), $"{change}: the next check is one request again");
            Assert.That((await server.Store.Units.GetUnitAsync(unit.Mac))!.State, Is.EqualTo(UnitStates.Ready));
        }

        // a new configuration revision: the steady check, challenge, session, version check, configuration, ack, ready
        var revision = await server.Store.ServiceConfigs.AddUnitConfigAsync(unit.Mac, DemoCatalogue.StandardServices with { Dns = DemoCatalogue.StandardServices.Dns with { LocalDomain = "steady.arpa" } });
        await FullThenSteadyAsync("a new configuration revision", 7);
        var latest = (await server.Store.ServiceConfigs.ListUnitConfigsAsync(unit.Mac)).MaxBy(c => c.Revision)!;
        Assert.That((latest.Revision, latest.Status), Is.EqualTo((revision, "final")), "the new revision applied and final");

        // the host forgot the nonce (a database restored from a backup): refused, then the full exchange
        await using (var c = server.Store.Database.Open())
        {
            await c.ExecuteAsync("DELETE FROM challenges WHERE purpose = 'steady-check'");
        }
        await FullThenSteadyAsync("an unknown nonce", 6);


        // the server's clock three days ahead: the unit's nonce and its host token expired by the server's clock
        time.Offset = TimeSpan.FromDays(3);
        // (the token the unit holds is refused at the version check too: the refused call and one authentication, as before)
        await FullThenSteadyAsync("a server clock three days ahead", 7);
        Assert.That(unit.Supervisor.Context.Clock.Now().Now, Is.EqualTo(time.GetUtcNow()).Within(TimeSpan.FromSeconds(5)), "the unit carries the server's time");

        // an error the host holds for the unit: not steady; the full exchange's session (the token expired an hour on) clears it
        time.Offset += TimeSpan.FromHours(1);
        await using (var c = server.Store.Database.Open())
        {
            await c.ExecuteAsync("UPDATE units SET last_error = 'a test error' WHERE mac = @mac", new { mac = unit.Mac });
        }
        await FullThenSteadyAsync("a last error", 7);
        Assert.That((await server.Store.Units.GetUnitAsync(unit.Mac))!.LastError, Is.Null, "the full exchange cleared the error; the steady check does not bring it back");

        // an update offered: the unit installs it and reports Ready on the new pattern, then checks in one request there
        await server.Store.Units.SetTargetPatternAsync(unit.Mac, null);
        var readies = server.ChainOf(unit.Mac).Count(s => s == StateId.Ready);
        unit.Supervisor.RequestCheck(forced: false);
        await server.WaitForAsync(async () => (await server.Store.Units.GetUnitAsync(unit.Mac)) is { Pattern: DemoCatalogue.Pattern2, State: UnitStates.Ready } &&
                                              unit.Supervisor.State == StateId.Ready && unit.Supervisor.Context.ReadyReported,
            "the update installed and the unit Ready on pattern-2", TimeSpan.FromSeconds(90));
        Assert.That(server.ChainOf(unit.Mac).Skip(readies), Does.Contain(StateId.Update), "the update was offered and run");
        _returned = -1; // the update's requests were not a CheckAsync's
        Assert.That(await CheckAsync(server, unit), Is.EqualTo(new[] { (Routes.SteadyCheck, 200) }), "steady on the new pattern");
        Assert.That(server.ChangesOf(unit.Mac).Where(c => c.From == StateId.SteadyCheck && c.Outcome == Outcome.FullCheckDue).Select(c => c.To),
            Has.All.EqualTo(StateId.HostSession));
    }

    [TestCase("sqlite")]
    [TestCase("postgres")]
    public async Task Hostile_steady_checks_are_refused_and_change_nothing(string kind)
    {
        var (server, unit) = await StartAsync(kind);
        await using var _ = server;
        await server.Fleet.PowerOffAsync(unit);
        var nonce = unit.Supervisor.Context.CheckNonce!;
        Assert.That(nonce, Is.Not.Null, "the ready answer handed out a nonce");
        var secret = Tsunagu.Protocol.UnitCredentials.DeriveUnitSecret(server.UnitKey, unit.Mac);
        var proof = UnitCredentials.ComputeProof(secret, ProofPurpose.SteadyCheck, unit.Mac, nonce.Id, nonce.Nonce);
        var row = (await server.Store.Units.GetUnitAsync(unit.Mac))!;
        var inventory = System.Text.Json.JsonSerializer.Deserialize(row.Inventory!, ProtocolJson.Default.Inventory)!;
        var good = new SteadyCheckRequest(unit.Mac, nonce.Id, proof, inventory, 1, (int?)(await server.Store.ServiceConfigs.ListUnitConfigsAsync(unit.Mac)).MaxBy(c => c.Revision)?.Revision);
        string Body(SteadyCheckRequest r) => System.Text.Json.JsonSerializer.Serialize(r, ProtocolJson.Default.SteadyCheckRequest);
        var hostile = new (string Name, string Body)[]
        {
            ("not JSON", "{"),
            ("no body fields", "{}"),
            ("a MAC that is not one", Body(good with { Mac = "02:54:53:zz:00:01" })),
            ("no nonce id", Body(good with { NonceId = "" })),
            ("a nonce id too long", Body(good with { NonceId = new string('a', 65) })),
            ("a control character in the nonce id", Body(good with { NonceId = "a\u0001b" })),
            ("a proof too long", Body(good with { Proof = new string('A', 129) })),
            ("no inventory", Body(good with { Inventory = null! })),
            ("an application name that is not an identifier", Body(good with { Inventory = inventory with { Applications = new Dictionary<string, string> { ["../x"] = "1" } } })),
            ("a negative settings revision", Body(good with { SettingsRevision = -1 })),
            ("configuration revision 0", Body(good with { ConfigRevision = 0 })),
            ("a WAN address that is not one", Body(good with { WanAddress = "999.1.1.1" })),
            ("a VPN key that is not one", Body(good with { Vpn = new UnitVpnReport("short", 51820) })),
            ("a VPN port out of range", Body(good with { Vpn = new UnitVpnReport(Convert.ToBase64String(new byte[32]), 70000) })),
            ("cache hits above requests", Body(good with { Cache = new UnitCacheReport(1, 2, 0, 0) })),
            ("a settings revision past any number", Body(good).Replace("\"settingsRevision\":1", "\"settingsRevision\":99999999999999", StringComparison.Ordinal)),
            ("an inventory that is a string", Body(good with { Inventory = null! }).Replace("\"inventory\":null", "\"inventory\":\"x\"", StringComparison.Ordinal)),
        };
        var before = await StateAsync(server);
        using var http = server.PinnedHttp();
        foreach (var (name, body) in hostile)
        {
            var answer = await http.PostAsync(Routes.SteadyCheck, new StringContent(body, Encoding.UTF8, "application/json"));
            Assert.That(answer.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), $"{name}: {await answer.Content.ReadAsStringAsync()}");
        }
        Assert.That(await StateAsync(server), Is.EqualTo(before), "nothing changed: the nonce not taken, the unit not seen");

        // the nonce was not used up by them: the unit's own check still goes through, once
        var ok = await http.PostAsJsonAsync(Routes.SteadyCheck, good, ProtocolJson.Default.SteadyCheckRequest);
        Assert.That(ok.StatusCode, Is.EqualTo(HttpStatusCode.OK), await ok.Content.ReadAsStringAsync());
        var answerBody = (await ok.Content.ReadFromJsonAsync(ProtocolJson.Default.SteadyCheckResponse))!;
        Assert.That(answerBody.Steady, Is.True, answerBody.Reason);
        Assert.That(answerBody.Next, Is.Not.Null);
        var snapshot = await StateAsync(server);
        var replay = await http.PostAsJsonAsync(Routes.SteadyCheck, good, ProtocolJson.Default.SteadyCheckRequest);
        Assert.That(replay.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized), "a nonce is taken once: the same request again is refused");
        Assert.That(await StateAsync(server), Is.EqualTo(snapshot), "the replay changed nothing");
        var forged = await http.PostAsJsonAsync(Routes.SteadyCheck, good with { NonceId = answerBody.Next!.Id }, ProtocolJson.Default.SteadyCheckRequest);
        Assert.That(forged.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized), "a proof over another nonce is refused");
        Assert.That(await StateAsync(server), Is.EqualTo(snapshot), "the forged proof changed nothing");

        // another unit's nonce, proven with that other unit's own valid proof: the nonce is bound to the MAC it was handed to
        const string other = "02:54:53:00:77:01";
        var otherProof = UnitCredentials.ComputeProof(UnitCredentials.DeriveUnitSecret(server.UnitKey, other), ProofPurpose.SteadyCheck, other, answerBody.Next.Id, answerBody.Next.Nonce);
        var stolen = await http.PostAsJsonAsync(Routes.SteadyCheck, good with { Mac = other, NonceId = answerBody.Next.Id, Proof = otherProof }, ProtocolJson.Default.SteadyCheckRequest);
        Assert.That(stolen.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized), "another unit's nonce is refused");
        Assert.That(await StateAsync(server), Is.EqualTo(snapshot), "another unit's nonce changed nothing and was not used up");
        var valid = UnitCredentials.ComputeProof(secret, ProofPurpose.SteadyCheck, unit.Mac, answerBody.Next.Id, answerBody.Next.Nonce);
        var again = await http.PostAsJsonAsync(Routes.SteadyCheck, good with { NonceId = answerBody.Next.Id, Proof = valid }, ProtocolJson.Default.SteadyCheckRequest);
        Assert.That(again.StatusCode, Is.EqualTo(HttpStatusCode.OK), "the wrong proof did not use the nonce up");
        var third = (await again.Content.ReadFromJsonAsync(ProtocolJson.Default.SteadyCheckResponse))!.Next!;
        var host = UnitCredentials.ComputeProof(secret, ProofPurpose.Host, unit.Mac, third.Id, third.Nonce);
        var beforeSession = await StateAsync(server);
        Assert.That((await http.PostAsJsonAsync(Routes.HostSession, new SessionRequest(unit.Mac, third.Id, host))).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized),
            "a steady-check nonce is no host challenge");
        Assert.That(await StateAsync(server), Is.EqualTo(beforeSession), "/host/session did not burn the steady-check nonce");
        var thirdProof = UnitCredentials.ComputeProof(secret, ProofPurpose.SteadyCheck, unit.Mac, third.Id, third.Nonce);
        var fourth = await http.PostAsJsonAsync(Routes.SteadyCheck, good with { NonceId = third.Id, Proof = thirdProof }, ProtocolJson.Default.SteadyCheckRequest);
        Assert.That(fourth.StatusCode, Is.EqualTo(HttpStatusCode.OK), "the nonce offered at /host/session still proves the steady check");
    }

    /// <summary>
    /// A steady check with the nonce the unit holds (its own proof), as the unit would send it with <paramref name="inventory"/>;
    /// the answer.
    /// </summary>
    private static async Task<SteadyCheckResponse> SteadyAsync(TestServer server, HttpClient http, string mac, CheckNonce nonce, Inventory inventory)
    {
        var proof = UnitCredentials.ComputeProof(UnitCredentials.DeriveUnitSecret(server.UnitKey, mac), ProofPurpose.SteadyCheck, mac, nonce.Id, nonce.Nonce);
        var request = new SteadyCheckRequest(mac, nonce.Id, proof, inventory, 1, (int?)(await server.Store.ServiceConfigs.ListUnitConfigsAsync(mac)).MaxBy(c => c.Revision)?.Revision);
        var answer = await http.PostAsJsonAsync(Routes.SteadyCheck, request, ProtocolJson.Default.SteadyCheckRequest);
        Assert.That(answer.StatusCode, Is.EqualTo(HttpStatusCode.OK), await answer.Content.ReadAsStringAsync());
        return (await answer.Content.ReadFromJsonAsync(ProtocolJson.Default.SteadyCheckResponse))!;
    }

    [TestCase("sqlite")]
    [TestCase("postgres")]
    public async Task A_way_back_kept_for_a_revert_leaves_the_unit_steady_until_a_rollout_holds_it(string kind)
    {
        var (server, unit) = await StartAsync(kind);
        await using var _ = server;
        await server.Fleet.PowerOffAsync(unit);
        // the unit on pattern-2 after the rollout pattern-1 -> pattern-2, no target; pattern-2 -> pattern-1 kept for a revert
        var row = (await server.Store.Units.GetUnitAsync(unit.Mac))!;
        var onP1 = System.Text.Json.JsonSerializer.Deserialize(row.Inventory!, ProtocolJson.Default.Inventory)!;
        var onP2 = onP1 with { Applications = DemoCatalogue.Pattern2Applications.ToDictionary() };
        var forward = (await server.Store.Catalogue.GetUnitWithCatalogueAsync(unit.Mac)).Catalogue.FindUpdateProgram(DemoCatalogue.Pattern1)!;
        await using (var c = server.Store.Database.Open())
        {
            await c.ExecuteAsync("UPDATE units SET pattern = @p2, inventory = @inventory, target_pattern = NULL WHERE mac = @mac",
                new { p2 = DemoCatalogue.Pattern2, inventory = System.Text.Json.JsonSerializer.Serialize(onP2, ProtocolJson.Default.Inventory), mac = unit.Mac });
            // pattern-1 defined first, so pattern-2 -> pattern-1 is the way back of the pair (not a way forward)
            await c.ExecuteAsync("UPDATE patterns SET created_at = '2020-01-01T00:00:00.0000000+00:00' WHERE id = @p1", new { p1 = DemoCatalogue.Pattern1 });
        }
        await server.Store.Catalogue.AddUpdateProgramAsync(new UpdateProgramRow
        {
            Id = "p2-to-p1", FromPattern = DemoCatalogue.Pattern2, ToPattern = DemoCatalogue.Pattern1, Importance = 5, Priority = 10,
            ArtifactSha256 = forward.ArtifactSha256, ArtifactSize = forward.ArtifactSize,
        });
        var catalogue = (await server.Store.Catalogue.GetUnitWithCatalogueAsync(unit.Mac)).Catalogue;
        Assert.That((catalogue.FindWayBack(DemoCatalogue.Pattern2)?.Id, catalogue.FindUpdateProgram(DemoCatalogue.Pattern2)), Is.EqualTo(("p2-to-p1", (UpdateProgramRow?)null)),
            "precondition: the program is a way back, and no way forward leads from pattern-2");
        using var http = server.PinnedHttp();
        var steady = await SteadyAsync(server, http, unit.Mac, unit.Supervisor.Context.CheckNonce!, onP2);
        Assert.That((steady.Steady, steady.Reason), Is.EqualTo((true, (string?)null)), "a way back no rollout holds is nothing to offer: steady");
        Assert.That((await server.Store.Units.GetUnitAsync(unit.Mac))!.State, Is.EqualTo(UnitStates.Ready));

        // a running rollout of the way back that includes the unit: the version check would offer it, so the check is not steady
        await server.Store.Fleet.AddGroupAsync(new GroupRow { Name = "back", Kind = GroupKinds.Dynamic, Definition = "{\"tags\":[\"back\"]}", CreatedBy = "alice" },
            new AuditEntry("alice", "group.create", "back", null));
        await server.Store.Rollouts.AddRolloutAsync(new RolloutRow
        {
            Name = "revert", GroupName = "back", FromPattern = DemoCatalogue.Pattern2, ToPattern = DemoCatalogue.Pattern1, UpdateId = "p2-to-p1", Waves = "[{\"percent\":100}]",
            SuccessPercent = 90, ErrorPercent = 10, OnError = ErrorActions.Pause, State = RolloutStates.Running, OpenWaves = 1, CreatedBy = "alice",
        }, [new RolloutMember(unit.Mac, 1, MemberStatus.Pending)], new AuditEntry("alice", "rollout.create", "revert", null));
        var held = await SteadyAsync(server, http, unit.Mac, steady.Next!, onP2);
        Assert.That(held.Steady, Is.False, "the rollout holds the way back: the full exchange offers it");
        Assert.That(held.Reason, Does.Contain("p2-to-p1"));
        Assert.That(held.Next, Is.Null, "no next nonce: the unit runs the full exchange");
    }

    [TestCase("sqlite")]
    [TestCase("postgres")]
    public async Task Two_concurrent_steady_checks_with_one_nonce_exactly_one_succeeds(string kind)
    {
        var (server, unit) = await StartAsync(kind);
        await using var _ = server;
        await server.Fleet.PowerOffAsync(unit);
        var nonce = unit.Supervisor.Context.CheckNonce!;
        var secret = UnitCredentials.DeriveUnitSecret(server.UnitKey, unit.Mac);
        var row = (await server.Store.Units.GetUnitAsync(unit.Mac))!;
        var inventory = System.Text.Json.JsonSerializer.Deserialize(row.Inventory!, ProtocolJson.Default.Inventory)!;
        var request = new SteadyCheckRequest(unit.Mac, nonce.Id, UnitCredentials.ComputeProof(secret, ProofPurpose.SteadyCheck, unit.Mac, nonce.Id, nonce.Nonce),
            inventory, 1, (int?)(await server.Store.ServiceConfigs.ListUnitConfigsAsync(unit.Mac)).MaxBy(c => c.Revision)?.Revision);
        var events = (await server.Store.History.ListUnitEventsAsync(unit.Mac)).Count;
        using var http = server.PinnedHttp();
        HttpResponseMessage first, second;
        using (var hold = StoreSeam.HoldAt(server.Store, nameof(SteadyCheckStore.RecordSteadyCheckAsync)))
        {
            // the first has checked the nonce and the proof and waits at its transaction; the second does the same and takes the nonce
            var held = http.PostAsJsonAsync(Routes.SteadyCheck, request, ProtocolJson.Default.SteadyCheckRequest);
            await hold.Reached.WaitAsync(TimeSpan.FromSeconds(60));
            second = await http.PostAsJsonAsync(Routes.SteadyCheck, request, ProtocolJson.Default.SteadyCheckRequest);
            hold.Release();
            first = await held.WaitAsync(TimeSpan.FromSeconds(60));
        }
        Assert.That(second.StatusCode, Is.EqualTo(HttpStatusCode.OK), await second.Content.ReadAsStringAsync());
        Assert.That(first.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized), "the nonce was taken by the other request: nothing written");
        Assert.That((await server.Store.History.ListUnitEventsAsync(unit.Mac)).Count - events, Is.EqualTo(1), "one history entry");
        await using var c = server.Store.Database.Open();
        Assert.That(await c.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM challenges WHERE mac = @mac AND purpose = 'steady-check'", new { mac = unit.Mac }), Is.EqualTo(1),
            "one next nonce handed out");
    }
}
