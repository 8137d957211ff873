using Tsunagu.Firmware.Supervision;

namespace Tsunagu.UnitTests.Supervision;

/// <summary>The <see cref="Wait"/> column's meaning (<see cref="TransitionWaits"/>); the supervisor's use of it is in <see cref="SupervisorTests"/>.</summary>
public class TransitionWaitsTests
{
    private static readonly SupervisorOptions Options = new() { BackoffBase = TimeSpan.FromSeconds(1), BackoffCap = TimeSpan.FromMinutes(5) };

    [Test]
    public void A_row_that_waits_nothing_starts_the_retry_backoff_over_and_leaves_the_session_backoff()
    {
        var waits = new TransitionWaits(Options, new Random(5));
        waits.Before(Wait.Backoff, null);
        waits.Before(Wait.Backoff, null);
        waits.Before(Wait.SessionBackoff, null);
        Assert.That((waits.RetryAttempt, waits.SessionAttempt), Is.EqualTo((2, 1)));
        Assert.That(waits.Before(Wait.None, null), Is.EqualTo(TimeSpan.Zero));
        Assert.That((waits.RetryAttempt, waits.SessionAttempt), Is.EqualTo((0, 1)), "only a server that accepts a session again resets the session backoff");
    }

    [Test]
    public void Each_backoff_grows_by_its_own_waits_only()
    {
        var waits = new TransitionWaits(Options, new Random(5));
        for (var i = 0; i < 3; i++) { waits.Before(Wait.Backoff, null); }
        var session = waits.Before(Wait.SessionBackoff, null);
        Assert.That(session, Is.InRange(Options.BackoffBase, Options.BackoffBase * 2), "the first session wait, whatever the retries before it");
        Assert.That(waits.RetryAttempt, Is.EqualTo(3), "a session wait leaves the retry backoff as it is");
        waits.SessionAccepted();
        Assert.That((waits.RetryAttempt, waits.SessionAttempt), Is.EqualTo((3, 0)));
    }

    [Test]
    public void A_server_retry_after_is_the_floor_of_the_next_backoff_wait_only()
    {
        var waits = new TransitionWaits(Options, new Random(5));
        var told = TimeSpan.FromSeconds(30);
        Assert.That(waits.Before(Wait.Backoff, told), Is.InRange(told, told + Options.BackoffBase));
        Assert.That(waits.Before(Wait.SessionBackoff, told), Is.InRange(told, told + Options.BackoffBase));
        Assert.That(waits.Before(Wait.None, told), Is.EqualTo(TimeSpan.Zero), "a row that waits nothing does not wait for Retry-After");
        Assert.That(waits.Before(Wait.Backoff, TimeSpan.FromHours(1)), Is.EqualTo(Options.BackoffCap), "never past the cap");
    }

    [Test]
    public void Every_wait_is_bounded_by_the_floor_and_the_cap()
    {
        var waits = new TransitionWaits(Options, new Random(9));
        var delays = Enumerable.Range(0, 50).SelectMany(_ => new[] { waits.Before(Wait.Backoff, null), waits.Before(Wait.SessionBackoff, null) }).ToList();
        Assert.That(delays, Has.All.InRange(Options.BackoffBase, Options.BackoffCap));
        Assert.That(delays, Has.Some.GreaterThan(TimeSpan.FromMinutes(1)), "the jitter grows towards the cap");
    }
}
