using System.Net;
using System.Text.Json;
using MQTTnet;
using MQTTnet.Protocol;
using MQTTnet.Server;
using Tsunagu.Protocol;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Push;

/// <summary>Sends "check now" to units (patent 0053, 0071).</summary>
public interface IPushPublisher
{
    /// <summary>The broker address units are told to use, or null when push is disabled.</summary>
    string? BrokerUri { get; }

    Task PublishAsync(string mac, PushMessage message, CancellationToken cancellationToken);
}

/// <summary>
/// The embedded MQTT 5 broker for small installs. Units log in with their MAC (compact) as user name and a
/// host token as password; each may subscribe only to its own command topic and publish only to its own
/// status topic.
/// </summary>
public sealed class EmbeddedBroker(ServerOptions options, TokenService tokens, ILogger<EmbeddedBroker> log) : IHostedService, IPushPublisher, IAsyncDisposable
{
    private MqttServer? _server;

    public int Port { get; private set; }
    public string? BrokerUri => _server is null ? null : $"mqtt://{options.ListenAddress}:{Port}";

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (options.MqttPort < 0 || !options.HasRole("host"))
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
            if (!OwnTopic(e.ClientId, e.TopicFilter.Topic, PushTopics.Commands))
            {
                e.Response.ReasonCode = MqttSubscribeReasonCode.NotAuthorized;
                e.ProcessSubscription = false;
            }
            return Task.CompletedTask;
        };
        _server.InterceptingPublishAsync += e =>
        {
            if (e.ClientId != ServerClientId && !OwnTopic(e.ClientId, e.ApplicationMessage.Topic, PushTopics.Status))
            {
                e.ProcessPublish = false;
            }
            return Task.CompletedTask;
        };
        await _server.StartAsync();
        log.LogInformation("embedded MQTT broker listening on {Uri}", BrokerUri);
    }

    private const string ServerClientId = "tsunagu-server";

    private Task ValidateConnection(ValidatingConnectionEventArgs e)
    {
        var claims = tokens.Validate(e.Password, out var reason);
        if (claims is null || claims.Scope != TokenScope.Host || MacAddress.Compact(claims.Subject) != e.UserName ||
            e.ClientId != $"unit-{e.UserName}")
        {
            log.LogWarning("MQTT login refused for client {ClientId} user {User}: {Reason}", e.ClientId, e.UserName,
                claims is null ? reason : "credentials do not match the client");
            e.ReasonCode = MqttConnectReasonCode.BadUserNameOrPassword;
        }
        return Task.CompletedTask;
    }

    /// <summary>True when the client is the unit whose topic this is.</summary>
    private static bool OwnTopic(string clientId, string topic, Func<string, string> topicOf) =>
        clientId.StartsWith("unit-", StringComparison.Ordinal) &&
        MacAddress.TryNormalize(clientId[5..], out var mac) && topic == topicOf(mac);

    public async Task PublishAsync(string mac, PushMessage message, CancellationToken cancellationToken)
    {
        var server = _server ?? throw new InvalidOperationException("push is disabled on this server (MqttPort < 0 or no host role)");
        var payload = JsonSerializer.SerializeToUtf8Bytes(message, ProtocolJson.Default.PushMessage);
        var mqtt = new MqttApplicationMessageBuilder()
            .WithTopic(PushTopics.Commands(mac))
            .WithPayload(payload)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .WithMessageExpiryInterval(3600)
            .Build();
        await server.InjectApplicationMessage(new InjectedMqttApplicationMessage(mqtt) { SenderClientId = ServerClientId }, cancellationToken);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_server is not null)
        {
            await _server.StopAsync();
        }
    }

    public ValueTask DisposeAsync()
    {
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
