using System.Buffers;
using System.Text.Json;
using MQTTnet;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Net;

/// <summary>
/// Listens on the unit's own MQTT topic for "check now" messages (patent 0053, 0071). A push only wakes the
/// supervisor; the unit then pulls over HTTPS, so a lost push costs one period, never correctness.
/// </summary>
public sealed class PushListener : IAsyncDisposable
{
    private readonly IMqttClient _client;
    private readonly Action<PushMessage> _onMessage;
    private readonly Action<string> _log;
    private string? _mac;

    public PushListener(Action<PushMessage> onMessage, Action<string> log)
    {
        _onMessage = onMessage;
        _log = log;
        _client = new MqttClientFactory().CreateMqttClient();
        _client.ApplicationMessageReceivedAsync += e =>
        {
            try
            {
                var message = Parse(e.ApplicationMessage.Payload.ToArray());
                if (message is not null)
                {
                    _onMessage(message);
                }
            }
            catch (JsonException ex)
            {
                _log($"push: ignored a malformed message on {e.ApplicationMessage.Topic}: {ex.Message}");
            }
            return Task.CompletedTask;
        };
    }

    /// <summary>A payload on the unit's command topic as a <see cref="PushMessage"/>; null for the JSON literal null.</summary>
    /// <exception cref="JsonException">Not a push message.</exception>
    public static PushMessage? Parse(ReadOnlySpan<byte> payload) => JsonSerializer.Deserialize(payload, ProtocolJson.Default.PushMessage);

    public bool IsConnected => _client.IsConnected;

    /// <summary>
    /// Connects (or reconnects) to the broker with the unit's credentials, subscribes to its command topic and
    /// announces itself online on its status topic; the broker publishes the last will "offline" if it vanishes.
    /// </summary>
    public async Task EnsureConnectedAsync(Uri broker, string mac, string username, string password, CancellationToken ct)
    {
        if (_client.IsConnected && _mac == mac)
        {
            return;
        }
        if (_client.IsConnected)
        {
            await _client.DisconnectAsync(cancellationToken: ct);
        }
        var options = new MqttClientOptionsBuilder()
            .WithTcpServer(broker.Host, broker.Port > 0 ? broker.Port : 1883)
            .WithClientId(UnitCredentials.BrokerClientId(mac))
            .WithCredentials(username, password)
            .WithWillTopic(PushTopics.Status(mac))
            .WithWillPayload(System.Text.Encoding.UTF8.GetBytes(Presence.Offline))
            .WithWillRetain(true)
            .WithWillQualityOfServiceLevel(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce)
            .WithCleanStart(true)
            .WithKeepAlivePeriod(TimeSpan.FromSeconds(30))
            .WithTimeout(TimeSpan.FromSeconds(10))
            .Build();
        var result = await _client.ConnectAsync(options, ct);
        if (result.ResultCode != MqttClientConnectResultCode.Success || !_client.IsConnected)
        {
            throw new MQTTnet.Exceptions.MqttCommunicationException($"broker {broker} refused the login of {username}: {result.ResultCode} {result.ReasonString}");
        }
        var subscribe = new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter(PushTopics.Commands(mac), MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce)
            .Build();
        var granted = await _client.SubscribeAsync(subscribe, ct);
        if (granted.Items.Any(i => (int)i.ResultCode >= 0x80))
        {
            throw new MQTTnet.Exceptions.MqttCommunicationException($"broker {broker} refused the subscription to {PushTopics.Commands(mac)}: {granted.Items.First().ResultCode}");
        }
        await _client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(PushTopics.Status(mac))
            .WithPayload(System.Text.Encoding.UTF8.GetBytes(Presence.Online)).WithRetainFlag(true)
            .WithQualityOfServiceLevel(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce).Build(), ct);
        _mac = mac;
    }

    public async ValueTask DisposeAsync()
    {
        if (_client.IsConnected)
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            try
            {
                if (_mac is not null)
                {
                    // a clean stop sends no last will: say "offline" ourselves
                    await _client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(PushTopics.Status(_mac))
                        .WithPayload(System.Text.Encoding.UTF8.GetBytes(Presence.Offline)).WithRetainFlag(true).Build(), cts.Token);
                }
                await _client.DisconnectAsync(cancellationToken: cts.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or MQTTnet.Exceptions.MqttCommunicationException)
            {
                _log($"push: disconnect did not complete cleanly: {e.Message}");
            }
        }
        _client.Dispose();
    }
}
