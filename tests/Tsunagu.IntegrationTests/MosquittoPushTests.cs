using Microsoft.Extensions.DependencyInjection;
using MQTTnet;
using Tsunagu.Demo;
using Tsunagu.Firmware.Supervision;
using Tsunagu.Protocol;

namespace Tsunagu.IntegrationTests;

/// <summary>Push through a real Mosquitto: per-unit accounts made by the server, ACLs, forced checks, presence.</summary>
[NonParallelizable]
public class MosquittoPushTests
{
    private MosquittoServer? _mosquitto;

    [SetUp]
    public void StartBroker()
    {
        TestServer.DatabaseKind.Value = "sqlite";
        _mosquitto = MosquittoServer.Start();
    }

    [TearDown]
    public void StopBroker() => _mosquitto?.Dispose();

    [Test]
    public async Task A_forced_check_through_mosquitto_reaches_exactly_the_selected_units()
    {
        await using var server = await TestServer.StartAsync(mqtt: _mosquitto!.Setting);
        var units = await server.AddUnitsAsync(4);
        server.Fleet.StartAll();
        foreach (var unit in units) { await server.WaitReadyAsync(unit); }
        await server.WaitForAsync(() => units.All(u => u.Supervisor.Context.Push?.IsConnected == true), "every unit logged in to Mosquitto");
        await server.WaitForAsync(() => units.AllAsync(async u => (await server.Store.Units.GetUnitAsync(u.Mac))!.Online == 1), "presence of every unit");
        int Checks(string mac) => server.ChainOf(mac).Count(s => s == StateId.VersionCheck);
        var before = units.ToDictionary(u => u.Mac, u => Checks(u.Mac));

        using var client = server.Operator();
        var selected = new[] { units[0].Mac, units[2].Mac };
        var result = await client.ForceCheckAsync(new ForceCheckRequest(selected, null), CancellationToken.None);
        Assert.That(result.Notified, Is.EquivalentTo(selected));
        foreach (var mac in selected)
        {
            await server.WaitForAsync(() => Checks(mac) == before[mac] + 1, $"{mac} to check");
        }
        await Task.Delay(1000);
        Assert.Multiple(() =>
        {
            foreach (var unit in units)
            {
                Assert.That(Checks(unit.Mac), Is.EqualTo(before[unit.Mac] + (selected.Contains(unit.Mac) ? 1 : 0)), unit.Mac);
            }
        });

        // a unit that stops goes offline
        await server.Fleet.PowerOffAsync(units[3]);
        await server.WaitForAsync(async () => (await server.Store.Units.GetUnitAsync(units[3].Mac))!.Online == 0, "unit 4 offline after it stopped");

        // a second server instance on the same data (a restart, or another replica) provisions the broker again
        // without disconnecting any unit, and its pushes reach them
        var second = await TestServer.BuildServerAsync(server.Root, 0);
        await second.StartAsync();
        try
        {
            await Task.Delay(500);
            Assert.That(units.Take(3).All(u => u.Supervisor.Context.Push?.IsConnected == true), Is.True, "no unit was kicked off the broker");
            using var secondClient = new Tsunagu.Cli.Factory.OperatorClient(new Uri(Tsunagu.Server.ServerHost.BaseUrl(second)), DemoCatalogue.OperatorName, TestServer.Password, [server.Pin]);
            var beforeSecond = Checks(units[1].Mac);
            await secondClient.ForceCheckAsync(new ForceCheckRequest([units[1].Mac], null), CancellationToken.None);
            await server.WaitForAsync(() => Checks(units[1].Mac) == beforeSecond + 1, "the second server's push to reach unit 2");
        }
        finally
        {
            await second.StopAsync();
            await second.DisposeAsync();
        }
    }

    [Test]
    public async Task Mosquitto_lets_a_unit_read_only_its_own_topic_and_publishes_its_last_will()
    {
        await using var server = await TestServer.StartAsync(mqtt: _mosquitto!.Setting);
        var units = await server.AddUnitsAsync(2);
        var identity = server.Identity(1);
        var compact = MacAddress.Compact(identity.Mac);
        var password = await server.BrokerPasswordAsync(identity.Mac);
        var factory = new MqttClientFactory();

        using var wrong = factory.CreateMqttClient();
        var refused = await wrong.ConnectAsync(new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", _mosquitto.Port)
            .WithClientId(UnitCredentials.BrokerClientId(units[1].Mac)).WithCredentials(MacAddress.Compact(units[1].Mac), password).Build());
        Assert.That(refused.ResultCode, Is.Not.EqualTo(MqttClientConnectResultCode.Success), "unit 1's password does not log in as unit 2");

        var unit = factory.CreateMqttClient();
        var login = await unit.ConnectAsync(new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", _mosquitto.Port)
            .WithClientId($"unit-{compact}").WithCredentials(compact, password)
            .WithWillTopic(PushTopics.Status(identity.Mac)).WithWillPayload(Presence.Offline).WithWillRetain(true).Build());
        Assert.That(login.ResultCode, Is.EqualTo(MqttClientConnectResultCode.Success));
        var own = await unit.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(PushTopics.Commands(identity.Mac)).Build());
        var other = await unit.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(PushTopics.Commands(units[1].Mac)).Build());
        var all = await unit.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(PushTopics.Root + "/#").Build());
        Assert.That(own.Items.Single().ResultCode, Is.EqualTo(MqttClientSubscribeResultCode.GrantedQoS0));
        Assert.That(other.Items.Single().ResultCode, Is.EqualTo(MqttClientSubscribeResultCode.NotAuthorized));
        Assert.That(all.Items.Single().ResultCode, Is.EqualTo(MqttClientSubscribeResultCode.NotAuthorized));

        // the unit may not publish commands to another unit (the broker drops the message: a QoS 1 publish is refused)
        var forged = await unit.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(PushTopics.Commands(units[1].Mac)).WithPayload("{}")
            .WithQualityOfServiceLevel(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce).Build());
        Assert.That(forged.IsSuccess, Is.False);

        await unit.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(PushTopics.Status(identity.Mac)).WithPayload(Presence.Online).WithRetainFlag(true).Build());
        await server.WaitForAsync(async () => (await server.Store.Units.GetUnitAsync(identity.Mac))!.Online == 1, "online");
        unit.Dispose(); // the connection drops without a DISCONNECT: Mosquitto publishes the will
        await server.WaitForAsync(async () => (await server.Store.Units.GetUnitAsync(identity.Mac))!.Online == 0, "offline from the last will", TimeSpan.FromSeconds(20));
        Assert.That((await server.Store.Units.GetUnitAsync(identity.Mac))!.PresenceAt, Is.Not.Null);
    }

    private Task<MqttClientConnectResultCode> LoginAsync(string mac, string password, IMqttClient? keep = null) =>
        _mosquitto!.LoginAsync(mac, password, keep, TestContext.Out.WriteLine);

    /// <summary>
    /// A clock standing still 1 s into a 12 s broker-password window (expiries are aligned to the lifetime), near the
    /// real time: every session gets the same password until the test moves the clock.
    /// </summary>
    private static ManualClock ClockAtWindowStart(TimeSpan lifetime)
    {
        var seconds = (long)lifetime.TotalSeconds;
        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        // ExpiryFor puts now + lifetime/2 in a window: start where that sum is 1 s past a multiple of the lifetime
        var start = ((now + seconds / 2) / seconds * seconds) + 1 - (seconds / 2);
        return new ManualClock(DateTimeOffset.FromUnixTimeSeconds(start));
    }

    /// <summary>
    /// A server on the broker with one unit, whose broker passwords last <paramref name="lifetime"/>, on a clock standing
    /// still 1 s into a password window (<see cref="ClockAtWindowStart"/>): the unit's MAC, the server's broker link and
    /// the clock, which the test moves.
    /// </summary>
    private async Task<(TestServer Server, string Mac, Tsunagu.Server.Push.BrokerLink Link, ManualClock Clock)> StartOneUnitInPasswordWindowAsync(TimeSpan lifetime)
    {
        var clock = ClockAtWindowStart(lifetime);
        TestServer.Configure.Value = o => o.BrokerPasswordLifetime = lifetime;
        TestServer.Time.Value = clock;
        TestServer server;
        try
        {
            server = await TestServer.StartAsync(mqtt: _mosquitto!.Setting);
        }
        finally
        {
            TestServer.Configure.Value = null;
            TestServer.Time.Value = null;
        }
        try
        {
            var units = await server.AddUnitsAsync(1);
            return (server, units[0].Mac, server.App.Services.GetRequiredService<Tsunagu.Server.Push.BrokerLink>(), clock);
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    [Test]
    public async Task Mosquitto_takes_the_session_password_and_refuses_it_once_the_key_is_replaced_or_it_has_expired()
    {
        var (server, mac, link, clock) = await StartOneUnitInPasswordWindowAsync(TimeSpan.FromSeconds(12));
        await using (server)
        {
            Assert.That(await LoginAsync(mac, "v1.0.x"), Is.Not.EqualTo(MqttClientConnectResultCode.Success), "a registered unit without a session cannot log in");

            var first = await server.BrokerPasswordAsync(mac);
            using var held = new MqttClientFactory().CreateMqttClient();
            Assert.That(await LoginAsync(mac, first, held), Is.EqualTo(MqttClientConnectResultCode.Success), "the session's password is set on Mosquitto");
            clock.Advance(TimeSpan.FromSeconds(9)); // 10 s into the window: the same one
            Assert.That(await server.BrokerPasswordAsync(mac), Is.EqualTo(first), "a second session in the same half-lifetime: same password");
            await Task.Delay(500);
            Assert.That(held.IsConnected, Is.True, "and it is not set again (Mosquitto would disconnect the unit)");

            // the operator replaces the broker key: the server replaces every password made with the old one
            var keyFile = Path.Combine(server.Root, "server", "keys", Tsunagu.Server.Push.BrokerKey.FileName);
            File.WriteAllBytes(keyFile + ".new", System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
            File.Move(keyFile + ".new", keyFile, overwrite: true);
            await link.ExpireUnitPasswordsOnceAsync(CancellationToken.None);
            await server.WaitForAsync(() => !held.IsConnected, "the unit disconnected by Mosquitto", TimeSpan.FromSeconds(60));
            Assert.That(await LoginAsync(mac, first), Is.Not.EqualTo(MqttClientConnectResultCode.Success), "the old key's password is refused");

            var second = await server.BrokerPasswordAsync(mac);
            Assert.That(second, Is.Not.EqualTo(first));
            Assert.That(await LoginAsync(mac, second), Is.EqualTo(MqttClientConnectResultCode.Success), "a new session's password");

            // Mosquitto knows nothing of expiry: the server replaces an expired password
            var expiry = BrokerPassword.ExpiryOf(second)!.Value;
            clock.Advance(expiry - clock.GetUtcNow() + TimeSpan.FromSeconds(1));
            await link.ExpireUnitPasswordsOnceAsync(CancellationToken.None); // the server's own sweep may have done it already
            Assert.That(await LoginAsync(mac, second), Is.Not.EqualTo(MqttClientConnectResultCode.Success), "an expired password is refused");
            var third = await server.BrokerPasswordAsync(mac);
            Assert.That(BrokerPassword.ExpiryOf(third), Is.GreaterThan(clock.GetUtcNow()), "the new session's password is not expired");
            Assert.That(await LoginAsync(mac, third), Is.EqualTo(MqttClientConnectResultCode.Success), "and a new session's is taken");
        }
    }

    [Test]
    public async Task A_password_set_by_a_session_while_the_sweep_replaces_the_stale_one_is_not_overwritten()
    {
        var (server, mac, link, clock) = await StartOneUnitInPasswordWindowAsync(TimeSpan.FromSeconds(12));
        await using (server)
        {
            var stale = await server.BrokerPasswordAsync(mac);

            // the sweep (the server's own or the one asked for below) lists the account as stale; before it replaces
            // the password, a host session sets a fresh one: exactly that interleaving, made to happen every time
            var fresh = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
            var interleaved = 0;
            link.StaleAccountFound = async (user, _) =>
            {
                if (user == UnitCredentials.BrokerUsername(mac) && Interlocked.Exchange(ref interleaved, 1) == 0)
                {
                    try { fresh.SetResult(await server.BrokerPasswordAsync(mac)); }
                    catch (Exception e) { fresh.SetException(e); }
                }
            };
            clock.Advance(BrokerPassword.ExpiryOf(stale)!.Value - clock.GetUtcNow() + TimeSpan.FromSeconds(1));
            await link.ExpireUnitPasswordsOnceAsync(CancellationToken.None); // sweeps run one at a time: any earlier one is over
            Assert.That(fresh.Task.IsCompleted, Is.True, "a sweep found the expired password and the session interleaved");
            var password = await fresh.Task;
            link.StaleAccountFound = null;

            Assert.That(password, Is.Not.EqualTo(stale));
            Assert.That(await LoginAsync(mac, password), Is.EqualTo(MqttClientConnectResultCode.Success), "the password the session handed out works on Mosquitto");
            Assert.That(await LoginAsync(mac, stale), Is.Not.EqualTo(MqttClientConnectResultCode.Success), "the expired one does not");
            Assert.That(await link.ExpireUnitPasswordsOnceAsync(CancellationToken.None), Is.Zero, "a fresh password is not stale");
            Assert.That(await server.BrokerPasswordAsync(mac), Is.EqualTo(password), "another session: the same password, still set");
            Assert.That(await LoginAsync(mac, password), Is.EqualTo(MqttClientConnectResultCode.Success));
        }
    }
}
