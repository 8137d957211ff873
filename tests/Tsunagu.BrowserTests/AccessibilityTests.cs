using System.Text.RegularExpressions;
using Deque.AxeCore.Playwright;
using Microsoft.Playwright;
using Tsunagu.Demo;
using Tsunagu.IntegrationTests;
using Tsunagu.Server.Security;
using static Microsoft.Playwright.Assertions;

namespace Tsunagu.BrowserTests;

/// <summary>
/// Every console and portal page checked by axe-core (Deque.AxeCore.Playwright) in the real browser: no serious or
/// critical violation. And the main flows done with the keyboard alone: log in, register a unit, make it check now.
/// </summary>
[NonParallelizable]
public class AccessibilityTests
{
    [SetUp]
    public void UseSqlite() => TestServer.DatabaseKind.Value = "sqlite";

    /// <summary>The serious and critical violations axe finds on the page as it is, each with its elements.</summary>
    internal static async Task<List<string>> ViolationsAsync(IPage page, string what)
    {
        var result = await page.RunAxe();
        Assert.That(result.Passes, Is.Not.Empty, $"{what}: axe ran its rules on the page");
        return result.Violations.Where(v => v.Impact is "serious" or "critical")
            .Select(v => $"{what}: {v.Impact} {v.Id}: {v.Help} at {string.Join("; ", v.Nodes.Take(5).Select(n => n.Html))}").ToList();
    }

    /// <summary>Presses Tab until <paramref name="target"/> has the focus (at most <paramref name="max"/> times); fails when it never does.</summary>
    internal static async Task TabToAsync(IPage page, ILocator target, int max = 40)
    {
        for (var i = 0; i < max; i++)
        {
            await page.Keyboard.PressAsync("Tab");
            if (await target.EvaluateAsync<bool>("e => e === document.activeElement")) { return; }
        }
        Assert.Fail($"{target} is not reached with the Tab key ({max} presses)");
    }

    [Test]
    public async Task Every_console_and_portal_page_has_no_serious_violation()
    {
        // offered content-filter categories: the unit's service configuration form and the portal show their boxes
        TestServer.Configure.Value = o => o.FilterCategories = [new() { Name = "ads", Title = "Advertising" }, new() { Name = "malware", Title = "Malware" }];
        await using var server = await TestServer.StartAsync();
        TestServer.Configure.Value = null;
        var units = await server.AddUnitsAsync(2);
        await server.Store.Accounts.UpsertSubscriberAsync("alice", PasswordHasher.Hash("alice-password-1"));
        var identity = server.Identity(5);
        using (var client = server.Operator())
        {
            await client.RegisterAsync(TestServer.Registration(identity) with { Subscriber = "alice" }, CancellationToken.None);
        }
        await server.Store.AuditAsync(DemoCatalogue.OperatorName, "unit.check", units[0].Mac, null);
        await RolloutConsoleTests.AddRolloutAsync(server, units);

        await using var browser = await Browser.OpenAsync(server.Url);
        var page = browser.Page;
        var bad = new List<string>();
        await page.GotoAsync("/console/login");
        bad.AddRange(await ViolationsAsync(page, "console log in"));
        await ConsoleTests.LogInOperatorAsync(page);
        foreach (var path in new[]
                 {
                     "/console", "/console/units", "/console/units?sort=serial&dir=desc&size=1", "/console/units?size=0",
                     $"/console/units/{units[0].Mac}", "/console/register", "/console/catalogue", "/console/programs", "/console/audit",
                     "/console/rollouts", "/console/rollouts/lab-p3", "/console/groups", "/console/policy", "/console/services",
                 })
        {
            await page.GotoAsync(path);
            bad.AddRange(await ViolationsAsync(page, path));
        }
        // the services page with every configuration and contract form unfolded
        await page.GotoAsync("/console/services");
        foreach (var summary in await page.Locator("main details summary").AllAsync()) { await summary.ClickAsync(); }
        bad.AddRange(await ViolationsAsync(page, "services forms"));
        // the lifecycle forms, unfolded
        await page.GotoAsync($"/console/units/{units[0].Mac}");
        await page.Locator("#lifecycle summary").ClickAsync();
        bad.AddRange(await ViolationsAsync(page, "unit lifecycle forms"));
        await page.Locator("#service-config-edit summary").ClickAsync();
        bad.AddRange(await ViolationsAsync(page, "unit service configuration forms"));
        await page.Locator("#record-edit summary").ClickAsync();
        bad.AddRange(await ViolationsAsync(page, "unit row editor and delete form"));

        await page.GotoAsync("/portal/login");
        bad.AddRange(await ViolationsAsync(page, "portal log in"));
        await page.GetByLabel("Name").FillAsync("alice");
        await page.GetByLabel("Password").FillAsync("alice-password-1");
        await page.GetByRole(AriaRole.Button, new() { Name = "Log in" }).ClickAsync();
        await Expect(page).ToHaveURLAsync(new Regex($"/portal/units/{Regex.Escape(identity.Mac)}$"));
        bad.AddRange(await ViolationsAsync(page, "portal unit"));
        await page.GotoAsync("/portal");
        bad.AddRange(await ViolationsAsync(page, "portal home"));
        Assert.That(bad, Is.Empty, string.Join("\n", bad));
    }

    [Test]
    public async Task An_operator_logs_in_registers_a_unit_and_makes_it_check_with_the_keyboard_alone()
    {
        await using var server = await TestServer.StartAsync();
        await using var browser = await Browser.OpenAsync(server.Url);
        var page = browser.Page;

        await page.GotoAsync("/console/login");
        await TabToAsync(page, page.GetByLabel("Name"));
        await page.Keyboard.TypeAsync(DemoCatalogue.OperatorName);
        await TabToAsync(page, page.GetByLabel("Password"));
        await page.Keyboard.TypeAsync(TestServer.Password);
        await page.Keyboard.PressAsync("Enter");
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Fleet overview" })).ToBeVisibleAsync();

        await TabToAsync(page, page.GetByRole(AriaRole.Link, new() { Name = "Register", Exact = true }));
        await page.Keyboard.PressAsync("Enter");
        await Expect(page).ToHaveURLAsync(new Regex("/console/register$"));
        var identity = server.Identity(7);
        foreach (var (label, value) in new[]
                 {
                     ("MAC address", identity.Mac), ("Serial number", identity.Serial), ("ISP account", "keys@isp.example"),
                     ("ISP password", "isp-secret-456"), ("Domain", "keys.example"),
                 })
        {
            await TabToAsync(page, page.GetByLabel(label, new() { Exact = true }));
            await page.Keyboard.TypeAsync(value);
        }
        await TabToAsync(page, page.GetByRole(AriaRole.Button, new() { Name = "Register", Exact = true }));
        await page.Keyboard.PressAsync("Enter");
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = $"Unit {identity.Mac}" })).ToBeVisibleAsync();
        Assert.That((await server.Store.Units.GetUnitAsync(identity.Mac))?.Domain, Is.EqualTo("keys.example"));

        var unit = await server.Fleet.AddUnitAsync(identity, CancellationToken.None);
        server.Fleet.Start(unit);
        await server.WaitReadyAsync(unit);
        await page.ReloadAsync();
        await TabToAsync(page, page.GetByRole(AriaRole.Button, new() { Name = "Check now" }));
        await page.Keyboard.PressAsync("Enter");
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("check now");
        await Expect(page.Locator("#history-table tbody tr", new() { HasText = "forced" }).First).ToBeVisibleAsync(new() { Timeout = 30_000 });
    }

    [Test]
    public async Task An_operator_edits_a_units_row_and_decommissions_it_with_the_keyboard_alone()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        var before = (await server.Store.Units.GetUnitAsync(mac))!;
        await using var browser = await Browser.OpenAsync(server.Url);
        var page = browser.Page;
        await ConsoleTests.LogInOperatorAsync(page);
        await page.GotoAsync($"/console/units/{mac}");

        // unfold the row editor, replace the domain, save
        await TabToAsync(page, page.Locator("#record-edit summary"), 80);
        await page.Keyboard.PressAsync("Enter");
        await TabToAsync(page, page.GetByLabel("Domain", new() { Exact = true }), 80);
        await page.Keyboard.PressAsync("Control+A");
        await page.Keyboard.TypeAsync("keyboard.example");
        await TabToAsync(page, page.GetByRole(AriaRole.Button, new() { Name = "Save the row" }), 80);
        await page.Keyboard.PressAsync("Enter");
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync($"now at revision {before.Revision + 1}");
        await Expect(page.Locator($"#revision-{before.Revision + 1}")).ToContainTextAsync("keyboard.example");
        Assert.That((await server.Store.Units.GetUnitAsync(mac))!.Domain, Is.EqualTo("keyboard.example"));

        // decommission: unfold the lifecycle actions, tick the confirmation with the space bar, submit
        await TabToAsync(page, page.Locator("#lifecycle summary"), 80);
        await page.Keyboard.PressAsync("Enter");
        await TabToAsync(page, page.GetByLabel($"Yes, decommission {mac}"), 80);
        await page.Keyboard.PressAsync("Space");
        await TabToAsync(page, page.GetByRole(AriaRole.Button, new() { Name = "Decommission", Exact = true }), 80);
        await page.Keyboard.PressAsync("Enter");
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("is decommissioned");
        Assert.That((await server.Store.Units.GetUnitAsync(mac))!.DecommissionedAt, Is.Not.Null);
        await Expect(page.Locator("#record-edit")).ToHaveCountAsync(0);
        Assert.That(await ViolationsAsync(page, "a decommissioned unit"), Is.Empty);
    }

    /// <summary>
    /// An update program and a registered medium deleted from the console with the keyboard alone, each through its
    /// confirmation step: a program a running rollout uses is refused with the rollout named and stays; once the rollout
    /// completed it is deleted; the unfolded confirmation forms pass axe.
    /// </summary>
    [Test]
    public async Task An_operator_deletes_an_update_program_and_a_medium_with_the_keyboard_alone_after_confirming()
    {
        await using var server = await TestServer.StartAsync();
        const string digest = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        await server.Store.Media.AddMediumAsync(digest, "field kit");
        using (var c = server.Store.Database.Open())
        using (var insert = c.CreateCommand())
        {
            var now = Tsunagu.Server.Data.TsunaguStore.Timestamp(DateTimeOffset.UtcNow);
            const string waves = "[{\"percent\":100}]";
            insert.CommandText = $"""
                INSERT INTO rollouts (name, group_name, from_pattern, to_pattern, update_id, waves, success_percent, error_percent, on_error, min_wave_seconds,
                                      state, open_waves, wave_opened_at, errors_since, reason, created_by, created_at, updated_at)
                VALUES ('lab-wave', 'g', '{DemoCatalogue.Pattern1}', '{DemoCatalogue.Pattern2}', '{DemoCatalogue.UpdateId}', '{waves}', 90, 10, 'pause', 2592000,
                        'running', 1, '{now}', '{now}', NULL, 'alice', '{now}', '{now}')
                """;
            await insert.ExecuteNonQueryAsync();
        }
        await using var browser = await Browser.OpenAsync(server.Url);
        var page = browser.Page;
        await ConsoleTests.LogInOperatorAsync(page);
        var bad = new List<string>();

        async Task DeleteProgramAsync()
        {
            await page.GotoAsync("/console/programs");
            await TabToAsync(page, page.Locator($"summary[aria-label='Delete update program {DemoCatalogue.UpdateId}']"), 200);
            await page.Keyboard.PressAsync("Enter");
            await TabToAsync(page, page.GetByLabel($"Yes, delete {DemoCatalogue.UpdateId}"), 40);
            await page.Keyboard.PressAsync("Space");
            await TabToAsync(page, page.GetByRole(AriaRole.Button, new() { Name = "Delete update program", Exact = true }), 40);
            bad.AddRange(await ViolationsAsync(page, "update program delete confirmation"));
            await page.Keyboard.PressAsync("Enter");
        }

        await DeleteProgramAsync();
        await Expect(page.GetByRole(AriaRole.Alert)).ToContainTextAsync("rollout lab-wave");
        await Expect(page.Locator($"#program-{DemoCatalogue.UpdateId}")).ToHaveCountAsync(1);
        Assert.That(await server.Store.Catalogue.GetUpdateProgramAsync(DemoCatalogue.UpdateId), Is.Not.Null, "refused: the program the rollout uses stays");

        using (var c = server.Store.Database.Open())
        using (var done = c.CreateCommand())
        {
            done.CommandText = "UPDATE rollouts SET state = 'completed'";
            await done.ExecuteNonQueryAsync();
        }
        await DeleteProgramAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync($"Update program {DemoCatalogue.UpdateId} deleted");
        await Expect(page.Locator($"#program-{DemoCatalogue.UpdateId}")).ToHaveCountAsync(0);
        Assert.That(await server.Store.Catalogue.GetUpdateProgramAsync(DemoCatalogue.UpdateId), Is.Null);

        await page.GotoAsync("/console/catalogue");
        await TabToAsync(page, page.Locator("summary[aria-label='Delete medium field kit']"), 300);
        await page.Keyboard.PressAsync("Enter");
        await TabToAsync(page, page.GetByLabel("Yes, delete field kit"), 40);
        await page.Keyboard.PressAsync("Space");
        await TabToAsync(page, page.GetByRole(AriaRole.Button, new() { Name = "Delete medium", Exact = true }), 40);
        bad.AddRange(await ViolationsAsync(page, "medium delete confirmation"));
        await page.Keyboard.PressAsync("Enter");
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync($"Medium {digest} deleted");
        await Expect(page.Locator($"#medium-{digest}")).ToHaveCountAsync(0);
        Assert.That(await server.Store.Media.GetMediumAsync(digest), Is.Null);
        Assert.That((await server.Store.ListAuditAsync(5)).Select(a => a.Action), Is.SupersetOf(new[] { "update-program.delete", "media.delete" }));
        Assert.That(bad, Is.Empty, string.Join("\n", bad));
    }
}
