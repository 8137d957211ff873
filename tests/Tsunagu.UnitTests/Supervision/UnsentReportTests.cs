using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using Tsunagu.Firmware.Net;
using Tsunagu.Firmware.Storage;
using Tsunagu.Firmware.Supervision;
using Tsunagu.Protocol;
using static Tsunagu.UnitTests.Supervision.SimulatedUnits;

namespace Tsunagu.UnitTests.Supervision;

/// <summary>
/// The real supervisor and states on the simulated HAL and virtual time, started with an update journal that holds an
/// unacknowledged report of a finished install (the answer to it was lost): the next version check sends it again,
/// with its install id, once, even though the host offers nothing more.
/// </summary>
public class UnsentReportTests
{
    private static readonly DateTimeOffset Start = new(2026, 11, 1, 12, 0, 0, TimeSpan.Zero);
    private const string UpdateId = "u-apps-2";

    /// <summary>A host that answers every call, offers no update, and records every update report.</summary>
    private sealed class Host(VirtualTime time) : HttpMessageHandler
    {
        public ConcurrentQueue<string> Paths { get; } = new();
        public ConcurrentQueue<UpdateReport> Reports { get; } = new();

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var now = time.TrueNow;
            var path = request.RequestUri!.AbsolutePath;
            Paths.Enqueue(path);
            switch (path)
            {
                case Routes.HostChallenge:
                    return Json(new ChallengeResponse("c", "n", now + TimeSpan.FromMinutes(1)), ProtocolJson.Default.ChallengeResponse);
                case Routes.HostSession:
                    return Json(new SessionResponse("t", TokenScope.Host, now + TimeSpan.FromHours(1), "025453000001", 3600), ProtocolJson.Default.SessionResponse);
                case Routes.VersionCheck:
                    return Json(new VersionCheckResponse("p2", "p2", null, UpdatePolicy.Default, 600, ServerTime: now), ProtocolJson.Default.VersionCheckResponse);
                case Routes.UpdateReport:
                    var report = await request.Content!.ReadFromJsonAsync(ProtocolJson.Default.UpdateReport, cancellationToken);
                    Reports.Enqueue(report!);
                    return Json(new UpdateReportAck(report!.UpdateId, "p2"), ProtocolJson.Default.UpdateReportAck);
                case Routes.Ready:
                    return Json(new ReadyAck("p2", 600), ProtocolJson.Default.ReadyAck);
                default:
                    return Problem(HttpStatusCode.NotFound, ProblemTypes.NotFound, $"no {path}");
            }
        }
    }

    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = Path.Combine(Path.GetTempPath(), "tsunagu-unsent-" + Guid.NewGuid().ToString("N"));

    [TearDown]
    public void TearDown()
    {
        if (Directory.Exists(_dir)) { Directory.Delete(_dir, recursive: true); }
    }

    [Test]
    public async Task An_installed_report_whose_answer_was_lost_is_sent_again_at_the_next_version_check_once_with_its_install_id()
    {
        var time = new VirtualTime(Start);
        var unit = New(_dir, applications: new Dictionary<string, string> { ["vcp"] = "2.0.0" });
        await BurnAsync(unit);
        await CommitSlotAAsync(unit);
        var installId = InstallIds.New();
        var unsent = new UpdateReport(UpdateId, true, null, new Inventory("simulated", "os 1", new Dictionary<string, string> { ["vcp"] = "2.0.0" }), installId);
        // the install committed; its report was sent but the answer never came, so the journal still holds it
        StoreSettings(unit, store => store.Set(StateKeys.PendingUpdate, new PendingUpdate(UpdateId, PendingUpdate.Installed, unsent, 1, InstallId: installId),
            FirmwareJson.Default.PendingUpdate));

        var host = new Host(time);
        var options = new SupervisorOptions { CheckInterval = TimeSpan.FromMinutes(10), BackoffBase = TimeSpan.FromSeconds(1), BackoffCap = TimeSpan.FromMinutes(5) };
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await using var supervisor = new Supervisor(unit.Hardware, options, time, new Random(7));
        supervisor.Context.Client = new UnitClient(new ScriptedNetwork(host), ["pin"]);
        // run through two version checks (the second finds nothing left to send) and stop in Ready after it
        supervisor.StateChanged += c =>
        {
            if ((c.To == StateId.Ready && host.Paths.Count(p => p == Routes.VersionCheck) >= 2) || time.TrueNow - Start > TimeSpan.FromHours(3)) { cts.Cancel(); }
        };
        await supervisor.RunAsync(cts.Token);

        Assert.That(host.Paths.Count(p => p == Routes.VersionCheck), Is.GreaterThanOrEqualTo(2), $"two version checks ran; last error: {supervisor.Context.LastError}");
        Assert.That(host.Reports, Has.Count.EqualTo(1), "sent again once: not at the second check, once acknowledged");
        Assert.That(host.Reports.Single(), Is.EqualTo(unsent).Using<UpdateReport>((a, b) =>
            a.UpdateId == b.UpdateId && a.Success == b.Success && a.InstallId == b.InstallId), "the stored report, with the install id of its attempt");
        var paths = host.Paths.ToList();
        Assert.That(paths.IndexOf(Routes.UpdateReport), Is.GreaterThan(paths.IndexOf(Routes.VersionCheck)), "sent from the version check");
        Assert.That(supervisor.Context.Store!.Get(StateKeys.PendingUpdate, FirmwareJson.Default.PendingUpdate), Is.Null,
            "the acknowledged report's journal is gone");
    }
}
