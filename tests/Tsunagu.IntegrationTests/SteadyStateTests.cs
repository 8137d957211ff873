using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The steady path writes nothing (a bare touch within a minute, an unchanged inventory, a repeated periodic
/// check), and overload hints spread rejected callers by the rate the server completes requests.
/// </summary>
public sealed class SteadyStateTests
{
    private sealed class Clock(DateTimeOffset start) : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = start;
        public override DateTimeOffset GetUtcNow() => Now;
    }

    private string _directory = "";

    [SetUp]
    public void SetUp() => _directory = Directory.CreateTempSubdirectory("tsunagu-steady-").FullName;

    [TearDown]
    public void TearDown()
    {
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        Directory.Delete(_directory, recursive: true);
    }

    private async Task<(TsunaguStore Store, Clock Clock, string Mac)> NewStoreAsync()
    {
        var clock = new Clock(new DateTimeOffset(2026, 1, 1, 12, 0, 0, TimeSpan.Zero));
        var database = Database.Parse("tsunagu.db", _directory);
        database.Migrate();
        var store = new TsunaguStore(database, clock);
        var mac = MacAddress.Normalize("02:54:53:aa:00:01");
        await store.Units.AddUnitAsync(new UnitRow { Mac = mac, Serial = "S-1", HardwareVersion = "r1", IspMethod = "dhcp" });
        return (store, clock, mac);
    }

    [Test]
    public async Task A_catalogue_change_through_one_replica_is_seen_by_the_next_check_on_another_and_reads_stay_in_memory_until_then()
    {
        var (replicaA, clock, mac) = await NewStoreAsync();
        var replicaB = new TsunaguStore(Database.Parse("tsunagu.db", _directory), clock);
        var inventory = new Inventory("r1", "os 1", new Dictionary<string, string> { ["fw"] = "1.0" });
        await replicaA.Catalogue.UpsertPatternAsync(new PatternRow { Id = "p1", Name = "one", HardwareVersion = "r1", OsVersion = "os 1", Applications = """{"fw":"1.0"}""", Status = PatternStatus.Verified });
        await replicaA.Catalogue.UpsertPatternAsync(new PatternRow { Id = "p2", Name = "two", HardwareVersion = "r1", OsVersion = "os 1", Applications = """{"fw":"2.0"}""", Status = PatternStatus.Draft });
        await replicaA.Catalogue.UpsertUpdateProgramAsync(new UpdateProgramRow { Id = "p1-to-p2", FromPattern = "p1", ToPattern = "p2", Importance = 3, ArtifactSha256 = new string('a', 64), ArtifactSize = 1 });

        var (unit, before) = await replicaB.Catalogue.GetUnitWithCatalogueAsync(mac);
        Assert.That(unit!.Mac, Is.EqualTo(mac));
        Assert.That(before.FindPattern(inventory)!.Id, Is.EqualTo("p1"));
        Assert.That(before.FindUpdateProgram("p1"), Is.Null, "a program to a draft pattern is not offered");
        Assert.That((await replicaB.Catalogue.GetUnitWithCatalogueAsync(mac)).Catalogue, Is.SameAs(before), "nothing changed: the same snapshot, no catalogue read");

        // the operator verifies p2 and sets a policy through replica A: replica B's next check sees both
        Assert.That(await replicaA.Catalogue.SetPatternStatusAsync("p2", PatternStatus.Draft, PatternStatus.Verified), Is.True);
        await replicaA.Settings.SetSettingAsync("update-policy", """{"cpuThreshold":0.5,"wanThreshold":0.5,"lowWindowStartHour":1,"lowWindowEndHour":4}""");
        var after = (await replicaB.Catalogue.GetUnitWithCatalogueAsync(mac)).Catalogue;
        Assert.That(after, Is.Not.SameAs(before));
        Assert.That(after.FindUpdateProgram("p1")!.Id, Is.EqualTo("p1-to-p2"));
        Assert.That(after.Setting("update-policy"), Does.Contain("lowWindowStartHour"));
        Assert.That((await replicaB.Catalogue.FindUpdateProgramAsync("p1", "p2"))!.Id, Is.EqualTo("p1-to-p2"));

        // retiring p1 keeps it matchable (units still run it) but a verified pattern with the same software wins
        Assert.That(await replicaA.Catalogue.SetPatternStatusAsync("p1", PatternStatus.Verified, PatternStatus.Retired), Is.True);
        Assert.That((await replicaB.Catalogue.FindPatternAsync(inventory))!.Id, Is.EqualTo("p1"));
        await replicaA.Catalogue.UpsertPatternAsync(new PatternRow { Id = "p0", Name = "same software", HardwareVersion = "r1", OsVersion = "os 1", Applications = """{"fw":"1.0"}""", Status = PatternStatus.Verified });
        Assert.That((await replicaB.Catalogue.FindPatternAsync(inventory))!.Id, Is.EqualTo("p0"));
        Assert.ThrowsAsync<ArgumentException>(async () => await replicaA.Settings.SetSettingAsync(CatalogueStore.CatalogueStampKey, "forged"));
    }

    [Test]
    public async Task A_bare_touch_within_a_minute_writes_nothing_but_a_state_or_error_change_always_does()
    {
        var (store, clock, mac) = await NewStoreAsync();
        await store.Units.TouchAsync(mac);
        var first = (await store.Units.GetUnitAsync(mac))!.LastSeen;
        Assert.That(first, Is.Not.Null);

        clock.Now += TimeSpan.FromSeconds(30);
        await store.Units.TouchAsync(mac);
        Assert.That((await store.Units.GetUnitAsync(mac))!.LastSeen, Is.EqualTo(first), "seen again within a minute: not written");

        await store.Units.TouchAsync(mac, error: "something failed");
        Assert.That((await store.Units.GetUnitAsync(mac))!.LastSeen, Is.Not.EqualTo(first), "an error is always written, with last_seen");

        clock.Now += TimeSpan.FromSeconds(61);
        var before = (await store.Units.GetUnitAsync(mac))!.LastSeen;
        await store.Units.TouchAsync(mac);
        Assert.That((await store.Units.GetUnitAsync(mac))!.LastSeen, Is.Not.EqualTo(before), "after a minute the touch is written again");
    }

    [Test]
    public async Task An_unchanged_inventory_is_not_written_again_and_a_changed_one_is()
    {
        var (store, _, mac) = await NewStoreAsync();
        var transactions = 0;
        store.TransactionBeginning += _ => Interlocked.Increment(ref transactions);
        var inventory = new Inventory("r1", "os 1", new SortedDictionary<string, string>(StringComparer.Ordinal) { ["vcp"] = "1.0.0" });
        async Task<bool> CheckAsync(Inventory i, string state) =>
            (await store.Units.RecordCheckAsync((await store.Units.GetUnitForCheckAsync(mac))!, i, "p1", state, "periodic on p1: up to date", forced: false)).Wrote;
        Assert.That(await CheckAsync(inventory, UnitStates.Configuring), Is.True, "first report");
        var written = transactions;
        Assert.That(await CheckAsync(inventory, UnitStates.Configuring), Is.False, "same report");
        Assert.That(transactions, Is.EqualTo(written), "a check that changes nothing (within a minute, the same history line) begins no transaction");
        Assert.That(await CheckAsync(inventory, UnitStates.Updating), Is.True, "new state");
        var newer = inventory with { Applications = new SortedDictionary<string, string>(StringComparer.Ordinal) { ["vcp"] = "1.1.0" } };
        Assert.That(await CheckAsync(newer, UnitStates.Updating), Is.True, "new software");
        Assert.That((await store.Units.GetUnitAsync(mac))!.Inventory, Does.Contain("1.1.0"));
    }

    [Test]
    public async Task A_repeated_periodic_check_is_logged_once_until_something_else_happens()
    {
        var (store, _, mac) = await NewStoreAsync();
        var inventory = new Inventory("r1", "os 1", new SortedDictionary<string, string>(StringComparer.Ordinal) { ["vcp"] = "1.0.0" });
        async Task CheckAsync() => await store.Units.RecordCheckAsync((await store.Units.GetUnitForCheckAsync(mac))!, inventory, "p1", UnitStates.Configuring, "periodic on p1: up to date", forced: false);
        await CheckAsync();
        await CheckAsync();
        await store.History.AddUnitEventAsync(mac, UnitEventKinds.Ready, "ready on p1");
        await CheckAsync();
        Assert.That((await store.History.ListUnitEventsAsync(mac)).Select(e => e.Kind), Is.EqualTo(new[] { UnitEventKinds.Check, UnitEventKinds.Ready, UnitEventKinds.Check }),
            "after another event the same check is news again; repeated, it is not");
    }

    [Test]
    public void Retry_after_hints_spread_rejected_callers_by_the_completion_rate_and_stay_capped()
    {
        var clock = new Clock(new DateTimeOffset(2026, 1, 1, 12, 0, 0, TimeSpan.Zero));
        var spreader = new RetryAfterSpreader(clock);
        for (var i = 0; i < 100; i++) { spreader.Completed(); } // 100 requests completed in this second
        clock.Now += TimeSpan.FromSeconds(1);
        for (var i = 0; i < 100; i++) { spreader.Completed(); }
        var hints = Enumerable.Range(0, 3000).Select(_ => spreader.Next()).ToList();
        Assert.That(hints[0], Is.GreaterThanOrEqualTo(RetryAfterSpreader.Minimum));
        Assert.That(hints, Is.Ordered, "each caller turned away gets a later slot than the one before");
        Assert.That(hints.Max(), Is.LessThanOrEqualTo(RetryAfterSpreader.Maximum));
        // about 100 per second: the 500th rejected caller comes back about 5 s later than the first
        Assert.That((hints[500] - hints[0]).TotalSeconds, Is.InRange(2.0, 10.0));
        var perSecond = hints.Where(h => h < RetryAfterSpreader.Maximum).GroupBy(h => (int)h.TotalSeconds).Max(g => g.Count());
        Assert.That(perSecond, Is.LessThan(300), "no second gets the whole crowd back");
    }
}
