using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Playwright;
using Tsunagu.Cli.Fleet;
using Tsunagu.IntegrationTests;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;
using static Microsoft.Playwright.Assertions;

namespace Tsunagu.BrowserTests;

/// <summary>The subscriber portal in a real browser (patent 0069-0070): own unit only, changes go provisional -> applied -> final.</summary>
[NonParallelizable]
public class PortalTests
{
    private const string AlicePassword = "alice-password-1";

    [SetUp]
    public void UseSqlite() => TestServer.DatabaseKind.Value = "sqlite";

    private static async Task<(FleetUnit Alice, FleetUnit Bob)> StartTwoSubscribersAsync(TestServer server)
    {
        await server.Store.Accounts.UpsertSubscriberAsync("alice", PasswordHasher.Hash(AlicePassword));
        await server.Store.Accounts.UpsertSubscriberAsync("bob", PasswordHasher.Hash("bob-password-12"));
        using var client = server.Operator();
        var units = new List<FleetUnit>();
        foreach (var (index, subscriber) in new[] { (1, "alice"), (2, "bob") })
        {
            var identity = server.Identity(index);
            await client.RegisterAsync(TestServer.Registration(identity) with { Subscriber = subscriber }, CancellationToken.None);
            var unit = await server.Fleet.AddUnitAsync(identity, CancellationToken.None);
            server.Fleet.Start(unit);
            units.Add(unit);
        }
        foreach (var unit in units) { await server.WaitReadyAsync(unit); }
        return (units[0], units[1]);
    }

    private static async Task LogInAsync(IPage page, string name, string password)
    {
        await page.GotoAsync("/portal");
        await Expect(page).ToHaveURLAsync(new Regex("/portal/login"));
        await page.GetByLabel("Name").FillAsync(name);
        await page.GetByLabel("Password").FillAsync(password);
        await page.GetByRole(AriaRole.Button, new() { Name = "Log in" }).ClickAsync();
    }

    [Test]
    public async Task Subscriber_adds_a_port_forward_and_sees_it_become_final()
    {
        await using var server = await TestServer.StartAsync();
        var (alice, _) = await StartTwoSubscribersAsync(server);
        var before = (await server.Store.ServiceConfigs.ListUnitConfigsAsync(alice.Mac)).Count;

        await using var browser = await Browser.OpenAsync(server.Url, 390, 844); // a phone
        var page = browser.Page;
        await LogInAsync(page, "alice", AlicePassword);
        await Expect(page).ToHaveURLAsync(new Regex($"/portal/units/{Regex.Escape(alice.Mac)}$"));
        await Expect(page.Locator("#unit-online")).ToHaveTextAsync("yes", new() { Timeout = 30_000 });
        await Expect(page.Locator("#main")).ToContainTextAsync("install pattern pattern-2");

        var form = page.Locator("#add-forward");
        await form.GetByLabel("Protocol").SelectOptionAsync("tcp");
        await form.GetByLabel("Outside port").FillAsync("2222");
        await form.GetByLabel("LAN address").FillAsync("192.168.10.30");
        await form.GetByLabel("LAN port").FillAsync("22");
        await form.GetByRole(AriaRole.Button, new() { Name = "Add port forward" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync($"revision {before + 1}");

        var revision = page.Locator($"#revision-{before + 1}");
        await Expect(revision).ToHaveAttributeAsync("data-status", ConfigStatus.Final, new() { Timeout = 30_000 });
        await Expect(page.Locator("#forward-table")).ToContainTextAsync("192.168.10.30:22");
        await browser.ScreenshotAsync("portal-unit-phone");

        var stored = (await server.Store.ServiceConfigs.ListUnitConfigsAsync(alice.Mac)).Last();
        Assert.That((stored.Revision, stored.Status, stored.Origin), Is.EqualTo(((long)before + 1, ConfigStatus.Final, "subscriber")));
        Assert.That((await server.Store.Units.GetUnitAsync(alice.Mac))?.AppliedConfigRevision, Is.EqualTo(before + 1), "the unit applied the subscriber's revision");

        // a change the rules refuse is shown, and nothing is saved
        await form.GetByLabel("Outside port").FillAsync("8081");
        await form.GetByLabel("LAN address").FillAsync("not-an-address");
        await form.GetByLabel("LAN port").FillAsync("80");
        await form.GetByRole(AriaRole.Button, new() { Name = "Add port forward" }).ClickAsync();
        await Expect(page.Locator("#change-problem")).ToContainTextAsync("internalAddress");
        Assert.That(await server.Store.ServiceConfigs.ListUnitConfigsAsync(alice.Mac), Has.Count.EqualTo(before + 1));
    }

    [Test]
    public async Task A_revision_the_unit_cannot_apply_shows_as_failed_with_the_units_reason_and_the_next_change_starts_from_the_last_good_one()
    {
        await using var server = await TestServer.StartAsync();
        var (alice, _) = await StartTwoSubscribersAsync(server);
        // a revision the unit refuses (written past the host's own checks, as when unit and host disagree on a rule)
        var good = JsonSerializer.Deserialize((await server.Store.ServiceConfigs.LatestUnitConfigAsync(alice.Mac))!.Document, ProtocolJson.Default.ServiceConfiguration)!;
        var bad = good with { Firewall = good.Firewall with { PortForwards = [new PortForward("sctp", 9, "192.168.10.5", 9)] } };
        var badRevision = await server.Store.ServiceConfigs.AddUnitConfigAsync(alice.Mac, bad, "subscriber");
        using (var client = server.Operator())
        {
            await client.ForceCheckAsync(new ForceCheckRequest([alice.Mac], null), CancellationToken.None);
        }

        await using var browser = await Browser.OpenAsync(server.Url);
        var page = browser.Page;
        await LogInAsync(page, "alice", AlicePassword);
        var failed = page.Locator($"#revision-{badRevision}");
        await Expect(failed).ToHaveAttributeAsync("data-status", ConfigStatus.Failed, new() { Timeout = 30_000 });
        await Expect(failed).ToContainTextAsync("'sctp' must be 'tcp' or 'udp'");
        await Expect(page.Locator("#forward-table")).Not.ToContainTextAsync("sctp");

        var form = page.Locator("#add-forward");
        await form.GetByLabel("Outside port").FillAsync("2222");
        await form.GetByLabel("LAN address").FillAsync("192.168.10.30");
        await form.GetByLabel("LAN port").FillAsync("22");
        await form.GetByRole(AriaRole.Button, new() { Name = "Add port forward" }).ClickAsync();
        await Expect(page.Locator($"#revision-{badRevision + 1}")).ToHaveAttributeAsync("data-status", ConfigStatus.Final, new() { Timeout = 30_000 });
        await browser.ScreenshotAsync("portal-failed-then-final");
        var final = JsonSerializer.Deserialize((await server.Store.ServiceConfigs.LatestUnitConfigAsync(alice.Mac))!.Document, ProtocolJson.Default.ServiceConfiguration)!;
        Assert.That(final.Firewall.PortForwards.Select(f => f.Protocol), Has.No.Member("sctp"), "the failed revision is not carried into the next change");
        Assert.That(final.Firewall.PortForwards, Has.Count.EqualTo(good.Firewall.PortForwards.Count + 1));
    }

    [Test]
    public async Task The_portal_offers_only_the_fields_the_contract_allows_and_refuses_a_forged_change_to_the_others()
    {
        await using var server = await TestServer.StartAsync();
        await server.Store.Accounts.UpsertSubscriberAsync("alice", PasswordHasher.Hash(AlicePassword));
        await server.Store.Accounts.UpsertContractAsync("filter-only", ["contentFilter.enabled", "contentFilter.blockedDomains"]);
        await server.Store.Accounts.SetSubscriberContractAsync("alice", "filter-only");
        using (var client = server.Operator())
        {
            await client.RegisterAsync(TestServer.Registration(server.Identity(1)) with { Subscriber = "alice" }, CancellationToken.None);
        }
        var mac = server.Identity(1).Mac;
        var before = (await server.Store.ServiceConfigs.ListUnitConfigsAsync(mac)).Count;

        await using var browser = await Browser.OpenAsync(server.Url);
        var page = browser.Page;
        await LogInAsync(page, "alice", AlicePassword);
        await Expect(page).ToHaveURLAsync(new Regex($"/portal/units/{Regex.Escape(mac)}$"));
        await Expect(page.Locator("#add-forward")).ToHaveCountAsync(0);
        await Expect(page.Locator("#forwards-operator")).ToBeVisibleAsync();
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Save LAN range" })).ToHaveCountAsync(0);
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Add peer" })).ToHaveCountAsync(0);
        await browser.ScreenshotAsync("portal-contract-filter-only");

        // a form the page does not offer, posted anyway with a valid antiforgery token: refused, nothing stored
        var token = await page.EvaluateAsync<string?>("() => document.querySelector('input[name=__csrf]')?.value ?? null");
        Assert.That(token, Is.Not.Null);
        await page.APIRequest.PostAsync($"/portal/units/{mac}?handler=AddForward", new()
        {
            Form = page.APIRequest.CreateFormData().Set("__csrf", token!).Set("Forward.Protocol", "tcp").Set("Forward.ExternalPort", "2222")
                .Set("Forward.InternalAddress", "192.168.10.30").Set("Forward.InternalPort", "22"),
        });
        Assert.That(await server.Store.ServiceConfigs.ListUnitConfigsAsync(mac), Has.Count.EqualTo(before), "a port forward is not the subscriber's under this contract");

        // what the contract allows still works
        await page.Locator("#BlockedSites").FillAsync("games.example");
        await page.GetByRole(AriaRole.Button, new() { Name = "Save filter" }).ClickAsync();
        await Expect(page.Locator("p.notice")).ToContainTextAsync("Change saved");
        Assert.That((await server.Store.ServiceConfigs.ListUnitConfigsAsync(mac)).Skip(before).Select(c => c.Origin), Is.EqualTo(new[] { "subscriber" }));
        Assert.That((await server.Store.ServiceConfigs.ListUnitConfigsAsync(mac))[^1].Document, Does.Contain("games.example"));
    }

    [Test]
    public async Task Subscriber_cannot_open_another_units_page_nor_the_console()
    {
        await using var server = await TestServer.StartAsync();
        var (alice, bob) = await StartTwoSubscribersAsync(server);
        await using var browser = await Browser.OpenAsync(server.Url);
        var page = browser.Page;
        await LogInAsync(page, "alice", AlicePassword);
        await Expect(page).ToHaveURLAsync(new Regex($"/portal/units/{Regex.Escape(alice.Mac)}$"));

        var response = await page.GotoAsync($"/portal/units/{bob.Mac}");
        Assert.That(response!.Status, Is.EqualTo(404));
        await Expect(page.Locator("#not-found")).ToBeVisibleAsync();
        await Expect(page.Locator("#main")).Not.ToContainTextAsync("IT-0002");
        await browser.ScreenshotAsync("portal-other-unit-refused");

        // a forged change to bob's unit is refused too (the form token is alice's, the unit is not)
        var token = await page.EvaluateAsync<string?>("() => document.querySelector('input[name=__csrf]')?.value ?? null");
        Assert.That(token, Is.Not.Null, "every form carries an antiforgery token");
        var forged = await page.APIRequest.PostAsync($"/portal/units/{bob.Mac}?handler=AddForward", new()
        {
            Form = page.APIRequest.CreateFormData().Set("__csrf", token!).Set("Forward.Protocol", "tcp").Set("Forward.ExternalPort", "2222")
                .Set("Forward.InternalAddress", "192.168.10.30").Set("Forward.InternalPort", "22"),
        });
        Assert.That(forged.Status, Is.EqualTo(404));
        var withoutToken = await page.APIRequest.PostAsync($"/portal/units/{alice.Mac}?handler=AddForward", new()
        {
            Form = page.APIRequest.CreateFormData().Set("Forward.Protocol", "tcp").Set("Forward.ExternalPort", "2222")
                .Set("Forward.InternalAddress", "192.168.10.30").Set("Forward.InternalPort", "22"),
        });
        Assert.That(withoutToken.Status, Is.EqualTo(400), "a form without the antiforgery token is refused");
        Assert.That((await server.Store.ServiceConfigs.ListUnitConfigsAsync(bob.Mac)).All(c => c.Origin != "subscriber") &&
                    (await server.Store.ServiceConfigs.ListUnitConfigsAsync(alice.Mac)).All(c => c.Origin != "subscriber"), Is.True, "no change was saved");

        // the subscriber's session does not open the operator console
        await page.GotoAsync("/console");
        await Expect(page).ToHaveURLAsync(new Regex("/console/login"));
    }

    [Test]
    public async Task Log_in_attempts_are_rate_limited()
    {
        TestServer.Configure.Value = o => o.LoginAttemptsPerMinute = 3;
        try
        {
            await using var server = await TestServer.StartAsync();
            await server.Store.Accounts.UpsertSubscriberAsync("alice", PasswordHasher.Hash(AlicePassword));
            await using var browser = await Browser.OpenAsync(server.Url);
            var page = browser.Page;
            // the limit counts in one-minute windows: start early enough in a window to stay inside it
            while (DateTime.UtcNow.Second > 45) { await Task.Delay(500); }
            for (var i = 0; i < 3; i++)
            {
                await LogInAsync(page, "alice", "wrong-password");
                await Expect(page.GetByRole(AriaRole.Alert)).ToContainTextAsync("Name or password is wrong");
            }
            await LogInAsync(page, "alice", AlicePassword);
            await Expect(page.GetByRole(AriaRole.Alert)).ToContainTextAsync("Too many log in attempts");
            await Expect(page).ToHaveURLAsync(new Regex("/portal/login"));
        }
        finally
        {
            TestServer.Configure.Value = null;
        }
    }

    [Test]
    public async Task The_filter_shows_the_offered_categories_by_title_and_saves_a_ticked_one()
    {
        TestServer.Configure.Value = o => o.FilterCategories = [new() { Name = "ads", Title = "Advertising" }, new() { Name = "malware", Title = "Malware" }];
        try
        {
            await using var server = await TestServer.StartAsync();
            await server.Store.Accounts.UpsertSubscriberAsync("alice", PasswordHasher.Hash(AlicePassword));
            var mac = server.Identity(1).Mac;
            using (var client = server.Operator())
            {
                await client.RegisterAsync(TestServer.Registration(server.Identity(1)) with { Subscriber = "alice" }, CancellationToken.None);
                var first = JsonSerializer.Deserialize((await server.Store.ServiceConfigs.LatestUnitConfigAsync(mac))!.Document, ProtocolJson.Default.ServiceConfiguration)!;
                await client.SendJsonAsync(HttpMethod.Put, $"/api/v1/units/{mac}/service-config",
                    first with { ContentFilter = first.ContentFilter with { Categories = ["malware"] } }, CancellationToken.None);
            }

            await using var browser = await Browser.OpenAsync(server.Url);
            var page = browser.Page;
            await LogInAsync(page, "alice", AlicePassword);
            await Expect(page).ToHaveURLAsync(new Regex($"/portal/units/{Regex.Escape(mac)}$"));
            await Expect(page.GetByLabel("Malware")).ToBeCheckedAsync();
            await Expect(page.GetByLabel("Advertising")).Not.ToBeCheckedAsync();
            await page.GetByLabel("Advertising").CheckAsync();
            await page.GetByRole(AriaRole.Button, new() { Name = "Save filter" }).ClickAsync();
            await Expect(page.Locator("p.notice")).ToContainTextAsync("Change saved");
            await Expect(page.GetByLabel("Advertising")).ToBeCheckedAsync();
            var saved = JsonSerializer.Deserialize((await server.Store.ServiceConfigs.LatestUnitConfigAsync(mac))!.Document, ProtocolJson.Default.ServiceConfiguration)!;
            Assert.That(saved.ContentFilter.Categories, Is.EqualTo(new[] { "malware", "ads" }));
        }
        finally
        {
            TestServer.Configure.Value = null;
        }
    }
}
