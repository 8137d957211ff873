using System.Collections.Concurrent;
using System.Globalization;
using System.Threading.RateLimiting;
using Tsunagu.Protocol;

namespace Tsunagu.Server.Security;

/// <summary>
/// Counts authentication attempts per key (a unit's MAC, a source address) in fixed clock-minute windows: in this
/// process, or, given <paramref name="shared"/> (PostgreSQL), in the database, so that the limit holds for the total
/// over every replica. Beyond the limit the caller is told when to come back.
/// </summary>
public sealed class AttemptCounter(int perMinute, TimeProvider time, Data.TsunaguStore? shared = null, string subjectPrefix = "mac:")
{
    private readonly ConcurrentDictionary<string, (long Window, int Count)> _counts = new();

    /// <summary>Null when the attempt may go ahead, else how long to wait.</summary>
    public async Task<TimeSpan?> TryAttemptAsync(string key, CancellationToken ct = default)
    {
        var now = time.GetUtcNow();
        var window = now.ToUnixTimeSeconds() / 60;
        if (shared is not null)
        {
            return await shared.Cluster.CountAttemptAsync(subjectPrefix + key, window, ct) <= perMinute ? null : TimeSpan.FromSeconds(60 - now.ToUnixTimeSeconds() % 60);
        }
        var entry = _counts.AddOrUpdate(key, _ => (window, 1), (_, e) => e.Window == window ? (window, e.Count + 1) : (window, 1));
        if (_counts.Count > 100_000)
        {
            foreach (var stale in _counts.Where(e => e.Value.Window < window).Select(e => e.Key).ToList()) { _counts.TryRemove(stale, out _); }
        }
        return entry.Count <= perMinute ? null : TimeSpan.FromSeconds(60 - now.ToUnixTimeSeconds() % 60);
    }
}

/// <summary>
/// Spreads the Retry-After of overload answers (503) so that rejected callers come back at about the rate the
/// server completes requests, instead of all at once: the k-th caller turned away while the server is saturated is
/// told to come back after about k / (requests completed per second). A constant hint sends every rejected unit
/// back in the same second, which re-forms the storm; a spread hint turns it into a queue outside the server.
/// </summary>
public sealed class RetryAfterSpreader(TimeProvider time)
{
    /// <summary>Shortest and longest hint (fleetsim units cap their backoff at 30 s).</summary>
    public static readonly TimeSpan Minimum = TimeSpan.FromSeconds(1);
    public static readonly TimeSpan Maximum = TimeSpan.FromSeconds(30);

    private readonly Lock _lock = new();
    private long _second;            // the current one-second bucket (unix seconds)
    private int _completedThisSecond;
    private double _rate;            // requests completed per second, smoothed over recent seconds
    private DateTimeOffset _nextSlot; // when the next rejected caller should come back

    /// <summary>Counts one request the server finished (any status but its own 503s).</summary>
    public void Completed()
    {
        lock (_lock)
        {
            Roll(time.GetUtcNow());
            _completedThisSecond++;
        }
    }

    /// <summary>The Retry-After for one more rejected caller.</summary>
    public TimeSpan Next()
    {
        lock (_lock)
        {
            var now = time.GetUtcNow();
            Roll(now);
            // before anything completed (just started, or everything stuck), assume a modest rate
            var rate = Math.Max(Math.Max(_rate, _completedThisSecond), 20);
            if (_nextSlot < now + Minimum) { _nextSlot = now + Minimum; }
            _nextSlot += TimeSpan.FromSeconds(1 / rate);
            if (_nextSlot > now + Maximum) { _nextSlot = now + Maximum; }
            return _nextSlot - now;
        }
    }

    private void Roll(DateTimeOffset now)
    {
        var second = now.ToUnixTimeSeconds();
        if (second == _second) { return; }
        // exponential smoothing over about three seconds; idle seconds count as zero
        var elapsed = second - _second;
        _rate = elapsed == 1 ? 0.7 * _rate + 0.3 * _completedThisSecond : elapsed < 10 ? 0.3 * _completedThisSecond * Math.Pow(0.7, elapsed - 1) : 0;
        _second = second;
        _completedThisSecond = 0;
    }
}

/// <summary>
/// One source address's unit authentication limit counted in the database (<see cref="AttemptCounter"/> with a store),
/// so that it holds for the total over every replica. Its state is all in the database: the limiter object may be
/// dropped and made again at any time. A database that cannot count is overload (503, spread Retry-After).
/// </summary>
public sealed class SharedWindowLimiter(AttemptCounter counter, string source, TimeProvider time) : RateLimiter
{
    private long _lastUsed = time.GetTimestamp();

    public override TimeSpan? IdleDuration => time.GetElapsedTime(Interlocked.Read(ref _lastUsed));

    public override RateLimiterStatistics? GetStatistics() => null;

    /// <summary>
    /// Counting needs the database: the synchronous attempt only grants zero permits and otherwise answers "wait", so the
    /// rate limiting middleware asks <see cref="AcquireAsyncCore"/>, which counts without blocking a thread.
    /// </summary>
    protected override RateLimitLease AttemptAcquireCore(int permitCount)
    {
        Interlocked.Exchange(ref _lastUsed, time.GetTimestamp());
        return permitCount == 0 ? Lease.Granted : Lease.CountFirst;
    }

    protected override async ValueTask<RateLimitLease> AcquireAsyncCore(int permitCount, CancellationToken cancellationToken)
    {
        Interlocked.Exchange(ref _lastUsed, time.GetTimestamp());
        if (permitCount == 0) { return Lease.Granted; }
        try
        {
            return await counter.TryAttemptAsync(source, cancellationToken) is { } wait ? new Lease(false, wait) : Lease.Granted;
        }
        catch (Exception e) when (BusyDatabase.IsBusy(e) || e is System.Data.Common.DbException or TimeoutException)
        {
            return Lease.Overloaded;
        }
    }

    private sealed class Lease(bool acquired, TimeSpan? retryAfter) : RateLimitLease
    {
        public static readonly Lease Granted = new(true, null);
        public static readonly Lease Overloaded = new(false, null);

        /// <summary>Not granted without counting: the caller is to wait for <see cref="AcquireAsyncCore"/>.</summary>
        public static readonly Lease CountFirst = new(false, null);

        public override bool IsAcquired => acquired;

        public override IEnumerable<string> MetadataNames => retryAfter is null ? [] : [MetadataName.RetryAfter.Name];

        public override bool TryGetMetadata(string metadataName, out object? metadata)
        {
            metadata = retryAfter is { } after && metadataName == MetadataName.RetryAfter.Name ? after : null;
            return metadata is not null;
        }
    }
}

/// <summary>
/// The server-wide concurrency limit, with a bound on how long a request may wait in its queue: a request still
/// queued after <c>maxWait</c> is turned away (503 + Retry-After) instead of being served after its caller has given
/// up. A queue bounded only by places lets waits grow past the units' request timeout when the server slows down
/// (a busy disk, a storm), and the server then spends its capacity on answers nobody reads.
/// </summary>
public sealed class BoundedWaitLimiter(ConcurrencyLimiter inner, TimeSpan maxWait, TimeProvider time) : PartitionedRateLimiter<HttpContext>
{
    public override RateLimiterStatistics? GetStatistics(HttpContext resource) => inner.GetStatistics();

    protected override RateLimitLease AttemptAcquireCore(HttpContext resource, int permitCount) => inner.AttemptAcquire(permitCount);

    protected override async ValueTask<RateLimitLease> AcquireAsyncCore(HttpContext resource, int permitCount, CancellationToken cancellationToken)
    {
        var now = inner.AttemptAcquire(permitCount);
        if (now.IsAcquired)
        {
            return now;
        }
        now.Dispose();
        using var timeout = new CancellationTokenSource(maxWait, time);
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        try
        {
            return await inner.AcquireAsync(permitCount, wait.Token);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            return WaitedTooLong.Instance;
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) { inner.Dispose(); }
        base.Dispose(disposing);
    }

    protected override ValueTask DisposeAsyncCore() => inner.DisposeAsync();

    /// <summary>A refused lease without Retry-After metadata: answered as overload (503, spread Retry-After).</summary>
    private sealed class WaitedTooLong : RateLimitLease
    {
        public static readonly WaitedTooLong Instance = new();

        public override bool IsAcquired => false;

        public override IEnumerable<string> MetadataNames => [];

        public override bool TryGetMetadata(string metadataName, out object? metadata)
        {
            metadata = null;
            return false;
        }
    }
}

/// <summary>
/// Overload and abuse protection: authentication endpoints are limited per source address (token bucket) and
/// per MAC (<see cref="AttemptCounter"/>); every request goes through a concurrency limit with a bounded queue.
/// Rejections are answered 429 (rate) or 503 (overload) with Retry-After: at once, or after at most the queue's wait
/// bound, never by letting the caller's request time out.
/// </summary>
public static class Throttling
{
    public const string UnitAuthPolicy = "unit-auth";

    /// <summary>The per-source attempt counter in the database (PostgreSQL), shared by the replicas.</summary>
    public const string SourceAttempts = "source-attempts";

    public static IServiceCollection AddTsunaguThrottling(this IServiceCollection services, ServerOptions options, Data.DatabaseKind database, TimeProvider time)
    {
        services.AddSingleton<RetryAfterSpreader>();
        services.AddRateLimiter(limiter =>
        {
            limiter.GlobalLimiter = new BoundedWaitLimiter(new ConcurrencyLimiter(new ConcurrencyLimiterOptions
            {
                PermitLimit = options.ConcurrencyFor(database),
                QueueLimit = options.RequestQueueLimit,
                QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
            }), TimeSpan.FromSeconds(options.RequestQueueTimeoutSeconds), time);
            limiter.AddPolicy(UnitAuthPolicy, http => database == Data.DatabaseKind.Postgres
                ? RateLimitPartition.Get(http.Connection.RemoteIpAddress?.ToString() ?? "unknown",
                    source => new SharedWindowLimiter(http.RequestServices.GetRequiredKeyedService<AttemptCounter>(SourceAttempts), source, time))
                : RateLimitPartition.GetTokenBucketLimiter(
                http.Connection.RemoteIpAddress?.ToString() ?? "unknown",
                _ => new TokenBucketRateLimiterOptions
                {
                    TokenLimit = options.AuthAttemptsPerSourcePerMinute,
                    TokensPerPeriod = options.AuthAttemptsPerSourcePerMinute,
                    ReplenishmentPeriod = TimeSpan.FromMinutes(1),
                    QueueLimit = 0,
                    AutoReplenishment = true,
                }));
            limiter.OnRejected = (context, ct) =>
            {
                var http = context.HttpContext;
                // a rate limit (token bucket) says when tokens return; the concurrency limit means overload
                var overload = !context.Lease.TryGetMetadata(MetadataName.RetryAfter, out var after);
                var retryAfter = overload ? http.RequestServices.GetRequiredService<RetryAfterSpreader>().Next() : after;
                http.Response.StatusCode = overload ? StatusCodes.Status503ServiceUnavailable : StatusCodes.Status429TooManyRequests;
                http.Response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(retryAfter.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
                return new ValueTask(http.Response.WriteAsJsonAsync(new ProblemBody(
                    overload ? ProblemTypes.Overloaded : ProblemTypes.RateLimited,
                    overload ? "Server busy" : "Too many attempts", http.Response.StatusCode,
                    overload ? "the server is at capacity; retry after the time in Retry-After"
                             : "too many authentication attempts from this address; retry after the time in Retry-After"),
                    ProtocolJson.Default.ProblemBody, cancellationToken: ct));
            };
        });
        return services;
    }
}

/// <summary>
/// A database that stays busy past its wait (SQLite's single writer under a burst) is overload too: the caller
/// gets 503 with Retry-After at once instead of a 500, and retries like any other overload answer.
/// </summary>
public static class BusyDatabase
{
    public static bool IsBusy(Exception? e) => e switch
    {
        Microsoft.Data.Sqlite.SqliteException s => s.SqliteErrorCode is 5 or 6, // SQLITE_BUSY, SQLITE_LOCKED
        Npgsql.NpgsqlException n => n.IsTransient,
        null => false,
        _ => IsBusy(e.InnerException),
    };

    public static IApplicationBuilder UseBusyDatabaseAnswers(this IApplicationBuilder app) => app.Use(async (http, next) =>
    {
        var spreader = http.RequestServices.GetRequiredService<RetryAfterSpreader>();
        try
        {
            await next(http);
            spreader.Completed();
        }
        catch (Exception e) when (IsBusy(e) && !http.Response.HasStarted)
        {
            http.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("Tsunagu.Server.BusyDatabase")
                .LogWarning("{Method} {Path}: database busy ({Error}); answered 503", http.Request.Method, http.Request.Path, e.Message);
            http.Response.Clear();
            http.Response.StatusCode = StatusCodes.Status503ServiceUnavailable;
            http.Response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(spreader.Next().TotalSeconds)).ToString(CultureInfo.InvariantCulture);
            await http.Response.WriteAsJsonAsync(new ProblemBody(ProblemTypes.Overloaded, "Server busy", 503,
                "the database is busy; retry after the time in Retry-After"), ProtocolJson.Default.ProblemBody);
        }
    });
}
