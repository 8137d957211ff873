using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Catalogue;
using Tsunagu.Server.Security;

namespace Tsunagu.IntegrationTests;

/// <summary>Bad input never gets a 5xx and never leaves half-written data; cross-site requests; TLS; slow senders.</summary>
[NonParallelizable]
public class HostileInputTests
{
    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    [TearDown]
    public void TearDown() => TestServer.Configure.Value = null;

    private static AuthenticationHeaderValue OperatorBasic() =>
        new("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{DemoCatalogue.OperatorName}:{TestServer.Password}")));

    /// <remarks>Large bodies go with Expect: 100-continue, as real clients send them: a refusal then arrives before the body is sent.</remarks>
    private static async Task<HttpResponseMessage> Send(HttpClient http, HttpMethod method, string path, HttpContent? content, AuthenticationHeaderValue? auth,
        bool client = false)
    {
        using var request = new HttpRequestMessage(method, path) { Content = content };
        request.Headers.Authorization = auth;
        if (content?.Headers.ContentLength > 1024 * 1024) { request.Headers.ExpectContinue = true; }
        if (client) { request.Headers.Add(CrossSiteRequests.ClientHeader, "test"); }
        return await http.SendAsync(request);
    }

    /// <summary>
    /// Sends a request that announces <paramref name="length"/> bytes of body but sends only the first 64 KB of
    /// <paramref name="body"/>, then reads the answer: what a server that refuses on the announced size answers.
    /// </summary>
    internal static async Task<(int Status, string Text)> Announce(TestServer server, string path, string contentType, string authorization, byte[] body, long length)
    {
        var url = new Uri(server.Url);
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(url.Host, url.Port);
        await using var tls = new SslStream(tcp.GetStream(), false, (_, _, _, _) => true);
        await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions { TargetHost = url.Host });
        await tls.WriteAsync(Encoding.ASCII.GetBytes($"POST {path} HTTP/1.1\r\nHost: {url.Host}\r\nContent-Type: {contentType}\r\n" +
            $"Authorization: {authorization}\r\nContent-Length: {length}\r\n\r\n"));
        try
        {
            await tls.WriteAsync(body.AsMemory(0, Math.Min(body.Length, 64 * 1024)));
        }
        catch (IOException)
        {
            // the server may answer and close before taking it all
        }
        var answer = new MemoryStream();
        var buffer = new byte[16 * 1024];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            int read;
            while ((read = await tls.ReadAsync(buffer, timeout.Token)) > 0)
            {
                answer.Write(buffer, 0, read);
                var text = Encoding.UTF8.GetString(answer.ToArray());
                var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
                var declared = System.Text.RegularExpressions.Regex.Match(text, "Content-Length: (\\d+)", System.Text.RegularExpressions.RegexOptions.IgnoreCase);
                if (end > 0 && declared.Success && answer.Length >= end + 4 + int.Parse(declared.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)) { break; }
            }
        }
        catch (IOException)
        {
            // closed after the answer
        }
        var all = Encoding.UTF8.GetString(answer.ToArray());
        Assert.That(all, Does.StartWith("HTTP/1.1 "), "an answer arrived");
        return (int.Parse(all[9..12], System.Globalization.CultureInfo.InvariantCulture), all);
    }

    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    /// <summary>
    /// Every table of the server's database, its rows sorted, as one digest. Left out: what the server's own background
    /// work writes whatever requests arrive (presence, the replica lease, the minute a rollout last looked at its group's
    /// window), so a snapshot pair taken around a refused request compares only what a request
    /// could change.
    /// </summary>
    internal static string Snapshot(TestServer server)
    {
        var postgres = server.Store.Database.Kind == Tsunagu.Server.Data.DatabaseKind.Postgres;
        using var c = postgres
            ? server.Store.Database.Open()
            : new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = Path.Combine(server.Root, "server", "tsunagu.db"), Mode = SqliteOpenMode.ReadOnly, Pooling = false }.ToString());
        if (!postgres) { c.Open(); }
        var tables = new List<string>();
        using (var list = c.CreateCommand())
        {
            list.CommandText = postgres
                ? "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name"
                : "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name";
            using var r = list.ExecuteReader();
            while (r.Read()) { tables.Add(r.GetString(0)); }
        }
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var table in tables.Where(t => t != "leases"))
        {
            using var select = c.CreateCommand();
            select.CommandText = $"SELECT * FROM \"{table}\"";
            using var r = select.ExecuteReader();
            var rows = new List<string>();
            while (r.Read())
            {
                var row = new StringBuilder();
                for (var i = 0; i < r.FieldCount; i++)
                {
                    if (BackgroundColumn(table, r.GetName(i))) { continue; }
                    row.Append($"{r.GetName(i)}={(r.IsDBNull(i) ? "∅" : Convert.ToString(r.GetValue(i), System.Globalization.CultureInfo.InvariantCulture))};");
                }
                rows.Add(row.ToString());
            }
            sha.AppendData(Encoding.UTF8.GetBytes($"\n{table}:" + string.Join("\n", rows.Order(StringComparer.Ordinal))));
        }
        return Convert.ToHexString(sha.GetHashAndReset());
    }

    private static bool BackgroundColumn(string table, string column) => (table, column) switch
    {
        (_, "last_seen" or "online" or "presence_at") => true,
        ("rollouts", "window_looked_at") => true,
        _ => false,
    };

    // ---- authentication headers and cross-site requests -----------------------------------------------------------

    [Test]
    public async Task No_basic_challenge_is_ever_sent()
    {
        await using var server = await TestServer.StartAsync();
        using var http = server.PinnedHttp();
        using var request = new HttpRequestMessage(HttpMethod.Get, Routes.Units) { Headers = { Accept = { new MediaTypeWithQualityHeaderValue("text/html") } } };
        var response = await http.SendAsync(request);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        Assert.That(response.Headers.WwwAuthenticate, Is.Empty, "a browser would keep the credentials and send them on cross-site requests");
    }

    [Test]
    public async Task State_changing_calls_a_cross_site_form_could_make_are_refused_and_change_nothing()
    {
        await using var server = await TestServer.StartAsync();
        using var http = server.PinnedHttp();
        using var client = server.Operator();
        await client.SendJsonAsync(HttpMethod.Post, "/api/v1/software", new SoftwareRequest("probe", "1.0.0", "probe", null, null), CancellationToken.None);
        await client.SendJsonAsync(HttpMethod.Post, "/api/v1/patterns", new NewPattern("draft-x", "x", DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion,
            new Dictionary<string, string> { ["probe"] = "1.0.0" }), CancellationToken.None);
        var before = Snapshot(server);
        Func<HttpContent>[] forms =
        [
            () => new FormUrlEncodedContent(new Dictionary<string, string> { ["a"] = "b" }),
            () => new StringContent("{}", Encoding.UTF8, "text/plain"),
            () => new MultipartFormDataContent { { new StringContent("x"), "a" } },
        ];
        foreach (var form in forms)
        {
            foreach (var path in new[] { "/api/v1/patterns/draft-x/verify", "/api/v1/operator/token", "/api/v1/subscribers/nobody/disable" })
            {
                var content = form();
                var response = await Send(http, HttpMethod.Post, path, content, OperatorBasic());
                Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.UnsupportedMediaType), $"{path} with {content.Headers.ContentType}");
                Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/problem+json"));
            }
        }
        var bodyless = await Send(http, HttpMethod.Post, "/api/v1/patterns/draft-x/verify", null, OperatorBasic());
        Assert.That(bodyless.StatusCode, Is.EqualTo(HttpStatusCode.UnsupportedMediaType), "a body-less post is what fetch(no-cors) can send");
        Assert.That(Snapshot(server), Is.EqualTo(before), "nothing changed");
        Assert.That((await Send(http, HttpMethod.Post, "/api/v1/patterns/draft-x/verify", null, OperatorBasic(), client: true)).StatusCode, Is.EqualTo(HttpStatusCode.OK),
            "the client header (which a form cannot set) is enough");
    }

    // ---- bad input -----------------------------------------------------------------------------------------------

    [Test]
    public async Task A_nan_threshold_is_refused_naming_the_field()
    {
        await using var server = await TestServer.StartAsync();
        using var http = server.PinnedHttp();
        var before = Snapshot(server);
        foreach (var value in new[] { "\"NaN\"", "\"Infinity\"", "\"-Infinity\"" })
        {
            var response = await Send(http, HttpMethod.Put, "/api/v1/settings/update-policy",
                Json($$"""{"cpuThreshold":{{value}},"wanThreshold":0.5,"lowWindowStartHour":2,"lowWindowEndHour":5}"""), OperatorBasic());
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), value);
            Assert.That(await response.Content.ReadAsStringAsync(), Does.Contain("cpuThreshold"), value);
        }
        Assert.That(Snapshot(server), Is.EqualTo(before));
        Assert.That((await Send(http, HttpMethod.Get, "/api/v1/settings/update-policy", null, OperatorBasic())).StatusCode, Is.EqualTo(HttpStatusCode.OK));
    }

    [TestCase("/api/v1/software", """{"appId":"a\r\nb","version":"1.0","name":"n"}""", "appId")]
    [TestCase("/api/v1/software", """{"appId":"bä","version":"1.0","name":"n"}""", "appId")]
    [TestCase("/api/v1/software", """{"appId":"ok","version":"1.0\r\nLocation: x","name":"n"}""", "version")]
    [TestCase("/api/v1/patterns", """{"id":"p\r\nx","name":"n","hardwareVersion":"r1","osVersion":"tsunagu-os 1.0","applications":{"vcp":"1.0.0"}}""", "id")]
    [TestCase("/api/v1/patterns", """{"id":"pä","name":"n","hardwareVersion":"r1","osVersion":"tsunagu-os 1.0","applications":{"vcp":"1.0.0"}}""", "id")]
    [TestCase("/api/v1/patches", """{"id":"x\ny","name":"n","version":"1","targetApp":"vcp","importance":3}""", "id")]
    [TestCase("/api/v1/units", """{"mac":"02:54:53:00:70:01","serial":"S1","hardwareVersion":"r1","isp":{"method":"dhcp"},"domain":"a\r\nb.example"}""", "domain")]
    public async Task Identifiers_with_control_or_non_ascii_characters_are_refused_before_anything_is_stored(string path, string body, string field)
    {
        await using var server = await TestServer.StartAsync();
        using var http = server.PinnedHttp();
        var before = Snapshot(server);
        var response = await Send(http, HttpMethod.Post, path, Json(body), OperatorBasic());
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), await response.Content.ReadAsStringAsync());
        Assert.That(await response.Content.ReadAsStringAsync(), Does.Contain(field));
        Assert.That(Snapshot(server), Is.EqualTo(before), "no row, no audit entry");
    }

    [Test]
    public async Task A_bulk_table_over_the_limit_is_413_and_stores_nothing()
    {
        await using var server = await TestServer.StartAsync();
        using var http = server.PinnedHttp();
        var before = Snapshot(server);
        var csv = Encoding.UTF8.GetBytes("mac,serial\n" + string.Concat(Enumerable.Repeat("02:54:53:00:00:01,S1\n", 4000)));
        var (status, text) = await Announce(server, "/api/v1/units/bulk", "text/csv", OperatorBasic().ToString(), csv, 31L * 1024 * 1024);
        Assert.That(status, Is.EqualTo(413), text);
        Assert.That(text, Does.Contain("application/problem+json"));
        Assert.That(Snapshot(server), Is.EqualTo(before));
    }

    [Test]
    public async Task Concurrent_bulk_imports_with_overlapping_macs_write_all_of_one_table_or_none_of_it()
    {
        await using var server = await TestServer.StartAsync();
        using var http = server.PinnedHttp();
        string Table(int first) => "mac,serial,isp_method\n" + string.Concat(Enumerable.Range(first, 350).Select(i => $"02:54:53:01:{i / 256:x2}:{i % 256:x2},S{i},dhcp\n"));
        var imports = await Task.WhenAll(
            Send(http, HttpMethod.Post, "/api/v1/units/bulk", new StringContent(Table(0), Encoding.UTF8, "text/csv"), OperatorBasic()),
            Send(http, HttpMethod.Post, "/api/v1/units/bulk", new StringContent(Table(300), Encoding.UTF8, "text/csv"), OperatorBasic()));
        var statuses = imports.Select(i => (int)i.StatusCode).ToList();
        Assert.That(statuses, Has.All.LessThan(500), string.Join(", ", statuses));
        var units = (await server.Store.Units.ListUnitsAsync()).Count;
        var audits = (await server.Store.ListAuditAsync(1000)).Count(a => a.Action == "units.register-bulk");
        Assert.That(statuses.Count(s => s == 200), Is.EqualTo(audits), "one audit entry per table registered");
        Assert.That(units, Is.EqualTo(350 * audits), "whole tables only");
        Assert.That(audits, Is.EqualTo(1), "the overlap lets only one table in");
    }

    private static async Task<string> UnitToken(HttpClient http, TestServer server, string mac)
    {
        var challenge = (await (await http.PostAsJsonAsync(Routes.HostChallenge, new ChallengeRequest(mac))).Content.ReadFromJsonAsync<ChallengeResponse>())!;
        var proof = UnitCredentials.ComputeProof(UnitCredentials.DeriveUnitSecret(server.UnitKey, mac), ProofPurpose.Host, mac, challenge.ChallengeId, challenge.Nonce);
        var session = await http.PostAsJsonAsync(Routes.HostSession, new SessionRequest(mac, challenge.ChallengeId, proof));
        Assert.That(session.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        return (await session.Content.ReadFromJsonAsync<SessionResponse>())!.Token;
    }

    [Test]
    public async Task A_unit_cannot_store_a_huge_inventory_or_raise_its_own_bundle_counter()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = server.PinnedHttp();
        var token = new AuthenticationHeaderValue("Bearer", await UnitToken(http, server, mac));
        var apps = DemoCatalogue.FactoryApplications.ToDictionary(a => a.Key, a => a.Value);
        var before = Snapshot(server);

        var huge = JsonSerializer.SerializeToUtf8Bytes(new VersionCheckRequest(new Inventory(DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion,
            Enumerable.Range(0, 5000).ToDictionary(i => $"app-{i}", _ => "1.0.0")), new UnitLoad(0, 0), false, null), JsonSerializerOptions.Web);
        var (status, text) = await Announce(server, Routes.VersionCheck, "application/json", token.ToString(), huge, 4_500_000);
        Assert.That(status, Is.EqualTo(413), text);
        var many = Enumerable.Range(0, 100).ToDictionary(i => $"app-{i}", _ => "1.0.0");
        var tooMany = await Send(http, HttpMethod.Post, Routes.VersionCheck, JsonContent.Create(new VersionCheckRequest(
            new Inventory(DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion, many), new UnitLoad(0, 0), false, null)), token);
        Assert.That(tooMany.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(await tooMany.Content.ReadAsStringAsync(), Does.Contain("inventory.applications"));
        Assert.That(Snapshot(server), Is.EqualTo(before), "refused reports store nothing");

        var forged = await Send(http, HttpMethod.Post, Routes.VersionCheck, JsonContent.Create(new VersionCheckRequest(
            new Inventory(DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion, apps, new Tsunagu.Protocol.Bundles.BundleCounter(long.MaxValue, "made-up")),
            new UnitLoad(0, 0), false, null)), token);
        Assert.That(forged.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await server.Store.Units.GetUnitAsync(mac))!.LastBundleVersion, Is.Null, "a counter no offered bundle has is not recorded");
    }

    [Test]
    public async Task A_slow_sender_does_not_hold_a_concurrency_place_and_is_cut_off()
    {
        TestServer.Configure.Value = o => { o.MaxConcurrentRequests = 1; o.RequestQueueLimit = 0; o.RequestBodyTimeoutSeconds = 3; };
        await using var server = await TestServer.StartAsync();
        var url = new Uri(server.Url);
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(url.Host, url.Port);
        await using var tls = new SslStream(tcp.GetStream(), false, (_, _, _, _) => true);
        await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions { TargetHost = url.Host, EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13 });
        var body = Encoding.ASCII.GetBytes("{\"mac\":\"02:54:53:00:00:01\"" + new string(' ', 4000) + "}");
        await tls.WriteAsync(Encoding.ASCII.GetBytes($"POST {Routes.HostChallenge} HTTP/1.1\r\nHost: {url.Host}\r\nContent-Type: application/json\r\nContent-Length: {body.Length}\r\n\r\n"));
        using var stop = new CancellationTokenSource();
        var dribble = Task.Run(async () =>
        {
            // 300 bytes a second
            for (var i = 0; i < body.Length - 1 && !stop.IsCancellationRequested; i += 30)
            {
                await tls.WriteAsync(body.AsMemory(i, Math.Min(30, body.Length - 1 - i)), stop.Token);
                await tls.FlushAsync(stop.Token);
                await Task.Delay(100, stop.Token);
            }
        });
        try
        {
            await Task.Delay(1000);
            using var http = server.PinnedHttp();
            for (var i = 0; i < 5; i++)
            {
                Assert.That((await http.GetAsync(Routes.Health)).StatusCode, Is.EqualTo(HttpStatusCode.OK), "the only concurrency place is free while the body dribbles in");
                await Task.Delay(200);
            }
            var started = DateTime.UtcNow;
            var answer = new byte[4096];
            var read = await tls.ReadAsync(answer).AsTask().WaitAsync(TimeSpan.FromSeconds(30));
            Assert.That(Encoding.ASCII.GetString(answer, 0, read), Does.StartWith("HTTP/1.1 408"), "cut off after the body timeout");
            Assert.That(DateTime.UtcNow - started, Is.LessThan(TimeSpan.FromSeconds(10)));
        }
        finally
        {
            await stop.CancelAsync();
            try { await dribble; } catch (Exception e) when (e is OperationCanceledException or IOException) { /* the server hung up, as it should */ }
        }
    }

    // ---- TLS and OpenAPI ----------------------------------------------------------------------------------------

    [Test]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public async Task Tls_offers_no_cbc_suite_and_every_response_carries_hsts()
    {
        await using var server = await TestServer.StartAsync();
        using var http = server.PinnedHttp();
        var health = await http.GetAsync(Routes.Health);
        Assert.That(health.Headers.GetValues("Strict-Transport-Security").Single(), Does.Contain("max-age="));
        var url = new Uri(server.Url);
        async Task<bool> Handshake(TlsCipherSuite suite)
        {
            using var tcp = new TcpClient();
            await tcp.ConnectAsync(url.Host, url.Port);
            await using var tls = new SslStream(tcp.GetStream(), false, (_, _, _, _) => true);
            try
            {
                await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
                {
                    TargetHost = url.Host, EnabledSslProtocols = SslProtocols.Tls12, CipherSuitesPolicy = new CipherSuitesPolicy([suite]),
                });
                return true;
            }
            catch (Exception e) when (e is AuthenticationException or IOException)
            {
                return false;
            }
        }
        Assert.That(await Handshake(TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256) || await Handshake(TlsCipherSuite.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256), Is.True,
            "an AEAD suite is accepted");
        foreach (var cbc in new[] { TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
                     TlsCipherSuite.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256, TlsCipherSuite.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, TlsCipherSuite.TLS_RSA_WITH_AES_128_CBC_SHA })
        {
            Assert.That(await Handshake(cbc), Is.False, cbc.ToString());
        }
    }

    [Test]
    public async Task The_openapi_document_declares_security_schemes_and_refusals()
    {
        await using var server = await TestServer.StartAsync();
        using var http = server.PinnedHttp();
        var document = JsonNode.Parse(await http.GetStringAsync("/openapi/v1.json"))!;
        var schemes = document["components"]?["securitySchemes"]?.AsObject();
        Assert.That(schemes?.Select(s => s.Key), Is.EquivalentTo(new[] { "operatorBasic", "bearer" }));
        var units = document["paths"]![Routes.Units]!["get"]!;
        Assert.That(units["responses"]!.AsObject().Select(r => r.Key), Is.SupersetOf(new[] { "401", "403", "429", "503" }));
        Assert.That(units["security"]!.AsArray(), Has.Count.EqualTo(2), "Basic or an operator token");
        Assert.That(document["paths"]![Routes.HostChallenge]!["post"]!["security"], Is.Null, "the challenge needs no credentials");
    }
}
