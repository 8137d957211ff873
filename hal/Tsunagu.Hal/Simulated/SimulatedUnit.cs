namespace Tsunagu.Hal.Simulated;

/// <summary>
/// One simulated unit laid out under a directory: `prom/`, `factory/`, `data/`, `boot/` (the A/B slots and the boot
/// state file). The WAN link, load, LEDs, service processes, media slot and reset button are in memory and exposed for
/// fault injection; the service manager and the reset button run the same logic as on a real unit (<see cref="Linux.LinuxUnit"/>
/// composes the real adapters).
/// </summary>
public sealed class SimulatedUnit
{
    /// <param name="time">
    /// The time the unit's own clock runs on (service restarts, button holds, the supervisor); null: the system's. The
    /// unit's wall clock (<see cref="Time"/>) starts at its wall time and can be skewed and set independently of other units.
    /// </param>
    public SimulatedUnit(string unitDirectory, string promDirectory, TimeProvider? time = null)
    {
        Time = new SimulatedUnitClock(time ?? TimeProvider.System);
        SystemClock = new SimulatedSystemClock(Time, Time.Step);
        Directory = unitDirectory;
        Factory = new DirectoryFactoryPartition(Path.Combine(unitDirectory, "factory"));
        Prom = new DirectoryPromPartition(promDirectory);
        Data = new DirectoryDataPartition(Path.Combine(unitDirectory, "data"));
        Boot = new SimulatedBootControl(Path.Combine(unitDirectory, "boot"));
        Services = new SimulatedServiceManager(Time);
        Reset = new SimulatedResetButton(Time);
        Hardware = new UnitHardware(Factory, Prom, Wan, Data, Load, Leds, Wan, Boot, Services, BoardDescription.Simulated, Media, Reset);
    }

    public string Directory { get; }

    /// <summary>The unit's own clock: its wall time can be off (<see cref="SimulatedUnitClock.Offset"/>, a fault).</summary>
    public SimulatedUnitClock Time { get; }

    /// <summary>The unit's system clock: a set moves <see cref="Time"/>'s wall time (the firmware's clock setting).</summary>
    public SimulatedSystemClock SystemClock { get; }
    public DirectoryFactoryPartition Factory { get; }
    public DirectoryPromPartition Prom { get; }
    public DirectoryDataPartition Data { get; }
    public SimulatedWanLink Wan { get; } = new();
    public SimulatedSystemLoad Load { get; } = new();
    public SimulatedStatusLeds Leds { get; } = new();
    public SimulatedRemovableMedia Media { get; } = new();
    public SimulatedResetButton Reset { get; }
    public SimulatedBootControl Boot { get; }
    public SimulatedServiceManager Services { get; }
    public UnitHardware Hardware { get; }
}
