using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server.Metrics;
using Tsunagu.Server.Push;

namespace Tsunagu.IntegrationTests;

/// <summary>The system's clock, moved forward on demand (wall time and timestamps alike); timers run on the system's.</summary>
public sealed class ShiftedClock : TimeProvider
{
    private long _shiftTicks;

    public override DateTimeOffset GetUtcNow() => base.GetUtcNow() + TimeSpan.FromTicks(Interlocked.Read(ref _shiftTicks));

    public override long GetTimestamp() =>
        base.GetTimestamp() + (long)(Interlocked.Read(ref _shiftTicks) * (double)TimestampFrequency / TimeSpan.TicksPerSecond);

    public void Advance(TimeSpan by) => Interlocked.Add(ref _shiftTicks, by.Ticks);
}

/// <summary>GET /metrics: who may read it, the series it has, that they move with what the server does, and a real Prometheus scraping it.</summary>
[NonParallelizable]
public class MetricsTests
{
    private const string Token = "metrics-token-for-tests-0123456789abcdef";
    private ShiftedClock _clock = null!;

    [SetUp]
    public void SetUp()
    {
        TestServer.DatabaseKind.Value = "sqlite";
        _clock = new ShiftedClock();
        TestServer.Time.Value = _clock;
        TestServer.Configure.Value = o => o.MetricsToken = Token;
    }

    [TearDown]
    public void TearDown()
    {
        TestServer.Configure.Value = null;
        TestServer.Time.Value = null;
    }

    private static async Task<HttpResponseMessage> Get(HttpClient http, string? authorization)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, MetricsEndpoint.Path);
        if (authorization is not null) { request.Headers.TryAddWithoutValidation("Authorization", authorization); }
        return await http.SendAsync(request);
    }

    /// <summary>The scrape as text, and each sample (series with its labels, as written) with its value.</summary>
    private static async Task<(string Text, Dictionary<string, double> Samples)> Scrape(TestServer server)
    {
        using var http = server.PinnedHttp();
        var answer = await Get(http, "Bearer " + Token);
        var text = await answer.Content.ReadAsStringAsync();
        Assert.That(answer.StatusCode, Is.EqualTo(HttpStatusCode.OK), text);
        Assert.That(answer.Content.Headers.ContentType?.MediaType, Is.EqualTo("text/plain"));
        var samples = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => !l.StartsWith('#')))
        {
            var space = line.LastIndexOf(' ');
            samples[line[..space]] = double.Parse(line[(space + 1)..], CultureInfo.InvariantCulture);
        }
        return (text, samples);
    }

    private static double Sum(Dictionary<string, double> samples, string name) =>
        samples.Where(s => s.Key == name || s.Key.StartsWith(name + "{", StringComparison.Ordinal)).Sum(s => s.Value);

    private static async Task<string> HostToken(HttpClient http, TestServer server, string mac)
    {
        var challenge = (await (await http.PostAsJsonAsync(Routes.HostChallenge, new ChallengeRequest(mac))).Content.ReadFromJsonAsync<ChallengeResponse>())!;
        var proof = UnitCredentials.ComputeProof(UnitCredentials.DeriveUnitSecret(server.UnitKey, mac), ProofPurpose.Host, mac, challenge.ChallengeId, challenge.Nonce);
        var session = await http.PostAsJsonAsync(Routes.HostSession, new SessionRequest(mac, challenge.ChallengeId, proof));
        Assert.That(session.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        return (await session.Content.ReadFromJsonAsync<SessionResponse>())!.Token;
    }

    /// <summary>A host session attempt of <paramref name="mac"/> with a proof made from the wrong key: refused.</summary>
    private static async Task RefusedSession(HttpClient http, string mac)
    {
        var challenge = (await (await http.PostAsJsonAsync(Routes.HostChallenge, new ChallengeRequest(mac))).Content.ReadFromJsonAsync<ChallengeResponse>())!;
        var proof = UnitCredentials.ComputeProof(UnitCredentials.DeriveUnitSecret(new byte[UnitCredentials.UnitKeyBytes], mac), ProofPurpose.Host, mac,
            challenge.ChallengeId, challenge.Nonce);
        var session = await http.PostAsJsonAsync(Routes.HostSession, new SessionRequest(mac, challenge.ChallengeId, proof));
        Assert.That(session.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
    }

    private static async Task CheckIn(HttpClient http, string token)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, Routes.VersionCheck)
        {
            Content = JsonContent.Create(new VersionCheckRequest(new Inventory(DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion,
                DemoCatalogue.FactoryApplications), new UnitLoad(0, 0), false, null)),
            Headers = { Authorization = new AuthenticationHeaderValue("Bearer", token) },
        };
        var answer = await http.SendAsync(request);
        Assert.That(answer.StatusCode, Is.EqualTo(HttpStatusCode.OK), await answer.Content.ReadAsStringAsync());
    }

    [Test]
    public async Task Metrics_are_only_for_the_configured_token_and_absent_without_one()
    {
        TestServer.Configure.Value = null;
        await using (var closed = await TestServer.StartAsync())
        {
            using var http = closed.PinnedHttp();
            Assert.That((await Get(http, "Bearer " + Token)).StatusCode, Is.EqualTo(HttpStatusCode.NotFound), "no token configured: no /metrics at all");
        }
        TestServer.Configure.Value = o => o.MetricsToken = Token;
        await using var server = await TestServer.StartAsync();
        using var client = server.PinnedHttp();
        var before = (await Scrape(server)).Samples;
        foreach (var wrong in new[] { null, "", "Bearer", "Bearer " + Token[..^1], "Bearer " + Token + "x", "Basic " + Token, Token, "Bearer " + new string('a', 5000) })
        {
            var answer = await Get(client, wrong);
            Assert.That(answer.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized), $"Authorization: {wrong}");
            Assert.That(answer.Headers.WwwAuthenticate.ToString(), Is.EqualTo("Bearer"));
            Assert.That(await answer.Content.ReadAsStringAsync(), Does.Not.Contain("tsunagu_"), "a refused scrape shows no series");
        }
        var after = (await Scrape(server)).Samples;
        Assert.That(Sum(after, "tsunagu_unit_refusals_total"), Is.EqualTo(Sum(before, "tsunagu_unit_refusals_total")), "a refused scrape is not a unit refusal");
        Assert.That(after.Keys.Count(k => k.StartsWith("tsunagu_http_request_duration_seconds_count{route=\"/metrics\",method=\"GET\",code=\"401\"}", StringComparison.Ordinal)),
            Is.EqualTo(1), "refused scrapes are still timed, under the route");
    }

    [Test]
    public async Task A_check_in_and_a_refused_login_move_their_counters_and_nothing_else()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = server.PinnedHttp();
        var (text, before) = await Scrape(server);
        foreach (var series in new[]
                 {
                     "tsunagu_checkins_total{result=\"up_to_date\"}", "tsunagu_unit_refusals_total{reason=\"wrong_proof\"}",
                     "tsunagu_unit_refusals_total{reason=\"not_registered\"}", "tsunagu_pushes_total{result=\"delivered\"}",
                     "tsunagu_update_reports_total{outcome=\"failure\"}", "tsunagu_units_by_state{state=\"Registered\"}", "tsunagu_units",
                     "tsunagu_units_online", "tsunagu_database_up", "tsunagu_broker_connections",
                 })
        {
            Assert.That(before, Does.ContainKey(series), $"series {series} is in the first scrape\n{text}");
        }
        Assert.That(before["tsunagu_database_up"], Is.EqualTo(1));
        Assert.That(before["tsunagu_units"], Is.EqualTo(1));
        Assert.That(before["tsunagu_units_by_state{state=\"Registered\"}"], Is.EqualTo(1));

        var token = await HostToken(http, server, mac);
        await CheckIn(http, token);
        var afterCheck = (await Scrape(server)).Samples;
        Assert.That(Sum(afterCheck, "tsunagu_checkins_total") - Sum(before, "tsunagu_checkins_total"), Is.EqualTo(1), "one check-in, counted once");
        Assert.That(afterCheck["tsunagu_unit_authentications_total{purpose=\"host\",result=\"accepted\"}"], Is.EqualTo(1));
        Assert.That(Sum(afterCheck, "tsunagu_unit_refusals_total"), Is.EqualTo(Sum(before, "tsunagu_unit_refusals_total")), "an accepted session refuses nothing");

        await RefusedSession(http, mac);
        await RefusedSession(http, "02:00:00:00:99:99");
        var afterRefusals = (await Scrape(server)).Samples;
        Assert.That(afterRefusals["tsunagu_unit_refusals_total{reason=\"wrong_proof\"}"], Is.EqualTo(before["tsunagu_unit_refusals_total{reason=\"wrong_proof\"}"] + 1));
        Assert.That(afterRefusals["tsunagu_unit_refusals_total{reason=\"not_registered\"}"], Is.EqualTo(before["tsunagu_unit_refusals_total{reason=\"not_registered\"}"] + 1));
        Assert.That(afterRefusals["tsunagu_unit_authentications_total{purpose=\"host\",result=\"refused\"}"], Is.EqualTo(2));
        Assert.That(afterRefusals["tsunagu_unit_authentications_total{purpose=\"host\",result=\"accepted\"}"], Is.EqualTo(1), "refusals do not count as acceptances");
        Assert.That(Sum(afterRefusals, "tsunagu_checkins_total"), Is.EqualTo(Sum(afterCheck, "tsunagu_checkins_total")), "a refused login is no check-in");
    }

    [Test]
    public async Task Fleet_gauges_are_read_once_per_lifetime_however_often_scraped()
    {
        await using var server = await TestServer.StartAsync();
        var first = (await Scrape(server)).Samples;
        Assert.That(first["tsunagu_units"], Is.Zero);
        var units = await server.AddUnitsAsync(2);
        for (var i = 0; i < 5; i++)
        {
            Assert.That((await Scrape(server)).Samples["tsunagu_units"], Is.Zero, "within the snapshot's lifetime the units table is not read again");
        }
        _clock.Advance(FleetGauges.SnapshotLifetime + TimeSpan.FromSeconds(1));
        var later = (await Scrape(server)).Samples;
        Assert.That(later["tsunagu_units"], Is.EqualTo(2));
        Assert.That(later["tsunagu_units_by_state{state=\"Registered\"}"], Is.EqualTo(2));
        Assert.That(later["tsunagu_units_by_pattern{pattern=\"none\"}"], Is.EqualTo(2), "units that have not reported yet run no known pattern");
        Assert.That(Sum(later, "tsunagu_units_by_state"), Is.EqualTo(2), "each unit in exactly one state");
        Assert.That(later.Keys.Where(k => k.StartsWith("tsunagu_rollout_units{", StringComparison.Ordinal)), Is.Empty, "no unit has a target yet");
        Assert.That(later["tsunagu_units_online"], Is.Zero);

        await server.Store.Units.SetTargetPatternAsync(units[0].Mac, DemoCatalogue.Pattern2);
        await server.Store.Units.SetPresenceAsync(units[1].Mac, online: true);
        _clock.Advance(FleetGauges.SnapshotLifetime + TimeSpan.FromSeconds(1));
        var moved = (await Scrape(server)).Samples;
        Assert.That(moved[$"tsunagu_rollout_units{{target=\"{DemoCatalogue.Pattern2}\",status=\"pending\"}}"], Is.EqualTo(1));
        Assert.That(moved[$"tsunagu_rollout_units{{target=\"{DemoCatalogue.Pattern2}\",status=\"at_target\"}}"], Is.Zero);
        Assert.That(moved["tsunagu_units_online"], Is.EqualTo(1));
        Assert.That(moved["tsunagu_units"], Is.EqualTo(2), "nothing counted twice");
    }

    [Test]
    public async Task Request_latency_is_labelled_by_route_template_never_by_the_path_a_client_chose()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = server.PinnedHttp();
        var token = await HostToken(http, server, mac);
        var digest = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
        using (var request = new HttpRequestMessage(HttpMethod.Get, $"{Routes.Artifacts}/{digest}") { Headers = { Authorization = new AuthenticationHeaderValue("Bearer", token) } })
        {
            Assert.That((await http.SendAsync(request)).StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
        }
        var invented = "no-such-page-" + Guid.NewGuid().ToString("N");
        Assert.That((await http.GetAsync("/" + invented)).StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
        using (var odd = new HttpRequestMessage(new HttpMethod("BREW" + Guid.NewGuid().ToString("N")[..6].ToUpperInvariant()), "/healthz"))
        {
            await http.SendAsync(odd);
        }
        var (text, samples) = await Scrape(server);
        Assert.That(text, Does.Not.Contain(digest).And.Not.Contain(invented).And.Not.Contain("BREW"), "no client-chosen text in any label");
        Assert.That(samples, Does.ContainKey($"tsunagu_http_request_duration_seconds_count{{route=\"{Routes.Artifacts}/{{sha256}}\",method=\"GET\",code=\"404\"}}"));
        Assert.That(samples[$"tsunagu_http_request_duration_seconds_count{{route=\"{Routes.HostSession}\",method=\"POST\",code=\"200\"}}"], Is.EqualTo(1));
        Assert.That(samples.Keys.Where(k => k.Contains("method=\"other\"", StringComparison.Ordinal)), Is.Not.Empty, "an invented method is counted as other");
        Assert.That(samples.Keys.Where(k => k.StartsWith($"tsunagu_http_request_duration_seconds_count{{route=\"{ServerMetrics.NoRoute}\"", StringComparison.Ordinal)), Is.Not.Empty);
    }

    [Test]
    public async Task Broker_health_follows_the_servers_own_link()
    {
        await using var server = await TestServer.StartAsync();
        var link = server.App.Services.GetRequiredService<BrokerLink>();
        await server.WaitForAsync(() => link.Connected, "the server's broker link to come up");
        var samples = (await Scrape(server)).Samples;
        Assert.That(samples["tsunagu_broker_link_up"], Is.EqualTo(1));
        Assert.That(samples["tsunagu_broker_connections"], Is.GreaterThanOrEqualTo(1), "the server's own connection at least");
        await link.StopAsync(CancellationToken.None);
        Assert.That((await Scrape(server)).Samples["tsunagu_broker_link_up"], Is.Zero);
    }

    private static string DashboardPath()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            var path = Path.Combine(directory.FullName, "docs", "grafana-dashboard.json");
            if (File.Exists(path)) { return path; }
        }
        throw new FileNotFoundException("docs/grafana-dashboard.json above " + AppContext.BaseDirectory);
    }

    [Test]
    public async Task A_real_prometheus_scrapes_the_series()
    {
        const string binary = "/usr/bin/prometheus";
        Assert.That(File.Exists(binary), Is.True, "Debian's prometheus package is needed (APT_PACKAGES in the Makefile)");
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = server.PinnedHttp();
        await CheckIn(http, await HostToken(http, server, mac));
        await RefusedSession(http, mac);

        var directory = TempDirectories.Create("prometheus");
        var port = TestServer.FreePort();
        var tokenFile = Path.Combine(directory, "token");
        await File.WriteAllTextAsync(tokenFile, Token);
        var target = new Uri(server.Url);
        await File.WriteAllTextAsync(Path.Combine(directory, "prometheus.yml"), $"""
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
            scrape_configs:
              - job_name: tsunagu
                scheme: https
                metrics_path: {MetricsEndpoint.Path}
                authorization:
                  type: Bearer
                  credentials_file: {tokenFile}
                tls_config:
                  ca_file: {server.CertificatePath}
                static_configs:
                  - targets: ["127.0.0.1:{target.Port}"]
            """);
        var start = new ProcessStartInfo(binary) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[]
                 {
                     $"--config.file={Path.Combine(directory, "prometheus.yml")}", $"--storage.tsdb.path={Path.Combine(directory, "data")}",
                     $"--web.listen-address=127.0.0.1:{port}",
                 })
        {
            start.ArgumentList.Add(a);
        }
        using var prometheus = Process.Start(start) ?? throw new InvalidOperationException("could not start prometheus");
        var log = new System.Collections.Concurrent.ConcurrentQueue<string>();
        prometheus.OutputDataReceived += (_, e) => { if (e.Data is not null) { log.Enqueue(e.Data); } };
        prometheus.ErrorDataReceived += (_, e) => { if (e.Data is not null) { log.Enqueue(e.Data); } };
        prometheus.BeginOutputReadLine();
        prometheus.BeginErrorReadLine();
        try
        {
            using var api = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/"), Timeout = TimeSpan.FromSeconds(30) };
            async Task<double?> Query(string query)
            {
                try
                {
                    using var document = JsonDocument.Parse(await api.GetStringAsync("api/v1/query?query=" + Uri.EscapeDataString(query)));
                    var result = document.RootElement.GetProperty("data").GetProperty("result");
                    return result.GetArrayLength() == 0 ? null
                        : double.Parse(result[0].GetProperty("value")[1].GetString()!, CultureInfo.InvariantCulture);
                }
                catch (HttpRequestException)
                {
                    return null; // not listening yet
                }
                catch (TaskCanceledException e) when (e.InnerException is TimeoutException)
                {
                    TestContext.Out.WriteLine($"prometheus did not answer {query} within {api.Timeout.TotalSeconds} s; asking again");
                    return null; // slow to answer on a busy machine: the loop asks again until its deadline
                }
            }
            var deadline = Stopwatch.StartNew();
            double? checkins = null, refusals = null, up = null, scrapes = null;
            while (deadline.Elapsed < TimeSpan.FromSeconds(180) && (checkins is null || refusals is null || up is null || scrapes is null))
            {
                Assert.That(prometheus.HasExited, Is.False, $"prometheus exited:\n{string.Join("\n", log.TakeLast(20))}");
                up ??= await Query("up{job=\"tsunagu\"} == 1");
                checkins ??= await Query("sum(tsunagu_checkins_total)");
                refusals ??= await Query("tsunagu_unit_refusals_total{reason=\"wrong_proof\"}");
                // a scrape's own request is timed once it is answered: the next scrape carries it
                scrapes ??= await Query("sum(tsunagu_http_request_duration_seconds_count{route=\"/metrics\",code=\"200\"})");
                await Task.Delay(250);
            }
            Assert.That(up, Is.EqualTo(1), $"prometheus scraped the server\n{string.Join("\n", log.TakeLast(20))}");
            Assert.That(checkins, Is.EqualTo(1), "the check-in, as Prometheus stored it");
            Assert.That(refusals, Is.EqualTo(1), "the refused login, as Prometheus stored it");
            Assert.That(await Query("tsunagu_units"), Is.EqualTo(1));
            Assert.That(scrapes, Is.GreaterThanOrEqualTo(1), "the scrapes themselves, timed by route");

            // the shipped dashboard: each query is valid PromQL for this Prometheus, and uses only series the server exports
            var scraped = (await Scrape(server)).Text;
            using var dashboard = JsonDocument.Parse(await File.ReadAllTextAsync(DashboardPath()));
            var expressions = dashboard.RootElement.GetProperty("panels").EnumerateArray()
                .Where(p => p.TryGetProperty("targets", out _))
                .SelectMany(p => p.GetProperty("targets").EnumerateArray().Select(t => t.GetProperty("expr").GetString()!)).ToList();
            Assert.That(expressions, Has.Count.GreaterThan(10));
            foreach (var expression in expressions)
            {
                var query = expression.Replace("$instance", ".*", StringComparison.Ordinal).Replace("$__rate_interval", "1m", StringComparison.Ordinal);
                var answer = await api.GetAsync("api/v1/query?query=" + Uri.EscapeDataString(query));
                Assert.That(answer.StatusCode, Is.EqualTo(HttpStatusCode.OK), $"{expression}: {await answer.Content.ReadAsStringAsync()}");
                foreach (var name in System.Text.RegularExpressions.Regex.Matches(expression, @"tsunagu_[a-z_]+").Select(m => m.Value))
                {
                    var family = System.Text.RegularExpressions.Regex.Replace(name, "_(bucket|count|sum)$", "");
                    Assert.That(scraped, Does.Contain($"# TYPE {family} "), $"the dashboard's {name} is a metric the server exports");
                }
            }
        }
        finally
        {
            prometheus.Kill();
            await prometheus.WaitForExitAsync();
            Directory.Delete(directory, recursive: true);
        }
    }
}
