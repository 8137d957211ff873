using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Tsunagu.Cli.Factory;
using Tsunagu.Cli.Fleet;
using Tsunagu.Demo;
using Tsunagu.Firmware.Supervision;
using Tsunagu.Hal;
using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;
using Tsunagu.Server;
using Tsunagu.Server.Data;

namespace Tsunagu.Cli.Chaos;

/// <summary>The faults the nemesis knows.</summary>
public static class Faults
{
    /// <summary>SIGKILL of the server process (with it the embedded broker); started again when the fault heals.</summary>
    public const string ServerKill = "server-kill";
    /// <summary>SIGTERM of the server process: a deploy; started again when the fault heals.</summary>
    public const string ServerRestart = "server-restart";
    /// <summary>The network between units and server takes connections and passes nothing.</summary>
    public const string Partition = "partition";
    /// <summary>Every connection between units and server is reset.</summary>
    public const string Reset = "reset";
    /// <summary>Every chunk between units and server is delayed.</summary>
    public const string Slow = "slow";
    /// <summary>The database's own restart (PostgreSQL immediate shutdown and start), when the run is given one.</summary>
    public const string DatabaseRestart = "database-restart";
    /// <summary>The server's token key is replaced (as after a leak): every token a unit holds is refused from then on.</summary>
    public const string TokenKeyRotation = "token-key-rotation";
    /// <summary>Every unit's wall clock is set off by minutes to hours, ahead or behind (seeded); it stays off for the rest of the run.</summary>
    public const string UnitClockSkew = "unit-clock-skew";
    /// <summary>
    /// The broker alone restarts while the server stays up. Mosquitto: SIGKILL, started again when the fault heals.
    /// The embedded broker lives in the server's process and cannot restart alone: every unit's broker connection is
    /// reset and new ones are refused for the fault's length (what units see of a broker restart).
    /// </summary>
    public const string BrokerRestart = "broker-restart";
    /// <summary>The server's wall clock jumps minutes to hours ahead or behind (libfaketime) and steps back when the fault heals.</summary>
    public const string ServerClockSkew = "server-clock-skew";
    /// <summary>The server's disk (a tmpfs of its own; needs root and SQLite) is filled to the last page, and freed when the fault heals.</summary>
    public const string DiskFull = "disk-full";

    public static readonly IReadOnlyList<string> All =
        [ServerKill, ServerRestart, Partition, Reset, Slow, DatabaseRestart, TokenKeyRotation, UnitClockSkew, BrokerRestart, ServerClockSkew, DiskFull];

    /// <summary>The faults this machine can run (database-restart needs a database the run owns; see <see cref="Unavailable"/>).</summary>
    public static IReadOnlyList<string> Available(string database) =>
        All.Where(f => f != DatabaseRestart && Unavailable(f, database) is null).ToList();

    /// <summary>Why <paramref name="fault"/> cannot run here, or null.</summary>
    public static string? Unavailable(string fault, string database) => fault switch
    {
        ServerClockSkew when !ServerClock.IsAvailable => $"server-clock-skew needs libfaketime ({ServerClock.Library}): install the Debian package 'faketime'",
        DiskFull when !Environment.IsPrivilegedProcess => "disk-full mounts a small tmpfs as the server's disk: it needs root",
        DiskFull when database.Contains('=', StringComparison.Ordinal) => "disk-full fills the server's own disk, where its SQLite database lives: it needs SQLite",
        _ => null,
    };
}

public sealed record ChaosSettings
{
    public int Seed { get; init; } = 1;
    public TimeSpan Duration { get; init; } = TimeSpan.FromMinutes(2);
    public int Units { get; init; } = 10;
    public string DataDirectory { get; init; } = ".tsunagu/chaos";

    /// <summary>The server's Database setting: a SQLite file name in its data directory, or a PostgreSQL connection string.</summary>
    public string Database { get; init; } = "tsunagu.db";

    /// <summary>The broker: <c>embedded</c> (in the server's process) or <c>mosquitto</c> (a real Mosquitto the run starts and owns).</summary>
    public string Broker { get; init; } = "embedded";
    public IReadOnlyList<string> Faults { get; init; } =
    [
        Chaos.Faults.ServerKill, Chaos.Faults.ServerRestart, Chaos.Faults.Partition, Chaos.Faults.Reset, Chaos.Faults.Slow,
        Chaos.Faults.TokenKeyRotation, Chaos.Faults.UnitClockSkew,
    ];

    /// <summary>The host tokens' lifetime on the server: short, so that tokens expire (and clocks matter) during a run.</summary>
    public TimeSpan HostTokenLifetime { get; init; } = TimeSpan.FromSeconds(90);

    /// <summary>Restarts the database immediately (the database-restart fault); null: that fault is not run.</summary>
    public Func<CancellationToken, Task>? RestartDatabase { get; init; }

    /// <summary>How long a fault lasts: uniformly between these.</summary>
    public TimeSpan MinFault { get; init; } = TimeSpan.FromSeconds(2);
    public TimeSpan MaxFault { get; init; } = TimeSpan.FromSeconds(8);

    /// <summary>Invariant: after a fault heals, every unit is Ready on its target pattern again within this.</summary>
    public TimeSpan RecoveryBound { get; init; } = TimeSpan.FromSeconds(90);

    /// <summary>Invariant: no unit sends more requests than this in any 60 s, during faults or after them.</summary>
    public int MaxRequestsPerUnitPerMinute { get; init; } = 120;

    /// <summary>
    /// When set, the run injects exactly this many faults (and <see cref="Duration"/> is not used): first each fault
    /// of <see cref="Faults"/> once, in a seeded order, then seeded draws.
    /// </summary>
    public int? FaultCount { get; init; }

    /// <summary>The units' push reconnect backoff (<see cref="Firmware.Net.PushOptions"/>; the firmware's defaults unless set).</summary>
    public TimeSpan? PushReconnectBase { get; init; }
    public TimeSpan? PushReconnectCap { get; init; }

    /// <summary>
    /// The fault (counted from 0) as which the operator publishes the update: every unit's target pattern becomes
    /// pattern 2 (update program p1-to-p2), and the fault's forced check pushes it; null: no update in the run.
    /// </summary>
    public int? UpdateAtFault { get; init; } = 1;

    /// <summary>
    /// From this fault on (counted from 0), a subscriber changes their unit's settings through the subscriber API in
    /// the middle of each fault (each unit's subscriber in turn); null: no subscriber changes.
    /// </summary>
    public int? SubscriberFromFault { get; init; } = 0;

    /// <summary>
    /// The answer to each unit's first update report is lost after the server took the report (the connection breaks on
    /// the way back), so every unit sends its report again.
    /// </summary>
    public bool LoseFirstUpdateAnswer { get; init; } = true;

    public TimeSpan BackoffBase { get; init; } = TimeSpan.FromMilliseconds(500);
    public TimeSpan BackoffCap { get; init; } = TimeSpan.FromSeconds(5);
}

public sealed record ChaosEvent(TimeSpan At, string What);

public sealed record InvariantResult(string Name, bool Held, string Detail);

public sealed record ChaosReport(int Seed, int Units, TimeSpan Elapsed, int FaultsInjected, IReadOnlyList<ChaosEvent> History, IReadOnlyList<InvariantResult> Invariants)
{
    public bool AllHeld => Invariants.All(i => i.Held);

    public string Describe()
    {
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"chaos seed {Seed}: {Units} units, {FaultsInjected} faults in {Elapsed.TotalSeconds:0} s");
        text.AppendLine("history:");
        foreach (var e in History)
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"  {e.At.TotalSeconds,7:0.0} s  {e.What}");
        }
        text.AppendLine("invariants:");
        foreach (var i in Invariants)
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"  {(i.Held ? "held  " : "BROKEN")} {i.Name}: {i.Detail}");
        }
        return text.ToString();
    }
}

/// <summary>
/// The nemesis: the real server (a child process it can kill), a simulated fleet (the real supervisor over the
/// simulated HAL) that reaches it through a <see cref="FaultProxy"/>, and a seeded schedule of faults. Before each
/// fault the operator forces a check, so the fault finds units in the middle of their work; after each fault heals
/// it checks that every unit comes back Ready on its target pattern, and forces a check again that every unit
/// must act on. Across the run it checks that no unit ever sends more than a bounded number of requests a minute. As
/// each fault begins the operator gives one unit a new configuration; at the end, with the fleet powered off, it checks
/// that nothing the units reported or the operator did is lost or duplicated in the server's history and audit
/// (<see cref="HistoryCheck"/>).
/// </summary>
public sealed class Nemesis(ChaosSettings settings, Action<string> progress) : IAsyncDisposable
{
    private readonly Stopwatch _clock = new();
    private readonly List<ChaosEvent> _history = [];
    private readonly ConcurrentDictionary<string, ConcurrentQueue<(long At, string Path, int? Status, bool Dropped)>> _requests = new();
    private readonly List<InvariantResult> _results = [];
    private readonly Random _random = new(settings.Seed);
    private string _serverDirectory = "";
    private ServerProcess? _server;
    private FaultProxy? _proxy;
    /// <summary>Between the units and the embedded broker (its broker-restart fault); null with Mosquitto.</summary>
    private FaultProxy? _brokerProxy;
    private MosquittoProcess? _mosquitto;
    private ServerClock? _serverClock;
    private string? _diskMount;
    private readonly List<ForcedCheck> _forced = [];
    private readonly List<AssignedConfig> _assigned = [];
    private Dictionary<string, IReadOnlyList<long>> _revisionsBefore = [];
    /// <summary>When the database was crashing (Stopwatch timestamps): commits that did not wait for the disk may be lost then.</summary>
    private readonly List<(long From, long To)> _lossWindows = [];
    private SimulatedFleet? _fleet;
    /// <summary>The pattern every unit must be Ready on: pattern 1, and pattern 2 once the update is published.</summary>
    private string _target = DemoCatalogue.Pattern1;
    private bool _published;
    /// <summary>Each unit's update reports as it sent them (install id, result, answer).</summary>
    private readonly ConcurrentDictionary<string, ConcurrentQueue<SentUpdateReport>> _updates = new();
    private readonly List<SubscriberChange> _subscriberChanges = [];
    private readonly ConcurrentDictionary<string, int> _subscriberUnanswered = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _subscriberPasswords = new(StringComparer.Ordinal);
    private Uri _operatorUrl = new("https://127.0.0.1/");
    private string _pin = "", _password = "";

    private void Record(string what)
    {
        var e = new ChaosEvent(_clock.Elapsed, what);
        lock (_history) { _history.Add(e); }
        progress(string.Create(CultureInfo.InvariantCulture, $"{e.At.TotalSeconds,7:0.0} s  {what}"));
    }

    public async Task<ChaosReport> RunAsync(CancellationToken ct)
    {
        if (settings.Units < 1) { throw new ArgumentException($"--units {settings.Units}: at least one unit"); }
        var unknown = settings.Faults.Except(Faults.All).ToList();
        if (unknown.Count > 0) { throw new ArgumentException($"unknown fault(s) {string.Join(", ", unknown)}; known: {string.Join(", ", Faults.All)}"); }
        var faults = settings.Faults.Where(f => f != Faults.DatabaseRestart || settings.RestartDatabase is not null).ToList();
        if (faults.Count == 0) { throw new ArgumentException("no fault to inject (database-restart needs a database the run can restart)"); }
        if (faults.Select(f => Faults.Unavailable(f, settings.Database)).FirstOrDefault(why => why is not null) is { } unavailable) { throw new ArgumentException(unavailable); }
        if (settings.Broker is not ("embedded" or "mosquitto")) { throw new ArgumentException($"--broker {settings.Broker}: embedded or mosquitto"); }
        if (settings.Broker == "mosquitto" && !MosquittoProcess.IsAvailable)
        {
            throw new ArgumentException($"--broker mosquitto needs Mosquitto with dynamic security ({MosquittoProcess.Program}, {MosquittoProcess.Plugin}): install the Debian packages 'mosquitto' and 'mosquitto-clients'");
        }

        _clock.Start();
        await SetUpAsync(faults, ct);
        var random = _random;
        var recoveries = new List<(string Fault, TimeSpan Took)>();
        var injected = 0;
        // with a fault count: every fault once first (seeded order), then seeded draws
        var firstRound = settings.FaultCount is null ? [] : faults.OrderBy(_ => random.Next()).ToList();
        while ((settings.FaultCount is { } count ? injected < count : _clock.Elapsed < settings.Duration) && !ct.IsCancellationRequested)
        {
            var fault = injected < firstRound.Count ? firstRound[injected] : faults[random.Next(faults.Count)];
            var length = settings.MinFault + (settings.MaxFault - settings.MinFault) * random.NextDouble();
            var lead = TimeSpan.FromMilliseconds(random.Next(0, 300));
            var acks = Units.Select(u => u.Meter.ReadyAcks).ToArray();

            var began = Stopwatch.GetTimestamp();
            // the operator changes one unit's configuration as the fault begins: the change is in flight through it
            await ChangeConfigurationAsync(Units[injected % Units.Count].Mac, injected, ct);
            if (injected == settings.UpdateAtFault) { await PublishUpdateAsync(fault, ct); }
            // a subscriber changes their unit's settings in the middle of the fault
            var subscriber = settings.SubscriberFromFault is { } from && injected >= from
                ? SubscriberChangeAsync(Units[(injected + Units.Count / 2) % Units.Count].Mac, injected, lead + length / 2, ct)
                : Task.CompletedTask;
            await InjectAsync(fault, length, lead, ct);
            await subscriber;
            injected++;
            var healed = _clock.Elapsed;

            // every unit finishes the check the fault interrupted (or that it had finished before): Ready again, on its target
            var recovered = await WaitAsync(() => Units.Select((u, i) => u.Meter.ReadyAcks > acks[i] && u.Supervisor.Context.CurrentPattern == _target).All(x => x),
                settings.RecoveryBound, ct);
            var took = _clock.Elapsed - healed;
            recoveries.Add((fault, took));
            if (!recovered)
            {
                Fail($"recovery after {fault}", $"not every unit was Ready again {settings.RecoveryBound.TotalSeconds:0} s after the fault healed: {Stuck(acks)}");
                break;
            }
            Record($"every unit Ready again {took.TotalSeconds:0.0} s after {fault} healed; {Answers(began)}");

            // a check forced after the fault heals reaches every unit (the push path survived the fault)
            if (!await PushReachesEveryUnitAsync(fault, ct)) { break; }
            if (!await ServerAgreesAsync(fault, ct)) { break; }
            if (!await HistoryHoldsAsync(fault, ct)) { break; }
        }
        await HistoryAsync(ct);
        _clock.Stop();

        var worst = recoveries.Count == 0 ? TimeSpan.Zero : recoveries.Max(r => r.Took);
        if (_results.All(r => r.Name != "recovery"))
        {
            _results.Add(new InvariantResult("recovery", true, string.Create(CultureInfo.InvariantCulture,
                $"after each of {recoveries.Count} faults every unit was Ready again within {settings.RecoveryBound.TotalSeconds:0} s; longest {worst.TotalSeconds:0.0} s " +
                $"({string.Join(", ", recoveries.GroupBy(r => r.Fault).Select(g => $"{g.Key} {g.Max(r => r.Took).TotalSeconds:0.0} s"))})")));
        }
        _results.Add(RequestRate());
        return new ChaosReport(settings.Seed, settings.Units, _clock.Elapsed, injected, _history.ToList(), _results.ToList());
    }

    private IReadOnlyList<FleetUnit> Units => _fleet?.Units ?? [];

    /// <summary>The operator gives the unit a new configuration revision (the demo services, its DNS server varied by round).</summary>
    private async Task ChangeConfigurationAsync(string mac, int round, CancellationToken ct)
    {
        var config = DemoCatalogue.StandardServices with { Dns = DemoCatalogue.StandardServices.Dns with { Upstreams = [$"192.0.2.{1 + round % 250}"] } };
        using var client = Operator();
        var json = await client.SendAsync(HttpMethod.Put, $"{Routes.Units}/{Uri.EscapeDataString(mac)}/service-config",
            new StringContent(System.Text.Json.JsonSerializer.Serialize(config, ProtocolJson.Default.ServiceConfiguration), Encoding.UTF8, "application/json"), ct);
        using var document = System.Text.Json.JsonDocument.Parse(json);
        var revision = document.RootElement.GetProperty("revision").GetInt64();
        lock (_assigned) { _assigned.Add(new AssignedConfig(mac, revision)); }
        Record($"operator gives {mac} configuration revision {revision}");
    }

    /// <summary>
    /// The operator publishes the update: every unit's target pattern becomes pattern 2 (update program p1-to-p2); the
    /// check the fault forces pushes it, so units download, install and report it through the fault.
    /// </summary>
    private async Task PublishUpdateAsync(string fault, CancellationToken ct)
    {
        using var client = Operator();
        foreach (var unit in Units)
        {
            await client.SendAsync(HttpMethod.Put, $"{Routes.Units}/{Uri.EscapeDataString(unit.Mac)}/target-pattern",
                new StringContent($"{{\"pattern\":\"{DemoCatalogue.Pattern2}\"}}", Encoding.UTF8, "application/json"), ct);
        }
        _target = DemoCatalogue.Pattern2;
        _published = true;
        Record($"operator publishes update {DemoCatalogue.UpdateId}: every unit's target is now {DemoCatalogue.Pattern2}; the check forced for {fault} pushes it");
    }

    private static string SubscriberOf(string mac) => "chaos-" + MacAddress.Compact(mac);

    private HttpClient SubscriberHttp() => new(new SocketsHttpHandler
    {
        SslOptions = { RemoteCertificateValidationCallback = TrustAnchor.Validator([_pin]) },
    })
    { BaseAddress = _operatorUrl, Timeout = TimeSpan.FromSeconds(30) };

    /// <summary>
    /// The unit's subscriber changes their settings through the subscriber API (their blocked domains, which the
    /// standard contract lets them change) <paramref name="after"/> into the fault. A refused or unanswered attempt
    /// is made again every second, as a person would, for up to two minutes; an attempt whose change was sent but
    /// never answered is counted (the server may have stored it).
    /// </summary>
    private async Task SubscriberChangeAsync(string mac, int round, TimeSpan after, CancellationToken ct)
    {
        await Task.Delay(after, ct);
        var name = SubscriberOf(mac);
        var deadline = Stopwatch.GetTimestamp() + 120 * Stopwatch.Frequency;
        var failures = new List<string>();
        while (true)
        {
            var sent = false;
            try
            {
                using var http = SubscriberHttp();
                using var login = await http.PostAsync($"{Routes.Prefix}/subscriber/token", new StringContent(
                    System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, string> { ["name"] = name, ["password"] = _subscriberPasswords[name] }),
                    Encoding.UTF8, "application/json"), ct);
                if (!login.IsSuccessStatusCode) { throw new SubscriberRefusedException($"log in {(int)login.StatusCode}"); }
                using (var token = System.Text.Json.JsonDocument.Parse(await login.Content.ReadAsStringAsync(ct)))
                {
                    http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token.RootElement.GetProperty("token").GetString());
                }
                var path = $"{Routes.Prefix}/subscriber/units/{Uri.EscapeDataString(mac)}/service-config";
                using var current = await http.GetAsync(path, ct);
                if (!current.IsSuccessStatusCode) { throw new SubscriberRefusedException($"read {(int)current.StatusCode}"); }
                ServiceConfiguration config;
                using (var view = System.Text.Json.JsonDocument.Parse(await current.Content.ReadAsStringAsync(ct)))
                {
                    config = System.Text.Json.JsonSerializer.Deserialize(view.RootElement.GetProperty("configuration"), ProtocolJson.Default.ServiceConfiguration)!;
                }
                var domains = config.ContentFilter.BlockedDomains.Where(d => !d.EndsWith(".chaos.example", StringComparison.Ordinal))
                    .Append($"round-{round}.chaos.example").ToList();
                var changed = config with { ContentFilter = config.ContentFilter with { BlockedDomains = domains } };
                sent = true;
                using var put = await http.PutAsync(path, new StringContent(System.Text.Json.JsonSerializer.Serialize(changed, ProtocolJson.Default.ServiceConfiguration),
                    Encoding.UTF8, "application/json"), ct);
                if (!put.IsSuccessStatusCode) { throw new SubscriberRefusedException($"change {(int)put.StatusCode}"); }
                using var answer = System.Text.Json.JsonDocument.Parse(await put.Content.ReadAsStringAsync(ct));
                var revision = answer.RootElement.GetProperty("revision").GetInt64();
                lock (_subscriberChanges) { _subscriberChanges.Add(new SubscriberChange(name, mac, revision)); }
                Record($"subscriber {name} blocks round-{round}.chaos.example on {mac}: revision {revision}" +
                       (failures.Count > 0 ? $" (after {failures.Count} attempt(s): {string.Join(", ", failures.GroupBy(f => f).Select(g => $"{g.Key} x{g.Count()}"))})" : ""));
                return;
            }
            catch (SubscriberRefusedException e)
            {
                // a refused request changes nothing: the subscriber tries again
                failures.Add(e.Message);
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException && !ct.IsCancellationRequested)
            {
                if (sent) { _subscriberUnanswered.AddOrUpdate(mac, 1, (_, n) => n + 1); }
                failures.Add(sent ? "change without an answer" : "no answer");
            }
            if (Stopwatch.GetTimestamp() > deadline)
            {
                Fail($"subscriber-change in fault {round + 1}", $"subscriber {name} could not change {mac}'s settings within 120 s: {string.Join(", ", failures.Distinct())}");
                return;
            }
            await Task.Delay(1000, ct);
        }
    }

    private sealed class SubscriberRefusedException(string message) : Exception(message);

    /// <summary>
    /// Invariants history-updates, history-subscriber, history-checks and history-configs after a fault, through the
    /// operator API: each unit's successful installs in the audit log (exactly one once the update is published, none
    /// before); every subscriber change so far listed and audited once; every check forced so far still known to the
    /// server with each of its units once and audited once; every configuration revision the operator was given so
    /// far listed and audited once (its newest need not be final yet).
    /// </summary>
    private async Task<bool> HistoryHoldsAsync(string fault, CancellationToken ct)
    {
        List<AuditEntry> audit;
        using (var client = Operator())
        {
            audit = await ReadAuditAsync(client, "", ct);
        }
        var expected = _published ? 1 : 0;
        var wrong = Units.Select(u => (u.Mac, Count: audit.Count(a => a.Actor == u.Mac && a.Action == "update.succeeded")))
            .Where(x => x.Count != expected).Select(x => $"{x.Mac}: {x.Count}").ToList();
        if (wrong.Count > 0)
        {
            Fail($"history-updates after {fault}", $"{wrong.Count} unit(s) without exactly {expected} update.succeeded audit entr(ies): {string.Join(", ", wrong.Take(3))}");
            return false;
        }
        SubscriberChange[] changes;
        lock (_subscriberChanges) { changes = [.. _subscriberChanges]; }
        var listed = new Dictionary<string, IReadOnlyList<ListedConfig>>(StringComparer.Ordinal);
        foreach (var mac in changes.Select(c => c.Mac).Distinct()) { listed[mac] = await ListConfigurationsAsync(mac, ct); }
        var subscriber = UpdateHistoryCheck.SubscriberChanges(changes, _subscriberUnanswered, listed, audit, settled: false);
        if (!subscriber.Held)
        {
            Fail($"history-subscriber after {fault}", subscriber.Detail);
            return false;
        }

        var byOperator = audit.Where(a => a.Actor == DemoCatalogue.OperatorName).ToList();
        ForcedCheck[] forced;
        lock (_forced) { forced = [.. _forced]; }
        var statuses = new Dictionary<string, ForceCheckStatus?>(StringComparer.Ordinal);
        foreach (var check in forced) { statuses[check.CheckId] = await CheckStatusOrNullAsync(check.CheckId, ct); }
        var checks = HistoryCheck.Checks(forced, statuses, byOperator);
        if (!checks.Held)
        {
            Fail($"history-checks after {fault}", checks.Detail);
            return false;
        }
        AssignedConfig[] assigned;
        lock (_assigned) { assigned = [.. _assigned]; }
        var configsListed = new Dictionary<string, IReadOnlyList<ListedConfig>>(StringComparer.Ordinal);
        foreach (var mac in assigned.Select(a => a.Mac).Distinct()) { configsListed[mac] = await ListConfigurationsAsync(mac, ct); }
        var configs = HistoryCheck.Configs(assigned, configsListed, _revisionsBefore, byOperator, settled: false);
        if (!configs.Held)
        {
            Fail($"history-configs after {fault}", configs.Detail);
            return false;
        }
        return true;
    }

    /// <summary>The server's record of a forced check; null when it does not know the check (404).</summary>
    private async Task<ForceCheckStatus?> CheckStatusOrNullAsync(string checkId, CancellationToken ct)
    {
        try
        {
            return await CheckStatusAsync(checkId, ct);
        }
        catch (OperatorApiException e) when (e.Status == 404)
        {
            return null;
        }
    }

    private async Task<IReadOnlyList<ListedConfig>> ListConfigurationsAsync(string mac, CancellationToken ct)
    {
        using var client = Operator();
        var json = await client.SendAsync(HttpMethod.Get, $"{Routes.Units}/{Uri.EscapeDataString(mac)}/service-config", null, ct);
        using var document = System.Text.Json.JsonDocument.Parse(json);
        return document.RootElement.EnumerateArray().Select(e => new ListedConfig(e.GetProperty("revision").GetInt64(),
            e.GetProperty("status").GetString() ?? "", e.GetProperty("origin").GetString() ?? "")).ToList();
    }

    /// <summary>What the units' requests since <paramref name="since"/> were answered (status: count; none: no answer).</summary>
    private string Answers(long since)
    {
        var answers = _requests.Values.SelectMany(q => q).Where(r => r.At >= since).ToList();
        return $"units' requests since the fault began: {answers.Count} ({string.Join(", ", answers.GroupBy(r => r.Status).OrderBy(g => g.Key ?? 0)
            .Select(g => $"{(g.Key is { } status ? status.ToString(CultureInfo.InvariantCulture) : "no answer")}: {g.Count()}"))})";
    }

    /// <summary>
    /// Invariant history (nothing lost or duplicated): the units are powered off first, so that every report they sent
    /// has its outcome traced; then the server's record of every forced check and its audit log are read through the
    /// operator API, and, once the server has stopped, each unit's history from its database (what the console shows).
    /// </summary>
    private async Task HistoryAsync(CancellationToken ct)
    {
        foreach (var unit in Units) { await _fleet!.PowerOffAsync(unit); }
        if (_mosquitto is { IsRunning: false } broker) { await broker.StartAgainAsync(ct); }
        var statuses = new Dictionary<string, ForceCheckStatus?>(StringComparer.Ordinal);
        foreach (var check in _forced) { statuses[check.CheckId] = await CheckStatusOrNullAsync(check.CheckId, ct); }
        List<AuditEntry> audit;
        using (var client = Operator())
        {
            audit = await ReadAuditAsync(client, $"&actor={Uri.EscapeDataString(DemoCatalogue.OperatorName)}", ct);
        }
        _results.Add(HistoryCheck.Checks(_forced, statuses, audit));
        var listed = new Dictionary<string, IReadOnlyList<ListedConfig>>(StringComparer.Ordinal);
        foreach (var unit in Units) { listed[unit.Mac] = await ListConfigurationsAsync(unit.Mac, ct); }
        _results.Add(HistoryCheck.Configs(_assigned, listed, _revisionsBefore, audit, settled: true));
        List<AuditEntry> everyone;
        using (var client = Operator())
        {
            everyone = await ReadAuditAsync(client, "", ct);
        }
        _results.Add(UpdateHistoryCheck.SubscriberChanges(_subscriberChanges, _subscriberUnanswered, listed, everyone, settled: true));

        await _server!.StopAsync();
        // this process's pooled connections from the seeding are dead after a database restart
        Npgsql.NpgsqlConnection.ClearAllPools();
        var recorded = new Dictionary<string, int>(StringComparer.Ordinal);
        var configRecorded = new Dictionary<string, int>(StringComparer.Ordinal);
        var updates = new Dictionary<string, RecordedUpdates>(StringComparer.Ordinal);
        await using (var reader = await ServerHost.BuildAsync(new ServerOptions { DataDirectory = _serverDirectory, MqttPort = -1, Database = settings.Database },
                         logging: l => l.SetMinimumLevel(LogLevel.Error)))
        {
            var store = reader.Services.GetRequiredService<TsunaguStore>();
            foreach (var unit in Units)
            {
                var events = await store.History.ListUnitEventsAsync(unit.Mac, int.MaxValue);
                // a steady check's ready entry answers no ready report (written once for a run of them): not counted
                recorded[unit.Mac] = events.Count(e => e.Kind == UnitEventKinds.Ready && e.Detail?.EndsWith(SteadyCheckStore.SteadyCheckSuffix, StringComparison.Ordinal) != true);
                configRecorded[unit.Mac] = events.Count(e => e.Kind == UnitEventKinds.Config);
                updates[unit.Mac] = new RecordedUpdates((await store.History.ListUpdateReportsAsync(unit.Mac)).Select(r => (r.InstallId, r.Success != 0)).ToList(),
                    events.Count(e => e.Kind == UnitEventKinds.Update && e.Failed == 0), everyone.Count(a => a.Actor == unit.Mac && a.Action == "update.succeeded"));
            }
        }
        (long From, long To)[] windows;
        lock (_lossWindows) { windows = [.. _lossWindows]; }
        Dictionary<string, SentReports> Sent(string path, bool lossAllowed) => _requests.ToDictionary(kv => kv.Key, kv =>
        {
            var reports = kv.Value.Where(r => r.Path == path).ToList();
            var acknowledged = reports.Where(r => r.Status is >= 200 and < 300).ToList();
            return new SentReports(acknowledged.Count, reports.Count(r => r.Status is null),
                lossAllowed ? acknowledged.Count(r => windows.Any(w => r.At >= w.From && r.At <= w.To)) : 0);
        }, StringComparer.Ordinal);
        _results.Add(HistoryCheck.Reports("ready", Sent(Routes.Ready, lossAllowed: true), recorded));
        // a configuration acknowledgement is committed durably: none may be lost
        _results.Add(HistoryCheck.Reports("config", Sent(Routes.ServiceConfigAck, lossAllowed: false), configRecorded));
        // update reports are committed durably: none may be missing, and a report sent again is recorded once
        _results.Add(UpdateHistoryCheck.Installs(_published, Units.ToDictionary(u => u.Mac,
            u => (IReadOnlyList<SentUpdateReport>)(_updates.TryGetValue(u.Mac, out var q) ? q.ToList() : []), StringComparer.Ordinal), updates));
        Record("history read: fleet powered off, server stopped");
    }

    /// <summary>The operator API's audit entries (<c>GET /api/v1/audit</c>).</summary>
    /// <summary>The whole audit log (with <paramref name="filter"/>, e.g. <c>&amp;actor=NAME</c>), page by page, newest first: a long run outgrows one page.</summary>
    private static async Task<List<AuditEntry>> ReadAuditAsync(OperatorClient client, string filter, CancellationToken ct)
    {
        const int page = 10000;
        var all = new List<AuditEntry>();
        long? before = null;
        while (true)
        {
            var next = ParseAudit(await client.SendAsync(HttpMethod.Get,
                $"{Routes.Prefix}/audit?limit={page}{filter}{(before is { } b ? $"&before={b.ToString(CultureInfo.InvariantCulture)}" : "")}", null, ct));
            all.AddRange(next);
            if (next.Count < page) { return all; }
            before = next.Min(e => e.Id);
        }
    }

    public static List<AuditEntry> ParseAudit(string json)
    {
        using var document = System.Text.Json.JsonDocument.Parse(json);
        string? Text(System.Text.Json.JsonElement e, string name) =>
            e.EnumerateObject().FirstOrDefault(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase)).Value is { ValueKind: System.Text.Json.JsonValueKind.String } v
                ? v.GetString() : null;
        return document.RootElement.EnumerateArray().Select(e => new AuditEntry(
            e.EnumerateObject().First(p => string.Equals(p.Name, "id", StringComparison.OrdinalIgnoreCase)).Value.GetInt64(),
            Text(e, "actor") ?? "", Text(e, "action") ?? "", Text(e, "target"), Text(e, "detail"))).ToList();
    }

    private void Fail(string name, string detail)
    {
        Record($"BROKEN {name}: {detail}");
        _results.Add(new InvariantResult(name.Split(' ')[0], false, $"{name}: {detail}"));
    }

    private string Stuck(long[] acks) => string.Join(" | ", Units.Select((u, i) => (u, i)).Where(x => x.u.Meter.ReadyAcks <= acks[x.i]).Take(3)
        .Select(x => $"{x.u.Mac} in {x.u.Supervisor.State}: {x.u.Supervisor.Context.LastError ?? "no error"}"));

    /// <summary>
    /// Injects one fault so that it finds units at work: a fault of the server is preceded by a forced check
    /// (<paramref name="lead"/> before it, so units are in the middle of their requests when it strikes); during a
    /// fault of the network the operator forces a check, which the units receive over the broker and then try to
    /// carry out through the faulty network.
    /// </summary>
    private async Task InjectAsync(string fault, TimeSpan length, TimeSpan lead, CancellationToken ct)
    {
        var server = _server!;
        var proxy = _proxy!;
        switch (fault)
        {
            case Faults.ServerKill:
            case Faults.ServerRestart:
            case Faults.DatabaseRestart:
            case Faults.TokenKeyRotation:
                await ForceCheckAsync($"{lead.TotalMilliseconds:0} ms before the fault", ct);
                await Task.Delay(lead, ct);
                Record($"fault {fault} for {length.TotalSeconds:0.0} s");
                if (fault == Faults.DatabaseRestart)
                {
                    // PostgreSQL with synchronous_commit=off (what units report again) may lose the last ~0.6 s of commits
                    var from = Stopwatch.GetTimestamp() - 2 * Stopwatch.Frequency;
                    await settings.RestartDatabase!(ct);
                    lock (_lossWindows) { _lossWindows.Add((from, Stopwatch.GetTimestamp())); }
                    break;
                }
                if (fault == Faults.TokenKeyRotation)
                {
                    await server.StopAsync();
                    File.Delete(Path.Combine(_serverDirectory, "keys", "token.key"));
                    await server.StartAsync(ct);
                    break;
                }
                await (fault == Faults.ServerKill ? server.KillAsync() : server.StopAsync());
                await Task.Delay(length, ct);
                await server.StartAsync(ct);
                break;
            case Faults.Partition:
            case Faults.Reset:
            case Faults.Slow:
                Record($"fault {fault} for {length.TotalSeconds:0.0} s");
                proxy.SetMode(fault switch { Faults.Partition => LinkMode.Blackhole, Faults.Reset => LinkMode.Reset, _ => LinkMode.Slow });
                await Task.Delay(lead, ct);
                await ForceCheckAsync("during the fault", ct);
                await Task.Delay(length - lead, ct);
                proxy.SetMode(LinkMode.Pass);
                break;
            case Faults.UnitClockSkew:
                var skewed = _fleet!.Units.Select(u => u.Hardware.Time).ToList();
                foreach (var clock in skewed)
                {
                    var minutes = _random.Next(2, 120) * (_random.Next(2) == 0 ? -1 : 1);
                    clock.Offset = TimeSpan.FromMinutes(minutes);
                }
                // a wrong clock does not heal by itself: each unit sets it from the host's time at its next version check
                Record($"fault {fault}: unit clocks now off by {string.Join(", ", skewed.Select(c => $"{c.Offset.TotalMinutes:+0;-0} min").Take(5))}... until each unit sets its clock from the host's time");
                await ForceCheckAsync("with the clocks off", ct);
                await Task.Delay(length, ct);
                break;
            case Faults.BrokerRestart:
                Record($"fault {fault} for {length.TotalSeconds:0.0} s" + (_mosquitto is null
                    ? " (embedded broker: every unit's broker connection reset, new ones refused)"
                    : " (Mosquitto SIGKILLed; the server stays up)"));
                if (_mosquitto is { } down) { await down.KillAsync(); } else { _brokerProxy!.SetMode(LinkMode.Reset); }
                // the operator forces a check with the broker down: with Mosquitto the server's own link is down too and it
                // answers 503 until the link is back (the operator tries again); with the embedded broker the units are offline
                var during = ForceCheckAsync("with the broker down", ct);
                await Task.Delay(length, ct);
                if (_mosquitto is { } up) { await up.StartAgainAsync(ct); } else { _brokerProxy!.SetMode(LinkMode.Pass); }
                await during;
                break;
            case Faults.ServerClockSkew:
                var offset = TimeSpan.FromMinutes(_random.Next(2, 120) * (_random.Next(2) == 0 ? -1 : 1));
                Record($"fault {fault}: the server's clock jumps {offset.TotalMinutes:+0;-0} min for {length.TotalSeconds:0.0} s");
                _serverClock!.Set(offset);
                await Task.Delay(ServerClock.Settle, ct);
                await ForceCheckAsync("with the server's clock off", ct);
                await Task.Delay(length, ct);
                // as NTP would: a step back to the true time, a second jump
                _serverClock.Set(TimeSpan.Zero);
                await Task.Delay(ServerClock.Settle, ct);
                Record("the server's clock steps back to the true time");
                break;
            case Faults.DiskFull:
                // the units' requests for the check are held in the proxy until the disk is full, so that they all meet it
                proxy.SetMode(LinkMode.Blackhole);
                await ForceCheckAsync("with the units' link held", ct);
                await Task.Delay(lead + TimeSpan.FromMilliseconds(200), ct);
                Record($"fault {fault} for {length.TotalSeconds:0.0} s");
                var filler = Path.Combine(_diskMount!, "filler");
                var filled = FillDisk(filler);
                proxy.SetMode(LinkMode.Pass);
                Record($"the server's disk is full ({filled / 1024} KiB written to fill it); the units' requests pass");
                try
                {
                    await ForceCheckAsync("on the full disk", ct);
                }
                catch (OperatorApiException e) when (e.Status == 507)
                {
                    Record("the server refuses the operator's check on the full disk: 507");
                }
                await Task.Delay(length, ct);
                File.Delete(filler);
                break;
        }
        Record($"healed {fault}");
    }

    /// <summary>
    /// Invariants forced-check and presence: a check forced after the fault healed reaches every unit (each sends a
    /// new ready report), the server's record of that check says delivered for each unit that acted on it and never
    /// for one that did not, and the operator API's online flag matches each unit's broker connection.
    /// </summary>
    private async Task<bool> PushReachesEveryUnitAsync(string fault, CancellationToken ct)
    {
        var acks = Units.Select(u => u.Meter.ReadyAcks).ToArray();
        var started = _clock.Elapsed;
        var check = await ForceCheckAsync($"after {fault} healed", ct);
        var acted = await WaitAsync(() => Units.Select((u, i) => u.Meter.ReadyAcks > acks[i]).All(x => x), settings.RecoveryBound, ct);
        var status = check.CheckId is { } id ? await CheckStatusAsync(id, ct) : null;
        var byMac = (status?.Units ?? []).ToDictionary(d => d.Mac, StringComparer.Ordinal);
        var claimedNotActed = Units.Select((u, i) => (u, i)).Where(x => x.u.Meter.ReadyAcks <= acks[x.i]
            && byMac.TryGetValue(x.u.Mac, out var d) && d.Status == "delivered").Select(x => x.u.Mac).ToList();
        if (claimedNotActed.Count > 0)
        {
            Fail($"forced-check after {fault}", $"the server reports the check delivered to {string.Join(", ", claimedNotActed.Take(3))}, which never acted on it");
            return false;
        }
        if (!acted)
        {
            var undelivered = Units.Where(u => !byMac.TryGetValue(u.Mac, out var d) || d.Status != "delivered").Select(u => $"{u.Mac} {(byMac.TryGetValue(u.Mac, out var d) ? d.Status : "not recorded")}");
            Fail($"forced-check after {fault}", $"a check forced after the fault healed did not reach every unit within {settings.RecoveryBound.TotalSeconds:0} s " +
                                                $"(the server reports: {string.Join(", ", undelivered.Take(3))}): {Stuck(acks)}");
            return false;
        }
        // every unit acted: the acknowledgement precedes the check, so the record must say delivered for all, soon
        if (check.CheckId is { } checkId && !await WaitForAsync(async () => (await CheckStatusAsync(checkId, ct))?.Delivered == Units.Count, TimeSpan.FromSeconds(30), ct))
        {
            var last = await CheckStatusAsync(checkId, ct);
            Fail($"forced-check after {fault}", $"every unit acted on check {checkId}, but the server reports {last?.Delivered} delivered, {last?.Pending} pending, {last?.Offline} offline");
            return false;
        }
        Record($"the forced check reached every unit in {(_clock.Elapsed - started).TotalSeconds:0.0} s; the server reports all {Units.Count} delivered");

        // presence: the operator API's online flag is each unit's real broker connection
        string[] Mismatch(IReadOnlyList<UnitView> views) => Units
            .Select(u => (u, online: views.FirstOrDefault(v => v.Mac == u.Mac)?.Online ?? false, connected: u.Supervisor.Context.Push is { IsConnected: true }))
            .Where(x => x.online != x.connected).Select(x => $"{x.u.Mac} shown {(x.online ? "online" : "offline")}, {(x.connected ? "connected" : "not connected")}").ToArray();
        string[] mismatch = [];
        if (!await WaitForAsync(async () =>
            {
                using var client = Operator();
                mismatch = Mismatch(await client.ListUnitsAsync(null, null, ct));
                return mismatch.Length == 0;
            }, PresenceBound, ct))
        {
            Fail($"presence after {fault}", $"{mismatch.Length} unit(s) shown otherwise than they are, {PresenceBound.TotalSeconds:0} s on: {string.Join("; ", mismatch.Take(3))}");
            return false;
        }
        return true;
    }

    /// <summary>
    /// Fills the server's disk to the last page. The SQLite write-ahead log is checkpointed and truncated first, so
    /// that the server's next commit needs a new page too (otherwise the log's free pages would take it).
    /// </summary>
    private long FillDisk(string path)
    {
        using (var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(_serverDirectory, settings.Database)};Pooling=False"))
        {
            connection.Open();
            using var checkpoint = connection.CreateCommand();
            checkpoint.CommandText = "PRAGMA wal_checkpoint(TRUNCATE)";
            checkpoint.ExecuteNonQuery();
        }
        return DiskFiller.Fill(path);
    }

    /// <summary>Invariant presence: how long the operator API may show a unit otherwise than it is connected.</summary>
    private static readonly TimeSpan PresenceBound = TimeSpan.FromSeconds(60);

    private async Task<ForceCheckStatus?> CheckStatusAsync(string checkId, CancellationToken ct)
    {
        using var client = Operator();
        var json = await client.SendAsync(HttpMethod.Get, $"{Routes.ForceCheck}/{Uri.EscapeDataString(checkId)}", null, ct);
        return System.Text.Json.JsonSerializer.Deserialize(json, ProtocolJson.Default.ForceCheckStatus);
    }

    private static async Task<bool> WaitForAsync(Func<Task<bool>> condition, TimeSpan timeout, CancellationToken ct, TimeSpan? poll = null)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (!await condition())
        {
            if (Stopwatch.GetTimestamp() > deadline) { return false; }
            await Task.Delay(poll ?? TimeSpan.FromMilliseconds(250), ct);
        }
        return true;
    }

    /// <summary>
    /// Invariant server-state: within <see cref="ChaosSettings.RecoveryBound"/> the operator API shows every unit Ready on
    /// its target. Not at once: a change made during the fault (a subscriber's, answered only after the fault healed) may
    /// still be reaching a unit that had already reported Ready, which then shows Configuring while it applies it.
    /// </summary>
    private async Task<bool> ServerAgreesAsync(string fault, CancellationToken ct)
    {
        List<string> wrong = [];
        var started = _clock.Elapsed;
        if (await WaitForAsync(async () =>
            {
                using var client = Operator();
                var views = await client.ListUnitsAsync(null, null, ct);
                wrong = Units.Select(u => (u, view: views.FirstOrDefault(v => v.Mac == u.Mac)))
                    .Where(x => x.view is null || x.view.State != "Ready" || x.view.Pattern != _target)
                    .Select(x => $"{x.u.Mac}: {(x.view is null ? "missing" : $"{x.view.State} on {x.view.Pattern ?? "no pattern"}")}")
                    .ToList();
                return wrong.Count == 0;
            }, settings.RecoveryBound, ct))
        {
            if (_clock.Elapsed - started > TimeSpan.FromSeconds(1))
            {
                Record(string.Create(CultureInfo.InvariantCulture, $"the operator API shows every unit Ready on {_target} {(_clock.Elapsed - started).TotalSeconds:0.0} s after the forced check"));
            }
            return true;
        }
        Fail($"server-state after {fault}", $"{wrong.Count} unit(s) not Ready on {_target} in the operator API {settings.RecoveryBound.TotalSeconds:0} s on: {string.Join(", ", wrong.Take(3))}");
        return false;
    }

    /// <summary>
    /// The operator forces a check of every unit. A server whose broker link is not up yet (just restarted) answers
    /// 503: the operator tries again, for up to 60 s, as a person or a script would.
    /// </summary>
    private async Task<ForceCheckResponse> ForceCheckAsync(string why, CancellationToken ct)
    {
        var deadline = Stopwatch.GetTimestamp() + 60 * Stopwatch.Frequency;
        var refused = 0;
        while (true)
        {
            try
            {
                using var client = Operator();
                var macs = Units.Select(u => u.Mac).ToList();
                var response = await client.ForceCheckAsync(new ForceCheckRequest(macs, null, 5), ct);
                if (response.CheckId is { } id)
                {
                    lock (_forced) { _forced.Add(new ForcedCheck(id, macs)); }
                }
                Record($"operator forces a check of {Units.Count} units ({why}): {response.Units?.Count(d => d.Status == "delivered") ?? 0} delivered at once, " +
                       $"{response.Units?.Count(d => d.Status == "pending") ?? 0} pending, {response.Units?.Count(d => d.Status == "offline") ?? 0} offline" +
                       (refused > 0 ? $" (after {refused} answer(s) 503)" : ""));
                return response;
            }
            catch (OperatorApiException e) when (e.Status == 503 && Stopwatch.GetTimestamp() < deadline)
            {
                refused++;
                await Task.Delay(500, ct);
            }
        }
    }

    /// <summary>
    /// Invariant: the most requests, and the most failed requests (an error status or no answer), that one unit sent
    /// in any 60 s of the run. The first bounds the load a unit puts on the server; the second finds a tight retry loop
    /// even where the nemesis's own forced checks keep every unit busy. An answer the nemesis drops on purpose (with
    /// <see cref="ChaosSettings.LoseFirstUpdateAnswer"/>, one per unit) is the nemesis's failure, not the unit's, and is
    /// left out of the second.
    /// </summary>
    private InvariantResult RequestRate()
    {
        var all = Worst(r => true);
        // an answer the nemesis itself drops (each unit's first update report) is its fault, not the unit's: not counted
        var failed = Worst(r => r.Status is not (>= 200 and < 300) && !r.Dropped);
        var failedBound = Math.Max(1, settings.MaxRequestsPerUnitPerMinute / 4);
        var total = _requests.Values.Sum(q => q.Count);
        var dropped = _requests.Values.Sum(q => q.Count(r => r.Dropped));
        return new InvariantResult("request-rate", all.Count <= settings.MaxRequestsPerUnitPerMinute && failed.Count <= failedBound, string.Create(CultureInfo.InvariantCulture,
            $"at most {all.Count} requests in any 60 s by one unit ({all.Mac}; bound {settings.MaxRequestsPerUnitPerMinute}), at most {failed.Count} failed ones " +
            $"({failed.Mac}; bound {failedBound}; {dropped} answer(s) the nemesis dropped not counted); {total} requests in all"));
    }

    private (string Mac, int Count) Worst(Func<(long At, string Path, int? Status, bool Dropped), bool> which)
    {
        var window = Stopwatch.Frequency * 60;
        var worst = (Mac: "-", Count: 0);
        foreach (var (mac, queue) in _requests)
        {
            var times = queue.Where(which).Select(r => r.At).Order().ToArray();
            var first = 0;
            for (var last = 0; last < times.Length; last++)
            {
                while (times[last] - times[first] >= window) { first++; }
                if (last - first + 1 > worst.Count) { worst = (mac, last - first + 1); }
            }
        }
        return worst;
    }

    private static Task<bool> WaitAsync(Func<bool> condition, TimeSpan timeout, CancellationToken ct) =>
        WaitForAsync(() => Task.FromResult(condition()), timeout, ct, TimeSpan.FromMilliseconds(50));

    private OperatorClient Operator() => new(_operatorUrl, DemoCatalogue.OperatorName, _password, [_pin]);

    private async Task SetUpAsync(IReadOnlyList<string> faults, CancellationToken ct)
    {
        var root = Path.GetFullPath(settings.DataDirectory);
        if (Directory.Exists(root)) { Directory.Delete(root, recursive: true); }
        Directory.CreateDirectory(root);
        var serverDir = _serverDirectory = Path.Combine(root, "server");
        if (faults.Contains(Faults.DiskFull))
        {
            // the server's disk: a small tmpfs of its own, which the disk-full fault fills
            _diskMount = Path.Combine(root, "disk");
            Directory.CreateDirectory(_diskMount);
            await RunAsync("mount", ["-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", _diskMount], ct);
            serverDir = _serverDirectory = Path.Combine(_diskMount, "server");
        }
        Directory.CreateDirectory(serverDir);
        using var releaseKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        byte[] unitKey;
        await using (var seed = await ServerHost.BuildAsync(new ServerOptions { DataDirectory = serverDir, MqttPort = -1, Database = settings.Database },
                         logging: l => l.SetMinimumLevel(LogLevel.Error)))
        {
            _password = await DemoCatalogue.SeedAsync(seed.Services.GetRequiredService<TsunaguStore>(), seed.Services.GetRequiredService<ArtifactStore>(), releaseKey);
            unitKey = seed.Services.GetRequiredService<Server.Apis.UnitKey>().Bytes;
        }
        var port = FleetSimulation.FreePort();
        _proxy = new FaultProxy(port);
        var unitsSee = $"https://127.0.0.1:{_proxy.Port}/";
        // the units reach both roles through the proxy: the factory identity names it, and so does the host server
        // URL the initial setting server gives them
        List<string> serverSettings = [$"Database={settings.Database}", $"HostServerUrl={unitsSee}",
            string.Create(CultureInfo.InvariantCulture, $"HostTokenLifetime={settings.HostTokenLifetime:c}")];
        var mqttPort = FleetSimulation.FreePort();
        if (settings.Broker == "mosquitto")
        {
            _mosquitto = await MosquittoProcess.StartAsync(Path.Combine(Path.GetTempPath(), "tsunagu-chaos-mosquitto-" + Guid.NewGuid().ToString("N")[..12]),
                FleetSimulation.FreePort(), ct);
            serverSettings.Add($"Mqtt={_mosquitto.Setting}");
        }
        else
        {
            // units reach the embedded broker through a proxy of their own, which its broker-restart fault resets
            _brokerProxy = new FaultProxy(mqttPort);
            serverSettings.Add($"MqttPublicUri=mqtts://127.0.0.1:{_brokerProxy.Port}");
        }
        if (faults.Contains(Faults.ServerClockSkew))
        {
            _serverClock = new ServerClock(root);
        }
        _server = new ServerProcess(serverDir, port, mqttPort, serverSettings, _serverClock?.Environment);
        await _server.StartAsync(ct);
        _operatorUrl = new Uri($"https://127.0.0.1:{port}/");
        _pin = OperatorClient.PinFromPemFile(Path.Combine(serverDir, "tls", Server.Security.ServerCertificate.PemFile));
        Record($"server pid-managed on {_operatorUrl} ({(settings.Database.Contains('=', StringComparison.Ordinal) ? "PostgreSQL" : "SQLite")}, " +
               $"{(_mosquitto is { } m ? $"Mosquitto on port {m.Port}" : "embedded broker")}{(_serverClock is null ? "" : ", under libfaketime")}" +
               $"{(_diskMount is null ? "" : ", on a 64 MiB tmpfs")}); units reach it through the fault proxy at {unitsSee}");

        var options = new SupervisorOptions
        {
            CheckInterval = TimeSpan.FromDays(1),
            BackoffBase = settings.BackoffBase,
            BackoffCap = settings.BackoffCap,
            RefusedRetryInterval = TimeSpan.FromSeconds(30),
            Push = new Firmware.Net.PushOptions
            {
                ReconnectBase = settings.PushReconnectBase ?? new Firmware.Net.PushOptions().ReconnectBase,
                ReconnectCap = settings.PushReconnectCap ?? new Firmware.Net.PushOptions().ReconnectCap,
            },
        };
        var meter = new FleetMeter();
        _fleet = new SimulatedFleet(Path.Combine(root, "fleet"), options);
        _fleet.BuildProm(DemoCatalogue.OsVersion, DemoCatalogue.FactoryApplications);
        var csv = new StringBuilder("mac,serial,hardware_version,isp_method,isp_username,isp_password,domain,subscriber,target_pattern\n");
        for (var i = 1; i <= settings.Units; i++)
        {
            var mac = SimulatedFleet.MacFor(i);
            var identity = FactoryIdentities.Create(new IdentitySpec(mac, $"CHAOS-{i:D4}", DemoCatalogue.HardwareVersion, "simulated", unitsSee,
                new WanAccount("pppoe", $"setup-{MacAddress.Compact(mac)}", "provisional"), [_pin], [ReleaseKeys.PublicKeyBase64(releaseKey)]), unitKey);
            var trace = _requests.GetOrAdd(mac, _ => new());
            var updates = _updates.GetOrAdd(mac, _ => new());
            await _fleet.AddUnitAsync(identity, ct, unit => new TracingNetwork(new MeteredNetwork(unit.Hardware.Wan, meter, unit.Meter, null), trace, updates,
                settings.LoseFirstUpdateAnswer));
            csv.Append(CultureInfo.InvariantCulture, $"{mac},CHAOS-{i:D4},{DemoCatalogue.HardwareVersion},pppoe,user{i}@isp.example,isp-{i},unit{i}.example,{SubscriberOf(mac)},{DemoCatalogue.Pattern1}\n");
        }
        using (var client = Operator())
        {
            await client.SendAsync(HttpMethod.Post, Routes.Units + "/bulk", new StringContent(csv.ToString(), Encoding.UTF8, "text/csv"), ct);
            // each unit's subscriber, who changes their settings through the subscriber API during faults
            foreach (var unit in _fleet.Units)
            {
                var name = SubscriberOf(unit.Mac);
                _subscriberPasswords[name] = UnitCredentials.NewNonce(12);
                await client.SendAsync(HttpMethod.Post, Routes.Prefix + "/subscribers", new StringContent(
                    System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, string> { ["name"] = name, ["password"] = _subscriberPasswords[name] }),
                    Encoding.UTF8, "application/json"), ct);
            }
        }
        _fleet.StartAll();
        if (!await WaitAsync(() => Units.All(u => u.Meter.ReadyAcks >= 1 && u.Supervisor.Context.Push is { IsConnected: true }), TimeSpan.FromMinutes(3), ct))
        {
            throw new InvalidOperationException($"the fleet did not reach Ready with push before any fault: {Stuck(new long[Units.Count])}");
        }
        var direct = _requests.Values.Sum(q => q.Count);
        if (_proxy.Accepted == 0 && direct > 0)
        {
            throw new InvalidOperationException("the units' requests did not pass through the fault proxy");
        }
        foreach (var unit in Units)
        {
            _revisionsBefore[unit.Mac] = (await ListConfigurationsAsync(unit.Mac, ct)).Select(c => c.Revision).ToList();
        }
        Record($"{settings.Units} units Ready on {DemoCatalogue.Pattern1} and listening for pushes; faults begin (seed {settings.Seed})");
    }

    private static async Task RunAsync(string program, IReadOnlyList<string> arguments, CancellationToken ct)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in arguments) { start.ArgumentList.Add(a); }
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {program}");
        var error = process.StandardError.ReadToEndAsync(ct);
        await process.StandardOutput.ReadToEndAsync(ct);
        await process.WaitForExitAsync(ct);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{program} {string.Join(' ', arguments)} exited with {process.ExitCode}: {await error}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_fleet is not null) { await _fleet.DisposeAsync(); }
        if (_proxy is not null) { await _proxy.DisposeAsync(); }
        if (_brokerProxy is not null) { await _brokerProxy.DisposeAsync(); }
        if (_server is not null) { await _server.DisposeAsync(); }
        if (_mosquitto is not null)
        {
            await _mosquitto.DisposeAsync();
            Directory.Delete(_mosquitto.Directory, recursive: true);
        }
        if (_diskMount is not null)
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            await RunAsync("umount", ["-l", _diskMount], CancellationToken.None);
        }
    }

    /// <summary>
    /// Records when each request of one unit was sent, on which path, and its status (null: no answer), and each update
    /// report it sent. With <paramref name="loseFirstUpdateAnswer"/> the answer to the unit's first update report is
    /// dropped after the server took the report, as when the connection breaks on the way back.
    /// </summary>
    private sealed class TracingNetwork(INetworkAccess link, ConcurrentQueue<(long At, string Path, int? Status, bool Dropped)> trace,
        ConcurrentQueue<SentUpdateReport> updates, bool loseFirstUpdateAnswer) : INetworkAccess
    {
        private int _answerLost;

        public HttpMessageHandler WrapHandler(HttpMessageHandler inner) => link.WrapHandler(new Tracer(this) { InnerHandler = inner });
        public void EnsureRoute() => link.EnsureRoute();

        private bool LoseThisAnswer() => loseFirstUpdateAnswer && Interlocked.Exchange(ref _answerLost, 1) == 0;

        private sealed class Tracer(TracingNetwork unit) : DelegatingHandler
        {
            protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
            {
                var at = Stopwatch.GetTimestamp();
                var path = request.RequestUri?.AbsolutePath ?? "";
                var report = path == Routes.UpdateReport && request.Content is { } content
                    ? System.Text.Json.JsonSerializer.Deserialize(await content.ReadAsStringAsync(cancellationToken), ProtocolJson.Default.UpdateReport)
                    : null;
                HttpResponseMessage response;
                try
                {
                    response = await base.SendAsync(request, cancellationToken);
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
                {
                    unit.Traced(at, path, report, null);
                    throw;
                }
                if (report is not null && response.IsSuccessStatusCode && unit.LoseThisAnswer())
                {
                    response.Dispose();
                    unit.Traced(at, path, report, null, dropped: true);
                    throw new HttpRequestException("the connection broke after the update report was sent: its answer is lost (nemesis)");
                }
                unit.Traced(at, path, report, (int)response.StatusCode);
                return response;
            }
        }

        private void Traced(long at, string path, UpdateReport? report, int? status, bool dropped = false)
        {
            trace.Enqueue((at, path, status, dropped));
            if (report is not null) { updates.Enqueue(new SentUpdateReport(report.InstallId, report.Success, status)); }
        }
    }
}
