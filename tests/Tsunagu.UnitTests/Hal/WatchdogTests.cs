using Microsoft.Extensions.Time.Testing;
using Tsunagu.Hal;
using Tsunagu.Hal.Linux;
using Tsunagu.Hal.Simulated;

namespace Tsunagu.UnitTests.Hal;

/// <summary>
/// The watchdog: the Linux adapter against a fake device (a file that records the feeds), the feeder logic over the
/// simulated twin on fake time, and the board's `watchdog` field.
/// </summary>
public class WatchdogTests : FakeRootTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(10);

    private (LinuxWatchdog Watchdog, string Device, List<int> TimeoutsSet) FakeDevice(int chosen = 60)
    {
        var device = Write("dev/watchdog", "");
        var set = new List<int>();
        var watchdog = new LinuxWatchdog(new LinuxWatchdogOptions
        {
            Device = device, Timeout = Timeout, FeedInterval = Interval,
            SetTimeout = (handle, seconds) => { Assert.That(handle.IsInvalid, Is.False); set.Add(seconds); return chosen; },
        });
        return (watchdog, device, set);
    }

    [Test]
    public void Linux_watchdog_sets_the_timeout_feeds_on_arm_and_on_each_feed_and_never_writes_the_magic_close()
    {
        var (watchdog, device, set) = FakeDevice();
        Assert.That(() => watchdog.Feed(), Throws.InstanceOf<HalException>().With.Message.Contains("before it was armed"));
        Assert.That(new FileInfo(device).Length, Is.Zero, "a refused feed writes nothing");
        watchdog.Arm();
        Assert.That(set, Is.EqualTo(new[] { 60 }));
        Assert.That(new FileInfo(device).Length, Is.EqualTo(1), "arming feeds once");
        watchdog.Arm();
        Assert.That(set, Has.Count.EqualTo(1), "a second Arm does nothing");
        for (var i = 0; i < 5; i++) { watchdog.Feed(); }
        watchdog.Dispose();
        var written = File.ReadAllBytes(device);
        Assert.That(written, Has.Length.EqualTo(6), "one byte per feed");
        Assert.That(written, Has.None.EqualTo((byte)'V'), "the magic close would stop the watchdog when the supervisor ends");
        Assert.That(() => watchdog.Feed(), Throws.InstanceOf<HalException>(), "closed: feeding needs arming again");
    }

    [Test]
    public void Linux_watchdog_takes_the_timeout_the_driver_chose_and_refuses_one_not_longer_than_the_feed_interval()
    {
        var (watchdog, _, _) = FakeDevice(chosen: 45);
        watchdog.Arm();
        Assert.That(watchdog.Timeout, Is.EqualTo(TimeSpan.FromSeconds(45)));
        watchdog.Dispose();

        var (tooShort, device, _) = FakeDevice(chosen: 10);
        Assert.That(() => tooShort.Arm(), Throws.InstanceOf<HalException>().With.Message.Contains("not longer than the feed interval"));
        Assert.That(new FileInfo(device).Length, Is.Zero, "not armed: nothing written");
        Assert.That(() => tooShort.Feed(), Throws.InstanceOf<HalException>());
    }

    [Test]
    public void Linux_watchdog_on_a_file_that_is_not_a_watchdog_fails_the_ioctl_and_writes_nothing()
    {
        // the real WDIOC_SETTIMEOUT against a regular file: ENOTTY
        var device = Write("dev/not-a-watchdog", "");
        using var watchdog = new LinuxWatchdog(new LinuxWatchdogOptions { Device = device, Timeout = Timeout, FeedInterval = Interval });
        Assert.That(() => watchdog.Arm(), Throws.InstanceOf<HalException>().With.Message.Contains("not a watchdog device").And.Message.Contains(device));
        Assert.That(new FileInfo(device).Length, Is.Zero);
    }

    [Test]
    public void Linux_watchdog_without_its_device_names_the_device()
    {
        var device = Path.Combine(_dir, "dev", "watchdog-missing");
        using var watchdog = new LinuxWatchdog(new LinuxWatchdogOptions { Device = device, Timeout = Timeout, FeedInterval = Interval });
        var e = Assert.Throws<HalException>(() => watchdog.Arm())!;
        Assert.That(e.Message, Does.Contain(device).And.Contain("cannot open"));
        Assert.That(e.IsTransient, Is.False);
    }

    /// <summary>Advances <paramref name="time"/> by <paramref name="step"/> until <paramref name="condition"/> holds (bounded in steps and real time).</summary>
    internal static async Task AdvanceUntilAsync(FakeTimeProvider time, Func<bool> condition, TimeSpan step, int maxSteps, string what)
    {
        var real = System.Diagnostics.Stopwatch.StartNew();
        for (var i = 0; !condition(); i++)
        {
            if (i >= maxSteps || real.Elapsed > TimeSpan.FromSeconds(30)) { Assert.Fail($"no {what} after {i} steps of {step} ({real.Elapsed.TotalSeconds:0.0} s real)"); }
            time.Advance(step);
            await Task.Delay(2);
        }
    }

    [Test]
    public async Task Feeder_feeds_while_healthy_stops_the_moment_it_is_not_and_feeds_again_when_it_recovers()
    {
        var time = new FakeTimeProvider(Start);
        var watchdog = new SimulatedWatchdog(time, Timeout, Interval);
        string? problem = null;
        var log = new System.Collections.Concurrent.ConcurrentQueue<string>();
        using var cts = new CancellationTokenSource();
        var feeder = WatchdogFeeder.RunAsync(watchdog, () => problem, time, log.Enqueue, cts.Token);
        Assert.That(watchdog.Armed, Is.True, "armed before the first wait");
        await AdvanceUntilAsync(time, () => watchdog.Feeds >= 30, TimeSpan.FromSeconds(1), 3600, "30 feeds while healthy");
        Assert.That(watchdog.Expired, Is.False);

        problem = "stuck";
        var fedAtProblem = watchdog.Feeds;
        for (var i = 0; i < 30; i++) { time.Advance(TimeSpan.FromSeconds(1)); await Task.Delay(2); }
        Assert.That(watchdog.Feeds, Is.LessThanOrEqualTo(fedAtProblem + 1), "at most the feed already under way when the check failed");
        Assert.That(watchdog.Expired, Is.False, "30 s: not yet");

        problem = null;
        var before = watchdog.Feeds;
        await AdvanceUntilAsync(time, () => watchdog.Feeds > before, TimeSpan.FromSeconds(1), 20, "a feed after recovery");
        Assert.That(log, Has.Some.Contains("fed again"));
        Assert.That(watchdog.Expired, Is.False);

        problem = "stuck";
        fedAtProblem = watchdog.Feeds;
        await AdvanceUntilAsync(time, () => watchdog.Expired, TimeSpan.FromSeconds(1), 600, "expiry after the feeds stopped");
        Assert.That(watchdog.Feeds, Is.LessThanOrEqualTo(fedAtProblem + 1));
        Assert.That(log.Count(l => l.Contains("watchdog not fed") && l.Contains("stuck")), Is.EqualTo(2), "logged once per change, not at every interval");
        await cts.CancelAsync();
        await feeder.WaitAsync(TimeSpan.FromSeconds(10));
        var last = watchdog.Feeds;
        time.Advance(TimeSpan.FromMinutes(5));
        Assert.That(watchdog.Feeds, Is.EqualTo(last), "a stopped feeder feeds no more");
    }

    [Test]
    public async Task Feeder_treats_a_throwing_health_check_as_unhealthy_and_a_refused_feed_as_a_logged_retry()
    {
        var time = new FakeTimeProvider(Start);
        var watchdog = new SimulatedWatchdog(time, Timeout, Interval);
        var log = new System.Collections.Concurrent.ConcurrentQueue<string>();
        using var cts = new CancellationTokenSource();
        var feeder = WatchdogFeeder.RunAsync(watchdog, () => throw new InvalidOperationException("state unreadable"), time, log.Enqueue, cts.Token);
        await AdvanceUntilAsync(time, () => watchdog.Expired, TimeSpan.FromSeconds(1), 600, "expiry");
        Assert.That(watchdog.Feeds, Is.EqualTo(1), "only the arming feed");
        Assert.That(log, Has.Some.Contains("state unreadable"));
        await cts.CancelAsync();
        await feeder.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Test]
    public void Feeder_that_cannot_arm_fails_with_the_hal_error()
    {
        var device = Path.Combine(_dir, "dev", "none");
        using var watchdog = new LinuxWatchdog(new LinuxWatchdogOptions { Device = device, Timeout = Timeout, FeedInterval = Interval });
        Assert.That(async () => await WatchdogFeeder.RunAsync(watchdog, () => null, TimeProvider.System, _ => { }, CancellationToken.None),
            Throws.InstanceOf<HalException>().With.Message.Contains(device));
    }

    [Test]
    public void Simulated_watchdog_expires_after_its_timeout_and_refuses_a_late_feed()
    {
        var time = new FakeTimeProvider(Start);
        var watchdog = new SimulatedWatchdog(time, Timeout, Interval);
        Assert.That(() => watchdog.Feed(), Throws.InstanceOf<HalException>());
        watchdog.Arm();
        time.Advance(Timeout - TimeSpan.FromSeconds(1));
        Assert.That(watchdog.Expired, Is.False);
        watchdog.Feed();
        time.Advance(Timeout);
        Assert.That(watchdog.Expired, Is.True);
        Assert.That(() => watchdog.Feed(), Throws.InstanceOf<HalException>().With.Message.Contains("would have restarted"));
        Assert.That(watchdog.Feeds, Is.EqualTo(2));
    }

    [TestCase("""{ "device": "watchdog", "timeoutSeconds": 60, "feedSeconds": 10 }""", "watchdog.device")]
    [TestCase("""{ "device": "/dev/watchdog", "timeoutSeconds": 1, "feedSeconds": 1 }""", "watchdog.timeoutSeconds")]
    [TestCase("""{ "device": "/dev/watchdog", "timeoutSeconds": 60, "feedSeconds": 31 }""", "watchdog.feedSeconds")]
    [TestCase("""{ "device": "/dev/watchdog", "timeoutSeconds": 60, "feedSeconds": 0 }""", "watchdog.feedSeconds")]
    [TestCase("""{ "device": "/dev/watchdog", "timeoutSeconds": 7200, "feedSeconds": 10 }""", "watchdog.timeoutSeconds")]
    public void Board_watchdog_is_validated_with_the_field_named(string watchdog, string field)
    {
        var json = """{ "name": "b", "interfaces": { "wan": "eth0", "lan": "eth1", "vpn": "wg0" }, "hdd": null, "watchdog": WD }""".Replace("WD", watchdog);
        Assert.That(() => BoardDescription.Parse(json, "board.json"), Throws.InstanceOf<BoardDescriptionException>().With.Message.Contains("board.json: " + field));
    }

    [Test]
    public void The_qemu_board_has_a_watchdog_and_a_board_without_one_reads_as_null()
    {
        var qemu = BoardDescription.Resolve("qemu-x86_64", Path.Combine(BoardAndRunnerTests.RepositoryRoot(), "board"));
        Assert.That(qemu.Watchdog, Is.EqualTo(new BoardWatchdog("/dev/watchdog", 60, 10, "i6300esb", "heartbeat=60")));
        Assert.That(qemu.Watchdog!.FeedInterval * 2, Is.LessThanOrEqualTo(qemu.Watchdog.Timeout));
        Assert.That(BoardDescription.Simulated.Watchdog, Is.Null);
        Assert.That(qemu, Is.Not.EqualTo(qemu with { Watchdog = null }), "the watchdog takes part in equality");
    }
}
