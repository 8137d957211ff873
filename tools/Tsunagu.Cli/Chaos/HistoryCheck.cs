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
    /// run began), the newest revision of each unit it changed is <c>final</c> (the unit applied it and confirmed it
    /// healthy), and each revision has exactly one <c>unit.service-config</c> audit entry, none for one never given.
    /// </summary>
    public static InvariantResult Configs(IReadOnlyList<AssignedConfig> assigned, IReadOnlyDictionary<string, IReadOnlyList<ListedConfig>> listed,
        IReadOnlyDictionary<string, IReadOnlyList<long>> before, IReadOnlyList<AuditEntry> audit)
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
        foreach (var mac in assigned.Select(a => a.Mac).Distinct())
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
                $"{assigned.Count} configuration changes to {assigned.Select(a => a.Mac).Distinct().Count()} units, each listed and audited once; each unit's newest final"));
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
