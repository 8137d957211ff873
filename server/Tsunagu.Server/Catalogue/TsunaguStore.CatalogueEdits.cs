using Dapper;

namespace Tsunagu.Server.Data;

// Catalogue edits and deletions (the rules are CatalogueService's): each write and its audit entry in one transaction.
public sealed partial class TsunaguStore
{
    /// <summary>Replaces the name and requirements of catalogued software, with <paramref name="audit"/>; false (nothing written) when it is not catalogued.</summary>
    public bool UpdateSoftware(SoftwareRow software, AuditEntry audit) => Changed(
        "UPDATE software SET name = @Name, required_hardware = @RequiredHardware, required_os = @RequiredOs WHERE app_id = @AppId AND version = @Version",
        software, audit);

    /// <summary>Removes catalogued software, with <paramref name="audit"/>; false (nothing written) when it is not catalogued.</summary>
    public bool DeleteSoftware(string appId, string version, AuditEntry audit) =>
        Changed("DELETE FROM software WHERE app_id = @appId AND version = @version", new { appId, version }, audit);

    public PatchRow? GetPatch(string id)
    {
        using var c = Open();
        return c.QuerySingleOrDefault<PatchRow>("SELECT * FROM patches WHERE id = @id", new { id });
    }

    /// <summary>Replaces a patch's fields (not its id), with <paramref name="audit"/>; false (nothing written) when there is no such patch.</summary>
    public bool UpdatePatch(PatchRow patch, AuditEntry audit) => Changed("""
        UPDATE patches SET name = @Name, version = @Version, target_app = @TargetApp, importance = @Importance,
               os_version = @OsVersion, hardware_version = @HardwareVersion
        WHERE id = @Id
        """, patch, audit);

    /// <summary>Removes a patch, with <paramref name="audit"/>; false (nothing written) when there is no such patch.</summary>
    public bool DeletePatch(string id, AuditEntry audit) => Changed("DELETE FROM patches WHERE id = @id", new { id }, audit);

    /// <summary>
    /// Removes a draft pattern that nothing refers to (no update program, unit or rollout), with <paramref name="audit"/>,
    /// in one transaction that checks it again; false (nothing written) when it is not such a pattern any more.
    /// </summary>
    public bool DeleteDraftPattern(string id, AuditEntry audit) => CatalogueWrite((c, tx) =>
    {
        var deleted = c.Execute("""
            DELETE FROM patterns WHERE id = @id AND status = 'draft'
              AND NOT EXISTS (SELECT 1 FROM update_programs WHERE from_pattern = @id OR to_pattern = @id)
              AND NOT EXISTS (SELECT 1 FROM units WHERE pattern = @id OR target_pattern = @id)
              AND NOT EXISTS (SELECT 1 FROM rollouts WHERE from_pattern = @id OR to_pattern = @id)
            """, new { id }, tx) > 0;
        if (deleted) { WriteAudit(c, tx, audit); }
        return deleted;
    });

    /// <summary>What refers to pattern <paramref name="id"/>: update programs, units (as pattern or target) and rollouts, counted.</summary>
    public (long Programs, long Units, long Rollouts) PatternReferences(string id)
    {
        using var c = Open();
        return (c.ExecuteScalar<long>("SELECT COUNT(*) FROM update_programs WHERE from_pattern = @id OR to_pattern = @id", new { id }),
            c.ExecuteScalar<long>("SELECT COUNT(*) FROM units WHERE pattern = @id OR target_pattern = @id", new { id }),
            c.ExecuteScalar<long>("SELECT COUNT(*) FROM rollouts WHERE from_pattern = @id OR to_pattern = @id", new { id }));
    }

    private bool Changed(string sql, object args, AuditEntry audit)
    {
        using var c = Open();
        using var tx = c.BeginTransaction();
        if (c.Execute(sql, args, tx) == 0) { return false; }
        WriteAudit(c, tx, audit);
        tx.Commit();
        return true;
    }
}
