using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;
using Tsunagu.Cli.Fleet;
using Tsunagu.IntegrationTests;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;
using static Microsoft.Playwright.Assertions;

namespace Tsunagu.BrowserTests;

/// <summary>
/// The portal shows a failed change being retried ("retrying (attempt n of m)") and its final outcome, and the subscriber
/// stops the retries (audited; the host makes no further attempt); the console edits a unit's tags by the API's grammar.
/// Each page is checked by axe as it is.
/// </summary>
[NonParallelizable]
public class RetryAndTagsTests
{
    private const string AlicePassword = "alice-password-1";

    [SetUp]
    public void UseSqlite() => TestServer.DatabaseKind.Value = "sqlite";

    [TearDown]
    public void Reset() => TestServer.Configure.Value = null;

    private static async Task<FleetUnit> StartAliceAsync(TestServer server)
    {
        await server.Store.Accounts.UpsertSubscriberAsync("alice", PasswordHasher.Hash(AlicePassword));
        using var client = server.Operator();
        var identity = server.Identity(1);
        await client.RegisterAsync(TestServer.Registration(identity) with { Subscriber = "alice" }, CancellationToken.None);
        var unit = await server.Fleet.AddUnitAsync(identity, CancellationToken.None);
        server.Fleet.Start(unit);
        await server.WaitReadyAsync(unit);
        return unit;
    }

    /// <summary>Stores a revision the unit refuses (past the host's checks, as when unit and host disagree) and tells the unit.</summary>
    private static async Task<long> FailingRevisionAsync(TestServer server, string mac)
    {
        var good = JsonSerializer.Deserialize((await server.Store.ServiceConfigs.LatestUnitConfigAsync(mac))!.Document, ProtocolJson.Default.ServiceConfiguration)!;
        var bad = good with { Firewall = good.Firewall with { PortForwards = [new PortForward("sctp", 9, "192.168.10.5", 9)] } };
        var revision = await server.Store.ServiceConfigs.AddUnitConfigAsync(mac, bad, "subscriber");
        using var client = server.Operator();
        await client.ForceCheckAsync(new ForceCheckRequest([mac], null), CancellationToken.None);
        return revision;
    }

    private static async Task LogInAsync(IPage page)
    {
        await page.GotoAsync("/portal");
        await page.GetByLabel("Name").FillAsync("alice");
        await page.GetByLabel("Password").FillAsync(AlicePassword);
        await page.GetByRole(AriaRole.Button, new() { Name = "Log in" }).ClickAsync();
    }

    [Test]
    public async Task The_subscriber_sees_a_failed_change_retrying_and_stops_the_retries()
    {
        TestServer.Configure.Value = o => o.ConfigRetryBackoffSeconds = 86_400; // no retry comes during the test by itself
        await using var server = await TestServer.StartAsync();
        var alice = await StartAliceAsync(server);
        var bad = await FailingRevisionAsync(server, alice.Mac);

        await using var browser = await Browser.OpenAsync(server.Url, 390, 844);
        var page = browser.Page;
        await LogInAsync(page);
        var row = page.Locator($"#revision-{bad}");
        await Expect(row).ToHaveAttributeAsync("data-status", ConfigStatus.Failed, new() { Timeout = 30_000 });
        await Expect(row).ToContainTextAsync("retrying (attempt 2 of 3)");
        var cancel = page.Locator("#cancel-retry");
        await Expect(cancel).ToBeVisibleAsync();
        Assert.That(await AccessibilityTests.ViolationsAsync(page, "portal unit, retrying"), Is.Empty);

        await cancel.GetByRole(AriaRole.Button, new() { Name = $"Stop retrying revision {bad}" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync($"No further attempt of revision {bad}");
        await Expect(page.Locator($"#revision-{bad}")).ToContainTextAsync("further attempts cancelled by you after attempt 1 of 3 (final)");
        await Expect(page.Locator("#cancel-retry")).ToHaveCountAsync(0);
        Assert.That(await AccessibilityTests.ViolationsAsync(page, "portal unit, retry cancelled"), Is.Empty);
        await browser.ScreenshotAsync("portal-retry-cancelled");

        var audit = (await server.Store.ListAuditAsync(50)).Where(a => a.Action == "unit.service-config.retry-cancel").ToList();
        Assert.That(audit.Select(a => (a.Actor, a.Target)), Is.EqualTo(new[] { ("subscriber:alice", (string?)alice.Mac) }), "one audit entry, by the subscriber");
        Assert.That(await server.Store.ConfigRetries.RetryableUnitConfigAsync(alice.Mac, 3), Is.Null, "the host has nothing to retry");
        // the backoff passed: the host still makes no further attempt at the unit's next ready report
        using (var c = server.Store.Database.Open())
        using (var old = c.CreateCommand())
        {
            old.CommandText = $"UPDATE unit_configs SET updated_at = '2000-01-01T00:00:00.0000000Z' WHERE mac = '{alice.Mac}' AND revision = {bad}";
            old.ExecuteNonQuery();
        }
        var retries = server.App.Services.GetRequiredService<Tsunagu.Server.Subscribers.ConfigRetries>();
        Assert.That(await retries.AfterReadyAsync(alice.Mac, CancellationToken.None), Is.Null);
        Assert.That(await server.Store.ServiceConfigs.LatestUnitConfigRevisionAsync(alice.Mac), Is.EqualTo(bad), "no attempt after the cancel");

    }

    [Test]
    public async Task The_portal_shows_each_attempt_of_a_failing_change_and_its_final_outcome()
    {
        TestServer.Configure.Value = o => o.ConfigRetryBackoffSeconds = 0; // retried at each ready report
        await using var server = await TestServer.StartAsync();
        var alice = await StartAliceAsync(server);
        var bad = await FailingRevisionAsync(server, alice.Mac);

        await using var browser = await Browser.OpenAsync(server.Url);
        var page = browser.Page;
        await LogInAsync(page);
        // the first revision and its two retries fail; the last says so and is not retried again
        var last = page.Locator($"#revision-{bad + 2}");
        await Expect(last).ToHaveAttributeAsync("data-status", ConfigStatus.Failed, new() { Timeout = 60_000 });
        await Expect(last).ToContainTextAsync("failed on the last attempt (3 of 3); not retried again (final)");
        await Expect(page.Locator($"#revision-{bad}")).ToContainTextAsync("failed");
        await Expect(page.Locator("#cancel-retry")).ToHaveCountAsync(0);
        Assert.That(await AccessibilityTests.ViolationsAsync(page, "portal unit, change given up"), Is.Empty);
        var rows = (await server.Store.ServiceConfigs.ListUnitConfigsAsync(alice.Mac)).Where(r => r.Revision >= bad).ToList();
        Assert.That(rows.Select(r => (r.Attempt, r.Status)), Is.EqualTo(new[] { (1L, ConfigStatus.Failed), (2L, ConfigStatus.Failed), (3L, ConfigStatus.Failed) }),
            "three attempts in all, no fourth");
    }

    [Test]
    public async Task An_operator_edits_a_units_tags_from_its_page_by_the_apis_grammar()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        await using var browser = await Browser.OpenAsync(server.Url);
        var page = browser.Page;
        await ConsoleTests.LogInOperatorAsync(page);
        await page.GotoAsync($"/console/units/{mac}");
        await Expect(page.Locator("#unit-tags")).ToHaveTextAsync("none");
        await page.Locator("#tags-edit summary").ClickAsync();
        Assert.That(await AccessibilityTests.ViolationsAsync(page, "console unit, tags form"), Is.Empty);

        var field = page.GetByLabel("Tags", new() { Exact = true });
        await field.FillAsync("region:kanto  beta lab beta");
        await page.Locator("#tags-save").ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync($"Tags of {mac}: beta lab region:kanto.");
        await Expect(page.Locator("#unit-tags")).ToHaveTextAsync("beta lab region:kanto");
        Assert.That(await server.Store.Fleet.GetTagsAsync(mac), Is.EqualTo(new[] { "beta", "lab", "region:kanto" }));
        Assert.That((await server.Store.ListAuditAsync(20)).Count(a => a.Action == "unit.tags" && a.Target == mac && a.Detail == "beta lab region:kanto"), Is.EqualTo(1));

        // tags the grammar refuses change nothing and say why
        foreach (var wrong in new[] { "Upper", "bad\u0007bell", "-dash", new string('a', 65), string.Join(' ', Enumerable.Range(0, 33).Select(i => $"t{i}")) })
        {
            var audit = (await server.Store.ListAuditAsync(500)).Count;
            if (await page.Locator("#tags-edit[open]").CountAsync() == 0) { await page.Locator("#tags-edit summary").ClickAsync(); }
            await field.FillAsync(wrong);
            await page.Locator("#tags-save").ClickAsync();
            await Expect(page.GetByRole(AriaRole.Alert)).ToContainTextAsync("Nothing was changed: tags:");
            Assert.That(await server.Store.Fleet.GetTagsAsync(mac), Is.EqualTo(new[] { "beta", "lab", "region:kanto" }), wrong);
            Assert.That(await server.Store.ListAuditAsync(500), Has.Count.EqualTo(audit), wrong);
        }

        // empty clears them
        if (await page.Locator("#tags-edit[open]").CountAsync() == 0) { await page.Locator("#tags-edit summary").ClickAsync(); }
        await field.FillAsync("");
        await page.Locator("#tags-save").ClickAsync();
        await Expect(page.Locator("#unit-tags")).ToHaveTextAsync("none");
        Assert.That(await server.Store.Fleet.GetTagsAsync(mac), Is.Empty);
    }
}
