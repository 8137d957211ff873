using System.Collections.Concurrent;
using System.Data.Common;
using System.Globalization;
using System.Text.Json;
using Dapper;
using Tsunagu.Protocol;

namespace Tsunagu.Server.Data;

/// <summary>A write the store refused because it contradicts what is there (duplicate MAC, unknown pattern...).</summary>
public sealed class StoreConflictException(string message) : Exception(message);

/// <summary>An audit entry written in the same transaction as the change it records.</summary>
public sealed record AuditEntry(string Actor, string Action, string? Target, string? Detail);

/// <summary>
/// What one update report changes about a unit: the report itself, the inventory it now runs (with its pattern and
/// state), its last error (cleared on success), the audit entry and the history entry.
/// </summary>
public sealed record UpdateOutcome(string Mac, string UpdateId, bool Success, string? Error, Inventory Inventory, string? Pattern, string State,
    string? LastError, string EventDetail);

/// <summary>Filters of the fleet query; every one is optional.</summary>
public sealed record UnitQuery(string? Pattern = null, string? State = null, string? Application = null, string? Version = null,
    DateTimeOffset? SeenBefore = null, DateTimeOffset? SeenAfter = null, bool? Online = null, string? Subscriber = null);

/// <summary>
/// The server's tables (patent figs. 6 and 8) on SQLite or PostgreSQL. Every method opens its own pooled
/// connection, so the store keeps no state between requests and replicas can share one database. The schema is
/// brought up to date before a store is made (<see cref="Database.Migrate"/>, a start-up step of <see cref="ServerHost"/>).
/// </summary>
public sealed partial class TsunaguStore
{
    private readonly Database _db;
    private readonly TimeProvider _time;

    /// <summary>When this replica last wrote each unit's last_seen (a bare <see cref="Touch"/> within <see cref="LastSeenResolution"/> writes nothing).</summary>
    private readonly ConcurrentDictionary<string, DateTimeOffset> _lastSeenWritten = new(StringComparer.Ordinal);

    /// <summary>Each unit's newest history entry written by this replica (kind and detail), to skip identical periodic checks.</summary>
    private readonly ConcurrentDictionary<string, (string Kind, string? Detail)> _lastEvent = new(StringComparer.Ordinal);

    /// <summary>How stale last_seen may be: a unit seen again within this is not written again (SQLite has one writer; every request used to write).</summary>
    public static readonly TimeSpan LastSeenResolution = TimeSpan.FromMinutes(1);

    static TsunaguStore()
    {
        DefaultTypeMap.MatchNamesWithUnderscores = true;
    }

    public TsunaguStore(Database database, TimeProvider time)
    {
        _db = database;
        _time = time;
    }

    public Database Database => _db;

    private DbConnection Open() => _db.Open();

    /// <summary>For what a unit reports again on its next contact: commits that do not wait for the disk (<see cref="Database.Open(bool)"/>).</summary>
    private DbConnection OpenUnitReport() => _db.Open(durable: false);

    public string Now() => Timestamp(_time.GetUtcNow());

    public static string Timestamp(DateTimeOffset at) => at.ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'", CultureInfo.InvariantCulture);

    /// <summary>Runs an insert; a row that already exists becomes a <see cref="StoreConflictException"/> with <paramref name="conflict"/>.</summary>
    private void Insert(string sql, object args, string conflict)
    {
        using var c = Open();
        try
        {
            c.Execute(sql, args);
        }
        catch (DbException e) when (IsUniqueViolation(e))
        {
            throw new StoreConflictException(conflict);
        }
    }

    private static bool IsUniqueViolation(DbException e) =>
        e.SqlState == "23505" || (e is Microsoft.Data.Sqlite.SqliteException s && s.SqliteErrorCode == 19);

    // ---- units ------------------------------------------------------------------------------------------

    private const string UnitColumns =
        "SELECT units.*, (SELECT MAX(revision) FROM unit_configs c WHERE c.mac = units.mac) AS config_revision FROM units";

    private const string InsertUnitSql = """
        INSERT INTO units (mac, serial, hardware_version, isp_method, isp_username, isp_password, ip_address, domain, vpn,
                           global_ip, subscriber, state, pattern, target_pattern, created_at)
        VALUES (@Mac, @Serial, @HardwareVersion, @IspMethod, @IspUsername, @IspPassword, @IpAddress, @Domain, @Vpn,
                @GlobalIp, @Subscriber, @State, @Pattern, @TargetPattern, @CreatedAt)
        """;

    public void AddUnit(UnitRow unit)
    {
        unit.CreatedAt = Now();
        Insert(InsertUnitSql, unit, $"unit {unit.Mac} is already registered");
    }

    /// <summary>
    /// Registers units, each with revision 1 of <paramref name="config"/> (when given), and writes one audit entry, in
    /// one transaction: all or nothing. A unit that is already registered fails the whole call (<see cref="StoreConflictException"/>).
    /// </summary>
    public void AddUnits(IReadOnlyList<UnitRow> units, ServiceConfiguration? config, string actor, string action, string? target, string? detail)
    {
        var now = Now();
        var document = config is null ? null : JsonSerializer.Serialize(config, ProtocolJson.Default.ServiceConfiguration);
        using var c = Open();
        using var tx = c.BeginTransaction();
        try
        {
            foreach (var unit in units)
            {
                unit.CreatedAt = now;
                c.Execute(InsertUnitSql, unit, tx);
                if (document is not null)
                {
                    c.Execute("""
                        INSERT INTO unit_configs (mac, revision, document, status, origin, created_at) VALUES (@mac, 1, @document, 'provisional', 'operator', @now)
                        """, new { mac = unit.Mac, document, now }, tx);
                }
            }
            c.Execute(AuditSql, new { now, actor, action, target, detail }, tx);
            tx.Commit();
        }
        catch (DbException e) when (IsUniqueViolation(e))
        {
            throw new StoreConflictException(units.Count == 1
                ? $"unit {units[0].Mac} is already registered"
                : "a unit of this table was registered meanwhile (another import?); nothing was registered, check the table again");
        }
    }

    public UnitRow? GetUnit(string mac)
    {
        using var c = Open();
        return c.QuerySingleOrDefault<UnitRow>($"{UnitColumns} WHERE mac = @mac", new { mac });
    }

    private const string UnitCheckSql = $"SELECT {UnitCheckRow.Columns} FROM units WHERE mac = @mac";

    /// <summary>The columns of the unit a version check reads (<see cref="UnitCheckRow"/>).</summary>
    public UnitCheckRow? GetUnitForCheck(string mac)
    {
        using var c = Open();
        return c.QuerySingleOrDefault<UnitCheckRow>(UnitCheckSql, new { mac });
    }

    public IReadOnlyList<UnitRow> ListUnits(string? pattern = null, string? state = null) => QueryUnits(new UnitQuery(pattern, state));

    public IReadOnlyList<UnitRow> QueryUnits(UnitQuery q)
    {
        using var c = Open();
        var rows = c.Query<UnitRow>($"""
            {UnitColumns}
            WHERE (@Pattern IS NULL OR pattern = @Pattern) AND (@State IS NULL OR state = @State)
              AND (@Subscriber IS NULL OR subscriber = @Subscriber)
              AND (@SeenBefore IS NULL OR last_seen < @SeenBefore) AND (@SeenAfter IS NULL OR last_seen >= @SeenAfter)
              AND (@Online IS NULL OR online = @Online)
            ORDER BY mac
            """, new
        {
            q.Pattern, q.State, q.Subscriber,
            SeenBefore = q.SeenBefore is { } b ? Timestamp(b) : null,
            SeenAfter = q.SeenAfter is { } a ? Timestamp(a) : null,
            Online = q.Online is { } o ? (long?)(o ? 1 : 0) : null,
        }).ToList();
        if (q.Application is null)
        {
            return rows;
        }
        // software version filter: from each unit's reported inventory
        return rows.Where(r => r.Inventory is { } json &&
                               JsonSerializer.Deserialize(json, ProtocolJson.Default.Inventory) is { } inv &&
                               inv.Applications.TryGetValue(q.Application, out var v) && (q.Version is null || v == q.Version)).ToList();
    }

    /// <summary>Marks the unit as seen now, optionally moving it to <paramref name="state"/>.</summary>
    /// <remarks>A bare touch (no state, no error) within <see cref="LastSeenResolution"/> of this replica's last write of the unit's last_seen writes nothing.</remarks>
    public void Touch(string mac, string? state = null, string? error = null, bool clearError = false)
    {
        var now = _time.GetUtcNow();
        if (state is null && error is null && !clearError && _lastSeenWritten.TryGetValue(mac, out var written) &&
            now - written < LastSeenResolution && now >= written)
        {
            return;
        }
        // an error is reported once: it waits for the disk; the rest is reported again on the next contact
        using var c = error is null ? OpenUnitReport() : Open();
        c.Execute("""
            UPDATE units SET last_seen = @now, state = COALESCE(@state, state),
                   last_error = CASE WHEN @clear = 1 THEN NULL ELSE COALESCE(@error, last_error) END
            WHERE mac = @mac
            """, new { mac, now = Timestamp(now), state, error, clear = clearError ? 1 : 0 });
        _lastSeenWritten[mac] = now;
    }

    /// <summary>
    /// Records the inventory only when it, the pattern, the state or the bundle counter differ from <paramref name="known"/>
    /// (the row the caller just read); otherwise only marks the unit seen (<see cref="Touch"/>). True when it wrote the inventory.
    /// </summary>
    public bool RecordInventoryIfChanged(UnitCheckRow known, Inventory inventory, string? pattern, string? state)
    {
        var json = JsonSerializer.Serialize(inventory, ProtocolJson.Default.Inventory);
        var unchanged = known.Inventory == json && (pattern is null || pattern == known.Pattern) && (state is null || state == known.State) &&
                        (inventory.LastBundle is not { } counter || (known.LastBundleVersion is { } v && v >= counter.Version));
        if (unchanged)
        {
            Touch(known.Mac);
            return false;
        }
        RecordInventory(known.Mac, inventory, pattern, state);
        return true;
    }

    public void RecordInventory(string mac, Inventory inventory, string? pattern, string? state, string? wanAddress = null)
    {
        RaiseBundleCounter(mac, inventory.LastBundle);
        _lastSeenWritten[mac] = _time.GetUtcNow();
        using var c = OpenUnitReport();
        c.Execute("""
            UPDATE units SET inventory = @inventory, pattern = COALESCE(@pattern, pattern), state = COALESCE(@state, state),
                   wan_address = COALESCE(@wanAddress, wan_address), last_seen = @now
            WHERE mac = @mac
            """, new { mac, inventory = JsonSerializer.Serialize(inventory, ProtocolJson.Default.Inventory), pattern, state, wanAddress, now = Now() });
    }

    /// <summary>Raises the unit's bundle counter to <paramref name="counter"/>; never lowers it.</summary>
    public void RaiseBundleCounter(string mac, Protocol.Bundles.BundleCounter? counter)
    {
        if (counter is null) { return; }
        using var c = Open();
        c.Execute("""
            UPDATE units SET last_bundle_version = @Version, last_bundle_id = @BundleId
            WHERE mac = @mac AND (last_bundle_version IS NULL OR last_bundle_version < @Version)
            """, new { mac, counter.Version, counter.BundleId });
    }

    public void SetPresence(string mac, bool online)
    {
        using var c = OpenUnitReport();
        c.Execute("UPDATE units SET online = @online, presence_at = @now WHERE mac = @mac", new { mac, online = online ? 1 : 0, now = Now() });
    }

    public void SetTargetPattern(string mac, string? pattern)
    {
        using var c = Open();
        c.Execute("UPDATE units SET target_pattern = @pattern WHERE mac = @mac", new { mac, pattern });
    }

    // ---- challenges -------------------------------------------------------------------------------------

    public void AddChallenge(ChallengeRow challenge)
    {
        using var c = OpenUnitReport();
        c.Execute("DELETE FROM challenges WHERE expires_at < @now", new { now = Now() });
        c.Execute("INSERT INTO challenges (id, mac, purpose, nonce, expires_at) VALUES (@Id, @Mac, @Purpose, @Nonce, @ExpiresAt)", challenge);
    }

    /// <summary>Removes and returns the challenge: each nonce answers at most one proof.</summary>
    public ChallengeRow? TakeChallenge(string id)
    {
        using var c = Open();
        return c.QuerySingleOrDefault<ChallengeRow>("DELETE FROM challenges WHERE id = @id RETURNING *", new { id });
    }

    // ---- software catalogue and patches -------------------------------------------------------------

    public void AddSoftware(SoftwareRow software)
    {
        Insert("""
                INSERT INTO software (app_id, version, name, required_hardware, required_os, created_at)
                VALUES (@AppId, @Version, @Name, @RequiredHardware, @RequiredOs, @now)
                """, new { software.AppId, software.Version, software.Name, software.RequiredHardware, software.RequiredOs, now = Now() }, $"software {software.AppId} {software.Version} is already in the catalogue");
    }

    /// <summary>Adds the software if it is not catalogued yet (seeding).</summary>
    public void EnsureSoftware(SoftwareRow software)
    {
        using var c = Open();
        c.Execute("""
            INSERT INTO software (app_id, version, name, required_hardware, required_os, created_at)
            VALUES (@AppId, @Version, @Name, @RequiredHardware, @RequiredOs, @now) ON CONFLICT DO NOTHING
            """, new { software.AppId, software.Version, software.Name, software.RequiredHardware, software.RequiredOs, now = Now() });
    }

    public IReadOnlyList<SoftwareRow> ListSoftware(string? appId = null)
    {
        using var c = Open();
        return c.Query<SoftwareRow>("SELECT * FROM software WHERE @appId IS NULL OR app_id = @appId ORDER BY app_id, version", new { appId }).ToList();
    }

    public SoftwareRow? GetSoftware(string appId, string version)
    {
        using var c = Open();
        return c.QuerySingleOrDefault<SoftwareRow>("SELECT * FROM software WHERE app_id = @appId AND version = @version", new { appId, version });
    }

    public void AddPatch(PatchRow patch)
    {
        Insert("""
                INSERT INTO patches (id, name, version, target_app, importance, os_version, hardware_version, created_at)
                VALUES (@Id, @Name, @Version, @TargetApp, @Importance, @OsVersion, @HardwareVersion, @now)
                """, new { patch.Id, patch.Name, patch.Version, patch.TargetApp, patch.Importance, patch.OsVersion, patch.HardwareVersion, now = Now() }, $"patch {patch.Id} already exists");
    }

    public IReadOnlyList<PatchRow> ListPatches()
    {
        using var c = Open();
        return c.Query<PatchRow>("SELECT * FROM patches ORDER BY id").ToList();
    }

    // ---- patterns and update programs ------------------------------------------------------------------

    /// <summary>Inserts or replaces a pattern as it is given (used by seeding; the operator API goes through the catalogue rules).</summary>
    public void UpsertPattern(PatternRow pattern)
    {
        var now = Now();
        CatalogueWrite((c, tx) => c.Execute("""
            INSERT INTO patterns (id, name, hardware_version, os_version, applications, status, created_at, verified_at)
            VALUES (@Id, @Name, @HardwareVersion, @OsVersion, @Applications, @Status, @now, CASE WHEN @Status = 'verified' THEN @now END)
            ON CONFLICT(id) DO UPDATE SET name = excluded.name, hardware_version = excluded.hardware_version,
                os_version = excluded.os_version, applications = excluded.applications, status = excluded.status
            """, new { pattern.Id, pattern.Name, pattern.HardwareVersion, pattern.OsVersion, pattern.Applications, pattern.Status, now }, tx));
    }

    public void AddPattern(PatternRow pattern)
    {
        CatalogueInsert("""
                INSERT INTO patterns (id, name, hardware_version, os_version, applications, status, created_at)
                VALUES (@Id, @Name, @HardwareVersion, @OsVersion, @Applications, @Status, @now)
                """, new { pattern.Id, pattern.Name, pattern.HardwareVersion, pattern.OsVersion, pattern.Applications, pattern.Status, now = Now() }, $"pattern {pattern.Id} already exists");
    }

    public PatternRow? GetPattern(string id)
    {
        using var c = Open();
        return c.QuerySingleOrDefault<PatternRow>("SELECT * FROM patterns WHERE id = @id", new { id });
    }

    /// <summary>Moves a pattern from <paramref name="from"/> to <paramref name="to"/>; false when it was not in <paramref name="from"/>.</summary>
    public bool SetPatternStatus(string id, string from, string to)
    {
        var column = to == PatternStatus.Verified ? "verified_at" : "retired_at";
        return CatalogueWrite((c, tx) =>
            c.Execute($"UPDATE patterns SET status = @to, {column} = @now WHERE id = @id AND status = @from", new { id, from, to, now = Now() }, tx)) > 0;
    }

    public IReadOnlyList<PatternRow> ListPatterns(string? status = null)
    {
        using var c = Open();
        return c.Query<PatternRow>("SELECT * FROM patterns WHERE @status IS NULL OR status = @status ORDER BY id", new { status }).ToList();
    }

    /// <summary>The verified (or retired) pattern matching <paramref name="inventory"/>; see <see cref="CatalogueSnapshot.FindPattern"/>.</summary>
    public PatternRow? FindPattern(Inventory inventory) => Catalogue().FindPattern(inventory);

    public void UpsertUpdateProgram(UpdateProgramRow program)
    {
        CatalogueWrite((c, tx) => c.Execute("""
            INSERT INTO update_programs (id, from_pattern, to_pattern, importance, priority, artifact_sha256, artifact_size, created_at)
            VALUES (@Id, @FromPattern, @ToPattern, @Importance, @Priority, @ArtifactSha256, @ArtifactSize, @now)
            ON CONFLICT(id) DO UPDATE SET from_pattern = excluded.from_pattern, to_pattern = excluded.to_pattern,
                importance = excluded.importance, priority = excluded.priority,
                artifact_sha256 = excluded.artifact_sha256, artifact_size = excluded.artifact_size
            """, new { program.Id, program.FromPattern, program.ToPattern, program.Importance, program.Priority, program.ArtifactSha256, program.ArtifactSize, now = Now() }, tx));
    }

    public void AddUpdateProgram(UpdateProgramRow program)
    {
        CatalogueInsert("""
                INSERT INTO update_programs (id, from_pattern, to_pattern, importance, priority, artifact_sha256, artifact_size, created_at)
                VALUES (@Id, @FromPattern, @ToPattern, @Importance, @Priority, @ArtifactSha256, @ArtifactSize, @now)
                """, new { program.Id, program.FromPattern, program.ToPattern, program.Importance, program.Priority, program.ArtifactSha256, program.ArtifactSize, now = Now() }, $"update program {program.Id} already exists");
    }

    public IReadOnlyList<UpdateProgramRow> ListUpdatePrograms()
    {
        using var c = Open();
        return c.Query<UpdateProgramRow>("SELECT * FROM update_programs ORDER BY from_pattern, priority DESC, id").ToList();
    }

    /// <summary>The update program offered to units on <paramref name="fromPattern"/>; see <see cref="CatalogueSnapshot.FindUpdateProgram"/>.</summary>
    public UpdateProgramRow? FindUpdateProgram(string fromPattern, string? toPattern = null) => Catalogue().FindUpdateProgram(fromPattern, toPattern);

    public UpdateProgramRow? GetUpdateProgram(string id)
    {
        using var c = Open();
        return c.QuerySingleOrDefault<UpdateProgramRow>("SELECT * FROM update_programs WHERE id = @id", new { id });
    }

    public bool ArtifactIsOffered(string sha256)
    {
        using var c = Open();
        return c.ExecuteScalar<long>("SELECT COUNT(*) FROM update_programs WHERE artifact_sha256 = @sha256", new { sha256 }) > 0;
    }

    /// <summary>Records an update report once; a repeated report (same unit, update, result) changes nothing.</summary>
    public bool RecordUpdateReport(string mac, string updateId, bool success, string? error, string? pattern)
    {
        using var c = Open();
        return c.Execute("""
            INSERT INTO update_reports (mac, update_id, success, error, pattern, at)
            VALUES (@mac, @updateId, @success, @error, @pattern, @now)
            ON CONFLICT DO NOTHING
            """, new { mac, updateId, success = success ? 1 : 0, error, pattern, now = Now() }) > 0;
    }

    /// <summary>
    /// Records an update report and everything it changes (<see cref="UpdateOutcome"/>) in one transaction: all or
    /// nothing. A repeated report (same unit, update, result) adds no second report row; the rest is written again.
    /// </summary>
    public void RecordUpdateOutcome(UpdateOutcome o)
    {
        var at = _time.GetUtcNow();
        var now = Timestamp(at);
        var kind = UnitEventKinds.Update;
        using var c = Open();
        using var tx = c.BeginTransaction();
        c.Execute("""
            INSERT INTO update_reports (mac, update_id, success, error, pattern, at)
            VALUES (@Mac, @UpdateId, @success, @Error, @Pattern, @now)
            ON CONFLICT DO NOTHING
            """, new { o.Mac, o.UpdateId, success = o.Success ? 1 : 0, o.Error, o.Pattern, now }, tx);
        if (o.Inventory.LastBundle is { } counter)
        {
            c.Execute("""
                UPDATE units SET last_bundle_version = @Version, last_bundle_id = @BundleId
                WHERE mac = @Mac AND (last_bundle_version IS NULL OR last_bundle_version < @Version)
                """, new { o.Mac, counter.Version, counter.BundleId }, tx);
        }
        c.Execute("""
            UPDATE units SET inventory = @inventory, pattern = COALESCE(@Pattern, pattern), state = @State, last_seen = @now,
                   last_error = CASE WHEN @Success THEN NULL ELSE COALESCE(@LastError, last_error) END
            WHERE mac = @Mac
            """, new { o.Mac, inventory = JsonSerializer.Serialize(o.Inventory, ProtocolJson.Default.Inventory), o.Pattern, o.State, now, o.Success, o.LastError }, tx);
        c.Execute(AuditSql, new { now, actor = o.Mac, action = o.Success ? "update.succeeded" : "update.failed", target = o.UpdateId, detail = o.Error }, tx);
        c.Execute("INSERT INTO unit_events (mac, at, kind, detail, failed) VALUES (@Mac, @now, @kind, @EventDetail, @failed)",
            new { o.Mac, now, kind, o.EventDetail, failed = o.Success ? 0 : 1 }, tx);
        tx.Commit();
        _lastSeenWritten[o.Mac] = at;
        _lastEvent[o.Mac] = (kind, o.EventDetail);
    }

    public long CountUpdateReports(string mac)
    {
        using var c = Open();
        return c.ExecuteScalar<long>("SELECT COUNT(*) FROM update_reports WHERE mac = @mac", new { mac });
    }

    // ---- service configuration -------------------------------------------------------------------------

    /// <summary>Creates or replaces a named service configuration, with its audit entry (when given) in the same transaction.</summary>
    public void UpsertServiceConfig(string name, ServiceConfiguration document, AuditEntry? audit = null)
    {
        using var c = Open();
        using var tx = c.BeginTransaction();
        c.Execute("INSERT INTO service_configs (name, document) VALUES (@name, @doc) ON CONFLICT(name) DO UPDATE SET document = excluded.document",
            new { name, doc = JsonSerializer.Serialize(document, ProtocolJson.Default.ServiceConfiguration) }, tx);
        WriteAudit(c, tx, audit);
        tx.Commit();
    }

    /// <summary>Writes <paramref name="audit"/> (when given) inside the caller's transaction.</summary>
    private void WriteAudit(DbConnection c, DbTransaction tx, AuditEntry? audit)
    {
        if (audit is not null)
        {
            c.Execute(AuditSql, new { now = Now(), actor = audit.Actor, action = audit.Action, target = audit.Target, detail = audit.Detail }, tx);
        }
    }

    public ServiceConfiguration? GetServiceConfig(string name)
    {
        using var c = Open();
        var doc = c.QuerySingleOrDefault<string>("SELECT document FROM service_configs WHERE name = @name", new { name });
        return doc is null ? null : JsonSerializer.Deserialize(doc, ProtocolJson.Default.ServiceConfiguration);
    }

    /// <summary>
    /// Adds the next revision of a unit's service configuration, as provisional; the audit entry <paramref name="audit"/>
    /// makes of the revision (when given) commits with it.
    /// </summary>
    public long AddUnitConfig(string mac, ServiceConfiguration document, string origin = "operator", Func<long, AuditEntry>? audit = null)
    {
        using var c = Open();
        using var tx = c.BeginTransaction();
        var next = c.ExecuteScalar<long>("SELECT COALESCE(MAX(revision), 0) + 1 FROM unit_configs WHERE mac = @mac", new { mac }, tx);
        c.Execute("""
            INSERT INTO unit_configs (mac, revision, document, status, origin, created_at) VALUES (@mac, @next, @doc, 'provisional', @origin, @now)
            """, new { mac, next, doc = JsonSerializer.Serialize(document, ProtocolJson.Default.ServiceConfiguration), origin, now = Now() }, tx);
        WriteAudit(c, tx, audit?.Invoke(next));
        tx.Commit();
        return next;
    }

    public UnitConfigRow? LatestUnitConfig(string mac)
    {
        using var c = Open();
        return c.QueryFirstOrDefault<UnitConfigRow>("SELECT * FROM unit_configs WHERE mac = @mac ORDER BY revision DESC LIMIT 1", new { mac });
    }

    public IReadOnlyList<UnitConfigRow> ListUnitConfigs(string mac)
    {
        using var c = Open();
        return c.Query<UnitConfigRow>("SELECT * FROM unit_configs WHERE mac = @mac ORDER BY revision", new { mac }).ToList();
    }

    /// <summary>
    /// Records the unit's acknowledgement of a revision. Idempotent: the same acknowledgement again changes
    /// nothing. Returns false when the revision does not exist.
    /// </summary>
    public bool AckUnitConfig(string mac, long revision, bool success, string? error) => AckUnitConfig(mac, revision, success, error, null);

    /// <summary>
    /// Records a unit's acknowledgement of a revision; with <paramref name="report"/>, also marks the unit seen (with its
    /// error, when it failed) and adds the history entry, all in the same transaction. False (nothing written) when
    /// the unit has no such revision.
    /// </summary>
    public bool AckUnitConfig(string mac, long revision, bool success, string? error, (string? LastError, string EventDetail)? report)
    {
        var at = _time.GetUtcNow();
        using var c = Open();
        using var tx = c.BeginTransaction();
        var status = success ? ConfigStatus.Applied : ConfigStatus.Failed;
        var exists = c.ExecuteScalar<long>("SELECT COUNT(*) FROM unit_configs WHERE mac = @mac AND revision = @revision", new { mac, revision }, tx) > 0;
        if (!exists)
        {
            return false;
        }
        c.Execute("""
            UPDATE unit_configs SET status = @status, error = @error, updated_at = @now
            WHERE mac = @mac AND revision = @revision AND status NOT IN ('final', @status)
            """, new { mac, revision, status, error, now = Now() }, tx);
        if (success)
        {
            c.Execute("UPDATE units SET applied_config_revision = @revision WHERE mac = @mac AND (applied_config_revision IS NULL OR applied_config_revision < @revision)",
                new { mac, revision }, tx);
        }
        if (report is { } r)
        {
            var now = Timestamp(at);
            c.Execute("UPDATE units SET last_seen = @now, last_error = COALESCE(@LastError, last_error) WHERE mac = @mac", new { mac, now, r.LastError }, tx);
            c.Execute("INSERT INTO unit_events (mac, at, kind, detail, failed) VALUES (@mac, @now, @kind, @EventDetail, @failed)",
                new { mac, now, kind = UnitEventKinds.Config, r.EventDetail, failed = success ? 0 : 1 }, tx);
        }
        tx.Commit();
        if (report is { } written)
        {
            _lastSeenWritten[mac] = at;
            _lastEvent[mac] = (UnitEventKinds.Config, written.EventDetail);
        }
        return true;
    }

    /// <summary>
    /// A unit's ready report in one transaction: its bundle counter, inventory, pattern, state and WAN address; the
    /// revision it runs made final (when applied); and the history entry <paramref name="detail"/> writes (told whether
    /// the revision became final). True when the revision became final. It waits for the disk only when a revision is
    /// to become final or the bundle counter to rise (reported once); the rest the unit reports again next time.
    /// </summary>
    public bool RecordReady(string mac, Inventory inventory, string? pattern, string state, string? wanAddress, long? configRevision, Func<bool, string> detail)
    {
        var at = _time.GetUtcNow();
        var now = Timestamp(at);
        bool once;
        using (var read = OpenUnitReport())
        {
            once = (configRevision is { } pending && read.ExecuteScalar<long>(
                        "SELECT COUNT(*) FROM unit_configs WHERE mac = @mac AND revision = @pending AND status = 'applied'", new { mac, pending }) > 0)
                   || (inventory.LastBundle is { } raised && read.ExecuteScalar<long>(
                        "SELECT COUNT(*) FROM units WHERE mac = @mac AND (last_bundle_version IS NULL OR last_bundle_version < @Version)", new { mac, raised.Version }) > 0);
        }
        using var c = once ? Open() : OpenUnitReport();
        using var tx = c.BeginTransaction();
        if (inventory.LastBundle is { } counter)
        {
            c.Execute("""
                UPDATE units SET last_bundle_version = @Version, last_bundle_id = @BundleId
                WHERE mac = @mac AND (last_bundle_version IS NULL OR last_bundle_version < @Version)
                """, new { mac, counter.Version, counter.BundleId }, tx);
        }
        c.Execute("""
            UPDATE units SET inventory = @inventory, pattern = COALESCE(@pattern, pattern), state = @state,
                   wan_address = COALESCE(@wanAddress, wan_address), last_seen = @now
            WHERE mac = @mac
            """, new { mac, inventory = JsonSerializer.Serialize(inventory, ProtocolJson.Default.Inventory), pattern, state, wanAddress, now }, tx);
        var finalized = configRevision is { } revision && c.Execute(
            "UPDATE unit_configs SET status = 'final', updated_at = @now WHERE mac = @mac AND revision = @revision AND status = 'applied'",
            new { mac, revision, now }, tx) > 0;
        var text = detail(finalized);
        c.Execute("INSERT INTO unit_events (mac, at, kind, detail, failed) VALUES (@mac, @now, @kind, @text, 0)",
            new { mac, now, kind = UnitEventKinds.Ready, text }, tx);
        tx.Commit();
        _lastSeenWritten[mac] = at;
        _lastEvent[mac] = (UnitEventKinds.Ready, text);
        return finalized;
    }

    /// <summary>Marks an applied revision final (the unit has confirmed it with the host after applying).</summary>
    public bool FinalizeUnitConfig(string mac, long revision)
    {
        using var c = Open();
        return c.Execute("UPDATE unit_configs SET status = 'final', updated_at = @now WHERE mac = @mac AND revision = @revision AND status = 'applied'",
            new { mac, revision, now = Now() }) > 0;
    }

    // ---- install media -----------------------------------------------------------------------------------

    public void AddMedium(string digest, string name)
    {
        Insert("INSERT INTO media (digest, name, created_at) VALUES (@digest, @name, @now)", new { digest, name, now = Now() }, $"medium {digest} is already registered");
    }

    public MediaRegistration? GetMedium(string digest)
    {
        using var c = Open();
        return c.QuerySingleOrDefault<MediumRow>("SELECT digest, name FROM media WHERE digest = @digest", new { digest }) is { } m
            ? new MediaRegistration(m.Digest, m.Name) : null;
    }

    public IReadOnlyList<MediaRegistration> ListMedia()
    {
        using var c = Open();
        return c.Query<MediumRow>("SELECT digest, name FROM media ORDER BY created_at, digest").Select(m => new MediaRegistration(m.Digest, m.Name)).ToList();
    }

    // ---- unit history ------------------------------------------------------------------------------------

    /// <summary>Adds one entry to the unit's history (a check, an update, a configuration acknowledgement, a ready report).</summary>
    public void AddUnitEvent(string mac, string kind, string? detail, bool failed = false)
    {
        _lastEvent[mac] = (kind, detail);
        // checks and ready reports come again on the next contact; updates, configurations and failures are reported once
        using var c = !failed && kind is UnitEventKinds.Check or UnitEventKinds.Ready ? OpenUnitReport() : Open();
        c.Execute("INSERT INTO unit_events (mac, at, kind, detail, failed) VALUES (@mac, @now, @kind, @detail, @failed)",
            new { mac, now = Now(), kind, detail, failed = failed ? 1 : 0 });
    }

    /// <summary>
    /// Adds the entry unless it repeats the unit's newest entry (same kind and detail, as written by this replica):
    /// a unit that checks every day and stays up to date gets one history line, not one per day. True when written.
    /// </summary>
    public bool AddUnitEventUnlessRepeated(string mac, string kind, string? detail, bool failed = false)
    {
        if (_lastEvent.TryGetValue(mac, out var last) && last.Kind == kind && last.Detail == detail)
        {
            return false;
        }
        AddUnitEvent(mac, kind, detail, failed);
        return true;
    }

    /// <summary>The unit's newest history entries first.</summary>
    public IReadOnlyList<UnitEventRow> ListUnitEvents(string mac, int limit = 100)
    {
        using var c = Open();
        return c.Query<UnitEventRow>("SELECT * FROM unit_events WHERE mac = @mac ORDER BY id DESC LIMIT @limit", new { mac, limit }).ToList();
    }

    /// <summary>Failed events (updates, configurations) since <paramref name="since"/>, newest first.</summary>
    public IReadOnlyList<UnitEventRow> ListFailures(DateTimeOffset since, int limit = 100)
    {
        using var c = Open();
        return c.Query<UnitEventRow>("SELECT * FROM unit_events WHERE failed = 1 AND at >= @since ORDER BY id DESC LIMIT @limit",
            new { since = Timestamp(since), limit }).ToList();
    }

    /// <summary>Update reports, oldest first; of one unit when <paramref name="mac"/> is given.</summary>
    public IReadOnlyList<UpdateReportRow> ListUpdateReports(string? mac = null)
    {
        using var c = Open();
        return c.Query<UpdateReportRow>("SELECT * FROM update_reports WHERE @mac IS NULL OR mac = @mac ORDER BY at", new { mac }).ToList();
    }

    /// <summary>Audit entries whose target names the unit (alone or in a list of units), newest first.</summary>
    public IReadOnlyList<AuditRow> ListAuditForUnit(string mac, int limit = 100)
    {
        using var c = Open();
        return c.Query<AuditRow>("SELECT * FROM audit WHERE target = @mac OR target LIKE @pattern ORDER BY id DESC LIMIT @limit",
            new { mac, pattern = "%" + mac + "%", limit }).ToList();
    }

    // ---- people -------------------------------------------------------------------------------------------

    public void UpsertOperator(string name, string passwordHash)
    {
        using var c = Open();
        c.Execute("INSERT INTO operators (name, password_hash) VALUES (@name, @passwordHash) ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash",
            new { name, passwordHash });
    }

    public string? GetOperatorHash(string name)
    {
        using var c = Open();
        return c.QuerySingleOrDefault<string>("SELECT password_hash FROM operators WHERE name = @name", new { name });
    }

    public void UpsertSubscriber(string name, string passwordHash)
    {
        using var c = Open();
        c.Execute("INSERT INTO subscribers (name, password_hash) VALUES (@name, @passwordHash) ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash",
            new { name, passwordHash });
    }

    public string? GetSubscriberHash(string name)
    {
        using var c = Open();
        return c.QuerySingleOrDefault<string>("SELECT password_hash FROM subscribers WHERE name = @name", new { name });
    }

    /// <summary>Puts a subscriber on a contract (null: the default contract).</summary>
    public void SetSubscriberContract(string name, string? contract)
    {
        using var c = Open();
        c.Execute("UPDATE subscribers SET contract = @contract WHERE name = @name", new { name, contract });
    }

    /// <summary>The subscriber's contract; null when they are on the default contract or do not exist.</summary>
    public string? GetSubscriberContract(string name)
    {
        using var c = Open();
        return c.QuerySingleOrDefault<string>("SELECT contract FROM subscribers WHERE name = @name", new { name });
    }

    // ---- contracts: what a subscriber may change --------------------------------------------------------

    public void UpsertContract(string name, IReadOnlyList<string> subscriberFields)
    {
        using var c = Open();
        c.Execute("INSERT INTO contracts (name, subscriber_fields) VALUES (@name, @fields) ON CONFLICT(name) DO UPDATE SET subscriber_fields = excluded.subscriber_fields",
            new { name, fields = JsonSerializer.Serialize(subscriberFields.ToList(), ProtocolJson.Default.ListString) });
    }

    /// <summary>The contract's allow-list of service configuration fields; null when there is no such contract.</summary>
    public IReadOnlyList<string>? GetContract(string name)
    {
        using var c = Open();
        var fields = c.QuerySingleOrDefault<string>("SELECT subscriber_fields FROM contracts WHERE name = @name", new { name });
        return fields is null ? null : JsonSerializer.Deserialize(fields, ProtocolJson.Default.ListString) ?? [];
    }

    public IReadOnlyList<string> ListContracts()
    {
        using var c = Open();
        return c.Query<string>("SELECT name FROM contracts ORDER BY name").ToList();
    }

    // ---- settings and audit ------------------------------------------------------------------------------

    public string? GetSetting(string key)
    {
        using var c = Open();
        return c.QuerySingleOrDefault<string>("SELECT value FROM settings WHERE key = @key", new { key });
    }

    /// <summary>Sets a setting; settings are part of the catalogue snapshot, so this moves the catalogue stamp.</summary>
    public void SetSetting(string key, string value)
    {
        if (key == CatalogueStampKey)
        {
            throw new ArgumentException($"setting {key} is kept by the store itself", nameof(key));
        }
        CatalogueWrite((c, tx) => c.Execute(UpsertSettingSql, new { key, value }, tx));
    }

    private const string UpsertSettingSql = "INSERT INTO settings (key, value) VALUES (@key, @value) ON CONFLICT(key) DO UPDATE SET value = excluded.value";

    // ---- the catalogue snapshot ----------------------------------------------------------------------------

    /// <summary>
    /// The settings row every catalogue write (patterns, update programs, settings) changes in the same transaction.
    /// Readers compare it with the stamp of their <see cref="CatalogueSnapshot"/>, so a change made through any replica
    /// is seen by the next request on every replica, and a steady-state version check reads the catalogue from memory.
    /// </summary>
    public const string CatalogueStampKey = "catalogue-stamp";

    private CatalogueSnapshot? _catalogue;
    private readonly Lock _catalogueLoad = new();

    /// <summary>The catalogue as it is now (one read of the stamp; the rest from memory unless the stamp moved).</summary>
    public CatalogueSnapshot Catalogue()
    {
        using var c = Open();
        return CatalogueAt(c);
    }

    /// <summary>The unit row and the current catalogue, on one connection: all a steady-state version check reads.</summary>
    public (UnitCheckRow? Unit, CatalogueSnapshot Catalogue) GetUnitWithCatalogue(string mac)
    {
        using var c = Open();
        var unit = c.QuerySingleOrDefault<UnitCheckRow>(UnitCheckSql, new { mac });
        return (unit, CatalogueAt(c));
    }

    private CatalogueSnapshot CatalogueAt(DbConnection c)
    {
        // the stamp is read before the rows, so a write that lands in between only makes the next reader load again
        var stamp = c.QuerySingleOrDefault<string>("SELECT value FROM settings WHERE key = @key", new { key = CatalogueStampKey });
        var current = Volatile.Read(ref _catalogue);
        if (current is not null && current.Stamp == stamp)
        {
            return current;
        }
        lock (_catalogueLoad)
        {
            current = Volatile.Read(ref _catalogue);
            if (current is not null && current.Stamp == stamp)
            {
                return current;
            }
            current = new CatalogueSnapshot(stamp,
                c.Query<PatternRow>("SELECT * FROM patterns"),
                c.Query<UpdateProgramRow>("SELECT * FROM update_programs"),
                c.Query<(string Key, string Value)>("SELECT key, value FROM settings").Select(s => KeyValuePair.Create(s.Key, s.Value)));
            Volatile.Write(ref _catalogue, current);
            return current;
        }
    }

    /// <summary>Runs a catalogue write and moves the catalogue stamp in the same transaction.</summary>
    private T CatalogueWrite<T>(Func<DbConnection, DbTransaction, T> write)
    {
        using var c = Open();
        using var tx = c.BeginTransaction();
        var result = write(c, tx);
        c.Execute(UpsertSettingSql, new { key = CatalogueStampKey, value = Guid.NewGuid().ToString("N") }, tx);
        tx.Commit();
        return result;
    }

    /// <summary><see cref="Insert"/> for catalogue rows: the insert and the new stamp commit together.</summary>
    private void CatalogueInsert(string sql, object args, string conflict)
    {
        try
        {
            CatalogueWrite((c, tx) => c.Execute(sql, args, tx));
        }
        catch (DbException e) when (IsUniqueViolation(e))
        {
            throw new StoreConflictException(conflict);
        }
    }

    private const string AuditSql = "INSERT INTO audit (at, actor, action, target, detail) VALUES (@now, @actor, @action, @target, @detail)";

    public void Audit(string actor, string action, string? target, string? detail)
    {
        using var c = Open();
        c.Execute(AuditSql, new { now = Now(), actor, action, target, detail });
    }

    public IReadOnlyList<AuditRow> ListAudit(int limit = 200, string? actor = null, string? target = null)
    {
        using var c = Open();
        return c.Query<AuditRow>("""
            SELECT * FROM audit WHERE (@actor IS NULL OR actor = @actor) AND (@target IS NULL OR target = @target)
            ORDER BY id DESC LIMIT @limit
            """, new { actor, target, limit }).ToList();
    }
}
