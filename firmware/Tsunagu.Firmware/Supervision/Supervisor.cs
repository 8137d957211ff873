using Tsunagu.Firmware.Net;
using Tsunagu.Hal;

namespace Tsunagu.Firmware.Supervision;

public sealed record StateChange(StateId From, Outcome Outcome, StateId To, DateTimeOffset At, TimeSpan Delay);

/// <summary>
/// Runs the supervisor: enter a state, take its outcome, look up the next state in <see cref="Transitions"/>.
/// Every outcome that means "try again" waits a floor delay plus capped, growing jitter (from <see cref="TimeProvider"/>)
/// before the next state: <see cref="Transitions.WaitAfter"/> says which backoff.
/// </summary>
public sealed class Supervisor : IAsyncDisposable
{
    private readonly IReadOnlyDictionary<StateId, IState> _states;
    private readonly Backoff _backoff;
    private readonly Backoff _sessionBackoff;

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
        _backoff = new Backoff(options.BackoffBase, options.BackoffCap, random, minimum: options.BackoffBase);
        _sessionBackoff = new Backoff(options.BackoffBase, options.BackoffCap, random, minimum: options.BackoffBase);
    }

    public SupervisorContext Context { get; }
    public StateId State { get; private set; } = StateId.Boot;

    /// <summary>Raised after each transition, on the supervisor's loop.</summary>
    public event Action<StateChange>? StateChanged;

    /// <summary>Wakes the unit for a version check now (what an MQTT "check now" does).</summary>
    public void RequestCheck(bool forced = true) => Context.RequestCheck(forced);

    /// <summary>
    /// Runs the state machine until <paramref name="cancellationToken"/> is cancelled. A long press of the reset
    /// button (when the board has one) stops it, wipes `data`, restarts the unit and provisions it again from `factory`.
    /// </summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            using var run = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var resetPressed = false;
            var watcher = Context.Hardware.Reset is { } button
                ? WatchResetAsync(button, () => { resetPressed = true; run.Cancel(); }, run.Token)
                : Task.CompletedTask;
            await RunStatesAsync(run.Token);
            await run.CancelAsync();
            await watcher;
            if (!resetPressed || cancellationToken.IsCancellationRequested)
            {
                return;
            }
            await FactoryResetAsync(cancellationToken);
        }
    }

    private async Task WatchResetAsync(IResetButton button, Action pressed, CancellationToken cancellationToken)
    {
        try
        {
            await button.WaitForLongPressAsync(cancellationToken);
            pressed();
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        catch (HalException e)
        {
            // a button that cannot be read must not stop the unit; it keeps working without a reset button
            Context.Log($"reset button unavailable: {e.Message}");
        }
    }

    /// <summary>Patent 0040: everything on `data` goes; the unit restarts and provisions itself again from `factory`.</summary>
    private async Task FactoryResetAsync(CancellationToken cancellationToken)
    {
        Context.Log("reset button held: wiping data and provisioning again");
        Context.Hardware.Leds.Show(StatusIndication.Booting);
        await ReleaseAsync();
        Context.Settings = Context.FetchedSettings = null;
        Context.ProvisionalSession = null;
        Context.DropHostSession();
        Context.Offer = null;
        Context.CurrentPattern = null;
        Context.ReadyReported = false;
        Context.MainLinkFailures = 0;
        if (Context.Hardware.Wan.IsUp)
        {
            await Context.Hardware.Wan.DownAsync(cancellationToken);
        }
        await Context.Hardware.Data.FormatAsync(cancellationToken);
        await Context.Hardware.Boot.RebootAsync(cancellationToken);
        State = StateId.Boot;
    }

    private async Task RunStatesAsync(CancellationToken cancellationToken)
    {
        State = StateId.Boot;
        while (!cancellationToken.IsCancellationRequested)
        {
            Outcome outcome;
            try
            {
                outcome = await _states[State].EnterAsync(Context, cancellationToken);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                break;
            }
            catch (Storage.StateStoreCorruptException e)
            {
                outcome = Context.Fail(Outcome.DataLost, $"{State}: state store", e);
            }
            catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                // The supervisor must outlive any error: one a state did not map is still an error of that state.
                // It is recorded (LastError, log with the exception type and stack) and the state retried with backoff.
                outcome = Context.Fail(Outcome.Retry, $"{State}: unexpected {e.GetType().Name} at {e.StackTrace?.Split('\n').FirstOrDefault()?.Trim()}", e);
            }

            var next = Transitions.Next(State, outcome);
            if (Context.TakeSessionAccepted())
            {
                _sessionBackoff.Reset();
            }
            var delay = TimeSpan.Zero;
            switch (Transitions.WaitAfter(outcome))
            {
                case Wait.Backoff:
                    delay = _backoff.Next(Context.RetryAfter);
                    break;
                case Wait.SessionBackoff:
                    delay = _sessionBackoff.Next(Context.RetryAfter);
                    break;
                default:
                    _backoff.Reset();
                    break;
            }
            Context.RetryAfter = null;
            var change = new StateChange(State, outcome, next, Context.Time.GetUtcNow(), delay);
            State = next;
            StateChanged?.Invoke(change);
            if (delay > TimeSpan.Zero)
            {
                try
                {
                    await Task.Delay(delay, Context.Time, cancellationToken);
                }
                catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
                {
                    break;
                }
            }
        }
    }

    public ValueTask DisposeAsync() => ReleaseAsync();

    private async ValueTask ReleaseAsync()
    {
        if (Context.Push is { } push)
        {
            await push.DisposeAsync();
        }
        Context.Services?.Dispose();
        Context.Client?.Dispose();
        Context.Store?.Dispose();
        (Context.Push, Context.Services, Context.Client, Context.Store, Context.Apps) = (null, null, null, null, null);
    }
}
