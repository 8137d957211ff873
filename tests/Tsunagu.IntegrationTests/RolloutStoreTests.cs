using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using Tsunagu.Protocol;
using Tsunagu.Server;
using Tsunagu.Server.Data;
using Tsunagu.Server.Fleet;
using Tsunagu.Server.Fleet.Rollouts;
using Tsunagu.Server.Push;
using Tsunagu.Server.Units.ForcedChecks;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// What the rollout store does on each database (SQLite and PostgreSQL): a return after an abort ends when the unit is
/// back on its previous pattern or the operator sets its target, so the unit can be moved again; a repeated offer of a
/// rollout's update writes nothing; the abort plans its returns inside the transaction that applies them.
/// </summary>
[TestFixture("sqlite")]
[TestFixture("postgres")]
[NonParallelizable]
public class RolloutStoreTests(string kind)
{
    private sealed class Clock(DateTimeOffset start) : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = start;
        public override DateTimeOffset GetUtcNow() => Now;
    }

    private sealed class NoPush : IPushPublisher
    {
        public string? BrokerUri => null;
        public bool Connected => false;
        public Task PublishAsync(string mac, PushMessage message, CancellationToken cancellationToken) => throw new PushException("push is disabled");
        public Task EnsureUnitAccountAsync(string mac, CancellationToken cancellationToken) => Task.CompletedTask;
        public Task RevokeUnitAsync(string mac, CancellationToken cancellationToken) => Task.CompletedTask;
    }

    private static readonly Inventory OnX = new("hw-1", "os-1", new Dictionary<string, string> { ["vcp"] = "1.0.0" });
    private static readonly Inventory OnY = new("hw-1", "os-1", new Dictionary<string, string> { ["vcp"] = "2.0.0" });
    private static readonly UpdateProgramRow XtoY = new() { Id = "x-to-y", FromPattern = "x", ToPattern = "y", Importance = 5, ArtifactSha256 = new string('a', 64), ArtifactSize = 1 };
    private static readonly UpdateProgramRow YtoX = new() { Id = "y-to-x", FromPattern = "y", ToPattern = "x", Importance = 5, ArtifactSha256 = new string('b', 64), ArtifactSize = 1 };

    private string _directory = "";
    private Clock _clock = null!;
    private Database _database = null!;
    private TsunaguStore _store = null!;
    private RolloutService _service = null!;

    [SetUp]
    public async Task SetUp()
    {
        _directory = Directory.CreateTempSubdirectory("tsunagu-rollout-store-").FullName;
        _clock = new Clock(new DateTimeOffset(2026, 4, 1, 9, 0, 0, TimeSpan.Zero));
        _database = Database.Parse(kind == "postgres" ? PostgresServer.Shared.CreateDatabase() : "tsunagu.db", _directory);
        _database.Migrate();
        _store = new TsunaguStore(_database, _clock);
        var options = new ServerOptions();
        var push = new NoPush();
        _service = new RolloutService(_store, options, _clock, new ForcedCheckService(_store, push, _clock), push,
            new Tsunagu.Server.Cluster.ReplicaLease(_store, options, _clock, NullLogger<Tsunagu.Server.Cluster.ReplicaLease>.Instance), NullLogger<RolloutService>.Instance);
        foreach (var (id, apps) in new[] { ("x", "{\"vcp\":\"1.0.0\"}"), ("y", "{\"vcp\":\"2.0.0\"}") })
        {
            await _store.Catalogue.AddPatternAsync(new PatternRow { Id = id, Name = id, HardwareVersion = "hw-1", OsVersion = "os-1", Applications = apps, Status = PatternStatus.Verified });
        }
        await _store.Catalogue.AddUpdateProgramAsync(XtoY);
        await _store.Catalogue.AddUpdateProgramAsync(YtoX);
        for (var i = 0; i < 6; i++)
        {
            await _store.Units.AddUnitAsync(new UnitRow { Mac = Mac(i), Serial = $"SN-{i}", HardwareVersion = "hw-1", IspMethod = "dhcp" });
            await _store.Units.RecordInventoryAsync(Mac(i), OnX, "x", UnitStates.Ready);
            await _store.Fleet.SetTagsAsync(Mac(i), ["lab"], new AuditEntry("alice", "unit.tags", Mac(i), "lab"));
        }
        await _store.Fleet.AddGroupAsync(new GroupRow { Name = "lab", Kind = GroupKinds.Dynamic, Definition = "{\"tags\":[\"lab\"]}", CreatedBy = "alice" },
            new AuditEntry("alice", "group.create", "lab", null));
    }

    [TearDown]
    public void TearDown()
    {
        _service.Dispose();
        SqliteConnection.ClearAllPools();
        NpgsqlConnection.ClearAllPools();
        Directory.Delete(_directory, recursive: true);
    }

    private static string Mac(int i) => $"02:00:00:00:02:{i:x2}";

    /// <summary>The version check as the host makes it, for the rollout's sake: the program toward the target, the gate, the offer recorded.</summary>
    private async Task<string?> CheckAsync(string mac)
    {
        var unit = (await _store.Units.GetUnitForCheckAsync(mac))!;
        if (unit.TargetPattern == unit.Pattern) { return null; }
        var program = await _store.Catalogue.FindUpdateProgramAsync(unit.Pattern!, unit.TargetPattern);
        if (program is null || await _service.AdmitAsync(mac, program) is not { Deferred: null } admission) { return null; }
        return await OfferAsync(mac, program, admission) is null ? program.Id : null;
    }

    /// <summary>
    /// The check's record of the offer, as the host writes it (<see cref="UnitStore.RecordCheckAsync"/>,
    /// one transaction): why it was withheld, or null when it was recorded.
    /// </summary>
    private async Task<string?> OfferAsync(string mac, UpdateProgramRow program, RolloutAdmission admission)
    {
        var unit = (await _store.Units.GetUnitForCheckAsync(mac))!;
        var offer = RolloutService.OfferOf(mac, program, admission);
        var inventory = System.Text.Json.JsonSerializer.Deserialize(unit.Inventory!, ProtocolJson.Default.Inventory)!;
        var (_, withheld) = await _store.Units.RecordCheckAsync(unit, inventory, unit.Pattern!, UnitStates.Updating, $"periodic on {unit.Pattern}: offered {program.Id}", false, offer);
        return withheld == OfferWithheld.None ? null : await _service.WithheldAsync(offer, withheld);
    }

    /// <summary>The unit reports the install of <paramref name="program"/>: it runs the program's new pattern.</summary>
    private async Task Installed(string mac, UpdateProgramRow program) =>
        await _store.History.RecordUpdateOutcomeAsync(new UpdateOutcome(mac, program.Id, true, null, program.ToPattern == "y" ? OnY : OnX, program.ToPattern, UnitStates.Configuring, null, "installed"));

    private Task<RolloutView> CreateAsync(string name, IReadOnlyList<WaveSpec> waves) =>
        _service.CreateAsync(new NewRollout(name, "lab", "x", "y", waves, SuccessPercent: 100, MinWaveSeconds: 3600), "alice");

    /// <summary>Each member's record of the rollout's first offer: the pattern it ran and when.</summary>
    private Dictionary<string, (string?, string?)> OfferRecords(string rollout)
    {
        using var c = _database.Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = $"SELECT mac, previous_pattern, offered_at FROM rollout_units WHERE rollout = '{rollout}'";
        using var r = cmd.ExecuteReader();
        var records = new Dictionary<string, (string?, string?)>();
        while (r.Read()) { records[r.GetString(0)] = (r.IsDBNull(1) ? null : r.GetString(1), r.IsDBNull(2) ? null : r.GetString(2)); }
        return records;
    }

    private async Task<List<string>> FirstWaveAsync(string rollout) =>
        (await _store.Rollouts.RolloutMembersAsync((await _store.Rollouts.GetRolloutAsync(rollout))!)).Where(m => m.Wave == 0).Select(m => m.Mac).Order().ToList();

    /// <summary>Rollout r1 (two units, then the rest) whose first wave installed x -> y, aborted with revert; the first wave.</summary>
    private async Task<List<string>> FirstWaveOnYAbortedWithRevertAsync()
    {
        await CreateAsync("r1", [new(Count: 2), new(Percent: 100)]);
        var moved = await FirstWaveAsync("r1");
        foreach (var mac in moved)
        {
            Assert.That(await CheckAsync(mac), Is.EqualTo(XtoY.Id));
            await Installed(mac, XtoY);
        }
        await _service.ActAsync("r1", "abort", "alice", CancellationToken.None, AbortChoices.Revert);
        return moved;
    }

    [Test]
    public async Task A_return_ends_when_the_unit_is_back_so_a_later_rollout_moves_it_again()
    {
        var moved = await FirstWaveOnYAbortedWithRevertAsync();
        Assert.That((await moved.SelectAsync(async m => (await _store.Units.GetUnitAsync(m))!.TargetPattern)), Is.All.EqualTo("x"), "returning: the target is the previous pattern");
        // the first unit goes back; the second is still on y
        Assert.That(await CheckAsync(moved[0]), Is.EqualTo(YtoX.Id));
        await Installed(moved[0], YtoX);
        await _service.TickAsync(CancellationToken.None);

        Assert.That((await _store.Units.GetUnitAsync(moved[0]))!.TargetPattern, Is.Null, "back on x: the return ended and the target it had before (none) came back");
        Assert.That((await _store.Units.GetUnitAsync(moved[1]))!.TargetPattern, Is.EqualTo("x"), "still on y: still returning");
        var returns = (await _store.Rollouts.RolloutReturnsAsync("r1", null, 1000)).ToDictionary(r => r.Mac, r => r.Returned);
        Assert.That(returns[moved[0]], Is.EqualTo("returned to x"));
        Assert.That(returns[moved[1]], Is.EqualTo("returning to x"));
        var audit = (await _store.ListAuditAsync(20)).Where(a => a.Action == "rollout.returned").ToList();
        Assert.That(audit.Select(a => (a.Actor, a.Target)), Is.EqualTo(new[] { ("rollout:r1", "r1") }), "the end is audited once");
        Assert.That(audit[0].Detail, Does.Contain(moved[0]).And.Not.Contain(moved[1]));
        Assert.That(await CheckAsync(moved[0]), Is.Null, "the aborted rollout still holds x -> y");
        await _service.TickAsync(CancellationToken.None);
        Assert.That((await _store.ListAuditAsync(20)).Count(a => a.Action == "rollout.returned"), Is.EqualTo(1), "an ended return is not ended again");

        // the second unit returns too; then a new rollout of x -> y moves both again
        Assert.That(await CheckAsync(moved[1]), Is.EqualTo(YtoX.Id));
        await Installed(moved[1], YtoX);
        await _service.TickAsync(CancellationToken.None);
        Assert.That((await _store.Units.ListUnitsAsync()).Select(u => u.TargetPattern), Is.All.Null);
        await CreateAsync("r2", [new(Percent: 100)]);
        Assert.That(await moved.SelectAsync(CheckAsync), Is.All.EqualTo(XtoY.Id), "a later rollout moves the units an abort returned");
    }

    [Test]
    public async Task A_unit_still_installing_at_the_abort_keeps_its_return_until_it_went_and_came_back()
    {
        await CreateAsync("r1", [new(Count: 2), new(Percent: 100)]);
        var moved = await FirstWaveAsync("r1");
        foreach (var mac in moved) { Assert.That(await CheckAsync(mac), Is.EqualTo(XtoY.Id)); }
        await Installed(moved[0], XtoY); // the second unit's install is still under way: it runs x at the abort
        await _service.ActAsync("r1", "abort", "alice", CancellationToken.None, AbortChoices.Revert);
        await _service.TickAsync(CancellationToken.None);
        Assert.That((await _store.Units.GetUnitAsync(moved[1]))!.TargetPattern, Is.EqualTo("x"), "on x, but it has not gone and come back: the return stays");
        Assert.That((await _store.Rollouts.RolloutReturnsAsync("r1", null, 1000)).Single(r => r.Mac == moved[1]).Returned, Is.EqualTo("returning to x"));

        // its install finishes (y), the return takes it back (x), and only then does the return end
        await Installed(moved[1], XtoY);
        await _service.TickAsync(CancellationToken.None);
        Assert.That((await _store.Units.GetUnitAsync(moved[1]))!.TargetPattern, Is.EqualTo("x"));
        Assert.That(await CheckAsync(moved[1]), Is.EqualTo(YtoX.Id));
        await Installed(moved[1], YtoX);
        await _service.TickAsync(CancellationToken.None);
        Assert.That((await _store.Units.GetUnitAsync(moved[1]))!.TargetPattern, Is.Null, "back on x after the way back: the return ended");
        Assert.That((await _store.Rollouts.RolloutReturnsAsync("r1", null, 1000)).Single(r => r.Mac == moved[1]).Returned, Is.EqualTo("returned to x"));
    }

    [Test]
    public async Task The_operator_setting_the_target_ends_a_return_and_the_target_stands()
    {
        var moved = await FirstWaveOnYAbortedWithRevertAsync();
        // the operator keeps one unit on y after all, and clears the other's target
        await _store.Units.SetTargetPatternAsync(moved[0], "y", new AuditEntry("alice", "unit.target-pattern", moved[0], "y"));
        await _store.Units.SetTargetPatternAsync(moved[1], null, new AuditEntry("alice", "unit.target-pattern", moved[1], "none"));
        await _service.TickAsync(CancellationToken.None);
        Assert.That((await _store.Units.GetUnitAsync(moved[0]))!.TargetPattern, Is.EqualTo("y"));
        Assert.That((await _store.Units.GetUnitAsync(moved[1]))!.TargetPattern, Is.Null);
        var returns = (await _store.Rollouts.RolloutReturnsAsync("r1", null, 1000)).ToDictionary(r => r.Mac, r => r.Returned);
        Assert.That(returns[moved[0]], Is.EqualTo("return to x ended: the target was set to y"));
        Assert.That(returns[moved[1]], Is.EqualTo("return to x ended: the target was set to none"));
        Assert.That(await CheckAsync(moved[0]), Is.Null, "on its target: nothing to take");
        Assert.That((await _store.ListAuditAsync(20)).Count(a => a.Action == "rollout.returned"), Is.Zero, "the operator's own entry records it");

        // the unit whose target was cleared reaches x some other way (a reset): its target is not touched again
        await _store.Units.RecordInventoryAsync(moved[1], OnX, "x", UnitStates.Ready);
        await _store.Units.SetTargetPatternAsync(moved[1], "y", new AuditEntry("alice", "unit.target-pattern", moved[1], "y"));
        await _service.TickAsync(CancellationToken.None);
        Assert.That((await _store.Units.GetUnitAsync(moved[1]))!.TargetPattern, Is.EqualTo("y"));
    }

    [Test]
    public async Task A_group_wave_opens_its_units_first_and_a_missing_group_is_refused_without_a_write()
    {
        var canary = new[] { Mac(4), Mac(1) };
        await _store.Fleet.AddGroupAsync(new GroupRow { Name = "canary", Kind = GroupKinds.Static, Definition = System.Text.Json.JsonSerializer.Serialize(canary), CreatedBy = "alice" },
            new AuditEntry("alice", "group.create", "canary", null));
        var audit = (await _store.ListAuditAsync(1000)).Count;
        var refused = Assert.ThrowsAsync<RolloutRuleException>(() => CreateAsync("r1", [new(Group: "nope"), new(Percent: 100)]))!;
        Assert.That(refused.Message, Does.Contain("no group 'nope'"));
        Assert.That(refused.Conflict, Is.False);
        Assert.That(await _store.Rollouts.ListRolloutsAsync(), Is.Empty);
        Assert.That(await _store.ListAuditAsync(1000), Has.Count.EqualTo(audit), "a refused rollout writes nothing");

        var view = await CreateAsync("r1", [new(Group: "canary"), new(Count: 1), new(Percent: 100)]);
        Assert.That(view.Waves.Select(w => w.Members), Is.EqualTo(new[] { 2, 1, 3 }));
        Assert.That(view.WaveSpecs.Select(w => w.ToString()), Is.EqualTo(new[] { "group:canary", "1", "100%" }));
        Assert.That(await FirstWaveAsync("r1"), Is.EqualTo(canary.Order()), "wave 1 is the canary group");
        Assert.That((await _store.ListAuditAsync(5)).First(a => a.Action == "rollout.create").Detail, Does.Contain("waves 2/1/3"));
        var offered = (await Enumerable.Range(0, 6).Select(Mac).WhereAsync(async m => await CheckAsync(m) is not null)).Order().ToList();
        Assert.That(offered, Is.EqualTo(canary.Order()), "only the canary units are offered the update");
        foreach (var mac in canary) { await Installed(mac, XtoY); }
        _clock.Now += TimeSpan.FromHours(1);
        await _service.TickAsync(CancellationToken.None);
        Assert.That((await _store.Rollouts.GetRolloutAsync("r1"))!.OpenWaves, Is.EqualTo(2), "the canary wave done, wave 2 opens");
        var wave2 = (await _store.Rollouts.RolloutMembersAsync((await _store.Rollouts.GetRolloutAsync("r1"))!)).Where(m => m.Wave == 1).Select(m => m.Mac).ToList();
        Assert.That((await Enumerable.Range(0, 6).Select(Mac).WhereAsync(async m => await CheckAsync(m) == XtoY.Id)), Is.EqualTo(wave2), "then only wave 2");
    }

    /// <summary>Holds a lock that lets reads through but blocks any write to rollout_units (SQLite: every write) until disposed.</summary>
    private async Task<IAsyncDisposable> HoldWriteLockAsync()
    {
        if (kind == "postgres")
        {
            var pg = new NpgsqlConnection(_database.ConnectionString);
            await pg.OpenAsync();
            var tx = await pg.BeginTransactionAsync();
            await using (var cmd = new NpgsqlCommand("LOCK TABLE rollout_units IN EXCLUSIVE MODE", pg, tx)) { await cmd.ExecuteNonQueryAsync(); }
            return new Held(async () => { await tx.RollbackAsync(); await pg.DisposeAsync(); });
        }
        var sqlite = new SqliteConnection(_database.ConnectionString);
        await sqlite.OpenAsync();
        await using (var begin = sqlite.CreateCommand())
        {
            begin.CommandText = "BEGIN IMMEDIATE";
            await begin.ExecuteNonQueryAsync();
        }
        return new Held(async () =>
        {
            await using (var end = sqlite.CreateCommand()) { end.CommandText = "ROLLBACK"; await end.ExecuteNonQueryAsync(); }
            await sqlite.DisposeAsync();
        });
    }

    private sealed class Held(Func<Task> release) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync() => await release();
    }

    [Test]
    public async Task A_repeated_offer_writes_nothing()
    {
        await CreateAsync("r1", [new(Count: 2), new(Percent: 100)]);
        var first = (await FirstWaveAsync("r1"))[0];
        Assert.That(await CheckAsync(first), Is.EqualTo(XtoY.Id), "the first offer is recorded");
        var recorded = OfferRecords("r1")[first];
        Assert.That(recorded, Is.EqualTo(((string?)"x", (string?)_store.Now())));
        _clock.Now += TimeSpan.FromMinutes(5);
        // the next check records the unit seen (at most once a minute) and the offer again, which writes nothing of it
        Assert.That(await CheckAsync(first), Is.EqualTo(XtoY.Id));
        Assert.That(OfferRecords("r1")[first], Is.EqualTo(recorded), "the first offer's record stands");

        // every later check that offers the update again (the unit has not installed yet) runs while no write can be made
        _database.BusyTimeout = TimeSpan.FromSeconds(2);
        var checks = Task.CompletedTask;
        await using (await HoldWriteLockAsync())
        {
            checks = Task.Run(async () =>
            {
                for (var i = 0; i < 5; i++) { Assert.That(await CheckAsync(first), Is.EqualTo(XtoY.Id)); }
            });
            Assert.That(await Task.WhenAny(checks, Task.Delay(TimeSpan.FromSeconds(60))), Is.SameAs(checks),
                "a repeated offer waited for a write lock: it writes");
        }
        await checks; // its assertions, or a busy database it met
        Assert.That(OfferRecords("r1")[first], Is.EqualTo(recorded), "the first offer's record stands");
    }

    [Test]
    public async Task The_abort_counts_tell_returning_returned_cannot_and_ended_apart_as_each_outcome_changes()
    {
        // three members offered x -> y and installed; the abort returns two and cannot return the third
        await CreateAsync("r1", [new(Count: 3), new(Percent: 100)]);
        var wave = await FirstWaveAsync("r1");
        foreach (var mac in wave)
        {
            Assert.That(await CheckAsync(mac), Is.EqualTo(XtoY.Id));
            await Installed(mac, XtoY);
        }
        var plan = await _store.Rollouts.AbortRolloutReturningAsync("r1",
            _ => Task.FromResult(new ReturnPlan([(wave[0], "x"), (wave[1], "x")], [(wave[2], "no update program leads from y back to x")])),
            p => ("aborted by alice", new AuditEntry("alice", "rollout.abort", "r1", $"{p.Return.Count} return, {p.Cannot.Count} cannot")));
        Assert.That(plan, Is.Not.Null);
        Assert.That(await _store.Rollouts.RolloutReturnCountsAsync("r1"), Is.EqualTo(new ReturnCounts(3, 2, 0, 1, 0)));

        // the first goes back: returning -> returned
        Assert.That(await CheckAsync(wave[0]), Is.EqualTo(YtoX.Id));
        await Installed(wave[0], YtoX);
        await _service.TickAsync(CancellationToken.None);
        Assert.That(await _store.Rollouts.RolloutReturnCountsAsync("r1"), Is.EqualTo(new ReturnCounts(3, 1, 1, 1, 0)));
        // the operator sets the second's target: returning -> ended
        await _store.Units.SetTargetPatternAsync(wave[1], "y", new AuditEntry("alice", "unit.target-pattern", wave[1], "y"));
        await _service.TickAsync(CancellationToken.None);
        var returns = (await _store.Rollouts.RolloutReturnsAsync("r1", null, 1000)).ToDictionary(r => r.Mac, r => r.Returned);
        Assert.That(returns, Is.EqualTo(new Dictionary<string, string>
        {
            [wave[0]] = "returned to x",
            [wave[1]] = "return to x ended: the target was set to y",
            [wave[2]] = "cannot return: no update program leads from y back to x",
        }));
        var view = await _service.ViewAsync((await _store.Rollouts.GetRolloutAsync("r1"))!);
        Assert.That(view.ReturnCounts, Is.EqualTo(new ReturnCounts(3, 0, 1, 1, 1)), "one of each: returned, cannot, ended");
        Assert.That(view.Returns!.Select(r => r.Mac), Is.EqualTo(wave), "the view lists every member the abort touched, in MAC order");
        Assert.That((await _store.Units.GetUnitAsync(wave[2]))!.TargetPattern, Is.Null, "a unit that cannot return is left as it was");
    }

    [Test]
    public async Task An_abort_that_returns_more_units_than_a_view_lists_shows_the_first_with_counts_and_pages_through_every_one_once()
    {
        // 6 units of the fixture and 120 more, every one offered x -> y (one wave), then the abort returns them all
        for (var i = 6; i < 126; i++)
        {
            await _store.Units.AddUnitAsync(new UnitRow { Mac = Mac(i), Serial = $"SN-{i}", HardwareVersion = "hw-1", IspMethod = "dhcp" });
            await _store.Units.RecordInventoryAsync(Mac(i), OnX, "x", UnitStates.Ready);
            await _store.Fleet.SetTagsAsync(Mac(i), ["lab"], new AuditEntry("alice", "unit.tags", Mac(i), "lab"));
        }
        await CreateAsync("r1", [new(Percent: 100)]);
        var all = Enumerable.Range(0, 126).Select(Mac).Order(StringComparer.Ordinal).ToList();
        foreach (var mac in all) { Assert.That(await CheckAsync(mac), Is.EqualTo(XtoY.Id)); }
        await Installed(all[0], XtoY);
        var aborted = await _service.ActAsync("r1", "abort", "alice", CancellationToken.None, AbortChoices.Revert);

        Assert.That(aborted.Returns!.Select(r => r.Mac), Is.EqualTo(all.Take(RolloutService.ListedMembers)), "the view lists the first members in MAC order, no more");
        Assert.That(aborted.ReturnCounts, Is.EqualTo(new ReturnCounts(126, 126, 0, 0, 0)), "and counts every one");
        // the first unit goes back: the counts follow the outcomes
        Assert.That(await CheckAsync(all[0]), Is.EqualTo(YtoX.Id));
        await Installed(all[0], YtoX);
        await _service.TickAsync(CancellationToken.None);
        var view = await _service.ViewAsync((await _store.Rollouts.GetRolloutAsync("r1"))!);
        Assert.That(view.ReturnCounts, Is.EqualTo(new ReturnCounts(126, 125, 1, 0, 0)));
        Assert.That(view.Returns![0], Is.EqualTo(new MemberReturn(all[0], "returned to x")));

        // pages of 50 from the start: every member once, in order, the last page short
        var paged = new List<MemberReturn>();
        string? after = null;
        var pages = 0;
        while (true)
        {
            var page = await _service.ReturnsAsync("r1", after, 50);
            pages++;
            paged.AddRange(page);
            if (page.Count < 50) { break; }
            after = page[^1].Mac;
        }
        Assert.That(pages, Is.EqualTo(3));
        Assert.That(paged.Select(r => r.Mac), Is.EqualTo(all), "each member once, in MAC order");
        Assert.That(paged.Skip(1).Select(r => r.Outcome), Is.All.EqualTo("returning to x"));
        Assert.That(await _service.ReturnsAsync("r1", all[^1], 50), Is.Empty, "nothing after the last");
        Assert.That(await _service.ReturnsAsync("r2", null, 50), Is.Empty, "no rollout, no returns");
    }

    [Test]
    public async Task The_abort_plans_its_returns_inside_the_transaction_that_applies_them()
    {
        await CreateAsync("r1", [new(Count: 3), new(Percent: 100)]);
        var wave = await FirstWaveAsync("r1");
        Assert.That(await CheckAsync(wave[0]), Is.EqualTo(XtoY.Id));
        await Installed(wave[0], XtoY);
        Assert.That(await CheckAsync(wave[1]), Is.EqualTo(XtoY.Id));
        _clock.Now += TimeSpan.FromMinutes(1);

        // the third unit's check passed the gate (running, its wave open, not offered yet) before the abort began
        var lateAdmission = await _service.AdmitAsync(wave[2], XtoY);
        Assert.That(lateAdmission, Is.EqualTo(new RolloutAdmission(null, "r1")));
        string? seenByOthers = null;
        Task<string?>? lateOffer = null;
        var plan = await _store.Rollouts.AbortRolloutReturningAsync("r1", async members =>
        {
            // inside the abort's transaction: another connection still sees the rollout running
            seenByOthers = (await new TsunaguStore(_database, _clock).Rollouts.GetRolloutAsync("r1"))!.State;
            // an offer to the third unit made now cannot land before the abort commits (it would be missing from the plan):
            // it is started and seen waiting for the abort's transaction before the plan is made
            lateOffer = await StartBlocked(nameof(UnitStore.RecordCheckAsync), () => OfferAsync(wave[2], XtoY, lateAdmission));
            return RolloutEngine.PlanReturn(members, _ => null);
        }, p => ("aborted by alice", new AuditEntry("alice", "rollout.abort", "r1", $"{p.Return.Count} return")));
        Assert.That(seenByOthers, Is.EqualTo(RolloutStates.Running), "the plan was made before the abort was visible: in its transaction");
        Assert.That(plan, Is.Not.Null);
        Assert.That(plan!.Return.Select(r => r.Mac).Order(), Is.EqualTo(wave.Take(2)), "exactly the members offered the update when the abort committed");
        Assert.That(await lateOffer!.WaitAsync(TimeSpan.FromSeconds(60)), Is.EqualTo("rollout r1 is aborted"), "an offer that waited for the abort is refused: the rollout no longer runs");
        Assert.That(OfferRecords("r1")[wave[2]], Is.EqualTo(((string?)null, (string?)null)), "the refused offer recorded nothing");
        var stored = (await _store.Rollouts.RolloutReturnsAsync("r1", null, 1000)).ToDictionary(r => r.Mac, r => r.Returned);
        Assert.That(stored.Keys.Order(), Is.EqualTo(wave.Take(2)), "what was applied is what was planned");
        Assert.That((await wave.Take(2).SelectAsync(async m => (await _store.Units.GetUnitAsync(m))!.TargetPattern)), Is.All.EqualTo("x"));
        Assert.That((await _store.Units.GetUnitAsync(wave[2]))!.TargetPattern, Is.Null);
        Assert.That((await _store.ListAuditAsync(5)).Single(a => a.Action == "rollout.abort").Detail, Is.EqualTo("2 return"));
        Assert.That((await _store.Rollouts.GetRolloutAsync("r1"))!.Reason, Is.EqualTo("aborted by alice"));
        // a second abort finds nothing to abort and writes nothing
        Assert.That(await _store.Rollouts.AbortRolloutReturningAsync("r1", m => Task.FromResult(RolloutEngine.PlanReturn(m, _ => null)), _ => ("again", new AuditEntry("alice", "rollout.abort", "r1", "again"))), Is.Null);
        Assert.That((await _store.ListAuditAsync(20)).Count(a => a.Action == "rollout.abort"), Is.EqualTo(1));
    }

    [TestCase("pause")]
    [TestCase("abort")]
    [TestCase("revert")]
    public async Task An_offer_whose_gate_passed_before_the_rollout_stopped_is_withheld_and_the_unit_stays(string action)
    {
        await CreateAsync("r1", [new(Count: 2), new(Percent: 100)]);
        var wave = await FirstWaveAsync("r1");
        Assert.That(await CheckAsync(wave[0]), Is.EqualTo(XtoY.Id));
        await Installed(wave[0], XtoY);
        // the second unit's version check passed the gate (running, its wave open, not offered yet) ...
        var admission = await _service.AdmitAsync(wave[1], XtoY);
        Assert.That(admission, Is.EqualTo(new RolloutAdmission(null, "r1")));
        // ... and the operator's action commits before the check offers the update
        var view = await _service.ActAsync("r1", action == "revert" ? "abort" : action, "alice", CancellationToken.None, action == "revert" ? AbortChoices.Revert : null);
        var stopped = action == "pause" ? RolloutStates.Paused : RolloutStates.Aborted;
        Assert.That(view.State, Is.EqualTo(stopped));
        Assert.That(view.Returns?.Select(r => r.Mac), action == "revert" ? Is.EqualTo(new[] { wave[0] }) : Is.Null.Or.Empty, "the abort planned the offers made before it");

        Assert.That(await OfferAsync(wave[1], XtoY, admission), Is.EqualTo($"rollout r1 is {stopped}"), "the offer is withheld");
        Assert.That(OfferRecords("r1")[wave[1]], Is.EqualTo(((string?)null, (string?)null)), "a withheld offer records nothing");
        Assert.That((await _store.Units.GetUnitAsync(wave[1]))!.TargetPattern, Is.Null, "not moved, so not returned: it stays on x");
        Assert.That(await CheckAsync(wave[1]), Is.Null, "and later checks are held");
        Assert.That(OfferRecords("r1").Where(r => r.Value.Item1 is not null).Select(r => r.Key), Is.EqualTo(new[] { wave[0] }), "one unit was ever offered the update");
    }

    /// <summary>Runs <paramref name="work"/> and returns it once it waits for the transaction the test holds (<see cref="StoreSeam.StartBlocked"/>).</summary>
    private Task<Task<T>> StartBlocked<T>(string storeMethod, Func<Task<T>> work) =>
        StoreSeam.StartBlocked(_store, _database, storeMethod, () => Task.Run(work),
            task => Task.FromResult(task.Exception?.InnerException?.Message ?? "done"));

    [Test]
    public async Task A_rollout_created_while_its_group_is_being_deleted_is_refused_and_writes_nothing()
    {
        var audit = (await _store.ListAuditAsync(1000)).Count;
        // the group is deleted in a transaction that stays open while the rollout is created
        using var c = _database.Open();
        using var tx = c.BeginTransaction();
        using (var delete = c.CreateCommand())
        {
            delete.Transaction = tx;
            delete.CommandText = "DELETE FROM unit_groups WHERE name = 'lab'";
            Assert.That(await delete.ExecuteNonQueryAsync(), Is.EqualTo(1));
        }
        var create = await StartBlocked("AddRolloutAsync", () => CreateAsync("r1", [new(Count: 2), new(Percent: 100)]));
        tx.Commit();

        var refused = Assert.ThrowsAsync<RolloutRuleException>(async () => await create.WaitAsync(TimeSpan.FromSeconds(60)))!;
        Assert.That(refused.Message, Does.Contain("no group 'lab'"));
        Assert.That(await _store.Rollouts.ListRolloutsAsync(), Is.Empty, "no rollout of a group that no longer exists");
        Assert.That(await _store.ListAuditAsync(1000), Has.Count.EqualTo(audit), "nothing audited");
    }

    [Test]
    public async Task A_group_deleted_while_a_rollout_is_created_from_it_is_refused_and_stays()
    {
        Task<bool>? delete = null;
        await _store.Rollouts.AddRolloutAsync(["lab"], async groups =>
        {
            Assert.That(groups.Keys, Is.EqualTo(new[] { "lab" }), "the group is read inside the rollout's transaction");
            // inside the transaction that stores the rollout: a delete of its group now must wait for it, then see it
            delete = await StartBlocked("DeleteGroupAsync", () => _store.Fleet.DeleteGroupAsync("lab", new AuditEntry("bob", "group.delete", "lab", null)));
            var members = RolloutEngine.Plan("r1", [new(Percent: 100)], (await _store.Fleet.GroupMembersAsync(groups["lab"])).ToList());
            return (new RolloutRow
            {
                Name = "r1", GroupName = "lab", FromPattern = "x", ToPattern = "y", UpdateId = XtoY.Id, Waves = "[{\"percent\":100}]",
                SuccessPercent = 90, ErrorPercent = 10, OnError = ErrorActions.Pause, State = RolloutStates.Running, OpenWaves = 1, CreatedBy = "alice",
            }, members, new AuditEntry("alice", "rollout.create", "r1", null));
        });
        var refused = Assert.ThrowsAsync<StoreConflictException>(async () => await delete!.WaitAsync(TimeSpan.FromSeconds(60)))!;
        Assert.That(refused.Message, Does.Contain("moved by rollout(s) r1"));
        Assert.That(await _store.Fleet.GetGroupAsync("lab"), Is.Not.Null, "the group of a running rollout stays");
        Assert.That(await _store.Rollouts.RolloutMembersAsync((await _store.Rollouts.GetRolloutAsync("r1"))!), Has.Count.EqualTo(6));
        Assert.That((await _store.ListAuditAsync(100)).Count(a => a.Action == "group.delete"), Is.Zero);
    }

    [Test]
    public async Task A_group_window_holds_an_update_below_importance_5_until_it_opens_on_each_units_clock()
    {
        // the group opens weekdays 01:00-05:00; one unit keeps Tokyo time, the others take the fleet's zone (UTC here)
        Assert.That(await _store.Fleet.SetGroupWindowCheckedAsync("lab", MaintenanceWindow.Parse("mon-fri 01:00-05:00").Window!.ToString(), (_, _) => null, new AuditEntry("alice", "group.window", "lab", null), CancellationToken.None), Is.True);
        Assert.That(await _store.Windows.SetUpdateWindowAsync(Mac(0), null, null, "Asia/Tokyo", new AuditEntry("alice", "unit.window", Mac(0), null)), Is.True);
        await CreateAsync("r1", [new(Percent: 100)]);
        var soon = new UpdateProgramRow { Id = XtoY.Id, FromPattern = "x", ToPattern = "y", Importance = 4, ArtifactSha256 = XtoY.ArtifactSha256, ArtifactSize = 1 };
        async Task<string?> GateAsync(int unit) => await _service.GateAsync(Mac(unit), soon, TimeZoneInfo.Utc);

        // Wednesday 09:00 UTC, 18:00 in Tokyo: closed for both
        _clock.Now = new DateTimeOffset(2026, 4, 1, 9, 0, 0, TimeSpan.Zero);
        Assert.That(await GateAsync(1), Does.Contain("waits for group lab's maintenance window mon,tue,wed,thu,fri 01:00-05:00 (UTC)"));
        Assert.That(await GateAsync(0), Does.Contain("(Asia/Tokyo)"));
        Assert.That(await _service.GateAsync(Mac(1), XtoY, TimeZoneInfo.Utc), Is.Null, "importance 5 ignores windows");
        // 17:00 UTC is Thursday 02:00 in Tokyo: open there only
        _clock.Now = new DateTimeOffset(2026, 4, 1, 17, 0, 0, TimeSpan.Zero);
        Assert.That(await GateAsync(0), Is.Null);
        Assert.That(await GateAsync(1), Does.Contain("maintenance window"));
        // Thursday 02:00 UTC (11:00 in Tokyo): the other way round
        _clock.Now = new DateTimeOffset(2026, 4, 2, 2, 0, 0, TimeSpan.Zero);
        Assert.That(await GateAsync(1), Is.Null);
        Assert.That(await GateAsync(0), Does.Contain("maintenance window"));
        // Saturday 02:00 UTC: a weekday window is closed
        _clock.Now = new DateTimeOffset(2026, 4, 4, 2, 0, 0, TimeSpan.Zero);
        Assert.That(await GateAsync(1), Does.Contain("maintenance window"));
        Assert.That(OfferRecords("r1").Values, Is.All.EqualTo(((string?)null, (string?)null)), "a unit held by the window was offered nothing");
        // the window cleared: open at once
        Assert.That(await _store.Fleet.SetGroupWindowCheckedAsync("lab", null, (_, _) => null, new AuditEntry("alice", "group.window", "lab", "none"), CancellationToken.None), Is.True);
        Assert.That(await GateAsync(1), Is.Null);
        Assert.That(await _store.Fleet.SetGroupWindowCheckedAsync("nope", null, (_, _) => null, new AuditEntry("alice", "group.window", "nope", "none"), CancellationToken.None), Is.False, "no such group: nothing written");
        Assert.That((await _store.ListAuditAsync(50)).Count(a => a.Action == "group.window"), Is.EqualTo(2));
    }

    [Test]
    public async Task A_stored_group_window_that_does_not_read_holds_updates_below_importance_5_instead_of_opening_them()
    {
        await CreateAsync("r1", [new(Percent: 100)]);
        // a window only a hand-edited database or an older writer could hold
        using (var c = _database.Open())
        using (var q = c.CreateCommand())
        {
            q.CommandText = "UPDATE unit_groups SET maintenance_window = 'whenever' WHERE name = 'lab'";
            Assert.That(q.ExecuteNonQuery(), Is.EqualTo(1));
        }
        var soon = new UpdateProgramRow { Id = XtoY.Id, FromPattern = "x", ToPattern = "y", Importance = 4, ArtifactSha256 = XtoY.ArtifactSha256, ArtifactSize = 1 };
        Assert.That(await _service.GateAsync(Mac(1), soon, TimeZoneInfo.Utc), Does.Contain("maintenance window does not read"), "held, not offered at any hour");
        Assert.That(await _service.GateAsync(Mac(1), XtoY, TimeZoneInfo.Utc), Is.Null, "importance 5 ignores windows, readable or not");
    }
}
