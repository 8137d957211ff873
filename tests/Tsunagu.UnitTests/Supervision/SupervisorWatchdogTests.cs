using Microsoft.Extensions.Time.Testing;
using Tsunagu.Firmware.Supervision;
using Tsunagu.Hal;
using Tsunagu.Hal.Simulated;
using Tsunagu.UnitTests.Hal;
using S = Tsunagu.Firmware.Supervision.StateId;

namespace Tsunagu.UnitTests.Supervision;

/// <summary>
/// The supervisor feeds the board's watchdog from its loop while healthy: through a long legitimate wait, never after
/// its loop ends, and not once its states keep failing with unexpected errors.
/// </summary>
public class SupervisorWatchdogTests
{
    private sealed class ActingState(S id, Func<CancellationToken, Task<Outcome>> enter) : IState
    {
        public S Id => id;
        public Task<Outcome> EnterAsync(SupervisorContext context, CancellationToken cancellationToken) => enter(cancellationToken);
    }

    private static (Supervisor Supervisor, SimulatedWatchdog Watchdog, FakeTimeProvider Time, System.Collections.Concurrent.ConcurrentQueue<string> Log) Create(
        Func<CancellationToken, Task<Outcome>> boot, SupervisorOptions? options = null)
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero));
        var watchdog = new SimulatedWatchdog(time, TimeSpan.FromSeconds(60), TimeSpan.FromSeconds(10));
        var prom = Path.Combine(Path.GetTempPath(), "tsunagu-prom-empty");
        DirectoryPromPartition.Build(prom, "test-os", new Dictionary<string, string>());
        var unit = new SimulatedUnit(Path.GetTempPath(), prom);
        var states = Enum.GetValues<S>().ToDictionary(s => s, s => (IState)new ActingState(s, ct => Task.Delay(Timeout.Infinite, ct).ContinueWith(_ => Outcome.Success, TaskScheduler.Default)));
        states[S.Boot] = new ActingState(S.Boot, boot);
        var log = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var supervisor = new Supervisor(unit.Hardware with { Watchdog = watchdog }, options ?? new SupervisorOptions(), time, new Random(3), log.Enqueue, states);
        return (supervisor, watchdog, time, log);
    }

    [Test]
    public async Task A_long_wait_in_a_state_is_healthy_the_watchdog_is_fed_throughout_and_not_after_the_loop_ends()
    {
        var (supervisor, watchdog, time, _) = Create(async ct => { await Task.Delay(Timeout.Infinite, ct); return Outcome.Success; });
        await using var _ = supervisor;
        Assert.That(supervisor.Health(), Is.Not.Null, "not running yet");
        using var stop = new CancellationTokenSource();
        var run = supervisor.RunAsync(stop.Token);
        await WatchdogTests.AdvanceUntilAsync(time, () => watchdog.Feeds >= 60, TimeSpan.FromSeconds(1), 3600, "60 feeds (10 minutes) in one state");
        Assert.That(watchdog.Expired, Is.False);
        Assert.That(supervisor.Health(), Is.Null);

        await stop.CancelAsync();
        await run.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.That(supervisor.Health(), Does.Contain("not running"));
        var fed = watchdog.Feeds;
        time.Advance(TimeSpan.FromMinutes(2));
        await Task.Delay(20);
        Assert.That(watchdog.Feeds, Is.EqualTo(fed), "the loop ended: no feed, so the watchdog restarts the unit");
        Assert.That(watchdog.Expired, Is.True);
    }

    [Test]
    public async Task States_failing_with_unexpected_errors_the_limit_in_a_row_stop_the_feeds()
    {
        var faults = 0;
        var (supervisor, watchdog, time, log) = Create(_ =>
        {
            Interlocked.Increment(ref faults);
            throw new InvalidOperationException("wedged");
        }, new SupervisorOptions { WatchdogFaultLimit = 3, BackoffBase = TimeSpan.FromSeconds(1), BackoffCap = TimeSpan.FromSeconds(2) });
        await using var _ = supervisor;
        using var stop = new CancellationTokenSource();
        var run = supervisor.RunAsync(stop.Token);
        await WatchdogTests.AdvanceUntilAsync(time, () => supervisor.Health() is not null, TimeSpan.FromMilliseconds(500), 200, "unhealthy after 3 faults");
        Assert.That(Volatile.Read(ref faults), Is.GreaterThanOrEqualTo(3));
        Assert.That(supervisor.Health(), Does.Contain("unexpected errors in a row").And.Contain("wedged"));
        var fed = watchdog.Feeds;
        await WatchdogTests.AdvanceUntilAsync(time, () => watchdog.Expired, TimeSpan.FromSeconds(1), 600, "expiry while faulting");
        Assert.That(watchdog.Feeds, Is.LessThanOrEqualTo(fed + 1), "no feeds while unhealthy (at most the one under way)");
        Assert.That(log, Has.Some.Contains("watchdog not fed"));
        await stop.CancelAsync();
        await run.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Test]
    public void The_fault_limit_must_be_positive()
    {
        Assert.That(() => new SupervisorOptions { WatchdogFaultLimit = 0 }.Validate(), Throws.ArgumentException.With.Message.Contains("WatchdogFaultLimit"));
    }

    private sealed class BrokenWatchdog(IWatchdog inner) : IWatchdog
    {
        public TimeSpan Timeout => inner.Timeout;
        public TimeSpan FeedInterval => inner.FeedInterval;
        public void Arm() => inner.Arm();
        public void Feed() => throw new ObjectDisposedException("/dev/watchdog");
        public void Dispose() => inner.Dispose();
    }

    [Test]
    public async Task A_feed_that_fails_with_an_unexpected_error_is_logged_when_it_happens_not_when_the_loop_ends()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero));
        var watchdog = new BrokenWatchdog(new SimulatedWatchdog(time, TimeSpan.FromSeconds(60), TimeSpan.FromSeconds(10)));
        var prom = Path.Combine(Path.GetTempPath(), "tsunagu-prom-empty");
        DirectoryPromPartition.Build(prom, "test-os", new Dictionary<string, string>());
        var unit = new SimulatedUnit(Path.GetTempPath(), prom);
        var states = Enum.GetValues<S>().ToDictionary(s => s, s => (IState)new ActingState(s, ct => Task.Delay(Timeout.Infinite, ct).ContinueWith(_ => Outcome.Success, TaskScheduler.Default)));
        var log = new System.Collections.Concurrent.ConcurrentQueue<string>();
        await using var supervisor = new Supervisor(unit.Hardware with { Watchdog = watchdog }, new SupervisorOptions(), time, new Random(3), log.Enqueue, states);
        using var stop = new CancellationTokenSource();
        var run = supervisor.RunAsync(stop.Token);

        await WatchdogTests.AdvanceUntilAsync(time, () => log.Any(l => l.Contains("watchdog feeding stopped")), TimeSpan.FromSeconds(1), 120,
            "log line for the failed feed while the loop still runs");
        Assert.That(log.Single(l => l.Contains("watchdog feeding stopped")), Does.Contain("ObjectDisposedException").And.Contain("within 60 s"));
        Assert.That(run.IsCompleted, Is.False, "the loop still runs: the line came when the feeds stopped");

        await stop.CancelAsync();
        Assert.That(async () => await run.WaitAsync(TimeSpan.FromSeconds(10)), Throws.InstanceOf<ObjectDisposedException>(),
            "the error still ends the run when the loop stops, as before");
    }
}
