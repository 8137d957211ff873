using Dapper;

namespace Tsunagu.Server.Data;

public sealed partial class TsunaguStore
{
    /// <summary>
    /// The unit's newest revision when it failed with fewer than <paramref name="maxAttempts"/> attempts, else null. Asked on
    /// every ready report: the usual answer (nothing to retry) is decided by the primary key and reads no document.
    /// </summary>
    public UnitConfigRow? RetryableUnitConfig(string mac, long maxAttempts)
    {
        using var c = Open();
        return c.QueryFirstOrDefault<UnitConfigRow>("""
            SELECT * FROM unit_configs
            WHERE mac = @mac AND status = 'failed' AND attempt < @maxAttempts
              AND revision = (SELECT MAX(revision) FROM unit_configs WHERE mac = @mac)
            """, new { mac, maxAttempts });
    }

    /// <summary>
    /// Adds the retry of the failed revision <paramref name="failed"/> as the next revision (same document, origin and
    /// the next attempt), with its audit entry, only while <paramref name="failed"/> is still the unit's newest revision
    /// and still failed: two replicas handling the same ready report add one retry, not two. Null when nothing was added.
    /// </summary>
    public long? AddUnitConfigRetry(UnitConfigRow failed, Func<long, AuditEntry> audit)
    {
        using var c = Open();
        using var tx = c.BeginTransaction();
        var newest = c.QueryFirstOrDefault<UnitConfigRow>("SELECT * FROM unit_configs WHERE mac = @Mac ORDER BY revision DESC LIMIT 1", new { failed.Mac }, tx);
        if (newest is null || newest.Revision != failed.Revision || newest.Status != ConfigStatus.Failed)
        {
            return null;
        }
        var next = newest.Revision + 1;
        c.Execute("""
            INSERT INTO unit_configs (mac, revision, document, status, origin, created_at, attempt, retry_of)
            VALUES (@Mac, @next, @Document, 'provisional', @Origin, @now, @attempt, @root)
            """, new { failed.Mac, next, newest.Document, newest.Origin, now = Now(), attempt = newest.Attempt + 1, root = newest.RetryOf ?? newest.Revision }, tx);
        WriteAudit(c, tx, audit(next));
        tx.Commit();
        return next;
    }
}
