using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Tsunagu.Cli.Factory;
using Tsunagu.Server.Data;
using Tsunagu.Server.Fleet;
using Tsunagu.Server.Fleet.Rollouts;

namespace Tsunagu.Cli.Fleet;

/// <summary>
/// What a rollout scenario measured, from the server's own records: the audit entries of the rollout (their timestamps
/// are the server's), its update reports, the engine's pass counters (<see cref="RolloutService.Cost"/>).
/// </summary>
/// <param name="WaveOpenedSeconds">Per wave, seconds from the rollout's creation to its opening (audit <c>rollout.create</c>, <c>rollout.open-wave</c>); wave 1 opens at creation. Only the waves that opened.</param>
/// <param name="EndSeconds">Seconds from creation to the rollout completing (<c>rollout</c>) or pausing (<c>rollout-pause</c>); null: it did neither in time.</param>
/// <param name="Passes">Engine passes while the rollout ran (each one decides every active rollout).</param>
/// <param name="DecisionsApplied">Audit entries the engine wrote for this rollout (open-wave, pause, complete, join).</param>
/// <param name="IdlePassCpuMs">rollout-pause: the process's CPU per engine pass over the paused rollout with the fleet quiet (null: not measured).</param>
/// <param name="FailingUnits">rollout-pause: units made to fail their health check.</param>
/// <param name="ThresholdToPauseMs">rollout-pause: from the failure report that reached the error threshold to the pause's audit entry.</param>
/// <param name="BeyondOpenWaves">Units of waves that were not open that reported an install, left the old pattern or were offered the update (member status Downloading): the invariant is 0.</param>
/// <param name="AtTarget">Units running the new pattern at the end.</param>
/// <param name="StrayAtTarget">Units running the new pattern that are not healthy units of the open waves (the invariant: 0).</param>
/// <param name="Reason">The rollout's own reason (e.g. its pause), or, rollout-pause, why it did not pause.</param>
/// <param name="DuplicateReports">Units that sent more than one update report for this rollout's program (the invariant: 0).</param>
/// <param name="Unaccounted">rollout: units neither on the new pattern nor with a failed report of the program (the invariant: 0).</param>
/// <param name="WorkerCpuSeconds">With workers: the CPU the worker processes (the units) spent during the rollout; null: the units ran in this process.</param>
/// <param name="Workers">With workers: each worker's CPU since it started and peak RSS, at the end of the rollout.</param>
/// <param name="RequestsByRoute">The units' requests during the rollout by route (answered or not).</param>
/// <param name="UnitsByRequests">How many units made each number of requests during the rollout (requests -> units).</param>
public sealed record RolloutReport(
    string Name, string FromPattern, string ToPattern, string Waves, IReadOnlyList<int> WaveSizes, IReadOnlyList<double> WaveOpenedSeconds,
    string State, double? EndSeconds, int OpenWaves, long Passes, double PassMeanMs, double PassMaxMs, long Decisions, double DecisionMeanMs,
    int DecisionsApplied, double? IdlePassCpuMs, double? IdlePassWallMs, int FailingUnits, int FailedReports, double? ThresholdToPauseMs,
    int BeyondOpenWaves, int AtTarget, int StrayAtTarget, string? Reason,
    IReadOnlyDictionary<string, long>? RequestsByRoute = null, IReadOnlyDictionary<long, int>? UnitsByRequests = null,
    int DuplicateReports = 0, int Unaccounted = 0, double? WorkerCpuSeconds = null, IReadOnlyList<WorkerProcessFigures>? Workers = null);

public sealed partial class FleetSimulation
{
    private string _rolloutFrom = "";
    private int _rolloutStep;

    private TsunaguStore Store => _app?.Services.GetRequiredService<TsunaguStore>() ?? throw new InvalidOperationException("no in-process server");
    private RolloutService Rollouts => _app?.Services.GetRequiredService<RolloutService>() ?? throw new InvalidOperationException("no in-process server");

    private static DateTimeOffset At(string timestamp) => DateTimeOffset.Parse(timestamp, CultureInfo.InvariantCulture);

    /// <summary>
    /// A new verified pattern (the fleet's applications with a newer vcp) and a signed update program to it from the
    /// pattern the fleet runs, through the operator API; returns the new pattern.
    /// </summary>
    private async Task<(string To, string Program)> CatalogueNextAsync(OperatorClient client, CancellationToken ct)
    {
        _rolloutStep++;
        var to = $"rollout-{_rolloutStep}";
        var vcp = $"{_rolloutStep + 1}.0.0";
        var next = new NextPattern(_rolloutFrom, to, $"vcp {vcp}", vcp, $"{_rolloutFrom}-to-{to}", _rolloutStep + 1);
        await CatalogueSteps.AddPatternAsync(client, next, _releaseKey!, ct);
        return (to, next.Program);
    }

    /// <summary>
    /// rollout / rollout-pause: the whole fleet (a dynamic group: the units on the pattern they run) moved to a new pattern
    /// by a staged rollout of <see cref="FleetSimSettings.Waves"/>; with <paramref name="failing"/>, the first
    /// <see cref="FleetSimSettings.FailHealthPercent"/> percent (rounded up) of each wave's units fail their health check.
    /// Done when the rollout completed and every unit runs the new pattern, or (failing) when it paused and no unit of its
    /// open waves is still installing; failing, a rollout that completes instead ends the scenario at once, as not done
    /// (its reason: "did not pause").
    /// </summary>
    private async Task<ScenarioReport> RunRolloutAsync(bool failing, CancellationToken ct)
    {
        var units = FleetUnits;
        var macs = units.Macs;
        if (_rolloutFrom.Length == 0) { _rolloutFrom = FleetPattern; }
        await WaitUntilAsync(() => units.AllConnectedAsync(ct), "every unit connected to the broker", TimeSpan.FromMinutes(5), TimeSpan.FromMilliseconds(200), ct);
        using var client = Operator();
        var from = _rolloutFrom;
        var (to, program) = await CatalogueNextAsync(client, ct);
        var name = $"fleetsim-{_rolloutStep}";
        var group = $"on-{from}";
        if (await Store.Fleet.GetGroupAsync(group, ct) is null)
        {
            await client.CallAsync<GroupView>(HttpMethod.Post, FleetApi.GroupsRoute, new NewGroup(group, null, new GroupFilter(Pattern: from)), ct);
        }
        var waves = RolloutEngine.ParseWaves(_settings.Waves).Waves!;
        var plan = RolloutEngine.Plan(name, waves, [.. macs]);
        var waveOf = plan.ToDictionary(m => m.Mac, m => m.Wave, StringComparer.Ordinal);
        var failingMacs = new HashSet<string>(StringComparer.Ordinal);
        if (failing)
        {
            foreach (var wave in plan.GroupBy(m => m.Wave))
            {
                var size = wave.Count();
                failingMacs.UnionWith(wave.Take((int)Math.Ceiling(size * _settings.FailHealthPercent / 100.0)).Select(m => m.Mac));
            }
        }
        await units.SetFailingHealthAsync(failingMacs, ct);

        await units.ResetMeterAsync(ct);
        var start = await units.CountAsync(ct);
        var workersBefore = _workers is null ? null : await _workers.FiguresAsync(ct);
        Rollouts.ResetLongestPass();
        var costBefore = Rollouts.Cost;
        var cpu0 = Environment.CpuUsage.TotalTime;
        var clock = Stopwatch.StartNew();
        var created = await client.CallAsync<RolloutView>(HttpMethod.Post, RolloutsApi.Route,
            new NewRollout(name, group, from, to, waves, _settings.SuccessPercent, _settings.ErrorPercent), ct);
        _progress($"  rollout {name}: {from} -> {to}, waves {_settings.Waves} = {string.Join("/", created.Waves.Select(w => w.Members))} unit(s)" +
                  (failing ? $", {failingMacs.Count} unit(s) fail health" : ""));

        var lastOpen = 1;
        bool Finished(RolloutRow row, int atTarget, IReadOnlyList<RolloutMember> members) => failing
            ? row.State == RolloutStates.Paused && members.All(m => m.Wave >= row.OpenWaves || m.Status != MemberStatus.Downloading)
            : row.State == RolloutStates.Completed && atTarget == macs.Count;
        var deadline = Stopwatch.StartNew();
        RolloutRow current;
        while (true)
        {
            current = await Store.Rollouts.GetRolloutAsync(name, ct) ?? throw new FleetSimulationException($"rollout {name} disappeared");
            if (current.OpenWaves != lastOpen)
            {
                lastOpen = (int)current.OpenWaves;
                _progress($"  {clock.Elapsed.TotalSeconds,7:0.0} s  wave {lastOpen} open");
            }
            var atTarget = (await Store.Fleet.MacsOnPatternAsync(to, ct)).Count;
            if ((failing || current.State is RolloutStates.Completed) && Finished(current, atTarget, await Store.Rollouts.RolloutMembersAsync(current, ct))) { break; }
            if (current.State is RolloutStates.Aborted || (!failing && current.State is RolloutStates.Paused)) { break; }
            if (failing && current.State is RolloutStates.Completed)
            {
                // a pause was expected (the failing units did not reach the error threshold): nothing more will happen
                _progress($"  {clock.Elapsed.TotalSeconds,7:0.0} s  rollout completed: it did not pause ({atTarget} unit(s) on {to})");
                break;
            }
            if (deadline.Elapsed > _settings.ScenarioTimeout)
            {
                _progress($"  timed out after {_settings.ScenarioTimeout.TotalSeconds:0} s: rollout {current.State}, {atTarget} unit(s) on {to}");
                break;
            }
            await Task.Delay(500, ct);
        }
        var elapsed = clock.Elapsed;
        var cpu = Environment.CpuUsage.TotalTime - cpu0;
        var cost = Rollouts.Cost; // before the passes of the idle measurement below
        var counts = await units.CountAsync(ct);
        var workersAfter = _workers is null ? null : await _workers.FiguresAsync(ct);
        var requests = counts.Requests.Select((n, i) => n - start.Requests[i]).ToArray();
        var retries = counts.Retries.Select((n, i) => n - start.Retries[i]).ToArray();
        var byRoute = new SortedDictionary<string, long>(counts.Routes.ToDictionary(), StringComparer.Ordinal);
        var unitsByRequests = new SortedDictionary<long, int>(requests.GroupBy(n => n).ToDictionary(g => g.Key, g => g.Count()));

        // the fleet is quiet (paused, nothing installing): the engine's own cost per pass over this rollout's members
        double? idleCpu = null, idleWall = null;
        if (failing && current.State == RolloutStates.Paused)
        {
            (idleCpu, idleWall) = await IdlePassCostAsync(ct);
        }

        var audit = (await Store.ListAuditAsync(10_000, target: name, ct: ct)).OrderBy(a => a.Id).ToList();
        var createdAt = At(audit.First(a => a.Action == "rollout.create").At);
        var opened = new List<double> { 0 };
        opened.AddRange(audit.Where(a => a.Action == "rollout.open-wave").Select(a => (At(a.At) - createdAt).TotalSeconds));
        var end = audit.FirstOrDefault(a => a.Action == (failing ? "rollout.pause" : "rollout.complete"));
        var applied = audit.Count(a => a.Actor == RolloutService.Actor(name));
        var openAtEnd = (int)current.OpenWaves;

        var reports = (await Store.History.ListUpdateReportsAsync(ct: ct)).Where(r => r.UpdateId == program).ToList();
        var failed = reports.Where(r => r.Success == 0 && waveOf.ContainsKey(r.Mac)).OrderBy(r => r.At, StringComparer.Ordinal).ToList();
        double? thresholdToPause = null;
        if (failing && end is not null)
        {
            // the failure that reached the threshold: the k-th among the open waves' members, k = the error percent of them (rounded up, at least 1)
            var open = plan.Count(m => m.Wave < openAtEnd);
            var k = Math.Max(1, (int)Math.Ceiling(_settings.ErrorPercent * (long)open / 100.0));
            var counted = failed.Where(r => waveOf[r.Mac] < openAtEnd).ToList();
            if (counted.Count >= k) { thresholdToPause = (At(end.At) - At(counted[k - 1].At)).TotalMilliseconds; }
        }
        var onTarget = (await Store.Fleet.MacsOnPatternAsync(to, ct)).ToHashSet(StringComparer.Ordinal);
        // beyond the open waves: a unit that reported on this update, runs the new pattern, or was offered it (Downloading)
        var offered = (await Store.Rollouts.RolloutMembersAsync(current, ct)).Where(m => m.Wave >= openAtEnd && m.Status == MemberStatus.Downloading).Select(m => m.Mac);
        var beyond = reports.Where(r => waveOf.TryGetValue(r.Mac, out var w) && w >= openAtEnd).Select(r => r.Mac)
            .Concat(onTarget.Where(m => waveOf.TryGetValue(m, out var w) && w >= openAtEnd)).Concat(offered).Distinct(StringComparer.Ordinal).Count();
        // on the new pattern but not a healthy unit of an open wave (a failing unit rolls back): the invariant is none
        var stray = onTarget.Count(m => !waveOf.TryGetValue(m, out var w) || w >= openAtEnd || failingMacs.Contains(m));
        // nothing lost or duplicated: at most one report of the program per unit; (rollout) each unit on the new pattern or failed
        var duplicates = reports.GroupBy(r => r.Mac, StringComparer.Ordinal).Count(g => g.Count() > 1);
        var failedMacs = failed.Select(r => r.Mac).ToHashSet(StringComparer.Ordinal);
        var unaccounted = failing ? 0 : macs.Count(m => !onTarget.Contains(m) && !failedMacs.Contains(m));
        double? workerCpu = workersBefore is null || workersAfter is null ? null : workersAfter.Sum(f => f.CpuSeconds) - workersBefore.Sum(f => f.CpuSeconds);

        var report = new RolloutReport(name, from, to, _settings.Waves, created.Waves.Select(w => w.Members).ToList(), opened, current.State,
            end is null ? null : (At(end.At) - createdAt).TotalSeconds, openAtEnd, cost.Passes - costBefore.Passes,
            Mean(cost.PassTime - costBefore.PassTime, cost.Passes - costBefore.Passes), cost.MaxPass.TotalMilliseconds,
            cost.Decisions - costBefore.Decisions, Mean(cost.DecisionTime - costBefore.DecisionTime, cost.Decisions - costBefore.Decisions),
            applied, idleCpu, idleWall, failingMacs.Count, failed.Count, thresholdToPause, beyond, onTarget.Count, stray, current.Reason,
            byRoute, unitsByRequests, duplicates, unaccounted, workerCpu, workersAfter);
        await units.SetFailingHealthAsync(new HashSet<string>(), ct);
        if (!failing && current.State == RolloutStates.Completed) { _rolloutFrom = to; }

        if (failing && current.State != RolloutStates.Paused)
        {
            report = report with { Reason = $"did not pause: rollout {current.State}" + (current.Reason is null ? "" : $" ({current.Reason})") };
        }
        var ok = failing
            ? current.State == RolloutStates.Paused && beyond == 0 && stray == 0 && duplicates == 0
            : current.State == RolloutStates.Completed && onTarget.Count == macs.Count && duplicates == 0 && unaccounted == 0;
        return ScenarioReport.Of(failing ? FleetScenarios.RolloutPause : FleetScenarios.Rollout, macs.Count, ok ? macs.Count : onTarget.Count, elapsed,
            requests, retries, counts.Errors, counts.LatencyTicks, cpu, DescribeRollout(report), counts.Reauthentications - start.Reauthentications, report);
    }

    private static double Mean(TimeSpan total, long count) => count == 0 ? 0 : total.TotalMilliseconds / count;

    /// <summary>
    /// The process's CPU per engine pass with the fleet quiet: the CPU of 3 s without a direct pass (what the idle fleet
    /// and server spend anyway, at most one background pass) is subtracted from that of 10 passes run back to back.
    /// </summary>
    private async Task<(double CpuMs, double WallMs)> IdlePassCostAsync(CancellationToken ct)
    {
        await Task.Delay(1000, ct);
        var idle = Stopwatch.StartNew();
        var cpu0 = Environment.CpuUsage.TotalTime;
        await Task.Delay(3000, ct);
        var idleRate = (Environment.CpuUsage.TotalTime - cpu0).TotalMilliseconds / idle.Elapsed.TotalMilliseconds;
        const int passes = 10;
        var wall = Stopwatch.StartNew();
        cpu0 = Environment.CpuUsage.TotalTime;
        for (var i = 0; i < passes; i++) { await Rollouts.TickAsync(ct); }
        var spent = (Environment.CpuUsage.TotalTime - cpu0).TotalMilliseconds - idleRate * wall.Elapsed.TotalMilliseconds;
        return (Math.Max(0, spent) / passes, wall.Elapsed.TotalMilliseconds / passes);
    }

    private static string DescribeRollout(RolloutReport r)
    {
        var c = CultureInfo.InvariantCulture;
        var waves = string.Join(", ", r.WaveOpenedSeconds.Select((s, i) => string.Create(c, $"wave {i + 1} ({r.WaveSizes[i]}) at {s:0.0} s")));
        var text = string.Create(c,
            $"{r.Name} {r.FromPattern} -> {r.ToPattern}: {r.State} ({(r.EndSeconds is { } e ? $"{e:0.0} s after creation" : "not ended")}); {waves}; " +
            $"{r.AtTarget} unit(s) on {r.ToPattern}; engine: {r.Passes} passes, {r.PassMeanMs:0.0} ms each (max {r.PassMaxMs:0}), decisions {r.DecisionMeanMs:0.00} ms each, " +
            $"{r.DecisionsApplied} applied (audited)");
        if (r.IdlePassCpuMs is { } cpu) { text += string.Create(c, $"; a pass over the paused rollout with the fleet quiet: {cpu:0.0} ms CPU, {r.IdlePassWallMs:0.0} ms"); }
        if (r.FailingUnits > 0)
        {
            text += string.Create(c, $"; {r.FailingUnits} unit(s) fail health, {r.FailedReports} failure report(s); error threshold -> pause " +
                                     $"{(r.ThresholdToPauseMs is { } ms ? $"{ms:0} ms" : "not measured")}; {r.BeyondOpenWaves} unit(s) beyond the open wave(s) offered or installed, {r.StrayAtTarget} on the new pattern outside the open waves' healthy units");
        }
        if (r.Reason is not null) { text += $"; {r.Reason}"; }
        text += string.Create(c, $"; {r.DuplicateReports} unit(s) with more than one update report") +
                (r.FailingUnits == 0 ? string.Create(c, $", {r.Unaccounted} neither on {r.ToPattern} nor failed") : "");
        if (r.WorkerCpuSeconds is { } workerCpu)
        {
            text += string.Create(c, $"\n  the units' processes: CPU {workerCpu:0.0} s during the rollout; ") + DescribeWorkers(r.Workers ?? []);
        }
        if (r.RequestsByRoute is { Count: > 0 } routes)
        {
            text += "\n  requests by route: " + string.Join(", ", routes.Select(x => string.Create(c, $"{x.Key} {x.Value}")));
        }
        if (r.UnitsByRequests is { Count: > 0 } spread)
        {
            text += "\n  units by requests made: " + string.Join(", ", spread.Select(x => string.Create(c, $"{x.Key}: {x.Value}")));
        }
        return text;
    }
}
