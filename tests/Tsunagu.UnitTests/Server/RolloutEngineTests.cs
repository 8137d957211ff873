using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Tsunagu.Protocol;
using Tsunagu.Server;
using Tsunagu.Server.Data;
using Tsunagu.Server.Fleet;
using Tsunagu.Server.Fleet.Rollouts;
using Tsunagu.Server.Push;
using Tsunagu.Server.Units.ForcedChecks;

namespace Tsunagu.UnitTests.Server;

/// <summary>
/// The rollout engine (server/Tsunagu.Server/Fleet/Rollouts): its pure decisions as a table, wave sizes, and the
/// engine at work on a real SQLite store on virtual time: waves open in order, the gate of the version check lets no
/// unit beyond the open waves through, thresholds pause or abort, units join, and a restart loses nothing.
/// </summary>
public class RolloutEngineTests
{
    private static readonly DateTimeOffset T0 = new(2026, 4, 1, 9, 0, 0, TimeSpan.Zero);

    // ---- the pure decision, as a table -------------------------------------------------------------------------

    /// <summary>Members as a compact string per wave: I installed, F failed, O offline, D downloading, P pending.</summary>
    private static List<RolloutMember> Members(params string[] waves)
    {
        var list = new List<RolloutMember>();
        for (var w = 0; w < waves.Length; w++)
        {
            for (var i = 0; i < waves[w].Length; i++)
            {
                var status = waves[w][i] switch
                {
                    'I' => MemberStatus.Installed,
                    'F' => MemberStatus.Failed,
                    'O' => MemberStatus.Offline,
                    'D' => MemberStatus.Downloading,
                    _ => MemberStatus.Pending,
                };
                list.Add(new RolloutMember($"02:00:00:00:{w:x2}:{i:x2}", w, status, status == MemberStatus.Failed ? T0.AddMinutes(1) : null));
            }
        }
        return list;
    }

    private static RolloutSituation Situation(string state = RolloutStates.Running, int open = 1, int waves = 3, int success = 80, int error = 20,
        string onError = ErrorActions.Pause, int minWaveMinutes = 0, int errorsSinceMinutes = 0) =>
        new(state, open, waves, success, error, onError, TimeSpan.FromMinutes(minWaveMinutes), T0, T0.AddMinutes(errorsSinceMinutes));

    public sealed record Case(string Name, RolloutSituation Situation, string[] Waves, int Candidates, int NowMinutes,
        string Action, string State, int OpenWaves)
    {
        public override string ToString() => Name;
    }

    private static IEnumerable<Case> Cases() =>
    [
        new("wave 1 below the success threshold waits", Situation(), ["IIIPP", "PPPPP", "PPPPP"], 0, 10, RolloutActions.None, RolloutStates.Running, 1),
        new("wave 1 at the success threshold opens wave 2", Situation(), ["IIIIP", "PPPPP", "PPPPP"], 0, 10, RolloutActions.OpenWave, RolloutStates.Running, 2),
        new("offline units are set aside for the success threshold", Situation(), ["IIIOO", "PPPPP", "PPPPP"], 0, 10, RolloutActions.OpenWave, RolloutStates.Running, 2),
        new("a wave whose units are all offline waits", Situation(), ["OOOOO", "PPPPP", "PPPPP"], 0, 10, RolloutActions.None, RolloutStates.Running, 1),
        new("offline units never count as failures", Situation(error: 1), ["IOOOO", "PPPPP", "PPPPP"], 0, 10, RolloutActions.OpenWave, RolloutStates.Running, 2),
        new("downloading units are not installed yet", Situation(), ["IIIDD", "PPPPP", "PPPPP"], 0, 10, RolloutActions.None, RolloutStates.Running, 1),
        new("a wave waits for its installing units even past the success threshold", Situation(), ["IIIID", "PPPPP", "PPPPP"], 0, 10, RolloutActions.None, RolloutStates.Running, 1),
        new("failures at the error threshold pause", Situation(), ["IIIIF", "PPPPP", "PPPPP"], 0, 10, RolloutActions.Pause, RolloutStates.Paused, 1),
        new("failures at the error threshold abort when so set", Situation(onError: ErrorActions.Abort), ["IIIIF", "PPPPP", "PPPPP"], 0, 10, RolloutActions.Abort, RolloutStates.Aborted, 1),
        new("failures below the error threshold do not stop it", Situation(error: 30), ["IIIIF", "PPPPP", "PPPPP"], 0, 10, RolloutActions.OpenWave, RolloutStates.Running, 2),
        new("the error threshold counts every open wave", Situation(open: 2, error: 20), ["IIIIF", "IIFPP", "PPPPP"], 0, 10, RolloutActions.Pause, RolloutStates.Paused, 2),
        new("failures before a resume no longer count", Situation(errorsSinceMinutes: 5), ["IIIIF", "PPPPP", "PPPPP"], 0, 10, RolloutActions.OpenWave, RolloutStates.Running, 2),
        new("error threshold 0: any failure stops it", Situation(error: 0, success: 10), ["IIIIIIIIIF", "PPPPP", "PPPPP"], 0, 10, RolloutActions.Pause, RolloutStates.Paused, 1),
        new("a wave opens only after its minimum time", Situation(minWaveMinutes: 30), ["IIIII", "PPPPP", "PPPPP"], 0, 29, RolloutActions.None, RolloutStates.Running, 1),
        new("and then it does", Situation(minWaveMinutes: 30), ["IIIII", "PPPPP", "PPPPP"], 0, 30, RolloutActions.OpenWave, RolloutStates.Running, 2),
        new("the last wave done completes the rollout", Situation(open: 3), ["IIIII", "IIIII", "IIIIP"], 0, 10, RolloutActions.Complete, RolloutStates.Completed, 3),
        new("an empty wave is passed", Situation(), ["", "PPPPP", "PPPPP"], 0, 0, RolloutActions.OpenWave, RolloutStates.Running, 2),
        new("a paused rollout decides nothing but lets units join", Situation(state: RolloutStates.Paused), ["IIIII", "PPPPP", "PPPPP"], 2, 10, RolloutActions.None, RolloutStates.Paused, 1),
        new("an aborted rollout decides nothing and takes no one", Situation(state: RolloutStates.Aborted), ["IIIII", "PPPPP", "PPPPP"], 2, 10, RolloutActions.None, RolloutStates.Aborted, 1),
        new("joined units wait in the last wave", Situation(), ["IIIPP", "PPPPP", "PPPPP"], 3, 10, RolloutActions.None, RolloutStates.Running, 1),
        new("joined units count in the last wave once it is open", Situation(open: 3), ["IIIII", "IIIII", "IIIII"], 2, 10, RolloutActions.None, RolloutStates.Running, 3),
    ];

    [TestCaseSource(nameof(Cases))]
    public void Decide(Case c)
    {
        var members = Members(c.Waves);
        var candidates = Enumerable.Range(0, c.Candidates).Select(i => $"02:00:00:00:ff:{i:x2}").Concat(members.Select(m => m.Mac)).ToList();
        var d = RolloutEngine.Decide(c.Situation, members, candidates, T0.AddMinutes(c.NowMinutes));
        Assert.Multiple(() =>
        {
            Assert.That(d.Action, Is.EqualTo(c.Action), d.Detail);
            Assert.That(d.State, Is.EqualTo(c.State), d.Detail);
            Assert.That(d.OpenWaves, Is.EqualTo(c.OpenWaves), d.Detail);
            var expectJoins = RolloutStates.IsActive(c.Situation.State) ? c.Candidates : 0;
            Assert.That(d.Joins, Has.Count.EqualTo(expectJoins), "only units not yet members join, and only an active rollout takes them");
            Assert.That(d.Joins.All(j => j.Wave == c.Situation.WaveCount - 1 && j.Status == MemberStatus.Pending), Is.True, "joins go to the last wave");
            Assert.That(d.OpenWaves, Is.InRange(c.Situation.OpenWaves, c.Situation.OpenWaves + 1), "at most one wave opens per decision");
        });
    }

    [TestCase("10%,20%,70%", 100, "10,20,70")]
    [TestCase("5%,15%,80%", 7, "1,2,4")]
    [TestCase("1,2,50%", 10, "1,2,7")]
    [TestCase("3,3", 4, "3,1")]
    [TestCase("50,50", 10, "10,0")]
    [TestCase("100%", 0, "0")]
    [TestCase("10%,10%", 1, "1,0")]
    public void Wave_sizes_add_up_to_the_group_and_the_last_wave_takes_the_rest(string specs, int total, string expected)
    {
        var waves = specs.Split(',').Select(s => s.EndsWith('%') ? new WaveSpec(Percent: int.Parse(s[..^1], System.Globalization.CultureInfo.InvariantCulture))
            : new WaveSpec(Count: int.Parse(s, System.Globalization.CultureInfo.InvariantCulture))).ToList();
        var sizes = RolloutEngine.WaveSizes(waves, total);
        Assert.That(string.Join(',', sizes), Is.EqualTo(expected));
        Assert.That(sizes.Sum(), Is.EqualTo(total));
        var plan = RolloutEngine.Plan("r", waves, Enumerable.Range(0, total).Select(i => $"02:00:00:00:00:{i:x2}").ToList());
        Assert.That(plan.Select(m => m.Mac).Distinct().Count(), Is.EqualTo(total), "every unit once");
        Assert.That(plan.GroupBy(m => m.Wave).ToDictionary(g => g.Key, g => g.Count()),
            Is.EqualTo(sizes.Select((s, i) => (s, i)).Where(x => x.s > 0).ToDictionary(x => x.i, x => x.s)));
    }

    [TestCase(null, "waves")]
    [TestCase("", "waves")]
    [TestCase("0", "count")]
    [TestCase("101%", "percent")]
    [TestCase("1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21", "waves")]
    public void Waves_outside_the_grammar_are_refused(string? specs, string field)
    {
        var waves = specs?.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(s => s.EndsWith('%')
            ? new WaveSpec(Percent: int.Parse(s[..^1], System.Globalization.CultureInfo.InvariantCulture))
            : new WaveSpec(Count: int.Parse(s, System.Globalization.CultureInfo.InvariantCulture))).ToList();
        Assert.That(RolloutEngine.InvalidWaves(waves), Does.Contain(field));
        Assert.That(RolloutEngine.InvalidWaves([new WaveSpec(1, 10)]), Does.Contain("exactly one"));
    }

    [TestCase("group:canary,50%,100%", "group:canary|50%|100%")]
    [TestCase(" 5% , group:a.b_c-1 ,10, 100% ", "5%|group:a.b_c-1|10|100%")]
    public void Waves_with_groups_parse_and_print_as_typed(string text, string expected)
    {
        var (waves, error) = RolloutEngine.ParseWaves(text);
        Assert.That(error, Is.Null);
        Assert.That(string.Join('|', waves!), Is.EqualTo(expected), "the console shows each wave as the operator typed it");
        Assert.That(RolloutEngine.InvalidWaves(waves), Is.Null);
        var json = System.Text.Json.JsonSerializer.Serialize(waves, System.Text.Json.JsonSerializerOptions.Web);
        Assert.That(System.Text.Json.JsonSerializer.Deserialize<List<WaveSpec>>(json, System.Text.Json.JsonSerializerOptions.Web), Is.EqualTo(waves), "stored and read back alike");
    }

    [TestCase("group:,100%", "neither")]
    [TestCase("group:a b,100%", "neither")]
    [TestCase("group:-a,100%", "neither")]
    [TestCase("group:a\nb,100%", "neither")]
    [TestCase("groups:a,100%", "neither")]
    [TestCase("group:canary", "the last wave takes every unit left")]
    [TestCase("group:a,group:a,100%", "is wave 1 already")]
    public void Group_waves_outside_the_grammar_are_refused(string text, string why)
    {
        var (waves, error) = RolloutEngine.ParseWaves(text);
        Assert.That(error ?? RolloutEngine.InvalidWaves(waves), Does.Contain(why));
    }

    [Test]
    public void Group_waves_given_as_json_are_checked_like_typed_ones()
    {
        Assert.That(RolloutEngine.InvalidWaves([new WaveSpec(Group: "a"), new WaveSpec(Percent: 100)]), Is.Null);
        Assert.That(RolloutEngine.InvalidWaves([new WaveSpec(Count: 1, Group: "a"), new WaveSpec(Percent: 100)]), Does.Contain("exactly one"));
        Assert.That(RolloutEngine.InvalidWaves([new WaveSpec(Group: "a\u0000"), new WaveSpec(Percent: 100)]), Does.Contain("waves[0].group"));
        Assert.That(RolloutEngine.InvalidWaves([new WaveSpec(Group: new string('a', 200)), new WaveSpec(Percent: 100)]), Does.Contain("waves[0].group"));
        Assert.That(RolloutEngine.InvalidWaves([new WaveSpec(Group: ""), new WaveSpec(Percent: 100)]), Does.Contain("waves[0].group"));
    }

    public sealed record GroupPlanCase(string Name, string Waves, int Units, int[] Canary, int[] Beta, string Sizes)
    {
        public override string ToString() => Name;
    }

    private static IEnumerable<GroupPlanCase> GroupPlanCases() =>
    [
        new("a group wave takes its units first", "group:canary,50%,100%", 10, [1, 2, 3], [], "3,5,2"),
        new("a group's units outside the rollout are not taken", "group:canary,100%", 4, [1, 2, 30, 31], [], "2,2"),
        new("a unit in two group waves is in the first", "group:canary,group:beta,100%", 6, [0, 1], [1, 2], "2,1,3"),
        new("a group wave after a count takes only what is left", "3,group:canary,100%", 6, [0, 1, 2, 3, 4, 5], [], "3,3,0"),
        new("an empty group is an empty wave", "group:beta,100%", 5, [], [], "0,5"),
        new("percents count every unit of the rollout", "group:canary,20%,100%", 10, [0, 1, 2, 3, 4, 5, 6, 7], [], "8,2,0"),
    ];

    [TestCaseSource(nameof(GroupPlanCases))]
    public void Plan_with_group_waves(GroupPlanCase c)
    {
        string M(int i) => $"02:00:00:00:00:{i:x2}";
        var macs = Enumerable.Range(0, c.Units).Select(M).ToList();
        var groups = new Dictionary<string, IReadOnlySet<string>>
        {
            ["canary"] = c.Canary.Select(M).ToHashSet(),
            ["beta"] = c.Beta.Select(M).ToHashSet(),
        };
        var (waves, error) = RolloutEngine.ParseWaves(c.Waves);
        Assert.That(error, Is.Null);
        var plan = RolloutEngine.Plan("r", waves!, macs, groups);
        Assert.That(plan.Select(m => m.Mac).Order(), Is.EqualTo(macs.Order()), "every unit of the rollout once, and no other");
        Assert.That(string.Join(',', Enumerable.Range(0, waves!.Count).Select(w => plan.Count(m => m.Wave == w))), Is.EqualTo(c.Sizes));
        for (var w = 0; w < waves.Count - 1; w++)
        {
            if (waves[w].Group is { } g)
            {
                Assert.That(plan.Where(m => m.Wave == w).Select(m => m.Mac), Is.All.Matches<string>(groups[g].Contains), $"wave {w + 1} holds only units of {g}");
                Assert.That(plan.Where(m => m.Wave > w && groups[g].Contains(m.Mac)), Is.Empty, $"no unit of {g} waits for a later wave");
            }
        }
    }

    [TestCase("lab")]
    [TestCase("region:kanto")]
    [TestCase("a.b_c-d:0")]
    public void Tags_in_the_grammar_are_accepted(string tag) => Assert.That(Tags.Invalid([tag]), Is.Null);

    [TestCase("")]
    [TestCase("Lab")]
    [TestCase("-lab")]
    [TestCase("a b")]
    [TestCase("a\nb")]
    [TestCase("タグ")]
    [TestCase("a;b")]
    public void Tags_outside_the_grammar_are_refused(string tag) => Assert.That(Tags.Invalid([tag]), Does.Contain("is not one"));

    // ---- the engine at work on a store, on virtual time ---------------------------------------------------------

    private sealed class NoPush : IPushPublisher
    {
        public string? BrokerUri => null;
        public bool Connected => false;
        public Task PublishAsync(string mac, PushMessage message, CancellationToken cancellationToken) => throw new PushException("push is disabled");
        public Task EnsureUnitAccountAsync(string mac, CancellationToken cancellationToken) => Task.CompletedTask;
        public Task RevokeUnitAsync(string mac, CancellationToken cancellationToken) => Task.CompletedTask;
    }

    private string _directory = "";
    private FakeTimeProvider _time = null!;

    [SetUp]
    public void SetUp()
    {
        _directory = Directory.CreateTempSubdirectory("tsunagu-rollout-").FullName;
        _time = new FakeTimeProvider(T0);
    }

    [TearDown]
    public void TearDown()
    {
        SqliteConnection.ClearAllPools();
        Directory.Delete(_directory, recursive: true);
    }

    /// <summary>A store and a rollout service over the database file of this test: made again, it is a server restart.</summary>
    private (TsunaguStore Store, RolloutService Service) Start()
    {
        var database = Database.Parse("tsunagu.db", _directory);
        database.Migrate();
        var store = new TsunaguStore(database, _time);
        var options = new ServerOptions();
        var push = new NoPush();
        var service = new RolloutService(store, options, _time, new ForcedCheckService(store, push, _time), push,
            new Tsunagu.Server.Cluster.ReplicaLease(store, options, _time, NullLogger<Tsunagu.Server.Cluster.ReplicaLease>.Instance), NullLogger<RolloutService>.Instance);
        return (store, service);
    }

    private static readonly Inventory OnX = new("hw-1", "os-1", new Dictionary<string, string> { ["vcp"] = "1.0.0" });
    private static readonly Inventory OnY = new("hw-1", "os-1", new Dictionary<string, string> { ["vcp"] = "2.0.0" });
    private static readonly UpdateProgramRow XtoY = new() { Id = "x-to-y", FromPattern = "x", ToPattern = "y", Importance = 5 };

    private static string Mac(int i) => $"02:00:00:00:01:{i:x2}";

    private static async Task AddUnitOnX(TsunaguStore store, int i)
    {
        await store.Units.AddUnitAsync(new UnitRow { Mac = Mac(i), Serial = $"SN-{i}", HardwareVersion = "hw-1", IspMethod = "dhcp" });
        await store.Units.RecordInventoryAsync(Mac(i), OnX, "x", UnitStates.Ready);
    }

    /// <summary>What a unit's version check and report do, as far as a rollout sees it: offered when the gate allows; installs or fails.</summary>
    /// <summary>Units 0 to <paramref name="count"/> - 1 check and install what they are offered; those that installed.</summary>
    private static async Task<List<string>> InstallEachAsync(TsunaguStore store, RolloutService service, int count)
    {
        var installed = new List<string>();
        foreach (var mac in Enumerable.Range(0, count).Select(Mac))
        {
            if (await TryInstallAsync(store, service, mac, fails: false)) { installed.Add(mac); }
        }
        return installed;
    }

    private static async Task<List<string?>> TargetsAsync(TsunaguStore store, IEnumerable<string> macs)
    {
        var targets = new List<string?>();
        foreach (var mac in macs) { targets.Add((await store.Units.GetUnitAsync(mac))!.TargetPattern); }
        return targets;
    }

    private static async Task<bool> TryInstallAsync(TsunaguStore store, RolloutService service, string mac, bool fails)
    {
        // a unit on y has no update program to be offered; one on x only when the gate lets it through
        if ((await store.Units.GetUnitForCheckAsync(mac))!.Pattern != "x" || await service.GateAsync(mac, XtoY) is not null) { return false; }
        await store.History.RecordUpdateOutcomeAsync(new UpdateOutcome(mac, XtoY.Id, !fails, fails ? "health check failed" : null, fails ? OnX : OnY, fails ? "x" : "y",
            UnitStates.Configuring, null, fails ? "failed" : "installed"));
        return true;
    }

    /// <summary>Patterns x and y and the program x -> y, as a rollout's transition needs them in the catalogue (unless a test added them).</summary>
    private static async Task EnsureTransition(TsunaguStore store)
    {
        foreach (var (id, apps) in new[] { ("x", "{\"vcp\":\"1.0.0\"}"), ("y", "{\"vcp\":\"2.0.0\"}") })
        {
            if (await store.Catalogue.GetPatternAsync(id) is null)
            {
                await store.Catalogue.AddPatternAsync(new PatternRow { Id = id, Name = id, HardwareVersion = "hw-1", OsVersion = "os-1", Applications = apps, Status = PatternStatus.Verified });
            }
        }
        if (await store.Catalogue.GetUpdateProgramAsync(XtoY.Id) is null) { await store.Catalogue.AddUpdateProgramAsync(XtoY); }
    }

    private async Task AddRollout(TsunaguStore store, int units, string onError = ErrorActions.Pause, int minWaveSeconds = 0)
    {
        await EnsureTransition(store);
        await store.Fleet.AddGroupAsync(new GroupRow { Name = "lab", Kind = GroupKinds.Dynamic, Definition = "{\"tags\":[\"lab\"]}", CreatedBy = "alice" },
            new AuditEntry("alice", "group.create", "lab", null));
        var macs = Enumerable.Range(0, units).Select(Mac).ToList();
        var waves = new List<WaveSpec> { new(Count: 2), new(Percent: 30), new(Percent: 100) };
        await store.Rollouts.AddRolloutAsync(new RolloutRow
        {
            Name = "r1", GroupName = "lab", FromPattern = "x", ToPattern = "y", UpdateId = XtoY.Id, Waves = System.Text.Json.JsonSerializer.Serialize(waves, System.Text.Json.JsonSerializerOptions.Web),
            SuccessPercent = 100, ErrorPercent = 25, OnError = onError, MinWaveSeconds = minWaveSeconds, State = RolloutStates.Running, OpenWaves = 1, CreatedBy = "alice",
        }, RolloutEngine.Plan("r1", waves, macs), new AuditEntry("alice", "rollout.create", "r1", null));
    }

    [Test]
    public async Task Waves_open_in_order_only_open_waves_install_and_the_rollout_survives_a_restart()
    {
        var (store, service) = Start();
        for (var i = 0; i < 10; i++) { await AddUnitOnX(store, i); await store.Fleet.SetTagsAsync(Mac(i), ["lab"], new AuditEntry("alice", "unit.tags", Mac(i), "lab")); }
        await AddRollout(store, 10, minWaveSeconds: 60);
        var waveOf = (await store.Rollouts.RolloutMembersAsync((await store.Rollouts.GetRolloutAsync("r1"))!)).ToDictionary(m => m.Mac, m => m.Wave);
        Assert.That(waveOf.Values.GroupBy(w => w).ToDictionary(g => g.Key, g => g.Count()), Is.EqualTo(new Dictionary<int, int> { [0] = 2, [1] = 3, [2] = 5 }));

        // every unit checks: only wave 1 gets the update
        var installed = (await InstallEachAsync(store, service, 10)).ToList();
        Assert.That(installed.Select(m => waveOf[m]), Is.All.EqualTo(0));
        Assert.That(installed, Has.Count.EqualTo(2));

        // the success threshold is met, but the wave stays open its minimum time
        await service.TickAsync(CancellationToken.None);
        Assert.That((await store.Rollouts.GetRolloutAsync("r1"))!.OpenWaves, Is.EqualTo(1));
        _time.Advance(TimeSpan.FromSeconds(60));

        // a restart: a new store and service on the same database
        (store, service) = Start();
        await service.TickAsync(CancellationToken.None);
        Assert.That((await store.Rollouts.GetRolloutAsync("r1"))!.OpenWaves, Is.EqualTo(2), "wave 2 opened after the restart");
        // a unit registered now joins the last wave
        await AddUnitOnX(store, 10);
        await store.Fleet.SetTagsAsync(Mac(10), ["lab"], new AuditEntry("alice", "unit.tags", Mac(10), "lab"));
        Assert.That(await service.GateAsync(Mac(10), XtoY), Does.Contain("not (yet) part"));
        installed = (await InstallEachAsync(store, service, 11)).ToList();
        Assert.That(installed.Select(m => waveOf[m]), Is.All.EqualTo(1), "only wave 2 (wave 1 is done, 3 not open)");
        _time.Advance(TimeSpan.FromSeconds(60));
        await service.TickAsync(CancellationToken.None);
        var members = await store.Rollouts.RolloutMembersAsync((await store.Rollouts.GetRolloutAsync("r1"))!);
        Assert.That(members.Single(m => m.Mac == Mac(10)).Wave, Is.EqualTo(2), "the new unit joined the last wave");
        Assert.That((await store.Rollouts.GetRolloutAsync("r1"))!.OpenWaves, Is.EqualTo(3));
        installed = (await InstallEachAsync(store, service, 11)).ToList();
        Assert.That(installed, Has.Count.EqualTo(6), "wave 3 with the joined unit");
        _time.Advance(TimeSpan.FromSeconds(60));
        await service.TickAsync(CancellationToken.None);
        Assert.That((await store.Rollouts.GetRolloutAsync("r1"))!.State, Is.EqualTo(RolloutStates.Completed));
        Assert.That((await store.ListAuditAsync(50)).Where(a => a.Target == "r1").Select(a => a.Action).Reverse(),
            Is.EqualTo(new[] { "rollout.create", "rollout.open-wave", "rollout.open-wave", "rollout.complete" }), "every decision audited, once");
        Assert.That(await service.GateAsync(Mac(0), XtoY), Is.Null, "a completed rollout holds nothing");
    }

    [TestCase(ErrorActions.Pause, RolloutStates.Paused)]
    [TestCase(ErrorActions.Abort, RolloutStates.Aborted)]
    [TestCase(ErrorActions.Revert, RolloutStates.Aborted)]
    public async Task Failures_at_the_error_threshold_stop_the_rollout_and_no_unit_beyond_the_open_wave_installs(string onError, string stopped)
    {
        var (store, service) = Start();
        for (var i = 0; i < 10; i++) { await AddUnitOnX(store, i); await store.Fleet.SetTagsAsync(Mac(i), ["lab"], new AuditEntry("alice", "unit.tags", Mac(i), "lab")); }
        await AddRollout(store, 10, onError);
        var waveOf = (await store.Rollouts.RolloutMembersAsync((await store.Rollouts.GetRolloutAsync("r1"))!)).ToDictionary(m => m.Mac, m => m.Wave);
        var first = waveOf.Where(w => w.Value == 0).Select(w => w.Key).Order().ToList();
        Assert.That(await TryInstallAsync(store, service, first[0], fails: true), Is.True);
        Assert.That(await service.GateAsync(first[0], XtoY), Does.Contain("failed"), "a failed unit is not offered the update again");
        await service.TickAsync(CancellationToken.None);
        var rollout = (await store.Rollouts.GetRolloutAsync("r1"))!;
        Assert.That(rollout.State, Is.EqualTo(stopped));
        Assert.That(rollout.Reason, Does.Contain("error threshold: 1 of 2"));
        Assert.That((await InstallEachAsync(store, service, 10)), Is.Empty,
            "nothing installs once the rollout is stopped");
        Assert.That((await store.Units.ListUnitsAsync()).Count(u => u.Pattern == "y"), Is.EqualTo(0));
        if (stopped == RolloutStates.Paused)
        {
            // a resume: the failure reported before it no longer counts; the wave goes on
            _time.Advance(TimeSpan.FromSeconds(1));
            Assert.That(await service.TryActAsync("r1", "resume", "alice"), Is.True);
            Assert.That(await TryInstallAsync(store, service, first[1], fails: false), Is.True);
            await service.TickAsync(CancellationToken.None);
            Assert.That((await store.Rollouts.GetRolloutAsync("r1"))!.State, Is.EqualTo(RolloutStates.Running));
        }
        else
        {
            Assert.That(await service.TryActAsync("r1", "resume", "alice"), Is.False, "an aborted rollout cannot resume");
            Assert.That(await service.GateAsync(first[1], XtoY), Does.Contain("aborted"), "an aborted rollout keeps the transition held");
            var abort = (await store.ListAuditAsync(50)).Single(a => a.Target == "r1" && a.Action == "rollout.abort");
            Assert.That(abort.Actor, Is.EqualTo("rollout:r1"));
            // nothing was moved (the failed unit rolled back on its own): a revert returns no unit
            Assert.That(abort.Detail, onError == ErrorActions.Revert ? Does.Contain("revert: 0 return") : Does.Not.Contain("revert"));
            Assert.That((await store.Units.ListUnitsAsync()).Select(u => u.TargetPattern), Is.All.Null);
        }
    }

    [Test]
    public async Task The_emergency_stop_pauses_every_running_rollout_and_the_gate_closes_at_once()
    {
        var (store, service) = Start();
        for (var i = 0; i < 4; i++) { await AddUnitOnX(store, i); await store.Fleet.SetTagsAsync(Mac(i), ["lab"], new AuditEntry("alice", "unit.tags", Mac(i), "lab")); }
        await AddRollout(store, 4);
        var first = (await store.Rollouts.RolloutMembersAsync((await store.Rollouts.GetRolloutAsync("r1"))!)).First(m => m.Wave == 0).Mac;
        Assert.That(await service.GateAsync(first, XtoY), Is.Null);
        Assert.That(await service.EmergencyStopAsync("bob"), Is.EqualTo(new[] { "r1" }));
        Assert.That(await service.GateAsync(first, XtoY), Does.Contain("paused"));
        Assert.That((await store.Rollouts.GetRolloutAsync("r1"))!.Reason, Is.EqualTo("emergency stop by bob"));
        Assert.That(await service.TickAsync(CancellationToken.None), Is.Empty, "a paused rollout decides nothing");
        Assert.That(await service.EmergencyStopAsync("bob"), Is.Empty, "nothing left running");
    }

    [Test]
    public async Task The_cost_of_a_decision_is_measured_on_a_large_rollout()
    {
        // the pure decision over 10,000 members in three waves, the first done
        var members = Enumerable.Range(0, 10_000).Select(i => new RolloutMember($"02:00:00:{i >> 16:x2}:{(i >> 8) & 0xff:x2}:{i & 0xff:x2}",
            i < 500 ? 0 : i < 2000 ? 1 : 2, i < 500 ? MemberStatus.Installed : MemberStatus.Pending)).ToList();
        var candidates = members.Select(m => m.Mac).ToList();
        var situation = Situation(success: 90, error: 10);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        RolloutDecision decision = null!;
        for (var i = 0; i < 20; i++) { decision = RolloutEngine.Decide(situation, members, candidates, T0.AddMinutes(1)); }
        watch.Stop();
        Assert.That(decision.Action, Is.EqualTo(RolloutActions.OpenWave));
        Assert.That(decision.Joins, Is.Empty);
        TestContext.Out.WriteLine($"measured: a decision over 10,000 members: {watch.Elapsed.TotalMilliseconds / 20:0.0} ms (pure, in memory)");

        // a whole pass on SQLite (read the members and the group, decide, apply, audit) over 2,000 members
        var (store, service) = Start();
        var units = Enumerable.Range(0, 2000).Select(i => new UnitRow { Mac = $"02:00:00:00:{i >> 8:x2}:{i & 0xff:x2}", Serial = $"SN-{i}", HardwareVersion = "hw-1", IspMethod = "dhcp" }).ToList();
        await store.Units.AddUnitsAsync(units, null, "alice", "units.register-bulk", null, null, units.ToDictionary(u => u.Mac, _ => (IReadOnlyList<string>)["lab"]));
        foreach (var u in units) { await store.Units.RecordInventoryAsync(u.Mac, OnX, "x", UnitStates.Ready); }
        await AddRolloutOf(store, units.Select(u => u.Mac).ToList());
        foreach (var m in (await store.Rollouts.RolloutMembersAsync((await store.Rollouts.GetRolloutAsync("r1"))!)).Where(m => m.Wave == 0)) { await store.Units.RecordInventoryAsync(m.Mac, OnY, "y", UnitStates.Ready); }
        watch.Restart();
        var done = await service.TickAsync(CancellationToken.None);
        watch.Stop();
        Assert.That(done.Single().Decision.Action, Is.EqualTo(RolloutActions.OpenWave));
        TestContext.Out.WriteLine($"measured: an engine pass over a 2,000-unit rollout on SQLite: {watch.Elapsed.TotalMilliseconds:0} ms " +
                                  $"(of which the decision {service.LastDecisionCost.TotalMilliseconds:0.0} ms)");
    }

    // ---- an abort that returns the units the rollout moved --------------------------------------------------------

    public sealed record ReturnCase(string Name, MemberStatus Status, bool Offered, bool CanReturn, string Expect)
    {
        public override string ToString() => Name;
    }

    private static IEnumerable<ReturnCase> ReturnCases() =>
    [
        new("an installed unit returns", MemberStatus.Installed, true, true, "return"),
        new("a unit still installing returns (after its install, by the program back)", MemberStatus.Downloading, true, true, "return"),
        new("an offline unit that was offered returns when it comes back", MemberStatus.Offline, true, true, "return"),
        new("a unit offered but not yet installing is held on its pattern", MemberStatus.Pending, true, true, "return"),
        new("a unit that failed went back by its own rollback", MemberStatus.Failed, true, true, "none"),
        new("a unit never offered was never moved", MemberStatus.Pending, false, true, "none"),
        new("an offline unit never offered was never moved", MemberStatus.Offline, false, true, "none"),
        new("an installed unit with no way back is reported", MemberStatus.Installed, true, false, "cannot"),
        new("a unit still installing with no way back is reported", MemberStatus.Downloading, true, false, "cannot"),
        new("a failed unit needs no way back", MemberStatus.Failed, true, false, "none"),
    ];

    [TestCaseSource(nameof(ReturnCases))]
    public void PlanReturn(ReturnCase c)
    {
        var member = new ReturnCandidate("02:00:00:00:00:01", c.Status, c.Offered ? "x" : null);
        var asked = new List<string>();
        var plan = RolloutEngine.PlanReturn([member], p => { asked.Add(p); return c.CanReturn ? null : "no update program leads from y back to x"; });
        var got = plan.Return.Count == 1 ? "return" : plan.Cannot.Count == 1 ? "cannot" : "none";
        Assert.That(got, Is.EqualTo(c.Expect));
        Assert.That(plan.Return.Count + plan.Cannot.Count, Is.LessThanOrEqualTo(1), "a member is returned or reported, never both");
        if (got == "return") { Assert.That(plan.Return[0], Is.EqualTo((member.Mac, "x")), "it returns to the pattern recorded when it was moved"); }
        if (got == "cannot") { Assert.That(plan.Cannot[0].Why, Does.Contain("no update program")); }
        Assert.That(asked, Is.All.EqualTo("x"), "only the recorded pattern is asked about");
    }

    /// <summary>A version check as the host makes it, for the rollout's sake: the program toward the target, the gate, the offer recorded.</summary>
    private static async Task<string?> CheckAsync(TsunaguStore store, RolloutService service, string mac)
    {
        var unit = (await store.Units.GetUnitForCheckAsync(mac))!;
        if (unit.TargetPattern == unit.Pattern) { return null; }
        var program = await store.Catalogue.FindUpdateProgramAsync(unit.Pattern!, unit.TargetPattern);
        if (program is null || await service.AdmitAsync(mac, program) is not { Deferred: null } admission) { return null; }
        // recorded as the host records it: with the check, in its transaction
        var offer = RolloutService.OfferOf(mac, program, admission);
        var inventory = System.Text.Json.JsonSerializer.Deserialize(unit.Inventory!, ProtocolJson.Default.Inventory)!;
        var (_, withheld) = await store.Units.RecordCheckAsync(unit, inventory, unit.Pattern!, UnitStates.Updating, $"periodic on {unit.Pattern}: offered {program.Id}", false, offer);
        return withheld == OfferWithheld.None ? program.Id : null;
    }

    [TestCase(true)]
    [TestCase(false)]
    public async Task An_abort_that_reverts_returns_the_moved_units_by_the_program_back_or_says_which_cannot(bool programBack)
    {
        var (store, service) = Start();
        foreach (var (id, apps) in new[] { ("x", "{\"vcp\":\"1.0.0\"}"), ("y", "{\"vcp\":\"2.0.0\"}") })
        {
            await store.Catalogue.AddPatternAsync(new PatternRow { Id = id, Name = id, HardwareVersion = "hw-1", OsVersion = "os-1", Applications = apps, Status = PatternStatus.Verified });
        }
        await store.Catalogue.AddUpdateProgramAsync(XtoY);
        var YtoX = new UpdateProgramRow { Id = "y-to-x", FromPattern = "y", ToPattern = "x", Importance = 5 };
        if (programBack) { await store.Catalogue.AddUpdateProgramAsync(YtoX); }
        for (var i = 0; i < 10; i++) { await AddUnitOnX(store, i); await store.Fleet.SetTagsAsync(Mac(i), ["lab"], new AuditEntry("alice", "unit.tags", Mac(i), "lab")); }
        await AddRollout(store, 10);
        var waveOf = (await store.Rollouts.RolloutMembersAsync((await store.Rollouts.GetRolloutAsync("r1"))!)).ToDictionary(m => m.Mac, m => m.Wave);
        var first = waveOf.Where(w => w.Value == 0).Select(w => w.Key).Order().ToList();
        // wave 1: one unit installs; the other is offered and is still installing when the operator aborts
        Assert.That(await CheckAsync(store, service, first[0]), Is.EqualTo(XtoY.Id));
        await store.History.RecordUpdateOutcomeAsync(new UpdateOutcome(first[0], XtoY.Id, true, null, OnY, "y", UnitStates.Configuring, null, "installed"));
        Assert.That(await CheckAsync(store, service, first[1]), Is.EqualTo(XtoY.Id));
        await store.Units.RecordInventoryAsync(first[1], OnX, "x", UnitStates.Updating);
        _time.Advance(TimeSpan.FromMinutes(5));

        var before = (await store.Units.GetUnitAsync(Mac(9)))!.TargetPattern;
        Assert.ThrowsAsync<RolloutRuleException>(() => service.ActAsync("r1", "abort", "alice", CancellationToken.None, "explode"));
        Assert.That((await store.Rollouts.GetRolloutAsync("r1"))!.State, Is.EqualTo(RolloutStates.Running), "a wrong choice changes nothing");
        var view = await service.ActAsync("r1", "abort", "alice", CancellationToken.None, AbortChoices.Revert);
        Assert.That(view.State, Is.EqualTo(RolloutStates.Aborted));
        var returns = view.Returns!.ToDictionary(r => r.Mac, r => r.Outcome);
        Assert.That(returns.Keys, Is.EquivalentTo(first), "exactly the units the rollout moved or is moving");
        var audit = (await store.ListAuditAsync(20)).First(a => a.Target == "r1");
        Assert.That(audit.Action, Is.EqualTo("rollout.abort"));
        Assert.That((await store.Units.ListUnitsAsync()).Where(u => !first.Contains(u.Mac)).Select(u => u.TargetPattern), Is.All.EqualTo(before), "units never moved are left alone");
        if (!programBack)
        {
            Assert.That(returns.Values, Is.All.EqualTo("cannot return: no update program leads from y back to x"));
            Assert.That(audit.Detail, Does.Contain("2 cannot"));
            Assert.That(await TargetsAsync(store, first), Is.All.Null, "a unit that cannot return is left as it was");
            Assert.That(await CheckAsync(store, service, first[0]), Is.Null);
            return;
        }
        Assert.That(returns.Values, Is.All.EqualTo("returning to x"));
        Assert.That(audit.Detail, Does.Contain("2 return"));
        Assert.That(await TargetsAsync(store, first), Is.All.EqualTo("x"));
        // the installed unit is offered the program back at its next check; the one installing, once its install is done
        Assert.That(await CheckAsync(store, service, first[0]), Is.EqualTo(YtoX.Id));
        Assert.That(await CheckAsync(store, service, first[1]), Is.Null, "still on x: nothing to take while installing");
        await store.History.RecordUpdateOutcomeAsync(new UpdateOutcome(first[1], XtoY.Id, true, null, OnY, "y", UnitStates.Configuring, null, "installed"));
        Assert.That(await CheckAsync(store, service, first[1]), Is.EqualTo(YtoX.Id));
        // and no unit of the group is offered x -> y any more
        var offersOnX = new List<string?>();
        foreach (var m in Enumerable.Range(0, 10).Select(Mac))
        {
            if ((await store.Units.GetUnitForCheckAsync(m))!.Pattern == "x") { offersOnX.Add(await CheckAsync(store, service, m)); }
        }
        Assert.That(offersOnX, Is.All.Null);
        // the rollout is over: a second abort is refused
        Assert.ThrowsAsync<RolloutRuleException>(() => service.ActAsync("r1", "abort", "alice", CancellationToken.None, AbortChoices.Revert));
    }

    private static async Task AddRolloutOf(TsunaguStore store, IReadOnlyList<string> macs)
    {
        await EnsureTransition(store);
        await store.Fleet.AddGroupAsync(new GroupRow { Name = "lab", Kind = GroupKinds.Dynamic, Definition = "{\"tags\":[\"lab\"]}", CreatedBy = "alice" },
            new AuditEntry("alice", "group.create", "lab", null));
        var waves = new List<WaveSpec> { new(Percent: 5), new(Percent: 15), new(Percent: 80) };
        await store.Rollouts.AddRolloutAsync(new RolloutRow
        {
            Name = "r1", GroupName = "lab", FromPattern = "x", ToPattern = "y", UpdateId = XtoY.Id, Waves = System.Text.Json.JsonSerializer.Serialize(waves, System.Text.Json.JsonSerializerOptions.Web),
            SuccessPercent = 90, ErrorPercent = 10, OnError = ErrorActions.Pause, State = RolloutStates.Running, OpenWaves = 1, CreatedBy = "alice",
        }, RolloutEngine.Plan("r1", waves, macs), new AuditEntry("alice", "rollout.create", "r1", null));
    }
}
