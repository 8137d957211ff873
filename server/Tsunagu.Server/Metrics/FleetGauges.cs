using System.Data.Common;
using System.Diagnostics;
using Dapper;
using Prometheus;
using Tsunagu.Server.Data;
using Tsunagu.Server.Push;

namespace Tsunagu.Server.Metrics;

/// <summary>
/// Gauges read from the store and the broker just before a scrape. The fleet counts (units by state, pattern, presence
/// and rollout) come from four grouped or counting queries whose result is kept for <see cref="SnapshotLifetime"/>, so however many
/// scrapers ask, the units table is read at most once per lifetime; the database check (<c>SELECT 1</c>) and the broker
/// state are read at every scrape (they cost nothing).
/// </summary>
public sealed class FleetGauges
{
    /// <summary>How long one reading of the units table answers scrapes.</summary>
    public static readonly TimeSpan SnapshotLifetime = TimeSpan.FromSeconds(15);

    /// <summary>Label of units with no pattern (none recorded yet) or no target pattern.</summary>
    public const string None = "none";

    private static readonly string[] KnownStates =
        [UnitStates.Registered, UnitStates.Provisioning, UnitStates.Connected, UnitStates.Updating, UnitStates.Configuring, UnitStates.Ready, UnitStates.OffPattern];

    private readonly TsunaguStore _store;
    private readonly BrokerLink _link;
    private readonly EmbeddedBroker _embedded;
    private readonly TimeProvider _time;
    private readonly ILogger<FleetGauges> _log;
    private readonly SemaphoreSlim _lock = new(1, 1);
    private readonly Gauge _byState, _byPattern, _online, _units, _rollout, _pendingPushes, _snapshotSeconds, _databaseUp, _databaseSeconds, _linkUp, _brokerConnections;
    private readonly Dictionary<Gauge, HashSet<string[]>> _published = [];
    private long? _readAt;

    public FleetGauges(ServerMetrics metrics, TsunaguStore store, BrokerLink link, EmbeddedBroker embedded, TimeProvider time, ILogger<FleetGauges> log)
    {
        _store = store;
        _link = link;
        _embedded = embedded;
        _time = time;
        _log = log;
        var factory = Prometheus.Metrics.WithCustomRegistry(metrics.Registry);
        var later = new GaugeConfiguration { SuppressInitialValue = true };
        _units = factory.CreateGauge("tsunagu_units", "Registered units.", later);
        _byState = factory.CreateGauge("tsunagu_units_by_state", "Registered units, by host-side state.", "state");
        _byPattern = factory.CreateGauge("tsunagu_units_by_pattern", "Registered units, by the install pattern they run (none: not known yet).", "pattern");
        _online = factory.CreateGauge("tsunagu_units_online", "Units connected to the broker now (their last presence message said online).", later);
        _rollout = factory.CreateGauge("tsunagu_rollout_units", "Units given a target pattern, by target and whether they run it (at_target) or not yet (pending).", "target", "status");
        _pendingPushes = factory.CreateGauge("tsunagu_pushes_pending", "Forced checks not acknowledged yet that are still being sent again.", later);
        _snapshotSeconds = factory.CreateGauge("tsunagu_fleet_snapshot_seconds", "How long the last reading of the units table took.", later);
        _databaseUp = factory.CreateGauge("tsunagu_database_up", "1 when the database answered a trivial query at this scrape, else 0.", later);
        _databaseSeconds = factory.CreateGauge("tsunagu_database_check_seconds", "How long that query took (connection from the pool included).", later);
        _linkUp = factory.CreateGauge("tsunagu_broker_link_up", "1 when the server's own connection to the MQTT broker is up, else 0 (absent when push is disabled).", later);
        _brokerConnections = factory.CreateGauge("tsunagu_broker_connections", "Connections the embedded MQTT broker holds, logged in or not (absent with an external broker).", later);
        metrics.Registry.AddBeforeCollectCallback(RefreshAsync);
    }

    private sealed class Group
    {
        public string Key { get; set; } = "";
        public long Count { get; set; }
    }

    private sealed class RolloutGroup
    {
        public string Target { get; set; } = "";
        public long AtTarget { get; set; }
        public long Count { get; set; }
    }

    // states and patterns: scans of their (covering) indexes; presence and rollout: scans of the table, rollout grouping only
    // the units given a target. One query grouping by all of them was several times slower at 100,000 units (SQLite: a
    // temporary B-tree over every row, reached through the state index).
    private const string StatesSql = "SELECT state AS Key, COUNT(*) AS Count FROM units GROUP BY state";
    private const string PatternsSql = "SELECT COALESCE(pattern, '') AS Key, COUNT(*) AS Count FROM units GROUP BY pattern";
    private const string RolloutSql = """
        SELECT target_pattern AS Target, CASE WHEN pattern = target_pattern THEN 1 ELSE 0 END AS AtTarget, COUNT(*) AS Count
        FROM units WHERE target_pattern IS NOT NULL GROUP BY 1, 2
        """;

    /// <summary>Reads what a scrape shows; the units table only when the last reading is older than <see cref="SnapshotLifetime"/>.</summary>
    public async Task RefreshAsync(CancellationToken ct)
    {
        await _lock.WaitAsync(ct);
        try
        {
            await CheckDatabaseAsync(ct);
            if (_link.BrokerUri is not null) { _linkUp.Set(_link.Connected ? 1 : 0); }
            if (_embedded.Enabled) { _brokerConnections.Set(_embedded.Connections); }
            if (_readAt is { } at && _time.GetElapsedTime(at) < SnapshotLifetime)
            {
                return;
            }
            try
            {
                await ReadFleetAsync(ct);
                _readAt = _time.GetTimestamp();
            }
            catch (Exception e) when (e is DbException or InvalidOperationException or TimeoutException)
            {
                // the last reading stays; tsunagu_database_up says why it is not newer
                _log.LogWarning("metrics: reading the fleet counts failed: {Type}: {Error}", e.GetType().Name, e.Message);
            }
        }
        finally
        {
            _lock.Release();
        }
    }

    private async Task CheckDatabaseAsync(CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            await using var c = await _store.Database.OpenAsync(durable: false, ct);
            await c.ExecuteScalarAsync<long>(new CommandDefinition("SELECT 1", cancellationToken: ct));
            _databaseUp.Set(1);
        }
        catch (Exception e) when (e is DbException or InvalidOperationException or TimeoutException)
        {
            _databaseUp.Set(0);
            _log.LogWarning("metrics: the database check failed: {Type}: {Error}", e.GetType().Name, e.Message);
        }
        _databaseSeconds.Set(Stopwatch.GetElapsedTime(started).TotalSeconds);
    }

    private async Task ReadFleetAsync(CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        List<Group> states, patterns;
        List<RolloutGroup> groups;
        long pending, online;
        await using (var c = await _store.Database.OpenAsync(durable: false, ct))
        {
            states = (await c.QueryAsync<Group>(new CommandDefinition(StatesSql, cancellationToken: ct))).ToList();
            patterns = (await c.QueryAsync<Group>(new CommandDefinition(PatternsSql, cancellationToken: ct))).ToList();
            groups = (await c.QueryAsync<RolloutGroup>(new CommandDefinition(RolloutSql, cancellationToken: ct))).ToList();
            online = await c.ExecuteScalarAsync<long>(new CommandDefinition("SELECT COUNT(*) FROM units WHERE online = 1", cancellationToken: ct));
            pending = await c.ExecuteScalarAsync<long>(new CommandDefinition("SELECT COUNT(*) FROM push_checks WHERE delivered_at IS NULL AND created_at > @since",
                new { since = TsunaguStore.Timestamp(_time.GetUtcNow() - BrokerLink.UndeliveredLifetime) }, cancellationToken: ct));
        }
        _units.Set(states.Sum(g => g.Count));
        _online.Set(online);
        _pendingPushes.Set(pending);
        var byState = KnownStates.ToDictionary(s => s, _ => 0L, StringComparer.Ordinal);
        var byPattern = new Dictionary<string, long>(StringComparer.Ordinal);
        var rollout = new Dictionary<(string, string), long>();
        foreach (var g in states)
        {
            byState[g.Key] = byState.GetValueOrDefault(g.Key) + g.Count;
        }
        foreach (var g in patterns)
        {
            var pattern = g.Key.Length == 0 ? None : g.Key;
            byPattern[pattern] = byPattern.GetValueOrDefault(pattern) + g.Count;
        }
        foreach (var g in groups)
        {
            if (g.Target.Length > 0)
            {
                var key = (g.Target, g.AtTarget != 0 ? "at_target" : "pending");
                rollout[key] = rollout.GetValueOrDefault(key) + g.Count;
            }
        }
        foreach (var target in rollout.Keys.Select(k => k.Item1).Distinct().ToList())
        {
            rollout.TryAdd((target, "at_target"), 0);
            rollout.TryAdd((target, "pending"), 0);
        }
        Publish(_byState, byState.Select(e => (new[] { e.Key }, e.Value)));
        Publish(_byPattern, byPattern.Select(e => (new[] { e.Key }, e.Value)));
        Publish(_rollout, rollout.Select(e => (new[] { e.Key.Item1, e.Key.Item2 }, e.Value)));
        _snapshotSeconds.Set(Stopwatch.GetElapsedTime(started).TotalSeconds);
    }

    /// <summary>Sets each labelled value and removes the series of labels that are gone (a deleted pattern's count does not linger).</summary>
    private void Publish(Gauge gauge, IEnumerable<(string[] Labels, long Value)> values)
    {
        var now = new HashSet<string[]>(LabelsComparer.Instance);
        foreach (var (labels, value) in values)
        {
            gauge.WithLabels(labels).Set(value);
            now.Add(labels);
        }
        if (_published.TryGetValue(gauge, out var before))
        {
            foreach (var gone in before.Where(l => !now.Contains(l)))
            {
                gauge.RemoveLabelled(gone);
            }
        }
        _published[gauge] = now;
    }

    private sealed class LabelsComparer : IEqualityComparer<string[]>
    {
        public static readonly LabelsComparer Instance = new();
        public bool Equals(string[]? x, string[]? y) => x is not null && y is not null && x.AsSpan().SequenceEqual(y);
        public int GetHashCode(string[] obj) => obj.Aggregate(0, (h, s) => HashCode.Combine(h, s));
    }
}
