namespace Tsunagu.Hal.Linux;

/// <summary>The service manager over real processes: the <see cref="ServiceManager"/> policy running programs through <paramref name="runner"/>.</summary>
public sealed class ProcessServiceManager(ICommandRunner runner, ServiceManagerOptions? options = null, TimeProvider? time = null,
    Action<string>? log = null) : ServiceManager(new CommandRunnerProcesses(runner), options, time, log), IAsyncDisposable;
