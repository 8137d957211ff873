using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Time.Testing;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;

namespace Tsunagu.UnitTests.Server;

/// <summary>
/// The server's store (server/Tsunagu.Server/Data/TsunaguStore*.cs) on a SQLite file of its own: what each aggregate
/// operation writes, and that a refused write leaves everything as it was.
/// </summary>
public class StoreTests
{
    private string _directory = "";
    private TsunaguStore _store = null!;
    private FakeTimeProvider _time = null!;

    [SetUp]
    public void SetUp()
    {
        _directory = Directory.CreateTempSubdirectory("tsunagu-store-").FullName;
        var database = Database.Parse("tsunagu.db", _directory);
        database.Migrate();
        _time = new FakeTimeProvider(new DateTimeOffset(2026, 4, 1, 9, 0, 0, TimeSpan.Zero));
        _store = new TsunaguStore(database, _time);
    }

    [TearDown]
    public void TearDown()
    {
        SqliteConnection.ClearAllPools();
        Directory.Delete(_directory, recursive: true);
    }

    private static UnitRow Unit(string mac) => new() { Mac = mac, Serial = $"SN-{mac.Replace(":", "")}", HardwareVersion = "hw-1", IspMethod = "dhcp" };

    [Test]
    public async Task Registering_a_table_with_one_known_unit_registers_none_of_it_and_writes_no_audit_entry()
    {
        await _store.Units.AddUnitsAsync([Unit("02:00:00:00:00:01")], DemoCatalogue.StandardServices, "alice", "unit.register", "02:00:00:00:00:01", null);
        var auditBefore = (await _store.ListAuditAsync()).Count;

        Assert.ThrowsAsync<StoreConflictException>(async () => await _store.Units.AddUnitsAsync(
            [Unit("02:00:00:00:00:02"), Unit("02:00:00:00:00:01"), Unit("02:00:00:00:00:03")],
            DemoCatalogue.StandardServices, "alice", "unit.import", null, "3 units"));

        Assert.That((await _store.Units.ListUnitsAsync()).Select(u => u.Mac), Is.EqualTo(new[] { "02:00:00:00:00:01" }));
        Assert.That(await _store.ServiceConfigs.ListUnitConfigsAsync("02:00:00:00:00:02"), Is.Empty, "no configuration of a unit that was not registered");
        Assert.That(await _store.ListAuditAsync(), Has.Count.EqualTo(auditBefore));
    }

    [Test]
    public async Task Registered_units_each_get_revision_one_of_the_configuration_and_the_call_one_audit_entry()
    {
        await _store.Units.AddUnitsAsync([Unit("02:00:00:00:00:01"), Unit("02:00:00:00:00:02")], DemoCatalogue.StandardServices, "alice", "unit.import", null, "2 units");

        foreach (var mac in new[] { "02:00:00:00:00:01", "02:00:00:00:00:02" })
        {
            var configs = await _store.ServiceConfigs.ListUnitConfigsAsync(mac);
            Assert.That(configs.Select(c => (c.Revision, c.Status)), Is.EqualTo(new[] { (1L, ConfigStatus.Provisional) }));
            Assert.That((await _store.Units.GetUnitAsync(mac))!.ConfigRevision, Is.EqualTo(1));
        }
        Assert.That((await _store.ListAuditAsync()).Count(a => a.Action == "unit.import"), Is.EqualTo(1));
    }

    [Test]
    public async Task Configuration_revisions_count_up_per_unit_and_each_commits_with_its_audit_entry()
    {
        await _store.Units.AddUnitAsync(Unit("02:00:00:00:00:01"));
        await _store.Units.AddUnitAsync(Unit("02:00:00:00:00:02"));

        var revisions = new List<long>();
        for (var i = 0; i < 3; i++)
        {
            revisions.Add(await _store.ServiceConfigs.AddUnitConfigAsync("02:00:00:00:00:01", DemoCatalogue.StandardServices,
                audit: r => new AuditEntry("alice", "config.set", "02:00:00:00:00:01", $"revision {r}")));
        }
        var other = await _store.ServiceConfigs.AddUnitConfigAsync("02:00:00:00:00:02", DemoCatalogue.StandardServices);

        Assert.That(revisions, Is.EqualTo(new long[] { 1, 2, 3 }));
        Assert.That(other, Is.EqualTo(1), "revisions are per unit");
        Assert.That((await _store.ListAuditAsync()).Where(a => a.Action == "config.set").Select(a => a.Detail).Order(),
            Is.EqualTo(new[] { "revision 1", "revision 2", "revision 3" }));
    }

    [Test]
    public async Task An_acknowledgement_never_lowers_the_applied_revision_and_repeating_it_changes_nothing()
    {
        const string mac = "02:00:00:00:00:01";
        await _store.Units.AddUnitAsync(Unit(mac));
        await _store.ServiceConfigs.AddUnitConfigAsync(mac, DemoCatalogue.StandardServices);
        await _store.ServiceConfigs.AddUnitConfigAsync(mac, DemoCatalogue.StandardServices);

        Assert.That(await _store.ServiceConfigs.AckUnitConfigAsync(mac, 7, true, null), Is.False, "no such revision");
        Assert.That((await _store.Units.GetUnitAsync(mac))!.AppliedConfigRevision, Is.Null, "an acknowledgement of an unknown revision writes nothing");

        Assert.That(await _store.ServiceConfigs.AckUnitConfigAsync(mac, 2, true, null), Is.True);
        Assert.That(await _store.ServiceConfigs.AckUnitConfigAsync(mac, 1, true, null), Is.True);
        Assert.That((await _store.Units.GetUnitAsync(mac))!.AppliedConfigRevision, Is.EqualTo(2), "a late acknowledgement of revision 1 does not lower it");

        Assert.That(await _store.ServiceConfigs.FinalizeUnitConfigAsync(mac, 2), Is.True);
        _time.Advance(TimeSpan.FromMinutes(1));
        Assert.That(await _store.ServiceConfigs.AckUnitConfigAsync(mac, 2, false, "late failure"), Is.True);
        var latest = (await _store.ServiceConfigs.LatestUnitConfigAsync(mac))!;
        Assert.That((latest.Status, latest.Error), Is.EqualTo((ConfigStatus.Final, (string?)null)), "a final revision is never changed by an acknowledgement");
    }

    [Test]
    public async Task A_pattern_moves_only_from_the_status_it_is_in_and_the_catalogue_snapshot_follows()
    {
        await _store.Catalogue.AddPatternAsync(new PatternRow { Id = "p1", Name = "one", HardwareVersion = "hw-1", OsVersion = "os-1", Applications = "{}" });
        Assert.ThrowsAsync<StoreConflictException>(async () =>
            await _store.Catalogue.AddPatternAsync(new PatternRow { Id = "p1", Name = "again", HardwareVersion = "hw-1", OsVersion = "os-1", Applications = "{}" }));
        Assert.That((await _store.Catalogue.GetPatternAsync("p1"))!.Name, Is.EqualTo("one"), "a refused duplicate leaves the first one as it was");
        var inventory = new Inventory("hw-1", "os-1", new Dictionary<string, string>());
        Assert.That(await _store.Catalogue.FindPatternAsync(inventory), Is.Null, "a draft is offered to no unit");
        var stampBefore = await _store.Settings.GetSettingAsync(CatalogueStore.CatalogueStampKey);

        Assert.That(await _store.Catalogue.SetPatternStatusAsync("p1", PatternStatus.Verified, PatternStatus.Retired), Is.False, "it is a draft, not verified");
        Assert.That((await _store.Catalogue.GetPatternAsync("p1"))!.Status, Is.EqualTo(PatternStatus.Draft));
        Assert.That(await _store.Catalogue.SetPatternStatusAsync("p1", PatternStatus.Draft, PatternStatus.Verified), Is.True);
        Assert.That(await _store.Catalogue.SetPatternStatusAsync("p1", PatternStatus.Draft, PatternStatus.Verified), Is.False, "the same move twice succeeds once");

        Assert.That(await _store.Settings.GetSettingAsync(CatalogueStore.CatalogueStampKey), Is.Not.EqualTo(stampBefore));
        Assert.That((await _store.Catalogue.FindPatternAsync(inventory))?.Id, Is.EqualTo("p1"), "the snapshot read before the move is not served after it");
        Assert.That((await _store.Catalogue.GetPatternAsync("p1"))!.VerifiedAt, Is.EqualTo(TsunaguStore.Timestamp(_time.GetUtcNow())));
    }
}
