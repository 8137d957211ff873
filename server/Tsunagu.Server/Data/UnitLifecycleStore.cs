using System.Data.Common;
using System.Text.Json;
using Dapper;

namespace Tsunagu.Server.Data;

/// <summary>One field of a unit's row as a revision changed it; a secret's values are never recorded (<see cref="Secret"/>).</summary>
public sealed record UnitFieldChange(string Field, string? From, string? To, bool Secret = false);

/// <summary>One revision of a unit's row: who made it, when, with which operation, and what it changed.</summary>
public sealed class UnitRevisionRow
{
    public long Id { get; set; }
    public string Mac { get; set; } = "";
    public long Revision { get; set; }
    public string At { get; set; } = "";
    public string Actor { get; set; } = "";
    public string Action { get; set; } = "";
    public string Changes { get; set; } = "[]";
}

/// <summary>An edit was made against a revision of the row that is no longer the newest; nothing was written.</summary>
public sealed class StaleRevisionException(string mac, long expected, long actual)
    : Exception($"unit {mac} is at revision {actual}, not {expected}: someone changed it meanwhile; read it again and redo the change")
{
    public long Actual { get; } = actual;
}

/// <summary>The device management table's lifecycle: edits with revisions, decommissioning, deletion, replacement, transfer.</summary>
public sealed class UnitLifecycleStore
{
    private readonly TsunaguStore _store;

    internal UnitLifecycleStore(TsunaguStore store) => _store = store;

    /// <summary>The name the ISP password is sealed under (<see cref="Units.Lifecycle.SecretBox"/>) and recorded as in revisions.</summary>
    public const string IspPasswordField = "isp.password";

    private static readonly JsonSerializerOptions ChangeJson = new(JsonSerializerDefaults.Web);

    internal void SealSecrets(UnitRow unit)
    {
        if (unit.IspPassword is not null)
        {
            unit.IspPasswordSealed = _store.Secrets.Seal(unit.Mac, IspPasswordField, unit.IspPassword);
            unit.IspPassword = null;
        }
    }

    /// <summary>The unit's ISP password in clear (for its settings); plain text of a row not sealed yet is read as it is.</summary>
    public string? IspPasswordOf(UnitRow unit) =>
        unit.IspPasswordSealed is { } sealedValue ? _store.Secrets.Open(unit.Mac, IspPasswordField, sealedValue) : unit.IspPassword;

    /// <summary>True when the unit is registered and not decommissioned (a narrow read, made on every unit request).</summary>
    public async Task<bool> IsUnitActiveAsync(string mac, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.ExecuteScalarAsync<long?>(new CommandDefinition("SELECT 1 FROM units WHERE mac = @mac AND decommissioned_at IS NULL", new { mac }, cancellationToken: ct)) is not null;
    }

    public async Task<IReadOnlyList<UnitRevisionRow>> ListUnitRevisionsAsync(string mac, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await c.QueryAsync<UnitRevisionRow>(new CommandDefinition("SELECT * FROM unit_revisions WHERE mac = @mac ORDER BY revision, id", new { mac }, cancellationToken: ct))).ToList();
    }

    public async Task<IReadOnlyList<string>> ListDecommissionedUnitsAsync(CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await c.QueryAsync<string>(new CommandDefinition("SELECT mac FROM units WHERE decommissioned_at IS NOT NULL ORDER BY mac", cancellationToken: ct))).ToList();
    }

    private async Task<UnitRow?> ReadUnitAsync(DbConnection c, DbTransaction tx, string mac, CancellationToken ct) =>
        await c.QuerySingleOrDefaultAsync<UnitRow>(new CommandDefinition($"{UnitStore.UnitColumns} WHERE mac = @mac", new { mac }, tx, cancellationToken: ct));

    private async Task AddRevisionAsync(DbConnection c, DbTransaction tx, string mac, long revision, string actor, string action, IReadOnlyList<UnitFieldChange> changes, CancellationToken ct) =>
        await c.ExecuteAsync(new CommandDefinition("""
            INSERT INTO unit_revisions (mac, revision, at, actor, action, changes) VALUES (@mac, @revision, @now, @actor, @action, @changes)
            """, new { mac, revision, now = _store.Now(), actor, action, changes = JsonSerializer.Serialize(changes, ChangeJson) }, tx, cancellationToken: ct));

    /// <summary>The row as it is, for a change: refuses an unknown, decommissioned or stale row.</summary>
    private async Task<UnitRow> ReadForChangeAsync(DbConnection c, DbTransaction tx, string mac, long? expected, CancellationToken ct)
    {
        var row = await ReadUnitAsync(c, tx, mac, ct) ?? throw new UnitNotFoundException(mac);
        if (row.DecommissionedAt is not null)
        {
            throw new StoreConflictException($"unit {mac} was decommissioned at {row.DecommissionedAt}; its row is kept for audit and cannot change");
        }
        if (expected is { } e && e != row.Revision)
        {
            throw new StaleRevisionException(mac, e, row.Revision);
        }
        return row;
    }

    /// <summary>Bumps the revision of a row read by <see cref="ReadForChangeAsync"/>, failing when it changed since (another replica).</summary>
    private static async Task BumpRevisionAsync(DbConnection c, DbTransaction tx, UnitRow row, string setSql, object args, CancellationToken ct)
    {
        var p = new DynamicParameters(args);
        p.Add("mac", row.Mac);
        p.Add("expected", row.Revision);
        var n = await c.ExecuteAsync(new CommandDefinition($"UPDATE units SET {setSql}, revision = revision + 1 WHERE mac = @mac AND revision = @expected AND decommissioned_at IS NULL", p, tx, cancellationToken: ct));
        if (n != 1)
        {
            throw new StaleRevisionException(row.Mac, row.Revision, row.Revision + 1);
        }
    }

    /// <summary>
    /// Writes the editable fields of <paramref name="after"/> (with its already sealed password) when the row is still at
    /// <paramref name="expected"/>; one transaction with the revision entry and the audit entry. Returns the new revision.
    /// </summary>
    /// When <paramref name="wanChanged"/> the settings revision rises too (the unit refetches its settings).
    /// <exception cref="StaleRevisionException">The row is at another revision; nothing was written.</exception>
    public async Task<long> EditUnitAsync(UnitRow after, long expected, IReadOnlyList<UnitFieldChange> changes, string actor, bool wanChanged, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        var row = await ReadForChangeAsync(c, tx, after.Mac, expected, ct);
        await BumpRevisionAsync(c, tx, row, """
            serial = @Serial, hardware_version = @HardwareVersion, isp_method = @IspMethod, isp_username = @IspUsername,
            isp_password = NULL, isp_password_sealed = @IspPasswordSealed, ip_address = @IpAddress, domain = @Domain, vpn = @Vpn,
            global_ip = @GlobalIp, subscriber = @Subscriber, isp_gateway = @IspGateway, isp_dns = @IspDns,
            settings_revision = settings_revision + @SettingsBump
            """, new
        {
            after.Serial, after.HardwareVersion, after.IspMethod, after.IspUsername, after.IspPasswordSealed, after.IpAddress, after.Domain,
            after.Vpn, after.GlobalIp, after.Subscriber, after.IspGateway, after.IspDns, SettingsBump = wanChanged ? 1 : 0
        }, ct);
        await AddRevisionAsync(c, tx, row.Mac, row.Revision + 1, actor, "edit", changes, ct);
        await _store.WriteAuditAsync(c, tx, new AuditEntry(actor, "unit.edit", row.Mac, string.Join(", ", changes.Select(x => x.Field))), ct);
        await tx.CommitAsync(ct);
        return row.Revision + 1;
    }

    /// <summary>
    /// Decommissions a unit: it is refused from now on (authentication, every unit endpoint, the broker); its row stays
    /// for audit. <paramref name="expected"/>: the revision the operator saw (null: whatever it is).
    /// </summary>
    public async Task<UnitRow> DecommissionAsync(string mac, long? expected, string actor, string? reason, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        var row = await ReadForChangeAsync(c, tx, mac, expected, ct);
        var now = _store.Now();
        await BumpRevisionAsync(c, tx, row, "decommissioned_at = @now, state = @state, online = 0", new { now, state = UnitStates.Decommissioned }, ct);
        await AddRevisionAsync(c, tx, mac, row.Revision + 1, actor, "decommission",
            [new("state", row.State, UnitStates.Decommissioned), new("decommissionedAt", null, now)], ct);
        await _store.WriteAuditAsync(c, tx, new AuditEntry(actor, "unit.decommission", mac, reason), ct);
        await tx.CommitAsync(ct);
        return (await _store.Units.GetUnitAsync(mac, ct))!;
    }

    /// <summary>
    /// Deletes a row that never reached the server (never seen, no inventory) and that no replacement came from; every
    /// other row is decommissioned instead and stays for audit. <paramref name="expected"/>: the revision the operator saw
    /// (null: whatever it is), checked inside the transaction. On PostgreSQL the row is locked first, so an edit or a
    /// unit's first contact (which marks it seen) either commits before the checks read the row, or finds it gone.
    /// </summary>
    /// <exception cref="StaleRevisionException">The row is at another revision; nothing was deleted.</exception>
    public async Task DeleteUnitAsync(string mac, long? expected, string actor, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        if (_store.Database.Kind == DatabaseKind.Postgres)
        {
            await c.ExecuteAsync(new CommandDefinition("SELECT mac FROM units WHERE mac = @mac FOR UPDATE", new { mac }, tx, cancellationToken: ct));
        }
        var row = await ReadUnitAsync(c, tx, mac, ct) ?? throw new UnitNotFoundException(mac);
        if (expected is { } e && e != row.Revision)
        {
            throw new StaleRevisionException(mac, e, row.Revision);
        }
        if (row.LastSeen is not null || row.Inventory is not null || row.ReplacedBy is not null ||
            await c.ExecuteScalarAsync<long?>(new CommandDefinition("SELECT 1 FROM units WHERE replaced_by = @mac", new { mac }, tx, cancellationToken: ct)) is not null)
        {
            throw new StoreConflictException($"unit {mac} has been provisioned or is part of a replacement: its row stays for audit; decommission it instead");
        }
        foreach (var table in new[] { "challenges", "push_checks", "unit_events", "update_reports", "unit_configs", "unit_revisions", "unit_tags", "rollout_units" })
        {
            await c.ExecuteAsync(new CommandDefinition($"DELETE FROM {table} WHERE mac = @mac", new { mac }, tx, cancellationToken: ct));
        }
        // the row as it was read: at its revision, never seen
        if (await c.ExecuteAsync(new CommandDefinition("DELETE FROM units WHERE mac = @mac AND revision = @revision AND last_seen IS NULL AND inventory IS NULL",
                new { mac, revision = row.Revision }, tx, cancellationToken: ct)) != 1)
        {
            throw new StoreConflictException($"unit {mac} changed while it was being deleted; nothing was deleted: read it again");
        }
        await _store.WriteAuditAsync(c, tx, new AuditEntry(actor, "unit.delete", mac, row.Serial), ct);
        await tx.CommitAsync(ct);
    }

    /// <summary>
    /// Replaces a unit (RMA) in one transaction: <paramref name="replacement"/> (its secrets already sealed for its MAC)
    /// is registered with the old unit's newest service configuration as its revision 1; the old unit loses its subscriber,
    /// names its replacement and is decommissioned. Returns the new unit.
    /// </summary>
    public async Task<UnitRow> ReplaceUnitAsync(string oldMac, long? expected, UnitRow replacement, string? fallbackConfig, string actor, CancellationToken ct = default)
    {
        var now = _store.Now();
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        try
        {
            var old = await ReadForChangeAsync(c, tx, oldMac, expected, ct);
            replacement.CreatedAt = now;
            await c.ExecuteAsync(new CommandDefinition(UnitStore.InsertUnitSql, replacement, tx, cancellationToken: ct));
            var document = await c.ExecuteScalarAsync<string?>(new CommandDefinition(
                "SELECT document FROM unit_configs WHERE mac = @oldMac ORDER BY revision DESC LIMIT 1", new { oldMac }, tx, cancellationToken: ct)) ?? fallbackConfig;
            if (document is not null)
            {
                await c.ExecuteAsync(new CommandDefinition("""
                    INSERT INTO unit_configs (mac, revision, document, status, origin, created_at) VALUES (@mac, 1, @document, 'provisional', 'operator', @now)
                    """, new { mac = replacement.Mac, document, now }, tx, cancellationToken: ct));
            }
            await BumpRevisionAsync(c, tx, old, "decommissioned_at = @now, state = @state, online = 0, subscriber = NULL, replaced_by = @replacedBy",
                new { now, state = UnitStates.Decommissioned, replacedBy = replacement.Mac }, ct);
            await AddRevisionAsync(c, tx, oldMac, old.Revision + 1, actor, "replace",
            [
                new("state", old.State, UnitStates.Decommissioned), new("decommissionedAt", null, now),
                new("subscriber", old.Subscriber, null), new("replacedBy", null, replacement.Mac),
            ], ct);
            await AddRevisionAsync(c, tx, replacement.Mac, 1, actor, "register-replacement",
            [
                new("replaces", null, oldMac), new("subscriber", null, replacement.Subscriber), new("targetPattern", null, replacement.TargetPattern),
                new(IspPasswordField, null, null, Secret: true),
            ], ct);
            await _store.WriteAuditAsync(c, tx, new AuditEntry(actor, "unit.replace", oldMac, $"replaced by {replacement.Mac} ({replacement.Serial})"), ct);
            await tx.CommitAsync(ct);
        }
        catch (DbException e) when (TsunaguStore.IsUniqueViolation(e))
        {
            throw new StoreConflictException($"unit {replacement.Mac} is already registered");
        }
        return (await _store.Units.GetUnitAsync(replacement.Mac, ct))!;
    }

    /// <summary>
    /// Moves the subscriber of <paramref name="fromMac"/> to <paramref name="toMac"/> (which must have none), with the
    /// source unit's newest service configuration as the target's next revision when <paramref name="withConfig"/>; one
    /// transaction with both revision entries and the audit entry. Returns the subscriber's name.
    /// </summary>
    public async Task<string> TransferSubscriberAsync(string fromMac, long? expectedFrom, string toMac, long? expectedTo, bool withConfig, string actor, CancellationToken ct = default)
    {
        if (fromMac == toMac) { throw new StoreConflictException("from and to are the same unit"); }
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        var from = await ReadForChangeAsync(c, tx, fromMac, expectedFrom, ct);
        var to = await ReadForChangeAsync(c, tx, toMac, expectedTo, ct);
        var subscriber = from.Subscriber ?? throw new StoreConflictException($"unit {fromMac} has no subscriber to move");
        if (to.Subscriber is not null)
        {
            throw new StoreConflictException($"unit {toMac} already has subscriber '{to.Subscriber}'; move or clear that one first");
        }
        await BumpRevisionAsync(c, tx, from, "subscriber = NULL", new { }, ct);
        await BumpRevisionAsync(c, tx, to, "subscriber = @subscriber", new { subscriber }, ct);
        var changes = new List<UnitFieldChange> { new("subscriber", null, subscriber), new("transferredFrom", null, fromMac) };
        if (withConfig && await c.ExecuteScalarAsync<string?>(new CommandDefinition("SELECT document FROM unit_configs WHERE mac = @fromMac ORDER BY revision DESC LIMIT 1", new { fromMac }, tx, cancellationToken: ct)) is { } document)
        {
            var next = await c.ExecuteScalarAsync<long>(new CommandDefinition("SELECT COALESCE(MAX(revision), 0) + 1 FROM unit_configs WHERE mac = @toMac", new { toMac }, tx, cancellationToken: ct));
            await c.ExecuteAsync(new CommandDefinition("""
                INSERT INTO unit_configs (mac, revision, document, status, origin, created_at) VALUES (@toMac, @next, @document, 'provisional', 'operator', @now)
                """, new { toMac, next, document, now = _store.Now() }, tx, cancellationToken: ct));
            changes.Add(new("serviceConfigRevision", null, next.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        }
        await AddRevisionAsync(c, tx, fromMac, from.Revision + 1, actor, "transfer-out", [new("subscriber", subscriber, null), new("transferredTo", null, toMac)], ct);
        await AddRevisionAsync(c, tx, toMac, to.Revision + 1, actor, "transfer-in", changes, ct);
        await _store.WriteAuditAsync(c, tx, new AuditEntry(actor, "unit.transfer-subscriber", fromMac, $"subscriber {subscriber} to {toMac}{(withConfig ? " with configuration" : "")}"), ct);
        await tx.CommitAsync(ct);
        return subscriber;
    }

    /// <summary>
    /// Reseals every secret of the table in one transaction: <paramref name="reseal"/> gets each row's MAC, plain-text
    /// password (rows from before sealing) and sealed password, and returns the new sealed value, or null to leave the row.
    /// Returns the number of rows changed; nothing is left in the plain column of a changed row.
    /// </summary>
    public async Task<int> ResealSecretsAsync(Func<string, string?, string?, string?> reseal, AuditEntry? audit, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        var rows = (await c.QueryAsync<(string Mac, string? Plain, string? Sealed)>(new CommandDefinition(
            "SELECT mac, isp_password, isp_password_sealed FROM units WHERE isp_password IS NOT NULL OR isp_password_sealed IS NOT NULL", transaction: tx, cancellationToken: ct))).ToList();
        var changed = 0;
        foreach (var (mac, plain, sealedValue) in rows)
        {
            if (reseal(mac, plain, sealedValue) is not { } next) { continue; }
            await c.ExecuteAsync(new CommandDefinition("UPDATE units SET isp_password = NULL, isp_password_sealed = @next WHERE mac = @mac", new { mac, next }, tx, cancellationToken: ct));
            changed++;
        }
        await _store.WriteAuditAsync(c, tx, audit, ct);
        await tx.CommitAsync(ct);
        return changed;
    }
}

/// <summary>No unit of that MAC is registered.</summary>
public sealed class UnitNotFoundException(string mac) : Exception($"unit {mac} is not registered")
{
    public string Mac { get; } = mac;
}
