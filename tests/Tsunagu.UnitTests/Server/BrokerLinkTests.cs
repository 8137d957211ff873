using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;
using CsCheck;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using MQTTnet;
using MQTTnet.Diagnostics.PacketInspection;
using MQTTnet.Exceptions;
using Tsunagu.Protocol;
using Tsunagu.Server;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Cluster;
using Tsunagu.Server.Data;
using Tsunagu.Server.Metrics;
using Tsunagu.Server.Push;

namespace Tsunagu.UnitTests.Server;

/// <summary>
/// The server's link to its MQTT broker (server/Tsunagu.Server/Push/BrokerLink.cs) without a broker: the reconnect loop
/// of one connection (<see cref="BrokerLink.KeptConnection"/>) over a fake MQTT client and a fake clock (backoff bounds,
/// cap, reset, one loop, bounded logging, cancellation), a link that is not connected (every push reported undelivered,
/// account management a no-op), the acknowledgement parser, the account description the password sweep reads back,
/// and the sweep interval. Presence, acknowledgements, resends and dynamic-security commands need a broker
/// (tests/Tsunagu.IntegrationTests).
/// </summary>
public class BrokerLinkTests
{
    private static readonly DateTimeOffset Start = new(2026, 4, 1, 9, 0, 0, TimeSpan.Zero);
    private static readonly MqttClientOptions ClientOptions = new MqttClientOptionsBuilder().WithTcpServer("broker.invalid", 1883).Build();

    private string _directory = "";
    private BrokerKey _brokerKey = null!;

    [SetUp]
    public void SetUp()
    {
        _directory = Directory.CreateTempSubdirectory("tsunagu-brokerlink-").FullName;
        _brokerKey = BrokerKey.LoadOrCreate(_directory);
    }

    [TearDown]
    public void TearDown()
    {
        SqliteConnection.ClearAllPools();
        Directory.Delete(_directory, recursive: true);
    }

    // ---- the reconnect loop of one connection ----

    [Test]
    public async Task Each_reconnect_delay_lies_in_the_upper_half_of_a_ceiling_that_doubles_from_the_base_and_stops_at_the_cap()
    {
        var clock = new TimerCountingClock(Start);
        var client = new FakeClient { Connected = true, Outcome = n => n % 2 == 0 ? Refused() : throw new MqttCommunicationException("connection refused") };
        var subscribes = 0;
        var kept = new BrokerLink.KeptConnection(client, ClientOptions, (_, _) => { subscribes++; return Task.CompletedTask; },
            "tsunagu-server", "broker.invalid:1883", clock, NullLogger.Instance);
        using var stop = new CancellationTokenSource();
        kept.Start(stop.Token);
        Assert.That(clock.Pending, Is.Zero, "a connected link waits for a loss without a timer");

        await client.LoseAsync();
        const int attempts = 12;
        for (var attempt = 0; attempt < attempts; attempt++)
        {
            var delay = await AdvanceThroughBackoffAsync(clock, client, attempt, extraWakeUps: 3);
            var ceiling = Math.Min(BrokerLink.ReconnectCap.TotalMilliseconds, BrokerLink.ReconnectBase.TotalMilliseconds * Math.Pow(2, attempt));
            Assert.That(delay.TotalMilliseconds, Is.InRange(ceiling / 2, ceiling), $"attempt {attempt}");
            Assert.That(delay, Is.LessThanOrEqualTo(BrokerLink.ReconnectCap), $"attempt {attempt}: never longer than the cap");
        }
        await Until(() => client.Connects == attempts && clock.Pending == 1);

        Assert.That(kept.Attempts, Is.EqualTo(attempts), "one attempt per backoff, each counted");
        Assert.That(client.MostConnectsAtOnce, Is.EqualTo(1), "disconnect events during the outage never start a second loop");
        Assert.That(subscribes, Is.Zero, "nothing is subscribed before a login succeeds");
        await stop.CancelAsync();
        await kept.Loop.WaitAsync(TimeSpan.FromSeconds(60));
    }

    [Test]
    public async Task A_reconnect_subscribes_again_once_then_rests_and_the_next_outage_starts_again_from_the_base_delay()
    {
        var clock = new TimerCountingClock(Start);
        var client = new FakeClient { Connected = true, Outcome = n => n <= 3 ? throw new MqttCommunicationException("connection refused") : Success() };
        var subscribes = 0;
        var kept = new BrokerLink.KeptConnection(client, ClientOptions, (c, _) =>
        {
            Assert.That(c.IsConnected, Is.True, "subscribed only on a connected client");
            Interlocked.Increment(ref subscribes);
            return Task.CompletedTask;
        }, "tsunagu-server", "broker.invalid:1883", clock, NullLogger.Instance);
        using var stop = new CancellationTokenSource();
        kept.Start(stop.Token);

        await client.LoseAsync();
        for (var attempt = 0; attempt < 4; attempt++)
        {
            await AdvanceThroughBackoffAsync(clock, client, attempt);
        }
        await Until(() => Volatile.Read(ref subscribes) == 1);
        Assert.That(client.Connected, Is.True);
        Assert.That(kept.Attempts, Is.EqualTo(4));
        Assert.That(clock.Pending, Is.Zero, "after the recovery no backoff is left armed");

        clock.Advance(TimeSpan.FromHours(1));
        Assert.That(client.Connects, Is.EqualTo(4), "a connected link logs in nowhere again, however long it is up");

        await client.LoseAsync();
        var first = await AdvanceThroughBackoffAsync(clock, client, connectsBefore: 4);
        Assert.That(first, Is.LessThanOrEqualTo(BrokerLink.ReconnectBase), "each outage starts from the base ceiling, not where the last one ended");
        await Until(() => Volatile.Read(ref subscribes) == 2);
        Assert.That(kept.Attempts, Is.EqualTo(5));
        Assert.That(client.MostConnectsAtOnce, Is.EqualTo(1));
        await stop.CancelAsync();
        await kept.Loop.WaitAsync(TimeSpan.FromSeconds(60));
    }

    [Test]
    public async Task A_subscribe_that_fails_on_a_connection_that_stays_up_is_tried_again_on_that_connection_until_it_succeeds()
    {
        var clock = new TimerCountingClock(Start);
        var client = new FakeClient { Connected = true, Outcome = _ => Success() };
        var subscribes = 0;
        var kept = new BrokerLink.KeptConnection(client, ClientOptions, (_, _) =>
            Interlocked.Increment(ref subscribes) <= 2 ? throw new MqttCommunicationTimedOutException() : Task.CompletedTask,
            "tsunagu-server", "broker.invalid:1883", clock, NullLogger.Instance);
        using var stop = new CancellationTokenSource();
        kept.Start(stop.Token);

        await client.LoseAsync();
        await AdvanceThroughBackoffAsync(clock, client, connectsBefore: 0);
        // logged in, the subscribe timed out, the connection stayed up: the loop must not take "connected" for "back"
        await Until(() => Volatile.Read(ref subscribes) == 1 && clock.Pending == 1);
        Assert.That(client.Connected, Is.True);
        await AdvanceThroughBackoffAsync(clock, client, connectsBefore: 1);
        await Until(() => Volatile.Read(ref subscribes) == 2 && clock.Pending == 1);
        await AdvanceThroughBackoffAsync(clock, client, connectsBefore: 1);
        await Until(() => Volatile.Read(ref subscribes) == 3);
        await Until(() => clock.Pending == 0);
        Assert.That(client.Connects, Is.EqualTo(1), "subscribed again on the connection that stayed up, not logged in again");
        Assert.That(kept.Attempts, Is.EqualTo(3));
        clock.Advance(TimeSpan.FromHours(1));
        Assert.That(Volatile.Read(ref subscribes), Is.EqualTo(3), "once subscribed, the loop rests");
        await stop.CancelAsync();
        await kept.Loop.WaitAsync(TimeSpan.FromSeconds(60));
    }

    [Test]
    public async Task A_connection_that_is_back_when_the_backoff_ends_is_not_logged_in_again()
    {
        var clock = new TimerCountingClock(Start);
        var client = new FakeClient { Connected = true, Outcome = _ => Success() };
        var subscribes = 0;
        var kept = new BrokerLink.KeptConnection(client, ClientOptions, (_, _) => { subscribes++; return Task.CompletedTask; },
            "tsunagu-server", "broker.invalid:1883", clock, NullLogger.Instance);
        using var stop = new CancellationTokenSource();
        kept.Start(stop.Token);

        await client.LoseAsync();
        await Until(() => clock.Pending == 1);
        client.Connected = true;
        // the delay completes inside Advance; cancelling right after cannot undo it, so the loop runs the step after the delay
        clock.Advance(clock.NextDue!.Value - clock.GetUtcNow());
        await stop.CancelAsync();
        await kept.Loop.WaitAsync(TimeSpan.FromSeconds(60));

        Assert.That(client.Connects, Is.Zero, "a login on a connected client would replace its session");
        Assert.That(kept.Attempts, Is.Zero);
        Assert.That(subscribes, Is.Zero);
    }

    [Test]
    public async Task A_five_minute_outage_costs_a_bounded_number_of_warnings_and_one_recovery_line()
    {
        var clock = new TimerCountingClock(Start);
        var log = new ListLogger();
        var outage = TimeSpan.FromMinutes(5);
        var lostAt = clock.GetUtcNow();
        var client = new FakeClient
        {
            Connected = true,
            Outcome = n => clock.GetUtcNow() - lostAt >= outage ? Success()
                : n % 2 == 1 ? Refused() : throw new MqttCommunicationException("connection refused"),
        };
        var kept = new BrokerLink.KeptConnection(client, ClientOptions, (_, _) => Task.CompletedTask, "tsunagu-server", "broker.invalid:1883", clock, log);
        using var stop = new CancellationTokenSource();
        kept.Start(stop.Token);

        await client.LoseAsync();
        var attempts = 0;
        while (!client.Connected)
        {
            await AdvanceThroughBackoffAsync(clock, client, attempts++);
            await Until(() => client.Connected || clock.Pending == 1);
        }
        await Until(() => log.Lines.Any(l => l.Level == LogLevel.Information));

        var warnings = log.Lines.Where(l => l.Level == LogLevel.Warning).Select(l => l.Message).ToList();
        var summaries = warnings.Count(w => w.Contains("still unreachable", StringComparison.Ordinal));
        Assert.That(attempts, Is.GreaterThan(25), "the outage took many attempts");
        Assert.That(warnings[0], Does.Contain("lost the broker connection"));
        Assert.That(warnings[1], Does.Contain("login refused: ServerUnavailable"), "the first failure is told with its cause");
        // a summary needs 30 s since the last one (at most 9 before 300 s) and failures are at most 10 s apart (at least 7)
        Assert.That(summaries, Is.InRange(7, 9));
        Assert.That(warnings, Has.Count.EqualTo(2 + summaries), "the loss, the first failure and the summaries: nothing per attempt");
        var recovered = log.Lines.Where(l => l.Level == LogLevel.Information).Select(l => l.Message).ToList();
        Assert.That(recovered, Has.Count.EqualTo(1));
        Assert.That(recovered[0], Does.Contain($"after {attempts} attempt(s)"));
        Assert.That(kept.Attempts, Is.EqualTo(attempts));
        await stop.CancelAsync();
        await kept.Loop.WaitAsync(TimeSpan.FromSeconds(60));
    }

    [Test]
    public async Task Stopping_in_the_middle_of_a_backoff_ends_the_loop_without_a_fault_or_another_attempt()
    {
        var clock = new TimerCountingClock(Start);
        var client = new FakeClient { Connected = true, Outcome = _ => throw new MqttCommunicationException("connection refused") };
        var kept = new BrokerLink.KeptConnection(client, ClientOptions, (_, _) => Task.CompletedTask, "tsunagu-server", "broker.invalid:1883", clock, NullLogger.Instance);
        using var stop = new CancellationTokenSource();
        kept.Start(stop.Token);

        await client.LoseAsync();
        await AdvanceThroughBackoffAsync(clock, client, connectsBefore: 0);
        await Until(() => client.Connects == 1 && clock.Pending == 1);
        await stop.CancelAsync();
        await kept.Loop.WaitAsync(TimeSpan.FromSeconds(60));

        Assert.That(kept.Loop.IsCompletedSuccessfully, Is.True, "a stop is not a fault of the loop");
        Assert.That(clock.Pending, Is.Zero, "the backoff timer went with it");
        clock.Advance(TimeSpan.FromMinutes(10));
        await client.RaiseDisconnectedAsync();
        Assert.That(client.Connects, Is.EqualTo(1), "no attempt after the stop");
        Assert.That(kept.Attempts, Is.EqualTo(1));
    }

    // ---- a link that is not connected ----

    [TestCase("initial", "embedded", 8883, TestName = "Without_the_host_role_the_link_stays_down_and_every_push_is_reported_undelivered")]
    [TestCase("initial,host", "embedded", -1, TestName = "With_the_embedded_broker_off_the_link_stays_down_and_every_push_is_reported_undelivered")]
    [TestCase("initial", "mqtt://admin:secret@broker.invalid:1883", 8883, TestName = "A_Mosquitto_link_without_the_host_role_stays_down_and_every_push_is_reported_undelivered")]
    public async Task A_link_with_push_off_reports_every_push_undelivered_and_none_sent(string roles, string mqtt, int mqttPort)
    {
        var metrics = new ServerMetrics();
        var link = NewLink(new ServerOptions { Roles = roles, MqttPort = mqttPort }, MqttSettings.Parse(mqtt), metrics);

        await link.StartAsync(CancellationToken.None);
        Assert.That(link.BrokerUri, Is.Null, "units are told of no broker");
        Assert.That(link.Connected, Is.False);
        Assert.That(link.ReconnectAttempts, Is.Zero);

        const int pushes = 3;
        for (var i = 0; i < pushes; i++)
        {
            var push = new PushMessage(PushMessage.CheckNow, 1, $"nonce-{i}", Start, PushReasons.Operator);
            var refused = Assert.ThrowsAsync<PushException>(async () => await link.PublishAsync("02:00:00:00:00:01", push, CancellationToken.None));
            Assert.That(refused.Message, Does.Contain("push is disabled"));
        }
        var counted = await Export(metrics);
        Assert.That(counted, Does.Contain($"tsunagu_pushes_total{{result=\"undelivered\"}} {pushes}"), "each push that was not handed over is counted once");
        Assert.That(counted, Does.Contain("tsunagu_pushes_total{result=\"sent\"} 0"));
        await link.StopAsync(CancellationToken.None);
        await link.DisposeAsync();
    }

    [TestCase("mqtt://admin:secret@broker.invalid:1883")]
    [TestCase("embedded")]
    public async Task Account_management_and_the_password_sweep_do_nothing_before_the_link_is_up(string mqtt)
    {
        var link = NewLink(new ServerOptions { MqttPort = -1 }, MqttSettings.Parse(mqtt), new ServerMetrics());

        Assert.DoesNotThrowAsync(async () => await link.EnsureUnitAccountAsync("02:00:00:00:00:01", CancellationToken.None));
        Assert.DoesNotThrowAsync(async () => await link.SetUnitPasswordAsync("02:00:00:00:00:01", "pw", Start.AddHours(6), "key", CancellationToken.None));
        Assert.DoesNotThrowAsync(async () => await link.RevokeUnitAsync("02:00:00:00:00:01", CancellationToken.None));
        Assert.That(await link.ExpireUnitPasswordsOnceAsync(CancellationToken.None), Is.Zero);
        await link.DisposeAsync();
    }

    [Test]
    public async Task Disposing_twice_and_stopping_after_disposal_throw_nothing()
    {
        // registered under several service types, the link is disposed more than once, and the host may stop it after
        var link = NewLink(new ServerOptions { Roles = "initial" }, MqttSettings.Parse("embedded"), new ServerMetrics());
        await link.StartAsync(CancellationToken.None);

        Assert.DoesNotThrowAsync(async () => await link.DisposeAsync());
        Assert.DoesNotThrowAsync(async () => await link.DisposeAsync());
        Assert.DoesNotThrowAsync(async () => await link.StopAsync(CancellationToken.None));
    }

    // ---- acknowledgements, account descriptions, the sweep interval ----

    private const string NonceAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";

    [Test]
    public void Every_acknowledgement_a_unit_can_send_yields_its_nonce()
    {
        // 1 to 64 characters of the alphabet
        Gen.Select(Gen.Char[NonceAlphabet], Gen.String[NonceAlphabet], (first, rest) => (first + rest)[..Math.Min(64, rest.Length + 1)]).Sample(nonce =>
        {
            Assert.That(BrokerLink.ParseAck(JsonSerializer.Serialize(new PushAck(nonce), ProtocolJson.Default.PushAck)), Is.EqualTo(nonce));
            Assert.That(BrokerLink.ParseAck("{ \"ack\" : \"" + nonce + "\" }"), Is.EqualTo(nonce), "whitespace inside the object is JSON");
        });
    }

    [TestCase("")]
    [TestCase("online")]
    [TestCase("offline")]
    [TestCase(" {\"ack\":\"abc\"}")]
    [TestCase("{")]
    [TestCase("{\"ack\":\"abc\"")]
    [TestCase("{\"ack\":\"abc\"}trailing")]
    [TestCase("{\"ack\":\"\"}")]
    [TestCase("{\"ack\":null}")]
    [TestCase("{\"ack\":5}")]
    [TestCase("{\"ack\":[\"abc\"]}")]
    [TestCase("{\"nack\":\"abc\"}")]
    [TestCase("{\"ack\":\"a b\"}")]
    [TestCase("{\"ack\":\"a/b\"}")]
    [TestCase("{\"ack\":\"a+b\"}")]
    [TestCase("{\"ack\":\"caf\u00e9\"}")]
    [TestCase("{\"ack\":\"\\u0661\"}")]
    public void Anything_but_an_acknowledgement_of_a_valid_nonce_yields_null(string payload) => Assert.That(BrokerLink.ParseAck(payload), Is.Null);

    [Test]
    public void Acknowledgements_are_refused_beyond_64_characters_of_nonce_and_256_of_payload_and_nothing_makes_the_parser_throw()
    {
        Assert.That(BrokerLink.ParseAck("{\"ack\":\"" + new string('a', 64) + "\"}"), Is.EqualTo(new string('a', 64)));
        Assert.That(BrokerLink.ParseAck("{\"ack\":\"" + new string('a', 65) + "\"}"), Is.Null);
        var padded = "{\"ack\":\"abc\"" + new string(' ', 256 - 13) + "}";
        Assert.That(padded, Has.Length.EqualTo(256));
        Assert.That(BrokerLink.ParseAck(padded), Is.EqualTo("abc"));
        Assert.That(BrokerLink.ParseAck(padded.Insert(1, " ")), Is.Null, "257 characters");

        // arbitrary text, text that gets past the first character, and JSON with an arbitrary value: null or a valid nonce
        Gen.OneOf(Gen.String, Gen.String.Select(s => "{" + s), Gen.String.Select(s => "{\"ack\":" + s + "}"), Gen.String.Select(s => "{\"ack\":\"" + s + "\"}"))
            .Sample(payload =>
            {
                string? nonce = null;
                Assert.That(() => nonce = BrokerLink.ParseAck(payload), Throws.Nothing, payload);
                if (nonce is not null)
                {
                    Assert.That(nonce, Has.Length.InRange(1, 64).And.Match("^[A-Za-z0-9_-]+$"), payload);
                }
            });
    }

    [Test]
    public void An_account_description_reads_back_as_the_six_words_the_sweep_parses_with_its_expiry_and_key()
    {
        var key = Gen.Long.Select(k => BrokerKey.IdOf(BitConverter.GetBytes(k)));
        var offset = Gen.Int[-14 * 60, 14 * 60].Select(m => TimeSpan.FromMinutes(m));
        Gen.Select(Gen.Long[0, 4_102_444_800], offset, key).Sample((seconds, zone, keyId) =>
        {
            var expiresAt = DateTimeOffset.FromUnixTimeSeconds(seconds).ToOffset(zone);
            var description = BrokerLink.Description(expiresAt, keyId);
            var words = description.Split(' ');
            Assert.That(description, Does.StartWith("tsunagu: password expires "), "the prefix the sweep looks for");
            Assert.That(words, Has.Length.EqualTo(6));
            Assert.That(long.TryParse(words[3], NumberStyles.None, CultureInfo.InvariantCulture, out var read), Is.True, description);
            Assert.That(read, Is.EqualTo(seconds), "the expiry in Unix seconds, whatever the offset it was given in");
            Assert.That(words[5], Is.EqualTo(keyId));
        });
    }

    [TestCase(2, 1)]
    [TestCase(8, 1)]
    [TestCase(80, 10)]
    [TestCase(480, 60)]
    [TestCase(6 * 3600, 60)]
    [TestCase(30 * 86_400, 60)]
    public void The_password_sweep_runs_every_eighth_of_the_lifetime_between_one_second_and_a_minute(int lifetimeSeconds, int intervalSeconds)
    {
        var link = NewLink(new ServerOptions { BrokerPasswordLifetime = TimeSpan.FromSeconds(lifetimeSeconds) }, MqttSettings.Parse("embedded"), new ServerMetrics());
        Assert.That(link.PasswordSweepInterval, Is.EqualTo(TimeSpan.FromSeconds(intervalSeconds)));
    }

    [Test]
    public void For_every_allowed_lifetime_the_sweep_runs_at_least_twice_per_lifetime()
    {
        Gen.Int[2, 30 * 86_400].Sample(seconds =>
        {
            var lifetime = TimeSpan.FromSeconds(seconds);
            var interval = NewLink(new ServerOptions { BrokerPasswordLifetime = lifetime }, MqttSettings.Parse("embedded"), new ServerMetrics()).PasswordSweepInterval;
            Assert.That(interval, Is.InRange(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(60)));
            Assert.That(interval * 2, Is.LessThanOrEqualTo(lifetime), "an expired password outlives its lifetime by at most one interval");
        }, iter: 200);
    }

    // ---- helpers ----

    private BrokerLink NewLink(ServerOptions options, MqttSettings settings, ServerMetrics metrics)
    {
        var time = new FakeTimeProvider(Start);
        var store = new TsunaguStore(Database.Parse("tsunagu.db", _directory), time);
        var embedded = new EmbeddedBroker(options, settings, _brokerKey, store, time, NullLogger<EmbeddedBroker>.Instance);
        var lease = new ReplicaLease(store, options, time, NullLogger<ReplicaLease>.Instance);
        return new BrokerLink(options, settings, embedded, new UnitKey(new byte[32]), _brokerKey, store, time, metrics, lease, NullLogger<BrokerLink>.Instance);
    }

    private static async Task<string> Export(ServerMetrics metrics)
    {
        using var stream = new MemoryStream();
        await metrics.Registry.CollectAndExportAsTextAsync(stream);
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static MqttClientConnectResult Success() => new() { ResultCode = MqttClientConnectResultCode.Success };

    private static MqttClientConnectResult Refused() => new() { ResultCode = MqttClientConnectResultCode.ServerUnavailable };

    /// <summary>
    /// Waits until the loop, after <paramref name="connectsBefore"/> attempts, has armed its one backoff timer, raises
    /// <paramref name="extraWakeUps"/> more disconnect events (as MQTTnet may), then moves the clock to the timer's end.
    /// </summary>
    private static async Task<TimeSpan> AdvanceThroughBackoffAsync(TimerCountingClock clock, FakeClient client, int connectsBefore, int extraWakeUps = 0)
    {
        await Until(() => client.Connects == connectsBefore && clock.Pending == 1);
        for (var i = 0; i < extraWakeUps; i++) { await client.RaiseDisconnectedAsync(); }
        Assert.That(clock.Pending, Is.EqualTo(1), "one backoff at a time");
        var delay = clock.NextDue!.Value - clock.GetUtcNow();
        clock.Advance(delay);
        return delay;
    }

    private static async Task Until(Func<bool> condition)
    {
        for (var i = 0; i < 6000 && !condition(); i++) { await Task.Delay(10); }
        Assert.That(condition(), Is.True, "condition not reached in 60 s");
    }

    /// <summary>An MQTT client whose logins succeed or fail as told; like MQTTnet it raises "disconnected" for every failed login.</summary>
    private sealed class FakeClient : IMqttClient
    {
        private readonly Lock _gate = new();
        private volatile bool _connected;
        private int _connects, _inside, _most;

        /// <summary>The result of login number n (from 1), or an exception it throws.</summary>
        public required Func<int, MqttClientConnectResult> Outcome { get; init; }

        public bool Connected { get => _connected; set => _connected = value; }
        public int Connects => Volatile.Read(ref _connects);
        public int MostConnectsAtOnce { get { lock (_gate) { return _most; } } }
        public bool IsConnected => _connected;
        public MqttClientOptions Options => ClientOptions;

        public event Func<MqttClientDisconnectedEventArgs, Task>? DisconnectedAsync;
        public event Func<MqttApplicationMessageReceivedEventArgs, Task> ApplicationMessageReceivedAsync { add { } remove { } }
        public event Func<MqttClientConnectedEventArgs, Task> ConnectedAsync { add { } remove { } }
        public event Func<MqttClientConnectingEventArgs, Task> ConnectingAsync { add { } remove { } }
        public event Func<InspectMqttPacketEventArgs, Task> InspectPacketAsync { add { } remove { } }

        public async Task LoseAsync()
        {
            _connected = false;
            await RaiseDisconnectedAsync();
        }

        public Task RaiseDisconnectedAsync() =>
            DisconnectedAsync?.Invoke(new MqttClientDisconnectedEventArgs(false, new MqttClientConnectResult(), MqttClientDisconnectReason.UnspecifiedError, "",
                [], new MqttCommunicationException("lost"))) ?? Task.CompletedTask;

        public async Task<MqttClientConnectResult> ConnectAsync(MqttClientOptions options, CancellationToken cancellationToken = default)
        {
            lock (_gate) { _most = Math.Max(_most, ++_inside); }
            try
            {
                MqttClientConnectResult result;
                try
                {
                    result = Outcome(Interlocked.Increment(ref _connects));
                }
                catch
                {
                    await RaiseDisconnectedAsync();
                    throw;
                }
                if (result.ResultCode == MqttClientConnectResultCode.Success) { _connected = true; }
                else { await RaiseDisconnectedAsync(); }
                return result;
            }
            finally
            {
                lock (_gate) { _inside--; }
            }
        }

        public Task DisconnectAsync(MqttClientDisconnectOptions options, CancellationToken cancellationToken = default) => throw new NotSupportedException();
        public Task PingAsync(CancellationToken cancellationToken = default) => throw new NotSupportedException();
        public Task<MqttClientPublishResult> PublishAsync(MqttApplicationMessage applicationMessage, CancellationToken cancellationToken = default) => throw new NotSupportedException();
        public Task SendEnhancedAuthenticationExchangeDataAsync(MqttEnhancedAuthenticationExchangeData data, CancellationToken cancellationToken = default) => throw new NotSupportedException();
        public Task<MqttClientSubscribeResult> SubscribeAsync(MqttClientSubscribeOptions options, CancellationToken cancellationToken = default) => throw new NotSupportedException();
        public Task<MqttClientUnsubscribeResult> UnsubscribeAsync(MqttClientUnsubscribeOptions options, CancellationToken cancellationToken = default) => throw new NotSupportedException();
        public void Dispose() { }
    }

    /// <summary>A logger that keeps each line with its level.</summary>
    private sealed class ListLogger : ILogger
    {
        private readonly ConcurrentQueue<(LogLevel Level, string Message)> _lines = new();
        public IReadOnlyList<(LogLevel Level, string Message)> Lines => [.. _lines];
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            _lines.Enqueue((logLevel, formatter(state, exception)));
    }
}
