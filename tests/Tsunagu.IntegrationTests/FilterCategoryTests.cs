using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Tsunagu.Cli.Factory;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Catalogue;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The content filter's categories on the server (docs/services.md): the server offers some (option FilterCategories);
/// the operator API, the console, the subscriber API and the portal store only those (or one the replaced configuration
/// already chose), and refuse any other naming the field, storing nothing.
/// </summary>
[NonParallelizable]
public class FilterCategoryTests
{
    private const string Refusal = "'x' is not a category this operator offers; offered: ads, malware, adult";

    [SetUp]
    public void SetUp()
    {
        TestServer.DatabaseKind.Value = "sqlite";
        TestServer.Configure.Value = o => o.FilterCategories =
        [
            new() { Name = "ads", Title = "Advertising" }, new() { Name = "malware", Title = "Malware & phishing" }, new() { Name = "adult", Title = "Adult content" },
        ];
    }

    [TearDown]
    public void TearDown() => TestServer.Configure.Value = null;

    private static ServiceConfiguration Choosing(ServiceConfiguration c, IReadOnlyList<string>? categories) =>
        c with { ContentFilter = c.ContentFilter with { Categories = categories } };

    private static Task<HttpResponseMessage> PortalFilter(HttpClient portal, string mac, string csrf, long basis, params string[] categories) =>
        portal.PostAsync($"/portal/units/{mac}?handler=Filter", new FormUrlEncodedContent(
            new Dictionary<string, string> { ["__csrf"] = csrf, ["Basis"] = $"{basis}", ["FilterEnabled"] = "true", ["BlockedSites"] = "ads.example\nmalware.example", ["CategoriesShown"] = "true" }
                .Concat(categories.Select(c => new KeyValuePair<string, string>("Categories", c)))));

    private static string Csrf(string page) => WebUtility.HtmlDecode(Regex.Match(page, "name=\"__csrf\"[^>]*value=\"([^\"]+)\"").Groups[1].Value);

    [Test]
    public async Task Offered_categories_reach_the_unit_through_the_operator_api_the_subscriber_api_and_the_portal()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Operator();
        await client.SendJsonAsync(HttpMethod.Post, "/api/v1/subscribers", new NewSubscriber("alice", "alice-password"), CancellationToken.None);
        await client.RegisterAsync(TestServer.Registration(server.Identity(1)) with { Subscriber = "alice" }, CancellationToken.None);
        var unit = await server.Fleet.AddUnitAsync(server.Identity(1), CancellationToken.None);
        server.Fleet.Start(unit);
        await server.WaitReadyAsync(unit);
        await server.WaitForAsync(() => unit.Supervisor.Context.Push?.IsConnected == true, "the unit listening for pushes");
        var mac = unit.Mac;
        async Task<IReadOnlyList<string>?> OnUnitAsync(long revision)
        {
            await server.WaitForAsync(async () => (await server.Store.ServiceConfigs.ListUnitConfigsAsync(mac)).Single(r => r.Revision == revision).Status == "final", $"revision {revision} final");
            var applied = File.ReadAllText(Path.Combine(unit.Hardware.Data.Root, "services", "current", "configuration.json"));
            return JsonSerializer.Deserialize(applied, ProtocolJson.Default.ServiceConfiguration)!.ContentFilter.Categories;
        }

        // the operator
        var first = JsonSerializer.Deserialize((await server.Store.ServiceConfigs.LatestUnitConfigAsync(mac))!.Document, ProtocolJson.Default.ServiceConfiguration)!;
        await client.SendJsonAsync(HttpMethod.Put, $"/api/v1/units/{mac}/service-config", Choosing(first, ["malware"]), CancellationToken.None);
        var revision = await server.Store.ServiceConfigs.LatestUnitConfigRevisionAsync(mac);
        Assert.That(await OnUnitAsync(revision), Is.EqualTo(new[] { "malware" }));

        // the subscriber, through the API (the default contract lets them choose categories)
        using var alice = server.PinnedHttp();
        var token = (await (await alice.PostAsJsonAsync("/api/v1/subscriber/token", new SubscriberLogin("alice", "alice-password"))).Content.ReadFromJsonAsync<TokenResponse>())!;
        alice.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token.Token);
        var view = (await alice.GetFromJsonAsync<SubscriberConfigView>($"/api/v1/subscriber/units/{mac}/service-config"))!;
        var put = await alice.PutAsJsonAsync($"/api/v1/subscriber/units/{mac}/service-config", Choosing(view.Configuration!, ["malware", "ads"]));
        Assert.That(put.StatusCode, Is.EqualTo(HttpStatusCode.OK), await put.Content.ReadAsStringAsync());
        Assert.That(await OnUnitAsync((await put.Content.ReadFromJsonAsync<SubscriberChangeView>())!.Revision), Is.EqualTo(new[] { "malware", "ads" }));

        // the subscriber, through the portal: unticking malware and ticking adult
        using var portal = await SubscriberIfMatchTests.PortalSession(server, "alice", "alice-password");
        var page = await portal.GetStringAsync($"/portal/units/{mac}");
        revision = await server.Store.ServiceConfigs.LatestUnitConfigRevisionAsync(mac);
        using var saved = await PortalFilter(portal, mac, Csrf(page), revision, "ads", "adult");
        Assert.That(saved.StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        Assert.That(await portal.GetStringAsync($"/portal/units/{mac}"), Does.Contain("Change saved as revision"));
        Assert.That(await OnUnitAsync(revision + 1), Is.EqualTo(new[] { "ads", "adult" }), "the categories kept in their order, the new one after them");
        Assert.That((await server.Store.ServiceConfigs.ListUnitConfigsAsync(mac))[^1].Origin, Is.EqualTo("subscriber"));
    }

    [Test]
    public async Task A_category_the_server_does_not_offer_is_refused_everywhere_naming_the_field_and_nothing_is_stored()
    {
        var (server, client, alice, mac) = await SubscriberChangeTests.AliceAsync();
        await using var _ = server;
        using var __ = client;
        using var ___ = alice;
        var stored = JsonSerializer.Deserialize((await server.Store.ServiceConfigs.LatestUnitConfigAsync(mac))!.Document, ProtocolJson.Default.ServiceConfiguration)!;
        var unknown = Choosing(stored, ["ads", "x"]);
        var unknownJson = JsonSerializer.Serialize(unknown, ProtocolJson.Default.ServiceConfiguration);
        async Task<string> Unchanged(Func<Task<string>> refuse, string why)
        {
            var document = (await server.Store.ServiceConfigs.LatestUnitConfigAsync(mac))!.Document;
            var named = (await server.Store.ServiceConfigs.GetServiceConfigDocumentAsync("default"))!.Document;
            var before = HostileInputTests.Snapshot(server);
            var said = await refuse();
            Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), $"{why}: refused, but the database changed");
            Assert.That((await server.Store.ServiceConfigs.LatestUnitConfigAsync(mac))!.Document, Is.EqualTo(document), $"{why}: the unit's configuration byte for byte");
            Assert.That((await server.Store.ServiceConfigs.GetServiceConfigDocumentAsync("default"))!.Document, Is.EqualTo(named), $"{why}: the named configuration byte for byte");
            return said;
        }
        static async Task<string> Problem400(Func<Task<HttpResponseMessage>> send, string field)
        {
            using var response = await send();
            var body = await response.Content.ReadAsStringAsync();
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), body);
            var problem = JsonNode.Parse(body)!;
            Assert.That(problem["field"]?.GetValue<string>(), Is.EqualTo(field), body);
            return problem["detail"]!.GetValue<string>();
        }

        // the operator API: the unit's configuration and a named one (the refusal is caught inside, so that Unchanged's
        // comparisons run after it)
        async Task<OperatorApiException> RefusedByApi(string path, string why)
        {
            OperatorApiException? refused = null;
            await Unchanged(async () =>
            {
                refused = Assert.ThrowsAsync<OperatorApiException>(() => client.SendJsonAsync(HttpMethod.Put, path, unknown, CancellationToken.None));
                return "";
            }, why);
            return refused!;
        }
        var e = await RefusedByApi($"/api/v1/units/{mac}/service-config", "operator API, unit");
        Assert.That(e.Status, Is.EqualTo(400));
        Assert.That(JsonNode.Parse(e.Body!)!["detail"]!.GetValue<string>(), Is.EqualTo("contentFilter.categories[1]: " + Refusal));
        Assert.That(JsonNode.Parse(e.Body!)!["field"]!.GetValue<string>(), Is.EqualTo("contentFilter.categories[1]"));
        e = await RefusedByApi($"{Routes.Prefix}/service-configs/default", "operator API, named");
        Assert.That((e.Status, JsonNode.Parse(e.Body!)!["detail"]!.GetValue<string>()), Is.EqualTo((400, "contentFilter.categories[1]: " + Refusal)));

        // the subscriber API
        Assert.That(await Unchanged(() => Problem400(() => alice.PutAsync($"/api/v1/subscriber/units/{mac}/service-config",
            new StringContent(unknownJson, Encoding.UTF8, "application/json")), "contentFilter.categories[1]"), "subscriber API"), Is.EqualTo("contentFilter.categories[1]: " + Refusal));

        // the console: the unit's common form, its whole document, the services page
        using var admin = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        var revision = await server.Store.ServiceConfigs.LatestUnitConfigRevisionAsync(mac);
        var form = ConsoleServiceConfigTests.Fields(revision, "ads.example").Select(f => f).Append(new("categoriesShown", "yes"))
            .Append(new("categories", "malware")).Append(new("categories", "x"));
        await Unchanged(async () =>
        {
            using var r = await RoleTests.PostForm(admin, $"/console/units/{mac}?handler=ServiceConfig", form);
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
            return "";
        }, "console, common form");
        Assert.That(WebUtility.HtmlDecode(await admin.GetStringAsync($"/console/units/{mac}")), Does.Contain("Nothing was stored: contentFilter.categories[1]: " + Refusal));
        await Unchanged(async () =>
        {
            using var r = await RoleTests.PostForm(admin, $"/console/units/{mac}?handler=ServiceConfigJson", ("baseRevision", $"{revision}"), ("document", unknownJson));
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
            return "";
        }, "console, whole document");
        Assert.That(WebUtility.HtmlDecode(await admin.GetStringAsync($"/console/units/{mac}")), Does.Contain("Nothing was stored: contentFilter.categories[1]: " + Refusal));
        var digest = (await server.Store.ServiceConfigs.GetServiceConfigDocumentAsync("default"))!.Digest;
        await Unchanged(async () =>
        {
            using var r = await RoleTests.PostForm(admin, "/console/services?handler=Config", ("name", "default"), ("baseDigest", digest), ("document", unknownJson));
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
            Assert.That(WebUtility.HtmlDecode(await r.Content.ReadAsStringAsync()), Does.Contain("Nothing was changed: contentFilter.categories[1]: " + Refusal));
            return "";
        }, "console, services page");

        // the portal
        using var portal = await SubscriberIfMatchTests.PortalSession(server, "alice", "alice-password");
        var page = await portal.GetStringAsync($"/portal/units/{mac}");
        await Unchanged(async () =>
        {
            using var r = await PortalFilter(portal, mac, Csrf(page), revision, "ads", "x");
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
            return "";
        }, "portal");
        Assert.That(WebUtility.HtmlDecode(await portal.GetStringAsync($"/portal/units/{mac}")), Does.Contain("Not changed: contentFilter.categories[1]: " + Refusal));
    }

    [Test]
    public async Task The_pages_show_the_offered_categories_and_one_no_longer_offered_stays_chosen()
    {
        var (server, client, alice, mac) = await SubscriberChangeTests.AliceAsync();
        await using var _ = server;
        using var __ = client;
        using var ___ = alice;
        // chosen when "gambling" was offered (stored as it was then); the server offers it no more
        var latest = JsonSerializer.Deserialize((await server.Store.ServiceConfigs.LatestUnitConfigAsync(mac))!.Document, ProtocolJson.Default.ServiceConfiguration)!;
        await client.SendJsonAsync(HttpMethod.Put, $"/api/v1/units/{mac}/service-config", Choosing(latest, ["malware"]), CancellationToken.None);
        await server.Store.ServiceConfigs.AddUnitConfigAsync(mac, Choosing(latest, ["gambling", "malware"]));

        using var portal = await SubscriberIfMatchTests.PortalSession(server, "alice", "alice-password");
        var page = WebUtility.HtmlDecode(await portal.GetStringAsync($"/portal/units/{mac}"));
        string Box(string name) => Regex.Match(page, $"<input type=\"checkbox\" id=\"category-{name}\"[^>]*>[^<]*").Value;
        Assert.That(Box("ads"), Does.Not.Contain("checked").And.Contain("Advertising"));
        Assert.That(Box("malware"), Does.Contain("checked").And.Contain("Malware & phishing"));
        Assert.That(Box("adult"), Does.Not.Contain("checked").And.Contain("Adult content"));
        Assert.That(Box("gambling"), Does.Contain("checked").And.Contain("gambling (no longer offered by your provider)"));

        // saving the filter keeps it (and its place) while ticked
        var revision = await server.Store.ServiceConfigs.LatestUnitConfigRevisionAsync(mac);
        using (var saved = await PortalFilter(portal, mac, Csrf(page), revision, "ads", "gambling", "malware"))
        {
            Assert.That(saved.StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        }
        async Task<IReadOnlyList<string>?> Stored() =>
            JsonSerializer.Deserialize((await server.Store.ServiceConfigs.LatestUnitConfigAsync(mac))!.Document, ProtocolJson.Default.ServiceConfiguration)!.ContentFilter.Categories;
        Assert.That(await Stored(), Is.EqualTo(new[] { "gambling", "malware", "ads" }));
        // the operator may keep it too, not add another one the server does not offer
        var current = JsonSerializer.Deserialize((await server.Store.ServiceConfigs.LatestUnitConfigAsync(mac))!.Document, ProtocolJson.Default.ServiceConfiguration)!;
        await client.SendJsonAsync(HttpMethod.Put, $"/api/v1/units/{mac}/service-config", current with { Dns = current.Dns with { LocalDomain = "home" } }, CancellationToken.None);
        var e = Assert.ThrowsAsync<OperatorApiException>(() => client.SendJsonAsync(HttpMethod.Put, $"/api/v1/units/{mac}/service-config",
            Choosing(current, ["gambling", "malware", "ads", "dating"]), CancellationToken.None))!;
        Assert.That(e.Body, Does.Contain("contentFilter.categories[3]: 'dating' is not a category this operator offers"));

        // the console's unit form shows it the same way, and a save without touching the boxes keeps the list as it is
        using var admin = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        var console = WebUtility.HtmlDecode(await admin.GetStringAsync($"/console/units/{mac}"));
        Assert.That(console, Does.Match("value=\"gambling\" checked[^>]*><label[^>]*>gambling \\(no longer offered\\)"));
        Assert.That(console, Does.Match("value=\"ads\" checked[^>]*><label[^>]*>Advertising \\(ads\\)"));
        Assert.That(console, Does.Match("value=\"adult\"><label[^>]*>Adult content \\(adult\\)"));
        revision = await server.Store.ServiceConfigs.LatestUnitConfigRevisionAsync(mac);
        using (var r = await RoleTests.PostForm(admin, $"/console/units/{mac}?handler=ServiceConfig", ConsoleServiceConfigTests.Fields(revision, "ads.example")))
        {
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        }
        Assert.That(await Stored(), Is.EqualTo(new[] { "gambling", "malware", "ads" }), "a form without the boxes (an older page) keeps the categories");
        revision = await server.Store.ServiceConfigs.LatestUnitConfigRevisionAsync(mac);
        using (var r = await RoleTests.PostForm(admin, $"/console/units/{mac}?handler=ServiceConfig",
            ConsoleServiceConfigTests.Fields(revision, "ads.example").Append(new("categoriesShown", "yes")).Append(new("categories", "adult"))))
        {
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        }
        Assert.That(await Stored(), Is.EqualTo(new[] { "adult" }));
        Assert.That(WebUtility.HtmlDecode(await admin.GetStringAsync("/console/services")), Does.Contain("ads (Advertising), malware (Malware & phishing), adult (Adult content)"));
    }

    [Test]
    public async Task No_list_and_an_empty_list_are_the_same_to_a_contract_without_categories()
    {
        var (server, client, alice, mac) = await SubscriberChangeTests.AliceAsync();
        await using var _ = server;
        using var __ = client;
        using var ___ = alice;
        await client.SendJsonAsync(HttpMethod.Put, "/api/v1/contracts/filter-only", new ContractRequest(["contentFilter.enabled", "contentFilter.blockedDomains"]), CancellationToken.None);
        await client.SendJsonAsync(HttpMethod.Post, "/api/v1/subscribers", new NewSubscriber("alice", "alice-password", "filter-only"), CancellationToken.None);
        var current = (await alice.GetFromJsonAsync<SubscriberConfigView>($"/api/v1/subscriber/units/{mac}/service-config"))!.Configuration!;
        Assert.That(current.ContentFilter.Categories, Is.Null);
        var put = await alice.PutAsJsonAsync($"/api/v1/subscriber/units/{mac}/service-config", Choosing(current, []) with { ContentFilter = current.ContentFilter with { Categories = [], Enabled = false } });
        Assert.That(put.StatusCode, Is.EqualTo(HttpStatusCode.OK), await put.Content.ReadAsStringAsync());
        var refused = await alice.PutAsJsonAsync($"/api/v1/subscriber/units/{mac}/service-config", Choosing(current, ["ads"]));
        Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.Forbidden), await refused.Content.ReadAsStringAsync());
        Assert.That(await refused.Content.ReadAsStringAsync(), Does.Contain("contentFilter.categories"));

        // the portal shows what the provider chose without a box to change it
        await client.SendJsonAsync(HttpMethod.Put, $"/api/v1/units/{mac}/service-config", Choosing(current, ["adult"]), CancellationToken.None);
        using var portal = await SubscriberIfMatchTests.PortalSession(server, "alice", "alice-password");
        var page = WebUtility.HtmlDecode(await portal.GetStringAsync($"/portal/units/{mac}"));
        Assert.That(page, Does.Match("id=\"category-adult\"[^>]*checked[^>]*disabled|id=\"category-adult\"[^>]*disabled[^>]*checked"));
        Assert.That(page, Does.Contain("Your provider sets the categories under your contract."));
    }

    [Test]
    public void A_bad_category_option_refuses_the_start_naming_the_entry()
    {
        TestServer.Configure.Value = o => o.FilterCategories = [new() { Name = "ads", Title = "Advertising" }, new() { Name = "Bad Name", Title = "Bad" }];
        var e = Assert.ThrowsAsync<ArgumentException>(async () => await (await TestServer.StartAsync()).DisposeAsync())!;
        Assert.That(e.Message, Does.StartWith("Tsunagu:FilterCategories:1: Name 'Bad Name' is not a category name"));
        TestServer.Configure.Value = o => o.FilterCategories = [new() { Name = "ads", Title = "Advertising" }, new() { Name = "ads", Title = "Ads" }];
        Assert.That(Assert.ThrowsAsync<ArgumentException>(async () => await (await TestServer.StartAsync()).DisposeAsync())!.Message,
            Is.EqualTo("Tsunagu:FilterCategories:1: Name 'ads' is offered twice"));
        Assert.That(OfferedCategories.MaxOffered, Is.EqualTo(256));
    }
}
