using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Tsunagu.Bench;

// make bench: each pair measured side by side in this job, on loopback, bounded in time. Writes bench/results.json.
var work = Path.GetFullPath(args.Length > 0 ? args[0] : ".tsunagu/bench");
var output = args.Length > 1 ? args[1] : "bench/results.json";
var seconds = double.Parse(Environment.GetEnvironmentVariable("BENCH_SECONDS") ?? "5", CultureInfo.InvariantCulture);
if (Directory.Exists(work)) { Directory.Delete(work, recursive: true); }
Directory.CreateDirectory(work);
var results = new List<Result>();
var c = CultureInfo.InvariantCulture;

var only = (Environment.GetEnvironmentVariable("BENCH_ONLY") ?? "http,mqtt,storm,aot,scale,cluster-storm").Split(',', StringSplitOptions.TrimEntries);
void Progress(string line) => Console.WriteLine($"[{DateTime.Now:HH:mm:ss}] {line}");
// Ctrl+C or SIGTERM: the mqtt and storm parts stop with their child processes (server, fleetsim workers, brokers); the
// http and aot parts finish first. A second signal ends the process at once.
using var stop = new CancellationTokenSource();
var exitCode = 130;
void OnStopSignal(PosixSignalContext signal)
{
    if (stop.IsCancellationRequested)
    {
        return; // the second signal: default handling, the process ends
    }
    signal.Cancel = true;
    exitCode = signal.Signal == PosixSignal.SIGTERM ? 143 : 130;
    Progress($"{signal.Signal}: stopping after the running part stops its child processes (again to end at once)");
    stop.Cancel();
}
using var onTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnStopSignal);
using var onInt = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnStopSignal);
try
{
    if (only.Contains("http"))
    {
        await HttpBench.RunAsync(work, seconds, results);
    }
    if (only.Contains("mqtt"))
    {
        // 10,000 clients in this process: one descriptor each; the server and Mosquitto hold theirs in their own processes
        var mqttUnits = int.Parse(Environment.GetEnvironmentVariable("BENCH_MQTT_UNITS") ?? "10000", c);
        var m = await MqttBench.RunAsync(work, mqttUnits, Progress, stop.Token);
        var scope = mqttUnits == 10_000 ? "" : $" (MEASURED AT {mqttUnits:N0} UNITS, not 10,000)";
        results.Add(new($"forced-check fan-out, {mqttUnits:N0} units: embedded broker (units/s) vs Mosquitto alone{scope}",
            m.Units / m.EmbeddedFanOutSeconds, m.Units / m.MosquittoAloneSeconds, ">=", 0.5,
            string.Create(c, $"operator POST /units/check -> all {m.Units} clients received: {m.EmbeddedFanOutSeconds:0.000} s (request answered at {m.ServerCheckRequestSeconds:0.000} s) vs plain MQTTnet publisher -> Mosquitto {m.MosquittoAloneSeconds:0.000} s (QoS 1, {MqttBench.PublishWindow} in flight, best of 2)")));
        results.Add(new($"forced-check fan-out, {mqttUnits:N0} units: server via Mosquitto (units/s) vs Mosquitto alone{scope}",
            m.Units / m.MosquittoViaServerSeconds, m.Units / m.MosquittoAloneSeconds, ">=", 0.5,
            string.Create(c, $"operator POST /units/check -> server publishes through Mosquitto -> all received: {m.MosquittoViaServerSeconds:0.000} s (best of 2, answered at {m.ServerViaMosquittoRequestSeconds:0.000} s) vs {m.MosquittoAloneSeconds:0.000} s")));
        results.Add(new($"memory per idle connected unit (bytes): server with embedded broker vs Mosquitto, {mqttUnits:N0} units{scope}",
            m.ServerRssPerUnitBytes, m.MosquittoRssPerUnitBytes, "<=", 4,
            string.Create(c, $"VmRSS delta of each broker process, 2 s after all {m.Units} connected / divided by units; connect {m.EmbeddedConnectSeconds:0.0} s (embedded) vs {m.MosquittoConnectSeconds:0.0} s (Mosquitto)")));
    }

    if (only.Contains("storm"))
    {
        // Rows are units:concurrent:queued:power-on spread (s), each run as StormBench describes:
        // - 20,000 units, the server restarted with its default limits (SQLite: 64 concurrent + 2048 queued), the units
        //   waiting a random 0..360 s after power-on (the host's power-on spread, sized to the fleet: 20,000 units / the
        //   units per second this server brings back);
        // - 1,000 units against a small server (4 + 16, as OverloadTests) with no spread: most units are turned away on
        //   arrival, and attempts per unit cannot go below 1 + (units - 20) / units.
        var runs = (Environment.GetEnvironmentVariable("BENCH_STORMS") ?? "20000:64:2048:360,1000:4:16:0").Split(',', StringSplitOptions.RemoveEmptyEntries)
            .Select(r => r.Split(':').Select(x => int.Parse(x, c)).ToArray())
            .Select(r => new StormRun(r[0], r[1], r[2], r.Length > 3 ? r[3] : 0)).ToList();
        foreach (var run in runs)
        {
            results.Add(await StormBench.RunAsync(work, run, Progress, stop.Token));
        }
    }
    if (only.Contains("aot"))
    {
        stop.Token.ThrowIfCancellationRequested();
        await AotBench.RunAsync(work, results, Progress);
    }
    if (only.Contains("scale") || only.Contains("cluster-storm"))
    {
        // deploy/cluster.sh's topology (HAProxy, 2 replicas, PostgreSQL, Mosquitto, nginx) under the work directory:
        // units per core from steady-state check-ins (scale), then the storm through it (cluster-storm)
        var scale = ScaleSettings.FromEnvironment(seconds);
        await ScaleBench.RunAsync(work, scale, results, only.Contains("scale"), only.Contains("cluster-storm"), Progress, stop.Token);
    }
}
catch (OperationCanceledException) when (stop.IsCancellationRequested)
{
    Progress("stopped before the end: no results written");
    return exitCode;
}

Console.WriteLine();
Console.WriteLine($"{"metric",-78} {"value",12} {"reference",12} {"ratio",8} {"target",9}  met");
foreach (var r in results)
{
    Console.WriteLine(string.Create(c, $"{r.Metric,-78} {Tools.Num(r.Value),12} {Tools.Num(r.Reference),12} {Tools.Num(r.Ratio),8} {r.TargetText,9}  {(r.Met is null ? "n/a" : r.Met.Value ? "yes" : "NO")}"));
    Console.WriteLine($"    {r.Note}");
}
Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
await File.WriteAllTextAsync(output, JsonSerializer.Serialize(results.Select(r => new Dictionary<string, object?>
{
    ["metric"] = r.Metric, ["value"] = r.Value, ["reference"] = r.Reference, ["ratio"] = r.Ratio,
    ["target"] = r.TargetText, ["met"] = r.Met, ["note"] = r.Note,
}), new JsonSerializerOptions { WriteIndented = true }));
Console.WriteLine($"wrote {output}");
return 0;
