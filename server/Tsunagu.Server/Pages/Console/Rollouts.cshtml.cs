using System.Globalization;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Tsunagu.Server.Data;
using Tsunagu.Server.Fleet.Rollouts;
using Tsunagu.Server.Pages.Shared;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Pages.Console;

/// <summary>
/// Staged rollouts: the list with each one's state and progress, the form that creates one (a group, an existing
/// update program for the from and to patterns, waves, thresholds) by <see cref="RolloutService.CreateAsync"/> with the API's
/// rules and audit entry, and the emergency stop. A refused form is answered 400 (409 when the name or the transition
/// is taken) with the reason, and nothing is stored.
/// </summary>
[ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager, OperatorRoles.Support, OperatorRoles.Auditor)]
public sealed class RolloutsModel(TsunaguStore store, RolloutService rollouts) : SessionPageModel("console")
{
    public IReadOnlyList<RolloutView> List { get; private set; } = [];
    public IReadOnlyList<string> GroupNames { get; private set; } = [];
    public IReadOnlyList<UpdateProgramRow> Programs { get; private set; } = [];

    /// <summary>Why the form was refused (shown with the form as it was typed).</summary>
    public string? Refusal { get; private set; }

    public async Task OnGetAsync()
    {
        var views = new List<RolloutView>();
        foreach (var row in await store.Rollouts.ListRolloutsAsync(ct: HttpContext.RequestAborted)) { views.Add(await rollouts.ViewAsync(row, HttpContext.RequestAborted)); }
        List = views.OrderByDescending(r => r.CreatedAt, StringComparer.Ordinal).ToList();
        GroupNames = (await store.Fleet.ListGroupsAsync(HttpContext.RequestAborted)).Select(g => g.Name).ToList();
        Programs = await store.Catalogue.ListUpdateProgramsAsync(HttpContext.RequestAborted);
    }

    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public async Task<IActionResult> OnPostCreateAsync(string? name, string? group, string? program, string? waves, string? successPercent,
        string? errorPercent, string? onError, string? minWaveSeconds)
    {
        var (row, why) = await InputRulesAsync(program, HttpContext.RequestAborted);
        if (why is not null) { return await RefuseAsync(why, conflict: row is not null); }
        var (specs, waveError) = RolloutEngine.ParseWaves(waves);
        if (specs is null) { return await RefuseAsync(waveError!); }
        if (!Number(successPercent, "successPercent", out var success, out why)
            || !Number(errorPercent, "errorPercent", out var error, out why)
            || !Number(minWaveSeconds, "minWaveSeconds", out var minWave, out why))
        {
            return await RefuseAsync(why!);
        }
        var request = new NewRollout(name?.Trim(), Blank(group), row!.FromPattern, row.ToPattern, specs, success, error, Blank(onError), minWave);
        RolloutView view;
        try
        {
            view = await rollouts.CreateAsync(request, Who, HttpContext.RequestAborted);
        }
        catch (RolloutRuleException e)
        {
            return await RefuseAsync(e.Message, e.Conflict);
        }
        if (view.UpdateId != row.Id)
        {
            // another program of the transition was given a higher priority between the check and the creation
            Notice = $"Rollout {view.Name} moves its units by update program {view.UpdateId}, not {row.Id}: the catalogue changed while it was created. ";
        }
        await rollouts.StartAsync(view.Name, HttpContext.RequestAborted);
        Notice += $"Rollout {view.Name} created: {view.Total.Members} unit(s) in waves {string.Join("/", view.Waves.Select(w => w.Members))}; wave 1 is open.";
        return Redirect($"/console/rollouts/{view.Name}");
    }

    /// <summary>Pauses every running rollout (the API's emergency stop, the same roles).</summary>
    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager, OperatorRoles.Support)]
    public async Task<IActionResult> OnPostStopAsync(string? confirm)
    {
        if (confirm != "yes") { return await RefuseAsync("tick the box to confirm the emergency stop", prefix: "Nothing was paused: "); }
        var paused = await rollouts.EmergencyStopAsync(Who, HttpContext.RequestAborted);
        Notice = paused.Count == 0 ? "No rollout was running." : $"Paused: {string.Join(", ", paused)}.";
        return RedirectToPage();
    }

    /// <summary>The chosen update program, and why it cannot be a rollout's (null when it can).</summary>
    private async Task<(UpdateProgramRow? Row, string? Why)> InputRulesAsync(string? program, CancellationToken ct)
    {
        if (!Apis.InputRules.IsIdentifier(program)) { return (null, "program: choose the update program that leads from the old pattern to the new one"); }
        var row = await store.Catalogue.GetUpdateProgramAsync(program, ct);
        if (row is null) { return (null, $"program: no update program '{program}'"); }
        // a rollout moves its units by the program its transition offers (the highest priority one from -> to): the chosen
        // program must be that one, or the units would install another program than the one chosen
        if (await store.Catalogue.FindUpdateProgramAsync(row.FromPattern, row.ToPattern, ct: ct) is { } offered && offered.Id != row.Id)
        {
            return (row, $"program: {row.FromPattern} -> {row.ToPattern} is offered by update program {offered.Id} (priority {offered.Priority}), not {row.Id} " +
                         $"(priority {row.Priority}); a rollout of this transition moves its units by {offered.Id}: choose it, or give {row.Id} the higher priority");
        }
        return (row, null);
    }

    /// <summary>An optional whole number of the form (empty: the default).</summary>
    private static bool Number(string? text, string field, out int? value, out string? why)
    {
        value = null;
        why = null;
        if (Blank(text) is not { } t) { return true; }
        if (t.Length <= 9 && int.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var v)) { value = v; return true; }
        why = $"{field}: a whole number";
        return false;
    }

    private async Task<PageResult> RefuseAsync(string why, bool conflict = false, string prefix = "Nothing was created: ")
    {
        Response.StatusCode = conflict ? StatusCodes.Status409Conflict : StatusCodes.Status400BadRequest;
        Refusal = prefix + why;
        await OnGetAsync();
        return Page();
    }
}
