namespace Tsunagu.Cli.Chaos;

/// <summary>
/// A unit's wall clock that is off by <see cref="Offset"/> (a unit without a battery-backed clock, or one set
/// wrong); timers and the monotonic timestamp are the system's, as they are on a real unit.
/// </summary>
public sealed class SkewedClock : TimeProvider
{
    private long _offsetTicks;

    public TimeSpan Offset
    {
        get => TimeSpan.FromTicks(Interlocked.Read(ref _offsetTicks));
        set => Interlocked.Exchange(ref _offsetTicks, value.Ticks);
    }

    public override DateTimeOffset GetUtcNow() => System.GetUtcNow() + Offset;
}
