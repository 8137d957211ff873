namespace Tsunagu.Hal.Simulated;

/// <summary>
/// The watchdog twin: it records the feeds on a <see cref="TimeProvider"/> and says when the unit would have been
/// restarted (<see cref="Expired"/>); it restarts nothing itself.
/// </summary>
public sealed class SimulatedWatchdog(TimeProvider time, TimeSpan timeout, TimeSpan feedInterval) : IWatchdog
{
    private readonly Lock _gate = new();
    private DateTimeOffset? _lastFed;
    private int _feeds;

    public TimeSpan Timeout => timeout;

    public TimeSpan FeedInterval => feedInterval;

    public bool Armed { get { lock (_gate) { return _lastFed is not null; } } }

    /// <summary>Feeds so far, the one of <see cref="Arm"/> included.</summary>
    public int Feeds { get { lock (_gate) { return _feeds; } } }

    public DateTimeOffset? LastFed { get { lock (_gate) { return _lastFed; } } }

    /// <summary>Armed and not fed for <see cref="Timeout"/>: a real watchdog would have restarted the unit.</summary>
    public bool Expired { get { lock (_gate) { return _lastFed is { } fed && time.GetUtcNow() - fed >= timeout; } } }

    public void Arm()
    {
        lock (_gate)
        {
            if (_lastFed is not null) { return; }
            _lastFed = time.GetUtcNow();
            _feeds++;
        }
    }

    public void Feed()
    {
        lock (_gate)
        {
            if (_lastFed is null) { throw new HalException("simulated watchdog: fed before it was armed", isTransient: false); }
            if (time.GetUtcNow() - _lastFed.Value >= timeout)
            {
                throw new HalException($"simulated watchdog: fed {(time.GetUtcNow() - _lastFed.Value).TotalSeconds:0} s after the last feed; the unit would have restarted",
                    isTransient: false);
            }
            _lastFed = time.GetUtcNow();
            _feeds++;
        }
    }

    public void Dispose()
    {
    }
}
