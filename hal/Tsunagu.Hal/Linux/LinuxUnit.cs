namespace Tsunagu.Hal.Linux;

/// <summary>Where a Linux unit's partitions are mounted and how its adapters are set up.</summary>
public sealed record LinuxUnitOptions
{
    /// <summary>The board's description (interfaces, LEDs, buttons).</summary>
    public required BoardDescription Board { get; init; }

    /// <summary>The read-only factory partition's directory (identity.json).</summary>
    public required string FactoryRoot { get; init; }

    /// <summary>The PROM's directory (os-version, apps/NAME/VERSION/).</summary>
    public required string PromRoot { get; init; }

    /// <summary>The mount point of the writable `data` partition.</summary>
    public required string DataRoot { get; init; }

    /// <summary>Where the boot program wrote `tsunagu.slot=` (its own file, else the kernel's command line).</summary>
    public string CmdlinePath { get; init; } = "/proc/cmdline";

    /// <summary>udhcpc's event script.</summary>
    public string DhcpScript { get; init; } = "/etc/udhcpc.script";

    /// <summary>Where problems of the status LEDs go.</summary>
    public Action<string>? Log { get; init; }
}

/// <summary>
/// A real unit: the Linux adapters composed for one board, beside the simulated twin
/// (<see cref="Simulated.SimulatedUnit"/>). WAN: DHCP, static and PPPoE (pppd) links on the board's WAN interface;
/// LEDs: LED class devices and GPIO lines under <see cref="StatusLeds"/>; reset button: evdev key or GPIO line;
/// A/B slots: <see cref="LinuxBootControl"/>; data: <see cref="LinuxDataPartition"/>. Disposing it releases the
/// WAN watch, the LED blink and the GPIO lines.
/// </summary>
public sealed class LinuxUnit : IDisposable
{
    /// <param name="services">The service manager (on a unit, <see cref="ProcessServiceManager"/> over <paramref name="runner"/>).</param>
    /// <exception cref="HalException">A device of the board is unusable (the PROM, the boot state, the reset button's GPIO...).</exception>
    public LinuxUnit(LinuxUnitOptions options, ICommandRunner runner, IServiceManager services, TimeProvider? time = null)
    {
        var board = options.Board;
        var wanOptions = new InterfaceWanOptions { Interface = board.Interfaces.Wan, DhcpScript = options.DhcpScript };
        Wan = new WanLinkByMethod(board.Interfaces.Wan,
            ("dhcp", new DhcpWanLink(wanOptions, runner, time)),
            ("static", new StaticWanLink(wanOptions, runner, time)),
            ("pppoe", new PppoeWanLink(new PppoeWanOptions { Interface = board.Interfaces.Wan }, runner, time)));
        Gpio = board.Leds.Any(l => l.Gpio is not null) || board.Buttons.Any(b => b.Gpio is not null) ? new GpioLines() : null;
        try
        {
            Leds = new StatusLeds(board, new LinuxLedOutputs(gpio: Gpio), new StatusLedOptions { Log = options.Log }, time);
            Boot = new LinuxBootControl(LinuxBootOptions.ForDataRoot(options.DataRoot) with { CmdlinePath = options.CmdlinePath }, runner, time);
            Hardware = new UnitHardware(new DirectoryFactoryPartition(options.FactoryRoot), new DirectoryPromPartition(options.PromRoot),
                Wan, new LinuxDataPartition(new LinuxDataOptions { Root = options.DataRoot }), new LinuxSystemLoad(new LinuxLoadOptions { WanInterface = board.Interfaces.Wan }),
                Leds, Wan, Boot, services, board, Reset: ResetButtons.FromBoard(board, Gpio, time: time));
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public WanLinkByMethod Wan { get; }
    public StatusLeds? Leds { get; }
    public LinuxBootControl? Boot { get; }
    public IGpioLines? Gpio { get; }
    public UnitHardware Hardware { get; }

    public void Dispose()
    {
        Wan.Dispose();
        Leds?.Dispose();
        Gpio?.Dispose();
    }
}
