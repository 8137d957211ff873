using Dapper;

namespace Tsunagu.Server.Data;

/// <summary>Update windows: a unit's own maintenance window, and the rollout members still waiting for theirs.</summary>
public sealed class UpdateWindowStore
{
    private readonly TsunaguStore _store;

    internal UpdateWindowStore(TsunaguStore store) => _store = store;

    /// <summary>
    /// The one rule for a member (<c>m</c>, of <c>rollout_units</c>) of rollout <c>r</c> (unit <c>u</c>) that the gate may
    /// still offer the rollout's update to: an active unit on the rollout's from-pattern, with no target pattern or the
    /// rollout's to-pattern as its target (a unit pinned elsewhere, e.g. taken back by a way back, is offered another
    /// program or none), and with no failed report of the rollout's update since it joined (the gate never offers it
    /// again). A member offered the update before counts too: the gate (<c>RolloutService.AdmitAsync</c>) applies the
    /// windows at every version check, and an offered unit comes back to one when it deferred the offer itself (its own
    /// importance check), or its link or session ended, or it restarted, before the install. The window checks and the
    /// rollout view's <c>neverOffered</c> all use it.
    /// </summary>
    internal const string WaitingMember = """
        u.decommissioned_at IS NULL AND u.pattern = r.from_pattern AND (u.target_pattern IS NULL OR u.target_pattern = r.to_pattern)
        AND NOT EXISTS (SELECT 1 FROM update_reports f WHERE f.mac = m.mac AND f.update_id = r.update_id AND f.success = 0 AND f.at >= m.joined_at)
        """;

    /// <summary>
    /// The members of rollout <paramref name="rollout"/> that still wait to be offered its update (<see cref="WaitingMember"/>)
    /// and have low-utilisation hours or a maintenance window of their own, sorted by MAC: at most <paramref name="limit"/>, after
    /// <paramref name="after"/> when given (a keyset page: one indexed range of the rollout's members, whatever its size;
    /// the condition is left out without <paramref name="after"/>, so SQLite, which plans before it sees the values, still
    /// starts the range at <paramref name="after"/>).
    /// With <paramref name="installing"/> false, the members installing the update now are left out: offered it and
    /// reporting state Updating, and not offline (the rule of the rollout's <c>downloading</c> count, <see cref="RolloutStore.RolloutMembersAsync"/>).
    /// </summary>
    public async Task<IReadOnlyList<MemberHoursUse>> WaitingMembersWithOwnHoursAsync(string rollout, string? after, int limit, bool installing, CancellationToken ct)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(limit);
        await using var c = await _store.OpenAsync(ct);
        return [.. await c.QueryAsync<MemberHoursUse>(new CommandDefinition($"""
            SELECT m.rollout AS Rollout, m.mac AS Mac, u.low_window_start AS StartHour, u.low_window_end AS EndHour, u.maintenance_window AS Window
            FROM rollout_units m JOIN rollouts r ON r.name = m.rollout JOIN units u ON u.mac = m.mac
            WHERE m.rollout = @rollout {(after is null ? "" : "AND m.mac > @after")}
              AND ((u.low_window_start IS NOT NULL AND u.low_window_end IS NOT NULL) OR u.maintenance_window IS NOT NULL) AND {WaitingMember}
              {(installing ? "" : InstallingLeftOut)}
            ORDER BY m.mac
            LIMIT @limit
            """, new { rollout, after, limit }, cancellationToken: ct))];
    }

    /// <summary>Leaves out a member installing the update now: state Updating and not offline (online, or never seen going, and seen at least once).</summary>
    private const string InstallingLeftOut = $"""
        AND NOT (u.state = '{UnitStates.Updating}' AND NOT ((u.online = 0 AND u.presence_at IS NOT NULL) OR u.last_seen IS NULL))
        """;

    /// <summary>
    /// Sets a unit's own low-utilisation window (both hours, or neither: the fleet's policy) and time zone (null: the
    /// fleet's), with the audit entry, in one transaction. False when the unit is not registered.
    /// </summary>
    public async Task<bool> SetUpdateWindowAsync(string mac, int? startHour, int? endHour, string? timeZone, AuditEntry audit, CancellationToken ct = default) =>
        await SetUpdateWindowCheckedAsync(mac, startHour, endHour, timeZone, null, _ => null, audit, ct);

    /// <summary>
    /// <see cref="SetUpdateWindowAsync"/>, after <paramref name="refuse"/> has seen the running and paused rollouts whose
    /// group has a maintenance window and that hold the unit as a member the gate may still offer their update to
    /// (<see cref="WaitingMember"/>; with the window and their update's importance) and found no reason to refuse; its
    /// reason becomes a <see cref="StoreConflictException"/> and nothing is written. <paramref name="window"/>: the unit's
    /// own maintenance window as <see cref="Protocol.MaintenanceWindow"/> writes it (null: none). When the hours stay as
    /// stored and the window stays or goes (a change of the zone alone, or back to the policy's hours) nothing gets worse
    /// and <paramref name="refuse"/> is not asked. They are read inside the transaction, under the catalogue's lock, which a group's window
    /// change (<see cref="FleetStore.SetGroupWindowCheckedAsync(string, string?, Func{IReadOnlyList{GroupRolloutUse}, Protocol.UpdatePolicy, IReadOnlyList{MemberHoursUse}, string?}, AuditEntry, CancellationToken)"/>)
    /// and a rollout's creation take too: whichever of them commits second sees what the first wrote.
    /// </summary>
    public async Task<bool> SetUpdateWindowCheckedAsync(string mac, int? startHour, int? endHour, string? timeZone, string? window,
        Func<IReadOnlyList<WindowedRolloutUse>, string?> refuse, AuditEntry audit, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        await _store.CatalogueEdits.LockCatalogueAsync(c, tx, ct);
        var stored = await c.QuerySingleOrDefaultAsync<UnitClockRow>(new CommandDefinition(
            "SELECT mac, low_window_start, low_window_end, maintenance_window FROM units WHERE mac = @mac", new { mac }, tx, cancellationToken: ct));
        if (stored is null) { return false; }
        if (stored.LowWindowStart != startHour || stored.LowWindowEnd != endHour || (window is not null && window != stored.MaintenanceWindow))
        {
            var uses = (await c.QueryAsync<WindowedRolloutUse>(new CommandDefinition($"""
                SELECT r.name AS Name, r.group_name AS GroupName, g.maintenance_window AS Window, r.update_id AS UpdateId, p.importance AS Importance
                FROM rollout_units m JOIN rollouts r ON r.name = m.rollout JOIN unit_groups g ON g.name = r.group_name
                     JOIN update_programs p ON p.id = r.update_id JOIN units u ON u.mac = m.mac
                WHERE m.mac = @mac AND r.state IN ('running', 'paused') AND g.maintenance_window IS NOT NULL AND {WaitingMember}
                ORDER BY r.name
                """, new { mac }, tx, cancellationToken: ct))).ToList();
            if (refuse(uses) is { } why) { throw new StoreConflictException(why); }
        }
        var changed = await c.ExecuteAsync(new CommandDefinition(
            "UPDATE units SET low_window_start = @startHour, low_window_end = @endHour, time_zone = @timeZone, maintenance_window = @window WHERE mac = @mac",
            new { mac, startHour, endHour, timeZone, window }, tx, cancellationToken: ct));
        if (changed == 0) { return false; }
        await _store.WriteAuditAsync(c, tx, audit, ct);
        await tx.CommitAsync(ct);
        return true;
    }
}
