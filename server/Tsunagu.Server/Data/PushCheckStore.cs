using Dapper;

namespace Tsunagu.Server.Data;

/// <summary>One unit's part of a forced check.</summary>
public sealed class PushCheckRow
{
    public string CheckId { get; set; } = "";
    public string Mac { get; set; } = "";
    public string Nonce { get; set; } = "";
    public long Importance { get; set; }
    public string Actor { get; set; } = "";
    public string CreatedAt { get; set; } = "";
    public string? SentAt { get; set; }
    public long Attempts { get; set; }
    public string? DeliveredAt { get; set; }

    /// <summary>Why the push was sent (<see cref="Tsunagu.Protocol.PushReasons"/>); null on rows from before reasons were kept (an operator's check).</summary>
    public string? Reason { get; set; }

    /// <summary>The unit's presence flag when the row was read (joined from units).</summary>
    public long Online { get; set; }

    /// <summary>`delivered` (the unit acknowledged the nonce), `offline` (not acknowledged, the unit is not connected), or `pending`.</summary>
    public string Status => DeliveredAt is not null ? PushCheckStatus.Delivered : Online == 0 ? PushCheckStatus.Offline : PushCheckStatus.Pending;
}

public static class PushCheckStatus
{
    public const string Delivered = "delivered";
    public const string Pending = "pending";
    public const string Offline = "offline";
}

/// <summary>Forced checks: the pushes that carry them, their delivery and their retries.</summary>
public sealed class PushCheckStore
{
    private readonly TsunaguStore _store;

    internal PushCheckStore(TsunaguStore store) => _store = store;

    /// <summary>
    /// Records a forced check: one row per unit with the nonce its push carries, counted as sent once; with
    /// <paramref name="audit"/> (when given) in the same transaction.
    /// </summary>
    public async Task AddPushCheckAsync(string checkId, string actor, int importance, IReadOnlyList<(string Mac, string Nonce)> units, AuditEntry? audit = null,
        string reason = Tsunagu.Protocol.PushReasons.Operator, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        var now = _store.Now();
        await c.ExecuteAsync(new CommandDefinition("""
            INSERT INTO push_checks (check_id, mac, nonce, importance, actor, created_at, sent_at, attempts, reason)
            VALUES (@checkId, @Mac, @Nonce, @importance, @actor, @now, @now, 1, @reason)
            """, units.Select(u => new { checkId, u.Mac, u.Nonce, importance, actor, now, reason }), tx, cancellationToken: ct));
        await _store.WriteAuditAsync(c, tx, audit, ct);
        await tx.CommitAsync(ct);
    }

    public async Task<IReadOnlyList<PushCheckRow>> GetPushCheckAsync(string checkId, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await c.QueryAsync<PushCheckRow>(new CommandDefinition("""
            SELECT p.*, COALESCE(u.online, 0) AS online FROM push_checks p LEFT JOIN units u ON u.mac = p.mac
            WHERE p.check_id = @checkId ORDER BY p.mac
            """, new { checkId }, cancellationToken: ct))).ToList();
    }

    /// <summary>The unit's newest forced checks first.</summary>
    public async Task<IReadOnlyList<PushCheckRow>> ListPushChecksForUnitAsync(string mac, int limit, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await c.QueryAsync<PushCheckRow>(new CommandDefinition("""
            SELECT p.*, COALESCE(u.online, 0) AS online FROM push_checks p LEFT JOIN units u ON u.mac = p.mac
            WHERE p.mac = @mac ORDER BY p.created_at DESC LIMIT @limit
            """, new { mac, limit }, cancellationToken: ct))).ToList();
    }

    /// <summary>
    /// The unit acknowledged <paramref name="nonce"/>: that check and every older undelivered one of this unit are delivered
    /// (the one check the unit now runs answers them all). Returns how many rows changed; 0 for an unknown or repeated nonce.
    /// </summary>
    public async Task<int> MarkPushDeliveredAsync(string mac, string nonce, CancellationToken ct = default)
    {
        await using var c = await _store.OpenUnitReportAsync(ct);
        return await c.ExecuteAsync(new CommandDefinition("""
            UPDATE push_checks SET delivered_at = @now
            WHERE mac = @mac AND delivered_at IS NULL
              AND created_at <= (SELECT MAX(created_at) FROM push_checks WHERE mac = @mac AND nonce = @nonce)
            """, new { mac, nonce, now = _store.Now() }, cancellationToken: ct));
    }

    /// <summary>The unit's newest undelivered check created after <paramref name="since"/>, or null.</summary>
    public async Task<PushCheckRow?> NewestUndeliveredPushAsync(string mac, DateTimeOffset since, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.QueryFirstOrDefaultAsync<PushCheckRow>(new CommandDefinition("""
            SELECT p.*, COALESCE(u.online, 0) AS online FROM push_checks p LEFT JOIN units u ON u.mac = p.mac
            WHERE p.mac = @mac AND p.delivered_at IS NULL AND p.created_at > @since
            ORDER BY p.created_at DESC, p.check_id DESC LIMIT 1
            """, new { mac, since = TsunaguStore.Timestamp(since) }, cancellationToken: ct));
    }

    /// <summary>
    /// Undelivered checks of units shown online, created after <paramref name="since"/>, last sent before
    /// <paramref name="sentBefore"/> (or, with <paramref name="cameOnlineSinceSent"/>, whose unit said "online" after
    /// that send) and sent fewer than <paramref name="maxAttempts"/> times: the newest per unit.
    /// </summary>
    public async Task<IReadOnlyList<PushCheckRow>> UndeliveredPushesToRetryAsync(DateTimeOffset since, DateTimeOffset sentBefore, int maxAttempts, int limit,
        bool cameOnlineSinceSent = false, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await c.QueryAsync<PushCheckRow>(new CommandDefinition("""
            SELECT p.*, u.online AS online FROM push_checks p JOIN units u ON u.mac = p.mac
            WHERE p.delivered_at IS NULL AND p.created_at > @since AND u.online = 1
              AND (p.sent_at IS NULL OR p.sent_at < @sentBefore OR (@onlineSince = 1 AND u.presence_at > p.sent_at)) AND p.attempts < @maxAttempts
              AND NOT EXISTS (SELECT 1 FROM push_checks n WHERE n.mac = p.mac AND n.delivered_at IS NULL AND n.created_at > p.created_at)
            ORDER BY p.created_at LIMIT @limit
            """, new { since = TsunaguStore.Timestamp(since), sentBefore = TsunaguStore.Timestamp(sentBefore), maxAttempts, limit, onlineSince = cameOnlineSinceSent ? 1 : 0 }, cancellationToken: ct))).ToList();
    }

    /// <summary>Deletes the records of forced checks made before <paramref name="before"/>; returns how many rows went.</summary>
    public async Task<int> PrunePushChecksAsync(DateTimeOffset before, CancellationToken ct = default)
    {
        await using var c = await _store.OpenUnitReportAsync(ct);
        return await c.ExecuteAsync(new CommandDefinition("DELETE FROM push_checks WHERE created_at < @before", new { before = TsunaguStore.Timestamp(before) }, cancellationToken: ct));
    }

    /// <summary>Counts one more sending of the unit's check.</summary>
    public async Task MarkPushResentAsync(string checkId, string mac, CancellationToken ct = default)
    {
        await using var c = await _store.OpenUnitReportAsync(ct);
        await c.ExecuteAsync(new CommandDefinition("UPDATE push_checks SET attempts = attempts + 1, sent_at = @now WHERE check_id = @checkId AND mac = @mac", new { checkId, mac, now = _store.Now() }, cancellationToken: ct));
    }

    /// <summary>
    /// <see cref="MarkPushResentAsync"/> for each of <paramref name="macs"/> of one check, in one transaction (a window
    /// opening's pushes: one commit for all the units the broker took, not one each).
    /// </summary>
    public async Task MarkPushesSentAsync(string checkId, IReadOnlyCollection<string> macs, CancellationToken ct = default)
    {
        if (macs.Count == 0) { return; }
        await using var c = await _store.OpenUnitReportAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        var now = _store.Now();
        await c.ExecuteAsync(new CommandDefinition("UPDATE push_checks SET attempts = attempts + 1, sent_at = @now WHERE check_id = @checkId AND mac = @mac",
            macs.Select(mac => new { checkId, mac, now }), tx, cancellationToken: ct));
        await tx.CommitAsync(ct);
    }

    /// <summary>
    /// Sets every unit shown online whose presence was last written before <paramref name="before"/> offline: after the
    /// server's broker link (re)subscribed, a unit that did not say "online" again (retained or fresh) is not connected.
    /// </summary>
    public async Task<int> SetStalePresenceOfflineAsync(DateTimeOffset before, CancellationToken ct = default)
    {
        await using var c = await _store.OpenUnitReportAsync(ct);
        return await c.ExecuteAsync(new CommandDefinition("UPDATE units SET online = 0, presence_at = @now WHERE online = 1 AND (presence_at IS NULL OR presence_at < @before)",
            new { before = TsunaguStore.Timestamp(before), now = _store.Now() }, cancellationToken: ct));
    }
}
