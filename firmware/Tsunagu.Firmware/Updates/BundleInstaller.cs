using System.Formats.Tar;
using System.Security.Cryptography;
using Tsunagu.Firmware.Net;
using Tsunagu.Firmware.Storage;
using Tsunagu.Firmware.Supervision;
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

    /// <summary>Null when healthy; otherwise why not (host unreachable, service down...).</summary>
    public required Func<CancellationToken, Task<string?>> HealthProbe { get; init; }

    /// <summary>The unit's install pattern as the host matched it in the version check.</summary>
    public string? CurrentPattern { get; init; }

    public UpdateOptions Options { get; init; } = new();
    public TimeProvider Time { get; init; } = TimeProvider.System;

    /// <summary>The time bundle expiry is checked against, and where it came from; null: <see cref="Time"/>'s wall clock.</summary>
    public Func<TimeReading>? TrustedNow { get; init; }

    public Action<string> Log { get; init; } = _ => { };

    /// <summary>Fault injection: called at each named point of an install; an exception thrown here acts as a power cut.</summary>
    public Action<string>? Checkpoint { get; init; }
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
/// Installs one bundle (docs/bundles.md, firmware/DESIGN.md section 5), persisting its phase before every risky
/// step: verify the manifest signature, check the target, download with resume while hashing, extract and
/// re-check each payload, pre-install scripts, switch applications and write the inactive OS slot, post-install
/// scripts, health check within a window, then commit, or roll back to the previous verified pattern. A restart in
/// any phase resumes (download) or rolls back and installs again (switching, checking); more than
/// <see cref="UpdateOptions.RestartLimit"/> uncontrolled entries are a restart loop, which is rolled back and stopped.
/// </summary>
public sealed class BundleInstaller(UpdateEnvironment env)
{
    public const string BundleFile = "bundle.part";
    private readonly UpdateOptions _o = env.Options;

    public string WorkDirectory(string updateId) => Path.Combine(env.DataRoot, "tmp", updateId);

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
        var j = Journal();
        if (j is null || j.UpdateId != offer.UpdateId || j.Phase is PendingUpdate.Failed or PendingUpdate.Installed)
        {
            if (j is not null && j.UpdateId != offer.UpdateId)
            {
                if (j.InFlight)
                {
                    throw new InvalidOperationException($"update {offer.UpdateId} offered while update {j.UpdateId} is in phase {j.Phase}; it must be finished first");
                }
                DeleteWork(j.UpdateId);
            }
            var attempts = j?.UpdateId == offer.UpdateId ? j.Attempts + 1 : 1;
            DeleteWork(offer.UpdateId);
            j = new PendingUpdate(offer.UpdateId, PendingUpdate.Downloading, null, attempts, offer);
        }
        j = Save(j with { Entries = j.Entries + 1, Offer = j.Offer ?? offer });
        BundleManifest? manifest = null;
        try
        {
            if (j.Entries > _o.RestartLimit)
            {
                var reboot = j.InFlight && await RollBackAsync(j, TryReadManifest(j), ct);
                throw new RestartLoopException($"restart loop: update {j.UpdateId} was entered {j.Entries} times without finishing (phase {j.Phase}); rolled back and stopped", reboot);
            }
            if (j.Phase is PendingUpdate.Switching or PendingUpdate.Checking)
            {
                env.Log($"update {j.UpdateId}: restarted in phase {j.Phase}; rolling back to the previous pattern, then installing again");
                manifest = TryReadManifest(j);
                if (await RollBackAsync(j, manifest, ct))
                {
                    j = Save(j with { Phase = PendingUpdate.Verified, PreviousApps = null, TargetSlot = null });
                    return new InstallResult(InstallStatus.Reboot, Reboot: true);
                }
                j = Save(j with { Phase = PendingUpdate.Verified, PreviousApps = null, TargetSlot = null });
            }
            if (j.Phase == PendingUpdate.Downloading)
            {
                (j, manifest) = await DownloadAsync(j, offer, ct);
                env.Checkpoint?.Invoke("downloaded");
            }
            manifest ??= await ReadVerifiedManifestAsync(j, ct);
            if (j.Phase == PendingUpdate.Verified)
            {
                j = await InstallAsync(j, manifest, ct);
                if (j.Phase == PendingUpdate.Rebooting)
                {
                    Save(j with { Entries = 0 });
                    return new InstallResult(InstallStatus.Reboot, Reboot: true);
                }
            }
            if (j.Phase == PendingUpdate.Rebooting)
            {
                var target = Enum.Parse<BootSlot>(j.TargetSlot!);
                if (env.Boot.Booted != target)
                {
                    throw new UpdateAbortedException($"the new OS in slot {target} did not boot within {_o.BootTries} tries; the unit runs {env.Boot.Booted?.ToString() ?? "the PROM"}");
                }
                j = Save(j with { Phase = PendingUpdate.Checking });
            }
            return await CheckAndCommitAsync(j, manifest, ct);
        }
        catch (ServerException e) when (e.IsTransient || e.IsSessionExpired)
        {
            Save(j with { Entries = 0 });
            return new InstallResult(InstallStatus.Transient, Error: e);
        }
        catch (UpdateAbortedException e) when (e.RetryLater)
        {
            var latest = Journal() ?? j;
            manifest ??= TryReadManifest(latest);
            var reboot = await RollBackAsync(latest, manifest, ct);
            var retries = latest.ScriptRetries + 1;
            if (retries > _o.ScriptRetryLimit)
            {
                return Fail(latest, $"{e.Message}; asked to retry later {retries} times, more than the limit of {_o.ScriptRetryLimit}: giving up", reboot);
            }
            env.Log($"update {latest.UpdateId}: {e.Message}; rolled back, will retry later ({retries} of {_o.ScriptRetryLimit})");
            Save(latest with { Phase = PendingUpdate.Verified, PreviousApps = null, TargetSlot = null, ScriptRetries = retries, Entries = 0 });
            return new InstallResult(reboot ? InstallStatus.Reboot : InstallStatus.RetryLater, Reboot: reboot);
        }
        catch (RestartLoopException e)
        {
            return Fail(j with { Attempts = Math.Max(j.Attempts, PendingUpdate.AttemptLimit) }, e.Message, e.Reboot);
        }
        catch (Exception e) when (e is UpdateAbortedException or ProtocolException or ServerException or IOException
                                   or InvalidDataException or HalException or ArgumentException or UnauthorizedAccessException)
        {
            var latest = Journal() ?? j;
            var reboot = false;
            if (latest.Phase != PendingUpdate.Downloading)
            {
                manifest ??= TryReadManifest(latest);
                reboot = await RollBackAsync(latest, manifest, ct);
            }
            return Fail(latest, e.Message, reboot);
        }
    }

    private InstallResult Fail(PendingUpdate j, string error, bool reboot)
    {
        env.Log($"update {j.UpdateId} failed: {error}");
        var report = new UpdateReport(j.UpdateId, false, error, env.Inventory());
        Save(j with { Phase = PendingUpdate.Failed, Report = report, PreviousApps = null, TargetSlot = null, Entries = 0 });
        DeleteWork(j.UpdateId);
        return new InstallResult(InstallStatus.Failed, report, Reboot: reboot);
    }

    // ---- 1-3: verify the manifest, check the target, download with resume ------------------------------------

    private async Task<(PendingUpdate, BundleManifest)> DownloadAsync(PendingUpdate j, UpdateOffer offer, CancellationToken ct)
    {
        var work = WorkDirectory(j.UpdateId);
        Directory.CreateDirectory(work);
        var downloader = new BundleDownloader(env.Source, Path.Combine(work, BundleFile), offer.Size, env.Log);
        var header = await downloader.FetchHeaderAsync(ct);
        var (manifest, keyId) = BundleVerifier.VerifyManifest(header, TrustedKeys(env.Identity, env.Store));
        if (manifest.BundleId != offer.UpdateId || manifest.ToPattern != offer.ToPattern)
        {
            throw new BundleCheckException(BundleCheck.Manifest,
                $"the signed manifest is bundle {manifest.BundleId} -> {manifest.ToPattern}; the host offered {offer.UpdateId} -> {offer.ToPattern}");
        }
        var now = env.TrustedNow?.Invoke() ?? new TimeReading(env.Time.GetUtcNow(), "the unit's own clock", false);
        BundleVerifier.CheckTarget(manifest, new BundleTarget(env.Identity.Board, env.Identity.HardwareVersion, env.OsVersion,
            env.CurrentPattern, Counter(env.Store), now.Now, now.Source));
        env.Log($"update {j.UpdateId}: manifest signed by release key {keyId}; bundle version {manifest.Version}, {manifest.Payloads.Count} payload(s), {header.PayloadOffset + manifest.PayloadBytes} bytes");
        await downloader.FetchPayloadsAsync(header, manifest, offer.Sha256, ct);
        j = Save(j with { Phase = PendingUpdate.Verified, Bundle = new BundleCounter(manifest.Version, manifest.BundleId), ToPattern = manifest.ToPattern });
        return (j, manifest);
    }

    /// <summary>Re-reads the downloaded bundle's header and verifies its signature again (the file sat on `data` across a restart).</summary>
    private async Task<BundleManifest> ReadVerifiedManifestAsync(PendingUpdate j, CancellationToken ct)
    {
        var path = Path.Combine(WorkDirectory(j.UpdateId), BundleFile);
        if (!File.Exists(path))
        {
            throw new IOException($"update {j.UpdateId}: phase {j.Phase} but {path} is gone");
        }
        await using var file = File.OpenRead(path);
        var header = await BundleFormat.ReadHeaderAsync(file, ct);
        return BundleVerifier.VerifyManifest(header, TrustedKeys(env.Identity, env.Store)).Manifest;
    }

    private BundleManifest? TryReadManifest(PendingUpdate j)
    {
        var path = Path.Combine(WorkDirectory(j.UpdateId), BundleFile);
        if (!File.Exists(path)) { return null; }
        try
        {
            using var file = File.OpenRead(path);
            var header = BundleFormat.ReadHeaderAsync(file, CancellationToken.None).GetAwaiter().GetResult();
            return BundleVerifier.VerifyManifest(header, TrustedKeys(env.Identity, env.Store)).Manifest;
        }
        catch (Exception e) when (e is ProtocolException or IOException)
        {
            env.Log($"update {j.UpdateId}: the downloaded bundle cannot be read for its rollback scripts ({e.Message})");
            return null;
        }
    }

    // ---- 4: extract, pre-install, switch ---------------------------------------------------------------------

    private async Task<PendingUpdate> InstallAsync(PendingUpdate j, BundleManifest m, CancellationToken ct)
    {
        var work = WorkDirectory(j.UpdateId);
        var payloadDir = Path.Combine(work, "payloads");
        await ExtractPayloadsAsync(j, m, payloadDir, ct);
        foreach (var step in m.Steps.Where(s => s is { Action: StepActions.InstallApplication }))
        {
            var p = m.Payloads.Single(x => x.Name == step.Payload);
            var tree = Path.Combine(work, "trees", p.Name);
            if (Directory.Exists(tree)) { Directory.Delete(tree, recursive: true); }
            await ExtractTreeAsync(Path.Combine(payloadDir, p.Name), tree, p.Name, ct);
        }
        await RunScriptsAsync(j, m, ScriptPhases.PreInstall, ct);

        var os = m.Payloads.SingleOrDefault(p => p.Kind == PayloadKinds.OsImage);
        BootSlot? target = os is null ? null : env.Boot.Booted == BootSlot.A ? BootSlot.B : BootSlot.A;
        j = Save(j with { Phase = PendingUpdate.Switching, PreviousApps = new Dictionary<string, string>(env.Apps.Current()), TargetSlot = target?.ToString() });
        env.Checkpoint?.Invoke("switching");
        var apps = m.Steps.Where(s => s.Action == StepActions.InstallApplication).Select(s => m.Payloads.Single(p => p.Name == s.Payload)).ToList();
        foreach (var p in apps)
        {
            env.Apps.Stage(p.Application!, p.Version!, Path.Combine(work, "trees", p.Name));
        }
        foreach (var p in apps)
        {
            env.Apps.Switch(p.Application!, p.Version!);
            env.Checkpoint?.Invoke($"switched {p.Application}");
        }
        if (os is not null && target is { } slot)
        {
            await using (var image = File.OpenRead(Path.Combine(payloadDir, os.Name)))
            {
                await env.Boot.WriteAsync(slot, image, os.Version!, ct);
            }
            env.Boot.Activate(slot, _o.BootTries);
            env.Log($"update {j.UpdateId}: OS {os.Version} written to slot {slot}, activated for {_o.BootTries} boot tries");
            return Save(j with { Phase = PendingUpdate.Rebooting });
        }
        return Save(j with { Phase = PendingUpdate.Checking });
    }

    /// <summary>Copies each payload out of the bundle, hashing it again: what is installed is what was verified.</summary>
    private async Task ExtractPayloadsAsync(PendingUpdate j, BundleManifest m, string payloadDir, CancellationToken ct)
    {
        if (Directory.Exists(payloadDir)) { Directory.Delete(payloadDir, recursive: true); }
        Directory.CreateDirectory(payloadDir);
        await using var bundle = File.OpenRead(Path.Combine(WorkDirectory(j.UpdateId), BundleFile));
        await BundleFormat.ReadHeaderAsync(bundle, ct);
        FileStream? current = null;
        string? currentName = null;
        try
        {
            await BundleVerifier.VerifyPayloadsAsync(bundle, m, ct, async (p, bytes, token) =>
            {
                if (currentName != p.Name)
                {
                    if (current is not null) { await current.DisposeAsync(); }
                    current = File.Create(Path.Combine(payloadDir, p.Name));
                    currentName = p.Name;
                }
                await current!.WriteAsync(bytes, token);
            });
        }
        finally
        {
            if (current is not null) { await current.DisposeAsync(); }
        }
        foreach (var p in m.Payloads.Where(p => p.Size == 0))
        {
            await File.WriteAllBytesAsync(Path.Combine(payloadDir, p.Name), [], ct);
        }
    }

    /// <summary>Unpacks an application tar: regular files and directories only, no path outside <paramref name="destination"/>.</summary>
    private static async Task ExtractTreeAsync(string tarPath, string destination, string payload, CancellationToken ct)
    {
        Directory.CreateDirectory(destination);
        var root = Path.GetFullPath(destination) + Path.DirectorySeparatorChar;
        await using var file = File.OpenRead(tarPath);
        await using var reader = new TarReader(file);
        while (await reader.GetNextEntryAsync(copyData: false, ct) is { } entry)
        {
            var target = Path.GetFullPath(Path.Combine(destination, entry.Name));
            if (!target.StartsWith(root, StringComparison.Ordinal))
            {
                throw new BundleCheckException(BundleCheck.Manifest, $"payload {payload}: entry '{entry.Name}' points outside its application tree");
            }
            switch (entry.EntryType)
            {
                case TarEntryType.Directory:
                    Directory.CreateDirectory(target);
                    break;
                case TarEntryType.RegularFile or TarEntryType.V7RegularFile:
                    Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                    await entry.ExtractToFileAsync(target, overwrite: false, ct);
                    break;
                default:
                    throw new BundleCheckException(BundleCheck.Manifest, $"payload {payload}: entry '{entry.Name}' is a {entry.EntryType}; only files and directories are allowed");
            }
        }
    }

    // ---- 5-6: scripts, health, commit or roll back ----------------------------------------------------------

    private async Task<InstallResult> CheckAndCommitAsync(PendingUpdate j, BundleManifest m, CancellationToken ct)
    {
        env.Checkpoint?.Invoke("checking");
        await RunScriptsAsync(j, m, ScriptPhases.PostInstall, ct);
        await HealthCheckAsync(j, m, ct);
        env.Checkpoint?.Invoke("committing");
        if (j.TargetSlot is { } slot)
        {
            env.Boot.MarkGood(Enum.Parse<BootSlot>(slot));
        }
        RaiseCounter(env.Store, new BundleCounter(m.Version, m.BundleId));
        if (m.IntroducesKeys is { Count: > 0 } || m.RetiresKeys is { Count: > 0 })
        {
            var keys = env.Store.Get(StateKeys.TrustedKeys, FirmwareJson.Default.TrustedKeys) ?? new TrustedKeys([], []);
            keys = new TrustedKeys(keys.Introduced.Union(m.IntroducesKeys ?? []).ToList(), keys.Retired.Union(m.RetiresKeys ?? []).ToList());
            env.Store.Set(StateKeys.TrustedKeys, keys, FirmwareJson.Default.TrustedKeys);
            env.Log($"update {j.UpdateId}: release keys introduced {(m.IntroducesKeys ?? []).Count}, retired {string.Join(", ", m.RetiresKeys ?? [])}");
        }
        var report = new UpdateReport(j.UpdateId, true, null, env.Inventory());
        Save(j with { Phase = PendingUpdate.Installed, Report = report, Entries = 0 });
        DeleteWork(j.UpdateId);
        env.Log($"update {j.UpdateId}: committed bundle version {m.Version}, pattern {m.ToPattern}");
        return new InstallResult(InstallStatus.Committed, report);
    }

    private async Task HealthCheckAsync(PendingUpdate j, BundleManifest m, CancellationToken ct)
    {
        // the window is measured on the monotonic clock: a change of the wall clock neither ends nor stretches it
        var started = env.Time.GetTimestamp();
        while (true)
        {
            var reason = await ProbeAsync(j, m, ct);
            if (reason is null)
            {
                return;
            }
            if (env.Time.GetElapsedTime(started) + _o.HealthProbeInterval > _o.HealthWindow)
            {
                throw new UpdateAbortedException($"health check failed within {_o.HealthWindow.TotalSeconds:0.#}s: {reason}");
            }
            env.Log($"update {j.UpdateId}: not healthy yet ({reason})");
            await Task.Delay(_o.HealthProbeInterval, env.Time, ct);
        }
    }

    private async Task<string?> ProbeAsync(PendingUpdate j, BundleManifest m, CancellationToken ct)
    {
        var current = env.Apps.Current();
        foreach (var p in m.Payloads.Where(p => p.Kind == PayloadKinds.Application))
        {
            if (!current.TryGetValue(p.Application!, out var v) || v != p.Version)
            {
                return $"application {p.Application} is not at {p.Version} (found {current.GetValueOrDefault(p.Application!) ?? "none"})";
            }
        }
        foreach (var s in m.Steps.Where(s => s is { Action: StepActions.RunScript, Phase: ScriptPhases.Health }))
        {
            var result = await RunScriptAsync(j, m, s, ct);
            if (result.Verdict != ScriptVerdict.Continue)
            {
                return result.Describe();
            }
        }
        return await env.HealthProbe(ct);
    }

    private async Task RunScriptsAsync(PendingUpdate j, BundleManifest m, string phase, CancellationToken ct)
    {
        foreach (var s in m.Steps.Where(s => s.Action == StepActions.RunScript && s.Phase == phase))
        {
            var result = await RunScriptAsync(j, m, s, ct);
            switch (result.Verdict)
            {
                case ScriptVerdict.Continue:
                    break;
                case ScriptVerdict.RetryLater:
                    throw new UpdateAbortedException(result.Describe(), retryLater: true);
                default:
                    throw new UpdateAbortedException(result.Describe());
            }
        }
    }

    private async Task<ScriptResult> RunScriptAsync(PendingUpdate j, BundleManifest m, BundleStep s, CancellationToken ct)
    {
        var work = WorkDirectory(j.UpdateId);
        var environment = new Dictionary<string, string>
        {
            ["TSUNAGU_BUNDLE_ID"] = m.BundleId,
            ["TSUNAGU_BUNDLE_VERSION"] = m.Version.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["TSUNAGU_FROM_PATTERN"] = env.CurrentPattern ?? "",
            ["TSUNAGU_TO_PATTERN"] = m.ToPattern,
            ["TSUNAGU_DATA"] = env.DataRoot,
            ["TSUNAGU_PAYLOADS"] = Path.Combine(work, "payloads"),
            ["TSUNAGU_STATE"] = Path.Combine(work, "script-state"),
            ["TSUNAGU_ATTEMPT"] = j.Attempts.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        Directory.CreateDirectory(Path.Combine(work, "script-state"));
        var timeout = s.TimeoutSeconds is { } seconds ? TimeSpan.FromSeconds(seconds) : _o.ScriptTimeout;
        var runner = new ScriptRunner(env.Time, _o.StderrCap, _o.Setsid);
        var result = await runner.RunAsync(Path.Combine(work, "payloads", s.Payload), s.Phase!, environment, Path.Combine(work, "script-state"), timeout, ct);
        env.Log($"update {j.UpdateId}: {result.Describe()}");
        return result;
    }

    /// <summary>
    /// Back to the previous verified pattern: rollback scripts (their failures are logged, never stop the rollback),
    /// the previous `current` link of every application, the new OS slot marked bad. True when the unit runs the
    /// bad slot and must reboot into the previous one.
    /// </summary>
    private async Task<bool> RollBackAsync(PendingUpdate j, BundleManifest? m, CancellationToken ct)
    {
        env.Log($"update {j.UpdateId}: rolling back to the previous pattern");
        if (m is not null && Directory.Exists(Path.Combine(WorkDirectory(j.UpdateId), "payloads")))
        {
            foreach (var s in m.Steps.Where(s => s is { Action: StepActions.RunScript, Phase: ScriptPhases.Rollback }))
            {
                var result = await RunScriptAsync(j, m, s, ct);
                if (result.Verdict != ScriptVerdict.Continue)
                {
                    env.Log($"update {j.UpdateId}: rollback continues although {result.Describe()}");
                }
            }
        }
        if (j.PreviousApps is { } previous)
        {
            var now = env.Apps.Current();
            foreach (var (name, version) in previous.Where(p => now.GetValueOrDefault(p.Key) != p.Value))
            {
                env.Apps.Switch(name, version);
            }
            foreach (var added in now.Keys.Where(n => !previous.ContainsKey(n)))
            {
                env.Apps.Unlink(added);
            }
        }
        if (j.TargetSlot is { } slotName)
        {
            var slot = Enum.Parse<BootSlot>(slotName);
            env.Boot.MarkBad(slot);
            return env.Boot.Booted == slot;
        }
        return false;
    }

    // ---- journal -----------------------------------------------------------------------------------------------

    private PendingUpdate? Journal() => env.Store.Get(StateKeys.PendingUpdate, FirmwareJson.Default.PendingUpdate);

    private PendingUpdate Save(PendingUpdate j)
    {
        env.Store.Set(StateKeys.PendingUpdate, j, FirmwareJson.Default.PendingUpdate);
        return j;
    }

    private void DeleteWork(string updateId)
    {
        var work = WorkDirectory(updateId);
        if (Directory.Exists(work)) { Directory.Delete(work, recursive: true); }
    }

    private sealed class RestartLoopException(string message, bool reboot) : Exception(message)
    {
        public bool Reboot { get; } = reboot;
    }
}
