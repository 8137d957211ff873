using System.Data.Common;
using Dapper;

namespace Tsunagu.Server.Data;

/// <summary>
/// One catalogue transaction (<see cref="TsunaguStore.InCatalogueTransaction{T}"/>): the rules' reads and the writes they allow
/// see the same catalogue, because catalogue changes are serialised (SQLite: one writer; PostgreSQL: a transaction-scoped
/// advisory lock every catalogue change takes first). A rule that refuses throws, and the transaction writes nothing.
/// </summary>
public sealed class CatalogueTransaction(DbConnection c, DbTransaction tx, Action<AuditEntry> audit)
{
    /// <summary>Whether a change was written that the catalogue snapshot holds (patterns): the stamp moves on commit.</summary>
    internal bool SnapshotChanged { get; private set; }

    public SoftwareRow? GetSoftware(string appId, string version) =>
        c.QuerySingleOrDefault<SoftwareRow>("SELECT * FROM software WHERE app_id = @appId AND version = @version", new { appId, version }, tx);

    public long SoftwareVersions(string appId) => c.ExecuteScalar<long>("SELECT COUNT(*) FROM software WHERE app_id = @appId", new { appId }, tx);

    public PatchRow? FirstPatchFor(string appId) =>
        c.QueryFirstOrDefault<PatchRow>("SELECT * FROM patches WHERE target_app = @appId ORDER BY id", new { appId }, tx);

    public PatchRow? GetPatch(string id) => c.QuerySingleOrDefault<PatchRow>("SELECT * FROM patches WHERE id = @id", new { id }, tx);

    public PatternRow? GetPattern(string id) => c.QuerySingleOrDefault<PatternRow>("SELECT * FROM patterns WHERE id = @id", new { id }, tx);

    public IReadOnlyList<PatternRow> ListPatterns() => c.Query<PatternRow>("SELECT * FROM patterns ORDER BY id", transaction: tx).ToList();

    /// <summary>What refers to pattern <paramref name="id"/>: update programs, units (as pattern or target) and rollouts, counted.</summary>
    public (long Programs, long Units, long Rollouts) PatternReferences(string id) =>
        (c.ExecuteScalar<long>("SELECT COUNT(*) FROM update_programs WHERE from_pattern = @id OR to_pattern = @id", new { id }, tx),
            c.ExecuteScalar<long>("SELECT COUNT(*) FROM units WHERE pattern = @id OR target_pattern = @id", new { id }, tx),
            c.ExecuteScalar<long>("SELECT COUNT(*) FROM rollouts WHERE from_pattern = @id OR to_pattern = @id", new { id }, tx));

    /// <summary>Replaces the name and requirements of catalogued software; false when it is not catalogued.</summary>
    public bool UpdateSoftware(SoftwareRow software, AuditEntry entry) => Changed(
        "UPDATE software SET name = @Name, required_hardware = @RequiredHardware, required_os = @RequiredOs WHERE app_id = @AppId AND version = @Version",
        software, entry);

    public bool DeleteSoftware(string appId, string version, AuditEntry entry) =>
        Changed("DELETE FROM software WHERE app_id = @appId AND version = @version", new { appId, version }, entry);

    public bool UpdatePatch(PatchRow patch, AuditEntry entry) => Changed("""
        UPDATE patches SET name = @Name, version = @Version, target_app = @TargetApp, importance = @Importance,
               os_version = @OsVersion, hardware_version = @HardwareVersion
        WHERE id = @Id
        """, patch, entry);

    public bool DeletePatch(string id, AuditEntry entry) => Changed("DELETE FROM patches WHERE id = @id", new { id }, entry);

    /// <summary>Removes a draft pattern that nothing refers to (checked again in the statement); false when it is not such a pattern.</summary>
    public bool DeleteDraftPattern(string id, AuditEntry entry)
    {
        var deleted = Changed("""
            DELETE FROM patterns WHERE id = @id AND status = 'draft'
              AND NOT EXISTS (SELECT 1 FROM update_programs WHERE from_pattern = @id OR to_pattern = @id)
              AND NOT EXISTS (SELECT 1 FROM units WHERE pattern = @id OR target_pattern = @id)
              AND NOT EXISTS (SELECT 1 FROM rollouts WHERE from_pattern = @id OR to_pattern = @id)
            """, new { id }, entry);
        SnapshotChanged |= deleted;
        return deleted;
    }

    /// <summary>Adds a pattern (as draft or as given) with its audit entry; a pattern with its id already there is a <see cref="StoreConflictException"/>.</summary>
    public void AddPattern(PatternRow pattern, string now, AuditEntry entry)
    {
        Insert("""
            INSERT INTO patterns (id, name, hardware_version, os_version, applications, status, created_at)
            VALUES (@Id, @Name, @HardwareVersion, @OsVersion, @Applications, @Status, @now)
            """, new { pattern.Id, pattern.Name, pattern.HardwareVersion, pattern.OsVersion, pattern.Applications, pattern.Status, now }, $"pattern {pattern.Id} already exists");
        SnapshotChanged = true;
        audit(entry);
    }

    /// <summary>Adds a patch with its audit entry; a patch with its id already there is a <see cref="StoreConflictException"/>.</summary>
    public void AddPatch(PatchRow patch, string now, AuditEntry entry)
    {
        Insert("""
            INSERT INTO patches (id, name, version, target_app, importance, os_version, hardware_version, created_at)
            VALUES (@Id, @Name, @Version, @TargetApp, @Importance, @OsVersion, @HardwareVersion, @now)
            """, new { patch.Id, patch.Name, patch.Version, patch.TargetApp, patch.Importance, patch.OsVersion, patch.HardwareVersion, now }, $"patch {patch.Id} already exists");
        audit(entry);
    }

    /// <summary>Moves a pattern from <paramref name="from"/> to <paramref name="to"/> with its audit entry; false when it was not in <paramref name="from"/>.</summary>
    public bool SetPatternStatus(string id, string from, string to, string now, AuditEntry entry)
    {
        var column = to == PatternStatus.Verified ? "verified_at" : "retired_at";
        var moved = Changed($"UPDATE patterns SET status = @to, {column} = @now WHERE id = @id AND status = @from", new { id, from, to, now }, entry);
        SnapshotChanged |= moved;
        return moved;
    }

    private void Insert(string sql, object args, string conflict)
    {
        try
        {
            c.Execute(sql, args, tx);
        }
        catch (DbException e) when (TsunaguStore.IsUniqueViolation(e))
        {
            throw new StoreConflictException(conflict);
        }
    }

    private bool Changed(string sql, object args, AuditEntry entry)
    {
        if (c.Execute(sql, args, tx) == 0) { return false; }
        audit(entry);
        return true;
    }
}

// Catalogue edits and deletions (the rules are CatalogueService's): the rules' reads, each write and its audit entry in one transaction.
public sealed partial class TsunaguStore
{
    /// <summary>Any number the server's other advisory locks do not use: the PostgreSQL lock that serialises catalogue changes.</summary>
    public const long CatalogueLockKey = 0x7473_6e67_6361_7431; // "tsngcat1"

    /// <summary>
    /// Runs <paramref name="work"/> (the rules' reads and the writes they allow) in one transaction that no other catalogue
    /// change interleaves with; commits when it returns (moving the catalogue stamp when a pattern changed), writes
    /// nothing when it throws.
    /// </summary>
    public T InCatalogueTransaction<T>(Func<CatalogueTransaction, T> work)
    {
        using var c = Open();
        using var tx = Begin(c);
        LockCatalogue(c, tx);
        var catalogue = new CatalogueTransaction(c, tx, entry => WriteAudit(c, tx, entry));
        // a refusal (a rule's exception) leaves the transaction uncommitted: disposing it rolls everything back
        var result = work(catalogue);
        if (catalogue.SnapshotChanged)
        {
            c.Execute(UpsertSettingSql, new { key = CatalogueStampKey, value = Guid.NewGuid().ToString("N") }, tx);
        }
        tx.Commit();
        return result;
    }

    /// <summary>
    /// Serialises catalogue changes: on PostgreSQL a lock held until the transaction ends (its reads after it see every
    /// change committed before); SQLite transactions take the single writer's lock when they begin (BEGIN IMMEDIATE).
    /// </summary>
    private void LockCatalogue(DbConnection c, DbTransaction tx)
    {
        if (_db.Kind == DatabaseKind.Postgres)
        {
            c.Execute("SELECT pg_advisory_xact_lock(@CatalogueLockKey)", new { CatalogueLockKey }, tx);
        }
    }

    public PatchRow? GetPatch(string id)
    {
        using var c = Open();
        return c.QuerySingleOrDefault<PatchRow>("SELECT * FROM patches WHERE id = @id", new { id });
    }
}
