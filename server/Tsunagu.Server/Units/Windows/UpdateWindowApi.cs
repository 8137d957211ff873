using Microsoft.AspNetCore.Http.HttpResults;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Units.Windows;

/// <summary>
/// A unit's own importance-3 window (local hours, both or neither) and its time zone (an IANA id; null: the fleet's
/// policy); <see cref="MaintenanceWindow"/>: its own recurring maintenance window (<see cref="Protocol.MaintenanceWindow"/>
/// grammar, e.g. <c>mon-fri 01:00-05:00</c>; null: none), which every update below importance 5 waits for (4 with the
/// load, 3 and below instead of the hours): a unit has hours of its own or a window of its own, not both.
/// </summary>
public sealed record UpdateWindowRequest(int? LowWindowStartHour, int? LowWindowEndHour, string? TimeZone, string? MaintenanceWindow = null);

/// <summary>What a unit's version check uses: its window hours and the zone they are in, whether each is the unit's own, and its own maintenance window (null: none).</summary>
public sealed record UpdateWindowView(string Mac, int LowWindowStartHour, int LowWindowEndHour, string? TimeZone, bool OwnWindow, bool OwnTimeZone,
    string? MaintenanceWindow = null);

/// <summary>
/// Per-unit update windows (patent 0048, 0064): importance 3 runs in the low-utilisation window, judged in the
/// unit's time zone by host and unit alike (the version check sends the zone with the policy).
/// </summary>
public static class UpdateWindowApi
{
    public static void MapUpdateWindowApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup(Routes.Units).AddEndpointFilter<RequireOperator>();
        api.MapGet("/{mac}/update-window", async Task<Results<Ok<UpdateWindowView>, ProblemHttpResult>> (string mac, TsunaguStore store, CancellationToken ct) =>
                MacAddress.TryNormalize(mac, out var m) && await store.Units.GetUnitAsync(m, ct) is { } unit
                    ? TypedResults.Ok(View(unit, await PolicySettings.GetAsync(store, ct)))
                    : Problems.NotFound($"unit {mac} is not registered"))
            .ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Read);
        api.MapPut("/{mac}/update-window", async Task<Results<Ok<UpdateWindowView>, ProblemHttpResult>> (string mac, UpdateWindowRequest request, TsunaguStore store, HttpContext http) =>
            {
                if (!MacAddress.TryNormalize(mac, out var m) || await store.Units.GetUnitAsync(m, http.RequestAborted) is null) { return Problems.NotFound($"unit {mac} is not registered"); }
                if (Invalid(request) is { } error) { return Problems.BadRequest(error); }
                try
                {
                    if (!await SetCheckedAsync(store, m, request, http.Caller().Subject, http.RequestAborted)) { return Problems.NotFound($"unit {mac} is not registered"); }
                }
                catch (StoreConflictException e)
                {
                    return Problems.Conflict(e.Message);
                }
                return TypedResults.Ok(View((await store.Units.GetUnitAsync(m, http.RequestAborted))!, await PolicySettings.GetAsync(store, http.RequestAborted)));
            })
            .ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Release);
    }

    /// <summary>
    /// Stores unit <paramref name="mac"/>'s window as <paramref name="request"/> (already valid, <see cref="Invalid"/>) asks,
    /// with its audit entry; false when the unit is not registered. Refused (<see cref="StoreConflictException"/>, nothing
    /// written) when the unit is a member the gate may still offer the update to (<see cref="UpdateWindowStore.WaitingMember"/>)
    /// of a running or paused rollout whose update is of importance 3 and whose group's maintenance window its new hours
    /// never meet: it would never be offered the update. Clearing the hours (back to the fleet policy's, which a policy
    /// change, a group window change and a rollout's creation keep meeting every such window) is never refused; nor is a
    /// request whose hours are the ones stored (a zone change alone: both windows are read on the unit's wall clock, and
    /// nothing gets worse, even for a unit already stuck). The rollouts are read under the catalogue's lock, in the transaction that writes the hours.
    /// </summary>
    public static async Task<bool> SetCheckedAsync(TsunaguStore store, string mac, UpdateWindowRequest request, string actor, CancellationToken ct)
    {
        var own = request.MaintenanceWindow is { } text ? MaintenanceWindow.Parse(text).Window : null;
        var detail = $"window {(request.LowWindowStartHour is { } s ? $"{s:00}:00-{request.LowWindowEndHour:00}:00" : "fleet's")}, zone {request.TimeZone ?? "fleet's"}" +
                     $", maintenance window {own?.ToString() ?? "none"}";
        var hours = request is { LowWindowStartHour: { } start, LowWindowEndHour: { } end } ? Fleet.GroupWindows.OwnHours(start, end) : null;
        return await store.Windows.SetUpdateWindowCheckedAsync(mac, request.LowWindowStartHour, request.LowWindowEndHour, request.TimeZone, own?.ToString(),
            uses => uses.Select(u => MaintenanceWindow.Parse(u.Window).Window is { } window
                        ? (hours is null ? null : Fleet.GroupWindows.UnitStall(mac, hours, u.GroupName, window, u.Name, u.UpdateId, (int)u.Importance))
                          ?? (own is null ? null : Fleet.GroupWindows.UnitWindowStall(mac, own, u.GroupName, window, u.Name, u.UpdateId, (int)u.Importance))
                        : null).FirstOrDefault(s => s is not null) is { } stall
                    ? $"{stall} (choose a window or hours that meet the group's window, clear the unit's own, or change the group's window); nothing was changed"
                    : null,
            new AuditEntry(actor, "unit.update-window", mac, detail), ct);
    }

    /// <summary>Why the request cannot be stored; null when it can.</summary>
    public static string? Invalid(UpdateWindowRequest? request)
    {
        if (request is null) { return "body: a JSON object with lowWindowStartHour, lowWindowEndHour, timeZone"; }
        if (request.LowWindowStartHour.HasValue != request.LowWindowEndHour.HasValue)
        {
            return "lowWindowStartHour, lowWindowEndHour: give both (the unit's own window) or neither (the fleet's)";
        }
        foreach (var (name, hour) in new[] { ("lowWindowStartHour", request.LowWindowStartHour), ("lowWindowEndHour", request.LowWindowEndHour) })
        {
            if (hour is < 0 or > 23) { return $"{name}: {hour} is not an hour (0..23)"; }
        }
        if (request.TimeZone is { } zone && !ImportancePolicy.TryZone(zone, out _))
        {
            return $"timeZone: '{InputRules.Quote(zone)}' is not a known time zone id (e.g. Asia/Tokyo)";
        }
        if (request.MaintenanceWindow is { } window)
        {
            if (MaintenanceWindow.Parse(window).Error is { } error) { return $"maintenanceWindow: '{InputRules.Quote(window)}' is not a window: {error}"; }
            if (request.LowWindowStartHour is not null)
            {
                return "maintenanceWindow, lowWindowStartHour, lowWindowEndHour: give the unit hours of its own or a maintenance window of its own, not both " +
                       "(with a window, importance 3 and below wait for it instead of the hours)";
            }
        }
        return null;
    }

    public static UpdateWindowView View(UnitRow unit, UpdatePolicy fleet) =>
        new(unit.Mac, (int)(unit.LowWindowStart ?? fleet.LowWindowStartHour), (int)(unit.LowWindowEnd ?? fleet.LowWindowEndHour),
            unit.TimeZone ?? fleet.TimeZone, unit.LowWindowStart is not null && unit.LowWindowEnd is not null, unit.TimeZone is not null, unit.MaintenanceWindow);
}
