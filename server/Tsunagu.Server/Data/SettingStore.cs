using Dapper;

namespace Tsunagu.Server.Data;

/// <summary>Settings (part of the catalogue snapshot).</summary>
public sealed class SettingStore
{
    private readonly TsunaguStore _store;

    internal SettingStore(TsunaguStore store) => _store = store;

    // ---- settings ------------------------------------------------------------------------------------------

    public async Task<string?> GetSettingAsync(string key, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.QuerySingleOrDefaultAsync<string>(new CommandDefinition("SELECT value FROM settings WHERE key = @key", new { key }, cancellationToken: ct));
    }

    /// <summary>
    /// Sets a setting, with <paramref name="audit"/> (when given) in the same transaction; settings are part of the
    /// catalogue snapshot, so this moves the catalogue stamp.
    /// </summary>
    public async Task SetSettingAsync(string key, string value, AuditEntry? audit = null, CancellationToken ct = default)
    {
        if (key == CatalogueStore.CatalogueStampKey)
        {
            throw new ArgumentException($"setting {key} is kept by the store itself", nameof(key));
        }
        await _store.Catalogue.CatalogueWriteAsync(async (c, tx) =>
        {
            await c.ExecuteAsync(new CommandDefinition(UpsertSettingSql, new { key, value }, tx, cancellationToken: ct));
            await _store.WriteAuditAsync(c, tx, audit, ct);
            return 0;
        }, ct);
    }

    /// <summary>
    /// Sets a setting with its audit entry (moving the catalogue stamp), after <paramref name="refuse"/> has seen the
    /// running and paused rollouts whose group has a maintenance window (with the window and their update's importance)
    /// and found no reason to refuse; its reason becomes a <see cref="StoreConflictException"/> and nothing is written.
    /// They are read inside the transaction, under the catalogue's lock, which a group's window change
    /// (<see cref="FleetStore.SetGroupWindowCheckedAsync(string, string?, Func{IReadOnlyList{GroupRolloutUse}, Protocol.UpdatePolicy, IReadOnlyList{MemberHoursUse}, string?}, AuditEntry, CancellationToken)"/>) and a rollout's creation (<see cref="RolloutStore.AddRolloutAsync(IReadOnlyList{string}, Func{IReadOnlyDictionary{string, GroupRow}, Protocol.UpdatePolicy, Task{ValueTuple{RolloutRow, IReadOnlyList{Fleet.Rollouts.RolloutMember}, AuditEntry}}}, CancellationToken)"/>)
    /// take too: whichever of them commits second sees what the first wrote.
    /// </summary>
    public async Task SetSettingCheckedAsync(string key, string value, Func<IReadOnlyList<WindowedRolloutUse>, string?> refuse, AuditEntry audit, CancellationToken ct)
    {
        if (key == CatalogueStore.CatalogueStampKey)
        {
            throw new ArgumentException($"setting {key} is kept by the store itself", nameof(key));
        }
        await _store.Catalogue.CatalogueWriteAsync(async (c, tx) =>
        {
            var uses = (await c.QueryAsync<WindowedRolloutUse>(new CommandDefinition("""
                SELECT r.name AS Name, r.group_name AS GroupName, g.maintenance_window AS Window, r.update_id AS UpdateId, p.importance AS Importance
                FROM rollouts r JOIN unit_groups g ON g.name = r.group_name JOIN update_programs p ON p.id = r.update_id
                WHERE r.state IN ('running', 'paused') AND g.maintenance_window IS NOT NULL ORDER BY r.name
                """, transaction: tx, cancellationToken: ct))).ToList();
            if (refuse(uses) is { } why) { throw new StoreConflictException(why); }
            await c.ExecuteAsync(new CommandDefinition(UpsertSettingSql, new { key, value }, tx, cancellationToken: ct));
            await _store.WriteAuditAsync(c, tx, audit, ct);
            return 0;
        }, ct);
    }

    /// <summary>The update policy as stored, read inside the caller's transaction (the default when none is stored).</summary>
    internal static async Task<Protocol.UpdatePolicy> ReadUpdatePolicyAsync(System.Data.Common.DbConnection c, System.Data.Common.DbTransaction tx, CancellationToken ct) =>
        Apis.PolicySettings.Parse(await c.QuerySingleOrDefaultAsync<string>(new CommandDefinition("SELECT value FROM settings WHERE key = @key",
            new { key = Apis.PolicySettings.Key }, tx, cancellationToken: ct)));

    internal const string UpsertSettingSql = "INSERT INTO settings (key, value) VALUES (@key, @value) ON CONFLICT(key) DO UPDATE SET value = excluded.value";
}
