namespace Tsunagu.Hal;

/// <summary>
/// The long-press logic of a button, independent of how the button is read: an adapter reports what it sees
/// (<see cref="Pressed"/>, <see cref="Held"/>, <see cref="Released"/>) and the hold is timed with the
/// <see cref="TimeProvider"/> from the moment it is first seen. A long press completes as soon as the hold reaches
/// <see cref="LongPress"/>, while the button is still down; after it, the button must be released (or pressed anew)
/// before another long press counts, so a button kept down fires once. A long press nobody waits for is kept for
/// the next <see cref="WaitAsync"/>. A button read by events is timed with a timer; a polled one is judged at each
/// report, so the hold is only as long as the polls saw it.
/// </summary>
public sealed class LongPressDetector
{
    private readonly TimeProvider _time;
    private readonly bool _polled;
    private readonly Lock _gate = new();
    private DateTimeOffset? _heldSince;
    private bool _mustRelease;
    private ITimer? _timer;
    private int _unclaimed;
    private readonly List<Waiter> _waiters = [];

    private sealed record Waiter(TaskCompletionSource Done, CancellationTokenSource? OnFire);

    /// <param name="polled">The adapter reports the button's level at every poll: no timer, the hold is judged at each report.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="longPress"/> is not positive.</exception>
    public LongPressDetector(TimeSpan longPress, TimeProvider? time = null, bool polled = false)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(longPress, TimeSpan.Zero);
        LongPress = longPress;
        _time = time ?? TimeProvider.System;
        _polled = polled;
    }

    public TimeSpan LongPress { get; }

    /// <summary>The button went down (a press edge), <paramref name="alreadyHeld"/> ago.</summary>
    public void Pressed(TimeSpan alreadyHeld = default)
    {
        lock (_gate)
        {
            _mustRelease = false;
            _heldSince ??= _time.GetUtcNow() - alreadyHeld;
            Arm();
        }
    }

    /// <summary>
    /// The button is seen down without its press edge (a key's autorepeat, a polled line's level): the hold starts now
    /// unless it is already timed, or a long press already fired since the last release.
    /// </summary>
    public void Held()
    {
        lock (_gate)
        {
            if (_mustRelease) { return; }
            _heldSince ??= _time.GetUtcNow();
            Arm();
        }
    }

    /// <summary>The button is up: a hold in progress was short.</summary>
    public void Released()
    {
        lock (_gate)
        {
            _mustRelease = false;
            _heldSince = null;
            Disarm();
        }
    }

    /// <summary>Forgets the hold in progress (not a fired long press): the adapter stopped watching the button.</summary>
    public void StopTiming()
    {
        lock (_gate)
        {
            _heldSince = null;
            Disarm();
        }
    }

    /// <summary>Completes at the next long press, or at once for one that nobody waited for.</summary>
    /// <param name="onLongPress">Cancelled, synchronously, when the long press fires (stops the adapter reading the button).</param>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled; the wait is forgotten.</exception>
    public Task WaitAsync(CancellationToken cancellationToken, CancellationTokenSource? onLongPress = null)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Waiter waiter;
        lock (_gate)
        {
            if (_unclaimed > 0)
            {
                _unclaimed--;
                onLongPress?.Cancel();
                return Task.CompletedTask;
            }
            waiter = new Waiter(new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously), onLongPress);
            _waiters.Add(waiter);
        }
        cancellationToken.Register(() =>
        {
            lock (_gate) { _waiters.Remove(waiter); }
            waiter.Done.TrySetCanceled(cancellationToken);
        });
        return waiter.Done.Task;
    }

    /// <summary>Called with the gate held: fires now when the hold is long enough, else times the rest.</summary>
    private void Arm()
    {
        if (_heldSince is not { } since) { return; }
        var remaining = LongPress - (_time.GetUtcNow() - since);
        if (remaining <= TimeSpan.Zero)
        {
            Fire();
            return;
        }
        if (!_polled) { _timer ??= _time.CreateTimer(_ => OnTimer(), null, remaining, Timeout.InfiniteTimeSpan); }
    }

    private void OnTimer()
    {
        lock (_gate)
        {
            Disarm();
            Arm();
        }
    }

    private void Disarm()
    {
        _timer?.Dispose();
        _timer = null;
    }

    private void Fire()
    {
        _mustRelease = true;
        _heldSince = null;
        Disarm();
        if (_waiters.Count == 0)
        {
            _unclaimed++;
            return;
        }
        var waiters = _waiters.ToList();
        _waiters.Clear();
        foreach (var waiter in waiters) { waiter.Done.TrySetResult(); }
        foreach (var waiter in waiters) { waiter.OnFire?.Cancel(); }
    }
}

/// <summary>
/// A reset button built on <see cref="LongPressDetector"/>: the adapter below only reads its device and reports
/// presses and releases (<see cref="FeedAsync"/>), while a wait is in progress.
/// </summary>
public abstract class ResetButtonBase : IResetButton
{
    /// <param name="polled">The adapter polls the button's level (see <see cref="LongPressDetector"/>).</param>
    protected ResetButtonBase(TimeSpan longPress, TimeProvider? time, bool polled = false)
    {
        Detector = new LongPressDetector(longPress, time, polled);
    }

    public TimeSpan LongPress => Detector.LongPress;

    /// <summary>The long-press logic the adapter feeds.</summary>
    protected LongPressDetector Detector { get; }

    public async Task WaitForLongPressAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        using var feeding = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        // the wait is forgotten when it ends, however it ends (feeding is cancelled in the finally)
        var longPress = Detector.WaitAsync(feeding.Token, feeding);
        var feed = FeedAsync(Detector, feeding.Token);
        try
        {
            if (await Task.WhenAny(longPress, feed) == feed)
            {
                if (!feed.IsCanceled || cancellationToken.IsCancellationRequested)
                {
                    await feed; // the device failed, or the caller cancelled
                    throw new HalException($"{Describe()}: stopped reporting the button", isTransient: true);
                }
                // the long press stopped the feed; its wait completes right after
            }
            await longPress;
        }
        finally
        {
            await feeding.CancelAsync();
            await Task.WhenAny(feed);
            if (!longPress.IsCompletedSuccessfully) { Detector.StopTiming(); }
            _ = feed.ContinueWith(static t => _ = t.Exception, TaskScheduler.Default);
            _ = longPress.ContinueWith(static t => _ = t.Exception, TaskScheduler.Default);
        }
    }

    /// <summary>
    /// Reads the button until <paramref name="cancellationToken"/> is cancelled, reporting what it sees to
    /// <paramref name="detector"/>. Called at the start of each wait; ends with <see cref="OperationCanceledException"/>.
    /// </summary>
    /// <exception cref="HalException">The button's device is missing or unreadable.</exception>
    protected abstract Task FeedAsync(LongPressDetector detector, CancellationToken cancellationToken);

    /// <summary>The device, for messages.</summary>
    protected abstract string Describe();
}
