using System.Text.Json;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;

namespace Tsunagu.Server.Fleet;

public static class GroupKinds
{
    public const string Static = "static";
    public const string Dynamic = "dynamic";
}

/// <summary>
/// A dynamic group's filter: every given field must hold (pattern; board, the hardware version; an application at a
/// version; all of the tags; online state). An empty filter selects every active unit.
/// </summary>
public sealed record GroupFilter(string? Pattern = null, string? Board = null, string? App = null, string? Version = null,
    IReadOnlyList<string>? Tags = null, bool? Online = null);

/// <summary>
/// A new group: <see cref="Macs"/> (static) or <see cref="Filter"/> (dynamic), not both; optionally its maintenance
/// <see cref="Window"/> (<see cref="MaintenanceWindow"/>).
/// </summary>
public sealed record NewGroup(string? Name, IReadOnlyList<string>? Macs, GroupFilter? Filter, string? Window = null);

/// <summary>
/// A group's maintenance window to set (<see cref="MaintenanceWindow"/>), or null to clear it. The API reads it with
/// <see cref="TryRead"/>: the property must be in the body, so a body without it (or with the name misspelled) is
/// refused, never read as "clear".
/// </summary>
public sealed record GroupWindowRequest(string? Window)
{
    /// <summary>The request in <paramref name="body"/>: an object whose <c>window</c> (any case) is a string or null; else the reason it is not.</summary>
    public static (GroupWindowRequest? Request, string? Error) TryRead(System.Text.Json.JsonElement? body)
    {
        if (body is not { ValueKind: System.Text.Json.JsonValueKind.Object } o)
        {
            return (null, "body: a JSON object {\"window\": \"mon-fri 01:00-05:00\"} (or {\"window\": null} to clear it) is required");
        }
        foreach (var p in o.EnumerateObject())
        {
            if (!string.Equals(p.Name, "window", StringComparison.OrdinalIgnoreCase)) { continue; }
            return p.Value.ValueKind switch
            {
                System.Text.Json.JsonValueKind.String => TryString(p.Value),
                System.Text.Json.JsonValueKind.Null => (new GroupWindowRequest((string?)null), null),
                _ => (null, "window: a string, or null to clear the group's window"),
            };
        }
        return (null, "window: required (a window such as \"mon-fri 01:00-05:00\", or null to clear it): a body without it clears nothing");
    }

    private static (GroupWindowRequest? Request, string? Error) TryString(System.Text.Json.JsonElement value)
    {
        try
        {
            return (new GroupWindowRequest(value.GetString()), null);
        }
        catch (InvalidOperationException)
        {
            return (null, "window: not valid text (a lone UTF-16 surrogate)"); // JSON allows "\ud800"; a string cannot hold it
        }
    }
}

/// <summary>A group as the operator sees it, with the units it holds now.</summary>
public sealed record GroupView(string Name, string Kind, IReadOnlyList<string>? Macs, GroupFilter? Filter, string CreatedBy, string CreatedAt,
    int MemberCount, IReadOnlyList<string>? Members = null, string? Window = null);

/// <summary>
/// A group the operator cannot create or change as asked (400, 409 when <see cref="Conflict"/>, 404 when
/// <see cref="NotFound"/>; nothing written).
/// </summary>
public sealed class GroupRuleException(string message, bool conflict = false, bool notFound = false) : Exception(message)
{
    public bool Conflict { get; } = conflict;

    public bool NotFound { get; } = notFound;
}

/// <summary>Static groups (a list of MACs, each a registered unit) and dynamic ones (a filter evaluated whenever the group is used).</summary>
public static class Groups
{
    public const int MaxStaticMacs = 100_000;

    /// <summary>
    /// Creates the group <paramref name="request"/> asks for, with its audit entry (the API and the console both come
    /// here); a <see cref="GroupRuleException"/> says why not, and then nothing was written.
    /// </summary>
    public static async Task<GroupView> CreateAsync(NewGroup? request, TsunaguStore store, string actor, CancellationToken ct = default)
    {
        var (row, error) = await CheckAsync(request, store, actor, ct);
        if (row is null) { throw new GroupRuleException(error!); }
        try
        {
            await store.Fleet.AddGroupAsync(row, new AuditEntry(actor, "group.create", row.Name, $"{row.Kind} {row.Definition}" + (row.MaintenanceWindow is { } w ? $"; window {w}" : "")), ct);
        }
        catch (StoreConflictException e)
        {
            throw new GroupRuleException(e.Message, conflict: true);
        }
        return View(row, await store.Fleet.GroupMembersAsync(row, ct), withMembers: true);
    }

    /// <summary>The row to store for <paramref name="request"/>, or why it cannot be stored. Reads the store; writes nothing.</summary>
    public static async Task<(GroupRow? Row, string? Error)> CheckAsync(NewGroup? request, TsunaguStore store, string actor, CancellationToken ct = default)
    {
        if (request is null) { return (null, "body: a JSON object with name and macs (a static group) or filter (a dynamic one)"); }
        if (!InputRules.IsIdentifier(request.Name)) { return (null, InputRules.Identifier("name")); }
        string? window = null;
        if (request.Window is not null)
        {
            if (MaintenanceWindow.Parse(request.Window) is not ({ } w, null)) { return (null, MaintenanceWindow.Parse(request.Window).Error); }
            window = w.ToString();
        }
        if ((request.Macs is null) == (request.Filter is null)) { return (null, "macs, filter: give exactly one (macs: a static group; filter: a dynamic one)"); }
        if (request.Macs is { } macs)
        {
            if (macs.Count > MaxStaticMacs) { return (null, $"macs: at most {MaxStaticMacs}"); }
            var normal = new SortedSet<string>(StringComparer.Ordinal);
            foreach (var mac in macs)
            {
                if (!MacAddress.TryNormalize(mac, out var m)) { return (null, $"macs: '{InputRules.Quote(mac)}' is not a MAC address"); }
                normal.Add(m);
            }
            var missing = new List<string>();
            foreach (var m in normal)
            {
                if (missing.Count == 5) { break; }
                if (await store.Units.GetUnitForCheckAsync(m, ct) is null) { missing.Add(m); }
            }
            if (missing.Count > 0) { return (null, $"macs: not registered: {string.Join(", ", missing)}"); }
            return (new GroupRow { Name = request.Name, Kind = GroupKinds.Static, Definition = JsonSerializer.Serialize(normal.ToList(), JsonSerializerOptions.Web), CreatedBy = actor, MaintenanceWindow = window }, null);
        }
        var f = request.Filter!;
        if (f.Pattern is not null && !InputRules.IsIdentifier(f.Pattern)) { return (null, InputRules.Identifier("filter.pattern")); }
        if (f.Board is not null && !InputRules.IsText(f.Board, 64)) { return (null, InputRules.Text("filter.board", 64)); }
        if (f.App is not null && !InputRules.IsIdentifier(f.App)) { return (null, InputRules.Identifier("filter.app")); }
        if (f.Version is not null && (f.App is null || !InputRules.IsIdentifier(f.Version)))
        {
            return (null, "filter.version: needs filter.app (the application whose version it is); " + InputRules.Identifier("filter.version"));
        }
        if (f.Tags is not null && Tags.Invalid(f.Tags, "filter.tags") is { } tagError) { return (null, tagError); }
        var filter = f with { Tags = f.Tags is null ? null : Tags.Normal(f.Tags) };
        return (new GroupRow { Name = request.Name, Kind = GroupKinds.Dynamic, Definition = JsonSerializer.Serialize(filter, JsonSerializerOptions.Web), CreatedBy = actor, MaintenanceWindow = window }, null);
    }

    /// <summary>
    /// Sets or clears group <paramref name="name"/>'s maintenance window as <paramref name="request"/> asks, with its audit
    /// entry (the API and the console both come here). Refused (<see cref="GroupRuleException"/>, nothing written): a
    /// window that does not read (400), no such group (404), or a window that never overlaps the update policy's clock
    /// window for the update of a running or paused rollout of the group, or what a member of it the gate may still offer
    /// the update to waits for of its own: its maintenance window (importance 4 and below), or its low-utilisation hours
    /// (importance 3) (409: those units would wait forever).
    /// </summary>
    public static async Task<GroupView> SetWindowAsync(string? name, GroupWindowRequest? request, TsunaguStore store, string actor, CancellationToken ct)
    {
        if (!InputRules.IsIdentifier(name) || await store.Fleet.GetGroupAsync(name, ct) is null) { throw new GroupRuleException($"no group '{InputRules.Quote(name)}'", notFound: true); }
        if (request is null) { throw new GroupRuleException("body: {\"window\": \"mon-fri 01:00-05:00\"} or {\"window\": null} (none)"); }
        MaintenanceWindow? window = null;
        if (request.Window is not null)
        {
            var (w, error) = MaintenanceWindow.Parse(request.Window);
            window = w ?? throw new GroupRuleException(error!);
        }
        bool set;
        try
        {
            // the policy is the one stored when the window is written: read in the same transaction, under the catalogue's lock
            set = await store.Fleet.SetGroupWindowCheckedAsync(name, window?.ToString(), (rollouts, policy, hours) => window is null ? null
                    : rollouts.Select(r => GroupWindows.Stall(name, window, r.Name, r.UpdateId, (int)r.Importance, policy)).FirstOrDefault(s => s is not null) is { } stall
                        ? $"{stall}; nothing was changed (choose a window that overlaps it, or change the update policy)"
                        // the rollout's members with hours of their own wait for those, not the policy's (importance 3), and those
                        // with a maintenance window of their own wait for it (importance 4 and below)
                        : rollouts.Select(r => GroupWindows.MembersStall(name, window, r.Name, r.UpdateId, (int)r.Importance,
                                [.. hours.Where(h => h.Rollout == r.Name).Select(h => h.Clock)]))
                            .FirstOrDefault(s => s is not null) is { } members
                            ? $"{members}; nothing was changed (change or clear those units' own windows first, PUT /api/v1/units/{{mac}}/update-window, or choose a window that meets them)"
                            : null,
                new AuditEntry(actor, "group.window", name, window?.ToString() ?? "none"), ct);
        }
        catch (StoreConflictException e)
        {
            throw new GroupRuleException(e.Message, conflict: true);
        }
        // deleted meanwhile, or right after the window was set: gone, as a delete before it would have been
        if (!set || await store.Fleet.GetGroupAsync(name, ct) is not { } row) { throw new GroupRuleException($"no group '{name}'", notFound: true); }
        return View(row, await store.Fleet.GroupMembersAsync(row, ct), withMembers: false);
    }

    public static GroupView View(GroupRow row, IReadOnlyList<string> members, bool withMembers) =>
        new(row.Name, row.Kind,
            row.Kind == GroupKinds.Static ? JsonSerializer.Deserialize<List<string>>(row.Definition, JsonSerializerOptions.Web) : null,
            row.Kind == GroupKinds.Dynamic ? JsonSerializer.Deserialize<GroupFilter>(row.Definition, JsonSerializerOptions.Web) : null,
            row.CreatedBy, row.CreatedAt, members.Count, withMembers ? members : null, row.MaintenanceWindow);
}
