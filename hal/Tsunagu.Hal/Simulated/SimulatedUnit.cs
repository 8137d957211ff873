namespace Tsunagu.Hal.Simulated;

/// <summary>
/// One simulated unit laid out under a directory: `prom/`, `factory/`, `data/`, `boot/` (the A/B slots). The WAN
/// link, load, LEDs, service manager, media slot and reset button are in memory and exposed for fault injection.
/// </summary>
public sealed class SimulatedUnit
{
    public SimulatedUnit(string unitDirectory, string promDirectory)
    {
        Directory = unitDirectory;
        Factory = new DirectoryFactoryPartition(Path.Combine(unitDirectory, "factory"));
        Prom = new DirectoryPromPartition(promDirectory);
        Data = new DirectoryDataPartition(Path.Combine(unitDirectory, "data"));
        Boot = new SimulatedBootControl(Path.Combine(unitDirectory, "boot"));
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
    public SimulatedResetButton Reset { get; } = new();
    public SimulatedBootControl Boot { get; }
    public SimulatedServiceManager Services { get; } = new();
    public UnitHardware Hardware { get; }
}
