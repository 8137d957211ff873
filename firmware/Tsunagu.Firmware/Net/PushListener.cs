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

    /// <summary>
    /// A password is renewed (a new host session asked for) when this much of its validity is left, or a quarter of
    /// it when that is less; the connection is then made again with the new one before the broker ends the old one.
    /// </summary>
    public TimeSpan CredentialRenewMargin { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>How many recent push nonces the unit remembers: a push sent again with a known nonce is acknowledged, not acted on twice.</summary>
    public int NonceMemory { get; init; } = 64;

    public void Validate()
    {
        if (ReconnectBase <= TimeSpan.Zero || ReconnectCap < ReconnectBase)
        {
            throw new ArgumentException($"push reconnect needs 0 < ReconnectBase <= ReconnectCap (was {ReconnectBase}, {ReconnectCap})");
        }
        if (KeepAlive <= TimeSpan.Zero || ConnectTimeout <= TimeSpan.Zero || NonceMemory < 1 || CredentialRenewMargin <= TimeSpan.Zero)
        {
            throw new ArgumentException($"push: KeepAlive, ConnectTimeout and CredentialRenewMargin must be positive and NonceMemory at least 1 (was {KeepAlive}, {ConnectTimeout}, {CredentialRenewMargin}, {NonceMemory})");
        }
    }
}

/// <summary>
/// A login on the push broker: the user name and the short-lived password of a host session, valid
/// <paramref name="ValidFor"/> (null: no known end) from <paramref name="ObtainedAt"/> (<see cref="TimeProvider.GetTimestamp"/>
/// of when the session was asked for: the unit's monotonic clock, never its wall clock).
/// </summary>
public sealed record PushCredential(string Username, string Password, TimeSpan? ValidFor, long ObtainedAt)
{
    /// <summary>The validity left at <paramref name="time"/>'s now; null when it has no known end.</summary>
    public TimeSpan? Left(TimeProvider time) => ValidFor is { } valid ? valid - time.GetElapsedTime(ObtainedAt) : null;

    /// <summary>The broker login a host session carries, or null when the server sent none.</summary>
    public static PushCredential? Of(SessionResponse session, long requestedAt) =>
        session is { PushUsername: { } user, PushPassword: { } password }
            ? new PushCredential(user, password, session.PushPasswordExpiresInSeconds is > 0 and var s ? TimeSpan.FromSeconds(s) : null, requestedAt)
            : null;
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
    private (Uri Broker, string Mac, string Username)? _target;
    private PushCredential? _credential;
    private volatile bool _credentialRefused;
    private Func<PushCredential, CancellationToken, Task<PushCredential>>? _renew;
    private long _renewals;
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

    /// <summary>Passwords asked for by the listener itself (before expiry, or after the broker refused one).</summary>
    public long Renewals => Interlocked.Read(ref _renewals);

    /// <summary>The login used for the next connection.</summary>
    public PushCredential? Credential => _credential;

    /// <summary>Starts with a fixed login that is never renewed (see the overload with a renewal).</summary>
    public Task<bool> StartAsync(Uri broker, string mac, string username, string password, CancellationToken ct) =>
        StartAsync(broker, mac, new PushCredential(username, password, null, _time.GetTimestamp()), null, ct);

    /// <summary>
    /// Starts keeping the connection to <paramref name="broker"/> with the unit's login and waits for the first
    /// attempt (true: connected and subscribed). <paramref name="renew"/> gets a newer login (a new host session)
    /// when the one in use is about to expire or the broker refused it; it is called from the listener's loop only,
    /// so never more often than its backoff allows. Already running for the same broker and user: the login is
    /// kept for the next connection and this returns at once with the current state. Different ones: the old
    /// connection is closed and a new loop starts.
    /// </summary>
    public async Task<bool> StartAsync(Uri broker, string mac, PushCredential credential, Func<PushCredential, CancellationToken, Task<PushCredential>>? renew,
        CancellationToken ct)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) == 1, this);
        var target = (broker, mac, credential.Username);
        _renew = renew;
        if (_target == target && !_loop.IsCompleted)
        {
            if (credential.Password != _credential?.Password && Fresher(credential, _credential))
            {
                _credential = credential;
                _credentialRefused = false;
            }
            return _client.IsConnected;
        }
        await StopLoopAsync();
        _target = target;
        _credential = credential;
        _credentialRefused = false;
        _mac = mac;
        _backoff.Reset();
        _firstAttempt = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        _run = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
        _loop = KeepAsync(target, _run.Token);
        return await _firstAttempt.Task.WaitAsync(ct);
    }

    /// <summary>True when <paramref name="candidate"/> is valid longer than <paramref name="current"/>.</summary>
    private bool Fresher(PushCredential candidate, PushCredential? current) =>
        current?.Left(_time) is not { } left || (candidate.Left(_time) is not { } other || other > left);

    /// <summary>The validity left below which the login is renewed: <see cref="PushOptions.CredentialRenewMargin"/>, or a quarter of its lifetime when less.</summary>
    private TimeSpan RenewMargin(PushCredential credential) =>
        credential.ValidFor is { } valid && valid / 4 < _options.CredentialRenewMargin ? valid / 4 : _options.CredentialRenewMargin;

    /// <summary>The login to connect with: a renewed one when the current one was refused or is about to expire (and a renewal is possible).</summary>
    private async Task<PushCredential> CredentialForConnectAsync(CancellationToken ct)
    {
        var credential = _credential!;
        if (_renew is { } renew && (_credentialRefused || credential.Left(_time) is { } left && left <= RenewMargin(credential)))
        {
            Interlocked.Increment(ref _renewals);
            credential = await renew(credential, ct);
            _credential = credential;
            _credentialRefused = false;
        }
        return credential;
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

    private async Task KeepAsync((Uri Broker, string Mac, string Username) target, CancellationToken ct)
    {
        var failures = 0;
        long? lostAt = null;
        try
        {
            while (!ct.IsCancellationRequested)
            {
                try
                {
                    var credential = await CredentialForConnectAsync(ct);
                    Interlocked.Increment(ref _attempts);
                    await ConnectOnceAsync(target.Broker, target.Mac, credential, ct);
                    Interlocked.Increment(ref _connects);
                    _firstAttempt?.TrySetResult(true);
                    if (lostAt is { } since)
                    {
                        _log($"push: reconnected to {target.Broker} after {failures + 1} attempt(s) in {_time.GetElapsedTime(since).TotalSeconds:0.0} s");
                    }
                    (failures, lostAt) = (0, null);
                    _backoff.Reset();
                    if (await WaitLostOrRenewalDueAsync(credential, ct))
                    {
                        // the password is about to expire: the next connection is made at once with a renewed one
                        _log($"push: the broker password expires soon; logging in again with a new one");
                        await SayOfflineAndDisconnectAsync(sayOffline: false);
                        continue;
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
    /// Waits while connected: false when the connection is lost, true when the login <paramref name="connected"/> (the
    /// one this connection used) is due for renewal and a newer one is ready for the next connection. A renewal that
    /// fails is tried again after a backoff step, the connection kept meanwhile.
    /// </summary>
    private async Task<bool> WaitLostOrRenewalDueAsync(PushCredential connected, CancellationToken ct)
    {
        while (_client.IsConnected)
        {
            TimeSpan? wait = null;
            if (_renew is { } renew && connected.Left(_time) is { } left)
            {
                wait = left - RenewMargin(connected);
                if (wait <= TimeSpan.Zero)
                {
                    if (_credential is { } newer && newer.Password != connected.Password && (newer.Left(_time) is not { } l || l > RenewMargin(newer)))
                    {
                        return true; // the state machine's newer session brought one already
                    }
                    try
                    {
                        Interlocked.Increment(ref _renewals);
                        var fresh = await renew(connected, ct);
                        if (fresh.Password != connected.Password)
                        {
                            _credential = fresh;
                            _credentialRefused = false;
                            return true;
                        }
                        _log("push: the renewed broker password is the one in use; asking again later");
                    }
                    catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
                    {
                        _log($"push: renewing the broker password failed ({e.GetType().Name}: {e.Message}); the connection is kept and renewal retried");
                    }
                    wait = _backoff.Next();
                }
            }
            if (wait is not { } delay)
            {
                await _lost.WaitAsync(ct); // a wake-up from an earlier failed attempt finds the client connected: wait again
                continue;
            }
            using var either = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var lost = _lost.WaitAsync(either.Token);
            var timer = Task.Delay(delay, _time, either.Token);
            await Task.WhenAny(lost, timer);
            await either.CancelAsync();
            ct.ThrowIfCancellationRequested();
        }
        return false;
    }

    /// <summary>
    /// Connects with the unit's login, subscribes to its command topic and announces itself online on its status
    /// topic (retained); the broker publishes the last will "offline" if it vanishes. A refused login marks the
    /// login for renewal before the next attempt.
    /// </summary>
    private async Task ConnectOnceAsync(Uri broker, string mac, PushCredential credential, CancellationToken ct)
    {
        var (username, password) = (credential.Username, credential.Password);
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
        if (result.ResultCode is MqttClientConnectResultCode.BadUserNameOrPassword or MqttClientConnectResultCode.NotAuthorized)
        {
            _credentialRefused = true; // expired, revoked or made with a replaced key: the next attempt (after backoff) asks for a new one
        }
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

    private async Task SayOfflineAndDisconnectAsync(bool sayOffline = true)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        try
        {
            if (sayOffline && _target is { Mac: var mac })
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
