using System.Globalization;
using System.Net;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The unit page's row editor and delete form (Pages/Console/Unit.Record.cs): the device management table's row is
/// changed by the API's rules against the revision the page showed, each change shows in the row's revision history,
/// a row is deleted only when it never reached the server; anything refused changes nothing in the database.
/// </summary>
[NonParallelizable]
public class ConsoleRecordTests
{
    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    private static Task<HttpResponseMessage> Post(HttpClient session, string mac, string handler, Dictionary<string, string> form) =>
        RoleTests.PostForm(session, $"/console/units/{mac}?handler={handler}", form);

    private static async Task Refused(TestServer server, HttpClient session, string mac, string handler, Dictionary<string, string> form, string why,
        HttpStatusCode status = HttpStatusCode.Redirect)
    {
        var before = HostileInputTests.Snapshot(server);
        var response = await Post(session, mac, handler, form);
        Assert.That(response.StatusCode, Is.EqualTo(status), $"{handler} {why}");
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), $"{handler} {why}: refused, but the database changed");
        if (status == HttpStatusCode.Redirect)
        {
            Assert.That(await session.GetStringAsync($"/console/units/{mac}"), Does.Contain("Nothing was"), $"{handler} {why}: the reason is shown");
        }
    }

    /// <summary>The form as the page fills it for <paramref name="row"/>, with <paramref name="changes"/> applied.</summary>
    private static Dictionary<string, string> Form(UnitRow row, params (string Field, string Value)[] changes)
    {
        var form = new Dictionary<string, string>
        {
            ["revision"] = row.Revision.ToString(CultureInfo.InvariantCulture), ["serial"] = row.Serial, ["hardwareVersion"] = row.HardwareVersion,
            ["ispMethod"] = row.IspMethod, ["ispUsername"] = row.IspUsername ?? "", ["ispPassword"] = "", ["ipAddress"] = row.IpAddress ?? "",
            ["ispGateway"] = row.IspGateway ?? "", ["ispDns"] = row.DnsList is { } dns ? string.Join(' ', dns) : "", ["domain"] = row.Domain ?? "",
            ["vpn"] = row.Vpn ?? "", ["globalIp"] = row.GlobalIp ?? "", ["subscriber"] = row.Subscriber ?? "",
        };
        foreach (var (field, value) in changes) { form[field] = value; }
        return form;
    }

    [Test]
    public async Task A_row_is_edited_on_the_current_revision_by_the_registration_rules_and_its_history_is_shown()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var admin = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        var page = await admin.GetStringAsync($"/console/units/{mac}");
        Assert.That(page, Does.Contain("id=\"record-form\"").And.Contain("id=\"revision-table\""));
        var row = (await server.Store.Units.GetUnitAsync(mac))!;
        var password = server.Store.Lifecycle.IspPasswordOf(row);

        // refused: a stale page, a control character, a wrong method, pppoe without an account, a foreign address,
        // a new password with "clear" ticked, a decommissioned-only field combination (gateway on pppoe)
        await Refused(server, admin, mac, "Record", Form(row, ("revision", (row.Revision - 1).ToString(CultureInfo.InvariantCulture)), ("domain", "new.example")), "stale revision");
        await Refused(server, admin, mac, "Record", Form(row, ("revision", "x"), ("domain", "new.example")), "revision not a number");
        await Refused(server, admin, mac, "Record", Form(row, ("serial", "S\u0007N")), "control character in the serial");
        await Refused(server, admin, mac, "Record", Form(row, ("serial", "")), "serial emptied");
        await Refused(server, admin, mac, "Record", Form(row, ("ispMethod", "carrier-pigeon")), "unknown ISP method");
        await Refused(server, admin, mac, "Record", Form(row, ("ispUsername", "")), "pppoe without an account");
        await Refused(server, admin, mac, "Record", Form(row, ("globalIp", "300.1.1.1")), "not an address");
        await Refused(server, admin, mac, "Record", Form(row, ("ispGateway", "192.0.2.1")), "a gateway on a pppoe account");
        await Refused(server, admin, mac, "Record", Form(row, ("ispPassword", "new-secret"), ("clearPassword", "yes")), "new password and clear");
        await Refused(server, admin, mac, "Record", Form(row, ("subscriber", "bad\nname")), "line break in the subscriber");

        // the same form, unchanged: no new revision
        var unchanged = await Post(admin, mac, "Record", Form(row));
        Assert.That(unchanged.StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        Assert.That((await server.Store.Units.GetUnitAsync(mac))!.Revision, Is.EqualTo(row.Revision), "a form that changes nothing writes no revision");

        // a new domain, subscriber and password: one revision naming each field, the password only as changed
        var edited = await Post(admin, mac, "Record", Form(row, ("domain", "moved.example"), ("subscriber", "carol"), ("ispPassword", "a-new-isp-secret")));
        Assert.That(edited.StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        var after = (await server.Store.Units.GetUnitAsync(mac))!;
        Assert.That(after.Revision, Is.EqualTo(row.Revision + 1));
        Assert.That((after.Domain, after.Subscriber, server.Store.Lifecycle.IspPasswordOf(after)), Is.EqualTo(("moved.example", "carol", "a-new-isp-secret")));
        Assert.That((after.Serial, after.IspUsername, after.IspMethod), Is.EqualTo((row.Serial, row.IspUsername, row.IspMethod)), "the fields not changed stay");
        Assert.That(after.SettingsRevision, Is.GreaterThan(row.SettingsRevision), "a new password makes the unit fetch its settings again");
        var revisions = await server.Store.Lifecycle.ListUnitRevisionsAsync(mac);
        Assert.That(revisions.Select(r => r.Revision), Is.Unique);
        var shown = WebUtility.HtmlDecode(await admin.GetStringAsync($"/console/units/{mac}"));
        Assert.That(shown, Does.Contain("domain: unit.example → moved.example").And.Contain("subscriber: — → carol").And.Contain($"{UnitLifecycleStore.IspPasswordField}: changed (not shown)"));
        Assert.That(shown, Does.Not.Contain("a-new-isp-secret"), "no password reaches the page");
        Assert.That(password, Is.Not.Null, "the row had a password before");
        Assert.That((await server.Store.History.ListAuditForUnitAsync(mac)).Select(a => a.Actor), Does.Contain(DemoCatalogue.OperatorName));

        // the page of the old revision is now stale: its form changes nothing
        await Refused(server, admin, mac, "Record", Form(row, ("domain", "again.example")), "the page before the edit");

        // clearing the password of a dhcp account: the method and the password go in one form
        var current = (await server.Store.Units.GetUnitAsync(mac))!;
        var cleared = await Post(admin, mac, "Record", Form(current, ("ispMethod", "dhcp"), ("ispUsername", ""), ("clearPassword", "yes")));
        Assert.That(cleared.StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        var dhcp = (await server.Store.Units.GetUnitAsync(mac))!;
        Assert.That((dhcp.IspMethod, dhcp.IspUsername, server.Store.Lifecycle.IspPasswordOf(dhcp)), Is.EqualTo(("dhcp", (string?)null, (string?)null)));

        // support and auditors see no editor and are refused (403): nothing changes
        using (var client = server.Operator())
        {
            await client.SendJsonAsync(HttpMethod.Post, "/api/v1/operators", new NewOperator("helpdesk", "a console test password", OperatorRoles.Support), CancellationToken.None);
            await client.SendJsonAsync(HttpMethod.Post, "/api/v1/operators", new NewOperator("reader", "a console test password", OperatorRoles.Auditor), CancellationToken.None);
        }
        foreach (var name in new[] { "helpdesk", "reader" })
        {
            using var session = await RoleTests.ConsoleSession(server, name, "a console test password");
            var theirs = await session.GetStringAsync($"/console/units/{mac}");
            Assert.That(theirs, Does.Not.Contain("id=\"record-form\"").And.Contain("id=\"revision-table\""), $"{name} reads the history, has no editor");
            await Refused(server, session, mac, "Record", Form(dhcp, ("domain", "theirs.example")), $"{name}'s role", HttpStatusCode.Forbidden);
        }
    }

    [Test]
    public async Task The_isp_password_is_kept_when_another_field_is_edited_with_the_password_field_left_empty()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var admin = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        var row = (await server.Store.Units.GetUnitAsync(mac))!;
        var password = server.Store.Lifecycle.IspPasswordOf(row);
        Assert.That(password, Is.Not.Null.And.Not.Empty, "the row has a password to keep");

        // the page never shows the password, so its field comes back empty: that keeps it
        var edited = await Post(admin, mac, "Record", Form(row, ("domain", "kept.example"), ("ispPassword", "")));
        Assert.That(edited.StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        var after = (await server.Store.Units.GetUnitAsync(mac))!;
        Assert.That((after.Revision, after.Domain), Is.EqualTo((row.Revision + 1, "kept.example")), "the edit was stored");
        Assert.That(server.Store.Lifecycle.IspPasswordOf(after), Is.EqualTo(password), "the password left empty is kept, not cleared");
        var shown = WebUtility.HtmlDecode(await admin.GetStringAsync($"/console/units/{mac}"));
        Assert.That(shown, Does.Not.Contain("Nothing was changed"), "the edit is not reported as refused");
        Assert.That(shown, Does.Contain("domain: unit.example → kept.example").And.Not.Contain($"{UnitLifecycleStore.IspPasswordField}: changed"),
            "the revision names the domain, not the password");
    }

    [Test]
    public async Task Only_a_row_that_never_reached_the_server_is_deleted_and_only_when_confirmed()
    {
        await using var server = await TestServer.StartAsync();
        var units = await server.AddUnitsAsync(2);
        var (never, seen) = (units[0].Mac, units[1].Mac);
        await server.Store.Units.RecordInventoryAsync(seen, new Inventory(DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion, DemoCatalogue.Pattern2Applications),
            DemoCatalogue.Pattern2, UnitStates.Ready);
        using var admin = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        Assert.That(await admin.GetStringAsync($"/console/units/{never}"), Does.Contain("id=\"delete-form\""));
        Assert.That(await admin.GetStringAsync($"/console/units/{seen}"), Does.Not.Contain("id=\"delete-form\""), "a unit that reported is decommissioned, not deleted");

        async Task<string> Revision(string mac) => (await server.Store.Units.GetUnitAsync(mac))!.Revision.ToString(CultureInfo.InvariantCulture);
        await Refused(server, admin, never, "Delete", new() { ["revision"] = await Revision(never) }, "unconfirmed");
        await Refused(server, admin, never, "Delete", new() { ["revision"] = "0", ["confirm"] = "yes" }, "stale revision");
        await Refused(server, admin, seen, "Delete", new() { ["revision"] = await Revision(seen), ["confirm"] = "yes" }, "a unit that reported (forged form)");
        using (var client = server.Operator())
        {
            await client.SendJsonAsync(HttpMethod.Post, "/api/v1/operators", new NewOperator("helpdesk", "a console test password", OperatorRoles.Support), CancellationToken.None);
        }
        using (var support = await RoleTests.ConsoleSession(server, "helpdesk", "a console test password"))
        {
            await Refused(server, support, never, "Delete", new() { ["revision"] = await Revision(never), ["confirm"] = "yes" }, "support's role", HttpStatusCode.Forbidden);
        }

        var deleted = await Post(admin, never, "Delete", new() { ["revision"] = await Revision(never), ["confirm"] = "yes" });
        Assert.That(deleted.StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        Assert.That(deleted.Headers.Location?.ToString(), Does.EndWith("/console/units"));
        Assert.That(await server.Store.Units.GetUnitAsync(never), Is.Null);
        Assert.That(await server.Store.Units.GetUnitAsync(seen), Is.Not.Null, "the other row stays");
        Assert.That(await admin.GetStringAsync("/console/units"), Does.Contain($"The row of {never} is deleted."));
        Assert.That((await server.Store.ListAuditAsync(20)).Where(a => a.Action == "unit.delete").Select(a => a.Target), Is.EqualTo(new[] { never }));
        Assert.That((await admin.GetAsync($"/console/units/{never}")).StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
    }

    [Test]
    public async Task A_delete_confirmed_on_a_page_older_than_an_edit_committed_meanwhile_deletes_nothing()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var admin = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        var row = (await server.Store.Units.GetUnitAsync(mac))!;
        HttpResponseMessage deleted;
        using (var hold = StoreSeam.HoldAt(server.Store, nameof(UnitLifecycleStore.DeleteUnitAsync)))
        {
            // the form's revision matches the row the page loads; the edit lands after that check, before the delete's transaction
            var delete = Post(admin, mac, "Delete", new() { ["revision"] = row.Revision.ToString(CultureInfo.InvariantCulture), ["confirm"] = "yes" });
            await hold.Reached.WaitAsync(TimeSpan.FromSeconds(60));
            var edited = row;
            edited.Domain = "edited.example";
            Assert.That(await server.Store.Lifecycle.EditUnitAsync(edited, row.Revision, [new("domain", "unit.example", "edited.example")], "bob", wanChanged: false), Is.EqualTo(row.Revision + 1));
            hold.Release();
            deleted = await delete.WaitAsync(TimeSpan.FromSeconds(60));
        }
        Assert.That(deleted.StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        Assert.That(deleted.Headers.Location?.ToString(), Does.Not.EndWith("/console/units"), "back to the unit's page, not the list");
        Assert.That(await admin.GetStringAsync($"/console/units/{mac}"), Does.Contain("Nothing was done").And.Contain($"revision {row.Revision + 1}"));
        var after = await server.Store.Units.GetUnitAsync(mac);
        Assert.That((after?.Revision, after?.Domain), Is.EqualTo(((long?)row.Revision + 1, "edited.example")), "the edited row stays");
        Assert.That((await server.Store.ListAuditAsync(50)).Count(a => a.Action == "unit.delete"), Is.Zero);
    }
}
