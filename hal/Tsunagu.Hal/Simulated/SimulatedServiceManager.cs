namespace Tsunagu.Hal.Simulated;

/// <summary>
/// The service manager's twin: the same <see cref="ServiceManager"/> policy (diff, reload, restart, crash loop) over
/// <see cref="SimulatedServiceProcesses"/>, which runs nothing. Every action is recorded in <see cref="Events"/>;
/// faults are injected through <see cref="RefuseChecks"/>, <see cref="Unhealthy"/> and <see cref="Crash"/>.
/// </summary>
public sealed class SimulatedServiceManager : ServiceManager
{
    private readonly List<string> _events;

    public SimulatedServiceManager(TimeProvider? time = null, ServiceManagerOptions? options = null, Action<string>? log = null)
        : this(new SimulatedServiceProcesses(), new List<string>(), time, options, log)
    {
    }

    private SimulatedServiceManager(SimulatedServiceProcesses processes, List<string> events, TimeProvider? time, ServiceManagerOptions? options, Action<string>? log)
        : base(processes, options ?? new ServiceManagerOptions { HealthSettle = TimeSpan.Zero }, time, log,
            (action, name) => { lock (events) { events.Add($"{action.ToString().ToLowerInvariant()} {name}"); } })
    {
        Processes = processes;
        _events = events;
    }

    public SimulatedServiceProcesses Processes { get; }

    /// <summary>"validate NAME", "start NAME", "reload NAME", "restart NAME", "stop NAME", in order.</summary>
    public List<string> Events => _events;

    /// <summary>Service name -> the message its checker prints when refusing.</summary>
    public Dictionary<string, string> RefuseChecks => Processes.RefuseChecks;

    /// <summary>Services whose probes fail while listed here.</summary>
    public HashSet<string> Unhealthy => Processes.Unhealthy;

    /// <summary>The services set up or running, in order.</summary>
    public IReadOnlyList<string> Running => Status().Where(s => s.State is ServiceState.Done or ServiceState.Running).Select(s => s.Name).ToList();

    /// <summary>Makes the daemon of <paramref name="service"/> exit with <paramref name="exitCode"/>, as a crash.</summary>
    /// <returns>Whether a daemon of that service was running.</returns>
    public bool Crash(string service, int exitCode = 1) => Processes.Crash(service, exitCode);
}

/// <summary>
/// Fake service processes: commands succeed at once (a check of a service in <see cref="RefuseChecks"/> fails with its
/// message, a configure command of a service in <see cref="RefuseConfigure"/> and a probe of a service in
/// <see cref="Unhealthy"/> fail with "simulated failure"); a daemon runs until it is stopped or <see cref="Crash"/>ed.
/// What the policy asked of them is kept in <see cref="Calls"/>.
/// </summary>
public sealed class SimulatedServiceProcesses : IServiceProcesses
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, FakeDaemon> _daemons = new(StringComparer.Ordinal);
    private int _nextPid = 1000;

    public Dictionary<string, string> RefuseChecks { get; } = new(StringComparer.Ordinal);
    public HashSet<string> Unhealthy { get; } = new(StringComparer.Ordinal);

    /// <summary>Services whose daemon refuses its configure commands while listed here (not ready, or a bad reload).</summary>
    public HashSet<string> RefuseConfigure { get; } = new(StringComparer.Ordinal);

    /// <summary>
    /// Services whose next daemon never passes its ready commands (a configuration it refuses, a port it cannot bind): the
    /// daemon started while the service is listed is broken, and the service leaves the list; later daemons serve.
    /// </summary>
    public HashSet<string> NotReady { get; } = new(StringComparer.Ordinal);

    private readonly HashSet<FakeDaemon> _broken = [];

    /// <summary>How many of the last calls <see cref="Calls"/> keeps (a simulated unit runs for long).</summary>
    public const int CallsKept = 1024;

    private readonly Queue<string> _calls = new();
    private readonly Dictionary<string, int> _started = new(StringComparer.Ordinal);

    /// <summary>
    /// The last <see cref="CallsKept"/> calls, in order: "check NAME", "setup NAME", "configure NAME", "ready NAME", "probe NAME",
    /// "start NAME" (a daemon), "stop NAME" (a daemon stopped by the policy).
    /// </summary>
    public IReadOnlyList<string> Calls() { lock (_gate) { return [.. _calls]; } }

    /// <summary>How many daemons of <paramref name="service"/> have been started.</summary>
    public int Started(string service) { lock (_gate) { return _started.GetValueOrDefault(service); } }

    /// <summary>Called with the gate held.</summary>
    private void Record(string call)
    {
        if (_calls.Count == CallsKept) { _calls.Dequeue(); }
        _calls.Enqueue(call);
    }

    public Task<CommandResult> RunAsync(string service, ServiceStep step, CommandLine command, CommandOptions options, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            Record($"{step.ToString().ToLowerInvariant()} {service}");
            if (step == ServiceStep.Configure && RefuseConfigure.Contains(service))
            {
                return Task.FromResult(new CommandResult(command, 1, "", "simulated failure", false));
            }
            if (step == ServiceStep.Ready && _daemons.TryGetValue(service, out var daemon) && _broken.Contains(daemon))
            {
                return Task.FromResult(new CommandResult(command, 1, "", "simulated: not ready", false));
            }
            if (step == ServiceStep.Check && RefuseChecks.TryGetValue(service, out var message))
            {
                return Task.FromResult(new CommandResult(command, 1, "", $"simulated checker: {message}", false));
            }
            if (step == ServiceStep.Probe && Unhealthy.Contains(service))
            {
                return Task.FromResult(new CommandResult(command, 1, "", "simulated failure", false));
            }
        }
        return Task.FromResult(new CommandResult(command, 0, "", "", false));
    }

    public IRunningCommand StartDaemon(string service, CommandLine daemon, CommandOptions options)
    {
        lock (_gate)
        {
            Record($"start {service}");
            _started[service] = _started.GetValueOrDefault(service) + 1;
            var process = new FakeDaemon(daemon, _nextPid++, () => { lock (_gate) { Record($"stop {service}"); } });
            _daemons[service] = process;
            if (NotReady.Remove(service)) { _broken.Add(process); }
            return process;
        }
    }

    /// <summary>Ends the running daemon of <paramref name="service"/> with <paramref name="exitCode"/>.</summary>
    public bool Crash(string service, int exitCode = 1)
    {
        FakeDaemon? process;
        lock (_gate) { _daemons.TryGetValue(service, out process); }
        return process is not null && process.Exit(exitCode);
    }

    private sealed class FakeDaemon(CommandLine command, int pid, Action onStop) : IRunningCommand
    {
        private readonly TaskCompletionSource<int> _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public CommandLine Command { get; } = command;
        public int ProcessId { get; } = pid;
        public Task<int> Exited => _exited.Task;
        public string RecentOutput() => "";

        public bool Exit(int code) => _exited.TrySetResult(code);

        public Task StopAsync(TimeSpan grace, CancellationToken cancellationToken)
        {
            if (_exited.TrySetResult(143)) { onStop(); }
            return Task.CompletedTask;
        }

        public ValueTask DisposeAsync()
        {
            _exited.TrySetResult(137);
            return ValueTask.CompletedTask;
        }
    }
}
