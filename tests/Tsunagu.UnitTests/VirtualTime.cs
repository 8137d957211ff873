namespace Tsunagu.UnitTests;

/// <summary>
/// A clock that jumps: every timer fires at once (asynchronously) and moves "now" forward by its due time, so
/// backoff and periodic waits run without waiting. Records each requested delay. The monotonic clock
/// (<see cref="GetTimestamp"/>) counts the same virtual time from the start; <see cref="WallSkew"/> moves only the
/// wall clock (<see cref="GetUtcNow"/>), as a unit's clock that is set wrong does.
/// </summary>
public sealed class VirtualTime(DateTimeOffset start) : TimeProvider
{
    private readonly Lock _gate = new();
    private readonly DateTimeOffset _start = start;
    private DateTimeOffset _now = start;

    public List<TimeSpan> Delays { get; } = [];

    /// <summary>How far this clock's wall time is off the true time (positive: ahead).</summary>
    public TimeSpan WallSkew { get; set; }

    /// <summary>The true time: what a correct clock (a server's) shows now.</summary>
    public DateTimeOffset TrueNow { get { lock (_gate) { return _now; } } }

    public override DateTimeOffset GetUtcNow() { lock (_gate) { return _now + WallSkew; } }

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override long GetTimestamp() { lock (_gate) { return (_now - _start).Ticks; } }

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        if (dueTime != Timeout.InfiniteTimeSpan)
        {
            lock (_gate)
            {
                Delays.Add(dueTime);
                _now += dueTime;
            }
            ThreadPool.QueueUserWorkItem(_ => callback(state));
        }
        return new NullTimer();
    }

    private sealed class NullTimer : ITimer
    {
        public bool Change(TimeSpan dueTime, TimeSpan period) => true;
        public void Dispose() { }
        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
