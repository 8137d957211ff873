using System.Text.Json;
using Dapper;
using Tsunagu.Protocol;

namespace Tsunagu.Server.Data;

/// <summary>What units did: update reports, their history entries, and the audit entries that name them.</summary>
public sealed class HistoryStore
{
    private readonly TsunaguStore _store;

    internal HistoryStore(TsunaguStore store) => _store = store;

    /// <summary>Records an update report without an install id once; a repeated report (same unit, update, result) changes nothing.</summary>
    public async Task<bool> RecordUpdateReportAsync(string mac, string updateId, bool success, string? error, string? pattern, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.ExecuteAsync(new CommandDefinition("""
            INSERT INTO update_reports (mac, update_id, success, error, pattern, at)
            VALUES (@mac, @updateId, @success, @error, @pattern, @now)
            ON CONFLICT DO NOTHING
            """, new { mac, updateId, success = success ? 1 : 0, error, pattern, now = _store.Now() }, cancellationToken: ct)) > 0;
    }

    /// <summary>
    /// Records an update report and everything it changes (<see cref="UpdateOutcome"/>) in one transaction: all or
    /// nothing. With an install id, the report is keyed on (unit, install id) by a unique index: a report of an install
    /// already recorded (the unit sends it again when it never saw the answer) writes nothing at all and returns what
    /// was recorded for it; concurrent repeats are decided by the index, not by a read before the write. Without one
    /// (a unit older than install ids) a repeated report (same unit, update, result) adds no second report row and the
    /// rest is written again, as before install ids.
    /// </summary>
    public async Task<UpdateRecord> RecordUpdateOutcomeAsync(UpdateOutcome o, CancellationToken ct = default)
    {
        var at = _store.Time.GetUtcNow();
        var now = TsunaguStore.Timestamp(at);
        var kind = UnitEventKinds.Update;
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        var inserted = await c.ExecuteAsync(new CommandDefinition("""
            INSERT INTO update_reports (mac, update_id, success, error, pattern, at, install_id)
            VALUES (@Mac, @UpdateId, @success, @Error, @Pattern, @now, @InstallId)
            ON CONFLICT DO NOTHING
            """, new { o.Mac, o.UpdateId, success = o.Success ? 1 : 0, o.Error, o.Pattern, now, o.InstallId }, tx, cancellationToken: ct)) > 0;
        if (!inserted && o.InstallId is not null)
        {
            var first = await c.QuerySingleAsync<UpdateReportRow>(new CommandDefinition("SELECT * FROM update_reports WHERE mac = @Mac AND install_id = @InstallId",
                new { o.Mac, o.InstallId }, tx, cancellationToken: ct));
            await tx.RollbackAsync(ct);
            return new UpdateRecord(false, first.UpdateId, first.Success != 0, first.Pattern);
        }
        if (o.Inventory.LastBundle is { } counter)
        {
            await c.ExecuteAsync(new CommandDefinition("""
                UPDATE units SET last_bundle_version = @Version, last_bundle_id = @BundleId
                WHERE mac = @Mac AND (last_bundle_version IS NULL OR last_bundle_version < @Version)
                """, new { o.Mac, counter.Version, counter.BundleId }, tx, cancellationToken: ct));
        }
        await c.ExecuteAsync(new CommandDefinition("""
            UPDATE units SET inventory = @inventory, pattern = COALESCE(@Pattern, pattern), state = @State, last_seen = @now,
                   last_error = CASE WHEN @Success THEN NULL ELSE COALESCE(@LastError, last_error) END
            WHERE mac = @Mac
            """, new { o.Mac, inventory = JsonSerializer.Serialize(o.Inventory, ProtocolJson.Default.Inventory), o.Pattern, o.State, now, o.Success, o.LastError }, tx, cancellationToken: ct));
        await TsunaguStore.InsertAuditAsync(c, tx, now, o.Mac, o.Success ? "update.succeeded" : "update.failed", o.UpdateId, o.Error, ct);
        await c.ExecuteAsync(new CommandDefinition("INSERT INTO unit_events (mac, at, kind, detail, failed) VALUES (@Mac, @now, @kind, @EventDetail, @failed)",
            new { o.Mac, now, kind, o.EventDetail, failed = o.Success ? 0 : 1 }, tx, cancellationToken: ct));
        await tx.CommitAsync(ct);
        _store.LastSeenWritten[o.Mac] = at;
        _store.LastEvent[o.Mac] = (kind, o.EventDetail);
        return new UpdateRecord(true, o.UpdateId, o.Success, o.Pattern);
    }

    /// <summary>
    /// A unit back on the pattern an update took it from, after it reported the update installed: its own rollback after
    /// the report (a boot chain or watchdog that returned it to the old software) fails the update as surely as a failed
    /// health check does. The version check and the ready report both write the pattern the unit runs; each calls this
    /// first, with <paramref name="known"/> (the unit's row as the request read it), <paramref name="pattern"/> (the
    /// verified pattern its inventory matches) and <paramref name="counter"/> (its verified bundle counter), so whoever
    /// reads the unit on the old pattern finds the failure too. Inside one transaction the unit's row is read again (locked
    /// on PostgreSQL), and the update counts as failed only when all of these hold: the row has another pattern Y; the
    /// unit's newest update report is a success of program P that took it to Y; P leads from <paramref name="pattern"/>;
    /// and the unit's bundle counter still names P. The counter tells a fall back from everything else that changes a
    /// unit's pattern without a report in between: an install after P (a way back, a target, a newer update, its report
    /// lost or refused) raised the counter to its own program, and a factory reset formats the data partition the counter
    /// lives on (no counter). Then the host records it as the unit's failure of P: the update report (so a rollout counts
    /// the member failed, its error threshold sees it and its gate never offers it the update again), the audit entry
    /// <c>update.failed</c> and the unit's failed history entry; the unit's last error and state are left to the request
    /// that writes them. The report's install id is derived from the success it contradicts, so concurrent requests
    /// record it once. A program deleted since is not looked at (its from-pattern is unknown). Returns the failure's text,
    /// or null when there is no such fall back or it was recorded already.
    /// </summary>
    public async Task<string?> RecordFallBackAsync(UnitCheckRow known, string pattern, Protocol.Bundles.BundleCounter? counter, CancellationToken ct = default)
    {
        if (counter is null || known.Pattern == pattern) { return null; }
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        var was = await c.QuerySingleOrDefaultAsync<string?>(new CommandDefinition(
            "SELECT pattern FROM units WHERE mac = @Mac AND decommissioned_at IS NULL" + (_store.Database.Kind == DatabaseKind.Postgres ? " FOR UPDATE" : ""),
            new { known.Mac }, tx, cancellationToken: ct));
        if (was is null || was == pattern) { return null; }
        var last = await c.QuerySingleOrDefaultAsync<UpdateReportRow>(new CommandDefinition(
            "SELECT * FROM update_reports WHERE mac = @Mac ORDER BY id DESC LIMIT 1", new { known.Mac }, tx, cancellationToken: ct));
        if (last is not { Success: not 0 } || last.Pattern != was || last.UpdateId != counter.BundleId) { return null; }
        var from = await c.QuerySingleOrDefaultAsync<string>(new CommandDefinition(
            "SELECT from_pattern FROM update_programs WHERE id = @UpdateId AND to_pattern = @was", new { last.UpdateId, was }, tx, cancellationToken: ct));
        if (from != pattern) { return null; }
        var error = $"update {last.UpdateId}: reported installed at {last.At}, the unit runs {pattern} again (its own rollback after the report)";
        var now = _store.Now();
        var installId = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(
            System.Text.Encoding.UTF8.GetBytes($"fell-back:{known.Mac}:{last.Id}")))[..32];
        var inserted = await c.ExecuteAsync(new CommandDefinition("""
            INSERT INTO update_reports (mac, update_id, success, error, pattern, at, install_id)
            VALUES (@Mac, @UpdateId, 0, @error, @pattern, @now, @installId)
            ON CONFLICT DO NOTHING
            """, new { known.Mac, last.UpdateId, error, pattern, now, installId }, tx, cancellationToken: ct)) > 0;
        if (!inserted) { return null; }
        await TsunaguStore.InsertAuditAsync(c, tx, now, known.Mac, "update.failed", last.UpdateId, error, ct);
        await InsertUnitEventAsync(c, tx, known.Mac, now, UnitEventKinds.Update, error, failed: true, ct);
        await tx.CommitAsync(ct);
        _store.LastEvent[known.Mac] = (UnitEventKinds.Update, error);
        return error;
    }

    public async Task<long> CountUpdateReportsAsync(string mac, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.ExecuteScalarAsync<long>(new CommandDefinition("SELECT COUNT(*) FROM update_reports WHERE mac = @mac", new { mac }, cancellationToken: ct));
    }

    // ---- unit history ------------------------------------------------------------------------------------

    /// <summary>Writes one entry of the unit's history inside the caller's transaction.</summary>
    internal static async Task InsertUnitEventAsync(System.Data.Common.DbConnection c, System.Data.Common.DbTransaction? tx, string mac, string now, string kind, string? detail,
        bool failed, CancellationToken ct) =>
        await c.ExecuteAsync(new CommandDefinition("INSERT INTO unit_events (mac, at, kind, detail, failed) VALUES (@mac, @now, @kind, @detail, @failed)",
            new { mac, now, kind, detail, failed = failed ? 1 : 0 }, tx, cancellationToken: ct));

    /// <summary>Adds one entry to the unit's history (a check, an update, a configuration acknowledgement, a ready report).</summary>
    public async Task AddUnitEventAsync(string mac, string kind, string? detail, bool failed = false, CancellationToken ct = default)
    {
        // checks and ready reports come again on the next contact; updates, configurations and failures are reported once
        await using var c = !failed && kind is UnitEventKinds.Check or UnitEventKinds.Ready ? await _store.OpenUnitReportAsync(ct) : await _store.OpenAsync(ct);
        await InsertUnitEventAsync(c, null, mac, _store.Now(), kind, detail, failed, ct);
        _store.LastEvent[mac] = (kind, detail);
    }

    /// <summary>The unit's newest history entries first.</summary>
    public async Task<IReadOnlyList<UnitEventRow>> ListUnitEventsAsync(string mac, int limit = 100, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await c.QueryAsync<UnitEventRow>(new CommandDefinition("SELECT * FROM unit_events WHERE mac = @mac ORDER BY id DESC LIMIT @limit", new { mac, limit }, cancellationToken: ct))).ToList();
    }

    /// <summary>Failed events (updates, configurations) since <paramref name="since"/>, newest first.</summary>
    public async Task<IReadOnlyList<UnitEventRow>> ListFailuresAsync(DateTimeOffset since, int limit = 100, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await c.QueryAsync<UnitEventRow>(new CommandDefinition("SELECT * FROM unit_events WHERE failed = 1 AND at >= @since ORDER BY id DESC LIMIT @limit",
            new { since = TsunaguStore.Timestamp(since), limit }, cancellationToken: ct))).ToList();
    }

    /// <summary>Update reports, oldest first; of one unit when <paramref name="mac"/> is given.</summary>
    public async Task<IReadOnlyList<UpdateReportRow>> ListUpdateReportsAsync(string? mac = null, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await c.QueryAsync<UpdateReportRow>(new CommandDefinition("SELECT * FROM update_reports WHERE @mac IS NULL OR mac = @mac ORDER BY at, id", new { mac }, cancellationToken: ct))).ToList();
    }

    /// <summary>
    /// Audit entries that name the unit (<see cref="AuditUnits.Named"/>: as the actor, the target, or one of a target's
    /// units), newest first; read by key from <c>audit_units</c>.
    /// </summary>
    public async Task<IReadOnlyList<AuditRow>> ListAuditForUnitAsync(string mac, int limit = 100, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await c.QueryAsync<AuditRow>(new CommandDefinition("""
            SELECT a.id, a.at, a.actor, a.action, a.target, a.detail FROM audit_units u JOIN audit a ON a.id = u.audit_id
            WHERE u.mac = @mac ORDER BY u.audit_id DESC LIMIT @limit
            """, new { mac, limit }, cancellationToken: ct))).ToList();
    }
}
