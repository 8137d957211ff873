using Tsunagu.Firmware.Storage;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Supervision;

/// <summary>
/// What every answer of the host that carries its time, power-on spread and check interval does to the unit, whichever
/// state asked (<see cref="VersionCheckState"/>, <see cref="SteadyCheckState"/>): a clock more than
/// <see cref="WallClockTolerance"/> off the host's is set from it, a changed spread is stored, the interval adopted.
/// Called after <see cref="TrustedClock.Observe"/> recorded the answer's time.
/// </summary>
internal static class HostAnswer
{
    /// <summary>How far the unit's wall clock may be off the host's before it is set from the host's time.</summary>
    public static readonly TimeSpan WallClockTolerance = TimeSpan.FromMinutes(1);

    /// <summary>Sets the system clock from the host's time when this unit's is off by more than the tolerance.</summary>
    public static async Task CorrectClockAsync(SupervisorContext ctx, string what, CancellationToken ct)
    {
        if (ctx.Clock.WallClockOffset() is { } offset && offset.Duration() > WallClockTolerance)
        {
            ctx.Log($"{what}: this unit's clock is {offset.TotalSeconds:+0;-0} s off the host's; bundle expiry uses the host's time");
            if (ctx.SystemClock is { } clock) { await SystemClockSync.SetFromHostAsync(clock, ctx.Clock, WallClockTolerance, ctx.Log, ct); }
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

    /// <summary>Checks every <paramref name="seconds"/> the host asked for, or at the configured interval when it named none.</summary>
    public static void AdoptCheckInterval(SupervisorContext ctx, int seconds) =>
        ctx.CheckInterval = seconds > 0 ? TimeSpan.FromSeconds(seconds) : ctx.Options.CheckInterval;

    /// <summary>
    /// What the unit runs besides its inventory, as the ready report and the steady check tell it: the revision of the
    /// applied configuration (<paramref name="applied"/>, read by the caller), the WAN address, the VPN and cache report.
    /// </summary>
    public static async Task<RunningReport> RunningAsync(SupervisorContext ctx, AppliedConfig? applied, CancellationToken ct) =>
        new(applied?.Revision, ctx.Hardware.Wan.Address, ctx.Services?.VpnReport(),
            ctx.Services is { } services ? await services.CacheReportAsync(ct) : null);
}

/// <summary>The applied revision, WAN address, VPN and cache report of <see cref="HostAnswer.RunningAsync"/>.</summary>
internal sealed record RunningReport(int? AppliedRevision, string? WanAddress, UnitVpnReport? Vpn, UnitCacheReport? Cache);
