using System.Text.Json.Nodes;
using Tsunagu.Server.Data;
using Tsunagu.Server.Pages.Shared;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Pages.Console;

/// <summary>The fleet overview: units by pattern and by state, online now, failures in the last day, rollout progress.</summary>
[ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager, OperatorRoles.Support, OperatorRoles.Auditor)]
public sealed class IndexModel(TsunaguStore store, TimeProvider time) : SessionPageModel("console")
{
    public long Total { get; private set; }
    public long Online { get; private set; }
    public IReadOnlyList<(string Pattern, long Count)> ByPattern { get; private set; } = [];
    public IReadOnlyList<(string State, long Count)> ByState { get; private set; } = [];
    public IReadOnlyList<UnitEventRow> Failures { get; private set; } = [];
    public IReadOnlyList<UpdateProgramRow> Programs { get; private set; } = [];
    public UpdateProgramRow? Rollout { get; private set; }
    public long RolloutDone { get; private set; }
    public long RolloutScope { get; private set; }
    public string PatternChart { get; private set; } = "";
    public string RolloutChart { get; private set; } = "";
    public DateTimeOffset Now { get; private set; }

    /// <summary>The overview counts in the database (one grouped count of the units), never by reading the units: it stays fast at fleet scale.</summary>
    public async Task OnGetAsync(string? program)
    {
        Now = time.GetUtcNow();
        var counts = await store.Pages.CountUnitsAsync(HttpContext.RequestAborted);
        (Total, Online, ByState) = (counts.Total, counts.Online, counts.ByState);
        // units on no pattern are listed under "-" (the unit list's filter value for them)
        ByPattern = counts.ByPattern.Select(p => (p.Pattern ?? UnitsModel.NoPattern, p.Count)).ToList();
        Failures = await store.History.ListFailuresAsync(Now.AddDays(-1), ct: HttpContext.RequestAborted);

        PatternChart = new JsonObject
        {
            ["type"] = "doughnut",
            ["data"] = new JsonObject
            {
                ["labels"] = new JsonArray(ByPattern.Select(p => (JsonNode)p.Pattern).ToArray()),
                ["datasets"] = new JsonArray(new JsonObject { ["label"] = "units", ["data"] = new JsonArray(ByPattern.Select(p => (JsonNode)p.Count).ToArray()) }),
            },
        }.ToJsonString();

        Programs = await store.Catalogue.ListUpdateProgramsAsync(HttpContext.RequestAborted);
        Rollout = Programs.FirstOrDefault(p => p.Id == program) ?? Programs.FirstOrDefault();
        if (Rollout is not null)
        {
            // units the program concerns: those on its from-pattern now, and those it already moved
            var reports = await store.Pages.ListSuccessfulUpdateTimesAsync(Rollout.Id, HttpContext.RequestAborted);
            RolloutDone = reports.Count;
            RolloutScope = counts.OnPattern(Rollout.FromPattern) + RolloutDone;
            // one point per distinct time (reports of the same second are one step), so no time repeats on the axis
            var labels = new JsonArray();
            var values = new JsonArray();
            foreach (var (at, moved) in RolloutSteps(reports))
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
