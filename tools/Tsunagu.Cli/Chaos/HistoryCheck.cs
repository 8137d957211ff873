using System.Globalization;
using Tsunagu.Protocol;

namespace Tsunagu.Cli.Chaos;

/// <summary>What one unit saw of its reports of one kind: answered 2xx, and sent without an answer (the server may or may not have it).</summary>
public sealed record SentReports(int Acknowledged, int Unanswered, int AcknowledgedWhereLossIsAllowed = 0);

/// <summary>A forced check the operator was answered for: its id and the units it was forced on.</summary>
public sealed record ForcedCheck(string CheckId, IReadOnlyList<string> Macs);

/// <summary>A configuration revision the operator was answered for.</summary>
public sealed record AssignedConfig(string Mac, long Revision);

/// <summary>One revision of a unit's configuration as the operator API lists it.</summary>
public sealed record ListedConfig(long Revision, string Status, string Origin);

/// <summary>One audit entry as the operator API shows it.</summary>
public sealed record AuditEntry(long Id, string Actor, string Action, string? Target, string? Detail);

/// <summary>
/// The invariant "nothing lost or duplicated" over what the server keeps: its unit history, its record of forced
/// checks and its audit log, each compared with what the other side saw. Pure: the nemesis feeds it what it traced
/// and what the server shows after the faults.
/// </summary>
public static class HistoryCheck
{
    /// <summary>
    /// Each report a unit sent and the server acknowledged is in the unit's history (not lost), and the history holds
    /// no more entries than reports that reached the server (each acknowledged one, plus each one whose answer was lost
    /// on the way back): none written twice, none from nowhere. A report answered with an error is not in the history
    /// (a refused request changes nothing). <see cref="SentReports.AcknowledgedWhereLossIsAllowed"/> counts
    /// acknowledged reports the server's configuration allows to lose (a database crash right after a commit that did
    /// not wait for the disk): they may be missing, never doubled.
    /// </summary>
    public static InvariantResult Reports(string kind, IReadOnlyDictionary<string, SentReports> sent, IReadOnlyDictionary<string, int> recorded)
    {
        var problems = new List<string>();
        var allowedLosses = 0;
        foreach (var mac in sent.Keys.Union(recorded.Keys).Order(StringComparer.Ordinal))
        {
            var s = sent.GetValueOrDefault(mac) ?? new SentReports(0, 0);
            var r = recorded.GetValueOrDefault(mac);
            if (r < s.Acknowledged - s.AcknowledgedWhereLossIsAllowed)
            {
                problems.Add($"{mac}: {s.Acknowledged - r} acknowledged {kind} report(s) missing from the history ({r} recorded, {s.Acknowledged} acknowledged)");
            }
            else if (r > s.Acknowledged + s.Unanswered)
            {
                problems.Add($"{mac}: {r - s.Acknowledged - s.Unanswered} {kind} history entr(ies) too many ({r} recorded; {s.Acknowledged} acknowledged, {s.Unanswered} unanswered)");
            }
            allowedLosses += Math.Max(0, s.Acknowledged - r);
        }
        var acknowledged = sent.Values.Sum(s => s.Acknowledged);
        var unanswered = sent.Values.Sum(s => s.Unanswered);
        var total = recorded.Values.Sum();
        return new InvariantResult($"history-{kind}", problems.Count == 0, problems.Count > 0
            ? $"{problems.Count} unit(s): {string.Join("; ", problems.Take(3))}"
            : string.Create(CultureInfo.InvariantCulture,
                $"{total} {kind} entries for {acknowledged} acknowledged and {unanswered} unanswered reports of {sent.Count} units") +
              (allowedLosses > 0 ? string.Create(CultureInfo.InvariantCulture, $" ({allowedLosses} acknowledged in a window the database may lose, missing)") : ""));
    }

    /// <summary>
    /// Every forced check the operator was answered for is still known to the server, names each unit it was forced
    /// on exactly once (and no other) as <c>delivered</c>, <c>pending</c> or <c>offline</c> with tallies that add up,
    /// and has exactly one <c>units.check</c> audit entry; no audit entry names a check the operator was never given.
    /// <paramref name="status"/> maps each check id to the server's record of it (null: the server does not know it).
    /// </summary>
    public static InvariantResult Checks(IReadOnlyList<ForcedCheck> forced, IReadOnlyDictionary<string, ForceCheckStatus?> status, IReadOnlyList<AuditEntry> audit)
    {
        var problems = new List<string>();
        var audited = audit.Where(a => a.Action == "units.check")
            .Select(a => CheckIdOf(a.Detail) ?? $"(no check id in '{a.Detail}')")
            .GroupBy(id => id).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        string[] statuses = ["delivered", "pending", "offline"];
        int delivered = 0, pending = 0, offline = 0;
        foreach (var check in forced)
        {
            if (status.GetValueOrDefault(check.CheckId) is not { } s)
            {
                problems.Add($"check {check.CheckId}: the server does not know it");
            }
            else
            {
                var macs = s.Units.GroupBy(u => u.Mac).ToList();
                var doubled = macs.Where(g => g.Count() > 1).Select(g => g.Key).ToList();
                var missing = check.Macs.Except(macs.Select(g => g.Key)).ToList();
                var extra = macs.Select(g => g.Key).Except(check.Macs).ToList();
                var unknown = s.Units.Where(u => !statuses.Contains(u.Status)).Select(u => $"{u.Mac} '{u.Status}'").ToList();
                if (doubled.Count > 0) { problems.Add($"check {check.CheckId}: unit(s) listed twice: {string.Join(", ", doubled.Take(3))}"); }
                if (missing.Count > 0) { problems.Add($"check {check.CheckId}: {missing.Count} unit(s) it was forced on are missing: {string.Join(", ", missing.Take(3))}"); }
                if (extra.Count > 0) { problems.Add($"check {check.CheckId}: unit(s) it was not forced on: {string.Join(", ", extra.Take(3))}"); }
                if (unknown.Count > 0) { problems.Add($"check {check.CheckId}: neither delivered, pending nor offline: {string.Join(", ", unknown.Take(3))}"); }
                var d = s.Units.Count(u => u.Status == "delivered");
                var p = s.Units.Count(u => u.Status == "pending");
                var o = s.Units.Count(u => u.Status == "offline");
                if ((s.Delivered, s.Pending, s.Offline) != (d, p, o))
                {
                    problems.Add($"check {check.CheckId}: tallies {s.Delivered}/{s.Pending}/{s.Offline} but the units say {d}/{p}/{o} (delivered/pending/offline)");
                }
                delivered += d;
                pending += p;
                offline += o;
            }
            var entries = audited.GetValueOrDefault(check.CheckId);
            if (entries != 1) { problems.Add($"check {check.CheckId}: {entries} audit entries (one expected)"); }
        }
        var phantom = audited.Keys.Except(forced.Select(c => c.CheckId), StringComparer.Ordinal).ToList();
        if (phantom.Count > 0) { problems.Add($"audit entries for check(s) the operator was never given: {string.Join(", ", phantom.Take(3))}"); }
        return new InvariantResult("history-checks", problems.Count == 0, problems.Count > 0
            ? $"{problems.Count} problem(s): {string.Join("; ", problems.Take(4))}"
            : string.Create(CultureInfo.InvariantCulture,
                $"{forced.Count} forced checks, each known to the server and audited once: {delivered} unit deliveries delivered, {pending} pending, {offline} offline"));
    }

    /// <summary>
    /// Every configuration revision the operator was answered for is in its unit's list exactly once, no operator
    /// revision is there that the operator was never given (<paramref name="before"/>: revisions that existed when the
    /// run began), each revision has exactly one <c>unit.service-config</c> audit entry, none for one never given, and,
    /// once the run has <paramref name="settled"/>, the newest revision of each unit it changed is <c>final</c> (the
    /// unit applied it and confirmed it healthy). After a fault the newest may still be on its way (not settled).
    /// </summary>
    public static InvariantResult Configs(IReadOnlyList<AssignedConfig> assigned, IReadOnlyDictionary<string, IReadOnlyList<ListedConfig>> listed,
        IReadOnlyDictionary<string, IReadOnlyList<long>> before, IReadOnlyList<AuditEntry> audit, bool settled = true)
    {
        var problems = new List<string>();
        var given = assigned.Select(a => (a.Mac, a.Revision)).ToHashSet();
        foreach (var (mac, revisions) in listed)
        {
            foreach (var g in revisions.GroupBy(r => r.Revision))
            {
                var known = given.Contains((mac, g.Key)) || before.GetValueOrDefault(mac)?.Contains(g.Key) == true;
                if (g.Count() > 1) { problems.Add($"{mac} revision {g.Key} listed {g.Count()} times"); }
                else if (!known && g.First().Origin == "operator") { problems.Add($"{mac} revision {g.Key}: the operator was never given it"); }
            }
        }
        foreach (var a in assigned)
        {
            if (listed.GetValueOrDefault(a.Mac)?.Any(r => r.Revision == a.Revision) != true) { problems.Add($"{a.Mac} revision {a.Revision} missing from its list"); }
        }
        foreach (var mac in settled ? assigned.Select(a => a.Mac).Distinct() : [])
        {
            var newest = listed.GetValueOrDefault(mac)?.MaxBy(r => r.Revision);
            if (newest is not null && newest.Status != "final") { problems.Add($"{mac}: newest revision {newest.Revision} is {newest.Status}, not final"); }
        }
        var audited = audit.Where(e => e.Action == "unit.service-config")
            .GroupBy(e => (Mac: e.Target ?? "", Revision: RevisionOf(e.Detail))).ToDictionary(g => g.Key, g => g.Count());
        foreach (var a in assigned)
        {
            var entries = audited.GetValueOrDefault((a.Mac, a.Revision));
            if (entries != 1) { problems.Add($"{a.Mac} revision {a.Revision}: {entries} audit entries (one expected)"); }
        }
        var phantom = audited.Keys.Where(k => !given.Contains((k.Mac, k.Revision ?? -1))).ToList();
        if (phantom.Count > 0) { problems.Add($"audit entries for revision(s) the operator was never given: {string.Join(", ", phantom.Take(3).Select(k => $"{k.Mac} {k.Revision}"))}"); }
        return new InvariantResult("history-configs", problems.Count == 0, problems.Count > 0
            ? $"{problems.Count} problem(s): {string.Join("; ", problems.Take(4))}"
            : string.Create(CultureInfo.InvariantCulture,
                $"{assigned.Count} configuration changes to {assigned.Select(a => a.Mac).Distinct().Count()} units, each listed and audited once{(settled ? "; each unit's newest final" : "")}"));
    }

    private static long? RevisionOf(string? detail) =>
        detail is not null && detail.StartsWith("revision ", StringComparison.Ordinal) && long.TryParse(detail["revision ".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out var r)
            ? r : null;

    /// <summary>The check id in a <c>units.check</c> audit entry's detail ("importance 5; check ID").</summary>
    public static string? CheckIdOf(string? detail)
    {
        const string marker = "check ";
        var at = detail?.LastIndexOf(marker, StringComparison.Ordinal) ?? -1;
        return at < 0 ? null : detail![(at + marker.Length)..].Trim();
    }
}

/// <summary>An update report one unit sent: its install id and result, and the status it was answered with (null: no answer came back).</summary>
public sealed record SentUpdateReport(string? InstallId, bool Success, int? Status);

/// <summary>What the server keeps of one unit's updates: its update report rows (install id, result), its successful update history entries and its <c>update.succeeded</c> audit entries.</summary>
public sealed record RecordedUpdates(IReadOnlyList<(string? InstallId, bool Success)> Reports, int SuccessEntries, int SuccessAudits);

/// <summary>A subscriber's change the subscriber was answered for: the revision it became.</summary>
public sealed record SubscriberChange(string Subscriber, string Mac, long Revision);

/// <summary>The invariants of updates and subscriber changes through faults (the nemesis's update program and subscriber path).</summary>
public static class UpdateHistoryCheck
{
    /// <summary>
    /// One successful install recorded per unit and per install id: with the update published, each unit has exactly
    /// one successful update report row, one successful update history entry and one <c>update.succeeded</c> audit
    /// entry (none before it is published); every row's install id is one the unit sent, no install id is in two rows,
    /// and every install id the server acknowledged is recorded (not lost). Reports the unit sent again (its answer was
    /// lost) must not add a row.
    /// </summary>
    public static InvariantResult Installs(bool published, IReadOnlyDictionary<string, IReadOnlyList<SentUpdateReport>> sent,
        IReadOnlyDictionary<string, RecordedUpdates> recorded)
    {
        var problems = new List<string>();
        var expected = published ? 1 : 0;
        foreach (var mac in sent.Keys.Union(recorded.Keys).Order(StringComparer.Ordinal))
        {
            var s = sent.GetValueOrDefault(mac) ?? [];
            var r = recorded.GetValueOrDefault(mac) ?? new RecordedUpdates([], 0, 0);
            var successes = r.Reports.Count(x => x.Success);
            if ((successes, r.SuccessEntries, r.SuccessAudits) != (expected, expected, expected))
            {
                problems.Add($"{mac}: {successes} successful report row(s), {r.SuccessEntries} history entr(ies), {r.SuccessAudits} audit entr(ies) ({expected} of each expected)");
            }
            var sentIds = s.Where(x => x.InstallId is not null).Select(x => (x.InstallId!, x.Success)).ToHashSet();
            foreach (var row in r.Reports)
            {
                if (row.InstallId is null) { problems.Add($"{mac}: a report row without an install id"); }
                else if (!sentIds.Contains((row.InstallId, row.Success))) { problems.Add($"{mac}: install {row.InstallId} recorded, which the unit never reported so"); }
            }
            foreach (var doubled in r.Reports.Where(x => x.InstallId is not null).GroupBy(x => x.InstallId).Where(g => g.Count() > 1))
            {
                problems.Add($"{mac}: install {doubled.Key} recorded {doubled.Count()} times");
            }
            foreach (var acknowledged in s.Where(x => x.Status is >= 200 and < 300 && x.InstallId is not null).Select(x => x.InstallId).Distinct())
            {
                if (r.Reports.All(x => x.InstallId != acknowledged)) { problems.Add($"{mac}: install {acknowledged} acknowledged but not recorded"); }
            }
        }
        var repeats = sent.Values.Sum(s => s.Count - s.Select(x => x.InstallId).Distinct().Count());
        var unanswered = sent.Values.Sum(s => s.Count(x => x.Status is null));
        return new InvariantResult("history-updates", problems.Count == 0, problems.Count > 0
            ? $"{problems.Count} problem(s): {string.Join("; ", problems.Take(4))}"
            : published
                ? string.Create(CultureInfo.InvariantCulture,
                    $"{recorded.Count} units each with one successful install recorded once (report, history, audit); {sent.Values.Sum(s => s.Count)} reports sent, {repeats} of them again for an install already sent ({unanswered} answers lost), none recorded twice")
                : "no update published yet: no install recorded");
    }

    /// <summary>
    /// Subscriber changes made during faults are never lost or duplicated: each revision the subscriber was answered
    /// for is listed once in its unit's configurations with origin <c>subscriber</c>, with exactly one
    /// <c>unit.service-config</c> audit entry by that subscriber; subscriber revisions (and their audit entries) the
    /// subscriber was never answered for are at most as many as their changes that got no answer (the server may have
    /// stored one before the answer was lost). With <paramref name="settled"/> (the end of the run) each answered
    /// revision is applied and confirmed (<c>final</c>) or reported failed (<c>failed</c>), never left pending.
    /// </summary>
    public static InvariantResult SubscriberChanges(IReadOnlyList<SubscriberChange> answered, IReadOnlyDictionary<string, int> unanswered,
        IReadOnlyDictionary<string, IReadOnlyList<ListedConfig>> listed, IReadOnlyList<AuditEntry> audit, bool settled)
    {
        var problems = new List<string>();
        var audited = audit.Where(e => e.Action == "unit.service-config" && e.Actor.StartsWith("subscriber:", StringComparison.Ordinal))
            .GroupBy(e => (Actor: e.Actor, Mac: e.Target ?? "", Revision: LeadingRevision(e.Detail))).ToDictionary(g => g.Key, g => g.Count());
        var statuses = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var change in answered)
        {
            var rows = (listed.GetValueOrDefault(change.Mac) ?? []).Where(r => r.Revision == change.Revision).ToList();
            if (rows.Count != 1) { problems.Add($"{change.Mac} revision {change.Revision} (subscriber {change.Subscriber}) listed {rows.Count} times"); continue; }
            if (rows[0].Origin != "subscriber") { problems.Add($"{change.Mac} revision {change.Revision}: origin {rows[0].Origin}, not subscriber"); }
            if (settled && rows[0].Status is not ("final" or "failed")) { problems.Add($"{change.Mac} revision {change.Revision}: still {rows[0].Status} at the end"); }
            statuses[rows[0].Status] = statuses.GetValueOrDefault(rows[0].Status) + 1;
            var entries = audited.GetValueOrDefault(($"subscriber:{change.Subscriber}", change.Mac, change.Revision));
            if (entries != 1) { problems.Add($"{change.Mac} revision {change.Revision}: {entries} audit entries by subscriber:{change.Subscriber} (one expected)"); }
        }
        var given = answered.Select(a => (a.Mac, a.Revision)).ToHashSet();
        foreach (var (mac, revisions) in listed)
        {
            var extra = revisions.Count(r => r.Origin == "subscriber" && !given.Contains((mac, r.Revision)));
            if (extra > unanswered.GetValueOrDefault(mac)) { problems.Add($"{mac}: {extra} subscriber revision(s) never answered, for {unanswered.GetValueOrDefault(mac)} change(s) without an answer"); }
        }
        foreach (var group in audited.Keys.Where(k => !given.Contains((k.Mac, k.Revision ?? -1))).GroupBy(k => k.Mac))
        {
            if (group.Count() > unanswered.GetValueOrDefault(group.Key)) { problems.Add($"{group.Key}: {group.Count()} subscriber audit entr(ies) for revisions never answered"); }
        }
        return new InvariantResult("history-subscriber", problems.Count == 0, problems.Count > 0
            ? $"{problems.Count} problem(s): {string.Join("; ", problems.Take(4))}"
            : string.Create(CultureInfo.InvariantCulture,
                $"{answered.Count} subscriber changes through the subscriber API, each listed and audited once ({string.Join(", ", statuses.OrderBy(s => s.Key).Select(s => $"{s.Value} {s.Key}"))}); {unanswered.Values.Sum()} without an answer"));
    }

    /// <summary>The revision at the start of a <c>unit.service-config</c> audit detail ("revision 7" or "revision 7: what").</summary>
    public static long? LeadingRevision(string? detail)
    {
        const string marker = "revision ";
        if (detail is null || !detail.StartsWith(marker, StringComparison.Ordinal)) { return null; }
        var digits = detail[marker.Length..].TakeWhile(char.IsAsciiDigit).ToArray();
        return digits.Length > 0 && long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var r) ? r : null;
    }
}
