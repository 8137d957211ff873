using System.Buffers;
using System.Text.Json;
using MQTTnet;
using MQTTnet.Exceptions;
using Tsunagu.Firmware.Supervision;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Net;

/// <summary>How the unit keeps its push connection (<see cref="PushListener"/>).</summary>
public sealed record PushOptions
{
    /// <summary>
    /// Reconnect backoff after a lost connection or a failed attempt: full jitter, delay = random(0, min(cap, base * 2^attempt)).
    /// The first attempt after a loss already waits random(0, base), so a fleet that lost a restarted broker together
    /// comes back spread over that window, not in one instant.
    /// </summary>
    public TimeSpan ReconnectBase { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>The longest wait between two attempts: once the broker is back, every unit is connected again within this.</summary>
    public TimeSpan ReconnectCap { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>MQTT keep-alive: the broker declares a silently vanished unit gone (last will "offline") after 1.5 times this.</summary>
    public TimeSpan KeepAlive { get; init; } = TimeSpan.FromSeconds(30);

    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How many recent push nonces the unit remembers: a push sent again with a known nonce is acknowledged, not acted on twice.</summary>
    public int NonceMemory { get; init; } = 64;

    public void Validate()
    {
        if (ReconnectBase <= TimeSpan.Zero || ReconnectCap < ReconnectBase)
        {
            throw new ArgumentException($"push reconnect needs 0 < ReconnectBase <= ReconnectCap (was {ReconnectBase}, {ReconnectCap})");
        }
        if (KeepAlive <= TimeSpan.Zero || ConnectTimeout <= TimeSpan.Zero || NonceMemory < 1)
        {
            throw new ArgumentException($"push: KeepAlive and ConnectTimeout must be positive and NonceMemory at least 1 (was {KeepAlive}, {ConnectTimeout}, {NonceMemory})");
        }
    }
}

/// <summary>
/// Listens on the unit's own MQTT topic for "check now" messages (patent 0053, 0071). A push only wakes the
/// supervisor; the unit then pulls over HTTPS, so a lost push costs one period, never correctness.
/// Once started, one background loop owned by the listener keeps the connection: on loss (broker restart, network)
/// it reconnects with capped, jittered backoff (<see cref="PushOptions"/>), subscribes again and says "online" again,
/// without touching the supervisor's state machine. Each push is acknowledged on the status topic with its nonce;
/// a nonce already seen is acknowledged again but wakes the unit only once.
/// </summary>
public sealed class PushListener : IAsyncDisposable
{
    private readonly IMqttClient _client;
    private readonly Action<PushMessage> _onMessage;
    private readonly Action<string> _log;
    private readonly TimeProvider _time;
    private readonly PushOptions _options;
    private readonly Backoff _backoff;
    private readonly SemaphoreSlim _lost = new(0, 1);
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _noncesLock = new();
    private readonly Queue<string> _nonceOrder = new();
    private readonly HashSet<string> _nonces = new(StringComparer.Ordinal);
    private (Uri Broker, string Mac, string Username, string Password)? _target;
    private volatile string? _mac;
    private CancellationTokenSource? _run;
    private Task _loop = Task.CompletedTask;
    private TaskCompletionSource<bool>? _firstAttempt;
    private long _connects;
    private long _attempts;
    private int _disposed;
    private readonly string[] _serverPins;

    /// <param name="serverPins">The trust anchor's pins: an mqtts:// broker must present a certificate that matches one, as HTTPS does.</param>
    public PushListener(Action<PushMessage> onMessage, Action<string> log, TimeProvider? time = null, Random? random = null, PushOptions? options = null,
        IReadOnlyList<string>? serverPins = null)
    {
        _onMessage = onMessage;
        _log = log;
        _serverPins = serverPins?.ToArray() ?? [];
        _time = time ?? TimeProvider.System;
        _options = options ?? new PushOptions();
        _options.Validate();
        _backoff = new Backoff(_options.ReconnectBase, _options.ReconnectCap, random ?? new Random());
        _client = new MqttClientFactory().CreateMqttClient();
        _client.ApplicationMessageReceivedAsync += e =>
        {
            PushMessage? message = null;
            try
            {
                message = Parse(e.ApplicationMessage.Payload.ToArray());
            }
            catch (JsonException ex)
            {
                _log($"push: ignored a malformed message on {e.ApplicationMessage.Topic}: {ex.Message}");
            }
            if (message is not null)
            {
                if (Remember(message.Nonce))
                {
                    _onMessage(message);
                }
                if (_mac is { } mac && !string.IsNullOrEmpty(message.Nonce))
                {
                    _ = AcknowledgeAsync(mac, message.Nonce); // not awaited: the receive path must not wait for its own PUBACK
                }
            }
            return Task.CompletedTask;
        };
        _client.DisconnectedAsync += _ =>
        {
            try { _lost.Release(); }
            catch (SemaphoreFullException) { /* the loop is already awake */ }
            catch (ObjectDisposedException) { /* disposed */ }
            return Task.CompletedTask;
        };
    }

    /// <summary>A payload on the unit's command topic as a <see cref="PushMessage"/>; null for the JSON literal null.</summary>
    /// <exception cref="JsonException">Not a push message.</exception>
    public static PushMessage? Parse(ReadOnlySpan<byte> payload) => JsonSerializer.Deserialize(payload, ProtocolJson.Default.PushMessage);

    public bool IsConnected => _client.IsConnected;

    /// <summary>True once started: the background loop keeps (or is regaining) the connection.</summary>
    public bool IsRunning => _target is not null && !_loop.IsCompleted;

    /// <summary>Successful connections (the first and every reconnect).</summary>
    public long Connects => Interlocked.Read(ref _connects);

    /// <summary>Connection attempts, successful or not.</summary>
    public long Attempts => Interlocked.Read(ref _attempts);

    /// <summary>
    /// Starts keeping the connection to <paramref name="broker"/> with the unit's credentials and waits for the first
    /// attempt (true: connected and subscribed). Already running for the same broker and credentials: returns at once
    /// with the current state. Different ones: the old connection is closed and a new loop starts.
    /// </summary>
    public async Task<bool> StartAsync(Uri broker, string mac, string username, string password, CancellationToken ct)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) == 1, this);
        var target = (broker, mac, username, password);
        if (_target == target && !_loop.IsCompleted)
        {
            return _client.IsConnected;
        }
        await StopLoopAsync();
        _target = target;
        _mac = mac;
        _backoff.Reset();
        _firstAttempt = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        _run = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
        _loop = KeepAsync(target, _run.Token);
        return await _firstAttempt.Task.WaitAsync(ct);
    }

    private async Task StopLoopAsync()
    {
        if (_run is { } run)
        {
            await run.CancelAsync();
            await _loop;
            run.Dispose();
            _run = null;
        }
        if (_client.IsConnected)
        {
            await SayOfflineAndDisconnectAsync();
        }
    }

    private async Task KeepAsync((Uri Broker, string Mac, string Username, string Password) target, CancellationToken ct)
    {
        var failures = 0;
        long? lostAt = null;
        try
        {
            while (!ct.IsCancellationRequested)
            {
                try
                {
                    Interlocked.Increment(ref _attempts);
                    await ConnectOnceAsync(target, ct);
                    Interlocked.Increment(ref _connects);
                    _firstAttempt?.TrySetResult(true);
                    if (lostAt is { } since)
                    {
                        _log($"push: reconnected to {target.Broker} after {failures + 1} attempt(s) in {_time.GetElapsedTime(since).TotalSeconds:0.0} s");
                    }
                    (failures, lostAt) = (0, null);
                    _backoff.Reset();
                    while (_client.IsConnected)
                    {
                        await _lost.WaitAsync(ct); // a wake-up from an earlier failed attempt finds the client connected: wait again
                    }
                    lostAt = _time.GetTimestamp();
                    _log($"push: lost the connection to {target.Broker}; reconnecting with backoff (at most {_options.ReconnectCap.TotalSeconds:0} s between attempts)");
                }
                catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
                {
                    // whatever a connect, subscribe or announce throws, this loop is the only one keeping the connection: it goes on
                    lostAt ??= _time.GetTimestamp();
                    failures++;
                    _firstAttempt?.TrySetResult(false);
                    if ((failures & (failures - 1)) == 0)
                    {
                        // 1st, 2nd, 4th, 8th... failure: a long outage costs a few lines, not one per attempt
                        _log($"push: broker {target.Broker} not reachable ({e.GetType().Name}: {e.Message}); {failures} failed attempt(s), periodic checks continue");
                    }
                }
                await Task.Delay(_backoff.Next(), _time, ct);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
        finally
        {
            _firstAttempt?.TrySetResult(false);
        }
    }

    /// <summary>
    /// Connects with the unit's credentials, subscribes to its command topic and announces itself online on its status
    /// topic (retained); the broker publishes the last will "offline" if it vanishes.
    /// </summary>
    private async Task ConnectOnceAsync((Uri Broker, string Mac, string Username, string Password) target, CancellationToken ct)
    {
        var (broker, mac, username, password) = target;
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
            .WithKeepAlivePeriod(_options.KeepAlive)
            .WithTimeout(_options.ConnectTimeout)
            .Build();
        var result = await _client.ConnectAsync(options, ct);
        if (result.ResultCode != MqttClientConnectResultCode.Success || !_client.IsConnected)
        {
            throw new MqttCommunicationException($"broker {broker} refused the login of {username}: {result.ResultCode} {result.ReasonString}");
        }
        var subscribe = new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter(PushTopics.Commands(mac), MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce)
            .Build();
        var granted = await _client.SubscribeAsync(subscribe, ct);
        if (granted.Items.Any(i => (int)i.ResultCode >= 0x80))
        {
            await _client.DisconnectAsync(cancellationToken: ct);
            throw new MqttCommunicationException($"broker {broker} refused the subscription to {PushTopics.Commands(mac)}: {granted.Items.First().ResultCode}");
        }
        await _client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(PushTopics.Status(mac))
            .WithPayload(System.Text.Encoding.UTF8.GetBytes(Presence.Online)).WithRetainFlag(true)
            .WithQualityOfServiceLevel(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce).Build(), ct);
    }

    /// <summary>True when the nonce is new (and now remembered); false for a push already acted on.</summary>
    private bool Remember(string? nonce)
    {
        if (string.IsNullOrEmpty(nonce))
        {
            return true;
        }
        lock (_noncesLock)
        {
            if (!_nonces.Add(nonce))
            {
                return false;
            }
            _nonceOrder.Enqueue(nonce);
            if (_nonceOrder.Count > _options.NonceMemory)
            {
                _nonces.Remove(_nonceOrder.Dequeue());
            }
            return true;
        }
    }

    /// <summary>Publishes <c>{"ack":"&lt;nonce&gt;"}</c> on the status topic, QoS 1, not retained (the retained presence stays).</summary>
    private async Task AcknowledgeAsync(string mac, string nonce)
    {
        try
        {
            await _client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(PushTopics.Status(mac))
                .WithPayload(JsonSerializer.SerializeToUtf8Bytes(new PushAck(nonce), ProtocolJson.Default.PushAck))
                .WithQualityOfServiceLevel(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce).Build(), _stopping.Token);
        }
        catch (Exception e) when (e is MqttCommunicationException or InvalidOperationException or OperationCanceledException)
        {
            // the server sends an unacknowledged check again when the unit is back; the nonce keeps it to one check
            _log($"push: the acknowledgement of {nonce} was not sent: {e.Message}");
        }
    }

    private async Task SayOfflineAndDisconnectAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        try
        {
            if (_target is { Mac: var mac })
            {
                // a clean stop sends no last will: say "offline" ourselves
                await _client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(PushTopics.Status(mac))
                    .WithPayload(System.Text.Encoding.UTF8.GetBytes(Presence.Offline)).WithRetainFlag(true).Build(), cts.Token);
            }
            await _client.DisconnectAsync(cancellationToken: cts.Token);
        }
        catch (Exception e) when (e is OperationCanceledException or MqttCommunicationException)
        {
            _log($"push: disconnect did not complete cleanly: {e.Message}");
        }
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
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }
        await _stopping.CancelAsync();
        await _loop;
        if (_client.IsConnected)
        {
            await SayOfflineAndDisconnectAsync();
        }
        _run?.Dispose();
        _client.Dispose();
        _stopping.Dispose();
        _lost.Dispose();
    }
}
