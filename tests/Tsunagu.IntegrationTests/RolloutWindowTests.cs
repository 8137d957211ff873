using System.Collections.Concurrent;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Npgsql;
using Tsunagu.Protocol;
using Tsunagu.Server;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;
using Tsunagu.Server.Fleet;
using Tsunagu.Server.Fleet.Rollouts;
using Tsunagu.Server.Push;
using Tsunagu.Server.Units.ForcedChecks;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// A group's maintenance window with a rollout, on each database: a window that never overlaps the clock window the
/// update's importance waits for is refused (at creation and when the window changes under a rollout), and a window
/// opening tells the waiting units of the rollout to check, once per opening, on every unit's own clock.
/// </summary>
[TestFixture("sqlite")]
[TestFixture("postgres")]
[NonParallelizable]
public class RolloutWindowTests(string kind)
{
    /// <summary>A connected broker that records each push it is given.</summary>
    private sealed class RecordingPush(TimeProvider time) : IPushPublisher
    {
        public ConcurrentQueue<(string Mac, PushMessage Message, DateTimeOffset At)> Sent { get; } = new();
        public string? BrokerUri => "mqtts://127.0.0.1:1";
        public bool Connected { get; set; } = true;

        public Task PublishAsync(string mac, PushMessage message, CancellationToken cancellationToken)
        {
            Sent.Enqueue((mac, message, time.GetUtcNow()));
            return Task.CompletedTask;
        }

        public Task EnsureUnitAccountAsync(string mac, CancellationToken cancellationToken) => Task.CompletedTask;
        public Task RevokeUnitAsync(string mac, CancellationToken cancellationToken) => Task.CompletedTask;
    }

    private static readonly Inventory OnX = new("hw-1", "os-1", new Dictionary<string, string> { ["vcp"] = "1.0.0" });
    private static readonly Inventory OnY = new("hw-1", "os-1", new Dictionary<string, string> { ["vcp"] = "2.0.0" });

    /// <summary>Wednesday 1 April 2026, 09:00 UTC.</summary>
    private static readonly DateTimeOffset Wednesday = new(2026, 4, 1, 9, 0, 0, TimeSpan.Zero);

    private string _directory = "";
    private FakeTimeProvider _clock = null!;
    private Database _database = null!;
    private TsunaguStore _store = null!;
    private RecordingPush _push = null!;
    private readonly List<RolloutService> _services = [];

    [SetUp]
    public async Task SetUp()
    {
        _directory = Directory.CreateTempSubdirectory("tsunagu-rollout-window-").FullName;
        _clock = new FakeTimeProvider(Wednesday);
        _database = Database.Parse(kind == "postgres" ? PostgresServer.Shared.CreateDatabase() : "tsunagu.db", _directory);
        _database.Migrate();
        _store = new TsunaguStore(_database, _clock);
        _push = new RecordingPush(_clock);
        foreach (var (id, apps) in new[] { ("x", "{\"vcp\":\"1.0.0\"}"), ("y", "{\"vcp\":\"2.0.0\"}") })
        {
            await _store.Catalogue.AddPatternAsync(new PatternRow { Id = id, Name = id, HardwareVersion = "hw-1", OsVersion = "os-1", Applications = apps, Status = PatternStatus.Verified });
        }
        // units 0-5 carry the tag of group lab; unit 6 is not in it
        for (var i = 0; i < 7; i++)
        {
            await _store.Units.AddUnitAsync(new UnitRow { Mac = Mac(i), Serial = $"SN-{i}", HardwareVersion = "hw-1", IspMethod = "dhcp" });
            await _store.Units.RecordInventoryAsync(Mac(i), OnX, "x", UnitStates.Ready);
            await _store.Units.TouchAsync(Mac(i), UnitStates.Ready);
            await _store.Units.SetPresenceAsync(Mac(i), online: true);
            if (i < 6) { await _store.Fleet.SetTagsAsync(Mac(i), ["lab"], new AuditEntry("alice", "unit.tags", Mac(i), "lab")); }
        }
        await _store.Fleet.AddGroupAsync(new GroupRow { Name = "lab", Kind = GroupKinds.Dynamic, Definition = "{\"tags\":[\"lab\"]}", CreatedBy = "alice" },
            new AuditEntry("alice", "group.create", "lab", null));
        await _store.Fleet.AddGroupAsync(new GroupRow { Name = "canary", Kind = GroupKinds.Static, Definition = $"[\"{Mac(0)}\",\"{Mac(1)}\",\"{Mac(2)}\",\"{Mac(3)}\"]", CreatedBy = "alice" },
            new AuditEntry("alice", "group.create", "canary", null));
    }

    [TearDown]
    public void TearDown()
    {
        foreach (var service in _services) { service.Dispose(); }
        _services.Clear();
        SqliteConnection.ClearAllPools();
        NpgsqlConnection.ClearAllPools();
        Directory.Delete(_directory, recursive: true);
    }

    private static string Mac(int i) => $"02:00:00:00:03:{i:x2}";

    /// <summary>A replica's rollout service over the shared database and clock.</summary>
    private RolloutService Replica()
    {
        var options = new ServerOptions();
        var service = new RolloutService(_store, options, _clock, new ForcedCheckService(_store, _push, _clock), _push,
            new Tsunagu.Server.Cluster.ReplicaLease(_store, options, _clock, NullLogger<Tsunagu.Server.Cluster.ReplicaLease>.Instance), NullLogger<RolloutService>.Instance);
        _services.Add(service);
        return service;
    }

    private Task ProgramAsync(int importance) =>
        _store.Catalogue.AddUpdateProgramAsync(new UpdateProgramRow { Id = "x-to-y", FromPattern = "x", ToPattern = "y", Importance = importance, ArtifactSha256 = new string('a', 64), ArtifactSize = 1 });

    private async Task WindowAsync(string? window) =>
        Assert.That(await _store.Fleet.SetGroupWindowCheckedAsync("lab", window is null ? null : MaintenanceWindow.Parse(window).Window!.ToString(), (_, _, _) => null, new AuditEntry("alice", "group.window", "lab", window), CancellationToken.None), Is.True);

    private Task<RolloutView> CreateAsync(RolloutService service, string name, IReadOnlyList<WaveSpec>? waves = null) =>
        service.CreateAsync(new NewRollout(name, "lab", "x", "y", waves ?? [new(Percent: 100)], SuccessPercent: 100, MinWaveSeconds: 30 * 86400), "alice");

    /// <summary>What a refused request must leave as it was: rollouts, members, the group's window, the audit log.</summary>
    private async Task<(int Rollouts, int Members, string? Window, int Audit)> StateAsync()
    {
        var rollouts = await _store.Rollouts.ListRolloutsAsync();
        var members = 0;
        foreach (var r in rollouts) { members += (await _store.Rollouts.RolloutMembersAsync(r)).Count; }
        return (rollouts.Count, members, (await _store.Fleet.GetGroupAsync("lab"))?.MaintenanceWindow, (await _store.ListAuditAsync(1000)).Count);
    }

    [TestCase(3, "mon-fri 06:00-08:00", "low-utilisation window 02:00-05:00")]
    [TestCase(3, "01:00-02:00", "low-utilisation window 02:00-05:00")]
    [TestCase(1, "sat 23:00-03:00", "maintenance window 03:00-04:00")]
    [TestCase(2, "05:00-03:00", "maintenance window 03:00-04:00")]
    public async Task A_rollout_whose_group_window_never_overlaps_its_importance_window_is_refused_and_nothing_is_stored(int importance, string window, string policy)
    {
        await ProgramAsync(importance);
        await WindowAsync(window);
        var service = Replica();
        var before = await StateAsync();
        var refused = Assert.ThrowsAsync<RolloutRuleException>(() => CreateAsync(service, "r1"))!;
        Assert.That(refused.Conflict, Is.True, "409: the request is right, the windows are what stops it");
        Assert.That(refused.Message, Does.Contain($"group lab's maintenance window {MaintenanceWindow.Parse(window).Window}")
            .And.Contain($"update policy's {policy}").And.Contain($"importance {importance}").And.Contain("rollout r1").And.Contain("nothing was stored"));
        Assert.That(await StateAsync(), Is.EqualTo(before), "a refused rollout stored nothing");
        Assert.That(_push.Sent, Is.Empty);
    }

    [TestCase(3, "mon-fri 04:30-06:00")] // overlaps 04:30-05:00
    [TestCase(3, "sun 23:00-02:01")]     // overlaps Monday 02:00
    [TestCase(2, "sat 23:00-03:01")]     // overlaps Sunday 03:00
    [TestCase(4, "mon-fri 06:00-08:00")] // importance 4 waits for load, not a clock
    [TestCase(5, "01:00-02:00")]         // importance 5 ignores windows
    public async Task A_rollout_whose_windows_meet_or_whose_importance_waits_for_no_clock_is_created(int importance, string window)
    {
        await ProgramAsync(importance);
        await WindowAsync(window);
        Assert.That((await CreateAsync(Replica(), "r1")).State, Is.EqualTo(RolloutStates.Running));
    }

    [Test]
    public async Task A_policy_window_that_never_opens_refuses_any_group_window()
    {
        await ProgramAsync(3);
        await PolicySettings.SetAsync(_store, UpdatePolicy.Default with { LowWindowStartHour = 4, LowWindowEndHour = 4 });
        await WindowAsync("00:00-23:59");
        Assert.That(Assert.ThrowsAsync<RolloutRuleException>(() => CreateAsync(Replica(), "r1"))!.Message, Does.Contain("low-utilisation window 04:00-04:00"));
        await WindowAsync(null);
        Assert.That((await CreateAsync(Replica(), "r1")).State, Is.EqualTo(RolloutStates.Running), "without a group window the group holds nothing back");
    }

    [Test]
    public async Task A_window_changed_while_the_rollout_is_being_created_is_a_conflict_and_nothing_is_stored()
    {
        await ProgramAsync(3);
        await WindowAsync("01:00-03:00");
        var service = Replica();
        var before = await StateAsync();
        var changed = false;
        void OnBeginning(string method)
        {
            // the rollout was planned against 01:00-03:00; the operator narrows it just before its transaction
            if (method != nameof(RolloutStore.AddRolloutAsync) || changed) { return; }
            changed = true;
            // the seam is synchronous and runs just before the transaction begins: the change is written before it goes on
            WindowAsync("06:00-07:00").GetAwaiter().GetResult();
        }
        _store.TransactionBeginning += OnBeginning;
        try
        {
            var refused = Assert.ThrowsAsync<RolloutRuleException>(() => CreateAsync(service, "r1"))!;
            Assert.That(refused.Conflict, Is.True);
            Assert.That(refused.Message, Does.Contain("group lab was changed while rollout r1 was planned"));
        }
        finally
        {
            _store.TransactionBeginning -= OnBeginning;
        }
        Assert.That(changed, Is.True);
        Assert.That(await StateAsync(), Is.EqualTo(before with { Window = "06:00-07:00", Audit = before.Audit + 1 }), "only the window change was stored");
    }

    /// <summary>Marks the flow of the request a race test holds at the beginning of its first transaction.</summary>
    private static readonly AsyncLocal<bool> HeldRequest = new();

    /// <summary>
    /// Runs <paramref name="first"/> until it is about to begin its first transaction (every read it makes before it is
    /// done) and holds it there; runs <paramref name="second"/> to its end; then lets <paramref name="first"/> go on. The
    /// exceptions each ended with (null: it succeeded).
    /// </summary>
    private async Task<(Exception? First, Exception? Second)> InterleaveAsync(Func<Task> first, Func<Task> second)
    {
        using var release = new ManualResetEventSlim();
        var reached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnBeginning(string method)
        {
            if (!HeldRequest.Value || !reached.TrySetResult()) { return; }
            // synchronous, on the held request's own thread: it goes no further until the test says so
            if (!release.Wait(TimeSpan.FromSeconds(120))) { throw new TimeoutException($"the held request was never released from {method}"); }
        }
        _store.TransactionBeginning += OnBeginning;
        try
        {
            var held = Task.Run(async () =>
            {
                HeldRequest.Value = true;
                await first();
            });
            Assert.That(await Task.WhenAny(held, reached.Task, Task.Delay(TimeSpan.FromSeconds(60))), Is.SameAs(reached.Task),
                $"the first request never began a transaction: {held.Exception?.InnerException?.Message}");
            var secondError = await OutcomeAsync(second());
            release.Set();
            return (await OutcomeAsync(held), secondError);
        }
        finally
        {
            release.Set();
            _store.TransactionBeginning -= OnBeginning;
        }
    }

    private static async Task<Exception?> OutcomeAsync(Task request)
    {
        try
        {
            await request.WaitAsync(TimeSpan.FromSeconds(60));
            return null;
        }
        catch (Exception e) when (e is GroupRuleException or RolloutRuleException or StoreConflictException)
        {
            return e;
        }
    }

    private static bool IsConflict(Exception e) => e is GroupRuleException { Conflict: true } or RolloutRuleException { Conflict: true } or StoreConflictException;

    /// <summary>
    /// The policy PUT, a group's window PUT and a rollout's creation, each alone accepted, would together hold the
    /// rollout's units forever (a low-utilisation window of 10:00-12:00 never meets a group window of 02:00-04:00). Whichever
    /// is held after its reads while the other commits, exactly one is accepted, the other is a conflict that changed
    /// nothing, and what is stored holds no active rollout that could never move.
    /// </summary>
    [TestCase("policy", "window")]
    [TestCase("window", "policy")]
    [TestCase("policy", "create")]
    [TestCase("create", "policy")]
    public async Task A_policy_change_racing_a_window_change_or_a_rollout_creation_never_strands_a_rollout(string first, string second)
    {
        await ProgramAsync(3);
        var service = Replica();
        // the window races a running rollout; the creation races a group that already has its window
        if (first == "window" || second == "window") { await CreateAsync(service, "r1"); }
        else { await WindowAsync("02:00-04:00"); }
        var before = await StateAsync();
        var narrow = UpdatePolicy.Default with { LowWindowStartHour = 10, LowWindowEndHour = 12 };
        Func<Task> Request(string which) => which switch
        {
            "policy" => () => PolicySettings.SetCheckedAsync(_store, narrow, "alice", CancellationToken.None),
            "window" => () => Groups.SetWindowAsync("lab", new GroupWindowRequest("02:00-04:00"), _store, "bob", CancellationToken.None),
            _ => () => CreateAsync(service, "r1"),
        };
        // each alone is accepted: the other side is as it was before
        Assert.That(GroupWindows.Stall("lab", MaintenanceWindow.Parse("02:00-04:00").Window!, "r1", "x-to-y", 3, UpdatePolicy.Default), Is.Null);

        var (firstError, secondError) = await InterleaveAsync(Request(first), Request(second));

        Assert.That(new[] { firstError, secondError }.Count(e => e is null), Is.EqualTo(1),
            $"exactly one is accepted (first: {firstError?.Message ?? "accepted"}; second: {secondError?.Message ?? "accepted"})");
        var refused = (firstError ?? secondError)!;
        Assert.That(IsConflict(refused), Is.True, $"the other is a conflict (409): {refused.GetType().Name} {refused.Message}");
        Assert.That(refused.Message, Does.Contain("never overlaps").And.Contain("nothing was"));
        var winner = firstError is null ? first : second;

        // what is stored: the accepted change only, and no active rollout its group's window and the policy would hold forever
        var policy = await PolicySettings.GetAsync(_store);
        Assert.That(policy, Is.EqualTo(winner == "policy" ? narrow : UpdatePolicy.Default));
        var after = await StateAsync();
        Assert.That(after.Audit, Is.EqualTo(before.Audit + 1), "one change audited");
        Assert.That((await _store.ListAuditAsync(1)).Single().Action,
            Is.EqualTo(winner switch { "policy" => "settings.update-policy", "window" => "group.window", _ => "rollout.create" }));
        Assert.That(after.Window, Is.EqualTo(winner == "window" || before.Window is not null ? "02:00-04:00" : null));
        Assert.That(after.Rollouts, Is.EqualTo(before.Rollouts + (winner == "create" ? 1 : 0)));
        foreach (var rollout in await _store.Rollouts.ListRolloutsAsync(activeOnly: true))
        {
            var window = (await _store.Fleet.GetGroupAsync(rollout.GroupName))!.MaintenanceWindow;
            Assert.That(window is null ? null : GroupWindows.Stall(rollout.GroupName, MaintenanceWindow.Parse(window).Window!, rollout.Name, rollout.UpdateId, 3, policy),
                Is.Null, $"rollout {rollout.Name} could never move");
        }
    }

    [Test]
    public async Task A_window_change_that_would_stall_a_running_or_paused_rollout_is_refused_and_changes_nothing()
    {
        await ProgramAsync(3);
        var service = Replica();
        await CreateAsync(service, "r1");
        var before = await StateAsync();
        var refused = Assert.ThrowsAsync<GroupRuleException>(() => Groups.SetWindowAsync("lab", new GroupWindowRequest("Mon-Fri 06:00-08:00"), _store, "alice", CancellationToken.None))!;
        Assert.That((refused.Conflict, refused.NotFound), Is.EqualTo((true, false)));
        Assert.That(refused.Message, Does.Contain("group lab's maintenance window mon,tue,wed,thu,fri 06:00-08:00").And.Contain("low-utilisation window 02:00-05:00")
            .And.Contain("rollout r1").And.Contain("nothing was changed"));
        Assert.That(await StateAsync(), Is.EqualTo(before));

        // one that meets the policy's window is set, and audited
        var set = await Groups.SetWindowAsync("lab", new GroupWindowRequest("mon-fri 01:00-03:00"), _store, "alice", CancellationToken.None);
        Assert.That(set.Window, Is.EqualTo("mon,tue,wed,thu,fri 01:00-03:00"));
        Assert.That((await _store.ListAuditAsync(10)).First().Action, Is.EqualTo("group.window"));

        // paused: still refused (a resume would stall); clearing is always allowed
        Assert.That(await service.TryActAsync("r1", "pause", "alice"), Is.True);
        before = await StateAsync();
        Assert.That(Assert.ThrowsAsync<GroupRuleException>(() => Groups.SetWindowAsync("lab", new GroupWindowRequest("22:00-01:00"), _store, "alice", CancellationToken.None))!.Conflict);
        Assert.That(await StateAsync(), Is.EqualTo(before));
        Assert.That((await Groups.SetWindowAsync("lab", new GroupWindowRequest(null), _store, "alice", CancellationToken.None)).Window, Is.Null);

        // aborted: the group's window no longer concerns it
        Assert.That(await service.TryActAsync("r1", "abort", "alice"), Is.True);
        Assert.That((await Groups.SetWindowAsync("lab", new GroupWindowRequest("22:00-01:00"), _store, "alice", CancellationToken.None)).Window, Is.EqualTo("22:00-01:00"));
    }

    [Test]
    public async Task Hostile_window_requests_are_refused_and_change_nothing()
    {
        await ProgramAsync(3);
        await CreateAsync(Replica(), "r1");
        var before = await StateAsync();
        foreach (var (name, request, status) in new (string?, GroupWindowRequest?, string)[]
        {
            ("lab", null, "bad"),
            ("lab", new("mon\u000001:00-02:00"), "bad"),
            ("lab", new("mon 01:00-02:00\n"), "bad"),
            ("lab", new("mon 1:00-2:00"), "bad"),
            ("lab", new("25:00-01:00"), "bad"),
            ("lab", new("01:00-01:00"), "bad"),
            ("lab", new(new string('1', 100_000)), "bad"),
            ("lab", new("mon-fri 01:00-05:00 01:00-02:00"), "bad"),
            ("lab", new("\u202emon 01:00-02:00"), "bad"),
            ("nope", new("01:00-02:00"), "missing"),
            ("lab\n", new("01:00-02:00"), "missing"),
            ("../lab", new("01:00-02:00"), "missing"),
            (null, new("01:00-02:00"), "missing"),
            ("lab", new("sun 06:00-07:00"), "conflict"),
        })
        {
            var e = Assert.ThrowsAsync<GroupRuleException>(() => Groups.SetWindowAsync(name, request, _store, "alice", CancellationToken.None))!;
            Assert.That(e.NotFound ? "missing" : e.Conflict ? "conflict" : "bad", Is.EqualTo(status), $"{name} {request}: {e.Message}");
            Assert.That(e.Message, Does.Not.Contain("\n").And.Not.Contain("\u0000"), "no control character is echoed");
            Assert.That(await StateAsync(), Is.EqualTo(before), $"{name} {request} changed something");
        }
    }

    /// <summary>Every unit's own hours, zone and maintenance window as stored (mac, start, end, zone, window), sorted: what a refused unit window must leave as it was.</summary>
    private async Task<string> ClocksAsync()
    {
        var rows = new List<string>();
        for (var i = 0; i < 7; i++)
        {
            var u = (await _store.Units.GetUnitAsync(Mac(i)))!;
            rows.Add($"{u.Mac} {u.LowWindowStart?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-"}-{u.LowWindowEnd?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-"} {u.TimeZone ?? "-"} [{u.MaintenanceWindow ?? "-"}]");
        }
        return string.Join("; ", rows);
    }

    /// <summary>Unit <paramref name="i"/>'s own hours (both null: the fleet's) through the operator's path; false when not registered.</summary>
    private Task<bool> UnitWindowAsync(int i, int? start, int? end, string? zone = null) =>
        Tsunagu.Server.Units.Windows.UpdateWindowApi.SetCheckedAsync(_store, Mac(i), new(start, end, zone), "carol", CancellationToken.None);

    /// <summary>Unit <paramref name="i"/>'s own maintenance window (null: none) through the operator's path, after the API's grammar check.</summary>
    private Task<bool> OwnWindowAsync(int i, string? window)
    {
        var request = new Tsunagu.Server.Units.Windows.UpdateWindowRequest(null, null, null, window);
        Assert.That(Tsunagu.Server.Units.Windows.UpdateWindowApi.Invalid(request), Is.Null, window);
        return Tsunagu.Server.Units.Windows.UpdateWindowApi.SetCheckedAsync(_store, Mac(i), request, "carol", CancellationToken.None);
    }

    /// <summary>
    /// The members of active rollouts that could never be offered their update: a member the gate may still
    /// offer it to (an active unit on the from-pattern, not pinned to another target, with no failed report of the update
    /// since it joined: read here from the unit rows and the members' statuses, not through the store's rule), with an own
    /// maintenance window (importance 4 and below) or own low-utilisation hours (importance 3) that never
    /// meet the group's window by the minute-by-minute scan (the invariant every request keeps). The store's rule
    /// (<see cref="UpdateWindowStore.WaitingMember"/>) is asserted to pick the same members.
    /// </summary>
    private async Task<IReadOnlyList<string>> StrandedAsync()
    {
        var stranded = new List<string>();
        foreach (var rollout in await _store.Rollouts.ListRolloutsAsync(activeOnly: true))
        {
            if ((await _store.Fleet.GetGroupAsync(rollout.GroupName))!.MaintenanceWindow is not { } text) { continue; }
            var program = (await _store.Catalogue.GetUpdateProgramAsync(rollout.UpdateId))!;
            if (program.Importance >= 5) { continue; }
            var window = MaintenanceWindow.Parse(text).Window!;
            var waiting = new List<string>();
            foreach (var member in await _store.Rollouts.RolloutMembersAsync(rollout))
            {
                var unit = (await _store.Units.GetUnitAsync(member.Mac))!;
                if (unit.DecommissionedAt is not null || unit.Pattern != program.FromPattern || (unit.LowWindowStart is null && unit.MaintenanceWindow is null)) { continue; }
                if (unit.TargetPattern is { } target && target != rollout.ToPattern) { continue; }
                if (member.FailedAt is not null) { continue; } // a failed report of the update since it joined
                waiting.Add(member.Mac);
                var never = unit.MaintenanceWindow is { } own
                    ? !MinuteScanOverlaps(window, MaintenanceWindow.Parse(own).Window!)
                    : program.Importance == 3 && !GroupWindows.Overlaps(window, GroupWindows.OwnHours((int)unit.LowWindowStart!.Value, (int)unit.LowWindowEnd!.Value));
                if (never) { stranded.Add($"{rollout.Name}/{member.Mac}"); }
            }
            Assert.That((await _store.Windows.WaitingMembersWithOwnHoursAsync(rollout.Name, null, int.MaxValue, installing: true, CancellationToken.None)).Select(m => m.Mac), Is.EqualTo(waiting.Order(StringComparer.Ordinal)),
                $"rollout {rollout.Name}: the store's rule picks the members the gate may still offer the update to");
        }
        return stranded;
    }

    [TestCase("running")]
    [TestCase("paused")]
    public async Task A_unit_window_that_never_meets_its_rollouts_group_window_is_refused_and_changes_nothing(string state)
    {
        await ProgramAsync(3);
        await WindowAsync("01:00-05:00");
        var service = Replica();
        await CreateAsync(service, "r1");
        if (state == "paused") { Assert.That(await service.TryActAsync("r1", "pause", "alice"), Is.True); }
        var (before, clocks) = (await StateAsync(), await ClocksAsync());

        foreach (var (start, end) in new[] { (10, 12), (5, 1), (6, 6), (22, 1) })
        {
            var refused = Assert.ThrowsAsync<StoreConflictException>(() => UnitWindowAsync(0, start, end, "Asia/Tokyo"))!;
            Assert.That(refused.Message, Does.StartWith($"unit {Mac(0)}'s own low-utilisation hours {start:00}:00-{end:00}:00 never meet group lab's maintenance window 01:00-05:00")
                .And.Contain("rollout r1").And.Contain("importance 3").And.EndWith("; nothing was changed"));
            Assert.That((await StateAsync(), await ClocksAsync()), Is.EqualTo((before, clocks)), $"a refused {start}-{end} changed something");
        }

        // hours that meet the window, a unit that is not a member, a member on the to-pattern, and clearing: stored and audited
        Assert.That(await UnitWindowAsync(0, 4, 6, "Asia/Tokyo"), Is.True, "04:00-06:00 meets 01:00-05:00");
        Assert.That(await UnitWindowAsync(6, 10, 12), Is.True, "unit 6 is not in group lab");
        await _store.Units.RecordInventoryAsync(Mac(1), OnY, "y", UnitStates.Ready);
        Assert.That(await UnitWindowAsync(1, 10, 12), Is.True, "unit 1 runs y already: it waits for nothing");
        Assert.That(await UnitWindowAsync(0, null, null), Is.True, "cleared: the fleet's 02:00-05:00, which meets the group's window");
        Assert.That((await _store.ListAuditAsync(4)).Select(a => (a.Action, a.Target)),
            Is.EqualTo(new[] { ("unit.update-window", Mac(0)), ("unit.update-window", Mac(1)), ("unit.update-window", Mac(6)), ("unit.update-window", Mac(0)) }));
        Assert.That(await StrandedAsync(), Is.Empty);

        // aborted: the group's window no longer concerns its members
        Assert.That(await service.TryActAsync("r1", "abort", "alice"), Is.True);
        Assert.That(await UnitWindowAsync(2, 10, 12), Is.True);
    }

    [TestCase(2)]
    [TestCase(4)]
    [TestCase(5)]
    public async Task A_unit_window_is_not_checked_for_an_update_that_does_not_wait_for_it(int importance)
    {
        // 1-2 wait for the policy's maintenance window (03:00-04:00 meets the group's), 4 for load, 5 for nothing
        await ProgramAsync(importance);
        await WindowAsync("01:00-05:00");
        await CreateAsync(Replica(), "r1");
        Assert.That(await UnitWindowAsync(0, 10, 12), Is.True);
        Assert.That((await _store.Units.GetUnitAsync(Mac(0)))!.LowWindowStart, Is.EqualTo(10));
    }

    [Test]
    public async Task A_group_window_that_never_meets_members_own_hours_is_refused_naming_them_and_changes_nothing()
    {
        await ProgramAsync(3);
        var service = Replica();
        await CreateAsync(service, "r1");
        // no group window yet: any hours are accepted; units 0-5 are members, 6 is not
        for (var i = 0; i < 7; i++) { Assert.That(await UnitWindowAsync(i, 10, 12), Is.True); }
        var (before, clocks) = (await StateAsync(), await ClocksAsync());

        var refused = Assert.ThrowsAsync<GroupRuleException>(() => Groups.SetWindowAsync("lab", new GroupWindowRequest("02:00-04:00"), _store, "alice", CancellationToken.None))!;
        Assert.That((refused.Conflict, refused.NotFound), Is.EqualTo((true, false)));
        Assert.That(refused.Message, Does.StartWith("group lab's maintenance window 02:00-04:00 never meets the own low-utilisation hours of 6 unit(s) (" +
                string.Join(", ", Enumerable.Range(0, 5).Select(i => $"{Mac(i)} 10:00-12:00")) + ", ...)")
            .And.Contain("rollout r1").And.Contain("nothing was changed").And.Not.Contain(Mac(5)).And.Not.Contain(Mac(6)));
        Assert.That((await StateAsync(), await ClocksAsync()), Is.EqualTo((before, clocks)));

        // five left, all named; an installed member does not count
        Assert.That(await UnitWindowAsync(5, null, null), Is.True);
        await _store.Units.RecordInventoryAsync(Mac(4), OnY, "y", UnitStates.Ready);
        (before, clocks) = (await StateAsync(), await ClocksAsync());
        refused = Assert.ThrowsAsync<GroupRuleException>(() => Groups.SetWindowAsync("lab", new GroupWindowRequest("mon 02:00-04:00"), _store, "alice", CancellationToken.None))!;
        Assert.That(refused.Message, Does.Contain("of 4 unit(s) (" + string.Join(", ", Enumerable.Range(0, 4).Select(i => $"{Mac(i)} 10:00-12:00")) + ")"));
        Assert.That((await StateAsync(), await ClocksAsync()), Is.EqualTo((before, clocks)));

        // a window that meets both the policy's 02:00-05:00 and their 10:00-12:00 is set; clearing is always allowed
        Assert.That((await Groups.SetWindowAsync("lab", new GroupWindowRequest("04:00-11:00"), _store, "alice", CancellationToken.None)).Window, Is.EqualTo("04:00-11:00"));
        Assert.That(await StrandedAsync(), Is.Empty);
        Assert.That((await Groups.SetWindowAsync("lab", new GroupWindowRequest(null), _store, "alice", CancellationToken.None)).Window, Is.Null);
    }

    [Test]
    public async Task A_rollout_whose_group_window_never_meets_members_own_hours_is_refused_naming_them_and_stores_nothing()
    {
        await ProgramAsync(3);
        await WindowAsync("02:00-04:00");
        // no rollout yet: any hours are accepted; units 0-5 would be its members, 6 is not in the group
        for (var i = 0; i < 7; i++) { Assert.That(await UnitWindowAsync(i, i == 2 ? 3 : 10, i == 2 ? 5 : 12), Is.True); }
        var service = Replica();
        var (before, clocks) = (await StateAsync(), await ClocksAsync());

        var refused = Assert.ThrowsAsync<RolloutRuleException>(() => CreateAsync(service, "r1"))!;
        Assert.That(refused.Conflict, Is.True);
        Assert.That(refused.Message, Does.StartWith("group lab's maintenance window 02:00-04:00 never meets the own low-utilisation hours of 5 unit(s) (" +
                string.Join(", ", new[] { 0, 1, 3, 4, 5 }.Select(i => $"{Mac(i)} 10:00-12:00")) + ")")
            .And.Contain("rollout r1").And.Contain("nothing was stored").And.Not.Contain(Mac(2)).And.Not.Contain(Mac(6)));
        Assert.That((await StateAsync(), await ClocksAsync()), Is.EqualTo((before, clocks)), "a refused rollout stored nothing");
        Assert.That(_push.Sent, Is.Empty);

        // the operator clears those units' windows or chooses hours that meet the group's: created
        foreach (var i in new[] { 0, 1, 3, 4, 5 }) { Assert.That(await UnitWindowAsync(i, i % 2 == 0 ? null : 23, i % 2 == 0 ? null : 3), Is.True); }
        Assert.That((await CreateAsync(service, "r1")).State, Is.EqualTo(RolloutStates.Running));
        Assert.That(await StrandedAsync(), Is.Empty);
    }

    /// <summary>
    /// A unit's window PUT, a group's window PUT and a rollout's creation, each alone accepted, would together hold a member
    /// forever (own hours 10:00-12:00 never meet a group window of 02:00-04:00). The first is held just before its
    /// transaction begins while the second commits (after its reads outside it, for the rollout's creation and the group
    /// window; before any read for the unit's window, which reads the rollouts inside its transaction): the first, which
    /// commits second, is refused and changes nothing.
    /// </summary>
    [TestCase("unit", "window")]
    [TestCase("window", "unit")]
    [TestCase("unit", "create")]
    [TestCase("create", "unit")]
    public async Task A_unit_window_racing_a_group_window_change_or_a_rollout_creation_never_strands_a_member(string first, string second)
    {
        await ProgramAsync(3);
        var service = Replica();
        // the window change races a running rollout; the creation races a group that already has its window
        if (first == "window" || second == "window") { await CreateAsync(service, "r1"); }
        else { await WindowAsync("02:00-04:00"); }
        var (before, clocks) = (await StateAsync(), await ClocksAsync());
        Func<Task> Request(string which) => which switch
        {
            "unit" => UnitZeroAsync,
            "window" => () => Groups.SetWindowAsync("lab", new GroupWindowRequest("02:00-04:00"), _store, "bob", CancellationToken.None),
            _ => () => CreateAsync(service, "r1"),
        };
        async Task UnitZeroAsync()
        {
            if (!await UnitWindowAsync(0, 10, 12)) { throw new InvalidOperationException("unit 0 is not registered"); }
        }
        // each alone is accepted: the group's window meets the policy's 02:00-05:00
        Assert.That(GroupWindows.Stall("lab", MaintenanceWindow.Parse("02:00-04:00").Window!, "r1", "x-to-y", 3, UpdatePolicy.Default), Is.Null);

        var (firstError, secondError) = await InterleaveAsync(Request(first), Request(second));

        Assert.That(secondError, Is.Null, $"the request that commits first is accepted: {secondError?.Message}");
        Assert.That(firstError, Is.Not.Null, "the request that commits second is refused");
        Assert.That(IsConflict(firstError!), Is.True, $"a conflict (409): {firstError!.GetType().Name} {firstError.Message}");
        Assert.That(firstError.Message, Does.Contain(Mac(0)).And.Contain("10:00-12:00").And.Contain("02:00-04:00").And.Contain("rollout r1")
            .And.Contain(first == "create" ? "nothing was stored" : "nothing was changed"));

        var after = await StateAsync();
        Assert.That(after.Audit, Is.EqualTo(before.Audit + 1), "one change audited");
        Assert.That((await _store.ListAuditAsync(1)).Single().Action,
            Is.EqualTo(second switch { "unit" => "unit.update-window", "window" => "group.window", _ => "rollout.create" }));
        Assert.That(await ClocksAsync(), second == "unit" ? Is.Not.EqualTo(clocks) : Is.EqualTo(clocks));
        Assert.That(after.Window, Is.EqualTo(before.Window is not null || second == "window" ? "02:00-04:00" : null));
        Assert.That(after.Rollouts, Is.EqualTo(before.Rollouts + (second == "create" ? 1 : 0)));
        Assert.That(await StrandedAsync(), Is.Empty, "no member that could never be offered the update");
    }

    [Test]
    public async Task A_unit_that_joins_later_with_hours_that_never_meet_the_window_is_shown_as_never_offered()
    {
        await ProgramAsync(3);
        await WindowAsync("01:00-05:00");
        var service = Replica();
        Assert.That((await CreateAsync(service, "r1")).NeverOffered, Is.Empty);
        // unit 6 is not in the group: its hours are its own business; then it is tagged into the group and joins at the next pass
        Assert.That(await UnitWindowAsync(6, 10, 12), Is.True);
        Assert.That(await _store.Fleet.SetTagsAsync(Mac(6), ["lab"], new AuditEntry("alice", "unit.tags", Mac(6), "lab")), Is.True);
        await service.TickAsync(CancellationToken.None);
        var view = await service.ViewAsync((await _store.Rollouts.GetRolloutAsync("r1"))!);
        Assert.That(view.Total.Members, Is.EqualTo(7), "unit 6 joined");
        Assert.That(view.NeverOffered, Is.EqualTo(new[] { new StrandedMember(Mac(6), "10:00-12:00") }), "the API says which member waits forever");
        Assert.That(await StrandedAsync(), Is.EqualTo(new[] { $"r1/{Mac(6)}" }));

        // a member now: hours that still never meet are refused; clearing them ends it
        Assert.That(Assert.ThrowsAsync<StoreConflictException>(() => UnitWindowAsync(6, 10, 13))!.Message, Does.EndWith("; nothing was changed"));
        Assert.That(await UnitWindowAsync(6, null, null), Is.True);
        Assert.That((await service.ViewAsync((await _store.Rollouts.GetRolloutAsync("r1"))!)).NeverOffered, Is.Empty);
        Assert.That(await StrandedAsync(), Is.Empty);
    }

    [Test]
    public async Task A_member_already_stuck_can_still_change_only_its_zone()
    {
        await ProgramAsync(3);
        await WindowAsync("01:00-05:00");
        var service = Replica();
        await CreateAsync(service, "r1");
        // unit 0's hours were stored without the check (as before it existed); unit 6 had its hours and joined later
        Assert.That(await _store.Windows.SetUpdateWindowAsync(Mac(0), 10, 12, null, new AuditEntry("carol", "unit.update-window", Mac(0), "10-12")), Is.True);
        Assert.That(await UnitWindowAsync(6, 10, 12), Is.True);
        Assert.That(await _store.Fleet.SetTagsAsync(Mac(6), ["lab"], new AuditEntry("alice", "unit.tags", Mac(6), "lab")), Is.True);
        await service.TickAsync(CancellationToken.None);
        var stuck = new[] { $"r1/{Mac(0)}", $"r1/{Mac(6)}" };
        Assert.That(await StrandedAsync(), Is.EqualTo(stuck));

        // the PUT always carries the hours (the CLI sends the current ones with --time-zone): the same hours are not refused
        foreach (var i in new[] { 0, 6 })
        {
            Assert.That(await UnitWindowAsync(i, 10, 12, "Asia/Tokyo"), Is.True, $"unit {i}: a zone change alone");
            Assert.That((await _store.Units.GetUnitAsync(Mac(i)))!.TimeZone, Is.EqualTo("Asia/Tokyo"));
            Assert.That(await UnitWindowAsync(i, 10, 12), Is.True, $"unit {i}: back to the fleet's zone");
            // other hours that still never meet the window are refused and change nothing
            var clocks = await ClocksAsync();
            Assert.That(Assert.ThrowsAsync<StoreConflictException>(() => UnitWindowAsync(i, 10, 13, "Asia/Tokyo"))!.Message, Does.EndWith("; nothing was changed"));
            Assert.That(await ClocksAsync(), Is.EqualTo(clocks));
        }
        Assert.That(await StrandedAsync(), Is.EqualTo(stuck), "nothing got better or worse");
        Assert.That((await service.ViewAsync((await _store.Rollouts.GetRolloutAsync("r1"))!)).NeverOffered!.Select(m => m.Mac), Is.EqualTo(new[] { Mac(0), Mac(6) }));
    }

    [Test]
    public async Task Members_the_gate_will_never_offer_the_update_do_not_block_a_group_window()
    {
        await ProgramAsync(3);
        await _store.Catalogue.AddPatternAsync(new PatternRow { Id = "z", Name = "z", HardwareVersion = "hw-1", OsVersion = "os-1", Applications = "{\"vcp\":\"3.0.0\"}", Status = PatternStatus.Verified });
        var service = Replica();
        await CreateAsync(service, "r1");
        // no group window yet: any hours are accepted
        for (var i = 0; i < 4; i++) { Assert.That(await UnitWindowAsync(i, 10, 12), Is.True); }
        _clock.Advance(TimeSpan.FromMinutes(1));
        // unit 0 reported the update as failed since it joined, unit 1 went to a third pattern: the gate never offers them
        // the update; unit 2 was offered it already, but the gate applies the windows at each check (a failed download
        // comes back for it), so it waits like unit 3
        Assert.That(await _store.History.RecordUpdateReportAsync(Mac(0), "x-to-y", false, "verification failed", "x"), Is.True);
        await _store.Units.RecordInventoryAsync(Mac(1), new Inventory("hw-1", "os-1", new Dictionary<string, string> { ["vcp"] = "3.0.0" }), "z", UnitStates.Ready);
        var program = (await _store.Catalogue.GetUpdateProgramAsync("x-to-y"))!;
        var offered = (await _store.Units.GetUnitForCheckAsync(Mac(2)))!;
        Assert.That((await _store.Units.RecordCheckAsync(offered, OnX, offered.Pattern!, offered.State, "periodic on x: offered x-to-y", forced: false, new CheckOffer(program, "r1"))).Withheld,
            Is.EqualTo(OfferWithheld.None), "unit 2's check records the rollout's offer");
        Assert.That(await service.GateAsync(Mac(0), program), Does.Contain("failed x-to-y"), "the gate never offers unit 0 again");

        var (before, clocks) = (await StateAsync(), await ClocksAsync());
        var refused = Assert.ThrowsAsync<GroupRuleException>(() => Groups.SetWindowAsync("lab", new GroupWindowRequest("02:00-04:00"), _store, "alice", CancellationToken.None))!;
        Assert.That(refused.Message, Does.Contain($"of 2 unit(s) ({Mac(2)} 10:00-12:00, {Mac(3)} 10:00-12:00)"), "only the members the gate may still offer the update to count");
        Assert.That((await StateAsync(), await ClocksAsync()), Is.EqualTo((before, clocks)));

        Assert.That(await UnitWindowAsync(2, null, null), Is.True);
        Assert.That(await UnitWindowAsync(3, null, null), Is.True);
        Assert.That((await Groups.SetWindowAsync("lab", new GroupWindowRequest("02:00-04:00"), _store, "alice", CancellationToken.None)).Window, Is.EqualTo("02:00-04:00"));
        // the offered unit 2 given hours that never meet without the check (as before the check existed): the gate defers
        // it for the group's window again, and the view and the invariant show it
        Assert.That(await _store.Windows.SetUpdateWindowAsync(Mac(2), 13, 14, null, new AuditEntry("carol", "unit.update-window", Mac(2), "13-14")), Is.True);
        Assert.That(await service.GateAsync(Mac(2), program), Does.Contain("waits for group lab's maintenance window"), "an offered member meets the gate again");
        Assert.That((await service.ViewAsync((await _store.Rollouts.GetRolloutAsync("r1"))!)).NeverOffered!.Select(m => m.Mac), Is.EqualTo(new[] { Mac(2) }));
        Assert.That(await StrandedAsync(), Is.EqualTo(new[] { $"r1/{Mac(2)}" }));
        // installing it now (state Updating), it finishes without the gate: the view leaves it out, the checks still count it
        await _store.Units.TouchAsync(Mac(2), UnitStates.Updating);
        Assert.That((await service.ViewAsync((await _store.Rollouts.GetRolloutAsync("r1"))!)).NeverOffered, Is.Empty, "a member installing the update now is not shown");
        Assert.That(await StrandedAsync(), Is.EqualTo(new[] { $"r1/{Mac(2)}" }));
        await _store.Units.TouchAsync(Mac(2), UnitStates.Ready);
        Assert.That(await UnitWindowAsync(2, null, null), Is.True);
        // the view and the checks use the same rule: none of them is shown, and only the ones the gate may offer the
        // update to can be refused hours that never meet the window
        Assert.That((await service.ViewAsync((await _store.Rollouts.GetRolloutAsync("r1"))!)).NeverOffered, Is.Empty);
        Assert.That(await StrandedAsync(), Is.Empty);
        for (var i = 0; i < 2; i++) { Assert.That(await UnitWindowAsync(i, 13, 14), Is.True, $"unit {i} waits for no offer"); }
        foreach (var i in new[] { 2, 3 }) { Assert.That(Assert.ThrowsAsync<StoreConflictException>(() => UnitWindowAsync(i, 13, 14))!.Message, Does.Contain(Mac(i))); }
    }

    [Test]
    public async Task Never_offered_members_page_in_MAC_order_across_the_stores_batches_none_lost_or_repeated()
    {
        await ProgramAsync(3);
        await WindowAsync("01:00-05:00");
        // more members than two of the service's reads hold, registered on x in group lab in one call
        var extra = 2 * RolloutService.NeverOfferedBatch + 37;
        string Extra(int i) => $"02:00:00:01:{i / 256:x2}:{i % 256:x2}";
        await _store.Units.AddUnitsAsync([.. Enumerable.Range(0, extra).Select(i => new UnitRow { Mac = Extra(i), Serial = $"SN-X{i}", HardwareVersion = "hw-1", IspMethod = "dhcp", Pattern = "x", State = UnitStates.Ready })],
            null, "alice", "unit.import", null, null, Enumerable.Range(0, extra).ToDictionary(Extra, _ => (IReadOnlyList<string>)["lab"]));
        var service = Replica();
        Assert.That((await CreateAsync(service, "r1")).NeverOfferedCount, Is.Zero);

        // hours stored without the check (as before it existed): two in three never meet the window, every sixth meets
        // it, the rest have none; one of the stuck is installing the update now (online, state Updating)
        var never = new List<string>();
        await using (var c = await _database.OpenAsync(CancellationToken.None))
        {
            for (var i = 0; i < extra; i++)
            {
                var (start, end) = i % 3 != 0 ? (10, 12) : i % 2 == 0 ? (2, 4) : (-1, -1);
                if (start < 0) { continue; }
                await Dapper.SqlMapper.ExecuteAsync(c, "UPDATE units SET low_window_start = @start, low_window_end = @end WHERE mac = @mac", new { start, end, mac = Extra(i) });
                if (start == 10) { never.Add(Extra(i)); }
            }
        }
        var installing = never[2 * 100 + 3];
        await _store.Units.TouchAsync(installing, UnitStates.Updating);
        await _store.Units.SetPresenceAsync(installing, online: true);
        never.Remove(installing);
        // one that reported Updating and then went offline is not installing: it stays listed
        await _store.Units.TouchAsync(never[300], UnitStates.Updating);
        await _store.Units.SetPresenceAsync(never[300], online: false);
        never.Sort(StringComparer.Ordinal);
        Assert.That(never, Has.Count.GreaterThan(RolloutService.NeverOfferedBatch), "the stuck members span more than one of the store's reads");

        var row = (await _store.Rollouts.GetRolloutAsync("r1"))!;
        var view = await service.ViewAsync(row);
        Assert.That(view.NeverOfferedCount, Is.EqualTo(never.Count), "the view counts every stuck member");
        Assert.That(view.NeverOffered!.Select(m => m.Mac), Is.EqualTo(never.Take(RolloutService.ListedMembers)));
        Assert.That(view.NeverOffered!.Select(m => m.OwnHours).Distinct(), Is.EqualTo(new[] { "10:00-12:00" }));

        // pages of 100, then of the batch's size and of one more than it (a page that ends inside a read, at its end, past it)
        foreach (var size in new[] { 100, RolloutService.NeverOfferedBatch, RolloutService.NeverOfferedBatch + 1 })
        {
            var paged = new List<string>();
            string? after = null;
            for (var pages = 0; ; pages++)
            {
                Assert.That(pages, Is.LessThanOrEqualTo(never.Count / size + 1), $"pages of {size}: the paging ends");
                var page = await service.NeverOfferedPageAsync(row, after, size);
                Assert.That(page, Has.Count.LessThanOrEqualTo(size));
                if (page.Count == 0) { break; }
                paged.AddRange(page.Select(m => m.Mac));
                after = page[^1].Mac;
            }
            Assert.That(paged, Is.EqualTo(never), $"pages of {size}: every stuck member once, in MAC order, the installing one left out");
        }
        Assert.That(await service.NeverOfferedPageAsync(row, never[^1], 100), Is.Empty, "nothing after the last");
        Assert.That((await service.NeverOfferedPageAsync(row, installing, 1)).Single().Mac, Is.EqualTo(never.First(m => string.CompareOrdinal(m, installing) > 0)),
            "a page may start after any MAC, one not listed too");
    }

    /// <summary>Whether two windows are both open at some minute of a week (the test's own scan, not the server's).</summary>
    private static bool MinuteScanOverlaps(MaintenanceWindow a, MaintenanceWindow b)
    {
        var sunday = new DateTimeOffset(2026, 11, 1, 0, 0, 0, TimeSpan.Zero);
        return Enumerable.Range(0, 7 * 24 * 60).Select(m => sunday.AddMinutes(m)).Any(t => a.IsOpen(t) && b.IsOpen(t));
    }

    [TestCase(4)]
    [TestCase(3)]
    [TestCase(1)]
    public async Task A_units_own_maintenance_window_that_never_overlaps_its_rollouts_group_window_is_refused_at_every_importance_below_5(int importance)
    {
        await ProgramAsync(importance);
        await WindowAsync("mon-fri 01:00-05:00");
        var service = Replica();
        await CreateAsync(service, "r1");
        var (before, clocks) = (await StateAsync(), await ClocksAsync());

        foreach (var text in new[] { "sat,sun 01:00-05:00", "mon-fri 05:00-06:00", "10:00-12:00", "sat 23:00-01:00" })
        {
            var written = MaintenanceWindow.Parse(text).Window!.ToString();
            var refused = Assert.ThrowsAsync<StoreConflictException>(() => OwnWindowAsync(0, text))!;
            Assert.That(refused.Message, Does.StartWith($"unit {Mac(0)}'s own maintenance window {written} never overlaps group lab's maintenance window mon,tue,wed,thu,fri 01:00-05:00")
                .And.Contain("rollout r1").And.Contain($"importance {importance}").And.EndWith("; nothing was changed"));
            Assert.That((await StateAsync(), await ClocksAsync()), Is.EqualTo((before, clocks)), $"a refused {text} changed something");
        }

        // windows that meet the group's in one minute, or across midnight (Sunday night is Monday 00:00-02:00): stored and audited
        Assert.That(await OwnWindowAsync(0, "fri 04:59-23:00"), Is.True);
        Assert.That(await OwnWindowAsync(1, "sun 23:00-02:00"), Is.True);
        Assert.That((await _store.Units.GetUnitAsync(Mac(1)))!.MaintenanceWindow, Is.EqualTo("sun 23:00-02:00"));
        Assert.That(await OwnWindowAsync(6, "sat 10:00-11:00"), Is.True, "unit 6 is not in group lab");
        Assert.That((await _store.ListAuditAsync(1)).Single().Detail, Does.Contain("maintenance window sat 10:00-11:00"));
        Assert.That(await OwnWindowAsync(0, null), Is.True, "cleared: back to the fleet's hours");
        Assert.That(await StrandedAsync(), Is.Empty);
    }

    [Test]
    public async Task A_units_own_maintenance_window_is_not_checked_for_importance_5()
    {
        await ProgramAsync(5);
        await WindowAsync("01:00-05:00");
        await CreateAsync(Replica(), "r1");
        Assert.That(await OwnWindowAsync(0, "sat 10:00-11:00"), Is.True);
        Assert.That(await StrandedAsync(), Is.Empty);
    }

    [Test]
    public async Task A_rollout_or_a_group_window_that_never_meets_members_own_maintenance_windows_is_refused_naming_them()
    {
        await ProgramAsync(4);
        await WindowAsync("02:00-04:00");
        Assert.That(await OwnWindowAsync(0, "10:00-12:00"), Is.True, "no rollout yet: any window");
        Assert.That(await OwnWindowAsync(1, "sat 03:00-04:00"), Is.True);
        Assert.That(await OwnWindowAsync(6, "10:00-12:00"), Is.True, "not in the group");
        var service = Replica();
        var (before, clocks) = (await StateAsync(), await ClocksAsync());
        var refused = Assert.ThrowsAsync<RolloutRuleException>(() => CreateAsync(service, "r1"))!;
        Assert.That(refused.Conflict, Is.True);
        Assert.That(refused.Message, Does.StartWith($"group lab's maintenance window 02:00-04:00 never meets the own maintenance windows or hours of 1 unit(s) ({Mac(0)} maintenance window 10:00-12:00)")
            .And.Contain("importance 4").And.Contain("nothing was stored").And.Not.Contain(Mac(1)).And.Not.Contain(Mac(6)));
        Assert.That((await StateAsync(), await ClocksAsync()), Is.EqualTo((before, clocks)), "a refused rollout stored nothing");

        Assert.That(await OwnWindowAsync(0, null), Is.True);
        await CreateAsync(service, "r1");
        Assert.That(await OwnWindowAsync(2, "mon 03:00-04:00"), Is.True, "meets the group's window on Mondays");
        (before, clocks) = (await StateAsync(), await ClocksAsync());
        var group = Assert.ThrowsAsync<GroupRuleException>(() => Groups.SetWindowAsync("lab", new GroupWindowRequest("sun 02:00-04:00"), _store, "alice", CancellationToken.None))!;
        Assert.That(group.Conflict, Is.True);
        Assert.That(group.Message, Does.StartWith($"group lab's maintenance window sun 02:00-04:00 never meets the own maintenance windows or hours of 2 unit(s) " +
            $"({Mac(1)} maintenance window sat 03:00-04:00, {Mac(2)} maintenance window mon 03:00-04:00)").And.Contain("nothing was changed"));
        Assert.That((await StateAsync(), await ClocksAsync()), Is.EqualTo((before, clocks)));
        Assert.That((await Groups.SetWindowAsync("lab", new GroupWindowRequest("sat,mon 03:30-03:45"), _store, "alice", CancellationToken.None)).Window, Is.EqualTo("mon,sat 03:30-03:45"));
        Assert.That(await StrandedAsync(), Is.Empty);
    }

    [Test]
    public async Task A_member_whose_own_window_never_meets_the_group_window_is_shown_as_never_offered()
    {
        // a window stored past the checks (as by a server before them): the rollout's view shows the member
        await ProgramAsync(4);
        await WindowAsync("02:00-04:00");
        var service = Replica();
        await CreateAsync(service, "r1");
        Assert.That(await _store.Windows.SetUpdateWindowCheckedAsync(Mac(3), null, null, null, "10:00-12:00", _ => null, new AuditEntry("carol", "unit.update-window", Mac(3), "test"),
            CancellationToken.None), Is.True);
        Assert.That(await StrandedAsync(), Is.EqualTo(new[] { $"r1/{Mac(3)}" }));
        var view = await service.ViewAsync((await _store.Rollouts.GetRolloutAsync("r1"))!);
        Assert.That(view.NeverOfferedCount, Is.EqualTo(1));
        Assert.That(view.NeverOffered!.Single(), Is.EqualTo(new StrandedMember(Mac(3), "maintenance window 10:00-12:00")));
    }

    /// <summary>Runs <paramref name="work"/> and returns it once it waits for the transaction the test holds (<see cref="StoreSeam.StartBlocked"/>).</summary>
    private Task<Task<T>> StartBlocked<T>(string storeMethod, Func<Task<T>> work) =>
        StoreSeam.StartBlocked(_store, _database, storeMethod, () => Task.Run(work), task => Task.FromResult(task.Exception?.InnerException?.Message ?? "done"));

    [Test]
    public async Task A_unit_window_change_waits_for_a_group_window_change_in_progress_and_sees_it()
    {
        await ProgramAsync(3);
        await CreateAsync(Replica(), "r1");
        var clocks = await ClocksAsync();
        Task<bool>? unit = null;
        // inside the group window's transaction (after its reads, under the catalogue's lock): the unit's change must wait for it
        Assert.That(await _store.Fleet.SetGroupWindowCheckedAsync("lab", "02:00-04:00", (_, _, hours) =>
        {
            Assert.That(hours, Is.Empty, "no member has hours of its own yet");
            unit = StartBlocked(nameof(UpdateWindowStore.SetUpdateWindowCheckedAsync), () => UnitWindowAsync(0, 10, 12)).GetAwaiter().GetResult();
            return null;
        }, new AuditEntry("bob", "group.window", "lab", "02:00-04:00"), CancellationToken.None), Is.True);
        var refused = Assert.ThrowsAsync<StoreConflictException>(async () => await unit!.WaitAsync(TimeSpan.FromSeconds(60)))!;
        Assert.That(refused.Message, Does.Contain($"unit {Mac(0)}'s own low-utilisation hours 10:00-12:00 never meet group lab's maintenance window 02:00-04:00"));
        Assert.That(await ClocksAsync(), Is.EqualTo(clocks));
        Assert.That(await StrandedAsync(), Is.Empty);
    }

    [Test]
    public async Task A_group_window_change_or_a_rollout_creation_waits_for_a_unit_window_change_in_progress_and_sees_it()
    {
        await ProgramAsync(3);
        var service = Replica();
        await CreateAsync(service, "r1");
        var before = await StateAsync();
        Task<GroupView>? window = null;
        // inside the unit window's transaction (after its reads, under the catalogue's lock): the group's change must wait for it
        Assert.That(await _store.Windows.SetUpdateWindowCheckedAsync(Mac(0), 10, 12, null, null, uses =>
        {
            Assert.That(uses, Is.Empty, "group lab has no window yet");
            window = StartBlocked(nameof(FleetStore.SetGroupWindowCheckedAsync),
                () => Groups.SetWindowAsync("lab", new GroupWindowRequest("02:00-04:00"), _store, "bob", CancellationToken.None)).GetAwaiter().GetResult();
            return null;
        }, new AuditEntry("carol", "unit.update-window", Mac(0), "10-12")), Is.True);
        var refused = Assert.ThrowsAsync<GroupRuleException>(async () => await window!.WaitAsync(TimeSpan.FromSeconds(60)))!;
        Assert.That(refused.Message, Does.Contain($"of 1 unit(s) ({Mac(0)} 10:00-12:00)"));
        Assert.That(await StateAsync(), Is.EqualTo(before with { Audit = before.Audit + 1 }), "only the unit's window was stored");

        // the same for a rollout's creation: abort r1, give the group its window, then create while a unit's change is in progress
        Assert.That(await service.TryActAsync("r1", "abort", "alice"), Is.True);
        Assert.That(await UnitWindowAsync(0, null, null), Is.True);
        await WindowAsync("02:00-04:00");
        before = await StateAsync();
        Task<RolloutView>? create = null;
        Assert.That(await _store.Windows.SetUpdateWindowCheckedAsync(Mac(1), 10, 12, null, null, _ =>
        {
            create = StartBlocked(nameof(RolloutStore.AddRolloutAsync), () => CreateAsync(service, "r2")).GetAwaiter().GetResult();
            return null;
        }, new AuditEntry("carol", "unit.update-window", Mac(1), "10-12")), Is.True);
        var refusedRollout = Assert.ThrowsAsync<RolloutRuleException>(async () => await create!.WaitAsync(TimeSpan.FromSeconds(60)))!;
        Assert.That(refusedRollout.Message, Does.Contain($"of 1 unit(s) ({Mac(1)} 10:00-12:00)").And.Contain("nothing was stored"));
        Assert.That(await StateAsync(), Is.EqualTo(before with { Audit = before.Audit + 1 }), "only the unit's window was stored");
        Assert.That(await StrandedAsync(), Is.Empty);
    }

    /// <summary>Runs both replicas' passes at every step of <paramref name="step"/> until <paramref name="until"/>, with <paramref name="during"/> after each.</summary>
    private async Task RunAsync(IReadOnlyList<RolloutService> replicas, TimeSpan step, DateTimeOffset until, Func<Task>? during = null)
    {
        for (var i = 0; _clock.GetUtcNow() < until; i++)
        {
            _clock.Advance(step);
            // the replicas race in either order; the database says which one tells the units
            foreach (var replica in i % 2 == 0 ? replicas : replicas.Reverse()) { await replica.TickAsync(CancellationToken.None); }
            if (during is not null) { await during(); }
        }
    }

    /// <summary>The first step time at or after <paramref name="at"/> (steps of <paramref name="step"/> from <see cref="Wednesday"/>).</summary>
    private static DateTimeOffset FirstStepFrom(DateTimeOffset at, TimeSpan step) =>
        Wednesday + step * Math.Ceiling((at - Wednesday) / step);

    [Test]
    public async Task A_window_opening_tells_each_waiting_unit_once_per_opening_on_its_own_clock_and_no_other()
    {
        // importance 4 waits for no clock: the group's weekday window alone; unit 0 keeps Tokyo time, the rest the fleet's (UTC)
        await ProgramAsync(4);
        await WindowAsync("mon-fri 01:00-05:00");
        Assert.That(await _store.Windows.SetUpdateWindowAsync(Mac(0), null, null, "Asia/Tokyo", new AuditEntry("alice", "unit.window", Mac(0), null)), Is.True);
        var (a, b) = (Replica(), Replica());
        await CreateAsync(a, "r1", [new(Group: "canary"), new(Percent: 100)]); // wave 1: units 0-3; wave 2 (4, 5) stays closed
        await _store.Units.SetPresenceAsync(Mac(2), online: false);                  // offline: never told
        await a.StartAsync("r1", CancellationToken.None);
        Assert.That(_push.Sent.Select(p => p.Mac).Order(), Is.EqualTo(new[] { Mac(0), Mac(1), Mac(3) }), "the wave opening told its units");
        _push.Sent.Clear();

        // Wednesday 09:00 to Friday 09:00 UTC in steps of 7 minutes (not a divisor of an hour: openings fall between passes)
        var step = TimeSpan.FromMinutes(7);
        var installed = false;
        await RunAsync([a, b], step, Wednesday.AddDays(2), async () =>
        {
            // unit 1 installs once it was told at the first opening: it is not waiting at the second
            if (installed || !_push.Sent.Any(p => p.Mac == Mac(1))) { return; }
            installed = true;
            await _store.History.RecordUpdateOutcomeAsync(new UpdateOutcome(Mac(1), "x-to-y", true, null, OnY, "y", UnitStates.Configuring, null, "installed"));
        });

        var sent = _push.Sent.ToList();
        var expected = new[]
        {
            // Tokyo: Thursday and Friday 01:00 there are Wednesday and Thursday 16:00 UTC
            (Mac(0), FirstStepFrom(new DateTimeOffset(2026, 4, 1, 16, 0, 0, TimeSpan.Zero), step)),
            (Mac(0), FirstStepFrom(new DateTimeOffset(2026, 4, 2, 16, 0, 0, TimeSpan.Zero), step)),
            (Mac(1), FirstStepFrom(new DateTimeOffset(2026, 4, 2, 1, 0, 0, TimeSpan.Zero), step)),
            (Mac(3), FirstStepFrom(new DateTimeOffset(2026, 4, 2, 1, 0, 0, TimeSpan.Zero), step)),
            (Mac(3), FirstStepFrom(new DateTimeOffset(2026, 4, 3, 1, 0, 0, TimeSpan.Zero), step)),
        };
        Assert.That(sent.Select(p => (p.Mac, p.At)).OrderBy(p => p.At).ThenBy(p => p.Mac), Is.EqualTo(expected.OrderBy(p => p.Item2).ThenBy(p => p.Item1)),
            "each waiting unit once per opening, at the first pass after it; none offline, installed, in a closed wave or outside the group");
        var window = MaintenanceWindow.Parse("mon-fri 01:00-05:00").Window!;
        foreach (var p in sent)
        {
            var zone = TimeZoneInfo.FindSystemTimeZoneById(p.Mac == Mac(0) ? "Asia/Tokyo" : "UTC");
            Assert.That(window.IsOpen(TimeZoneInfo.ConvertTime(p.At, zone)), $"{p.Mac} was told at {p.At:u}, outside its window");
            Assert.That((p.Message.Reason, p.Message.Importance, p.Message.Type), Is.EqualTo((PushReasons.Config, 4, PushMessage.CheckNow)),
                "a window push does not force: the update keeps its importance");
        }
        Assert.That(installed, Is.True);
        // the forced-check path's accounting: one recorded check per unit told, each with its own nonce
        Assert.That(sent.Select(p => p.Message.Nonce).Distinct().Count(), Is.EqualTo(sent.Count));
        foreach (var mac in new[] { Mac(0), Mac(1), Mac(3) })
        {
            Assert.That((await _store.PushChecks.ListPushChecksForUnitAsync(mac, 100)).Count(c => c.Actor == "rollout:r1"), Is.EqualTo(1 + expected.Count(e => e.Item1 == mac)), mac);
        }
        var audits = (await _store.ListAuditAsync(1000)).Where(e => e.Action == "rollout.window-open").ToList();
        Assert.That(audits, Has.Count.EqualTo(4), "one audit entry per opening that told units (the two UTC openings, the two Tokyo ones)");
        Assert.That(audits.Select(e => e.Actor).Distinct(), Is.EqualTo(new[] { "rollout:r1" }));
    }

    [Test]
    public async Task A_window_opening_tells_a_unit_with_its_own_maintenance_window_only_when_both_are_open()
    {
        // importance 4: unit 0 waits for the group's daily 01:00-05:00 and its own Thursday 03:00-04:00; the others for the group's alone
        await ProgramAsync(4);
        await WindowAsync("01:00-05:00");
        Assert.That(await OwnWindowAsync(0, "thu 03:00-04:00"), Is.True);
        var a = Replica();
        await CreateAsync(a, "r1");
        await a.StartAsync("r1", CancellationToken.None);
        _push.Sent.Clear();

        // Wednesday 09:00 to Friday 09:00 UTC in steps of 7 minutes: the group's window opens Thursday and Friday 01:00
        var step = TimeSpan.FromMinutes(7);
        await RunAsync([a], step, Wednesday.AddDays(2));
        var told = _push.Sent.Where(p => p.Mac == Mac(0)).Select(p => p.At).ToList();
        Assert.That(told, Has.Count.EqualTo(1), "unit 0 is told once: when its own window opens inside the group's, not at the group's openings");
        var thursday3 = new DateTimeOffset(2026, 4, 2, 3, 0, 0, TimeSpan.Zero);
        Assert.That(told[0], Is.GreaterThanOrEqualTo(thursday3).And.LessThan(thursday3 + step));
        foreach (var mac in Enumerable.Range(1, 5).Select(Mac))
        {
            Assert.That(_push.Sent.Count(p => p.Mac == mac), Is.EqualTo(2), $"{mac}: told at each of the group's two openings");
        }
    }

    [Test]
    public async Task A_window_opening_while_the_broker_link_is_down_is_recorded_for_every_waiting_unit_and_sent_by_the_resends()
    {
        await ProgramAsync(4);
        await WindowAsync("01:00-05:00");
        var a = Replica();
        await CreateAsync(a, "r1");
        await a.StartAsync("r1", CancellationToken.None);
        var waiting = Enumerable.Range(0, 6).Select(Mac).ToList();
        Assert.That(_push.Sent.Select(p => p.Mac).Order(), Is.EqualTo(waiting), "the wave opening told its units");
        _push.Sent.Clear();
        async Task<int> RecordsAsync(string mac) => (await _store.PushChecks.ListPushChecksForUnitAsync(mac, 100)).Count(c => c.Actor == "rollout:r1");
        var before = new Dictionary<string, int>();
        foreach (var mac in waiting) { before[mac] = await RecordsAsync(mac); }

        // the link is down when Thursday 01:00 UTC opens the window: nothing can be sent, but the opening is kept
        _push.Connected = false;
        var step = TimeSpan.FromMinutes(7);
        await RunAsync([a], step, new DateTimeOffset(2026, 4, 2, 1, 30, 0, TimeSpan.Zero));
        Assert.That(_push.Sent, Is.Empty);
        foreach (var mac in waiting)
        {
            Assert.That(await RecordsAsync(mac), Is.EqualTo(before[mac] + 1), $"{mac}: one record of the opening's push, though it was not sent");
        }
        var due = await _store.PushChecks.UndeliveredPushesToRetryAsync(_clock.GetUtcNow() - BrokerLink.UndeliveredLifetime, _clock.GetUtcNow() - BrokerLink.ResendInterval, BrokerLink.MaxSends, 100);
        Assert.That(due.Select(d => d.Mac).Order(), Is.EqualTo(waiting), "the resends send each unit the opening's push once the link is back");
        Assert.That(due.Select(d => (d.Attempts, d.SentAt, d.Reason, d.Importance)).Distinct(), Is.EqualTo(new[] { (0L, (string?)null, PushReasons.Config, 4L) }),
            "recorded unsent, with the window push's reason and the update's importance");
        var audit = (await _store.ListAuditAsync(1000)).Where(e => e.Action == "rollout.window-open").ToList();
        Assert.That(audit, Has.Count.EqualTo(1));
        Assert.That(audit[0].Detail, Does.Contain($"6 waiting unit(s); push check {due[0].CheckId} recorded").And.Not.Contain("told to check"),
            "the audit says what happened: recorded, not told");
        Assert.That((await _store.Rollouts.GetRolloutAsync("r1"))!.WindowLookedAt, Is.EqualTo(TsunaguStore.Timestamp(_clock.GetUtcNow())), "the claim moved with the record");

        // the link is back: the rest of the opening tells nobody twice (the record stands for it)
        _push.Connected = true;
        await RunAsync([a], step, new DateTimeOffset(2026, 4, 2, 6, 0, 0, TimeSpan.Zero));
        Assert.That(_push.Sent, Is.Empty);
        var records = new List<int>();
        foreach (var mac in waiting) { records.Add(await RecordsAsync(mac)); }
        Assert.That(records, Is.EqualTo(waiting.Select(m => before[m] + 1)));
        Assert.That((await _store.ListAuditAsync(1000)).Count(e => e.Action == "rollout.window-open"), Is.EqualTo(1));
    }

    [Test]
    public async Task A_unit_that_joins_in_the_pass_its_window_opens_while_the_link_is_down_is_recorded_by_the_opening()
    {
        await ProgramAsync(4);
        await WindowAsync("01:00-05:00");
        var a = Replica();
        await CreateAsync(a, "r1");
        await a.StartAsync("r1", CancellationToken.None);
        // unit 6 joins the group; the link is down when the one pass that takes it in also sees Thursday 01:00 open the window
        await _store.Fleet.SetTagsAsync(Mac(6), ["lab"], new AuditEntry("alice", "unit.tags", Mac(6), "lab"));
        _push.Connected = false;
        _clock.SetUtcNow(new DateTimeOffset(2026, 4, 2, 1, 30, 0, TimeSpan.Zero));
        await a.TickAsync(CancellationToken.None);
        Assert.That((await _store.Rollouts.RolloutMembersAsync((await _store.Rollouts.GetRolloutAsync("r1"))!)).Select(m => m.Mac), Does.Contain(Mac(6)), "the unit joined the open wave");
        var records = (await _store.PushChecks.ListPushChecksForUnitAsync(Mac(6), 100)).Where(c => c.Actor == "rollout:r1").ToList();
        // before: the join's failed send counted it as told, so the opening skipped it and nothing was recorded
        Assert.That(records, Has.Count.EqualTo(1), "the opening recorded the joined unit's push");
        Assert.That((records[0].SentAt, records[0].Attempts), Is.EqualTo(((string?)null, 0L)), "unsent, left to the resends");
    }

    [Test]
    public async Task A_rollout_row_the_engine_cannot_read_is_skipped_and_the_others_go_on()
    {
        await ProgramAsync(4);
        var a = Replica();
        await CreateAsync(a, "r1");
        using (var c = _database.Open())
        using (var insert = c.CreateCommand())
        {
            // timestamps that are not timestamps: a row written outside the server
            insert.CommandText = """
                INSERT INTO rollouts (name, group_name, from_pattern, to_pattern, update_id, waves, success_percent, error_percent, on_error, min_wave_seconds,
                                      state, open_waves, wave_opened_at, errors_since, reason, created_by, created_at, updated_at)
                VALUES ('a-bad', 'lab', 'x', 'y', 'x-to-y', '[{"percent":100}]', 90, 10, 'pause', 0, 'running', 1, 'x', 'x', NULL, 'alice', 'x', 'x')
                """;
            insert.ExecuteNonQuery();
        }
        await _store.Fleet.SetTagsAsync(Mac(6), ["lab"], new AuditEntry("alice", "unit.tags", Mac(6), "lab"));
        // before: the pass ended in a FormatException (and the background service with it)
        Assert.DoesNotThrowAsync(() => a.TickAsync(CancellationToken.None));
        Assert.That((await _store.Rollouts.RolloutMembersAsync((await _store.Rollouts.GetRolloutAsync("r1"))!)).Select(m => m.Mac), Does.Contain(Mac(6)),
            "the readable rollout was decided in the same pass: the new group member joined it");
    }

    [Test]
    public async Task A_window_opening_with_the_link_up_records_each_push_as_sent_once()
    {
        await ProgramAsync(4);
        await WindowAsync("01:00-05:00");
        var a = Replica();
        await CreateAsync(a, "r1");
        _push.Sent.Clear();
        await RunAsync([a], TimeSpan.FromMinutes(7), new DateTimeOffset(2026, 4, 2, 1, 30, 0, TimeSpan.Zero));
        var waiting = Enumerable.Range(0, 6).Select(Mac).ToList();
        Assert.That(_push.Sent.Select(p => p.Mac).Order(), Is.EqualTo(waiting));
        var rows = new List<PushCheckRow>();
        foreach (var m in waiting) { rows.AddRange((await _store.PushChecks.ListPushChecksForUnitAsync(m, 100)).Where(c => c.Actor == "rollout:r1")); }
        Assert.That(rows.Select(r => (r.Mac, r.Attempts, r.SentAt is null)).Order(), Is.EqualTo(waiting.Select(m => (m, 1L, false))), "each sent once, none left for a resend");
        Assert.That(rows.Select(r => r.Nonce).Order(), Is.EqualTo(_push.Sent.Select(p => p.Message.Nonce).Order()), "the push carries its record's nonce");
    }

    [Test]
    public async Task Of_two_claims_of_a_window_look_from_the_same_value_only_the_first_moves_it_and_writes_its_audit_and_push()
    {
        await ProgramAsync(4);
        await CreateAsync(Replica(), "r1");
        var read = (await _store.Rollouts.GetRolloutAsync("r1"))!.WindowLookedAt; // null: never looked
        var at = TsunaguStore.Timestamp(_clock.GetUtcNow().AddMinutes(1));
        PendingPushCheck Push(string id) => new(id, "rollout:r1", 4, PushReasons.Config, [(Mac(0), $"nonce-{id}")]);
        AuditEntry Audit(string id) => new("rollout:r1", "rollout.window-open", "r1", id);

        // both replicas read the same value; the first claim moves it, the second (from the stale value) writes nothing
        Assert.That(await _store.Rollouts.ClaimWindowLookAsync("r1", read, at, Audit("first"), CancellationToken.None, Push("first")), Is.True);
        Assert.That(await _store.Rollouts.ClaimWindowLookAsync("r1", read, at, Audit("second"), CancellationToken.None, Push("second")), Is.False);
        Assert.That((await _store.Rollouts.GetRolloutAsync("r1"))!.WindowLookedAt, Is.EqualTo(at));
        Assert.That((await _store.ListAuditAsync(1000)).Where(e => e.Action == "rollout.window-open").Select(e => e.Detail), Is.EqualTo(new[] { "first" }));
        Assert.That(((await _store.PushChecks.GetPushCheckAsync("first")).Count, (await _store.PushChecks.GetPushCheckAsync("second")).Count), Is.EqualTo((1, 0)));

        // from a non-null value the same: the holder of the value read wins once
        var later = TsunaguStore.Timestamp(_clock.GetUtcNow().AddMinutes(2));
        Assert.That(await _store.Rollouts.ClaimWindowLookAsync("r1", at, later, null, CancellationToken.None), Is.True);
        Assert.That(await _store.Rollouts.ClaimWindowLookAsync("r1", at, later, Audit("third"), CancellationToken.None, Push("third")), Is.False);
        Assert.That((await _store.Rollouts.GetRolloutAsync("r1"))!.WindowLookedAt, Is.EqualTo(later));
        Assert.That(((await _store.ListAuditAsync(1000)).Count(e => e.Action == "rollout.window-open"), (await _store.PushChecks.GetPushCheckAsync("third")).Count), Is.EqualTo((1, 0)));

        // the two racing for real: exactly one wins
        var next = TsunaguStore.Timestamp(_clock.GetUtcNow().AddMinutes(3));
        var results = await Task.WhenAll(Enumerable.Range(0, 2).Select(i => Task.Run(() =>
            _store.Rollouts.ClaimWindowLookAsync("r1", later, next, Audit($"race-{i}"), CancellationToken.None, Push($"race-{i}")))));
        Assert.That(results.Count(r => r), Is.EqualTo(1));
        Assert.That((await _store.ListAuditAsync(1000)).Count(e => e.Action == "rollout.window-open"), Is.EqualTo(2));
        Assert.That((await _store.PushChecks.GetPushCheckAsync("race-0")).Count + (await _store.PushChecks.GetPushCheckAsync("race-1")).Count, Is.EqualTo(1));
    }

    [Test]
    public async Task With_importance_3_the_units_are_told_when_the_group_window_and_their_low_utilisation_window_are_both_open()
    {
        // the group's window 01:00-05:00 every day; the fleet's low-utilisation window 02:00-05:00; unit 3 has its own, 04:00-06:00
        await ProgramAsync(3);
        await WindowAsync("01:00-05:00");
        Assert.That(await _store.Windows.SetUpdateWindowAsync(Mac(3), 4, 6, null, new AuditEntry("alice", "unit.window", Mac(3), null)), Is.True);
        var service = Replica();
        await CreateAsync(service, "r1", [new(Group: "canary"), new(Percent: 100)]);
        await service.StartAsync("r1", CancellationToken.None);
        _push.Sent.Clear();

        var step = TimeSpan.FromMinutes(5);
        await RunAsync([service], step, Wednesday.AddDays(1));
        var thursday = new DateTimeOffset(2026, 4, 2, 0, 0, 0, TimeSpan.Zero);
        Assert.That(_push.Sent.Select(p => (p.Mac, p.At)).OrderBy(p => p.Mac),
            Is.EqualTo(new[] { (Mac(0), thursday.AddHours(2)), (Mac(1), thursday.AddHours(2)), (Mac(2), thursday.AddHours(2)), (Mac(3), thursday.AddHours(4)) }));
    }

    [Test]
    public async Task A_restarted_server_tells_units_of_an_opening_it_missed_once_while_the_window_is_open_and_not_when_it_closed()
    {
        await ProgramAsync(4);
        await WindowAsync("01:00-05:00");
        var before = Replica();
        await CreateAsync(before, "r1", [new(Group: "canary"), new(Percent: 100)]);
        await before.StartAsync("r1", CancellationToken.None);
        _push.Sent.Clear();
        await RunAsync([before], TimeSpan.FromMinutes(10), Wednesday.AddHours(2));
        Assert.That(_push.Sent, Is.Empty, "closed until Thursday 01:00");

        // down from Wednesday 11:00 until Thursday 03:00 (inside the window that opened at 01:00): told once at the first pass
        _clock.Advance(TimeSpan.FromHours(16));
        var after = Replica();
        await after.TickAsync(CancellationToken.None);
        await after.TickAsync(CancellationToken.None);
        Assert.That(_push.Sent.Select(p => p.Mac).Order(), Is.EqualTo(new[] { Mac(0), Mac(1), Mac(2), Mac(3) }));
        _push.Sent.Clear();
        // down again past the whole window (Thursday 03:00 to Friday 07:00): an opening missed while closed tells nobody
        _clock.Advance(TimeSpan.FromHours(28));
        await Replica().TickAsync(CancellationToken.None);
        Assert.That(_push.Sent, Is.Empty);
    }
}
