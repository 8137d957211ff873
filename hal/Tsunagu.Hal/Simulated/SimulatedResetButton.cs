namespace Tsunagu.Hal.Simulated;

/// <summary>
/// The reset button's twin, on the same <see cref="LongPressDetector"/> as the real ones: <see cref="Press"/> is a
/// press held for <see cref="IResetButton.LongPress"/> (it completes the wait in progress, or the next wait when none
/// is in progress); <see cref="ShortPress"/> is released at once and ignored, as on the real button;
/// <see cref="PressDown"/> and <see cref="Release"/> hold it for as long as the unit's clock runs in between. Like the
/// real adapters, a wait that starts while the button is down sees it held (an input device's autorepeat, a polled
/// line's level): a hold whose wait was cancelled is timed again from the next wait.
/// </summary>
public sealed class SimulatedResetButton(TimeProvider? time = null, TimeSpan? longPress = null)
    : ResetButtonBase(longPress ?? TimeSpan.FromSeconds(5), time)
{
    // the level and the edge reported together, so a wait starting meanwhile sees both or neither
    private readonly Lock _gate = new();
    private int _presses;
    private bool _down;

    /// <summary>How many long presses have been made with <see cref="Press"/>.</summary>
    public int Presses => Volatile.Read(ref _presses);

    /// <summary>Whether the button is down (<see cref="PressDown"/> without its <see cref="Release"/>).</summary>
    public bool IsDown { get { lock (_gate) { return _down; } } }

    /// <summary>A long press: held for at least <see cref="IResetButton.LongPress"/>, then released.</summary>
    public void Press()
    {
        Interlocked.Increment(ref _presses);
        lock (_gate)
        {
            _down = false;
            Detector.Pressed(alreadyHeld: LongPress);
            Detector.Released();
        }
    }

    /// <summary>A press shorter than <see cref="IResetButton.LongPress"/>: nothing happens.</summary>
    public void ShortPress()
    {
        lock (_gate)
        {
            _down = false;
            Detector.Pressed();
            Detector.Released();
        }
    }

    /// <summary>The button goes down and stays down.</summary>
    public void PressDown()
    {
        lock (_gate)
        {
            _down = true;
            Detector.Pressed();
        }
    }

    public void Release()
    {
        lock (_gate)
        {
            _down = false;
            Detector.Released();
        }
    }

    protected override string Describe() => "simulated reset button";

    /// <summary>
    /// The twin has no device to read: its edges come from the methods above; at the start of a wait, a button that is
    /// down is reported held.
    /// </summary>
    protected override Task FeedAsync(LongPressDetector detector, CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            if (_down) { detector.Held(); }
        }
        return Task.Delay(Timeout.InfiniteTimeSpan, cancellationToken);
    }
}
