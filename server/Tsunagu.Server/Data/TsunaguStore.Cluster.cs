using Dapper;

namespace Tsunagu.Server.Data;

// What replicas share on PostgreSQL: authentication attempts per subject and minute, and leases for once-only work.
public sealed partial class TsunaguStore
{
    /// <summary>Counts one attempt of <paramref name="subject"/> in clock minute <paramref name="minute"/> and returns the minute's count so far, this one included.</summary>
    public long CountAttempt(string subject, long minute)
    {
        using var c = OpenUnitReport();
        return c.ExecuteScalar<long>("""
            INSERT INTO auth_attempts (subject, minute, count) VALUES (@subject, @minute, 1)
            ON CONFLICT (subject, minute) DO UPDATE SET count = auth_attempts.count + 1
            RETURNING count
            """, new { subject, minute });
    }

    /// <summary>Deletes the attempt counts of minutes before <paramref name="beforeMinute"/>.</summary>
    public int PruneAttempts(long beforeMinute)
    {
        using var c = OpenUnitReport();
        return c.Execute("DELETE FROM auth_attempts WHERE minute < @beforeMinute", new { beforeMinute });
    }

    /// <summary>Deletes challenges whose lifetime is over (nobody can answer them any more).</summary>
    public int PruneExpiredChallenges()
    {
        using var c = OpenUnitReport();
        return c.Execute("DELETE FROM challenges WHERE expires_at < @now", new { now = Now() });
    }

    /// <summary>
    /// PostgreSQL: takes or renews the lease <paramref name="name"/> for <paramref name="holder"/> until the database's
    /// clock plus <paramref name="lifetime"/>; true when <paramref name="holder"/> holds it now. A lease held by
    /// another replica is taken only once it has expired.
    /// </summary>
    public bool TryHoldLease(string name, string holder, TimeSpan lifetime)
    {
        if (_db.Kind != DatabaseKind.Postgres) { throw new InvalidOperationException("leases are kept in PostgreSQL; a SQLite server is a single process"); }
        using var c = Open();
        return c.QuerySingleOrDefault<string>("""
            INSERT INTO leases (name, holder, expires_at_ms) VALUES (@name, @holder, (extract(epoch FROM clock_timestamp()) * 1000)::bigint + @ms)
            ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at_ms = EXCLUDED.expires_at_ms
            WHERE leases.holder = EXCLUDED.holder OR leases.expires_at_ms < (extract(epoch FROM clock_timestamp()) * 1000)::bigint
            RETURNING holder
            """, new { name, holder, ms = (long)lifetime.TotalMilliseconds }) == holder;
    }

    /// <summary>Gives the lease up (when <paramref name="holder"/> holds it), so another replica takes it at its next try.</summary>
    public void ReleaseLease(string name, string holder)
    {
        using var c = Open();
        c.Execute("DELETE FROM leases WHERE name = @name AND holder = @holder", new { name, holder });
    }

    /// <summary>Who holds the lease <paramref name="name"/> and whether it is still valid by the database's clock; null when nobody ever took it.</summary>
    public (string Holder, bool Valid)? LeaseHolder(string name)
    {
        if (_db.Kind != DatabaseKind.Postgres) { return null; }
        using var c = Open();
        var row = c.QuerySingleOrDefault<(string, bool)?>("SELECT holder, expires_at_ms > (extract(epoch FROM clock_timestamp()) * 1000)::bigint FROM leases WHERE name = @name", new { name });
        return row;
    }
}
