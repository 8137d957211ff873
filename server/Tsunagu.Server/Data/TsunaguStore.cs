using System.Collections.Concurrent;
using System.Data.Common;
using System.Globalization;
using Dapper;
using Tsunagu.Protocol;
using Tsunagu.Server.Units.Lifecycle;

namespace Tsunagu.Server.Data;

/// <summary>A write the store refused because it contradicts what is there (duplicate MAC, unknown pattern...).</summary>
public sealed class StoreConflictException(string message) : Exception(message);

/// <summary>An audit entry written in the same transaction as the change it records.</summary>
public sealed record AuditEntry(string Actor, string Action, string? Target, string? Detail);

/// <summary>
/// What one update report changes about a unit: the report itself, the inventory it now runs (with its pattern and
/// state), its last error (cleared on success), the audit entry and the history entry. <see cref="InstallId"/>: the
/// unit's install attempt (null from units older than it).
/// </summary>
public sealed record UpdateOutcome(string Mac, string UpdateId, bool Success, string? Error, Inventory Inventory, string? Pattern, string State,
    string? LastError, string EventDetail, string? InstallId = null);

/// <summary>
/// What an update report came to: <see cref="IsNew"/> when it was recorded now (with its history and audit entries),
/// false when the same install's report was recorded before; then <see cref="UpdateId"/>, <see cref="Success"/> and
/// <see cref="Pattern"/> are what was recorded then, and nothing was written.
/// </summary>
public sealed record UpdateRecord(bool IsNew, string UpdateId, bool Success, string? Pattern);

/// <summary>Filters of the fleet query; every one is optional.</summary>
public sealed record UnitQuery(string? Pattern = null, string? State = null, string? Application = null, string? Version = null,
    DateTimeOffset? SeenBefore = null, DateTimeOffset? SeenAfter = null, bool? Online = null, string? Subscriber = null, string? Serial = null, string? Domain = null);

/// <summary>
/// The server's tables (patent figs. 6 and 8) on SQLite or PostgreSQL. Every method opens its own pooled
/// connection, so the store keeps no state between requests and replicas can share one database. The schema is
/// brought up to date before a store is made (<see cref="Database.Migrate"/>, a start-up step of <see cref="ServerHost"/>).
/// The queries are one class per aggregate (<see cref="Units"/>, <see cref="Catalogue"/>, <see cref="Rollouts"/>...), each
/// made with this store and opening its connections, beginning its transactions and writing its audit entries through it.
/// </summary>
public sealed class TsunaguStore
{
    private readonly Database _db;
    private readonly TimeProvider _time;

    /// <summary>When this replica last wrote each unit's last_seen (a bare <see cref="UnitStore.TouchAsync"/> within <see cref="LastSeenResolution"/> writes nothing).</summary>
    internal ConcurrentDictionary<string, DateTimeOffset> LastSeenWritten { get; } = new(StringComparer.Ordinal);

    /// <summary>Each unit's newest history entry written by this replica (kind and detail), to skip identical periodic checks.</summary>
    internal ConcurrentDictionary<string, (string Kind, string? Detail)> LastEvent { get; } = new(StringComparer.Ordinal);

    /// <summary>How stale last_seen may be: a unit seen again within this is not written again (SQLite has one writer; every request used to write).</summary>
    public static readonly TimeSpan LastSeenResolution = TimeSpan.FromMinutes(1);

    static TsunaguStore()
    {
        DefaultTypeMap.MatchNamesWithUnderscores = true;
    }

    /// <param name="secrets">Seals the table's secrets at rest; null: a key of this process only (tests, tools).</param>
    public TsunaguStore(Database database, TimeProvider time, SecretBox? secrets = null)
    {
        _db = database;
        _time = time;
        Secrets = secrets ?? SecretBox.Ephemeral();
        Units = new UnitStore(this);
        Lifecycle = new UnitLifecycleStore(this);
        History = new HistoryStore(this);
        ServiceConfigs = new ServiceConfigStore(this);
        ConfigRetries = new ConfigRetryStore(this);
        SteadyChecks = new SteadyCheckStore(this);
        Media = new MediaStore(this);
        PushChecks = new PushCheckStore(this);
        Catalogue = new CatalogueStore(this);
        CatalogueEdits = new CatalogueEditStore(this);
        Settings = new SettingStore(this);
        Accounts = new AccountStore(this);
        Fleet = new FleetStore(this);
        Rollouts = new RolloutStore(this);
        Windows = new UpdateWindowStore(this);
        Pages = new PageStore(this);
        Cluster = new ClusterStore(this);
    }

    /// <summary>What seals the device management table's secrets (ISP passwords) at rest.</summary>
    public SecretBox Secrets { get; }

    public Database Database => _db;

    /// <summary>The clock of <see cref="Now"/>.</summary>
    internal TimeProvider Time => _time;

    /// <summary>Units: registration, what they report, presence, target pattern, session challenges.</summary>
    public UnitStore Units { get; }

    /// <summary>The device management table's lifecycle: edits with revisions, decommissioning, deletion, replacement, transfer.</summary>
    public UnitLifecycleStore Lifecycle { get; }

    /// <summary>Update reports, history entries and the audit entries that name a unit.</summary>
    public HistoryStore History { get; }

    /// <summary>Named service configurations and each unit's revisions with their acknowledgements.</summary>
    public ServiceConfigStore ServiceConfigs { get; }

    /// <summary>A unit's failed configuration revisions sent again: which revision may be retried, the retry, and its cancellation.</summary>
    public ConfigRetryStore ConfigRetries { get; }

    /// <summary>Steady checks: what one reads in one round trip, and what one that found nothing to do writes.</summary>
    public SteadyCheckStore SteadyChecks { get; }

    /// <summary>Registered install media.</summary>
    public MediaStore Media { get; }

    /// <summary>Forced checks: the pushes that carry them, their delivery and their retries.</summary>
    public PushCheckStore PushChecks { get; }

    /// <summary>The software catalogue (software, patches, patterns, update programs) and its snapshot.</summary>
    public CatalogueStore Catalogue { get; }

    /// <summary>Catalogue edits and deletions under the catalogue's lock.</summary>
    public CatalogueEditStore CatalogueEdits { get; }

    /// <summary>Settings.</summary>
    public SettingStore Settings { get; }

    /// <summary>Operators, subscribers and contracts.</summary>
    public AccountStore Accounts { get; }

    /// <summary>Tags on units and groups of units.</summary>
    public FleetStore Fleet { get; }

    /// <summary>Rollouts, their members, and what the rollout engine reads about them.</summary>
    public RolloutStore Rollouts { get; }

    /// <summary>Update windows: a unit's own maintenance window, and the rollout members still waiting for theirs.</summary>
    public UpdateWindowStore Windows { get; }

    /// <summary>Paged reads for the console: the unit list and the audit log.</summary>
    public PageStore Pages { get; }

    /// <summary>What replicas share on PostgreSQL: authentication attempts and leases.</summary>
    public ClusterStore Cluster { get; }

    internal Task<DbConnection> OpenAsync(CancellationToken ct) => _db.OpenAsync(ct);

    /// <summary>
    /// Raised with the name of the store method about to begin a transaction, just before it begins it: on SQLite that is
    /// where a writer waits while another holds the write lock. A test seam: a test holding the lock knows from it that the
    /// competing request has reached the lock (and done every read it makes before it), rather than hoping a timer says so.
    /// </summary>
    internal event Action<string>? TransactionBeginning;

    /// <summary>Begins the transaction of the store method <paramref name="caller"/>, after telling <see cref="TransactionBeginning"/>.</summary>
    internal ValueTask<DbTransaction> BeginAsync(DbConnection c, CancellationToken ct, [System.Runtime.CompilerServices.CallerMemberName] string caller = "")
    {
        TransactionBeginning?.Invoke(caller);
        return c.BeginTransactionAsync(ct);
    }

    /// <summary>For what a unit reports again on its next contact: commits that do not wait for the disk (<see cref="Database.Open(bool)"/>).</summary>
    internal Task<DbConnection> OpenUnitReportAsync(CancellationToken ct) => _db.OpenAsync(durable: false, ct);

    public string Now() => Timestamp(_time.GetUtcNow());

    public static string Timestamp(DateTimeOffset at) => at.ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'", CultureInfo.InvariantCulture);

    /// <summary>
    /// Runs an insert, with <paramref name="audit"/> (when given) in the same transaction; a row that already exists
    /// becomes a <see cref="StoreConflictException"/> with <paramref name="conflict"/>.
    /// </summary>
    internal async Task InsertAsync(string sql, object args, string conflict, AuditEntry? audit = null, CancellationToken ct = default)
    {
        try
        {
            await WriteAsync(async (c, tx) => await c.ExecuteAsync(new CommandDefinition(sql, args, tx, cancellationToken: ct)), audit, ct);
        }
        catch (DbException e) when (IsUniqueViolation(e))
        {
            throw new StoreConflictException(conflict);
        }
    }

    internal static bool IsUniqueViolation(DbException e) =>
        // SQLite: SQLITE_CONSTRAINT_PRIMARYKEY or _UNIQUE only (a trigger's abort is a constraint error too, but no conflict)
        e.SqlState == "23505" || (e is Microsoft.Data.Sqlite.SqliteException { SqliteExtendedErrorCode: 1555 or 2067 });

    /// <summary>Runs <paramref name="write"/> and writes <paramref name="audit"/> (when given) in one transaction: both or neither.</summary>
    internal async Task WriteAsync(Func<DbConnection, DbTransaction, Task> write, AuditEntry? audit, CancellationToken ct)
    {
        await using var c = await OpenAsync(ct);
        await using var tx = await BeginAsync(c, ct);
        await write(c, tx);
        await WriteAuditAsync(c, tx, audit, ct);
        await tx.CommitAsync(ct);
    }

    /// <summary>Writes <paramref name="audit"/> (when given) inside the caller's transaction.</summary>
    internal async Task WriteAuditAsync(DbConnection c, DbTransaction tx, AuditEntry? audit, CancellationToken ct)
    {
        if (audit is not null)
        {
            await InsertAuditAsync(c, tx, Now(), audit.Actor, audit.Action, audit.Target, audit.Detail, ct);
        }
    }

    // ---- audit ---------------------------------------------------------------------------------------------

    /// <summary>
    /// Writes one audit entry and the units it names (<see cref="AuditUnits.Named"/>, what the unit filter of
    /// <see cref="PageStore.QueryAuditPageAsync"/> reads), inside the caller's transaction. Every audit entry is written through here.
    /// </summary>
    internal static async Task InsertAuditAsync(DbConnection c, DbTransaction tx, string now, string actor, string action, string? target, string? detail, CancellationToken ct)
    {
        var id = await c.ExecuteScalarAsync<long>(new CommandDefinition("INSERT INTO audit (at, actor, action, target, detail) VALUES (@now, @actor, @action, @target, @detail) RETURNING id",
            new { now, actor, action, target, detail }, tx, cancellationToken: ct));
        var units = AuditUnits.Named(actor, target);
        if (units.Count > 0)
        {
            await c.ExecuteAsync(new CommandDefinition("INSERT INTO audit_units (mac, audit_id) VALUES (@mac, @id)", units.Select(mac => new { mac, id }), tx, cancellationToken: ct));
        }
    }

    public async Task AuditAsync(string actor, string action, string? target, string? detail, CancellationToken ct = default)
    {
        await using var c = await OpenAsync(ct);
        await using var tx = await BeginAsync(c, ct);
        await InsertAuditAsync(c, tx, Now(), actor, action, target, detail, ct);
        await tx.CommitAsync(ct);
    }

    public async Task AuditAsync(AuditEntry entry, CancellationToken ct = default) => await AuditAsync(entry.Actor, entry.Action, entry.Target, entry.Detail, ct);

    public async Task<IReadOnlyList<AuditRow>> ListAuditAsync(int limit = 200, string? actor = null, string? target = null, CancellationToken ct = default)
    {
        await using var c = await OpenAsync(ct);
        return (await c.QueryAsync<AuditRow>(new CommandDefinition("""
            SELECT * FROM audit WHERE (@actor IS NULL OR actor = @actor) AND (@target IS NULL OR target = @target)
            ORDER BY id DESC LIMIT @limit
            """, new { actor, target, limit }, cancellationToken: ct))).ToList();
    }
}
