using System.Net;
using System.Security.Cryptography;
using MQTTnet.Protocol;
using MQTTnet.Server;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Push;

/// <summary>
/// The embedded MQTT 5 broker for small installs, on the server's address: MQTT over TLS with the server's own
/// certificate, and plain MQTT only on a port the operator opens (<see cref="ServerOptions.MqttPlainPort"/>). A unit logs in with
/// user name = its compact MAC, client id = unit-MAC, password = the short-lived broker password of its host session
/// (<see cref="BrokerPassword"/>, checked against the current <see cref="BrokerKey"/>) and a keep-alive of at most
/// <see cref="ServerOptions.MqttMaxKeepAliveSeconds"/>; a unit whose password expires, whose key is replaced or that
/// is no longer registered is disconnected within <see cref="SweepInterval"/>. It may subscribe
/// only to its own command topic and publish only to its own status topic. The server logs in with a
/// password made at start-up.
/// </summary>
public sealed class EmbeddedBroker(ServerOptions options, MqttSettings settings, BrokerKey brokerKey, TsunaguStore store, TimeProvider time, ILogger<EmbeddedBroker> log)
    : IHostedService, IAsyncDisposable
{
    /// <summary>Largest packet the server's own client may send once logged in (pushes are small; room to grow).</summary>
    public const int ServerClientMaxPacketBytes = 1 << 20;

    private MqttServer? _server;
    private BrokerListener? _listener;
    private readonly SemaphoreSlim _sessionsLock = new(1, 1);
    private Dictionary<string, MqttSessionStatus> _sessions = new(StringComparer.Ordinal);
    private long _sessionsVersion;  // bumped by every connect and disconnect
    private long _sessionsBuiltAt = -1;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, (long Expires, string KeyId, string Mac)> _unitLogins = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stopping = new();
    private Task? _sweep;

    /// <summary>How often logged-in units are checked for an expired password, a replaced key or a removed registration.</summary>
    public TimeSpan SweepInterval => TimeSpan.FromSeconds(Math.Clamp(options.BrokerPasswordLifetime.TotalSeconds / 8, 1, 30));

    /// <summary>The MQTT-over-TLS port (<see cref="ServerOptions.MqttPort"/>, resolved when 0).</summary>
    public int Port { get; private set; }

    /// <summary>The plain MQTT port, or null when it is off (<see cref="ServerOptions.MqttPlainPort"/>).</summary>
    public int? PlainPort { get; private set; }

    /// <summary>The certificate of the TLS port: the server's own, so units pin it as they pin HTTPS.</summary>
    public System.Security.Cryptography.X509Certificates.X509Certificate2? Certificate { get; private set; }
    public string ServerPassword { get; } = Base64Url.Encode(RandomNumberGenerator.GetBytes(24));
    public bool Enabled => settings.Embedded && options.MqttPort >= 0 && options.HasRole("host");

    /// <summary>Connections held now (logged in or not) and refused at accept since start (caps reached).</summary>
    public long Connections => _listener?.Connections ?? 0;
    public long RefusedConnections => _listener?.Refused ?? 0;

    /// <summary>The retained message on a topic, or null (what a unit's status says to a new subscriber).</summary>
    public async Task<MQTTnet.MqttApplicationMessage?> GetRetainedAsync(string topic) =>
        _server is null ? null : await _server.GetRetainedMessageAsync(topic);

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (!Enabled)
        {
            return;
        }
        var limits = new BrokerLimits(TimeSpan.FromSeconds(options.MqttConnectTimeoutSeconds), options.MqttMaxPacketBytes, ServerClientMaxPacketBytes,
            options.MqttMaxConnections ?? (DescriptorLimit.Read() is { } descriptors ? Math.Max(64, descriptors - ServerOptions.DescriptorReserve) : 10_000),
            options.MqttMaxConnectionsPerSource, options.MqttConnectsPerSourcePerSecond, options.MqttConnectBurstPerSource);
        // TLS (and plain MQTT when the operator turns it on) on ListenAddress, and on the IPv6 loopback with the same port number
        Certificate = ServerCertificate.LoadOrCreate(Path.Combine(Path.GetFullPath(options.DataDirectory), "tls"));
        var address = IPAddress.Parse(options.ListenAddress);
        var dualStack = address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork;
        List<BrokerEndpoint> endpoints = [new(address, options.MqttPort, Certificate)];
        if (dualStack) { endpoints.Add(new(IPAddress.IPv6Loopback, options.MqttPort, Certificate)); }
        var plain = endpoints.Count;
        if (options.MqttPlainPort >= 0)
        {
            endpoints.Add(new(address, options.MqttPlainPort, null));
            if (dualStack) { endpoints.Add(new(IPAddress.IPv6Loopback, options.MqttPlainPort, null)); }
        }
        _listener = new BrokerListener(endpoints, limits, time, log);
        var serverOptions = new MqttServerOptionsBuilder()
            .WithDefaultCommunicationTimeout(limits.ConnectTimeout)
            .Build();
        _server = new MqttServerFactory().CreateMqttServer(serverOptions, [_listener]);
        _server.ValidatingConnectionAsync += ValidateConnectionAsync;
        _server.InterceptingSubscriptionAsync += e =>
        {
            if (e.ClientId != MqttSettings.ServerClientId && !OwnTopic(e.ClientId, e.TopicFilter.Topic, PushTopics.Commands))
            {
                e.Response.ReasonCode = MqttSubscribeReasonCode.NotAuthorized;
                e.ProcessSubscription = false;
            }
            return Task.CompletedTask;
        };
        _server.InterceptingPublishAsync += e =>
        {
            var allowed = e.ClientId == MqttSettings.ServerClientId
                ? e.ApplicationMessage.Topic.StartsWith(PushTopics.Root + "/", StringComparison.Ordinal) && e.ApplicationMessage.Topic.EndsWith("/cmd", StringComparison.Ordinal)
                : OwnTopic(e.ClientId, e.ApplicationMessage.Topic, PushTopics.Status);
            if (!allowed)
            {
                e.ProcessPublish = false;
                e.Response.ReasonCode = MqttPubAckReasonCode.NotAuthorized;
            }
            else if (e.ClientId != MqttSettings.ServerClientId && e.ApplicationMessage.Retain && e.ApplicationMessage.Payload.Length > options.MqttMaxRetainedBytes)
            {
                // a unit's status is a word; a larger retained message (or last will) would be kept in memory for good
                log.LogWarning("MQTT: refused a retained message of {Bytes} bytes from {ClientId} (MqttMaxRetainedBytes {Max}); disconnecting it",
                    e.ApplicationMessage.Payload.Length, e.ClientId, options.MqttMaxRetainedBytes);
                e.ProcessPublish = false;
                e.CloseConnection = true;
                e.Response.ReasonCode = MqttPubAckReasonCode.QuotaExceeded;
            }
            return Task.CompletedTask;
        };
        _server.ClientConnectedAsync += _ => { Interlocked.Increment(ref _sessionsVersion); return Task.CompletedTask; };
        _server.ClientDisconnectedAsync += _ => { Interlocked.Increment(ref _sessionsVersion); return Task.CompletedTask; };
        await _server.StartAsync();
        _sweep = SweepAsync(_stopping.Token);
        Port = _listener.Bound[0]!.Port;
        PlainPort = options.MqttPlainPort >= 0 ? _listener.Bound[plain]!.Port : null;
        log.LogInformation("embedded MQTT broker listening on {Host}:{Port} (TLS){Plain}; CONNECT within {Timeout} s, packets up to {Packet} bytes, at most {Connections} connections ({PerSource} per source address)",
            options.ListenAddress, Port, PlainPort is { } p ? $" and {p} (plain MQTT)" : "", options.MqttConnectTimeoutSeconds, limits.MaxPacketBytes, limits.MaxConnections, limits.MaxConnectionsPerSource);
    }

    private async Task ValidateConnectionAsync(ValidatingConnectionEventArgs e)
    {
        string? reason = null;
        if (e.ClientId == MqttSettings.ServerClientId)
        {
            if (e.UserName != MqttSettings.ServerClientId || !CryptographicOperations.FixedTimeEquals(
                    System.Text.Encoding.UTF8.GetBytes(e.Password ?? ""), System.Text.Encoding.UTF8.GetBytes(ServerPassword)))
            {
                reason = "wrong server credentials";
            }
            else
            {
                _listener?.RaisePacketLimit(e.ChannelAdapter);
            }
        }
        else if (!MacAddress.TryNormalize(e.UserName, out var mac) || e.ClientId != UnitCredentials.BrokerClientId(mac))
        {
            reason = "user name is not a unit MAC or the client id does not match it";
        }
        else if (e.KeepAlivePeriod == 0 || e.KeepAlivePeriod > options.MqttMaxKeepAliveSeconds)
        {
            // keep-alive 0 would hold the connection (and its slot) for good once the unit goes silent
            reason = $"keep-alive {e.KeepAlivePeriod} s is not within 1..{options.MqttMaxKeepAliveSeconds} s";
        }
        else if (await store.Units.GetUnitAsync(mac) is not { DecommissionedAt: null })
        {
            reason = "unit not registered or decommissioned";
        }
        else
        {
            var (key, keyId) = brokerKey.Current;
            reason = BrokerPassword.Check(key, mac, e.Password, time.GetUtcNow());
            if (reason is null)
            {
                _unitLogins[e.ClientId] = (BrokerPassword.ExpiryOf(e.Password!)!.Value.ToUnixTimeSeconds(), keyId, mac);
            }
        }
        if (reason is not null)
        {
            log.LogWarning("MQTT login refused for client {ClientId} user {User}: {Reason}", e.ClientId, e.UserName, reason);
            e.ReasonCode = MqttConnectReasonCode.BadUserNameOrPassword;
        }
    }

    /// <summary>
    /// Puts a message for one client straight into its session's send queue; false when the client has no session
    /// (not connected), and the caller publishes normally. MQTTnet's own dispatch checks every publish against the
    /// subscriptions of every session, so a forced check of N units through it costs N x N checks (10,000 units:
    /// 41 s); this path costs one lookup per unit plus one listing of the sessions per change of who is connected.
    /// </summary>
    public async Task<bool> TryDeliverAsync(string clientId, MQTTnet.MqttApplicationMessage message, CancellationToken ct)
    {
        if (_server is null) { return false; }
        var version = Interlocked.Read(ref _sessionsVersion);
        var sessions = _sessions;
        if (Interlocked.Read(ref _sessionsBuiltAt) != version)
        {
            await _sessionsLock.WaitAsync(ct);
            try
            {
                version = Interlocked.Read(ref _sessionsVersion);
                if (Interlocked.Read(ref _sessionsBuiltAt) != version)
                {
                    _sessions = (await _server.GetSessionsAsync()).ToDictionary(x => x.Id, StringComparer.Ordinal);
                    Interlocked.Exchange(ref _sessionsBuiltAt, version);
                }
                sessions = _sessions;
            }
            finally
            {
                _sessionsLock.Release();
            }
        }
        return sessions.TryGetValue(clientId, out var session) && session.TryEnqueueApplicationMessage(message, out _);
    }

    /// <summary>True when the client is the unit whose topic this is.</summary>
    private static bool OwnTopic(string clientId, string topic, Func<string, string> topicOf) =>
        clientId.StartsWith("unit-", StringComparison.Ordinal) && MacAddress.TryNormalize(clientId[5..], out var mac) && topic == topicOf(mac);

    /// <summary>
    /// Every <see cref="SweepInterval"/>, disconnects each logged-in unit whose password has expired, was made with a
    /// broker key that has since been replaced, or whose unit is no longer registered: it must log in again with a
    /// password from a new host session, which a revoked unit does not get.
    /// </summary>
    private async Task SweepAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(SweepInterval, time, ct);
                await SweepOnceAsync();
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is System.Data.Common.DbException or InvalidOperationException or MQTTnet.Exceptions.MqttCommunicationException)
            {
                log.LogWarning("MQTT: checking logged-in units' passwords failed: {Error}", e.Message);
            }
        }
    }

    /// <summary>One pass of the sweep; the number of units disconnected.</summary>
    public async Task<int> SweepOnceAsync()
    {
        if (_server is null) { return 0; }
        var now = time.GetUtcNow().ToUnixTimeSeconds();
        var keyId = brokerKey.Current.Id;
        var disconnected = 0;
        foreach (var client in await _server.GetClientsAsync())
        {
            if (!_unitLogins.TryGetValue(client.Id, out var login)) { continue; }
            var reason = login.Expires <= now ? "its password expired" : login.KeyId != keyId ? "the broker key was replaced"
                : await store.Units.GetUnitAsync(login.Mac) is not { DecommissionedAt: null } ? "it is no longer registered or was decommissioned" : null;
            if (reason is null) { continue; }
            log.LogInformation("MQTT: disconnecting {ClientId}: {Reason}", client.Id, reason);
            _unitLogins.TryRemove(new KeyValuePair<string, (long, string, string)>(client.Id, login));
            await client.DisconnectAsync(new MqttServerClientDisconnectOptions { ReasonCode = MqttDisconnectReasonCode.NotAuthorized, ReasonString = reason });
            disconnected++;
        }
        return disconnected;
    }

    /// <summary>
    /// Drops the session of a unit that was decommissioned (its next login is refused: <see cref="ValidateConnectionAsync"/>
    /// checks the row). True when it was connected.
    /// </summary>
    public async Task<bool> DisconnectUnitAsync(string mac)
    {
        if (_server is null) { return false; }
        var clientId = UnitCredentials.BrokerClientId(mac);
        var client = (await _server.GetClientsAsync()).FirstOrDefault(c => c.Id == clientId);
        _unitLogins.TryRemove(clientId, out _);
        if (client is null) { return false; }
        log.LogInformation("MQTT: disconnecting {ClientId}: decommissioned", clientId);
        await client.DisconnectAsync(new MqttServerClientDisconnectOptions { ReasonCode = MqttDisconnectReasonCode.NotAuthorized, ReasonString = "decommissioned" });
        return true;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _disposed) == 0) { await _stopping.CancelAsync(); }
        if (_sweep is { } sweep) { await sweep; }
        if (_server is not null)
        {
            await _server.StopAsync();
        }
    }

    private int _disposed;

    public ValueTask DisposeAsync()
    {
        // registered under several service types, so disposed more than once
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return ValueTask.CompletedTask;
        }
        _sessionsLock.Dispose();
        _stopping.Cancel();
        _stopping.Dispose();
        _server?.Dispose();
        _listener?.Dispose();
        Certificate?.Dispose();
        _server = null;
        return ValueTask.CompletedTask;
    }
}
