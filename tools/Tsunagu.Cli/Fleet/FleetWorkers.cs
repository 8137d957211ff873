using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Tsunagu.Cli.Fleet;

/// <summary>
/// What the units of a fleet sent since the meters were last reset, merged from every process that holds some: per unit
/// (by MAC) its requests, retries and acknowledged ready reports, and for all of them the re-authentications, errors by
/// kind, requests by route and every request's latency (Stopwatch ticks of this machine).
/// </summary>
public sealed record FleetCounts(
    IReadOnlyList<string> Macs, long[] Requests, long[] Retries, long[] ReadyAcks, long Reauthentications,
    IReadOnlyDictionary<string, long> Errors, IReadOnlyDictionary<string, long> Routes, long[] LatencyTicks)
{
    public static FleetCounts Merge(IReadOnlyList<FleetCounts> parts) => new(
        [.. parts.SelectMany(p => p.Macs)], [.. parts.SelectMany(p => p.Requests)], [.. parts.SelectMany(p => p.Retries)],
        [.. parts.SelectMany(p => p.ReadyAcks)], parts.Sum(p => p.Reauthentications), Sum(parts.Select(p => p.Errors)),
        Sum(parts.Select(p => p.Routes)), [.. parts.SelectMany(p => p.LatencyTicks)]);

    private static SortedDictionary<string, long> Sum(IEnumerable<IReadOnlyDictionary<string, long>> all)
    {
        var sum = new SortedDictionary<string, long>(StringComparer.Ordinal);
        foreach (var d in all)
        {
            foreach (var (k, v) in d) { sum[k] = sum.GetValueOrDefault(k) + v; }
        }
        return sum;
    }
}

/// <summary>A worker's own process figures: its CPU and peak resident memory (each worker is a process of its own).</summary>
public sealed record WorkerProcessFigures(int Index, int Units, double CpuSeconds, long PeakWorkingSetBytes, int PeakDescriptors);

/// <summary>
/// The simulated units a rollout scenario moves, wherever they run: in this process (<see cref="LocalUnits"/>) or in
/// <c>tsunagu fleetsim --worker</c> processes (<see cref="WorkerUnits"/>).
/// </summary>
public interface IFleetUnits
{
    IReadOnlyList<string> Macs { get; }

    /// <summary>Whether every unit is connected to the broker (it can be pushed a check).</summary>
    Task<bool> AllConnectedAsync(CancellationToken ct);

    /// <summary>The units in <paramref name="failing"/> answer their health probe with 403 from now on; every other unit passes it.</summary>
    Task SetFailingHealthAsync(IReadOnlySet<string> failing, CancellationToken ct);

    /// <summary>Clears the latencies, errors and routes counted so far (per-unit counters keep counting).</summary>
    Task ResetMeterAsync(CancellationToken ct);

    Task<FleetCounts> CountAsync(CancellationToken ct);
}

/// <summary>The units of this process's <see cref="SimulatedFleet"/>, metered by <paramref name="meter"/>.</summary>
public sealed class LocalUnits(SimulatedFleet fleet, FleetMeter meter) : IFleetUnits
{
    public IReadOnlyList<string> Macs { get; } = [.. fleet.Units.Select(u => u.Mac)];

    public Task<bool> AllConnectedAsync(CancellationToken ct) => Task.FromResult(fleet.Units.All(u => u.IsPoweredOn && u.Supervisor.Context.Push is { IsConnected: true }));

    public Task SetFailingHealthAsync(IReadOnlySet<string> failing, CancellationToken ct)
    {
        foreach (var u in fleet.Units) { ((MeteredNetwork)u.Board.Network).FailsHealth = failing.Contains(u.Mac); }
        return Task.CompletedTask;
    }

    public Task ResetMeterAsync(CancellationToken ct)
    {
        meter.Reset();
        return Task.CompletedTask;
    }

    public Task<FleetCounts> CountAsync(CancellationToken ct)
    {
        var units = fleet.Units;
        return Task.FromResult(new FleetCounts(Macs, [.. units.Select(u => u.Meter.Requests)], [.. units.Select(u => u.Meter.Retries)],
            [.. units.Select(u => u.Meter.ReadyAcks)], units.Sum(u => u.Meter.Reauthentications), meter.Errors.ToDictionary(), meter.ByRoute.ToDictionary(),
            [.. meter.LatencyTicks]));
    }
}

/// <summary>
/// The worker side: after its scenarios, a <c>tsunagu fleetsim --worker</c> process keeps its units running and answers
/// one command per line of standard input with one line on standard output, <c>worker-reply JSON</c>:
/// <c>connected</c>, <c>fail-health MAC,MAC,...</c> (an empty list: none), <c>reset</c>, <c>count</c>,
/// <c>figures</c>, <c>quit</c>.
/// </summary>
public static class WorkerProtocol
{
    public const string Ready = "worker-ready";
    public const string Reply = "worker-reply ";

    public static async Task ServeAsync(SimulatedFleet fleet, FleetMeter meter, Func<int> peakDescriptors, TextReader input, TextWriter output, CancellationToken ct)
    {
        var local = new LocalUnits(fleet, meter);
        await output.WriteLineAsync(Ready);
        await output.FlushAsync(ct);
        while (await input.ReadLineAsync(ct) is { } line)
        {
            var (command, argument) = line.IndexOf(' ') is var space and > 0 ? (line[..space], line[(space + 1)..]) : (line.Trim(), "");
            object reply;
            switch (command)
            {
                case "connected":
                    reply = new { connected = await local.AllConnectedAsync(ct) };
                    break;
                case "fail-health":
                    await local.SetFailingHealthAsync(argument.Split(',', StringSplitOptions.RemoveEmptyEntries).ToHashSet(StringComparer.Ordinal), ct);
                    reply = new { };
                    break;
                case "reset":
                    await local.ResetMeterAsync(ct);
                    reply = new { };
                    break;
                case "count":
                    reply = await local.CountAsync(ct);
                    break;
                case "figures":
                {
                    using var self = Process.GetCurrentProcess();
                    reply = new WorkerProcessFigures(0, fleet.Units.Count, Environment.CpuUsage.TotalTime.TotalSeconds, self.PeakWorkingSet64, peakDescriptors());
                    break;
                }
                case "quit":
                    return;
                default:
                    reply = new { error = $"unknown command '{command}'" };
                    break;
            }
            await output.WriteLineAsync(Reply + JsonSerializer.Serialize(reply, reply.GetType(), Json));
            await output.FlushAsync(ct);
        }
    }

    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);
}

/// <summary>
/// The units of a fleet spread over <c>tsunagu fleetsim --worker</c> processes against this process's server: one
/// process cannot hold them all (each unit keeps about four descriptors open, its two state files and both ends of its
/// broker connection when the broker is in the same process, and a process may open 20,000 here).
/// </summary>
public sealed class WorkerUnits : IFleetUnits, IAsyncDisposable
{
    private readonly List<WorkerProcess> _workers;

    private WorkerUnits(List<WorkerProcess> workers, IReadOnlyList<string> macs)
    {
        _workers = workers;
        Macs = macs;
    }

    public IReadOnlyList<string> Macs { get; }
    public int Count => _workers.Count;

    /// <summary>
    /// Starts <paramref name="workers"/> processes sharing <paramref name="units"/> units (numbered from 1, in ranges),
    /// each first-booting its units against <paramref name="server"/>, and returns when every one of them is done with
    /// its first boot and waits for commands.
    /// </summary>
    public static async Task<WorkerUnits> StartAsync(int units, int workers, Uri server, string serverCertificate, string unitKeyFile, string password,
        string releaseKeyFile, string directory, FleetSimSettings settings, Action<string> progress, CancellationToken ct)
    {
        var started = new List<WorkerProcess>();
        var macs = new List<string>();
        try
        {
            var per = (units + workers - 1) / workers;
            for (var w = 0; w < workers; w++)
            {
                var offset = w * per;
                var count = Math.Min(per, units - offset);
                if (count <= 0) { break; }
                started.Add(WorkerProcess.Start(w, count, offset, server, serverCertificate, unitKeyFile, password, releaseKeyFile, directory, settings, progress));
                for (var i = offset + 1; i <= offset + count; i++) { macs.Add(SimulatedFleet.MacFor(i)); }
            }
            foreach (var worker in started)
            {
                if (!await worker.ReadyAsync(settings.ScenarioTimeout + TimeSpan.FromMinutes(5), ct))
                {
                    throw new FleetSimulationException($"worker {worker.Index} did not finish its units' first boot (exit code {worker.ExitCode}): {worker.Tail()}");
                }
            }
            return new WorkerUnits(started, macs);
        }
        catch
        {
            foreach (var worker in started) { await worker.DisposeAsync(); }
            throw;
        }
    }

    public async Task<bool> AllConnectedAsync(CancellationToken ct)
    {
        foreach (var w in _workers)
        {
            if (!(await w.AskAsync("connected", ct)).GetProperty("connected").GetBoolean()) { return false; }
        }
        return true;
    }

    public async Task SetFailingHealthAsync(IReadOnlySet<string> failing, CancellationToken ct)
    {
        // every worker is told the whole list; each applies it to its own units
        var line = "fail-health " + string.Join(',', failing.Order(StringComparer.Ordinal));
        foreach (var w in _workers) { await w.AskAsync(line, ct); }
    }

    public async Task ResetMeterAsync(CancellationToken ct)
    {
        foreach (var w in _workers) { await w.AskAsync("reset", ct); }
    }

    public async Task<FleetCounts> CountAsync(CancellationToken ct)
    {
        var parts = new List<FleetCounts>();
        foreach (var w in _workers)
        {
            parts.Add((await w.AskAsync("count", ct)).Deserialize<FleetCounts>(WorkerProtocol.Json)
                      ?? throw new FleetSimulationException($"worker {w.Index} sent no counts"));
        }
        return FleetCounts.Merge(parts);
    }

    public async Task<IReadOnlyList<WorkerProcessFigures>> FiguresAsync(CancellationToken ct)
    {
        var figures = new List<WorkerProcessFigures>();
        foreach (var w in _workers)
        {
            var f = (await w.AskAsync("figures", ct)).Deserialize<WorkerProcessFigures>(WorkerProtocol.Json)
                    ?? throw new FleetSimulationException($"worker {w.Index} sent no figures");
            figures.Add(f with { Index = w.Index });
        }
        return figures;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var w in _workers) { await w.DisposeAsync(); }
    }

    /// <summary>One <c>tsunagu fleetsim --worker</c> process (this program, started again); stopped by its own <c>quit</c>, else by PID.</summary>
    private sealed class WorkerProcess : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly StringBuilder _output = new();
        private readonly TaskCompletionSource<bool> _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly SemaphoreSlim _asking = new(1, 1);
        private TaskCompletionSource<string> _reply = new(TaskCreationOptions.RunContinuationsAsynchronously);

        private WorkerProcess(int index, Process process)
        {
            Index = index;
            _process = process;
        }

        public int Index { get; }
        public int ExitCode => _process.HasExited ? _process.ExitCode : -1;

        public static WorkerProcess Start(int index, int units, int offset, Uri server, string certificate, string unitKey, string password, string releaseKey,
            string directory, FleetSimSettings settings, Action<string> progress)
        {
            var c = CultureInfo.InvariantCulture;
            // this program's assembly (tsunagu.dll) under the dotnet host, also when the simulation runs inside a test host
            var host = Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet" ? Environment.ProcessPath! : "dotnet";
            var start = new ProcessStartInfo(host)
            {
                RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            };
            start.ArgumentList.Add(typeof(WorkerUnits).Assembly.Location);
            foreach (var a in new[]
                     {
                         "fleetsim", "--worker", "--server", server.ToString(), "--server-cert", certificate, "--unit-key", unitKey, "--password", password,
                         "--release-key", releaseKey, "--units", units.ToString(c), "--unit-offset", offset.ToString(c), "--scenario", FleetScenarios.FirstBoot,
                         "--timeout", settings.ScenarioTimeout.TotalSeconds.ToString(c), "--data", Path.Combine(directory, $"worker-{index}"),
                         "--max-connections", settings.MaxConnections.ToString(c),
                         "--health-window", (settings.HealthWindow ?? FleetSimSettings.RolloutHealthWindow).TotalSeconds.ToString(c),
                         "--backoff-base", settings.BackoffBase.TotalSeconds.ToString(c), "--backoff-cap", settings.BackoffCap.TotalSeconds.ToString(c),
                     })
            {
                start.ArgumentList.Add(a);
            }
            if (settings.SampleInterval is { } every) { start.ArgumentList.Add("--sample"); start.ArgumentList.Add(every.TotalSeconds.ToString(c)); }
            var process = Process.Start(start) ?? throw new FleetSimulationException("could not start a fleetsim worker");
            var worker = new WorkerProcess(index, process);
            void OnLine(string? line)
            {
                if (line is null) { return; }
                if (line == WorkerProtocol.Ready) { worker._ready.TrySetResult(true); return; }
                if (line.StartsWith(WorkerProtocol.Reply, StringComparison.Ordinal)) { worker._reply.TrySetResult(line[WorkerProtocol.Reply.Length..]); return; }
                lock (worker._output)
                {
                    worker._output.AppendLine(line);
                    if (worker._output.Length > 16_000) { worker._output.Remove(0, worker._output.Length - 8_000); }
                }
                progress($"worker {index}: {line}");
            }
            process.OutputDataReceived += (_, e) => OnLine(e.Data);
            process.ErrorDataReceived += (_, e) => OnLine(e.Data);
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            _ = process.WaitForExitAsync().ContinueWith(_ =>
            {
                worker._ready.TrySetResult(false);
                worker._reply.TrySetException(new FleetSimulationException($"worker {index} exited (code {worker.ExitCode}): {worker.Tail()}"));
            }, TaskScheduler.Default);
            return worker;
        }

        public async Task<bool> ReadyAsync(TimeSpan timeout, CancellationToken ct)
        {
            try
            {
                return await _ready.Task.WaitAsync(timeout, ct);
            }
            catch (TimeoutException)
            {
                return false;
            }
        }

        /// <summary>Sends one command and waits for its reply (one command at a time per worker).</summary>
        public async Task<JsonElement> AskAsync(string command, CancellationToken ct)
        {
            await _asking.WaitAsync(ct);
            try
            {
                if (_process.HasExited) { throw new FleetSimulationException($"worker {Index} exited (code {ExitCode}): {Tail()}"); }
                _reply = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
                await _process.StandardInput.WriteLineAsync(command.AsMemory(), ct);
                await _process.StandardInput.FlushAsync(ct);
                var text = await _reply.Task.WaitAsync(TimeSpan.FromMinutes(2), ct);
                var reply = JsonDocument.Parse(text).RootElement.Clone();
                if (reply.ValueKind == JsonValueKind.Object && reply.TryGetProperty("error", out var error))
                {
                    throw new FleetSimulationException($"worker {Index}: {error.GetString()}");
                }
                return reply;
            }
            finally
            {
                _asking.Release();
            }
        }

        public string Tail()
        {
            lock (_output)
            {
                var text = _output.ToString();
                return text.Length > 1500 ? text[^1500..] : text;
            }
        }

        public async ValueTask DisposeAsync()
        {
            if (!_process.HasExited)
            {
                try
                {
                    await _process.StandardInput.WriteLineAsync("quit");
                    await _process.StandardInput.FlushAsync();
                }
                catch (IOException)
                {
                    // its input is closed: it is ending anyway
                }
                using var wait = new CancellationTokenSource(TimeSpan.FromMinutes(2));
                try
                {
                    await _process.WaitForExitAsync(wait.Token);
                }
                catch (OperationCanceledException)
                {
                    _process.Kill();
                    await _process.WaitForExitAsync();
                }
            }
            _process.Dispose();
            _asking.Dispose();
        }
    }
}
