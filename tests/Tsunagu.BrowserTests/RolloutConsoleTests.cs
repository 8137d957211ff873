using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;
using Tsunagu.Cli.Fleet;
using Tsunagu.Demo;
using Tsunagu.IntegrationTests;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Fleet;
using Tsunagu.Server.Fleet.Rollouts;
using static Microsoft.Playwright.Assertions;

namespace Tsunagu.BrowserTests;

/// <summary>
/// Rollouts from the console (Pages/Console/Groups, Rollouts, Rollout) in a real browser: a group and a rollout are
/// created by their forms, and the rollout's page follows a simulated fleet installing wave by wave, without a reload.
/// </summary>
[NonParallelizable]
public class RolloutConsoleTests
{
    [SetUp]
    public void UseSqlite() => TestServer.DatabaseKind.Value = "sqlite";

    [TearDown]
    public void TearDown() => TestServer.Configure.Value = null;

    /// <summary>
    /// A rollout to look at: <paramref name="units"/> (registered, not started) run pattern 2, pattern 3 and its update
    /// program (of <paramref name="importance"/>) exist, with the way back when <paramref name="wayBack"/>, the group "lab"
    /// holds them (with the maintenance <paramref name="window"/> when given) and the rollout "lab-p3" moves them in
    /// <paramref name="waves"/> (default three: one unit, 50%, 100%).
    /// </summary>
    internal static async Task AddRolloutAsync(TestServer server, IReadOnlyList<FleetUnit> units, IReadOnlyList<WaveSpec>? waves = null, int importance = 5,
        string? window = null, bool wayBack = false, int? successPercent = null, int? minWaveSeconds = null)
    {
        using var client = server.Operator();
        var onPattern2 = new Inventory(DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion, DemoCatalogue.Pattern2Applications);
        foreach (var u in units) { await server.Store.Units.RecordInventoryAsync(u.Mac, onPattern2, DemoCatalogue.Pattern2, UnitStates.Ready); }
        await RolloutCatalogue.AddPattern3Async(server, client, importance);
        if (wayBack) { await RolloutCatalogue.AddWayBackAsync(server, client); }
        await client.SendJsonAsync(HttpMethod.Post, FleetApi.GroupsRoute, new NewGroup("lab", null, new GroupFilter(Pattern: DemoCatalogue.Pattern2)), CancellationToken.None);
        if (window is not null) { await client.SendJsonAsync(HttpMethod.Put, FleetApi.GroupsRoute + "/lab/window", new { window }, CancellationToken.None); }
        await client.SendJsonAsync(HttpMethod.Post, RolloutsApi.Route,
            new NewRollout("lab-p3", "lab", DemoCatalogue.Pattern2, "pattern-3", waves ?? [new(Count: 1), new(Percent: 50), new(Percent: 100)],
                SuccessPercent: successPercent, MinWaveSeconds: minWaveSeconds), CancellationToken.None);
    }

    [Test]
    public async Task A_rollout_created_from_the_console_is_watched_to_completion()
    {
        TestServer.Configure.Value = o => o.RolloutTickSeconds = 0.2;
        await using var server = await TestServer.StartAsync(TestServer.FastUpdateOptions);
        var units = await server.AddUnitsAsync(4);
        server.Fleet.StartAll();
        foreach (var u in units) { await server.WaitReadyAsync(u); }
        await server.WaitForAsync(() => units.All(u => u.Supervisor.Context.Push?.IsConnected == true), "every unit listening for pushes");
        using (var client = server.Operator()) { await RolloutCatalogue.AddPattern3Async(server, client); }

        await using var browser = await Browser.OpenAsync(server.Url);
        var page = browser.Page;
        await ConsoleTests.LogInOperatorAsync(page);

        // the group: every unit on pattern 2
        await page.GetByRole(AriaRole.Link, new() { Name = "Groups", Exact = true }).ClickAsync();
        await page.GetByLabel("Name", new() { Exact = true }).FillAsync("lab");
        await page.GetByLabel("dynamic (a filter)").CheckAsync();
        await page.GetByLabel("Install pattern").FillAsync(DemoCatalogue.Pattern2);
        await page.GetByRole(AriaRole.Button, new() { Name = "Create group" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("Group lab created (dynamic): 4 unit(s) now.");
        await Expect(page.Locator("#group-lab .members")).ToHaveTextAsync("4");

        // a refused rollout form says why and keeps what was typed
        await page.GetByRole(AriaRole.Link, new() { Name = "Rollouts", Exact = true }).ClickAsync();
        await page.GetByLabel("Name", new() { Exact = true }).FillAsync("lab-p3");
        await page.GetByLabel("Group", new() { Exact = true }).SelectOptionAsync("lab");
        await page.GetByLabel("Update program (from → to)").SelectOptionAsync("p2-to-p3");
        await page.GetByLabel("Waves (counts, percents or group:NAME, in order)").FillAsync("1,50%,250%");
        await page.GetByLabel("Success threshold (%)").FillAsync("100");
        await page.GetByRole(AriaRole.Button, new() { Name = "Start rollout" }).ClickAsync();
        await Expect(page.Locator("#rollout-error")).ToContainTextAsync("waves[2].percent: 1 to 100");
        Assert.That(await server.Store.Rollouts.GetRolloutAsync("lab-p3"), Is.Null);
        await Expect(page.GetByLabel("Name", new() { Exact = true })).ToHaveValueAsync("lab-p3");
        Assert.That(await AccessibilityTests.ViolationsAsync(page, "rollouts with a refused form"), Is.Empty);

        await page.GetByLabel("Waves (counts, percents or group:NAME, in order)").FillAsync("1,50%,100%");
        await page.GetByRole(AriaRole.Button, new() { Name = "Start rollout" }).ClickAsync();
        await Expect(page).ToHaveURLAsync(new Regex("/console/rollouts/lab-p3$"));
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("Rollout lab-p3 created: 4 unit(s) in waves 1/2/1");

        // the page follows the fleet by itself: the first wave installs, then the rest, and the rollout completes
        await Expect(page.Locator("#wave-1 td").Nth(5)).ToHaveTextAsync("1", new() { Timeout = 60_000 });
        await Expect(page.Locator("#rollout-state")).ToContainTextAsync("completed", new() { Timeout = 90_000 });
        await Expect(page.Locator("#rollout-total")).ToContainTextAsync("4 of 4 installed, 0 failed");
        await Expect(page.Locator("#live")).ToHaveAttributeAsync("data-live", "idle");
        await Expect(page.Locator("#rollout-chart rect.segment-installed")).ToHaveCountAsync(3);
        Assert.That(await units.SelectAsync(async u => (await server.Store.Units.GetUnitAsync(u.Mac))!.Pattern), Is.All.EqualTo("pattern-3"));
        Assert.That((await server.Store.ListAuditAsync(100)).Where(a => a.Target == "lab-p3").Select(a => a.Action).Reverse(),
            Is.EqualTo(new[] { "rollout.create", "rollout.open-wave", "rollout.open-wave", "rollout.complete" }));
        Assert.That(await AccessibilityTests.ViolationsAsync(page, "a completed rollout"), Is.Empty);
        await browser.ScreenshotAsync("console-rollout");
    }

    [Test]
    public async Task A_group_window_is_set_and_cleared_on_the_groups_page_with_the_apis_rules()
    {
        await using var server = await TestServer.StartAsync(TestServer.FastUpdateOptions);
        var units = await server.AddUnitsAsync(2);
        // a running rollout of the group whose update (importance 3) waits for the policy's low-utilisation window 02:00-05:00
        await AddRolloutAsync(server, units, [new(Percent: 100)], importance: 3);

        await using var browser = await Browser.OpenAsync(server.Url);
        var page = browser.Page;
        await ConsoleTests.LogInOperatorAsync(page);
        await page.GetByRole(AriaRole.Link, new() { Name = "Groups", Exact = true }).ClickAsync();
        await Expect(page.Locator("#group-lab .window")).ToHaveTextAsync("none");
        async Task<int> Windows() => (await server.Store.ListAuditAsync(1000, target: "lab")).Count(a => a.Action == "group.window");
        var audits = await Windows();

        // a window the rollout's update could never be offered in: refused (409) with why, nothing changed, what was typed kept
        await page.GetByLabel("Group", new() { Exact = true }).SelectOptionAsync("lab");
        await page.GetByLabel("Window", new() { Exact = true }).FillAsync("mon-fri 06:00-08:00");
        var refused = await page.RunAndWaitForResponseAsync(() => page.GetByRole(AriaRole.Button, new() { Name = "Set window" }).ClickAsync(),
            r => r.Request.Method == "POST");
        Assert.That(refused.Status, Is.EqualTo(409));
        await Expect(page.Locator("#group-error")).ToContainTextAsync(
            "Nothing was changed: group lab's maintenance window mon,tue,wed,thu,fri 06:00-08:00 never overlaps the update policy's low-utilisation window 02:00-05:00");
        await Expect(page.Locator("#group-error")).ToContainTextAsync("rollout lab-p3");
        await Expect(page.GetByLabel("Window", new() { Exact = true })).ToHaveValueAsync("mon-fri 06:00-08:00");
        await Expect(page.Locator("#group-lab .window")).ToHaveTextAsync("none");
        Assert.That(((await server.Store.Fleet.GetGroupAsync("lab"))!.MaintenanceWindow, await Windows()), Is.EqualTo(((string?)null, audits)));
        Assert.That(await AccessibilityTests.ViolationsAsync(page, "groups with a refused window"), Is.Empty);

        // not the grammar (a control character, an hour past 23): 400, nothing changed
        foreach (var bad in new[] { "mon 01:00-05:00\u0007", "25:00-01:00", "<script>alert(1)</script>" })
        {
            await page.GetByLabel("Window", new() { Exact = true }).FillAsync(bad);
            var response = await page.RunAndWaitForResponseAsync(() => page.GetByRole(AriaRole.Button, new() { Name = "Set window" }).ClickAsync(),
                r => r.Request.Method == "POST");
            Assert.That(response.Status, Is.EqualTo(400), bad);
            await Expect(page.Locator("#group-error")).ToContainTextAsync("Nothing was changed: window: HH:MM-HH:MM");
            Assert.That(await page.Locator("script:has-text('alert(1)')").CountAsync(), Is.Zero, "the input is shown as text, never as markup");
        }
        Assert.That(((await server.Store.Fleet.GetGroupAsync("lab"))!.MaintenanceWindow, await Windows()), Is.EqualTo(((string?)null, audits)));

        // one that meets the policy's window: set, shown, audited
        await page.GetByLabel("Window", new() { Exact = true }).FillAsync("Mon-Fri 01:00-05:00");
        await page.GetByRole(AriaRole.Button, new() { Name = "Set window" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("Group lab: maintenance window mon,tue,wed,thu,fri 01:00-05:00.");
        await Expect(page.Locator("#group-lab .window")).ToHaveTextAsync("mon,tue,wed,thu,fri 01:00-05:00");
        Assert.That((await server.Store.Fleet.GetGroupAsync("lab"))!.MaintenanceWindow, Is.EqualTo("mon,tue,wed,thu,fri 01:00-05:00"));
        Assert.That(await Windows(), Is.EqualTo(audits + 1));
        Assert.That(await AccessibilityTests.ViolationsAsync(page, "groups with a window"), Is.Empty);

        // and cleared
        await page.GetByLabel("Group", new() { Exact = true }).SelectOptionAsync("lab");
        await page.GetByRole(AriaRole.Button, new() { Name = "Clear window" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("Group lab: no maintenance window.");
        await Expect(page.Locator("#group-lab .window")).ToHaveTextAsync("none");
        Assert.That((await server.Store.Fleet.GetGroupAsync("lab"))!.MaintenanceWindow, Is.Null);
        Assert.That((await server.Store.ListAuditAsync(1000, target: "lab")).Where(a => a.Action == "group.window").Select(a => (a.Action, a.Detail)), Is.EqualTo(new[] { ("group.window", "none"), ("group.window", "mon,tue,wed,thu,fri 01:00-05:00") }));
    }

    [Test]
    public async Task The_rollout_page_lists_the_members_it_cannot_reach_in_its_window_with_links_to_them()
    {
        await using var server = await TestServer.StartAsync(TestServer.FastUpdateOptions);
        var units = await server.AddUnitsAsync(RolloutModelListed + 3);
        // importance 3 waits for the group's window and each unit's own low-utilisation hours
        await AddRolloutAsync(server, units, [new(Percent: 100)], importance: 3, window: "01:00-05:00");

        await using var browser = await Browser.OpenAsync(server.Url);
        var page = browser.Page;
        await ConsoleTests.LogInOperatorAsync(page);
        await page.GotoAsync("/console/rollouts/lab-p3");
        await Expect(page.Locator("#rollout-state")).ToContainTextAsync("running");
        Assert.That(await page.Locator("#never-offered-table").CountAsync(), Is.Zero, "no section while every member can be reached");

        // all but the first unit get own hours 10:00-12:00, stored without the window check (as before it existed):
        // they never meet 01:00-05:00; the page lists the first ten by MAC, links each to its unit, and counts them all
        var stuck = units.Skip(1).Select(u => u.Mac).Order(StringComparer.Ordinal).ToList();
        foreach (var mac in stuck) { Assert.That(await server.Store.Windows.SetUpdateWindowAsync(mac, 10, 12, null, new AuditEntry("carol", "unit.update-window", mac, "10-12")), Is.True); }
        var view = await server.App.Services.GetRequiredService<RolloutService>().ViewAsync((await server.Store.Rollouts.GetRolloutAsync("lab-p3"))!);
        Assert.That(view.NeverOffered!.Select(m => m.Mac), Is.EqualTo(stuck), "the API's list, which the page shows");

        await page.ReloadAsync();
        await Expect(page.Locator("#never-offered-count")).ToContainTextAsync($"{stuck.Count} unit(s) of the rollout have a maintenance window or low-utilisation hours of their own that never meet group lab's maintenance window");
        var rows = page.Locator("#never-offered-table tbody tr");
        await Expect(rows).ToHaveCountAsync(RolloutModelListed);
        for (var i = 0; i < RolloutModelListed; i++)
        {
            await Expect(rows.Nth(i).Locator("td").Nth(1)).ToHaveTextAsync("10:00-12:00");
            await Expect(rows.Nth(i).GetByRole(AriaRole.Link)).ToHaveAttributeAsync("href", $"/console/units/{stuck[i]}");
        }
        await Expect(page.Locator("#never-offered-more")).ToContainTextAsync($"and {stuck.Count - RolloutModelListed} more");
        Assert.That(await page.GetByRole(AriaRole.Link, new() { Name = units[0].Mac }).CountAsync(), Is.Zero, "a member that can be reached is not listed");
        Assert.That(await AccessibilityTests.ViolationsAsync(page, "rollout with never-offered members"), Is.Empty);
        Assert.That(await page.Locator("#live #never-offered-table").CountAsync(), Is.Zero, "not in the refreshed block");

        // keyboard only: Tab reaches the first listed unit's link and Enter opens its page. The section is outside the
        // block the page refreshes every 2 s while the rollout runs: two refreshes pass and the link keeps the focus (no
        // refresh can take it between Tab and Enter)
        var first = page.Locator("#never-offered-table").GetByRole(AriaRole.Link, new() { Name = stuck[0], Exact = true });
        await AccessibilityTests.TabToAsync(page, first, max: 80);
        var checks = await page.EvaluateAsync<int>("() => Number(document.documentElement.dataset.liveChecks || 0)");
        await page.WaitForFunctionAsync("n => Number(document.documentElement.dataset.liveChecks || 0) >= n", checks + 2);
        await Expect(first).ToBeFocusedAsync();
        await page.Keyboard.PressAsync("Enter");
        await Expect(page).ToHaveURLAsync(new Regex($"/console/units/{Regex.Escape(stuck[0])}$"));

        // hours that meet the window again: the member leaves the list; none left, no section
        foreach (var mac in stuck) { await server.Store.Windows.SetUpdateWindowAsync(mac, null, null, null, new AuditEntry("carol", "unit.update-window", mac, "none")); }
        await page.GotoAsync("/console/rollouts/lab-p3");
        await Expect(page.Locator("#rollout-state")).ToContainTextAsync("running");
        Assert.That(await page.Locator("#never-offered-table").CountAsync(), Is.Zero);
    }

    [Test]
    public async Task The_rollout_page_lists_the_units_returned_by_the_abort_with_links_to_them()
    {
        await using var server = await TestServer.StartAsync(TestServer.FastUpdateOptions);
        var units = await server.AddUnitsAsync(4);
        // wave 1 (two units) is offered the update; wave 2 waits an hour, so the other two are never moved
        await AddRolloutAsync(server, units, [new(Count: 2), new(Percent: 100)], wayBack: true, successPercent: 100, minWaveSeconds: 3600);
        // the units are not started: their version checks are the host's (the gate, the offer recorded with the pattern each
        // ran) and each reports pattern 3 installed, so the abort has their way back to plan
        var service = server.App.Services.GetRequiredService<RolloutService>();
        var moved = (await server.Store.Rollouts.RolloutMembersAsync((await server.Store.Rollouts.GetRolloutAsync("lab-p3"))!)).Where(m => m.Wave == 0).Select(m => m.Mac).Order(StringComparer.Ordinal).ToList();
        Assert.That(moved, Has.Count.EqualTo(2));
        foreach (var mac in moved)
        {
            var unit = (await server.Store.Units.GetUnitForCheckAsync(mac))!;
            var program = (await server.Store.Catalogue.FindUpdateProgramAsync(unit.Pattern!, unit.TargetPattern))!;
            var admission = await service.AdmitAsync(mac, program);
            Assert.That(admission.Deferred, Is.Null, mac);
            var inventory = JsonSerializer.Deserialize(unit.Inventory!, ProtocolJson.Default.Inventory)!;
            var (_, withheld) = await server.Store.Units.RecordCheckAsync(unit, inventory, unit.Pattern!, UnitStates.Updating, $"periodic on {unit.Pattern}: offered {program.Id}", false,
                RolloutService.OfferOf(mac, program, admission));
            Assert.That(withheld, Is.EqualTo(OfferWithheld.None), mac);
            await server.Store.History.RecordUpdateOutcomeAsync(new UpdateOutcome(mac, program.Id, true, null, RolloutCatalogue.Pattern3Inventory(), "pattern-3", UnitStates.Configuring, null, "installed"));
        }

        await using var browser = await Browser.OpenAsync(server.Url);
        var page = browser.Page;
        await ConsoleTests.LogInOperatorAsync(page);
        await page.GotoAsync("/console/rollouts/lab-p3");
        await Expect(page.Locator("#rollout-state")).ToContainTextAsync("running");
        await Expect(page.Locator("#live")).ToHaveAttributeAsync("data-live", "poll");
        Assert.That(await page.Locator("#return-table").CountAsync(), Is.Zero, "no section before an abort");

        // the operator aborts from the console in another tab and returns the moved units: the redirected page (a full
        // load) says how many return and lists them, each with its outcome and a link to its unit
        var other = await browser.Context.NewPageAsync();
        await other.GotoAsync("/console/rollouts/lab-p3");
        await other.GetByRole(AriaRole.Radio, new() { Name = "return to the pattern they ran before" }).CheckAsync();
        await other.GetByLabel("Yes, abort lab-p3").CheckAsync();
        await other.GetByRole(AriaRole.Button, new() { Name = "Abort", Exact = true }).ClickAsync();
        await Expect(other.GetByRole(AriaRole.Status)).ToContainTextAsync("Rollout lab-p3 is aborted: 2 unit(s) return to pattern-2, 0 cannot.");
        await Expect(other.Locator("#rollout-state")).ToContainTextAsync("aborted");
        var rows = other.Locator("#return-table tbody tr");
        await Expect(rows).ToHaveCountAsync(moved.Count);
        for (var i = 0; i < moved.Count; i++)
        {
            await Expect(rows.Nth(i).GetByRole(AriaRole.Link)).ToHaveAttributeAsync("href", $"/console/units/{moved[i]}");
            await Expect(rows.Nth(i).Locator("td").Nth(1)).ToHaveTextAsync("returning to pattern-2");
        }
        await Expect(other.Locator("#live")).ToHaveAttributeAsync("data-live", "idle");
        await other.CloseAsync();
        Assert.That((await server.Store.Rollouts.RolloutReturnsAsync("lab-p3", null, 1000)).Select(r => r.Mac), Is.EqualTo(moved), "the API's list, which the page shows");

        // the page opened before the abort shows the list without a reload: the section is in the block refreshed every 2 s,
        // and the refresh that brings the abort marks it idle (an aborted rollout is no longer active), so no later
        // refresh replaces the list and a link keeps the keyboard focus
        var returned = page.Locator("#live #return-table tbody tr");
        await Expect(returned).ToHaveCountAsync(moved.Count);
        await Expect(page.Locator("#rollout-state")).ToContainTextAsync("aborted");
        await Expect(page.Locator("#live")).ToHaveAttributeAsync("data-live", "idle");
        foreach (var u in units.Where(u => !moved.Contains(u.Mac)))
        {
            Assert.That(await page.GetByRole(AriaRole.Link, new() { Name = u.Mac }).CountAsync(), Is.Zero, "a unit the rollout did not move is not listed");
        }
        Assert.That(await AccessibilityTests.ViolationsAsync(page, "rollout aborted with units returned"), Is.Empty);

        // keyboard only: Tab reaches the first returned unit's link and Enter opens its page
        var first = page.Locator("#return-table").GetByRole(AriaRole.Link, new() { Name = moved[0], Exact = true });
        await AccessibilityTests.TabToAsync(page, first, max: 80);
        await Expect(page.Locator("#live")).ToHaveAttributeAsync("data-live", "idle");
        await Expect(first).ToBeFocusedAsync();
        await page.Keyboard.PressAsync("Enter");
        await Expect(page).ToHaveURLAsync(new Regex($"/console/units/{Regex.Escape(moved[0])}$"));
    }

    private const int RolloutModelListed = Tsunagu.Server.Pages.Console.RolloutModel.NeverOfferedListed;
}
