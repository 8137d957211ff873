using System.CommandLine;
using System.Text.Json;
using Tsunagu.Cli.Factory;
using Tsunagu.Cli.Fleet;
using Tsunagu.Protocol.Bundles;

namespace Tsunagu.Cli;

/// <summary>`tsunagu fleetsim`: N simulated units through the fleet scenarios, with a report per scenario.</summary>
public static class FleetSimCommand
{
    public static Command Create()
    {
        var units = new Option<int>("--units") { Description = "number of simulated units", DefaultValueFactory = _ => 100 };
        var scenario = new Option<string>("--scenario")
        {
            Description = $"comma-separated scenarios, or 'all': {string.Join(", ", FleetScenarios.All)} (first-boot always runs first); " +
                          $"also {FleetScenarios.Rollout} and {FleetScenarios.RolloutPause} (named only; in-process server)",
            DefaultValueFactory = _ => "all",
        };
        var data = new Option<string>("--data") { Description = "working directory (wiped first)", DefaultValueFactory = _ => ".tsunagu/fleetsim" };
        var server = new Option<string?>("--server") { Description = "an external server (https://...); default: one in this process" };
        var cert = new Option<string?>("--server-cert") { Description = "external server: its certificate (PEM)" };
        var unitKey = new Option<string?>("--unit-key") { Description = "external server: the operator's unit key file" };
        var password = new Option<string?>("--password") { Description = "external server: operator password (default $TSUNAGU_OPERATOR_PASSWORD)" };
        var ownConnections = new Option<bool>("--own-connections") { Description = "each unit opens its own connections (default: one shared pool)" };
        var maxConnections = new Option<int>("--max-connections") { Description = "size of the shared pool", DefaultValueFactory = _ => 256 };
        var noPush = new Option<bool>("--no-push") { Description = "no broker: units do not connect over MQTT (forced-check and subscriber-wave need push)" };
        var maxConcurrent = new Option<int?>("--server-max-concurrent") { Description = "in-process server: requests served at once" };
        var queue = new Option<int?>("--server-queue") { Description = "in-process server: requests queued beyond that" };
        var noUpdate = new Option<bool>("--no-first-boot-update") { Description = "first-boot without the signed update: every unit's target is its factory pattern" };
        var unitOffset = new Option<int>("--unit-offset") { Description = "number the units from this + 1 (several simulators on one server)", DefaultValueFactory = _ => 0 };
        var releaseKey = new Option<string?>("--release-key") { Description = "external server: a file with the base64 public key its bundles are signed with (units trust it)" };
        var powerOnSignal = new Option<bool>("--power-on-signal")
        {
            Description = "power-cut: once every unit is off, print 'powered-off' and power them on only when 'power-on' is read from standard input (a storm across several simulators)",
        };
        var powerOnSpread = new Option<int?>("--power-on-spread") { Description = "in-process server: units wait a random 0..this many seconds after power-on before connecting (default 0)" };
        var spread = new Option<double>("--daily-spread") { Description = "daily-check: seconds over which the periodic checks fall", DefaultValueFactory = _ => 10 };
        var timeout = new Option<double>("--timeout") { Description = "seconds each scenario may take", DefaultValueFactory = _ => 300 };
        var backoffBase = new Option<double>("--backoff-base") { Description = "units' backoff base, seconds", DefaultValueFactory = _ => 1 };
        var backoffCap = new Option<double>("--backoff-cap") { Description = "units' backoff cap, seconds", DefaultValueFactory = _ => 30 };
        var minThreads = new Option<int>("--min-threads") { Description = "thread pool minimum (units block on file I/O; 0 keeps the runtime's)", DefaultValueFactory = _ => 0 };
        var json = new Option<string?>("--json") { Description = "also write the reports to this JSON file" };
        var waves = new Option<string>("--waves") { Description = "rollout scenarios: the waves (counts, percents)", DefaultValueFactory = _ => "10%,30%,100%" };
        var success = new Option<int>("--success") { Description = "rollout scenarios: success threshold, percent of a wave installed", DefaultValueFactory = _ => 90 };
        var error = new Option<int>("--error") { Description = "rollout scenarios: error threshold, percent of the open waves failed", DefaultValueFactory = _ => 10 };
        var failHealth = new Option<int>("--fail-health") { Description = "rollout-pause: percent of each wave's units (rounded up) that fail their health check", DefaultValueFactory = _ => 20 };
        var rolloutTick = new Option<double?>("--rollout-tick") { Description = "in-process server: seconds between rollout engine passes (default 5)" };
        var healthWindow = new Option<double?>("--health-window")
        {
            Description = "units' health window after an install, seconds (a failing unit rolls back after it); default: 5 with a rollout scenario, else the firmware's (120)",
        };
        var sample = new Option<double>("--sample")
        {
            Description = "every this many seconds, print the process's managed heap, RSS, descriptors, threads and memory maps (and each per unit); 0: never",
            DefaultValueFactory = _ => 0,
        };
        var workers = new Option<int>("--workers")
        {
            Description = "run the units in this many worker processes against the server in this one (first-boot and the rollout scenarios only); 0: in this process",
            DefaultValueFactory = _ => 0,
        };
        var worker = new Option<bool>("--worker") { Description = "(started by --workers) after the scenarios, keep the units running and answer the coordinator on standard input" };
        var command = new Command("fleetsim", "simulate N units (real supervisor, simulated HAL) through fleet scenarios and report on each")
        {
            units, scenario, data, server, cert, unitKey, password, ownConnections, maxConnections, noPush, maxConcurrent, queue, powerOnSpread, noUpdate, unitOffset, releaseKey, powerOnSignal, spread, timeout,
            backoffBase, backoffCap, minThreads, json, waves, success, error, failHealth, rolloutTick, healthWindow, sample, workers, worker,
        };
        command.SetAction(async (r, ct) =>
        {
            if (r.GetValue(minThreads) is > 0 and var threads)
            {
                ThreadPool.SetMinThreads(threads, threads);
            }
            Uri? serverUri = null;
            if (r.GetValue(server) is { } serverText && (!Uri.TryCreate(serverText, UriKind.Absolute, out serverUri) || serverUri.Scheme != Uri.UriSchemeHttps))
            {
                Console.Error.WriteLine($"error: --server '{serverText}' must be an absolute https:// URL");
                return 2;
            }
            string[] releaseKeys = [];
            if (r.GetValue(releaseKey) is { } keyPath)
            {
                if (!File.Exists(keyPath))
                {
                    Console.Error.WriteLine($"error: --release-key {keyPath}: no such file");
                    return 2;
                }
                string keyText;
                try
                {
                    keyText = File.ReadAllText(keyPath).Trim();
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    Console.Error.WriteLine($"error: --release-key {keyPath}: cannot be read: {e.Message}");
                    return 2;
                }
                if (!ReleaseKeys.TryParse(keyText, out var parsed))
                {
                    Console.Error.WriteLine($"error: --release-key {keyPath}: not a release public key (base64 P-256 SubjectPublicKeyInfo, as the .pub file `tsunagu bundle keygen` writes)");
                    return 2;
                }
                parsed!.Dispose();
                releaseKeys = [keyText];
            }
            var text = r.GetValue(scenario)!;
            var settings = new FleetSimSettings
            {
                Units = r.GetValue(units),
                Scenarios = text == "all" ? FleetScenarios.All : text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
                DataDirectory = r.GetValue(data)!,
                Server = serverUri,
                ServerCertificate = r.GetValue(cert),
                UnitKeyFile = r.GetValue(unitKey),
                OperatorPassword = r.GetValue(password) ?? Environment.GetEnvironmentVariable("TSUNAGU_OPERATOR_PASSWORD"),
                SharedConnections = !r.GetValue(ownConnections),
                MaxConnections = r.GetValue(maxConnections),
                Push = !r.GetValue(noPush),
                MaxConcurrentRequests = r.GetValue(maxConcurrent),
                RequestQueueLimit = r.GetValue(queue),
                PowerOnSpreadSeconds = r.GetValue(powerOnSpread),
                UnitOffset = r.GetValue(unitOffset),
                UpdateOnFirstBoot = !r.GetValue(noUpdate),
                ReleaseKeys = releaseKeys,
                BeforePowerOn = r.GetValue(powerOnSignal) ? WaitForPowerOnAsync : null,
                DailySpread = TimeSpan.FromSeconds(r.GetValue(spread)),
                ScenarioTimeout = TimeSpan.FromSeconds(r.GetValue(timeout)),
                BackoffBase = TimeSpan.FromSeconds(r.GetValue(backoffBase)),
                BackoffCap = TimeSpan.FromSeconds(r.GetValue(backoffCap)),
                Waves = r.GetValue(waves)!,
                SuccessPercent = r.GetValue(success),
                ErrorPercent = r.GetValue(error),
                FailHealthPercent = r.GetValue(failHealth),
                RolloutTickSeconds = r.GetValue(rolloutTick),
                HealthWindow = r.GetValue(healthWindow) is { } seconds ? TimeSpan.FromSeconds(seconds) : null,
                SampleInterval = r.GetValue(sample) is > 0 and var every ? TimeSpan.FromSeconds(every) : null,
                Workers = r.GetValue(workers),
            };
            // --worker: after its scenarios, keep the units running and answer the coordinator's commands on standard input
            // (WorkerProtocol); it reads its input from the start: the coordinator's end (end of input) or quit stops it at
            // once, in its first boot too
            using var input = r.GetValue(worker) ? WorkerInput.Start(Console.In) : null;
            using var run = CancellationTokenSource.CreateLinkedTokenSource(ct, input?.Ended ?? CancellationToken.None);
            try
            {
                await using var simulation = new FleetSimulation(settings, Console.WriteLine);
                var reports = await simulation.RunAsync(run.Token);
                if (input is not null)
                {
                    if (!reports.All(x => x.AllCompleted)) { return 1; }
                    await simulation.ServeAsync(input, Console.Out, ct);
                    return 0;
                }
                if (r.GetValue(json) is { } path)
                {
                    await File.WriteAllTextAsync(path, JsonSerializer.Serialize(reports.Select(ToJson).ToList(), JsonOptions), ct);
                }
                return reports.All(x => x.AllCompleted) ? 0 : 1;
            }
            catch (Exception e) when (e is FleetSimulationException or OperatorApiException or HttpRequestException or IOException)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 1;
            }
            catch (OperationCanceledException) when (input is not null && input.Ended.IsCancellationRequested && !ct.IsCancellationRequested)
            {
                Console.Error.WriteLine("error: the coordinator quit or closed this worker's input before its first boot ended");
                return 1;
            }
        });
        return command;
    }

    /// <summary>--power-on-signal: tells the coordinator the units are off, then waits for its word.</summary>
    private static async Task WaitForPowerOnAsync(CancellationToken ct)
    {
        Console.WriteLine("powered-off");
        Console.Out.Flush();
        var line = await Console.In.ReadLineAsync(ct);
        if (line?.Trim() != "power-on")
        {
            throw new FleetSimulationException($"--power-on-signal: expected 'power-on' on standard input, read {(line is null ? "the end of input" : $"'{line}'")}");
        }
    }

    private static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true };

    public static Dictionary<string, object?> ToJson(ScenarioReport r) => new()
    {
        ["scenario"] = r.Scenario, ["units"] = r.Units, ["completed"] = r.Completed, ["seconds"] = r.Elapsed.TotalSeconds,
        ["requests"] = r.Requests, ["requestsPerUnit"] = r.RequestsPerUnit, ["maxRequestsPerUnit"] = r.MaxRequestsPerUnit,
        ["retries"] = r.Retries, ["retriesPerUnit"] = r.RetriesPerUnit, ["maxRetriesPerUnit"] = r.MaxRetriesPerUnit,
        ["reauthentications"] = r.Reauthentications, ["attemptsPerUnit"] = r.AttemptsPerUnit, ["errors"] = r.Errors,
        ["p50Ms"] = r.P50.TotalMilliseconds, ["p95Ms"] = r.P95.TotalMilliseconds, ["p99Ms"] = r.P99.TotalMilliseconds, ["maxMs"] = r.Max.TotalMilliseconds,
        ["processCpuSeconds"] = r.ProcessCpu.TotalSeconds, ["peakWorkingSetBytes"] = r.PeakWorkingSetBytes, ["note"] = r.Note,
        ["rollout"] = r.Rollout,
    };
}
