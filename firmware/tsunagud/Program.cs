using System.Runtime.InteropServices;
using Tsunagu.Firmware.Supervision;
using Tsunagu.Hal;
using Tsunagu.Hal.Simulated;

// tsunagud: the router's supervisor. Partitions are the mounted directories of the image (factory, prom, data).
var options = Args.Parse(args);
if (options is null)
{
    Console.Error.WriteLine("""
        usage: tsunagud --factory DIR --prom DIR --data DIR [--boot DIR] [--wan simulated] [--check-interval SECONDS] [--single-link]
          --factory DIR     the read-only factory partition (identity.json)
          --prom DIR        the read-only PROM contents (os-version, apps/NAME/VERSION/)
          --data DIR        the writable data partition
          --boot DIR        the A/B OS slots and boot state (simulated; default: 'boot' beside --data)
          --wan KIND        WAN link adapter; 'simulated' is the only one this build has
          --single-link     variant 2: the provisional link is also the main link
        """);
    return 2;
}
if (options.Wan != "simulated")
{
    Console.Error.WriteLine($"tsunagud: --wan {options.Wan}: this build has no such WAN adapter (available: simulated)");
    return 2;
}

var wan = new SimulatedWanLink();
UnitHardware hardware;
try
{
    hardware = new UnitHardware(new DirectoryFactoryPartition(options.Factory), new DirectoryPromPartition(options.Prom),
        wan, new DirectoryDataPartition(options.Data), new SimulatedSystemLoad(), new SimulatedStatusLeds(), wan,
        new SimulatedBootControl(options.Boot ?? Path.Combine(Path.GetDirectoryName(Path.GetFullPath(options.Data))!, "boot")));
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
    new SupervisorOptions { CheckInterval = TimeSpan.FromSeconds(options.CheckIntervalSeconds), SingleLink = options.SingleLink },
    log: message => Console.WriteLine($"{DateTimeOffset.UtcNow:O} {message}"));
supervisor.StateChanged += c => Console.WriteLine($"{c.At:O} {c.From} --{c.Outcome}--> {c.To}");
await supervisor.RunAsync(stop.Token);
return 0;

internal sealed record Args(string Factory, string Prom, string Data, string Wan, int CheckIntervalSeconds, bool SingleLink, string? Boot)
{
    public static Args? Parse(string[] args)
    {
        string? factory = null, prom = null, data = null, wan = "simulated", boot = null;
        var interval = 86400;
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
                case "--wan": wan = Value() ?? ""; break;
                case "--check-interval": if (!int.TryParse(Value(), out interval) || interval < 1) { return null; } break;
                case "--single-link": single = true; break;
                default: return null;
            }
        }
        return factory is null || prom is null || data is null ? null : new Args(factory, prom, data, wan, interval, single, boot);
    }
}
