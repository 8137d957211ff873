using System.Security.Cryptography;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;
using Tsunagu.Demo;
using Tsunagu.IntegrationTests;
using Tsunagu.Protocol.Bundles;
using Tsunagu.Server;
using static Microsoft.Playwright.Assertions;

namespace Tsunagu.BrowserTests;

/// <summary>
/// The catalogue made in the console alone (Pages/Console/Catalogue, Programs, Unit) in a real browser: software, a
/// pattern that is then verified, and an update program with its signed bundle; a unit targeted at the new pattern
/// installs it, and a unit held on its pattern does not.
/// </summary>
[NonParallelizable]
public class CatalogueConsoleTests
{
    [SetUp]
    public void UseSqlite() => TestServer.DatabaseKind.Value = "sqlite";

    [Test]
    public async Task Software_a_pattern_and_a_program_made_in_the_console_move_the_unit_targeted_and_no_other()
    {
        await using var server = await TestServer.StartAsync(TestServer.FastUpdateOptions);
        // the server checks bundle signatures as a production server does: with the key the units trust
        server.App.Services.GetRequiredService<ServerOptions>().ReleasePublicKeys = [ReleaseKeys.PublicKeyBase64(server.ReleaseKey)];
        var units = await server.AddUnitsAsync(2);
        var (moved, held) = (units[0], units[1]);
        server.Fleet.StartAll();
        foreach (var u in units) { await server.WaitReadyAsync(u); }
        await server.WaitForAsync(() => units.All(u => u.Supervisor.Context.Push?.IsConnected == true), "every unit listening for pushes");
        Assert.That(await units.SelectAsync(async u => (await server.Store.Units.GetUnitAsync(u.Mac))!.Pattern), Is.All.EqualTo(DemoCatalogue.Pattern2));
        await server.Store.Units.SetTargetPatternAsync(held.Mac, DemoCatalogue.Pattern2);

        await using var browser = await Browser.OpenAsync(server.Url);
        var page = browser.Page;
        await ConsoleTests.LogInOperatorAsync(page);

        // software: vcp 2.0.0
        await page.GetByRole(AriaRole.Link, new() { Name = "Catalogue" }).ClickAsync();
        var software = page.Locator("#add-software");
        await software.GetByLabel("Application").FillAsync("vcp");
        await software.GetByLabel("Version").FillAsync("2.0.0");
        await software.GetByLabel("Name", new() { Exact = true }).FillAsync("Video conference proxy 2");
        await software.GetByRole(AriaRole.Button, new() { Name = "Add software" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("Software vcp 2.0.0 added.");

        // the pattern: pattern 2 with vcp 2.0.0, a draft until verified
        var pattern = page.Locator("#create-pattern");
        await pattern.GetByLabel("Pattern id").FillAsync("pattern-3");
        await pattern.GetByLabel("Name (optional)").FillAsync("vcp 2");
        await pattern.GetByLabel("Hardware version").FillAsync(DemoCatalogue.HardwareVersion);
        await pattern.GetByLabel("OS version").FillAsync(DemoCatalogue.OsVersion);
        await pattern.GetByLabel("Applications, one application=version a line").FillAsync(string.Join("\n", RolloutCatalogue.Pattern3Applications().Select(a => $"{a.Key}={a.Value}")));
        await pattern.GetByRole(AriaRole.Button, new() { Name = "Create pattern" }).ClickAsync();
        await Expect(page.Locator("#pattern-pattern-3")).ToContainTextAsync("draft");
        await page.Locator("#pattern-pattern-3").GetByRole(AriaRole.Button, new() { Name = "Verify pattern-3" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("Pattern pattern-3 verified");
        Assert.That(await AccessibilityTests.ViolationsAsync(page, "catalogue after creating software and a pattern"), Is.Empty);

        // the update program 2 -> 3 with its bundle, signed by the release key
        var bundle = DemoCatalogue.BuildBundle("p2-to-p3", 2, DemoCatalogue.Pattern2, "pattern-3", new Dictionary<string, string> { ["vcp"] = "2.0.0" },
            server.ReleaseKey, DateTimeOffset.UtcNow);
        await page.GetByRole(AriaRole.Link, new() { Name = "Programs" }).ClickAsync();
        await page.GetByLabel("Program id (the bundle's id)").FillAsync("p2-to-p3");
        await page.GetByLabel("From pattern").SelectOptionAsync(DemoCatalogue.Pattern2);
        await page.GetByLabel("To pattern (verified)").SelectOptionAsync("pattern-3");
        await page.GetByLabel("Importance (1 most urgent .. 5)").FillAsync("5");
        await page.GetByLabel("Signed bundle").SetInputFilesAsync(new FilePayload { Name = "p2-to-p3.tsb", MimeType = "application/octet-stream", Buffer = bundle });
        await page.GetByRole(AriaRole.Button, new() { Name = "Upload and add" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("Update program p2-to-p3 added");
        await Expect(page.Locator("#program-p2-to-p3")).ToContainTextAsync(Convert.ToHexStringLower(SHA256.HashData(bundle)));

        // the unit: targeted at pattern 3 and told to check now; its page follows it to pattern 3
        await page.GotoAsync($"/console/units/{moved.Mac}");
        await page.GetByLabel("Set the target").SelectOptionAsync("pattern-3");
        await page.GetByRole(AriaRole.Button, new() { Name = "Set target" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("now targets pattern-3");
        await page.GetByRole(AriaRole.Button, new() { Name = "Check now" }).ClickAsync();
        await Expect(page.Locator("#unit-pattern")).ToHaveTextAsync("pattern-3", new() { Timeout = 90_000 });
        await Expect(page.Locator("#main")).ToContainTextAsync("installed (pattern-3)");
        var report = (await server.Store.History.ListUpdateReportsAsync(moved.Mac)).Single(r => r.UpdateId == "p2-to-p3");
        Assert.That((report.Success, report.Pattern), Is.EqualTo((1L, "pattern-3")), "the unit reported the program installed");

        // the unit held on pattern 2 checks too and stays: its forced check finds it up to date
        await page.GotoAsync($"/console/units/{held.Mac}");
        await page.GetByRole(AriaRole.Button, new() { Name = "Check now" }).ClickAsync();
        await Expect(page.Locator("#history-table tbody tr", new() { HasText = "forced" }).First).ToContainTextAsync($"forced on {DemoCatalogue.Pattern2}: up to date", new() { Timeout = 60_000 });
        Assert.That((await server.Store.Units.GetUnitAsync(held.Mac))!.Pattern, Is.EqualTo(DemoCatalogue.Pattern2));
        Assert.That((await server.Store.History.ListUpdateReportsAsync(held.Mac)).Select(r => r.UpdateId), Does.Not.Contain("p2-to-p3"));

        Assert.That((await server.Store.ListAuditAsync(50)).Select(a => a.Action),
            Is.SupersetOf(new[] { "software.add", "pattern.create", "pattern.verify", "update-program.add", "unit.target-pattern" }));
    }
}
