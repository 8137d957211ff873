namespace Tsunagu.Hal.Simulated;

/// <summary>
/// One simulated unit laid out under a directory: `prom/`, `factory/`, `data/`, `boot/` (the A/B slots and the boot
/// state file). The WAN link, load, LEDs, service processes, media slot and reset button are in memory and exposed for
/// fault injection; the service manager, the status LEDs, the reset button and the A/B slots run the same logic as on
/// a real unit (<see cref="Linux.LinuxUnit"/> composes the real adapters).
/// </summary>
public sealed class SimulatedUnit
{
    /// <param name="time">
    /// The time the unit's own clock runs on (service restarts, button holds, the supervisor); null: the system's. The
    /// unit's wall clock (<see cref="Time"/>) starts at its wall time and can be skewed and set independently of other units.
    /// </param>
    /// <param name="board">The board it simulates (its LEDs, indications and reset button); null: <see cref="BoardDescription.Simulated"/>.</param>
    public SimulatedUnit(string unitDirectory, string promDirectory, TimeProvider? time = null, BoardDescription? board = null)
    {
        Board = board ?? BoardDescription.Simulated;
        Time = new SimulatedUnitClock(time ?? TimeProvider.System);
        SystemClock = new SimulatedSystemClock(Time, Time.Step);
        Directory = unitDirectory;
        Factory = new DirectoryFactoryPartition(Path.Combine(unitDirectory, "factory"));
        Prom = new DirectoryPromPartition(promDirectory);
        Data = new DirectoryDataPartition(Path.Combine(unitDirectory, "data"));
        Boot = new SimulatedBootControl(Path.Combine(unitDirectory, "boot"));
        Services = new SimulatedServiceManager(Time);
        Reset = new SimulatedResetButton(Time, Board.Button(BoardButton.Reset)?.LongPress);
        Leds = new StatusLeds(Board, LedOutputs, time: Time);
        Hardware = new UnitHardware(Factory, Prom, Wan, Data, Load, Leds, Wan, Boot, Services, Board, Media, Reset);
    }

    public string Directory { get; }

    public BoardDescription Board { get; }

    /// <summary>The unit's own clock: its wall time can be off (<see cref="SimulatedUnitClock.Offset"/>, a fault).</summary>
    public SimulatedUnitClock Time { get; }

    /// <summary>The unit's system clock: a set moves <see cref="Time"/>'s wall time (the firmware's clock setting).</summary>
    public SimulatedSystemClock SystemClock { get; }
    public DirectoryFactoryPartition Factory { get; }
    public DirectoryPromPartition Prom { get; }
    public DirectoryDataPartition Data { get; }
    public SimulatedWanLink Wan { get; } = new();
    public SimulatedSystemLoad Load { get; } = new();

    /// <summary>The status LEDs' logic, the same as on a real unit, over <see cref="LedOutputs"/>.</summary>
    public StatusLeds Leds { get; }

    /// <summary>The board's LEDs as the status LEDs left them.</summary>
    public SimulatedLedOutputs LedOutputs { get; } = new();
    public SimulatedRemovableMedia Media { get; } = new();
    public SimulatedResetButton Reset { get; }
    public SimulatedBootControl Boot { get; }
    public SimulatedServiceManager Services { get; }
    public UnitHardware Hardware { get; }
}
