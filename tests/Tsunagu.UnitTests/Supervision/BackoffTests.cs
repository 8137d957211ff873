using Tsunagu.Firmware.Supervision;

namespace Tsunagu.UnitTests.Supervision;

/// <summary>The retry delay policy (<see cref="Backoff"/>); how the supervisor uses it is in <see cref="SupervisorTests"/>.</summary>
public class BackoffTests
{
    [Test]
    public void Backoff_honours_a_server_retry_after_as_a_floor_but_not_past_the_cap()
    {
        var backoff = new Backoff(TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(5), new Random(1));
        var first = backoff.Next(TimeSpan.FromSeconds(3));
        Assert.That(first, Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(3)).And.LessThanOrEqualTo(TimeSpan.FromSeconds(3.1)), "floor plus jitter of up to base");
        Assert.That(backoff.Next(TimeSpan.FromSeconds(60)), Is.EqualTo(TimeSpan.FromSeconds(5)));
        backoff.Reset();
        Assert.That(backoff.Attempt, Is.Zero);
    }

    [Test]
    public void Backoff_never_goes_below_its_floor_nor_past_its_cap()
    {
        var floor = TimeSpan.FromSeconds(1);
        var cap = TimeSpan.FromSeconds(20);
        var backoff = new Backoff(floor, cap, new Random(3), minimum: floor);
        var delays = Enumerable.Range(0, 40).Select(_ => backoff.Next()).ToList();
        Assert.That(delays, Has.All.InRange(floor, cap));
        Assert.That(delays.Skip(10), Has.Some.GreaterThan(TimeSpan.FromSeconds(10)), "the jitter grows towards the cap");
        Assert.That(backoff.Attempt, Is.EqualTo(40));
    }
}
