using Tsunagu.Firmware.Supervision;

namespace Tsunagu.UnitTests.Supervision;

public class TrustedClockTests
{
    private static readonly DateTimeOffset Start = new(2026, 11, 1, 12, 0, 0, TimeSpan.Zero);

    [TestCase(-3600)]
    [TestCase(0)]
    [TestCase(3600)]
    public async Task The_hosts_time_is_carried_on_the_monotonic_clock_and_a_wall_clock_change_does_not_move_it(int skewSeconds)
    {
        var time = new VirtualTime(Start) { WallSkew = TimeSpan.FromSeconds(skewSeconds) };
        var clock = new TrustedClock(time);
        Assert.That(clock.Now(), Is.EqualTo(new TimeReading(time.GetUtcNow(), "the unit's own clock (no host time since start)", false)));
        Assert.That(clock.WallClockOffset(), Is.Null);

        var sent = time.GetTimestamp();
        await Task.Delay(TimeSpan.FromMilliseconds(400), time); // the round trip
        clock.Observe(time.TrueNow - TimeSpan.FromMilliseconds(200), sent, time.GetTimestamp());
        await Task.Delay(TimeSpan.FromMinutes(90), time);
        time.WallSkew += TimeSpan.FromDays(3); // someone sets the unit's clock

        var reading = clock.Now();
        Assert.That(reading.FromHost, Is.True);
        Assert.That(reading.Now, Is.EqualTo(time.TrueNow), "stamped mid round trip, carried 90 min");
        Assert.That(reading.Source, Does.Contain("the host's time").And.Contain("+/- 200 ms"));
        Assert.That(reading.ToString(), Does.Contain(" by the host's time"));
        Assert.That(clock.WallClockOffset(), Is.EqualTo(TimeSpan.FromSeconds(skewSeconds) + TimeSpan.FromDays(3)));
    }

    [Test]
    public void An_answer_received_before_it_was_sent_is_a_bug_that_names_itself() =>
        Assert.That(() => new TrustedClock(TimeProvider.System).Observe(DateTimeOffset.UtcNow, 10, 5),
            Throws.ArgumentException.With.Message.Contains("before sent"));
}
