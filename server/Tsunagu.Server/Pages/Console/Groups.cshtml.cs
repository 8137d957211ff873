using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Tsunagu.Server.Data;
using Tsunagu.Server.Fleet;
using Tsunagu.Server.Pages.Shared;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Pages.Console;

/// <summary>
/// Groups of units (what rollouts move): the list with each group's members now, and the form that creates a static
/// group (MACs) or a dynamic one (a filter) by <see cref="Groups.CreateAsync"/>, the API's rules and audit entry. A refused
/// form is answered 400 (409 for a name in use) with the reason, and nothing is stored. The window form sets a group's maintenance
/// window (an empty one is refused) or clears it (the Clear button only) by <see cref="Groups.SetWindowAsync"/> (the API's rules, answers and audit entry).
/// </summary>
[ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager, OperatorRoles.Support, OperatorRoles.Auditor)]
public sealed class GroupsModel(TsunaguStore store) : SessionPageModel("console")
{
    public IReadOnlyList<GroupView> List { get; private set; } = [];

    /// <summary>Why the form was refused (shown with the form as it was typed).</summary>
    public string? Refusal { get; private set; }

    public async Task OnGetAsync()
    {
        var views = new List<GroupView>();
        foreach (var g in await store.Fleet.ListGroupsAsync(HttpContext.RequestAborted))
        {
            views.Add(Groups.View(g, await store.Fleet.GroupMembersAsync(g, HttpContext.RequestAborted), withMembers: false));
        }
        List = views;
    }

    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public async Task<IActionResult> OnPostAsync(string? name, string? kind, string? macs, string? pattern, string? board, string? app, string? version, string? tags, string? online)
    {
        NewGroup request;
        if (kind == GroupKinds.Static)
        {
            var list = (macs ?? "").Split([' ', ',', ';', '\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries);
            request = new NewGroup(name?.Trim(), list, null);
        }
        else if (kind == GroupKinds.Dynamic)
        {
            bool? on = Blank(online) switch
            {
                null => null,
                "true" => true,
                "false" => false,
                _ => null,
            };
            if (Blank(online) is not null && on is null) { return await RefuseAsync("online: any, true or false"); }
            var tagList = Blank(tags)?.Split([' ', ',', ';'], StringSplitOptions.RemoveEmptyEntries);
            request = new NewGroup(name?.Trim(), null, new GroupFilter(Blank(pattern), Blank(board), Blank(app), Blank(version), tagList, on));
        }
        else
        {
            return await RefuseAsync("kind: static (a list of MACs) or dynamic (a filter)");
        }
        try
        {
            var view = await Groups.CreateAsync(request, store, Who, HttpContext.RequestAborted);
            Notice = $"Group {view.Name} created ({view.Kind}): {view.MemberCount} unit(s) now.";
        }
        catch (GroupRuleException e)
        {
            return await RefuseAsync(e.Message, e.Conflict);
        }
        return RedirectToPage();
    }

    /// <summary>
    /// Sets the window of <paramref name="group"/> to <paramref name="window"/>, or clears it (only the Clear button,
    /// <paramref name="clear"/>). "Set window" with an empty field is refused (400, nothing changed): one stray submit
    /// must not let a running rollout's updates of importance 1-4 out at any hour.
    /// </summary>
    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public async Task<IActionResult> OnPostWindowAsync(string? group, string? window, string? clear, CancellationToken ct)
    {
        var clearing = clear == "yes";
        if (!clearing && string.IsNullOrWhiteSpace(window))
        {
            return await RefuseAsync("window: type one (such as mon-fri 01:00-05:00); to remove the group's window use Clear window", what: "Nothing was changed: ");
        }
        var request = new GroupWindowRequest(clearing ? null : window);
        try
        {
            var view = await Groups.SetWindowAsync(group, request, store, Who, ct);
            Notice = view.Window is { } w ? $"Group {view.Name}: maintenance window {w}." : $"Group {view.Name}: no maintenance window.";
        }
        catch (GroupRuleException e)
        {
            return await RefuseAsync(e.Message, e.Conflict, e.NotFound, "Nothing was changed: ");
        }
        return RedirectToPage();
    }

    private async Task<PageResult> RefuseAsync(string why, bool conflict = false, bool notFound = false, string what = "Nothing was created: ")
    {
        Response.StatusCode = notFound ? StatusCodes.Status404NotFound : conflict ? StatusCodes.Status409Conflict : StatusCodes.Status400BadRequest;
        Refusal = what + why;
        await OnGetAsync();
        return Page();
    }
}
