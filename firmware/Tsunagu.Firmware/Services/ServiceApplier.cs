using System.Text.Json;
using Tsunagu.Firmware.Storage;
using Tsunagu.Hal;
using Tsunagu.Hal.Storage;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Services;

/// <summary>An apply that was refused or rolled back; <see cref="Step"/> says where (validate, reload, health check).</summary>
public sealed class ServiceApplyException(int revision, string step, string detail, Exception? inner = null)
    : Exception($"service configuration revision {revision}: {step}: {detail}", inner)
{
    public int Revision { get; } = revision;
    public string Step { get; } = step;
}

public sealed record ApplyReport(int Revision, ServiceChanges Changes, TimeSpan Elapsed);

/// <summary>
/// Applies service configurations on `data` as a transaction: render and stage `services/rev-N/` -> validate
/// with each daemon's own checker -> persist the transaction -> swap `services/current` (one rename) -> reload
/// what changed -> health check -> commit; on any failure the previous revision is pointed to and reloaded and
/// the reason is reported. A committed revision then waits for confirmation (the host was reached): if none
/// comes before the persisted deadline, the unit goes back to the last confirmed revision, also after a restart.
/// </summary>
public sealed class ServiceApplier : IDisposable
{
    private readonly IServiceManager _manager;
    private readonly StateStore _store;
    private readonly TimeProvider _time;
    private readonly Action<string> _log;
    private readonly TimeSpan _confirmTimeout;
    private readonly SemaphoreSlim _lock = new(1, 1);
    private readonly IDurableFileSystem _files;
    private CancellationTokenSource? _timer;

    public ServiceApplier(string dataRoot, IServiceManager manager, ServiceEnvironment environment, StateStore store, TimeProvider time,
        Action<string> log, TimeSpan confirmTimeout, IDurableFileSystem? files = null)
    {
        _files = files ?? PosixFileSystem.Instance;
        Root = Path.Combine(dataRoot, "services");
        Environment = environment;
        _manager = manager;
        _store = store;
        _time = time;
        _log = log;
        _confirmTimeout = confirmTimeout;
    }

    public string Root { get; }
    public ServiceEnvironment Environment { get; }
    private string CurrentLink => Path.Combine(Root, "current");

    /// <summary>The confirm timer's task while one is armed (tests await it).</summary>
    public Task? ConfirmTimer { get; private set; }

    /// <summary>Raised after a revert to the last confirmed revision: (reverted revision, reason).</summary>
    public event Action<int, string>? Reverted;

    /// <summary>The revision `current` points to, or null when no configuration is in force.</summary>
    public int? CurrentRevision()
    {
        var link = new FileInfo(CurrentLink);
        return link.LinkTarget is { } target && target.StartsWith("rev-", StringComparison.Ordinal) &&
               int.TryParse(target.AsSpan(4), out var revision) && Directory.Exists(Path.Combine(Root, target))
            ? revision
            : null;
    }

    public PendingConfirm? Pending => _store.Get(StateKeys.PendingConfirm, FirmwareJson.Default.PendingConfirm);
    public int? ConfirmedRevision => _store.Get(StateKeys.ConfirmedConfig, FirmwareJson.Default.ConfirmedConfig)?.Revision;

    /// <summary>
    /// At boot: finishes an apply that a restart interrupted (back to its previous revision), reverts an
    /// unconfirmed revision whose deadline passed while the unit was down, starts the services of the revision in
    /// force (the fail-closed firewall alone when there is none) and re-arms the confirm timer.
    /// </summary>
    public async Task StartAsync(CancellationToken ct)
    {
        await _lock.WaitAsync(ct);
        try
        {
            Directory.CreateDirectory(Root);
            Directory.CreateDirectory(Environment.RunDirectory);
            Directory.CreateDirectory(Environment.StateDirectory);
            if (_store.Get(StateKeys.ServiceTransaction, FirmwareJson.Default.ServiceTransaction) is { } interrupted)
            {
                _log($"services: apply of revision {interrupted.Revision} was interrupted; restoring revision {Show(interrupted.Previous)}");
                PointCurrent(interrupted.Previous);
                DeleteRevision(interrupted.Revision, keep: interrupted.Previous);
                _store.Delete(StateKeys.ServiceTransaction);
            }
            var pending = Pending;
            ServiceException? failed = null;
            if (pending is not null && pending.Deadline <= _time.GetUtcNow())
            {
                await RevertLockedAsync(pending, $"the host was not reached by {pending.Deadline:u} (deadline passed while the unit was down)", ct);
                pending = null;
            }
            else
            {
                try
                {
                    // every service is tried: one that does not start does not keep the ones after it (the firewall, DNS) down
                    var changes = await _manager.RestoreAsync(SpecsForCurrent(), ct);
                    _log($"services: revision {Show(CurrentRevision())} started: {changes}");
                }
                catch (ServiceException e)
                {
                    _log($"services: revision {Show(CurrentRevision())} started, but not every service: {e.Message}");
                    failed = e;
                }
                // a signature set the checker has not yet run on (placed before a restart, or a start a power cut stopped):
                // it stays only if clamd and c-icap run now
                if (CheckerOnNewSet())
                {
                    var down = CheckerDown(await _manager.CheckHealthAsync(ct));
                    if (down is null) { MarkCheckerStarted(); }
                    else { await RefuseSignaturesAsync(ReadCurrentConfiguration(), "start at boot", down, ct); }
                }
            }
            if (pending is not null)
            {
                ArmTimer(pending);
            }
            CleanUp();
            if (failed is not null)
            {
                // the confirm timer is armed and the rest runs: the caller hears of every service that did not start
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failed);
            }
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <exception cref="InvalidServiceConfigException">The configuration is invalid; nothing was changed.</exception>
    /// <exception cref="ServiceApplyException">A checker refused it (nothing changed), or reload or health check failed (the previous revision was restored).</exception>
    public async Task<ApplyReport> ApplyAsync(int revision, ServiceConfiguration configuration, CancellationToken ct)
    {
        await _lock.WaitAsync(ct);
        try
        {
            var started = _time.GetTimestamp();
            var files = ServiceRenderer.Render(configuration, Environment);
            var previous = CurrentRevision();
            if (previous == revision)
            {
                throw new ServiceApplyException(revision, "stage", "this revision is already in force");
            }
            var staged = Stage(revision, configuration, files);
            try
            {
                await _manager.ValidateAsync(ServiceCatalog.Build(configuration, Environment, staged, files), ct);
            }
            catch (ServiceException e)
            {
                Directory.Delete(staged, recursive: true);
                throw new ServiceApplyException(revision, "validate", e.Message, e);
            }

            // persist before risk: a restart from here on finds the transaction and restores `previous`
            _store.Set(StateKeys.ServiceTransaction, new ServiceTransaction(revision, previous, _time.GetUtcNow()), FirmwareJson.Default.ServiceTransaction);
            PointCurrent(revision);
            string? failure = null;
            ServiceChanges? changes = null;
            try
            {
                changes = await _manager.ApplyAsync(SpecsForCurrent(), ct);
                var problems = await _manager.CheckHealthAsync(ct);
                if (problems.Count > 0)
                {
                    failure = $"health check: {string.Join("; ", problems)}";
                }
            }
            catch (ServiceException e)
            {
                failure = $"reload: {e.Message}";
            }
            if (failure is not null)
            {
                _log($"services: revision {revision} failed ({failure}); restoring revision {Show(previous)}");
                await RestoreLockedAsync(previous, CancellationToken.None);
                DeleteRevision(revision, keep: previous);
                _store.Delete(StateKeys.ServiceTransaction);
                var step = failure[..failure.IndexOf(':')];
                throw new ServiceApplyException(revision, step, failure[(step.Length + 2)..]);
            }

            // commit
            if (_confirmTimeout > TimeSpan.Zero)
            {
                var pending = new PendingConfirm(revision, ConfirmedRevision, _time.GetUtcNow() + _confirmTimeout);
                _store.Set(StateKeys.PendingConfirm, pending, FirmwareJson.Default.PendingConfirm);
                ArmTimer(pending);
            }
            else
            {
                _store.Set(StateKeys.ConfirmedConfig, new ConfirmedConfig(revision, _time.GetUtcNow()), FirmwareJson.Default.ConfirmedConfig);
            }
            _store.Delete(StateKeys.ServiceTransaction);
            CleanUp();
            var report = new ApplyReport(revision, changes!, _time.GetElapsedTime(started));
            _log($"services: revision {revision} applied in {report.Elapsed.TotalMilliseconds:0} ms: {report.Changes}");
            if (CheckerOnNewSet()) { MarkCheckerStarted(); } // the revision passed its health check with the checker running
            if (ServiceRenderer.VirusScanWaits(configuration, Environment))
            {
                _log(Environment.SignaturesInstalled
                    ? "services: virus checking waits: it did not start on the signatures installed before; downloads pass unchecked until an " +
                      "update program installs other signatures"
                    : $"services: virus checking waits for its first signatures (none in {Environment.SignatureDirectory}): downloads pass unchecked " +
                      "until an update program installs them, then clamd and c-icap start");
            }
            return report;
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>The host was reached: the pending revision becomes the confirmed one. False when nothing was pending.</summary>
    public async Task<bool> ConfirmAsync(CancellationToken ct)
    {
        await _lock.WaitAsync(ct);
        try
        {
            if (Pending is not { } pending) { return false; }
            _store.Set(StateKeys.ConfirmedConfig, new ConfirmedConfig(pending.Revision, _time.GetUtcNow()), FirmwareJson.Default.ConfirmedConfig);
            _store.Delete(StateKeys.PendingConfirm);
            DisarmTimer();
            CleanUp();
            _log($"services: revision {pending.Revision} confirmed (host reached)");
            return true;
        }
        finally
        {
            _lock.Release();
        }
    }

    private void ArmTimer(PendingConfirm pending)
    {
        DisarmTimer();
        var cts = new CancellationTokenSource();
        _timer = cts;
        var due = pending.Deadline - _time.GetUtcNow();
        if (_confirmTimeout > TimeSpan.Zero && due > _confirmTimeout)
        {
            // the wall clock went back since the deadline was set: the wait never exceeds the confirm timeout
            due = _confirmTimeout;
        }
        // the delay starts now, not when a pool thread picks the task up
        var delay = Task.Delay(due > TimeSpan.Zero ? due : TimeSpan.Zero, _time, cts.Token);
        ConfirmTimer = RevertWhenDueAsync(pending, delay, cts.Token);
    }

    private async Task RevertWhenDueAsync(PendingConfirm pending, Task delay, CancellationToken ct)
    {
        try
        {
            await delay.ConfigureAwait(false);
            await _lock.WaitAsync(ct).ConfigureAwait(false);
            try
            {
                if (Pending is { } still && still == pending)
                {
                    await RevertLockedAsync(still, $"the host was not reached within {_confirmTimeout.TotalSeconds:0} s after applying it", CancellationToken.None);
                }
            }
            finally
            {
                _lock.Release();
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // confirmed, replaced or shut down
        }
        catch (Exception e) when (e is HalException or IOException or UnauthorizedAccessException)
        {
            _log($"services: revert of unconfirmed revision {pending.Revision} failed: {e.Message}");
        }
    }

    private void DisarmTimer()
    {
        _timer?.Cancel();
        _timer?.Dispose();
        _timer = null;
    }

    private async Task RevertLockedAsync(PendingConfirm pending, string reason, CancellationToken ct)
    {
        _log($"services: reverting revision {pending.Revision} to revision {Show(pending.Confirmed)}: {reason}");
        await RestoreLockedAsync(pending.Confirmed, ct);
        DeleteRevision(pending.Revision, keep: pending.Confirmed);
        _store.Delete(StateKeys.PendingConfirm);
        var error = $"reverted to revision {Show(pending.Confirmed)}: {reason}";
        _store.Set(StateKeys.AppliedConfig, new AppliedConfig(pending.Revision, false, error), FirmwareJson.Default.AppliedConfig);
        Reverted?.Invoke(pending.Revision, error);
    }

    /// <summary>
    /// Points `current` back at <paramref name="revision"/> (none: removes it) and runs what it describes: every service is
    /// tried even when one of them does not start again (<see cref="IServiceManager.RestoreAsync"/>), and the health check
    /// runs either way, so the log says what is still wrong. The revision stays in force.
    /// </summary>
    private async Task RestoreLockedAsync(int? revision, CancellationToken ct)
    {
        PointCurrent(revision);
        string outcome;
        try
        {
            outcome = (await _manager.RestoreAsync(SpecsForCurrent(), ct)).ToString();
        }
        catch (ServiceException e)
        {
            outcome = $"but a service did not start again: {e.Message}";
        }
        var problems = await _manager.CheckHealthAsync(ct);
        _log($"services: revision {Show(CurrentRevision())} restored: {outcome}" + (problems.Count == 0 ? "" : $"; still unhealthy: {string.Join("; ", problems)}"));
    }

    private string Stage(int revision, ServiceConfiguration configuration, IReadOnlyDictionary<string, string> files)
    {
        Directory.CreateDirectory(Root);
        var staging = Path.Combine(Root, $".staging-{revision}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(staging);
        foreach (var (file, content) in files)
        {
            WriteDurably(Path.Combine(staging, file), content);
        }
        WriteDurably(Path.Combine(staging, "configuration.json"), JsonSerializer.Serialize(configuration, ProtocolJson.Default.ServiceConfiguration));
        _files.SyncDirectory(staging);
        var final = RevisionDirectory(revision);
        if (Directory.Exists(final))
        {
            Directory.Delete(final, recursive: true);
        }
        _files.Rename(staging, final);
        _files.SyncDirectory(Root);
        return final;
    }

    private static void WriteDurably(string path, string content)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        using (var writer = new StreamWriter(stream, leaveOpen: true)) { writer.Write(content); }
        stream.Flush(flushToDisk: true);
    }

    private string RevisionDirectory(int revision) => Path.Combine(Root, $"rev-{revision}");

    private void PointCurrent(int? revision)
    {
        if (revision is { } r && Directory.Exists(RevisionDirectory(r)))
        {
            AtomicLink.Point(CurrentLink, $"rev-{r}", _files);
        }
        else if (new FileInfo(CurrentLink).LinkTarget is not null)
        {
            AtomicLink.Remove(CurrentLink, _files);
        }
    }

    private void DeleteRevision(int revision, int? keep)
    {
        if (revision != keep && Directory.Exists(RevisionDirectory(revision)))
        {
            Directory.Delete(RevisionDirectory(revision), recursive: true);
        }
    }

    /// <summary>
    /// Writes the revision in force's files again where their rendering changed although its configuration did not, because
    /// of what is on the unit: dnsmasq.conf when the content filter's category lists installed since changed (a list's
    /// domains are domain names by grammar, so they cannot make dnsmasq refuse the file), and squid.conf, clamd.conf and
    /// c-icap.conf when virus checking starts or stops waiting for signatures (<see cref="ServiceRenderer.VirusScanWaits"/>:
    /// the first signatures installed add the checker and squid's ICAP hop). The other files depend on the configuration
    /// alone and stay as their checkers passed them. Each file is replaced whole (written beside it, synced, renamed): a
    /// power cut leaves the old file or the new one, and a leftover of a write that failed is removed.
    /// <para>
    /// clamd.conf is the last of the three written and the last deleted: it is there exactly when the other two were
    /// written for checking (<see cref="VirusScanRuns"/> reads it), and a change that stopped half-way (a write that failed,
    /// a power cut) is finished the next time, since the three are compared with their rendering whenever either the
    /// rendering or the revision has a checker file.
    /// </para>
    /// </summary>
    private void RenderAgain(IReadOnlyDictionary<string, string> files)
    {
        if (Replace(ServiceRenderer.Dnsmasq, files[ServiceRenderer.Dnsmasq]))
        {
            _log($"services: {ServiceRenderer.Dnsmasq} of revision {Show(CurrentRevision())} rendered again (the category lists on the unit changed)");
        }
        var scanning = files.ContainsKey(ServiceRenderer.Clamd);
        if (!scanning && !File.Exists(Path.Combine(CurrentLink, ServiceRenderer.Clamd)) && !File.Exists(Path.Combine(CurrentLink, ServiceRenderer.CIcap))) { return; }
        var written = new List<string>();
        string[] order = scanning
            ? [ServiceRenderer.CIcap, ServiceRenderer.Squid, ServiceRenderer.Clamd]
            : [ServiceRenderer.Squid, ServiceRenderer.CIcap, ServiceRenderer.Clamd];
        foreach (var name in order)
        {
            if (files.TryGetValue(name, out var content))
            {
                if (Replace(name, content)) { written.Add(name); }
            }
            else if (File.Exists(Path.Combine(CurrentLink, name)))
            {
                _files.DeleteFile(Path.Combine(CurrentLink, name));
                _files.SyncDirectory(Path.Combine(Root, new FileInfo(CurrentLink).LinkTarget!));
                written.Add(name);
            }
        }
        if (written.Count == 0) { return; }
        _log($"services: {string.Join(", ", written)} of revision {Show(CurrentRevision())} rendered again " +
             (scanning ? "(signatures are installed: virus checking starts)" : "(no signatures are installed: virus checking waits for them)"));
    }

    /// <summary>Replaces the revision in force's file <paramref name="name"/> with <paramref name="content"/>; false when it is so already.</summary>
    private bool Replace(string name, string content)
    {
        var path = Path.Combine(CurrentLink, name);
        if (File.Exists(path) && File.ReadAllText(path) == content) { return false; }
        var temporary = path + ".new";
        try
        {
            File.Delete(temporary);
            WriteDurably(temporary, content);
            _files.Rename(temporary, path);
            _files.SyncDirectory(Path.Combine(Root, new FileInfo(CurrentLink).LinkTarget!));
        }
        finally
        {
            File.Delete(temporary);
        }
        return true;
    }

    /// <summary>
    /// After something the rendering reads changed on the unit (an update installed or rolled back the content filter's
    /// category lists): renders the revision in force again and reloads the services whose files changed; nothing else is
    /// touched. A service that does not take its new file is logged (the unit keeps running; the next apply or boot tries
    /// again), never thrown: the update that caused it has already succeeded or been rolled back.
    /// </summary>
    public async Task RefreshAsync(string why, CancellationToken ct)
    {
        await _lock.WaitAsync(ct);
        try
        {
            if (CurrentRevision() is null) { return; }
            ServiceConfiguration configuration;
            try
            {
                configuration = ReadCurrentConfiguration();
            }
            catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
            {
                // what runs stays as it is: a refresh never falls back to the fail-closed firewall (a start does)
                _log($"services: refresh ({why}) skipped: the configuration in force is unreadable ({e.Message})");
                return;
            }
            var specs = SpecsFor(configuration);
            var newSet = CheckerOnNewSet();
            ServiceChanges changes;
            try
            {
                changes = await _manager.ApplyAsync(specs, ct);
            }
            catch (ServiceException e) when (newSet && IsChecker(e.Service))
            {
                await RefuseSignaturesAsync(configuration, why, e.Message, ct);
                return;
            }
            var changed = changes.Started.Count + changes.Reloaded.Count + changes.Restarted.Count + changes.Stopped.Count > 0;
            if (!changed && !newSet)
            {
                return; // nothing it reads changed (the usual case): no health check's settling, no log line
            }
            var problems = await _manager.CheckHealthAsync(ct);
            if (newSet)
            {
                if (CheckerDown(problems) is { } down)
                {
                    await RefuseSignaturesAsync(configuration, why, down, ct);
                    return;
                }
                MarkCheckerStarted();
            }
            if (!changed) { return; }
            _log($"services: revision {Show(CurrentRevision())} refreshed ({why}): {changes}" +
                 (problems.Count == 0 ? "" : $"; unhealthy: {string.Join("; ", problems)}"));
        }
        catch (Exception e) when (e is HalException or IOException or UnauthorizedAccessException)
        {
            _log($"services: refreshing revision {Show(CurrentRevision())} ({why}) failed: {e.Message}");
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>clamd or c-icap: the checker (squid's own failures, a full HDD say, are not the signatures').</summary>
    private static bool IsChecker(string service) => service is ServiceCatalog.VirusEngine or ServiceCatalog.VirusIcap;

    /// <summary>
    /// Whether the revision in force runs the checker (its files include clamd.conf) on a signature set it has not run on
    /// healthy yet (<see cref="ServiceEnvironment.StartedSignaturesFile"/>): new signatures placed while clamd did not
    /// run, or a start that a failure elsewhere, a cancellation or a power cut stopped before it was seen healthy.
    /// </summary>
    private bool CheckerOnNewSet() =>
        VirusScanRuns() && Environment.SignatureSet() is { } set &&
        !(File.Exists(Environment.StartedSignaturesFile) && File.ReadAllText(Environment.StartedSignaturesFile).Trim() == set);

    /// <summary>Why clamd or c-icap does not serve (not running, or a health problem of theirs), or null when both do.</summary>
    private string? CheckerDown(IReadOnlyList<string> problems)
    {
        var status = _manager.Status();
        var down = new List<string>();
        foreach (var name in new[] { ServiceCatalog.VirusEngine, ServiceCatalog.VirusIcap })
        {
            var service = status.FirstOrDefault(s => s.Name == name);
            if (service is { State: ServiceState.Running }) { continue; }
            down.Add(service is null ? $"{name}: not started" : $"{name}: {service.State}" + (service.LastError is { } error ? $" ({error})" : ""));
        }
        down.AddRange(problems.Where(p => IsChecker(p[..Math.Max(0, p.IndexOf(':'))])));
        return down.Count == 0 ? null : string.Join("; ", down);
    }

    /// <summary>Records (durably) that the checker runs healthy on the installed signature set.</summary>
    private void MarkCheckerStarted()
    {
        if (Environment.SignatureSet() is not { } set) { return; }
        try
        {
            var temporary = Environment.StartedSignaturesFile + ".new";
            WriteDurably(temporary, set + "\n");
            _files.Rename(temporary, Environment.StartedSignaturesFile);
            _files.SyncDirectory(Environment.StateDirectory);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // the next refresh or boot takes the set as new again and checks the checker once more: nothing is lost
            _log($"services: recording the signature set the checker runs on failed: {e.Message}");
        }
    }

    /// <summary>
    /// Virus checking did not start on the signature set just installed (clamd could not load it in time, c-icap did not
    /// serve): the set is marked refused (<see cref="ServiceEnvironment.RefusedSignaturesFile"/>, durably), so the rendering
    /// waits again, and the services are applied as waiting: clamd and c-icap stopped, squid without its ICAP hop, so
    /// downloads pass unchecked rather than all fail. The next set installed (a new database) tries again; a new revision
    /// that gives virus checking waits too. Logged, never thrown (the update that installed the set has succeeded). Under
    /// the lock.
    /// </summary>
    private async Task RefuseSignaturesAsync(ServiceConfiguration configuration, string why, string failure, CancellationToken ct)
    {
        var set = Environment.SignatureSet();
        _log($"services: virus checking did not start on the signatures installed ({why}): {failure}; it waits for other signatures, " +
             "and downloads pass unchecked meanwhile");
        try
        {
            if (set is not null)
            {
                // (if this write fails the rendering still has the checker: the catch below logs it, and the next refresh or
                // boot takes the set as new again)
                var temporary = Environment.RefusedSignaturesFile + ".new";
                WriteDurably(temporary, set + "\n");
                _files.Rename(temporary, Environment.RefusedSignaturesFile);
                _files.SyncDirectory(Environment.StateDirectory);
            }
            var changes = await _manager.ApplyAsync(SpecsFor(configuration), ct);
            var problems = await _manager.CheckHealthAsync(ct);
            _log($"services: revision {Show(CurrentRevision())} back to waiting for signatures: {changes}" +
                 (problems.Count == 0 ? "" : $"; unhealthy: {string.Join("; ", problems)}"));
        }
        catch (Exception e) when (e is ServiceException or IOException or UnauthorizedAccessException)
        {
            _log($"services: going back to waiting for signatures failed: {e.Message}");
        }
    }

    private ServiceConfiguration ReadCurrentConfiguration() =>
        JsonSerializer.Deserialize(File.ReadAllText(Path.Combine(CurrentLink, "configuration.json")), ProtocolJson.Default.ServiceConfiguration)
        ?? throw new JsonException("empty document");

    /// <summary>The services of `current`, or the fail-closed firewall alone when no revision is in force.</summary>
    private IReadOnlyList<ServiceSpec> SpecsForCurrent()
    {
        if (CurrentRevision() is not null)
        {
            try
            {
                return SpecsFor(ReadCurrentConfiguration());
            }
            catch (Exception e) when (e is JsonException or IOException or InvalidServiceConfigException)
            {
                _log($"services: {Path.Combine(CurrentLink, "configuration.json")} unusable ({e.Message}); running the fail-closed firewall alone");
            }
        }
        var failClosed = Path.Combine(Root, "fail-closed.nft");
        var ruleset = ServiceRenderer.RenderFailClosed(Environment);
        File.WriteAllText(failClosed, ruleset);
        return ServiceCatalog.FailClosed(failClosed, ruleset);
    }

    /// <summary>
    /// The services of <paramref name="configuration"/>, the configuration in force: its dnsmasq.conf rendered again first
    /// when the category lists changed, and each service's digest of its file as it is on disk (what the daemon reads).
    /// </summary>
    private IReadOnlyList<ServiceSpec> SpecsFor(ServiceConfiguration configuration)
    {
        if (configuration.Vpn.Enabled)
        {
            EnsureVpnKey();
        }
        var files = new Dictionary<string, string>(ServiceRenderer.Render(configuration, Environment), StringComparer.Ordinal);
        try
        {
            RenderAgain(files);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // the services still run the revision's files as they are: better than the fail-closed firewall alone
            _log($"services: the files of the revision in force could not be rendered again ({e.Message}); they stay as they are");
        }
        foreach (var name in files.Keys.ToList())
        {
            var path = Path.Combine(CurrentLink, name);
            if (File.Exists(path)) { files[name] = File.ReadAllText(path); }
        }
        // the checker runs as the revision's files say (a rendering that could not be written is not run; files a removal
        // could not delete yet still are)
        foreach (var name in new[] { ServiceRenderer.Clamd, ServiceRenderer.CIcap })
        {
            var path = Path.Combine(CurrentLink, name);
            if (File.Exists(path)) { files[name] = File.ReadAllText(path); }
            else { files.Remove(name); }
        }
        return ServiceCatalog.Build(configuration, Environment, CurrentLink, files);
    }

    /// <summary>
    /// The unit's WireGuard private key (<see cref="WireGuardKeys"/>), derived from the factory secret and given by the
    /// boot; null where no factory identity is at hand (then a random key is made once on `data`, as a unit without a
    /// factory secret would need).
    /// </summary>
    public byte[]? VpnPrivateKey { get; init; }

    /// <summary>
    /// Whether the revision in force runs virus checking (clamd): its files include clamd.conf, which they do from the apply
    /// or refresh that found the configuration giving it and signatures installed. Not the rendering of this moment: the
    /// first signatures placed by an update (clamd not running yet) make the rendering include clamd before the refresh
    /// after the update starts it, and a second database of the same update must not be reloaded into a clamd that is not
    /// there. False without a revision in force.
    /// </summary>
    public bool VirusScanRuns() => CurrentRevision() is not null && File.Exists(Path.Combine(CurrentLink, ServiceRenderer.Clamd));

    /// <summary>
    /// What the unit tells the host of its VPN: the public key of <see cref="VpnPrivateKey"/> and the listen port of the
    /// configuration in force (null while the VPN is off or no configuration is in force). Null without a derived key.
    /// </summary>
    public UnitVpnReport? VpnReport()
    {
        if (VpnPrivateKey is not { } key) { return null; }
        int? port = null;
        if (CurrentRevision() is not null)
        {
            try
            {
                var configuration = JsonSerializer.Deserialize(File.ReadAllText(Path.Combine(CurrentLink, "configuration.json")), ProtocolJson.Default.ServiceConfiguration);
                port = configuration?.Vpn is { Enabled: true } vpn ? vpn.ListenPort : null;
            }
            catch (Exception e) when (e is JsonException or IOException)
            {
                _log($"services: the configuration in force is unreadable ({e.Message}); the VPN is reported without a port");
            }
        }
        return new UnitVpnReport(WireGuardKeys.ToText(WireGuardKeys.PublicKey(key)), port);
    }

    /// <summary>How long the ready report waits for squid's counters before it goes without them.</summary>
    public static readonly TimeSpan CacheStatisticsTimeout = TimeSpan.FromSeconds(3);

    /// <summary>
    /// The cache's statistics for the ready report (<see cref="CacheStatistics"/>): null when the configuration in force runs
    /// no cache (no cache disk, or the cache off), or when squid does not answer (logged; the report goes without them).
    /// </summary>
    public async Task<UnitCacheReport?> CacheReportAsync(CancellationToken ct)
    {
        if (CurrentRevision() is null) { return null; }
        ServiceConfiguration? configuration;
        try
        {
            configuration = JsonSerializer.Deserialize(File.ReadAllText(Path.Combine(CurrentLink, "configuration.json")), ProtocolJson.Default.ServiceConfiguration);
        }
        catch (Exception e) when (e is JsonException or IOException)
        {
            _log($"services: the configuration in force is unreadable ({e.Message}); the ready report goes without cache statistics");
            return null;
        }
        if (configuration is null || !ServiceRenderer.CacheRuns(configuration, Environment)) { return null; }
        using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = CacheStatisticsTimeout };
        try
        {
            return await CacheStatistics.ReadAsync(http, configuration.Dhcp.LanAddress, Environment.CachePort, ct);
        }
        catch (CacheStatisticsException e)
        {
            _log($"services: no cache statistics for the ready report: {e.Message}");
            return null;
        }
    }

    /// <summary>
    /// Writes the unit's WireGuard private key to `data` (mode 0600) for `wg set private-key`: the derived key, rewritten
    /// when the file holds anything else (a wipe, or a random key of an older release); without a derived key, a random
    /// one made once. The key is never sent anywhere; the host only ever learns the public key.
    /// </summary>
    private void EnsureVpnKey()
    {
        var path = Environment.VpnKeyFile;
        var text = VpnPrivateKey is { } derived ? WireGuardKeys.ToText(derived) + "\n" : null;
        if (File.Exists(path) && (text is null || File.ReadAllText(path) == text)) { return; }
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        if (text is null)
        {
            var key = System.Security.Cryptography.RandomNumberGenerator.GetBytes(WireGuardKeys.KeyBytes);
            WireGuardKeys.Clamp(key);
            text = WireGuardKeys.ToText(key) + "\n";
        }
        var tmp = $"{path}.{Guid.NewGuid():N}";
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }
        using (var stream = new FileStream(tmp, options))
        {
            using (var writer = new StreamWriter(stream, leaveOpen: true)) { writer.Write(text); }
        }
        _files.SyncFile(tmp);
        _files.Rename(tmp, path);
        _files.SyncDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        _log($"services: wrote the unit's WireGuard key {path} ({(VpnPrivateKey is null ? "random" : "derived from the factory secret")})");
    }

    /// <summary>Keeps the revision in force, the confirmed one and the pending one; removes other revisions and leftovers of staging.</summary>
    private void CleanUp()
    {
        var keep = new HashSet<string?> { CurrentRevision() is { } c ? $"rev-{c}" : null, ConfirmedRevision is { } k ? $"rev-{k}" : null, Pending is { } p ? $"rev-{p.Revision}" : null };
        foreach (var dir in Directory.GetDirectories(Root))
        {
            var name = Path.GetFileName(dir);
            if ((name.StartsWith("rev-", StringComparison.Ordinal) && !keep.Contains(name)) || name.StartsWith(".staging-", StringComparison.Ordinal))
            {
                Directory.Delete(dir, recursive: true);
            }
        }
    }

    private static string Show(int? revision) => revision?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none";

    public void Dispose()
    {
        DisarmTimer();
        _lock.Dispose();
    }
}
