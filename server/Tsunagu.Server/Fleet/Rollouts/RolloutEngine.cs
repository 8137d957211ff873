using System.Security.Cryptography;
using System.Text;

namespace Tsunagu.Server.Fleet.Rollouts;

public static class RolloutStates
{
    public const string Running = "running";
    public const string Paused = "paused";
    public const string Aborted = "aborted";
    public const string Completed = "completed";

    /// <summary>A rollout in these states still decides (members join, waves open, thresholds are watched).</summary>
    public static bool IsActive(string state) => state is Running or Paused;
}

public static class ErrorActions
{
    public const string Pause = "pause";
    public const string Abort = "abort";
}

/// <summary>Where a member of a rollout is, as the host sees it.</summary>
public enum MemberStatus
{
    /// <summary>Still on the old pattern and reachable (its wave not open, or not yet offered).</summary>
    Pending,
    /// <summary>Offered the update (state Updating), not yet reported.</summary>
    Downloading,
    /// <summary>Runs the new pattern.</summary>
    Installed,
    /// <summary>Reported the update as failed (its own rollback keeps it on the old pattern).</summary>
    Failed,
    /// <summary>Not installed and not reachable now: waits, never counted as a failure.</summary>
    Offline,
}

/// <summary>
/// One wave as the operator gives it (exactly one of the three): a number of units, a percentage of the rollout's units,
/// or the units of a group (those of the rollout's units that are members of <see cref="Group"/> and in no earlier wave).
/// </summary>
public sealed record WaveSpec(int? Count = null, int? Percent = null, string? Group = null)
{
    public const string GroupPrefix = "group:";

    public override string ToString() =>
        Group is { } g ? GroupPrefix + g : Count is { } c ? c.ToString(System.Globalization.CultureInfo.InvariantCulture) : $"{Percent}%";
}

/// <summary>What the engine decides on: the rollout's settings and state, and where it is.</summary>
/// <param name="ErrorsSince">Failures reported before this instant are not counted against the error threshold (a resume moves it).</param>
public sealed record RolloutSituation(string State, int OpenWaves, int WaveCount, int SuccessPercent, int ErrorPercent, string OnError,
    TimeSpan MinWaveTime, DateTimeOffset WaveOpenedAt, DateTimeOffset ErrorsSince);

/// <summary>A member of a rollout: its wave (0-based), its status, and when it reported a failure (when <see cref="MemberStatus.Failed"/>).</summary>
public sealed record RolloutMember(string Mac, int Wave, MemberStatus Status, DateTimeOffset? FailedAt = null);

public static class RolloutActions
{
    public const string None = "none";
    public const string OpenWave = "open-wave";
    public const string Pause = "pause";
    public const string Abort = "abort";
    public const string Complete = "complete";
}

/// <summary>
/// One decision of the engine: units that join (each with the wave it joins), then what happens to the rollout
/// (<see cref="RolloutActions"/>), the state and the number of open waves after it, and why, in words for the audit log.
/// </summary>
public sealed record RolloutDecision(string Action, string State, int OpenWaves, string Detail, IReadOnlyList<RolloutMember> Joins);

/// <summary>What the operator chooses for the units a rollout already moved when aborting it.</summary>
public static class AbortChoices
{
    /// <summary>Moved units stay on the new pattern; units not moved stay on the old one (the transition stays held).</summary>
    public const string Keep = "keep";
    /// <summary>Units the rollout moved (or is moving) return to the pattern they ran before, by the update program back.</summary>
    public const string Revert = "revert";
}

/// <summary>A member as an abort with <see cref="AbortChoices.Revert"/> sees it: its status and the pattern it ran when the rollout first offered it the update (null: never offered).</summary>
public sealed record ReturnCandidate(string Mac, MemberStatus Status, string? PreviousPattern);

/// <summary>What an abort that returns units does: who gets the previous pattern as target (by pattern), and who cannot, with why.</summary>
public sealed record ReturnPlan(IReadOnlyList<(string Mac, string Pattern)> Return, IReadOnlyList<(string Mac, string Why)> Cannot);

/// <summary>Per wave: its size and where its members are.</summary>
public sealed record WaveProgress(int Wave, bool Open, int Members, int Pending, int Downloading, int Installed, int Failed, int Offline);

/// <summary>
/// The rollout engine: pure decisions over a rollout's situation, its members and the time. It keeps no state; the
/// caller reads the situation from the database, applies the decision in one transaction (conditional on the
/// situation it read) and audits it. Rules:
/// <list type="bullet">
/// <item>Units of the group on the old pattern that are not members join the last wave (they are served when the rollout gets there).</item>
/// <item>Error threshold: when failures (reported since <see cref="RolloutSituation.ErrorsSince"/>) among the members of
/// the open waves reach <see cref="RolloutSituation.ErrorPercent"/> of them, the rollout pauses or aborts (its setting).
/// Offline units are never failures.</item>
/// <item>Success threshold: when installed members of the newest open wave reach <see cref="RolloutSituation.SuccessPercent"/>
/// of its reachable members (offline ones set aside), and the wave has been open <see cref="RolloutSituation.MinWaveTime"/>,
/// and no unit of it is still installing (offered the update, not yet reported: it may yet fail its health check), the
/// next wave opens; after the last wave, the rollout completes. A wave whose members are all offline waits.</item>
/// </list>
/// </summary>
public static class RolloutEngine
{
    public const int MaxWaves = 20;

    /// <summary>Why <paramref name="waves"/> cannot be a rollout's waves; null when they can.</summary>
    public static string? InvalidWaves(IReadOnlyList<WaveSpec>? waves)
    {
        if (waves is null || waves.Count is 0 or > MaxWaves) { return $"waves: 1 to {MaxWaves} waves, each a count, a percent or a group"; }
        var groups = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < waves.Count; i++)
        {
            var w = waves[i];
            if (w is null || (w.Count is null ? 0 : 1) + (w.Percent is null ? 0 : 1) + (w.Group is null ? 0 : 1) != 1)
            {
                return $"waves[{i}]: give exactly one of count, percent and group";
            }
            if (w.Count is < 1 or > 1_000_000) { return $"waves[{i}].count: 1 to 1000000"; }
            if (w.Percent is < 1 or > 100) { return $"waves[{i}].percent: 1 to 100"; }
            if (w.Group is { } g)
            {
                if (!Apis.InputRules.IsIdentifier(g)) { return Apis.InputRules.Identifier($"waves[{i}].group"); }
                if (i == waves.Count - 1) { return $"waves[{i}].group: the last wave takes every unit left; give a count or a percent (100%)"; }
                if (!groups.TryAdd(g, i)) { return $"waves[{i}].group: '{g}' is wave {groups[g] + 1} already"; }
            }
        }
        return null;
    }

    /// <summary>The groups <paramref name="waves"/> name, each once, in order.</summary>
    public static IReadOnlyList<string> WaveGroups(IReadOnlyList<WaveSpec> waves) =>
        waves.Select(w => w.Group).OfType<string>().Distinct(StringComparer.Ordinal).ToList();

    /// <summary>
    /// Waves written as the operator types them (CLI <c>--waves</c>, the console's form): counts, percents or groups
    /// separated by commas, e.g. <c>5%,15%,80%</c>, <c>10,100%</c> or <c>group:canary,50%,100%</c>. Null and why, when
    /// the text is not such a list.
    /// </summary>
    public static (List<WaveSpec>? Waves, string? Error) ParseWaves(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) { return (null, "waves: counts, percents or groups separated by commas, e.g. 5%,15%,80% or group:canary,50%,100%"); }
        var waves = new List<WaveSpec>();
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries))
        {
            var style = System.Globalization.NumberStyles.None;
            var culture = System.Globalization.CultureInfo.InvariantCulture;
            if (part.EndsWith('%') && part.Length is > 1 and <= 8 && int.TryParse(part[..^1], style, culture, out var p)) { waves.Add(new WaveSpec(Percent: p)); }
            else if (part.Length is > 0 and <= 8 && int.TryParse(part, style, culture, out var c)) { waves.Add(new WaveSpec(Count: c)); }
            else if (part.StartsWith(WaveSpec.GroupPrefix, StringComparison.Ordinal) && Apis.InputRules.IsIdentifier(part[WaveSpec.GroupPrefix.Length..]))
            {
                waves.Add(new WaveSpec(Group: part[WaveSpec.GroupPrefix.Length..]));
            }
            else { return (null, $"waves: '{Apis.InputRules.Quote(part)}' is neither a count (10), a percent (10%) nor a group (group:NAME)"); }
            if (waves.Count > MaxWaves) { break; }
        }
        return (waves, null);
    }

    /// <summary>
    /// Each wave's size for <paramref name="total"/> units: a count as given, a percent of the total (rounded up), never
    /// more than what is left; the last wave takes everything left, so the sizes add up to the total.
    /// </summary>
    public static int[] WaveSizes(IReadOnlyList<WaveSpec> waves, int total)
    {
        var sizes = new int[waves.Count];
        var left = total;
        for (var i = 0; i < waves.Count; i++)
        {
            var want = i == waves.Count - 1 ? left
                : waves[i].Count ?? (int)Math.Ceiling(waves[i].Percent!.Value * (long)total / 100.0);
            sizes[i] = Math.Min(want, left);
            left -= sizes[i];
        }
        return sizes;
    }

    /// <summary>
    /// The order units are put in waves: by a hash of the rollout's name and the MAC, so a wave is a spread of the group
    /// (not one MAC range, often one production batch) and the same for every replica and restart.
    /// </summary>
    public static IReadOnlyList<string> WaveOrder(string rollout, IEnumerable<string> macs) =>
        macs.OrderBy(m => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(rollout + "/" + m))), StringComparer.Ordinal).ToList();

    /// <summary>
    /// The members of a new rollout: <paramref name="macs"/> in <see cref="WaveOrder"/>, wave by wave: a group wave takes
    /// the units of its group (<paramref name="groups"/>: each named group's members) not in an earlier wave; a count or
    /// percent wave takes that many of the units left (a percent of all of them, rounded up); the last wave takes
    /// every unit left. Without group waves the sizes are <see cref="WaveSizes"/>.
    /// </summary>
    public static IReadOnlyList<RolloutMember> Plan(string rollout, IReadOnlyList<WaveSpec> waves, IReadOnlyCollection<string> macs,
        IReadOnlyDictionary<string, IReadOnlySet<string>>? groups = null)
    {
        var ordered = WaveOrder(rollout, macs);
        var placed = new HashSet<string>(StringComparer.Ordinal);
        var members = new List<RolloutMember>(ordered.Count);
        for (var wave = 0; wave < waves.Count; wave++)
        {
            var left = ordered.Where(m => !placed.Contains(m));
            var spec = waves[wave];
            var taken = wave == waves.Count - 1 ? left.ToList()
                : spec.Group is { } g ? left.Where(m => groups?.GetValueOrDefault(g)?.Contains(m) == true).ToList()
                : left.Take(spec.Count ?? (int)Math.Ceiling(spec.Percent!.Value * (long)ordered.Count / 100.0)).ToList();
            foreach (var mac in taken)
            {
                placed.Add(mac);
                members.Add(new RolloutMember(mac, wave, MemberStatus.Pending));
            }
        }
        return members;
    }

    /// <summary>
    /// The return of an abort with <see cref="AbortChoices.Revert"/>. A member the rollout offered the update to and that
    /// did not fail (installed, still installing, offline or pending after the offer) returns to the pattern it ran then,
    /// unless <paramref name="whyNot"/> (of that pattern) says why it cannot: then it is listed and left as it is. A
    /// member never offered is on the old pattern already; one that failed went back by its own rollback.
    /// </summary>
    public static ReturnPlan PlanReturn(IReadOnlyList<ReturnCandidate> members, Func<string, string?> whyNot)
    {
        var back = new List<(string, string)>();
        var cannot = new List<(string, string)>();
        foreach (var m in members.OrderBy(m => m.Mac, StringComparer.Ordinal))
        {
            if (m.PreviousPattern is not { } previous || m.Status == MemberStatus.Failed) { continue; }
            if (whyNot(previous) is { } why) { cannot.Add((m.Mac, why)); }
            else { back.Add((m.Mac, previous)); }
        }
        return new ReturnPlan(back, cannot);
    }

    public static IReadOnlyList<WaveProgress> Progress(RolloutSituation s, IReadOnlyList<RolloutMember> members) =>
        Enumerable.Range(0, s.WaveCount).Select(w =>
        {
            var m = members.Where(x => x.Wave == w).ToList();
            int Count(MemberStatus st) => m.Count(x => x.Status == st);
            return new WaveProgress(w + 1, w < s.OpenWaves, m.Count, Count(MemberStatus.Pending), Count(MemberStatus.Downloading),
                Count(MemberStatus.Installed), Count(MemberStatus.Failed), Count(MemberStatus.Offline));
        }).ToList();

    /// <summary>The decision for <paramref name="s"/> at <paramref name="now"/>; <paramref name="candidates"/>: units of the group on the old pattern.</summary>
    public static RolloutDecision Decide(RolloutSituation s, IReadOnlyList<RolloutMember> members, IReadOnlyCollection<string> candidates, DateTimeOffset now)
    {
        if (!RolloutStates.IsActive(s.State)) { return new(RolloutActions.None, s.State, s.OpenWaves, $"rollout is {s.State}", []); }
        var known = members.Select(m => m.Mac).ToHashSet(StringComparer.Ordinal);
        var joins = candidates.Where(c => !known.Contains(c)).Order(StringComparer.Ordinal)
            .Select(c => new RolloutMember(c, s.WaveCount - 1, MemberStatus.Pending)).ToList();
        if (s.State != RolloutStates.Running) { return new(RolloutActions.None, s.State, s.OpenWaves, "paused", joins); }
        var all = joins.Count == 0 ? members : [.. members, .. joins];

        var open = all.Where(m => m.Wave < s.OpenWaves).ToList();
        var failed = open.Count(m => m.Status == MemberStatus.Failed && (m.FailedAt is not { } at || at >= s.ErrorsSince));
        if (failed > 0 && failed * 100L >= s.ErrorPercent * (long)open.Count)
        {
            var detail = $"error threshold: {failed} of {open.Count} unit(s) of the open wave(s) failed ({100.0 * failed / open.Count:0.#}%, threshold {s.ErrorPercent}%)";
            return s.OnError == ErrorActions.Abort
                ? new(RolloutActions.Abort, RolloutStates.Aborted, s.OpenWaves, detail + "; aborted", joins)
                : new(RolloutActions.Pause, RolloutStates.Paused, s.OpenWaves, detail + "; paused", joins);
        }

        var current = all.Where(m => m.Wave == s.OpenWaves - 1).ToList();
        var installed = current.Count(m => m.Status == MemberStatus.Installed);
        var reachable = current.Count(m => m.Status != MemberStatus.Offline);
        var met = current.Count == 0 || (reachable > 0 && installed * 100L >= s.SuccessPercent * (long)reachable);
        if (!met)
        {
            return new(RolloutActions.None, s.State, s.OpenWaves,
                $"wave {s.OpenWaves}: {installed} of {reachable} reachable unit(s) installed, {s.SuccessPercent}% needed", joins);
        }
        var settling = current.Count(m => m.Status == MemberStatus.Downloading);
        if (settling > 0)
        {
            // a unit still installing may yet fail its health check: its outcome decides before the next wave opens
            return new(RolloutActions.None, s.State, s.OpenWaves, $"wave {s.OpenWaves}: threshold met, {settling} unit(s) still installing", joins);
        }
        if (now - s.WaveOpenedAt < s.MinWaveTime)
        {
            return new(RolloutActions.None, s.State, s.OpenWaves, $"wave {s.OpenWaves}: threshold met, open until {s.WaveOpenedAt + s.MinWaveTime:O}", joins);
        }
        var summary = $"wave {s.OpenWaves}: {installed} of {current.Count} installed ({current.Count - reachable} offline)";
        return s.OpenWaves < s.WaveCount
            ? new(RolloutActions.OpenWave, RolloutStates.Running, s.OpenWaves + 1, $"{summary}; wave {s.OpenWaves + 1} opens", joins)
            : new(RolloutActions.Complete, RolloutStates.Completed, s.OpenWaves, $"{summary}; the last wave is done, rollout completed", joins);
    }
}
