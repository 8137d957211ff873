using System.Collections.Concurrent;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using MQTTnet;
using MQTTnet.Protocol;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;

namespace Tsunagu.Server.Push;

/// <summary>Sends "check now" to units (patent 0053, 0071) and provisions their broker accounts.</summary>
public interface IPushPublisher
{
    /// <summary>The broker address units are told to use, or null when push is disabled.</summary>
    string? BrokerUri { get; }

    Task PublishAsync(string mac, PushMessage message, CancellationToken cancellationToken);

    /// <summary>True while the server's connection to the broker is up (false also when push is disabled).</summary>
    bool Connected { get; }

    /// <summary>Makes sure the unit has a broker account that can reach only its topics (its password is set per host session).</summary>
    Task EnsureUnitAccountAsync(string mac, CancellationToken cancellationToken);

    /// <summary>Revokes a decommissioned or deleted unit on the broker: its session is dropped and its password no longer accepted.</summary>
    Task RevokeUnitAsync(string mac, CancellationToken cancellationToken);
}

/// <summary>The push broker could not do what was asked; the message says what and why.</summary>
public class PushException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The broker refused one of the server's subscriptions (its SUBACK reason code is 0x80 or above: its ACL denies
/// the filter, say). The connection it came on hears nothing on that filter, so the link drops it and connects again.
/// </summary>
public sealed class BrokerSubscriptionRefusedException(string filter, MqttClientSubscribeResultCode reasonCode, string? reason)
    : PushException($"the broker refused the server's subscription to {filter}: {reasonCode}{(string.IsNullOrEmpty(reason) ? "" : $" ({reason})")}")
{
    public string Filter => filter;
    public MqttClientSubscribeResultCode ReasonCode => reasonCode;
}

/// <summary>
/// The server's own MQTT client on the broker (embedded or Mosquitto): publishes pushes, follows every unit's
/// retained status topic for presence (units set "offline" as their last will) and push acknowledgements, and on
/// Mosquitto manages unit accounts through the dynamic-security control topic. Each of its connections is kept by
/// exactly one reconnect loop (<see cref="KeptConnection"/>); undelivered checks are sent again by one retry loop.
/// </summary>
public sealed class BrokerLink(ServerOptions options, MqttSettings settings, EmbeddedBroker embedded, UnitKey unitKey, BrokerKey brokerKey, TsunaguStore store,
    TimeProvider time, Metrics.ServerMetrics metrics, Cluster.ReplicaLease lease, ILogger<BrokerLink> log) : IHostedService, IPushPublisher, IAsyncDisposable
{
    private const string ControlTopic = "$CONTROL/dynamic-security/v1";
    private const string ServerRole = "tsunagu-server";

    /// <summary>Reconnect delays: equal jitter, ceiling = min(cap, base * 2^attempt), delay in [ceiling/2, ceiling].</summary>
    public static readonly TimeSpan ReconnectBase = TimeSpan.FromMilliseconds(500);
    public static readonly TimeSpan ReconnectCap = TimeSpan.FromSeconds(10);

    /// <summary>While the broker stays unreachable, one summary warning per this interval (and one at the first failure).</summary>
    public static readonly TimeSpan FailureSummaryInterval = TimeSpan.FromSeconds(30);

    /// <summary>After the status subscription is (re)made, how long retained and fresh "online" messages may take to arrive.</summary>
    public static readonly TimeSpan PresenceGrace = TimeSpan.FromSeconds(5);

    private readonly ConcurrentDictionary<string, TaskCompletionSource<JsonObject>> _pending = new();
    private readonly Channel<string> _cameOnline = Channel.CreateBounded<string>(new BoundedChannelOptions(100_000)
    { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });
    private KeptConnection? _client;
    private KeptConnection? _control;
    private Task? _retries;
    private Task? _expiry;
    private readonly ConcurrentDictionary<string, string> _passwordsSet = new(StringComparer.Ordinal);
    // one lock per unit account: a password being set and the sweep replacing a stale one never interleave
    private readonly ConcurrentDictionary<string, SemaphoreSlim> _accountLocks = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _sweeping = new(1, 1); // one sweep at a time (the background one and one asked for)

    /// <summary>Test seam: called by the sweep for each account it found stale, before it takes the account's lock.</summary>
    internal Func<string, CancellationToken, Task>? StaleAccountFound { get; set; }

    private async Task<IDisposable> LockAccountAsync(string user, CancellationToken ct)
    {
        var gate = _accountLocks.GetOrAdd(user, _ => new SemaphoreSlim(1, 1));
        await gate.WaitAsync(ct);
        return new Release(gate);
    }

    private sealed class Release(SemaphoreSlim gate) : IDisposable
    {
        private int _done;
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _done, 1) == 0) { gate.Release(); }
        }
    }
    private readonly CancellationTokenSource _stopping = new();
    private int _disposed;

    public string? BrokerUri { get; private set; }

    /// <summary>
    /// True while the connection that carries pushes and presence is up and its status subscription is granted: false
    /// while it is down, between a (re)connect and the broker's grant, and while the broker refuses the subscription
    /// (the link is then deaf to presence and acknowledgements: it drops the connection and connects again with backoff).
    /// </summary>
    public bool Connected => _client is { } kept && kept.Client.IsConnected && kept.Subscribed;

    /// <summary>Test seam: called with every MQTT client the link makes, before it connects.</summary>
    internal Action<IMqttClient>? ClientCreated { get; set; }

    /// <summary>Connection attempts made by the reconnect loops since start (not the first connections).</summary>
    public long ReconnectAttempts => (_client?.Attempts ?? 0) + (_control?.Attempts ?? 0);

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (!options.HasRole("host") || (settings.Embedded && !embedded.Enabled))
        {
            return;
        }
        try
        {
            await StartCoreAsync(cancellationToken);
        }
        catch (Exception e)
        {
            // a start that failed after a connection was made (the account connection, then the login, subscription
            // or account set-up that failed, or a cancelled start) leaves no client or loop behind; the error goes on
            log.LogWarning("push: the broker link did not start ({Type}: {Error}); its connections are closed", e.GetType().Name, e.Message);
            await AbandonStartAsync();
            throw;
        }
    }

    /// <summary>Ends the loops and disposes the clients a failed start made; never throws.</summary>
    private async Task AbandonStartAsync()
    {
        if (Volatile.Read(ref _disposed) == 0) { await _stopping.CancelAsync(); }
        foreach (var kept in new[] { _client, _control })
        {
            if (kept is null) { continue; }
            await kept.Loop;
            await kept.CloseAsync();
        }
        if (_retries is { } retries) { await retries; }
        if (_expiry is { } expiry) { await expiry; }
        (_client, _control, _retries, _expiry) = (null, null, null, null);
        foreach (var waiter in _pending.Values) { waiter.TrySetCanceled(); }
    }

    private async Task StartCoreAsync(CancellationToken cancellationToken)
    {
        var (host, port) = settings.Embedded ? (options.ListenAddress, embedded.Port) : (settings.Host, settings.Port);
        // the embedded broker speaks TLS with the server's own certificate: the server's client pins it, as units do
        var pin = settings.Embedded ? TrustAnchor.PinOf(embedded.Certificate!) : null;
        BrokerUri = options.MqttPublicUri ?? (pin is null ? $"mqtt://{host}:{port}" : $"mqtts://{host}:{port}");
        string user, password, clientId;
        if (settings.Embedded)
        {
            (user, password, clientId) = (MqttSettings.ServerClientId, embedded.ServerPassword, MqttSettings.ServerClientId);
        }
        else
        {
            // the admin connection only manages accounts; Mosquitto kicks a client whose roles change, so the
            // server pushes through an account of its own, with a password every replica derives alike
            _control = await ConnectAsync(host, port, null, settings.Username, settings.Password, $"tsunagu-control-{Guid.NewGuid():N}",
                (c, ct) => SubscribeCheckedAsync(c, ControlTopic + "/response", MqttQualityOfServiceLevel.AtMostOnce, settings.Username, ct), cancellationToken);
            password = Base64Url.Encode(System.Security.Cryptography.HMACSHA256.HashData(unitKey.Bytes, Encoding.ASCII.GetBytes("tsunagu/v1/broker-server")));
            await EnsureServerAccountAsync(password, cancellationToken);
            // one listing tells which accounts are disabled: only those of active units are enabled again (a MAC deleted,
            // then registered again while the broker was out of reach), not every account (each enable rewrites the file)
            var listing = await CommandResponseAsync(new JsonObject { ["command"] = "listClients", ["verbose"] = true }, cancellationToken);
            var disabled = (listing["data"]?["clients"] as JsonArray ?? []).OfType<JsonObject>()
                .Where(c => c["disabled"] is JsonValue d && d.TryGetValue<bool>(out var off) && off)
                .Select(c => c["username"]?.GetValue<string>()).OfType<string>().ToHashSet(StringComparer.Ordinal);
            foreach (var unit in await store.Units.ListUnitsAsync(ct: cancellationToken))
            {
                if (unit.DecommissionedAt is null)
                {
                    await EnsureUnitAccountAsync(unit.Mac, enableExisting: disabled.Contains(UnitCredentials.BrokerUsername(unit.Mac)), cancellationToken);
                }
                else
                {
                    // decommissioned while the broker was out of reach, or on another replica: disabled again (idempotent)
                    await RevokeUnitAsync(unit.Mac, cancellationToken);
                }
            }
            (user, clientId) = (ServerRole, $"{ServerRole}-{Guid.NewGuid():N}");
        }
        _client = await ConnectAsync(host, port, pin, user, password, clientId, SubscribeStatusAsync, cancellationToken);
        _retries = RetryUndeliveredAsync(_stopping.Token);
        if (!settings.Embedded) { _expiry = ExpireUnitPasswordsAsync(_stopping.Token); }
        log.LogInformation("push: connected to {Broker} ({Kind})", BrokerUri, settings.Embedded ? "embedded" : "Mosquitto dynamic security");
    }

    /// <summary>
    /// Subscribes to every unit's status topic, then (in the background) sets offline every unit that did not say
    /// "online" within <see cref="PresenceGrace"/>: a restarted broker has lost their sessions, and with them the truth
    /// of the presence the database still shows.
    /// </summary>
    private async Task SubscribeStatusAsync(IMqttClient client, CancellationToken ct)
    {
        var subscribedAt = time.GetUtcNow();
        await SubscribeCheckedAsync(client, $"{PushTopics.Root}/+/status", MqttQualityOfServiceLevel.AtLeastOnce, client.Options?.ClientId, ct);
        _ = ReconcilePresenceAsync(subscribedAt, _stopping.Token);
    }

    /// <summary>
    /// Subscribes to one filter and checks the broker's answer: a refusal (reason code 0x80 or above, e.g. the ACL
    /// denies it) is logged once, counted (<see cref="Metrics.ServerMetrics.BrokerSubscriptionRefused"/>) and thrown
    /// as <see cref="BrokerSubscriptionRefusedException"/>, never taken for a subscription.
    /// </summary>
    private async Task SubscribeCheckedAsync(IMqttClient client, string filter, MqttQualityOfServiceLevel qos, string? who, CancellationToken ct)
    {
        var result = await client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(filter, qos).Build(), ct);
        var items = result.Items.ToList();
        var refused = items.FirstOrDefault(i => (int)i.ResultCode >= 0x80);
        if (items.Count == 0 || refused is not null)
        {
            var code = refused?.ResultCode ?? MqttClientSubscribeResultCode.UnspecifiedError;
            metrics.BrokerSubscriptionRefused();
            log.LogWarning("push: the broker refused the subscription to {Filter} of {Client}: {Code} {Reason}; the connection is dropped and made again with backoff",
                filter, who, code, result.ReasonString);
            throw new BrokerSubscriptionRefusedException(filter, code, result.ReasonString);
        }
    }

    private async Task ReconcilePresenceAsync(DateTimeOffset subscribedAt, CancellationToken ct)
    {
        try
        {
            await Task.Delay(PresenceGrace, time, ct);
            var stale = await store.PushChecks.SetStalePresenceOfflineAsync(subscribedAt, ct);
            if (stale > 0)
            {
                log.LogInformation("push: {Count} unit(s) shown online did not announce themselves on the broker; now offline", stale);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
        catch (System.Data.Common.DbException e)
        {
            log.LogWarning("push: presence could not be reconciled after subscribing: {Error}", e.Message);
        }
    }

    /// <summary>Connects and subscribes once; afterwards one loop keeps the connection (see <see cref="KeptConnection"/>).</summary>
    private async Task<KeptConnection> ConnectAsync(string host, int port, string? pin, string user, string password, string clientId,
        Func<IMqttClient, CancellationToken, Task> subscribe, CancellationToken ct)
    {
        var client = new MqttClientFactory().CreateMqttClient();
        ClientCreated?.Invoke(client);
        var builder = new MqttClientOptionsBuilder()
            .WithTcpServer(host, port).WithClientId(clientId).WithCredentials(user, password).WithCleanStart(true)
            .WithTimeout(TimeSpan.FromSeconds(10));
        if (pin is not null)
        {
            builder = builder.WithTlsOptions(t => t.UseTls().WithCertificateValidationHandler(e =>
            {
                if (e.Certificate is null) { return false; }
                using var certificate = X509CertificateLoader.LoadCertificate(e.Certificate.GetRawCertData());
                return TrustAnchor.Matches(certificate, null, [pin]);
            }));
        }
        var clientOptions = builder.Build();
        client.ApplicationMessageReceivedAsync += OnMessageAsync;
        try
        {
            var connect = await client.ConnectAsync(clientOptions, ct);
            if (connect.ResultCode != MqttClientConnectResultCode.Success)
            {
                throw new PushException($"the broker at {host}:{port} refused the server's login as {user}: {connect.ResultCode}");
            }
            await subscribe(client, ct);
        }
        catch (Exception)
        {
            client.Dispose(); // not kept: nothing else would ever close it
            throw;
        }
        var kept = new KeptConnection(client, clientOptions, subscribe, user, $"{host}:{port}", time, log);
        kept.Start(_stopping.Token);
        return kept;
    }

    /// <summary>
    /// One MQTT client and the one loop that keeps it connected. MQTTnet raises "disconnected" for every failed
    /// connect too, so the handler only wakes the loop (a semaphore of one); it never starts a loop of its own. The
    /// loop reconnects with capped, jittered backoff, subscribes again, and logs the first failure, a summary per
    /// <see cref="FailureSummaryInterval"/> and the recovery: a broker outage costs a few lines, whatever its length.
    /// </summary>
    internal sealed class KeptConnection(IMqttClient client, MqttClientOptions clientOptions, Func<IMqttClient, CancellationToken, Task> subscribe,
        string user, string broker, TimeProvider time, ILogger log)
    {
        private readonly SemaphoreSlim _lost = new(0, 1);
        private long _attempts;
        private volatile bool _subscribed;

        /// <summary>Whether the subscriptions of the current connection were granted (false from its loss until they are again).</summary>
        public bool Subscribed => _subscribed;
        private Task _loop = Task.CompletedTask;

        public IMqttClient Client => client;
        public long Attempts => Interlocked.Read(ref _attempts);

        public void Start(CancellationToken ct)
        {
            _subscribed = true; // made once its first subscription was granted
            client.DisconnectedAsync += _ =>
            {
                _subscribed = false;
                try { _lost.Release(); }
                catch (SemaphoreFullException) { /* the loop is already awake */ }
                catch (ObjectDisposedException) { /* stopping */ }
                return Task.CompletedTask;
            };
            _loop = KeepAsync(ct);
        }

        public Task Loop => _loop;

        private async Task KeepAsync(CancellationToken ct)
        {
            try
            {
                while (!ct.IsCancellationRequested)
                {
                    await _lost.WaitAsync(ct);
                    if (client.IsConnected)
                    {
                        continue; // a stale wake-up from a failed attempt of the last outage
                    }
                    await ReconnectAsync(ct);
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
            }
        }

        private async Task ReconnectAsync(CancellationToken ct)
        {
            var lostAt = time.GetTimestamp();
            var lastSummary = lostAt;
            var failures = 0;
            string? lastError = null;
            // logged in again but not yet subscribed (a subscribe that failed on a connection that stayed up): the next
            // attempt subscribes on that connection, or the link would be up and hear nothing
            var subscribing = false;
            log.LogWarning("push: lost the broker connection to {Broker} as {User}; reconnecting", broker, user);
            for (var attempt = 0; !ct.IsCancellationRequested; attempt++)
            {
                var ceiling = Math.Min(ReconnectCap.TotalMilliseconds, ReconnectBase.TotalMilliseconds * Math.Pow(2, Math.Min(attempt, 20)));
                await Task.Delay(TimeSpan.FromMilliseconds(ceiling / 2 + Random.Shared.NextDouble() * ceiling / 2), time, ct);
                if (client.IsConnected && !subscribing)
                {
                    return;
                }
                Interlocked.Increment(ref _attempts);
                try
                {
                    var result = client.IsConnected ? null : await client.ConnectAsync(clientOptions, ct);
                    if (result is null || result.ResultCode == MqttClientConnectResultCode.Success)
                    {
                        subscribing = true;
                        _subscribed = false;
                        await subscribe(client, ct);
                        _subscribed = true;
                        log.LogInformation("push: reconnected to {Broker} as {User} after {Attempts} attempt(s) in {Seconds:0.0} s",
                            broker, user, attempt + 1, time.GetElapsedTime(lostAt).TotalSeconds);
                        return;
                    }
                    lastError = $"login refused: {result.ResultCode}";
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    throw;
                }
                catch (BrokerSubscriptionRefusedException e)
                {
                    // logged and counted where it was refused: a connection deaf to that filter is dropped, and the
                    // next attempt logs in again and subscribes again
                    lastError = e.Message;
                    await DropAsync(ct);
                }
                catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
                {
                    // whatever a connect or subscribe throws, this loop is the only one keeping the connection: it goes on
                    lastError = $"{e.GetType().Name}: {e.Message}";
                }
                failures++;
                if (failures == 1)
                {
                    log.LogWarning("push: reconnect to {Broker} as {User} failed ({Error}); retrying with backoff up to {Cap} s, summarised every {Summary} s",
                        broker, user, lastError, ReconnectCap.TotalSeconds, FailureSummaryInterval.TotalSeconds);
                }
                else if (time.GetElapsedTime(lastSummary) >= FailureSummaryInterval)
                {
                    lastSummary = time.GetTimestamp();
                    log.LogWarning("push: broker {Broker} still unreachable as {User}: {Failures} failed attempt(s) in {Seconds:0} s, last: {Error}",
                        broker, user, failures, time.GetElapsedTime(lostAt).TotalSeconds, lastError);
                }
            }
        }

        /// <summary>Disconnects (a disposed client alone leaves its session open on the broker) and disposes the client; never throws.</summary>
        public async Task CloseAsync()
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await DropAsync(timeout.Token);
            client.Dispose();
        }

        /// <summary>Drops a connection whose subscription the broker refused; a drop that fails leaves it to the next attempt.</summary>
        private async Task DropAsync(CancellationToken ct)
        {
            try
            {
                if (client.IsConnected) { await client.DisconnectAsync(cancellationToken: ct); }
            }
            catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or InvalidOperationException or OperationCanceledException)
            {
                log.LogDebug("push: dropping the connection to {Broker} as {User} failed: {Error}", broker, user, e.Message);
            }
        }
    }

    private async Task OnMessageAsync(MqttApplicationMessageReceivedEventArgs e)
    {
        var topic = e.ApplicationMessage.Topic;
        var payload = Encoding.UTF8.GetString(e.ApplicationMessage.Payload);
        if (topic == ControlTopic + "/response")
        {
            if (JsonNode.Parse(payload)?["responses"] is JsonArray responses)
            {
                foreach (var response in responses.OfType<JsonObject>())
                {
                    if (response["correlationData"]?.GetValue<string>() is { } id && _pending.TryRemove(id, out var waiter))
                    {
                        waiter.TrySetResult(response);
                    }
                }
            }
            return;
        }
        var parts = topic.Split('/');
        if (parts.Length != 5 || parts[4] != "status" || !MacAddress.TryNormalize(parts[3], out var mac))
        {
            return;
        }
        if (payload is Presence.Online or Presence.Offline)
        {
            await store.Units.SetPresenceAsync(mac, payload == Presence.Online);
            if (payload == Presence.Online)
            {
                _cameOnline.Writer.TryWrite(mac); // its undelivered check goes out again, off this dispatcher
            }
        }
        else if (ParseAck(payload) is { } nonce)
        {
            metrics.PushesDelivered(await store.PushChecks.MarkPushDeliveredAsync(mac, nonce));
        }
    }

    /// <summary>The nonce of an acknowledgement <c>{"ack":"&lt;nonce&gt;"}</c>, or null for anything else (never throws).</summary>
    public static string? ParseAck(string payload)
    {
        if (payload.Length is 0 or > 256 || payload[0] != '{')
        {
            return null;
        }
        try
        {
            var ack = JsonSerializer.Deserialize(payload, ProtocolJson.Default.PushAck);
            return ack?.Ack is { Length: > 0 and <= 64 } nonce && nonce.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_') ? nonce : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>How long an undelivered check is sent again; after that the unit's periodic check takes over.</summary>
    public static readonly TimeSpan UndeliveredLifetime = TimeSpan.FromHours(24);

    /// <summary>Sends of one check to one unit at most (a unit that never acknowledges is not woken forever).</summary>
    public const int MaxSends = 8;

    /// <summary>Forced checks are kept this long for the API and the console, then deleted.</summary>
    public static readonly TimeSpan CheckRecordLifetime = TimeSpan.FromDays(30);

    /// <summary>A unit shown online that has not acknowledged is sent the check again after this (and at every "online").</summary>
    public static readonly TimeSpan ResendInterval = TimeSpan.FromSeconds(30);

    /// <summary>How often the resend loop looks whether this replica has just taken the once-only lease over.</summary>
    public static readonly TimeSpan HolderPoll = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Sends undelivered checks again: at once to a unit that announces itself online (it has just subscribed), and
    /// every <see cref="ResendInterval"/> to units shown online that have not acknowledged. The push carries the same
    /// nonce, and a unit acts on a nonce once, so a resend never makes a second check. Of several replicas only the
    /// holder of the once-only lease (<see cref="Cluster.ReplicaLease"/>) resends and prunes, from the shared database.
    /// A replica that takes the lease over (its holder died; and at its start) sweeps at once, adding the units that
    /// said "online" after their check's last send, however recent: only the holder answers an "online", so these are
    /// the units whose "online" went to a dead holder, and would otherwise wait until ResendInterval after that send.
    /// In a sweep a resend that fails (the broker refused that unit's push, say) is logged and counted and the sweep goes
    /// on with the next unit; a sweep stops only when the link goes down (<see cref="ResendEachAsync"/>).
    /// </summary>
    private async Task RetryUndeliveredAsync(CancellationToken ct)
    {
        var sweep = time.GetTimestamp();
        var wasHolder = false;
        var takeOver = false;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                using var timer = new CancellationTokenSource(HolderPoll, time);
                using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct, timer.Token);
                string? mac = null;
                try
                {
                    mac = await _cameOnline.Reader.ReadAsync(wait.Token);
                }
                catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                {
                }
                var holder = lease.IsHolder;
                takeOver |= holder && !wasHolder;
                wasHolder = holder;
                if (mac is not null && holder && await store.PushChecks.NewestUndeliveredPushAsync(mac, time.GetUtcNow() - UndeliveredLifetime, ct) is { Attempts: < MaxSends } row)
                {
                    await ResendAsync(row, ct);
                }
                if ((takeOver || time.GetElapsedTime(sweep) >= ResendInterval) && Connected && holder)
                {
                    sweep = time.GetTimestamp();
                    var now = time.GetUtcNow();
                    var due = await store.PushChecks.UndeliveredPushesToRetryAsync(now - UndeliveredLifetime, now - ResendInterval, MaxSends, 10_000, takeOver, ct);
                    if (await ResendEachAsync(due, ct))
                    {
                        // every row tried, each sent or its failure logged (it is due again at the next sweep); a sweep the
                        // link's loss cut short, or a fault thrown above, leaves it set: the next pass tries again
                        takeOver = false;
                    }
                    await store.PushChecks.PrunePushChecksAsync(now - CheckRecordLifetime, ct);
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
            {
                // the only loop that resends: it logs and goes on (the next "online" or sweep tries again)
                log.LogWarning("push: resending undelivered checks failed: {Type}: {Error}", e.GetType().Name, e.Message);
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(1), time, ct); // a fault that repeats costs one line a second at most
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    return;
                }
            }
        }
    }

    /// <summary>
    /// One sweep's resends, in the order given. A resend the broker link could not hand over (<see cref="PushException"/>:
    /// the broker refused the push to that unit's topic, or the publish broke) is logged with the unit and its reason and
    /// the sweep goes on with the next row, so a unit whose pushes the broker always refuses holds back no other unit;
    /// the failed row is due again at the next sweep. Once the link is down (it reconnects by itself) the sweep stops and
    /// returns false: the rows left wait for the next one. Cancellation and any other fault end it by throwing.
    /// </summary>
    private async Task<bool> ResendEachAsync(IReadOnlyList<PushCheckRow> due, CancellationToken ct)
    {
        for (var i = 0; i < due.Count; i++)
        {
            if (!Connected)
            {
                log.LogWarning("push: the broker link went down during the resend sweep; {Left} undelivered check(s) not tried are left for the next sweep", due.Count - i);
                return false;
            }
            var row = due[i];
            try
            {
                await ResendAsync(row, ct);
            }
            catch (PushException e)
            {
                log.LogWarning("push: resending check {CheckId} to {Mac} failed ({Error}); the sweep goes on, the check is sent again at the next one",
                    row.CheckId, row.Mac, e.Message);
            }
        }
        return true;
    }

    /// <summary>
    /// Sends an undelivered check again with its nonce and, once the broker took it, counts the send
    /// (<see cref="PushCheckRow.Attempts"/> and <see cref="PushCheckRow.SentAt"/>). A publish that failed is not a send:
    /// the row is left as it was (still due, its attempts toward <see cref="MaxSends"/> not spent), counted in
    /// <see cref="Metrics.ServerMetrics.PushResendFailed"/>, and the <see cref="PushException"/> is thrown on.
    /// </summary>
    private async Task ResendAsync(PushCheckRow row, CancellationToken ct)
    {
        try
        {
            await PublishAsync(row.Mac, new PushMessage(PushMessage.CheckNow, (int)row.Importance, row.Nonce,
                DateTimeOffset.Parse(row.CreatedAt, System.Globalization.CultureInfo.InvariantCulture), row.Reason ?? PushReasons.Operator), ct);
        }
        catch (PushException)
        {
            metrics.PushResendFailed();
            throw;
        }
        await store.PushChecks.MarkPushResentAsync(row.CheckId, row.Mac, ct);
    }

    public async Task PublishAsync(string mac, PushMessage message, CancellationToken cancellationToken)
    {
        try
        {
            await PublishCoreAsync(mac, message, cancellationToken);
        }
        catch (PushException)
        {
            metrics.PushUndelivered();
            throw;
        }
        metrics.PushSent();
    }

    private async Task PublishCoreAsync(string mac, PushMessage message, CancellationToken cancellationToken)
    {
        var client = _client?.Client ?? throw new PushException("push is disabled on this server (no host role, or MqttPort < 0)");
        var push = new MqttApplicationMessageBuilder()
            .WithTopic(PushTopics.Commands(mac))
            .WithPayload(JsonSerializer.SerializeToUtf8Bytes(message, ProtocolJson.Default.PushMessage))
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .WithMessageExpiryInterval(3600)
            .Build();
        // embedded broker: straight into the unit's session when it is connected (see EmbeddedBroker.TryDeliverAsync)
        if (settings.Embedded && await embedded.TryDeliverAsync(UnitCredentials.BrokerClientId(mac), push, cancellationToken))
        {
            return;
        }
        if (!client.IsConnected)
        {
            throw new PushException($"the server is not connected to the broker {BrokerUri} (reconnecting)");
        }
        MqttClientPublishResult result;
        try
        {
            result = await client.PublishAsync(push, cancellationToken);
        }
        catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or InvalidOperationException
                                  || (e is OperationCanceledException && !cancellationToken.IsCancellationRequested))
        {
            throw new PushException($"the push to {mac} failed: the connection to the broker {BrokerUri} broke ({e.Message})", e);
        }
        if (!result.IsSuccess)
        {
            throw new PushException($"the broker refused the push to {mac}: {result.ReasonCode} {result.ReasonString}");
        }
    }

    /// <summary>Makes the unit's broker account (a registration: an existing account is enabled again, see below).</summary>
    public Task EnsureUnitAccountAsync(string mac, CancellationToken cancellationToken) => EnsureUnitAccountAsync(mac, enableExisting: true, cancellationToken);

    /// <param name="enableExisting">
    /// Whether an existing account is enabled: for a registration (a MAC deleted and registered again), and at start-up
    /// only for an active unit whose account is disabled: each enable makes Mosquitto rewrite its whole account file.
    /// </param>
    private async Task EnsureUnitAccountAsync(string mac, bool enableExisting, CancellationToken cancellationToken)
    {
        if (settings.Embedded || _control is null)
        {
            return; // the embedded broker checks unit passwords against the broker key itself
        }
        var user = UnitCredentials.BrokerUsername(mac);
        var role = "unit-" + user;
        await CommandAsync(new JsonObject
        {
            ["command"] = "createRole", ["rolename"] = role,
            ["acls"] = new JsonArray(
                Acl("subscribeLiteral", PushTopics.Commands(mac)),
                Acl("publishClientReceive", PushTopics.Commands(mac)),
                Acl("publishClientSend", PushTopics.Status(mac))),
        }, "Role already exists", cancellationToken);
        // made with a random password nobody knows: the unit logs in with the short-lived one its host session sets
        // (SetUnitPasswordAsync). An existing account is left alone (changing it would disconnect the unit), but enabled:
        // a MAC whose row was deleted (its account disabled then) and registered again is a unit of the fleet again
        var create = new JsonObject
        {
            ["command"] = "createClient", ["username"] = user, ["password"] = UnitCredentials.NewNonce(24), ["clientid"] = UnitCredentials.BrokerClientId(mac),
            ["roles"] = new JsonArray(new JsonObject { ["rolename"] = role }),
        };
        if (!await CommandAsync(create, "Client already exists", cancellationToken) && enableExisting)
        {
            await CommandAsync(new JsonObject { ["command"] = "enableClient", ["username"] = user }, null, cancellationToken);
        }
    }

    /// <summary>
    /// Embedded broker: drops the unit's session (its logins are refused by the row). Mosquitto: disables the unit's
    /// account (dynamic security disconnects it and refuses every login of a disabled client, whatever the password).
    /// </summary>
    public async Task RevokeUnitAsync(string mac, CancellationToken cancellationToken)
    {
        if (settings.Embedded)
        {
            await embedded.DisconnectUnitAsync(mac);
            return;
        }
        if (_control is null)
        {
            return;
        }
        var user = UnitCredentials.BrokerUsername(mac);
        _passwordsSet.TryRemove(user, out _);
        await CommandAsync(new JsonObject { ["command"] = "disableClient", ["username"] = user }, "Client not found", cancellationToken);
    }

    /// <summary>What the server writes in a unit account's description on Mosquitto: when its password expires and which broker key made it.</summary>
    public static string Description(DateTimeOffset expiresAt, string keyId) => $"tsunagu: password expires {expiresAt.ToUnixTimeSeconds()} key {keyId}";

    /// <summary>
    /// Sets a unit's short-lived password on Mosquitto (nothing to do on the embedded broker, which checks it itself);
    /// a password this replica set already is not set again (Mosquitto disconnects a client whose password changes).
    /// The expiry and key id go in the account's description, so every replica, and a restarted server, can expire it.
    /// </summary>
    public async Task SetUnitPasswordAsync(string mac, string password, DateTimeOffset expiresAt, string keyId, CancellationToken ct)
    {
        if (settings.Embedded || _control is null)
        {
            return;
        }
        var user = UnitCredentials.BrokerUsername(mac);
        using var held = await LockAccountAsync(user, ct);
        if (_passwordsSet.TryGetValue(user, out var set) && set == password)
        {
            return;
        }
        var modify = new JsonObject
        {
            ["command"] = "modifyClient", ["username"] = user, ["password"] = password, ["textdescription"] = Description(expiresAt, keyId),
        };
        if (!await CommandAsync(modify, "Client not found", ct))
        {
            await EnsureUnitAccountAsync(mac, enableExisting: false, ct);
            await CommandAsync(modify.DeepClone().AsObject(), null, ct);
        }
        _passwordsSet[user] = password;
    }

    /// <summary>How often the server looks for unit passwords on Mosquitto that have expired or were made with a replaced key.</summary>
    public TimeSpan PasswordSweepInterval => TimeSpan.FromSeconds(Math.Clamp(options.BrokerPasswordLifetime.TotalSeconds / 8, 1, 60));

    /// <summary>
    /// Mosquitto knows nothing of expiry: every <see cref="PasswordSweepInterval"/> the server replaces, with a random
    /// one, the password of every unit account whose password has expired, was made with a broker key that is no
    /// longer the current one, or whose unit is no longer registered (Mosquitto then disconnects that unit).
    /// </summary>
    private async Task ExpireUnitPasswordsAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(PasswordSweepInterval, time, ct);
                if (!lease.IsHolder) { continue; } // one replica replaces them (Cluster.ReplicaLease)
                var expired = await ExpireUnitPasswordsOnceAsync(ct);
                if (expired > 0)
                {
                    log.LogInformation("push: {Count} unit password(s) on Mosquitto expired, made with a replaced broker key or of an unregistered unit; replaced", expired);
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is PushException or System.Data.Common.DbException or JsonException or InvalidOperationException
                                          or MQTTnet.Exceptions.MqttCommunicationException)
            {
                log.LogWarning("push: expiring unit passwords on Mosquitto failed ({Error}); trying again in {Seconds} s", e.Message, PasswordSweepInterval.TotalSeconds);
            }
        }
    }

    /// <summary>One pass of <see cref="ExpireUnitPasswordsAsync"/>; the number of passwords replaced.</summary>
    public async Task<int> ExpireUnitPasswordsOnceAsync(CancellationToken ct)
    {
        if (settings.Embedded || _control is null || !_control.Client.IsConnected)
        {
            return 0;
        }
        await _sweeping.WaitAsync(ct);
        try
        {
            return await ExpireUnitPasswordsCoreAsync(ct);
        }
        finally
        {
            _sweeping.Release();
        }
    }

    private async Task<int> ExpireUnitPasswordsCoreAsync(CancellationToken ct)
    {
        var list = await CommandResponseAsync(new JsonObject { ["command"] = "listClients", ["verbose"] = true }, ct);
        var now = time.GetUtcNow().ToUnixTimeSeconds();
        var keyId = brokerKey.Current.Id;
        var replaced = 0;
        foreach (var client in (list["data"]?["clients"] as JsonArray ?? []).OfType<JsonObject>())
        {
            var user = client["username"]?.GetValue<string>();
            var description = client["textdescription"]?.GetValue<string>();
            if (user is null || description is null || !description.StartsWith("tsunagu: password expires ", StringComparison.Ordinal)
                || !MacAddress.TryNormalize(user, out var mac))
            {
                continue;
            }
            if (!await IsStaleAsync(description, mac, now, keyId, ct)) { continue; }
            if (StaleAccountFound is { } found) { await found(user, ct); }
            // the listing may be old by now: a host session may have set a fresh password since. Under the account's
            // lock (SetUnitPasswordAsync takes it too) the account is read again and replaced only if still stale.
            using (await LockAccountAsync(user, ct))
            {
                var current = await CommandResponseAsync(new JsonObject { ["command"] = "getClient", ["username"] = user }, ct);
                if (current["error"] is not null
                    || current["data"]?["client"]?["textdescription"]?.GetValue<string>() is not { } fresh
                    || !fresh.StartsWith("tsunagu: password expires ", StringComparison.Ordinal)
                    || !await IsStaleAsync(fresh, mac, now, keyId, ct))
                {
                    continue; // gone, already replaced, or set afresh meanwhile
                }
                await CommandAsync(new JsonObject
                {
                    ["command"] = "modifyClient", ["username"] = user, ["password"] = UnitCredentials.NewNonce(24), ["textdescription"] = "tsunagu: no valid password",
                }, "Client not found", ct);
                _passwordsSet.TryRemove(user, out _);
            }
            replaced++;
        }
        return replaced;
    }

    /// <summary>Whether an account description written by <see cref="Description"/> tells of an expired or replaced-key password, or the unit is gone.</summary>
    private async Task<bool> IsStaleAsync(string description, string mac, long now, string keyId, CancellationToken ct)
    {
        var words = description.Split(' ');
        return words.Length != 6 || !long.TryParse(words[3], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var expires)
               || expires <= now || words[5] != keyId || await store.Units.GetUnitAsync(mac, ct) is not { DecommissionedAt: null };
    }

    private async Task EnsureServerAccountAsync(string password, CancellationToken ct)
    {
        await CommandAsync(new JsonObject
        {
            ["command"] = "createRole", ["rolename"] = ServerRole,
            ["acls"] = new JsonArray(
                Acl("publishClientSend", $"{PushTopics.Root}/+/cmd"),
                Acl("subscribePattern", $"{PushTopics.Root}/+/status"),
                Acl("publishClientReceive", $"{PushTopics.Root}/+/status")),
        }, "Role already exists", ct);
        // left alone when it exists: every replica derives the same password, and a change would disconnect the others
        await CommandAsync(new JsonObject
        {
            ["command"] = "createClient", ["username"] = ServerRole, ["password"] = password,
            ["roles"] = new JsonArray(new JsonObject { ["rolename"] = ServerRole }),
        }, "Client already exists", ct);
    }

    private static JsonObject Acl(string type, string topic) => new() { ["acltype"] = type, ["topic"] = topic, ["priority"] = 0, ["allow"] = true };

    /// <summary>Sends one dynamic-security command and waits for its answer; true when it succeeded, false on the tolerated error.</summary>
    private async Task<bool> CommandAsync(JsonObject command, string? toleratedError, CancellationToken ct)
    {
        var response = await CommandResponseAsync(command, ct);
        var error = response["error"]?.GetValue<string>();
        if (error is null) { return true; }
        if (error == toleratedError) { return false; }
        throw new PushException($"Mosquitto dynamic security refused {command["command"]} ({command["username"] ?? command["rolename"]}): {error}");
    }

    /// <summary>Sends one dynamic-security command and returns its answer, error or not.</summary>
    private async Task<JsonObject> CommandResponseAsync(JsonObject command, CancellationToken ct)
    {
        var id = Guid.NewGuid().ToString("N");
        command["correlationData"] = id;
        var waiter = new TaskCompletionSource<JsonObject>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[id] = waiter;
        try
        {
            var body = new JsonObject { ["commands"] = new JsonArray(command) }.ToJsonString();
            await _control!.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(ControlTopic).WithPayload(body).Build(), ct);
            return await waiter.Task.WaitAsync(TimeSpan.FromSeconds(10), ct);
        }
        catch (TimeoutException e)
        {
            throw new PushException($"Mosquitto did not answer {command["command"]} within 10 s: is the dynamic-security plugin loaded and {settings.Username} its admin?", e);
        }
        catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or InvalidOperationException)
        {
            // the admin connection is down (its loop reconnects): the caller decides what that means
            throw new PushException($"{command["command"]} could not be sent to Mosquitto: {e.Message}", e);
        }
        finally
        {
            _pending.TryRemove(id, out _);
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _disposed) == 0) { await _stopping.CancelAsync(); }
        foreach (var kept in new[] { _client, _control })
        {
            if (kept is null) { continue; }
            await kept.Loop;
            if (kept.Client.IsConnected)
            {
                await kept.Client.DisconnectAsync(cancellationToken: cancellationToken);
            }
        }
        if (_retries is { } retries) { await retries; }
        if (_expiry is { } expiry) { await expiry; }
    }

    public ValueTask DisposeAsync()
    {
        // registered under several service types, so disposed more than once
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return ValueTask.CompletedTask;
        }
        _stopping.Cancel();
        _client?.Client.Dispose();
        _control?.Client.Dispose();
        _stopping.Dispose();
        return ValueTask.CompletedTask;
    }
}
