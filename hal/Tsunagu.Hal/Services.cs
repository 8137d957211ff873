namespace Tsunagu.Hal;

/// <summary>
/// One service as the service manager runs it (the procd model): the checks that validate its rendered
/// configuration, the one-shot set-up, an optional daemon kept in the foreground, the commands that configure
/// the running daemon (also used to reload it in place), and probes for the health check. <see cref="Digest"/>
/// identifies the rendered configuration: a service whose digest did not change is left alone.
/// </summary>
public sealed record ServiceSpec(string Name, string Digest)
{
    /// <summary>Validate the rendered configuration with the daemon's own checker; nothing is changed.</summary>
    public IReadOnlyList<CommandLine> Checks { get; init; } = [];

    /// <summary>Run before the daemon starts (or, without a daemon, this is the service); each must succeed.</summary>
    public IReadOnlyList<CommandLine> Setup { get; init; } = [];

    public CommandLine? Daemon { get; init; }
    public IReadOnlyDictionary<string, string>? DaemonEnvironment { get; init; }

    /// <summary>Run once the daemon is up (retried until it accepts them); re-run alone to reload a running daemon in place.</summary>
    public IReadOnlyList<CommandLine> Configure { get; init; } = [];

    /// <summary>Must succeed for the service to count as healthy.</summary>
    public IReadOnlyList<CommandLine> Probes { get; init; } = [];

    /// <summary>
    /// Succeed once the daemon serves (its database loaded, its port answering): after each start or in-place reload they are
    /// retried until they succeed, the daemon exits or <see cref="ReadyTimeout"/> passes, and a daemon that never gets
    /// there is a failed start; the health check runs them once more.
    /// </summary>
    public IReadOnlyList<CommandLine> Ready { get; init; } = [];

    /// <summary>How long a fresh daemon may take to pass <see cref="Ready"/>; null: the manager's configure timeout.</summary>
    public TimeSpan? ReadyTimeout { get; init; }
}

public enum ServiceState { Stopped, Done, Running, Restarting, CrashLoop }

public sealed record ServiceStatus(string Name, ServiceState State, string Digest, int Restarts, string? LastError);

/// <summary>What one <see cref="IServiceManager.ApplyAsync"/> did to each service.</summary>
public sealed record ServiceChanges(IReadOnlyList<string> Started, IReadOnlyList<string> Reloaded, IReadOnlyList<string> Restarted,
    IReadOnlyList<string> Stopped, IReadOnlyList<string> Unchanged)
{
    public override string ToString() =>
        $"started [{string.Join(", ", Started)}], reloaded [{string.Join(", ", Reloaded)}], restarted [{string.Join(", ", Restarted)}], " +
        $"stopped [{string.Join(", ", Stopped)}], unchanged [{string.Join(", ", Unchanged)}]";
}

/// <summary>A service's configuration was refused by its checker, or the service could not be started.</summary>
public sealed class ServiceException(string service, string message, Exception? inner = null)
    : HalException($"{service}: {message}", isTransient: false, inner)
{
    public string Service { get; } = service;

    /// <summary>What went wrong, without the service's name.</summary>
    public string Detail { get; } = message;
}

/// <summary>
/// Starts the unit's daemons and keeps them running: restarts a crashed one (up to a crash-loop limit) and
/// reloads a service only when its rendered configuration changed.
/// </summary>
public interface IServiceManager
{
    /// <summary>Runs every service's checks; throws at the first refusal.</summary>
    /// <exception cref="ServiceException">A checker refused a configuration (the message quotes it).</exception>
    Task ValidateAsync(IReadOnlyList<ServiceSpec> services, CancellationToken cancellationToken);

    /// <summary>
    /// Makes <paramref name="services"/> (in order) the running set: starts new ones, reloads or restarts those
    /// whose digest changed, stops those no longer listed (in reverse order), leaves the others alone.
    /// </summary>
    /// <exception cref="ServiceException">A set-up step or daemon start failed; services already handled stay as they are.</exception>
    Task<ServiceChanges> ApplyAsync(IReadOnlyList<ServiceSpec> services, CancellationToken cancellationToken);

    /// <summary>
    /// Like <see cref="ApplyAsync"/>, for going back to a revision that served before: a service that fails does not stop
    /// the ones after it from being applied (each is tried); the failures are reported together at the end.
    /// </summary>
    /// <exception cref="ServiceException">Some services failed (the first is named; the message lists all); every other service was applied.</exception>
    Task<ServiceChanges> RestoreAsync(IReadOnlyList<ServiceSpec> services, CancellationToken cancellationToken);

    /// <summary>
    /// Lets the services settle, then lists what is wrong (empty: healthy). A probe that fails, cannot be run or does not
    /// finish within its timeout is one problem in the list, never an exception.
    /// </summary>
    Task<IReadOnlyList<string>> CheckHealthAsync(CancellationToken cancellationToken);

    IReadOnlyList<ServiceStatus> Status();

    Task StopAllAsync(CancellationToken cancellationToken);
}
