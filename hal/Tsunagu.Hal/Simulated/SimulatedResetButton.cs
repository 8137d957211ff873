namespace Tsunagu.Hal.Simulated;

/// <summary>
/// The reset button's twin: <see cref="Press"/> is a long press (it completes the waits in progress, or the next
/// wait when none is in progress); <see cref="ShortPress"/> is ignored, as on the real button.
/// </summary>
public sealed class SimulatedResetButton : IResetButton
{
    private readonly Lock _gate = new();
    private TaskCompletionSource? _waiting;
    private int _queued;

    public TimeSpan LongPress { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>How many long presses have been made.</summary>
    public int Presses { get { lock (_gate) { return _presses; } } }
    private int _presses;

    /// <summary>A long press: held for at least <see cref="LongPress"/>.</summary>
    public void Press()
    {
        TaskCompletionSource? waiting;
        lock (_gate)
        {
            _presses++;
            waiting = _waiting;
            _waiting = null;
            if (waiting is null) { _queued++; }
        }
        waiting?.TrySetResult();
    }

    /// <summary>A press shorter than <see cref="LongPress"/>: nothing happens.</summary>
    public void ShortPress() { }

    public Task WaitForLongPressAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            if (_queued > 0)
            {
                _queued--;
                return Task.CompletedTask;
            }
            _waiting ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _waiting.Task.WaitAsync(cancellationToken);
        }
    }
}
