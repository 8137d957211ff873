using System.Globalization;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Tsunagu.Server.Data;
using Tsunagu.Server.Fleet.Rollouts;
using Tsunagu.Server.Pages.Shared;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Pages.Console;

/// <summary>One bar of the progress chart: a wave's members in each status, as widths on a 0-100 scale.</summary>
public sealed record ChartSegment(string Status, double X, double Width, int Units);

/// <summary>
/// One rollout: per wave its members pending, downloading, installed, failed and offline (refreshed while it is
/// active), a server-rendered chart of the same, the members it cannot reach in its window (<see cref="RolloutView.NeverOffered"/>:
/// how many, the first <see cref="NeverOfferedListed"/> linked to their units), and the operator's pause, resume and abort (each confirmed), by
/// <see cref="RolloutService.ActAsync"/>: the API's rules, roles and audit entries. A refused action is answered 400
/// (no confirmation) or 409 (a state that does not allow it) with the reason; nothing changes.
/// </summary>
[ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager, OperatorRoles.Support, OperatorRoles.Auditor)]
public sealed class RolloutModel(TsunaguStore store, RolloutService rollouts) : SessionPageModel("console")
{
    /// <summary>The statuses in the order the chart stacks them, with their colours (contrast at least 3:1 on white).</summary>
    public static readonly IReadOnlyList<(string Status, string Colour)> Legend =
    [
        ("installed", "#1f7a3a"), ("downloading", "#1e40af"), ("failed", "#b42318"), ("offline", "#616e7c"), ("pending", "#c5ccd3"),
    ];

    /// <summary>How many of the rollout's never-offered members the page lists (sorted by MAC, each a link to its unit); the count is of all.</summary>
    public const int NeverOfferedListed = 10;

    /// <summary>The ticks of the chart's x axis, each once: the share of a wave's units.</summary>
    public static readonly IReadOnlyList<int> Ticks = [0, 25, 50, 75, 100];

    public RolloutView Rollout { get; private set; } = null!;

    public string? Refusal { get; private set; }

    public async Task<IActionResult> OnGetAsync(string name) => await LoadAsync(name, HttpContext.RequestAborted) ? Page() : NotFound();

    private async Task<bool> LoadAsync(string name, CancellationToken ct)
    {
        if (!Apis.InputRules.IsIdentifier(name) || await store.Rollouts.GetRolloutAsync(name, HttpContext.RequestAborted) is not { } row) { return false; }
        Rollout = await rollouts.ViewAsync(row, ct);
        return true;
    }

    /// <summary>A wave's bar: each status's share of the wave, left to right in <see cref="Legend"/> order.</summary>
    public static IReadOnlyList<ChartSegment> Bar(WaveProgress w)
    {
        var counts = new[] { w.Installed, w.Downloading, w.Failed, w.Offline, w.Pending };
        var segments = new List<ChartSegment>();
        var x = 0.0;
        for (var i = 0; i < counts.Length; i++)
        {
            if (counts[i] == 0 || w.Members == 0) { continue; }
            var width = 100.0 * counts[i] / w.Members;
            segments.Add(new ChartSegment(Legend[i].Status, x, width, counts[i]));
            x += width;
        }
        return segments;
    }

    public static string N(double v) => v.ToString("0.##", CultureInfo.InvariantCulture);

    /// <summary>An axis label of the chart (an SVG text element; Razor keeps the name text for itself).</summary>
    public static Microsoft.AspNetCore.Html.HtmlString Label(double x, double y, string anchor, string text) =>
        new($"<text x=\"{N(x)}\" y=\"{N(y)}\" text-anchor=\"{anchor}\" font-size=\"13\" fill=\"#243b53\">{System.Net.WebUtility.HtmlEncode(text)}</text>");

    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public Task<IActionResult> OnPostPauseAsync(string name, string? confirm) => ActAsync(name, "pause", confirm);

    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public Task<IActionResult> OnPostResumeAsync(string name, string? confirm) => ActAsync(name, "resume", confirm);

    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public Task<IActionResult> OnPostAbortAsync(string name, string? confirm, string? units) => ActAsync(name, "abort", confirm, units ?? AbortChoices.Keep);

    private async Task<IActionResult> ActAsync(string name, string action, string? confirm, string? units = null)
    {
        if (!await LoadAsync(name, HttpContext.RequestAborted)) { return NotFound(); }
        if (confirm != "yes") { return await RefuseAsync($"tick the box to confirm: {action} {Rollout.Name}", conflict: false, HttpContext.RequestAborted); }
        try
        {
            var view = await rollouts.ActAsync(name, action, Who, HttpContext.RequestAborted, units);
            Notice = units == AbortChoices.Revert && view.ReturnCounts is { } counts
                ? $"Rollout {view.Name} is {view.State}: {counts.Returning + counts.Returned} unit(s) return to {view.FromPattern}, {counts.Cannot} cannot."
                : $"Rollout {view.Name} is {view.State}.";
        }
        catch (RolloutRuleException e)
        {
            return await RefuseAsync(e.Message, e.Conflict, HttpContext.RequestAborted);
        }
        return Redirect($"/console/rollouts/{Rollout.Name}");
    }

    private async Task<PageResult> RefuseAsync(string why, bool conflict, CancellationToken ct)
    {
        Response.StatusCode = conflict ? StatusCodes.Status409Conflict : StatusCodes.Status400BadRequest;
        Refusal = "Nothing was done: " + why;
        await LoadAsync(Rollout.Name, HttpContext.RequestAborted);
        return Page();
    }
}
