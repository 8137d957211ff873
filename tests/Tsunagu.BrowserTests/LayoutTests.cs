using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Playwright;
using Tsunagu.Demo;
using Tsunagu.IntegrationTests;

namespace Tsunagu.BrowserTests;

/// <summary>
/// The console's layout at a phone's, a laptop's and a desktop's width: no page is wider than the window, the
/// register form keeps a usable width beside the CSV help, the overview's rollout chart never repeats a time on its
/// axis, and a rollout's chart names each wave and each share once.
/// </summary>
[NonParallelizable]
public class LayoutTests
{
    /// <summary>A clock that stands still until moved: reports recorded between two moves have one time.</summary>
    private sealed class StillClock(DateTimeOffset now) : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = now;
        public override DateTimeOffset GetUtcNow() => Now;
    }

    [SetUp]
    public void UseSqlite() => TestServer.DatabaseKind.Value = "sqlite";

    [TearDown]
    public void RealTime() => TestServer.Time.Value = null;

    private static async Task AssertNoHorizontalOverflowAsync(IPage page, string what, int width)
    {
        var widths = await page.EvaluateAsync<int[]>("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]");
        var (scroll, client) = (widths[0], widths[1]);
        Assert.That(scroll, Is.LessThanOrEqualTo(client), $"{what} at {width} px is {scroll} px wide (window {client} px)");
    }

    [TestCase(390, 844)]
    [TestCase(1280, 800)]
    [TestCase(1920, 1080)]
    public async Task No_console_page_is_wider_than_the_window_and_the_rollout_axis_repeats_no_time(int width, int height)
    {
        var clock = new StillClock(DateTimeOffset.UtcNow);
        TestServer.Time.Value = clock;
        await using var server = await TestServer.StartAsync();
        var units = await server.AddUnitsAsync(4);
        // three units move in the same second, the fourth a minute later: two steps
        foreach (var unit in units.Take(3)) { await server.Store.History.RecordUpdateReportAsync(unit.Mac, DemoCatalogue.UpdateId, true, null, DemoCatalogue.Pattern2); }
        clock.Now = clock.Now.AddMinutes(1);
        await server.Store.History.RecordUpdateReportAsync(units[3].Mac, DemoCatalogue.UpdateId, true, null, DemoCatalogue.Pattern2);
        await RolloutConsoleTests.AddRolloutAsync(server, units);

        await using var browser = await Browser.OpenAsync(server.Url, width, height);
        var page = browser.Page;
        await ConsoleTests.LogInOperatorAsync(page);
        foreach (var path in new[] { "/console", "/console/units", "/console/register", "/console/catalogue", "/console/audit", "/console/programs", $"/console/units/{units[0].Mac}",
                     "/console/rollouts", "/console/rollouts/lab-p3", "/console/groups", "/console/policy", "/console/services" })
        {
            await page.GotoAsync(path);
            await AssertNoHorizontalOverflowAsync(page, path, width);
        }
        await page.GotoAsync("/console/services");
        foreach (var summary in await page.Locator("main details summary").AllAsync()) { await summary.ClickAsync(); }
        await AssertNoHorizontalOverflowAsync(page, "/console/services, every form unfolded", width);
        await page.GotoAsync($"/console/units/{units[0].Mac}");
        await page.Locator("#service-config-edit summary").ClickAsync();
        await AssertNoHorizontalOverflowAsync(page, "the unit's service configuration forms", width);
        await page.Locator("#record-edit summary").ClickAsync();
        await page.Locator("#lifecycle summary").ClickAsync();
        await AssertNoHorizontalOverflowAsync(page, "the unit's row editor and lifecycle forms", width);
        var editor = await page.Locator("#record-form").BoundingBoxAsync();
        Assert.That(editor!.Width, Is.GreaterThanOrEqualTo(Math.Min(300, width - 80)), $"the row editor at {width} px is {editor.Width} px wide");

        await page.GotoAsync("/console/register");
        var form = await page.Locator("#register-one").BoundingBoxAsync();
        Assert.That(form, Is.Not.Null);
        Assert.That(form!.Width, Is.GreaterThanOrEqualTo(Math.Min(300, width - 80)), $"the one-unit form at {width} px is {form.Width} px wide");
        await browser.ScreenshotAsync($"console-register-{width}");

        // the rollout's chart: each axis names each wave and each share once
        await page.GotoAsync("/console/rollouts/lab-p3");
        var waveLabels = await page.Locator("#rollout-chart .axis-y text").AllTextContentsAsync();
        var shareLabels = await page.Locator("#rollout-chart .axis-x text").AllTextContentsAsync();
        Assert.That(waveLabels, Is.EqualTo(new[] { "wave 1", "wave 2", "wave 3" }));
        Assert.That(shareLabels, Is.Unique.And.Count.EqualTo(5));
        var chart = await page.Locator("#rollout-chart").BoundingBoxAsync();
        Assert.That(chart!.Width, Is.LessThanOrEqualTo(width), $"the rollout chart at {width} px");
        await browser.ScreenshotAsync($"console-rollout-{width}");

        await page.GotoAsync("/console");
        var charts = await page.Locator("canvas[data-chart]").EvaluateAllAsync<string[]>("cs => cs.map(c => c.getAttribute('data-chart'))");
        var rollout = charts.Select(c => JsonNode.Parse(c)!).Single(c => (string?)c["type"] == "line");
        var labels = rollout["data"]!["labels"]!.AsArray().Select(l => (string)l!).ToList();
        var values = rollout["data"]!["datasets"]![0]!["data"]!.AsArray().Select(v => (int)v!).ToList();
        Assert.That(labels, Is.Unique, rollout.ToJsonString(new JsonSerializerOptions()));
        Assert.That(values, Is.EqualTo(new[] { 3, 4 }), "units moved by the end of each second, in time order");
        await browser.ScreenshotAsync($"console-overview-{width}");

        await page.GotoAsync("/portal");
        await AssertNoHorizontalOverflowAsync(page, "/portal", width);
    }
}
