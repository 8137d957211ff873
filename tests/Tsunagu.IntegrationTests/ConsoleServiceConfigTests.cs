using System.Net;
using System.Text.Json;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The unit page's service configuration forms (Pages/Console/Unit.ServiceConfig.cs): the API's service, rules, roles and
/// audit entry; a refused form stores nothing; the revisions show their state, retries included.
/// </summary>
[NonParallelizable]
public class ConsoleServiceConfigTests
{
    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    internal static Task<HttpResponseMessage> Post(HttpClient session, string mac, string handler, Dictionary<string, string> form) =>
        RoleTests.PostForm(session, $"/console/units/{mac}?handler={handler}", form);

    internal static Dictionary<string, string> Fields(long baseRevision, string blocked, string port = "51820", string cache = "256") => new()
    {
        ["baseRevision"] = baseRevision.ToString(System.Globalization.CultureInfo.InvariantCulture), ["defaultInbound"] = "drop", ["masquerade"] = "yes",
        ["localDomain"] = "lan", ["upstreams"] = "192.0.2.53\n198.51.100.53", ["filterEnabled"] = "yes", ["blockedDomains"] = blocked, ["blockedAddresses"] = "",
        ["vpnListenPort"] = port, ["vpnAddress"] = "", ["cacheEnabled"] = "yes", ["cacheMegabytes"] = cache,
    };

    [Test]
    public async Task The_common_form_sets_and_clears_the_virus_check_and_an_older_form_without_the_field_keeps_it()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var admin = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        Assert.That(await admin.GetStringAsync($"/console/units/{mac}"), Does.Contain("id=\"sc-virus\"").And.Contain("name=\"virusScanShown\""));

        async Task<VirusScanConfig?> SavedAsync() => JsonSerializer.Deserialize((await server.Store.ServiceConfigs.LatestUnitConfigAsync(mac))!.Document, ProtocolJson.Default.ServiceConfiguration)!.VirusScan;
        async Task Save(Dictionary<string, string> extra)
        {
            var form = Fields((await server.Store.ServiceConfigs.LatestUnitConfigAsync(mac))!.Revision, "ads.example");
            foreach (var (k, v) in extra) { form[k] = v; }
            Assert.That((await Post(admin, mac, "ServiceConfig", form)).StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        }

        Assert.That(await SavedAsync(), Is.Null);
        await Save(new() { ["virusScanShown"] = "yes" });
        Assert.That(await SavedAsync(), Is.Null, "unticked and never set: stays unset");
        await Save(new() { ["virusScanShown"] = "yes", ["virusScanEnabled"] = "yes" });
        Assert.That(await SavedAsync(), Is.EqualTo(new VirusScanConfig(true)));
        Assert.That(await admin.GetStringAsync($"/console/units/{mac}"), Does.Match("id=\"sc-virus\"[^>]*checked"));
        await Save(new());
        Assert.That(await SavedAsync(), Is.EqualTo(new VirusScanConfig(true)), "a form without the field keeps the setting");
        await Save(new() { ["virusScanShown"] = "yes" });
        Assert.That(await SavedAsync(), Is.EqualTo(new VirusScanConfig(false)), "unticked: off");
        var audit = (await server.Store.ListAuditAsync(50)).Count(a => a.Action == "unit.service-config" && a.Target == mac);
        Assert.That(audit, Is.EqualTo(4), "each save audited once");
    }

    [Test]
    public async Task A_units_configuration_is_changed_from_its_page_by_the_apis_rules_and_a_wrong_form_stores_nothing()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        await server.Store.Accounts.UpsertOperatorAsync("sam", PasswordHasher.Hash("a support password"), newRole: OperatorRoles.Support);
        await server.Store.Accounts.UpsertOperatorAsync("audrey", PasswordHasher.Hash("an auditor password"), newRole: OperatorRoles.Auditor);
        await server.Store.Accounts.UpsertOperatorAsync("rita", PasswordHasher.Hash("a release password"), newRole: OperatorRoles.ReleaseManager);
        using var admin = await RoleTests.ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        var first = (await server.Store.ServiceConfigs.LatestUnitConfigAsync(mac))!;
        var page = await admin.GetStringAsync($"/console/units/{mac}");
        Assert.That(page, Does.Contain("id=\"service-config-form\"").And.Contain("id=\"service-config-json-form\"").And.Contain($"id=\"config-{first.Revision}\""));

        async Task Refused(HttpClient session, string handler, Dictionary<string, string> form, string why, string? says, HttpStatusCode status = HttpStatusCode.Redirect)
        {
            var before = HostileInputTests.Snapshot(server);
            var response = await Post(session, mac, handler, form);
            Assert.That(response.StatusCode, Is.EqualTo(status), why);
            Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), $"{why}: refused, but the database changed");
            if (says is not null)
            {
                Assert.That(await session.GetStringAsync($"/console/units/{mac}"), Does.Contain("Nothing was stored").And.Contain(says), why);
            }
        }

        await Refused(admin, "ServiceConfig", Fields(first.Revision, "ads.example\nbad domain"), "a domain with a space", "contentFilter.blockedDomains[1]");
        await Refused(admin, "ServiceConfig", Fields(first.Revision, "ads\u0001.example"), "a control character", "contentFilter.blockedDomains[0]");
        await Refused(admin, "ServiceConfig", Fields(first.Revision, "ads.example", port: "70000"), "a port outside 1..65535", "vpn.listenPort");
        await Refused(admin, "ServiceConfig", Fields(first.Revision, "ads.example", port: "-1"), "a port that is no whole number", "vpn.listenPort: a whole number");
        await Refused(admin, "ServiceConfig", Fields(first.Revision, "ads.example", cache: "1"), "a cache below its minimum", "cache.sizeMegabytes");
        await Refused(admin, "ServiceConfig", Fields(first.Revision - 1, "ads.example"), "a page showing an older revision", "changed since this page was shown");
        await Refused(admin, "ServiceConfigJson", new() { ["baseRevision"] = $"{first.Revision}", ["document"] = "{ not json" }, "not JSON", "not a service configuration in JSON");
        await Refused(admin, "ServiceConfigJson", new() { ["baseRevision"] = $"{first.Revision}", ["document"] = "null" }, "a null document", "configuration");
        await Refused(admin, "ServiceConfigJson", new() { ["baseRevision"] = $"{first.Revision}", ["document"] = "{\"firewall\":null}" }, "a document without its parts", "firewall");
        var dhcpWrong = JsonSerializer.Serialize(DemoCatalogue.StandardServices with { Dhcp = DemoCatalogue.StandardServices.Dhcp with { LeaseTime = "12h; rm -rf /" } },
            ProtocolJson.Default.ServiceConfiguration);
        await Refused(admin, "ServiceConfigJson", new() { ["baseRevision"] = $"{first.Revision}", ["document"] = dhcpWrong }, "a lease time with a command", "dhcp.leaseTime");

        // roles: the API's (administrator, support); the others see no form and are refused
        using var auditor = await RoleTests.ConsoleSession(server, "audrey", "an auditor password");
        using var release = await RoleTests.ConsoleSession(server, "rita", "a release password");
        Assert.That(await auditor.GetStringAsync($"/console/units/{mac}"), Does.Not.Contain("id=\"service-config-form\""));
        await Refused(auditor, "ServiceConfig", Fields(first.Revision, "ads.example"), "the auditor role", null, HttpStatusCode.Forbidden);
        await Refused(release, "ServiceConfigJson", new() { ["baseRevision"] = $"{first.Revision}", ["document"] = dhcpWrong }, "the release manager role", null, HttpStatusCode.Forbidden);

        // the support role sets a blocked domain: a new provisional revision with it, the rest of the document kept, audited
        using var support = await RoleTests.ConsoleSession(server, "sam", "a support password");
        Assert.That((await Post(support, mac, "ServiceConfig", Fields(first.Revision, "ads.example\n tracker.example "))).StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        var stored = (await server.Store.ServiceConfigs.LatestUnitConfigAsync(mac))!;
        Assert.That((stored.Revision, stored.Status), Is.EqualTo((first.Revision + 1, ConfigStatus.Provisional)));
        var document = JsonSerializer.Deserialize(stored.Document, ProtocolJson.Default.ServiceConfiguration)!;
        var before = JsonSerializer.Deserialize(first.Document, ProtocolJson.Default.ServiceConfiguration)!;
        Assert.That(document.ContentFilter.BlockedDomains, Is.EqualTo(new[] { "ads.example", "tracker.example" }));
        Assert.That(document.Dns.Upstreams, Is.EqualTo(new[] { "192.0.2.53", "198.51.100.53" }));
        Assert.That((document.Dhcp.LanAddress, document.Dhcp.RangeStart, document.Dhcp.RangeEnd, document.Dhcp.LeaseTime, document.Dhcp.StaticLeases.Count,
                document.Firewall.PortForwards.Count, document.Vpn.Peers.Count),
            Is.EqualTo((before.Dhcp.LanAddress, before.Dhcp.RangeStart, before.Dhcp.RangeEnd, before.Dhcp.LeaseTime, before.Dhcp.StaticLeases.Count,
                before.Firewall.PortForwards.Count, before.Vpn.Peers.Count)), "fields the form does not show are kept");
        Assert.That((await server.Store.ListAuditAsync(5)).Count(a => a.Action == "unit.service-config" && a.Target == mac && a.Actor == "sam" && a.Detail == $"revision {stored.Revision}"),
            Is.EqualTo(1));
        page = await support.GetStringAsync($"/console/units/{mac}");
        Assert.That(page, Does.Contain($"Service configuration revision {stored.Revision} for {mac} stored").And.Contain($"id=\"config-{stored.Revision}\""));

        // the whole document as JSON, then the unit fails it: the page says the host retries it
        var json = JsonSerializer.Serialize(DemoCatalogue.StandardServices, ProtocolJson.Default.ServiceConfiguration);
        Assert.That((await Post(admin, mac, "ServiceConfigJson", new() { ["baseRevision"] = $"{stored.Revision}", ["document"] = json })).StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        var third = (await server.Store.ServiceConfigs.LatestUnitConfigAsync(mac))!;
        Assert.That(third.Revision, Is.EqualTo(stored.Revision + 1));
        Assert.That(third.Document, Is.EqualTo(json));
        Assert.That(await server.Store.ServiceConfigs.AckUnitConfigAsync(mac, third.Revision, false, "dnsmasq refused it"), Is.True);
        Assert.That(await admin.GetStringAsync($"/console/units/{mac}"), Does.Contain("failed; retrying (attempt 2 of 3)"));

        // settings the common form does not show (the cache's largest object, virus checking) survive a save through it
        var full = DemoCatalogue.StandardServices with
        {
            Cache = new CacheConfig(true, 1024, 64),
            VirusScan = new VirusScanConfig(true),
        };
        Assert.That((await Post(admin, mac, "ServiceConfigJson", new()
        {
            ["baseRevision"] = $"{third.Revision}",
            ["document"] = JsonSerializer.Serialize(full, ProtocolJson.Default.ServiceConfiguration)
        })).StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        var fourth = (await server.Store.ServiceConfigs.LatestUnitConfigAsync(mac))!;
        Assert.That((await Post(admin, mac, "ServiceConfig", Fields(fourth.Revision, "ads.example", cache: "512"))).StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        var fifth = JsonSerializer.Deserialize((await server.Store.ServiceConfigs.LatestUnitConfigAsync(mac))!.Document, ProtocolJson.Default.ServiceConfiguration)!;
        Assert.That((fifth.Cache.SizeMegabytes, fifth.Cache.MaxObjectMegabytes, fifth.VirusScan), Is.EqualTo((512, (int?)64, new VirusScanConfig(true))),
            "the form changed the cache size and kept the rest");
    }
}
