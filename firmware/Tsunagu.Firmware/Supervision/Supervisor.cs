using Tsunagu.Hal;

namespace Tsunagu.Firmware.Supervision;

public sealed record StateChange(StateId From, Outcome Outcome, StateId To, DateTimeOffset At, TimeSpan Delay);

/// <summary>
/// Runs the supervisor: enter a state, take its outcome, look up the row of <see cref="Transitions.Table"/>, wait
/// what the row says (<see cref="Wait"/>, drawn by <see cref="TransitionWaits"/>, on <see cref="TimeProvider"/>), enter
/// the row's next state. The supervisor adds only <see cref="Transitions.SupervisorOutcomes"/>: an exception a state
/// did not map is <see cref="Outcome.Fault"/>, a corrupt state store <see cref="Outcome.DataLost"/>, a long press
/// of the reset button stops the state (or the wait) as <see cref="Outcome.ResetPressed"/>, and an update resumed after
/// a restart that is past its deadline (<see cref="SupervisorContext.UpdateOverdue"/>) is <see cref="Outcome.UpdateOverdue"/>.
/// While it runs it feeds the board's watchdog (when it has one) as long as <see cref="Health"/> says it is healthy.
/// </summary>
public sealed class Supervisor : IAsyncDisposable
{
    private readonly IReadOnlyDictionary<StateId, IState> _states;
    private readonly TransitionWaits _waits;

    public Supervisor(UnitHardware hardware, SupervisorOptions options, TimeProvider? time = null, Random? random = null,
        Action<string>? log = null, IReadOnlyDictionary<StateId, IState>? states = null)
    {
        options.Validate();
        random ??= Random.Shared;
        Context = new SupervisorContext(hardware, options, time ?? TimeProvider.System, random, log ?? (_ => { }));
        _states = states ?? DefaultStates.Create();
        var missing = Enum.GetValues<StateId>().Where(s => !_states.ContainsKey(s)).ToList();
        if (missing.Count > 0)
        {
            throw new ArgumentException($"the supervisor has no implementation for state(s) {string.Join(", ", missing)}");
        }
        _waits = new TransitionWaits(options, random);
    }

    public SupervisorContext Context { get; }
    public StateId State { get; private set; } = StateId.Boot;

    /// <summary>Raised after each transition, on the supervisor's loop.</summary>
    public event Action<StateChange>? StateChanged;

    /// <summary>Wakes the unit for a version check now (what an MQTT "check now" does).</summary>
    public void RequestCheck(bool forced = true) => Context.RequestCheck(forced);

    private volatile int _faultsInRow;
    private volatile bool _looping;

    /// <summary>
    /// Null while the supervisor is healthy, else why not: its loop is not running (it ended, or failed), or its states
    /// ended with an unexpected error <see cref="SupervisorOptions.WatchdogFaultLimit"/> times in a row. The watchdog
    /// is fed only while healthy.
    /// </summary>
    public string? Health()
    {
        if (!_looping) { return "the supervisor's loop is not running"; }
        var faults = _faultsInRow;
        return faults >= Context.Options.WatchdogFaultLimit
            ? $"{faults} unexpected errors in a row (last in {State}: {Context.LastError})"
            : null;
    }

    /// <summary>Runs the state machine from <see cref="StateId.Boot"/> until <paramref name="cancellationToken"/> is cancelled.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        State = StateId.Boot;
        _faultsInRow = 0;
        _looping = true;
        using var feeding = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var feeder = FeedWatchdogAsync(feeding.Token);
        var watch = new ResetWatch(Context, cancellationToken);
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                // a state the table gives no ResetPressed (the reset itself) runs unwatched: only the supervisor's own cancellation stops it
                var token = Watched(State) ? watch.Token : cancellationToken;
                if (await EnterAsync(State, watch, token, cancellationToken) is not { } outcome)
                {
                    return;
                }
                _faultsInRow = outcome == Outcome.Fault ? _faultsInRow + 1 : 0;
                var row = Transitions.Find(State, outcome);
                if (Context.TakeSessionAccepted())
                {
                    _waits.SessionAccepted();
                }
                var delay = _waits.Before(row.Wait, Context.RetryAfter);
                Context.RetryAfter = null;
                if (Context.UpdateDeadlineLeft() is { } left && left < delay && Transitions.SupervisorGives(row.To, Outcome.UpdateOverdue))
                {
                    // an armed update deadline is not left to wait for the end of a retry wait: the wait ends when it passes,
                    // and the next state is given UpdateOverdue
                    delay = left;
                }
                State = row.To;
                StateChanged?.Invoke(new StateChange(row.From, outcome, row.To, Context.Time.GetUtcNow(), delay));
                if (!Watched(row.From) && Watched(row.To))
                {
                    // the reset is done: the button is watched again for the next one
                    await watch.DisposeAsync();
                    watch = new ResetWatch(Context, cancellationToken);
                }
                if (delay > TimeSpan.Zero)
                {
                    try
                    {
                        await Task.Delay(delay, Context.Time, Watched(State) ? watch.Token : cancellationToken);
                    }
                    catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
                    {
                        return;
                    }
                    catch (OperationCanceledException) when (watch.Pressed)
                    {
                        // held while waiting: the next state is not entered but given ResetPressed (next round)
                    }
                }
            }
        }
        finally
        {
            _looping = false;
            await watch.DisposeAsync();
            await feeding.CancelAsync();
            await feeder;
        }
    }

    /// <summary>Whether the reset button stops <paramref name="state"/> (and the wait before it): the table gives it <see cref="Outcome.ResetPressed"/>.</summary>
    private static bool Watched(StateId state) => Transitions.SupervisorGives(state, Outcome.ResetPressed);

    /// <summary>Arms the board's watchdog and feeds it while <see cref="Health"/> allows; a watchdog that cannot be armed is logged and left.</summary>
    private async Task FeedWatchdogAsync(CancellationToken cancellationToken)
    {
        if (Context.Hardware.Watchdog is not { } watchdog) { return; }
        await Task.Yield();
        try
        {
            await WatchdogFeeder.RunAsync(watchdog, Health, Context.Time, Context.Log, cancellationToken);
        }
        catch (HalException e)
        {
            Context.Log($"watchdog unavailable, the unit runs without it: {e.Message}");
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Said now, not when the loop ends: without feeds the watchdog restarts the unit within its timeout.
            Context.Log($"watchdog feeding stopped by an unexpected error ({e.GetType().Name}: {e.Message}); the watchdog restarts the unit within {watchdog.Timeout.TotalSeconds:0} s");
            throw;
        }
    }

    /// <summary>Enters <paramref name="state"/> and maps what escapes it to an outcome; null when the supervisor is stopped.</summary>
    private async Task<Outcome?> EnterAsync(StateId state, ResetWatch watch, CancellationToken token, CancellationToken stop)
    {
        if (Watched(state) && watch.Pressed)
        {
            return Outcome.ResetPressed;
        }
        if (Transitions.SupervisorGives(state, Outcome.UpdateOverdue) && Context.UpdateOverdue())
        {
            return Outcome.UpdateOverdue;
        }
        try
        {
            return await _states[state].EnterAsync(Context, token);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            return null;
        }
        catch (OperationCanceledException) when (Watched(state) && watch.Pressed)
        {
            return Outcome.ResetPressed;
        }
        catch (Storage.StateStoreCorruptException e)
        {
            return Context.Fail(Outcome.DataLost, $"{state}: state store", e);
        }
        catch (Exception e)
        {
            // The supervisor must outlive any error: one a state did not map is still an error of that state.
            // It is recorded (LastError, log with the exception type and where it was thrown); the table says what follows.
            return Context.Fail(Outcome.Fault, $"{state}: unexpected {e.GetType().Name} at {e.StackTrace?.Split('\n').FirstOrDefault()?.Trim()}", e);
        }
    }

    /// <summary>
    /// Watches the reset button (when the board has one) for one long press; <see cref="Token"/> is cancelled by it.
    /// A button that cannot be read must not stop the unit: it is logged and the unit works on without it.
    /// </summary>
    private sealed class ResetWatch : IAsyncDisposable
    {
        private readonly CancellationTokenSource _cts;
        private readonly Task _watcher;
        private volatile bool _pressed;

        public ResetWatch(SupervisorContext context, CancellationToken stop)
        {
            _cts = CancellationTokenSource.CreateLinkedTokenSource(stop);
            _watcher = context.Hardware.Reset is { } button ? WatchAsync(context, button, _cts.Token) : Task.CompletedTask;
        }

        public CancellationToken Token => _cts.Token;
        public bool Pressed => _pressed;

        private async Task WatchAsync(SupervisorContext context, IResetButton button, CancellationToken ct)
        {
            try
            {
                await button.WaitForLongPressAsync(ct);
                _pressed = true;
                await _cts.CancelAsync();
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
            }
            catch (HalException e)
            {
                context.Log($"reset button unavailable: {e.Message}");
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _cts.CancelAsync();
            await _watcher;
            _cts.Dispose();
        }
    }

    public ValueTask DisposeAsync() => Context.ReleaseAsync();
}
