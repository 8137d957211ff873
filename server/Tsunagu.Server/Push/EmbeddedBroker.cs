using System.Net;
using System.Security.Cryptography;
using MQTTnet.Protocol;
using MQTTnet.Server;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;

namespace Tsunagu.Server.Push;

/// <summary>
/// The embedded MQTT 5 broker for small installs, bound to the server's loopback address. A unit logs in with
/// user name = its compact MAC, client id = unit-MAC, password = its derived broker password; it may subscribe
/// only to its own command topic and publish only to its own status topic. The server logs in with a
/// password made at start-up.
/// </summary>
public sealed class EmbeddedBroker(ServerOptions options, MqttSettings settings, UnitKey unitKey, TsunaguStore store, ILogger<EmbeddedBroker> log)
    : IHostedService, IAsyncDisposable
{
    private MqttServer? _server;
    private readonly SemaphoreSlim _sessionsLock = new(1, 1);
    private Dictionary<string, MqttSessionStatus> _sessions = new(StringComparer.Ordinal);
    private long _sessionsVersion;  // bumped by every connect and disconnect
    private long _sessionsBuiltAt = -1;

    public int Port { get; private set; }
    public string ServerPassword { get; } = Base64Url.Encode(RandomNumberGenerator.GetBytes(24));
    public bool Enabled => settings.Embedded && options.MqttPort >= 0 && options.HasRole("host");

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (!Enabled)
        {
            return;
        }
        Port = options.MqttPort == 0 ? FreePort() : options.MqttPort;
        var serverOptions = new MqttServerOptionsBuilder()
            .WithDefaultEndpoint()
            .WithDefaultEndpointBoundIPAddress(IPAddress.Parse(options.ListenAddress))
            .WithDefaultEndpointBoundIPV6Address(IPAddress.IPv6Loopback)
            .WithDefaultEndpointPort(Port)
            .Build();
        _server = new MqttServerFactory().CreateMqttServer(serverOptions);
        _server.ValidatingConnectionAsync += ValidateConnection;
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
            return Task.CompletedTask;
        };
        _server.ClientConnectedAsync += _ => { Interlocked.Increment(ref _sessionsVersion); return Task.CompletedTask; };
        _server.ClientDisconnectedAsync += _ => { Interlocked.Increment(ref _sessionsVersion); return Task.CompletedTask; };
        await _server.StartAsync();
        log.LogInformation("embedded MQTT broker listening on {Host}:{Port}", options.ListenAddress, Port);
    }

    private Task ValidateConnection(ValidatingConnectionEventArgs e)
    {
        string? reason = null;
        if (e.ClientId == MqttSettings.ServerClientId)
        {
            if (e.UserName != MqttSettings.ServerClientId || !CryptographicOperations.FixedTimeEquals(
                    System.Text.Encoding.UTF8.GetBytes(e.Password ?? ""), System.Text.Encoding.UTF8.GetBytes(ServerPassword)))
            {
                reason = "wrong server credentials";
            }
        }
        else if (!MacAddress.TryNormalize(e.UserName, out var mac) || e.ClientId != UnitCredentials.BrokerClientId(mac))
        {
            reason = "user name is not a unit MAC or the client id does not match it";
        }
        else if (store.GetUnit(mac) is null)
        {
            reason = "unit not registered";
        }
        else
        {
            var expected = UnitCredentials.DeriveBrokerPassword(UnitCredentials.DeriveUnitSecret(unitKey.Bytes, mac));
            if (!CryptographicOperations.FixedTimeEquals(System.Text.Encoding.UTF8.GetBytes(e.Password ?? ""), System.Text.Encoding.UTF8.GetBytes(expected)))
            {
                reason = "wrong password";
            }
        }
        if (reason is not null)
        {
            log.LogWarning("MQTT login refused for client {ClientId} user {User}: {Reason}", e.ClientId, e.UserName, reason);
            e.ReasonCode = MqttConnectReasonCode.BadUserNameOrPassword;
        }
        return Task.CompletedTask;
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

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_server is not null)
        {
            await _server.StopAsync();
        }
    }

    public ValueTask DisposeAsync()
    {
        _sessionsLock.Dispose();
        _server?.Dispose();
        _server = null;
        return ValueTask.CompletedTask;
    }

    private static int FreePort()
    {
        using var l = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }
}
