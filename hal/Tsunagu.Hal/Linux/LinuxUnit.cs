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
/// A/B slots: <see cref="LinuxBootControl"/>; data: <see cref="LinuxDataPartition"/>; watchdog: <see cref="LinuxWatchdog"/>.
/// Disposing it releases the WAN watch, the LED blink, the load sampler, the GPIO lines and the watchdog (left running).
/// </summary>
public sealed class LinuxUnit : IDisposable
{
    /// <param name="services">The service manager (on a unit, <see cref="ProcessServiceManager"/> over <paramref name="runner"/>).</param>
    /// <exception cref="HalException">A device of the board is unusable (the PROM, the boot state, the reset button's GPIO...).</exception>
    public LinuxUnit(LinuxUnitOptions options, ICommandRunner runner, IServiceManager services, TimeProvider? time = null)
    {
        (_options, _runner, _time) = (options, runner, time);
        var board = options.Board;
        Wan = Port(board.Interfaces.Wan, "", MainPppUnit);
        if (board.Interfaces.ProvisioningWan is { } provisioningPort && provisioningPort != board.Interfaces.Wan)
        {
            // variant 3: the provisional link on its own port, with its own DHCP state and PPP unit
            Provisioning = Port(provisioningPort, "-provisioning", ProvisioningPppUnit);
            Link = new WanLinkByRole(Wan, Provisioning);
        }
        else
        {
            Link = Wan;
        }
        Gpio = board.Leds.Any(l => l.Gpio is not null) || board.Buttons.Any(b => b.Gpio is not null) ? new GpioLines() : null;
        try
        {
            Leds = new StatusLeds(board, new LinuxLedOutputs(gpio: Gpio), new StatusLedOptions { Log = options.Log }, time);
            Boot = new LinuxBootControl(LinuxBootOptions.ForDataRoot(options.DataRoot) with { CmdlinePath = options.CmdlinePath }, runner, time);
            Load = new LinuxSystemLoad(new LinuxLoadOptions { WanInterface = board.Interfaces.Wan }, time);
            Hardware = new UnitHardware(new DirectoryFactoryPartition(options.FactoryRoot), new DirectoryPromPartition(options.PromRoot),
                Link, new LinuxDataPartition(new LinuxDataOptions { Root = options.DataRoot }), Load,
                Leds, (INetworkAccess)Link, Boot, services, board, Reset: ResetButtons.FromBoard(board, Gpio, time: time),
                Watchdog: board.Watchdog is { } watchdog ? Watchdog = new LinuxWatchdog(LinuxWatchdogOptions.FromBoard(watchdog)) : null);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The PPP unit of a PPPoE session on the main WAN port: its interface is `ppp0`, the one the firewall names.</summary>
    public const int MainPppUnit = 0;

    /// <summary>The PPP unit of a PPPoE session on the second WAN port kept for provisioning (variant 3).</summary>
    public const int ProvisioningPppUnit = 1;

    /// <summary>The main WAN port's link (and the provisional one on a board with one WAN port).</summary>
    public WanLinkByMethod Wan { get; }

    /// <summary>The second WAN port's link, kept for provisioning (board `interfaces.provisioningWan`), or null.</summary>
    public WanLinkByMethod? Provisioning { get; }

    /// <summary>What the supervisor uses: <see cref="Wan"/>, or both ports by role.</summary>
    public IWanLink Link { get; }

    private WanLinkByMethod Port(string port, string suffix, int pppUnit)
    {
        var o = new InterfaceWanOptions
        {
            Interface = port, DhcpScript = _options.DhcpScript, DhcpStateFile = $"/run/tsunagu/dhcp{suffix}.state",
            ResolvConf = "/etc/resolv.conf",
        };
        return new WanLinkByMethod(port,
            ("dhcp", new DhcpWanLink(o, _runner, _time)),
            ("static", new StaticWanLink(o, _runner, _time)),
            ("pppoe", new PppoeWanLink(new PppoeWanOptions { Interface = port, Unit = pppUnit, RunDirectory = $"/run/tsunagu/ppp{suffix}" }, _runner, _time)));
    }

    private readonly LinuxUnitOptions _options;
    private readonly ICommandRunner _runner;
    private readonly TimeProvider? _time;
    public StatusLeds? Leds { get; }
    public LinuxBootControl? Boot { get; }
    public IGpioLines? Gpio { get; }

    /// <summary>The CPU and WAN load (its counters are sampled on a timer until the unit is disposed).</summary>
    public LinuxSystemLoad? Load { get; }

    /// <summary>The board's watchdog (board.json `watchdog`), or null; the supervisor arms and feeds it.</summary>
    public LinuxWatchdog? Watchdog { get; }
    public UnitHardware Hardware { get; }

    public void Dispose()
    {
        Wan.Dispose();
        Provisioning?.Dispose();
        Leds?.Dispose();
        Load?.Dispose();
        Gpio?.Dispose();
        Watchdog?.Dispose();
    }
}
