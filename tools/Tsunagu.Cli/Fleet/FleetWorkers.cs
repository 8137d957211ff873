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
    /// <summary>
    /// Checks that <paramref name="part"/>, the counts <paramref name="worker"/> sent, are of exactly the units
    /// <paramref name="expected"/> of its range, in that order, with one entry per unit in every per-unit array.
    /// </summary>
    /// <exception cref="FleetSimulationException">naming the worker and what differs.</exception>
    public static void CheckPart(int worker, FleetCounts part, IReadOnlyList<string> expected)
    {
        if (part.Macs is null || part.Requests is null || part.Retries is null || part.ReadyAcks is null || part.Errors is null || part.Routes is null || part.LatencyTicks is null)
        {
            throw new FleetSimulationException($"worker {worker} sent counts with a field missing");
        }
        if (!part.Macs.SequenceEqual(expected, StringComparer.Ordinal))
        {
            var first = Enumerable.Range(0, Math.Max(part.Macs.Count, expected.Count))
                .First(i => i >= part.Macs.Count || i >= expected.Count || part.Macs[i] != expected[i]);
            throw new FleetSimulationException(
                $"worker {worker} sent counts of {part.Macs.Count} unit(s), its range has {expected.Count}: they differ at position {first} " +
                $"({(first < part.Macs.Count ? part.Macs[first] : "none")}, expected {(first < expected.Count ? expected[first] : "none")})");
        }
        foreach (var (name, length) in new[] { ("requests", part.Requests.Length), ("retries", part.Retries.Length), ("ready acks", part.ReadyAcks.Length) })
        {
            if (length != expected.Count) { throw new FleetSimulationException($"worker {worker} sent {length} {name} counts for its {expected.Count} unit(s)"); }
        }
    }

    /// <summary>Checks that the merged counts are of the plan's units, <paramref name="macs"/>, each once and in that order.</summary>
    public static void CheckMerged(FleetCounts merged, IReadOnlyList<string> macs)
    {
        if (!merged.Macs.SequenceEqual(macs, StringComparer.Ordinal))
        {
            throw new FleetSimulationException($"the workers' counts are of {merged.Macs.Count} unit(s), not of the {macs.Count} unit(s) of the plan in its order");
        }
    }

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
/// A worker's standard input, read from the moment the worker starts (also during its first boot): the coordinator's
/// commands go to <see cref="Commands"/>; the end of input (the coordinator is gone) or <c>quit</c> cancels
/// <see cref="Ended"/>, so a worker never outlives its coordinator by more than what it is doing at that moment.
/// </summary>
public sealed class WorkerInput : IDisposable
{
    private readonly CancellationTokenSource _ended = new();
    private readonly System.Threading.Channels.Channel<string> _commands = System.Threading.Channels.Channel.CreateUnbounded<string>();

    private WorkerInput() { }

    public CancellationToken Ended => _ended.Token;
    public System.Threading.Channels.ChannelReader<string> Commands => _commands.Reader;

    public static WorkerInput Start(TextReader input)
    {
        var w = new WorkerInput();
        _ = Task.Run(async () =>
        {
            try
            {
                while (await input.ReadLineAsync() is { } line)
                {
                    if (WorkerProtocol.Parse(line).Command == "quit") { break; }
                    await w._commands.Writer.WriteAsync(line);
                }
            }
            catch (IOException)
            {
                // the input broke: as its end
            }
            finally
            {
                // the end first: whoever has read the last command (the channel completes next) sees the worker ended
                await w._ended.CancelAsync();
                w._commands.Writer.TryComplete();
            }
        });
        return w;
    }

    public void Dispose() => _ended.Dispose();
}

/// <summary>
/// The worker side: after its scenarios, a <c>tsunagu fleetsim --worker</c> process keeps its units running and answers
/// one command per line of standard input, <c>SEQ COMMAND [ARGUMENT]</c>, with one line on standard output,
/// <c>worker-reply SEQ JSON</c> (SEQ echoed, so a reply is matched to its command): <c>connected</c>,
/// <c>fail-health MAC,MAC,...</c> (an empty list: none), <c>reset</c>, <c>count</c>, <c>figures</c>; <c>quit</c> or the
/// end of input ends it.
/// </summary>
public static class WorkerProtocol
{
    public const string Ready = "worker-ready";
    public const string Reply = "worker-reply ";

    /// <summary>A command line: its sequence number (null without one), command and argument.</summary>
    public static (long? Seq, string Command, string Argument) Parse(string line)
    {
        line = line.Trim();
        long? seq = null;
        if (line.IndexOf(' ') is var first and > 0 && long.TryParse(line.AsSpan(0, first), NumberStyles.None, CultureInfo.InvariantCulture, out var n))
        {
            seq = n;
            line = line[(first + 1)..].TrimStart();
        }
        else if (long.TryParse(line, NumberStyles.None, CultureInfo.InvariantCulture, out _))
        {
            return (null, "", "");
        }
        return line.IndexOf(' ') is var space and > 0 ? (seq, line[..space], line[(space + 1)..]) : (seq, line, "");
    }

    public static async Task ServeAsync(SimulatedFleet fleet, FleetMeter meter, Func<int> peakDescriptors, WorkerInput input, TextWriter output, CancellationToken ct)
    {
        var local = new LocalUnits(fleet, meter);
        await output.WriteLineAsync(Ready);
        await output.FlushAsync(ct);
        await foreach (var line in input.Commands.ReadAllAsync(ct))
        {
            var (seq, command, argument) = Parse(line);
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
                default:
                    reply = new { error = $"unknown command '{command}'" };
                    break;
            }
            await output.WriteLineAsync(Reply + (seq ?? 0).ToString(CultureInfo.InvariantCulture) + " " + JsonSerializer.Serialize(reply, reply.GetType(), Json));
            await output.FlushAsync(ct);
        }
    }

    /// <summary>
    /// Reads the reply <paramref name="text"/> (a reply line after its prefix, <c>SEQ JSON</c>) of <paramref name="worker"/>
    /// to the command numbered <paramref name="expectedSeq"/>, <paramref name="command"/>, with <paramref name="read"/>.
    /// </summary>
    /// <exception cref="FleetSimulationException">
    /// naming the worker: a reply without a sequence number or with another command's, one that is not JSON, an
    /// <c>{"error": ...}</c> reply, or one <paramref name="read"/> cannot read (a field missing or of another type).
    /// </exception>
    public static T ReadReply<T>(int worker, long expectedSeq, string command, string text, Func<JsonElement, T> read)
    {
        var space = text.IndexOf(' ');
        if (space <= 0 || !long.TryParse(text.AsSpan(0, space), NumberStyles.None, CultureInfo.InvariantCulture, out var seq))
        {
            throw new FleetSimulationException($"worker {worker} sent a reply without a sequence number: '{Shorten(text)}'");
        }
        if (seq != expectedSeq)
        {
            throw new FleetSimulationException($"worker {worker} replied to command {seq}, not to command {expectedSeq} ('{command}')");
        }
        var json = text[(space + 1)..];
        try
        {
            using var document = JsonDocument.Parse(json);
            var root = document.RootElement;
            if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("error", out var error))
            {
                throw new FleetSimulationException($"worker {worker}: {(error.ValueKind == JsonValueKind.String ? error.GetString() : error.GetRawText())}");
            }
            return read(root);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new FleetSimulationException($"worker {worker} sent a malformed reply to '{command}' ({e.Message}): '{Shorten(json)}'", e);
        }
    }

    private static string Shorten(string text) => text.Length > 200 ? text[..200] + "..." : text;

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
    /// Starts <paramref name="workers"/> processes sharing <paramref name="units"/> units (numbered from --unit-offset + 1, in ranges),
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
            foreach (var (w, offset, count) in Ranges(units, workers))
            {
                var range = Enumerable.Range(settings.UnitOffset + offset + 1, count).Select(SimulatedFleet.MacFor).ToList();
                started.Add(WorkerProcess.Start(w, count, settings.UnitOffset + offset, range, server, serverCertificate, unitKeyFile, password, releaseKeyFile, directory, settings, progress));
                macs.AddRange(range);
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
            await DisposeAllAsync(started);
            throw;
        }
    }

    /// <summary>
    /// The ranges of <paramref name="units"/> units (from 0) that <paramref name="workers"/> workers (1 to
    /// <paramref name="units"/>) hold: one per worker, in order, contiguous, their sizes differing by at most one.
    /// </summary>
    public static IReadOnlyList<(int Worker, int Offset, int Count)> Ranges(int units, int workers)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(workers, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(units, workers);
        return [.. Enumerable.Range(0, workers).Select(w =>
        {
            var offset = (int)((long)units * w / workers);
            return (w, offset, (int)((long)units * (w + 1) / workers) - offset);
        })];
    }

    public async Task<bool> AllConnectedAsync(CancellationToken ct)
    {
        foreach (var w in _workers)
        {
            if (!await w.AskAsync("connected", r => r.GetProperty("connected").GetBoolean(), ct)) { return false; }
        }
        return true;
    }

    public async Task SetFailingHealthAsync(IReadOnlySet<string> failing, CancellationToken ct)
    {
        // every worker is told the whole list; each applies it to its own units
        var line = "fail-health " + string.Join(',', failing.Order(StringComparer.Ordinal));
        foreach (var w in _workers) { await w.AskAsync(line, _ => true, ct); }
    }

    public async Task ResetMeterAsync(CancellationToken ct)
    {
        foreach (var w in _workers) { await w.AskAsync("reset", _ => true, ct); }
    }

    public async Task<FleetCounts> CountAsync(CancellationToken ct)
    {
        var parts = new List<FleetCounts>();
        foreach (var w in _workers)
        {
            var part = await w.AskAsync("count", r => r.Deserialize<FleetCounts>(WorkerProtocol.Json), ct)
                       ?? throw new FleetSimulationException($"worker {w.Index} sent no counts");
            FleetCounts.CheckPart(w.Index, part, w.Macs);
            parts.Add(part);
        }
        var merged = FleetCounts.Merge(parts);
        FleetCounts.CheckMerged(merged, Macs);
        return merged;
    }

    public async Task<IReadOnlyList<WorkerProcessFigures>> FiguresAsync(CancellationToken ct)
    {
        var figures = new List<WorkerProcessFigures>();
        foreach (var w in _workers)
        {
            var f = await w.AskAsync("figures", r => r.Deserialize<WorkerProcessFigures>(WorkerProtocol.Json), ct)
                    ?? throw new FleetSimulationException($"worker {w.Index} sent no figures");
            figures.Add(f with { Index = w.Index });
        }
        return figures;
    }

    /// <summary>Stops every worker at once (each asked to quit, killed if it does not within 2 min; one not yet ready killed at once).</summary>
    public async ValueTask DisposeAsync() => await DisposeAllAsync(_workers);

    private static Task DisposeAllAsync(IEnumerable<WorkerProcess> workers) => Task.WhenAll(workers.Select(w => w.DisposeAsync().AsTask()));

    /// <summary>One <c>tsunagu fleetsim --worker</c> process (this program, started again); stopped by its own <c>quit</c>, else by PID.</summary>
    private sealed class WorkerProcess : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly StringBuilder _output = new();
        private readonly TaskCompletionSource<bool> _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly SemaphoreSlim _asking = new(1, 1);
        private readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private TaskCompletionSource<string> _reply = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private long _seq;

        private WorkerProcess(int index, IReadOnlyList<string> macs, Process process)
        {
            Index = index;
            Macs = macs;
            _process = process;
        }

        public int Index { get; }

        /// <summary>The MACs of this worker's range, in order.</summary>
        public IReadOnlyList<string> Macs { get; }
        public int ExitCode => _process.HasExited ? _process.ExitCode : -1;

        public static WorkerProcess Start(int index, int units, int offset, IReadOnlyList<string> macs, Uri server, string certificate, string unitKey, string password, string releaseKey,
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
                         "fleetsim", "--worker", "--server", server.ToString(), "--server-cert", certificate, "--unit-key", unitKey,
                         "--release-key", releaseKey, "--units", units.ToString(c), "--unit-offset", offset.ToString(c), "--scenario", FleetScenarios.FirstBoot,
                         "--timeout", settings.ScenarioTimeout.TotalSeconds.ToString(c), "--data", Path.Combine(directory, $"worker-{index}"),
                         "--max-connections", settings.MaxConnections.ToString(c),
                         "--health-window", (settings.HealthWindow ?? FleetSimSettings.RolloutHealthWindow).TotalSeconds.ToString(c),
                         "--backoff-base", settings.BackoffBase.TotalSeconds.ToString(c), "--backoff-cap", settings.BackoffCap.TotalSeconds.ToString(c),
                     })
            {
                start.ArgumentList.Add(a);
            }
            // the settings that shape the units themselves, as the coordinator was given them
            if (!settings.SharedConnections) { start.ArgumentList.Add("--own-connections"); }
            if (!settings.Push) { start.ArgumentList.Add("--no-push"); }
            if (!settings.UpdateOnFirstBoot) { start.ArgumentList.Add("--no-first-boot-update"); }
            // the operator password in the environment the CLI reads it from, not on a command line anyone may list
            start.Environment["TSUNAGU_OPERATOR_PASSWORD"] = password;
            if (settings.SampleInterval is { } every) { start.ArgumentList.Add("--sample"); start.ArgumentList.Add(every.TotalSeconds.ToString(c)); }
            var process = Process.Start(start) ?? throw new FleetSimulationException("could not start a fleetsim worker");
            var worker = new WorkerProcess(index, macs, process);
            void OnLine(string? line)
            {
                if (line is null) { return; }
                if (line == WorkerProtocol.Ready) { worker._ready.TrySetResult(true); return; }
                if (line.StartsWith(WorkerProtocol.Reply, StringComparison.Ordinal)) { worker.OnReply(line[WorkerProtocol.Reply.Length..]); return; }
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
                worker._exited.TrySetResult();
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

        /// <summary>A reply line (after the prefix), <c>SEQ JSON</c>: it completes the command asked, which reads it (<see cref="WorkerProtocol.ReadReply{T}"/>).</summary>
        private void OnReply(string text) => Volatile.Read(ref _reply).TrySetResult(text);

        /// <summary>
        /// Sends one command and waits for its reply (one command at a time per worker), read by <paramref name="read"/>:
        /// a reply that is not of this command, not JSON or not of the expected shape, or the worker's exit while it
        /// waits, is a <see cref="FleetSimulationException"/> naming the worker.
        /// </summary>
        public async Task<T> AskAsync<T>(string command, Func<JsonElement, T> read, CancellationToken ct)
        {
            await _asking.WaitAsync(ct);
            try
            {
                // the command's number first, then the promise its next reply line completes (ReadReply checks that line's number)
                var seq = Interlocked.Increment(ref _seq);
                var reply = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
                Volatile.Write(ref _reply, reply);
                if (_exited.Task.IsCompleted || _process.HasExited) { throw Exited(); }
                try
                {
                    await _process.StandardInput.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"{seq} {command}").AsMemory(), ct);
                    await _process.StandardInput.FlushAsync(ct);
                }
                catch (IOException e)
                {
                    throw new FleetSimulationException($"worker {Index}: could not send '{command}': {e.Message}", e);
                }
                // the reply, or the worker's exit (also one between the check above and now)
                var first = await Task.WhenAny(reply.Task, _exited.Task).WaitAsync(TimeSpan.FromMinutes(2), ct);
                if (first != reply.Task)
                {
                    throw Exited();
                }
                return WorkerProtocol.ReadReply(Index, seq, command, await reply.Task, read);
            }
            catch (TimeoutException)
            {
                throw new FleetSimulationException($"worker {Index} did not answer '{command}' within 2 min");
            }
            finally
            {
                _asking.Release();
            }
        }

        private FleetSimulationException Exited() => new($"worker {Index} exited (code {ExitCode}): {Tail()}");

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
            if (!_process.HasExited && !(_ready.Task.IsCompletedSuccessfully && _ready.Task.Result))
            {
                // not yet ready (its first boot cancelled or failed elsewhere): nothing of it is worth waiting for
                try
                {
                    _process.Kill(entireProcessTree: true);
                }
                catch (InvalidOperationException)
                {
                    // it has just exited
                }
                await _process.WaitForExitAsync();
            }
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
