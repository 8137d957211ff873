using Dapper;

namespace Tsunagu.Server.Data;

/// <summary>
/// A running or paused rollout whose group has a maintenance window and that holds a unit as a member not yet on the
/// rollout's to-pattern: the rollout, its group and window, its update program's id and importance.
/// </summary>
public sealed class UnitRolloutUse
{
    public string Name { get; set; } = "";
    public string GroupName { get; set; } = "";
    public string Window { get; set; } = "";
    public string UpdateId { get; set; } = "";
    public long Importance { get; set; }
}

public sealed partial class TsunaguStore
{
    /// <summary>
    /// Sets a unit's own low-utilisation window (both hours, or neither: the fleet's policy) and time zone (null: the
    /// fleet's), with the audit entry, in one transaction. False when the unit is not registered.
    /// </summary>
    public async Task<bool> SetUpdateWindowAsync(string mac, int? startHour, int? endHour, string? timeZone, AuditEntry audit, CancellationToken ct = default) =>
        await SetUpdateWindowCheckedAsync(mac, startHour, endHour, timeZone, _ => null, audit, ct);

    /// <summary>
    /// <see cref="SetUpdateWindowAsync"/>, after <paramref name="refuse"/> has seen the running and paused rollouts whose
    /// group has a maintenance window and that hold the unit as a member not yet on their to-pattern (with the window and
    /// their update's importance) and found no reason to refuse; its reason becomes a <see cref="StoreConflictException"/>
    /// and nothing is written. They are read inside the transaction, under the catalogue's lock, which a group's window
    /// change (<see cref="SetGroupWindowCheckedAsync(string, string?, Func{IReadOnlyList{GroupRolloutUse}, Protocol.UpdatePolicy, IReadOnlyList{MemberHoursUse}, string?}, AuditEntry, CancellationToken)"/>)
    /// and a rollout's creation take too: whichever of them commits second sees what the first wrote.
    /// </summary>
    public async Task<bool> SetUpdateWindowCheckedAsync(string mac, int? startHour, int? endHour, string? timeZone, Func<IReadOnlyList<UnitRolloutUse>, string?> refuse,
        AuditEntry audit, CancellationToken ct = default)
    {
        await using var c = await OpenAsync(ct);
        await using var tx = await BeginAsync(c, ct);
        await LockCatalogueAsync(c, tx, ct);
        var uses = (await c.QueryAsync<UnitRolloutUse>(new CommandDefinition("""
            SELECT r.name AS Name, r.group_name AS GroupName, g.maintenance_window AS Window, r.update_id AS UpdateId, p.importance AS Importance
            FROM rollout_units m JOIN rollouts r ON r.name = m.rollout JOIN unit_groups g ON g.name = r.group_name
                 JOIN update_programs p ON p.id = r.update_id JOIN units u ON u.mac = m.mac
            WHERE m.mac = @mac AND r.state IN ('running', 'paused') AND g.maintenance_window IS NOT NULL
              AND (u.pattern IS NULL OR u.pattern <> r.to_pattern)
            ORDER BY r.name
            """, new { mac }, tx, cancellationToken: ct))).ToList();
        if (refuse(uses) is { } why) { throw new StoreConflictException(why); }
        var changed = await c.ExecuteAsync(new CommandDefinition("UPDATE units SET low_window_start = @startHour, low_window_end = @endHour, time_zone = @timeZone WHERE mac = @mac",
            new { mac, startHour, endHour, timeZone }, tx, cancellationToken: ct));
        if (changed == 0) { return false; }
        await WriteAuditAsync(c, tx, audit, ct);
        await tx.CommitAsync(ct);
        return true;
    }
}
