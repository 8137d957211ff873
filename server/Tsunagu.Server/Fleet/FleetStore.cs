using System.Text.Json;
using Dapper;
using Tsunagu.Server.Fleet;

namespace Tsunagu.Server.Data;

/// <summary>A row of unit_groups: a static list of MACs or a filter (<see cref="GroupFilter"/>), as JSON.</summary>
public sealed class GroupRow
{
    public string Name { get; set; } = "";
    public string Kind { get; set; } = "";
    public string Definition { get; set; } = "";
    public string CreatedBy { get; set; } = "";
    public string CreatedAt { get; set; } = "";

    /// <summary>The group's maintenance window as <see cref="Tsunagu.Protocol.MaintenanceWindow"/> writes it; null: none.</summary>
    public string? MaintenanceWindow { get; set; }
}

/// <summary>A running or paused rollout whose group has a maintenance window: the rollout, its group and window, its update program's id and importance.</summary>
public sealed class WindowedRolloutUse
{
    public string Name { get; set; } = "";
    public string GroupName { get; set; } = "";
    public string Window { get; set; } = "";
    public string UpdateId { get; set; } = "";
    public long Importance { get; set; }
}

/// <summary>
/// A member of a running or paused rollout the gate may still offer its update to (<see cref="UpdateWindowStore.WaitingMember"/>),
/// with low-utilisation hours (both or neither) or a maintenance window of its own.
/// </summary>
public sealed class MemberHoursUse
{
    public string Rollout { get; set; } = "";
    public string Mac { get; set; } = "";
    public long? StartHour { get; set; }
    public long? EndHour { get; set; }
    public string? Window { get; set; }

    /// <summary>The member's own clock, as the window checks read it.</summary>
    public UnitClockRow Clock => new() { Mac = Mac, LowWindowStart = StartHour, LowWindowEnd = EndHour, MaintenanceWindow = Window };
}

/// <summary>A rollout that moves a group now: its name and its update program's id and importance.</summary>
public sealed class GroupRolloutUse
{
    public string Name { get; set; } = "";
    public string UpdateId { get; set; } = "";
    public long Importance { get; set; }
}

/// <summary>Tags on units and groups of units.</summary>
public sealed class FleetStore
{
    private readonly TsunaguStore _store;

    internal FleetStore(TsunaguStore store) => _store = store;

    /// <summary>A unit's tags, sorted.</summary>
    public async Task<IReadOnlyList<string>> GetTagsAsync(string mac, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await c.QueryAsync<string>(new CommandDefinition("SELECT tag FROM unit_tags WHERE mac = @mac ORDER BY tag", new { mac }, cancellationToken: ct))).ToList();
    }

    /// <summary>Each tagged unit's tags (units without tags are absent).</summary>
    public async Task<IReadOnlyDictionary<string, IReadOnlyList<string>>> AllTagsAsync(CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await c.QueryAsync<(string Mac, string Tag)>(new CommandDefinition("SELECT mac, tag FROM unit_tags ORDER BY mac, tag", cancellationToken: ct)))
            .GroupBy(r => r.Mac, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => (IReadOnlyList<string>)g.Select(r => r.Tag).ToList(), StringComparer.Ordinal);
    }

    /// <summary>Every tag in use and how many units carry it.</summary>
    public async Task<IReadOnlyList<(string Tag, long Units)>> ListTagCountsAsync(CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await c.QueryAsync<(string Tag, long Units)>(new CommandDefinition("SELECT tag, COUNT(*) FROM unit_tags GROUP BY tag ORDER BY tag", cancellationToken: ct))).ToList();
    }

    /// <summary>The MACs of the units carrying <paramref name="tag"/>.</summary>
    public async Task<IReadOnlyList<string>> UnitsWithTagAsync(string tag, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await c.QueryAsync<string>(new CommandDefinition("SELECT mac FROM unit_tags WHERE tag = @tag ORDER BY mac", new { tag }, cancellationToken: ct))).ToList();
    }

    /// <summary>
    /// Replaces a unit's tags (already checked against <see cref="Tags.Invalid"/>) with the audit entry, in one
    /// transaction. False when the unit is not registered (nothing written).
    /// </summary>
    public async Task<bool> SetTagsAsync(string mac, IReadOnlyList<string> tags, AuditEntry audit, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        if (await c.ExecuteScalarAsync<long>(new CommandDefinition("SELECT COUNT(*) FROM units WHERE mac = @mac AND decommissioned_at IS NULL", new { mac }, tx, cancellationToken: ct)) == 0) { return false; }
        await WriteTagsAsync(c, tx, mac, tags, ct);
        await _store.WriteAuditAsync(c, tx, audit, ct);
        await tx.CommitAsync(ct);
        return true;
    }

    internal static async Task WriteTagsAsync(System.Data.Common.DbConnection c, System.Data.Common.DbTransaction tx, string mac, IReadOnlyList<string> tags, CancellationToken ct)
    {
        await c.ExecuteAsync(new CommandDefinition("DELETE FROM unit_tags WHERE mac = @mac", new { mac }, tx, cancellationToken: ct));
        foreach (var tag in Tags.Normal(tags))
        {
            await c.ExecuteAsync(new CommandDefinition("INSERT INTO unit_tags (mac, tag) VALUES (@mac, @tag)", new { mac, tag }, tx, cancellationToken: ct));
        }
    }

    // ---- groups ---------------------------------------------------------------------------------------------

    public async Task AddGroupAsync(GroupRow group, AuditEntry audit, CancellationToken ct = default)
    {
        group.CreatedAt = _store.Now();
        await _store.InsertAsync("""
            INSERT INTO unit_groups (name, kind, definition, created_by, created_at, maintenance_window)
            VALUES (@Name, @Kind, @Definition, @CreatedBy, @CreatedAt, @MaintenanceWindow)
            """, group, $"group {group.Name} exists", audit, ct);
    }

    /// <summary>
    /// Sets or clears a group's maintenance window with the audit entry in one transaction, after
    /// <paramref name="refuse"/> has seen the rollouts that move the group now (running or paused, with their update's
    /// importance) and the update policy, and found no reason to refuse; its reason becomes a
    /// <see cref="StoreConflictException"/> and nothing is written. The transaction takes the catalogue's lock first (as a
    /// policy change and a rollout's creation do) and reads both under it, so whichever of them commits second sees the
    /// other; on PostgreSQL the group's row is locked too (a delete of the group waits). False (nothing written) when there
    /// is no such group.
    /// </summary>
    public async Task<bool> SetGroupWindowCheckedAsync(string name, string? window, Func<IReadOnlyList<GroupRolloutUse>, Protocol.UpdatePolicy, string?> refuse,
        AuditEntry audit, CancellationToken ct) =>
        await SetGroupWindowCheckedAsync(name, window, (uses, policy, _) => refuse(uses, policy), audit, ct);

    /// <summary>
    /// <see cref="SetGroupWindowCheckedAsync(string, string?, Func{IReadOnlyList{GroupRolloutUse}, Protocol.UpdatePolicy, string?}, AuditEntry, CancellationToken)"/>,
    /// with the members of those rollouts (importance 3) that have low-utilisation hours of their own and still wait to be
    /// offered the update (<see cref="UpdateWindowStore.WaitingMember"/>), read in the same transaction under the catalogue's lock,
    /// which a unit's window change takes too.
    /// </summary>
    public async Task<bool> SetGroupWindowCheckedAsync(string name, string? window,
        Func<IReadOnlyList<GroupRolloutUse>, Protocol.UpdatePolicy, IReadOnlyList<MemberHoursUse>, string?> refuse, AuditEntry audit, CancellationToken ct)
    {
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        await _store.CatalogueEdits.LockCatalogueAsync(c, tx, ct);
        if (_store.Database.Kind == DatabaseKind.Postgres)
        {
            await c.ExecuteAsync(new CommandDefinition("SELECT name FROM unit_groups WHERE name = @name FOR UPDATE", new { name }, tx, cancellationToken: ct));
        }
        var uses = (await c.QueryAsync<GroupRolloutUse>(new CommandDefinition("""
            SELECT r.name AS Name, r.update_id AS UpdateId, p.importance AS Importance
            FROM rollouts r JOIN update_programs p ON p.id = r.update_id
            WHERE r.group_name = @name AND r.state IN ('running', 'paused') ORDER BY r.name
            """, new { name }, tx, cancellationToken: ct))).ToList();
        var hours = window is null || !uses.Any(u => u.Importance < 5) ? [] : (await c.QueryAsync<MemberHoursUse>(new CommandDefinition($"""
            SELECT m.rollout AS Rollout, m.mac AS Mac, u.low_window_start AS StartHour, u.low_window_end AS EndHour, u.maintenance_window AS Window
            FROM rollout_units m JOIN rollouts r ON r.name = m.rollout JOIN units u ON u.mac = m.mac JOIN update_programs p ON p.id = r.update_id
            WHERE r.group_name = @name AND r.state IN ('running', 'paused')
              AND ((p.importance = 3 AND u.low_window_start IS NOT NULL AND u.low_window_end IS NOT NULL) OR (p.importance < 5 AND u.maintenance_window IS NOT NULL))
              AND {UpdateWindowStore.WaitingMember}
            ORDER BY m.rollout, m.mac
            """, new { name }, tx, cancellationToken: ct))).ToList();
        if (refuse(uses, await SettingStore.ReadUpdatePolicyAsync(c, tx, ct), hours) is { } why) { throw new StoreConflictException(why); }
        if (await c.ExecuteAsync(new CommandDefinition("UPDATE unit_groups SET maintenance_window = @window WHERE name = @name", new { name, window }, tx,
                cancellationToken: ct)) == 0)
        {
            return false;
        }
        await _store.WriteAuditAsync(c, tx, audit, ct);
        await tx.CommitAsync(ct);
        return true;
    }

    public async Task<GroupRow?> GetGroupAsync(string name, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.QuerySingleOrDefaultAsync<GroupRow>(new CommandDefinition("SELECT * FROM unit_groups WHERE name = @name", new { name }, cancellationToken: ct));
    }

    public async Task<IReadOnlyList<GroupRow>> ListGroupsAsync(CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await c.QueryAsync<GroupRow>(new CommandDefinition("SELECT * FROM unit_groups ORDER BY name", cancellationToken: ct))).ToList();
    }

    /// <summary>
    /// Deletes a group with the audit entry; refused (<see cref="StoreConflictException"/>, nothing written) while a
    /// rollout that is not completed or aborted moves it. False when there is no such group.
    /// </summary>
    public async Task<bool> DeleteGroupAsync(string name, AuditEntry audit, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        if (_store.Database.Kind == DatabaseKind.Postgres)
        {
            // the group's row first: a rollout being created from it (which locks it shared) commits before the check below reads it
            await c.ExecuteAsync(new CommandDefinition("SELECT name FROM unit_groups WHERE name = @name FOR UPDATE", new { name }, tx, cancellationToken: ct));
        }
        var using_ = (await c.QueryAsync<string>(new CommandDefinition("SELECT name FROM rollouts WHERE group_name = @name AND state IN ('running', 'paused')", new { name }, tx, cancellationToken: ct))).ToList();
        if (using_.Count > 0) { throw new StoreConflictException($"group {name} is moved by rollout(s) {string.Join(", ", using_)}; abort them first"); }
        if (await c.ExecuteAsync(new CommandDefinition("DELETE FROM unit_groups WHERE name = @name", new { name }, tx, cancellationToken: ct)) == 0) { return false; }
        await _store.WriteAuditAsync(c, tx, audit, ct);
        await tx.CommitAsync(ct);
        return true;
    }

    /// <summary>The MACs of the active (not decommissioned) units a group holds now, sorted.</summary>
    public async Task<IReadOnlyList<string>> GroupMembersAsync(GroupRow group, CancellationToken ct = default)
    {
        if (group.Kind == GroupKinds.Static)
        {
            var macs = JsonSerializer.Deserialize<List<string>>(group.Definition, JsonSerializerOptions.Web) ?? [];
            await using var c = await _store.OpenAsync(ct);
            // in chunks: a statement has a bounded number of parameters
            var found = new List<string>();
            foreach (var chunk in macs.Chunk(500))
            {
                found.AddRange(await c.QueryAsync<string>(new CommandDefinition($"SELECT mac FROM units WHERE {InList("mac", "chunk")} AND decommissioned_at IS NULL", new { chunk }, cancellationToken: ct)));
            }
            return found.Order(StringComparer.Ordinal).ToList();
        }
        var filter = JsonSerializer.Deserialize<GroupFilter>(group.Definition, JsonSerializerOptions.Web) ?? new GroupFilter();
        return await FilterMembersAsync(filter, ct);
    }

    /// <summary>The MACs of the active units <paramref name="filter"/> selects now, sorted.</summary>
    public async Task<IReadOnlyList<string>> FilterMembersAsync(GroupFilter filter, CancellationToken ct = default)
    {
        if (filter.App is null)
        {
            // the columns only (no inventory to read): a rollout's pass evaluates its group each time
            await using var c = await _store.OpenAsync(ct);
            var macs = (await c.QueryAsync<string>(new CommandDefinition("""
                SELECT mac FROM units WHERE decommissioned_at IS NULL AND (@Pattern IS NULL OR pattern = @Pattern)
                  AND (@Board IS NULL OR hardware_version = @Board) AND (@Online IS NULL OR online = @Online)
                ORDER BY mac
                """, new { filter.Pattern, filter.Board, Online = filter.Online is { } o ? (long?)(o ? 1 : 0) : null }, cancellationToken: ct))).ToList();
            if (filter.Tags is not { Count: > 0 } wanted) { return macs; }
            var set = await TaggedWithAllAsync(c, wanted, ct);
            return macs.Where(set.Contains).ToList();
        }
        var rows = (await _store.Units.QueryUnitsAsync(new UnitQuery(filter.Pattern, null, filter.App, filter.Version, Online: filter.Online), ct))
            .Where(u => u.DecommissionedAt is null && (filter.Board is null || u.HardwareVersion == filter.Board));
        if (filter.Tags is { Count: > 0 } tags)
        {
            await using var c = await _store.OpenAsync(ct);
            var tagged = await TaggedWithAllAsync(c, tags, ct);
            rows = rows.Where(u => tagged.Contains(u.Mac));
        }
        return rows.Select(u => u.Mac).ToList();
    }

    /// <summary>
    /// <paramref name="column"/> is one of the list parameter <paramref name="parameter"/>: Dapper expands a list for
    /// SQLite (<c>IN @p</c>) but hands PostgreSQL an array (<c>= ANY(@p)</c>).
    /// </summary>
    internal string InList(string column, string parameter) =>
        _store.Database.Kind == DatabaseKind.Postgres ? $"{column} = ANY(@{parameter})" : $"{column} IN @{parameter}";

    private async Task<HashSet<string>> TaggedWithAllAsync(System.Data.Common.DbConnection c, IReadOnlyList<string> tags, CancellationToken ct)
    {
        var distinct = tags.Distinct(StringComparer.Ordinal).ToArray();
        return (await c.QueryAsync<string>(new CommandDefinition($"SELECT mac FROM unit_tags WHERE {InList("tag", "distinct")} GROUP BY mac HAVING COUNT(DISTINCT tag) = @n",
            new { distinct, n = (long)distinct.Length }, cancellationToken: ct))).ToHashSet(StringComparer.Ordinal);
    }

    /// <summary>The MACs of the active units on <paramref name="pattern"/>.</summary>
    public async Task<IReadOnlyList<string>> MacsOnPatternAsync(string pattern, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await c.QueryAsync<string>(new CommandDefinition("SELECT mac FROM units WHERE pattern = @pattern AND decommissioned_at IS NULL ORDER BY mac", new { pattern }, cancellationToken: ct))).ToList();
    }
}
