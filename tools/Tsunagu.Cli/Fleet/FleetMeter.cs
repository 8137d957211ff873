using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Security;
using Tsunagu.Hal;
using Tsunagu.Protocol;

namespace Tsunagu.Cli.Fleet;

/// <summary>What one unit sent and got back, counted as it happens (all fields updated with Interlocked).</summary>
public sealed class UnitMeter
{
    internal long _requests;
    internal long _failures;
    internal long _readyAcks;
    internal long _retries;

    public long Requests => Interlocked.Read(ref _requests);

    /// <summary>Requests that got no 2xx answer (an error status or no answer at all).</summary>
    public long Failures => Interlocked.Read(ref _failures);

    /// <summary>Ready reports the host acknowledged, and steady checks it answered "nothing to do" (it recorded the unit Ready): the unit is Ready and the host knows it.</summary>
    public long ReadyAcks => Interlocked.Read(ref _readyAcks);

    internal long _reauthentications;

    /// <summary>
    /// Supervisor transitions that try again after a backoff (the row's <see cref="Tsunagu.Firmware.Supervision.Transition.Wait"/>:
    /// a retry, a fault, a refused token, a lost link, lost data); each is one backoff and one more attempt.
    /// </summary>
    public long Retries => Interlocked.Read(ref _retries);

    /// <summary>Tokens the server refused (401 invalid-token): each is one more authentication. Also counted in <see cref="Retries"/>.</summary>
    public long Reauthentications => Interlocked.Read(ref _reauthentications);

    /// <summary>Counts one transition of this unit's supervisor: a retry when it waits a backoff, a re-authentication when a token was refused.</summary>
    public void Count(Tsunagu.Firmware.Supervision.StateChange change)
    {
        if (Tsunagu.Firmware.Supervision.Transitions.Find(change.From, change.Outcome).Wait != Tsunagu.Firmware.Supervision.Wait.None)
        {
            Interlocked.Increment(ref _retries);
        }
        if (change.Outcome == Tsunagu.Firmware.Supervision.Outcome.SessionExpired)
        {
            Interlocked.Increment(ref _reauthentications);
        }
    }
}

/// <summary>
/// Measures every request of every simulated unit: latency to the response headers, status, per-unit counts.
/// Latencies are kept (one long per request) until <see cref="Reset"/>; a scenario of 20,000 units sends about
/// 150,000 requests, 1.2 MB.
/// </summary>
public sealed class FleetMeter
{
    private ConcurrentBag<long> _latencyTicks = [];
    private readonly ConcurrentDictionary<string, long> _errors = new();
    private readonly ConcurrentDictionary<string, long> _routes = new();

    /// <summary>Errors by kind since the last reset: "503", "429", "500", or "transport: HttpRequestException".</summary>
    public IReadOnlyDictionary<string, long> Errors => _errors;

    /// <summary>Requests by route since the last reset (an artifact's digest left out: <c>/api/v1/host/artifacts/*</c>), answered or not.</summary>
    public IReadOnlyDictionary<string, long> ByRoute => _routes;

    /// <summary>The route a request is counted under: its path, an artifact's digest replaced by <c>*</c>.</summary>
    public static string RouteOf(string path) =>
        path.StartsWith(Routes.Artifacts + "/", StringComparison.Ordinal) ? Routes.Artifacts + "/*" : path;

    public IReadOnlyCollection<long> LatencyTicks => _latencyTicks;

    public void Reset()
    {
        _latencyTicks = [];
        _errors.Clear();
        _routes.Clear();
    }

    internal void Record(UnitMeter unit, string path, int? status, string? transportError, long elapsedTicks, bool steady = false)
    {
        Interlocked.Increment(ref unit._requests);
        _latencyTicks.Add(elapsedTicks);
        _routes.AddOrUpdate(RouteOf(path), 1, (_, n) => n + 1);
        var ok = status is >= 200 and < 300;
        if (!ok)
        {
            Interlocked.Increment(ref unit._failures);
            _errors.AddOrUpdate(status?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "transport: " + transportError, 1, (_, n) => n + 1);
        }
        else if (path == Routes.Ready || steady)
        {
            Interlocked.Increment(ref unit._readyAcks);
        }
    }

    /// <summary>The p-th percentile (0..100) of the latencies recorded since the last reset, nearest rank.</summary>
    public static TimeSpan Percentile(long[] sortedTicks, double p)
    {
        if (sortedTicks.Length == 0) { return TimeSpan.Zero; }
        var rank = (int)Math.Ceiling(p / 100 * sortedTicks.Length) - 1;
        return TimeSpan.FromTicks(sortedTicks[Math.Clamp(rank, 0, sortedTicks.Length - 1)] * TimeSpan.TicksPerSecond / Stopwatch.Frequency);
    }
}

/// <summary>
/// The simulator's network for one unit: the unit's own simulated WAN link (route gate) in front of a metering
/// handler. With a <see cref="SharedConnections"/> pool, every unit's requests go over the pool's connections
/// instead of each unit opening its own (simulator only: 20,000 units with a socket each exhaust the file
/// descriptors of one process).
/// </summary>
public sealed class MeteredNetwork(INetworkAccess link, FleetMeter meter, UnitMeter unit, SharedConnections? shared) : INetworkAccess
{
    private volatile bool _failsHealth;

    /// <summary>While set, the unit's health probe (GET /healthz) is answered 403: its new software looks faulty, so an update it installs rolls back.</summary>
    public bool FailsHealth
    {
        get => _failsHealth;
        set => _failsHealth = value;
    }

    public HttpMessageHandler WrapHandler(HttpMessageHandler inner)
    {
        var transport = inner;
        if (shared is not null)
        {
            inner.Dispose(); // never used: it has opened no connection yet
            transport = shared.Borrow();
        }
        return link.WrapHandler(new MeteringHandler(this, meter, unit) { InnerHandler = transport });
    }

    public void EnsureRoute() => link.EnsureRoute();

    private sealed class MeteringHandler(MeteredNetwork owner, FleetMeter meter, UnitMeter unit) : DelegatingHandler
    {
        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var path = request.RequestUri?.AbsolutePath ?? "";
            if (owner.FailsHealth && request.Method == HttpMethod.Get && path == Routes.Health)
            {
                return new HttpResponseMessage(System.Net.HttpStatusCode.Forbidden) { RequestMessage = request }; // not sent: not counted
            }
            var started = Stopwatch.GetTimestamp();
            HttpResponseMessage response;
            try
            {
                response = await base.SendAsync(request, cancellationToken);
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
            {
                if (!cancellationToken.IsCancellationRequested)
                {
                    meter.Record(unit, path, null, e.GetType().Name, Stopwatch.GetTimestamp() - started);
                }
                throw;
            }
            var steady = false;
            if (path == Routes.SteadyCheck && response.IsSuccessStatusCode)
            {
                // a steady check's "nothing to do" stands for the ready report: read from the buffered answer, which the unit then reads as sent
                await response.Content.LoadIntoBufferAsync(cancellationToken);
                steady = System.Text.Json.JsonSerializer.Deserialize(await response.Content.ReadAsStringAsync(cancellationToken),
                    ProtocolJson.Default.SteadyCheckResponse)?.Steady == true;
            }
            meter.Record(unit, path, (int)response.StatusCode, null, Stopwatch.GetTimestamp() - started, steady);
            return response;
        }
    }
}

/// <summary>
/// One connection pool shared by all simulated units (pinned to the server's certificate like each unit's own).
/// Units borrow a non-owning view: disposing a unit's client leaves the pool open.
/// </summary>
public sealed class SharedConnections : IDisposable
{
    private readonly SocketsHttpHandler _handler;

    public SharedConnections(IReadOnlyList<string> serverPins, int maxConnections)
    {
        var pins = serverPins.ToArray();
        _handler = new SocketsHttpHandler
        {
            MaxConnectionsPerServer = maxConnections,
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
            SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = TrustAnchor.Validator(pins),
            },
        };
    }

    public HttpMessageHandler Borrow() => new Borrowed(_handler);

    public void Dispose() => _handler.Dispose();

    private sealed class Borrowed(SocketsHttpHandler pool) : HttpMessageHandler
    {
        private readonly HttpMessageInvoker _invoker = new(pool, disposeHandler: false);

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
            _invoker.SendAsync(request, cancellationToken);
    }
}
