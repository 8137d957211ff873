namespace Tsunagu.UnitTests;

/// <summary>
/// The test clock's count of pending timers, which tests move the clock by: a timer that can no longer fire (disposed,
/// fired once, changed to never) is not waited on.
/// </summary>
public class TimerCountingClockTests
{
    private static readonly DateTimeOffset Start = new(2030, 1, 1, 0, 0, 0, TimeSpan.Zero);

    [Test]
    public void A_disposed_timer_is_no_longer_pending()
    {
        var time = new TimerCountingClock(Start);
        var fired = 0;
        var timer = time.CreateTimer(_ => fired++, null, TimeSpan.FromSeconds(5), Timeout.InfiniteTimeSpan);
        Assert.That((time.Pending, time.NextDue), Is.EqualTo((1, (DateTimeOffset?)Start.AddSeconds(5))));
        timer.Dispose();
        Assert.That((time.Pending, time.NextDue), Is.EqualTo((0, (DateTimeOffset?)null)), "disposed before it fired: nothing to wait for");
        time.Advance(TimeSpan.FromSeconds(10));
        Assert.That(fired, Is.Zero);
    }

    [Test]
    public void A_timeout_whose_source_is_disposed_and_a_cancelled_delay_are_no_longer_pending()
    {
        var time = new TimerCountingClock(Start);
        var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30), time);
        using var cancel = new CancellationTokenSource();
        var delay = Task.Delay(TimeSpan.FromMilliseconds(100), time, cancel.Token);
        Assert.That(time.Pending, Is.EqualTo(2));
        timeout.Dispose();
        cancel.Cancel();
        Assert.That(delay.IsCanceled, Is.True);
        Assert.That(time.Pending, Is.Zero);
    }

    [Test]
    public void A_one_shot_timer_is_pending_until_it_fires_and_a_periodic_one_until_it_is_stopped()
    {
        var time = new TimerCountingClock(Start);
        var (once, every) = (0, 0);
        using var oneShot = time.CreateTimer(_ => once++, null, TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan);
        using var periodic = time.CreateTimer(_ => every++, null, TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(2));
        Assert.That(time.Pending, Is.EqualTo(2));
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.That((once, time.Pending, time.NextDue), Is.EqualTo((1, 1, (DateTimeOffset?)Start.AddSeconds(2))));
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.That((every, time.Pending, time.NextDue), Is.EqualTo((1, 1, (DateTimeOffset?)Start.AddSeconds(4))), "a periodic timer waits for its next turn");
        periodic.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        Assert.That(time.Pending, Is.Zero, "stopped: it will not fire again");
        periodic.Change(TimeSpan.FromSeconds(3), Timeout.InfiniteTimeSpan);
        Assert.That((time.Pending, time.NextDue), Is.EqualTo((1, (DateTimeOffset?)Start.AddSeconds(5))), "started again");
    }

    [Test]
    public void A_one_shot_timer_changed_to_fire_now_fires_once_and_is_no_longer_pending()
    {
        var time = new TimerCountingClock(Start);
        var fired = 0;
        using var timer = time.CreateTimer(_ => fired++, null, TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(1));
        Assert.That(timer.Change(TimeSpan.Zero, Timeout.InfiniteTimeSpan), Is.True);
        Assert.That(fired, Is.EqualTo(1), "precondition: the fake clock fires a timer due now inside Change");
        Assert.That((time.Pending, time.NextDue), Is.EqualTo((0, (DateTimeOffset?)null)), "fired once as a one-shot: nothing to wait for");
        time.Advance(TimeSpan.FromSeconds(10));
        Assert.That(fired, Is.EqualTo(1));
    }
}
