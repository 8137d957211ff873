using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet;
using MQTTnet.Formatter;
using Tsunagu.Protocol;
using Tsunagu.Server;
using Tsunagu.Server.Push;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// What anybody who reaches the embedded broker's port can do before and after logging in: hold connections,
/// announce huge packets, store large retained messages. The server stays up and serving HTTPS throughout.
/// </summary>
[NonParallelizable]
public class BrokerPortTests
{
    /// <summary>Far longer than any wait below on a loaded machine, far shorter than MQTTnet's own 100 s.</summary>
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(40);

    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    [TearDown]
    public void TearDown() => TestServer.Configure.Value = null;

    private static EmbeddedBroker Broker(TestServer server) => server.App.Services.GetRequiredService<EmbeddedBroker>();

    /// <summary>
    /// A raw TCP connection from <paramref name="source"/> (any 127.0.0.0/8 address on Linux) to the broker's plain
    /// port (the tests that use it open one), or to its TLS port.
    /// </summary>
    private static async Task<Socket> RawAsync(TestServer server, string source = "127.0.0.1", bool tls = false)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Parse(source), 0));
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, tls ? Broker(server).Port : Broker(server).PlainPort!.Value));
        return socket;
    }

    /// <summary>A TLS connection to the broker's TLS port that accepts only the server's pinned certificate.</summary>
    private static async Task<System.Net.Security.SslStream> TlsAsync(TestServer server)
    {
        var socket = await RawAsync(server, tls: true);
        var tls = new System.Net.Security.SslStream(new NetworkStream(socket, ownsSocket: true), false,
            (_, c, ch, _) => TrustAnchor.Matches(c as System.Security.Cryptography.X509Certificates.X509Certificate2, ch, [server.Pin]));
        await tls.AuthenticateAsClientAsync("127.0.0.1");
        return tls;
    }

    /// <summary>MQTT client options of a unit: TLS to the broker's TLS port (<paramref name="host"/>, <paramref name="port"/>), the server's certificate pinned (<paramref name="pin"/>), as <see cref="Tsunagu.Firmware.Net.PushListener"/> does.</summary>
    internal static MqttClientOptionsBuilder UnitOptions(string host, int port, string pin) =>
        new MqttClientOptionsBuilder().WithTcpServer(host, port).WithTlsOptions(t => t.UseTls().WithCertificateValidationHandler(e =>
            TrustAnchor.Matches(System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadCertificate(e.Certificate.GetRawCertData()), e.Chain, [pin])));

    /// <summary>True when the server closes or resets the connection within <paramref name="within"/>; data it sends first is read past.</summary>
    private static async Task<bool> ClosedByServerAsync(Socket socket, TimeSpan within)
    {
        using var timeout = new CancellationTokenSource(within);
        var buffer = new byte[4096];
        try
        {
            while (true)
            {
                if (await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token) == 0) { return true; }
            }
        }
        catch (SocketException) { return true; }
        catch (OperationCanceledException) { return false; }
    }

    /// <summary>True when the server ends a TLS connection (close or reset) within <paramref name="within"/>.</summary>
    private static async Task<bool> ClosedByServerAsync(Stream stream, TimeSpan within)
    {
        using var timeout = new CancellationTokenSource(within);
        var buffer = new byte[4096];
        try
        {
            while (true)
            {
                if (await stream.ReadAsync(buffer, timeout.Token) == 0) { return true; }
            }
        }
        catch (IOException) { return true; }
        catch (OperationCanceledException) { return false; }
    }

    /// <summary>True when a new connection from <paramref name="source"/> is closed or reset by the server (during the connect or after it).</summary>
    private static async Task<bool> RefusedAsync(TestServer server, string source)
    {
        Socket socket;
        try
        {
            socket = await RawAsync(server, source);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
        {
            return true; // accepted and reset before the connect completed here
        }
        using (socket)
        {
            return await ClosedByServerAsync(socket, Bound);
        }
    }

    /// <summary>An MQTT 3.1.1 CONNECT with credentials that are no unit's: a broker that serves the connection answers CONNACK.</summary>
    private static byte[] ProbeConnect()
    {
        byte[] body = [0, 4, (byte)'M', (byte)'Q', (byte)'T', (byte)'T', 4, 0xC2, 0, 60, 0, 5, (byte)'p', (byte)'r', (byte)'o', (byte)'b', (byte)'e', 0, 1, (byte)'x', 0, 1, (byte)'y'];
        return [0x10, (byte)body.Length, .. body];
    }

    /// <summary>Sends a CONNECT on a raw connection and returns the first byte the broker answers (0x20 = CONNACK), or null when it closed.</summary>
    private static async Task<byte?> ProbeAsync(Socket socket)
    {
        try
        {
            await socket.SendAsync(ProbeConnect(), SocketFlags.None);
            using var timeout = new CancellationTokenSource(Bound);
            var buffer = new byte[1];
            return await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token) == 1 ? buffer[0] : null;
        }
        catch (SocketException) { return null; }
    }

    private static async Task WaitForAsync(Func<bool> condition, string what)
    {
        var started = DateTime.UtcNow;
        while (!condition())
        {
            if (DateTime.UtcNow - started > Bound) { Assert.Fail($"timed out waiting for: {what}"); }
            await Task.Delay(20);
        }
    }

    [Test]
    public async Task A_connection_that_sends_no_connect_is_closed_at_the_connect_deadline()
    {
        TestServer.Configure.Value = o => (o.MqttConnectTimeoutSeconds, o.MqttPlainPort) = (2, 0);
        await using var server = await TestServer.StartAsync();
        var started = System.Diagnostics.Stopwatch.StartNew();
        using var silent = await RawAsync(server);
        using var partial = await RawAsync(server);
        await partial.SendAsync(ProbeConnect()[..8], SocketFlags.None); // a CONNECT that never ends
        using var noHandshake = await RawAsync(server, tls: true);
        await using var silentTls = await TlsAsync(server);
        Assert.That(await ClosedByServerAsync(silent, Bound), Is.True, "a connection that sends nothing is closed");
        Assert.That(await ClosedByServerAsync(partial, Bound), Is.True, "a CONNECT that never completes is closed");
        Assert.That(await ClosedByServerAsync(noHandshake, Bound), Is.True, "a TLS connection that never starts its handshake is closed");
        Assert.That(await ClosedByServerAsync(silentTls, Bound), Is.True, "a TLS connection that sends no CONNECT is closed");
        Assert.That(started.Elapsed, Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(1.9)), "not before the deadline");
        await WaitForAsync(() => Broker(server).Connections == 1, "only the server's own client is left");

        // a client that logs in within the deadline is served and stays
        using var unit = await RawAsync(server);
        Assert.That(await ProbeAsync(unit), Is.EqualTo((byte)0x20), "CONNACK");
    }

    [Test]
    public async Task Past_the_caps_connections_are_refused_at_once_while_https_answers_and_room_comes_back()
    {
        // 6 in all (the server's own client holds one), 2 per source; nothing expires while the test runs
        TestServer.Configure.Value = o => (o.MqttMaxConnections, o.MqttMaxConnectionsPerSource, o.MqttConnectTimeoutSeconds, o.MqttPlainPort) = (6, 2, 300, 0);
        await using var server = await TestServer.StartAsync();
        var held = new List<Socket>();
        try
        {
            held.Add(await RawAsync(server, "127.0.0.2"));
            held.Add(await RawAsync(server, "127.0.0.2"));
            Assert.That(await RefusedAsync(server, "127.0.0.2"), Is.True, "a third connection from one source is refused");
            held.Add(await RawAsync(server, "127.0.0.3"));
            held.Add(await RawAsync(server, "127.0.0.3"));
            held.Add(await RawAsync(server, "127.0.0.4"));
            Assert.That(await RefusedAsync(server, "127.0.0.4"), Is.True, "past the total, a source under its own cap is refused too");
            Assert.That(await RefusedAsync(server, "127.0.0.1"), Is.True, "the total counts every source, the server's own address too");
            using var http = server.PinnedHttp();
            Assert.That((await http.GetAsync("/healthz")).StatusCode, Is.EqualTo(HttpStatusCode.OK), "HTTPS answers while the broker is full");
            Assert.That(await ProbeAsync(held[0]), Is.EqualTo((byte)0x20), "the connections held are served");
            Assert.That(Broker(server).RefusedConnections, Is.EqualTo(3));

            foreach (var socket in held) { socket.Dispose(); }
            await WaitForAsync(() => Broker(server).Connections == 1, "the places of closed connections are free again");
            using var again = await RawAsync(server, "127.0.0.2");
            Assert.That(await ProbeAsync(again), Is.EqualTo((byte)0x20), "a source is served again once its connections are gone");
        }
        finally
        {
            foreach (var socket in held) { socket.Dispose(); }
        }
    }

    [Test]
    public async Task A_connect_announcing_256_MB_is_closed_after_its_header_and_nothing_is_allocated()
    {
        TestServer.Configure.Value = o => (o.MqttConnectTimeoutSeconds, o.MqttPlainPort) = (300, 0);
        await using var server = await TestServer.StartAsync();
        byte[] header = [0x10, 0xFF, 0xFF, 0xFF, 0x7F, 0, 4, (byte)'M', (byte)'Q', (byte)'T', (byte)'T'];
        await using var tls = await TlsAsync(server);
        var before = GC.GetTotalMemory(forceFullCollection: true);
        var sockets = new List<Socket>();
        try
        {
            for (var i = 0; i < 6; i++)
            {
                var socket = await RawAsync(server);
                sockets.Add(socket);
                await socket.SendAsync(header, SocketFlags.None);
            }
            await tls.WriteAsync(header);
            foreach (var socket in sockets)
            {
                Assert.That(await ClosedByServerAsync(socket, Bound), Is.True, "closed at once, long before the CONNECT deadline");
            }
            Assert.That(await ClosedByServerAsync(tls, Bound), Is.True, "on the TLS port as well");
            var grown = GC.GetTotalMemory(forceFullCollection: true) - before;
            TestContext.Out.WriteLine($"managed heap after 7 CONNECTs announcing 256 MB: {grown:+#,0;-#,0} bytes");
            Assert.That(grown, Is.LessThan(32L << 20), $"the managed heap grew by {grown:N0} bytes");
            await WaitForAsync(() => Broker(server).Connections == 1, "the refused connections are not counted any more");
        }
        finally
        {
            foreach (var socket in sockets) { socket.Dispose(); }
        }
    }

    [Test]
    public async Task A_unit_cannot_store_a_large_retained_status_and_a_large_packet_ends_its_connection()
    {
        await using var server = await TestServer.StartAsync();
        await server.AddUnitsAsync(1);
        var identity = server.Identity(1);
        var compact = MacAddress.Compact(identity.Mac);
        var options = UnitOptions("127.0.0.1", Broker(server).Port, server.Pin).WithProtocolVersion(MqttProtocolVersion.V500)
            .WithClientId(UnitCredentials.BrokerClientId(identity.Mac))
            .WithCredentials(compact, await server.BrokerPasswordAsync(identity.Mac)).Build();
        var status = PushTopics.Status(identity.Mac);
        MqttApplicationMessage Status(byte[] payload) => new MqttApplicationMessageBuilder().WithTopic(status).WithPayload(payload).WithRetainFlag(true)
            .WithQualityOfServiceLevel(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce).Build();

        async Task<string?> Retained() => (await Broker(server).GetRetainedAsync(status))?.ConvertPayloadToString();

        using var unit = new MqttClientFactory().CreateMqttClient();
        Assert.That((await unit.ConnectAsync(options)).ResultCode, Is.EqualTo(MqttClientConnectResultCode.Success));
        Assert.That((await unit.PublishAsync(Status("online"u8.ToArray()))).IsSuccess, Is.True, "a status word is kept");
        Assert.That(await Retained(), Is.EqualTo("online"));

        // under the packet limit, over the retained limit: refused, and the unit disconnected
        try
        {
            var refused = await unit.PublishAsync(Status(new byte[1024]));
            Assert.That(refused.IsSuccess, Is.False, "a 1 KB retained status is refused");
        }
        catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or OperationCanceledException)
        {
            // disconnected before the acknowledgement arrived (MQTTnet reports it either way): refused as well
        }
        await WaitForAsync(() => !unit.IsConnected, "the unit is disconnected");
        Assert.That(await Retained(), Is.EqualTo("online"), "nothing larger was retained");

        // over the packet limit: the connection ends after the header
        using var again = new MqttClientFactory().CreateMqttClient();
        Assert.That((await again.ConnectAsync(options)).ResultCode, Is.EqualTo(MqttClientConnectResultCode.Success));
        try
        {
            await again.PublishAsync(Status(new byte[1 << 20]));
        }
        catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or OperationCanceledException)
        {
            // the broker hung up while the packet was sent (MQTTnet reports it either way)
        }
        await WaitForAsync(() => !again.IsConnected, "the unit is disconnected");
        Assert.That(await Retained(), Is.EqualTo("online"), "the 1 MB status was not retained");
        using var http = server.PinnedHttp();
        Assert.That((await http.GetAsync("/healthz")).StatusCode, Is.EqualTo(HttpStatusCode.OK));
    }

    [Test]
    public async Task Units_are_told_the_tls_port_and_plain_mqtt_is_off_unless_the_operator_opens_it()
    {
        await using var server = await TestServer.StartAsync();
        var uri = new Uri(server.App.Services.GetRequiredService<IPushPublisher>().BrokerUri!);
        Assert.That((uri.Scheme, uri.Port), Is.EqualTo(("mqtts", Broker(server).Port)));
        Assert.That(Broker(server).PlainPort, Is.Null, "no plain MQTT port by default");
        Assert.That(new ServerOptions().MqttPlainPort, Is.EqualTo(-1));
        using (var plain = await RawAsync(server, tls: true))
        {
            Assert.That(await ProbeAsync(plain), Is.Null, "a plain CONNECT on the broker's port gets no CONNACK");
        }

        // TLS 1.2 with a CBC suite only: no handshake
        if (!OperatingSystem.IsWindows())
        {
            var cbcOnly = new System.Net.Security.SslClientAuthenticationOptions
            {
                TargetHost = "127.0.0.1", EnabledSslProtocols = System.Security.Authentication.SslProtocols.Tls12,
                CipherSuitesPolicy = new System.Net.Security.CipherSuitesPolicy([System.Net.Security.TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256]),
            };
            using var cbc = await RawAsync(server, tls: true);
            await using var cbcTls = new System.Net.Security.SslStream(new NetworkStream(cbc), false, (_, _, _, _) => true);
            Assert.That(async () => await cbcTls.AuthenticateAsClientAsync(cbcOnly),
                Throws.InstanceOf<System.Security.Authentication.AuthenticationException>().Or.InstanceOf<IOException>(), "CBC suites are not offered");
        }

        // a unit with the server's pin logs in over TLS; with another pin, or none, it does not
        await server.AddUnitsAsync(1);
        var identity = server.Identity(1);
        var mac = MacAddress.Normalize(identity.Mac);
        var password = await server.BrokerPasswordAsync(identity.Mac);
        var log = new System.Collections.Concurrent.ConcurrentQueue<string>();
        await using (var pinned = new Tsunagu.Firmware.Net.PushListener(_ => { }, log.Enqueue, serverPins: [server.Pin]))
        {
            Assert.That(await pinned.StartAsync(uri, mac, MacAddress.Compact(mac), password, CancellationToken.None), Is.True, string.Join("\n", log));
            Assert.That(pinned.IsConnected, Is.True);
        }
        using var otherKey = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var otherPin = Convert.ToBase64String(System.Security.Cryptography.SHA256.HashData(otherKey.ExportSubjectPublicKeyInfo()));
        await using (var wrongPin = new Tsunagu.Firmware.Net.PushListener(_ => { }, log.Enqueue, serverPins: [otherPin]))
        {
            Assert.That(await wrongPin.StartAsync(uri, mac, MacAddress.Compact(mac), password, CancellationToken.None), Is.False,
                "a certificate that matches no pin is refused");
            Assert.That(wrongPin.IsConnected, Is.False);
        }
        log.Clear();
        await using (var noPins = new Tsunagu.Firmware.Net.PushListener(_ => { }, log.Enqueue))
        {
            Assert.That(await noPins.StartAsync(uri, mac, MacAddress.Compact(mac), password, CancellationToken.None), Is.False, "no pins, no TLS broker");
            Assert.That(log, Has.Some.Contains("needs TLS and this unit has no server pins"));
        }
    }

    [Test]
    public async Task The_operator_can_open_a_plain_mqtt_port_with_the_same_limits()
    {
        TestServer.Configure.Value = o => o.MqttPlainPort = 0;
        await using var server = await TestServer.StartAsync();
        Assert.That(Broker(server).PlainPort, Is.Not.Null.And.Not.EqualTo(Broker(server).Port));
        using var plain = await RawAsync(server);
        Assert.That(await ProbeAsync(plain), Is.EqualTo((byte)0x20), "CONNACK on the plain port");
        Assert.That(new Uri(server.App.Services.GetRequiredService<IPushPublisher>().BrokerUri!).Scheme, Is.EqualTo("mqtts"), "units are still told the TLS port");
    }

    private static IEnumerable<TestCaseData> BadLimits()
    {
        TestCaseData Case(string name, Action<ServerOptions> set, string named) => new TestCaseData(set, named).SetArgDisplayNames(name);
        yield return Case("connect timeout 0", o => o.MqttConnectTimeoutSeconds = 0, "MqttConnectTimeoutSeconds");
        yield return Case("connect timeout 301", o => o.MqttConnectTimeoutSeconds = 301, "MqttConnectTimeoutSeconds");
        yield return Case("packet 255", o => o.MqttMaxPacketBytes = 255, "MqttMaxPacketBytes");
        yield return Case("packet 256 MB", o => o.MqttMaxPacketBytes = 268_435_456, "MqttMaxPacketBytes");
        yield return Case("connections 0", o => o.MqttMaxConnections = 0, "MqttMaxConnections");
        yield return Case("per source 0", o => o.MqttMaxConnectionsPerSource = 0, "MqttMaxConnectionsPerSource");
        yield return Case("retained 0", o => o.MqttMaxRetainedBytes = 0, "MqttMaxRetainedBytes");
        yield return Case("TLS port -2", o => o.MqttPort = -2, "MqttPort");
        yield return Case("plain port 65536", o => o.MqttPlainPort = 65536, "MqttPlainPort");
        yield return Case("retained over packet", o => o.MqttMaxRetainedBytes = 5000, "MqttMaxRetainedBytes");
    }

    [TestCaseSource(nameof(BadLimits))]
    public void Bad_broker_limits_are_refused_with_the_setting_named(Action<ServerOptions> set, string named)
    {
        var options = new ServerOptions();
        Assert.That(() => options.Validate(), Throws.Nothing, "the defaults are valid");
        set(options);
        Assert.That(() => options.Validate(), Throws.ArgumentException.With.Message.Contains(named));
    }
}
