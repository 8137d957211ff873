using System.Text.Json.Nodes;
using Tsunagu.Server.Data;
using Tsunagu.Server.Pages.Shared;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Pages.Console;

/// <summary>The fleet overview: units by pattern and by state, online now, failures in the last day, rollout progress.</summary>
[ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager, OperatorRoles.Support, OperatorRoles.Auditor)]
public sealed class IndexModel(TsunaguStore store, TimeProvider time) : SessionPageModel("console")
{
    public IReadOnlyList<UnitRow> Units { get; private set; } = [];
    public int Total { get; private set; }
    public int Online { get; private set; }
    public IReadOnlyList<(string Pattern, int Count)> ByPattern { get; private set; } = [];
    public IReadOnlyList<(string State, int Count)> ByState { get; private set; } = [];
    public IReadOnlyList<UnitEventRow> Failures { get; private set; } = [];
    public IReadOnlyList<UpdateProgramRow> Programs { get; private set; } = [];
    public UpdateProgramRow? Rollout { get; private set; }
    public int RolloutDone { get; private set; }
    public int RolloutScope { get; private set; }
    public string PatternChart { get; private set; } = "";
    public string RolloutChart { get; private set; } = "";
    public DateTimeOffset Now { get; private set; }
    public string? Pattern { get; private set; }
    public string? State { get; private set; }

    public void OnGet(string? pattern, string? state, string? program)
    {
        Now = time.GetUtcNow();
        var all = store.QueryUnits(new UnitQuery());
        Total = all.Count;
        Online = all.Count(u => u.Online != 0);
        ByPattern = all.GroupBy(u => u.Pattern ?? "none").OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => (g.Key, g.Count())).ToList();
        ByState = all.GroupBy(u => u.State).OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => (g.Key, g.Count())).ToList();
        Failures = store.ListFailures(Now.AddDays(-1));
        Pattern = string.IsNullOrWhiteSpace(pattern) ? null : pattern;
        State = string.IsNullOrWhiteSpace(state) ? null : state;
        Units = all.Where(u => (Pattern is null || (u.Pattern ?? "none") == Pattern) && (State is null || u.State == State)).ToList();

        PatternChart = new JsonObject
        {
            ["type"] = "doughnut",
            ["data"] = new JsonObject
            {
                ["labels"] = new JsonArray(ByPattern.Select(p => (JsonNode)p.Pattern).ToArray()),
                ["datasets"] = new JsonArray(new JsonObject { ["label"] = "units", ["data"] = new JsonArray(ByPattern.Select(p => (JsonNode)p.Count).ToArray()) }),
            },
        }.ToJsonString();

        Programs = store.ListUpdatePrograms();
        Rollout = Programs.FirstOrDefault(p => p.Id == program) ?? Programs.FirstOrDefault();
        if (Rollout is not null)
        {
            // units the program concerns: those on its from-pattern now, and those it already moved
            var reports = store.ListUpdateReports().Where(r => r.UpdateId == Rollout.Id && r.Success != 0).ToList();
            RolloutDone = reports.Count;
            RolloutScope = all.Count(u => u.Pattern == Rollout.FromPattern) + RolloutDone;
            // one point per distinct time (reports of the same second are one step), so no time repeats on the axis
            var labels = new JsonArray();
            var values = new JsonArray();
            foreach (var (at, moved) in RolloutSteps(reports.Select(r => r.At)))
            {
                labels.Add(Time(at));
                values.Add(moved);
            }
            RolloutChart = new JsonObject
            {
                ["type"] = "line",
                ["data"] = new JsonObject
                {
                    ["labels"] = labels,
                    ["datasets"] = new JsonArray(new JsonObject
                    {
                        ["label"] = $"units moved to {Rollout.ToPattern}", ["data"] = values, ["stepped"] = true, ["fill"] = true,
                    }),
                },
                ["options"] = new JsonObject
                {
                    ["scales"] = new JsonObject { ["y"] = new JsonObject { ["beginAtZero"] = true, ["suggestedMax"] = RolloutScope } },
                },
            }.ToJsonString();
        }
    }
    /// <summary>
    /// The rollout's steps: for each distinct second a report arrived in (as <see cref="SessionPageModel.Time"/> shows
    /// it), in time order, the number of units moved up to and including it.
    /// </summary>
    public static List<(string At, int Moved)> RolloutSteps(IEnumerable<string> reportTimes)
    {
        var steps = new List<(string At, int Moved)>();
        var moved = 0;
        foreach (var second in reportTimes.Order(StringComparer.Ordinal).GroupBy(Time))
        {
            moved += second.Count();
            steps.Add((second.First(), moved));
        }
        return steps;
    }
}
