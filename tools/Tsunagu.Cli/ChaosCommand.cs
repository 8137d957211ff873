using System.CommandLine;
using Tsunagu.Cli.Chaos;

namespace Tsunagu.Cli;

/// <summary>`tsunagu chaos`: the nemesis against a real server and a simulated fleet, with its history and invariants.</summary>
public static class ChaosCommand
{
    public static Command Create()
    {
        var seed = new Option<int>("--seed") { Description = "seed of the fault schedule (the same seed gives the same faults, lengths and order)", DefaultValueFactory = _ => 1 };
        var minutes = new Option<double>("--minutes") { Description = "how long to keep injecting faults", DefaultValueFactory = _ => 5 };
        var units = new Option<int>("--units") { Description = "number of simulated units", DefaultValueFactory = _ => 20 };
        var faults = new Option<string[]>("--fault")
        {
            Description = $"a fault to draw from (repeatable): {string.Join(", ", Faults.All.Where(f => f != Faults.DatabaseRestart))}; default all that this machine can run " +
                          "(server-clock-skew needs libfaketime, disk-full root and SQLite)",
            AllowMultipleArgumentsPerToken = true,
        };
        var broker = new Option<string>("--broker") { Description = "the broker: embedded (in the server) or mosquitto (a real one the run starts)", DefaultValueFactory = _ => "embedded" };
        var count = new Option<int?>("--count") { Description = "inject exactly this many faults (each chosen fault once first, in a seeded order) instead of running for --minutes" };
        var data = new Option<string>("--data") { Description = "working directory (wiped first)", DefaultValueFactory = _ => ".tsunagu/chaos" };
        var database = new Option<string>("--database") { Description = "the server's Database setting: a SQLite file name, or a PostgreSQL connection string", DefaultValueFactory = _ => "tsunagu.db" };
        var recovery = new Option<double>("--recovery-bound") { Description = "invariant: seconds after a fault heals by which every unit is Ready again", DefaultValueFactory = _ => 90 };
        var rate = new Option<int>("--max-requests-per-minute") { Description = "invariant: the most requests one unit may send in any 60 s", DefaultValueFactory = _ => 120 };
        var updateAt = new Option<string>("--update-at-fault")
        {
            Description = "the fault (counted from 0) as which the operator publishes an update to every unit, or 'none'",
            DefaultValueFactory = _ => "1",
        };
        var subscriberFrom = new Option<string>("--subscriber-from-fault")
        {
            Description = "from this fault on (counted from 0) a subscriber changes their unit's settings during each fault, or 'none'",
            DefaultValueFactory = _ => "0",
        };
        var keepAnswers = new Option<bool>("--keep-update-answers") { Description = "do not drop the answer to each unit's first update report (by default it is lost on purpose, so every unit sends its report again)" };
        var command = new Command("chaos", "inject faults (server kill and restart, broker restart, partitions, resets, slow links, clock skews, disk full) into a real server and a simulated fleet; check the invariants")
        {
            seed, minutes, count, units, faults, data, database, broker, recovery, rate, updateAt, subscriberFrom, keepAnswers,
        };
        command.SetAction(async (r, ct) =>
        {
            var chosen = r.GetValue(faults) is { Length: > 0 } f ? f : [.. Faults.Available(r.GetValue(database)!)];
            foreach (var left in Faults.All.Where(x => x != Faults.DatabaseRestart).Except(chosen))
            {
                if (Faults.Unavailable(left, r.GetValue(database)!) is { } why) { Console.WriteLine($"not injecting {left}: {why}"); }
            }
            if (!TryFaultNumber(r.GetValue(updateAt)!, out var updateAtFault) || !TryFaultNumber(r.GetValue(subscriberFrom)!, out var subscriberFromFault))
            {
                Console.Error.WriteLine($"error: --update-at-fault and --subscriber-from-fault take a fault number (0 or more) or 'none', not '{r.GetValue(updateAt)}' / '{r.GetValue(subscriberFrom)}'");
                return 2;
            }
            var settings = new ChaosSettings
            {
                Seed = r.GetValue(seed),
                Duration = TimeSpan.FromMinutes(r.GetValue(minutes)),
                FaultCount = r.GetValue(count),
                Units = r.GetValue(units),
                Faults = chosen,
                DataDirectory = r.GetValue(data)!,
                Database = r.GetValue(database)!,
                Broker = r.GetValue(broker)!,
                RecoveryBound = TimeSpan.FromSeconds(r.GetValue(recovery)),
                MaxRequestsPerUnitPerMinute = r.GetValue(rate),
                UpdateAtFault = updateAtFault,
                SubscriberFromFault = subscriberFromFault,
                LoseFirstUpdateAnswer = !r.GetValue(keepAnswers),
            };
            try
            {
                await using var nemesis = new Nemesis(settings, Console.WriteLine);
                var report = await nemesis.RunAsync(ct);
                Console.WriteLine();
                Console.Write(report.Describe());
                return report.AllHeld ? 0 : 3;
            }
            catch (ArgumentException e)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 2;
            }
        });
        return command;
    }

    /// <summary>A fault number (0 or more) or <c>none</c> (null).</summary>
    internal static bool TryFaultNumber(string text, out int? fault)
    {
        fault = null;
        if (string.Equals(text, "none", StringComparison.Ordinal)) { return true; }
        if (int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var n))
        {
            fault = n;
            return true;
        }
        return false;
    }
}
