namespace Tsunagu.UnitTests;

/// <summary>
/// A fake clock that knows which of the timers made on it are still pending (armed: not yet
/// fired once for a one-shot timer, not changed to never fire, not disposed), so a test moves it only once the code under
/// test waits on it, instead of on a real-time loop of its own.
/// </summary>
internal sealed class TimerCountingClock(DateTimeOffset start) : Microsoft.Extensions.Time.Testing.FakeTimeProvider(start)
{
    private readonly Lock _gate = new();
    private readonly HashSet<CountedTimer> _armed = [];
    /// <summary>Timers that will fire when the clock is moved far enough: armed, and neither fired (one-shot) nor disposed.</summary>
    public int Pending
    {
        get { lock (_gate) { return _armed.Count; } }
    }

    /// <summary>When the first pending timer fires; null when none is pending.</summary>
    public DateTimeOffset? NextDue
    {
        get { lock (_gate) { return _armed.Count == 0 ? null : _armed.Min(t => t.Due); } }
    }

    /// <summary>When each pending timer fires next, earliest first.</summary>
    public IReadOnlyList<DateTimeOffset> PendingDues
    {
        get { lock (_gate) { return [.. _armed.Select(t => t.Due).Order()]; } }
    }

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        var counted = new CountedTimer(this);
        counted.Arm(dueTime, period);
        counted.Inner = base.CreateTimer(s =>
        {
            counted.Fire();
            callback(s);
        }, state, dueTime, period);
        return counted;
    }

    /// <summary>A timer of the clock that tells it when it is armed, fired, changed or disposed.</summary>
    private sealed class CountedTimer(TimerCountingClock clock) : ITimer
    {
        private TimeSpan _period = Timeout.InfiniteTimeSpan;
        private bool _disposed;
        public ITimer Inner { get; set; } = null!;
        public DateTimeOffset Due { get; private set; }

        public void Arm(TimeSpan dueTime, TimeSpan period)
        {
            lock (clock._gate)
            {
                if (_disposed) { return; }
                _period = period;
                if (dueTime == Timeout.InfiniteTimeSpan)
                {
                    clock._armed.Remove(this);
                    return;
                }
                Due = clock.GetUtcNow() + dueTime;
                clock._armed.Add(this);
            }
        }

        public void Fire()
        {
            lock (clock._gate)
            {
                if (_period == Timeout.InfiniteTimeSpan || _period == TimeSpan.Zero) { clock._armed.Remove(this); }
                else { Due += _period; }
            }
        }

        /// <summary>
        /// Arms the timer before the fake clock changes it: a timer due now fires inside <see cref="ITimer.Change"/>, and its
        /// firing must see the new period (a one-shot fired there is no longer pending). Undone when the change is refused.
        /// </summary>
        public bool Change(TimeSpan dueTime, TimeSpan period)
        {
            bool wasArmed;
            DateTimeOffset due;
            TimeSpan wasPeriod;
            lock (clock._gate)
            {
                wasArmed = clock._armed.Contains(this);
                due = Due;
                wasPeriod = _period;
            }
            Arm(dueTime, period);
            var changed = Inner.Change(dueTime, period);
            if (!changed)
            {
                lock (clock._gate)
                {
                    _period = wasPeriod;
                    Due = due;
                    if (wasArmed && !_disposed) { clock._armed.Add(this); }
                    else { clock._armed.Remove(this); }
                }
            }
            return changed;
        }

        public void Dispose()
        {
            lock (clock._gate)
            {
                _disposed = true;
                clock._armed.Remove(this);
            }
            Inner.Dispose();
        }

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
