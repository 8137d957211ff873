namespace Tsunagu.Hal;

public sealed record ServiceManagerOptions
{
    /// <summary>A daemon that crashes this many times within <see cref="CrashWindow"/> is left stopped (crash loop).</summary>
    public int CrashLimit { get; init; } = 5;
    public TimeSpan CrashWindow { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>Wait before restarting a crashed daemon, multiplied by the number of recent crashes.</summary>
    public TimeSpan RestartDelay { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Between SIGTERM and SIGKILL when a daemon is stopped.</summary>
    public TimeSpan StopGrace { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>How long a freshly started daemon may take to accept its configure commands.</summary>
    public TimeSpan ConfigureTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How long services run before the health check looks at them.</summary>
    public TimeSpan HealthSettle { get; init; } = TimeSpan.FromSeconds(1);

    public TimeSpan CommandTimeout { get; init; } = TimeSpan.FromSeconds(30);
}

/// <summary>Which of a service's commands the service manager runs.</summary>
public enum ServiceStep { Check, Setup, Configure, Ready, Probe }

/// <summary>What the service manager does to a service, as it does it.</summary>
public enum ServiceAction { Validate, Start, Reload, Restart, Stop }

/// <summary>
/// The mechanism below <see cref="ServiceManager"/>: runs a service's commands and starts its daemon. On a unit, real
/// processes through an <see cref="ICommandRunner"/> (<see cref="CommandRunnerProcesses"/>); in the simulation, fake
/// ones. The service name and step are given so a fake can inject faults per service.
/// </summary>
public interface IServiceProcesses
{
    /// <exception cref="CommandException">The program was not found, could not start, or exceeded its timeout.</exception>
    Task<CommandResult> RunAsync(string service, ServiceStep step, CommandLine command, CommandOptions options, CancellationToken cancellationToken);

    /// <exception cref="CommandException">The daemon was not found or could not start.</exception>
    IRunningCommand StartDaemon(string service, CommandLine daemon, CommandOptions options);
}

/// <summary>Service processes as real programs, through an <see cref="ICommandRunner"/>.</summary>
public sealed class CommandRunnerProcesses(ICommandRunner runner) : IServiceProcesses
{
    public Task<CommandResult> RunAsync(string service, ServiceStep step, CommandLine command, CommandOptions options, CancellationToken cancellationToken) =>
        runner.RunAsync(command, options, cancellationToken);

    public IRunningCommand StartDaemon(string service, CommandLine daemon, CommandOptions options) => runner.Start(daemon, options);
}

/// <summary>
/// The service manager's policy (the procd model), independent of how processes run: validates configurations with
/// their checkers, starts new services, reloads a running daemon in place when only its configure commands changed,
/// restarts it otherwise, stops services no longer listed, leaves unchanged ones alone (a running daemon whose configure
/// commands failed is not unchanged: the next apply runs them again, and the health check reports it); restarts a crashed daemon
/// after a growing delay and leaves it stopped (<see cref="ServiceState.CrashLoop"/>) after
/// <see cref="ServiceManagerOptions.CrashLimit"/> crashes within <see cref="ServiceManagerOptions.CrashWindow"/>.
/// <paramref name="onAction"/> hears each action as it is taken.
/// </summary>
public class ServiceManager(IServiceProcesses processes, ServiceManagerOptions? options = null, TimeProvider? time = null,
    Action<string>? log = null, Action<ServiceAction, string>? onAction = null) : IServiceManager
{
    private readonly IServiceProcesses _processes = processes;
    private readonly Action<ServiceAction, string>? _onAction = onAction;
    private readonly ServiceManagerOptions _options = options ?? new ServiceManagerOptions();
    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private readonly Action<string> _log = log ?? (_ => { });
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly List<Entry> _entries = [];
    private readonly CancellationTokenSource _disposed = new();

    private sealed class Entry(ServiceSpec spec)
    {
        public ServiceSpec Spec { get; set; } = spec;
        public IRunningCommand? Process { get; set; }
        public ServiceState State { get; set; } = ServiceState.Stopped;
        public List<DateTimeOffset> Crashes { get; } = [];
        public int Restarts { get; set; }
        public string? LastError { get; set; }

        /// <summary>The daemon accepted the configure commands of <see cref="Spec"/> (false while they have not run or failed).</summary>
        public bool Configured { get; set; }

        /// <summary>Bumped whenever the manager itself starts or stops the daemon.</summary>
        public int Generation { get; set; }

        /// <summary>
        /// Crash restarts in a row whose daemon did not get ready (or did not start): counted toward the crash loop with
        /// the crashes of the window, but not aged out by it (a ready attempt may last longer than the window).
        /// </summary>
        public int FailedRestarts { get; set; }

        /// <summary>Cancels a crash restart's wait for readiness (which runs without the gate) when the manager stops the daemon.</summary>
        public CancellationTokenSource? Attempt { get; set; }
    }

    public async Task ValidateAsync(IReadOnlyList<ServiceSpec> services, CancellationToken cancellationToken)
    {
        foreach (var spec in services)
        {
            _onAction?.Invoke(ServiceAction.Validate, spec.Name);
            foreach (var check in spec.Checks)
            {
                var result = await Run(spec.Name, ServiceStep.Check, check, _options.CommandTimeout, cancellationToken);
                if (!result.Succeeded)
                {
                    throw new ServiceException(spec.Name, $"configuration refused by `{check}` (exit {result.ExitCode}): {result.Diagnostic()}");
                }
            }
        }
    }

    public Task<ServiceChanges> ApplyAsync(IReadOnlyList<ServiceSpec> services, CancellationToken cancellationToken) =>
        ApplyCoreAsync(services, keepGoing: false, cancellationToken);

    public Task<ServiceChanges> RestoreAsync(IReadOnlyList<ServiceSpec> services, CancellationToken cancellationToken) =>
        ApplyCoreAsync(services, keepGoing: true, cancellationToken);

    private async Task<ServiceChanges> ApplyCoreAsync(IReadOnlyList<ServiceSpec> services, bool keepGoing, CancellationToken cancellationToken)
    {
        List<string> started = [], reloaded = [], restarted = [], stopped = [], unchanged = [];
        List<ServiceException> failures = [];
        await _gate.WaitAsync(cancellationToken);
        try
        {
            var wanted = services.Select(s => s.Name).ToHashSet(StringComparer.Ordinal);
            foreach (var gone in _entries.Where(e => !wanted.Contains(e.Spec.Name)).Reverse().ToList())
            {
                await StopEntryAsync(gone, cancellationToken);
                _entries.Remove(gone);
                stopped.Add(gone.Spec.Name);
                _onAction?.Invoke(ServiceAction.Stop, gone.Spec.Name);
            }
            var ordered = new List<Entry>();
            foreach (var spec in services)
            {
                var entry = _entries.FirstOrDefault(e => e.Spec.Name == spec.Name);
                var isNew = entry is null;
                if (entry is null)
                {
                    entry = new Entry(spec);
                    _entries.Add(entry);
                }
                try
                {
                    if (isNew)
                    {
                        _onAction?.Invoke(ServiceAction.Start, spec.Name);
                        await StartEntryAsync(entry, cancellationToken);
                        started.Add(spec.Name);
                    }
                    else if (entry.Spec.Digest == spec.Digest && (entry.State == ServiceState.Done || entry is { State: ServiceState.Running, Configured: true }))
                    {
                        unchanged.Add(spec.Name);
                    }
                    else if (CanReloadInPlace(entry, spec))
                    {
                        entry.Spec = spec;
                        _onAction?.Invoke(ServiceAction.Reload, spec.Name);
                        await ConfigureEntryAsync(entry, entry.Process!, cancellationToken);
                        reloaded.Add(spec.Name);
                    }
                    else
                    {
                        var hadDaemon = entry.Process is not null;
                        _onAction?.Invoke(hadDaemon ? ServiceAction.Restart : ServiceAction.Reload, spec.Name);
                        await StopEntryAsync(entry, cancellationToken);
                        entry.Spec = spec;
                        entry.Crashes.Clear();
                        entry.FailedRestarts = 0;
                        await StartEntryAsync(entry, cancellationToken);
                        (hadDaemon ? restarted : reloaded).Add(spec.Name);
                    }
                }
                catch (HalException e) when (keepGoing)
                {
                    // a restore runs every service it can: one that does not start again (or whose command cannot be
                    // run or hangs) does not keep the others down
                    failures.Add(e as ServiceException ?? new ServiceException(spec.Name, e.Message, e));
                }
                ordered.Add(entry);
            }
            _entries.Clear();
            _entries.AddRange(ordered);
        }
        finally
        {
            _gate.Release();
        }
        var changes = new ServiceChanges(started, reloaded, restarted, stopped, unchanged);
        _log($"services: {changes}" + (failures.Count == 0 ? "" : $"; failed: {string.Join("; ", failures.Select(f => f.Message))}"));
        if (failures.Count > 0)
        {
            throw new ServiceException(failures[0].Service,
                string.Join("; ", failures.Select(f => f.Message)).Substring(failures[0].Service.Length + 2) +
                $" (the other services were applied: {changes})", failures[0]);
        }
        return changes;
    }

    private static bool CanReloadInPlace(Entry entry, ServiceSpec spec) =>
        entry is { State: ServiceState.Running, Process.Exited.IsCompleted: false } && spec.Configure.Count > 0 &&
        spec.Daemon == entry.Spec.Daemon && spec.Setup.SequenceEqual(entry.Spec.Setup);

    public async Task<IReadOnlyList<string>> CheckHealthAsync(CancellationToken cancellationToken)
    {
        await Task.Delay(_options.HealthSettle, _time, cancellationToken);
        var problems = new List<string>();
        List<Entry> entries;
        await _gate.WaitAsync(cancellationToken);
        try { entries = [.. _entries]; }
        finally { _gate.Release(); }
        foreach (var entry in entries)
        {
            var name = entry.Spec.Name;
            if (entry.Spec.Daemon is not null && (entry.State != ServiceState.Running || entry.Process is null || entry.Process.Exited.IsCompleted))
            {
                problems.Add($"{name}: daemon not running ({entry.State}{(entry.LastError is null ? "" : ": " + entry.LastError)})");
                continue;
            }
            if (entry.Spec.Daemon is not null && !entry.Configured)
            {
                problems.Add($"{name}: daemon not configured ({entry.LastError ?? "configure commands not run"})");
                continue;
            }
            if (entry.Spec.Daemon is null && entry.State != ServiceState.Done)
            {
                problems.Add($"{name}: not set up ({entry.State})");
                continue;
            }
            foreach (var probe in entry.Spec.Ready.Concat(entry.Spec.Probes))
            {
                // a probe that cannot be run or does not finish in time is a failed probe, as a configure or ready attempt is
                var (succeeded, failure) = await AttemptAsync(name, ServiceStep.Probe, probe, _options.CommandTimeout, cancellationToken);
                if (!succeeded)
                {
                    problems.Add($"{name}: probe `{probe}` failed {failure}");
                }
            }
        }
        return problems;
    }

    public IReadOnlyList<ServiceStatus> Status()
    {
        _gate.Wait();
        try
        {
            return _entries.Select(e => new ServiceStatus(e.Spec.Name, e.State, e.Spec.Digest, e.Restarts, e.LastError)).ToList();
        }
        finally
        {
            _gate.Release();
        }
    }

    public async Task StopAllAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            foreach (var entry in Enumerable.Reverse(_entries).ToList())
            {
                _onAction?.Invoke(ServiceAction.Stop, entry.Spec.Name);
                await StopEntryAsync(entry, cancellationToken);
            }
            _entries.Clear();
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Set-up, daemon, configure. Called with the gate held.</summary>
    private async Task StartEntryAsync(Entry entry, CancellationToken ct)
    {
        var process = await LaunchAsync(entry, ct);
        if (process is null) { return; }
        entry.State = ServiceState.Running;
        _ = WatchAsync(entry, process, ++entry.Generation);
        await ConfigureEntryAsync(entry, process, ct);
    }

    /// <summary>
    /// Set-up, then the daemon (none: the service is <see cref="ServiceState.Done"/> and null is returned). The started
    /// daemon is the entry's process; its state is left to the caller. Called with the gate held.
    /// </summary>
    private async Task<IRunningCommand?> LaunchAsync(Entry entry, CancellationToken ct)
    {
        var spec = entry.Spec;
        foreach (var step in spec.Setup)
        {
            var result = await Run(spec.Name, ServiceStep.Setup, step, _options.CommandTimeout, ct);
            if (!result.Succeeded)
            {
                entry.State = ServiceState.Stopped;
                entry.LastError = $"set-up `{step}` failed (exit {result.ExitCode}): {result.Diagnostic()}";
                throw new ServiceException(spec.Name, entry.LastError);
            }
        }
        if (spec.Daemon is null)
        {
            entry.State = ServiceState.Done;
            entry.LastError = null;
            return null;
        }
        IRunningCommand process;
        try
        {
            process = _processes.StartDaemon(spec.Name, spec.Daemon, new CommandOptions { Environment = spec.DaemonEnvironment });
        }
        catch (CommandException e)
        {
            entry.State = ServiceState.Stopped;
            entry.LastError = e.Message;
            throw new ServiceException(spec.Name, $"daemon did not start: {e.Message}", e);
        }
        entry.Process = process;
        entry.LastError = null;
        return process;
    }

    /// <summary>Configure and ready commands on the entry's daemon, recording the outcome in the entry. Called with the gate held.</summary>
    private async Task ConfigureEntryAsync(Entry entry, IRunningCommand process, CancellationToken ct)
    {
        entry.Configured = false;
        try
        {
            await ConfigureAsync(entry.Spec, process, ct);
        }
        catch (ServiceException e)
        {
            entry.LastError = e.Detail;
            throw;
        }
        entry.Configured = true;
    }

    /// <summary>
    /// Runs the configure commands, retrying while the fresh daemon is not ready for them yet, then waits for its ready
    /// commands. Touches no entry: a crash restart runs it without the gate.
    /// </summary>
    private async Task ConfigureAsync(ServiceSpec spec, IRunningCommand process, CancellationToken ct)
    {
        var deadline = _time.GetUtcNow() + _options.ConfigureTimeout;
        foreach (var step in spec.Configure)
        {
            while (true)
            {
                var (succeeded, failed) = await AttemptAsync(spec.Name, ServiceStep.Configure, step, AttemptTimeout(deadline), ct);
                if (succeeded) { break; }
                if (process.Exited.IsCompleted || _time.GetUtcNow() >= deadline)
                {
                    throw new ServiceException(spec.Name, $"configure `{step}` failed {failed}" +
                                                          (process.Exited.IsCompleted ? $"; the daemon exited: {process.RecentOutput().Trim()}" : ""));
                }
                await Task.Delay(TimeSpan.FromMilliseconds(100), _time, ct);
            }
        }
        await WaitReadyAsync(spec, process, ct);
    }

    /// <summary>Runs the ready commands until each succeeds; a daemon that exits or is not ready in time failed to start.</summary>
    private async Task WaitReadyAsync(ServiceSpec spec, IRunningCommand process, CancellationToken ct)
    {
        if (spec.Ready.Count == 0) { return; }
        var timeout = spec.ReadyTimeout ?? _options.ConfigureTimeout;
        var deadline = _time.GetUtcNow() + timeout;
        foreach (var step in spec.Ready)
        {
            while (true)
            {
                var (succeeded, failed) = await AttemptAsync(spec.Name, ServiceStep.Ready, step, AttemptTimeout(deadline), ct);
                if (succeeded) { break; }
                if (process.Exited.IsCompleted || _time.GetUtcNow() >= deadline)
                {
                    throw new ServiceException(spec.Name, (process.Exited.IsCompleted
                                                              ? $"the daemon exited before it was ready: {Tail(process.RecentOutput())}"
                                                              : $"not ready within {timeout.TotalSeconds:0} s") +
                                                          $"; `{step}` {failed}");
                }
                await Task.Delay(TimeSpan.FromMilliseconds(200), _time, ct);
            }
        }
    }

    /// <summary>
    /// One attempt of a configure, ready or probe command: whether it succeeded, and how it failed. A command that cannot be run
    /// or does not finish within its timeout (<see cref="CommandException"/>) is a failed attempt like one that exits
    /// non-zero: the wait goes on to its deadline and then fails with a <see cref="ServiceException"/>.
    /// </summary>
    private async Task<(bool Succeeded, string Failure)> AttemptAsync(string service, ServiceStep step, CommandLine command, TimeSpan timeout, CancellationToken ct)
    {
        try
        {
            var result = await Run(service, step, command, timeout, ct);
            return (result.Succeeded, $"(exit {result.ExitCode}): {result.Diagnostic()}");
        }
        catch (CommandException e)
        {
            ct.ThrowIfCancellationRequested();
            return (false, $"({e.Message})");
        }
    }

    /// <summary>The shortest time one configure or ready command is given, even when its deadline has (almost) passed.</summary>
    public static readonly TimeSpan MinimumAttempt = TimeSpan.FromMilliseconds(500);

    /// <summary>One attempt of a configure or ready command ends by the deadline of the whole wait (at most <see cref="ServiceManagerOptions.CommandTimeout"/>).</summary>
    private TimeSpan AttemptTimeout(DateTimeOffset deadline)
    {
        var left = deadline - _time.GetUtcNow();
        return left < MinimumAttempt ? MinimumAttempt : left < _options.CommandTimeout ? left : _options.CommandTimeout;
    }

    private async Task StopEntryAsync(Entry entry, CancellationToken ct)
    {
        var process = entry.Process;
        entry.Process = null;
        entry.Generation++; // the watcher sees the exit is ours
        entry.State = ServiceState.Stopped;
        if (entry.Attempt is { } attempt)
        {
            entry.Attempt = null;
            await attempt.CancelAsync(); // a crash restart waiting for this daemon to get ready gives up
        }
        if (process is not null)
        {
            await process.StopAsync(_options.StopGrace, ct);
            await process.DisposeAsync();
        }
    }

    /// <summary>
    /// Crash restarts in progress: daemons whose exit was seen and whose watcher has not settled yet (waiting to restart,
    /// restarting, waiting for the new daemon to get ready). Zero: nothing starts a daemon until one exits or an apply runs.
    /// </summary>
    public int RestartsInProgress => Volatile.Read(ref _restartsInProgress);

    private int _restartsInProgress;

    /// <summary>
    /// Restarts a daemon that exited on its own. <paramref name="generation"/> tells an exit we caused (stop, restart)
    /// from a crash. The restarted daemon's set-up and start run with the gate held, but its wait for readiness (up to
    /// its ready timeout: minutes for clamd) does not: applies, status and health checks go on meanwhile, and an apply
    /// that stops or replaces the daemon ends the wait. The daemon is left stopped (<see cref="ServiceState.CrashLoop"/>)
    /// once its crashes within the window plus its restarts in a row that never got ready reach
    /// <see cref="ServiceManagerOptions.CrashLimit"/>.
    /// </summary>
    private async Task WatchAsync(Entry entry, IRunningCommand process, int generation)
    {
        int code;
        try { code = await process.Exited.WaitAsync(_disposed.Token); }
        catch (OperationCanceledException) { return; }
        Interlocked.Increment(ref _restartsInProgress);
        try
        {
            await RestartAsync(entry, process, generation, code);
        }
        finally
        {
            Interlocked.Decrement(ref _restartsInProgress);
        }
    }

    /// <summary>What <see cref="WatchAsync"/> does once the daemon exited: the restart policy (delay, restart, crash loop).</summary>
    private async Task RestartAsync(Entry entry, IRunningCommand process, int generation, int code)
    {
        var failure = $"exited with {code}: {Tail(process.RecentOutput())}";
        var crashed = true;
        while (true)
        {
            TimeSpan delay;
            await _gate.WaitAsync(CancellationToken.None);
            try
            {
                if (entry.Generation != generation || _disposed.IsCancellationRequested) { return; }
                if (entry.Process is { } dead)
                {
                    entry.Process = null;
                    await dead.DisposeAsync();
                }
                var now = _time.GetUtcNow();
                if (crashed) { entry.Crashes.Add(now); }
                else { entry.FailedRestarts++; }
                entry.Crashes.RemoveAll(t => now - t > _options.CrashWindow);
                entry.LastError = failure;
                var count = entry.Crashes.Count + entry.FailedRestarts;
                if (count >= _options.CrashLimit)
                {
                    entry.State = ServiceState.CrashLoop;
                    _log($"services: {entry.Spec.Name} crashed {entry.Crashes.Count} times within {_options.CrashWindow.TotalSeconds:0} s" +
                         (entry.FailedRestarts == 0 ? "" : $" and {entry.FailedRestarts} restarts in a row did not get ready") + $"; left stopped ({failure})");
                    return;
                }
                entry.State = ServiceState.Restarting;
                delay = _options.RestartDelay * count;
                _log($"services: {entry.Spec.Name} {failure}; restarting in {delay.TotalSeconds:0.#} s");
            }
            finally
            {
                _gate.Release();
            }
            try { await Task.Delay(delay, _time, _disposed.Token); }
            catch (OperationCanceledException) { return; }

            IRunningCommand? fresh;
            ServiceSpec spec;
            CancellationTokenSource attempt;
            await _gate.WaitAsync(CancellationToken.None);
            try
            {
                if (entry.Generation != generation || _disposed.IsCancellationRequested) { return; }
                entry.Restarts++;
                crashed = false;
                try
                {
                    fresh = await LaunchAsync(entry, _disposed.Token);
                }
                catch (HalException e)
                {
                    failure = e is ServiceException se ? se.Detail : e.Message; // a set-up command that hangs is a failed restart too
                    continue;
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                if (fresh is null) { return; } // no daemon any more: set up, nothing to watch
                entry.State = ServiceState.Restarting; // not Running until ready: an apply meanwhile replaces it
                entry.Configured = false;
                generation = ++entry.Generation;
                spec = entry.Spec;
                attempt = CancellationTokenSource.CreateLinkedTokenSource(_disposed.Token);
                entry.Attempt = attempt;
            }
            finally
            {
                _gate.Release();
            }

            string? notReady = null;
            try
            {
                await ConfigureAsync(spec, fresh, attempt.Token);
            }
            catch (HalException e)
            {
                notReady = e is ServiceException se ? se.Detail : e.Message;
            }
            catch (OperationCanceledException)
            {
                notReady = "stopped while waiting to get ready";
            }

            await _gate.WaitAsync(CancellationToken.None);
            try
            {
                if (entry.Attempt == attempt) { entry.Attempt = null; }
                attempt.Dispose();
                if (entry.Generation != generation || _disposed.IsCancellationRequested) { return; } // stopped or replaced meanwhile
                if (notReady is null)
                {
                    entry.State = ServiceState.Running;
                    entry.Configured = true;
                    entry.LastError = null;
                    entry.FailedRestarts = 0;
                    _ = WatchAsync(entry, fresh, generation);
                    return;
                }
                failure = notReady;
                entry.Process = null;
                generation = ++entry.Generation; // this daemon is ours to end; nobody else counts it
                // stopped before the gate is released (as StopEntryAsync does): an apply meanwhile must not start a
                // second daemon while this one still runs
                await fresh.StopAsync(_options.StopGrace, CancellationToken.None);
                await fresh.DisposeAsync();
            }
            finally
            {
                _gate.Release();
            }
        }
    }

    private async Task<CommandResult> Run(string service, ServiceStep step, CommandLine command, TimeSpan timeout, CancellationToken ct)
    {
        var started = _time.GetTimestamp();
        var result = await _processes.RunAsync(service, step, command, new CommandOptions { Timeout = timeout }, ct);
        var elapsed = _time.GetElapsedTime(started);
        if (elapsed > SlowCommand)
        {
            _log($"services: `{command}` took {elapsed.TotalMilliseconds:0} ms");
        }
        return result;
    }

    private static readonly TimeSpan SlowCommand = TimeSpan.FromSeconds(1);

    private static string Tail(string output)
    {
        var lines = output.Trim().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        return lines.Length == 0 ? "(no output)" : string.Join(" | ", lines[^Math.Min(3, lines.Length)..]);
    }

    /// <summary>Stops every service and the crash watchers.</summary>
    public async ValueTask DisposeAsync()
    {
        await StopAllAsync(CancellationToken.None);
        await _disposed.CancelAsync();
        _disposed.Dispose();
    }
}
