using System.Data.Common;
using System.Globalization;
using Dapper;
using Tsunagu.Server.Fleet.Rollouts;

namespace Tsunagu.Server.Data;

/// <summary>A row of rollouts (<see cref="RolloutEngine"/> decides on it).</summary>
public sealed class RolloutRow
{
    public string Name { get; set; } = "";
    public string GroupName { get; set; } = "";
    public string FromPattern { get; set; } = "";
    public string ToPattern { get; set; } = "";
    public string UpdateId { get; set; } = "";
    public string Waves { get; set; } = "[]";
    public long SuccessPercent { get; set; }
    public long ErrorPercent { get; set; }
    public string OnError { get; set; } = ErrorActions.Pause;
    public long MinWaveSeconds { get; set; }
    public string State { get; set; } = RolloutStates.Running;
    public long OpenWaves { get; set; }
    public string WaveOpenedAt { get; set; } = "";
    public string ErrorsSince { get; set; } = "";
    public string? Reason { get; set; }
    public string CreatedBy { get; set; } = "";
    public string CreatedAt { get; set; } = "";
    public string UpdatedAt { get; set; } = "";

    /// <summary>Until when the engine has looked for its group's window opening (migration 23); null: since it was created.</summary>
    public string? WindowLookedAt { get; set; }
}

/// <summary>A unit's own clock settings (its table row): its time zone and its low-utilisation hours; null: the fleet's.</summary>
public sealed class UnitClockRow
{
    public string Mac { get; set; } = "";
    public string? TimeZone { get; set; }
    public long? LowWindowStart { get; set; }
    public long? LowWindowEnd { get; set; }
    public string? MaintenanceWindow { get; set; }
}

/// <summary>What the version check's gate reads about a unit and the rollout holding its update's transition.</summary>
/// <param name="PreviousPattern">The member's pattern when the rollout first offered it the update; null: not offered yet (or not a member).</param>
/// <param name="GroupName">The rollout's group; <paramref name="Window"/> its maintenance window (null: none).</param>
/// <param name="TimeZone">The unit's own time zone (its table row; null: the fleet's).</param>
public sealed record RolloutGateRow(string Name, string State, long OpenWaves, long? Wave, string? JoinedAt, string? PreviousPattern,
    string GroupName, string? Window, string? TimeZone);

/// <summary>What the engine read when it decided to abort a rollout, and the units it adds to it (<see cref="RolloutStore.AbortRolloutReturningAsync"/>).</summary>
public sealed record ExpectedRollout(string State, long OpenWaves, IReadOnlyList<RolloutMember> Joins);

/// <summary>A return after an abort that ended in a pass of the engine: the unit runs the pattern again, or its target was changed meanwhile.</summary>
public sealed record ReturnEnd(string Rollout, string Mac, string Outcome);

/// <summary>
/// An update a version check is about to offer (<see cref="UnitStore.RecordCheckAsync"/>):
/// the program as the check read it from the catalogue, the rollout that records the unit's first offer (null: none, or
/// recorded before), and for a way back taken by a unit without a target the audit entry of the target it is pinned to
/// (the program's to-pattern; null: no pin).
/// </summary>
public sealed record CheckOffer(UpdateProgramRow Program, string? Rollout = null, AuditEntry? WayBack = null);

/// <summary>Why an offer was withheld inside the version check's transaction (nothing of the offer was written).</summary>
public enum OfferWithheld
{
    /// <summary>It stands: offered.</summary>
    None,

    /// <summary>The program was deleted or changed after the check read the catalogue.</summary>
    ProgramGone,

    /// <summary>The rollout stopped running, or the unit's wave closed, after the gate read it.</summary>
    RolloutStopped,
}

/// <summary>Rollouts: the rollout rows, their members, and what the engine reads about the members.</summary>
public sealed class RolloutStore
{
    private readonly TsunaguStore _store;

    internal RolloutStore(TsunaguStore store) => _store = store;

    /// <summary>
    /// Creates a rollout with its members (wave 1 open) and the audit entry in one transaction. A rollout of the same
    /// name, or one still running or paused for the same transition, makes it a <see cref="StoreConflictException"/>.
    /// The transaction takes the catalogue's lock first (a catalogue change is never between the check and the insert) and
    /// reads the transition again under it: its update program, its from-pattern, its verified to-pattern; one of them
    /// gone (a draft pattern deleted since the caller read them) is a <see cref="StoreConflictException"/> too. A pattern
    /// delete that waited for this transaction sees the rollout and is refused.
    /// </summary>
    public async Task AddRolloutAsync(RolloutRow rollout, IReadOnlyList<RolloutMember> members, AuditEntry audit, CancellationToken ct = default) =>
        await AddRolloutAsync([], _ => Task.FromResult((rollout, members, audit)), ct);

    /// <summary>
    /// Creates a rollout planned from the groups it names, inside the transaction that inserts it: the groups
    /// <paramref name="groupNames"/> that exist are read in it (SQLite: under the write lock; PostgreSQL: their rows locked
    /// shared, so a delete of one waits for the rollout or, having deleted first, is seen as missing), and
    /// <paramref name="plan"/> makes the rollout, its members and its audit entry of them (or throws, and nothing is
    /// written). A rollout of the same name, or one still running or paused for the same transition, makes it a
    /// <see cref="StoreConflictException"/>.
    /// </summary>
    public async Task AddRolloutAsync(IReadOnlyList<string> groupNames,
        Func<IReadOnlyDictionary<string, GroupRow>, Task<(RolloutRow Rollout, IReadOnlyList<RolloutMember> Members, AuditEntry Audit)>> plan, CancellationToken ct = default) =>
        await AddRolloutAsync(groupNames, (groups, _) => plan(groups), ct);

    /// <summary>
    /// <see cref="AddRolloutAsync(IReadOnlyList{string}, Func{IReadOnlyDictionary{string, GroupRow}, Task{ValueTuple{RolloutRow, IReadOnlyList{RolloutMember}, AuditEntry}}}, CancellationToken)"/>,
    /// with the update policy as stored, read in the same transaction under the catalogue's lock (which a policy change
    /// and a group's window change take too): <paramref name="plan"/> refuses a rollout its group's window and the policy
    /// would hold forever against the policy that stands when the rollout is stored.
    /// </summary>
    public async Task AddRolloutAsync(IReadOnlyList<string> groupNames,
        Func<IReadOnlyDictionary<string, GroupRow>, Protocol.UpdatePolicy, Task<(RolloutRow Rollout, IReadOnlyList<RolloutMember> Members, AuditEntry Audit)>> plan,
        CancellationToken ct = default) =>
        await AddRolloutAsync(groupNames, (groups, policy, _) => plan(groups, policy), ct);

    /// <summary>Reads, in the transaction of a rollout's creation, the own low-utilisation hours and maintenance windows of those of the given MACs that have either.</summary>
    public delegate Task<IReadOnlyDictionary<string, UnitClockRow>> OwnHoursReader(IReadOnlyCollection<string> macs);

    /// <summary>
    /// <see cref="AddRolloutAsync(IReadOnlyList{string}, Func{IReadOnlyDictionary{string, GroupRow}, Protocol.UpdatePolicy, Task{ValueTuple{RolloutRow, IReadOnlyList{RolloutMember}, AuditEntry}}}, CancellationToken)"/>,
    /// with a reader of the own low-utilisation hours of given units (by MAC) in the same transaction, under the
    /// catalogue's lock (which a unit's window change takes too): <paramref name="plan"/> asks it, only when it needs
    /// them (importance 3 and a group window) and only for the planned members, and refuses a rollout whose members' own
    /// hours its group's window would never meet, against the hours that stand when it is stored.
    /// </summary>
    public async Task AddRolloutAsync(IReadOnlyList<string> groupNames,
        Func<IReadOnlyDictionary<string, GroupRow>, Protocol.UpdatePolicy, OwnHoursReader,
            Task<(RolloutRow Rollout, IReadOnlyList<RolloutMember> Members, AuditEntry Audit)>> plan,
        CancellationToken ct = default)
    {
        var now = _store.Now();
        string? name = null;
        try
        {
            await using var c = await _store.OpenAsync(ct);
            await using var tx = await _store.BeginAsync(c, ct);
            await _store.CatalogueEdits.LockCatalogueAsync(c, tx, ct);
            var names = groupNames.Distinct(StringComparer.Ordinal).ToArray();
            var groups = names.Length == 0 ? []
                : (await c.QueryAsync<GroupRow>(new CommandDefinition($"SELECT * FROM unit_groups WHERE {_store.Fleet.InList("name", "names")}{(_store.Database.Kind == DatabaseKind.Postgres ? " FOR SHARE" : "")}",
                    new { names }, tx, cancellationToken: ct))).ToDictionary(g => g.Name, StringComparer.Ordinal);
            var (rollout, members, audit) = await plan(groups, await SettingStore.ReadUpdatePolicyAsync(c, tx, ct), macs => ReadOwnHoursAsync(c, tx, macs, ct));
            name = rollout.Name;
            rollout.CreatedAt = rollout.UpdatedAt = rollout.WaveOpenedAt = rollout.ErrorsSince = now;
            await CatalogueStore.RequireTransitionAsync(c, tx, rollout.FromPattern, rollout.ToPattern, $"rollout {rollout.Name}", ct);
            if (await c.ExecuteScalarAsync<long>(new CommandDefinition("SELECT COUNT(*) FROM update_programs WHERE id = @UpdateId AND from_pattern = @FromPattern AND to_pattern = @ToPattern",
                    rollout, tx, cancellationToken: ct)) == 0)
            {
                throw new StoreConflictException($"update program {rollout.UpdateId} no longer leads from {rollout.FromPattern} to {rollout.ToPattern}; nothing was stored");
            }
            var busy = (await c.QueryAsync<string>(new CommandDefinition("SELECT name FROM rollouts WHERE from_pattern = @FromPattern AND to_pattern = @ToPattern AND state IN ('running', 'paused')",
                rollout, tx, cancellationToken: ct))).ToList();
            if (busy.Count > 0)
            {
                throw new StoreConflictException($"rollout {busy[0]} already moves units from {rollout.FromPattern} to {rollout.ToPattern}; abort it first");
            }
            await c.ExecuteAsync(new CommandDefinition("""
                INSERT INTO rollouts (name, group_name, from_pattern, to_pattern, update_id, waves, success_percent, error_percent, on_error,
                                      min_wave_seconds, state, open_waves, wave_opened_at, errors_since, reason, created_by, created_at, updated_at)
                VALUES (@Name, @GroupName, @FromPattern, @ToPattern, @UpdateId, @Waves, @SuccessPercent, @ErrorPercent, @OnError,
                        @MinWaveSeconds, @State, @OpenWaves, @WaveOpenedAt, @ErrorsSince, @Reason, @CreatedBy, @CreatedAt, @UpdatedAt)
                """, rollout, tx, cancellationToken: ct));
            await InsertMembersAsync(c, tx, rollout.Name, members, now, ct);
            await _store.WriteAuditAsync(c, tx, audit, ct);
            await tx.CommitAsync(ct);
        }
        catch (System.Data.Common.DbException e) when (TsunaguStore.IsUniqueViolation(e))
        {
            throw new StoreConflictException($"rollout {name} exists");
        }
    }

    private static async Task InsertMembersAsync(System.Data.Common.DbConnection c, System.Data.Common.DbTransaction tx, string rollout, IReadOnlyList<RolloutMember> members, string now, CancellationToken ct)
    {
        foreach (var m in members)
        {
            await c.ExecuteAsync(new CommandDefinition("INSERT INTO rollout_units (rollout, mac, wave, joined_at) VALUES (@rollout, @mac, @wave, @now)",
                new { rollout, mac = m.Mac, wave = (long)m.Wave, now }, tx, cancellationToken: ct));
        }
    }

    public async Task<RolloutRow?> GetRolloutAsync(string name, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.QuerySingleOrDefaultAsync<RolloutRow>(new CommandDefinition("SELECT * FROM rollouts WHERE name = @name", new { name }, cancellationToken: ct));
    }

    public async Task<IReadOnlyList<RolloutRow>> ListRolloutsAsync(bool activeOnly = false, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await c.QueryAsync<RolloutRow>(new CommandDefinition($"SELECT * FROM rollouts {(activeOnly ? "WHERE state IN ('running', 'paused')" : "")} ORDER BY created_at, name", cancellationToken: ct))).ToList();
    }

    /// <summary>
    /// Every member of a rollout with its status now: installed (runs the new pattern), failed (a failed report of the
    /// rollout's update since it joined), offline (the broker saw it go, or it was never seen), downloading (offered
    /// the update), else pending. One query.
    /// </summary>
    public async Task<IReadOnlyList<RolloutMember>> RolloutMembersAsync(RolloutRow rollout, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await ReadMembersAsync(c, null, rollout, ct)).Select(m => m.Member).ToList();
    }

    private const string MembersQuery = """
        SELECT m.mac, m.wave, u.pattern, u.state, u.online, u.presence_at, u.last_seen, m.previous_pattern, u.target_pattern,
               (SELECT MAX(r.at) FROM update_reports r WHERE r.mac = m.mac AND r.update_id = @UpdateId AND r.success = 0 AND r.at >= m.joined_at) AS failed_at
        FROM rollout_units m JOIN units u ON u.mac = m.mac
        WHERE m.rollout = @Name
        ORDER BY m.wave, m.mac
        """;

    private sealed class MemberRead
    {
        public string Mac { get; set; } = "";
        public long Wave { get; set; }
        public string? Pattern { get; set; }
        public string State { get; set; } = "";
        public long Online { get; set; }
        public string? PresenceAt { get; set; }
        public string? LastSeen { get; set; }
        public string? FailedAt { get; set; }
        public string? PreviousPattern { get; set; }
        public string? TargetPattern { get; set; }
    }

    /// <summary>The members with their status (<see cref="RolloutMembersAsync"/>), the pattern each ran when first offered the update, and its target pattern now.</summary>
    private static async Task<IEnumerable<(RolloutMember Member, string? PreviousPattern, string? TargetPattern)>> ReadMembersAsync(System.Data.Common.DbConnection c,
        System.Data.Common.DbTransaction? tx, RolloutRow rollout, CancellationToken ct) =>
        (await c.QueryAsync<MemberRead>(new CommandDefinition(MembersQuery, rollout, tx, cancellationToken: ct))).Select(r =>
        {
            DateTimeOffset? failedAt = r.FailedAt is null ? null : DateTimeOffset.Parse(r.FailedAt, CultureInfo.InvariantCulture);
            var status = r.Pattern == rollout.ToPattern ? MemberStatus.Installed
                : failedAt is not null ? MemberStatus.Failed
                : (r.Online == 0 && r.PresenceAt is not null) || r.LastSeen is null ? MemberStatus.Offline
                : r.State == UnitStates.Updating ? MemberStatus.Downloading
                : MemberStatus.Pending;
            return (new RolloutMember(r.Mac, (int)r.Wave, status, failedAt), r.PreviousPattern, r.TargetPattern);
        });

    /// <summary>
    /// Applies a decision of the engine: the joins, the new state and open waves, the audit entry, in one transaction,
    /// and only while the rollout is still in <paramref name="expectedState"/> with <paramref name="expectedOpenWaves"/>
    /// open (another replica or the operator may have moved it). False when it was not applied.
    /// </summary>
    public async Task<bool> ApplyRolloutDecisionAsync(string name, string expectedState, long expectedOpenWaves, RolloutDecision decision, string? reason, AuditEntry? audit, CancellationToken ct = default)
    {
        var now = _store.Now();
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        var changed = await c.ExecuteAsync(new CommandDefinition("""
            UPDATE rollouts SET state = @state, open_waves = @open, reason = @reason, updated_at = @now,
                   wave_opened_at = CASE WHEN @open <> open_waves THEN @now ELSE wave_opened_at END
            WHERE name = @name AND state = @expectedState AND open_waves = @expectedOpenWaves
            """, new { name, state = decision.State, open = (long)decision.OpenWaves, reason, now, expectedState, expectedOpenWaves }, tx, cancellationToken: ct));
        if (changed == 0) { return false; }
        // a unit that joined meanwhile (another replica) is not added twice
        var present = (await c.QueryAsync<string>(new CommandDefinition("SELECT mac FROM rollout_units WHERE rollout = @name", new { name }, tx, cancellationToken: ct))).ToHashSet(StringComparer.Ordinal);
        await InsertMembersAsync(c, tx, name, decision.Joins.Where(j => !present.Contains(j.Mac)).ToList(), now, ct);
        await _store.WriteAuditAsync(c, tx, audit, ct);
        await tx.CommitAsync(ct);
        return true;
    }

    /// <summary>
    /// The operator's action on a rollout: moves it from one of <paramref name="from"/> to <paramref name="to"/> with the
    /// audit entry (a resume also stops counting the failures reported so far). False when it is not in one of them.
    /// </summary>
    public async Task<bool> SetRolloutStateAsync(string name, IReadOnlyList<string> from, string to, string? reason, AuditEntry audit, CancellationToken ct = default)
    {
        var now = _store.Now();
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        var changed = await c.ExecuteAsync(new CommandDefinition($"""
            UPDATE rollouts SET state = @to, reason = @reason, updated_at = @now,
                   errors_since = CASE WHEN @to = 'running' THEN @now ELSE errors_since END
            WHERE name = @name AND {_store.Fleet.InList("state", "from")}
            """, new { name, to, reason, now, from = from.ToArray() }, tx, cancellationToken: ct));
        if (changed == 0) { return false; }
        await _store.WriteAuditAsync(c, tx, audit, ct);
        await tx.CommitAsync(ct);
        return true;
    }

    /// <summary>
    /// Inside the caller's transaction: records that <paramref name="rollout"/> moves the unit now (its update is about to
    /// be offered): the pattern it runs, the first time only, and only while the rollout is running with the member's wave
    /// open. False (nothing written) when the rollout stopped running (paused, aborted) or the wave closed after the gate
    /// read it: the update must not be offered then, or a unit would move forward after an abort that did not plan its
    /// return. The check and the write are one step: on SQLite one statement under the write lock; on PostgreSQL the
    /// rollout's row is locked (shared) first, so an abort or a pause in progress is waited for and its outcome read.
    /// </summary>
    private async Task<bool> RecordRolloutOfferInAsync(DbConnection c, DbTransaction tx, string rollout, string mac, string fromPattern, CancellationToken ct)
    {
        if (_store.Database.Kind == DatabaseKind.Postgres)
        {
            await c.ExecuteAsync(new CommandDefinition("SELECT name FROM rollouts WHERE name = @rollout FOR SHARE", new { rollout }, tx, cancellationToken: ct));
        }
        var recorded = await c.ExecuteAsync(new CommandDefinition("""
            UPDATE rollout_units SET previous_pattern = @fromPattern, offered_at = @now
            WHERE rollout = @rollout AND mac = @mac AND previous_pattern IS NULL
              AND wave < (SELECT r.open_waves FROM rollouts r WHERE r.name = @rollout AND r.state = 'running')
            """, new { rollout, mac, fromPattern, now = _store.Now() }, tx, cancellationToken: ct)) == 1;
        // recorded meanwhile by another check (another replica): offered while running all the same
        return recorded || await c.ExecuteScalarAsync<long?>(new CommandDefinition("""
            SELECT 1 FROM rollout_units m JOIN rollouts r ON r.name = m.rollout
            WHERE m.rollout = @rollout AND m.mac = @mac AND m.previous_pattern IS NOT NULL AND r.state = 'running' AND m.wave < r.open_waves
            """, new { rollout, mac }, tx, cancellationToken: ct)) is not null;
    }

    /// <summary>
    /// Inside the caller's transaction, before any other write of it: checks that the offer of <paramref name="offer"/>'s
    /// program to the unit stands and records what it changes. The program must still be in the catalogue as the check read
    /// it (same route, same artifact): catalogue changes are serialised with this check (SQLite: the single writer's lock
    /// the transaction holds from its beginning; PostgreSQL: the catalogue lock, taken shared here and exclusive by every
    /// catalogue change), so a program deleted after the check's catalogue read is seen gone, and a deletion after this
    /// transaction sees the unit being updated from the program's pattern. Then the rollout that moves the unit records the
    /// offer (<see cref="RecordRolloutOfferInAsync"/>), and a way back pins the unit's target to the pattern it goes back to
    /// (when it has none) with its audit entry. Not <see cref="OfferWithheld.None"/>: the offer must not be made, and the
    /// caller rolls back what was written.
    /// </summary>
    internal async Task<OfferWithheld> RecordOfferInAsync(DbConnection c, DbTransaction tx, string mac, CheckOffer offer, CancellationToken ct)
    {
        if (_store.Database.Kind == DatabaseKind.Postgres)
        {
            await c.ExecuteAsync(new CommandDefinition("SELECT pg_advisory_xact_lock_shared(@CatalogueLockKey)", new { CatalogueEditStore.CatalogueLockKey }, tx, cancellationToken: ct));
        }
        var program = offer.Program;
        if (await c.ExecuteScalarAsync<long?>(new CommandDefinition("""
                SELECT 1 FROM update_programs WHERE id = @Id AND from_pattern = @FromPattern AND to_pattern = @ToPattern AND artifact_sha256 = @ArtifactSha256
                """, new { program.Id, program.FromPattern, program.ToPattern, program.ArtifactSha256 }, tx, cancellationToken: ct)) is null)
        {
            return OfferWithheld.ProgramGone;
        }
        if (offer.Rollout is { } rollout && !await RecordRolloutOfferInAsync(c, tx, rollout, mac, program.FromPattern, ct))
        {
            return OfferWithheld.RolloutStopped;
        }
        if (offer.WayBack is { } audit
            && await c.ExecuteAsync(new CommandDefinition("UPDATE units SET target_pattern = @pattern WHERE mac = @mac AND target_pattern IS NULL",
                new { mac, pattern = program.ToPattern }, tx, cancellationToken: ct)) == 1)
        {
            await _store.WriteAuditAsync(c, tx, audit, ct);
        }
        return OfferWithheld.None;
    }

    /// <summary>
    /// What became of the members after an abort that returned units (members it did not touch are left out): at most
    /// <paramref name="limit"/> of them in MAC order, those after <paramref name="after"/> when given (a page; the
    /// primary key's order, so a page costs its rows whatever the rollout's size).
    /// </summary>
    public async Task<IReadOnlyList<(string Mac, string Returned)>> RolloutReturnsAsync(string rollout, string? after, int limit, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await c.QueryAsync<(string Mac, string Returned)>(new CommandDefinition($"""
                SELECT mac, returned FROM rollout_units WHERE rollout = @rollout AND returned IS NOT NULL{(after is null ? "" : " AND mac > @after")}
                ORDER BY mac LIMIT @limit
                """, new { rollout, after, limit }, cancellationToken: ct))).ToList();
    }

    /// <summary>How many members an abort returned, by their outcome now (<see cref="ReturnCounts"/>).</summary>
    public async Task<ReturnCounts> RolloutReturnCountsAsync(string rollout, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        var row = await c.QuerySingleAsync<ReturnCountsRead>(new CommandDefinition("""
                SELECT COUNT(*) AS total,
                       COALESCE(SUM(CASE WHEN returned LIKE 'returning to %' THEN 1 ELSE 0 END), 0) AS way,
                       COALESCE(SUM(CASE WHEN returned LIKE 'returned to %' THEN 1 ELSE 0 END), 0) AS back,
                       COALESCE(SUM(CASE WHEN returned LIKE 'cannot return%' THEN 1 ELSE 0 END), 0) AS cannot
                FROM rollout_units WHERE rollout = @rollout AND returned IS NOT NULL
                """, new { rollout }, cancellationToken: ct));
        return new ReturnCounts((int)row.Total, (int)row.Way, (int)row.Back, (int)row.Cannot, (int)(row.Total - row.Way - row.Back - row.Cannot));
    }

    // (not "returning": a keyword of both databases)
    private sealed record ReturnCountsRead(long Total, long Way, long Back, long Cannot);

    /// <summary>
    /// Aborts a rollout (from running or paused) and returns the units it moved, in one transaction: the members and the
    /// pattern each ran when first offered the update are read inside it, <paramref name="plan"/> decides who returns
    /// (<see cref="RolloutEngine.PlanReturn"/>), each returning unit's target pattern becomes the pattern it ran before
    /// (the target it had is kept, <c>target_before</c>, and comes back when the return ends: <see cref="EndReturnsAsync"/>),
    /// each member's outcome is kept, and the reason and audit entry <paramref name="describe"/> makes of the plan are written. Null (nothing
    /// written) when the rollout is no longer running or paused, or, for the engine's decision (<paramref name="expected"/>),
    /// no longer in the state and open waves it decided on (its joins are then added in the same transaction).
    /// </summary>
    public async Task<ReturnPlan?> AbortRolloutReturningAsync(string name, Func<IReadOnlyList<ReturnCandidate>, Task<ReturnPlan>> plan, Func<ReturnPlan, (string Reason, AuditEntry Audit)> describe,
        ExpectedRollout? expected = null, CancellationToken ct = default)
    {
        var now = _store.Now();
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        // the state first: on PostgreSQL it locks the rollout's row, so two aborts (or an abort and an engine pass) do not interleave
        var changed = await c.ExecuteAsync(new CommandDefinition($"""
            UPDATE rollouts SET state = 'aborted', updated_at = @now WHERE name = @name AND state IN ('running', 'paused')
            {(expected is null ? "" : "AND state = @State AND open_waves = @OpenWaves")}
            """, new { name, now, expected?.State, expected?.OpenWaves }, tx, cancellationToken: ct));
        if (changed == 0) { return null; }
        if (expected is { Joins.Count: > 0 })
        {
            // a unit that joined meanwhile (another replica) is not added twice
            var present = (await c.QueryAsync<string>(new CommandDefinition("SELECT mac FROM rollout_units WHERE rollout = @name", new { name }, tx, cancellationToken: ct))).ToHashSet(StringComparer.Ordinal);
            await InsertMembersAsync(c, tx, name, expected.Joins.Where(j => !present.Contains(j.Mac)).ToList(), now, ct);
        }
        if (_store.Database.Kind == DatabaseKind.Postgres)
        {
            // a version check recording an offer meanwhile waits for this transaction: the plan sees every offer made before it
            await c.ExecuteAsync(new CommandDefinition("SELECT mac FROM rollout_units WHERE rollout = @name FOR UPDATE", new { name }, tx, cancellationToken: ct));
        }
        var row = await c.QuerySingleAsync<RolloutRow>(new CommandDefinition("SELECT * FROM rollouts WHERE name = @name", new { name }, tx, cancellationToken: ct));
        var members = (await ReadMembersAsync(c, tx, row, ct)).ToList();
        var decided = await plan(members.Select(m => new ReturnCandidate(m.Member.Mac, m.Member.Status, m.PreviousPattern)).ToList());
        var targets = members.ToDictionary(m => m.Member.Mac, m => m.TargetPattern, StringComparer.Ordinal);
        var (reason, audit) = describe(decided);
        await c.ExecuteAsync(new CommandDefinition("UPDATE rollouts SET reason = @reason WHERE name = @name", new { name, reason }, tx, cancellationToken: ct));
        foreach (var (mac, pattern) in decided.Return)
        {
            await c.ExecuteAsync(new CommandDefinition("UPDATE units SET target_pattern = @pattern WHERE mac = @mac", new { mac, pattern }, tx, cancellationToken: ct));
            await c.ExecuteAsync(new CommandDefinition("UPDATE rollout_units SET returned = @returned, return_to = @pattern, target_before = @before WHERE rollout = @name AND mac = @mac",
                new { name, mac, pattern, returned = $"returning to {pattern}", before = targets.GetValueOrDefault(mac) }, tx, cancellationToken: ct));
        }
        foreach (var (mac, why) in decided.Cannot)
        {
            await c.ExecuteAsync(new CommandDefinition("UPDATE rollout_units SET returned = @returned WHERE rollout = @name AND mac = @mac", new { name, mac, returned = $"cannot return: {why}" }, tx, cancellationToken: ct));
        }
        await _store.WriteAuditAsync(c, tx, audit, ct);
        await tx.CommitAsync(ct);
        return decided;
    }

    private sealed class ReturnRead
    {
        public string Rollout { get; set; } = "";
        public string Mac { get; set; } = "";
        public string ReturnTo { get; set; } = "";
        public string? TargetBefore { get; set; }
        public string? Pattern { get; set; }
        public string? TargetPattern { get; set; }

        /// <summary>
        /// 1 when the unit reported an install onto the return pattern after the rollout offered it the update: it went and
        /// came back. A unit still on the old pattern at the abort (its install under way) has not, and its return stays.
        /// </summary>
        public long CameBack { get; set; }
    }

    /// <summary>
    /// Ends the returns that are done (one indexed query; a transaction only when one ended): a unit that runs the
    /// pattern it was returning to, and has reported an install onto it since the rollout offered it the update (a unit
    /// whose install was under way at the abort has not yet gone and come back), gets its target pattern from before the abort back (only while its target is still
    /// the one the return set), and a unit whose target was changed meanwhile keeps that target. Either way the return
    /// ends, so the unit is no longer pinned: a later rollout or the operator can move it. One audit entry per rollout
    /// (<c>rollout.returned</c>).
    /// </summary>
    public async Task<IReadOnlyList<ReturnEnd>> EndReturnsAsync(CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        var ended = (await c.QueryAsync<ReturnRead>(new CommandDefinition("""
                SELECT m.rollout, m.mac, m.return_to, m.target_before, u.pattern, u.target_pattern,
                       CASE WHEN EXISTS (SELECT 1 FROM update_reports r WHERE r.mac = m.mac AND r.success <> 0 AND r.pattern = m.return_to
                                         AND r.at >= COALESCE(m.offered_at, '')) THEN 1 ELSE 0 END AS came_back
                FROM rollout_units m JOIN units u ON u.mac = m.mac
                WHERE m.return_to IS NOT NULL
                """, cancellationToken: ct))).Where(r => (r.Pattern == r.ReturnTo && r.CameBack != 0) || r.TargetPattern != r.ReturnTo).ToList();
        if (ended.Count == 0) { return []; }
        var done = new List<ReturnEnd>();
        await using var tx = await _store.BeginAsync(c, ct);
        foreach (var r in ended)
        {
            var arrived = r.TargetPattern == r.ReturnTo;
            var outcome = arrived ? $"returned to {r.ReturnTo}" : $"return to {r.ReturnTo} ended: the target was set to {r.TargetPattern ?? "none"}";
            // only while the return is still the one read (the operator may have ended it meanwhile)
            if (await c.ExecuteAsync(new CommandDefinition("UPDATE rollout_units SET return_to = NULL, returned = @outcome WHERE rollout = @Rollout AND mac = @Mac AND return_to = @ReturnTo",
                    new { r.Rollout, r.Mac, r.ReturnTo, outcome }, tx, cancellationToken: ct)) == 0)
            {
                continue;
            }
            if (arrived)
            {
                await c.ExecuteAsync(new CommandDefinition("UPDATE units SET target_pattern = @TargetBefore WHERE mac = @Mac AND target_pattern = @ReturnTo", r, tx, cancellationToken: ct));
            }
            done.Add(new ReturnEnd(r.Rollout, r.Mac, outcome));
        }
        foreach (var g in done.GroupBy(d => d.Rollout))
        {
            await _store.WriteAuditAsync(c, tx, new AuditEntry(RolloutService.Actor(g.Key), "rollout.returned", g.Key,
                string.Join("; ", g.Take(20).Select(d => $"{d.Mac} {d.Outcome}")) + (g.Count() > 20 ? $"; and {g.Count() - 20} more" : "")), ct);
        }
        await tx.CommitAsync(ct);
        return done;
    }

    /// <summary>
    /// The gate of the version check: the newest rollout not completed of the transition <paramref name="fromPattern"/> to
    /// <paramref name="toPattern"/>, the unit's membership in it, its group's maintenance window and the unit's time zone;
    /// null when no rollout holds the transition.
    /// </summary>
    public async Task<RolloutGateRow?> RolloutGateAsync(string mac, string fromPattern, string toPattern, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.QuerySingleOrDefaultAsync<RolloutGateRow>(new CommandDefinition("""
            SELECT r.name AS Name, r.state AS State, r.open_waves AS OpenWaves, m.wave AS Wave, m.joined_at AS JoinedAt, m.previous_pattern AS PreviousPattern,
                   r.group_name AS GroupName, g.maintenance_window AS Window, u.time_zone AS TimeZone
            FROM rollouts r LEFT JOIN rollout_units m ON m.rollout = r.name AND m.mac = @mac
                 LEFT JOIN unit_groups g ON g.name = r.group_name LEFT JOIN units u ON u.mac = @mac
            WHERE r.from_pattern = @fromPattern AND r.to_pattern = @toPattern AND r.state <> 'completed'
            ORDER BY r.created_at DESC, r.name DESC LIMIT 1
            """, new { mac, fromPattern, toPattern }, cancellationToken: ct));
    }

    /// <summary>Whether the unit reported <paramref name="updateId"/> as failed at or after <paramref name="since"/>.</summary>
    public async Task<bool> FailedUpdateSinceAsync(string mac, string updateId, string since, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.ExecuteScalarAsync<long?>(new CommandDefinition("SELECT 1 FROM update_reports WHERE mac = @mac AND update_id = @updateId AND success = 0 AND at >= @since LIMIT 1",
            new { mac, updateId, since }, cancellationToken: ct)) is not null;
    }

    /// <summary>
    /// The low-utilisation hours and maintenance windows of those of <paramref name="macs"/> (active units) that have
    /// their own, by MAC, read inside the caller's transaction by the primary key, a few hundred MACs a query.
    /// </summary>
    private async Task<IReadOnlyDictionary<string, UnitClockRow>> ReadOwnHoursAsync(System.Data.Common.DbConnection c, System.Data.Common.DbTransaction tx,
        IReadOnlyCollection<string> macs, CancellationToken ct)
    {
        var clocks = new Dictionary<string, UnitClockRow>(StringComparer.Ordinal);
        foreach (var chunk in macs.Distinct(StringComparer.Ordinal).Chunk(500))
        {
            foreach (var r in await c.QueryAsync<UnitClockRow>(new CommandDefinition($"""
                SELECT mac, low_window_start, low_window_end, maintenance_window FROM units
                WHERE {_store.Fleet.InList("mac", "chunk")} AND decommissioned_at IS NULL
                  AND ((low_window_start IS NOT NULL AND low_window_end IS NOT NULL) OR maintenance_window IS NOT NULL)
                """, new { chunk }, tx, cancellationToken: ct)))
            {
                clocks[r.Mac] = r;
            }
        }
        return clocks;
    }

    /// <summary>The active units that carry a time zone, low-utilisation hours or a maintenance window of their own (the others take the fleet's).</summary>
    public async Task<IReadOnlyDictionary<string, UnitClockRow>> UnitClocksAsync(CancellationToken ct)
    {
        await using var c = await _store.OpenAsync(ct);
        var rows = await c.QueryAsync<UnitClockRow>(new CommandDefinition("""
            SELECT mac, time_zone, low_window_start, low_window_end, maintenance_window FROM units
            WHERE decommissioned_at IS NULL AND (time_zone IS NOT NULL OR low_window_start IS NOT NULL OR maintenance_window IS NOT NULL)
            """, cancellationToken: ct));
        return rows.ToDictionary(r => r.Mac, StringComparer.Ordinal);
    }

    /// <summary>
    /// Moves a running rollout's look for window openings from <paramref name="lookedAt"/> (what the caller read; null: never)
    /// to <paramref name="until"/>, with <paramref name="audit"/> when given, in one transaction; false (nothing written)
    /// when another pass (another replica) moved it first or the rollout no longer runs: then that pass told the units.
    /// With <paramref name="push"/>, the push check that tells the waiting units is recorded in the same transaction, not
    /// sent yet (attempts 0): whoever sends it marks it sent, and an unsent record is sent by the broker link's resends.
    /// </summary>
    public async Task<bool> ClaimWindowLookAsync(string rollout, string? lookedAt, string until, AuditEntry? audit, CancellationToken ct,
        PendingPushCheck? push = null)
    {
        await using var c = await _store.OpenAsync(ct);
        await using var tx = await _store.BeginAsync(c, ct);
        var changed = await c.ExecuteAsync(new CommandDefinition($"""
            UPDATE rollouts SET window_looked_at = @until
            WHERE name = @rollout AND state = 'running' AND {(lookedAt is null ? "window_looked_at IS NULL" : "window_looked_at = @lookedAt")}
            """, new { rollout, lookedAt, until }, tx, cancellationToken: ct));
        if (changed == 0) { return false; }
        if (push is not null && push.Units.Count > 0)
        {
            var now = _store.Now();
            await c.ExecuteAsync(new CommandDefinition("""
                INSERT INTO push_checks (check_id, mac, nonce, importance, actor, created_at, sent_at, attempts, reason)
                VALUES (@CheckId, @Mac, @Nonce, @Importance, @Actor, @now, NULL, 0, @Reason)
                """, push.Units.Select(u => new { push.CheckId, u.Mac, u.Nonce, push.Importance, push.Actor, now, push.Reason }), tx, cancellationToken: ct));
        }
        if (audit is not null) { await _store.WriteAuditAsync(c, tx, audit, ct); }
        await tx.CommitAsync(ct);
        return true;
    }
}

/// <summary>A push check to record unsent (its units told later by whoever sends it, or by the broker link's resends).</summary>
public sealed record PendingPushCheck(string CheckId, string Actor, int Importance, string Reason, IReadOnlyList<(string Mac, string Nonce)> Units);
