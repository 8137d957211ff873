using System.Data.Common;
using Dapper;
using Tsunagu.Protocol;

namespace Tsunagu.Server.Data;

/// <summary>The software catalogue: software, patches, patterns, update programs, and the snapshot every catalogue write moves.</summary>
public sealed class CatalogueStore
{
    private readonly TsunaguStore _store;

    internal CatalogueStore(TsunaguStore store) => _store = store;

    // ---- software catalogue and patches -------------------------------------------------------------

    /// <summary>Adds catalogued software, with <paramref name="audit"/> (when given) in the same transaction.</summary>
    public async Task AddSoftwareAsync(SoftwareRow software, AuditEntry? audit = null, CancellationToken ct = default)
    {
        await CatalogueLockedInsertAsync("""
                INSERT INTO software (app_id, version, name, required_hardware, required_os, created_at)
                VALUES (@AppId, @Version, @Name, @RequiredHardware, @RequiredOs, @now)
                """, new { software.AppId, software.Version, software.Name, software.RequiredHardware, software.RequiredOs, now = _store.Now() }, $"software {software.AppId} {software.Version} is already in the catalogue", audit, ct);
    }

    /// <summary>Adds the software if it is not catalogued yet (seeding).</summary>
    public async Task EnsureSoftwareAsync(SoftwareRow software, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        await c.ExecuteAsync(new CommandDefinition("""
            INSERT INTO software (app_id, version, name, required_hardware, required_os, created_at)
            VALUES (@AppId, @Version, @Name, @RequiredHardware, @RequiredOs, @now) ON CONFLICT DO NOTHING
            """, new { software.AppId, software.Version, software.Name, software.RequiredHardware, software.RequiredOs, now = _store.Now() }, cancellationToken: ct));
    }

    public async Task<IReadOnlyList<SoftwareRow>> ListSoftwareAsync(string? appId = null, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await c.QueryAsync<SoftwareRow>(new CommandDefinition("SELECT * FROM software WHERE @appId IS NULL OR app_id = @appId ORDER BY app_id, version", new { appId }, cancellationToken: ct))).ToList();
    }

    public async Task<SoftwareRow?> GetSoftwareAsync(string appId, string version, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.QuerySingleOrDefaultAsync<SoftwareRow>(new CommandDefinition("SELECT * FROM software WHERE app_id = @appId AND version = @version", new { appId, version }, cancellationToken: ct));
    }

    /// <summary>Adds a patch, with <paramref name="audit"/> (when given) in the same transaction.</summary>
    public async Task AddPatchAsync(PatchRow patch, AuditEntry? audit = null, CancellationToken ct = default)
    {
        await CatalogueLockedInsertAsync("""
                INSERT INTO patches (id, name, version, target_app, importance, os_version, hardware_version, created_at)
                VALUES (@Id, @Name, @Version, @TargetApp, @Importance, @OsVersion, @HardwareVersion, @now)
                """, new { patch.Id, patch.Name, patch.Version, patch.TargetApp, patch.Importance, patch.OsVersion, patch.HardwareVersion, now = _store.Now() }, $"patch {patch.Id} already exists", audit, ct);
    }

    public async Task<IReadOnlyList<PatchRow>> ListPatchesAsync(CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await c.QueryAsync<PatchRow>(new CommandDefinition("SELECT * FROM patches ORDER BY id", cancellationToken: ct))).ToList();
    }

    // ---- patterns and update programs ------------------------------------------------------------------

    /// <summary>Inserts or replaces a pattern as it is given (used by seeding; the operator API goes through the catalogue rules).</summary>
    public async Task UpsertPatternAsync(PatternRow pattern, CancellationToken ct = default)
    {
        var now = _store.Now();
        await CatalogueWriteAsync(async (c, tx) => await c.ExecuteAsync(new CommandDefinition("""
            INSERT INTO patterns (id, name, hardware_version, os_version, applications, status, created_at, verified_at)
            VALUES (@Id, @Name, @HardwareVersion, @OsVersion, @Applications, @Status, @now, CASE WHEN @Status = 'verified' THEN @now END)
            ON CONFLICT(id) DO UPDATE SET name = excluded.name, hardware_version = excluded.hardware_version,
                os_version = excluded.os_version, applications = excluded.applications, status = excluded.status
            """, new { pattern.Id, pattern.Name, pattern.HardwareVersion, pattern.OsVersion, pattern.Applications, pattern.Status, now }, tx, cancellationToken: ct)), ct);
    }

    /// <summary>Adds a pattern, with <paramref name="audit"/> (when given) in the same transaction.</summary>
    public async Task AddPatternAsync(PatternRow pattern, AuditEntry? audit = null, CancellationToken ct = default)
    {
        await CatalogueInsertAsync("""
                INSERT INTO patterns (id, name, hardware_version, os_version, applications, status, created_at)
                VALUES (@Id, @Name, @HardwareVersion, @OsVersion, @Applications, @Status, @now)
                """, new { pattern.Id, pattern.Name, pattern.HardwareVersion, pattern.OsVersion, pattern.Applications, pattern.Status, now = _store.Now() }, $"pattern {pattern.Id} already exists", [audit], ct);
    }

    public async Task<PatternRow?> GetPatternAsync(string id, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.QuerySingleOrDefaultAsync<PatternRow>(new CommandDefinition("SELECT * FROM patterns WHERE id = @id", new { id }, cancellationToken: ct));
    }

    /// <summary>
    /// Moves a pattern from <paramref name="from"/> to <paramref name="to"/>, with <paramref name="audit"/> (when given)
    /// in the same transaction; false (and no audit entry) when it was not in <paramref name="from"/>.
    /// </summary>
    public async Task<bool> SetPatternStatusAsync(string id, string from, string to, AuditEntry? audit = null, CancellationToken ct = default)
    {
        var column = to == PatternStatus.Verified ? "verified_at" : "retired_at";
        return await CatalogueWriteAsync(async (c, tx) =>
        {
            var moved = await c.ExecuteAsync(new CommandDefinition($"UPDATE patterns SET status = @to, {column} = @now WHERE id = @id AND status = @from", new { id, from, to, now = _store.Now() }, tx, cancellationToken: ct)) > 0;
            if (moved) { await _store.WriteAuditAsync(c, tx, audit, ct); }
            return moved;
        }, ct);
    }

    public async Task<IReadOnlyList<PatternRow>> ListPatternsAsync(string? status = null, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await c.QueryAsync<PatternRow>(new CommandDefinition("SELECT * FROM patterns WHERE @status IS NULL OR status = @status ORDER BY id", new { status }, cancellationToken: ct))).ToList();
    }

    /// <summary>The verified (or retired) pattern matching <paramref name="inventory"/>; see <see cref="CatalogueSnapshot.FindPattern"/>.</summary>
    public async Task<PatternRow?> FindPatternAsync(Inventory inventory, CancellationToken ct = default) => (await CatalogueAsync(ct)).FindPattern(inventory);

    public async Task UpsertUpdateProgramAsync(UpdateProgramRow program, CancellationToken ct = default)
    {
        await CatalogueWriteAsync(async (c, tx) => await c.ExecuteAsync(new CommandDefinition("""
            INSERT INTO update_programs (id, from_pattern, to_pattern, importance, priority, artifact_sha256, artifact_size, created_at)
            VALUES (@Id, @FromPattern, @ToPattern, @Importance, @Priority, @ArtifactSha256, @ArtifactSize, @now)
            ON CONFLICT(id) DO UPDATE SET from_pattern = excluded.from_pattern, to_pattern = excluded.to_pattern,
                importance = excluded.importance, priority = excluded.priority,
                artifact_sha256 = excluded.artifact_sha256, artifact_size = excluded.artifact_size
            """, new { program.Id, program.FromPattern, program.ToPattern, program.Importance, program.Priority, program.ArtifactSha256, program.ArtifactSize, now = _store.Now() }, tx, cancellationToken: ct)), ct);
    }

    /// <summary>
    /// Adds an update program, with <paramref name="audit"/> (when given) in the same transaction. Its patterns are read
    /// again under the catalogue's lock: a from-pattern deleted, or a to-pattern no longer verified, since the caller
    /// checked them makes it a <see cref="StoreConflictException"/> and nothing is written.
    /// </summary>
    public async Task AddUpdateProgramAsync(UpdateProgramRow program, AuditEntry? audit = null, CancellationToken ct = default) => await InsertUpdateProgramAsync(program, [audit], ct);

    /// <summary>Adds an update program, with both audit entries (the program's and its bundle upload's) in the same transaction; see <see cref="AddUpdateProgramAsync(UpdateProgramRow, AuditEntry?, CancellationToken)"/>.</summary>
    public async Task AddUpdateProgramAsync(UpdateProgramRow program, AuditEntry audit, AuditEntry upload, CancellationToken ct = default) => await InsertUpdateProgramAsync(program, [audit, upload], ct);

    private async Task InsertUpdateProgramAsync(UpdateProgramRow program, AuditEntry?[] audit, CancellationToken ct)
    {
        AuditEntry?[] entries = [.. audit];
        try
        {
            await CatalogueWriteAsync(async (c, tx) =>
            {
                await RequireTransitionAsync(c, tx, program.FromPattern, program.ToPattern, $"update program {program.Id}", ct);
                await c.ExecuteAsync(new CommandDefinition("""
                    INSERT INTO update_programs (id, from_pattern, to_pattern, importance, priority, artifact_sha256, artifact_size, created_at)
                    VALUES (@Id, @FromPattern, @ToPattern, @Importance, @Priority, @ArtifactSha256, @ArtifactSize, @now)
                    """, new { program.Id, program.FromPattern, program.ToPattern, program.Importance, program.Priority, program.ArtifactSha256, program.ArtifactSize, now = _store.Now() }, tx, cancellationToken: ct));
                foreach (var entry in entries) { await _store.WriteAuditAsync(c, tx, entry, ct); }
                return 0;
            }, ct);
        }
        catch (DbException e) when (TsunaguStore.IsUniqueViolation(e))
        {
            throw new StoreConflictException($"update program {program.Id} already exists");
        }
    }

    /// <summary>
    /// Inside a transaction holding the catalogue's lock: <paramref name="from"/> still exists and <paramref name="to"/> is
    /// still verified (a draft pattern deleted, or a pattern retired, after the caller's checks), else a
    /// <see cref="StoreConflictException"/> naming <paramref name="what"/>, which is then not written.
    /// </summary>
    internal static async Task RequireTransitionAsync(DbConnection c, DbTransaction tx, string from, string to, string what, CancellationToken ct)
    {
        var status = (await c.QueryAsync<(string Id, string Status)>(new CommandDefinition("SELECT id, status FROM patterns WHERE id = @from OR id = @to", new { from, to }, tx, cancellationToken: ct)))
            .ToDictionary(p => p.Id, p => p.Status, StringComparer.Ordinal);
        if (!status.ContainsKey(from))
        {
            throw new StoreConflictException($"fromPattern: pattern '{from}' was deleted while {what} was being added; nothing was stored");
        }
        if (status.GetValueOrDefault(to) is not PatternStatus.Verified)
        {
            throw new StoreConflictException($"toPattern: pattern '{to}' stopped being a verified pattern while {what} was being added; nothing was stored");
        }
    }

    public async Task<IReadOnlyList<UpdateProgramRow>> ListUpdateProgramsAsync(CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await c.QueryAsync<UpdateProgramRow>(new CommandDefinition("SELECT * FROM update_programs ORDER BY from_pattern, priority DESC, id", cancellationToken: ct))).ToList();
    }

    /// <summary>The update program offered to units on <paramref name="fromPattern"/>; see <see cref="CatalogueSnapshot.FindUpdateProgram"/>.</summary>
    public async Task<UpdateProgramRow?> FindUpdateProgramAsync(string fromPattern, string? toPattern = null, CancellationToken ct = default) => (await CatalogueAsync(ct)).FindUpdateProgram(fromPattern, toPattern);

    public async Task<UpdateProgramRow?> GetUpdateProgramAsync(string id, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.QuerySingleOrDefaultAsync<UpdateProgramRow>(new CommandDefinition("SELECT * FROM update_programs WHERE id = @id", new { id }, cancellationToken: ct));
    }

    public async Task<bool> ArtifactIsOfferedAsync(string sha256, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.ExecuteScalarAsync<long>(new CommandDefinition("SELECT COUNT(*) FROM update_programs WHERE artifact_sha256 = @sha256", new { sha256 }, cancellationToken: ct)) > 0;
    }

    // ---- the catalogue snapshot ----------------------------------------------------------------------------

    /// <summary>
    /// The settings row every catalogue write (patterns, update programs, settings) changes in the same transaction.
    /// Readers compare it with the stamp of their <see cref="CatalogueSnapshot"/>, so a change made through any replica
    /// is seen by the next request on every replica, and a steady-state version check reads the catalogue from memory.
    /// </summary>
    public const string CatalogueStampKey = "catalogue-stamp";

    private CatalogueSnapshot? _catalogue;
    private readonly SemaphoreSlim _catalogueLoad = new(1, 1);

    /// <summary>The catalogue as it is now (one read of the stamp; the rest from memory unless the stamp moved).</summary>
    public async Task<CatalogueSnapshot> CatalogueAsync(CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await CatalogueAtAsync(c, ct);
    }

    /// <summary>The unit row and the current catalogue, on one connection: all a steady-state version check reads.</summary>
    public async Task<(UnitCheckRow? Unit, CatalogueSnapshot Catalogue)> GetUnitWithCatalogueAsync(string mac, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        var unit = await c.QuerySingleOrDefaultAsync<UnitCheckRow>(new CommandDefinition(UnitStore.UnitCheckSql, new { mac }, cancellationToken: ct));
        return (unit, await CatalogueAtAsync(c, ct));
    }

    internal async Task<CatalogueSnapshot> CatalogueAtAsync(DbConnection c, CancellationToken ct) =>
        // the stamp is read before the rows, so a write that lands in between only makes the next reader load again
        await CatalogueAtAsync(c, await c.QuerySingleOrDefaultAsync<string>(new CommandDefinition(CatalogueStampSql, new { key = CatalogueStampKey }, cancellationToken: ct)), ct);

    /// <summary>Reads the catalogue stamp (parameter <c>@key</c>: <see cref="CatalogueStampKey"/>).</summary>
    internal const string CatalogueStampSql = "SELECT value FROM settings WHERE key = @key";

    /// <summary>The catalogue as of <paramref name="stamp"/>, read on <paramref name="c"/> before: the cached one while the stamp is its own.</summary>
    internal async Task<CatalogueSnapshot> CatalogueAtAsync(DbConnection c, string? stamp, CancellationToken ct)
    {
        var current = Volatile.Read(ref _catalogue);
        if (current is not null && current.Stamp == stamp)
        {
            return current;
        }
        await _catalogueLoad.WaitAsync(ct);
        try
        {
            current = Volatile.Read(ref _catalogue);
            if (current is not null && current.Stamp == stamp)
            {
                return current;
            }
            current = new CatalogueSnapshot(stamp,
                await c.QueryAsync<PatternRow>(new CommandDefinition("SELECT * FROM patterns", cancellationToken: ct)),
                await c.QueryAsync<UpdateProgramRow>(new CommandDefinition("SELECT * FROM update_programs", cancellationToken: ct)),
                (await c.QueryAsync<(string Key, string Value)>(new CommandDefinition("SELECT key, value FROM settings", cancellationToken: ct))).Select(s => KeyValuePair.Create(s.Key, s.Value)));
            Volatile.Write(ref _catalogue, current);
            return current;
        }
        finally
        {
            _catalogueLoad.Release();
        }
    }

    /// <summary>Runs a catalogue write and moves the catalogue stamp in the same transaction.</summary>
    internal async Task<T> CatalogueWriteAsync<T>(Func<DbConnection, DbTransaction, Task<T>> write, CancellationToken ct)
    {
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        await _store.CatalogueEdits.LockCatalogueAsync(c, tx, ct);
        var result = await write(c, tx);
        await c.ExecuteAsync(new CommandDefinition(SettingStore.UpsertSettingSql, new { key = CatalogueStampKey, value = Guid.NewGuid().ToString("N") }, tx, cancellationToken: ct));
        await tx.CommitAsync(ct);
        return result;
    }

    /// <summary><see cref="TsunaguStore.InsertAsync"/> of a catalogue row the snapshot does not hold (software, patches), under the catalogue's lock.</summary>
    private async Task CatalogueLockedInsertAsync(string sql, object args, string conflict, AuditEntry? audit, CancellationToken ct)
    {
        try
        {
            await using var c = await _store.OpenAsync(ct);
            await using var tx = await _store.BeginAsync(c, ct);
            await _store.CatalogueEdits.LockCatalogueAsync(c, tx, ct);
            await c.ExecuteAsync(new CommandDefinition(sql, args, tx, cancellationToken: ct));
            await _store.WriteAuditAsync(c, tx, audit, ct);
            await tx.CommitAsync(ct);
        }
        catch (DbException e) when (TsunaguStore.IsUniqueViolation(e))
        {
            throw new StoreConflictException(conflict);
        }
    }

    /// <summary><see cref="TsunaguStore.InsertAsync"/> for catalogue rows: the insert, the new stamp and each of <paramref name="audit"/> (when given) commit together.</summary>
    private async Task CatalogueInsertAsync(string sql, object args, string conflict, AuditEntry?[] audit, CancellationToken ct)
    {
        AuditEntry?[] entries = [.. audit];
        try
        {
            await CatalogueWriteAsync(async (c, tx) =>
            {
                await c.ExecuteAsync(new CommandDefinition(sql, args, tx, cancellationToken: ct));
                foreach (var entry in entries) { await _store.WriteAuditAsync(c, tx, entry, ct); }
                return 0;
            }, ct);
        }
        catch (DbException e) when (TsunaguStore.IsUniqueViolation(e))
        {
            throw new StoreConflictException(conflict);
        }
    }
}
