using System.Data.Common;
using Dapper;
using Tsunagu.Protocol;

namespace Tsunagu.Server.Data;

// The software catalogue: software, patches, patterns, update programs, and the snapshot every catalogue write moves.
public sealed partial class TsunaguStore
{
    // ---- software catalogue and patches -------------------------------------------------------------

    /// <summary>Adds catalogued software, with <paramref name="audit"/> (when given) in the same transaction.</summary>
    public void AddSoftware(SoftwareRow software, AuditEntry? audit = null)
    {
        CatalogueLockedInsert("""
                INSERT INTO software (app_id, version, name, required_hardware, required_os, created_at)
                VALUES (@AppId, @Version, @Name, @RequiredHardware, @RequiredOs, @now)
                """, new { software.AppId, software.Version, software.Name, software.RequiredHardware, software.RequiredOs, now = Now() }, $"software {software.AppId} {software.Version} is already in the catalogue", audit);
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

    /// <summary>Adds a patch, with <paramref name="audit"/> (when given) in the same transaction.</summary>
    public void AddPatch(PatchRow patch, AuditEntry? audit = null)
    {
        CatalogueLockedInsert("""
                INSERT INTO patches (id, name, version, target_app, importance, os_version, hardware_version, created_at)
                VALUES (@Id, @Name, @Version, @TargetApp, @Importance, @OsVersion, @HardwareVersion, @now)
                """, new { patch.Id, patch.Name, patch.Version, patch.TargetApp, patch.Importance, patch.OsVersion, patch.HardwareVersion, now = Now() }, $"patch {patch.Id} already exists", audit);
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

    /// <summary>Adds a pattern, with <paramref name="audit"/> (when given) in the same transaction.</summary>
    public void AddPattern(PatternRow pattern, AuditEntry? audit = null)
    {
        CatalogueInsert("""
                INSERT INTO patterns (id, name, hardware_version, os_version, applications, status, created_at)
                VALUES (@Id, @Name, @HardwareVersion, @OsVersion, @Applications, @Status, @now)
                """, new { pattern.Id, pattern.Name, pattern.HardwareVersion, pattern.OsVersion, pattern.Applications, pattern.Status, now = Now() }, $"pattern {pattern.Id} already exists", audit);
    }

    public PatternRow? GetPattern(string id)
    {
        using var c = Open();
        return c.QuerySingleOrDefault<PatternRow>("SELECT * FROM patterns WHERE id = @id", new { id });
    }

    /// <summary>
    /// Moves a pattern from <paramref name="from"/> to <paramref name="to"/>, with <paramref name="audit"/> (when given)
    /// in the same transaction; false (and no audit entry) when it was not in <paramref name="from"/>.
    /// </summary>
    public bool SetPatternStatus(string id, string from, string to, AuditEntry? audit = null)
    {
        var column = to == PatternStatus.Verified ? "verified_at" : "retired_at";
        return CatalogueWrite((c, tx) =>
        {
            var moved = c.Execute($"UPDATE patterns SET status = @to, {column} = @now WHERE id = @id AND status = @from", new { id, from, to, now = Now() }, tx) > 0;
            if (moved) { WriteAudit(c, tx, audit); }
            return moved;
        });
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

    /// <summary>
    /// Adds an update program, with <paramref name="audit"/> (when given) in the same transaction. Its patterns are read
    /// again under the catalogue's lock: a from-pattern deleted, or a to-pattern no longer verified, since the caller
    /// checked them makes it a <see cref="StoreConflictException"/> and nothing is written.
    /// </summary>
    public void AddUpdateProgram(UpdateProgramRow program, AuditEntry? audit = null) => InsertUpdateProgram(program, audit);

    /// <summary>Adds an update program, with both audit entries (the program's and its bundle upload's) in the same transaction; see <see cref="AddUpdateProgram(UpdateProgramRow, AuditEntry?)"/>.</summary>
    public void AddUpdateProgram(UpdateProgramRow program, AuditEntry audit, AuditEntry upload) => InsertUpdateProgram(program, audit, upload);

    private void InsertUpdateProgram(UpdateProgramRow program, params ReadOnlySpan<AuditEntry?> audit)
    {
        AuditEntry?[] entries = [.. audit];
        try
        {
            CatalogueWrite((c, tx) =>
            {
                RequireTransition(c, tx, program.FromPattern, program.ToPattern, $"update program {program.Id}");
                c.Execute("""
                    INSERT INTO update_programs (id, from_pattern, to_pattern, importance, priority, artifact_sha256, artifact_size, created_at)
                    VALUES (@Id, @FromPattern, @ToPattern, @Importance, @Priority, @ArtifactSha256, @ArtifactSize, @now)
                    """, new { program.Id, program.FromPattern, program.ToPattern, program.Importance, program.Priority, program.ArtifactSha256, program.ArtifactSize, now = Now() }, tx);
                foreach (var entry in entries) { WriteAudit(c, tx, entry); }
                return 0;
            });
        }
        catch (DbException e) when (IsUniqueViolation(e))
        {
            throw new StoreConflictException($"update program {program.Id} already exists");
        }
    }

    /// <summary>
    /// Inside a transaction holding the catalogue's lock: <paramref name="from"/> still exists and <paramref name="to"/> is
    /// still verified (a draft pattern deleted, or a pattern retired, after the caller's checks), else a
    /// <see cref="StoreConflictException"/> naming <paramref name="what"/>, which is then not written.
    /// </summary>
    private static void RequireTransition(DbConnection c, DbTransaction tx, string from, string to, string what)
    {
        var status = c.Query<(string Id, string Status)>("SELECT id, status FROM patterns WHERE id = @from OR id = @to", new { from, to }, tx)
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
        using var tx = Begin(c);
        LockCatalogue(c, tx);
        var result = write(c, tx);
        c.Execute(UpsertSettingSql, new { key = CatalogueStampKey, value = Guid.NewGuid().ToString("N") }, tx);
        tx.Commit();
        return result;
    }

    /// <summary><see cref="Insert"/> of a catalogue row the snapshot does not hold (software, patches), under the catalogue's lock.</summary>
    private void CatalogueLockedInsert(string sql, object args, string conflict, AuditEntry? audit)
    {
        try
        {
            using var c = Open();
            using var tx = Begin(c);
            LockCatalogue(c, tx);
            c.Execute(sql, args, tx);
            WriteAudit(c, tx, audit);
            tx.Commit();
        }
        catch (DbException e) when (IsUniqueViolation(e))
        {
            throw new StoreConflictException(conflict);
        }
    }

    /// <summary><see cref="Insert"/> for catalogue rows: the insert, the new stamp and each of <paramref name="audit"/> (when given) commit together.</summary>
    private void CatalogueInsert(string sql, object args, string conflict, params ReadOnlySpan<AuditEntry?> audit)
    {
        AuditEntry?[] entries = [.. audit];
        try
        {
            CatalogueWrite((c, tx) =>
            {
                c.Execute(sql, args, tx);
                foreach (var entry in entries) { WriteAudit(c, tx, entry); }
                return 0;
            });
        }
        catch (DbException e) when (IsUniqueViolation(e))
        {
            throw new StoreConflictException(conflict);
        }
    }
}
