using System.Diagnostics;
using System.Text.Json;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Push;
using Tsunagu.Server.Units.ForcedChecks;

namespace Tsunagu.Server.Fleet.Rollouts;

/// <summary>The operator's new rollout.</summary>
/// <param name="SuccessPercent">Installed share of a wave's reachable units that opens the next wave (default 90).</param>
/// <param name="ErrorPercent">Failed share of the open waves' units that pauses or aborts the rollout (default 10).</param>
/// <param name="OnError"><c>pause</c> (default), <c>abort</c>, or <c>revert</c> (abort and return the units it moved).</param>
/// <param name="MinWaveSeconds">How long a wave stays open at least before the next opens (default 0).</param>
public sealed record NewRollout(string? Name, string? Group, string? FromPattern, string? ToPattern, IReadOnlyList<WaveSpec>? Waves,
    int? SuccessPercent = null, int? ErrorPercent = null, string? OnError = null, int? MinWaveSeconds = null);

/// <summary>A rollout with its progress, per wave and in all.</summary>
public sealed record RolloutView(string Name, string Group, string FromPattern, string ToPattern, string UpdateId, string State, string? Reason,
    int OpenWaves, IReadOnlyList<WaveSpec> WaveSpecs, int SuccessPercent, int ErrorPercent, string OnError, int MinWaveSeconds,
    string CreatedBy, string CreatedAt, string UpdatedAt, IReadOnlyList<WaveProgress> Waves, WaveProgress Total,
    IReadOnlyList<MemberReturn>? Returns = null, IReadOnlyList<StrandedMember>? NeverOffered = null, ReturnCounts? ReturnCounts = null,
    int? NeverOfferedCount = null);

/// <summary>
/// The members an abort returned, by outcome: on their way back (<c>returning to P</c>), back (<c>returned to P</c>),
/// unable to return (<c>cannot return: why</c>), and returns ended because the unit's target was changed meanwhile.
/// </summary>
public sealed record ReturnCounts(int Total, int Returning, int Returned, int Cannot, int Ended);

/// <summary>
/// A member of a running or paused rollout whose own maintenance window (importance 4 and below) or low-utilisation
/// hours (importance 3) never meet its group's maintenance window: it would never be offered the update
/// (<see cref="RolloutView.NeverOffered"/>). <paramref name="OwnHours"/>: what of its own stands in the way, its hours
/// (<c>HH:00-HH:00</c>) or <c>maintenance window</c> and the window.
/// </summary>
public sealed record StrandedMember(string Mac, string OwnHours);

/// <summary>What the rollout engine spent: passes, their wall time in all and the longest, decisions and their (pure) time.</summary>
public sealed record RolloutEngineCost(long Passes, TimeSpan PassTime, TimeSpan MaxPass, long Decisions, TimeSpan DecisionTime);

/// <summary>A member after an abort that returned units: "returning to PATTERN", or "cannot return: why".</summary>
public sealed record MemberReturn(string Mac, string Outcome);

/// <summary>
/// What the gate of the version check found: why the unit may not take the update now (null: it may), and the rollout
/// that records the offer when the update is offered (null: none, or it recorded it before, so the offer writes nothing).
/// </summary>
public sealed record RolloutAdmission(string? Deferred, string? RecordsOfferIn);

/// <summary>The operator's abort: what happens to the units the rollout already moved (<see cref="AbortChoices"/>; default keep).</summary>
public sealed record AbortRequest(string? Units = null);

/// <summary>A rollout the operator cannot create or act on as asked (400 or 409, nothing written).</summary>
public sealed class RolloutRuleException(string message, bool conflict = false, bool bad = false) : Exception(message)
{
    public bool Conflict { get; } = conflict;

    /// <summary>The request itself is wrong (400), where the operation answers a missing rollout with 404.</summary>
    public bool Bad { get; } = bad;
}

/// <summary>
/// Rollouts at work: creates them, holds back the update of a transition a rollout owns (<see cref="GateAsync"/>, called by
/// the version check), and runs <see cref="RolloutEngine"/> on every active rollout each
/// <see cref="ServerOptions.RolloutTickSeconds"/> (on the replica holding the once-only lease), applying and auditing
/// each decision and telling the units of a wave that opens to check.
/// </summary>
public sealed class RolloutService(TsunaguStore store, ServerOptions options, TimeProvider time, ForcedCheckService checks,
    IPushPublisher push, Cluster.ReplicaLease lease, ILogger<RolloutService> log) : BackgroundService
{
    private readonly SemaphoreSlim _tick = new(1, 1);

    /// <summary>How long the engine's most recent decision took (the pure part, without the database reads).</summary>
    public TimeSpan LastDecisionCost { get; private set; }

    private long _passes;
    private long _passTicks;
    private long _maxPassTicks;
    private long _decisions;
    private long _decisionTicks;

    /// <summary>
    /// What the engine has spent since the server started: passes (<see cref="TickAsync"/>, each over every active rollout),
    /// their wall time in all and the longest one, and the pure decisions (<see cref="RolloutEngine.Decide"/>, one per
    /// active rollout in a pass) with their time. Read by the fleet simulator's rollout scenarios.
    /// </summary>
    public RolloutEngineCost Cost => new(Interlocked.Read(ref _passes), TimeSpan.FromTicks(Interlocked.Read(ref _passTicks)),
        TimeSpan.FromTicks(Interlocked.Read(ref _maxPassTicks)), Interlocked.Read(ref _decisions), TimeSpan.FromTicks(Interlocked.Read(ref _decisionTicks)));

    /// <summary>Starts the longest pass of <see cref="Cost"/> again from zero (a measurement of the passes from now on).</summary>
    public void ResetLongestPass() => Interlocked.Exchange(ref _maxPassTicks, 0);

    public static string Actor(string rollout) => $"rollout:{rollout}";

    public async Task<RolloutView> CreateAsync(NewRollout? request, string actor, CancellationToken ct = default)
    {
        if (request is null) { throw new RolloutRuleException("body: a JSON object with name, group, fromPattern, toPattern, waves"); }
        if (!Apis.InputRules.IsIdentifier(request.Name)) { throw new RolloutRuleException(Apis.InputRules.Identifier("name")); }
        if (!Apis.InputRules.IsIdentifier(request.Group)) { throw new RolloutRuleException(Apis.InputRules.Identifier("group")); }
        if (!Apis.InputRules.IsIdentifier(request.FromPattern)) { throw new RolloutRuleException(Apis.InputRules.Identifier("fromPattern")); }
        if (!Apis.InputRules.IsIdentifier(request.ToPattern)) { throw new RolloutRuleException(Apis.InputRules.Identifier("toPattern")); }
        if (RolloutEngine.InvalidWaves(request.Waves) is { } waveError) { throw new RolloutRuleException(waveError); }
        if (request.SuccessPercent is < 1 or > 100) { throw new RolloutRuleException("successPercent: 1 to 100"); }
        if (request.ErrorPercent is < 0 or > 100) { throw new RolloutRuleException("errorPercent: 0 (any failure) to 100"); }
        if (request.OnError is not (null or ErrorActions.Pause or ErrorActions.Abort or ErrorActions.Revert)) { throw new RolloutRuleException("onError: pause, abort or revert"); }
        if (request.MinWaveSeconds is < 0 or > 30 * 86400) { throw new RolloutRuleException("minWaveSeconds: 0 to 2592000 (30 days)"); }
        if (await store.Catalogue.GetPatternAsync(request.ToPattern, ct) is not { Status: PatternStatus.Verified })
        {
            throw new RolloutRuleException($"toPattern: '{request.ToPattern}' is not a verified pattern");
        }
        var program = await store.Catalogue.FindUpdateProgramAsync(request.FromPattern, request.ToPattern, ct: ct)
            ?? throw new RolloutRuleException($"fromPattern, toPattern: no update program leads from {request.FromPattern} to {request.ToPattern}");
        // planned outside the store's transaction (reading a large fleet's membership must not hold the write lock); the
        // transaction reads the groups again and stores the plan only if each is still there as it was planned from
        var group = await store.Fleet.GetGroupAsync(request.Group, ct) ?? throw new RolloutRuleException($"group: no group '{request.Group}'");
        if (program.Importance < 5 && group.MaintenanceWindow is { } text && MaintenanceWindow.Parse(text).Window is { } window
            && GroupWindows.Stall(group.Name, window, request.Name, program.Id, (int)program.Importance, await Apis.PolicySettings.GetAsync(store, ct)) is { } stall)
        {
            // the update would wait for a window that never comes: refused rather than a rollout that never moves
            throw new RolloutRuleException($"{stall}; nothing was stored (change the group's window, or the update policy)", conflict: true);
        }
        var planned = new Dictionary<string, GroupRow>(StringComparer.Ordinal) { [group.Name] = group };
        var waveGroups = new Dictionary<string, IReadOnlySet<string>>(StringComparer.Ordinal);
        foreach (var name in RolloutEngine.WaveGroups(request.Waves!))
        {
            var waveGroup = await store.Fleet.GetGroupAsync(name, ct) ?? throw new RolloutRuleException($"waves: no group '{name}'");
            planned[name] = waveGroup;
            waveGroups[name] = (await store.Fleet.GroupMembersAsync(waveGroup, ct)).ToHashSet(StringComparer.Ordinal);
        }
        var members = RolloutEngine.Plan(request.Name, request.Waves!, await CandidatesAsync(group, request.FromPattern, ct), waveGroups);
        var row = new RolloutRow
        {
            Name = request.Name, GroupName = group.Name, FromPattern = request.FromPattern, ToPattern = request.ToPattern, UpdateId = program.Id,
            Waves = JsonSerializer.Serialize(request.Waves, JsonSerializerOptions.Web), SuccessPercent = request.SuccessPercent ?? 90,
            ErrorPercent = request.ErrorPercent ?? 10, OnError = request.OnError ?? ErrorActions.Pause, MinWaveSeconds = request.MinWaveSeconds ?? 0,
            State = RolloutStates.Running, OpenWaves = 1, CreatedBy = actor,
        };
        var sizes = Enumerable.Range(0, request.Waves!.Count).Select(w => members.Count(m => m.Wave == w)).ToList();
        var audit = new AuditEntry(actor, "rollout.create", row.Name,
            $"group {group.Name}, {row.FromPattern} -> {row.ToPattern} by {program.Id}, {members.Count} unit(s) in waves {string.Join("/", sizes)}; wave 1 open");
        try
        {
            await store.Rollouts.AddRolloutAsync([.. planned.Keys], async (groups, policy, ownHours) =>
            {
                foreach (var (name, was) in planned)
                {
                    var now = groups.GetValueOrDefault(name)
                        ?? throw new RolloutRuleException(name == group.Name ? $"group: no group '{name}'" : $"waves: no group '{name}'");
                    if (now.Kind != was.Kind || now.Definition != was.Definition || (name == group.Name && now.MaintenanceWindow != was.MaintenanceWindow))
                    {
                        throw new StoreConflictException($"group {name} was changed while rollout {row.Name} was planned from it; nothing was stored, create it again");
                    }
                }
                // the policy as it stands now (a change of it since the check above committed first, or waits for this one)
                if (program.Importance < 5 && group.MaintenanceWindow is { } text && MaintenanceWindow.Parse(text).Window is { } window
                    && GroupWindows.Stall(group.Name, window, row.Name, program.Id, (int)program.Importance, policy) is { } stall)
                {
                    throw new StoreConflictException($"{stall}; nothing was stored (change the group's window, or the update policy)");
                }
                // a member with low-utilisation hours of its own waits for those (importance 3), as they stand now (a unit's
                // window change takes the same lock): one whose hours never meet the group's window would wait forever
                // (the hours are read only then, and only the planned members')
                // and a member with a maintenance window of its own waits for it at every importance below 5
                if (program.Importance < 5 && group.MaintenanceWindow is { } own && MaintenanceWindow.Parse(own).Window is { } groupWindow
                    && await ownHours([.. members.Select(m => m.Mac)]) is { Count: > 0 } clocks
                    && GroupWindows.MembersStall(group.Name, groupWindow, row.Name, program.Id, (int)program.Importance, [.. members.Select(m => clocks.GetValueOrDefault(m.Mac)).OfType<UnitClockRow>()])
                        is { } stranded)
                {
                    throw new StoreConflictException($"{stranded}; nothing was stored (change or clear those units' own windows first, PUT /api/v1/units/{{mac}}/update-window, or the group's window)");
                }
                return ((RolloutRow, IReadOnlyList<RolloutMember>, AuditEntry))(row, members, audit);
            }, ct);
        }
        catch (StoreConflictException e)
        {
            throw new RolloutRuleException(e.Message, conflict: true);
        }
        log.LogInformation("rollout {Rollout} created by {Actor}: {Count} unit(s), waves {Waves}", row.Name, actor, members.Count, string.Join("/", sizes));
        return await ViewAsync((await store.Rollouts.GetRolloutAsync(row.Name, ct))!, ct);
    }

    /// <summary>The units of <paramref name="group"/> on <paramref name="fromPattern"/> now: who a rollout moves, and who joins it.</summary>
    private async Task<IReadOnlyList<string>> CandidatesAsync(GroupRow group, string fromPattern, CancellationToken ct)
    {
        var members = (await store.Fleet.GroupMembersAsync(group, ct)).ToHashSet(StringComparer.Ordinal);
        return (await store.Fleet.MacsOnPatternAsync(fromPattern, ct)).Where(members.Contains).ToList();
    }

    public async Task<RolloutView> ViewAsync(RolloutRow row, CancellationToken ct = default)
    {
        var members = await store.Rollouts.RolloutMembersAsync(row, ct);
        var never = row.State is RolloutStates.Running or RolloutStates.Paused ? await NeverOfferedAsync(row, null, null, ct) : null;
        var situation = Situation(row);
        var waves = RolloutEngine.Progress(situation, members);
        var total = new WaveProgress(0, waves.Any(w => w.Open), waves.Sum(w => w.Members), waves.Sum(w => w.Pending), waves.Sum(w => w.Downloading),
            waves.Sum(w => w.Installed), waves.Sum(w => w.Failed), waves.Sum(w => w.Offline));
        return new RolloutView(row.Name, row.GroupName, row.FromPattern, row.ToPattern, row.UpdateId, row.State, row.Reason, (int)row.OpenWaves, Specs(row),
            (int)row.SuccessPercent, (int)row.ErrorPercent, row.OnError, (int)row.MinWaveSeconds, row.CreatedBy, row.CreatedAt, row.UpdatedAt, waves, total,
            row.State == RolloutStates.Aborted ? await ReturnsAsync(row.Name, null, ListedMembers, ct) : null,
            never?.Take(ListedMembers).ToList(), row.State == RolloutStates.Aborted ? await store.Rollouts.RolloutReturnCountsAsync(row.Name, ct) : null, never?.Count);
    }

    /// <summary>
    /// How many members a rollout's view lists of those an abort returned and of those it never offers the update (in
    /// MAC order, with their counts): the lists a view carries stay this size whatever the rollout's. The rest page through
    /// <see cref="ReturnsAsync"/> and <see cref="NeverOfferedPageAsync"/>.
    /// </summary>
    public const int ListedMembers = 100;

    /// <summary>The members an abort returned, in MAC order: at most <paramref name="limit"/>, after <paramref name="after"/> when given.</summary>
    public async Task<IReadOnlyList<MemberReturn>> ReturnsAsync(string rollout, string? after, int limit, CancellationToken ct = default) =>
        [.. (await store.Rollouts.RolloutReturnsAsync(rollout, after, limit, ct)).Select(r => new MemberReturn(r.Mac, r.Returned))];

    /// <summary>
    /// The members of <paramref name="row"/> it would never offer the update (<see cref="RolloutView.NeverOffered"/>), in
    /// MAC order: at most <paramref name="limit"/>, after <paramref name="after"/> when given; empty unless it is running
    /// or paused. Read page by page from <paramref name="after"/> on, never the whole rollout.
    /// </summary>
    public async Task<IReadOnlyList<StrandedMember>> NeverOfferedPageAsync(RolloutRow row, string? after, int limit, CancellationToken ct = default) =>
        row.State is RolloutStates.Running or RolloutStates.Paused ? await NeverOfferedAsync(row, after, limit, ct) : [];

    /// <summary>How many members of the rollout one query of <see cref="NeverOfferedAsync"/> reads at most.</summary>
    internal const int NeverOfferedBatch = 500;

    /// <summary>
    /// The members the gate may still offer the update to (<see cref="UpdateWindowStore.WaitingMember"/>, the rule the window
    /// checks use), less those installing it now (offered, state Updating: they finish without the gate unless that
    /// attempt is interrupted), whose own low-utilisation
    /// hours never meet the group's window, when the update is of importance 3 (it waits for both): they would never be
    /// offered it without a forced check. A unit window, a group window and a rollout's creation that would make one are
    /// refused; a unit that joins later (it enters the group, or comes to the from-pattern) with such hours, or one made so
    /// before those checks existed, is shown here. In MAC order, after <paramref name="after"/>, at most
    /// <paramref name="limit"/> (null: all); empty when none. The members with own hours are read in MAC order
    /// <see cref="NeverOfferedBatch"/> at a time until the page is full.
    /// </summary>
    private async Task<IReadOnlyList<StrandedMember>> NeverOfferedAsync(RolloutRow row, string? after, int? limit, CancellationToken ct)
    {
        if ((await store.Fleet.GetGroupAsync(row.GroupName, ct))?.MaintenanceWindow is not { } text || MaintenanceWindow.Parse(text).Window is not { } window) { return []; }
        if (await store.Catalogue.GetUpdateProgramAsync(row.UpdateId, ct) is not { Importance: < 5 } program) { return []; }
        var importance = (int)program.Importance;
        var found = new List<StrandedMember>();
        for (var cursor = after; ;)
        {
            var batch = await store.Windows.WaitingMembersWithOwnHoursAsync(row.Name, cursor, NeverOfferedBatch, installing: false, ct);
            // NeverMeets keeps MAC order, and each batch starts after the last: the pages join in order
            found.AddRange(GroupWindows.NeverMeets(window, importance, batch.Select(m => m.Clock))
                .Select(u => new StrandedMember(u.Mac, u.Own)));
            if (limit is { } most && found.Count >= most) { return found[..most]; }
            if (batch.Count < NeverOfferedBatch) { return found; }
            cursor = batch[^1].Mac;
        }
    }

    private static IReadOnlyList<WaveSpec> Specs(RolloutRow row) => JsonSerializer.Deserialize<List<WaveSpec>>(row.Waves, JsonSerializerOptions.Web) ?? [];

    private static DateTimeOffset At(string timestamp) => DateTimeOffset.Parse(timestamp, System.Globalization.CultureInfo.InvariantCulture);

    public static RolloutSituation Situation(RolloutRow row) =>
        new(row.State, (int)row.OpenWaves, Specs(row).Count, (int)row.SuccessPercent, (int)row.ErrorPercent, row.OnError,
            TimeSpan.FromSeconds(row.MinWaveSeconds), At(row.WaveOpenedAt), At(row.ErrorsSince));

    /// <summary>
    /// Why the unit may not take <paramref name="program"/> now; null when it may. A transition held by a rollout (the
    /// newest one of it that is not completed) is open only to members of its open waves while it runs, and never to a
    /// member that reported the update as failed in it: its own rollback keeps it on the old pattern. When the rollout's
    /// group has a maintenance window, an update of importance 4 or below waits for it on the unit's local clock (its own
    /// time zone, else <paramref name="zone"/>, the fleet's, else the host's); importance 5 ignores windows.
    /// </summary>
    public async Task<string?> GateAsync(string mac, UpdateProgramRow program, TimeZoneInfo? zone = null, CancellationToken ct = default) => (await AdmitAsync(mac, program, zone, ct: ct)).Deferred;

    /// <summary>
    /// <see cref="GateAsync"/>, and whether an offer of <paramref name="program"/> now must be recorded (<see cref="OfferOf"/>):
    /// only a member of the rollout not offered the update before. One indexed query.
    /// </summary>
    public async Task<RolloutAdmission> AdmitAsync(string mac, UpdateProgramRow program, TimeZoneInfo? zone = null, CancellationToken ct = default)
    {
        if (await store.Rollouts.RolloutGateAsync(mac, program.FromPattern, program.ToPattern, ct) is not { } gate) { return new(null, null); }
        if (gate.Wave is not { } wave) { return new($"rollout {gate.Name} holds {program.FromPattern} -> {program.ToPattern}; the unit is not (yet) part of it", null); }
        if (gate.State != RolloutStates.Running) { return new($"rollout {gate.Name} is {gate.State}", null); }
        if (wave >= gate.OpenWaves) { return new($"rollout {gate.Name}: the unit is in wave {wave + 1}, wave {gate.OpenWaves} is the newest open", null); }
        if (await store.Rollouts.FailedUpdateSinceAsync(mac, program.Id, gate.JoinedAt!, ct)) { return new($"rollout {gate.Name}: the unit failed {program.Id}; it stays on {program.FromPattern}", null); }
        if (program.Importance < 5 && gate.Window is { } text)
        {
            if (MaintenanceWindow.Parse(text).Window is not { } window)
            {
                // only the window's own writer stores it: one that no longer reads is held closed, never taken as "always open"
                log.LogError("rollout {Rollout}: group {Group}'s stored maintenance window {Window} does not read; its updates below importance 5 wait", gate.Name, gate.GroupName, text);
                return new($"rollout {gate.Name}: group {gate.GroupName}'s maintenance window does not read; importance {program.Importance} waits until the operator sets it again", null);
            }
            // the group's maintenance window, on the unit's wall clock (its own zone, else the one given, else the host's)
            var local = gate.TimeZone is { } id && ImportancePolicy.TryZone(id, out var own) ? own : zone ?? time.LocalTimeZone;
            if (!window.IsOpen(TimeZoneInfo.ConvertTime(time.GetUtcNow(), local)))
            {
                return new($"rollout {gate.Name}: importance {program.Importance} waits for group {gate.GroupName}'s maintenance window {window} ({local.Id})", null);
            }
        }
        return new(null, gate.PreviousPattern is null ? gate.Name : null);
    }

    /// <summary>
    /// For a unit without a target pattern: the way back from <paramref name="fromPattern"/> (<see cref="CatalogueSnapshot.FindWayBack"/>)
    /// when a rollout that is not completed holds that transition, so a rollout can take units back; null otherwise (a
    /// way back is never the default path). A query only where a way back leaves the pattern; otherwise from memory.
    /// </summary>
    public async Task<UpdateProgramRow?> WayBackHeldAsync(string mac, CatalogueSnapshot catalogue, string fromPattern, CancellationToken ct = default) =>
        catalogue.FindWayBack(fromPattern) is { } back && await store.Rollouts.RolloutGateAsync(mac, back.FromPattern, back.ToPattern, ct) is not null ? back : null;

    /// <summary>
    /// The update program a unit on <paramref name="actual"/> is to take, for the version check and the steady check
    /// alike: none when it runs its <paramref name="target"/>; the program to the target when it has one; without one, a
    /// way back held by a rollout (<see cref="WayBackHeldAsync"/>: a way back merely defined, kept for a revert, is
    /// none), else the way forward. Whether the unit may take it now is the rollout's gate (<see cref="AdmitAsync"/>).
    /// </summary>
    public async Task<UpdateProgramRow?> ProgramForAsync(string mac, CatalogueSnapshot catalogue, string actual, string? target, CancellationToken ct = default) =>
        target == actual ? null
        : target is null ? await WayBackHeldAsync(mac, catalogue, actual, ct) ?? catalogue.FindUpdateProgram(actual)
        : catalogue.FindUpdateProgram(actual, target);

    /// <summary>The operator pauses, resumes or aborts a rollout; false when it is not in a state that allows it.</summary>
    public async Task<bool> TryActAsync(string name, string action, string actor, CancellationToken ct = default)
    {
        var (from, to) = action switch
        {
            "pause" => ((IReadOnlyList<string>)[RolloutStates.Running], RolloutStates.Paused),
            "resume" => ([RolloutStates.Paused], RolloutStates.Running),
            "abort" => ([RolloutStates.Running, RolloutStates.Paused], RolloutStates.Aborted),
            _ => throw new ArgumentOutOfRangeException(nameof(action), action, "pause, resume or abort"),
        };
        return await store.Rollouts.SetRolloutStateAsync(name, from, to, action == "resume" ? null : $"{to} by {actor}",
            new AuditEntry(actor, $"rollout.{action}", name, action == "resume" ? "running; failures reported before now no longer count" : to), ct);
    }

    /// <summary>
    /// The operator's action as the API and the console take it: <see cref="TryActAsync"/>, then a pass of the engine after a
    /// resume (a wave whose threshold was met meanwhile opens at once). A <see cref="RolloutRuleException"/> when the
    /// rollout does not exist (not <see cref="RolloutRuleException.Conflict"/>) or its state does not allow the action
    /// (conflict); nothing was written then.
    /// </summary>
    public async Task<RolloutView> ActAsync(string? name, string action, string actor, CancellationToken ct, string? units = null)
    {
        if (!Apis.InputRules.IsIdentifier(name) || await store.Rollouts.GetRolloutAsync(name, ct) is not { } row)
        {
            throw new RolloutRuleException($"no rollout '{Apis.InputRules.Quote(name)}'");
        }
        if (units is not (null or AbortChoices.Keep or AbortChoices.Revert) || (units is not null && action != "abort"))
        {
            throw new RolloutRuleException("units: keep or revert, and only when aborting", bad: true);
        }
        if (units == AbortChoices.Revert)
        {
            if (await AbortReturningAsync(row, actor, ct: ct) is not { } plan) { throw new RolloutRuleException($"rollout {name} is {(await store.Rollouts.GetRolloutAsync(name, ct))?.State ?? row.State}; it cannot abort", conflict: true); }
            await WakeAsync(row, plan.Return.Select(r => r.Mac).ToList(), ct);
            return await ViewAsync((await store.Rollouts.GetRolloutAsync(name, ct))!, ct);
        }
        if (!await TryActAsync(name, action, actor, ct))
        {
            throw new RolloutRuleException($"rollout {name} is {(await store.Rollouts.GetRolloutAsync(name, ct))?.State ?? row.State}; it cannot {action}", conflict: true);
        }
        if (action == "resume") { await TickAsync(ct); }
        return await ViewAsync((await store.Rollouts.GetRolloutAsync(name, ct))!, ct);
    }

    /// <summary>
    /// Aborts <paramref name="row"/> and returns the units it moved or is moving to the pattern each ran before
    /// (<see cref="RolloutEngine.PlanReturn"/>): their target pattern becomes it, so the normal version check takes them
    /// back by the update program from the new pattern to it. Without such a program, or when that pattern is no longer
    /// verified, the units are listed as unable to return and left as they are. Null when the rollout cannot abort.
    /// </summary>
    private async Task<ReturnPlan?> AbortReturningAsync(RolloutRow row, string actor, RolloutDecision? decision = null, CancellationToken ct = default)
    {
        string? detail = null;
        var plan = await store.Rollouts.AbortRolloutReturningAsync(row.Name, async members =>
        {
            // why a unit cannot go back to a pattern, read once per pattern that a returning member ran
            var whyNot = new Dictionary<string, string?>(StringComparer.Ordinal);
            foreach (var pattern in members.Where(m => m.Status != MemberStatus.Failed).Select(m => m.PreviousPattern).OfType<string>().Distinct(StringComparer.Ordinal))
            {
                whyNot[pattern] = await store.Catalogue.GetPatternAsync(pattern, ct) is not { Status: PatternStatus.Verified } ? $"{pattern} is not a verified pattern"
                    : await store.Catalogue.FindUpdateProgramAsync(row.ToPattern, pattern, ct: ct) is null ? $"no update program leads from {row.ToPattern} back to {pattern}"
                    : null;
            }
            return RolloutEngine.PlanReturn(members, pattern => whyNot[pattern]);
        }, plan =>
        {
            var summary = (decision is null ? $"aborted by {actor}" : decision.Detail) + $"; units moved: revert: {plan.Return.Count} return" +
                          (plan.Cannot.Count == 0 ? "" : $", {plan.Cannot.Count} cannot ({plan.Cannot[0].Why})");
            detail = (decision is { Joins.Count: > 0 } ? $"{decision.Joins.Count} unit(s) joined wave {decision.Joins[0].Wave + 1}; " : "") + summary +
                     (plan.Return.Count == 0 ? "" : $"; returning: {string.Join(", ", plan.Return.Take(20).Select(r => r.Mac))}{(plan.Return.Count > 20 ? ", ..." : "")}") +
                     (plan.Cannot.Count == 0 ? "" : $"; cannot: {string.Join(", ", plan.Cannot.Take(20).Select(r => r.Mac))}{(plan.Cannot.Count > 20 ? ", ..." : "")}");
            return (summary, new AuditEntry(actor, "rollout.abort", row.Name, detail));
        }, decision is null ? null : new ExpectedRollout(row.State, row.OpenWaves, decision.Joins), ct: ct);
        if (plan is not null) { log.LogInformation("rollout {Rollout}: {Detail}", row.Name, detail); }
        return plan;
    }

    /// <summary>
    /// The version check is about to offer the unit <paramref name="program"/> after <see cref="AdmitAsync"/>: what the offer
    /// records with the check's own writes (<see cref="UnitStore.RecordCheckAsync"/>,
    /// one transaction): the rollout that moves the unit records the pattern it runs, the first time only (a repeated
    /// offer writes nothing), and for a way back (<paramref name="wayBack"/>) the unit's target becomes the pattern it
    /// goes back to when it has none, or once there it would be offered the way forward again at its next check; the
    /// operator clears the target to move it on.
    /// </summary>
    public static CheckOffer OfferOf(string mac, UpdateProgramRow program, RolloutAdmission admission, bool wayBack = false) =>
        new(program, admission.RecordsOfferIn,
            wayBack && admission.RecordsOfferIn is { } rollout
                ? new AuditEntry(Actor(rollout), "unit.target-pattern", mac, $"{program.ToPattern}: taken back by rollout {rollout} ({program.Id})")
                : null);

    /// <summary>Why an offer was withheld in the version check's transaction, as the check tells the unit.</summary>
    public async Task<string> WithheldAsync(CheckOffer offer, OfferWithheld withheld, CancellationToken ct = default) => withheld switch
    {
        OfferWithheld.RolloutStopped when offer.Rollout is { } rollout =>
            $"rollout {rollout} {(await store.Rollouts.GetRolloutAsync(rollout, ct))?.State switch { RolloutStates.Running => "closed the unit's wave", { } s => "is " + s, null => "is gone" }}",
        _ => $"update program {offer.Program.Id} was removed or changed since the check read the catalogue; the next check reads it again",
    };

    /// <summary>Pauses every running rollout at once (one audit entry each); the names of those it paused.</summary>
    public async Task<IReadOnlyList<string>> EmergencyStopAsync(string actor, CancellationToken ct = default)
    {
        var paused = new List<string>();
        foreach (var r in (await store.Rollouts.ListRolloutsAsync(activeOnly: true, ct: ct)).Where(r => r.State == RolloutStates.Running))
        {
            if (await store.Rollouts.SetRolloutStateAsync(r.Name, [RolloutStates.Running], RolloutStates.Paused, $"emergency stop by {actor}",
                    new AuditEntry(actor, "rollout.emergency-stop", r.Name, RolloutStates.Paused), ct))
            {
                paused.Add(r.Name);
            }
        }
        return paused;
    }

    /// <summary>One pass of the engine over every active rollout; what it decided, for each rollout that changed.</summary>
    public async Task<IReadOnlyList<(string Rollout, RolloutDecision Decision)>> TickAsync(CancellationToken ct)
    {
        await _tick.WaitAsync(ct);
        var passStarted = Stopwatch.GetTimestamp();
        try
        {
            var done = new List<(string, RolloutDecision)>();
            var woken = new HashSet<string>(StringComparer.Ordinal);
            // returns after an abort that are done end first: the units are no longer pinned to the pattern they returned to
            foreach (var end in await store.Rollouts.EndReturnsAsync(ct))
            {
                log.LogInformation("rollout {Rollout}: unit {Mac}: {Outcome}", end.Rollout, end.Mac, end.Outcome);
            }
            foreach (var row in await store.Rollouts.ListRolloutsAsync(activeOnly: true, ct: ct))
            {
                ct.ThrowIfCancellationRequested();
                try
                {
                    var members = await store.Rollouts.RolloutMembersAsync(row, ct);
                    var group = await store.Fleet.GetGroupAsync(row.GroupName, ct);
                    var candidates = group is null ? [] : await CandidatesAsync(group, row.FromPattern, ct);
                    var started = Stopwatch.GetTimestamp();
                    var decision = RolloutEngine.Decide(Situation(row), members, candidates, time.GetUtcNow());
                    LastDecisionCost = Stopwatch.GetElapsedTime(started);
                    Interlocked.Increment(ref _decisions);
                    Interlocked.Add(ref _decisionTicks, LastDecisionCost.Ticks);
                    if (decision.Action == RolloutActions.None && decision.Joins.Count == 0) { continue; }
                    var detail = decision.Joins.Count == 0 ? decision.Detail
                        : $"{decision.Joins.Count} unit(s) joined wave {decision.Joins[0].Wave + 1} ({string.Join(", ", decision.Joins.Take(10).Select(j => j.Mac))}" +
                          $"{(decision.Joins.Count > 10 ? ", ..." : "")}); {decision.Detail}";
                    if (decision.Action == RolloutActions.Abort && row.OnError == ErrorActions.Revert)
                    {
                        // the error threshold returns the units moved so far, as an operator's abort with revert would
                        if (await AbortReturningAsync(row, Actor(row.Name), decision, ct: ct) is not { } returning) { continue; }
                        done.Add((row.Name, decision));
                        await WakeAsync(row, returning.Return.Select(r => r.Mac).ToList(), ct);
                        continue;
                    }
                    var action = decision.Action == RolloutActions.None ? "rollout.join" : $"rollout.{decision.Action}";
                    var reason = decision.Action is RolloutActions.Pause or RolloutActions.Abort ? decision.Detail : decision.Action == RolloutActions.None ? row.Reason : null;
                    if (!await store.Rollouts.ApplyRolloutDecisionAsync(row.Name, row.State, row.OpenWaves, decision, reason, new AuditEntry(Actor(row.Name), action, row.Name, detail), ct))
                    {
                        continue; // moved meanwhile (the operator, another replica): the next pass decides again
                    }
                    log.LogInformation("rollout {Rollout}: {Action}: {Detail}", row.Name, action, detail);
                    done.Add((row.Name, decision));
                    var opened = decision.Action == RolloutActions.OpenWave ? decision.OpenWaves - 1 : -1;
                    var wake = members.Concat(decision.Joins)
                        .Where(m => (m.Wave == opened || (decision.Joins.Contains(m) && m.Wave < decision.OpenWaves && decision.State == RolloutStates.Running))
                                    && m.Status is MemberStatus.Pending)
                        .Select(m => m.Mac).ToList();
                    // only the units whose check was recorded count as told: a failed send leaves them to the window opening
                    woken.UnionWith(await WakeAsync(row, wake, ct));
                }
                catch (Exception e) when (e is FormatException or System.Text.Json.JsonException)
                {
                    // a rollout row the engine cannot read (written outside the server): skipped, the others go on
                    log.LogError(e, "rollout {Rollout}: its row cannot be read; skipped in this pass", row.Name);
                }
            }
            await WindowOpeningsAsync(woken, ct);
            return done;
        }
        finally
        {
            var spent = Stopwatch.GetElapsedTime(passStarted).Ticks;
            Interlocked.Increment(ref _passes);
            Interlocked.Add(ref _passTicks, spent);
            if (spent > Interlocked.Read(ref _maxPassTicks)) { Interlocked.Exchange(ref _maxPassTicks, spent); }
            _tick.Release();
        }
    }

    /// <summary>How far back a pass looks for a window opening (after a server was down): past a week every window opened again.</summary>
    private static readonly TimeSpan WindowLookBack = TimeSpan.FromDays(8);

    /// <summary>
    /// Tells the waiting members of each running rollout whose group has a maintenance window to check when the window
    /// opens on their clock: a member of an open wave still pending (not installing, installed, failed or offline) whose
    /// window (with the update policy's clock window for the update's importance, when it waits for one) opened at a
    /// minute since the previous pass and is open now. The pass that moves the rollout's look forward
    /// (<see cref="RolloutStore.ClaimWindowLookAsync"/>) is the one that tells them, so each waiting member is told once
    /// per opening, by one replica, across restarts; members this pass told already (a wave opened, a unit joined) are
    /// not told twice. Importance 5 ignores windows: its units are told when their wave opens.
    /// </summary>
    private async Task WindowOpeningsAsync(IReadOnlySet<string> woken, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        UpdatePolicy? policy = null;
        IReadOnlyDictionary<string, UnitClockRow>? clocks = null;
        foreach (var row in (await store.Rollouts.ListRolloutsAsync(activeOnly: true, ct)).Where(r => r.State == RolloutStates.Running))
        {
            ct.ThrowIfCancellationRequested();
            if ((await store.Fleet.GetGroupAsync(row.GroupName, ct))?.MaintenanceWindow is not { } text || MaintenanceWindow.Parse(text).Window is not { } window) { continue; }
            if (await store.Catalogue.GetUpdateProgramAsync(row.UpdateId, ct) is not { Importance: < 5 } program) { continue; }
            var since = At(row.WindowLookedAt ?? row.CreatedAt);
            if (since < now - WindowLookBack) { since = now - WindowLookBack; }
            // one look per whole minute that passed (windows open on minutes): a pass within the same minute writes nothing
            if (now.UtcTicks / TimeSpan.TicksPerMinute <= since.UtcTicks / TimeSpan.TicksPerMinute) { continue; }
            policy ??= await Apis.PolicySettings.GetAsync(store, ct);
            clocks ??= await store.Rollouts.UnitClocksAsync(ct);
            var fleetZone = ImportancePolicy.Zone(policy, time.LocalTimeZone);
            var opened = new Dictionary<(string Zone, PolicyWindow? Hours, string? Own), bool>();
            var tell = new List<string>();
            foreach (var member in await store.Rollouts.RolloutMembersAsync(row, ct))
            {
                if (member.Wave >= row.OpenWaves || member.Status != MemberStatus.Pending || woken.Contains(member.Mac)) { continue; }
                var own = clocks.GetValueOrDefault(member.Mac);
                var zone = own?.TimeZone is { } id && ImportancePolicy.TryZone(id, out var z) ? z : fleetZone;
                var unitPolicy = own is { LowWindowStart: { } s, LowWindowEnd: { } e } ? policy with { LowWindowStartHour = (int)s, LowWindowEndHour = (int)e } : policy;
                // a unit's own maintenance window stands in for the policy's hours (and holds importance 4 too)
                var ownWindow = own?.MaintenanceWindow is { } text2 ? MaintenanceWindow.Parse(text2).Window : null;
                var hours = own?.MaintenanceWindow is null ? GroupWindows.For((int)program.Importance, unitPolicy) : null;
                if (!opened.TryGetValue((zone.Id, hours, own?.MaintenanceWindow), out var open))
                {
                    // a stored window that does not read is held closed: it never opens
                    opened[(zone.Id, hours, own?.MaintenanceWindow)] = open = (own?.MaintenanceWindow is null || ownWindow is not null)
                        && GroupWindows.OpenedBetween(window, hours, zone, since, now, ownWindow);
                }
                if (open) { tell.Add(member.Mac); }
            }
            // the push check is recorded with the claim (one transaction), so an opening is never lost: a send that fails
            // (the broker link down) leaves it unsent, and the broker link's resends send it when the link is back
            var importance = (int)program.Importance;
            var pending = tell.Count == 0 || push.BrokerUri is null ? null
                : new PendingPushCheck(Guid.NewGuid().ToString("N"), Actor(row.Name), importance, PushReasons.Config,
                    tell.Select(mac => (mac, UnitCredentials.NewNonce(12))).ToList());
            var told = pending is null
                ? "push is off on this server: they take the update at their next periodic check"
                : $"push check {pending.CheckId} recorded to tell them to check (sent now, or by the resends once the broker link is back)";
            var audit = tell.Count == 0 ? null : new AuditEntry(Actor(row.Name), "rollout.window-open", row.Name,
                $"group {row.GroupName}'s maintenance window {window} opened: {tell.Count} waiting unit(s); {told} " +
                $"({string.Join(", ", tell.Take(10))}{(tell.Count > 10 ? ", ..." : "")})");
            if (!await store.Rollouts.ClaimWindowLookAsync(row.Name, row.WindowLookedAt, TsunaguStore.Timestamp(now), audit, ct, pending)) { continue; }
            if (pending is null) { continue; }
            var unsent = await checks.SendRecordedAsync(pending, ct);
            log.LogInformation("rollout {Rollout}: group {Group}'s window opened: {Count} waiting unit(s), {Unsent} not sent now (the resends send them)",
                row.Name, row.GroupName, tell.Count, unsent);
        }
    }

    /// <summary>Tells the units of wave 1 of a new rollout to check now.</summary>
    public async Task StartAsync(string rollout, CancellationToken ct)
    {
        if (await store.Rollouts.GetRolloutAsync(rollout, ct) is { } row)
        {
            await WakeAsync(row, (await store.Rollouts.RolloutMembersAsync(row, ct)).Where(m => m.Wave == 0 && m.Status == MemberStatus.Pending).Select(m => m.Mac).ToList(), ct);
        }
    }

    /// <summary>
    /// Asks units of a wave that just opened to check now (reason <see cref="PushReasons.Config"/>: the update keeps its
    /// own importance); a unit not told (push off or failing) takes it at its next periodic check. Returns the units
    /// whose check was recorded (sent, or left to the broker link's resends); none when push is off or the link is down.
    /// </summary>
    private async Task<IReadOnlyList<string>> WakeAsync(RolloutRow row, IReadOnlyList<string> macs, CancellationToken ct)
    {
        var recorded = new List<string>();
        if (macs.Count == 0 || push.BrokerUri is null) { return recorded; }
        try
        {
            foreach (var chunk in macs.Chunk(1000))
            {
                await checks.SendAsync(Actor(row.Name), chunk, (int)((await store.Catalogue.GetUpdateProgramAsync(row.UpdateId, ct))?.Importance ?? 3), PushReasons.Config, ct);
                recorded.AddRange(chunk);
            }
        }
        catch (PushException e)
        {
            log.LogWarning("rollout {Rollout}: could not tell {Count} unit(s) to check ({Error}); they take the update at their next check", row.Name, macs.Count - recorded.Count, e.Message);
        }
        return recorded;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var period = TimeSpan.FromSeconds(options.RolloutTickSeconds);
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(period, time, stoppingToken);
                if (lease.IsHolder) { await TickAsync(stoppingToken); }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is System.Data.Common.DbException or TimeoutException or InvalidOperationException)
            {
                log.LogWarning(e, "rollout pass failed; the next pass decides again");
            }
            catch (Exception e) when (e is FormatException or System.Text.Json.JsonException)
            {
                // a rollout row the engine cannot read (written outside the server): the engine stays up and tries again
                log.LogError(e, "rollout pass failed on a rollout it cannot read; the next pass tries again");
            }
        }
    }
}
