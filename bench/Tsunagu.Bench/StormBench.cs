using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Tsunagu.Demo;
using Tsunagu.Protocol.Bundles;
using Tsunagu.Server;
using Tsunagu.Server.Data;

namespace Tsunagu.Bench;

/// <summary>One storm row: units, the restarted server's limits, the host's power-on spread.</summary>
public sealed record StormRun(int Units, int MaxConcurrent, int Queue, int PowerOnSpreadSeconds);

/// <summary>
/// Reconnect storm across processes: the server as a child process (its own descriptors), the units in
/// <c>tsunagu fleetsim</c> worker processes of at most <see cref="UnitsPerWorker"/> full supervisors each (each unit on
/// its own HTTPS connection, its state store open: a few descriptors per unit, against a per-process limit of 20,000
/// here). The workers' units first boot two workers at a time (so the server never holds more than two workers'
/// connections at once), then power off; the server restarts with the row's limits; then every worker powers its
/// units on at the same moment and measures until every unit is Ready again.
/// </summary>
public static class StormBench
{
    /// <summary>Workers whose units first boot at the same time (the server then holds their connections together).</summary>
    public const int BootsAtOnce = 2;

    /// <summary>Units per fleetsim process (BENCH_STORM_WORKER_UNITS, default 2,500).</summary>
    public static readonly int UnitsPerWorker = int.Parse(Environment.GetEnvironmentVariable("BENCH_STORM_WORKER_UNITS") ?? "2500", CultureInfo.InvariantCulture);

    public static async Task<Result> RunAsync(string work, StormRun run, Action<string> progress, CancellationToken ct)
    {
        var scope = run.Units == 20_000 ? "" : $" (MEASURED AT {run.Units:N0} UNITS, not 20,000)";
        var metric = $"reconnect storm, {run.Units:N0} units, server restarted with {run.MaxConcurrent} concurrent + {run.Queue} queued, power-on spread {run.PowerOnSpreadSeconds} s: attempts per unit (ideal 1){scope}";
        var dir = Path.Combine(work, $"storm-{run.Units}-{run.MaxConcurrent}-{run.Queue}-{run.PowerOnSpreadSeconds}");
        Directory.CreateDirectory(dir);
        var serverDir = Path.Combine(dir, "server");

        // the server's data: the demo catalogue signed with a key the units are given
        string password;
        var releaseKeyFile = Path.Combine(dir, "release.pub");
        using (var releaseKey = ECDsa.Create(ECCurve.NamedCurves.nistP256))
        {
            await using var seedApp = await ServerHost.BuildAsync(new ServerOptions { DataDirectory = serverDir, MqttPort = -1 }, logging: l => l.SetMinimumLevel(LogLevel.Error));
            password = await DemoCatalogue.SeedAsync(seedApp.Services.GetRequiredService<TsunaguStore>(), seedApp.Services.GetRequiredService<ArtifactStore>(), releaseKey);
            await File.WriteAllTextAsync(releaseKeyFile, ReleaseKeys.PublicKeyBase64(releaseKey), ct);
        }
        SqliteConnection.ClearAllPools();

        var limits = new[] { $"PowerOnSpreadSeconds={run.PowerOnSpreadSeconds}" };
        var server = await ServerProcess.StartAsync(serverDir, "none", progress, ct, settings: limits);
        try
        {
            var floor = run.PowerOnSpreadSeconds > 0 ? 1.0 : 1 + Math.Max(0, run.Units - run.MaxConcurrent - run.Queue) / (double)run.Units;
            return await BootAndStormAsync(metric, dir, run.Units, 0, server.Url, serverDir, password, releaseKeyFile, floor, run.PowerOnSpreadSeconds,
                async () =>
                {
                    progress($"storm: restarting the server with {run.MaxConcurrent} + {run.Queue}");
                    await server.DisposeAsync();
                    SqliteConnection.ClearAllPools();
                    server = await ServerProcess.StartAsync(serverDir, "none", progress, ct, port: server.Port,
                        settings: [.. limits, $"MaxConcurrentRequests={run.MaxConcurrent}", $"RequestQueueLimit={run.Queue}"]);
                }, progress, ct);
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    /// <summary>
    /// <paramref name="units"/> units (numbered from <paramref name="unitOffset"/> + 1) in fleetsim workers against
    /// <paramref name="server"/> (whose data directory, or one with the same tls/ and keys/, is <paramref name="serverDir"/>):
    /// first boot, power off, <paramref name="beforePowerOn"/>, every worker powers its units on at once; the storm's row.
    /// </summary>
    public static async Task<Result> BootAndStormAsync(string metric, string dir, int units, int unitOffset, Uri server, string serverDir, string password,
        string releaseKeyFile, double floor, int powerOnSpreadSeconds, Func<Task> beforePowerOn, Action<string> progress, CancellationToken ct)
    {
        var c = CultureInfo.InvariantCulture;
        var workers = new List<Worker>();
        try
        {
            var workerCount = (units + UnitsPerWorker - 1) / UnitsPerWorker;
            var bootClock = Stopwatch.StartNew();
            for (var w = 0; w < workerCount; w += BootsAtOnce)
            {
                var batch = new List<Worker>();
                for (var b = w; b < Math.Min(workerCount, w + BootsAtOnce); b++)
                {
                    var workerUnits = Math.Min(UnitsPerWorker, units - b * UnitsPerWorker);
                    batch.Add(Worker.Start(b, workerUnits, unitOffset + b * UnitsPerWorker, server, serverDir, password, releaseKeyFile, dir, progress));
                }
                workers.AddRange(batch);
                foreach (var worker in batch)
                {
                    if (!await worker.PoweredOff.WaitAsync(TimeSpan.FromMinutes(20), ct).ContinueWith(t => t.IsCompletedSuccessfully && t.Result, ct))
                    {
                        return Result.NotMeasured(metric, "<=", 1.3, $"worker {worker.Index} did not finish its units' first boot (exit code {worker.ExitCode}): {worker.Tail()}");
                    }
                }
            }
            var bootSeconds = bootClock.Elapsed.TotalSeconds;
            progress(string.Create(c, $"storm: {units} units through their first boot in {bootSeconds:0} s ({workerCount} workers)"));
            await beforePowerOn();

            foreach (var worker in workers) { worker.PowerOn(); }
            var deadline = TimeSpan.FromSeconds(powerOnSpreadSeconds + 900);
            foreach (var worker in workers)
            {
                if (!await worker.Exited.WaitAsync(deadline, ct).ContinueWith(t => t.IsCompletedSuccessfully, ct))
                {
                    return Result.NotMeasured(metric, "<=", 1.3, $"worker {worker.Index} did not finish the storm in {deadline.TotalSeconds:0} s: {worker.Tail()}");
                }
            }
            var storms = new List<JsonElement>();
            var boots = new List<JsonElement>();
            foreach (var worker in workers)
            {
                if (!File.Exists(worker.JsonPath))
                {
                    return Result.NotMeasured(metric, "<=", 1.3, $"worker {worker.Index} wrote no report (exit code {worker.ExitCode}): {worker.Tail()}");
                }
                using var doc = JsonDocument.Parse(await File.ReadAllTextAsync(worker.JsonPath, ct));
                foreach (var report in doc.RootElement.EnumerateArray())
                {
                    (report.GetProperty("scenario").GetString() == "power-cut" ? storms : boots).Add(report.Clone());
                }
            }
            if (storms.Count != workers.Count)
            {
                return Result.NotMeasured(metric, "<=", 1.3, $"{workers.Count - storms.Count} worker(s) reported no storm");
            }
            double Sum(List<JsonElement> rs, string name) => rs.Sum(r => r.GetProperty(name).GetDouble());
            double Max(List<JsonElement> rs, string name) => rs.Max(r => r.GetProperty(name).GetDouble());
            var all = Sum(storms, "units");
            var completed = Sum(storms, "completed");
            var seconds = Max(storms, "seconds");
            var attempts = 1 + Sum(storms, "retries") / all;
            var errors = storms.SelectMany(r => r.GetProperty("errors").EnumerateObject())
                .GroupBy(e => e.Name).Select(g => $"{g.Key} x{g.Sum(e => e.Value.GetInt64())}").ToList();
            var note = string.Create(c,
                $"{workers.Count} fleetsim processes, server in its own; {completed:0}/{all:0} Ready {seconds:0.0} s after power-on = goodput {completed / seconds:0.0} units/s; " +
                $"requests/unit {Sum(storms, "requests") / all:0.00} (clean: 5); max retries of one unit {Max(storms, "maxRetriesPerUnit"):0}; errors {(errors.Count == 0 ? "none" : string.Join(", ", errors))}; " +
                $"p50/p99 latency (worst worker) {Max(storms, "p50Ms"):0}/{Max(storms, "p99Ms"):0} ms; lowest possible with these limits {floor:0.00}; " +
                $"first boot before it: {Sum(boots, "completed"):0}/{Sum(boots, "units"):0} in {bootSeconds:0} s, attempts/unit {1 + Sum(boots, "retries") / Sum(boots, "units"):0.00}");
            return completed == all
                ? new Result(metric, attempts, 1.0, "<=", 1.3, note)
                : Result.NotMeasured(metric, "<=", 1.3, "not every unit came back: " + note);
        }
        finally
        {
            foreach (var worker in workers) { await worker.DisposeAsync(); }
        }
    }

    /// <summary>One <c>tsunagu fleetsim --power-on-signal</c> process. Stopped by PID.</summary>
    private sealed class Worker : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly StringBuilder _output = new();
        private readonly TaskCompletionSource<bool> _poweredOff = new(TaskCreationOptions.RunContinuationsAsynchronously);

        private Worker(int index, Process process, string jsonPath)
        {
            Index = index;
            _process = process;
            JsonPath = jsonPath;
        }

        public int Index { get; }
        public string JsonPath { get; }
        public Task<bool> PoweredOff => _poweredOff.Task;
        public Task Exited => _process.WaitForExitAsync();
        public int ExitCode => _process.HasExited ? _process.ExitCode : -1;

        public static Worker Start(int index, int units, int offset, Uri server, string serverDir, string password, string releaseKeyFile, string dir,
            Action<string> progress)
        {
            var cli = ServerProcess.BuiltDll(Path.Combine("tools", "Tsunagu.Cli"), "tsunagu.dll");
            var json = Path.Combine(dir, $"worker-{index}.json");
            var start = new ProcessStartInfo("dotnet")
            {
                RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            };
            foreach (var a in new[]
                     {
                         cli, "fleetsim", "--server", server.ToString(), "--server-cert", Path.Combine(serverDir, "tls", Tsunagu.Server.Security.ServerCertificate.PemFile),
                         "--unit-key", Path.Combine(serverDir, "keys", Tsunagu.Server.Apis.UnitKey.FileName), "--password", password,
                         "--units", units.ToString(CultureInfo.InvariantCulture), "--unit-offset", offset.ToString(CultureInfo.InvariantCulture),
                         "--scenario", "power-cut", "--no-first-boot-update", "--own-connections", "--no-push", "--power-on-signal", "--release-key", releaseKeyFile,
                         "--timeout", "1200", "--data", Path.Combine(dir, $"worker-{index}"), "--json", json,
                     })
            {
                start.ArgumentList.Add(a);
            }
            var process = Process.Start(start) ?? throw new InvalidOperationException("could not start tsunagu fleetsim");
            var worker = new Worker(index, process, json);
            void OnLine(string? line)
            {
                if (line is null) { return; }
                lock (worker._output)
                {
                    worker._output.AppendLine(line);
                    if (worker._output.Length > 16_000) { worker._output.Remove(0, worker._output.Length - 8_000); }
                }
                if (line.Trim() == "powered-off") { worker._poweredOff.TrySetResult(true); return; }
                if (!line.StartsWith("fail:", StringComparison.Ordinal) && !line.StartsWith(' ')) { progress($"worker {index}: {line}"); }
            }
            process.OutputDataReceived += (_, e) => OnLine(e.Data);
            process.ErrorDataReceived += (_, e) => OnLine(e.Data);
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            _ = process.WaitForExitAsync().ContinueWith(_ => worker._poweredOff.TrySetResult(false), TaskScheduler.Default);
            return worker;
        }

        public void PowerOn()
        {
            _process.StandardInput.WriteLine("power-on");
            _process.StandardInput.Flush();
        }

        public string Tail()
        {
            if (_process.HasExited)
            {
                _process.WaitForExit(); // an exited worker: its last lines (the reason it stopped) are read to the end first
            }
            lock (_output)
            {
                var text = _output.ToString();
                return text.Length > 1500 ? text[^1500..] : text;
            }
        }

        public async ValueTask DisposeAsync()
        {
            if (!_process.HasExited) { _process.Kill(); }
            await _process.WaitForExitAsync();
            _process.Dispose();
        }
    }
}
