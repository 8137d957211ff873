using Tsunagu.Firmware.Net;

namespace Tsunagu.Firmware.Supervision;

/// <summary>The real states, one small class each; <see cref="Transitions"/> wires them together.</summary>
public static class DefaultStates
{
    public static IReadOnlyDictionary<StateId, IState> Create() => new IState[]
    {
        new BootState(), new ProvisionalState(), new FetchSettingsState(), new StoreSettingsState(), new DisconnectState(),
        new MainState(), new HostSessionState(), new VersionCheckState(), new UpdateState(), new ServiceConfigState(),
        new ReadyState(), new SteadyCheckState(), new RefusedState(), new FactoryResetState(),
    }.ToDictionary(s => s.Id);

    /// <summary>
    /// Maps a failed server call to <see cref="Outcome.Refused"/>, <see cref="Outcome.SessionExpired"/>,
    /// <see cref="Outcome.LinkLost"/> or <see cref="Outcome.Retry"/>: every state that calls it has a row for each. A
    /// token the server refused is dropped here, whatever the unit thought of its validity: the next host session
    /// authenticates again (after the wait its row says).
    /// </summary>
    internal static Outcome FromServerError(SupervisorContext ctx, string what, ServerException e)
    {
        if (e.IsRefusal)
        {
            return ctx.Fail(Outcome.Refused, what, e);
        }
        if (e.IsSessionExpired)
        {
            ctx.DropHostSession();
            return ctx.Fail(Outcome.SessionExpired, $"{what}: token refused, authenticating again", e);
        }
        return !ctx.Hardware.Wan.IsUp ? ctx.Fail(Outcome.LinkLost, what, e) : ctx.Fail(Outcome.Retry, what, e);
    }
}
