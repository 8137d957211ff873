using Tsunagu.Hal.Simulated;

namespace Tsunagu.UnitTests.Supervision;

/// <summary>A unit whose wall clock is off sets it from the host's time in its version check.</summary>
public partial class SessionRefusalTests
{
    [TestCase(-1)]
    [TestCase(1)]
    public async Task A_unit_an_hour_off_sets_its_clock_from_the_hosts_time_at_its_first_check_and_keeps_it(int skewHours)
    {
        const int minutes = 60;
        var time = new VirtualTime(Start) { WallSkew = TimeSpan.FromHours(skewHours) };
        var host = new Host(time);
        var clock = new SimulatedSystemClock(time, step => time.WallSkew += step);
        var run = await RunAsync(time, host, minutes, setup: s => s.Context.SystemClock = clock);

        Assert.That(run.RanOut, Is.False);
        Assert.That(clock.Sets, Has.Count.EqualTo(1), "set once, at the first check; later checks find it right");
        Assert.That(run.WallClockOffset!.Value.Duration(), Is.LessThan(TimeSpan.FromSeconds(1)));
        Assert.That(time.WallSkew.Duration(), Is.LessThan(TimeSpan.FromSeconds(1)));
        Assert.That(run.Changes.Count(ch => ch.To == Tsunagu.Firmware.Supervision.StateId.Ready), Is.GreaterThanOrEqualTo(2), "checks went on normally");
    }
}
