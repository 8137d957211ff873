using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MQTTnet;
using Tsunagu.Firmware.Net;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Push;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// Push after faults: the server's broker link through a broker outage (bounded attempts and log lines, recovery),
/// units reconnecting after a broker restart (Mosquitto, and a server restart with the embedded broker), forced
/// checks that report delivery per unit and reach each unit exactly once, a resend sweep that goes on past a unit
/// whose pushes the broker refuses.
/// </summary>
[NonParallelizable]
public class PushRecoveryTests
{
    /// <summary>Fast push reconnects for tests: a unit is back within <see cref="PushOptions.ReconnectCap"/> of the broker.</summary>
    private static readonly SupervisorOptionsWithPush Options = new();

    private MosquittoServer? _mosquitto;

    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    [TearDown]
    public void TearDown()
    {
        _mosquitto?.Dispose();
        _mosquitto = null;
        TestServer.LogSink.Value = null;
        TestServer.Configure.Value = null;
    }

    [Test]
    public async Task A_mosquitto_outage_costs_the_server_few_connects_and_log_lines_a_forced_check_meanwhile_is_503_and_the_link_recovers()
    {
        _mosquitto = MosquittoServer.Start();
        var logs = new CapturingLogs();
        TestServer.LogSink.Value = logs;
        await using var server = await TestServer.StartAsync(mqtt: _mosquitto.Setting);
        // registered, not started: the only clients of the broker's port are the server's two connections
        var units = await server.AddUnitsAsync(1);
        var link = server.App.Services.GetRequiredService<BrokerLink>();
        Assert.That(link.Connected, Is.True);

        _mosquitto.Kill();
        using var refuser = AcceptAndClose.Start(_mosquitto.Port);
        var outage = Stopwatch.StartNew();
        await server.WaitForAsync(() => !link.Connected, "the server to notice the broker is gone");

        // while the link is down a forced check is refused with 503, and nothing is recorded
        using (var http = server.PinnedHttp())
        {
            http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Basic",
                Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes($"{Tsunagu.Demo.DemoCatalogue.OperatorName}:{TestServer.Password}")));
            using var response = await http.PostAsJsonAsync(Routes.ForceCheck, new ForceCheckRequest([units[0].Mac], null), ProtocolJson.Default.ForceCheckRequest);
            var body = await response.Content.ReadAsStringAsync();
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable), body);
            Assert.That(body, Does.Contain("not connected to the broker"));
        }
        Assert.That(await server.Store.PushChecks.NewestUndeliveredPushAsync(units[0].Mac, DateTimeOffset.MinValue), Is.Null, "a refused check records nothing");

        await server.WaitForAsync(() => refuser.Accepts >= 2, "reconnect attempts to reach the broker's port");
        await Task.Delay(TimeSpan.FromSeconds(6)); // the observation window: attempts and log lines are counted over it
        var seconds = outage.Elapsed.TotalSeconds;
        var accepts = refuser.Accepts;
        var attempts = link.ReconnectAttempts;
        var warnings = logs.Count(typeof(BrokerLink).FullName!, LogLevel.Warning);
        // two connections (account control and pushes), each waiting at least half its backoff ceiling between attempts
        // (+1 each: a loop may have begun its first wait just before the stopwatch)
        var bound = 2 * (MaxAttempts(seconds, BrokerLink.ReconnectBase, BrokerLink.ReconnectCap) + 1);
        TestContext.Out.WriteLine($"outage of {seconds:0.0} s: {accepts} connects accepted on the port, {attempts} attempts, {warnings} warnings (bound {bound})");
        Assert.Multiple(() =>
        {
            Assert.That(accepts, Is.LessThanOrEqualTo(bound), "TCP connects during the outage");
            Assert.That(attempts, Is.LessThanOrEqualTo(bound), "reconnect attempts during the outage");
            // per connection: "lost", then "failed, retrying"; the summary comes only after FailureSummaryInterval
            Assert.That(warnings, Is.LessThanOrEqualTo(4), string.Join("\n", logs.Lines.TakeLast(20)));
        });

        refuser.Dispose();
        _mosquitto.StartAgain();
        var back = Stopwatch.StartNew();
        await server.WaitForAsync(() => link.Connected, "the link to reconnect", BrokerLink.ReconnectCap + TimeSpan.FromSeconds(90));
        TestContext.Out.WriteLine($"link back {back.Elapsed.TotalSeconds:0.0} s after the broker");

        // and works again: a forced check is accepted and recorded (the unit is not running: offline)
        using var client = server.Operator();
        var forced = await client.ForceCheckAsync(new ForceCheckRequest([units[0].Mac], null), CancellationToken.None);
        Assert.That(forced.Units!.Single().Status, Is.EqualTo(PushCheckStatus.Offline));
        Assert.That(logs.Count(typeof(BrokerLink).FullName!, LogLevel.Warning), Is.EqualTo(warnings), "recovery adds no warning");
    }

    [TestCase("embedded", false)]
    [TestCase("mosquitto", false)]
    [TestCase("mosquitto", true)]
    public async Task After_a_broker_restart_every_unit_reconnects_and_a_forced_check_reaches_each_unit_exactly_once(string broker, bool defaultBackoff)
    {
        // the test's fast push backoff, or the units' default one (5 s base, 60 s cap) to measure what the docs state
        var options = defaultBackoff ? Options.Value with { Push = new PushOptions() } : Options.Value;
        const int count = 5;
        var mqttPort = TestServer.FreePort();
        string mqtt;
        if (broker == "mosquitto")
        {
            _mosquitto = MosquittoServer.Start();
            mqtt = _mosquitto.Setting;
        }
        else
        {
            TestServer.Configure.Value = o => o.MqttPort = mqttPort; // the restarted server listens where the units were told
            mqtt = "embedded";
        }
        await using var server = await TestServer.StartAsync(options, mqtt: mqtt);
        var units = await server.AddUnitsAsync(count);
        server.Fleet.StartAll();
        foreach (var unit in units) { await server.WaitReadyAsync(unit); }
        await server.WaitForAsync(() => units.All(u => u.Supervisor.Context.Push?.IsConnected == true), "every unit on the broker");
        await server.WaitForAsync(() => units.AllAsync(async u => (await server.Store.Units.GetUnitAsync(u.Mac))!.Online == 1), "presence of every unit");
        var connects = units.ToDictionary(u => u.Mac, u => u.Supervisor.Context.Push!.Connects);

        // the restart
        var restartedAt = TsunaguStore.Timestamp(DateTimeOffset.UtcNow);
        Microsoft.AspNetCore.Builder.WebApplication? again = null;
        TsunaguStore store;
        BrokerLink link;
        Stopwatch back;
        if (broker == "mosquitto")
        {
            _mosquitto!.Kill();
            await server.WaitForAsync(() => units.All(u => u.Supervisor.Context.Push!.IsConnected == false), "every unit to lose the broker");
            _mosquitto.StartAgain();
            back = Stopwatch.StartNew();
            store = server.Store;
            link = server.App.Services.GetRequiredService<BrokerLink>();
        }
        else
        {
            await server.App.StopAsync();
            await server.WaitForAsync(() => units.All(u => u.Supervisor.Context.Push!.IsConnected == false), "every unit to lose the broker");
            again = await TestServer.BuildServerAsync(server.Root, new Uri(server.Url).Port);
            await again.StartAsync();
            back = Stopwatch.StartNew();
            store = again.Services.GetRequiredService<TsunaguStore>();
            link = again.Services.GetRequiredService<BrokerLink>();
        }
        try
        {
            var cap = options.Push.ReconnectCap;
            await server.WaitForAsync(() => units.All(u => u.Supervisor.Context.Push!.IsConnected && u.Supervisor.Context.Push.Connects > connects[u.Mac]),
                "every unit back on the broker", cap + TimeSpan.FromSeconds(90));
            await server.WaitForAsync(() => link.Connected, "the server's link to the broker", BrokerLink.ReconnectCap + TimeSpan.FromSeconds(90));
            // presence written after the restart: the units said "online" to the new broker and the server heard it
            await server.WaitForAsync(() => units.AllAsync(async u => await store.Units.GetUnitAsync(u.Mac) is { Online: 1, PresenceAt: { } at } && string.CompareOrdinal(at, restartedAt) > 0),
                "presence of every unit after the restart", cap + TimeSpan.FromSeconds(90));
            var reachable = back.Elapsed;
            TestContext.Out.WriteLine($"{broker}: every unit reconnected and shown online {reachable.TotalSeconds:0.0} s after the broker was back " +
                                      $"(unit reconnect base {options.Push.ReconnectBase.TotalSeconds} s, cap {cap.TotalSeconds} s)");

            var before = (await units.SelectAsync(async u => (u.Mac, Count: await ForcedChecksAsync(store, u.Mac)))).ToDictionary(b => b.Mac, b => b.Count);
            using var client = server.Operator();
            var forced = await client.ForceCheckAsync(new ForceCheckRequest(units.Select(u => u.Mac).ToList(), null), CancellationToken.None);
            Assert.That(forced.Notified, Is.EquivalentTo(units.Select(u => u.Mac)));
            Assert.That(forced.Units!.Select(u => u.Status), Has.None.EqualTo(PushCheckStatus.Offline), "every unit is shown online");
            await server.WaitForAsync(() => units.AllAsync(async u => await ForcedChecksAsync(store, u.Mac) >= before[u.Mac] + 1), "every unit to check");
            await server.WaitForAsync(() => CheckStatus(client, forced.CheckId!).Delivered == count, "every delivery acknowledged");
            var status = CheckStatus(client, forced.CheckId!);
            Assert.That(status.Units.Select(u => u.Status), Is.All.EqualTo(PushCheckStatus.Delivered));
            foreach (var unit in units) { await server.WaitForAsync(async () => (await store.Units.GetUnitAsync(unit.Mac))!.State == "Ready", $"{unit.Mac} Ready again"); }
            await Task.Delay(1000); // a duplicate would come from a resend or a second wake-up; give it a moment to show
            Assert.Multiple(async () =>
            {
                foreach (var unit in units)
                {
                    Assert.That(await ForcedChecksAsync(store, unit.Mac), Is.EqualTo(before[unit.Mac] + 1), $"{unit.Mac}: exactly one forced check");
                }
            });
        }
        finally
        {
            await server.Fleet.DisposeAsync();
            if (again is not null)
            {
                await again.StopAsync();
                await again.DisposeAsync();
            }
        }
    }

    [TestCase("sqlite")]
    [TestCase("postgres")]
    public async Task A_forced_check_of_a_unit_that_is_off_stays_offline_until_it_comes_back_then_is_delivered_once(string database)
    {
        TestServer.DatabaseKind.Value = database;
        await using var server = await TestServer.StartAsync(Options.Value);
        var units = await server.AddUnitsAsync(3);
        server.Fleet.StartAll();
        foreach (var unit in units) { await server.WaitReadyAsync(unit); }
        await server.WaitForAsync(() => units.AllAsync(async u => (await server.Store.Units.GetUnitAsync(u.Mac))!.Online == 1), "presence of every unit");
        var off = units[2];
        await server.Fleet.PowerOffAsync(off);
        await server.WaitForAsync(async () => (await server.Store.Units.GetUnitAsync(off.Mac))!.Online == 0, "the unit that is off shown offline");

        var before = (await units.SelectAsync(async u => (u.Mac, Count: await ForcedChecksAsync(server.Store, u.Mac)))).ToDictionary(b => b.Mac, b => b.Count);
        using var client = server.Operator();
        var forced = await client.ForceCheckAsync(new ForceCheckRequest(units.Select(u => u.Mac).ToList(), null), CancellationToken.None);
        Assert.That(forced.Units!.Single(u => u.Mac == off.Mac).Status, Is.EqualTo(PushCheckStatus.Offline));
        await server.WaitForAsync(() => CheckStatus(client, forced.CheckId!).Delivered == 2, "the two running units to acknowledge");
        var status = CheckStatus(client, forced.CheckId!);
        Assert.Multiple(async () =>
        {
            Assert.That(status.Units.Single(u => u.Mac == off.Mac).Status, Is.EqualTo(PushCheckStatus.Offline), "never delivered while off");
            Assert.That(status.Units.Single(u => u.Mac == off.Mac).DeliveredAt, Is.Null);
            Assert.That((status.Delivered, status.Pending, status.Offline), Is.EqualTo((2, 0, 1)));
            Assert.That(await ForcedChecksAsync(server.Store, off.Mac), Is.EqualTo(before[off.Mac]));
        });

        // it comes back: says "online", the server sends the check again, the unit acknowledges and checks once
        server.Fleet.Start(off);
        await server.WaitForAsync(() => CheckStatus(client, forced.CheckId!).Delivered == 3, "the returning unit to acknowledge");
        await server.WaitForAsync(async () => await ForcedChecksAsync(server.Store, off.Mac) == before[off.Mac] + 1, "the returning unit's forced check");
        // the resend is counted once the broker has taken it (its PUBACK), which may come after the unit's acknowledgement
        await server.WaitForAsync(() => CheckStatus(client, forced.CheckId!).Units.Single(u => u.Mac == off.Mac).Attempts >= 2, "the check sent again when it came back");
        await server.WaitForAsync(async () => (await server.Store.Units.GetUnitAsync(off.Mac))!.State == "Ready", "the returning unit Ready");
        await Task.Delay(1000);
        Assert.Multiple(async () =>
        {
            foreach (var unit in units)
            {
                Assert.That(await ForcedChecksAsync(server.Store, unit.Mac), Is.EqualTo(before[unit.Mac] + 1), $"{unit.Mac}: exactly one forced check");
            }
        });
    }


    [Test]
    public async Task After_a_server_restart_with_the_embedded_broker_presence_shows_only_the_units_that_came_back()
    {
        var mqttPort = TestServer.FreePort();
        TestServer.Configure.Value = o => o.MqttPort = mqttPort;
        await using var server = await TestServer.StartAsync(Options.Value);
        var units = await server.AddUnitsAsync(3);
        server.Fleet.StartAll();
        foreach (var unit in units) { await server.WaitReadyAsync(unit); }
        await server.WaitForAsync(() => units.AllAsync(async u => (await server.Store.Units.GetUnitAsync(u.Mac))!.Online == 1), "presence of every unit");

        // the server (and its broker) goes down; meanwhile one unit loses power: nobody hears its "offline"
        await server.App.StopAsync();
        await server.Fleet.PowerOffAsync(units[2]);
        var again = await TestServer.BuildServerAsync(server.Root, new Uri(server.Url).Port);
        await again.StartAsync();
        var back = Stopwatch.StartNew();
        try
        {
            var store = again.Services.GetRequiredService<TsunaguStore>();
            Assert.That((await store.Units.GetUnitAsync(units[2].Mac))!.Online, Is.EqualTo(1), "precondition: the database still shows the lost unit online");
            await server.WaitForAsync(async () => (await store.Units.GetUnitAsync(units[2].Mac))!.Online == 0, "the unit that did not come back shown offline",
                BrokerLink.PresenceGrace + TimeSpan.FromSeconds(90));
            TestContext.Out.WriteLine($"presence corrected {back.Elapsed.TotalSeconds:0.0} s after the restart (grace {BrokerLink.PresenceGrace.TotalSeconds} s)");
            await server.WaitForAsync(async () => (await store.Units.GetUnitAsync(units[0].Mac))!.Online == 1 && (await store.Units.GetUnitAsync(units[1].Mac))!.Online == 1, "the units that came back shown online");
            TestContext.Out.WriteLine($"every unit's presence right {back.Elapsed.TotalSeconds:0.0} s after the restart");
        }
        finally
        {
            await server.Fleet.DisposeAsync();
            await again.StopAsync();
            await again.DisposeAsync();
        }
    }

    [TestCase("{\"ack\":\"AbCd-_0123456789\"}", "AbCd-_0123456789")]
    [TestCase("online", null)]
    [TestCase("offline", null)]
    [TestCase("", null)]
    [TestCase("{", null)]
    [TestCase("{\"ack\":null}", null)]
    [TestCase("{\"ack\":\"\"}", null)]
    [TestCase("{\"ack\":42}", null)]
    [TestCase("{\"ack\":\"a b\"}", null)]
    [TestCase("{\"ack\":\"x\u0000y\"}", null)]
    [TestCase("{\"ack\":\"x'; DROP TABLE units;--\"}", null)]
    [TestCase("[\"ack\"]", null)]
    public void An_acknowledgement_is_accepted_only_in_its_grammar(string payload, string? nonce) =>
        Assert.That(BrokerLink.ParseAck(payload), Is.EqualTo(nonce));

    [Test]
    public void Acknowledgements_too_long_or_with_long_nonces_are_ignored()
    {
        Assert.That(BrokerLink.ParseAck("{\"ack\":\"" + new string('a', 65) + "\"}"), Is.Null);
        Assert.That(BrokerLink.ParseAck("{\"ack\":\"a\"," + new string(' ', 300) + "}"), Is.Null);
        Assert.That(BrokerLink.ParseAck("{\"ack\":\"" + new string('a', 64) + "\"}"), Is.EqualTo(new string('a', 64)));
    }

    /// <summary>
    /// Two replicas, of which the one holding the once-only lease dies: a unit that said "online" meanwhile was answered
    /// by nobody (only the holder resends). The survivor, taking the lease over, sends the unit's check at once, not at
    /// its next sweep, which waits until <see cref="BrokerLink.ResendInterval"/> after the last send. The other replica
    /// is a lease row of a holder that never renews it (this test's), expired once the unit is online; the check's last
    /// send and the unit's "online" are then set 5 s and 1 s back, so the sweep alone could not send it for 25 s.
    /// </summary>
    [Test]
    public async Task A_replica_that_takes_the_lease_over_sends_at_once_the_check_of_a_unit_that_came_online_while_another_held_it()
    {
        TestServer.DatabaseKind.Value = "postgres";
        TestServer.Configure.Value = o => o.OnceOnlyLeaseSeconds = 3;
        await using var server = await TestServer.StartAsync(Options.Value);
        var unit = (await server.AddUnitsAsync(1))[0];
        server.Fleet.Start(unit);
        await server.WaitReadyAsync(unit);
        var lease = server.App.Services.GetRequiredService<Tsunagu.Server.Cluster.ReplicaLease>();
        await server.WaitForAsync(() => lease.IsHolder, "the replica holding the lease");
        await server.Fleet.PowerOffAsync(unit);
        await server.WaitForAsync(async () => (await server.Store.Units.GetUnitAsync(unit.Mac))!.Online == 0, "the unit shown offline");

        void Sql(string sql) => Assert.That(server.ExecuteSql(sql), Is.EqualTo(1), sql);
        // another replica takes the lease (for a minute: it will die before renewing it)
        Sql($"UPDATE leases SET holder = 'dead-replica', expires_at_ms = (extract(epoch FROM clock_timestamp()) * 1000)::bigint + 60000 WHERE name = '{Tsunagu.Server.Cluster.ReplicaLease.Name}'");
        await server.WaitForAsync(() => !lease.IsHolder, "the replica to see another hold the lease");
        using var client = server.Operator();
        var forced = await client.ForceCheckAsync(new ForceCheckRequest([unit.Mac], null), CancellationToken.None);
        Assert.That((await server.Store.PushChecks.NewestUndeliveredPushAsync(unit.Mac, DateTimeOffset.MinValue))!.Attempts, Is.EqualTo(1), "published once, to nobody");
        server.Fleet.Start(unit);
        await server.WaitForAsync(async () => (await server.Store.Units.GetUnitAsync(unit.Mac))!.Online == 1, "the unit online again");
        Assert.That(CheckStatus(client, forced.CheckId!).Delivered, Is.Zero, "not sent again while another replica holds the lease");

        // sent 5 s ago, online since 1 s ago; then the other replica dies: its lease expires and this replica takes it over
        var now = DateTimeOffset.UtcNow;
        var sentAt = now - TimeSpan.FromSeconds(5);
        Sql($"UPDATE push_checks SET sent_at = '{TsunaguStore.Timestamp(sentAt)}' WHERE check_id = '{forced.CheckId}' AND delivered_at IS NULL");
        Sql($"UPDATE units SET presence_at = '{TsunaguStore.Timestamp(now - TimeSpan.FromSeconds(1))}' WHERE mac = '{unit.Mac}'");
        Sql($"UPDATE leases SET expires_at_ms = 0 WHERE name = '{Tsunagu.Server.Cluster.ReplicaLease.Name}' AND holder = 'dead-replica'");
        await server.WaitForAsync(() => CheckStatus(client, forced.CheckId!).Delivered == 1, "the unit to acknowledge its check", TimeSpan.FromSeconds(60));
        var delivered = (await server.Store.PushChecks.GetPushCheckAsync(forced.CheckId!)).Single();
        Assert.That(lease.IsHolder, Is.True);
        Assert.That(delivered.Attempts, Is.EqualTo(2), "sent again once, at the take-over");
        Assert.That(DateTimeOffset.Parse(delivered.DeliveredAt!, System.Globalization.CultureInfo.InvariantCulture) - sentAt, Is.LessThan(BrokerLink.ResendInterval),
            "delivered before a sweep could have sent it again (it waits ResendInterval after the last send)");
    }

    [Test]
    public async Task A_unit_cannot_acknowledge_another_units_check()
    {
        await using var server = await TestServer.StartAsync(Options.Value);
        var units = await server.AddUnitsAsync(2);
        server.Fleet.Start(units[0]);
        await server.WaitReadyAsync(units[0]);
        await server.WaitForAsync(async () => (await server.Store.Units.GetUnitAsync(units[0].Mac))!.Online == 1, "unit 1 online");
        using var client = server.Operator();
        // unit 2 is not running: its check stays undelivered; unit 1 learns nothing of its nonce, so take it from the database
        var forced = await client.ForceCheckAsync(new ForceCheckRequest([units[1].Mac], null), CancellationToken.None);
        var nonce = (await server.Store.PushChecks.NewestUndeliveredPushAsync(units[1].Mac, DateTimeOffset.MinValue))!.Nonce;

        // unit 1 (its own credentials) publishes an acknowledgement of unit 2's nonce: on its own topic (the only one allowed)
        // the server takes it as unit 1's, which has no such check; on unit 2's topic the broker refuses it
        var identity = server.Identity(1);
        var password = await server.BrokerPasswordAsync(identity.Mac);
        var broker = new Uri(server.App.Services.GetRequiredService<BrokerLink>().BrokerUri!);
        await units[0].Supervisor.DisposeAsync(); // the real unit 1 steps aside (same client id)
        using var forger = new MQTTnet.MqttClientFactory().CreateMqttClient();
        var login = broker.Scheme == "mqtts" ? BrokerPortTests.UnitOptions(broker.Host, broker.Port, server.Pin) : new MQTTnet.MqttClientOptionsBuilder().WithTcpServer(broker.Host, broker.Port);
        await forger.ConnectAsync(login
            .WithClientId(UnitCredentials.BrokerClientId(identity.Mac)).WithCredentials(MacAddress.Compact(identity.Mac), password).Build());
        var ack = System.Text.Encoding.UTF8.GetBytes($"{{\"ack\":\"{nonce}\"}}");
        var own = await forger.PublishAsync(new MQTTnet.MqttApplicationMessageBuilder().WithTopic(PushTopics.Status(identity.Mac)).WithPayload(ack)
            .WithQualityOfServiceLevel(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce).Build());
        var other = await forger.PublishAsync(new MQTTnet.MqttApplicationMessageBuilder().WithTopic(PushTopics.Status(units[1].Mac)).WithPayload(ack)
            .WithQualityOfServiceLevel(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce).Build());
        Assert.That(own.IsSuccess, Is.True);
        Assert.That(other.IsSuccess, Is.False, "the broker refuses a publish on another unit's status topic");
        // a marker on the own topic, published after the forged acknowledgement, shows the server has processed it
        await forger.PublishAsync(new MQTTnet.MqttApplicationMessageBuilder().WithTopic(PushTopics.Status(identity.Mac)).WithPayload(Presence.Offline)
            .WithQualityOfServiceLevel(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce).Build());
        await server.WaitForAsync(async () => (await server.Store.Units.GetUnitAsync(identity.Mac))!.Online == 0, "the marker to arrive");
        var status = CheckStatus(client, forced.CheckId!);
        Assert.That(status.Units.Single().Status, Is.EqualTo(PushCheckStatus.Offline));
        Assert.That(status.Delivered, Is.EqualTo(0), "unit 2's check is not delivered by unit 1's acknowledgement");
    }

    /// <summary>
    /// The resend sweep against a broker that refuses every push to one unit's topic (a Mosquitto ACL denying the
    /// server's publish there: a PUBACK "not authorized"), that unit's undelivered check ordered first. The sweep goes
    /// on past the refusal: the units after it get their resend in the same sweep, the refused one is logged and
    /// counted and its record is left unsent, so it is tried again, alone, at the next sweep. The link runs on a fake
    /// clock (sweeps happen only when the test moves it) and is built by hand on its own store, so the test knows of
    /// every sweep; each unit's own login on the broker counts what it received. Invariants after each sweep: every
    /// due check was either handed over (received once, one send more recorded) or reported failed (received
    /// nothing, record unchanged), and no check reached its unit twice.
    /// </summary>
    [Test]
    public async Task A_unit_whose_pushes_the_broker_refuses_holds_back_no_later_unit_in_the_resend_sweep_and_is_tried_again_at_the_next()
    {
        var mosquitto = _mosquitto = MosquittoServer.Start();
        string[] macs = ["02:00:00:00:05:01", "02:00:00:00:05:02", "02:00:00:00:05:03"];
        var refused = macs[0];
        // the server's role made before the server makes it (it then leaves it alone): what it grants, and one deny
        // above it for the refused unit's command topic
        ServerRoleAsGranted(mosquitto);
        Dynsec(mosquitto, "addRoleACL", "tsunagu-server", "publishClientSend", PushTopics.Commands(refused), "deny", "10");

        var clock = new PollCountingClock(new DateTimeOffset(2026, 4, 1, 9, 0, 0, TimeSpan.Zero));
        await using var linked = new LinkOnMosquitto(mosquitto, clock);
        var (link, store, metrics, logs, brokerKey) = (linked.Link, linked.Store, linked.Metrics, linked.Logs, linked.BrokerKey);
        var received = macs.ToDictionary(m => m, _ => new ConcurrentQueue<string>());
        var subscribers = new List<MQTTnet.IMqttClient>();
        try
        {
            foreach (var mac in macs)
            {
                await store.Units.AddUnitAsync(new UnitRow { Mac = mac, Serial = "SN-" + MacAddress.Compact(mac), HardwareVersion = "hw-1", IspMethod = "dhcp" });
            }
            await link.StartAsync(CancellationToken.None);
            Assert.That(link.Connected, Is.True);
            Assert.That(clock.Polls, Is.EqualTo(1), "the resend loop waits for its first look");
            foreach (var mac in macs)
            {
                await store.Units.SetPresenceAsync(mac, online: true); // as at their "online" (not sent: that would resend at once)
                // each unit logged in with its own account, subscribed to its command topic: what reaches it is counted
                var password = UnitCredentials.NewNonce(24);
                await link.SetUnitPasswordAsync(mac, password, clock.GetUtcNow().AddDays(1), brokerKey.Current.Id, CancellationToken.None);
                var unit = new MQTTnet.MqttClientFactory().CreateMqttClient();
                subscribers.Add(unit);
                var inbox = received[mac];
                unit.ApplicationMessageReceivedAsync += e =>
                {
                    inbox.Enqueue(System.Text.Json.JsonSerializer.Deserialize(e.ApplicationMessage.ConvertPayloadToString(), ProtocolJson.Default.PushMessage)!.Nonce);
                    return Task.CompletedTask;
                };
                var login = await unit.ConnectAsync(new MQTTnet.MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", mosquitto.Port)
                    .WithClientId(UnitCredentials.BrokerClientId(mac)).WithCredentials(UnitCredentials.BrokerUsername(mac), password).Build());
                Assert.That(login.ResultCode, Is.EqualTo(MQTTnet.MqttClientConnectResultCode.Success), mac);
                var subscribed = await unit.SubscribeAsync(new MQTTnet.MqttClientSubscribeOptionsBuilder()
                    .WithTopicFilter(PushTopics.Commands(mac), MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce).Build());
                Assert.That(subscribed.Items.Single().ResultCode, Is.EqualTo(MQTTnet.MqttClientSubscribeResultCode.GrantedQoS1), mac);
            }

            // the first look is the take-over sweep of a replica starting: nothing is recorded yet, it finds nothing
            clock.Advance(BrokerLink.HolderPoll);
            await WaitForPollAsync(clock, 2);
            // the refused unit's check first, the others' half a second later: the sweep meets the refusal first
            await store.PushChecks.AddPushCheckAsync("check-refused", "alice", 1, [(refused, "nonce-refused")]);
            clock.Advance(TimeSpan.FromMilliseconds(500));
            await store.PushChecks.AddPushCheckAsync("check-later", "alice", 1, macs.Skip(1).Select(m => (m, "nonce-" + MacAddress.Compact(m))).ToList());
            var rows = await RowsAsync(store, macs);
            Assert.That(rows.Values.Select(r => (r.Attempts, r.DeliveredAt)), Is.All.EqualTo((1L, (string?)null)), "precondition: each check recorded sent once, none delivered");
            var created = rows.ToDictionary(r => r.Key, r => r.Value.SentAt);

            // past ResendInterval: one sweep, every check due, the refused one ordered first
            clock.Advance(BrokerLink.ResendInterval + TimeSpan.FromSeconds(1));
            var firstSweep = TsunaguStore.Timestamp(clock.GetUtcNow());
            await WaitForPollAsync(clock, 3);
            await AssertSweepAsync(1, firstSweep, created[refused]);

            // the next sweep tries the refused unit again, and only it: the others were sent less than ResendInterval ago
            clock.Advance(BrokerLink.ResendInterval);
            await WaitForPollAsync(clock, 4);
            await AssertSweepAsync(2, firstSweep, created[refused]);
            Assert.That(link.Connected, Is.True, "a refused publish does not cost the link");
        }
        finally
        {
            foreach (var unit in subscribers) { unit.Dispose(); }
        }

        // after sweep n: the later units received their check once (sent at the first sweep), the refused one nothing,
        // with its record as it was and n failures logged and counted
        async Task AssertSweepAsync(int sweeps, string firstSweep, string? refusedSentAt)
        {
            // the later units' resends reach them shortly after the sweep took them (or never: the assertions tell); up to
            // 30 s, as the link's other waits here, for a machine whose cores other jobs share
            for (var i = 0; i < 3000 && !macs.Skip(1).All(m => !received[m].IsEmpty); i++) { await Task.Delay(10); }
            await Task.Delay(500); // a duplicate, or a push let through to the refused unit, would show by now
            var records = await RowsAsync(store, macs);
            var text = await ExportAsync(metrics);
            var failures = logs.Lines.Where(l => l.StartsWith("Warning", StringComparison.Ordinal) && l.Contains("resending check", StringComparison.Ordinal)).ToList();
            Assert.Multiple(() =>
            {
                foreach (var mac in macs.Skip(1))
                {
                    Assert.That(received[mac], Is.EqualTo(new[] { "nonce-" + MacAddress.Compact(mac) }), $"sweep {sweeps}: {mac} received its check exactly once, in the first sweep");
                    Assert.That((records[mac].Attempts, records[mac].SentAt), Is.EqualTo((2L, firstSweep)), $"sweep {sweeps}: {mac}'s resend recorded once");
                }
                Assert.That(received[refused], Is.Empty, $"sweep {sweeps}: the broker let nothing through to the refused unit");
                Assert.That((records[refused].Attempts, records[refused].SentAt, records[refused].DeliveredAt), Is.EqualTo((1L, refusedSentAt, (string?)null)),
                    $"sweep {sweeps}: a refused resend is not recorded as a send");
                Assert.That(failures, Has.Count.EqualTo(sweeps), $"sweep {sweeps}: one warning per failed resend\n{string.Join("\n", logs.Lines)}");
                Assert.That(failures.All(f => f.Contains(refused, StringComparison.Ordinal) && f.Contains("NotAuthorized", StringComparison.Ordinal)), Is.True,
                    $"each warning names the refused unit and the broker's reason\n{string.Join("\n", failures)}");
                Assert.That(text, Does.Contain($"tsunagu_push_resends_failed_total {sweeps}"), $"sweep {sweeps}: failed resends counted");
                Assert.That(text, Does.Contain("tsunagu_pushes_total{result=\"sent\"} 2"), $"sweep {sweeps}: two resends handed over in all");
                Assert.That(text, Does.Contain($"tsunagu_pushes_total{{result=\"undelivered\"}} {sweeps}"), $"sweep {sweeps}: the refused ones undelivered");
                // every due check handed over (received, counted, recorded) or reported failed (logged, counted, left as it was)
                var handedOver = macs.Count(m => records[m].Attempts == 2 && received[m].Count == 1);
                var reported = macs.Count(m => records[m].Attempts == 1 && received[m].IsEmpty && failures.Any(f => f.Contains(m, StringComparison.Ordinal)));
                Assert.That(handedOver + reported, Is.EqualTo(macs.Length), "each check delivered or reported undelivered");
            });
        }
    }

    [Test]
    public async Task While_the_broker_refuses_the_status_subscription_the_link_is_not_connected_each_refusal_is_logged_and_counted_and_once_granted_units_are_heard()
    {
        var mosquitto = _mosquitto = MosquittoServer.Start();
        const string mac = "02:00:00:00:06:01";
        var statusFilter = $"{PushTopics.Root}/+/status";
        ServerRoleAsGranted(mosquitto);
        await using var linked = new LinkOnMosquitto(mosquitto, TimeProvider.System);
        var (link, store, logs) = (linked.Link, linked.Store, linked.Logs);
        await store.Units.AddUnitAsync(new UnitRow { Mac = mac, Serial = "SN-" + MacAddress.Compact(mac), HardwareVersion = "hw-1", IspMethod = "dhcp" });
        await link.StartAsync(CancellationToken.None);
        Assert.That(link.Connected, Is.True, "precondition: connected and subscribed");

        // the ACL now denies the status filter to the server's account (a role's change drops no client: the account is
        // disabled and enabled again to drop the server's connection); each subscription of a reconnect is then refused
        Dynsec(mosquitto, "addRoleACL", "tsunagu-server", "subscribeLiteral", statusFilter, "deny", "10");
        Dynsec(mosquitto, "disableClient", "tsunagu-server");
        for (var i = 0; i < 3000 && link.Connected; i++) { await Task.Delay(10); }
        Assert.That(link.Connected, Is.False, "precondition: the server's connection dropped");
        Dynsec(mosquitto, "enableClient", "tsunagu-server");
        string[] Refusals() => logs.Lines.Where(l => l.StartsWith("Warning", StringComparison.Ordinal)
                                                     && l.Contains("push: the broker refused the subscription to " + statusFilter, StringComparison.Ordinal)).ToArray();
        string[] Reconnects() => logs.Lines.Where(l => l.Contains("push: reconnected to", StringComparison.Ordinal)).ToArray();
        for (var i = 0; i < 3000 && Refusals().Length == 0 && Reconnects().Length == 0; i++) { await Task.Delay(10); }
        // from the first refusal on, until the ACL is fixed, the link never reports itself connected
        var seenConnected = 0;
        for (var i = 0; i < 3000 && Refusals().Length < 3 && Reconnects().Length == 0; i++)
        {
            if (link.Connected) { seenConnected++; }
            await Task.Delay(5);
        }
        Assert.Multiple(() =>
        {
            Assert.That(Reconnects(), Is.Empty, "a reconnect whose status subscription was refused is not taken for a recovery");
            Assert.That(link.Connected, Is.False, "the link does not report itself connected while deaf to unit status");
            Assert.That(seenConnected, Is.Zero, "not connected at any moment while the subscription is refused");
            Assert.That(Refusals(), Has.Length.GreaterThanOrEqualTo(3), "each reconnect's refusal logged");
            Assert.That(Refusals().All(l => l.Contains("UnspecifiedError", StringComparison.Ordinal) || l.Contains("NotAuthorized", StringComparison.Ordinal)), Is.True,
                $"each refusal names the broker's reason\n{string.Join("\n", Refusals())}");
        });

        // the ACL fixed: the link's next attempt subscribes, and the unit's status and acknowledgement reach the server
        Dynsec(mosquitto, "removeRoleACL", "tsunagu-server", "subscribeLiteral", statusFilter);
        for (var i = 0; i < 3000 && !link.Connected; i++) { await Task.Delay(10); }
        Assert.That(link.Connected, Is.True, "connected again once the broker grants the subscription");
        var refusals = Refusals().Length;
        var text = await ExportAsync(linked.Metrics);
        Assert.Multiple(() =>
        {
            Assert.That(text, Does.Contain($"tsunagu_broker_subscriptions_refused_total {refusals}"), "each refusal counted once");
            Assert.That(refusals, Is.LessThanOrEqualTo(link.ReconnectAttempts), "at most one refusal logged per attempt");
            Assert.That(Reconnects(), Has.Length.EqualTo(1), "one recovery logged");
        });

        await store.PushChecks.AddPushCheckAsync("check-heard", "alice", 1, [(mac, "nonce-heard")]);
        var password = UnitCredentials.NewNonce(24);
        await link.SetUnitPasswordAsync(mac, password, DateTimeOffset.UtcNow.AddDays(1), linked.BrokerKey.Current.Id, CancellationToken.None);
        using var unit = new MqttClientFactory().CreateMqttClient();
        var login = await unit.ConnectAsync(new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", mosquitto.Port)
            .WithClientId(UnitCredentials.BrokerClientId(mac)).WithCredentials(UnitCredentials.BrokerUsername(mac), password).Build());
        Assert.That(login.ResultCode, Is.EqualTo(MqttClientConnectResultCode.Success), "precondition: the unit logs in");
        await unit.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(PushTopics.Status(mac)).WithPayload(Presence.Online)
            .WithQualityOfServiceLevel(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce).WithRetainFlag().Build());
        await unit.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(PushTopics.Status(mac)).WithPayload("{\"ack\":\"nonce-heard\"}")
            .WithQualityOfServiceLevel(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce).Build());
        for (var i = 0; i < 3000 && !(await ExportAsync(linked.Metrics)).Contains("tsunagu_pushes_total{result=\"delivered\"} 1", StringComparison.Ordinal); i++) { await Task.Delay(10); }
        Assert.Multiple(async () =>
        {
            Assert.That((await store.Units.GetUnitAsync(mac))!.Online, Is.EqualTo(1), "the unit's \"online\" reached the server");
            Assert.That(await ExportAsync(linked.Metrics), Does.Contain("tsunagu_pushes_total{result=\"delivered\"} 1"), "the unit's acknowledgement reached the server");
        });
        await unit.DisconnectAsync();
    }

    [TestCase(false, TestName = "A_start_whose_login_is_refused_after_the_account_connection_was_made_leaves_no_client_of_the_link_open")]
    [TestCase(true, TestName = "A_start_cancelled_after_the_account_connection_was_made_leaves_no_client_of_the_link_open")]
    public async Task A_failed_start_leaves_no_client_of_the_link_open(bool cancelled)
    {
        var mosquitto = _mosquitto = MosquittoServer.Start();
        if (!cancelled)
        {
            // the server's account exists with another password (left alone by the start): its login is refused
            Dynsec(mosquitto, "createClient", "tsunagu-server", "-p", "not-the-derived-password");
        }
        await using var linked = new LinkOnMosquitto(mosquitto, TimeProvider.System);
        var clients = new List<IMqttClient>();
        using var start = new CancellationTokenSource();
        linked.Link.ClientCreated = c =>
        {
            clients.Add(c);
            if (cancelled && clients.Count == 2) { start.Cancel(); } // the push connection's connect is cancelled
        };
        var failed = Assert.CatchAsync(() => linked.Link.StartAsync(start.Token));
        Assert.That(failed, cancelled ? Is.InstanceOf<OperationCanceledException>() : Is.TypeOf<PushException>().With.Message.Contains("refused the server's login"),
            "the start's own error is thrown on");
        Assert.That(clients, Has.Count.EqualTo(2), "precondition: the account connection was made, then the push connection");
        var probe = new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", mosquitto.Port).WithClientId("probe").Build();
        for (var i = 0; i < clients.Count; i++)
        {
            var client = clients[i];
            Assert.That(client.IsConnected, Is.False, $"client {i} of the failed start is disconnected from the broker");
            var reuse = Assert.CatchAsync(() => client.ConnectAsync(probe));
            Assert.That(reuse, Is.InstanceOf<ObjectDisposedException>(), $"client {i} of the failed start is disposed (connected: {client.IsConnected})");
        }
        Assert.That(linked.Link.Connected, Is.False);
        Assert.That(linked.Link.ReconnectAttempts, Is.Zero, "no loop keeps a connection of the failed start");
    }

    /// <summary>The server's role on Mosquitto made before the server makes it (it then leaves it alone), granting what the server grants it.</summary>
    private static void ServerRoleAsGranted(MosquittoServer mosquitto)
    {
        Dynsec(mosquitto, "createRole", "tsunagu-server");
        Dynsec(mosquitto, "addRoleACL", "tsunagu-server", "publishClientSend", $"{PushTopics.Root}/+/cmd", "allow", "0");
        Dynsec(mosquitto, "addRoleACL", "tsunagu-server", "subscribePattern", $"{PushTopics.Root}/+/status", "allow", "0");
        Dynsec(mosquitto, "addRoleACL", "tsunagu-server", "publishClientReceive", $"{PushTopics.Root}/+/status", "allow", "0");
    }

    private static void Dynsec(MosquittoServer mosquitto, params string[] command) => TestServer.Run("mosquitto_ctrl",
        ["-h", "127.0.0.1", "-p", mosquitto.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "-u", "admin", "-P", mosquitto.AdminPassword, "dynsec", .. command]);

    /// <summary>A <see cref="BrokerLink"/> to a Mosquitto, made as the server makes it, over a fresh data directory; stopped and removed when disposed.</summary>
    private sealed class LinkOnMosquitto : IAsyncDisposable
    {
        private readonly string _directory = Directory.CreateTempSubdirectory("tsunagu-link-").FullName;
        private readonly ILoggerFactory _logging;

        public LinkOnMosquitto(MosquittoServer mosquitto, TimeProvider clock)
        {
            _logging = LoggerFactory.Create(l => l.AddProvider(Logs));
            var options = new Tsunagu.Server.ServerOptions { DataDirectory = _directory };
            var settings = MqttSettings.Parse(mosquitto.Setting);
            var database = Database.Parse("tsunagu.db", _directory);
            database.Migrate();
            Store = new TsunaguStore(database, clock);
            BrokerKey = BrokerKey.LoadOrCreate(_directory);
            Link = new BrokerLink(options, settings, new EmbeddedBroker(options, settings, BrokerKey, Store, clock, _logging.CreateLogger<EmbeddedBroker>()),
                Tsunagu.Server.Apis.UnitKey.LoadOrCreate(_directory), BrokerKey, Store, clock, Metrics,
                new Tsunagu.Server.Cluster.ReplicaLease(Store, options, clock, _logging.CreateLogger<Tsunagu.Server.Cluster.ReplicaLease>()), _logging.CreateLogger<BrokerLink>());
        }

        public CapturingLogs Logs { get; } = new();
        public Tsunagu.Server.Metrics.ServerMetrics Metrics { get; } = new();
        public TsunaguStore Store { get; }
        public BrokerKey BrokerKey { get; }
        public BrokerLink Link { get; }

        public async ValueTask DisposeAsync()
        {
            await Link.StopAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(60)); // the loops end promptly when stopped
            await Link.DisposeAsync();
            _logging.Dispose();
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            Directory.Delete(_directory, recursive: true);
        }
    }

    private static async Task WaitForPollAsync(PollCountingClock clock, int polls)
    {
        // the loop arms its next one-second wait when it is through with the last look (a sweep finished or given up)
        for (var i = 0; i < 3000 && clock.Polls < polls; i++) { await Task.Delay(10); }
        Assert.That(clock.Polls, Is.EqualTo(polls), "the resend loop to finish its look and wait for the next");
    }

    private static async Task<Dictionary<string, PushCheckRow>> RowsAsync(TsunaguStore store, IEnumerable<string> macs)
    {
        var rows = new Dictionary<string, PushCheckRow>();
        foreach (var mac in macs) { rows[mac] = (await store.PushChecks.ListPushChecksForUnitAsync(mac, 10)).Single(); }
        return rows;
    }

    private static async Task<string> ExportAsync(Tsunagu.Server.Metrics.ServerMetrics metrics)
    {
        using var stream = new MemoryStream();
        await metrics.Registry.CollectAndExportAsTextAsync(stream);
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>A fake clock that counts the one-second waits of the resend loop (<see cref="BrokerLink.HolderPoll"/>): one per look.</summary>
    private sealed class PollCountingClock(DateTimeOffset start) : Microsoft.Extensions.Time.Testing.FakeTimeProvider(start)
    {
        private int _polls;

        public int Polls => Volatile.Read(ref _polls);

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            if (dueTime == BrokerLink.HolderPoll) { Interlocked.Increment(ref _polls); }
            return base.CreateTimer(callback, state, dueTime, period);
        }
    }

    /// <summary>Forced version checks the server recorded for the unit (every forced check writes a history entry).</summary>
    private static async Task<int> ForcedChecksAsync(TsunaguStore store, string mac) =>
        (await store.History.ListUnitEventsAsync(mac, 10_000)).Count(e => e.Kind == UnitEventKinds.Check && e.Detail?.StartsWith("forced", StringComparison.Ordinal) == true);

    private static ForceCheckStatus CheckStatus(Tsunagu.Cli.Factory.OperatorClient client, string id) =>
        System.Text.Json.JsonSerializer.Deserialize(client.SendAsync(HttpMethod.Get, $"{Routes.ForceCheck}/{id}", null, CancellationToken.None).GetAwaiter().GetResult(),
            ProtocolJson.Default.ForceCheckStatus)!;

    /// <summary>The most attempts a loop with equal jitter (delay at least half of min(cap, base * 2^k)) can make in <paramref name="seconds"/>.</summary>
    private static int MaxAttempts(double seconds, TimeSpan baseDelay, TimeSpan cap)
    {
        var attempts = 0;
        var elapsed = 0.0;
        for (var k = 0; ; k++)
        {
            elapsed += Math.Min(cap.TotalSeconds, baseDelay.TotalSeconds * Math.Pow(2, k)) / 2;
            if (elapsed > seconds) { return attempts; }
            attempts++;
        }
    }

    private sealed class SupervisorOptionsWithPush
    {
        public Tsunagu.Firmware.Supervision.SupervisorOptions Value { get; } = TestServer.FastOptions with
        {
            Push = new PushOptions { ReconnectBase = TimeSpan.FromMilliseconds(200), ReconnectCap = TimeSpan.FromSeconds(2) },
        };
    }

    /// <summary>A listener on the broker's port that accepts and closes every connection, counting them.</summary>
    private sealed class AcceptAndClose : IDisposable
    {
        private readonly TcpListener _listener;
        private readonly CancellationTokenSource _stop = new();
        private int _accepts;

        private AcceptAndClose(int port)
        {
            _listener = new TcpListener(IPAddress.Loopback, port);
            _listener.Server.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            _listener.Start();
            _ = LoopAsync();
        }

        public int Accepts => Volatile.Read(ref _accepts);

        public static AcceptAndClose Start(int port) => new(port);

        private async Task LoopAsync()
        {
            try
            {
                while (true)
                {
                    using var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                    Interlocked.Increment(ref _accepts);
                }
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                // stopped
            }
        }

        public void Dispose()
        {
            if (_stop.IsCancellationRequested) { return; }
            _stop.Cancel();
            _listener.Stop();
            _stop.Dispose();
        }
    }

    /// <summary>Keeps every log line of the servers it is attached to.</summary>
    private sealed class CapturingLogs : ILoggerProvider
    {
        private readonly ConcurrentQueue<(string Category, LogLevel Level, string Message)> _lines = new();

        public IEnumerable<string> Lines => _lines.Select(l => $"{l.Level} {l.Category}: {l.Message}");

        public int Count(string category, LogLevel atLeast) => _lines.Count(l => l.Category == category && l.Level >= atLeast);

        public ILogger CreateLogger(string categoryName) => new Logger(categoryName, _lines);

        public void Dispose() { }

        private sealed class Logger(string category, ConcurrentQueue<(string, LogLevel, string)> lines) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                lines.Enqueue((category, logLevel, formatter(state, exception)));
        }
    }
}
