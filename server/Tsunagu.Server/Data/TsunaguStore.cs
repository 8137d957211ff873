using System.Globalization;
using System.Text.Json;
using Dapper;
using Microsoft.Data.Sqlite;
using Tsunagu.Protocol;

namespace Tsunagu.Server.Data;

/// <summary>A write the store refused because it contradicts what is there (duplicate MAC, unknown pattern...).</summary>
public sealed class StoreConflictException(string message) : Exception(message);

/// <summary>
/// The server's tables (patent figs. 6 and 8) on SQLite. Every method opens its own connection, so the store
/// holds no state between requests; WAL mode lets readers run beside the writer.
/// </summary>
public sealed class TsunaguStore
{
    private readonly string _connectionString;
    private readonly TimeProvider _time;

    static TsunaguStore()
    {
        DefaultTypeMap.MatchNamesWithUnderscores = true;
    }

    public TsunaguStore(string databasePath, TimeProvider time)
    {
        _time = time;
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(databasePath))!);
        _connectionString = new SqliteConnectionStringBuilder { DataSource = databasePath, Pooling = true, DefaultTimeout = 30 }.ToString();
        using var c = Open();
        c.Execute("PRAGMA journal_mode=WAL;");
        using var schema = typeof(TsunaguStore).Assembly.GetManifestResourceStream("Tsunagu.Server.Data.Schema.sql")
                           ?? throw new InvalidOperationException("the schema resource Tsunagu.Server.Data.Schema.sql is missing from the server assembly");
        c.Execute(new StreamReader(schema).ReadToEnd());
    }

    private SqliteConnection Open()
    {
        var c = new SqliteConnection(_connectionString);
        c.Open();
        c.Execute("PRAGMA foreign_keys=ON; PRAGMA busy_timeout=30000;");
        return c;
    }

    private string Now() => _time.GetUtcNow().ToString("O", CultureInfo.InvariantCulture);

    private const string UnitColumns =
        "SELECT units.*, (SELECT MAX(revision) FROM unit_configs c WHERE c.mac = units.mac) AS config_revision FROM units";

    // ---- units ------------------------------------------------------------------------------------------

    public void AddUnit(UnitRow unit)
    {
        using var c = Open();
        unit.CreatedAt = Now();
        try
        {
            c.Execute("""
                INSERT INTO units (mac, serial, hardware_version, isp_method, isp_username, isp_password, ip_address, domain, vpn,
                                   global_ip, subscriber, state, pattern, target_pattern, created_at)
                VALUES (@Mac, @Serial, @HardwareVersion, @IspMethod, @IspUsername, @IspPassword, @IpAddress, @Domain, @Vpn,
                        @GlobalIp, @Subscriber, @State, @Pattern, @TargetPattern, @CreatedAt)
                """, unit);
        }
        catch (SqliteException e) when (e.SqliteErrorCode == 19)
        {
            throw new StoreConflictException($"unit {unit.Mac} is already registered");
        }
    }

    public UnitRow? GetUnit(string mac)
    {
        using var c = Open();
        return c.QuerySingleOrDefault<UnitRow>($"{UnitColumns} WHERE mac = @mac", new { mac });
    }

    public IReadOnlyList<UnitRow> ListUnits(string? pattern = null, string? state = null)
    {
        using var c = Open();
        return c.Query<UnitRow>($"""
            {UnitColumns}
            WHERE (@pattern IS NULL OR pattern = @pattern) AND (@state IS NULL OR state = @state)
            ORDER BY mac
            """, new { pattern, state }).ToList();
    }

    /// <summary>Marks the unit as seen now, optionally moving it to <paramref name="state"/>.</summary>
    public void Touch(string mac, string? state = null, string? error = null, bool clearError = false)
    {
        using var c = Open();
        c.Execute("""
            UPDATE units SET last_seen = @now, state = COALESCE(@state, state),
                   last_error = CASE WHEN @clear THEN NULL ELSE COALESCE(@error, last_error) END
            WHERE mac = @mac
            """, new { mac, now = Now(), state, error, clear = clearError });
    }

    public void RecordInventory(string mac, Inventory inventory, string? pattern, string? state, string? wanAddress = null)
    {
        using var c = Open();
        c.Execute("""
            UPDATE units SET inventory = @inventory, pattern = COALESCE(@pattern, pattern), state = COALESCE(@state, state),
                   wan_address = COALESCE(@wanAddress, wan_address), last_seen = @now
            WHERE mac = @mac
            """, new { mac, inventory = JsonSerializer.Serialize(inventory, ProtocolJson.Default.Inventory), pattern, state, wanAddress, now = Now() });
    }

    // ---- challenges -------------------------------------------------------------------------------------

    public void AddChallenge(ChallengeRow challenge)
    {
        using var c = Open();
        c.Execute("DELETE FROM challenges WHERE expires_at < @now", new { now = Now() });
        c.Execute("INSERT INTO challenges (id, mac, purpose, nonce, expires_at) VALUES (@Id, @Mac, @Purpose, @Nonce, @ExpiresAt)", challenge);
    }

    /// <summary>Removes and returns the challenge: each nonce answers at most one proof.</summary>
    public ChallengeRow? TakeChallenge(string id)
    {
        using var c = Open();
        return c.QuerySingleOrDefault<ChallengeRow>("DELETE FROM challenges WHERE id = @id RETURNING *", new { id });
    }

    // ---- patterns and update programs ------------------------------------------------------------------

    public void UpsertPattern(PatternRow pattern)
    {
        using var c = Open();
        c.Execute("""
            INSERT INTO patterns (id, name, hardware_version, os_version, applications, status)
            VALUES (@Id, @Name, @HardwareVersion, @OsVersion, @Applications, @Status)
            ON CONFLICT(id) DO UPDATE SET name = excluded.name, hardware_version = excluded.hardware_version,
                os_version = excluded.os_version, applications = excluded.applications, status = excluded.status
            """, pattern);
    }

    public IReadOnlyList<PatternRow> ListPatterns(string? status = null)
    {
        using var c = Open();
        return c.Query<PatternRow>("SELECT * FROM patterns WHERE @status IS NULL OR status = @status ORDER BY id", new { status }).ToList();
    }

    /// <summary>The verified pattern whose hardware, OS and application versions are exactly <paramref name="inventory"/>.</summary>
    public PatternRow? FindPattern(Inventory inventory)
    {
        foreach (var p in ListPatterns(PatternStatus.Verified))
        {
            if (p.HardwareVersion != inventory.HardwareVersion || p.OsVersion != inventory.OsVersion)
            {
                continue;
            }
            var apps = JsonSerializer.Deserialize(p.Applications, ProtocolJson.Default.DictionaryStringString) ?? [];
            if (apps.Count == inventory.Applications.Count &&
                apps.All(a => inventory.Applications.TryGetValue(a.Key, out var v) && v == a.Value))
            {
                return p;
            }
        }
        return null;
    }

    public void UpsertUpdateProgram(UpdateProgramRow program)
    {
        using var c = Open();
        c.Execute("""
            INSERT INTO update_programs (id, from_pattern, to_pattern, importance, priority, artifact_sha256, artifact_size)
            VALUES (@Id, @FromPattern, @ToPattern, @Importance, @Priority, @ArtifactSha256, @ArtifactSize)
            ON CONFLICT(id) DO UPDATE SET from_pattern = excluded.from_pattern, to_pattern = excluded.to_pattern,
                importance = excluded.importance, priority = excluded.priority,
                artifact_sha256 = excluded.artifact_sha256, artifact_size = excluded.artifact_size
            """, program);
    }

    /// <summary>The update program for units on <paramref name="fromPattern"/> (patent fig. 8 (e)): highest priority first, verified target only.</summary>
    public UpdateProgramRow? FindUpdateProgram(string fromPattern)
    {
        using var c = Open();
        return c.QueryFirstOrDefault<UpdateProgramRow>("""
            SELECT u.* FROM update_programs u JOIN patterns p ON p.id = u.to_pattern
            WHERE u.from_pattern = @fromPattern AND p.status = 'verified'
            ORDER BY u.priority DESC, u.id
            """, new { fromPattern });
    }

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
            INSERT OR IGNORE INTO update_reports (mac, update_id, success, error, pattern, at)
            VALUES (@mac, @updateId, @success, @error, @pattern, @now)
            """, new { mac, updateId, success = success ? 1 : 0, error, pattern, now = Now() }) > 0;
    }

    // ---- service configuration -------------------------------------------------------------------------

    public void UpsertServiceConfig(string name, ServiceConfiguration document)
    {
        using var c = Open();
        c.Execute("INSERT INTO service_configs (name, document) VALUES (@name, @doc) ON CONFLICT(name) DO UPDATE SET document = excluded.document",
            new { name, doc = JsonSerializer.Serialize(document, ProtocolJson.Default.ServiceConfiguration) });
    }

    public ServiceConfiguration? GetServiceConfig(string name)
    {
        using var c = Open();
        var doc = c.QuerySingleOrDefault<string>("SELECT document FROM service_configs WHERE name = @name", new { name });
        return doc is null ? null : JsonSerializer.Deserialize(doc, ProtocolJson.Default.ServiceConfiguration);
    }

    /// <summary>Adds the next revision of a unit's service configuration, as provisional.</summary>
    public long AddUnitConfig(string mac, ServiceConfiguration document)
    {
        using var c = Open();
        using var tx = c.BeginTransaction();
        var next = c.ExecuteScalar<long>("SELECT COALESCE(MAX(revision), 0) + 1 FROM unit_configs WHERE mac = @mac", new { mac }, tx);
        c.Execute("""
            INSERT INTO unit_configs (mac, revision, document, status, created_at) VALUES (@mac, @next, @doc, 'provisional', @now)
            """, new { mac, next, doc = JsonSerializer.Serialize(document, ProtocolJson.Default.ServiceConfiguration), now = Now() }, tx);
        tx.Commit();
        return next;
    }

    public UnitConfigRow? LatestUnitConfig(string mac)
    {
        using var c = Open();
        return c.QueryFirstOrDefault<UnitConfigRow>("SELECT * FROM unit_configs WHERE mac = @mac ORDER BY revision DESC LIMIT 1", new { mac });
    }

    /// <summary>Records the unit's acknowledgement of a revision; returns false when the revision does not exist.</summary>
    public bool AckUnitConfig(string mac, long revision, bool success, string? error)
    {
        using var c = Open();
        using var tx = c.BeginTransaction();
        var changed = c.Execute("UPDATE unit_configs SET status = @status, error = @error WHERE mac = @mac AND revision = @revision",
            new { mac, revision, status = success ? ConfigStatus.Applied : ConfigStatus.Failed, error }, tx);
        if (changed > 0 && success)
        {
            c.Execute("UPDATE units SET applied_config_revision = @revision WHERE mac = @mac", new { mac, revision }, tx);
        }
        tx.Commit();
        return changed > 0;
    }

    // ---- operators and audit ---------------------------------------------------------------------------

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

    public void Audit(string actor, string action, string? target, string? detail)
    {
        using var c = Open();
        c.Execute("INSERT INTO audit (at, actor, action, target, detail) VALUES (@now, @actor, @action, @target, @detail)",
            new { now = Now(), actor, action, target, detail });
    }
}
