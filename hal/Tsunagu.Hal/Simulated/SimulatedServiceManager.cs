namespace Tsunagu.Hal.Simulated;

/// <summary>
/// The service manager's twin: runs nothing, keeps the same bookkeeping (start, reload only on a changed
/// digest, stop) and records every action in <see cref="Events"/>, with fault injection for checks and health.
/// </summary>
public sealed class SimulatedServiceManager : IServiceManager
{
    private readonly Lock _gate = new();
    private readonly List<ServiceSpec> _running = [];

    /// <summary>"validate NAME", "start NAME", "reload NAME", "stop NAME", in order.</summary>
    public List<string> Events { get; } = [];

    /// <summary>Service name -> the message its checker prints when refusing.</summary>
    public Dictionary<string, string> RefuseChecks { get; } = new(StringComparer.Ordinal);

    /// <summary>Services that fail the health check while listed here.</summary>
    public HashSet<string> Unhealthy { get; } = new(StringComparer.Ordinal);

    public IReadOnlyList<string> Running { get { lock (_gate) { return _running.Select(s => s.Name).ToList(); } } }

    public Task ValidateAsync(IReadOnlyList<ServiceSpec> services, CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            foreach (var spec in services)
            {
                Events.Add($"validate {spec.Name}");
                if (RefuseChecks.TryGetValue(spec.Name, out var message))
                {
                    throw new ServiceException(spec.Name, $"configuration refused by the simulated checker: {message}");
                }
            }
        }
        return Task.CompletedTask;
    }

    public Task<ServiceChanges> ApplyAsync(IReadOnlyList<ServiceSpec> services, CancellationToken cancellationToken)
    {
        List<string> started = [], reloaded = [], stopped = [], unchanged = [];
        lock (_gate)
        {
            var wanted = services.Select(s => s.Name).ToHashSet(StringComparer.Ordinal);
            foreach (var gone in _running.Where(s => !wanted.Contains(s.Name)).Reverse().ToList())
            {
                Events.Add($"stop {gone.Name}");
                stopped.Add(gone.Name);
            }
            var next = new List<ServiceSpec>();
            foreach (var spec in services)
            {
                var old = _running.FirstOrDefault(s => s.Name == spec.Name);
                if (old is null) { Events.Add($"start {spec.Name}"); started.Add(spec.Name); }
                else if (old.Digest != spec.Digest) { Events.Add($"reload {spec.Name}"); reloaded.Add(spec.Name); }
                else { unchanged.Add(spec.Name); }
                next.Add(spec);
            }
            _running.Clear();
            _running.AddRange(next);
        }
        return Task.FromResult(new ServiceChanges(started, reloaded, [], stopped, unchanged));
    }

    public Task<IReadOnlyList<string>> CheckHealthAsync(CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            IReadOnlyList<string> problems = _running.Where(s => Unhealthy.Contains(s.Name)).Select(s => $"{s.Name}: simulated failure").ToList();
            return Task.FromResult(problems);
        }
    }

    public IReadOnlyList<ServiceStatus> Status()
    {
        lock (_gate)
        {
            return _running.Select(s => new ServiceStatus(s.Name, s.Daemon is null ? ServiceState.Done : ServiceState.Running, s.Digest, 0, null)).ToList();
        }
    }

    public Task StopAllAsync(CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            foreach (var spec in Enumerable.Reverse(_running)) { Events.Add($"stop {spec.Name}"); }
            _running.Clear();
        }
        return Task.CompletedTask;
    }
}
