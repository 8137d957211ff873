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
            WHERE mac = @mac AND status = 'failed' AND attempt < @maxAttempts AND retry_cancelled_at IS NULL
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
        try
        {
            return InsertUnitConfigRetry(failed, audit);
        }
        catch (System.Data.Common.DbException e) when (IsUniqueViolation(e))
        {
            return null; // a save or another replica's retry took the next revision first: the failed one is no longer the newest
        }
    }

    private long? InsertUnitConfigRetry(UnitConfigRow failed, Func<long, AuditEntry> audit)
    {
        using var c = Open();
        using var tx = Begin(c);
        // PostgreSQL: the newest row is locked, so a cancel (CancelUnitConfigRetry) either lands first and is seen, or waits
        var newest = c.QueryFirstOrDefault<UnitConfigRow>($"SELECT * FROM unit_configs WHERE mac = @Mac ORDER BY revision DESC LIMIT 1{ForUpdate}", new { failed.Mac }, tx);
        if (newest is null || newest.Revision != failed.Revision || newest.Status != ConfigStatus.Failed || newest.RetryCancelledAt is not null)
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

    /// <summary>Locks the rows a read in a transaction returns (PostgreSQL; SQLite's transactions hold the single writer's lock already).</summary>
    private string ForUpdate => _db.Kind == DatabaseKind.Postgres ? " FOR UPDATE" : "";

    /// <summary>
    /// Cancels the further attempts of the unit's newest revision: when it failed with attempts left (the host would retry
    /// it), or when it is a retry not yet applied (no attempt after it). The cancel and its audit entry
    /// (<paramref name="audit"/>, given the revision) commit together; null (nothing written) when there is nothing to cancel.
    /// </summary>
    public long? CancelUnitConfigRetry(string mac, long maxAttempts, string actor, Func<UnitConfigRow, AuditEntry> audit, string origin)
    {
        using var c = Open();
        using var tx = Begin(c);
        var sql = $"SELECT * FROM unit_configs WHERE mac = @mac ORDER BY revision DESC LIMIT 1{ForUpdate}";
        var newest = c.QueryFirstOrDefault<UnitConfigRow>(sql, new { mac }, tx);
        if (newest is not null && _db.Kind == DatabaseKind.Postgres)
        {
            // the lock may have been waited for while a retry inserted the next revision, which this statement's snapshot
            // did not see: read (and lock) the newest again, in a new statement
            newest = c.QueryFirstOrDefault<UnitConfigRow>(sql, new { mac }, tx);
        }
        if (newest is null || newest.Origin != origin || newest.RetryCancelledAt is not null || newest.Attempt >= maxAttempts
            || !(newest.Status == ConfigStatus.Failed || (newest.Status == ConfigStatus.Provisional && newest.Attempt > 1)))
        {
            return null;
        }
        var cancelled = c.Execute("""
            UPDATE unit_configs SET retry_cancelled_at = @now, retry_cancelled_by = @actor
            WHERE mac = @mac AND revision = @Revision AND status = @Status AND retry_cancelled_at IS NULL
            """, new { mac, newest.Revision, newest.Status, actor, now = Now() }, tx);
        if (cancelled == 0) { return null; }
        WriteAudit(c, tx, audit(newest));
        tx.Commit();
        return newest.Revision;
    }
}
