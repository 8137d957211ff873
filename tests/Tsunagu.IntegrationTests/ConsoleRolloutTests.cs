using System.Net;
using Tsunagu.Demo;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;
using Tsunagu.Server.Fleet.Rollouts;
using Tsunagu.Server.Security;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The console's groups and rollouts pages (Pages/Console/Groups, Rollouts, Rollout): created by the API's rules;
/// every refused form is answered 400 (409 for a name or transition taken) with the reason and changes nothing; a
/// role that may only read sees no form and is refused.
/// </summary>
[NonParallelizable]
public class ConsoleRolloutTests
{
    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    private static Task<HttpResponseMessage> Post(HttpClient session, string path, Dictionary<string, string> form) =>
        RoleTests.PostForm(session, path, form);

    private static async Task Refused(TestServer server, HttpClient session, string path, Dictionary<string, string> form, string why,
        HttpStatusCode status = HttpStatusCode.BadRequest)
    {
        var before = HostileInputTests.Snapshot(server);
        var response = await Post(session, path, form);
        var body = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(status), $"{path} {why}: {body}");
        Assert.That(body, Does.Contain("Nothing was"), $"{path} {why}: the reason is shown");
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), $"{path} {why}: refused, but the database changed");
    }

    private static Dictionary<string, string> Group(string name, string kind, string macs = "", string tags = "", string online = "", string pattern = "",
        string app = "", string version = "") => new()
        {
            ["name"] = name, ["kind"] = kind, ["macs"] = macs, ["tags"] = tags, ["online"] = online, ["pattern"] = pattern, ["board"] = "", ["app"] = app, ["version"] = version,
        };

    private static Dictionary<string, string> Rollout(string name, string group = "lab", string program = "p2-to-p3", string waves = "1,50%,100%",
        string success = "90", string error = "10", string onError = "pause", string minWave = "0") => new()
        {
            ["name"] = name, ["group"] = group, ["program"] = program, ["waves"] = waves, ["successPercent"] = success, ["errorPercent"] = error,
            ["onError"] = onError, ["minWaveSeconds"] = minWave,
        };

    [Test]
    public async Task The_rollout_form_moves_units_by_the_program_chosen_or_refuses_a_program_the_transition_does_not_offer()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Operator();
        var units = await server.AddUnitsAsync(2);
        var onPattern2 = new Tsunagu.Protocol.Inventory(DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion, DemoCatalogue.Pattern2Applications);
        foreach (var u in units) { await server.Store.Units.RecordInventoryAsync(u.Mac, onPattern2, DemoCatalogue.Pattern2, UnitStates.Ready); }
        await RolloutCatalogue.AddPattern3Async(server, client);
        using var admin = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        Assert.That((await Post(admin, "/console/groups", Group("lab", "dynamic", pattern: DemoCatalogue.Pattern2))).StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        // a second program of the same transition, below the first in priority
        var first = (await server.Store.Catalogue.GetUpdateProgramAsync("p2-to-p3"))!;
        var second = new UpdateProgramRow
        {
            Id = "p2-to-p3-alt", FromPattern = first.FromPattern, ToPattern = first.ToPattern, Importance = first.Importance, Priority = first.Priority - 1,
            ArtifactSha256 = first.ArtifactSha256, ArtifactSize = first.ArtifactSize,
        };
        await server.Store.Catalogue.UpsertUpdateProgramAsync(second);
        Assert.That(await admin.GetStringAsync("/console/rollouts"), Does.Contain("value=\"p2-to-p3-alt\""), "the form offers every program");

        // the form's choice is the program the rollout's units install, or the form is refused
        await Refused(server, admin, "/console/rollouts?handler=Create", Rollout("alt", program: "p2-to-p3-alt"), "a program the transition does not offer", HttpStatusCode.Conflict);
        var refused = await Post(admin, "/console/rollouts?handler=Create", Rollout("alt", program: "p2-to-p3-alt"));
        Assert.That(await refused.Content.ReadAsStringAsync(), Does.Contain("offered by update program p2-to-p3"));
        Assert.That(await server.Store.Rollouts.GetRolloutAsync("alt"), Is.Null);

        await server.Store.Catalogue.UpsertUpdateProgramAsync(new UpdateProgramRow
        {
            Id = second.Id, FromPattern = second.FromPattern, ToPattern = second.ToPattern, Importance = second.Importance, Priority = first.Priority + 1,
            ArtifactSha256 = second.ArtifactSha256, ArtifactSize = second.ArtifactSize,
        });
        await Refused(server, admin, "/console/rollouts?handler=Create", Rollout("first", program: "p2-to-p3"), "the program now below the other", HttpStatusCode.Conflict);
        var created = await Post(admin, "/console/rollouts?handler=Create", Rollout("alt", program: "p2-to-p3-alt"));
        Assert.That(created.StatusCode, Is.EqualTo(HttpStatusCode.Redirect), await created.Content.ReadAsStringAsync());
        Assert.That((await server.Store.Rollouts.GetRolloutAsync("alt"))!.UpdateId, Is.EqualTo("p2-to-p3-alt"), "the rollout moves its units by the program chosen");
        Assert.That((await server.Store.ListAuditAsync(20)).Single(a => a.Action == "rollout.create").Detail, Does.Contain("by p2-to-p3-alt"));
    }

    [Test]
    public async Task Groups_and_rollouts_are_created_from_the_console_by_the_api_rules_and_a_refused_form_changes_nothing()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Operator();
        var units = await server.AddUnitsAsync(4);
        // the units run pattern 2 (their inventory says so), not started: nothing installs
        var onPattern2 = new Tsunagu.Protocol.Inventory(DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion, DemoCatalogue.Pattern2Applications);
        foreach (var u in units) { await server.Store.Units.RecordInventoryAsync(u.Mac, onPattern2, DemoCatalogue.Pattern2, UnitStates.Ready); }
        await RolloutCatalogue.AddPattern3Async(server, client);
        using var admin = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        Assert.That(await admin.GetStringAsync("/console"), Does.Contain("href=\"/console/rollouts\"").And.Contain("href=\"/console/groups\""));

        await Refused(server, admin, "/console/groups", Group("bad name", "dynamic"), "a name with a space");
        await Refused(server, admin, "/console/groups", Group("g\u0001", "dynamic"), "a control character in the name");
        await Refused(server, admin, "/console/groups", Group("g", "static", macs: "not-a-mac"), "not a MAC");
        await Refused(server, admin, "/console/groups", Group("g", "static", macs: "02:00:00:00:99:99"), "a MAC not registered");
        await Refused(server, admin, "/console/groups", Group("g", "dynamic", tags: "Upper"), "a bad tag");
        await Refused(server, admin, "/console/groups", Group("g", "dynamic", online: "maybe"), "online neither true nor false");
        await Refused(server, admin, "/console/groups", Group("g", "dynamic", version: "1.0"), "a version without an application");
        await Refused(server, admin, "/console/groups", Group("g", "dynamic", pattern: "p\n2"), "a newline in the pattern");
        await Refused(server, admin, "/console/groups", Group("g", "both"), "an unknown kind");

        var created = await Post(admin, "/console/groups", Group("lab", "dynamic", pattern: DemoCatalogue.Pattern2));
        Assert.That(created.StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        Assert.That((await server.Store.Fleet.GetGroupAsync("lab"))?.Kind, Is.EqualTo("dynamic"));
        var two = string.Join("\n", units.Take(2).Select(u => u.Mac));
        Assert.That((await Post(admin, "/console/groups", Group("pair", "static", macs: two))).StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        await Refused(server, admin, "/console/groups", Group("lab", "dynamic"), "a name in use", HttpStatusCode.Conflict);
        var groups = await admin.GetStringAsync("/console/groups");
        Assert.That(groups, Does.Contain("id=\"group-lab\"").And.Contain("id=\"group-pair\""));
        Assert.That(groups, Does.Match("id=\"group-lab\"[\\s\\S]*?<td class=\"members\">4</td>"), "the dynamic group's members now");
        Assert.That(groups, Does.Match("id=\"group-pair\"[\\s\\S]*?<td class=\"members\">2</td>"));
        Assert.That((await server.Store.ListAuditAsync(50)).Count(a => a.Action == "group.create"), Is.EqualTo(2));

        await Refused(server, admin, "/console/rollouts?handler=Create", Rollout("r 1"), "a name with a space");
        await Refused(server, admin, "/console/rollouts?handler=Create", Rollout("r1", group: "nope"), "no such group");
        await Refused(server, admin, "/console/rollouts?handler=Create", Rollout("r1", program: "nope"), "no such program");
        await Refused(server, admin, "/console/rollouts?handler=Create", Rollout("r1", program: "a\rb"), "a control character in the program");
        await Refused(server, admin, "/console/rollouts?handler=Create", Rollout("r1", waves: "5%,,80%"), "an empty wave");
        await Refused(server, admin, "/console/rollouts?handler=Create", Rollout("r1", waves: "500%"), "a wave over 100%");
        await Refused(server, admin, "/console/rollouts?handler=Create", Rollout("r1", waves: "ten"), "a wave that is no number");
        await Refused(server, admin, "/console/rollouts?handler=Create", Rollout("r1", waves: string.Join(",", Enumerable.Repeat("1", 21))), "21 waves");
        await Refused(server, admin, "/console/rollouts?handler=Create", Rollout("r1", success: "0"), "success 0");
        await Refused(server, admin, "/console/rollouts?handler=Create", Rollout("r1", success: "9x"), "success not a number");
        await Refused(server, admin, "/console/rollouts?handler=Create", Rollout("r1", error: "-1"), "error below 0");
        await Refused(server, admin, "/console/rollouts?handler=Create", Rollout("r1", error: "99999999999"), "error too long a number");
        await Refused(server, admin, "/console/rollouts?handler=Create", Rollout("r1", onError: "explode"), "an unknown error action");
        await Refused(server, admin, "/console/rollouts?handler=Create", Rollout("r1", minWave: "-5"), "a negative wave time");

        var started = await Post(admin, "/console/rollouts?handler=Create", Rollout("lab-p3"));
        Assert.That(started.StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        Assert.That(started.Headers.Location?.ToString(), Is.EqualTo("/console/rollouts/lab-p3"));
        var row = (await server.Store.Rollouts.GetRolloutAsync("lab-p3"))!;
        Assert.That((row.FromPattern, row.ToPattern, row.UpdateId, row.State), Is.EqualTo((DemoCatalogue.Pattern2, "pattern-3", "p2-to-p3", RolloutStates.Running)));
        Assert.That((await server.Store.Rollouts.RolloutMembersAsync(row)).GroupBy(m => m.Wave).Select(g => g.Count()), Is.EqualTo(new[] { 1, 2, 1 }));
        await Refused(server, admin, "/console/rollouts?handler=Create", Rollout("lab-p3b"), "the transition is taken", HttpStatusCode.Conflict);
        await Refused(server, admin, "/console/rollouts?handler=Create", Rollout("lab-p3"), "the name is taken", HttpStatusCode.Conflict);

        var page = await admin.GetStringAsync("/console/rollouts/lab-p3");
        Assert.That(page, Does.Contain("id=\"wave-table\"").And.Contain("id=\"rollout-chart\"").And.Contain("id=\"pause-form\""));
        Assert.That((await admin.GetAsync("/console/rollouts/nope")).StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
        await Refused(server, admin, "/console/rollouts/lab-p3?handler=Pause", [], "no confirmation");
        await Refused(server, admin, "/console/rollouts/lab-p3?handler=Resume", new() { ["confirm"] = "yes" }, "resume a running rollout", HttpStatusCode.Conflict);
        Assert.That((await Post(admin, "/console/rollouts/lab-p3?handler=Pause", new() { ["confirm"] = "yes" })).StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        Assert.That((await server.Store.Rollouts.GetRolloutAsync("lab-p3"))!.State, Is.EqualTo(RolloutStates.Paused));
        Assert.That((await server.Store.ListAuditAsync(50)).Single(a => a.Action == "rollout.pause").Actor, Is.EqualTo(DemoCatalogue.OperatorName));
        Assert.That((await Post(admin, "/console/rollouts/lab-p3?handler=Resume", new() { ["confirm"] = "yes" })).StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        Assert.That((await server.Store.Rollouts.GetRolloutAsync("lab-p3"))!.State, Is.EqualTo(RolloutStates.Running));
        await Refused(server, admin, "/console/rollouts?handler=Stop", [], "an emergency stop not confirmed");
        Assert.That((await Post(admin, "/console/rollouts?handler=Stop", new() { ["confirm"] = "yes" })).StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        Assert.That((await server.Store.Rollouts.GetRolloutAsync("lab-p3"))!.State, Is.EqualTo(RolloutStates.Paused));
        Assert.That(await admin.GetStringAsync("/console/rollouts"), Does.Contain("id=\"rollout-lab-p3\"").And.Contain("paused"));

        // an auditor reads, sees no form, and is refused every action
        await client.SendJsonAsync(HttpMethod.Post, "/api/v1/operators", new NewOperator("reader", "a console test password", OperatorRoles.Auditor), CancellationToken.None);
        using var auditor = await RoleTests.ConsoleSession(server, "reader", "a console test password");
        var seen = await auditor.GetStringAsync("/console/rollouts/lab-p3");
        Assert.That(seen, Does.Contain("id=\"wave-table\"").And.Not.Contain("id=\"resume-form\"").And.Not.Contain("id=\"abort-form\""));
        Assert.That(await auditor.GetStringAsync("/console/rollouts"), Does.Not.Contain("id=\"add-rollout\"").And.Not.Contain("id=\"emergency-stop\""));
        Assert.That(await auditor.GetStringAsync("/console/groups"), Does.Not.Contain("id=\"add-group\""));
        var before = HostileInputTests.Snapshot(server);
        foreach (var (path, form) in new (string, Dictionary<string, string>)[]
                 {
                     ("/console/rollouts/lab-p3?handler=Resume", new() { ["confirm"] = "yes" }), ("/console/rollouts/lab-p3?handler=Abort", new() { ["confirm"] = "yes" }),
                     ("/console/rollouts?handler=Create", Rollout("other")), ("/console/rollouts?handler=Stop", new() { ["confirm"] = "yes" }),
                     ("/console/groups", Group("other", "dynamic")),
                 })
        {
            Assert.That((await Post(auditor, path, form)).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden), path);
        }
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before));
    }
    [Test]
    public async Task An_empty_set_window_form_is_refused_and_only_the_clear_button_clears_a_groups_window()
    {
        await using var server = await TestServer.StartAsync();
        using var admin = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        await server.AddUnitsAsync(1);
        Assert.That((await Post(admin, "/console/groups", Group("lab", "dynamic", pattern: DemoCatalogue.Pattern2))).StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        Assert.That((await Post(admin, "/console/groups?handler=Window", new() { ["group"] = "lab", ["window"] = "mon-fri 01:00-05:00" })).StatusCode,
            Is.EqualTo(HttpStatusCode.Redirect));
        Assert.That((await server.Store.Fleet.GetGroupAsync("lab"))!.MaintenanceWindow, Is.EqualTo("mon,tue,wed,thu,fri 01:00-05:00"));

        // "Set window" with nothing typed (or only blanks) is a slip, not a request to remove the window: 400 with why, nothing changed
        foreach (var blank in new[] { "", " ", "\t \n" })
        {
            await Refused(server, admin, "/console/groups?handler=Window", new() { ["group"] = "lab", ["window"] = blank }, $"an empty window '{blank}'");
            var body = await (await Post(admin, "/console/groups?handler=Window", new() { ["group"] = "lab", ["window"] = blank })).Content.ReadAsStringAsync();
            Assert.That(body, Does.Contain("Clear window"), "the refusal says how a window is removed");
        }
        await Refused(server, admin, "/console/groups?handler=Window", new() { ["group"] = "lab" }, "no window field");
        Assert.That((await server.Store.Fleet.GetGroupAsync("lab"))!.MaintenanceWindow, Is.EqualTo("mon,tue,wed,thu,fri 01:00-05:00"));

        // the Clear button (whatever the field holds) clears it, audited once
        var audits = (await server.Store.ListAuditAsync(1000, target: "lab")).Count(a => a.Action == "group.window");
        Assert.That((await Post(admin, "/console/groups?handler=Window", new() { ["group"] = "lab", ["window"] = "", ["clear"] = "yes" })).StatusCode,
            Is.EqualTo(HttpStatusCode.Redirect));
        Assert.That((await server.Store.Fleet.GetGroupAsync("lab"))!.MaintenanceWindow, Is.Null);
        Assert.That((await server.Store.ListAuditAsync(1000, target: "lab")).Count(a => a.Action == "group.window"), Is.EqualTo(audits + 1));
    }

    private static Dictionary<string, string> Policy(string cpu = "0.5", string wan = "0.5", string host = "0.8", string lowStart = "2", string lowEnd = "5",
        string maintenanceStart = "3", string maintenanceEnd = "4", string zone = "") => new()
        {
            ["cpu"] = cpu, ["wan"] = wan, ["host"] = host, ["lowStart"] = lowStart, ["lowEnd"] = lowEnd,
            ["maintenanceStart"] = maintenanceStart, ["maintenanceEnd"] = maintenanceEnd, ["zone"] = zone,
        };

    [Test]
    public async Task The_update_policy_is_shown_and_changed_from_the_console_by_the_api_rules_and_a_refused_form_changes_nothing()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Operator();
        using var admin = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        var page = await admin.GetStringAsync("/console/policy");
        Assert.That(await admin.GetStringAsync("/console"), Does.Contain("href=\"/console/policy\""));
        Assert.That(page, Does.Contain("id=\"set-policy\"").And.Contain("in the low-utilisation hours 02:00-05:00").And.Contain("in the maintenance hours 03:00-04:00"));
        Assert.That(page, Does.Contain("value=\"0.5\"").And.Contain("the host&#x27;s"), "the form holds the policy in force");

        const string path = "/console/policy";
        var setting = await server.Store.Settings.GetSettingAsync(PolicySettings.Key);
        await Refused(server, admin, path, Policy(cpu: "0"), "a threshold of 0");
        await Refused(server, admin, path, Policy(cpu: "1.5"), "a threshold above 1");
        await Refused(server, admin, path, Policy(wan: "-0.5"), "a negative threshold");
        await Refused(server, admin, path, Policy(wan: "0,5"), "a decimal comma");
        await Refused(server, admin, path, Policy(host: "NaN"), "not a number");
        await Refused(server, admin, path, Policy(host: "1e-1"), "an exponent");
        await Refused(server, admin, path, Policy(host: ""), "an empty threshold");
        await Refused(server, admin, path, Policy(cpu: "0.5\n"), "a newline after the number");
        await Refused(server, admin, path, Policy(lowStart: "24"), "hour 24");
        await Refused(server, admin, path, Policy(lowEnd: "-1"), "a negative hour");
        await Refused(server, admin, path, Policy(maintenanceStart: "3.5"), "a fractional hour");
        await Refused(server, admin, path, Policy(maintenanceEnd: "\u0663"), "a non-ASCII digit");
        await Refused(server, admin, path, Policy(maintenanceEnd: "003"), "three digits");
        await Refused(server, admin, path, Policy(zone: "Mars/Olympus"), "an unknown time zone");
        await Refused(server, admin, path, Policy(zone: "Asia/Tokyo\u0001"), "a control character in the zone");
        await Refused(server, admin, path, Policy(zone: "../../etc/passwd"), "a path for a zone");
        await Refused(server, admin, path, Policy(zone: new string('A', 65)), "a zone too long");
        var refused = await Post(admin, path, Policy(zone: "Mars/Olympus"));
        var body = await refused.Content.ReadAsStringAsync();
        Assert.That(body, Does.Contain("timeZone: &#x27;Mars/Olympus&#x27; is not a known time zone id"), "the reason names the field");
        Assert.That(body, Does.Contain("value=\"Mars/Olympus\""), "the form comes back as it was typed");
        Assert.That(await server.Store.Settings.GetSettingAsync(PolicySettings.Key), Is.EqualTo(setting), "nothing stored");

        var saved = await Post(admin, path, Policy(cpu: "0.3", wan: "0.25", host: "0.9", lowStart: "22", lowEnd: "4", maintenanceStart: "1", maintenanceEnd: "3", zone: "Asia/Tokyo"));
        Assert.That(saved.StatusCode, Is.EqualTo(HttpStatusCode.Redirect), await saved.Content.ReadAsStringAsync());
        var stored = await PolicySettings.GetAsync(server.Store);
        Assert.That(stored, Is.EqualTo(new Tsunagu.Protocol.UpdatePolicy(0.3, 0.25, 22, 4, 1, 3, "Asia/Tokyo", 0.9)));
        var audit = (await server.Store.ListAuditAsync(20)).Single(a => a.Action == "settings.update-policy");
        Assert.That(audit.Actor, Is.EqualTo(DemoCatalogue.OperatorName));
        Assert.That(await client.SendAsync(HttpMethod.Get, "/api/v1/settings/update-policy", null, CancellationToken.None), Does.Contain("\"timeZone\":\"Asia/Tokyo\""), "the API reads what the console wrote");
        page = await admin.GetStringAsync("/console/policy");
        Assert.That(page, Does.Contain("in the low-utilisation hours 22:00-04:00").And.Contain("Asia/Tokyo").And.Contain("under 0.3 and its WAN use under 0.25"));

        // a policy whose maintenance hours a running rollout's group window never meets: 409 with the API's reason
        var units = await server.AddUnitsAsync(2);
        var onPattern2 = new Tsunagu.Protocol.Inventory(DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion, DemoCatalogue.Pattern2Applications);
        foreach (var u in units) { await server.Store.Units.RecordInventoryAsync(u.Mac, onPattern2, DemoCatalogue.Pattern2, UnitStates.Ready); }
        await RolloutCatalogue.AddPattern3Async(server, client, importance: 2);
        await client.SendJsonAsync(HttpMethod.Post, Tsunagu.Server.Fleet.FleetApi.GroupsRoute,
            new Tsunagu.Server.Fleet.NewGroup("lab", null, new Tsunagu.Server.Fleet.GroupFilter(Pattern: DemoCatalogue.Pattern2), "sat,sun 01:30-06:00"), CancellationToken.None);
        await client.SendJsonAsync(HttpMethod.Post, RolloutsApi.Route, new NewRollout("lab-p3", "lab", DemoCatalogue.Pattern2, "pattern-3", [new(Percent: 100)]), CancellationToken.None);
        await Refused(server, admin, path, Policy(maintenanceStart: "7", maintenanceEnd: "8"), "maintenance hours the rollout's group window never meets", HttpStatusCode.Conflict);
        body = await (await Post(admin, path, Policy(maintenanceStart: "7", maintenanceEnd: "8"))).Content.ReadAsStringAsync();
        Assert.That(body, Does.Contain("never overlaps the update policy&#x27;s maintenance window 07:00-08:00").And.Contain("rollout lab-p3"));
        Assert.That((await PolicySettings.GetAsync(server.Store)).MaintenanceStartHour, Is.EqualTo(1), "the policy in force is unchanged");

        // a role that may only read sees the policy but no form, and its post is refused
        await client.SendJsonAsync(HttpMethod.Post, "/api/v1/operators", new NewOperator("reader", "a console test password", OperatorRoles.Auditor), CancellationToken.None);
        using var auditor = await RoleTests.ConsoleSession(server, "reader", "a console test password");
        var seen = await auditor.GetStringAsync("/console/policy");
        Assert.That(seen, Does.Contain("id=\"policy-table\"").And.Not.Contain("id=\"set-policy\""));
        var before = HostileInputTests.Snapshot(server);
        Assert.That((await Post(auditor, path, Policy())).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before));
    }
}
