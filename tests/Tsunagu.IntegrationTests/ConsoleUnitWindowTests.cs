using System.Net;
using Tsunagu.Demo;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Security;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The update window form of the console's unit page (Pages/Console/Unit.UpdateWindow.cs), on each database: the API's
/// rules and audit entry, the roles of its PUT, and every refused form changes nothing and says why.
/// </summary>
[TestFixture("sqlite")]
[TestFixture("postgres")]
[NonParallelizable]
public class ConsoleUnitWindowTests(string kind)
{
    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = kind;

    private static Task<HttpResponseMessage> Post(HttpClient session, string mac, params (string Key, string Value)[] form) =>
        RoleTests.PostForm(session, $"/console/units/{mac}?handler=UpdateWindow", form);

    [Test]
    public async Task The_unit_page_sets_a_units_own_window_and_zone_and_refuses_what_the_api_refuses()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Operator();
        await client.SendJsonAsync(HttpMethod.Post, "/api/v1/operators", new NewOperator("helper", "a console test password", OperatorRoles.Support), CancellationToken.None);
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var admin = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        var page = await admin.GetStringAsync($"/console/units/{mac}");
        Assert.That(page, Does.Contain("id=\"window-form\"").And.Contain("for importance 3 (the fleet&#x27;s)"));

        // refused: the page says why and nothing changes
        foreach (var (why, form) in new (string, (string, string)[])[]
                 {
                     ("a control character", [("window", "01:00-05:00\u0007")]),
                     ("a shell metacharacter", [("window", "mon 01:00-05:00;reboot")]),
                     ("hours and a window", [("start", "1"), ("end", "2"), ("window", "mon 01:00-05:00")]),
                     ("an hour past 23", [("start", "24"), ("end", "2")]),
                     ("a start without an end", [("start", "3")]),
                     ("an unknown zone", [("zone", "../../etc/passwd")]),
                 })
        {
            var before = HostileInputTests.Snapshot(server);
            var response = await Post(admin, mac, form);
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Redirect), why);
            Assert.That(await admin.GetStringAsync($"/console/units/{mac}"), Does.Contain("Nothing was changed: "), $"{why}: the reason is shown");
            Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), $"{why}: refused, but the database changed");
        }

        // support reads the window and cannot change it
        using var helper = await RoleTests.ConsoleSession(server, "helper", "a console test password");
        Assert.That(await helper.GetStringAsync($"/console/units/{mac}"), Does.Contain("id=\"unit-window\"").And.Not.Contain("id=\"window-form\""));
        var unchanged = HostileInputTests.Snapshot(server);
        Assert.That((await Post(helper, mac, ("window", "mon 01:00-05:00"))).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(unchanged));

        // an administrator sets a window and a zone: stored as the API stores them, audited, shown
        Assert.That((await Post(admin, mac, ("start", ""), ("end", ""), ("window", " Mon-Fri 01:00-05:00 "), ("zone", "Asia/Tokyo"))).StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        var unit = (await server.Store.Units.GetUnitAsync(mac))!;
        Assert.That((unit.MaintenanceWindow, unit.TimeZone, unit.LowWindowStart), Is.EqualTo(("mon,tue,wed,thu,fri 01:00-05:00", "Asia/Tokyo", (long?)null)));
        Assert.That((await server.Store.ListAuditAsync(1)).Single(), Has.Property("Action").EqualTo("unit.update-window").And.Property("Actor").EqualTo(DemoCatalogue.OperatorName));
        page = await admin.GetStringAsync($"/console/units/{mac}");
        Assert.That(page, Does.Contain("own maintenance window mon,tue,wed,thu,fri 01:00-05:00").And.Contain("time zone Asia/Tokyo (the unit&#x27;s own)"));

        // empty fields: back to the fleet's
        Assert.That((await Post(admin, mac, ("start", ""), ("end", ""), ("window", ""), ("zone", ""))).StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        unit = (await server.Store.Units.GetUnitAsync(mac))!;
        Assert.That((unit.MaintenanceWindow, unit.TimeZone), Is.EqualTo(((string?)null, (string?)null)));
    }
}
