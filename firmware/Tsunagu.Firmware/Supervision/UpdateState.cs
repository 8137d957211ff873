using Tsunagu.Firmware.Net;
using Tsunagu.Firmware.Storage;
using Tsunagu.Firmware.Updates;
using Tsunagu.Hal;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Supervision;

/// <summary>
/// S400: install the offered bundle (<see cref="BundleInstaller"/>: verify, download with resume, install, health
/// check, commit or roll back) and report the result with the final inventory.
/// </summary>
public sealed class UpdateState : IState
{
    public StateId Id => StateId.Update;

    public async Task<Outcome> EnterAsync(SupervisorContext ctx, CancellationToken ct)
    {
        ctx.Hardware.Leds.Show(StatusIndication.Updating);
        if (ctx.UpdateOverdue())
        {
            return await AbandonAsync(ctx, ct);
        }
        var offer = ctx.Offer ?? throw new InvalidOperationException("Update entered without an offer");
        var store = ctx.RequireStore();
        var pending = store.Get(StateKeys.PendingUpdate, FirmwareJson.Default.PendingUpdate);
        if (pending?.UpdateId != offer.UpdateId || pending.Phase != PendingUpdate.Installed || pending.Report is null)
        {
            var result = await new BundleInstaller(Environment(ctx, offer)).RunAsync(offer, ct);
            if (result.Status is InstallStatus.Committed or InstallStatus.Failed)
            {
                ctx.DisarmUpdateDeadline();
            }
            if (!result.Reboot && result.Status != InstallStatus.Reboot && ctx.Services is { } services)
            {
                // installed, rolled back or left for later without a restart: what the services read from applications (the
                // content filter's category lists) may have changed; nothing restarts when it did not; a restart renders it at boot
                await services.RefreshAsync($"update {offer.UpdateId} {(result.Status switch
                {
                    InstallStatus.Committed => "installed",
                    InstallStatus.Failed => "rolled back",
                    _ => "not finished",
                })}", ct);
            }
            switch (result.Status)
            {
                case InstallStatus.Transient:
                    return DefaultStates.FromServerError(ctx, $"update {offer.UpdateId}: download", result.Error!);
                case InstallStatus.RetryLater:
                    ctx.LastError = $"update {offer.UpdateId}: a script asked to retry later";
                    return Outcome.Retry;
                case InstallStatus.Reboot:
                    return await RebootAsync(ctx, $"update {offer.UpdateId}: restarting the unit", ct);
                case InstallStatus.Failed:
                    ctx.LastError = $"update {offer.UpdateId}: {result.Report!.Error}";
                    if (await TryReportAsync(ctx, result.Report, ct))
                    {
                        var failed = store.Get(StateKeys.PendingUpdate, FirmwareJson.Default.PendingUpdate)!;
                        store.Set(StateKeys.PendingUpdate, failed with { Report = null }, FirmwareJson.Default.PendingUpdate);
                    }
                    return result.Reboot ? await RebootAsync(ctx, $"update {offer.UpdateId}: restarting into the previous OS slot", ct) : Outcome.Failure;
                case InstallStatus.Committed:
                    break;
            }
            pending = store.Get(StateKeys.PendingUpdate, FirmwareJson.Default.PendingUpdate)!;
        }
        try
        {
            var ack = await ctx.RequireClient().ReportUpdateAsync(ctx.HostUri, ctx.HostToken, pending.Report!, ct);
            store.Delete(StateKeys.PendingUpdate);
            ctx.Log($"update {offer.UpdateId}: host recorded pattern {ack.Pattern}");
            return Outcome.Success;
        }
        catch (ServerException e)
        {
            return DefaultStates.FromServerError(ctx, $"update {offer.UpdateId}: report", e);
        }
    }

    /// <summary>
    /// An update resumed after a restart never reached its health check in time (the new OS could not reach the host,
    /// or not long enough to get here): rolled back to the previous pattern without the host, and the unit restarted
    /// into the previous OS slot when it runs the new one. The version check sends the failure report once the host is back.
    /// </summary>
    private static async Task<Outcome> AbandonAsync(SupervisorContext ctx, CancellationToken ct)
    {
        ctx.DisarmUpdateDeadline();
        if (ctx.RequireStore().Get(StateKeys.PendingUpdate, FirmwareJson.Default.PendingUpdate) is not { InFlight: true, Offer: { } offer } pending)
        {
            return Outcome.Failure;
        }
        var o = ctx.Options.Update;
        var error = $"the health check did not start within {(o.HostUnreachableGrace + o.HealthWindow).TotalSeconds:0.#}s of the restart in phase {pending.Phase} " +
                    $"(the unit did not reach the host: {ctx.LastError ?? "no error recorded"}); rolled back without the host";
        var result = await new BundleInstaller(Environment(ctx, offer, new NoHost())).AbandonAsync(pending, error, ct);
        ctx.LastError = $"update {offer.UpdateId}: {error}";
        if (!result.Reboot && ctx.Services is { } services)
        {
            await services.RefreshAsync($"update {offer.UpdateId} rolled back", ct);
        }
        return result.Reboot ? await RebootAsync(ctx, $"update {offer.UpdateId}: restarting into the previous OS slot", ct) : Outcome.Failure;
    }

    /// <summary>The source of a rollback without the host: it downloads nothing.</summary>
    private sealed class NoHost : IBundleSource
    {
        public Task<(Stream Body, long Start)> OpenAsync(long from, long toExclusive, CancellationToken cancellationToken) =>
            throw new InvalidOperationException("a rollback without the host downloads nothing");
    }

    /// <summary>The bundle from a genuine install medium when it holds it (patent 0037), else from the host.</summary>
    private static IBundleSource Source(SupervisorContext ctx, UpdateOffer offer)
    {
        if (ctx.Medium is { } medium && medium.Find(offer.Sha256) is { } local)
        {
            ctx.Log($"update {offer.UpdateId}: reading the bundle from install medium '{medium.Index.Name}' instead of downloading it");
            return new MediumBundleSource(medium, local);
        }
        return new HostBundleSource(ctx.RequireClient(), ctx.HostUri, offer.ArtifactUrl, ctx.HostToken);
    }

    private static UpdateEnvironment Environment(SupervisorContext ctx, UpdateOffer offer, IBundleSource? source = null) => new()
    {
        DataRoot = ctx.Hardware.Data.Root,
        Store = ctx.RequireStore(),
        Apps = ctx.Apps ?? throw new InvalidOperationException("the application store is not open (Boot has not run)"),
        Boot = ctx.Hardware.Boot,
        Identity = ctx.RequireIdentity(),
        Source = source ?? Source(ctx, offer),
        Inventory = ctx.CurrentInventory,
        OsVersion = ctx.OsVersion,
        HealthProbe = token => ProbeAsync(ctx, token),
        CurrentPattern = ctx.CurrentPattern,
        Options = ctx.Options.Update,
        Time = ctx.Time,
        TrustedNow = ctx.Clock.Now,
        Log = ctx.Log,
        Checkpoint = ctx.UpdateCheckpoint,
        // signatures go where clamd reads them: only a board that can run virus checking takes them
        Signatures = ctx.Services is { Environment.Board.VirusScan: not null } services
            ? new Services.SignatureInstaller(services.Environment, ctx.Options.SignatureCommands ?? new Hal.Linux.ProcessCommandRunner(), ctx.Time, ctx.Log)
            {
                // a unit whose revision in force runs no clamd (virus checking off, or waiting for its first signatures) has
                // nothing to reload: the database is only placed, and the refresh after the update starts clamd
                ClamdRuns = services.VirusScanRuns,
            }
            : null,
    };

    /// <summary>
    /// Services up (the applied configuration is in place: the new software's part), then the host over the pinned
    /// session, told apart: a WAN link that is down or a transient error is the host unreachable, a refusal a fault.
    /// </summary>
    private static async Task<HealthReading> ProbeAsync(SupervisorContext ctx, CancellationToken ct)
    {
        var applied = ctx.RequireStore().Get(StateKeys.AppliedConfig, FirmwareJson.Default.AppliedConfig);
        if (applied is not null && ctx.Services?.CurrentRevision() != applied.Revision)
        {
            return HealthReading.Fault($"services: revision {applied.Revision} is applied but services/current points to {ctx.Services?.CurrentRevision()?.ToString() ?? "nothing"}");
        }
        if (!ctx.Hardware.Wan.IsUp)
        {
            return HealthReading.Unreachable("host unreachable: the WAN link is down");
        }
        try
        {
            await ctx.RequireClient().PingAsync(ctx.HostUri, ct);
            return HealthReading.Healthy;
        }
        catch (ServerException e)
        {
            return HealthReading.FromHostError(e);
        }
    }

    private static async Task<Outcome> RebootAsync(SupervisorContext ctx, string why, CancellationToken ct)
    {
        ctx.Log(why);
        await ctx.HangUpBeforeRestartAsync(ct);
        await ctx.Hardware.Boot.RebootAsync(ct);
        return Outcome.Reboot;
    }

    private static async Task<bool> TryReportAsync(SupervisorContext ctx, UpdateReport report, CancellationToken ct)
    {
        try
        {
            await ctx.RequireClient().ReportUpdateAsync(ctx.HostUri, ctx.HostToken, report, ct);
            return true;
        }
        catch (ServerException e)
        {
            ctx.Log($"update {report.UpdateId}: failure report not delivered ({e.Message}); the next version check sends it again");
            return false;
        }
    }
}
