using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Metrics;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// Update reports keyed by install id: a report the unit sends again (it never saw the answer) is recorded once,
/// answered the same and counted once, while two installs of the same update (a reinstall after a wiped `data`) are
/// two; a unit without install ids is recorded as before.
/// </summary>
[TestFixture("sqlite")]
[TestFixture("postgres")]
public class UpdateReportTests(string database)
{
    private const string MetricsToken = "metrics-token-for-update-reports-0123456789";

    [SetUp]
    public void SetUp()
    {
        TestServer.DatabaseKind.Value = database;
        TestServer.Configure.Value = o => o.MetricsToken = MetricsToken;
    }

    [TearDown]
    public void TearDown() => TestServer.Configure.Value = null;

    private static async Task<HttpClient> UnitHttp(TestServer server, string mac)
    {
        var http = server.PinnedHttp();
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", (await server.HostSessionAsync(mac)).Token);
        return http;
    }

    /// <summary>What the unit runs after the demo update: pattern 2.</summary>
    private static UpdateReport Installed(string? installId) =>
        new(DemoCatalogue.UpdateId, true, null, new Inventory(DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion,
            DemoCatalogue.Pattern2Applications.ToDictionary(a => a.Key, a => a.Value)), installId);

    private static async Task<(HttpStatusCode Status, string Body)> ReportAsync(HttpClient http, UpdateReport report)
    {
        using var response = await http.PostAsJsonAsync(Routes.UpdateReport, report, ProtocolJson.Default.UpdateReport);
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    /// <summary>The successful update reports the server has counted (<c>tsunagu_update_reports_total{outcome="success"}</c>).</summary>
    private static async Task<double> CountedAsync(TestServer server)
    {
        using var http = server.PinnedHttp();
        using var request = new HttpRequestMessage(HttpMethod.Get, MetricsEndpoint.Path);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", MetricsToken);
        using var answer = await http.SendAsync(request);
        var text = await answer.Content.ReadAsStringAsync();
        Assert.That(answer.StatusCode, Is.EqualTo(HttpStatusCode.OK), text);
        const string series = "tsunagu_update_reports_total{outcome=\"success\"} ";
        var line = text.Split('\n').FirstOrDefault(l => l.StartsWith(series, StringComparison.Ordinal));
        return line is null ? 0 : double.Parse(line[series.Length..], CultureInfo.InvariantCulture);
    }

    /// <summary>The unit's update history entries, its update audit entries and its update report rows.</summary>
    private static async Task<(int History, int Audit, long Reports)> RecordedAsync(TestServer server, string mac) => (
        (await server.Store.History.ListUnitEventsAsync(mac, 1_000)).Count(e => e.Kind == UnitEventKinds.Update),
        (await server.Store.ListAuditAsync(1_000, actor: mac)).Count(a => a.Action is "update.succeeded" or "update.failed"),
        await server.Store.History.CountUpdateReportsAsync(mac));

    /// <summary>Everything an update report may write about the unit.</summary>
    private static async Task<string> SnapshotAsync(TestServer server, string mac) => JsonSerializer.Serialize(new
    {
        unit = await server.Store.Units.GetUnitAsync(mac),
        reports = await server.Store.History.ListUpdateReportsAsync(mac),
        events = (await server.Store.History.ListUnitEventsAsync(mac, 1_000)).Select(e => new { e.Id, e.At, e.Kind, e.Detail, e.Failed }),
        audit = (await server.Store.ListAuditAsync(1_000)).Select(a => new { a.Id, a.At, a.Actor, a.Action, a.Target, a.Detail }),
    });

    [Test]
    public async Task A_report_sent_again_with_the_same_install_id_adds_one_history_entry_one_audit_entry_and_one_count()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = await UnitHttp(server, mac);
        var counted = await CountedAsync(server);
        var report = Installed(InstallIds.New());

        var first = await ReportAsync(http, report);
        Assert.That(first.Status, Is.EqualTo(HttpStatusCode.OK), first.Body);
        Assert.That(await RecordedAsync(server, mac), Is.EqualTo((1, 1, 1L)), "the first report is recorded");
        var after = await SnapshotAsync(server, mac);

        // the connection dropped after the server stored it: the unit sends the same report again, twice
        foreach (var attempt in new[] { 1, 2 })
        {
            var again = await ReportAsync(http, report);
            Assert.That(again.Status, Is.EqualTo(HttpStatusCode.OK), again.Body);
            Assert.That(again.Body, Is.EqualTo(first.Body), $"repeat {attempt}: the same answer");
        }
        Assert.That(await RecordedAsync(server, mac), Is.EqualTo((1, 1, 1L)), "one install: one history entry, one audit entry, one report");
        Assert.That(await CountedAsync(server) - counted, Is.EqualTo(1), "counted once");
        Assert.That(await SnapshotAsync(server, mac), Is.EqualTo(after), "a repeated report writes nothing");
        Assert.That((await server.Store.Units.GetUnitAsync(mac))!.Pattern, Is.EqualTo(DemoCatalogue.Pattern2));
    }

    [Test]
    public async Task Concurrent_repeats_of_one_install_are_recorded_once()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = await UnitHttp(server, mac);
        var counted = await CountedAsync(server);
        var report = Installed(InstallIds.New());
        var answers = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => ReportAsync(http, report)));
        Assert.That(answers.Select(a => a.Status), Is.All.EqualTo(HttpStatusCode.OK), string.Join("\n", answers.Select(a => a.Body)));
        Assert.That(answers.Select(a => a.Body).Distinct().Count(), Is.EqualTo(1), "every copy got the same answer");
        Assert.That(await RecordedAsync(server, mac), Is.EqualTo((1, 1, 1L)));
        Assert.That(await CountedAsync(server) - counted, Is.EqualTo(1));
    }

    [Test]
    public async Task Two_installs_of_the_same_update_with_different_install_ids_are_both_recorded_and_counted()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = await UnitHttp(server, mac);
        var counted = await CountedAsync(server);
        // the unit installed the update, its data partition was wiped, it installed it again: same update, same result
        var first = Installed(InstallIds.New());
        var second = Installed(InstallIds.New());
        foreach (var report in new[] { first, second, first, second })
        {
            var answer = await ReportAsync(http, report);
            Assert.That(answer.Status, Is.EqualTo(HttpStatusCode.OK), answer.Body);
        }
        Assert.That(await RecordedAsync(server, mac), Is.EqualTo((2, 2, 2L)), "two installs: two history entries, two audit entries, two reports");
        Assert.That(await CountedAsync(server) - counted, Is.EqualTo(2));
        Assert.That((await server.Store.History.ListUpdateReportsAsync(mac)).Select(r => r.InstallId), Is.EquivalentTo(new[] { first.InstallId, second.InstallId }));
    }

    [Test]
    public async Task A_report_without_an_install_id_from_an_older_unit_is_recorded_as_before()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = await UnitHttp(server, mac);
        // the JSON an older unit sends: no installId at all
        var json = JsonSerializer.Serialize(Installed(null), ProtocolJson.Default.UpdateReport);
        Assert.That(json, Does.Not.Contain("installId\":\""));
        foreach (var attempt in new[] { 1, 2 })
        {
            using var response = await http.PostAsync(Routes.UpdateReport, new StringContent(json.Replace(",\"installId\":null", "", StringComparison.Ordinal),
                System.Text.Encoding.UTF8, "application/json"));
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), $"attempt {attempt}: {await response.Content.ReadAsStringAsync()}");
        }
        var row = (await server.Store.History.ListUpdateReportsAsync(mac)).Single();
        Assert.That((row.UpdateId, row.Success, row.InstallId), Is.EqualTo((DemoCatalogue.UpdateId, 1L, (string?)null)), "one report row per unit, update and result, as before install ids");
        Assert.That((await server.Store.Units.GetUnitAsync(mac))!.Pattern, Is.EqualTo(DemoCatalogue.Pattern2));
    }

    [TestCase("")]
    [TestCase("0123456789abcdef0123456789abcde")]
    [TestCase("0123456789ABCDEF0123456789ABCDEF")]
    [TestCase("0123456789abcdef0123456789abcdef0")]
    [TestCase("0123456789abcdef\n123456789abcdef")]
    [TestCase("'; DROP TABLE update_reports; --0")]
    public async Task A_malformed_install_id_is_refused_and_changes_nothing(string installId)
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = await UnitHttp(server, mac);
        var before = await SnapshotAsync(server, mac);
        var answer = await ReportAsync(http, Installed(installId));
        Assert.That(answer.Status, Is.EqualTo(HttpStatusCode.BadRequest), answer.Body);
        Assert.That(answer.Body, Does.Contain("installId"));
        Assert.That(await SnapshotAsync(server, mac), Is.EqualTo(before));
    }

    [Test]
    public async Task A_report_of_a_recorded_install_that_claims_another_outcome_is_refused_and_changes_nothing()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = await UnitHttp(server, mac);
        var report = Installed(InstallIds.New());
        Assert.That((await ReportAsync(http, report)).Status, Is.EqualTo(HttpStatusCode.OK));
        var before = await SnapshotAsync(server, mac);
        var failed = report with { Success = false, Error = "health check failed" };
        var answer = await ReportAsync(http, failed);
        Assert.That(answer.Status, Is.EqualTo(HttpStatusCode.Conflict), answer.Body);
        Assert.That(answer.Body, Does.Contain(report.InstallId!));
        Assert.That(await SnapshotAsync(server, mac), Is.EqualTo(before), "a refused report changes nothing");
    }
}
