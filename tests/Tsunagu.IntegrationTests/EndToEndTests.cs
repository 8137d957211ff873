using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using MQTTnet;
using Tsunagu.Cli.Factory;
using Tsunagu.Demo;
using Tsunagu.Firmware.Storage;
using Tsunagu.Firmware.Supervision;
using Tsunagu.Hal.Simulated;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;

namespace Tsunagu.IntegrationTests;

/// <summary>The patent's main flow (S100-S800) over real HTTPS on loopback: real server, real supervisors, simulated HAL.</summary>
[NonParallelizable]
[TestFixture("sqlite")]
[TestFixture("postgres")]
public class EndToEndTests(string database)
{
    [SetUp]
    public void UseDatabase() => TestServer.DatabaseKind.Value = database;

    [Test]
    public async Task Three_units_provision_update_configure_and_the_host_sees_them_ready_on_pattern_2()
    {
        await using var server = await TestServer.StartAsync();
        Assert.That(server.Store.Database.Kind, Is.EqualTo(database == "postgres" ? DatabaseKind.Postgres : DatabaseKind.Sqlite));
        var units = await server.AddUnitsAsync(3);
        server.Fleet.StartAll();
        foreach (var unit in units) { await server.WaitReadyAsync(unit); }

        using var client = server.Operator();
        var view = await client.ListUnitsAsync(null, null, CancellationToken.None);
        Assert.That(view.Select(v => v.Mac), Is.EquivalentTo(units.Select(u => u.Mac)));
        foreach (var unit in units)
        {
            var v = view.Single(x => x.Mac == unit.Mac);
            Assert.Multiple(() =>
            {
                Assert.That(v.State, Is.EqualTo("Ready"));
                Assert.That(v.Pattern, Is.EqualTo(DemoCatalogue.Pattern2));
                Assert.That(v.AppliedConfigRevision, Is.EqualTo(1));
                Assert.That(v.LastSeen, Is.Not.Null);
                Assert.That(v.LastError, Is.Null);
            });
            // the unit's own view: pattern 2 software switched in, services rendered, settings stored
            var apps = new AppStore(unit.Hardware.Data.Root).Current();
            Assert.That(apps, Is.EqualTo(DemoCatalogue.Pattern2Applications));
            Assert.That(File.ReadAllText(Path.Combine(unit.Hardware.Data.Root, "services", "current", "nftables.nft")), Does.Contain("dnat ip to 192.168.10.20:80"));
            Assert.That(server.ChainOf(unit.Mac).Take(11), Is.EqualTo(new[]
            {
                StateId.Provisional, StateId.FetchSettings, StateId.StoreSettings, StateId.Disconnect, StateId.Main, StateId.HostSession,
                StateId.VersionCheck, StateId.Update, StateId.VersionCheck, StateId.ServiceConfig, StateId.Ready,
            }));
            // S300: the provisional link was dropped and the main link brought up with the ISP account
            Assert.That(unit.Hardware.Wan.Attempts.Select(a => (a.Role, a.Method)),
                Is.EqualTo(new[] { (Tsunagu.Hal.LinkRole.Provisional, "pppoe"), (Tsunagu.Hal.LinkRole.Main, "pppoe") }));
        }
        // the host recorded each update once, from the unit's report
        Assert.That(await server.Store.Units.ListUnitsAsync(DemoCatalogue.Pattern2), Has.Count.EqualTo(3));
    }

    [Test]
    public async Task A_reboot_with_stored_settings_goes_straight_to_main_and_changes_nothing()
    {
        await using var server = await TestServer.StartAsync();
        var unit = (await server.AddUnitsAsync(1))[0];
        server.Fleet.Start(unit);
        await server.WaitReadyAsync(unit);
        await server.Fleet.PowerOffAsync(unit);
        server.Changes.Clear();
        server.Fleet.Start(unit);
        await server.WaitReadyAsync(unit);
        Assert.That(server.ChainOf(unit.Mac), Is.EqualTo(new[] { StateId.Main, StateId.HostSession, StateId.VersionCheck, StateId.ServiceConfig, StateId.Ready }));
    }

    [Test]
    public async Task A_wiped_data_store_is_rebuilt_from_the_factory_identity_and_the_host_restores_software_and_services()
    {
        await using var server = await TestServer.StartAsync();
        var unit = (await server.AddUnitsAsync(1))[0];
        server.Fleet.Start(unit);
        await server.WaitReadyAsync(unit);
        await server.Fleet.PowerOffAsync(unit);

        Directory.Delete(unit.Hardware.Data.Root, recursive: true); // the flash is wiped
        server.Changes.Clear();
        server.Fleet.Start(unit);
        await server.WaitReadyAsync(unit);

        var chain = server.ChainOf(unit.Mac);
        Assert.That(chain, Does.Contain(StateId.Provisional), "re-provisioned from the factory identity");
        Assert.That(chain, Does.Contain(StateId.Update), "the host restored pattern 2 over the factory software");
        Assert.That(new AppStore(unit.Hardware.Data.Root).Current(), Is.EqualTo(DemoCatalogue.Pattern2Applications));
        Assert.That(File.Exists(Path.Combine(unit.Hardware.Data.Root, "services", "current", "dnsmasq.conf")), Is.True);
        var row = (await server.Store.Units.GetUnitAsync(unit.Mac))!;
        Assert.That((row.State, row.Pattern, row.AppliedConfigRevision), Is.EqualTo(("Ready", DemoCatalogue.Pattern2, (long?)1)));
        Assert.That((row.LastBundleVersion, row.LastBundleId), Is.EqualTo(((long?)DemoCatalogue.BundleVersion, DemoCatalogue.UpdateId)), "the host keeps the unit's bundle counter");
    }

    [Test]
    public async Task A_long_press_of_the_reset_button_wipes_data_and_the_unit_provisions_again()
    {
        await using var server = await TestServer.StartAsync();
        var unit = (await server.AddUnitsAsync(1))[0];
        server.Fleet.Start(unit);
        await server.WaitReadyAsync(unit);
        var boots = ((SimulatedBootControl)unit.Hardware.Boot).Boots;
        var marker = Path.Combine(unit.Hardware.Data.Root, "left-by-the-subscriber");
        await File.WriteAllTextAsync(marker, "x");
        server.Changes.Clear();

        ((SimulatedResetButton)unit.Hardware.Reset!).Press();
        await server.WaitReadyAsync(unit);

        var chain = server.ChainOf(unit.Mac);
        Assert.That(chain, Does.Contain(StateId.Provisional), "provisioned again from the factory identity");
        Assert.That(chain, Does.Contain(StateId.Update), "the host brought the factory software back to pattern 2");
        Assert.That(File.Exists(marker), Is.False, "data was wiped");
        Assert.That(((SimulatedBootControl)unit.Hardware.Boot).Boots, Is.EqualTo(boots + 1), "the unit restarted once");
        Assert.That(server.Log, Has.Some.Contains("reset button held"));
        Assert.That(new AppStore(unit.Hardware.Data.Root).Current(), Is.EqualTo(DemoCatalogue.Pattern2Applications));
    }

    [Test]
    public async Task A_unit_with_a_wrong_secret_is_refused_and_gets_nothing()
    {
        await using var server = await TestServer.StartAsync();
        var wrongKey = Enumerable.Repeat((byte)0x5a, 32).ToArray();
        var identity = server.Identity(7, wrongKey);
        using (var client = server.Operator())
        {
            await client.RegisterAsync(TestServer.Registration(identity), CancellationToken.None);
        }
        var unit = await server.Fleet.AddUnitAsync(identity, CancellationToken.None);
        server.Fleet.Start(unit);
        await server.WaitForAsync(() => server.ChainOf(unit.Mac).Count(s => s == StateId.Refused) >= 2, "two refusals");
        await server.Fleet.PowerOffAsync(unit);

        Assert.That(server.ChainOf(unit.Mac), Does.Not.Contain(StateId.FetchSettings), "never reached the settings");
        using (var store = StateStore.Open(unit.Hardware.Data.Root))
        {
            Assert.That(store.Get(StateKeys.Settings, FirmwareJson.Default.UnitSettings), Is.Null);
        }
        var row = (await server.Store.Units.GetUnitAsync(unit.Mac))!;
        Assert.That(row.State, Is.EqualTo("Registered"));
        Assert.That((row.LastError, row.LastSeen), Is.EqualTo(((string?)null, (string?)null)), "a refused proof (anyone can send one) changes nothing about the unit");
        Assert.That((await server.Store.ListAuditAsync(target: unit.Mac)).Select(a => a.Action), Has.Some.EqualTo("unit.refused"));
    }

    [Test]
    public async Task A_forced_check_reaches_only_the_selected_units()
    {
        await using var server = await TestServer.StartAsync();
        var units = await server.AddUnitsAsync(3);
        server.Fleet.StartAll();
        foreach (var unit in units) { await server.WaitReadyAsync(unit); }
        await server.WaitForAsync(() => units.All(u => u.Supervisor.Context.Push?.IsConnected == true), "every unit to listen for pushes");
        int Checks(string mac) => server.ChainOf(mac).Count(s => s == StateId.VersionCheck);
        var before = units.ToDictionary(u => u.Mac, u => Checks(u.Mac));

        using var client = server.Operator();
        var result = await client.ForceCheckAsync(new ForceCheckRequest([units[1].Mac], null), CancellationToken.None);
        Assert.That(result.Notified, Is.EqualTo(new[] { units[1].Mac }));
        await server.WaitReadyAsync(units[1], 2);
        await Task.Delay(1000); // give a stray push time to arrive: none may
        Assert.Multiple(() =>
        {
            Assert.That(Checks(units[1].Mac), Is.EqualTo(before[units[1].Mac] + 1));
            Assert.That(Checks(units[0].Mac), Is.EqualTo(before[units[0].Mac]));
            Assert.That(Checks(units[2].Mac), Is.EqualTo(before[units[2].Mac]));
        });

        // by pattern: everyone on pattern 2
        result = await client.ForceCheckAsync(new ForceCheckRequest(null, DemoCatalogue.Pattern2), CancellationToken.None);
        Assert.That(result.Notified, Is.EquivalentTo(units.Select(u => u.Mac)));
        foreach (var unit in units) { await server.WaitForAsync(() => Checks(unit.Mac) > before[unit.Mac] + (unit == units[1] ? 1 : 0), $"{unit.Mac} forced check"); }
    }

    [Test]
    public async Task Units_start_before_the_server_and_retry_with_backoff_until_it_answers()
    {
        var port = TestServer.FreePort();
        await using var first = await TestServer.StartAsync(port: port);
        var unit = (await first.AddUnitsAsync(1))[0];
        // the server goes away before the unit powers on
        await first.App.StopAsync();
        first.Fleet.Start(unit);
        await first.WaitForAsync(() => first.ChangesOf(unit.Mac).Count(c => c.From == StateId.Provisional && c.Outcome == Outcome.Retry) >= 3, "three retries");
        var retries = first.ChangesOf(unit.Mac).Where(c => c.Outcome == Outcome.Retry).ToList();
        Assert.That(retries.All(r => r.Delay <= TestServer.FastOptions.BackoffCap), Is.True, "capped");
        Assert.That(first.Log.Any(l => l.Contains("unreachable")), Is.True);

        // the same server (same data directory, so the same keys and certificate) comes back on the same port
        var again = await TestServer.BuildServerAsync(first.Root, port);
        await again.StartAsync();
        try
        {
            await first.WaitReadyAsync(unit);
        }
        finally
        {
            await first.Fleet.PowerOffAsync(unit);
            await again.StopAsync();
            await again.DisposeAsync();
        }
    }

    [Test]
    public async Task Main_link_failing_N_times_falls_back_to_provisioning_and_recovers()
    {
        await using var server = await TestServer.StartAsync();
        var unit = (await server.AddUnitsAsync(1))[0];
        unit.Hardware.Wan.MainUnavailable = true;
        server.Fleet.Start(unit);
        await server.WaitForAsync(() => server.ChangesOf(unit.Mac).Any(c => c.From == StateId.Main && c.Outcome == Outcome.LinkLost), "main link to be given up");
        var chain = server.ChainOf(unit.Mac).ToList();
        var lost = server.ChangesOf(unit.Mac).ToList().FindIndex(c => c.From == StateId.Main && c.Outcome == Outcome.LinkLost);
        Assert.That(chain[lost], Is.EqualTo(StateId.Provisional));
        Assert.That(server.ChangesOf(unit.Mac).Take(lost).Count(c => c.From == StateId.Main && c.Outcome == Outcome.Retry),
            Is.EqualTo(TestServer.FastOptions.MainLinkFailureLimit - 1));
        unit.Hardware.Wan.MainUnavailable = false;
        await server.WaitReadyAsync(unit);
    }

    [Test]
    public async Task A_unit_that_redials_after_its_line_went_dead_tells_the_host_it_is_ready_again()
    {
        await using var server = await TestServer.StartAsync();
        var unit = (await server.AddUnitsAsync(1))[0];
        server.Fleet.Start(unit);
        await server.WaitReadyAsync(unit);
        var before = server.ChangesOf(unit.Mac).Count;

        unit.Hardware.Wan.Drop();
        await server.WaitForAsync(() => server.ChangesOf(unit.Mac).Skip(before).Any(c => c.From == StateId.Ready && c.Outcome == Outcome.LinkLost),
            "the unit to see its line go dead");
        // the redial passes a version check and a configuration fetch, where the host marks the unit Configuring; the
        // check interval is an hour, so only a new ready report (not the next periodic check) can show it Ready again
        await server.WaitReadyAsync(unit, readyCount: 2);
        var after = server.ChangesOf(unit.Mac).Skip(before).ToList();
        Assert.That(after.Count(c => c.From == StateId.Ready && c.Outcome == Outcome.CheckDue), Is.Zero, "no periodic check came in between");
        Assert.That(after.Count(c => c.From == StateId.Ready && c.Outcome == Outcome.LinkLost), Is.EqualTo(1), "one dead line, one redial");
        Assert.That((await server.Store.Units.GetUnitAsync(unit.Mac))!.State, Is.EqualTo("Ready"));
    }

    [Test]
    public async Task Tokens_are_scoped_and_broker_logins_are_per_unit()
    {
        await using var server = await TestServer.StartAsync();
        var units = await server.AddUnitsAsync(2);
        var identity = server.Identity(1);
        using var http = server.PinnedHttp();

        async Task<SessionResponse> Session(string purpose)
        {
            var (challenge, session) = purpose == ProofPurpose.Provisional
                ? (Routes.ProvisioningChallenge, Routes.ProvisioningSession) : (Routes.HostChallenge, Routes.HostSession);
            var c = await (await http.PostAsJsonAsync(challenge, new ChallengeRequest(identity.Mac))).Content.ReadFromJsonAsync<ChallengeResponse>();
            var proof = UnitCredentials.ComputeProof(Convert.FromBase64String(identity.UnitSecret), purpose, identity.Mac, c!.ChallengeId, c.Nonce);
            var r = await http.PostAsJsonAsync(session, new SessionRequest(identity.Mac, c.ChallengeId, proof));
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            return (await r.Content.ReadFromJsonAsync<SessionResponse>())!;
        }

        async Task<HttpResponseMessage> Get(string path, string token)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, path);
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            return await http.SendAsync(request);
        }

        var provisional = await Session(ProofPurpose.Provisional);
        var host = await Session(ProofPurpose.Host);
        Assert.Multiple(async () =>
        {
            Assert.That((await Get(Routes.ProvisioningSettings, provisional.Token)).StatusCode, Is.EqualTo(HttpStatusCode.OK));
            var refused = await Get(Routes.ServiceConfig, provisional.Token);
            Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.Forbidden), "a provisional token cannot reach the host");
            Assert.That(await refused.Content.ReadAsStringAsync(), Does.Contain(ProblemTypes.WrongScope));
            Assert.That((await Get(Routes.ProvisioningSettings, host.Token)).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
            Assert.That((await Get(Routes.Units, host.Token)).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden), "a unit token cannot use the operator API");
            Assert.That((await Get(Routes.Units, "forged.token")).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
            Assert.That((await http.GetAsync(Routes.Units)).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        });

        // a challenge answers one proof only
        var c = await (await http.PostAsJsonAsync(Routes.HostChallenge, new ChallengeRequest(identity.Mac))).Content.ReadFromJsonAsync<ChallengeResponse>();
        var proof = UnitCredentials.ComputeProof(Convert.FromBase64String(identity.UnitSecret), ProofPurpose.Host, identity.Mac, c!.ChallengeId, c.Nonce);
        Assert.That((await http.PostAsJsonAsync(Routes.HostSession, new SessionRequest(identity.Mac, c.ChallengeId, proof))).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await http.PostAsJsonAsync(Routes.HostSession, new SessionRequest(identity.Mac, c.ChallengeId, proof))).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized), "replay");

        // MQTT: unit 1's credentials may subscribe to its own topic, not unit 2's; another unit's name is refused
        var settings = await (await Get(Routes.ProvisioningSettings, provisional.Token)).Content.ReadFromJsonAsync<UnitSettings>();
        var broker = new Uri(settings!.PushBroker!);
        using var mqtt = new MqttClientFactory().CreateMqttClient();
        var compact = MacAddress.Compact(identity.Mac);
        var password = host.PushPassword!;
        var login = await mqtt.ConnectAsync(BrokerPortTests.UnitOptions(broker.Host, broker.Port, server.Pin).WithClientId($"unit-{compact}").WithCredentials(compact, password).Build());
        Assert.That(login.ResultCode, Is.EqualTo(MqttClientConnectResultCode.Success));
        var own = await mqtt.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(PushTopics.Commands(identity.Mac)).Build());
        var other = await mqtt.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(PushTopics.Commands(units[1].Mac)).Build());
        var wildcard = await mqtt.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(PushTopics.Root + "/#").Build());
        Assert.That(own.Items.Single().ResultCode, Is.EqualTo(MqttClientSubscribeResultCode.GrantedQoS0));
        Assert.That(other.Items.Single().ResultCode, Is.EqualTo(MqttClientSubscribeResultCode.NotAuthorized));
        Assert.That(wildcard.Items.Single().ResultCode, Is.EqualTo(MqttClientSubscribeResultCode.NotAuthorized));
        await mqtt.DisconnectAsync();

        using var impostor = new MqttClientFactory().CreateMqttClient();
        var otherCompact = MacAddress.Compact(units[1].Mac);
        var impostorOptions = BrokerPortTests.UnitOptions(broker.Host, broker.Port, server.Pin)
            .WithClientId($"unit-{otherCompact}").WithCredentials(otherCompact, password).Build();
        var refused = await impostor.ConnectAsync(impostorOptions);
        Assert.That(refused.ResultCode, Is.EqualTo(MqttClientConnectResultCode.BadUserNameOrPassword), "unit 1's password does not log in as unit 2");
        Assert.That(impostor.IsConnected, Is.False);
    }

    [Test]
    public async Task Operator_registration_errors_say_what_is_wrong()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Operator();
        var good = TestServer.Registration(server.Identity(1));
        await client.RegisterAsync(good, CancellationToken.None);
        var duplicate = Assert.ThrowsAsync<OperatorApiException>(() => client.RegisterAsync(good, CancellationToken.None));
        Assert.That(duplicate!.Status, Is.EqualTo(409));
        Assert.That(duplicate.Message, Does.Contain("already registered"));
        var badMac = Assert.ThrowsAsync<OperatorApiException>(() => client.RegisterAsync(good with { Mac = "02:00" }, CancellationToken.None));
        Assert.That(badMac!.Message, Does.Contain("mac").And.Contain("'02:00'"));
        var badIsp = Assert.ThrowsAsync<OperatorApiException>(() => client.RegisterAsync(good with { Mac = "02:00:00:00:00:99", Isp = new WanAccount("carrier-pigeon") }, CancellationToken.None));
        Assert.That(badIsp!.Message, Does.Contain("isp.method"));
        var badCheck = Assert.ThrowsAsync<OperatorApiException>(() => client.ForceCheckAsync(new ForceCheckRequest(null, null), CancellationToken.None));
        Assert.That(badCheck!.Status, Is.EqualTo(400));
    }

}
