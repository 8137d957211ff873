namespace Tsunagu.Hal.Simulated;

/// <summary>
/// One simulated unit laid out under a directory: `prom/`, `factory/`, `data/`. The WAN link, load, LEDs and
/// service manager are in memory and exposed for fault injection.
/// </summary>
public sealed class SimulatedUnit
{
    public SimulatedUnit(string unitDirectory, string promDirectory)
    {
        Directory = unitDirectory;
        Factory = new DirectoryFactoryPartition(Path.Combine(unitDirectory, "factory"));
        Prom = new DirectoryPromPartition(promDirectory);
        Data = new DirectoryDataPartition(Path.Combine(unitDirectory, "data"));
        Hardware = new UnitHardware(Factory, Prom, Wan, Data, Load, Leds, Wan, Services, BoardDescription.Simulated);
    }

    public string Directory { get; }
    public DirectoryFactoryPartition Factory { get; }
    public DirectoryPromPartition Prom { get; }
    public DirectoryDataPartition Data { get; }
    public SimulatedWanLink Wan { get; } = new();
    public SimulatedSystemLoad Load { get; } = new();
    public SimulatedStatusLeds Leds { get; } = new();
    public SimulatedServiceManager Services { get; } = new();
    public UnitHardware Hardware { get; }
}
