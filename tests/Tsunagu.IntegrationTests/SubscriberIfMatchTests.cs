using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Tsunagu.Cli.Factory;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The subscriber's settings carry the revision they were made from, as the operator's do (ConfigRaceTests): the API's
/// GET names the newest revision as ETag and a PUT with it in If-Match is stored only while it is still the newest
/// (stale 409, malformed 400, nothing written either way); the portal's forms send the revision the page showed.
/// </summary>
[NonParallelizable]
public class SubscriberIfMatchTests
{
    private static Task<(TestServer Server, OperatorClient Operator, HttpClient Alice, string Mac)> AliceAsync() => SubscriberChangeTests.AliceAsync();

    private static async Task<string> Snapshot(TestServer server, string mac) => await SubscriberChangeTests.SnapshotAsync(server, mac);

    private static HttpRequestMessage Put(string mac, string document, string? ifMatch)
    {
        var request = new HttpRequestMessage(HttpMethod.Put, $"/api/v1/subscriber/units/{mac}/service-config")
        {
            Content = new StringContent(document, Encoding.UTF8, "application/json"),
        };
        if (ifMatch is not null) { request.Headers.TryAddWithoutValidation("If-Match", ifMatch); }
        return request;
    }

    [TestCase("sqlite")]
    [TestCase("postgres")]
    public async Task A_subscriber_put_with_if_match_is_stored_only_while_that_revision_is_the_newest(string kind)
    {
        TestServer.DatabaseKind.Value = kind;
        var (server, client, alice, mac) = await AliceAsync();
        await using var _ = server;
        using var __ = client;
        using var ___ = alice;
        var document = JsonSerializer.Serialize(DemoCatalogue.StandardServices with
        {
            ContentFilter = DemoCatalogue.StandardServices.ContentFilter with { BlockedDomains = ["games.example"] },
        }, ProtocolJson.Default.ServiceConfiguration);

        // GET names the newest revision
        var basis = await server.Store.ServiceConfigs.LatestUnitConfigRevisionAsync(mac);
        using (var get = await alice.GetAsync($"/api/v1/subscriber/units/{mac}/service-config"))
        {
            Assert.That(get.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(get.Headers.ETag?.Tag, Is.EqualTo($"\"{basis}\""), "GET names the newest revision as ETag");
        }

        // with the current revision: stored as the next one
        using (var stored = await alice.SendAsync(Put(mac, document, $"\"{basis}\"")))
        {
            Assert.That(stored.StatusCode, Is.EqualTo(HttpStatusCode.OK), await stored.Content.ReadAsStringAsync());
            Assert.That((await stored.Content.ReadFromJsonAsync<SubscriberChangeView>())!.Revision, Is.EqualTo(basis + 1));
        }

        // the same revision again (stale: no race needed): 409, nothing written
        var before = await Snapshot(server, mac);
        using (var stale = await alice.SendAsync(Put(mac, document, $"W/\"{basis}\"")))
        {
            Assert.That(stale.StatusCode, Is.EqualTo(HttpStatusCode.Conflict), await stale.Content.ReadAsStringAsync());
            Assert.That(await stale.Content.ReadAsStringAsync(), Does.Contain($"changed since revision {basis}"));
        }
        Assert.That(await Snapshot(server, mac), Is.EqualTo(before), "a stale If-Match stores nothing and audits nothing");

        // the newest revision, but another save commits while this one waits for it: 409, only the other stored
        var (connection, transaction) = ConfigRaceTests.HoldOtherSave(server, mac, basis + 2, document);
        Task<HttpResponseMessage> put;
        using (connection)
        using (transaction)
        {
            put = await ConfigRaceTests.SendBlocked(server, kind, "InsertNextUnitConfigAsync", () => alice.SendAsync(Put(mac, document, $"\"{basis + 1}\"")));
            transaction.Commit();
        }
        using (var raced = await put)
        {
            Assert.That(raced.StatusCode, Is.EqualTo(HttpStatusCode.Conflict), await raced.Content.ReadAsStringAsync());
            Assert.That(await raced.Content.ReadAsStringAsync(), Does.Contain($"changed since revision {basis + 1}"));
        }
        Assert.That(await server.Store.ServiceConfigs.LatestUnitConfigRevisionAsync(mac), Is.EqualTo(basis + 2), "the other save only");
        Assert.That((await server.Store.ListAuditAsync(1000)).Count(a => a.Action == "unit.service-config" && a.Detail!.StartsWith($"revision {basis + 3}", StringComparison.Ordinal)), Is.Zero);

        // If-Match values that are no revision: 400 before anything is read or written
        foreach (var tag in new[] { "\"x1\"", "\"-1\"", "\"1 2\"", "*", $"\"{new string('9', 30)}\"", "W/\"abc\"", $"\"{basis + 2}\", \"{basis + 1}\"", "3", "\"\"" })
        {
            before = await Snapshot(server, mac);
            using var bad = await alice.SendAsync(Put(mac, document, tag));
            Assert.That(bad.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), tag);
            Assert.That(await bad.Content.ReadAsStringAsync(), Does.Contain("If-Match"), tag);
            Assert.That(await Snapshot(server, mac), Is.EqualTo(before), $"{tag}: nothing written");
        }

        // without If-Match the change is still taken (compared with the newest the server read)
        using (var plain = await alice.SendAsync(Put(mac, document, null)))
        {
            Assert.That(plain.StatusCode, Is.EqualTo(HttpStatusCode.OK), await plain.Content.ReadAsStringAsync());
            Assert.That((await plain.Content.ReadFromJsonAsync<SubscriberChangeView>())!.Revision, Is.EqualTo(basis + 3));
        }
    }

    [Test]
    public async Task The_portal_forms_send_the_revision_shown_and_a_change_after_another_landed_is_refused()
    {
        TestServer.DatabaseKind.Value = "sqlite";
        var (server, client, alice, mac) = await AliceAsync();
        await using var _ = server;
        using var __ = client;
        alice.Dispose();
        using var portal = await PortalSession(server, "alice", "alice-password");
        var shown = await server.Store.ServiceConfigs.LatestUnitConfigRevisionAsync(mac);
        var page = await portal.GetStringAsync($"/portal/units/{mac}");
        var basis = Regex.Matches(page, "name=\"Basis\" value=\"([^\"]*)\"").Select(m => m.Groups[1].Value).ToList();
        Assert.That(basis, Is.Not.Empty.And.All.EqualTo(shown.ToString(System.Globalization.CultureInfo.InvariantCulture)), "every change form carries the revision shown");
        var csrf = WebUtility.HtmlDecode(Regex.Match(page, "name=\"__csrf\"[^>]*value=\"([^\"]+)\"").Groups[1].Value);
        Dictionary<string, string> Filter(string? b, string site)
        {
            var form = new Dictionary<string, string> { ["__csrf"] = csrf, ["FilterEnabled"] = "true", ["BlockedSites"] = site };
            if (b is not null) { form["Basis"] = b; }
            return form;
        }

        // the provider saves a revision after the page was shown: the page's change is refused, nothing stored
        await client.SendJsonAsync(HttpMethod.Put, $"/api/v1/units/{mac}/service-config", DemoCatalogue.StandardServices, CancellationToken.None);
        foreach (var (b, why) in new[] { (basis[0], "the revision shown"), ((string?)null, "no revision"), ("x", "not a number") })
        {
            var before = await Snapshot(server, mac);
            using var refused = await portal.PostAsync($"/portal/units/{mac}?handler=Filter", new FormUrlEncodedContent(Filter(b, "games.example")));
            Assert.That((int)refused.StatusCode, Is.LessThan(500), why);
            Assert.That(await Snapshot(server, mac), Is.EqualTo(before), $"{why}: nothing stored");
            if (refused.StatusCode == HttpStatusCode.Redirect)
            {
                Assert.That(await portal.GetStringAsync($"/portal/units/{mac}"), Does.Contain("Not changed").And.Contain($"changed since revision"), why);
            }
        }

        // the page shown again carries the new revision, and its change is stored
        page = await portal.GetStringAsync($"/portal/units/{mac}");
        var now = Regex.Match(page, "name=\"Basis\" value=\"([^\"]*)\"").Groups[1].Value;
        Assert.That(now, Is.EqualTo((shown + 1).ToString(System.Globalization.CultureInfo.InvariantCulture)));
        using var saved = await portal.PostAsync($"/portal/units/{mac}?handler=Filter", new FormUrlEncodedContent(Filter(now, "games.example")));
        Assert.That(saved.StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
        var newest = (await server.Store.ServiceConfigs.LatestUnitConfigAsync(mac))!;
        Assert.That((newest.Revision, newest.Origin), Is.EqualTo((shown + 2, "subscriber")));
        Assert.That(newest.Document, Does.Contain("games.example"));
    }

    /// <summary>Signs in to the portal with its log in form; returns a client holding the session cookie.</summary>
    internal static async Task<HttpClient> PortalSession(TestServer server, string name, string password)
    {
        var http = new HttpClient(new SocketsHttpHandler
        {
            CookieContainer = new CookieContainer(), AllowAutoRedirect = false,
            SslOptions = { RemoteCertificateValidationCallback = TrustAnchor.Validator([server.Pin]) },
        })
        { BaseAddress = new Uri(server.Url) };
        var page = await http.GetStringAsync("/portal/login");
        string Field(string pattern) => Regex.Match(page, pattern).Groups[1].Value;
        using var posted = await http.PostAsync("/portal/login", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            [Field("name=\"([^\"]*Name)\"")] = name,
            [Field("name=\"([^\"]*Password)\"")] = password,
            ["__csrf"] = WebUtility.HtmlDecode(Field("name=\"__csrf\"[^>]*value=\"([^\"]+)\"")),
        }));
        Assert.That(posted.StatusCode, Is.EqualTo(HttpStatusCode.Redirect), $"{name} signs in to the portal");
        return http;
    }
}
