using System.Data.Common;
using System.Text.Json;
using Dapper;
using Tsunagu.Protocol;

namespace Tsunagu.Server.Data;

/// <summary>Units (registration, what they report, presence, target pattern) and the challenges of their sessions.</summary>
public sealed class UnitStore
{
    private readonly TsunaguStore _store;

    internal UnitStore(TsunaguStore store) => _store = store;

    // ---- units ------------------------------------------------------------------------------------------

    internal const string UnitColumns =
        "SELECT units.*, (SELECT MAX(revision) FROM unit_configs c WHERE c.mac = units.mac) AS config_revision FROM units";

    internal const string InsertUnitSql = """
        INSERT INTO units (mac, serial, hardware_version, isp_method, isp_username, isp_password_sealed, ip_address, domain, vpn,
                           isp_gateway, isp_dns, global_ip, subscriber, state, pattern, target_pattern, created_at)
        VALUES (@Mac, @Serial, @HardwareVersion, @IspMethod, @IspUsername, @IspPasswordSealed, @IpAddress, @Domain, @Vpn,
                @IspGateway, @IspDns, @GlobalIp, @Subscriber, @State, @Pattern, @TargetPattern, @CreatedAt)
        """;

    public async Task AddUnitAsync(UnitRow unit, CancellationToken ct = default)
    {
        unit.CreatedAt = _store.Now();
        _store.Lifecycle.SealSecrets(unit);
        await _store.InsertAsync(InsertUnitSql, unit, $"unit {unit.Mac} is already registered", ct: ct);
    }

    /// <summary>
    /// Registers units, each with revision 1 of <paramref name="config"/> (when given), and writes one audit entry, in
    /// one transaction: all or nothing. A unit that is already registered fails the whole call (<see cref="StoreConflictException"/>).
    /// </summary>
    /// <remarks><paramref name="tags"/>: the tags of units that have some, written in the same transaction.</remarks>
    public async Task AddUnitsAsync(IReadOnlyList<UnitRow> units, ServiceConfiguration? config, string actor, string action, string? target, string? detail,
        IReadOnlyDictionary<string, IReadOnlyList<string>>? tags = null, CancellationToken ct = default)
    {
        var now = _store.Now();
        var document = config is null ? null : JsonSerializer.Serialize(config, ProtocolJson.Default.ServiceConfiguration);
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        try
        {
            foreach (var unit in units)
            {
                unit.CreatedAt = now;
                _store.Lifecycle.SealSecrets(unit);
                await c.ExecuteAsync(new CommandDefinition(InsertUnitSql, unit, tx, cancellationToken: ct));
                if (document is not null)
                {
                    await c.ExecuteAsync(new CommandDefinition("""
                        INSERT INTO unit_configs (mac, revision, document, status, origin, created_at) VALUES (@mac, 1, @document, 'provisional', 'operator', @now)
                        """, new { mac = unit.Mac, document, now }, tx, cancellationToken: ct));
                }
                if (tags?.GetValueOrDefault(unit.Mac) is { Count: > 0 } unitTags) { await FleetStore.WriteTagsAsync(c, tx, unit.Mac, unitTags, ct); }
            }
            await TsunaguStore.InsertAuditAsync(c, tx, now, actor, action, target, detail, ct);
            await tx.CommitAsync(ct);
        }
        catch (DbException e) when (TsunaguStore.IsUniqueViolation(e))
        {
            throw new StoreConflictException(units.Count == 1
                ? $"unit {units[0].Mac} is already registered"
                : "a unit of this table was registered meanwhile (another import?); nothing was registered, check the table again");
        }
    }

    public async Task<UnitRow?> GetUnitAsync(string mac, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.QuerySingleOrDefaultAsync<UnitRow>(new CommandDefinition($"{UnitColumns} WHERE mac = @mac", new { mac }, cancellationToken: ct));
    }

    internal const string UnitCheckSql = $"SELECT {UnitCheckRow.Columns} FROM units WHERE mac = @mac";

    /// <summary>The columns of the unit a version check reads (<see cref="UnitCheckRow"/>).</summary>
    public async Task<UnitCheckRow?> GetUnitForCheckAsync(string mac, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.QuerySingleOrDefaultAsync<UnitCheckRow>(new CommandDefinition(UnitCheckSql, new { mac }, cancellationToken: ct));
    }

    public async Task<IReadOnlyList<UnitRow>> ListUnitsAsync(string? pattern = null, string? state = null, CancellationToken ct = default) => await QueryUnitsAsync(new UnitQuery(pattern, state), ct);

    public async Task<IReadOnlyList<UnitRow>> QueryUnitsAsync(UnitQuery q, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        var rows = (await c.QueryAsync<UnitRow>(new CommandDefinition($"""
            {UnitColumns}
            WHERE (@Pattern IS NULL OR pattern = @Pattern) AND (@State IS NULL OR state = @State)
              AND (@Subscriber IS NULL OR subscriber = @Subscriber)
              AND (@Serial IS NULL OR serial = @Serial) AND (@Domain IS NULL OR LOWER(domain) = @Domain)
              AND (@SeenBefore IS NULL OR last_seen < @SeenBefore) AND (@SeenAfter IS NULL OR last_seen >= @SeenAfter)
              AND (@Online IS NULL OR online = @Online)
            ORDER BY mac
            """, new
        {
            q.Pattern, q.State, q.Subscriber, q.Serial, Domain = q.Domain?.ToLowerInvariant(),
            SeenBefore = q.SeenBefore is { } b ? TsunaguStore.Timestamp(b) : null,
            SeenAfter = q.SeenAfter is { } a ? TsunaguStore.Timestamp(a) : null,
            Online = q.Online is { } o ? (long?)(o ? 1 : 0) : null,
        }, cancellationToken: ct))).ToList();
        if (q.Application is null)
        {
            return rows;
        }
        // software version filter: from each unit's reported inventory
        return rows.Where(r => r.Inventory is { } json &&
                               JsonSerializer.Deserialize(json, ProtocolJson.Default.Inventory) is { } inv &&
                               inv.Applications.TryGetValue(q.Application, out var v) && (q.Version is null || v == q.Version)).ToList();
    }

    /// <summary>Marks the unit as seen now, optionally moving it to <paramref name="state"/>.</summary>
    /// <remarks>A bare touch (no state, no error) within <see cref="TsunaguStore.LastSeenResolution"/> of this replica's last write of the unit's last_seen writes nothing.</remarks>
    public async Task<bool> TouchAsync(string mac, string? state = null, string? error = null, bool clearError = false, CancellationToken ct = default)
    {
        var now = _store.Time.GetUtcNow();
        if (state is null && error is null && !clearError && _store.LastSeenWritten.TryGetValue(mac, out var written) &&
            now - written < TsunaguStore.LastSeenResolution && now >= written)
        {
            return true;
        }
        // an error is reported once: it waits for the disk; the rest is reported again on the next contact
        await using var c = error is null ? await _store.OpenUnitReportAsync(ct) : await _store.OpenAsync(ct);
        var active = await c.ExecuteAsync(new CommandDefinition("""
            UPDATE units SET last_seen = @now, state = COALESCE(@state, state),
                   last_error = CASE WHEN @clear = 1 THEN NULL ELSE COALESCE(@error, last_error) END
            WHERE mac = @mac AND decommissioned_at IS NULL
            """, new { mac, now = TsunaguStore.Timestamp(now), state, error, clear = clearError ? 1 : 0 }, cancellationToken: ct)) > 0;
        if (active) { _store.LastSeenWritten[mac] = now; }
        else { _store.LastSeenWritten.TryRemove(mac, out _); }
        return active;
    }

    /// <summary>True when <paramref name="inventory"/> (serialized as <paramref name="json"/>), the pattern, the state and the bundle counter are what <paramref name="known"/> holds.</summary>
    private static bool Unchanged(UnitCheckRow known, Inventory inventory, string json, string? pattern, string? state) =>
        known.Inventory == json && (pattern is null || pattern == known.Pattern) && (state is null || state == known.State) && !RaisesCounter(known, inventory);

    /// <summary>True when the inventory's bundle counter is above the one <paramref name="known"/> holds (it is raised: reported once, written durably).</summary>
    private static bool RaisesCounter(UnitCheckRow known, Inventory inventory) =>
        inventory.LastBundle is { } counter && !(known.LastBundleVersion is { } v && v >= counter.Version);

    /// <summary>Records the inventory, pattern, state and WAN address (each null: left as it was) and raises the bundle counter, in one transaction.</summary>
    public async Task RecordInventoryAsync(string mac, Inventory inventory, string? pattern, string? state, string? wanAddress = null, CancellationToken ct = default)
    {
        var at = _store.Time.GetUtcNow();
        // the bundle counter is reported once: it waits for the disk; the rest is reported again on the next contact
        await using var c = inventory.LastBundle is null ? await _store.OpenUnitReportAsync(ct) : await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        await WriteInventoryAsync(c, tx, mac, inventory, pattern, state, wanAddress, null, TsunaguStore.Timestamp(at), ct);
        await tx.CommitAsync(ct);
        _store.LastSeenWritten[mac] = at;
    }

    /// <summary>
    /// Inside the caller's transaction: raises the bundle counter (never lowers it) and writes the inventory, pattern,
    /// state, WAN address and last error (each null: left as it was) with last_seen <paramref name="now"/>.
    /// </summary>
    private static async Task WriteInventoryAsync(DbConnection c, DbTransaction tx, string mac, Inventory inventory, string? pattern, string? state, string? wanAddress,
        string? lastError, string now, CancellationToken ct)
    {
        if (inventory.LastBundle is { } counter)
        {
            await c.ExecuteAsync(new CommandDefinition("""
                UPDATE units SET last_bundle_version = @Version, last_bundle_id = @BundleId
                WHERE mac = @mac AND (last_bundle_version IS NULL OR last_bundle_version < @Version)
                """, new { mac, counter.Version, counter.BundleId }, tx, cancellationToken: ct));
        }
        await c.ExecuteAsync(new CommandDefinition("""
            UPDATE units SET inventory = @inventory, pattern = COALESCE(@pattern, pattern), state = COALESCE(@state, state),
                   wan_address = COALESCE(@wanAddress, wan_address), last_error = COALESCE(@lastError, last_error), last_seen = @now
            WHERE mac = @mac AND decommissioned_at IS NULL
            """, new { mac, inventory = JsonSerializer.Serialize(inventory, ProtocolJson.Default.Inventory), pattern, state, wanAddress, lastError, now }, tx, cancellationToken: ct));
    }

    /// <summary>
    /// What a version check of a unit on a verified pattern records, in one transaction (a failure, or the unit hanging up,
    /// leaves nothing of it): the inventory with <paramref name="pattern"/>, <paramref name="state"/> and the bundle counter
    /// when any of them differs from <paramref name="known"/> (the row the check read), else only last_seen (at most once per
    /// <see cref="TsunaguStore.LastSeenResolution"/>); and the history entry <paramref name="detail"/>, which a periodic check that repeats
    /// the unit's newest entry does not add again. A check that offers <paramref name="offer"/> (null: none) records the
    /// offer first in the same transaction (<see cref="RolloutStore.RecordOfferInAsync"/>): the program still in the catalogue as the
    /// check read it, the rollout's record of the offer, a way back's pinned target and its audit entry. The check commits
    /// all of it or none: when the offer is withheld (<see cref="OfferWithheld"/>), nothing is written and the caller
    /// records the check again without it. A check that changes nothing writes nothing and begins no transaction; nor does
    /// an offer that writes nothing of its own (no rollout to record, no pin) in such a check: the unit is recorded as being
    /// updated from the program's pattern already, which keeps the program from being deleted. It waits for the disk only
    /// when the bundle counter rises or the offer records something of its own (a rollout's first offer to a member, a way
    /// back's pinned target). Wrote: it wrote the inventory.
    /// </summary>
    public async Task<(bool Wrote, OfferWithheld Withheld)> RecordCheckAsync(UnitCheckRow known, Inventory inventory, string pattern, string state, string detail, bool forced,
        CheckOffer? offer = null, CancellationToken ct = default)
    {
        var mac = known.Mac;
        var at = _store.Time.GetUtcNow();
        var changed = !Unchanged(known, inventory, JsonSerializer.Serialize(inventory, ProtocolJson.Default.Inventory), pattern, state);
        var touch = !changed && !(_store.LastSeenWritten.TryGetValue(mac, out var written) && at - written < TsunaguStore.LastSeenResolution && at >= written);
        var entry = forced || !(_store.LastEvent.TryGetValue(mac, out var last) && last.Kind == UnitEventKinds.Check && last.Detail == detail);
        var offers = offer is { Rollout: not null } or { WayBack: not null };
        if (!changed && !touch && !entry && !offers) { return (false, OfferWithheld.None); }
        var now = TsunaguStore.Timestamp(at);
        await using var c = RaisesCounter(known, inventory) || offers ? await _store.OpenAsync(ct) : await _store.OpenUnitReportAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        if (offer is not null && await _store.Rollouts.RecordOfferInAsync(c, tx, mac, offer, ct) is not OfferWithheld.None and var withheld)
        {
            return (false, withheld); // disposing the transaction rolls it back
        }
        if (changed)
        {
            await WriteInventoryAsync(c, tx, mac, inventory, pattern, state, null, null, now, ct);
        }
        else if (touch)
        {
            await c.ExecuteAsync(new CommandDefinition("UPDATE units SET last_seen = @now WHERE mac = @mac AND decommissioned_at IS NULL", new { mac, now }, tx, cancellationToken: ct));
        }
        if (entry) { await HistoryStore.InsertUnitEventAsync(c, tx, mac, now, UnitEventKinds.Check, detail, failed: false, ct); }
        await tx.CommitAsync(ct);
        // this replica's memory of what it wrote changes only with the commit: a rolled back check is written again next time
        if (changed || touch) { _store.LastSeenWritten[mac] = at; }
        if (entry) { _store.LastEvent[mac] = (UnitEventKinds.Check, detail); }
        return (changed, OfferWithheld.None);
    }

    /// <summary>
    /// What a version check whose inventory matches no verified pattern records, in one transaction that waits for the disk:
    /// the inventory and bundle counter, the state <see cref="UnitStates.OffPattern"/> (the recorded pattern stays), the last
    /// error <paramref name="error"/> and the failed history entry <paramref name="detail"/>. A failure, or the unit hanging
    /// up, leaves nothing of it.
    /// </summary>
    public async Task RecordOffPatternCheckAsync(string mac, Inventory inventory, string error, string detail, CancellationToken ct = default)
    {
        var at = _store.Time.GetUtcNow();
        var now = TsunaguStore.Timestamp(at);
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        await WriteInventoryAsync(c, tx, mac, inventory, null, UnitStates.OffPattern, null, error, now, ct);
        await HistoryStore.InsertUnitEventAsync(c, tx, mac, now, UnitEventKinds.Check, detail, failed: true, ct);
        await tx.CommitAsync(ct);
        _store.LastSeenWritten[mac] = at;
        _store.LastEvent[mac] = (UnitEventKinds.Check, detail);
    }

    public async Task SetPresenceAsync(string mac, bool online, CancellationToken ct = default)
    {
        await using var c = await _store.OpenUnitReportAsync(ct);
        await c.ExecuteAsync(new CommandDefinition("UPDATE units SET online = @online, presence_at = @now WHERE mac = @mac", new { mac, online = online ? 1 : 0, now = _store.Now() }, cancellationToken: ct));
    }

    /// <summary>
    /// Sets (or clears) the unit's target pattern, with <paramref name="audit"/> (when given) in the same transaction. A
    /// return after a rollout's abort that the unit was in ends with it: the operator's target stands.
    /// </summary>
    public async Task SetTargetPatternAsync(string mac, string? pattern, AuditEntry? audit = null, CancellationToken ct = default) =>
        await _store.WriteAsync(async (c, tx) =>
        {
            // rollout_units before units, the order the abort and the end of returns lock them in (no deadlock on PostgreSQL)
            await c.ExecuteAsync(new CommandDefinition("""
                UPDATE rollout_units SET returned = 'return to ' || return_to || ' ended: the target was set to ' || @target, return_to = NULL
                WHERE mac = @mac AND return_to IS NOT NULL
                """, new { mac, target = pattern ?? "none" }, tx, cancellationToken: ct));
            await c.ExecuteAsync(new CommandDefinition("UPDATE units SET target_pattern = @pattern WHERE mac = @mac", new { mac, pattern }, tx, cancellationToken: ct));
        }, audit, ct);

    // ---- challenges -------------------------------------------------------------------------------------

    public async Task AddChallengeAsync(ChallengeRow challenge, CancellationToken ct = default)
    {
        await using var c = await _store.OpenUnitReportAsync(ct);
        // one SQLite process cleans up as it goes; on PostgreSQL one replica does it (Cluster.ReplicaLease)
        if (_store.Database.Kind == DatabaseKind.Sqlite) { await c.ExecuteAsync(new CommandDefinition("DELETE FROM challenges WHERE expires_at < @now", new { now = _store.Now() }, cancellationToken: ct)); }
        await InsertChallengeAsync(c, null, challenge, ct);
    }

    /// <summary>Stores a challenge or a steady-check nonce (in <paramref name="tx"/> when given): the one INSERT of the table.</summary>
    internal static Task InsertChallengeAsync(System.Data.Common.DbConnection c, System.Data.Common.DbTransaction? tx, ChallengeRow challenge, CancellationToken ct) =>
        c.ExecuteAsync(new CommandDefinition("INSERT INTO challenges (id, mac, purpose, nonce, expires_at) VALUES (@Id, @Mac, @Purpose, @Nonce, @ExpiresAt)",
            challenge, tx, cancellationToken: ct));

    /// <summary>
    /// Removes and returns the challenge <paramref name="id"/> of <paramref name="purpose"/>: each nonce answers at most one
    /// proof, and one of another purpose (a steady-check nonce at /host/session) is neither returned nor used up.
    /// </summary>
    public async Task<ChallengeRow?> TakeChallengeAsync(string id, string purpose, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.QuerySingleOrDefaultAsync<ChallengeRow>(new CommandDefinition("DELETE FROM challenges WHERE id = @id AND purpose = @purpose RETURNING *",
            new { id, purpose }, cancellationToken: ct));
    }
}
