using System.Net;
using Tsunagu.Demo;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The unit page's lifecycle actions (Pages/Console/Unit.cshtml: decommission, replace, move the subscriber): each is
/// done only when confirmed, against the revision the page showed, with valid input and by a role that may; anything
/// else changes nothing in the database.
/// </summary>
[NonParallelizable]
public class ConsoleLifecycleTests
{
    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    private static Task<HttpResponseMessage> Post(HttpClient session, string mac, string handler, Dictionary<string, string> form) =>
        RoleTests.PostForm(session, $"/console/units/{mac}?handler={handler}", form);

    /// <summary>Posts and expects the action refused: the page comes back (a redirect), and the database is as it was.</summary>
    private static async Task Refused(TestServer server, HttpClient session, string mac, string handler, Dictionary<string, string> form, string why)
    {
        var before = HostileInputTests.Snapshot(server);
        var response = await Post(session, mac, handler, form);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Redirect), $"{handler} {why}: the page comes back with the reason");
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), $"{handler} {why}: refused, but the database changed");
    }

    [Test]
    public async Task Decommission_replace_and_transfer_are_done_only_when_confirmed_on_the_current_row()
    {
        await using var server = await TestServer.StartAsync();
        var units = await server.AddUnitsAsync(3);
        var (old, other) = (units[0].Mac, units[1].Mac);
        var row = (await server.Store.Units.GetUnitAsync(old))!;
        await server.Store.Lifecycle.EditUnitAsync(new UnitRow
        {
            Mac = row.Mac, Serial = row.Serial, HardwareVersion = row.HardwareVersion, IspMethod = row.IspMethod, IspUsername = row.IspUsername,
            IspPasswordSealed = row.IspPasswordSealed, IpAddress = row.IpAddress, Domain = row.Domain, Vpn = row.Vpn, GlobalIp = row.GlobalIp,
            IspGateway = row.IspGateway, IspDns = row.IspDns, Subscriber = "alice", State = row.State, Revision = row.Revision,
        }, row.Revision, [new UnitFieldChange("subscriber", row.Subscriber, "alice")], "test", wanChanged: false);
        using var admin = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        var revision = (await server.Store.Units.GetUnitAsync(old))!.Revision.ToString(System.Globalization.CultureInfo.InvariantCulture);

        // the page offers the actions to an administrator
        var page = await admin.GetStringAsync($"/console/units/{old}");
        Assert.That(page, Does.Contain("id=\"decommission\"").And.Contain("id=\"replace\"").And.Contain("id=\"transfer\""));

        // replace: unconfirmed, stale, a wrong MAC, the MAC of a registered unit: nothing happens
        const string newMac = "02:54:53:00:0f:01";
        await Refused(server, admin, old, "Replace", new() { ["revision"] = revision, ["newMac"] = newMac, ["newSerial"] = "RMA-1" }, "unconfirmed");
        await Refused(server, admin, old, "Replace", new() { ["revision"] = "1", ["confirm"] = "yes", ["newMac"] = newMac, ["newSerial"] = "RMA-1" }, "stale revision");
        await Refused(server, admin, old, "Replace", new() { ["revision"] = "x", ["confirm"] = "yes", ["newMac"] = newMac, ["newSerial"] = "RMA-1" }, "revision not a number");
        await Refused(server, admin, old, "Replace", new() { ["revision"] = revision, ["confirm"] = "yes", ["newMac"] = "zz", ["newSerial"] = "RMA-1" }, "wrong MAC");
        await Refused(server, admin, old, "Replace", new() { ["revision"] = revision, ["confirm"] = "yes", ["newMac"] = newMac, ["newSerial"] = "a\nb" }, "control character");
        await Refused(server, admin, old, "Replace", new() { ["revision"] = revision, ["confirm"] = "yes", ["newMac"] = other, ["newSerial"] = "RMA-1" }, "registered MAC");
        var problem = await admin.GetStringAsync($"/console/units/{old}");
        Assert.That(problem, Does.Contain("Nothing was done"), "the last refusal is shown on the page");

        // confirmed on the current row: the new unit takes the subscriber, the old one is decommissioned
        var replaced = await Post(admin, old, "Replace", new() { ["revision"] = revision, ["confirm"] = "yes", ["newMac"] = newMac, ["newSerial"] = "RMA-1" });
        Assert.That(replaced.StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        Assert.That(Uri.UnescapeDataString(replaced.Headers.Location?.ToString() ?? ""), Does.EndWith(newMac));
        Assert.That((await server.Store.Units.GetUnitAsync(newMac))?.Subscriber, Is.EqualTo("alice"));
        Assert.That((await server.Store.Units.GetUnitAsync(old))?.DecommissionedAt, Is.Not.Null);
        Assert.That(await admin.GetStringAsync($"/console/units/{newMac}"), Does.Contain("replaces " + old));
        Assert.That(await admin.GetStringAsync($"/console/units/{old}"), Does.Not.Contain("id=\"decommission\""), "no action on a decommissioned unit");

        // move the subscriber: a support account may, an auditor may not (403, nothing changes)
        using (var client = server.Operator())
        {
            await client.SendJsonAsync(HttpMethod.Post, "/api/v1/operators", new NewOperator("helpdesk", "a console test password", OperatorRoles.Support), CancellationToken.None);
            await client.SendJsonAsync(HttpMethod.Post, "/api/v1/operators", new NewOperator("reader", "a console test password", OperatorRoles.Auditor), CancellationToken.None);
        }
        using var support = await RoleTests.ConsoleSession(server, "helpdesk", "a console test password");
        using var auditor = await RoleTests.ConsoleSession(server, "reader", "a console test password");
        var current = (await server.Store.Units.GetUnitAsync(newMac))!.Revision.ToString(System.Globalization.CultureInfo.InvariantCulture);
        Assert.That(await auditor.GetStringAsync($"/console/units/{newMac}"), Does.Not.Contain("id=\"transfer\""));
        var supportPage = await support.GetStringAsync($"/console/units/{newMac}");
        Assert.That(supportPage, Does.Contain("id=\"transfer\"").And.Not.Contain("id=\"decommission\""), "support moves subscribers, does not decommission");
        var before = HostileInputTests.Snapshot(server);
        var forbidden = await Post(auditor, newMac, "Transfer", new() { ["revision"] = current, ["confirm"] = "yes", ["to"] = other, ["withConfig"] = "yes" });
        Assert.That(forbidden.StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
        var supportDecommission = await Post(support, newMac, "Decommission", new() { ["revision"] = current, ["confirm"] = "yes" });
        Assert.That(supportDecommission.StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "refused for the role: nothing changed");
        await Refused(server, support, newMac, "Transfer", new() { ["revision"] = current, ["to"] = other }, "unconfirmed");
        await Refused(server, support, newMac, "Transfer", new() { ["revision"] = current, ["confirm"] = "yes", ["to"] = "not-a-mac" }, "wrong MAC");
        var moved = await Post(support, newMac, "Transfer", new() { ["revision"] = current, ["confirm"] = "yes", ["to"] = other, ["withConfig"] = "yes" });
        Assert.That(moved.StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        Assert.That((await server.Store.Units.GetUnitAsync(other))?.Subscriber, Is.EqualTo("alice"));
        Assert.That((await server.Store.Units.GetUnitAsync(newMac))?.Subscriber, Is.Null);

        // decommission: confirmed by the administrator, with a reason; the audit log names it
        var last = units[2].Mac;
        var lastRevision = (await server.Store.Units.GetUnitAsync(last))!.Revision.ToString(System.Globalization.CultureInfo.InvariantCulture);
        await Refused(server, admin, last, "Decommission", new() { ["revision"] = lastRevision, ["reason"] = "broken" }, "unconfirmed");
        await Refused(server, admin, last, "Decommission", new() { ["revision"] = lastRevision, ["confirm"] = "yes", ["reason"] = new string('r', 300) }, "reason too long");
        var done = await Post(admin, last, "Decommission", new() { ["revision"] = lastRevision, ["confirm"] = "yes", ["reason"] = "broken" });
        Assert.That(done.StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        Assert.That((await server.Store.Units.GetUnitAsync(last))?.DecommissionedAt, Is.Not.Null);
        Assert.That((await server.Store.History.ListAuditForUnitAsync(last)).Select(a => a.Actor), Does.Contain(DemoCatalogue.OperatorName));
    }
}
