using System.Globalization;
using Microsoft.AspNetCore.Mvc;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;
using Tsunagu.Server.Units.Windows;

namespace Tsunagu.Server.Pages.Console;

// The unit's own update window (PUT /api/v1/units/{mac}/update-window in the console): the same checks, roles and audit entry.
public sealed partial class UnitModel
{
    /// <summary>What the unit's version check uses: its hours or own maintenance window, and its zone (the fleet's where it has none).</summary>
    public async Task<UpdateWindowView> UpdateWindowAsync() =>
        _window ??= UpdateWindowApi.View(Unit, await PolicySettings.GetAsync(HttpContext.RequestServices.GetRequiredService<TsunaguStore>(), HttpContext.RequestAborted));

    private UpdateWindowView? _window;

    /// <summary>The window in words, for the device management table.</summary>
    public static string WindowSummary(UpdateWindowView w) =>
        (w.MaintenanceWindow is { } own ? $"own maintenance window {own} (importance 4 and below wait for it)"
            : $"{w.LowWindowStartHour:00}:00-{w.LowWindowEndHour:00}:00 for importance 3 ({(w.OwnWindow ? "the unit's own hours" : "the fleet's")})") +
        $", time zone {w.TimeZone ?? "the server's"}{(w.OwnTimeZone ? " (the unit's own)" : "")}";

    /// <summary>
    /// Sets the unit's own hours or maintenance window and its zone as typed (empty fields: the fleet's); refused, with
    /// nothing changed, for what the API refuses (400: the grammar; 409: a rollout's group window it would never meet).
    /// </summary>
    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public async Task<IActionResult> OnPostUpdateWindow(string mac, string? start, string? end, string? window, string? zone)
    {
        if (!await LoadAsync(mac, HttpContext.RequestAborted)) { return NotFound(); }
        int? Hour(string? text) => string.IsNullOrWhiteSpace(text) ? null
            : int.TryParse(text.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var h) && h <= 23 ? h : -1;
        var request = new UpdateWindowRequest(Hour(start), Hour(end), string.IsNullOrWhiteSpace(zone) ? null : zone.Trim(),
            string.IsNullOrWhiteSpace(window) ? null : window.Trim());
        if (request.LowWindowStartHour == -1 || request.LowWindowEndHour == -1)
        {
            Problem = "Nothing was changed: start and end are hours, 0 to 23";
        }
        else if (UpdateWindowApi.Invalid(request) is { } error)
        {
            Problem = "Nothing was changed: " + error;
        }
        else
        {
            try
            {
                if (!await UpdateWindowApi.SetCheckedAsync(HttpContext.RequestServices.GetRequiredService<TsunaguStore>(), Unit.Mac, request, Who, HttpContext.RequestAborted))
                {
                    return NotFound();
                }
                Notice = $"Update window of {Unit.Mac} saved.";
            }
            catch (StoreConflictException e)
            {
                Problem = "Nothing was changed: " + e.Message;
            }
        }
        return RedirectToPage(new { mac = Unit.Mac });
    }
}
