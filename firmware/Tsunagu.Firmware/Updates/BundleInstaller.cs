using Tsunagu.Firmware.Net;
using Tsunagu.Firmware.Storage;
using Tsunagu.Firmware.Supervision;
using Tsunagu.Firmware.Updates.Phases;
using Tsunagu.Hal;
using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;

namespace Tsunagu.Firmware.Updates;

/// <summary>What the updater works on: the unit's stores and HAL, where the bundle comes from, how health is probed.</summary>
public sealed class UpdateEnvironment
{
    public required string DataRoot { get; init; }
    public required StateStore Store { get; init; }
    public required AppStore Apps { get; init; }
    public required IBootControl Boot { get; init; }
    public required FactoryIdentity Identity { get; init; }
    public required IBundleSource Source { get; init; }

    /// <summary>The inventory as it is now (sent in reports).</summary>
    public required Func<Inventory> Inventory { get; init; }

    /// <summary>The OS version running now (the booted slot's, or the PROM's).</summary>
    public required string OsVersion { get; init; }

    /// <summary>The unit's own health after an install (services, the host): healthy, the new software's fault, or the host unreachable.</summary>
    public required Func<CancellationToken, Task<HealthReading>> HealthProbe { get; init; }

    /// <summary>The unit's install pattern as the host matched it in the version check.</summary>
    public string? CurrentPattern { get; init; }

    public UpdateOptions Options { get; init; } = new();
    public TimeProvider Time { get; init; } = TimeProvider.System;

    /// <summary>The time bundle expiry is checked against, and where it came from; null: <see cref="Time"/>'s wall clock.</summary>
    public Func<TimeReading>? TrustedNow { get; init; }

    public Action<string> Log { get; init; } = _ => { };

    /// <summary>Fault injection: called at each named point of an install; an exception thrown here acts as a power cut.</summary>
    public Action<string>? Checkpoint { get; init; }

    /// <summary>How the install makes what it keeps durable (the copies of replaced signature databases); the real file system unless a test records it.</summary>
    public Tsunagu.Hal.Storage.IDurableFileSystem Files { get; init; } = Tsunagu.Hal.Storage.PosixFileSystem.Instance;

    /// <summary>clamd's signature databases (<see cref="Services.SignatureInstaller"/>); null: this unit runs no virus checking.</summary>
    public ISignatureDatabases? Signatures { get; init; }
}

/// <summary>The signature databases a bundle's `install-signatures` steps install, and its rollback puts back.</summary>
public interface ISignatureDatabases
{
    /// <summary>The installed database of that name, or null.</summary>
    string? Installed(string name);

    /// <summary>Installs the database and has clamd load it; on any failure the databases are as they were.</summary>
    /// <exception cref="Services.SignatureInstallException">Refused, or clamd did not take it.</exception>
    Task InstallAsync(string name, Stream content, long length, CancellationToken ct);

    /// <summary>Removes the database (nothing to do when there is none) and has clamd load the rest.</summary>
    /// <exception cref="Services.SignatureInstallException">clamd did not take the smaller set; the database is back.</exception>
    Task RemoveAsync(string name, CancellationToken ct);
}

public enum InstallStatus { Committed, Failed, RetryLater, Reboot, Transient }

/// <summary>How an update attempt ended. <see cref="Reboot"/>: the unit must restart (new OS slot, or back to the old one).</summary>
public sealed record InstallResult(InstallStatus Status, UpdateReport? Report = null, ServerException? Error = null, bool Reboot = false);

/// <summary>A script or health check asked for the update to stop; the updater rolls back.</summary>
public sealed class UpdateAbortedException(string message, bool retryLater = false) : Exception(message)
{
    public bool RetryLater { get; } = retryLater;
}


/// <summary>
/// Installs one bundle (docs/bundles.md, firmware/DESIGN.md section 5) by running the phases of
/// <see cref="UpdatePhaseTable"/> in order, persisting the next phase before each one runs: download and verify,
/// extract and pre-install, switch, reboot into a new OS slot, check and commit. What a failure and what a restart in
/// each phase do is in the table; more than <see cref="UpdateOptions.RestartLimit"/> uncontrolled entries are a
/// restart loop, which is rolled back and stopped.
/// </summary>
public sealed class BundleInstaller(UpdateEnvironment env)
{
    public const string BundleFile = "bundle.part";
    private readonly UpdateOptions _o = env.Options;

    public string WorkDirectory(string updateId) => WorkDirectory(env.DataRoot, updateId);

    /// <summary>Where an update's bundle, payloads and script state live: `data/tmp/&lt;updateId&gt;`.</summary>
    public static string WorkDirectory(string dataRoot, string updateId) => Path.Combine(dataRoot, "tmp", updateId);

    /// <summary>The release keys this unit trusts: the factory's, plus introduced, minus retired ones.</summary>
    public static ReleaseKeySet TrustedKeys(FactoryIdentity identity, StateStore store)
    {
        var changes = store.Get(StateKeys.TrustedKeys, FirmwareJson.Default.TrustedKeys);
        return new ReleaseKeySet(identity.ReleasePublicKeys.Concat(changes?.Introduced ?? []), changes?.Retired);
    }


    /// <summary>The anti-rollback counter: the unit's own, or the host's when that is higher (after a wiped data partition).</summary>
    public static BundleCounter? Counter(StateStore store) => store.Get(StateKeys.BundleCounter, FirmwareJson.Default.BundleCounter);

    /// <summary>Raises the stored counter to <paramref name="counter"/> if that is higher; never lowers it.</summary>
    public static void RaiseCounter(StateStore store, BundleCounter counter)
    {
        var current = Counter(store);
        if (current is null || counter.Version > current.Version)
        {
            store.Set(StateKeys.BundleCounter, counter, FirmwareJson.Default.BundleCounter);
        }
    }


    public async Task<InstallResult> RunAsync(UpdateOffer offer, CancellationToken ct)
    {
        AppStore.ValidateSegment(offer.UpdateId, "update id");
        var run = new UpdateRun(env, offer);
        var j = run.Journal();
        if (j is null || j.UpdateId != offer.UpdateId || UpdatePhaseTable.Terminal.Contains(j.Phase))
        {
            if (j is not null && j.UpdateId != offer.UpdateId)
            {
                if (j.InFlight)
                {
                    throw new InvalidOperationException($"update {offer.UpdateId} offered while update {j.UpdateId} is in phase {j.Phase}; it must be finished first");
                }
                run.DeleteWork(j.UpdateId);
            }
            var attempts = j?.UpdateId == offer.UpdateId ? j.Attempts + 1 : 1;
            run.DeleteWork(offer.UpdateId);
            j = new PendingUpdate(offer.UpdateId, UpdatePhaseTable.Rows[0].Phase, null, attempts, offer, InstallId: InstallIds.New());
        }
        // a journal written before install ids gets one now, before anything more happens in this attempt
        j = run.Save(j with { Entries = j.Entries + 1, Offer = j.Offer ?? offer, InstallId = j.InstallId ?? InstallIds.New() });
        try
        {
            if (j.Entries > _o.RestartLimit)
            {
                var reboot = j.InFlight && await Rollback.RunAsync(run, j, run.TryManifest(j), ct);
                throw new RestartLoopException($"restart loop: update {j.UpdateId} was entered {j.Entries} times without finishing (phase {j.Phase}); rolled back and stopped", reboot);
            }
            if (UpdatePhaseTable.Row(j.Phase).OnRestart == OnRestart.RollBackToVerified)
            {
                env.Log($"update {j.UpdateId}: restarted in phase {j.Phase}; rolling back to the previous pattern, then installing again");
                var reboot = await Rollback.RunAsync(run, j, run.TryManifest(j), ct);
                j = run.Save(j with { Phase = PendingUpdate.Verified, PreviousApps = null, TargetSlot = null });
                if (reboot)
                {
                    return new InstallResult(InstallStatus.Reboot, Reboot: true);
                }
            }
            while (true)
            {
                var row = UpdatePhaseTable.Row(j.Phase);
                run.Checkpoint($"phase {row.Phase}");
                var next = await row.Runs.RunAsync(run, j, ct);
                if (!row.OnSuccess.Contains(next.Phase))
                {
                    throw new InvalidOperationException($"update {j.UpdateId}: phase {row.Phase} handed over to {next.Phase}, which its row does not allow");
                }
                j = run.Save(next);
                if (j.Phase == PendingUpdate.Installed)
                {
                    run.DeleteWork(j.UpdateId);
                    return new InstallResult(InstallStatus.Committed, j.Report);
                }
                if (UpdatePhaseTable.Row(j.Phase).AfterReboot)
                {
                    run.Save(j with { Entries = 0 });
                    return new InstallResult(InstallStatus.Reboot, Reboot: true);
                }
            }
        }
        catch (ServerException e) when (e.IsTransient || e.IsSessionExpired)
        {
            run.Save(j with { Entries = 0 });
            return new InstallResult(InstallStatus.Transient, Error: e);
        }
        catch (UpdateAbortedException e) when (e.RetryLater)
        {
            var latest = run.Journal() ?? j;
            var reboot = await Rollback.RunAsync(run, latest, run.TryManifest(latest), ct);
            var retries = latest.ScriptRetries + 1;
            if (retries > _o.ScriptRetryLimit)
            {
                return Fail(run, latest, $"{e.Message}; asked to retry later {retries} times, more than the limit of {_o.ScriptRetryLimit}: giving up", reboot);
            }
            env.Log($"update {latest.UpdateId}: {e.Message}; rolled back, will retry later ({retries} of {_o.ScriptRetryLimit})");
            run.Save(latest with { Phase = PendingUpdate.Verified, PreviousApps = null, TargetSlot = null, ScriptRetries = retries, Entries = 0 });
            return new InstallResult(reboot ? InstallStatus.Reboot : InstallStatus.RetryLater, Reboot: reboot);
        }
        catch (RestartLoopException e)
        {
            return Fail(run, j with { Attempts = Math.Max(j.Attempts, PendingUpdate.AttemptLimit) }, e.Message, e.Reboot);
        }
        catch (Exception e) when (e is UpdateAbortedException or ProtocolException or ServerException or IOException
                                   or InvalidDataException or HalException or ArgumentException or UnauthorizedAccessException)
        {
            var latest = run.Journal() ?? j;
            var reboot = false;
            if ((UpdatePhaseTable.Find(latest.Phase)?.OnFailure ?? OnFailure.RollBackThenFail) == OnFailure.RollBackThenFail)
            {
                reboot = await Rollback.RunAsync(run, latest, run.TryManifest(latest), ct);
            }
            return Fail(run, latest, e.Message, reboot);
        }
    }

    /// <summary>
    /// Gives up an unfinished update <paramref name="j"/> without the host (its health check never started in time):
    /// rolls back to the previous pattern and fails it with <paramref name="error"/>; the report waits in the journal
    /// for the next version check. <see cref="InstallResult.Reboot"/>: the unit runs the bad slot and must restart.
    /// </summary>
    public async Task<InstallResult> AbandonAsync(PendingUpdate j, string error, CancellationToken ct)
    {
        var run = new UpdateRun(env, j.Offer ?? throw new InvalidDataException($"update {j.UpdateId}: phase {j.Phase} without its offer"));
        var reboot = await Rollback.RunAsync(run, j, run.TryManifest(j), ct);
        return Fail(run, j, error, reboot);
    }

    private InstallResult Fail(UpdateRun run, PendingUpdate j, string error, bool reboot)
    {
        env.Log($"update {j.UpdateId} failed: {error}");
        var installId = j.InstallId ?? InstallIds.New();
        var report = new UpdateReport(j.UpdateId, false, error, env.Inventory(), installId);
        run.Save(j with { Phase = PendingUpdate.Failed, Report = report, PreviousApps = null, TargetSlot = null, Entries = 0, InstallId = installId });
        run.DeleteWork(j.UpdateId);
        return new InstallResult(InstallStatus.Failed, report, Reboot: reboot);
    }

    private sealed class RestartLoopException(string message, bool reboot) : Exception(message)
    {
        public bool Reboot { get; } = reboot;
    }
}
