using Tsunagu.Firmware.Storage;

namespace Tsunagu.Firmware.Supervision;

/// <summary>
/// What every answer of the host that carries its time and power-on spread does to the unit, whichever state asked
/// (<see cref="VersionCheckState"/>, <see cref="SteadyCheckState"/>): a clock more than
/// <see cref="VersionCheckState.WallClockTolerance"/> off the host's is set from it, and a changed spread is stored.
/// Called after <see cref="TrustedClock.Observe"/> recorded the answer's time.
/// </summary>
internal static class HostAnswer
{
    /// <summary>Sets the system clock from the host's time when this unit's is off by more than the tolerance.</summary>
    public static async Task CorrectClockAsync(SupervisorContext ctx, string what, CancellationToken ct)
    {
        if (ctx.Clock.WallClockOffset() is { } offset && offset.Duration() > VersionCheckState.WallClockTolerance)
        {
            ctx.Log($"{what}: this unit's clock is {offset.TotalSeconds:+0;-0} s off the host's; bundle expiry uses the host's time");
            if (ctx.SystemClock is { } clock) { await SystemClockSync.SetFromHostAsync(clock, ctx.Clock, VersionCheckState.WallClockTolerance, ctx.Log, ct); }
        }
    }

    /// <summary>Stores the host's power-on spread when it sent one that differs from the stored one.</summary>
    public static void AdoptPowerOnSpread(SupervisorContext ctx, int? spreadSeconds, string what)
    {
        var store = ctx.RequireStore();
        if (spreadSeconds is { } spread && spread >= 0 &&
            store.Get(StateKeys.PowerOnSpread, FirmwareJson.Default.PowerOnSpread)?.Seconds != spread)
        {
            store.Set(StateKeys.PowerOnSpread, new PowerOnSpread(spread), FirmwareJson.Default.PowerOnSpread);
            ctx.Log($"{what}: the host's power-on spread is now {spread} s");
        }
    }
}
