using Dapper;

namespace Tsunagu.Server.Data;

/// <summary>A unit's failed configuration revisions sent again: which revision may be retried, the retry, and its cancellation.</summary>
public sealed class ConfigRetryStore
{
    private readonly TsunaguStore _store;

    internal ConfigRetryStore(TsunaguStore store) => _store = store;

    /// <summary>
    /// The unit's newest revision when it failed with fewer than <paramref name="maxAttempts"/> attempts, else null. Asked on
    /// every ready report: the usual answer (nothing to retry) is decided by the primary key and reads no document.
    /// </summary>
    public async Task<UnitConfigRow?> RetryableUnitConfigAsync(string mac, long maxAttempts, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.QueryFirstOrDefaultAsync<UnitConfigRow>(new CommandDefinition("""
            SELECT * FROM unit_configs
            WHERE mac = @mac AND status = 'failed' AND attempt < @maxAttempts AND retry_cancelled_at IS NULL
              AND revision = (SELECT MAX(revision) FROM unit_configs WHERE mac = @mac)
            """, new { mac, maxAttempts }, cancellationToken: ct));
    }

    /// <summary>
    /// Adds the retry of the failed revision <paramref name="failed"/> as the next revision (same document, origin and
    /// the next attempt), with its audit entry, only while <paramref name="failed"/> is still the unit's newest revision
    /// and still failed: two replicas handling the same ready report add one retry, not two. Null when nothing was added.
    /// </summary>
    public async Task<long?> AddUnitConfigRetryAsync(UnitConfigRow failed, Func<long, AuditEntry> audit, CancellationToken ct = default)
    {
        try
        {
            return await InsertUnitConfigRetryAsync(failed, audit, ct);
        }
        catch (System.Data.Common.DbException e) when (TsunaguStore.IsUniqueViolation(e))
        {
            return null; // a save or another replica's retry took the next revision first: the failed one is no longer the newest
        }
    }

    private async Task<long?> InsertUnitConfigRetryAsync(UnitConfigRow failed, Func<long, AuditEntry> audit, CancellationToken ct)
    {
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        // PostgreSQL: the newest row is locked, so a cancel (CancelUnitConfigRetry) either lands first and is seen, or waits
        var newest = await c.QueryFirstOrDefaultAsync<UnitConfigRow>(new CommandDefinition($"SELECT * FROM unit_configs WHERE mac = @Mac ORDER BY revision DESC LIMIT 1{ForUpdate}", new { failed.Mac }, tx, cancellationToken: ct));
        if (newest is null || newest.Revision != failed.Revision || newest.Status != ConfigStatus.Failed || newest.RetryCancelledAt is not null)
        {
            return null;
        }
        var next = newest.Revision + 1;
        await c.ExecuteAsync(new CommandDefinition("""
            INSERT INTO unit_configs (mac, revision, document, status, origin, created_at, attempt, retry_of)
            VALUES (@Mac, @next, @Document, 'provisional', @Origin, @now, @attempt, @root)
            """, new { failed.Mac, next, newest.Document, newest.Origin, now = _store.Now(), attempt = newest.Attempt + 1, root = newest.RetryOf ?? newest.Revision }, tx, cancellationToken: ct));
        await _store.WriteAuditAsync(c, tx, audit(next), ct);
        await tx.CommitAsync(ct);
        return next;
    }

    /// <summary>Locks the rows a read in a transaction returns (PostgreSQL; SQLite's transactions hold the single writer's lock already).</summary>
    private string ForUpdate => _store.Database.Kind == DatabaseKind.Postgres ? " FOR UPDATE" : "";

    /// <summary>
    /// Cancels the further attempts of the unit's newest revision: when it failed with attempts left (the host would retry
    /// it), or when it is a retry not yet applied (no attempt after it). The cancel and its audit entry
    /// (<paramref name="audit"/>, given the revision) commit together; null (nothing written) when there is nothing to cancel.
    /// </summary>
    public async Task<long?> CancelUnitConfigRetryAsync(string mac, long maxAttempts, string actor, Func<UnitConfigRow, AuditEntry> audit, string origin, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        var sql = $"SELECT * FROM unit_configs WHERE mac = @mac ORDER BY revision DESC LIMIT 1{ForUpdate}";
        var newest = await c.QueryFirstOrDefaultAsync<UnitConfigRow>(new CommandDefinition(sql, new { mac }, tx, cancellationToken: ct));
        if (newest is not null && _store.Database.Kind == DatabaseKind.Postgres)
        {
            // the lock may have been waited for while a retry inserted the next revision, which this statement's snapshot
            // did not see: read (and lock) the newest again, in a new statement
            newest = await c.QueryFirstOrDefaultAsync<UnitConfigRow>(new CommandDefinition(sql, new { mac }, tx, cancellationToken: ct));
        }
        if (newest is null || newest.Origin != origin || newest.RetryCancelledAt is not null || newest.Attempt >= maxAttempts
            || !(newest.Status == ConfigStatus.Failed || (newest.Status == ConfigStatus.Provisional && newest.Attempt > 1)))
        {
            return null;
        }
        var cancelled = await c.ExecuteAsync(new CommandDefinition("""
            UPDATE unit_configs SET retry_cancelled_at = @now, retry_cancelled_by = @actor
            WHERE mac = @mac AND revision = @Revision AND status = @Status AND retry_cancelled_at IS NULL
            """, new { mac, newest.Revision, newest.Status, actor, now = _store.Now() }, tx, cancellationToken: ct));
        if (cancelled == 0) { return null; }
        await _store.WriteAuditAsync(c, tx, audit(newest), ct);
        await tx.CommitAsync(ct);
        return newest.Revision;
    }
}
