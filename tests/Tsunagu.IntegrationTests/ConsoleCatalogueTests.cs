using System.Net;
using Tsunagu.Demo;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The catalogue page's forms (Pages/Console/Catalogue.cshtml): software and draft patterns are created by the API's
/// rules; a wrong or conflicting form and a role that may not create change nothing.
/// </summary>
[NonParallelizable]
public class ConsoleCatalogueTests
{
    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    private static async Task<HttpResponseMessage> Post(HttpClient session, string handler, Dictionary<string, string> form)
    {
        var fields = new Dictionary<string, string>(form) { ["__csrf"] = await RoleTests.Csrf(session) };
        return await session.PostAsync($"/console/catalogue?handler={handler}", new FormUrlEncodedContent(fields));
    }

    private static async Task Refused(TestServer server, HttpClient session, string handler, Dictionary<string, string> form, string why)
    {
        var before = HostileInputTests.Snapshot(server);
        var response = await Post(session, handler, form);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Redirect), why);
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), $"{handler} {why}: refused, but the database changed");
        Assert.That(await session.GetStringAsync("/console/catalogue"), Does.Contain("Nothing was created"), why);
    }

    [Test]
    public async Task Software_and_a_draft_pattern_are_created_by_the_api_rules_and_a_wrong_form_changes_nothing()
    {
        await using var server = await TestServer.StartAsync();
        using var admin = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        Assert.That(await admin.GetStringAsync("/console/catalogue"), Does.Contain("id=\"add-software\"").And.Contain("id=\"create-pattern\""));

        Dictionary<string, string> Software(string app, string version) => new() { ["appId"] = app, ["version"] = version, ["name"] = "Web filter", ["requiredHardware"] = "", ["requiredOs"] = "" };
        await Refused(server, admin, "AddSoftware", Software("web filter", "1.0.0"), "id with a space");
        await Refused(server, admin, "AddSoftware", Software("webfilter", "1.0\n.0"), "control character");
        await Refused(server, admin, "AddSoftware", Software("vcp", "1.0.0"), "already catalogued");
        var added = await Post(admin, "AddSoftware", Software("webfilter", "2.0.0"));
        Assert.That(added.StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        Assert.That(server.Store.GetSoftware("webfilter", "2.0.0")?.Name, Is.EqualTo("Web filter"));
        Assert.That(await admin.GetStringAsync("/console/catalogue"), Does.Contain("Software webfilter 2.0.0 added."));

        var apps = string.Join("\n", DemoCatalogue.Pattern2Applications.Select(a => $"{a.Key}={a.Value}")) + "\nwebfilter=2.0.0";
        Dictionary<string, string> Pattern(string id, string applications) => new()
        {
            ["id"] = id, ["name"] = "with filter", ["hardwareVersion"] = DemoCatalogue.HardwareVersion, ["osVersion"] = DemoCatalogue.OsVersion, ["applications"] = applications,
        };
        await Refused(server, admin, "CreatePattern", Pattern("pattern-9", apps + "\nwebfilter=9.9.9"), "an application twice");
        await Refused(server, admin, "CreatePattern", Pattern("pattern-9", apps.Replace("webfilter=2.0.0", "webfilter=3.0.0")), "a version not catalogued");
        await Refused(server, admin, "CreatePattern", Pattern("pattern-9", "no equals sign"), "a line without =");
        await Refused(server, admin, "CreatePattern", Pattern("pattern-9", ""), "no application");
        await Refused(server, admin, "CreatePattern", Pattern(DemoCatalogue.Pattern2, apps), "an existing id");
        var created = await Post(admin, "CreatePattern", Pattern("pattern-9", apps));
        Assert.That(created.StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        Assert.That(server.Store.GetPattern("pattern-9")?.Status, Is.EqualTo(PatternStatus.Draft));

        // a support account sees no form and is refused: nothing changes
        using (var client = server.Operator())
        {
            await client.SendJsonAsync(HttpMethod.Post, "/api/v1/operators", new NewOperator("helpdesk", "a console test password", OperatorRoles.Support), CancellationToken.None);
        }
        using var support = await RoleTests.ConsoleSession(server, "helpdesk", "a console test password");
        Assert.That(await support.GetStringAsync("/console/catalogue"), Does.Not.Contain("id=\"add-software\""));
        var before = HostileInputTests.Snapshot(server);
        Assert.That((await Post(support, "AddSoftware", Software("other", "1.0.0"))).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That((await Post(support, "CreatePattern", Pattern("pattern-10", apps))).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before));
    }
}
