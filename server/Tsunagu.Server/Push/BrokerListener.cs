using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using MQTTnet.Adapter;
using MQTTnet.Channel;
using MQTTnet.Diagnostics.Logger;
using MQTTnet.Formatter;
using MQTTnet.Server;

namespace Tsunagu.Server.Push;

/// <summary>Limits of the embedded broker's ports (docs/server.md, section 4.1).</summary>
/// <param name="ConnectTimeout">From accept to the last byte of the CONNECT packet (TLS handshake included).</param>
/// <param name="MaxPacketBytes">Largest remaining length of any packet before login, and of every packet of a unit.</param>
/// <param name="ServerMaxPacketBytes">Largest remaining length of a packet of the server's own client, once it has logged in.</param>
/// <param name="MaxConnections">Connections held at once over every port, logged in or not.</param>
/// <param name="MaxConnectionsPerSource">Connections held at once from one source address (connections from the server's own address excepted).</param>
/// <param name="ConnectsPerSourcePerSecond">New connections a source may open per second, on average (a token bucket per address; an IPv6 source is its /64).</param>
/// <param name="ConnectBurstPerSource">New connections a source may open at once (the bucket's size).</param>
public sealed record BrokerLimits(TimeSpan ConnectTimeout, int MaxPacketBytes, int ServerMaxPacketBytes, long MaxConnections, int MaxConnectionsPerSource,
    double ConnectsPerSourcePerSecond = double.PositiveInfinity, int ConnectBurstPerSource = int.MaxValue);

/// <summary>
/// One port of the broker: plain MQTT, or MQTT over TLS with <paramref name="Certificate"/>. Port 0 picks a free one,
/// except on an IPv6 loopback endpoint after another one: that takes the port the one before it got.
/// </summary>
public sealed record BrokerEndpoint(IPAddress Address, int Port, X509Certificate2? Certificate);

/// <summary>
/// The embedded broker's accept side, in place of MQTTnet's own listener (which holds a connection that sends
/// nothing for its whole communication timeout, counts nothing, and allocates whatever length a packet header
/// announces). Each connection is counted against a total and a per-source cap before anything is read, must
/// finish its TLS handshake and CONNECT within <see cref="BrokerLimits.ConnectTimeout"/>, and has every packet's
/// fixed header checked as it is read: a remaining length over the limit ends the connection before MQTTnet sees
/// the length, so no buffer is made for it.
/// </summary>
public sealed class BrokerListener(IReadOnlyList<BrokerEndpoint> endpoints, BrokerLimits limits, TimeProvider time, ILogger log) : IMqttServerAdapter
{
    private static CipherSuitesPolicy? _aeadOnly;

    /// <summary>TLS 1.3 suites and TLS 1.2 ECDHE with AEAD ciphers only: no CBC, no static RSA.</summary>
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    private static CipherSuitesPolicy AeadOnly() => _aeadOnly ??= new CipherSuitesPolicy([
        TlsCipherSuite.TLS_AES_128_GCM_SHA256, TlsCipherSuite.TLS_AES_256_GCM_SHA384, TlsCipherSuite.TLS_CHACHA20_POLY1305_SHA256,
        TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ]);

    private readonly List<Socket> _sockets = [];
    private readonly ConcurrentDictionary<IPAddress, int> _perSource = new();
    private readonly ConnectRate _rate = new(limits.ConnectsPerSourcePerSecond, limits.ConnectBurstPerSource, time);
    private readonly ConcurrentDictionary<IMqttChannelAdapter, LimitedChannel> _channels = new();
    private CancellationTokenSource? _stopping;
    private long _connections;
    private long _refused;
    private long _lastRefusalLog = long.MinValue;
    private IMqttNetLogger _logger = MqttNetNullLogger.Instance;

    public Func<IMqttChannelAdapter, Task>? ClientHandler { get; set; }

    /// <summary>The address and port each endpoint is bound to (port 0 resolved), in their order; null for an IPv6 loopback this machine lacks.</summary>
    public IPEndPoint?[] Bound { get; } = new IPEndPoint?[endpoints.Count];

    /// <summary>Connections held now, logged in or not.</summary>
    public long Connections => Interlocked.Read(ref _connections);

    /// <summary>Connections closed at accept because a cap or the connection rate was reached, since start.</summary>
    public long Refused => Interlocked.Read(ref _refused);

    /// <summary>Of <see cref="Refused"/>, those refused because their source opened connections too fast.</summary>
    public long RefusedByRate => Interlocked.Read(ref _refusedByRate);
    private long _refusedByRate;

    public Task StartAsync(MqttServerOptions options, IMqttNetLogger logger)
    {
        if (_stopping is not null) { throw new InvalidOperationException("the broker listener is already started"); }
        _logger = logger;
        _stopping = new CancellationTokenSource();
        for (var i = 0; i < endpoints.Count; i++)
        {
            var endpoint = endpoints[i];
            var socket = new Socket(endpoint.Address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            var port = endpoint.Port == 0 && endpoint.Address.Equals(IPAddress.IPv6Loopback) && i > 0 && Bound[i - 1] is { } before ? before.Port : endpoint.Port;
            try
            {
                socket.Bind(new IPEndPoint(endpoint.Address, port));
                socket.Listen(512);
            }
            catch (SocketException e)
            {
                socket.Dispose();
                if (endpoint.Address.Equals(IPAddress.IPv6Loopback) && e.SocketErrorCode is SocketError.AddressNotAvailable or SocketError.AddressFamilyNotSupported)
                {
                    continue; // no IPv6 on this machine: the IPv4 port is enough
                }
                throw;
            }
            _sockets.Add(socket);
            Bound[i] = (IPEndPoint)socket.LocalEndPoint!;
            _ = AcceptLoopAsync(socket, endpoint.Certificate, _stopping.Token);
        }
        return Task.CompletedTask;
    }

    /// <summary>Lets the server's own client, once logged in, send packets up to <see cref="BrokerLimits.ServerMaxPacketBytes"/>.</summary>
    public void RaisePacketLimit(IMqttChannelAdapter adapter)
    {
        if (_channels.TryGetValue(adapter, out var channel))
        {
            channel.MaxPacketBytes = limits.ServerMaxPacketBytes;
        }
    }

    private async Task AcceptLoopAsync(Socket listener, X509Certificate2? certificate, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(ct);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (Exception e)
            {
                // out of descriptors or memory for sockets, or anything else: wait and go on; the server keeps its port
                log.LogWarning("MQTT: accepting a connection on {Endpoint} failed ({Error}); retrying in 1 s", listener.LocalEndPoint,
                    e is SocketException s ? s.SocketErrorCode.ToString() : e.Message);
                try { await Task.Delay(TimeSpan.FromSeconds(1), time, ct); } catch (OperationCanceledException) { return; }
                continue;
            }
            var remote = (client.RemoteEndPoint as IPEndPoint)?.Address ?? IPAddress.None;
            var local = (client.LocalEndPoint as IPEndPoint)?.Address ?? IPAddress.Any;
            if (!TryCount(remote, local, out var counted))
            {
                Refuse(client, remote);
                continue;
            }
            _ = Task.Run(() => HandleAsync(client, certificate, counted, ct), CancellationToken.None);
        }
    }

    /// <summary>Counts a new connection, or says no when a cap is reached; <paramref name="source"/> is null when the source is not capped.</summary>
    private bool TryCount(IPAddress remote, IPAddress local, out IPAddress? source)
    {
        source = null;
        if (Interlocked.Increment(ref _connections) > limits.MaxConnections)
        {
            Interlocked.Decrement(ref _connections);
            return false;
        }
        // the server's own client (and a tool on the server's machine) connects from the address it connects to
        if (remote.Equals(local))
        {
            return true;
        }
        var key = remote.IsIPv4MappedToIPv6 ? remote.MapToIPv4() : remote;
        if (!_rate.TryTake(key))
        {
            Interlocked.Increment(ref _refusedByRate);
            Interlocked.Decrement(ref _connections);
            return false;
        }
        var count = _perSource.AddOrUpdate(key, 1, (_, n) => n + 1);
        if (count > limits.MaxConnectionsPerSource)
        {
            Release(key);
            Interlocked.Decrement(ref _connections);
            return false;
        }
        source = key;
        return true;
    }

    private void Release(IPAddress source)
    {
        // remove the entry when it drops to zero, so the table does not keep every address ever seen
        while (true)
        {
            var n = _perSource.GetValueOrDefault(source);
            if (n <= 1)
            {
                if (n == 0 || _perSource.TryRemove(new KeyValuePair<IPAddress, int>(source, 1))) { return; }
            }
            else if (_perSource.TryUpdate(source, n - 1, n))
            {
                return;
            }
        }
    }

    private void Refuse(Socket client, IPAddress remote)
    {
        var refused = Interlocked.Increment(ref _refused);
        try
        {
            client.LingerState = new LingerOption(true, 0); // a reset: nothing kept in TIME_WAIT for a refused peer
            client.Dispose();
        }
        catch (SocketException)
        {
            // already gone
        }
        // one line per 10 s at most, however many are refused
        var now = time.GetTimestamp();
        var last = Interlocked.Read(ref _lastRefusalLog);
        if ((last == long.MinValue || time.GetElapsedTime(last, now) >= TimeSpan.FromSeconds(10)) && Interlocked.CompareExchange(ref _lastRefusalLog, now, last) == last)
        {
            log.LogWarning("MQTT: connection from {Source} refused: {Connections} held (MqttMaxConnections {Max}, MqttMaxConnectionsPerSource {PerSource}), or more than {Burst} at once / {Rate}/s from it; {Refused} refused since start",
                remote, Connections, limits.MaxConnections, limits.MaxConnectionsPerSource, limits.ConnectBurstPerSource, limits.ConnectsPerSourcePerSecond, refused);
        }
    }

    private async Task HandleAsync(Socket client, X509Certificate2? certificate, IPAddress? source, CancellationToken ct)
    {
        // the CONNECT deadline: the socket is closed when it passes before the CONNECT packet's last byte is read
        var deadline = new CancellationTokenSource(limits.ConnectTimeout, time);
        var abort = deadline.Token.Register(() => client.Dispose());
        Stream? stream = null;
        IMqttChannelAdapter? adapter = null;
        try
        {
            client.NoDelay = true;
            stream = new NetworkStream(client, ownsSocket: true);
            if (certificate is not null)
            {
                var tls = new SslStream(stream, leaveInnerStreamOpen: false);
                stream = tls;
                using var handshake = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token, ct);
                await tls.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
                {
                    ServerCertificate = certificate,
                    EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                    EncryptionPolicy = EncryptionPolicy.RequireEncryption,
                    CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                    CipherSuitesPolicy = OperatingSystem.IsWindows() ? null : AeadOnly(),
                }, handshake.Token);
            }
            var channel = new LimitedChannel(stream, client, certificate is not null, limits.MaxPacketBytes, () =>
            {
                abort.Dispose();
                deadline.Dispose();
            });
            adapter = new MqttChannelAdapter(channel, new MqttPacketFormatterAdapter(new MqttBufferWriter(4096, 65535)), _logger);
            _channels[adapter] = channel;
            if (ClientHandler is { } handler)
            {
                await handler(adapter);
            }
        }
        catch (Exception e) when (e is IOException or SocketException or AuthenticationException or ObjectDisposedException or OperationCanceledException
                                      or MQTTnet.Exceptions.MqttCommunicationException or MQTTnet.Exceptions.MqttProtocolViolationException)
        {
            // the peer went, sent garbage, or ran out of time: nothing to do but close
            log.LogDebug("MQTT: connection from {Source} ended: {Error}", client.RemoteEndPoint, e.Message);
        }
        catch (Exception e)
        {
            // whatever else a client causes ends its connection, never the server
            log.LogError(e, "MQTT: connection from {Source} failed", source);
        }
        finally
        {
            abort.Dispose();
            deadline.Dispose();
            if (adapter is not null)
            {
                _channels.TryRemove(adapter, out _);
                adapter.Dispose();
            }
            if (stream is not null)
            {
                await stream.DisposeAsync();
            }
            client.Dispose();
            if (source is not null) { Release(source); }
            Interlocked.Decrement(ref _connections);
        }
    }

    public Task StopAsync()
    {
        Cleanup();
        return Task.CompletedTask;
    }

    public void Dispose() => Cleanup();

    private void Cleanup()
    {
        _stopping?.Cancel();
        foreach (var socket in _sockets)
        {
            socket.Dispose();
        }
        _sockets.Clear();
    }

    /// <summary>
    /// A connection's bytes as MQTTnet reads them, with each packet's fixed header parsed on the way: the first packet
    /// must be CONNECT, and a remaining length over <see cref="MaxPacketBytes"/> ends the connection (the read that
    /// completes the length returns 0, which MQTTnet takes for the peer closing) before MQTTnet can allocate its body.
    /// </summary>
    internal sealed class LimitedChannel(Stream stream, Socket socket, bool secure, int maxPacketBytes, Action connected) : IMqttChannel
    {
        private enum Part { Type, Length, Body }

        private Part _part = Part.Type;
        private int _lengthBytes;
        private long _remaining;
        private int _multiplier;
        private long _packets;
        private bool _refused;

        public int MaxPacketBytes { get; set; } = maxPacketBytes;
        public X509Certificate2 ClientCertificate => null!;
        public EndPoint RemoteEndPoint { get; } = socket.RemoteEndPoint!;
        public EndPoint LocalEndPoint { get; } = socket.LocalEndPoint!;
        public bool IsSecureConnection => secure;

        public Task ConnectAsync(CancellationToken cancellationToken) => throw new NotSupportedException("a server-side channel is connected already");

        public Task DisconnectAsync(CancellationToken cancellationToken)
        {
            socket.Dispose();
            return Task.CompletedTask;
        }

        public async Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        {
            if (_refused) { return 0; }
            var read = await stream.ReadAsync(buffer.AsMemory(offset, count), cancellationToken);
            if (!Inspect(buffer.AsSpan(offset, read)))
            {
                _refused = true;
                socket.Dispose();
                return 0;
            }
            return read;
        }

        public async Task WriteAsync(ReadOnlySequence<byte> buffer, bool isEndOfPacket, CancellationToken cancellationToken)
        {
            foreach (var segment in buffer)
            {
                await stream.WriteAsync(segment, cancellationToken);
            }
            if (isEndOfPacket)
            {
                await stream.FlushAsync(cancellationToken);
            }
        }

        /// <summary>Follows the packet framing through <paramref name="bytes"/>; false when the connection must end.</summary>
        private bool Inspect(ReadOnlySpan<byte> bytes)
        {
            for (var i = 0; i < bytes.Length; i++)
            {
                var b = bytes[i];
                switch (_part)
                {
                    case Part.Type:
                        if (_packets == 0 && b >> 4 != 1)
                        {
                            return false; // the first packet must be CONNECT [MQTT-3.1.0-1]
                        }
                        (_part, _remaining, _multiplier, _lengthBytes) = (Part.Length, 0, 1, 0);
                        break;
                    case Part.Length:
                        _remaining += (b & 0x7F) * (long)_multiplier;
                        _multiplier *= 128;
                        _lengthBytes++;
                        if (_remaining > MaxPacketBytes)
                        {
                            return false;
                        }
                        if ((b & 0x80) == 0)
                        {
                            _part = _remaining == 0 ? Part.Type : Part.Body;
                            if (_remaining == 0) { PacketDone(); }
                        }
                        else if (_lengthBytes == 4)
                        {
                            return false; // a remaining length has at most four bytes
                        }
                        break;
                    case Part.Body:
                        // the rest of this read that belongs to the body, at once
                        var take = (int)Math.Min(_remaining, bytes.Length - i);
                        _remaining -= take;
                        i += take - 1;
                        if (_remaining == 0)
                        {
                            _part = Part.Type;
                            PacketDone();
                        }
                        break;
                }
            }
            return true;
        }

        private void PacketDone()
        {
            if (_packets++ == 0)
            {
                connected();
            }
        }

        public void Dispose()
        {
            stream.Dispose();
            socket.Dispose();
        }
    }
}
