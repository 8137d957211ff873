using System.Formats.Tar;
using System.IO.Compression;
using System.Text.Json;
using MQTTnet.Exceptions;
using Tsunagu.Firmware.Net;
using Tsunagu.Firmware.Services;
using Tsunagu.Firmware.Storage;
using Tsunagu.Hal;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Supervision;

/// <summary>The real states, one small class each; <see cref="Transitions"/> wires them together.</summary>
public static class DefaultStates
{
    public static IReadOnlyDictionary<StateId, IState> Create() => new IState[]
    {
        new BootState(), new ProvisionalState(), new FetchSettingsState(), new StoreSettingsState(), new DisconnectState(),
        new MainState(), new HostSessionState(), new VersionCheckState(), new UpdateState(), new ServiceConfigState(),
        new ReadyState(), new RefusedState(),
    }.ToDictionary(s => s.Id);

    /// <summary>Maps a failed server call to the outcome the table expects.</summary>
    internal static Outcome FromServerError(SupervisorContext ctx, string what, ServerException e) =>
        e.IsRefusal ? ctx.Fail(Outcome.Refused, what, e)
        : e.IsSessionExpired ? ctx.Fail(Outcome.SessionExpired, what, e)
        : !ctx.Hardware.Wan.IsUp ? ctx.Fail(Outcome.LinkLost, what, e)
        : ctx.Fail(Outcome.Retry, what, e);
}
