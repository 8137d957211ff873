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
    }

    public async Task ValidateAsync(IReadOnlyList<ServiceSpec> services, CancellationToken cancellationToken)
    {
        foreach (var spec in services)
        {
            _onAction?.Invoke(ServiceAction.Validate, spec.Name);
            foreach (var check in spec.Checks)
            {
                var result = await Run(spec.Name, ServiceStep.Check, check, cancellationToken);
                if (!result.Succeeded)
                {
                    throw new ServiceException(spec.Name, $"configuration refused by `{check}` (exit {result.ExitCode}): {result.Diagnostic()}");
                }
            }
        }
    }

    public async Task<ServiceChanges> ApplyAsync(IReadOnlyList<ServiceSpec> services, CancellationToken cancellationToken)
    {
        List<string> started = [], reloaded = [], restarted = [], stopped = [], unchanged = [];
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
                if (entry is null)
                {
                    entry = new Entry(spec);
                    _entries.Add(entry);
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
                    await ConfigureAsync(entry, entry.Process!, cancellationToken);
                    reloaded.Add(spec.Name);
                }
                else
                {
                    var hadDaemon = entry.Process is not null;
                    _onAction?.Invoke(hadDaemon ? ServiceAction.Restart : ServiceAction.Reload, spec.Name);
                    await StopEntryAsync(entry, cancellationToken);
                    entry.Spec = spec;
                    entry.Crashes.Clear();
                    await StartEntryAsync(entry, cancellationToken);
                    (hadDaemon ? restarted : reloaded).Add(spec.Name);
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
        _log($"services: {changes}");
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
                var result = await Run(name, ServiceStep.Probe, probe, cancellationToken);
                if (!result.Succeeded)
                {
                    problems.Add($"{name}: probe `{probe}` failed (exit {result.ExitCode}): {result.Diagnostic()}");
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
        var spec = entry.Spec;
        foreach (var step in spec.Setup)
        {
            var result = await Run(spec.Name, ServiceStep.Setup, step, ct);
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
            return;
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
        entry.State = ServiceState.Running;
        entry.LastError = null;
        _ = WatchAsync(entry, process, ++entry.Generation);
        await ConfigureAsync(entry, process, ct);
    }

    /// <summary>Runs the configure commands, retrying while the fresh daemon is not ready for them yet.</summary>
    private async Task ConfigureAsync(Entry entry, IRunningCommand process, CancellationToken ct)
    {
        entry.Configured = false;
        var deadline = _time.GetUtcNow() + _options.ConfigureTimeout;
        foreach (var step in entry.Spec.Configure)
        {
            while (true)
            {
                var result = await Run(entry.Spec.Name, ServiceStep.Configure, step, ct);
                if (result.Succeeded) { break; }
                if (process.Exited.IsCompleted || _time.GetUtcNow() >= deadline)
                {
                    entry.LastError = $"configure `{step}` failed (exit {result.ExitCode}): {result.Diagnostic()}" +
                                      (process.Exited.IsCompleted ? $"; the daemon exited: {process.RecentOutput().Trim()}" : "");
                    throw new ServiceException(entry.Spec.Name, entry.LastError);
                }
                await Task.Delay(TimeSpan.FromMilliseconds(100), _time, ct);
            }
        }
        await WaitReadyAsync(entry, process, ct);
        entry.Configured = true;
    }

    /// <summary>Runs the ready commands until each succeeds; a daemon that exits or is not ready in time failed to start.</summary>
    private async Task WaitReadyAsync(Entry entry, IRunningCommand process, CancellationToken ct)
    {
        if (entry.Spec.Ready.Count == 0) { return; }
        var timeout = entry.Spec.ReadyTimeout ?? _options.ConfigureTimeout;
        var deadline = _time.GetUtcNow() + timeout;
        foreach (var step in entry.Spec.Ready)
        {
            while (true)
            {
                var result = await Run(entry.Spec.Name, ServiceStep.Ready, step, ct);
                if (result.Succeeded) { break; }
                if (process.Exited.IsCompleted || _time.GetUtcNow() >= deadline)
                {
                    entry.LastError = (process.Exited.IsCompleted
                                          ? $"the daemon exited before it was ready: {Tail(process.RecentOutput())}"
                                          : $"not ready within {timeout.TotalSeconds:0} s") +
                                      $"; `{step}` (exit {result.ExitCode}): {result.Diagnostic()}";
                    throw new ServiceException(entry.Spec.Name, entry.LastError);
                }
                await Task.Delay(TimeSpan.FromMilliseconds(200), _time, ct);
            }
        }
    }

    private async Task StopEntryAsync(Entry entry, CancellationToken ct)
    {
        var process = entry.Process;
        entry.Process = null;
        entry.Generation++; // the watcher sees the exit is ours
        entry.State = ServiceState.Stopped;
        if (process is not null)
        {
            await process.StopAsync(_options.StopGrace, ct);
            await process.DisposeAsync();
        }
    }

    /// <summary>
    /// Restarts a daemon that exited on its own, until it has crashed <see cref="ServiceManagerOptions.CrashLimit"/>
    /// times within the window. <paramref name="generation"/> tells an exit we caused (stop, restart) from a crash.
    /// </summary>
    private async Task WatchAsync(Entry entry, IRunningCommand process, int generation)
    {
        int code;
        try { code = await process.Exited.WaitAsync(_disposed.Token); }
        catch (OperationCanceledException) { return; }
        var failure = $"exited with {code}: {Tail(process.RecentOutput())}";
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
                entry.Crashes.Add(now);
                entry.Crashes.RemoveAll(t => now - t > _options.CrashWindow);
                entry.LastError = failure;
                if (entry.Crashes.Count >= _options.CrashLimit)
                {
                    entry.State = ServiceState.CrashLoop;
                    _log($"services: {entry.Spec.Name} crashed {entry.Crashes.Count} times within {_options.CrashWindow.TotalSeconds:0} s; left stopped ({failure})");
                    return;
                }
                entry.State = ServiceState.Restarting;
                delay = _options.RestartDelay * entry.Crashes.Count;
                _log($"services: {entry.Spec.Name} {failure}; restarting in {delay.TotalSeconds:0.#} s");
            }
            finally
            {
                _gate.Release();
            }
            try { await Task.Delay(delay, _time, _disposed.Token); }
            catch (OperationCanceledException) { return; }
            await _gate.WaitAsync(CancellationToken.None);
            try
            {
                if (entry.Generation != generation || _disposed.IsCancellationRequested) { return; }
                entry.Restarts++;
                try
                {
                    await StartEntryAsync(entry, _disposed.Token);
                    return; // the new daemon has its own watcher
                }
                catch (ServiceException e)
                {
                    failure = e.Message;
                    generation = ++entry.Generation; // the half-started daemon's watcher must not count this twice
                    if (entry.Process is { } half)
                    {
                        entry.Process = null;
                        await half.DisposeAsync();
                    }
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
            finally
            {
                _gate.Release();
            }
        }
    }

    private async Task<CommandResult> Run(string service, ServiceStep step, CommandLine command, CancellationToken ct)
    {
        var started = _time.GetTimestamp();
        var result = await _processes.RunAsync(service, step, command, new CommandOptions { Timeout = _options.CommandTimeout }, ct);
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
