namespace Tsunagu.Hal.Simulated;

/// <summary>
/// A simulated unit's own clock: its wall time is <paramref name="inner"/>'s plus <see cref="Offset"/> (a unit without a
/// battery-backed clock, one set wrong, or one set right again by <see cref="SimulatedSystemClock"/>); timers and the
/// monotonic timestamp are <paramref name="inner"/>'s, as they are on a real unit whose wall clock is stepped.
/// </summary>
public sealed class SimulatedUnitClock(TimeProvider inner) : TimeProvider
{
    private long _offsetTicks;

    /// <summary>How far this unit's wall clock is off the time it runs on (positive: ahead).</summary>
    public TimeSpan Offset
    {
        get => TimeSpan.FromTicks(Interlocked.Read(ref _offsetTicks));
        set => Interlocked.Exchange(ref _offsetTicks, value.Ticks);
    }

    /// <summary>Moves the wall clock by <paramref name="step"/> atomically (a set of the system clock).</summary>
    public void Step(TimeSpan step) => Interlocked.Add(ref _offsetTicks, step.Ticks);

    public override DateTimeOffset GetUtcNow() => inner.GetUtcNow() + Offset;
    public override TimeZoneInfo LocalTimeZone => inner.LocalTimeZone;
    public override long TimestampFrequency => inner.TimestampFrequency;
    public override long GetTimestamp() => inner.GetTimestamp();
    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) =>
        inner.CreateTimer(callback, state, dueTime, period);
}
