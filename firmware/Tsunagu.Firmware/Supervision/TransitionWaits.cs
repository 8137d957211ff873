namespace Tsunagu.Firmware.Supervision;

/// <summary>
/// What each value of the <see cref="Wait"/> column of <see cref="Transitions.Table"/> costs: the retry backoff and the
/// session backoff, both floored at <see cref="SupervisorOptions.BackoffBase"/> and capped at
/// <see cref="SupervisorOptions.BackoffCap"/>. A row that waits nothing starts the retry backoff over (so a lost link
/// after failed attempts keeps growing it); the session backoff starts over only when the server accepts a session again.
/// </summary>
public sealed class TransitionWaits(SupervisorOptions options, Random random)
{
    private readonly Backoff _retry = new(options.BackoffBase, options.BackoffCap, random, minimum: options.BackoffBase);
    private readonly Backoff _session = new(options.BackoffBase, options.BackoffCap, random, minimum: options.BackoffBase);

    /// <summary>Consecutive retry backoff waits since a row that waited nothing.</summary>
    public int RetryAttempt => _retry.Attempt;

    /// <summary>Consecutive session backoff waits since the server last accepted a session.</summary>
    public int SessionAttempt => _session.Attempt;

    /// <summary>The server accepted a session token: the next refused token waits the first session backoff again.</summary>
    public void SessionAccepted() => _session.Reset();

    /// <summary>
    /// The wait before the next state for a row that says <paramref name="wait"/>; <paramref name="retryAfter"/> (a
    /// server's Retry-After) replaces the floor of a backoff when it is longer.
    /// </summary>
    public TimeSpan Before(Wait wait, TimeSpan? retryAfter)
    {
        switch (wait)
        {
            case Wait.Backoff:
                return _retry.Next(retryAfter);
            case Wait.SessionBackoff:
                return _session.Next(retryAfter);
            case Wait.None:
                _retry.Reset();
                return TimeSpan.Zero;
            default:
                throw new ArgumentOutOfRangeException(nameof(wait), wait, "a wait the supervisor does not know");
        }
    }
}
