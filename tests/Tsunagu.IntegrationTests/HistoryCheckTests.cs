using Tsunagu.Cli.Chaos;
using Tsunagu.Protocol;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The nemesis's "nothing lost or duplicated" invariant, fed histories with one entry lost, doubled or invented:
/// each must break it, naming the unit or check; a consistent history must hold.
/// </summary>
public class HistoryCheckTests
{
    private const string A = "02:54:53:00:00:01", B = "02:54:53:00:00:02";

    private static Dictionary<string, SentReports> Sent(params (string Mac, SentReports Reports)[] units) =>
        units.ToDictionary(u => u.Mac, u => u.Reports);

    private static Dictionary<string, int> Recorded(params (string Mac, int Count)[] units) => units.ToDictionary(u => u.Mac, u => u.Count);

    [Test]
    public void Ready_reports_each_recorded_once_hold()
    {
        var result = HistoryCheck.Reports("ready", Sent((A, new SentReports(5, 0)), (B, new SentReports(3, 2))), Recorded((A, 5), (B, 4)));
        Assert.That(result.Held, Is.True, result.Detail);
        Assert.That(result.Detail, Does.Contain("9 ready entries for 8 acknowledged and 2 unanswered"));
    }

    [Test]
    public void A_duplicated_ready_entry_breaks_the_invariant()
    {
        var result = HistoryCheck.Reports("ready", Sent((A, new SentReports(5, 0)), (B, new SentReports(3, 0))), Recorded((A, 6), (B, 3)));
        Assert.That(result.Held, Is.False);
        Assert.That(result.Detail, Does.Contain(A).And.Contain("too many"));
    }

    [Test]
    public void A_lost_acknowledged_ready_entry_breaks_the_invariant()
    {
        var result = HistoryCheck.Reports("ready", Sent((A, new SentReports(5, 0)), (B, new SentReports(3, 1))), Recorded((A, 5), (B, 2)));
        Assert.That(result.Held, Is.False);
        Assert.That(result.Detail, Does.Contain(B).And.Contain("missing"));
    }

    [Test]
    public void An_unanswered_report_may_or_may_not_be_recorded_but_not_twice()
    {
        var sent = Sent((A, new SentReports(2, 1)));
        Assert.Multiple(() =>
        {
            Assert.That(HistoryCheck.Reports("ready", sent, Recorded((A, 2))).Held, Is.True, "the answer was lost before the server wrote it");
            Assert.That(HistoryCheck.Reports("ready", sent, Recorded((A, 3))).Held, Is.True, "the server wrote it, the answer was lost");
            Assert.That(HistoryCheck.Reports("ready", sent, Recorded((A, 4))).Held, Is.False, "one more than reached the server");
        });
    }

    [Test]
    public void Entries_for_a_unit_that_sent_nothing_break_the_invariant()
    {
        var result = HistoryCheck.Reports("ready", Sent((A, new SentReports(1, 0))), Recorded((A, 1), (B, 1)));
        Assert.That(result.Held, Is.False);
        Assert.That(result.Detail, Does.Contain(B));
    }

    [Test]
    public void A_report_acknowledged_while_the_database_crashed_may_be_missing_but_not_doubled()
    {
        var sent = Sent((A, new SentReports(4, 0, AcknowledgedWhereLossIsAllowed: 1)));
        Assert.Multiple(() =>
        {
            Assert.That(HistoryCheck.Reports("ready", sent, Recorded((A, 3))).Held, Is.True);
            Assert.That(HistoryCheck.Reports("ready", sent, Recorded((A, 2))).Held, Is.False, "two missing, one allowed");
            Assert.That(HistoryCheck.Reports("ready", sent, Recorded((A, 5))).Held, Is.False);
        });
    }

    private static readonly DateTimeOffset At = new(2026, 12, 3, 12, 0, 0, TimeSpan.Zero);

    private static ForceCheckStatus Status(string id, params (string Mac, string Status)[] units) => new(id, At, 5, "operator",
        units.Count(u => u.Status == "delivered"), units.Count(u => u.Status == "pending"), units.Count(u => u.Status == "offline"),
        units.Select(u => new PushDelivery(u.Mac, u.Status, 1, At, u.Status == "delivered" ? At : null)).ToList());

    private static AuditEntry Audit(long id, string checkId) => new(id, "operator", "units.check", $"{A},{B}", $"importance 5; check {checkId}");

    private static (List<ForcedCheck>, Dictionary<string, ForceCheckStatus?>, List<AuditEntry>) Consistent() =>
    (
        [new ForcedCheck("c1", [A, B]), new ForcedCheck("c2", [A, B])],
        new() { ["c1"] = Status("c1", (A, "delivered"), (B, "pending")), ["c2"] = Status("c2", (A, "offline"), (B, "delivered")) },
        [Audit(1, "c1"), new AuditEntry(2, "operator", "unit.target-pattern", A, "P1"), Audit(3, "c2")]
    );

    [Test]
    public void Forced_checks_each_known_and_audited_once_hold()
    {
        var (forced, status, audit) = Consistent();
        var result = HistoryCheck.Checks(forced, status, audit);
        Assert.That(result.Held, Is.True, result.Detail);
        Assert.That(result.Detail, Does.Contain("2 forced checks").And.Contain("2 unit deliveries delivered, 1 pending, 1 offline"));
    }

    [Test]
    public void A_check_the_server_forgot_breaks_the_invariant()
    {
        var (forced, status, audit) = Consistent();
        status["c2"] = null;
        var result = HistoryCheck.Checks(forced, status, audit);
        Assert.That(result.Held, Is.False);
        Assert.That(result.Detail, Does.Contain("check c2: the server does not know it"));
    }

    [Test]
    public void A_unit_missing_from_a_check_or_listed_twice_or_not_asked_for_breaks_the_invariant()
    {
        var (forced, status, audit) = Consistent();
        var missing = new Dictionary<string, ForceCheckStatus?>(status) { ["c1"] = Status("c1", (A, "delivered")) };
        var twice = new Dictionary<string, ForceCheckStatus?>(status) { ["c1"] = Status("c1", (A, "delivered"), (B, "pending"), (B, "delivered")) };
        var extra = new Dictionary<string, ForceCheckStatus?>(status) { ["c1"] = Status("c1", (A, "delivered"), (B, "pending"), ("02:54:53:00:00:09", "pending")) };
        var unknown = new Dictionary<string, ForceCheckStatus?>(status) { ["c1"] = Status("c1", (A, "delivered"), (B, "notified")) };
        Assert.Multiple(() =>
        {
            Assert.That(HistoryCheck.Checks(forced, missing, audit).Detail, Does.Contain("missing: " + B));
            Assert.That(HistoryCheck.Checks(forced, twice, audit).Detail, Does.Contain("listed twice: " + B));
            Assert.That(HistoryCheck.Checks(forced, extra, audit).Detail, Does.Contain("not forced on: 02:54:53:00:00:09"));
            Assert.That(HistoryCheck.Checks(forced, unknown, audit).Detail, Does.Contain("neither delivered, pending nor offline"));
            foreach (var broken in new[] { missing, twice, extra, unknown })
            {
                Assert.That(HistoryCheck.Checks(forced, broken, audit).Held, Is.False);
            }
        });
    }

    [Test]
    public void Tallies_that_do_not_add_up_break_the_invariant()
    {
        var (forced, status, audit) = Consistent();
        status["c1"] = Status("c1", (A, "delivered"), (B, "pending")) with { Delivered = 2, Pending = 0 };
        var result = HistoryCheck.Checks(forced, status, audit);
        Assert.That(result.Held, Is.False);
        Assert.That(result.Detail, Does.Contain("tallies 2/0/0"));
    }

    [Test]
    public void A_check_audited_twice_never_or_without_being_forced_breaks_the_invariant()
    {
        var (forced, status, audit) = Consistent();
        Assert.Multiple(() =>
        {
            var twice = HistoryCheck.Checks(forced, status, [.. audit, Audit(4, "c2")]);
            Assert.That(twice.Held, Is.False);
            Assert.That(twice.Detail, Does.Contain("check c2: 2 audit entries"));
            var never = HistoryCheck.Checks(forced, status, audit.Where(a => a.Id != 1).ToList());
            Assert.That(never.Held, Is.False);
            Assert.That(never.Detail, Does.Contain("check c1: 0 audit entries"));
            var phantom = HistoryCheck.Checks(forced, status, [.. audit, Audit(5, "c9")]);
            Assert.That(phantom.Held, Is.False);
            Assert.That(phantom.Detail, Does.Contain("never given: c9"));
        });
    }

    private static AuditEntry ConfigAudit(long id, string mac, long revision) => new(id, "operator", "unit.service-config", mac, $"revision {revision}");

    private static (List<AssignedConfig>, Dictionary<string, IReadOnlyList<ListedConfig>>, Dictionary<string, IReadOnlyList<long>>, List<AuditEntry>) Configs() =>
    (
        [new AssignedConfig(A, 1), new AssignedConfig(B, 1), new AssignedConfig(A, 2)],
        new()
        {
            [A] = [new ListedConfig(2, "final", "operator"), new ListedConfig(1, "applied", "operator")],
            [B] = [new ListedConfig(1, "final", "operator")],
        },
        new() { [A] = [], [B] = [] },
        [ConfigAudit(1, A, 1), ConfigAudit(2, B, 1), ConfigAudit(3, A, 2)]
    );

    [Test]
    public void Configuration_revisions_each_listed_and_audited_once_with_the_newest_final_hold()
    {
        var (assigned, listed, before, audit) = Configs();
        var result = HistoryCheck.Configs(assigned, listed, before, audit);
        Assert.That(result.Held, Is.True, result.Detail);
        Assert.That(result.Detail, Does.Contain("3 configuration changes to 2 units"));
    }

    [Test]
    public void A_revision_lost_doubled_invented_not_final_or_audited_otherwise_than_once_breaks_the_invariant()
    {
        var (assigned, listed, before, audit) = Configs();
        Assert.Multiple(() =>
        {
            var lost = HistoryCheck.Configs(assigned, new Dictionary<string, IReadOnlyList<ListedConfig>>(listed) { [A] = [new ListedConfig(2, "final", "operator")] }, before, audit);
            Assert.That(lost.Held, Is.False);
            Assert.That(lost.Detail, Does.Contain($"{A} revision 1 missing"));
            var doubled = HistoryCheck.Configs(assigned, new Dictionary<string, IReadOnlyList<ListedConfig>>(listed) { [B] = [new ListedConfig(1, "final", "operator"), new ListedConfig(1, "final", "operator")] }, before, audit);
            Assert.That(doubled.Held, Is.False);
            Assert.That(doubled.Detail, Does.Contain($"{B} revision 1 listed 2 times"));
            var invented = HistoryCheck.Configs(assigned, new Dictionary<string, IReadOnlyList<ListedConfig>>(listed) { [B] = [new ListedConfig(2, "final", "operator"), new ListedConfig(1, "applied", "operator")] }, before, audit);
            Assert.That(invented.Held, Is.False);
            Assert.That(invented.Detail, Does.Contain($"{B} revision 2: the operator was never given it"));
            var stuck = HistoryCheck.Configs(assigned, new Dictionary<string, IReadOnlyList<ListedConfig>>(listed) { [A] = [new ListedConfig(2, "applied", "operator"), new ListedConfig(1, "final", "operator")] }, before, audit);
            Assert.That(stuck.Held, Is.False);
            Assert.That(stuck.Detail, Does.Contain($"{A}: newest revision 2 is applied, not final"));
            var twice = HistoryCheck.Configs(assigned, listed, before, [.. audit, ConfigAudit(4, A, 2)]);
            Assert.That(twice.Held, Is.False);
            Assert.That(twice.Detail, Does.Contain($"{A} revision 2: 2 audit entries"));
            var phantom = HistoryCheck.Configs(assigned, listed, before, [.. audit, ConfigAudit(5, B, 7)]);
            Assert.That(phantom.Held, Is.False);
            Assert.That(phantom.Detail, Does.Contain($"never given: {B} 7"));
        });
    }

    [Test]
    public void After_a_fault_a_newest_revision_still_on_its_way_holds_but_a_lost_or_doubled_one_does_not()
    {
        var (assigned, listed, before, audit) = Configs();
        var onItsWay = new Dictionary<string, IReadOnlyList<ListedConfig>>(listed) { [A] = [new ListedConfig(2, "provisional", "operator"), new ListedConfig(1, "final", "operator")] };
        Assert.Multiple(() =>
        {
            var unsettled = HistoryCheck.Configs(assigned, onItsWay, before, audit, settled: false);
            Assert.That(unsettled.Held, Is.True, unsettled.Detail);
            Assert.That(unsettled.Detail, Does.Not.Contain("newest final"));
            Assert.That(HistoryCheck.Configs(assigned, onItsWay, before, audit, settled: true).Held, Is.False, "at the end the newest must be final");
            var lost = HistoryCheck.Configs(assigned, new Dictionary<string, IReadOnlyList<ListedConfig>>(listed) { [A] = [new ListedConfig(2, "provisional", "operator")] }, before, audit, settled: false);
            Assert.That(lost.Detail, Does.Contain($"{A} revision 1 missing"));
            Assert.That(lost.Held, Is.False);
            Assert.That(HistoryCheck.Configs(assigned, onItsWay, before, [.. audit, ConfigAudit(4, A, 2)], settled: false).Held, Is.False, "audited twice");
        });
    }

    [Test]
    public void A_revision_that_existed_before_the_run_is_not_counted_as_invented()
    {
        var (assigned, listed, _, audit) = Configs();
        var withOld = new Dictionary<string, IReadOnlyList<ListedConfig>>(listed) { [B] = [new ListedConfig(1, "final", "operator"), new ListedConfig(0, "final", "operator")] };
        Assert.Multiple(() =>
        {
            Assert.That(HistoryCheck.Configs(assigned, withOld, new Dictionary<string, IReadOnlyList<long>> { [A] = [], [B] = [0] }, audit).Held, Is.True);
            Assert.That(HistoryCheck.Configs(assigned, withOld, new Dictionary<string, IReadOnlyList<long>> { [A] = [], [B] = [] }, audit).Held, Is.False);
        });
    }

    [Test]
    public void The_audit_is_read_as_the_operator_api_writes_it()
    {
        var entries = Nemesis.ParseAudit("""
            [{"id":7,"at":"2026-12-03T12:00:00.0000000Z","actor":"operator","action":"units.check","target":"02:54:53:00:00:01","detail":"importance 5; check 0a1b"},
             {"id":6,"at":"2026-12-03T11:59:00.0000000Z","actor":"operator","action":"unit.register","target":"02:54:53:00:00:01","detail":null}]
            """);
        Assert.That(entries, Is.EqualTo(new[]
        {
            new AuditEntry(7, "operator", "units.check", "02:54:53:00:00:01", "importance 5; check 0a1b"),
            new AuditEntry(6, "operator", "unit.register", "02:54:53:00:00:01", null),
        }));
        Assert.That(HistoryCheck.CheckIdOf(entries[0].Detail), Is.EqualTo("0a1b"));
    }
}
