using System.Text.RegularExpressions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;
using Tsunagu.Demo;
using Tsunagu.IntegrationTests;
using Tsunagu.Server.Catalogue;
using Tsunagu.Server.Data;
using static Microsoft.Playwright.Assertions;

namespace Tsunagu.BrowserTests;

/// <summary>The operator console in a real browser, on the real server with a simulated fleet.</summary>
[NonParallelizable]
public class ConsoleTests
{
    [SetUp]
    public void UseSqlite() => TestServer.DatabaseKind.Value = "sqlite";

    internal static async Task LogInOperatorAsync(IPage page)
    {
        await page.GotoAsync("/console");
        await Expect(page).ToHaveURLAsync(new Regex("/console/login"));
        await page.GetByLabel("Name").FillAsync(DemoCatalogue.OperatorName);
        await page.GetByLabel("Password").FillAsync(TestServer.Password);
        await page.GetByRole(AriaRole.Button, new() { Name = "Log in" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Fleet overview" })).ToBeVisibleAsync();
    }

    [Test]
    public async Task Operator_registers_a_unit_verifies_a_pattern_and_forces_a_check()
    {
        await using var server = await TestServer.StartAsync();
        // a fleet that has rolled out p1-to-p2, and a draft pattern waiting for the operator's verification
        foreach (var unit in await server.AddUnitsAsync(3))
        {
            server.Fleet.Start(unit);
        }
        await server.App.Services.GetRequiredService<CatalogueService>().CreatePatternAsync(new NewPattern("pattern-3", "candidate: vcp 1.2.0 on the factory firewall",
            DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion,
            new Dictionary<string, string> { ["cache-manager"] = "1.0.0", ["firewall"] = "1.0.0", ["vcp"] = "1.2.0" }), DemoCatalogue.OperatorName);

        await using var browser = await Browser.OpenAsync(server.Url);
        var page = browser.Page;
        await LogInOperatorAsync(page);

        // register one unit by the form
        var identity = server.Identity(10);
        await page.GetByRole(AriaRole.Link, new() { Name = "Register", Exact = true }).ClickAsync();
        await page.GetByLabel("MAC address").FillAsync(identity.Mac);
        await page.GetByLabel("Serial number").FillAsync(identity.Serial);
        await page.GetByLabel("ISP account").FillAsync("browser@isp.example");
        await page.GetByLabel("ISP password").FillAsync("isp-secret-123");
        await page.GetByLabel("Domain").FillAsync("browser.example");
        await browser.ScreenshotAsync("console-register");
        await page.GetByRole(AriaRole.Button, new() { Name = "Register", Exact = true }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = $"Unit {identity.Mac}" })).ToBeVisibleAsync();
        await Expect(page.Locator("#main")).Not.ToContainTextAsync("isp-secret-123");
        await Expect(page.Locator("#main")).ToContainTextAsync("set (not shown)");
        Assert.That(server.Store.Lifecycle.IspPasswordOf((await server.Store.Units.GetUnitAsync(identity.Mac))!), Is.EqualTo("isp-secret-123"), "the form wrote the device management table");

        // the registered unit powers on and reaches Ready through the same host
        var registered = await server.Fleet.AddUnitAsync(identity, CancellationToken.None);
        server.Fleet.Start(registered);
        await server.WaitReadyAsync(registered);
        foreach (var unit in server.Fleet.Units) { await server.WaitReadyAsync(unit); }

        // verify the draft pattern
        await page.GetByRole(AriaRole.Link, new() { Name = "Catalogue" }).ClickAsync();
        var row = page.Locator("#pattern-pattern-3");
        await Expect(row).ToContainTextAsync("draft");
        await row.GetByRole(AriaRole.Button, new() { Name = "Verify pattern-3" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("Pattern pattern-3 verified");
        await Expect(page.Locator("#pattern-pattern-3")).ToContainTextAsync("verified");
        Assert.That((await server.Store.Catalogue.GetPatternAsync("pattern-3"))?.Status, Is.EqualTo(PatternStatus.Verified));
        await browser.ScreenshotAsync("console-catalogue");

        // force a check on the simulated unit; the page shows the check arriving
        await page.GotoAsync($"/console/units/{identity.Mac}");
        await Expect(page.Locator("#unit-state")).ToContainTextAsync("Ready");
        var history = page.Locator("#history-table tbody tr", new() { HasText = "forced" });
        await Expect(history).ToHaveCountAsync(0);
        await page.GetByRole(AriaRole.Button, new() { Name = "Check now" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("check now");
        await Expect(history.First).ToContainTextAsync("forced on pattern-2: up to date", new() { Timeout = 30_000 });
        await Expect(page.Locator("#history-table")).ToContainTextAsync("ready on pattern-2");
        await Expect(page.Locator("#forced-check-table")).ToContainTextAsync("delivered", new() { Timeout = 30_000 });
        await browser.ScreenshotAsync("console-unit");

        // the overview counts and charts the fleet
        await page.GotoAsync("/console");
        await Expect(page.Locator("#total-units")).ToHaveTextAsync("4");
        await Expect(page.Locator("#rollout ~ p strong").First).ToHaveTextAsync("4");
        Assert.That(await page.EvaluateAsync<int>("() => document.querySelectorAll('canvas[data-chart]').length"), Is.EqualTo(2));
        Assert.That(await page.EvaluateAsync<bool>("() => typeof Chart !== 'undefined' && [...document.querySelectorAll('canvas[data-chart]')].every(c => Chart.getChart(c) !== undefined)"),
            Is.True, "chart.js drew both charts");
        await browser.ScreenshotAsync("console-overview");

        // the unit list finds the registered unit by a part of its MAC
        await page.GetByRole(AriaRole.Link, new() { Name = "Units", Exact = true }).ClickAsync();
        await page.GetByLabel("MAC").FillAsync(identity.Mac[^5..]);
        await page.GetByRole(AriaRole.Button, new() { Name = "Search" }).ClickAsync();
        await Expect(page.Locator("#unit-table tbody tr")).ToHaveCountAsync(1);
        await Expect(page.Locator("#unit-table")).ToContainTextAsync(identity.Mac);
        await browser.ScreenshotAsync("console-units");

        await page.GotoAsync("/console/audit");
        await Expect(page.Locator("#audit-table")).ToContainTextAsync("pattern.verify");
        await Expect(page.Locator("#audit-table")).ToContainTextAsync("units.check");
        await browser.ScreenshotAsync("console-audit");
    }

    [Test]
    public async Task A_device_management_table_with_a_wrong_row_is_refused_with_the_error_on_that_row()
    {
        await using var server = await TestServer.StartAsync();
        await using var browser = await Browser.OpenAsync(server.Url);
        var page = browser.Page;
        await LogInOperatorAsync(page);
        await page.GotoAsync("/console/register");
        var csv = "mac,serial,isp_method,isp_username,isp_password\n02:54:53:00:02:01,CSV-1,pppoe,a@isp.example,pw1\nnot-a-mac,CSV-2,dhcp,,\n02:54:53:00:02:03,CSV-3,pppoe,,\n";
        await page.GetByLabel("CSV file").SetInputFilesAsync(new FilePayload { Name = "units.csv", MimeType = "text/csv", Buffer = System.Text.Encoding.UTF8.GetBytes(csv) });
        await page.GetByRole(AriaRole.Button, new() { Name = "Upload and register" }).ClickAsync();
        await Expect(page.Locator("#csv-result")).ToContainTextAsync("Nothing was registered");
        var rows = page.Locator("#csv-rows tbody tr");
        await Expect(rows).ToHaveCountAsync(3);
        await Expect(rows.Nth(0)).ToContainTextAsync("ok");
        await Expect(rows.Nth(1)).ToContainTextAsync("'not-a-mac' is not a MAC address");
        await Expect(rows.Nth(2)).ToContainTextAsync("a pppoe account needs username and password");
        Assert.That(await server.Store.Units.GetUnitAsync("02:54:53:00:02:01"), Is.Null, "nothing is written when a row is wrong");
        await browser.ScreenshotAsync("console-register-csv-errors");

        var fixedCsv = "mac,serial,isp_method,isp_username,isp_password\n02:54:53:00:02:01,CSV-1,pppoe,a@isp.example,pw1\n02:54:53:00:02:03,CSV-3,dhcp,,\n";
        await page.GetByLabel("CSV file").SetInputFilesAsync(new FilePayload { Name = "units.csv", MimeType = "text/csv", Buffer = System.Text.Encoding.UTF8.GetBytes(fixedCsv) });
        await page.GetByRole(AriaRole.Button, new() { Name = "Upload and register" }).ClickAsync();
        await Expect(page.Locator("#csv-result")).ToContainTextAsync("Registered 2 unit(s).");
        Assert.That((await server.Store.Units.GetUnitAsync("02:54:53:00:02:03"))?.Serial, Is.EqualTo("CSV-3"));
    }

    [Test]
    public async Task Operator_blocks_a_domain_for_a_unit_and_the_revision_appears()
    {
        await using var server = await TestServer.StartAsync();
        var unit = (await server.AddUnitsAsync(1))[0];
        var first = (await server.Store.ServiceConfigs.LatestUnitConfigAsync(unit.Mac))!.Revision;
        await using var browser = await Browser.OpenAsync(server.Url);
        var page = browser.Page;
        await LogInOperatorAsync(page);
        await page.GotoAsync($"/console/units/{unit.Mac}");
        await page.Locator("#service-config-edit summary").ClickAsync();
        var blocked = page.GetByLabel("Blocked domains, one a line");
        var domains = await blocked.InputValueAsync();
        await blocked.FillAsync(domains + "\nads.browser.example");
        await page.GetByLabel("Filter on").CheckAsync();
        await browser.ScreenshotAsync("console-unit-service-config");
        await page.Locator("#service-config-save").ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync($"Service configuration revision {first + 1} for {unit.Mac} stored");
        await Expect(page.Locator($"#config-{first + 1}")).ToContainTextAsync("provisional");
        var stored = (await server.Store.ServiceConfigs.LatestUnitConfigAsync(unit.Mac))!;
        Assert.That(stored.Revision, Is.EqualTo(first + 1));
        Assert.That(System.Text.Json.JsonSerializer.Deserialize(stored.Document, Tsunagu.Protocol.ProtocolJson.Default.ServiceConfiguration)!.ContentFilter.BlockedDomains,
            Does.Contain("ads.browser.example"));

        // a wrong domain is refused with the field named, and nothing is stored
        await page.Locator("#service-config-edit summary").ClickAsync();
        await page.GetByLabel("Blocked domains, one a line").FillAsync("not a domain");
        await page.Locator("#service-config-save").ClickAsync();
        await Expect(page.GetByRole(AriaRole.Alert)).ToContainTextAsync("Nothing was stored: contentFilter.blockedDomains[0]");
        Assert.That((await server.Store.ServiceConfigs.LatestUnitConfigAsync(unit.Mac))!.Revision, Is.EqualTo(first + 1));
    }
}
