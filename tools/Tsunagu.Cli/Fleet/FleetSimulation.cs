using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Tsunagu.Cli.Factory;
using Tsunagu.Demo;
using Tsunagu.Firmware.Supervision;
using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;
using Tsunagu.Server;
using Tsunagu.Server.Data;

namespace Tsunagu.Cli.Fleet;

/// <summary>The scenarios of <c>tsunagu fleetsim</c>.</summary>
public static class FleetScenarios
{
    public const string FirstBoot = "first-boot";
    public const string DailyCheck = "daily-check";
    public const string ForcedCheck = "forced-check";
    public const string PowerCut = "power-cut";
    public const string SubscriberWave = "subscriber-wave";

    /// <summary>A staged rollout of the whole fleet from its pattern to a new one (<c>--waves</c>), every unit healthy.</summary>
    public const string Rollout = "rollout";

    /// <summary>A staged rollout in which <c>--fail-health</c> percent of each wave's units fail their health check: the error threshold pauses it.</summary>
    public const string RolloutPause = "rollout-pause";

    /// <summary>What <c>--scenario all</c> runs.</summary>
    public static readonly IReadOnlyList<string> All = [FirstBoot, DailyCheck, ForcedCheck, PowerCut, SubscriberWave];

    /// <summary>Every scenario, in the order they run: <see cref="All"/>, then the rollouts (named only, never part of "all").</summary>
    public static readonly IReadOnlyList<string> Known = [.. All, Rollout, RolloutPause];

    public static bool IsRollout(string scenario) => scenario is Rollout or RolloutPause;
}

/// <summary>A fleet simulation could not be set up or run (bad settings, a server that refuses the operator...).</summary>
public sealed class FleetSimulationException(string message, Exception? inner = null) : Exception(message, inner);

public sealed record FleetSimSettings
{
    public int Units { get; init; } = 100;
    public IReadOnlyList<string> Scenarios { get; init; } = FleetScenarios.All;
    public string DataDirectory { get; init; } = ".tsunagu/fleetsim";

    /// <summary>An external server; null runs one in this process (SQLite, embedded broker).</summary>
    public Uri? Server { get; init; }
    public string? ServerCertificate { get; init; }
    public string? UnitKeyFile { get; init; }
    public string? OperatorPassword { get; init; }

    /// <summary>Units share one connection pool of <see cref="MaxConnections"/> (else each opens its own).</summary>
    public bool SharedConnections { get; init; } = true;
    public int MaxConnections { get; init; } = 256;

    /// <summary>Units connect to the broker (needed by forced-check and subscriber-wave).</summary>
    public bool Push { get; init; } = true;

    /// <summary>In-process server limits (<see cref="ServerOptions.MaxConcurrentRequests"/>, <see cref="ServerOptions.RequestQueueLimit"/>).</summary>
    public int? MaxConcurrentRequests { get; init; }
    public int? RequestQueueLimit { get; init; }

    /// <summary>power-cut: the restarted in-process server's limits (null: as before the cut), e.g. a smaller server facing the storm.</summary>
    public int? StormMaxConcurrentRequests { get; init; }
    public int? StormRequestQueueLimit { get; init; }

    /// <summary>
    /// Whether first-boot includes the signed update from the factory pattern to pattern 2 (15 requests per unit).
    /// Without it every unit's target is its factory pattern: provisioning, host session, version check, service
    /// configuration and ready only (a quicker way to a Ready fleet when the scenario of interest comes after it).
    /// </summary>
    public bool UpdateOnFirstBoot { get; init; } = true;

    /// <summary>Units are numbered from <c>UnitOffset + 1</c> (MACs and serials), so several simulators can share one server.</summary>
    public int UnitOffset { get; init; }

    /// <summary>External server: release keys (base64 SubjectPublicKeyInfo) the units trust, so they can install its bundles.</summary>
    public IReadOnlyList<string> ReleaseKeys { get; init; } = [];

    /// <summary>power-cut: awaited once every unit is off (and an in-process server restarted), before they all power on.</summary>
    public Func<CancellationToken, Task>? BeforePowerOn { get; init; }

    /// <summary>In-process server's <see cref="ServerOptions.PowerOnSpreadSeconds"/> (null: the server's default, 0); an external server sends its own.</summary>
    public int? PowerOnSpreadSeconds { get; init; }

    /// <summary>daily-check: the units' periodic checks fall uniformly in this window (the 24 h +/-10% spread, compressed).</summary>
    public TimeSpan DailySpread { get; init; } = TimeSpan.FromSeconds(10);
    public TimeSpan ScenarioTimeout { get; init; } = TimeSpan.FromMinutes(5);
    public TimeSpan BackoffBase { get; init; } = TimeSpan.FromSeconds(1);
    public TimeSpan BackoffCap { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The rollout scenarios' waves, as the operator writes them (<c>--waves</c>).</summary>
    public string Waves { get; init; } = "10%,30%,100%";
    public int SuccessPercent { get; init; } = 90;
    public int ErrorPercent { get; init; } = 10;

    /// <summary>rollout-pause: the share of each wave's units (rounded up) whose health check fails after they install.</summary>
    public int FailHealthPercent { get; init; } = 20;

    /// <summary>In-process server's <see cref="ServerOptions.RolloutTickSeconds"/> (null: its default, 5 s).</summary>
    public double? RolloutTickSeconds { get; init; }

    /// <summary>
    /// The units' health window after an install (a unit failing health rolls back after it; healthy units pass at the
    /// first probe). Null: <see cref="RolloutHealthWindow"/> when a rollout scenario runs, else the firmware's own.
    /// </summary>
    public TimeSpan? HealthWindow { get; init; }

    /// <summary>
    /// Every this often, print the process's resources (managed heap, resident memory, descriptors, threads, memory maps;
    /// each per unit too); null: never. The peaks are printed at the end.
    /// </summary>
    public TimeSpan? SampleInterval { get; init; }

    /// <summary>
    /// Run the units in this many <c>tsunagu fleetsim --worker</c> processes against this process's server (0: in this
    /// process). Only first-boot and the rollout scenarios; the rollout scenarios read the server here and ask the workers
    /// for their units' counts.
    /// </summary>
    public int Workers { get; init; }

    /// <summary>The health window of the units when a rollout scenario runs and none is given (the firmware's is 2 min).</summary>
    public static readonly TimeSpan RolloutHealthWindow = TimeSpan.FromSeconds(5);
}

/// <summary>
/// The simulator process's resources at one moment, for a fleet of <paramref name="Units"/>: the managed heap
/// (<see cref="GC.GetTotalMemory"/>, without a collection) and what the GC has committed, the resident set, open file
/// descriptors, threads and memory maps (Linux's /proc/self; -1 elsewhere).
/// </summary>
public sealed record ResourceSample(int Units, long ManagedBytes, long CommittedBytes, long ResidentBytes, int Descriptors, int Threads, int Maps)
{
    public static ResourceSample Take(int units)
    {
        using var self = Process.GetCurrentProcess();
        return new ResourceSample(units, GC.GetTotalMemory(false), GC.GetGCMemoryInfo().TotalCommittedBytes, self.WorkingSet64,
            Count(() => Directory.GetFileSystemEntries("/proc/self/fd").Length), self.Threads.Count, Count(() => File.ReadLines("/proc/self/maps").Count()));
    }

    private static int Count(Func<int> read)
    {
        try
        {
            return read();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return -1;
        }
    }

    public override string ToString()
    {
        var c = CultureInfo.InvariantCulture;
        return string.Create(c,
            $"managed heap {ManagedBytes / 1048576} MiB ({ManagedBytes / 1024.0 / Units:0} KiB per unit; GC committed {CommittedBytes / 1048576} MiB), " +
            $"RSS {ResidentBytes / 1048576} MiB ({ResidentBytes / 1024.0 / Units:0} KiB per unit), {Descriptors} descriptors ({Descriptors / (double)Units:0.0} per unit), " +
            $"{Threads} threads, {Maps} memory maps");
    }
}

/// <summary>What one scenario measured.</summary>
public sealed record ScenarioReport(
    string Scenario, int Units, int Completed, TimeSpan Elapsed, long Requests, double RequestsPerUnit, long MaxRequestsPerUnit,
    long Retries, double RetriesPerUnit, long MaxRetriesPerUnit, IReadOnlyDictionary<string, long> Errors,
    TimeSpan P50, TimeSpan P95, TimeSpan P99, TimeSpan Max, TimeSpan ProcessCpu, long PeakWorkingSetBytes, string? Note,
    long Reauthentications = 0, RolloutReport? Rollout = null)
{
    /// <summary>Attempts per unit: the first try plus each retry.</summary>
    public double AttemptsPerUnit => 1 + RetriesPerUnit;
    public bool AllCompleted => Completed == Units;

    /// <summary>
    /// A report from a scenario's per-unit <paramref name="requests"/> and <paramref name="retries"/> (one entry per unit)
    /// and every request's latency (<paramref name="latencyTicks"/>, Stopwatch ticks, any order); its peak working set is
    /// this process's now.
    /// </summary>
    public static ScenarioReport Of(string scenario, int units, int completed, TimeSpan elapsed, IReadOnlyCollection<long> requests,
        IReadOnlyCollection<long> retries, IReadOnlyDictionary<string, long> errors, IEnumerable<long> latencyTicks, TimeSpan cpu, string? note,
        long reauthentications, RolloutReport? rollout = null)
    {
        var ticks = latencyTicks.ToArray();
        Array.Sort(ticks);
        using var self = Process.GetCurrentProcess();
        return new ScenarioReport(scenario, units, completed, elapsed, requests.Sum(), requests.Average(), requests.Max(),
            retries.Sum(), retries.Average(), retries.Max(), new SortedDictionary<string, long>(errors.ToDictionary(), StringComparer.Ordinal),
            FleetMeter.Percentile(ticks, 50), FleetMeter.Percentile(ticks, 95), FleetMeter.Percentile(ticks, 99), FleetMeter.Percentile(ticks, 100),
            cpu, self.PeakWorkingSet64, note, reauthentications, rollout);
    }
}

/// <summary>
/// N simulated units (the real supervisor over the simulated HAL) against a server, through the scenarios of
/// the fleet simulator, measuring each with a <see cref="FleetMeter"/> on every unit's network.
/// </summary>
public sealed partial class FleetSimulation : IAsyncDisposable
{
    private readonly FleetSimSettings _settings;
    private readonly Action<string> _progress;
    private readonly FleetMeter _meter = new();
    private readonly string _root;
    private SharedConnections? _pool;
    private SimulatedFleet? _fleet;
    private WebApplication? _app;
    private ServerOptions? _serverOptions;
    private Uri _server = new("https://127.0.0.1/");
    private string _pin = "";
    private string _password = "";
    private ECDsa? _releaseKey;

    public FleetSimulation(FleetSimSettings settings, Action<string> progress)
    {
        if (settings.Units < 1) { throw new FleetSimulationException($"--units {settings.Units}: at least one unit"); }
        if (settings.UnitOffset < 0 || settings.UnitOffset + (long)settings.Units > 0xFFFFFF)
        {
            throw new FleetSimulationException($"--unit-offset {settings.UnitOffset} with --units {settings.Units}: unit numbers must stay within 1..{0xFFFFFF}");
        }
        var unknown = settings.Scenarios.Where(s => !FleetScenarios.Known.Contains(s)).ToList();
        if (unknown.Count > 0) { throw new FleetSimulationException($"unknown scenario(s) {string.Join(", ", unknown)}; known: {string.Join(", ", FleetScenarios.Known)}"); }
        if (settings.HealthWindow is { } window && (window < TimeSpan.Zero || window > TimeSpan.FromHours(1))) { throw new FleetSimulationException($"--health-window {window.TotalSeconds}: 0 to 3600 seconds"); }
        if (settings.Scenarios.Any(FleetScenarios.IsRollout))
        {
            if (settings.Server is not null) { throw new FleetSimulationException("the rollout scenarios read the server's engine and audit log: they need the in-process server (drop --server)"); }
            if (!settings.Push) { throw new FleetSimulationException("the rollout scenarios push each wave's units to check: they need push (drop --no-push)"); }
            if (!settings.UpdateOnFirstBoot) { throw new FleetSimulationException("the rollout scenarios move units without a target pattern: drop --no-first-boot-update"); }
            var parsed = Server.Fleet.Rollouts.RolloutEngine.ParseWaves(settings.Waves);
            if (parsed.Error is { } error) { throw new FleetSimulationException($"--{error}"); }
            if (Server.Fleet.Rollouts.RolloutEngine.InvalidWaves(parsed.Waves) is { } invalid) { throw new FleetSimulationException($"--{invalid}"); }
            if (settings.SuccessPercent is < 1 or > 100) { throw new FleetSimulationException($"--success {settings.SuccessPercent}: 1 to 100"); }
            if (settings.ErrorPercent is < 0 or > 100) { throw new FleetSimulationException($"--error {settings.ErrorPercent}: 0 to 100"); }
            if (settings.FailHealthPercent is < 0 or > 100) { throw new FleetSimulationException($"--fail-health {settings.FailHealthPercent}: 0 to 100"); }
            if (settings.Scenarios.Contains(FleetScenarios.RolloutPause) && settings.FailHealthPercent == 0)
            {
                throw new FleetSimulationException("--fail-health 0: no unit fails, so rollout-pause could never reach the error threshold and pause");
            }
        }
        if (settings.Workers < 0 || settings.Workers > settings.Units) { throw new FleetSimulationException($"--workers {settings.Workers}: 0 to --units ({settings.Units})"); }
        if (settings.Workers > 0)
        {
            if (settings.Server is not null) { throw new FleetSimulationException("--workers runs the server in this process and the units in the workers: drop --server"); }
            if (settings.Scenarios.Any(s => s != FleetScenarios.FirstBoot && !FleetScenarios.IsRollout(s)))
            {
                throw new FleetSimulationException($"--workers: only {FleetScenarios.FirstBoot}, {FleetScenarios.Rollout} and {FleetScenarios.RolloutPause}");
            }
        }
        if (settings.Server is not null && (settings.ServerCertificate is null || settings.UnitKeyFile is null || settings.OperatorPassword is null))
        {
            throw new FleetSimulationException("an external --server needs --server-cert, --unit-key and the operator password");
        }
        if (!settings.Push && settings.Scenarios.Any(s => s is FleetScenarios.ForcedCheck or FleetScenarios.SubscriberWave))
        {
            throw new FleetSimulationException("forced-check and subscriber-wave push a check to every unit: they need push (drop --no-push)");
        }
        _settings = settings;
        _progress = progress;
        _root = Path.GetFullPath(settings.DataDirectory);
    }

    public FleetMeter Meter => _meter;
    public SimulatedFleet Fleet => _fleet ?? throw new InvalidOperationException("the simulation has not been set up");

    private WorkerUnits? _workers;

    /// <summary>The units the rollout scenarios move: this process's fleet, or the workers'.</summary>
    private IFleetUnits FleetUnits => _workers ?? (IFleetUnits)new LocalUnits(Fleet, _meter);

    /// <summary>Worker mode: keeps the units running and answers the coordinator (<see cref="WorkerProtocol"/>) until it says quit.</summary>
    public Task ServeAsync(WorkerInput input, TextWriter output, CancellationToken ct) =>
        WorkerProtocol.ServeAsync(Fleet, _meter, () => Math.Max(_peakDescriptors, ResourceSample.Take(_settings.Units).Descriptors), input, output, ct);

    /// <summary>Runs first-boot (always: every other scenario starts from a Ready fleet) and then each scenario asked for.</summary>
    public async Task<List<ScenarioReport>> RunAsync(CancellationToken ct)
    {
        using var sampling = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var sampler = _settings.SampleInterval is { } every ? SampleAsync(every, sampling.Token) : Task.CompletedTask;
        try
        {
            return await RunScenariosAsync(ct);
        }
        finally
        {
            await sampling.CancelAsync();
            await sampler;
            if (_settings.SampleInterval is not null)
            {
                using var self = Process.GetCurrentProcess();
                _progress(string.Create(CultureInfo.InvariantCulture,
                    $"resources   peaks: RSS {self.PeakWorkingSet64 / 1048576} MiB, {_peakDescriptors} descriptors ({_peakDescriptors / (double)_settings.Units:0.0} per unit), " +
                    $"{_peakMaps} memory maps, {_peakThreads} threads"));
            }
        }
    }

    private int _peakDescriptors, _peakMaps, _peakThreads;

    /// <summary>Prints a <see cref="ResourceSample"/> every <paramref name="every"/> until cancelled, keeping the peaks.</summary>
    private async Task SampleAsync(TimeSpan every, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        try
        {
            while (true)
            {
                await Task.Delay(every, ct);
                var sample = ResourceSample.Take(_settings.Units);
                _peakDescriptors = Math.Max(_peakDescriptors, sample.Descriptors);
                _peakMaps = Math.Max(_peakMaps, sample.Maps);
                _peakThreads = Math.Max(_peakThreads, sample.Threads);
                _progress($"resources   {clock.Elapsed.TotalSeconds,6:0} s  {sample}");
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // the run ended
        }
    }

    private async Task<List<ScenarioReport>> RunScenariosAsync(CancellationToken ct)
    {
        await SetUpAsync(ct);
        var reports = new List<ScenarioReport>();
        foreach (var scenario in FleetScenarios.Known.Where(s => s == FleetScenarios.FirstBoot || _settings.Scenarios.Contains(s)))
        {
            _progress($"scenario {scenario}: {_settings.Units} units");
            var report = FleetScenarios.IsRollout(scenario) ? await RunRolloutAsync(scenario == FleetScenarios.RolloutPause, ct)
                : _settings.Workers > 0 ? await FirstBootInWorkersAsync(ct)
                : await RunScenarioAsync(scenario, ct);
            reports.Add(report);
            _progress(Describe(report));
            if (!report.AllCompleted)
            {
                _progress($"stopping: {report.Units - report.Completed} unit(s) did not complete {scenario}");
                break;
            }
        }
        return reports;
    }

    private async Task SetUpAsync(CancellationToken ct)
    {
        if (Directory.Exists(_root)) { Directory.Delete(_root, recursive: true); }
        Directory.CreateDirectory(_root);
        byte[] unitKey;
        if (_settings.Server is null)
        {
            _serverOptions = new ServerOptions
            {
                DataDirectory = Path.Combine(_root, "server"),
                Port = FreePort(),
                MqttPort = _settings.Push ? FreePort() : -1,
            };
            if (_settings.MaxConcurrentRequests is { } max) { _serverOptions.MaxConcurrentRequests = max; }
            if (_settings.RequestQueueLimit is { } queue) { _serverOptions.RequestQueueLimit = queue; }
            if (_settings.PowerOnSpreadSeconds is { } powerOnSpread) { _serverOptions.PowerOnSpreadSeconds = powerOnSpread; }
            if (_settings.RolloutTickSeconds is { } tick) { _serverOptions.RolloutTickSeconds = tick; }
            _releaseKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            _app = await ServerHost.BuildAsync(_serverOptions, logging: l => l.SetMinimumLevel(LogLevel.Error));
            _password = await DemoCatalogue.SeedAsync(_app.Services.GetRequiredService<TsunaguStore>(), _app.Services.GetRequiredService<ArtifactStore>(), _releaseKey);
            await _app.StartAsync(ct);
            _server = new Uri(ServerHost.BaseUrl(_app));
            _pin = OperatorClient.PinFromPemFile(Path.Combine(_serverOptions.DataDirectory, "tls", Server.Security.ServerCertificate.PemFile));
            unitKey = _app.Services.GetRequiredService<Server.Apis.UnitKey>().Bytes;
            _progress($"server      {_server} (in this process, SQLite, {(_settings.Push ? $"embedded broker on port {_serverOptions.MqttPort}" : "no push")}, " +
                      $"{_serverOptions.ConcurrencyFor(Tsunagu.Server.Data.DatabaseKind.Sqlite)} concurrent requests + {_serverOptions.RequestQueueLimit} queued, " +
                      $"power-on spread {_serverOptions.PowerOnSpreadSeconds} s)");
        }
        else
        {
            _server = _settings.Server;
            _pin = OperatorClient.PinFromPemFile(_settings.ServerCertificate!);
            _password = _settings.OperatorPassword!;
            unitKey = FactoryIdentities.ReadUnitKey(_settings.UnitKeyFile!);
            _progress($"server      {_server} (external)");
        }

        if (_settings.Workers > 0) { return; } // the workers burn, register and run the units

        var supervisorOptions = new SupervisorOptions
        {
            CheckInterval = TimeSpan.FromDays(1),
            BackoffBase = _settings.BackoffBase,
            BackoffCap = _settings.BackoffCap,
            RefusedRetryInterval = TimeSpan.FromMinutes(1),
            Update = UnitUpdateOptions(_settings),
        };
        _fleet = new SimulatedFleet(Path.Combine(_root, "fleet"), supervisorOptions, (unit, change) =>
        {
            unit.Meter.Count(change);
        });
        _fleet.BuildProm(DemoCatalogue.OsVersion, DemoCatalogue.FactoryApplications);
        _pool = _settings.SharedConnections ? new SharedConnections([_pin], _settings.MaxConnections) : null;

        // release key: the in-process server's demo bundle is signed with ours; an external server's demo bundle is not
        // verifiable by these units, so against an external server they are given no release key and refuse the update
        var releaseKeys = _releaseKey is null ? _settings.ReleaseKeys : [ReleaseKeys.PublicKeyBase64(_releaseKey)];
        var started = Stopwatch.StartNew();
        // without the first-boot update each unit's target is its factory pattern, set in the same table (one request)
        var target = _settings.UpdateOnFirstBoot ? "" : DemoCatalogue.Pattern1;
        var csv = new StringBuilder("mac,serial,hardware_version,isp_method,isp_username,isp_password,domain,subscriber,target_pattern\n");
        for (var i = _settings.UnitOffset + 1; i <= _settings.UnitOffset + _settings.Units; i++)
        {
            var mac = SimulatedFleet.MacFor(i);
            var identity = FactoryIdentities.Create(new IdentitySpec(mac, $"SIM-{i:D6}", DemoCatalogue.HardwareVersion, "simulated",
                _server.ToString(), new WanAccount("pppoe", $"setup-{MacAddress.Compact(mac)}", "provisional"), [_pin], releaseKeys), unitKey);
            await _fleet.AddUnitAsync(identity, ct, unit => new MeteredNetwork(unit.Hardware.Wan, _meter, unit.Meter, _pool));
            csv.Append(CultureInfo.InvariantCulture, $"{mac},SIM-{i:D6},{DemoCatalogue.HardwareVersion},pppoe,user{i}@isp.example,isp-{i},unit{i}.example,,{target}\n");
        }
        using (var client = Operator())
        {
            await client.SendAsync(HttpMethod.Post, Routes.Units + "/bulk", new StringContent(csv.ToString(), Encoding.UTF8, "text/csv"), ct);
        }
        _progress($"fleet       {_settings.Units} units burned and registered in {started.Elapsed.TotalSeconds:0.0} s " +
                  $"({(_pool is null ? "a connection pool per unit" : $"one shared pool of up to {_settings.MaxConnections} connections")})");
    }

    /// <summary>
    /// The units' update options: the firmware's own (a 2 min health window, a probe every 5 s) unless a rollout
    /// scenario runs or <see cref="FleetSimSettings.HealthWindow"/> is given; then that window
    /// (<see cref="FleetSimSettings.RolloutHealthWindow"/> by default) and a probe every fifth of it (0.1 to 5 s).
    /// </summary>
    public static Tsunagu.Firmware.Updates.UpdateOptions UnitUpdateOptions(FleetSimSettings settings)
    {
        var window = settings.HealthWindow ?? (settings.Scenarios.Any(FleetScenarios.IsRollout) ? FleetSimSettings.RolloutHealthWindow : (TimeSpan?)null);
        return window is { } w
            ? new Tsunagu.Firmware.Updates.UpdateOptions
            {
                HealthWindow = w,
                HealthProbeInterval = TimeSpan.FromTicks(Math.Clamp(w.Ticks / 5, TimeSpan.TicksPerMillisecond * 100, TimeSpan.TicksPerSecond * 5)),
            }
            : new Tsunagu.Firmware.Updates.UpdateOptions();
    }

    /// <summary>The pattern every unit is on after first-boot.</summary>
    private string FleetPattern => _settings.UpdateOnFirstBoot ? DemoCatalogue.Pattern2 : DemoCatalogue.Pattern1;

    private OperatorClient Operator() => new(_server, DemoCatalogue.OperatorName, _password, [_pin]);

    private async Task<ScenarioReport> RunScenarioAsync(string scenario, CancellationToken ct)
    {
        var units = Fleet.Units;
        if (scenario != FleetScenarios.FirstBoot && scenario != FleetScenarios.PowerCut && _settings.Push)
        {
            await WaitAsync(() => units.All(u => u.Supervisor.Context.Push is { IsConnected: true }), "every unit connected to the broker", ct);
        }
        var before = units.Select(u => (u.Meter.Requests, u.Meter.Retries, u.Meter.ReadyAcks)).ToArray();
        var reauthenticationsBefore = units.Sum(u => u.Meter.Reauthentications);
        string? note = null;
        var cpu0 = Environment.CpuUsage.TotalTime;
        _meter.Reset();
        var clock = Stopwatch.StartNew();
        switch (scenario)
        {
            case FleetScenarios.FirstBoot:
                Fleet.StartAll();
                break;
            case FleetScenarios.DailyCheck:
                // the periodic timers of N units, spread uniformly over the window (what CheckJitter does over a day)
                _ = Task.Run(async () =>
                {
                    var order = units.OrderBy(_ => Random.Shared.Next()).ToList();
                    for (var i = 0; i < order.Count; i++)
                    {
                        var due = _settings.DailySpread * i / order.Count;
                        if (due > clock.Elapsed) { await Task.Delay(due - clock.Elapsed, ct); }
                        order[i].Supervisor.RequestCheck(forced: false);
                    }
                }, ct);
                note = $"periodic checks spread over {_settings.DailySpread.TotalSeconds:0} s";
                break;
            case FleetScenarios.ForcedCheck:
            {
                using var client = Operator();
                var result = await client.ForceCheckAsync(new ForceCheckRequest(null, FleetPattern, 5), ct);
                note = $"one operator request; {result.Notified.Count} push(es) published";
                break;
            }
            case FleetScenarios.PowerCut:
                note = await PowerCutAsync(ct);
                // measured from the moment power comes back
                _meter.Reset();
                cpu0 = Environment.CpuUsage.TotalTime;
                clock.Restart();
                Fleet.StartAll();
                break;
            case FleetScenarios.SubscriberWave:
            {
                var revisions = await ChangeEveryUnitsServicesAsync(ct);
                using var client = Operator();
                await client.ForceCheckAsync(new ForceCheckRequest(null, FleetPattern, 3), ct);
                note = $"{units.Count} service configuration changes by the operator API, then one forced check";
                _revisions = revisions;
                break;
            }
        }
        await WaitAsync(() => Done(units, before), $"{scenario}: every unit Ready again", ct, _settings.ScenarioTimeout, throwOnTimeout: false);
        var elapsed = clock.Elapsed;
        var cpu = Environment.CpuUsage.TotalTime - cpu0;
        if (scenario == FleetScenarios.SubscriberWave)
        {
            note += "; " + await CountAppliedAsync(ct);
        }

        var completed = units.Select((u, i) => u.Meter.ReadyAcks > before[i].ReadyAcks ? 1 : 0).Sum();
        var requests = units.Select((u, i) => u.Meter.Requests - before[i].Requests).ToArray();
        var retries = units.Select((u, i) => u.Meter.Retries - before[i].Retries).ToArray();
        if (!Done(units, before))
        {
            var stuck = units.Select((u, i) => (u, i)).Where(x => x.u.Meter.ReadyAcks <= before[x.i].ReadyAcks).Take(3)
                .Select(x => $"{x.u.Mac} in {x.u.Supervisor.State}: {x.u.Supervisor.Context.LastError ?? "no error"}");
            note = (note is null ? "" : note + "; ") + "not completed, e.g. " + string.Join(" | ", stuck);
        }
        return ScenarioReport.Of(scenario, units.Count, completed, elapsed, requests, retries, _meter.Errors, _meter.LatencyTicks, cpu, note,
            units.Sum(u => u.Meter.Reauthentications) - reauthenticationsBefore);
    }

    private Dictionary<string, int> _revisions = [];

    /// <summary>
    /// first-boot with <see cref="FleetSimSettings.Workers"/>: each worker burns and registers its range of units and
    /// boots them against this process's server; the report merges the workers' counts (the CPU is this process's, the
    /// server's; the workers' CPU and peak RSS are in the note).
    /// </summary>
    private async Task<ScenarioReport> FirstBootInWorkersAsync(CancellationToken ct)
    {
        var dir = Path.Combine(_root, "workers");
        Directory.CreateDirectory(dir);
        var releaseKeyFile = Path.Combine(dir, "release.pub");
        await File.WriteAllTextAsync(releaseKeyFile, ReleaseKeys.PublicKeyBase64(_releaseKey!), ct);
        var serverDir = _serverOptions!.DataDirectory;
        var cpu0 = Environment.CpuUsage.TotalTime;
        var clock = Stopwatch.StartNew();
        _workers = await WorkerUnits.StartAsync(_settings.Units, _settings.Workers, _server,
            Path.Combine(serverDir, "tls", Server.Security.ServerCertificate.PemFile), Path.Combine(serverDir, "keys", Server.Apis.UnitKey.FileName),
            _password, releaseKeyFile, dir, _settings, _progress, ct);
        var elapsed = clock.Elapsed;
        var cpu = Environment.CpuUsage.TotalTime - cpu0;
        var counts = await _workers.CountAsync(ct);
        var figures = await _workers.FiguresAsync(ct);
        return ScenarioReport.Of(FleetScenarios.FirstBoot, counts.Macs.Count, counts.ReadyAcks.Count(n => n > 0), elapsed, counts.Requests, counts.Retries,
            counts.Errors, counts.LatencyTicks, cpu,
            $"{figures.Count} worker processes (the units), the server in this one (its CPU and peak RSS above); {DescribeWorkers(figures)}",
            counts.Reauthentications);
    }

    internal static string DescribeWorkers(IReadOnlyList<WorkerProcessFigures> figures) =>
        string.Join("; ", figures.Select(f => string.Create(CultureInfo.InvariantCulture,
            $"worker {f.Index}: {f.Units} units, CPU {f.CpuSeconds:0.0} s since it started, peak RSS {f.PeakWorkingSetBytes / 1048576} MiB, {f.PeakDescriptors} descriptors at most")));

    private static bool Done(IReadOnlyList<FleetUnit> units, (long Requests, long Retries, long ReadyAcks)[] before)
    {
        for (var i = 0; i < units.Count; i++)
        {
            if (units[i].Meter.ReadyAcks <= before[i].ReadyAcks) { return false; }
        }
        return true;
    }

    /// <summary>Every unit loses power and the in-process server restarts; the caller then powers every unit on at the same moment.</summary>
    private async Task<string> PowerCutAsync(CancellationToken ct)
    {
        await Task.WhenAll(Fleet.Units.Select(u => Fleet.PowerOffAsync(u)));
        var note = "all units powered off and on at once" +
                   (_serverOptions is { PowerOnSpreadSeconds: > 0 and var s } ? $" (each waits a random 0-{s} s, the host's power-on spread)" : "");
        if (_app is not null && _serverOptions is not null)
        {
            await _app.StopAsync(ct);
            await _app.DisposeAsync();
            if (_settings.StormMaxConcurrentRequests is { } max) { _serverOptions.MaxConcurrentRequests = max; }
            if (_settings.StormRequestQueueLimit is { } queue) { _serverOptions.RequestQueueLimit = queue; }
            _app = await ServerHost.BuildAsync(_serverOptions, logging: l => l.SetMinimumLevel(LogLevel.Error));
            await _app.StartAsync(ct);
            note = string.Create(CultureInfo.InvariantCulture,
                $"server restarted ({_serverOptions.ConcurrencyFor(DatabaseKind.Sqlite)} concurrent + {_serverOptions.RequestQueueLimit} queued), then {note}");
        }
        if (_settings.BeforePowerOn is { } hook)
        {
            await hook(ct);
        }
        return note;
    }

    /// <summary>One new service configuration per unit (a subscriber's change: a port forward and a blocked domain).</summary>
    private async Task<Dictionary<string, int>> ChangeEveryUnitsServicesAsync(CancellationToken ct)
    {
        var revisions = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
        using var client = Operator();
        var baseConfig = DemoCatalogue.StandardServices;
        await Parallel.ForEachAsync(Fleet.Units.Select((u, i) => (u, i)), new ParallelOptions { MaxDegreeOfParallelism = 16, CancellationToken = ct }, async (x, token) =>
        {
            var config = baseConfig with
            {
                Firewall = baseConfig.Firewall with { PortForwards = [.. baseConfig.Firewall.PortForwards, new PortForward("tcp", 9000 + x.i % 1000, "192.168.10.30", 22)] },
                ContentFilter = baseConfig.ContentFilter with { BlockedDomains = [.. baseConfig.ContentFilter.BlockedDomains, $"blocked{x.i}.example"] },
            };
            var body = await client.SendJsonAsync(HttpMethod.Put, $"{Routes.Units}/{x.u.Mac}/service-config", config, token);
            using var doc = System.Text.Json.JsonDocument.Parse(body);
            revisions[x.u.Mac] = doc.RootElement.GetProperty("revision").GetInt32();
        });
        return revisions.ToDictionary();
    }

    private async Task<string> CountAppliedAsync(CancellationToken ct)
    {
        using var client = Operator();
        var views = await client.ListUnitsAsync(null, null, ct);
        var applied = views.Count(v => _revisions.TryGetValue(v.Mac, out var r) && v.AppliedConfigRevision == r);
        return $"{applied}/{_revisions.Count} units applied their new revision";
    }

    private static Task WaitAsync(Func<bool> condition, string what, CancellationToken ct, TimeSpan? timeout = null, bool throwOnTimeout = true) =>
        WaitUntilAsync(() => Task.FromResult(condition()), what, timeout ?? TimeSpan.FromMinutes(2), TimeSpan.FromMilliseconds(20), ct, throwOnTimeout);

    /// <summary>
    /// Polls <paramref name="condition"/> every <paramref name="interval"/> until it holds or <paramref name="timeout"/>
    /// has passed: then a <see cref="FleetSimulationException"/> naming the timeout and <paramref name="what"/>, or (with
    /// <paramref name="throwOnTimeout"/> false) a return.
    /// </summary>
    private static async Task WaitUntilAsync(Func<Task<bool>> condition, string what, TimeSpan timeout, TimeSpan interval, CancellationToken ct,
        bool throwOnTimeout = true)
    {
        var deadline = Stopwatch.StartNew();
        while (!await condition())
        {
            if (deadline.Elapsed > timeout)
            {
                if (throwOnTimeout) { throw new FleetSimulationException($"timed out after {timeout.TotalSeconds:0} s waiting for {what}"); }
                return;
            }
            await Task.Delay(interval, ct);
        }
    }

    /// <summary>A loopback port nothing listens on right now, for the server started next (<see cref="LoopbackPorts"/>).</summary>
    internal static int FreePort() => LoopbackPorts.Next();

    public static string Describe(ScenarioReport r)
    {
        var errors = r.Errors.Count == 0 ? "none" : string.Join(", ", r.Errors.Select(e => $"{e.Key}: {e.Value}"));
        var c = CultureInfo.InvariantCulture;
        var text = new StringBuilder()
            .Append(c, $"  {r.Scenario,-16} {r.Completed}/{r.Units} done in {r.Elapsed.TotalSeconds:0.00} s | requests/unit {r.RequestsPerUnit:0.00} (max {r.MaxRequestsPerUnit}) | ")
            .Append(c, $"retries/unit {r.RetriesPerUnit:0.00} (max {r.MaxRetriesPerUnit}; {r.Reauthentications} after a refused token), attempts/unit {r.AttemptsPerUnit:0.00} | errors {errors} | ")
            .Append(c, $"latency p50 {r.P50.TotalMilliseconds:0.0} ms p95 {r.P95.TotalMilliseconds:0.0} ms p99 {r.P99.TotalMilliseconds:0.0} ms max {r.Max.TotalMilliseconds:0} ms | ")
            .Append(c, $"process CPU {r.ProcessCpu.TotalSeconds:0.0} s, peak RSS {r.PeakWorkingSetBytes / 1048576} MiB");
        if (r.Note is not null) { text.Append(c, $"\n  {"",-16} {r.Note}"); }
        return text.ToString();
    }

    public async ValueTask DisposeAsync()
    {
        if (_workers is not null) { await _workers.DisposeAsync(); }
        if (_fleet is not null) { await _fleet.DisposeAsync(); }
        _pool?.Dispose();
        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
        _releaseKey?.Dispose();
    }
}
