namespace Tsunagu.Firmware.Supervision;

/// <summary>The supervisor's states (patent S100-S800); see firmware/DESIGN.md.</summary>
public enum StateId
{
    Boot, Provisional, FetchSettings, StoreSettings, Disconnect, Main, HostSession,
    VersionCheck, Update, ServiceConfig, Ready, Refused,
}

/// <summary>What a state's work came to; the table below turns (state, outcome) into the next state.</summary>
public enum Outcome
{
    Success, NothingToDo, Retry, Failure, LinkLost, NeedsProvisioning, Refused,
    UpdateAvailable, CheckDue, SessionExpired, DataLost, Reboot,
}

/// <summary>What the supervisor waits before the next state: nothing, or a delay from one of its two backoffs.</summary>
public enum Wait
{
    /// <summary>Go on at once: the state's work succeeded or moved on.</summary>
    None,

    /// <summary>The retry backoff (floor plus jitter, doubling per consecutive failure); reset by any outcome that waits nothing.</summary>
    Backoff,

    /// <summary>
    /// The session backoff, for a token the server refused: floor plus jitter, doubling per consecutive refusal;
    /// reset only when the server accepts a session again (a version check, service configuration or settings answer).
    /// </summary>
    SessionBackoff,
}

/// <summary>One row: in <see cref="From"/> (null: any state), on <see cref="On"/>, go to <see cref="To"/>.</summary>
public readonly record struct Transition(StateId? From, Outcome On, StateId To);

/// <summary>Every transition of the supervisor, in one place. A (state, outcome) pair not listed is a bug.</summary>
public static class Transitions
{
    public static readonly IReadOnlyList<Transition> Table =
    [
        //  from                        on                           to
        new(StateId.Boot,               Outcome.Success,             StateId.Main),          // valid stored settings: reboot goes straight to Main
        new(StateId.Boot,               Outcome.NeedsProvisioning,   StateId.Provisional),
        new(StateId.Boot,               Outcome.Retry,               StateId.Boot),

        new(StateId.Provisional,        Outcome.Success,             StateId.FetchSettings), // S100
        new(StateId.Provisional,        Outcome.Retry,               StateId.Provisional),
        new(StateId.Provisional,        Outcome.Refused,             StateId.Refused),

        new(StateId.FetchSettings,      Outcome.Success,             StateId.StoreSettings), // S200
        new(StateId.FetchSettings,      Outcome.Retry,               StateId.FetchSettings),
        new(StateId.FetchSettings,      Outcome.SessionExpired,      StateId.Provisional),
        new(StateId.FetchSettings,      Outcome.LinkLost,            StateId.Provisional),
        new(StateId.FetchSettings,      Outcome.Refused,             StateId.Refused),

        new(StateId.StoreSettings,      Outcome.Success,             StateId.Disconnect),
        new(StateId.StoreSettings,      Outcome.Retry,               StateId.StoreSettings),

        new(StateId.Disconnect,         Outcome.Success,             StateId.Main),          // S300
        new(StateId.Disconnect,         Outcome.NothingToDo,         StateId.HostSession),   // variant 2: the provisional link is the main link
        new(StateId.Disconnect,         Outcome.Retry,               StateId.Disconnect),

        new(StateId.Main,               Outcome.Success,             StateId.HostSession),
        new(StateId.Main,               Outcome.Retry,               StateId.Main),
        new(StateId.Main,               Outcome.LinkLost,            StateId.Provisional),   // main link failed N times

        new(StateId.HostSession,        Outcome.Success,             StateId.VersionCheck),
        new(StateId.HostSession,        Outcome.Retry,               StateId.HostSession),
        new(StateId.HostSession,        Outcome.LinkLost,            StateId.Main),
        new(StateId.HostSession,        Outcome.Refused,             StateId.Refused),

        new(StateId.VersionCheck,       Outcome.UpdateAvailable,     StateId.Update),        // S400
        new(StateId.VersionCheck,       Outcome.NothingToDo,         StateId.ServiceConfig),
        new(StateId.VersionCheck,       Outcome.Retry,               StateId.VersionCheck),

        new(StateId.Update,             Outcome.Success,             StateId.VersionCheck),  // look again: patterns may chain
        new(StateId.Update,             Outcome.Failure,             StateId.ServiceConfig), // stay on the current pattern
        new(StateId.Update,             Outcome.Retry,               StateId.Update),
        new(StateId.Update,             Outcome.Reboot,              StateId.Boot),          // new OS slot, or back to the old one

        new(StateId.ServiceConfig,      Outcome.Success,             StateId.Ready),         // S500
        new(StateId.ServiceConfig,      Outcome.NothingToDo,         StateId.Ready),
        new(StateId.ServiceConfig,      Outcome.Failure,             StateId.Ready),         // keep the last good configuration
        new(StateId.ServiceConfig,      Outcome.Retry,               StateId.ServiceConfig),

        new(StateId.Ready,              Outcome.CheckDue,            StateId.HostSession),   // S600-S800: periodic or forced
        new(StateId.Ready,              Outcome.Retry,               StateId.Ready),

        new(StateId.Refused,            Outcome.Success,             StateId.Provisional),
        new(StateId.Refused,            Outcome.Retry,               StateId.Refused),

        new(null,                       Outcome.SessionExpired,      StateId.HostSession),
        new(null,                       Outcome.LinkLost,            StateId.Main),
        new(null,                       Outcome.DataLost,            StateId.Boot),
        new(null,                       Outcome.Refused,             StateId.Refused),
    ];

    /// <summary>
    /// The wait before the next state, by outcome: every outcome that means "try again" (a retry, a refused token,
    /// a lost link, lost data) waits a floor delay plus jitter, so no failure can turn into a tight loop.
    /// </summary>
    public static Wait WaitAfter(Outcome outcome) => outcome switch
    {
        Outcome.Retry or Outcome.LinkLost or Outcome.DataLost => Wait.Backoff,
        Outcome.SessionExpired => Wait.SessionBackoff,
        _ => Wait.None,
    };

    private static readonly Dictionary<(StateId?, Outcome), StateId> Index = Table.ToDictionary(t => (t.From, t.On), t => t.To);

    /// <exception cref="InvalidOperationException">The table has no row for the pair.</exception>
    public static StateId Next(StateId from, Outcome outcome) =>
        Index.TryGetValue((from, outcome), out var to) ? to
        : Index.TryGetValue((null, outcome), out to) ? to
        : throw new InvalidOperationException($"the supervisor's transition table has no row for {from} --{outcome}-->");
}
