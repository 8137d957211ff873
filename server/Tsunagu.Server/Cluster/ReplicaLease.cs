using System.Data.Common;
using Tsunagu.Server.Data;

namespace Tsunagu.Server.Cluster;

/// <summary>
/// Decides which replica does the work that must run once (clean-up of expired challenges and old attempt counts,
/// resending undelivered checks, expiring broker passwords): the holder of one lease in PostgreSQL. The holder
/// renews it every third of <see cref="ServerOptions.OnceOnlyLeaseSeconds"/>; a replica that dies stops renewing and
/// another takes the lease once it has expired (by the database's clock). A replica counts itself the holder only
/// until its last successful renewal plus the lifetime, measured from before that renewal was sent, so two replicas
/// never both believe they hold it. On SQLite there is one process and it always holds it.
/// </summary>
public sealed class ReplicaLease(TsunaguStore store, ServerOptions options, TimeProvider time, ILogger<ReplicaLease> log) : BackgroundService
{
    public const string Name = "once-only-work";

    /// <summary>This replica's name in the lease: host, process id and a random part (a restarted process is another holder).</summary>
    public string Holder { get; } = $"{Environment.MachineName}/{Environment.ProcessId}/{Guid.NewGuid().ToString("N")[..8]}";

    private readonly bool _shared = store.Database.Kind == DatabaseKind.Postgres;
    private long _heldSince = -1; // timestamp (TimeProvider) of the request that last renewed the lease, -1: not held
    private TimeSpan Lifetime => TimeSpan.FromSeconds(options.OnceOnlyLeaseSeconds);

    /// <summary>True while this replica holds the lease (always on SQLite).</summary>
    public bool IsHolder
    {
        get
        {
            if (!_shared) { return true; }
            var since = Interlocked.Read(ref _heldSince);
            return since >= 0 && time.GetElapsedTime(since) < Lifetime;
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!_shared)
        {
            return; // one SQLite process: challenges are cleaned up as they are added, attempts are counted in memory
        }
        while (!stoppingToken.IsCancellationRequested)
        {
            await RenewAsync(stoppingToken);
            if (IsHolder) { await RunOnceOnlyWorkAsync(stoppingToken); }
            try
            {
                await Task.Delay(Lifetime / 3, time, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
        }
        if (IsHolder)
        {
            Interlocked.Exchange(ref _heldSince, -1);
            try
            {
                await store.Cluster.ReleaseLeaseAsync(Name, Holder, stoppingToken);
            }
            catch (DbException e)
            {
                log.LogWarning("cluster: could not give up the once-only lease ({Error}); another replica takes it when it expires", e.Message);
            }
        }
    }

    private async Task RenewAsync(CancellationToken ct)
    {
        var sent = time.GetTimestamp();
        var was = IsHolder;
        bool held;
        try
        {
            held = await store.Cluster.TryHoldLeaseAsync(Name, Holder, Lifetime, ct);
        }
        catch (Exception e) when (e is DbException or TimeoutException or InvalidOperationException)
        {
            log.LogWarning("cluster: the once-only lease could not be renewed ({Type}: {Error})", e.GetType().Name, e.Message);
            return; // the lease stays ours until it expires, and so does the belief
        }
        if (held)
        {
            Interlocked.Exchange(ref _heldSince, sent);
            if (!was) { log.LogInformation("cluster: {Holder} now does the once-only work", Holder); }
        }
        else
        {
            Interlocked.Exchange(ref _heldSince, -1);
            if (was) { log.LogWarning("cluster: {Holder} lost the once-only lease to another replica", Holder); }
        }
    }

    private async Task RunOnceOnlyWorkAsync(CancellationToken ct)
    {
        try
        {
            var challenges = await store.Cluster.PruneExpiredChallengesAsync(ct);
            var attempts = await store.Cluster.PruneAttemptsAsync(time.GetUtcNow().ToUnixTimeSeconds() / 60 - 1, ct);
            if (challenges + attempts > 0)
            {
                log.LogDebug("cluster: removed {Challenges} expired challenges and {Attempts} old attempt counts", challenges, attempts);
            }
        }
        catch (Exception e) when (e is DbException or TimeoutException)
        {
            log.LogWarning("cluster: clean-up failed ({Type}: {Error}); the next round tries again", e.GetType().Name, e.Message);
        }
    }
}
