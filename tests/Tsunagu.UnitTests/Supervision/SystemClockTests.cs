using Tsunagu.Firmware.Supervision;
using Tsunagu.Hal;
using Tsunagu.Hal.Linux;
using Tsunagu.Hal.Simulated;

namespace Tsunagu.UnitTests.Supervision;

/// <summary>The unit's wall clock is set from the host's trusted time when it is off and nothing better keeps it (<see cref="SystemClockSync"/>).</summary>
public class SystemClockTests
{
    private static readonly DateTimeOffset Start = new(2026, 12, 3, 12, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan Threshold = TimeSpan.FromMinutes(1);

    private static (VirtualTime Time, TrustedClock Trusted, SimulatedSystemClock Clock, List<string> Log) Unit(TimeSpan skew, bool hostTime = true)
    {
        var time = new VirtualTime(Start) { WallSkew = skew };
        var trusted = new TrustedClock(time);
        if (hostTime)
        {
            var sent = time.GetTimestamp();
            trusted.Observe(time.TrueNow, sent, time.GetTimestamp());
        }
        return (time, trusted, new SimulatedSystemClock(time, step => time.WallSkew += step), []);
    }

    [TestCase(1)]
    [TestCase(-1)]
    public async Task A_clock_a_day_off_is_set_to_the_hosts_time_once(int days)
    {
        var (time, trusted, clock, log) = Unit(TimeSpan.FromDays(days));
        Assert.That(await SystemClockSync.SetFromHostAsync(clock, trusted, Threshold, log.Add, CancellationToken.None), Is.True);
        Assert.That(time.GetUtcNow() - time.TrueNow, Is.LessThan(TimeSpan.FromSeconds(1)).And.GreaterThan(TimeSpan.FromSeconds(-1)));
        Assert.That(trusted.WallClockOffset()!.Value.Duration(), Is.LessThan(TimeSpan.FromSeconds(1)));
        Assert.That(log, Has.One.Contains("clock: was").And.Contain("set to").And.Contain("the host's time"));

        // the next check finds it right and leaves it alone: the clock is not stepped at every check
        Assert.That(await SystemClockSync.SetFromHostAsync(clock, trusted, Threshold, log.Add, CancellationToken.None), Is.False);
        Assert.That(clock.Sets, Has.Count.EqualTo(1));
        Assert.That(clock.Sets[0], Is.EqualTo(Start).Within(TimeSpan.FromSeconds(1)));
    }

    [Test]
    public async Task A_clock_within_the_threshold_without_a_host_time_or_kept_by_its_own_source_is_left_alone()
    {
        var (time, trusted, clock, log) = Unit(TimeSpan.FromSeconds(30));
        Assert.That(await SystemClockSync.SetFromHostAsync(clock, trusted, Threshold, log.Add, CancellationToken.None), Is.False);

        (time, trusted, clock, log) = Unit(TimeSpan.FromDays(1), hostTime: false);
        Assert.That(await SystemClockSync.SetFromHostAsync(clock, trusted, Threshold, log.Add, CancellationToken.None), Is.False,
            "no host time: nothing better than the unit's own clock to set it from");
        Assert.That(time.WallSkew, Is.EqualTo(TimeSpan.FromDays(1)));

        (time, trusted, clock, log) = Unit(TimeSpan.FromDays(1));
        clock.IsSynchronized = true;
        Assert.That(await SystemClockSync.SetFromHostAsync(clock, trusted, Threshold, log.Add, CancellationToken.None), Is.False);
        Assert.That(clock.Sets, Is.Empty);
        Assert.That(time.WallSkew, Is.EqualTo(TimeSpan.FromDays(1)));
        Assert.That(log, Has.One.Contains("kept by the unit's own synchronized source"));
    }

    [Test]
    public async Task A_clock_that_cannot_be_set_is_logged_and_left_as_it_was()
    {
        var (time, trusted, clock, log) = Unit(TimeSpan.FromDays(1));
        clock.Failure = new HalException("date: cannot set date: Operation not permitted", isTransient: false);
        Assert.That(await SystemClockSync.SetFromHostAsync(clock, trusted, Threshold, log.Add, CancellationToken.None), Is.False);
        Assert.That(time.WallSkew, Is.EqualTo(TimeSpan.FromDays(1)));
        Assert.That(log, Has.One.Contains("failed (date: cannot set date: Operation not permitted)"));
    }

    [Test]
    public async Task The_linux_clock_is_set_with_date_and_copied_to_the_rtc_only_when_there_is_one()
    {
        var rtc = Path.Combine(Path.GetTempPath(), "tsunagu-rtc-" + Guid.NewGuid().ToString("N"));
        try
        {
            var runner = new RecordingRunner();
            var clock = new LinuxSystemClock(runner, new LinuxClockOptions { RtcDevice = rtc });
            var at = new DateTimeOffset(2026, 12, 3, 20, 30, 15, TimeSpan.FromHours(9)); // 11:30:15 UTC
            await clock.SetAsync(at, CancellationToken.None);
            Assert.That(runner.Commands, Is.EqualTo(new[] { "date -u -s '2026-12-03 11:30:15'" }));

            File.WriteAllText(rtc, "");
            await clock.SetAsync(at, CancellationToken.None);
            Assert.That(runner.Commands.Skip(1), Is.EqualTo(new[] { "date -u -s '2026-12-03 11:30:15'", $"hwclock -u -w -f {rtc}" }));

            runner.Respond = c => new CommandResult(c, 1, "", "date: cannot set date: Operation not permitted", false);
            var e = Assert.ThrowsAsync<CommandFailedException>(() => clock.SetAsync(at, CancellationToken.None));
            Assert.That(e!.Message, Does.Contain("setting the system clock").And.Contain("Operation not permitted"));
            Assert.That(e, Is.InstanceOf<HalException>());
        }
        finally
        {
            File.Delete(rtc);
        }
    }

    [Test]
    public void The_linux_clock_reads_its_synchronization_state_from_the_kernel_without_privilege()
    {
        // adjtimex(2) with modes 0 only reads; whichever the answer on this machine, the call must work
        Assert.DoesNotThrow(() => TestContext.Out.WriteLine($"synchronized by its own source: {new LinuxSystemClock(new RecordingRunner()).IsSynchronized}"));
    }
}
