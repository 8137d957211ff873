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
    private readonly string[] _serverPins;
    private string? _mac;

    /// <param name="serverPins">The trust anchor's pins: an mqtts:// broker must present a certificate that matches one, as HTTPS does.</param>
    public PushListener(Action<PushMessage> onMessage, Action<string> log, IReadOnlyList<string>? serverPins = null)
    {
        _onMessage = onMessage;
        _log = log;
        _serverPins = serverPins?.ToArray() ?? [];
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
        var tls = broker.Scheme switch
        {
            "mqtts" => true,
            "mqtt" => false,
            _ => throw new InvalidOperationException($"push broker {broker} is neither mqtt:// nor mqtts://"),
        };
        if (tls && _serverPins.Length == 0)
        {
            throw new InvalidOperationException($"push broker {broker} needs TLS and this unit has no server pins");
        }
        var options = new MqttClientOptionsBuilder()
            .WithTcpServer(broker.Host, broker.Port > 0 ? broker.Port : tls ? 8883 : 1883)
            .WithTlsOptions(t => t.UseTls(tls).WithCertificateValidationHandler(e => IsPinned(e.Certificate, e.Chain)))
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

    /// <summary>True when the broker's certificate (or an issuer in its chain) matches one of the unit's server pins.</summary>
    private bool IsPinned(System.Security.Cryptography.X509Certificates.X509Certificate? certificate, System.Security.Cryptography.X509Certificates.X509Chain? chain)
    {
        if (certificate is null) { return false; }
        using var full = System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        return TrustAnchor.Matches(full, chain, _serverPins);
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
