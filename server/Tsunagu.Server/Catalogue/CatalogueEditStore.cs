using System.Data.Common;
using Dapper;

namespace Tsunagu.Server.Data;

/// <summary>How many entries of one kind refer to a pattern, and the first of them by name (null: none).</summary>
public sealed record PatternReferrers(int Count, string? First);

/// <summary>
/// One catalogue transaction (<see cref="CatalogueEditStore.InCatalogueTransactionAsync{T}"/>): the rules' reads and the writes they allow
/// see the same catalogue, because catalogue changes are serialised (SQLite: one writer; PostgreSQL: a transaction-scoped
/// advisory lock every catalogue change takes first). A rule that refuses throws, and the transaction writes nothing.
/// </summary>
public sealed class CatalogueTransaction(DbConnection c, DbTransaction tx, Func<AuditEntry, Task> audit)
{
    /// <summary>Whether a change was written that the catalogue snapshot holds (patterns): the stamp moves on commit.</summary>
    internal bool SnapshotChanged { get; private set; }

    public async Task<SoftwareRow?> GetSoftwareAsync(string appId, string version, CancellationToken ct = default) =>
        await c.QuerySingleOrDefaultAsync<SoftwareRow>(new CommandDefinition("SELECT * FROM software WHERE app_id = @appId AND version = @version", new { appId, version }, tx, cancellationToken: ct));

    public async Task<long> SoftwareVersionsAsync(string appId, CancellationToken ct = default) => await c.ExecuteScalarAsync<long>(new CommandDefinition("SELECT COUNT(*) FROM software WHERE app_id = @appId", new { appId }, tx, cancellationToken: ct));

    public async Task<PatchRow?> FirstPatchForAsync(string appId, CancellationToken ct = default) =>
        await c.QueryFirstOrDefaultAsync<PatchRow>(new CommandDefinition("SELECT * FROM patches WHERE target_app = @appId ORDER BY id", new { appId }, tx, cancellationToken: ct));

    public async Task<PatchRow?> GetPatchAsync(string id, CancellationToken ct = default) => await c.QuerySingleOrDefaultAsync<PatchRow>(new CommandDefinition("SELECT * FROM patches WHERE id = @id", new { id }, tx, cancellationToken: ct));

    public async Task<PatternRow?> GetPatternAsync(string id, CancellationToken ct = default) => await c.QuerySingleOrDefaultAsync<PatternRow>(new CommandDefinition("SELECT * FROM patterns WHERE id = @id", new { id }, tx, cancellationToken: ct));

    public async Task<IReadOnlyList<PatternRow>> ListPatternsAsync(CancellationToken ct = default) => (await c.QueryAsync<PatternRow>(new CommandDefinition("SELECT * FROM patterns ORDER BY id", transaction: tx, cancellationToken: ct))).ToList();

    /// <summary>
    /// What refers to pattern <paramref name="id"/>, each kind counted with its first by name: update programs (from or
    /// to), units (as pattern or target) and rollouts.
    /// </summary>
    public async Task<(PatternReferrers Programs, PatternReferrers Units, PatternReferrers Rollouts)> PatternReferencesAsync(string id, CancellationToken ct = default) =>
        (await ReferrersAsync("SELECT COUNT(*), MIN(id) FROM update_programs WHERE from_pattern = @id OR to_pattern = @id", id, ct),
            await ReferrersAsync("SELECT COUNT(*), MIN(mac) FROM units WHERE pattern = @id OR target_pattern = @id", id, ct),
            await ReferrersAsync("SELECT COUNT(*), MIN(name) FROM rollouts WHERE from_pattern = @id OR to_pattern = @id", id, ct));

    private async Task<PatternReferrers> ReferrersAsync(string sql, string id, CancellationToken ct)
    {
        var (count, first) = await c.QuerySingleAsync<(long, string?)>(new CommandDefinition(sql, new { id }, tx, cancellationToken: ct));
        return new PatternReferrers(checked((int)count), first);
    }

    /// <summary>Replaces the name and requirements of catalogued software; false when it is not catalogued.</summary>
    public async Task<bool> UpdateSoftwareAsync(SoftwareRow software, AuditEntry entry, CancellationToken ct = default) => await ChangedAsync(
        "UPDATE software SET name = @Name, required_hardware = @RequiredHardware, required_os = @RequiredOs WHERE app_id = @AppId AND version = @Version",
        software, entry, ct);

    public async Task<bool> DeleteSoftwareAsync(string appId, string version, AuditEntry entry, CancellationToken ct = default) =>
        await ChangedAsync("DELETE FROM software WHERE app_id = @appId AND version = @version", new { appId, version }, entry, ct);

    public async Task<bool> UpdatePatchAsync(PatchRow patch, AuditEntry entry, CancellationToken ct = default) => await ChangedAsync("""
        UPDATE patches SET name = @Name, version = @Version, target_app = @TargetApp, importance = @Importance,
               os_version = @OsVersion, hardware_version = @HardwareVersion
        WHERE id = @Id
        """, patch, entry, ct);

    public async Task<bool> DeletePatchAsync(string id, AuditEntry entry, CancellationToken ct = default) => await ChangedAsync("DELETE FROM patches WHERE id = @id", new { id }, entry, ct);

    /// <summary>Removes a draft pattern that nothing refers to (checked again in the statement); false when it is not such a pattern.</summary>
    public async Task<bool> DeleteDraftPatternAsync(string id, AuditEntry entry, CancellationToken ct = default)
    {
        var deleted = await ChangedAsync("""
            DELETE FROM patterns WHERE id = @id AND status = 'draft'
              AND NOT EXISTS (SELECT 1 FROM update_programs WHERE from_pattern = @id OR to_pattern = @id)
              AND NOT EXISTS (SELECT 1 FROM units WHERE pattern = @id OR target_pattern = @id)
              AND NOT EXISTS (SELECT 1 FROM rollouts WHERE from_pattern = @id OR to_pattern = @id)
            """, new { id }, entry, ct);
        SnapshotChanged |= deleted;
        return deleted;
    }

    public async Task<UpdateProgramRow?> GetUpdateProgramAsync(string id, CancellationToken ct = default) =>
        await c.QuerySingleOrDefaultAsync<UpdateProgramRow>(new CommandDefinition("SELECT * FROM update_programs WHERE id = @id", new { id }, tx, cancellationToken: ct));

    /// <summary>The rollouts still deciding (running or paused) that move units with update program <paramref name="id"/>, by name.</summary>
    public async Task<IReadOnlyList<string>> ActiveRolloutsOfProgramAsync(string id, CancellationToken ct = default) =>
        (await c.QueryAsync<string>(new CommandDefinition("SELECT name FROM rollouts WHERE update_id = @id AND state IN ('running', 'paused') ORDER BY name",
            new { id }, tx, cancellationToken: ct))).ToList();

    /// <summary>
    /// The units that need update program <paramref name="program"/> as the server records them, by MAC: units on its
    /// from-pattern that are being updated (state Updating: an offer of a program from that pattern is out, and the unit's
    /// report names it), and units on its from-pattern whose target is its to-pattern when no other program leads there.
    /// </summary>
    public async Task<IReadOnlyList<string>> UnitsNeedingProgramAsync(UpdateProgramRow program, CancellationToken ct = default) =>
        (await c.QueryAsync<string>(new CommandDefinition("""
            SELECT mac FROM units
            WHERE pattern = @FromPattern AND decommissioned_at IS NULL
              AND (state = 'Updating'
                   OR (target_pattern = @ToPattern AND NOT EXISTS (
                        SELECT 1 FROM update_programs o WHERE o.id <> @Id AND o.from_pattern = @FromPattern AND o.to_pattern = @ToPattern)))
            ORDER BY mac
            """, new { program.Id, program.FromPattern, program.ToPattern }, tx, cancellationToken: ct))).ToList();

    /// <summary>
    /// The programs that are <paramref name="program"/>'s way back (to its from-pattern, from its to-pattern, when its
    /// from-pattern is the older one, as <see cref="CatalogueSnapshot"/> decides) and that no other program from its
    /// from-pattern to its to-pattern keeps one: without <paramref name="program"/> they would no longer be ways back but
    /// updates offered to every unit on its to-pattern.
    /// </summary>
    public async Task<IReadOnlyList<string>> WaysBackOfAsync(UpdateProgramRow program, CancellationToken ct = default) =>
        (await c.QueryAsync<string>(new CommandDefinition("""
            SELECT o.id FROM update_programs o
            JOIN patterns f ON f.id = @FromPattern
            JOIN patterns t ON t.id = @ToPattern
            WHERE o.from_pattern = @ToPattern AND o.to_pattern = @FromPattern AND f.created_at < t.created_at
              AND NOT EXISTS (SELECT 1 FROM update_programs s WHERE s.id <> @Id AND s.from_pattern = @FromPattern AND s.to_pattern = @ToPattern)
            ORDER BY o.id
            """, new { program.Id, program.FromPattern, program.ToPattern }, tx, cancellationToken: ct))).ToList();

    /// <summary>Removes update program <paramref name="id"/> with its audit entry (the catalogue snapshot holds programs: the stamp moves); false when there is none.</summary>
    public async Task<bool> DeleteUpdateProgramAsync(string id, AuditEntry entry, CancellationToken ct = default)
    {
        var deleted = await ChangedAsync("DELETE FROM update_programs WHERE id = @id", new { id }, entry, ct);
        SnapshotChanged |= deleted;
        return deleted;
    }

    public async Task<MediumRow?> GetMediumAsync(string digest, CancellationToken ct = default) =>
        await c.QuerySingleOrDefaultAsync<MediumRow>(new CommandDefinition("SELECT digest, name FROM media WHERE digest = @digest", new { digest }, tx, cancellationToken: ct));

    /// <summary>Removes a registered medium's digest with its audit entry; false when it is not registered.</summary>
    public async Task<bool> DeleteMediumAsync(string digest, AuditEntry entry, CancellationToken ct = default) =>
        await ChangedAsync("DELETE FROM media WHERE digest = @digest", new { digest }, entry, ct);

    /// <summary>Adds a pattern (as draft or as given) with its audit entry; a pattern with its id already there is a <see cref="StoreConflictException"/>.</summary>
    public async Task AddPatternAsync(PatternRow pattern, string now, AuditEntry entry, CancellationToken ct = default)
    {
        await InsertAsync("""
            INSERT INTO patterns (id, name, hardware_version, os_version, applications, status, created_at)
            VALUES (@Id, @Name, @HardwareVersion, @OsVersion, @Applications, @Status, @now)
            """, new { pattern.Id, pattern.Name, pattern.HardwareVersion, pattern.OsVersion, pattern.Applications, pattern.Status, now }, $"pattern {pattern.Id} already exists", ct);
        SnapshotChanged = true;
        await audit(entry);
    }

    /// <summary>Adds a patch with its audit entry; a patch with its id already there is a <see cref="StoreConflictException"/>.</summary>
    public async Task AddPatchAsync(PatchRow patch, string now, AuditEntry entry, CancellationToken ct = default)
    {
        await InsertAsync("""
            INSERT INTO patches (id, name, version, target_app, importance, os_version, hardware_version, created_at)
            VALUES (@Id, @Name, @Version, @TargetApp, @Importance, @OsVersion, @HardwareVersion, @now)
            """, new { patch.Id, patch.Name, patch.Version, patch.TargetApp, patch.Importance, patch.OsVersion, patch.HardwareVersion, now }, $"patch {patch.Id} already exists", ct);
        await audit(entry);
    }

    /// <summary>Moves a pattern from <paramref name="from"/> to <paramref name="to"/> with its audit entry; false when it was not in <paramref name="from"/>.</summary>
    public async Task<bool> SetPatternStatusAsync(string id, string from, string to, string now, AuditEntry entry, CancellationToken ct = default)
    {
        var column = to == PatternStatus.Verified ? "verified_at" : "retired_at";
        var moved = await ChangedAsync($"UPDATE patterns SET status = @to, {column} = @now WHERE id = @id AND status = @from", new { id, from, to, now }, entry, ct);
        SnapshotChanged |= moved;
        return moved;
    }

    private async Task InsertAsync(string sql, object args, string conflict, CancellationToken ct)
    {
        try
        {
            await c.ExecuteAsync(new CommandDefinition(sql, args, tx, cancellationToken: ct));
        }
        catch (DbException e) when (TsunaguStore.IsUniqueViolation(e))
        {
            throw new StoreConflictException(conflict);
        }
    }

    private async Task<bool> ChangedAsync(string sql, object args, AuditEntry entry, CancellationToken ct)
    {
        if (await c.ExecuteAsync(new CommandDefinition(sql, args, tx, cancellationToken: ct)) == 0) { return false; }
        await audit(entry);
        return true;
    }
}

/// <summary>Catalogue edits and deletions (the rules are CatalogueService's): the rules' reads, each write and its audit entry in one transaction.</summary>
public sealed class CatalogueEditStore
{
    private readonly TsunaguStore _store;

    internal CatalogueEditStore(TsunaguStore store) => _store = store;

    /// <summary>Any number the server's other advisory locks do not use: the PostgreSQL lock that serialises catalogue changes.</summary>
    public const long CatalogueLockKey = 0x7473_6e67_6361_7431; // "tsngcat1"

    /// <summary>
    /// Runs <paramref name="work"/> (the rules' reads and the writes they allow) in one transaction that no other catalogue
    /// change interleaves with; commits when it returns (moving the catalogue stamp when a pattern changed), writes
    /// nothing when it throws.
    /// </summary>
    public async Task<T> InCatalogueTransactionAsync<T>(Func<CatalogueTransaction, Task<T>> work, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        await LockCatalogueAsync(c, tx, ct);
        var catalogue = new CatalogueTransaction(c, tx, entry => _store.WriteAuditAsync(c, tx, entry, ct));
        // a refusal (a rule's exception) leaves the transaction uncommitted: disposing it rolls everything back
        var result = await work(catalogue);
        if (catalogue.SnapshotChanged)
        {
            await c.ExecuteAsync(new CommandDefinition(SettingStore.UpsertSettingSql, new { key = CatalogueStore.CatalogueStampKey, value = Guid.NewGuid().ToString("N") }, tx, cancellationToken: ct));
        }
        await tx.CommitAsync(ct);
        return result;
    }

    /// <summary>
    /// Serialises catalogue changes: on PostgreSQL a lock held until the transaction ends (its reads after it see every
    /// change committed before); SQLite transactions take the single writer's lock when they begin (BEGIN IMMEDIATE).
    /// </summary>
    internal async Task LockCatalogueAsync(DbConnection c, DbTransaction tx, CancellationToken ct)
    {
        if (_store.Database.Kind == DatabaseKind.Postgres)
        {
            await c.ExecuteAsync(new CommandDefinition("SELECT pg_advisory_xact_lock(@CatalogueLockKey)", new { CatalogueLockKey }, tx, cancellationToken: ct));
        }
    }

    public async Task<PatchRow?> GetPatchAsync(string id, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.QuerySingleOrDefaultAsync<PatchRow>(new CommandDefinition("SELECT * FROM patches WHERE id = @id", new { id }, cancellationToken: ct));
    }
}
