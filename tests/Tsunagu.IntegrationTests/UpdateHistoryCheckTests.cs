using Tsunagu.Cli.Chaos;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The nemesis's invariants of updates and subscriber changes, fed histories with an install recorded twice, lost or
/// invented, and a subscriber change lost, doubled or left pending: each must break the invariant, naming the unit;
/// consistent histories must hold.
/// </summary>
public class UpdateHistoryCheckTests
{
    private const string A = "02:54:53:00:00:01", B = "02:54:53:00:00:02";
    private const string X = "0123456789abcdef0123456789abcdef", Y = "fedcba9876543210fedcba9876543210";

    private static Dictionary<string, IReadOnlyList<SentUpdateReport>> Sent(params (string Mac, SentUpdateReport[] Reports)[] units) =>
        units.ToDictionary(u => u.Mac, u => (IReadOnlyList<SentUpdateReport>)u.Reports);

    private static RecordedUpdates Once(string installId) => new([(installId, true)], 1, 1);

    [Test]
    public void One_install_per_unit_recorded_once_holds_although_each_report_was_sent_twice()
    {
        // the first answer of each unit was lost; the unit sent the same install again and was answered
        var sent = Sent((A, [new(X, true, null), new(X, true, 200)]), (B, [new(Y, true, null), new(Y, true, 200)]));
        var result = UpdateHistoryCheck.Installs(true, sent, new Dictionary<string, RecordedUpdates> { [A] = Once(X), [B] = Once(Y) });
        Assert.That(result.Held, Is.True, result.Detail);
        Assert.That(result.Detail, Does.Contain("4 reports sent, 2 of them again").And.Contain("2 answers lost"));
    }

    [Test]
    public void A_repeated_report_recorded_twice_breaks_the_invariant()
    {
        var sent = Sent((A, [new(X, true, null), new(X, true, 200)]));
        var result = UpdateHistoryCheck.Installs(true, sent, new Dictionary<string, RecordedUpdates> { [A] = new([(X, true), (X, true)], 2, 2) });
        Assert.That(result.Held, Is.False);
        Assert.That(result.Detail, Does.Contain(A).And.Contain($"install {X} recorded 2 times"));
    }

    [Test]
    public void An_acknowledged_install_missing_from_the_server_breaks_the_invariant()
    {
        var sent = Sent((A, [new(X, true, 200)]));
        var result = UpdateHistoryCheck.Installs(true, sent, new Dictionary<string, RecordedUpdates> { [A] = new([], 0, 0) });
        Assert.That(result.Held, Is.False);
        Assert.That(result.Detail, Does.Contain($"install {X} acknowledged but not recorded"));
    }

    [Test]
    public void An_install_the_unit_never_reported_or_one_without_an_id_breaks_the_invariant()
    {
        var sent = Sent((A, [new(X, true, 200)]));
        Assert.Multiple(() =>
        {
            var invented = UpdateHistoryCheck.Installs(true, sent, new Dictionary<string, RecordedUpdates> { [A] = new([(X, true), (Y, true)], 2, 2) });
            Assert.That(invented.Held, Is.False);
            Assert.That(invented.Detail, Does.Contain($"install {Y} recorded, which the unit never reported"));
            var anonymous = UpdateHistoryCheck.Installs(true, sent, new Dictionary<string, RecordedUpdates> { [A] = new([(X, true), (null, true)], 2, 2) });
            Assert.That(anonymous.Held, Is.False);
            Assert.That(anonymous.Detail, Does.Contain("without an install id"));
        });
    }

    [Test]
    public void A_second_history_or_audit_entry_for_one_install_breaks_the_invariant()
    {
        var sent = Sent((A, [new(X, true, 200)]));
        Assert.Multiple(() =>
        {
            Assert.That(UpdateHistoryCheck.Installs(true, sent, new Dictionary<string, RecordedUpdates> { [A] = new([(X, true)], 2, 1) }).Held, Is.False, "history doubled");
            Assert.That(UpdateHistoryCheck.Installs(true, sent, new Dictionary<string, RecordedUpdates> { [A] = new([(X, true)], 1, 2) }).Held, Is.False, "audit doubled");
            Assert.That(UpdateHistoryCheck.Installs(false, sent, new Dictionary<string, RecordedUpdates> { [A] = Once(X) }).Held, Is.False, "an install before any update was published");
        });
    }

    [Test]
    public void A_failed_attempt_then_a_successful_one_hold()
    {
        var sent = Sent((A, [new(X, false, 200), new(Y, true, 200)]));
        var result = UpdateHistoryCheck.Installs(true, sent, new Dictionary<string, RecordedUpdates> { [A] = new([(X, false), (Y, true)], 1, 1) });
        Assert.That(result.Held, Is.True, result.Detail);
    }

    private static readonly AuditEntry[] Audited =
    [
        new(1, "subscriber:chaos-a", "unit.service-config", A, "revision 3: settings through the API"),
        new(2, "subscriber:chaos-b", "unit.service-config", B, "revision 4: settings through the API"),
        new(3, "operator", "unit.service-config", A, "revision 2"),
    ];

    private static Dictionary<string, IReadOnlyList<ListedConfig>> Listed(string statusA = "final", string statusB = "failed") => new()
    {
        [A] = [new(1, "final", "operator"), new(2, "final", "operator"), new(3, statusA, "subscriber")],
        [B] = [new(1, "final", "operator"), new(4, statusB, "subscriber")],
    };

    private static readonly SubscriberChange[] Answered = [new("chaos-a", A, 3), new("chaos-b", B, 4)];

    [Test]
    public void Subscriber_changes_listed_and_audited_once_and_settled_hold()
    {
        var result = UpdateHistoryCheck.SubscriberChanges(Answered, new Dictionary<string, int>(), Listed(), Audited, settled: true);
        Assert.That(result.Held, Is.True, result.Detail);
        Assert.That(result.Detail, Does.Contain("2 subscriber changes").And.Contain("1 failed").And.Contain("1 final"));
    }

    [Test]
    public void A_lost_subscriber_change_breaks_the_invariant()
    {
        var listed = Listed();
        listed[B] = [new(1, "final", "operator")];
        var result = UpdateHistoryCheck.SubscriberChanges(Answered, new Dictionary<string, int>(), listed, Audited, settled: false);
        Assert.That(result.Held, Is.False);
        Assert.That(result.Detail, Does.Contain($"{B} revision 4 (subscriber chaos-b) listed 0 times"));
    }

    [Test]
    public void A_doubled_subscriber_change_breaks_the_invariant_unless_an_answer_was_lost()
    {
        var listed = Listed();
        listed[A] = [.. listed[A], new(5, "final", "subscriber")];
        Assert.Multiple(() =>
        {
            var doubled = UpdateHistoryCheck.SubscriberChanges(Answered, new Dictionary<string, int>(), listed, Audited, settled: false);
            Assert.That(doubled.Held, Is.False);
            Assert.That(doubled.Detail, Does.Contain($"{A}: 1 subscriber revision(s) never answered"));
            Assert.That(UpdateHistoryCheck.SubscriberChanges(Answered, new Dictionary<string, int> { [A] = 1 }, listed, Audited, settled: false).Held, Is.True,
                "a change sent without an answer may have been stored");
            var twice = UpdateHistoryCheck.SubscriberChanges(Answered, new Dictionary<string, int>(), Listed(), [.. Audited, Audited[0] with { Id = 9 }], settled: false);
            Assert.That(twice.Held, Is.False, "audited twice");
            Assert.That(twice.Detail, Does.Contain("2 audit entries by subscriber:chaos-a"));
        });
    }

    [Test]
    public void A_subscriber_change_left_pending_at_the_end_breaks_the_invariant()
    {
        Assert.Multiple(() =>
        {
            Assert.That(UpdateHistoryCheck.SubscriberChanges(Answered, new Dictionary<string, int>(), Listed(statusA: "provisional"), Audited, settled: false).Held, Is.True,
                "during the run a change may still be on its way");
            var pending = UpdateHistoryCheck.SubscriberChanges(Answered, new Dictionary<string, int>(), Listed(statusA: "provisional"), Audited, settled: true);
            Assert.That(pending.Held, Is.False);
            Assert.That(pending.Detail, Does.Contain($"{A} revision 3: still provisional"));
        });
    }
}
