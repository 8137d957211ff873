using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using Tsunagu.Firmware.Net;
using Tsunagu.Firmware.Storage;
using Tsunagu.Firmware.Supervision;
using Tsunagu.Hal;
using Tsunagu.Hal.Simulated;
using Tsunagu.Protocol;
using static Tsunagu.UnitTests.Supervision.SimulatedUnits;

namespace Tsunagu.UnitTests.Supervision;

/// <summary>
/// The real supervisor and states on the simulated HAL and virtual time, restarted into a new OS slot in the middle of
/// an update: an update that never reaches its health check (the new OS never brings its WAN link up, so the host is
/// never reached) is rolled back by its own deadline, and the failure is reported once the previous OS is back.
/// </summary>
public class UpdateDeadlineTests
{
    private static readonly DateTimeOffset Start = new(2026, 11, 1, 12, 0, 0, TimeSpan.Zero);
    private const string UpdateId = "u-os-2";

    /// <summary>A host that answers every call; it records requests with the slot the unit ran, and every update report.</summary>
    private sealed class Host(VirtualTime time, SimulatedBootControl boot) : HttpMessageHandler
    {
        public ConcurrentQueue<(DateTimeOffset At, string Path, BootSlot? Slot)> Requests { get; } = new();
        public ConcurrentQueue<(DateTimeOffset At, UpdateReport Report, BootSlot? Slot)> Reports { get; } = new();

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var now = time.TrueNow;
            var path = request.RequestUri!.AbsolutePath;
            Requests.Enqueue((now, path, boot.Booted));
            switch (path)
            {
                case Routes.HostChallenge:
                    return Json(new ChallengeResponse("c", "n", now + TimeSpan.FromMinutes(1)), ProtocolJson.Default.ChallengeResponse);
                case Routes.HostSession:
                    return Json(new SessionResponse("t", TokenScope.Host, now + TimeSpan.FromHours(1), "025453000001", 3600), ProtocolJson.Default.SessionResponse);
                case Routes.VersionCheck:
                    return Json(new VersionCheckResponse("p1", "p1", null, UpdatePolicy.Default, 600, ServerTime: now), ProtocolJson.Default.VersionCheckResponse);
                case Routes.UpdateReport:
                    var report = await request.Content!.ReadFromJsonAsync(ProtocolJson.Default.UpdateReport, cancellationToken);
                    Reports.Enqueue((now, report!, boot.Booted));
                    return Json(new UpdateReportAck(report!.UpdateId, "p1"), ProtocolJson.Default.UpdateReportAck);
                case Routes.Ready:
                    return Json(new ReadyAck("p1", 600), ProtocolJson.Default.ReadyAck);
                default:
                    return Problem(HttpStatusCode.NotFound, ProblemTypes.NotFound, $"no {path}");
            }
        }
    }

    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = Path.Combine(Path.GetTempPath(), "tsunagu-deadline-" + Guid.NewGuid().ToString("N"));

    [TearDown]
    public void TearDown()
    {
        if (Directory.Exists(_dir)) { Directory.Delete(_dir, recursive: true); }
    }

    private static SupervisorOptions OptionsWithCap(int backoffCapMinutes) => new()
    {
        CheckInterval = TimeSpan.FromMinutes(10),
        BackoffBase = TimeSpan.FromSeconds(1),
        BackoffCap = TimeSpan.FromMinutes(backoffCapMinutes),
        MainLinkFailureLimit = 3,
    };

    /// <summary>How late the rollback may start after the deadline: the deadline ends a retry wait, not the next state entry after it.</summary>
    private static readonly TimeSpan Lateness = TimeSpan.FromSeconds(5);

    // a retry wait of up to 5 minutes (the default scale) and of up to 25 minutes: the deadline is kept either way
    [TestCase(5)]
    [TestCase(25)]
    public async Task A_new_OS_whose_WAN_link_never_comes_up_is_rolled_back_by_its_deadline_and_the_failure_reported_from_the_old_OS(int backoffCapMinutes)
    {
        var options = OptionsWithCap(backoffCapMinutes);
        var time = new VirtualTime(Start);
        var unit = New(_dir);
        await BurnAsync(unit);
        // the old OS 1.0 committed in slot A; the update wrote OS 2.0 to slot B, activated it and restarted into it
        await CommitSlotAAsync(unit);
        var boot = unit.Boot;
        await boot.WriteAsync(BootSlot.B, new MemoryStream([2]), "2.0", CancellationToken.None);
        boot.Activate(BootSlot.B, new Firmware.Updates.UpdateOptions().BootTries);
        await boot.RebootAsync(CancellationToken.None);
        Assert.That(boot.Booted, Is.EqualTo(BootSlot.B), "precondition: the unit runs the new, unconfirmed OS");
        var bootsBefore = boot.Boots;
        var offer = new UpdateOffer(UpdateId, "p1", "p2", 3, "/artifacts/x", new string('0', 64), 1);
        StoreSettings(unit, store => store.Set(StateKeys.PendingUpdate, new PendingUpdate(UpdateId, PendingUpdate.Rebooting, null, 1, offer, TargetSlot: nameof(BootSlot.B)),
            FirmwareJson.Default.PendingUpdate));

        var host = new Host(time, boot);
        var changes = new List<StateChange>();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await using var supervisor = new Supervisor(unit.Hardware, options, time, new Random(7));
        supervisor.Context.Client = new UnitClient(new ScriptedNetwork(host), ["pin"]);
        // the new OS never brings a WAN link up (main or provisional); the old one does
        void WanFollowsTheOs() => unit.Wan.MainUnavailable = unit.Wan.ProvisionalUnavailable = boot.Booted == BootSlot.B;
        WanFollowsTheOs();
        supervisor.StateChanged += c =>
        {
            changes.Add(c);
            WanFollowsTheOs();
            if ((!host.Reports.IsEmpty && c.To == StateId.Ready) || time.TrueNow - Start > TimeSpan.FromHours(3)) { cts.Cancel(); }
        };
        await supervisor.RunAsync(cts.Token);

        var o = options.Update;
        var deadline = o.HostUnreachableGrace + o.HealthWindow;
        var rollback = changes.FirstOrDefault(c => c.From == StateId.Update);
        TestContext.Out.WriteLine($"{changes.Count} transitions in {(time.TrueNow - Start).TotalMinutes:0} virtual min; update left at " +
                                  $"{(rollback is null ? "never" : $"{(rollback.At - Start).TotalMinutes:0.0} min ({rollback.Outcome})")}; last error: {supervisor.Context.LastError}");
        Assert.That(rollback, Is.Not.Null, "the update state was entered again");
        Assert.Multiple(() =>
        {
            Assert.That(rollback!.Outcome, Is.EqualTo(Outcome.Reboot), "rolled back into the previous OS slot");
            // a retry wait ends when the deadline passes: the rollback starts then, not after the rest of the wait
            Assert.That(rollback.At - Start, Is.InRange(deadline, deadline + Lateness), "at the deadline, counted from the boot");
            Assert.That(changes.Where(c => c.At - Start < deadline).Select(c => c.To), Has.None.EqualTo(StateId.Update), "not before the deadline");
            Assert.That(boot.Booted, Is.EqualTo(BootSlot.A), "the old OS runs again");
            Assert.That(boot.Read(BootSlot.B).Good, Is.False, "the new slot is marked bad");
            Assert.That(boot.Boots - bootsBefore, Is.EqualTo(1), "one restart, into the old slot");
            Assert.That(host.Requests.Where(r => r.Slot == BootSlot.B), Is.Empty, "the new OS never reached the host");
        });
        Assert.That(host.Reports, Has.Count.EqualTo(1), "the failure is reported once");
        var (at, report, slot) = host.Reports.Single();
        Assert.Multiple(() =>
        {
            Assert.That(report.UpdateId, Is.EqualTo(UpdateId));
            Assert.That(report.Success, Is.False);
            Assert.That(report.Error, Does.Contain("health check did not start").And.Contain("rolled back"));
            Assert.That(slot, Is.EqualTo(BootSlot.A), "reported from the old OS");
            Assert.That(at, Is.GreaterThanOrEqualTo(rollback!.At));
        });
        var journal = supervisor.Context.Store!.Get(StateKeys.PendingUpdate, FirmwareJson.Default.PendingUpdate);
        Assert.That(journal, Is.Not.Null);
        Assert.That((journal!.Phase, journal.Report, journal.TargetSlot), Is.EqualTo((PendingUpdate.Failed, (UpdateReport?)null, (string?)null)),
            "the journal says failed, and the report was delivered (not kept to be sent again)");
        Assert.That(changes.Last().To, Is.EqualTo(StateId.Ready), "Ready on the old OS");
    }
}
