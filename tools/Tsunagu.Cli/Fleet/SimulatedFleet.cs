using Tsunagu.Firmware.Supervision;
using Tsunagu.Hal;
using Tsunagu.Hal.Simulated;
using Tsunagu.Protocol;

namespace Tsunagu.Cli.Fleet;

/// <summary>One simulated unit with its real supervisor.</summary>
public sealed class FleetUnit(string mac, SimulatedUnit hardware)
{
    private Supervisor? _supervisor;

    public string Mac { get; } = mac;
    public SimulatedUnit Hardware { get; } = hardware;

    /// <summary>What the supervisor runs on: the simulated hardware, possibly with another network in front.</summary>
    public UnitHardware Board { get; internal set; } = hardware.Hardware;

    /// <summary>Requests, failures and retries of this unit, when the fleet meters its network.</summary>
    public UnitMeter Meter { get; } = new();

    /// <summary>The supervisor of the current power-on.</summary>
    public Supervisor Supervisor
    {
        get => _supervisor ?? throw new InvalidOperationException($"unit {Mac} has not been powered on");
        internal set => _supervisor = value;
    }

    public bool IsPoweredOn => _supervisor is not null && !Running.IsCompleted;
    public Task Running { get; internal set; } = Task.CompletedTask;
    internal CancellationTokenSource? Stop { get; set; }
}

/// <summary>
/// Runs N simulated units in one process, each the real supervisor over the simulated HAL, against a server.
/// Used by the demo and the integration tests. Each unit owns its clock (<see cref="SimulatedUnit.Time"/>, which a fault can
/// skew) and its system clock (<see cref="SimulatedUnit.SystemClock"/>, which the firmware sets from the host's time).
/// </summary>
/// <param name="time">The time every unit's own clock runs on; null: the system's.</param>
public sealed class SimulatedFleet(string root, SupervisorOptions options, Action<FleetUnit, StateChange>? onChange = null,
    Action<FleetUnit, string>? onLog = null, TimeProvider? time = null) : IAsyncDisposable
{
    private readonly List<FleetUnit> _units = [];

    public IReadOnlyList<FleetUnit> Units => _units;
    public string PromDirectory => Path.Combine(root, "prom");

    public static string MacFor(int index) => MacAddress.Normalize($"02:54:53:{(index >> 16) & 0xff:x2}:{(index >> 8) & 0xff:x2}:{index & 0xff:x2}");

    /// <summary>Builds the common PROM (OS version + factory applications) every simulated unit boots from.</summary>
    public void BuildProm(string osVersion, IReadOnlyDictionary<string, string> factoryApplications)
    {
        if (Directory.Exists(PromDirectory)) { Directory.Delete(PromDirectory, recursive: true); }
        DirectoryPromPartition.Build(PromDirectory, osVersion, factoryApplications);
    }

    /// <summary>
    /// Burns a unit's factory partition (does not start it). <paramref name="network"/> puts another network
    /// (a meter, a shared connection pool) in front of the unit's simulated WAN link.
    /// </summary>
    public async Task<FleetUnit> AddUnitAsync(FactoryIdentity identity, CancellationToken ct,
        Func<FleetUnit, INetworkAccess>? network = null)
    {
        var dir = Path.Combine(root, "units", MacAddress.Compact(identity.Mac));
        await DirectoryFactoryPartition.BurnAsync(Path.Combine(dir, "factory"), identity, ct);
        var hardware = new SimulatedUnit(dir, PromDirectory, time);
        var unit = new FleetUnit(identity.Mac, hardware);
        if (network is not null)
        {
            unit.Board = hardware.Hardware with { Network = network(unit) };
        }
        _units.Add(unit);
        return unit;
    }

    private Supervisor NewSupervisor(FleetUnit unit)
    {
        var supervisor = new Supervisor(unit.Board, options, unit.Hardware.Time, log: message => onLog?.Invoke(unit, message));
        supervisor.Context.SystemClock = unit.Hardware.SystemClock;
        supervisor.StateChanged += change => onChange?.Invoke(unit, change);
        return supervisor;
    }

    /// <summary>Powers the unit on: a fresh supervisor (RAM is empty) over the same partitions.</summary>
    public void Start(FleetUnit unit)
    {
        if (!unit.Running.IsCompleted) { throw new InvalidOperationException($"unit {unit.Mac} is already running"); }
        unit.Stop = new CancellationTokenSource();
        unit.Supervisor = NewSupervisor(unit);
        var supervisor = unit.Supervisor;
        var token = unit.Stop.Token;
        unit.Running = Task.Run(() => supervisor.RunAsync(token), CancellationToken.None);
    }

    /// <summary>Cuts the power: the supervisor stops, links drop, RAM state is gone; partitions stay.</summary>
    public async Task PowerOffAsync(FleetUnit unit)
    {
        if (unit.Stop is null) { return; }
        await unit.Stop.CancelAsync();
        await unit.Running;
        await unit.Supervisor.DisposeAsync();
        unit.Hardware.Wan.Drop();
        await unit.Hardware.Services.StopAllAsync(CancellationToken.None); // the daemons die with the power
        await unit.Hardware.Wan.DownAsync(CancellationToken.None);
        unit.Stop.Dispose();
        unit.Stop = null;
    }

    public void StartAll()
    {
        foreach (var unit in _units) { Start(unit); }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var unit in _units)
        {
            await PowerOffAsync(unit);
        }
    }
}
