using System.Runtime.InteropServices;
using Tsunagu.Firmware.Supervision;
using Tsunagu.Hal;
using Tsunagu.Hal.Linux;
using Tsunagu.Hal.Simulated;

// tsunagud: the router's supervisor. Partitions are the mounted directories of the image (factory, prom, data).
var options = ArgsParser.Parse(args);
if (options is null)
{
    Console.Error.WriteLine("""
        usage: tsunagud --factory DIR --prom DIR --data DIR [--hal simulated|linux] [--boot DIR] [--wan simulated] [--services simulated|process]
                        [--board PATH] [--run-dir DIR] [--confirm-timeout SECONDS] [--check-interval SECONDS] [--single-link]
          --hal KIND        'linux': the board's real devices (WAN interface, LEDs, reset button, A/B slots, data
                            partition; needs --board); 'simulated' (default): simulated WAN, LEDs and slots
          --factory DIR     the read-only factory partition (identity.json)
          --prom DIR        the read-only PROM contents (os-version, apps/NAME/VERSION/)
          --data DIR        the writable data partition
          --boot DIR        the A/B OS slots and boot state (simulated; default: 'boot' beside --data)
          --boot-cmdline F  (linux) where the boot program wrote tsunagu.slot= (default /run/tsunagu/boot-cmdline, else /proc/cmdline)
          --dhcp-script F   (linux) udhcpc's event script (default /etc/udhcpc.script)
          --wan KIND        WAN link adapter; 'simulated' is the only one this build has
          --services KIND   'process' runs the real daemons (nft, dnsmasq, wireguard-go, squid); 'simulated' records them
          --board PATH      the board's board.json (default: the simulated board)
          --run-dir DIR     pid files and logs of the daemons (default: DATA/services/run)
          --confirm-timeout SECONDS  revert a new service configuration unless the host is reached in time (300)
          --single-link     variant 2: the provisional link is also the main link
        """);
    return 2;
}
if (options.Hal is not ("simulated" or "linux"))
{
    Console.Error.WriteLine($"tsunagud: --hal {options.Hal}: must be 'simulated' or 'linux'");
    return 2;
}
if (options.Hal == "linux" && options.Board is null)
{
    Console.Error.WriteLine("tsunagud: --hal linux needs --board (the board.json that names its interfaces, LEDs and buttons)");
    return 2;
}
if (options.Hal == "simulated" && options.Wan != "simulated")
{
    Console.Error.WriteLine($"tsunagud: --wan {options.Wan}: this build has no such WAN adapter (available: simulated)");
    return 2;
}

if (options.Services is not ("simulated" or "process"))
{
    Console.Error.WriteLine($"tsunagud: --services {options.Services}: must be 'simulated' or 'process'");
    return 2;
}

void Log(string message) => Console.WriteLine($"{DateTimeOffset.UtcNow:O} {message}");
var runner = new ProcessCommandRunner();
UnitHardware hardware;
await using var processServices = options.Services == "process" ? new ProcessServiceManager(runner, log: Log) : null;
IDisposable? linuxResources = null;
try
{
    var board = options.Board is null ? BoardDescription.Simulated : BoardDescription.Load(options.Board);
    var services = (IServiceManager?)processServices ?? new SimulatedServiceManager();
    if (options.Hal == "linux")
    {
        var cmdline = options.BootCmdline ?? (File.Exists("/run/tsunagu/boot-cmdline") ? "/run/tsunagu/boot-cmdline" : "/proc/cmdline");
        var unit = new LinuxUnit(new LinuxUnitOptions
        {
            Board = board, FactoryRoot = options.Factory, PromRoot = options.Prom, DataRoot = options.Data,
            CmdlinePath = cmdline, DhcpScript = options.DhcpScript, Log = Log,
        }, runner, services);
        linuxResources = unit;
        hardware = unit.Hardware;
    }
    else
    {
        var wan = new SimulatedWanLink();
        hardware = new UnitHardware(new DirectoryFactoryPartition(options.Factory), new DirectoryPromPartition(options.Prom),
            wan, new DirectoryDataPartition(options.Data), new SimulatedSystemLoad(), new StatusLeds(board, new SimulatedLedOutputs()), wan,
            new SimulatedBootControl(options.Boot ?? Path.Combine(Path.GetDirectoryName(Path.GetFullPath(options.Data))!, "boot")),
            services, board);
    }
}
catch (HalException e)
{
    Console.Error.WriteLine($"tsunagud: {e.Message}");
    return 1;
}
using var stop = new CancellationTokenSource();
// SIGTERM (init stopping the unit) and SIGINT end the supervisor cleanly; disposed before `stop`.
using var onTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
using var onInt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });
await using var supervisor = new Supervisor(hardware,
    new SupervisorOptions
    {
        CheckInterval = TimeSpan.FromSeconds(options.CheckIntervalSeconds), SingleLink = options.SingleLink,
        ConfirmTimeout = TimeSpan.FromSeconds(options.ConfirmTimeoutSeconds), ServiceRunDirectory = options.RunDirectory,
    },
    log: message => Console.WriteLine($"{DateTimeOffset.UtcNow:O} {message}"));
if (options.Hal == "linux")
{
    supervisor.Context.SystemClock = new LinuxSystemClock(runner);
}
supervisor.StateChanged += c => Console.WriteLine($"{c.At:O} {c.From} --{c.Outcome}--> {c.To}");
await supervisor.RunAsync(stop.Token);
linuxResources?.Dispose();
return 0;

internal sealed record Args(string Factory, string Prom, string Data, string Wan, int CheckIntervalSeconds, bool SingleLink,
    string Services, string? Board, string? RunDirectory, int ConfirmTimeoutSeconds, string? Boot)
{
    public string Hal { get; init; } = "simulated";
    public string? BootCmdline { get; init; }
    public string DhcpScript { get; init; } = "/etc/udhcpc.script";
}

internal static class ArgsParser
{
    public static Args? Parse(string[] args)
    {
        string? factory = null, prom = null, data = null, wan = "simulated", services = "simulated", board = null, runDir = null, boot = null;
        string hal = "simulated", dhcpScript = "/etc/udhcpc.script";
        string? cmdline = null;
        var interval = 86400;
        var confirm = 300;
        var single = false;
        for (var i = 0; i < args.Length; i++)
        {
            string? Value() => i + 1 < args.Length ? args[++i] : null;
            switch (args[i])
            {
                case "--factory": factory = Value(); break;
                case "--prom": prom = Value(); break;
                case "--data": data = Value(); break;
                case "--boot": boot = Value(); break;
                case "--hal": hal = Value() ?? ""; break;
                case "--boot-cmdline": cmdline = Value(); if (cmdline is null) { return null; } break;
                case "--dhcp-script": dhcpScript = Value() ?? ""; break;
                case "--wan": wan = Value() ?? ""; break;
                case "--check-interval": if (!int.TryParse(Value(), out interval) || interval < 1) { return null; } break;
                case "--single-link": single = true; break;
                case "--services": services = Value() ?? ""; break;
                case "--board": board = Value(); if (board is null) { return null; } break;
                case "--run-dir": runDir = Value(); if (runDir is null) { return null; } break;
                case "--confirm-timeout": if (!int.TryParse(Value(), out confirm) || confirm < 0) { return null; } break;
                default: return null;
            }
        }
        return factory is null || prom is null || data is null ? null
            : new Args(factory, prom, data, wan, interval, single, services, board, runDir, confirm, boot) { Hal = hal, BootCmdline = cmdline, DhcpScript = dhcpScript };
    }
}
