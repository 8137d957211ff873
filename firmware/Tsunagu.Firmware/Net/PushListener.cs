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
                var message = JsonSerializer.Deserialize(e.ApplicationMessage.Payload.ToArray(), ProtocolJson.Default.PushMessage);
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

    public bool IsConnected => _client.IsConnected;

    /// <summary>Connects (or reconnects) to the broker with the unit's credentials and subscribes to its topic.</summary>
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
            .WithClientId($"unit-{MacAddress.Compact(mac)}")
            .WithCredentials(username, password)
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
        await _client.SubscribeAsync(subscribe, ct);
        _mac = mac;
    }

    public async ValueTask DisposeAsync()
    {
        if (_client.IsConnected)
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            try
            {
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
