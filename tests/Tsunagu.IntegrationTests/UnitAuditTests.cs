using Tsunagu.Demo;
using Tsunagu.Server.Data;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The audit entries of one unit (its console page): read by key from <c>audit_units</c>, the units each entry names
/// (as its actor, its target, or one of a target's comma-separated units), never by a substring of the target.
/// </summary>
[NonParallelizable]
public class UnitAuditTests
{
    private const string Mac = "02:54:53:00:0a:01", Other = "02:54:53:00:0a:02";

    [Test]
    public void A_target_listing_units_names_each_of_them_with_or_without_spaces_after_the_commas()
    {
        Assert.That(AuditUnits.Named("alice", $"{Other}, {Mac}"), Is.EqualTo(new[] { Other, Mac }));
        Assert.That(AuditUnits.Named("alice", $" {Mac} ,{Other} "), Is.EqualTo(new[] { Mac, Other }));
        Assert.That(AuditUnits.Named(Mac, $"{Mac},{Mac}"), Is.EqualTo(new[] { Mac }), "each unit once");
        Assert.That(AuditUnits.Named("alice", $"x{Mac}, 02:54:53:00:0A:01, 0254530a0a01, pattern-2"), Is.Empty,
            "a MAC inside another word, upper case or without colons is not the stored form of a unit");
    }

    [Test]
    public async Task A_units_page_lists_the_entries_that_name_it_and_no_other()
    {
        TestServer.DatabaseKind.Value = "sqlite";
        await using var server = await TestServer.StartAsync();
        var store = server.Store;
        await store.AuditAsync("alice", "unit.edit", Mac, "named as the target");
        await store.AuditAsync("alice", "units.check", $"{Other}, {Mac}", "one of a list, with a space after the comma");
        await store.AuditAsync(Mac, "unit.report", null, "the unit as the actor");
        await store.AuditAsync("alice", "note", $"before-{Mac}-after", "contains the MAC but names no unit");
        await store.AuditAsync("alice", "unit.edit", Other, "another unit");
        var listed = await store.History.ListAuditForUnitAsync(Mac);
        Assert.That(listed.Select(a => a.Detail), Is.EqualTo(new[] { "the unit as the actor", "one of a list, with a space after the comma", "named as the target" }),
            "newest first, exactly the entries naming the unit");
        Assert.That(await store.History.ListAuditForUnitAsync(Mac, 2), Has.Count.EqualTo(2));
        Assert.That((await store.History.ListAuditForUnitAsync(Other)).Select(a => a.Detail), Is.EqualTo(new[] { "another unit", "one of a list, with a space after the comma" }));

        var units = await server.AddUnitsAsync(1);
        using var admin = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        await store.AuditAsync("alice", "note", $"before-{units[0].Mac}-after", "not this unit's entry");
        await store.AuditAsync("alice", "units.check", $"{Other}, {units[0].Mac}", "this unit's entry");
        var page = await admin.GetStringAsync($"/console/units/{units[0].Mac}");
        Assert.That(page, Does.Contain("this unit&#x27;s entry").And.Not.Contain("not this unit&#x27;s entry"));
    }
}
