namespace Tsunagu.Hal.Simulated;

/// <summary>
/// The reset button's twin, on the same <see cref="LongPressDetector"/> as the real ones: <see cref="Press"/> is a
/// press held for <see cref="IResetButton.LongPress"/> (it completes the wait in progress, or the next wait when none
/// is in progress); <see cref="ShortPress"/> is released at once and ignored, as on the real button;
/// <see cref="PressDown"/> and <see cref="Release"/> hold it for as long as the unit's clock runs in between.
/// </summary>
public sealed class SimulatedResetButton(TimeProvider? time = null, TimeSpan? longPress = null)
    : ResetButtonBase(longPress ?? TimeSpan.FromSeconds(5), time)
{
    private int _presses;

    /// <summary>How many long presses have been made with <see cref="Press"/>.</summary>
    public int Presses => Volatile.Read(ref _presses);

    /// <summary>A long press: held for at least <see cref="IResetButton.LongPress"/>, then released.</summary>
    public void Press()
    {
        Interlocked.Increment(ref _presses);
        Detector.Pressed(alreadyHeld: LongPress);
        Detector.Released();
    }

    /// <summary>A press shorter than <see cref="IResetButton.LongPress"/>: nothing happens.</summary>
    public void ShortPress()
    {
        Detector.Pressed();
        Detector.Released();
    }

    /// <summary>The button goes down and stays down.</summary>
    public void PressDown() => Detector.Pressed();

    public void Release() => Detector.Released();

    protected override string Describe() => "simulated reset button";

    /// <summary>The twin has no device to read: its events come from the methods above.</summary>
    protected override Task FeedAsync(LongPressDetector detector, CancellationToken cancellationToken) =>
        Task.Delay(Timeout.InfiniteTimeSpan, cancellationToken);
}
