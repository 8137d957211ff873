namespace Tsunagu.Hal.Simulated;

/// <summary>
/// One simulated unit laid out under a directory: `prom/`, `factory/`, `data/`, `boot/` (the A/B slots and the boot
/// state file). The WAN link, load, LEDs, service processes, media slot and reset button are in memory and exposed for
/// fault injection; the service manager and the reset button run the same logic as on a real unit (<see cref="Linux.LinuxUnit"/>
/// composes the real adapters).
/// </summary>
public sealed class SimulatedUnit
{
    /// <param name="time">The unit's clock (service restarts, button holds); null: the system's.</param>
    public SimulatedUnit(string unitDirectory, string promDirectory, TimeProvider? time = null)
    {
        Directory = unitDirectory;
        Factory = new DirectoryFactoryPartition(Path.Combine(unitDirectory, "factory"));
        Prom = new DirectoryPromPartition(promDirectory);
        Data = new DirectoryDataPartition(Path.Combine(unitDirectory, "data"));
        Boot = new SimulatedBootControl(Path.Combine(unitDirectory, "boot"));
        Services = new SimulatedServiceManager(time);
        Reset = new SimulatedResetButton(time);
        Hardware = new UnitHardware(Factory, Prom, Wan, Data, Load, Leds, Wan, Boot, Services, BoardDescription.Simulated, Media, Reset);
    }

    public string Directory { get; }
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
