using Dapper;

namespace Tsunagu.Server.Data;

/// <summary>What replicas share on PostgreSQL: authentication attempts per subject and minute, and leases for once-only work.</summary>
public sealed class ClusterStore
{
    private readonly TsunaguStore _store;

    internal ClusterStore(TsunaguStore store) => _store = store;

    /// <summary>Counts one attempt of <paramref name="subject"/> in clock minute <paramref name="minute"/> and returns the minute's count so far, this one included.</summary>
    public async Task<long> CountAttemptAsync(string subject, long minute, CancellationToken ct = default)
    {
        await using var c = await _store.OpenUnitReportAsync(ct);
        return await c.ExecuteScalarAsync<long>(new CommandDefinition("""
            INSERT INTO auth_attempts (subject, minute, count) VALUES (@subject, @minute, 1)
            ON CONFLICT (subject, minute) DO UPDATE SET count = auth_attempts.count + 1
            RETURNING count
            """, new { subject, minute }, cancellationToken: ct));
    }

    /// <summary>Deletes the attempt counts of minutes before <paramref name="beforeMinute"/>.</summary>
    public async Task<int> PruneAttemptsAsync(long beforeMinute, CancellationToken ct = default)
    {
        await using var c = await _store.OpenUnitReportAsync(ct);
        return await c.ExecuteAsync(new CommandDefinition("DELETE FROM auth_attempts WHERE minute < @beforeMinute", new { beforeMinute }, cancellationToken: ct));
    }

    /// <summary>Deletes challenges whose lifetime is over (nobody can answer them any more).</summary>
    public async Task<int> PruneExpiredChallengesAsync(CancellationToken ct = default)
    {
        await using var c = await _store.OpenUnitReportAsync(ct);
        return await c.ExecuteAsync(new CommandDefinition("DELETE FROM challenges WHERE expires_at < @now", new { now = _store.Now() }, cancellationToken: ct));
    }

    /// <summary>
    /// PostgreSQL: takes or renews the lease <paramref name="name"/> for <paramref name="holder"/> until the database's
    /// clock plus <paramref name="lifetime"/>; true when <paramref name="holder"/> holds it now. A lease held by
    /// another replica is taken only once it has expired.
    /// </summary>
    public async Task<bool> TryHoldLeaseAsync(string name, string holder, TimeSpan lifetime, CancellationToken ct = default)
    {
        if (_store.Database.Kind != DatabaseKind.Postgres) { throw new InvalidOperationException("leases are kept in PostgreSQL; a SQLite server is a single process"); }
        await using var c = await _store.OpenAsync(ct);
        return await c.QuerySingleOrDefaultAsync<string>(new CommandDefinition("""
            INSERT INTO leases (name, holder, expires_at_ms) VALUES (@name, @holder, (extract(epoch FROM clock_timestamp()) * 1000)::bigint + @ms)
            ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at_ms = EXCLUDED.expires_at_ms
            WHERE leases.holder = EXCLUDED.holder OR leases.expires_at_ms < (extract(epoch FROM clock_timestamp()) * 1000)::bigint
            RETURNING holder
            """, new { name, holder, ms = (long)lifetime.TotalMilliseconds }, cancellationToken: ct)) == holder;
    }

    /// <summary>Gives the lease up (when <paramref name="holder"/> holds it), so another replica takes it at its next try.</summary>
    public async Task ReleaseLeaseAsync(string name, string holder, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        await c.ExecuteAsync(new CommandDefinition("DELETE FROM leases WHERE name = @name AND holder = @holder", new { name, holder }, cancellationToken: ct));
    }

    /// <summary>Who holds the lease <paramref name="name"/> and whether it is still valid by the database's clock; null when nobody ever took it.</summary>
    public async Task<(string Holder, bool Valid)?> LeaseHolderAsync(string name, CancellationToken ct = default)
    {
        if (_store.Database.Kind != DatabaseKind.Postgres) { return null; }
        await using var c = await _store.OpenAsync(ct);
        var row = await c.QuerySingleOrDefaultAsync<(string, bool)?>(new CommandDefinition("SELECT holder, expires_at_ms > (extract(epoch FROM clock_timestamp()) * 1000)::bigint FROM leases WHERE name = @name", new { name }, cancellationToken: ct));
        return row;
    }
}
