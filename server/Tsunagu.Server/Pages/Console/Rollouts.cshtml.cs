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
/// update program for the from and to patterns, waves, thresholds) by <see cref="RolloutService.Create"/> with the API's
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

    public void OnGet()
    {
        List = store.ListRollouts().Select(rollouts.View).OrderByDescending(r => r.CreatedAt, StringComparer.Ordinal).ToList();
        GroupNames = store.ListGroups().Select(g => g.Name).ToList();
        Programs = store.ListUpdatePrograms();
    }

    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public async Task<IActionResult> OnPostCreateAsync(string? name, string? group, string? program, string? waves, string? successPercent,
        string? errorPercent, string? onError, string? minWaveSeconds)
    {
        if (!InputRulesOk(program, out var row, out var why)) { return Refuse(why!, conflict: row is not null); }
        var (specs, waveError) = RolloutEngine.ParseWaves(waves);
        if (specs is null) { return Refuse(waveError!); }
        if (!Number(successPercent, "successPercent", out var success, out why)
            || !Number(errorPercent, "errorPercent", out var error, out why)
            || !Number(minWaveSeconds, "minWaveSeconds", out var minWave, out why))
        {
            return Refuse(why!);
        }
        var request = new NewRollout(name?.Trim(), Blank(group), row!.FromPattern, row.ToPattern, specs, success, error, Blank(onError), minWave);
        RolloutView view;
        try
        {
            view = rollouts.Create(request, Who);
        }
        catch (RolloutRuleException e)
        {
            return Refuse(e.Message, e.Conflict);
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
    public IActionResult OnPostStop(string? confirm)
    {
        if (confirm != "yes") { return Refuse("tick the box to confirm the emergency stop", prefix: "Nothing was paused: "); }
        var paused = rollouts.EmergencyStop(Who);
        Notice = paused.Count == 0 ? "No rollout was running." : $"Paused: {string.Join(", ", paused)}.";
        return RedirectToPage();
    }

    private bool InputRulesOk(string? program, out UpdateProgramRow? row, out string? why)
    {
        row = null;
        why = null;
        if (!Apis.InputRules.IsIdentifier(program)) { why = "program: choose the update program that leads from the old pattern to the new one"; return false; }
        row = store.GetUpdateProgram(program);
        if (row is null) { why = $"program: no update program '{program}'"; return false; }
        // a rollout moves its units by the program its transition offers (the highest priority one from -> to): the chosen
        // program must be that one, or the units would install another program than the one chosen
        if (store.FindUpdateProgram(row.FromPattern, row.ToPattern) is { } offered && offered.Id != row.Id)
        {
            why = $"program: {row.FromPattern} -> {row.ToPattern} is offered by update program {offered.Id} (priority {offered.Priority}), not {row.Id} " +
                  $"(priority {row.Priority}); a rollout of this transition moves its units by {offered.Id}: choose it, or give {row.Id} the higher priority";
            return false;
        }
        return true;
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

    private PageResult Refuse(string why, bool conflict = false, string prefix = "Nothing was created: ")
    {
        Response.StatusCode = conflict ? StatusCodes.Status409Conflict : StatusCodes.Status400BadRequest;
        Refusal = prefix + why;
        OnGet();
        return Page();
    }
}
