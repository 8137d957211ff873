using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet;
using MQTTnet.Formatter;
using Tsunagu.Firmware.Net;
using Tsunagu.Firmware.Supervision;
using Tsunagu.Protocol;
using Tsunagu.Server.Push;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The embedded broker's logins: a unit's password is the short-lived one of its host session, refused once it has
/// expired, for another unit, or made with a broker key that has been replaced; units logged in with such a password
/// are disconnected; a unit renews its password by itself; keep-alive and the connection rate per source are bounded.
/// </summary>
[NonParallelizable]
public class BrokerCredentialTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(40);

    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    [TearDown]
    public void TearDown()
    {
        TestServer.Configure.Value = null;
        TestServer.Time.Value = null;
    }

    private static EmbeddedBroker Broker(TestServer server) => server.App.Services.GetRequiredService<EmbeddedBroker>();

    private static string KeyFile(TestServer server) => Path.Combine(server.Root, "server", "keys", BrokerKey.FileName);

    /// <summary>Replaces the broker key as the operator does: a new file renamed over the old one.</summary>
    private static void RotateKey(TestServer server)
    {
        File.WriteAllBytes(KeyFile(server) + ".new", RandomNumberGenerator.GetBytes(32));
        File.Move(KeyFile(server) + ".new", KeyFile(server), overwrite: true);
    }

    private static async Task<(MqttClientConnectResultCode Code, IMqttClient Client)> LoginAsync(TestServer server, string mac, string password, ushort keepAlive = 30)
    {
        var client = new MqttClientFactory().CreateMqttClient();
        var options = BrokerPortTests.UnitOptions("127.0.0.1", Broker(server).Port, server.Pin).WithProtocolVersion(MqttProtocolVersion.V500)
            .WithClientId(UnitCredentials.BrokerClientId(mac)).WithCredentials(UnitCredentials.BrokerUsername(mac), password)
            .WithKeepAlivePeriod(TimeSpan.FromSeconds(keepAlive)).WithTimeout(TimeSpan.FromSeconds(20)).Build();
        try
        {
            var result = await client.ConnectAsync(options);
            return (result.ResultCode, client);
        }
        catch (MQTTnet.Adapter.MqttConnectingFailedException e)
        {
            TestContext.Out.WriteLine($"login of {mac} failed: {e.Message}");
            return (MqttClientConnectResultCode.UnspecifiedError, client);
        }
    }

    private static async Task<MqttClientConnectResultCode> LoginCodeAsync(TestServer server, string mac, string password, ushort keepAlive = 30)
    {
        var (code, client) = await LoginAsync(server, mac, password, keepAlive);
        using (client)
        {
            if (client.IsConnected) { await client.DisconnectAsync(); }
        }
        return code;
    }

    [Test]
    public async Task A_unit_logs_in_only_with_an_unexpired_password_of_its_own_host_session()
    {
        await using var server = await TestServer.StartAsync();
        var units = await server.AddUnitsAsync(2);
        var (mac, other) = (units[0].Mac, units[1].Mac);
        var session = await server.HostSessionAsync(mac);
        Assert.That(session.PushPassword, Is.Not.Null, "a host session carries the broker password");
        Assert.That(session.PushUsername, Is.EqualTo(UnitCredentials.BrokerUsername(mac)));
        var lifetime = new Tsunagu.Server.ServerOptions().BrokerPasswordLifetime;
        Assert.That(session.PushPasswordExpiresInSeconds, Is.InRange((long)(lifetime.TotalSeconds / 2) - 2, (long)(lifetime.TotalSeconds * 1.5)),
            "valid between half and one and a half lifetimes");
        var again = await server.HostSessionAsync(mac);
        Assert.That(again.PushPassword, Is.EqualTo(session.PushPassword), "sessions within the same half-lifetime get the same password");

        var key = File.ReadAllBytes(KeyFile(server));
        var now = DateTimeOffset.UtcNow;
        var expiry = BrokerPassword.ExpiryOf(session.PushPassword!)!.Value;
        var parts = session.PushPassword!.Split('.');
        // what units used before: a password derived from the unit secret alone, the same for ever
        var staticPassword = Base64Url.Encode(HMACSHA256.HashData(UnitCredentials.DeriveUnitSecret(server.UnitKey, mac), "tsunagu/v1/broker-password"u8));
        var refusals = new Dictionary<string, string>
        {
            ["the old static password"] = staticPassword,
            ["an expired password made with the right key"] = BrokerPassword.Issue(key, mac, now.AddSeconds(-1)),
            ["the expiry moved later, the HMAC kept"] = $"{parts[0]}.{expiry.AddDays(1).ToUnixTimeSeconds()}.{parts[2]}",
            ["another unit's password"] = (await server.HostSessionAsync(other)).PushPassword!,
            ["a password made with another key"] = BrokerPassword.Issue(RandomNumberGenerator.GetBytes(32), mac, expiry),
            ["no password"] = "",
        };
        Assert.Multiple(async () =>
        {
            foreach (var (what, password) in refusals)
            {
                Assert.That(await LoginCodeAsync(server, mac, password), Is.EqualTo(MqttClientConnectResultCode.BadUserNameOrPassword), what);
            }
            Assert.That(await LoginCodeAsync(server, mac, session.PushPassword!), Is.EqualTo(MqttClientConnectResultCode.Success), "its own session's password");
        });
        // the broker counts a connection as closed when its side of the socket ends, which may come after the client's
        // DisconnectAsync returns: wait for it (bounded) instead of reading the count at once
        await server.WaitForAsync(() => Broker(server).Connections == 1, "every refused login is closed: only the server's own client is left", Bound);
    }

    [Test]
    public async Task Replacing_the_broker_key_refuses_every_earlier_password_and_disconnects_units_logged_in_with_one()
    {
        await using var server = await TestServer.StartAsync();
        var units = await server.AddUnitsAsync(2);
        var old = await server.BrokerPasswordAsync(units[0].Mac);
        var (code, connected) = await LoginAsync(server, units[0].Mac, old);
        using (connected)
        {
            Assert.That(code, Is.EqualTo(MqttClientConnectResultCode.Success));
            Assert.That(await Broker(server).SweepOnceAsync(), Is.EqualTo(0), "nothing to disconnect while the key stands");
            Assert.That(connected.IsConnected, Is.True);

            RotateKey(server);
            Assert.That(await Broker(server).SweepOnceAsync(), Is.EqualTo(1), "the unit logged in with the old key");
            await server.WaitForAsync(() => !connected.IsConnected, "the unit disconnected", Bound);
        }
        Assert.That(await LoginCodeAsync(server, units[0].Mac, old), Is.EqualTo(MqttClientConnectResultCode.BadUserNameOrPassword), "no grace period for the old key");
        var fresh = await server.BrokerPasswordAsync(units[0].Mac);
        Assert.That(fresh, Is.Not.EqualTo(old));
        Assert.That(await LoginCodeAsync(server, units[0].Mac, fresh), Is.EqualTo(MqttClientConnectResultCode.Success), "a new session's password");
    }

    [Test]
    public async Task A_unit_logged_in_with_a_password_that_expires_is_disconnected_at_the_next_sweep()
    {
        // the server's clock is the test's: the password expires when the test moves the clock, not when a busy machine gets there
        var clock = new ManualClock();
        TestServer.Time.Value = clock;
        await using var server = await TestServer.StartAsync();
        var units = await server.AddUnitsAsync(1);
        var expiresAt = DateTimeOffset.FromUnixTimeSeconds(clock.GetUtcNow().ToUnixTimeSeconds() + 4);
        var password = BrokerPassword.Issue(File.ReadAllBytes(KeyFile(server)), units[0].Mac, expiresAt);
        var (code, client) = await LoginAsync(server, units[0].Mac, password);
        using (client)
        {
            Assert.That(code, Is.EqualTo(MqttClientConnectResultCode.Success), "accepted before its expiry");
            Assert.That(await Broker(server).SweepOnceAsync(), Is.EqualTo(0), "not disconnected before its expiry");
            Assert.That(client.IsConnected, Is.True);
            clock.Advance(expiresAt - clock.GetUtcNow() + TimeSpan.FromSeconds(1));
            // the sweep runs by itself too (every SweepInterval); either one ends the connection
            await Broker(server).SweepOnceAsync();
            await server.WaitForAsync(() => !client.IsConnected, "the unit disconnected once its password expired", Bound);
        }
        Assert.That(await LoginCodeAsync(server, units[0].Mac, password), Is.EqualTo(MqttClientConnectResultCode.BadUserNameOrPassword), "and refused after");
    }

    [Test]
    public async Task A_unit_with_keep_alive_0_or_above_the_cap_is_refused_so_it_cannot_hold_a_slot_for_ever()
    {
        TestServer.Configure.Value = o => o.MqttMaxKeepAliveSeconds = 120;
        await using var server = await TestServer.StartAsync();
        var units = await server.AddUnitsAsync(1);
        var password = await server.BrokerPasswordAsync(units[0].Mac);
        Assert.Multiple(async () =>
        {
            Assert.That(await LoginCodeAsync(server, units[0].Mac, password, keepAlive: 0), Is.Not.EqualTo(MqttClientConnectResultCode.Success), "keep-alive 0");
            Assert.That(await LoginCodeAsync(server, units[0].Mac, password, keepAlive: 121), Is.Not.EqualTo(MqttClientConnectResultCode.Success), "above the cap");
            Assert.That(await LoginCodeAsync(server, units[0].Mac, password, keepAlive: 120), Is.EqualTo(MqttClientConnectResultCode.Success), "at the cap");
        });
        await server.WaitForAsync(() => Broker(server).Connections == 1, "only the server's own client is left", Bound);
    }

    [Test]
    public async Task A_source_that_opens_connections_faster_than_its_rate_is_refused_and_others_are_not()
    {
        // a burst of 3 and a refill too slow to matter during the test: the 4th connection from one address is refused
        TestServer.Configure.Value = o => (o.MqttConnectBurstPerSource, o.MqttConnectsPerSourcePerSecond, o.MqttPlainPort) = (3, 0.001, 0);
        await using var server = await TestServer.StartAsync();
        var plain = Broker(server).PlainPort!.Value;
        async Task<bool> Served(string source)
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            socket.Bind(new IPEndPoint(IPAddress.Parse(source), 0));
            try
            {
                await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, plain));
                byte[] body = [0, 4, (byte)'M', (byte)'Q', (byte)'T', (byte)'T', 4, 0xC2, 0, 60, 0, 5, (byte)'p', (byte)'r', (byte)'o', (byte)'b', (byte)'e', 0, 1, (byte)'x', 0, 1, (byte)'y'];
                await socket.SendAsync(new byte[] { 0x10, (byte)body.Length }.Concat(body).ToArray(), SocketFlags.None);
                using var timeout = new CancellationTokenSource(Bound);
                var buffer = new byte[1];
                return await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token) == 1 && buffer[0] == 0x20; // CONNACK
            }
            catch (SocketException)
            {
                return false;
            }
        }
        var refusedBefore = Broker(server).RefusedConnections;
        for (var i = 0; i < 3; i++)
        {
            Assert.That(await Served("127.0.0.5"), Is.True, $"connection {i + 1} of the burst");
        }
        Assert.That(await Served("127.0.0.5"), Is.False, "past the burst");
        Assert.That(await Served("127.0.0.6"), Is.True, "another source has its own bucket");
        Assert.That(Broker(server).RefusedConnections - refusedBefore, Is.EqualTo(1), "exactly the one past the burst");
        using var http = server.PinnedHttp();
        Assert.That((await http.GetAsync("/healthz")).StatusCode, Is.EqualTo(HttpStatusCode.OK));
    }

    [Test]
    public async Task A_unit_renews_its_short_lived_password_by_itself_and_stays_reachable_by_push()
    {
        // a lifetime of 8 s: each password is valid 4 to 12 s, so the unit renews several times while the test runs
        TestServer.Configure.Value = o => o.BrokerPasswordLifetime = TimeSpan.FromSeconds(8);
        var options = TestServer.FastOptions with { Push = new PushOptions { ReconnectBase = TimeSpan.FromMilliseconds(200), ReconnectCap = TimeSpan.FromSeconds(2) } };
        await using var server = await TestServer.StartAsync(options);
        var units = await server.AddUnitsAsync(1);
        server.Fleet.StartAll();
        await server.WaitReadyAsync(units[0]);
        var push = units[0].Supervisor.Context;
        await server.WaitForAsync(() => push.Push?.IsConnected == true, "the unit connected to the broker", Bound);
        var first = push.Push!.Credential!.Password;
        var started = DateTimeOffset.UtcNow;
        // past the first password's expiry and well into the next one's
        await server.WaitForAsync(() => push.Push.Credential!.Password != first && push.Push.IsConnected, "a renewed password in use", Bound);
        while (DateTimeOffset.UtcNow < BrokerPassword.ExpiryOf(first)!.Value.AddSeconds(2)) { await Task.Delay(100); }
        await server.WaitForAsync(() => push.Push.IsConnected, "connected after the first password expired", Bound);
        int Checks() => server.ChainOf(units[0].Mac).Count(s => s == StateId.VersionCheck);
        var before = Checks();
        using var client = server.Operator();
        await client.ForceCheckAsync(new ForceCheckRequest([units[0].Mac], null), CancellationToken.None);
        await server.WaitForAsync(() => Checks() == before + 1, "the forced check reached the unit", Bound);
        var seconds = (DateTimeOffset.UtcNow - started).TotalSeconds;
        TestContext.Out.WriteLine($"{seconds:0.0} s: {push.Push.Renewals} renewal(s), {push.Push.Connects} connect(s), {push.Push.Attempts} attempt(s)");
        Assert.Multiple(() =>
        {
            Assert.That(push.Push.Renewals, Is.GreaterThanOrEqualTo(1));
            // one renewal and one connection per password lifetime (at least 4 s), not a loop
            Assert.That(push.Push.Renewals, Is.LessThanOrEqualTo(2 + (long)(seconds / 4)), "renewals bounded");
            Assert.That(push.Push.Attempts, Is.LessThanOrEqualTo(push.Push.Connects + 2), "almost every attempt succeeds: renewed before the broker refuses");
        });
    }

    [Test]
    public async Task After_the_key_is_replaced_a_running_unit_is_disconnected_refused_once_and_back_with_a_new_password()
    {
        var options = TestServer.FastOptions with { Push = new PushOptions { ReconnectBase = TimeSpan.FromMilliseconds(200), ReconnectCap = TimeSpan.FromSeconds(2) } };
        await using var server = await TestServer.StartAsync(options);
        var units = await server.AddUnitsAsync(1);
        server.Fleet.StartAll();
        await server.WaitReadyAsync(units[0]);
        var ctx = units[0].Supervisor.Context;
        await server.WaitForAsync(() => ctx.Push?.IsConnected == true, "the unit connected to the broker", Bound);
        var (old, connects, attempts, renewals) = (ctx.Push!.Credential!.Password, ctx.Push.Connects, ctx.Push.Attempts, ctx.Push.Renewals);

        RotateKey(server);
        await Broker(server).SweepOnceAsync();
        await server.WaitForAsync(() => ctx.Push.Connects > connects && ctx.Push.IsConnected, "the unit back on the broker", Bound);
        await Task.Delay(1000); // anything it still does is counted too
        Assert.Multiple(() =>
        {
            Assert.That(ctx.Push.Credential!.Password, Is.Not.EqualTo(old));
            Assert.That(ctx.Push.Renewals - renewals, Is.EqualTo(1), "one new session for one refusal");
            Assert.That(ctx.Push.Attempts - attempts, Is.LessThanOrEqualTo(3), "refused once (its old password), then in; no hammering");
            Assert.That(ctx.Push.Connects - connects, Is.EqualTo(1));
        });
    }
}
