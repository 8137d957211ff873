using System.Text;

namespace Tsunagu.Firmware.Supervision;

/// <summary>The supervisor's states (patent S100-S800); see firmware/DESIGN.md.</summary>
public enum StateId
{
    Boot, Provisional, FetchSettings, StoreSettings, Disconnect, Main, HostSession,
    VersionCheck, Update, ServiceConfig, Ready, SteadyCheck, Refused, FactoryReset,
}

/// <summary>What a state's work came to; <see cref="Transitions.Table"/> turns (state, outcome) into the next state and the wait before it.</summary>
public enum Outcome
{
    Success, NothingToDo, Retry, Failure, LinkLost, NeedsProvisioning, Refused,
    UpdateAvailable, CheckDue, SessionExpired, DataLost, Reboot,

    /// <summary>The ISP refused the main link's account <see cref="SupervisorOptions.MainLinkRefusalLimit"/> times in a row: fetch fresh settings.</summary>
    IspRefused,

    /// <summary>The host holds a newer revision of this unit's settings than the one stored: fetch them again and redial.</summary>
    SettingsChanged,

    /// <summary>
    /// The periodic check needs the full exchange (session, version check, configuration, ready report): the unit has
    /// something to report or no nonce to prove itself with, or the host answered that something changed or did not take
    /// the steady check (an unknown or used nonce, an older host).
    /// </summary>
    FullCheckDue,

    /// <summary>The state threw an exception it did not map to an outcome (the supervisor records it and gives this).</summary>
    Fault,

    /// <summary>The reset button was held while the state ran or waited (the supervisor stops the state and gives this).</summary>
    ResetPressed,

    /// <summary>
    /// An update found unfinished at boot (rebooting or checking) has not reached its health check by its deadline
    /// (<see cref="SupervisorContext.UpdateOverdue"/>; the supervisor gives this before entering a state): it is rolled back without the host.
    /// </summary>
    UpdateOverdue,
}

/// <summary>What the supervisor waits before entering the next state.</summary>
public enum Wait
{
    /// <summary>Go on at once; the retry backoff starts over.</summary>
    None,

    /// <summary>The retry backoff: floor plus jitter, doubling per consecutive wait of this kind (it starts over only after a row that waits nothing).</summary>
    Backoff,

    /// <summary>
    /// The session backoff, for a token the server refused: floor plus jitter, doubling per consecutive refusal; it starts
    /// over only when the server accepts a session again. The retry backoff is left as it is.
    /// </summary>
    SessionBackoff,
}

/// <summary>One row: in <see cref="From"/>, on <see cref="On"/>, wait <see cref="Wait"/>, then enter <see cref="To"/>.</summary>
public readonly record struct Transition(StateId From, Outcome On, StateId To, Wait Wait);

/// <summary>
/// Every transition of the supervisor, and the wait before it, in one place: one row per (state, outcome) pair that
/// can occur, none for a pair that cannot. A state may give what its own code returns, and the supervisor gives
/// every state <see cref="SupervisorOutcomes"/> (the reset button is not watched while <see cref="StateId.FactoryReset"/> runs).
/// </summary>
public static class Transitions
{
    private const StateId Boot = StateId.Boot, Provisional = StateId.Provisional, FetchSettings = StateId.FetchSettings,
        StoreSettings = StateId.StoreSettings, Disconnect = StateId.Disconnect, Main = StateId.Main, HostSession = StateId.HostSession,
        VersionCheck = StateId.VersionCheck, Update = StateId.Update, ServiceConfig = StateId.ServiceConfig, Ready = StateId.Ready,
        SteadyCheck = StateId.SteadyCheck, Refused = StateId.Refused, FactoryReset = StateId.FactoryReset;

    private const Wait None = Wait.None, Backoff = Wait.Backoff, SessionBackoff = Wait.SessionBackoff;

    /// <summary>What the supervisor itself gives a state: an unmapped exception, a corrupt state store, the reset button.</summary>
    public static readonly IReadOnlyList<Outcome> SupervisorOutcomes = [Outcome.Fault, Outcome.DataLost, Outcome.ResetPressed, Outcome.UpdateOverdue];

    /// <summary>
    /// What the supervisor gives <paramref name="state"/>: not the reset button to <see cref="StateId.FactoryReset"/>, and
    /// an overdue update not to <see cref="StateId.Boot"/> (which arms the deadline), <see cref="StateId.Update"/> (which
    /// runs the health check or the rollback itself) or <see cref="StateId.FactoryReset"/> (which wipes the journal).
    /// </summary>
    public static bool SupervisorGives(StateId state, Outcome outcome) => outcome switch
    {
        Outcome.ResetPressed => state != StateId.FactoryReset,
        Outcome.UpdateOverdue => state is not (StateId.Boot or StateId.Update or StateId.FactoryReset),
        _ => SupervisorOutcomes.Contains(outcome),
    };

    public static readonly IReadOnlyList<Transition> Table =
    [
        //  from            on                          to              wait
        new(Boot,           Outcome.Success,            Main,           None),           // valid stored settings: a restart goes straight to Main
        new(Boot,           Outcome.NeedsProvisioning,  Provisional,    None),
        new(Boot,           Outcome.Retry,              Boot,           Backoff),        // factory partition unreadable
        new(Boot,           Outcome.Fault,              Boot,           Backoff),
        new(Boot,           Outcome.DataLost,           Boot,           Backoff),
        new(Boot,           Outcome.ResetPressed,       FactoryReset,   None),

        new(Provisional,    Outcome.Success,            FetchSettings,  None),           // S100
        new(Provisional,    Outcome.Retry,              Provisional,    Backoff),
        new(Provisional,    Outcome.LinkLost,           Provisional,    Backoff),        // this state brings the provisional link up itself
        new(Provisional,    Outcome.SessionExpired,     Provisional,    Backoff),        // authentication carries no token: a retry
        new(Provisional,    Outcome.Refused,            Refused,        None),
        new(Provisional,    Outcome.Fault,              Provisional,    Backoff),
        new(Provisional,    Outcome.DataLost,           Boot,           Backoff),
        new(Provisional,    Outcome.ResetPressed,       FactoryReset,   None),
        new(Provisional,    Outcome.UpdateOverdue,      Update,         None),

        new(FetchSettings,  Outcome.Success,            StoreSettings,  None),           // S200
        new(FetchSettings,  Outcome.Retry,              FetchSettings,  Backoff),
        new(FetchSettings,  Outcome.SessionExpired,     Provisional,    SessionBackoff), // no provisional session, or its token refused
        new(FetchSettings,  Outcome.LinkLost,           Provisional,    Backoff),
        new(FetchSettings,  Outcome.Refused,            Refused,        None),
        new(FetchSettings,  Outcome.Fault,              FetchSettings,  Backoff),
        new(FetchSettings,  Outcome.DataLost,           Boot,           Backoff),
        new(FetchSettings,  Outcome.ResetPressed,       FactoryReset,   None),
        new(FetchSettings,  Outcome.UpdateOverdue,      Update,         None),

        new(StoreSettings,  Outcome.Success,            Disconnect,     None),
        new(StoreSettings,  Outcome.Retry,              StoreSettings,  Backoff),        // I/O or LiteDB error
        new(StoreSettings,  Outcome.Fault,              StoreSettings,  Backoff),
        new(StoreSettings,  Outcome.DataLost,           Boot,           Backoff),
        new(StoreSettings,  Outcome.ResetPressed,       FactoryReset,   None),
        new(StoreSettings,  Outcome.UpdateOverdue,      Update,         None),

        new(Disconnect,     Outcome.Success,            Main,           None),           // S300
        new(Disconnect,     Outcome.NothingToDo,        HostSession,    None),           // variant 2: the provisional link is the main link
        new(Disconnect,     Outcome.Fault,              Disconnect,     Backoff),
        new(Disconnect,     Outcome.DataLost,           Boot,           Backoff),
        new(Disconnect,     Outcome.ResetPressed,       FactoryReset,   None),
        new(Disconnect,     Outcome.UpdateOverdue,      Update,         None),

        new(Main,           Outcome.Success,            HostSession,    None),
        new(Main,           Outcome.Retry,              Main,           Backoff),
        new(Main,           Outcome.LinkLost,           Provisional,    Backoff),        // main link failed MainLinkFailureLimit times; the backoff keeps growing
        new(Main,           Outcome.IspRefused,         Provisional,    Backoff),        // the ISP refused the account MainLinkRefusalLimit times: fetch fresh settings
        new(Main,           Outcome.Fault,              Main,           Backoff),
        new(Main,           Outcome.DataLost,           Boot,           Backoff),
        new(Main,           Outcome.ResetPressed,       FactoryReset,   None),
        new(Main,           Outcome.UpdateOverdue,      Update,         None),           // the new OS never reached its health check: roll back without the host

        new(HostSession,    Outcome.Success,            VersionCheck,   None),
        new(HostSession,    Outcome.Retry,              HostSession,    Backoff),
        new(HostSession,    Outcome.LinkLost,           Main,           Backoff),
        new(HostSession,    Outcome.SessionExpired,     HostSession,    Backoff),        // authentication carries no token: a retry
        new(HostSession,    Outcome.Refused,            Refused,        None),
        new(HostSession,    Outcome.Fault,              HostSession,    Backoff),
        new(HostSession,    Outcome.DataLost,           Boot,           Backoff),
        new(HostSession,    Outcome.ResetPressed,       FactoryReset,   None),
        new(HostSession,    Outcome.UpdateOverdue,      Update,         None),

        new(VersionCheck,   Outcome.UpdateAvailable,    Update,         None),           // S400
        new(VersionCheck,   Outcome.NothingToDo,        ServiceConfig,  None),
        new(VersionCheck,   Outcome.SettingsChanged,    Provisional,    None),           // the operator changed the unit's row: fetch, store, redial
        new(VersionCheck,   Outcome.Retry,              VersionCheck,   Backoff),
        new(VersionCheck,   Outcome.LinkLost,           Main,           Backoff),
        new(VersionCheck,   Outcome.SessionExpired,     HostSession,    SessionBackoff),
        new(VersionCheck,   Outcome.Refused,            Refused,        None),
        new(VersionCheck,   Outcome.Fault,              VersionCheck,   Backoff),
        new(VersionCheck,   Outcome.DataLost,           Boot,           Backoff),
        new(VersionCheck,   Outcome.ResetPressed,       FactoryReset,   None),
        new(VersionCheck,   Outcome.UpdateOverdue,      Update,         None),

        new(Update,         Outcome.Success,            VersionCheck,   None),           // look again: patterns may chain
        new(Update,         Outcome.Failure,            ServiceConfig,  None),           // stay on the current pattern
        new(Update,         Outcome.Retry,              Update,         Backoff),
        new(Update,         Outcome.Reboot,             Boot,           None),           // new OS slot, or back to the old one
        new(Update,         Outcome.LinkLost,           Main,           Backoff),
        new(Update,         Outcome.SessionExpired,     HostSession,    SessionBackoff),
        new(Update,         Outcome.Refused,            Refused,        None),
        new(Update,         Outcome.Fault,              Update,         Backoff),
        new(Update,         Outcome.DataLost,           Boot,           Backoff),
        new(Update,         Outcome.ResetPressed,       FactoryReset,   None),

        new(ServiceConfig,  Outcome.Success,            Ready,          None),           // S500
        new(ServiceConfig,  Outcome.NothingToDo,        Ready,          None),
        new(ServiceConfig,  Outcome.Failure,            Ready,          None),           // keep the last good configuration
        new(ServiceConfig,  Outcome.Retry,              ServiceConfig,  Backoff),
        new(ServiceConfig,  Outcome.LinkLost,           Main,           Backoff),
        new(ServiceConfig,  Outcome.SessionExpired,     HostSession,    SessionBackoff),
        new(ServiceConfig,  Outcome.Refused,            Refused,        None),
        new(ServiceConfig,  Outcome.Fault,              ServiceConfig,  Backoff),
        new(ServiceConfig,  Outcome.DataLost,           Boot,           Backoff),
        new(ServiceConfig,  Outcome.ResetPressed,       FactoryReset,   None),
        new(ServiceConfig,  Outcome.UpdateOverdue,      Update,         None),

        new(Ready,          Outcome.CheckDue,           SteadyCheck,    None),           // S600-S800: periodic or forced
        new(Ready,          Outcome.Retry,              Ready,          Backoff),
        new(Ready,          Outcome.LinkLost,           Main,           Backoff),
        new(Ready,          Outcome.SessionExpired,     HostSession,    SessionBackoff),
        new(Ready,          Outcome.Refused,            Refused,        None),
        new(Ready,          Outcome.Fault,              Ready,          Backoff),
        new(Ready,          Outcome.DataLost,           Boot,           Backoff),        // also: state.db gone from data
        new(Ready,          Outcome.ResetPressed,       FactoryReset,   None),
        new(Ready,          Outcome.UpdateOverdue,      Update,         None),

        new(SteadyCheck,    Outcome.NothingToDo,        Ready,          None),           // one request: the host recorded what the ready report would have
        new(SteadyCheck,    Outcome.FullCheckDue,       HostSession,    None),           // something changed, or nothing to prove with: the full exchange
        new(SteadyCheck,    Outcome.Retry,              SteadyCheck,    Backoff),        // 429, 503, no answer, another 5xx (fewer than AttemptLimit): the same one request with the kept nonce after the wait
        new(SteadyCheck,    Outcome.LinkLost,           Main,           Backoff),
        new(SteadyCheck,    Outcome.Fault,              HostSession,    Backoff),
        new(SteadyCheck,    Outcome.DataLost,           Boot,           Backoff),
        new(SteadyCheck,    Outcome.ResetPressed,       FactoryReset,   None),
        new(SteadyCheck,    Outcome.UpdateOverdue,      Update,         None),

        new(Refused,        Outcome.Success,            Provisional,    None),           // after RefusedRetryInterval, waited in the state
        new(Refused,        Outcome.Fault,              Refused,        Backoff),
        new(Refused,        Outcome.DataLost,           Boot,           Backoff),
        new(Refused,        Outcome.ResetPressed,       FactoryReset,   None),
        new(Refused,        Outcome.UpdateOverdue,      Update,         None),

        new(FactoryReset,   Outcome.Success,            Boot,           None),           // data wiped, unit restarted (patent 0040)
        new(FactoryReset,   Outcome.Fault,              FactoryReset,   Backoff),
        new(FactoryReset,   Outcome.DataLost,           FactoryReset,   Backoff),
    ];

    private static readonly Dictionary<(StateId, Outcome), Transition> Index = Table.ToDictionary(t => (t.From, t.On));

    /// <summary>The row for <paramref name="from"/> on <paramref name="outcome"/>.</summary>
    /// <exception cref="InvalidOperationException">The table has no row for the pair: a state gave an outcome it cannot give.</exception>
    public static Transition Find(StateId from, Outcome outcome) =>
        Index.TryGetValue((from, outcome), out var row) ? row
        : throw new InvalidOperationException($"the supervisor's transition table has no row for {from} --{outcome}-->");

    /// <summary>The next state after <paramref name="from"/> on <paramref name="outcome"/>.</summary>
    /// <exception cref="InvalidOperationException">The table has no row for the pair.</exception>
    public static StateId Next(StateId from, Outcome outcome) => Find(from, outcome).To;

    /// <summary>
    /// The table as the Markdown of firmware/DESIGN.md section 3 (a unit test keeps the two equal): one line per state,
    /// its outcomes grouped by next state and wait, in the table's order.
    /// </summary>
    public static string Describe()
    {
        var text = new StringBuilder("| from | on -> to (wait) |\n|---|---|\n");
        foreach (var from in Table.Select(t => t.From).Distinct())
        {
            var groups = Table.Where(t => t.From == from).GroupBy(t => (t.To, t.Wait)).Select(g =>
                $"{string.Join(", ", g.Select(t => $"`{t.On}`"))} -> `{g.Key.To}`" + g.Key.Wait switch
                {
                    Wait.Backoff => " (retry backoff)",
                    Wait.SessionBackoff => " (session backoff)",
                    _ => "",
                });
            text.Append($"| `{from}` | {string.Join("; ", groups)} |\n");
        }
        return text.ToString();
    }
}
