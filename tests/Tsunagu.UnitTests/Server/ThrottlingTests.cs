using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Http;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Time.Testing;
using Tsunagu.Server.Security;

namespace Tsunagu.UnitTests.Server;

/// <summary>
/// The server's overload and abuse protection below the middleware (Security/Throttling.cs): the per-key attempt count in
/// clock minutes, the spread Retry-After of overload answers, the queue's bound on waiting, the shared per-source limiter's
/// leases, and which database errors are overload. Time is a <see cref="FakeTimeProvider"/>: every wait is made, not hoped for.
/// </summary>
public class ThrottlingTests
{
    /// <summary>A clock at 10:00:20 UTC: 40 s of the minute left.</summary>
    private static FakeTimeProvider Clock() => new(new DateTimeOffset(2026, 12, 6, 10, 0, 20, TimeSpan.Zero));

    [Test]
    public async Task Attempts_beyond_the_limit_in_a_clock_minute_are_told_to_wait_for_the_next_minute_and_each_key_counts_alone()
    {
        var time = Clock();
        var counter = new AttemptCounter(3, time);
        for (var i = 0; i < 3; i++) { Assert.That(await counter.TryAttemptAsync("a"), Is.Null, $"attempt {i + 1}"); }
        Assert.That(await counter.TryAttemptAsync("a"), Is.EqualTo(TimeSpan.FromSeconds(40)), "the fourth: the rest of the minute");
        Assert.That(await counter.TryAttemptAsync("b"), Is.Null, "another key has its own count");
        time.Advance(TimeSpan.FromSeconds(30));
        Assert.That(await counter.TryAttemptAsync("a"), Is.EqualTo(TimeSpan.FromSeconds(10)), "refused attempts count too; the wait shrinks with the minute");
        time.Advance(TimeSpan.FromSeconds(10)); // 10:01:00, a new window
        for (var i = 0; i < 3; i++) { Assert.That(await counter.TryAttemptAsync("a"), Is.Null, $"new minute, attempt {i + 1}"); }
        Assert.That(await counter.TryAttemptAsync("a"), Is.EqualTo(TimeSpan.FromSeconds(60)));
    }

    [Test]
    public async Task Pruning_a_full_table_forgets_only_past_minutes_never_an_attempt_of_this_one()
    {
        var time = Clock();
        var counter = new AttemptCounter(1, time);
        for (var i = 0; i < 50_000; i++) { await counter.TryAttemptAsync($"old-{i}"); }
        time.Advance(TimeSpan.FromMinutes(1));
        Assert.That(await counter.TryAttemptAsync("hot"), Is.Null);
        // past 100,000 keys the table is pruned on every attempt: the current minute's counts must survive it
        for (var i = 0; i < 50_001; i++) { await counter.TryAttemptAsync($"new-{i}"); }
        Assert.That(await counter.TryAttemptAsync("hot"), Is.Not.Null, "hot's attempt of this minute is still counted");
        Assert.That(await counter.TryAttemptAsync("new-7"), Is.Not.Null);
        Assert.That(await counter.TryAttemptAsync("old-7"), Is.Null, "a key of a past minute starts again");
    }

    [Test]
    public void Overload_hints_start_at_the_minimum_grow_by_one_completion_time_each_and_stop_at_the_maximum()
    {
        var time = Clock();
        var spreader = new RetryAfterSpreader(time);
        // nothing completed yet: the assumed rate is 20 a second, so each further caller comes back 50 ms later
        var hints = Enumerable.Range(0, 5).Select(_ => spreader.Next()).ToList();
        Assert.That(hints[0], Is.GreaterThanOrEqualTo(RetryAfterSpreader.Minimum));
        Assert.That(hints.Zip(hints.Skip(1), (a, b) => b - a), Is.All.EqualTo(TimeSpan.FromMilliseconds(50)));
        var many = Enumerable.Range(0, 2_000).Select(_ => spreader.Next()).ToList();
        Assert.That(many, Is.All.LessThanOrEqualTo(RetryAfterSpreader.Maximum));
        Assert.That(many[^1], Is.EqualTo(RetryAfterSpreader.Maximum), "a storm is spread over at most the maximum");
        // once the slots handed out are past, a new rejection starts again at the minimum
        time.Advance(TimeSpan.FromMinutes(1));
        Assert.That(spreader.Next(), Is.EqualTo(RetryAfterSpreader.Minimum + TimeSpan.FromMilliseconds(50)));
    }

    [Test]
    public void A_server_completing_more_requests_spreads_rejected_callers_more_tightly()
    {
        var time = Clock();
        var spreader = new RetryAfterSpreader(time);
        for (var s = 0; s < 5; s++)
        {
            for (var i = 0; i < 1_000; i++) { spreader.Completed(); }
            time.Advance(TimeSpan.FromSeconds(1));
        }
        var first = spreader.Next();
        var step = spreader.Next() - first;
        Assert.That(step, Is.LessThan(TimeSpan.FromMilliseconds(2)), "about 1,000 completions a second: about 1 ms apart");
        Assert.That(step, Is.GreaterThan(TimeSpan.Zero));
    }

    /// <summary>One permit, <paramref name="queue"/> places in the queue, a wait bound of 5 s.</summary>
    private static BoundedWaitLimiter OnePermit(int queue, TimeProvider time) => new(new ConcurrencyLimiter(new ConcurrencyLimiterOptions
    {
        PermitLimit = 1, QueueLimit = queue, QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
    }), TimeSpan.FromSeconds(5), time);

    [Test]
    public async Task A_request_queued_past_the_wait_bound_is_refused_without_a_retry_after_and_one_queued_less_long_is_served()
    {
        var time = Clock();
        using var limiter = OnePermit(queue: 2, time);
        var http = new DefaultHttpContext();
        using var held = await limiter.AcquireAsync(http);
        Assert.That(held.IsAcquired, Is.True);

        var late = limiter.AcquireAsync(http).AsTask();
        time.Advance(TimeSpan.FromSeconds(4));
        Assert.That(late.IsCompleted, Is.False, "still within its bound");
        time.Advance(TimeSpan.FromSeconds(1));
        using var refused = await late.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.That(refused.IsAcquired, Is.False);
        Assert.That(refused.TryGetMetadata(MetadataName.RetryAfter, out _), Is.False, "answered as overload (a spread hint), not as a rate limit");

        var served = limiter.AcquireAsync(http).AsTask();
        time.Advance(TimeSpan.FromSeconds(2));
        held.Dispose();
        using var lease = await served.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.That(lease.IsAcquired, Is.True, "the permit freed within the bound goes to the queued request");
    }

    [Test]
    public async Task A_caller_that_gives_up_while_queued_is_cancelled_not_answered_as_overload()
    {
        var time = Clock();
        using var limiter = OnePermit(queue: 1, time);
        var http = new DefaultHttpContext();
        using var held = await limiter.AcquireAsync(http);
        using var gone = new CancellationTokenSource();
        var waiting = limiter.AcquireAsync(http, 1, gone.Token).AsTask();
        await gone.CancelAsync();
        Assert.That(async () => await waiting.WaitAsync(TimeSpan.FromSeconds(30)), Throws.InstanceOf<OperationCanceledException>());
    }

    [Test]
    public async Task The_shared_limiter_grants_nothing_without_counting_and_beyond_the_count_says_when_to_come_back()
    {
        var time = Clock();
        using var limiter = new SharedWindowLimiter(new AttemptCounter(2, time, subjectPrefix: "source:"), "192.0.2.1", time);
        using (var none = limiter.AttemptAcquire(0)) { Assert.That(none.IsAcquired, Is.True, "zero permits need no count"); }
        using (var sync = limiter.AttemptAcquire(1))
        {
            Assert.That(sync.IsAcquired, Is.False, "the synchronous path cannot count: the middleware then asks the asynchronous one");
            Assert.That(sync.TryGetMetadata(MetadataName.RetryAfter, out _), Is.False);
        }
        time.Advance(TimeSpan.FromSeconds(10));
        Assert.That(limiter.IdleDuration, Is.EqualTo(TimeSpan.FromSeconds(10)));
        for (var i = 0; i < 2; i++)
        {
            using var granted = await limiter.AcquireAsync(1);
            Assert.That(granted.IsAcquired, Is.True, $"attempt {i + 1}");
        }
        Assert.That(limiter.IdleDuration, Is.EqualTo(TimeSpan.Zero), "every use resets the idle time");
        using var third = await limiter.AcquireAsync(1);
        Assert.That(third.IsAcquired, Is.False);
        Assert.That(third.TryGetMetadata(MetadataName.RetryAfter, out var after), Is.True);
        Assert.That(after, Is.EqualTo(TimeSpan.FromSeconds(30)), "10:00:30: the rest of the minute");
    }

    [Test]
    public void Busy_and_locked_SQLite_errors_are_overload_wherever_they_are_wrapped_and_nothing_else_is()
    {
        Assert.That(BusyDatabase.IsBusy(new SqliteException("busy", 5)), Is.True);
        Assert.That(BusyDatabase.IsBusy(new SqliteException("locked", 6)), Is.True);
        Assert.That(BusyDatabase.IsBusy(new InvalidOperationException("outer", new AggregateException(new SqliteException("busy", 5)))), Is.True);
        Assert.That(BusyDatabase.IsBusy(new SqliteException("constraint", 19)), Is.False);
        Assert.That(BusyDatabase.IsBusy(new SqliteException("corrupt", 11)), Is.False);
        Assert.That(BusyDatabase.IsBusy(new InvalidOperationException("no database in it")), Is.False);
        Assert.That(BusyDatabase.IsBusy(null), Is.False);
        Assert.That(BusyDatabase.IsBusy(new Npgsql.NpgsqlException("connection lost", new TimeoutException())), Is.True, "a transient PostgreSQL failure");
        Assert.That(BusyDatabase.IsBusy(new Npgsql.NpgsqlException("bad statement")), Is.False);
    }
}
