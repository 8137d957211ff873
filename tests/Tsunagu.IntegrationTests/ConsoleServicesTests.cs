using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using Tsunagu.Cli.Factory;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Security;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The console's services page (Pages/Console/Services): named service configurations and contracts created and changed
/// by the API's rules, audit entries and roles, on each database; a change carries the digest of what the page showed, so
/// a document changed meanwhile is refused (409) rather than overwritten; every refused form is answered 400 or 409 with
/// the reason and changes nothing.
/// </summary>
[TestFixture("sqlite")]
[TestFixture("postgres")]
[NonParallelizable]
public class ConsoleServicesTests(string kind)
{
    private const string Path = "/console/services";

    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = kind;

    private static Task<HttpResponseMessage> Post(HttpClient session, string handler, params (string Key, string Value)[] form) =>
        RoleTests.PostForm(session, $"{Path}?handler={handler}", form);

    private static Task<string> Refused(TestServer server, HttpClient session, string handler, string why, HttpStatusCode status, params (string, string)[] form) =>
        Refused(server, session, handler, why, status, reasonOnPage: true, form);

    // reasonOnPage false: refused before the page's handler (a body over the request limit, a form the server will not read)
    private static async Task<string> Refused(TestServer server, HttpClient session, string handler, string why, HttpStatusCode status, bool reasonOnPage, params (string, string)[] form)
    {
        var before = HostileInputTests.Snapshot(server);
        var response = await Post(session, handler, form);
        var body = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(status), $"{handler} {why}: {body}");
        if (reasonOnPage) { Assert.That(body, Does.Contain("Nothing was changed: "), $"{handler} {why}: the reason is shown"); }
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), $"{handler} {why}: refused, but the database changed");
        return body;
    }

    /// <summary>The digest the page gives the change form of <paramref name="name"/> (a configuration's or a contract's).</summary>
    private static async Task<string> DigestOn(HttpClient session, string name)
    {
        var page = await session.GetStringAsync(Path);
        var m = Regex.Match(page, $"name=\"name\" value=\"{Regex.Escape(name)}\">\\s*<input type=\"hidden\" name=\"baseDigest\" value=\"([0-9a-f]{{64}})\"");
        Assert.That(m.Success, $"the page has a change form for {name}");
        return m.Groups[1].Value;
    }

    private static async Task<ServiceConfiguration?> Stored(OperatorClient client, string name) =>
        JsonSerializer.Deserialize(await client.SendAsync(HttpMethod.Get, $"{Routes.Prefix}/service-configs/{name}", null, CancellationToken.None), ProtocolJson.Default.ServiceConfiguration);

    private static string Json(ServiceConfiguration config) => JsonSerializer.Serialize(config, ProtocolJson.Default.ServiceConfiguration);

    [Test]
    public async Task Named_service_configurations_are_created_and_changed_from_the_console_and_a_change_made_meanwhile_is_not_overwritten()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Operator();
        using var admin = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        Assert.That(await admin.GetStringAsync("/console"), Does.Contain($"href=\"{Path}\""));
        var page = await admin.GetStringAsync(Path);
        Assert.That(page, Does.Contain("id=\"config-default\"").And.Contain("id=\"new-config\""), "default is listed, with the create form");

        // create: a copy of default with the content filter on
        var lab = DemoCatalogue.StandardServices with { ContentFilter = new ContentFilterConfig(true, ["ads.example"]) };
        var created = await Post(admin, "Config", ("name", "lab"), ("document", Json(lab)), ("baseDigest", ""));
        Assert.That(created.StatusCode, Is.EqualTo(HttpStatusCode.Redirect), await created.Content.ReadAsStringAsync());
        var stored = await Stored(client, "lab");
        Assert.That(Json(stored!), Is.EqualTo(Json(lab)), "the API reads what the console wrote");
        var listed = await client.SendAsync(HttpMethod.Get, $"{Routes.Prefix}/service-configs", null, CancellationToken.None);
        Assert.That(listed, Does.Contain("\"name\":\"default\"").And.Contain("\"name\":\"lab\"").And.Contain("ads.example"), "the API lists the named configurations");
        var audit = (await server.Store.ListAuditAsync(50, target: "lab")).Where(a => a.Action == "service-config.put").ToList();
        Assert.That(audit, Has.Count.EqualTo(1));
        Assert.That(audit[0].Actor, Is.EqualTo(DemoCatalogue.OperatorName));
        Assert.That(await admin.GetStringAsync(Path), Does.Contain("content filter on (1 domain(s))"), "the list says what the services do");

        // hostile and wrong forms: each refused with its reason, nothing changed
        var ok = Json(lab);
        var digest = await DigestOn(admin, "lab");
        await Refused(server, admin, "Config", "a path for a name", HttpStatusCode.BadRequest, ("name", "../etc"), ("document", ok), ("baseDigest", ""));
        await Refused(server, admin, "Config", "a control character in the name", HttpStatusCode.BadRequest, ("name", "lab\u0001"), ("document", ok), ("baseDigest", ""));
        await Refused(server, admin, "Config", "a name too long", HttpStatusCode.BadRequest, ("name", new string('a', 65)), ("document", ok), ("baseDigest", ""));
        await Refused(server, admin, "Config", "an empty document", HttpStatusCode.BadRequest, ("name", "lab2"), ("document", " "), ("baseDigest", ""));
        await Refused(server, admin, "Config", "not JSON", HttpStatusCode.BadRequest, ("name", "lab2"), ("document", "{firewall: drop"), ("baseDigest", ""));
        await Refused(server, admin, "Config", "JSON null", HttpStatusCode.BadRequest, ("name", "lab2"), ("document", "null"), ("baseDigest", ""));
        var accept = await Refused(server, admin, "Config", "an inbound policy the firewall has not", HttpStatusCode.BadRequest, ("name", "lab2"),
            ("document", Json(lab with { Firewall = lab.Firewall with { DefaultInbound = "accept" } })), ("baseDigest", ""));
        Assert.That(accept, Does.Contain("firewall.defaultInbound"), "the validator's reason names the field");
        Assert.That(accept, Does.Contain("value=\"lab2\""), "the form comes back as it was typed");
        await Refused(server, admin, "Config", "a control character for the dnsmasq configuration", HttpStatusCode.BadRequest, ("name", "lab2"),
            ("document", Json(lab with { ContentFilter = new ContentFilterConfig(true, ["ads.example\nserver=/x/127.0.0.1"]) })), ("baseDigest", ""));
        await Refused(server, admin, "Config", "a digest that is not one", HttpStatusCode.BadRequest, ("name", "lab"), ("document", ok), ("baseDigest", "1234"));
        await Refused(server, admin, "Config", "an upper-case digest", HttpStatusCode.BadRequest, ("name", "lab"), ("document", ok), ("baseDigest", digest.ToUpperInvariant()));
        var taken = await Refused(server, admin, "Config", "a create of a name taken", HttpStatusCode.Conflict, ("name", "lab"), ("document", ok), ("baseDigest", ""));
        Assert.That(taken, Does.Contain("service configuration lab exists already"));
        await Refused(server, admin, "Config", "a change of a configuration that does not exist", HttpStatusCode.Conflict, ("name", "nothing"), ("document", ok), ("baseDigest", digest));

        // a change from what the page showed is stored; a second change from the same page is refused (someone saved meanwhile)
        var otherDomain = lab with { Dns = lab.Dns with { LocalDomain = "changed.lan" } };
        Assert.That(Json(otherDomain), Is.Not.EqualTo(Json(lab)));
        var changed = await Post(admin, "Config", ("name", "lab"), ("document", Json(otherDomain)), ("baseDigest", digest));
        Assert.That(changed.StatusCode, Is.EqualTo(HttpStatusCode.Redirect), await changed.Content.ReadAsStringAsync());
        var stale = await Refused(server, admin, "Config", "a change from a page shown before the last change", HttpStatusCode.Conflict,
            ("name", "lab"), ("document", ok), ("baseDigest", digest));
        Assert.That(stale, Does.Contain("was changed since this page was shown"));
        // the API changes it too: the console's next change needs the page again
        var fresh = await DigestOn(admin, "lab");
        Assert.That(fresh, Is.Not.EqualTo(digest));
        await client.SendAsync(HttpMethod.Put, $"{Routes.Prefix}/service-configs/lab", new StringContent(Json(lab), System.Text.Encoding.UTF8, "application/json"), CancellationToken.None);
        await Refused(server, admin, "Config", "a change made before an API change", HttpStatusCode.Conflict, ("name", "lab"), ("document", Json(otherDomain)), ("baseDigest", fresh));
        stored = await Stored(client, "lab");
        Assert.That(Json(stored!), Is.EqualTo(Json(lab)), "the API's change stands");
        Assert.That((await server.Store.ListAuditAsync(50, target: "lab")).Count(a => a.Action == "service-config.put"), Is.EqualTo(3), "create, change, the API's change");

        // delete: confirmed, from the page as it is now; default (what registration copies) never
        fresh = await DigestOn(admin, "lab");
        await Refused(server, admin, "DeleteConfig", "a delete not confirmed", HttpStatusCode.BadRequest, ("name", "lab"), ("baseDigest", fresh));
        var shownBefore = Tsunagu.Server.Data.NamedDocument.DigestOf(Json(otherDomain)); // the page after the console's change, before the API's
        Assert.That(shownBefore, Is.Not.EqualTo(fresh));
        await Refused(server, admin, "DeleteConfig", "a delete from a page shown before a change", HttpStatusCode.Conflict, ("name", "lab"), ("baseDigest", shownBefore), ("confirm", "lab"));
        await Refused(server, admin, "DeleteConfig", "a delete of one that does not exist", HttpStatusCode.Conflict, ("name", "nothing"), ("baseDigest", fresh), ("confirm", "nothing"));
        var keep = await Refused(server, admin, "DeleteConfig", "a delete of default", HttpStatusCode.Conflict, ("name", "default"), ("baseDigest", await DigestOn(admin, "default")), ("confirm", "default"));
        Assert.That(keep, Does.Contain("service configuration default is the one every unit registered gets"));
        var before = HostileInputTests.Snapshot(server);
        Assert.That(Assert.ThrowsAsync<OperatorApiException>(() => client.SendAsync(HttpMethod.Delete, $"{Routes.Prefix}/service-configs/default", null, CancellationToken.None))!.Status, Is.EqualTo(409));
        Assert.That(Assert.ThrowsAsync<OperatorApiException>(() => client.SendAsync(HttpMethod.Delete, $"{Routes.Prefix}/service-configs/nothing", null, CancellationToken.None))!.Status, Is.EqualTo(404));
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "refused deletes change nothing");
        var deleted = await Post(admin, "DeleteConfig", ("name", "lab"), ("baseDigest", fresh), ("confirm", "lab"));
        Assert.That(deleted.StatusCode, Is.EqualTo(HttpStatusCode.Redirect), await deleted.Content.ReadAsStringAsync());
        Assert.That(Assert.ThrowsAsync<OperatorApiException>(() => Stored(client, "lab"))!.Status, Is.EqualTo(404));
        Assert.That((await server.Store.ListAuditAsync(50, target: "lab")).Count(a => a.Action == "service-config.delete"), Is.EqualTo(1));
        Assert.That(await Stored(client, "default"), Is.Not.Null);
    }

    [Test]
    public async Task Contracts_are_created_and_changed_from_the_console_with_the_api_rules()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Operator();
        using var admin = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        var page = await admin.GetStringAsync(Path);
        Assert.That(page, Does.Contain("id=\"contract-standard\"").And.Contain("id=\"new-contract\""));

        // created with fields given out of order and twice: stored once each, in document order, as the API stores them
        var created = await Post(admin, "Contract", ("name", "premium"), ("fields", "vpn.peers"), ("fields", "dns.upstreams"), ("fields", "vpn.peers"), ("baseDigest", ""));
        Assert.That(created.StatusCode, Is.EqualTo(HttpStatusCode.Redirect), await created.Content.ReadAsStringAsync());
        Assert.That(await server.Store.Accounts.GetContractAsync("premium"), Is.EqualTo(new[] { "dns.upstreams", "vpn.peers" }));
        var audit = (await server.Store.ListAuditAsync(50, target: "premium")).Single(a => a.Action == "contract.put");
        Assert.That(audit.Detail, Is.EqualTo("dns.upstreams,vpn.peers"));
        Assert.That(await client.SendAsync(HttpMethod.Get, $"{Routes.Prefix}/contracts/premium", null, CancellationToken.None),
            Does.Contain("\"subscriberFields\":[\"dns.upstreams\",\"vpn.peers\"]"));

        // a subscriber on it is counted on the page
        await client.SendJsonAsync(HttpMethod.Post, "/api/v1/subscribers", new { name = "hanako", password = "a portal test password", contract = "premium" }, CancellationToken.None);
        Assert.That(await admin.GetStringAsync(Path), Does.Match("id=\"contract-premium\"><td>premium</td><td>1</td>"));

        var digest = await DigestOn(admin, "premium");
        await Refused(server, admin, "Contract", "a field that is not one", HttpStatusCode.BadRequest, ("name", "premium"), ("fields", "firewall.everything"), ("baseDigest", digest));
        await Refused(server, admin, "Contract", "a control character in a field", HttpStatusCode.BadRequest, ("name", "premium"), ("fields", "vpn.peers\u0007"), ("baseDigest", digest));
        await Refused(server, admin, "Contract", "a NUL in a field", HttpStatusCode.BadRequest, reasonOnPage: false, ("name", "premium"), ("fields", "vpn.peers\u0000"), ("baseDigest", digest));
        await Refused(server, admin, "Contract", "a name with a slash", HttpStatusCode.BadRequest, ("name", "gold/plus"), ("fields", "vpn.peers"), ("baseDigest", ""));
        await Refused(server, admin, "Contract", "an empty name", HttpStatusCode.BadRequest, ("name", ""), ("fields", "vpn.peers"), ("baseDigest", ""));
        await Refused(server, admin, "Contract", "a digest that is not one", HttpStatusCode.BadRequest, ("name", "premium"), ("fields", "vpn.peers"), ("baseDigest", "zz"));
        await Refused(server, admin, "Contract", "a create of a name taken", HttpStatusCode.Conflict, ("name", "standard"), ("fields", "vpn.peers"), ("baseDigest", ""));

        // changed to nothing (a contract whose subscribers may change nothing), then a change from the old page is refused
        var emptied = await Post(admin, "Contract", ("name", "premium"), ("baseDigest", digest));
        Assert.That(emptied.StatusCode, Is.EqualTo(HttpStatusCode.Redirect), await emptied.Content.ReadAsStringAsync());
        Assert.That(await server.Store.Accounts.GetContractAsync("premium"), Is.Empty);
        Assert.That(await admin.GetStringAsync(Path), Does.Match("id=\"contract-premium\"><td>premium</td><td>1</td>\\s*<td>nothing</td>"));
        var stale = await Refused(server, admin, "Contract", "a change from a page shown before the last change", HttpStatusCode.Conflict,
            ("name", "premium"), ("fields", "vpn.peers"), ("baseDigest", digest));
        Assert.That(stale, Does.Contain("contract premium was changed since this page was shown"));
        Assert.That(await server.Store.Accounts.GetContractAsync("premium"), Is.Empty);

        // delete: never while a subscriber is on it, never the default contract
        digest = await DigestOn(admin, "premium");
        var inUse = await Refused(server, admin, "DeleteContract", "a delete of a contract a subscriber is on", HttpStatusCode.Conflict, ("name", "premium"), ("baseDigest", digest), ("confirm", "premium"));
        Assert.That(inUse, Does.Contain("contract premium has 1 subscriber(s)"));
        var before = HostileInputTests.Snapshot(server);
        Assert.That(Assert.ThrowsAsync<OperatorApiException>(() => client.SendAsync(HttpMethod.Delete, $"{Routes.Prefix}/contracts/premium", null, CancellationToken.None))!.Status, Is.EqualTo(409));
        Assert.That(Assert.ThrowsAsync<OperatorApiException>(() => client.SendAsync(HttpMethod.Delete, $"{Routes.Prefix}/contracts/standard", null, CancellationToken.None))!.Status, Is.EqualTo(409));
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "refused deletes change nothing");
        await client.SendJsonAsync(HttpMethod.Post, "/api/v1/subscribers", new { name = "hanako", password = "a portal test password", contract = "standard" }, CancellationToken.None);
        await Refused(server, admin, "DeleteContract", "a delete not confirmed", HttpStatusCode.BadRequest, ("name", "premium"), ("baseDigest", digest), ("confirm", "standard"));
        var deleted = await Post(admin, "DeleteContract", ("name", "premium"), ("baseDigest", digest), ("confirm", "premium"));
        Assert.That(deleted.StatusCode, Is.EqualTo(HttpStatusCode.Redirect), await deleted.Content.ReadAsStringAsync());
        Assert.That(await server.Store.Accounts.GetContractAsync("premium"), Is.Null);
        Assert.That((await server.Store.ListAuditAsync(50, target: "premium")).Count(a => a.Action == "contract.delete"), Is.EqualTo(1));
        Assert.That(Assert.ThrowsAsync<OperatorApiException>(() => client.SendAsync(HttpMethod.Delete, $"{Routes.Prefix}/contracts/premium", null, CancellationToken.None))!.Status, Is.EqualTo(404));
    }

    [Test]
    public async Task The_api_changes_and_deletes_with_If_Match_only_while_the_document_is_the_one_it_read()
    {
        await using var server = await TestServer.StartAsync();
        using var http = server.OperatorHttp("test"); // a request without a body names its client (the server's cross-site rule)
        async Task<(HttpStatusCode Status, string? ETag)> Send(HttpMethod method, string path, string? body, string? ifMatch)
        {
            using var request = new HttpRequestMessage(method, path) { Content = body is null ? null : new StringContent(body, System.Text.Encoding.UTF8, "application/json") };
            if (ifMatch is not null) { request.Headers.TryAddWithoutValidation("If-Match", ifMatch); }
            using var response = await http.SendAsync(request);
            return (response.StatusCode, response.Headers.ETag?.ToString());
        }
        var configPath = $"{Routes.Prefix}/service-configs/lab";
        var first = Json(DemoCatalogue.StandardServices);
        var second = Json(DemoCatalogue.StandardServices with { Dns = DemoCatalogue.StandardServices.Dns with { LocalDomain = "second.lan" } });
        var (status, created) = await Send(HttpMethod.Put, configPath, first, null);
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        var (_, read) = await Send(HttpMethod.Get, configPath, null, null);
        Assert.That(read, Is.EqualTo(created).And.Match("^\"[0-9a-f]{64}\"$"), "the PUT's ETag is the one GET gives");

        var before = HostileInputTests.Snapshot(server);
        foreach (var bad in new[] { "\"3\"", "*", read!.Trim('"'), read.ToUpperInvariant(), read + ", " + read, "\"" + new string('a', 63) + "\"" })
        {
            Assert.That((await Send(HttpMethod.Put, configPath, second, bad)).Status, Is.EqualTo(HttpStatusCode.BadRequest), $"If-Match {bad}");
            Assert.That((await Send(HttpMethod.Delete, configPath, null, bad)).Status, Is.EqualTo(HttpStatusCode.BadRequest), $"If-Match {bad} (delete)");
        }
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "a malformed If-Match changes nothing");

        var (changed, next) = await Send(HttpMethod.Put, configPath, second, read);
        Assert.That(changed, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(next, Is.Not.EqualTo(read));
        before = HostileInputTests.Snapshot(server);
        Assert.That((await Send(HttpMethod.Put, configPath, first, read)).Status, Is.EqualTo(HttpStatusCode.Conflict), "a change from the document read before the last change");
        Assert.That((await Send(HttpMethod.Delete, configPath, null, read)).Status, Is.EqualTo(HttpStatusCode.Conflict), "a delete from the document read before the last change");
        Assert.That((await Send(HttpMethod.Put, $"{Routes.Prefix}/service-configs/absent", first, read)).Status, Is.EqualTo(HttpStatusCode.Conflict), "a change, with If-Match, of one that does not exist");
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "refused with If-Match, nothing changed");
        Assert.That((await Send(HttpMethod.Delete, configPath, null, "W/" + next)).Status, Is.EqualTo(HttpStatusCode.NoContent), "a weak tag names the same document");
        Assert.That((await Send(HttpMethod.Get, configPath, null, null)).Status, Is.EqualTo(HttpStatusCode.NotFound));

        var contractPath = $"{Routes.Prefix}/contracts/premium";
        var (_, contractTag) = await Send(HttpMethod.Put, contractPath, "{\"subscriberFields\":[\"vpn.peers\"]}", null);
        Assert.That((await Send(HttpMethod.Get, contractPath, null, null)).ETag, Is.EqualTo(contractTag));
        Assert.That((await Send(HttpMethod.Put, contractPath, "{\"subscriberFields\":[\"dns.upstreams\"]}", contractTag)).Status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await Send(HttpMethod.Put, contractPath, "{\"subscriberFields\":[]}", contractTag)).Status, Is.EqualTo(HttpStatusCode.Conflict));
        Assert.That((await Send(HttpMethod.Delete, contractPath, null, contractTag)).Status, Is.EqualTo(HttpStatusCode.Conflict));
        Assert.That(await server.Store.Accounts.GetContractAsync("premium"), Is.EqualTo(new[] { "dns.upstreams" }));
        Assert.That((await Send(HttpMethod.Delete, contractPath, null, null)).Status, Is.EqualTo(HttpStatusCode.NoContent), "without If-Match as before");
    }

    [Test]
    public async Task No_name_makes_two_elements_of_the_page_share_an_id()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Operator();
        // names shaped like the ids of the forms' own elements (a textarea per configuration, a checkbox per field)
        foreach (var name in new[] { "doc-0", "sc-doc-0", "new" })
        {
            await client.SendAsync(HttpMethod.Put, $"{Routes.Prefix}/service-configs/{name}", new StringContent(Json(DemoCatalogue.StandardServices), System.Text.Encoding.UTF8, "application/json"), CancellationToken.None);
        }
        foreach (var name in new[] { "0-0", "field-0-0", "new" })
        {
            await client.SendJsonAsync(HttpMethod.Put, $"{Routes.Prefix}/contracts/{name}", new { subscriberFields = new[] { "vpn.peers" } }, CancellationToken.None);
        }
        using var admin = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        var ids = Regex.Matches(await admin.GetStringAsync(Path), " id=\"([^\"]*)\"").Select(m => m.Groups[1].Value).ToList();
        Assert.That(ids, Has.Count.GreaterThan(100), "the forms were rendered");
        Assert.That(ids.GroupBy(i => i).Where(g => g.Count() > 1).Select(g => g.Key), Is.Empty, "ids used twice");
    }

    [Test]
    public async Task Each_role_sees_and_may_use_only_its_forms()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Operator();
        foreach (var (name, role) in new[] { ("release", OperatorRoles.ReleaseManager), ("helper", OperatorRoles.Support), ("reader", OperatorRoles.Auditor) })
        {
            await client.SendJsonAsync(HttpMethod.Post, "/api/v1/operators", new NewOperator(name, "a console test password", role), CancellationToken.None);
        }
        var ok = Json(DemoCatalogue.StandardServices);

        // a release manager changes configurations, not contracts
        using var release = await RoleTests.ConsoleSession(server, "release", "a console test password");
        var page = await release.GetStringAsync(Path);
        Assert.That(page, Does.Contain("id=\"new-config\"").And.Contain("aria-label=\"Save service configuration default\""));
        Assert.That(page, Does.Not.Contain("id=\"new-contract\"").And.Not.Contain("aria-label=\"Save contract standard\""));
        var before = HostileInputTests.Snapshot(server);
        Assert.That((await Post(release, "Contract", ("name", "premium"), ("fields", "vpn.peers"), ("baseDigest", ""))).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before));
        Assert.That((await Post(release, "Config", ("name", "lab"), ("document", ok), ("baseDigest", ""))).StatusCode, Is.EqualTo(HttpStatusCode.Redirect));

        // support and auditors read both and change neither
        foreach (var name in new[] { "helper", "reader" })
        {
            using var session = await RoleTests.ConsoleSession(server, name, "a console test password");
            page = await session.GetStringAsync(Path);
            Assert.That(page, Does.Contain("id=\"configs-table\"").And.Contain("id=\"contracts-table\"").And.Contain("&quot;firewall&quot;"), name);
            Assert.That(page, Does.Not.Contain("id=\"new-config\"").And.Not.Contain("id=\"new-contract\"").And.Not.Contain("name=\"baseDigest\""), name);
            before = HostileInputTests.Snapshot(server);
            Assert.That((await Post(session, "Config", ("name", "lab2"), ("document", ok), ("baseDigest", ""))).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden), name);
            Assert.That((await Post(session, "Contract", ("name", "premium"), ("fields", "vpn.peers"), ("baseDigest", ""))).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden), name);
            Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), name);
        }
    }
}
