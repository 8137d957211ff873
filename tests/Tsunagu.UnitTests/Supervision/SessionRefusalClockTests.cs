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

    [TestCase(-2)]
    [TestCase(2)]
    public async Task A_simulated_unit_skewed_hours_is_set_right_by_its_own_system_clock_and_another_unit_keeps_its_own(int skewHours)
    {
        const int minutes = 30;
        var time = new VirtualTime(Start);
        var host = new Host(time);
        var unit = NewUnit("unit", time);
        var other = NewUnit("other", time);
        unit.Time.Offset = TimeSpan.FromHours(skewHours);
        other.Time.Offset = TimeSpan.FromMinutes(-30);
        Assert.That((unit.Time.GetUtcNow() - time.TrueNow).Duration(), Is.EqualTo(TimeSpan.FromHours(Math.Abs(skewHours))), "precondition: the unit's wall clock is off");

        var run = await RunAsync(time, host, minutes, unit: unit);

        Assert.That(run.RanOut, Is.False);
        Assert.That(unit.SystemClock.Sets, Has.Count.EqualTo(1), "set once, at the first check");
        Assert.That((unit.Time.GetUtcNow() - time.TrueNow).Duration(), Is.LessThan(TimeSpan.FromSeconds(1)), "the unit's wall clock now shows the host's time");
        Assert.That(run.WallClockOffset!.Value.Duration(), Is.LessThan(TimeSpan.FromSeconds(1)));
        Assert.That(time.WallSkew, Is.EqualTo(TimeSpan.Zero), "the set moved the unit's clock, not the time it runs on");
        Assert.That(other.Time.Offset, Is.EqualTo(TimeSpan.FromMinutes(-30)), "the other unit's clock is its own: untouched");
        Assert.That(other.Time.GetUtcNow() - time.TrueNow, Is.EqualTo(TimeSpan.FromMinutes(-30)));
        Assert.That(other.SystemClock.Sets, Is.Empty);
    }
}
