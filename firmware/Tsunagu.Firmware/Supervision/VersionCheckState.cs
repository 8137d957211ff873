using Tsunagu.Firmware.Net;
using Tsunagu.Firmware.Storage;
using Tsunagu.Firmware.Updates;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Supervision;

/// <summary>S400: ask the host whether this unit's pattern has an update, and decide by importance whether to run it now.</summary>
public sealed class VersionCheckState : IState
{
    public StateId Id => StateId.VersionCheck;

    /// <summary>
    /// Fetches the damaged applications found at boot again from the host (their payload's bytes of the bundle that
    /// installed them), so the inventory the check sends is the installed one. One that cannot be fetched stays damaged
    /// and is tried again at the next check; a transient host error ends the check as any other would.
    /// </summary>
    internal static async Task RepairAppsAsync(SupervisorContext ctx, CancellationToken ct)
    {
        if (ctx.DamagedApps.Count == 0 || ctx.Apps is not { } apps || ctx.Identity is not { } identity)
        {
            return;
        }
        var keys = BundleInstaller.TrustedKeys(identity, ctx.RequireStore());
        var left = new List<AppDamage>();
        var all = ctx.DamagedApps;
        for (var i = 0; i < all.Count; i++)
        {
            var damage = all[i];
            if (damage.Seal is not { } seal)
            {
                left.Add(damage);
                continue;
            }
            try
            {
                var source = new HostBundleSource(ctx.RequireClient(), ctx.HostUri, seal.ArtifactUrl, ctx.HostToken);
                await AppIntegrity.RepairAsync(apps, damage, keys, source, Path.Combine(ctx.Hardware.Data.Root, "tmp", $"repair-{damage.Application}"), ct);
                ctx.Log($"apps: {damage.Application} {damage.Version} fetched again from the host and restored (it was damaged: {damage.Problem})");
                if (damage.Application == FilterCategories.Application && ctx.Services is { } services)
                {
                    await services.RefreshAsync($"{damage.Application} restored", ct);
                }
            }
            catch (ServerException e) when (e.IsTransient || e.IsSessionExpired)
            {
                ctx.DamagedApps = [.. left, .. all.Skip(i)];
                throw;
            }
            catch (Exception e) when (e is ServerException or ProtocolException or IOException or InvalidDataException or UnauthorizedAccessException)
            {
                left.Add(damage);
                ctx.Log($"apps: {damage.Application} {damage.Version} is damaged and could not be fetched again: {e.Message}");
            }
        }
        ctx.DamagedApps = left;
    }

    public async Task<Outcome> EnterAsync(SupervisorContext ctx, CancellationToken ct)
    {
        var inFlight = ctx.RequireStore().Get(StateKeys.PendingUpdate, FirmwareJson.Default.PendingUpdate);
        if (inFlight is { InFlight: true, Offer: { } resume })
        {
            // a restart in the middle of an install: finish it (or roll it back) before anything else
            ctx.Log($"update {resume.UpdateId}: found in phase {inFlight.Phase} after a restart; resuming it");
            ctx.Offer = resume;
            return Outcome.UpdateAvailable;
        }
        var forced = ctx.TakeForced();
        ctx.DeferredLookAt = null;
        var load = ctx.Hardware.Load.Read();
        VersionCheckResponse response;
        try
        {
            await InstallMediaCheck.CheckAsync(ctx, ct);
            await RepairAppsAsync(ctx, ct);
            var sentAt = ctx.Time.GetTimestamp();
            response = await ctx.RequireClient().VersionCheckAsync(ctx.HostUri, ctx.HostToken,
                new VersionCheckRequest(ctx.CurrentInventory(), load, forced, null), ct);
            if (response.ServerTime is { } hostTime)
            {
                ctx.Clock.Observe(hostTime, sentAt, ctx.Time.GetTimestamp());
            }
        }
        catch (ServerException e)
        {
            if (forced) { ctx.RequestCheck(forced: true); }
            return DefaultStates.FromServerError(ctx, "version check", e);
        }
        ctx.SessionAccepted();
        await HostAnswer.CorrectClockAsync(ctx, "version check", ct);
        HostAnswer.AdoptCheckInterval(ctx, response.CheckIntervalSeconds);
        ctx.Offer = response.Update;
        ctx.CurrentPattern = response.CurrentPattern;
        HostAnswer.AdoptPowerOnSpread(ctx, response.PowerOnSpreadSeconds, "version check");
        var store = ctx.RequireStore();
        if (response.LastInstalledBundle is { } hostCounter && hostCounter.Version > (BundleInstaller.Counter(store)?.Version ?? 0))
        {
            // the host remembers a later bundle than this unit (its data was wiped): the counter never goes back
            BundleInstaller.RaiseCounter(store, hostCounter);
            ctx.Log($"version check: anti-rollback counter raised to bundle {hostCounter.BundleId} version {hostCounter.Version} from the host");
        }
        var pending = store.Get(StateKeys.PendingUpdate, FirmwareJson.Default.PendingUpdate);
        if (pending is { Phase: PendingUpdate.Failed or PendingUpdate.Installed, Report: { } unsent })
        {
            // a report not yet acknowledged (the answer was lost, or the token refused on the way): sent again with
            // its install id, which the host records once however often it arrives
            try
            {
                await ctx.RequireClient().ReportUpdateAsync(ctx.HostUri, ctx.HostToken, unsent, ct);
                if (pending.Phase == PendingUpdate.Installed)
                {
                    store.Delete(StateKeys.PendingUpdate);
                    pending = null;
                }
                else
                {
                    pending = pending with { Report = null };
                    store.Set(StateKeys.PendingUpdate, pending, FirmwareJson.Default.PendingUpdate);
                }
            }
            catch (ServerException e)
            {
                return DefaultStates.FromServerError(ctx, $"update {unsent.UpdateId}: {(unsent.Success ? "" : "failure ")}report", e);
            }
        }
        if (response.SettingsRevision is { } revision && revision > ctx.RequireSettings().SettingsRevision)
        {
            // the operator changed this unit's row (its ISP account...): fetch the settings again and redial (patent 0057-0058)
            ctx.Log($"version check: the host holds settings revision {revision}, this unit {ctx.RequireSettings().SettingsRevision}; fetching them again");
            ctx.DropHostSession();
            return Outcome.SettingsChanged;
        }
        if (response.Update is not { } offer)
        {
            if (response.Deferred is not null && response.DeferredImportance is { } held)
            {
                // the host held an update back: look again when its wait can end, not a whole check period later
                ctx.DeferredLookAt = ImportancePolicy.NextLook(held, response.Policy, ctx.Clock.Now().Now, ctx.Time.LocalTimeZone, ctx.Options.DeferredRecheck);
            }
            return Outcome.NothingToDo;
        }
        if (pending is { Phase: PendingUpdate.Failed } && pending.UpdateId == offer.UpdateId && pending.Attempts >= PendingUpdate.AttemptLimit)
        {
            ctx.Log($"update {offer.UpdateId} failed {pending.Attempts} times; not trying it again until the host offers another");
            return Outcome.NothingToDo;
        }
        // the window is judged in the zone of the unit's table row (the host sends it), by the host's time
        var utcNow = ctx.Clock.Now().Now;
        var localNow = ImportancePolicy.LocalNow(response.Policy, utcNow, ctx.Time.LocalTimeZone);
        if (ImportancePolicy.Decide(offer.Importance, load, response.Policy, localNow, forced) is { } reason)
        {
            ctx.DeferredLookAt = ImportancePolicy.NextLook(offer.Importance, response.Policy, utcNow, ctx.Time.LocalTimeZone, ctx.Options.DeferredRecheck);
            ctx.Log($"update {offer.UpdateId} (importance {offer.Importance}) deferred: {reason}; cpu {load.Cpu:P0}, wan {load.Wan:P0}" +
                    (ctx.DeferredLookAt is { } at ? $"; looked at again at {at:u}" : ""));
            return Outcome.NothingToDo;
        }
        return Outcome.UpdateAvailable;
    }
}
