namespace Tsunagu.UnitTests;

/// <summary>
/// A fake clock that counts the timers made on it and those that fired, so a test moves it only once the code under
/// test waits on it, instead of on a real-time loop of its own.
/// </summary>
internal sealed class TimerCountingClock(DateTimeOffset start) : Microsoft.Extensions.Time.Testing.FakeTimeProvider(start)
{
    private int _timers;
    private int _fired;

    /// <summary>Timers made so far.</summary>
    public int Timers => Volatile.Read(ref _timers);

    /// <summary>Timer callbacks run so far.</summary>
    public int Fired => Volatile.Read(ref _fired);

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        var timer = base.CreateTimer(s =>
        {
            callback(s);
            Interlocked.Increment(ref _fired);
        }, state, dueTime, period);
        Interlocked.Increment(ref _timers);
        return timer;
    }
}
