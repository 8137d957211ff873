using Microsoft.AspNetCore.Mvc;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;
using Tsunagu.Server.Units.Lifecycle;

namespace Tsunagu.Server.Pages.Console;

// The unit's row of the device management table edited in the console (PATCH /api/v1/units/{mac}/record): the same
// rules (UnitLifecycle.EditAsync, the registration's), the revision the page showed as If-Match, the revision history
// (GET /api/v1/units/{mac}/revisions); and the deletion of a row that never reached the server (DELETE /api/v1/units/{mac}).
public sealed partial class UnitModel
{
    /// <summary>The row's revisions, newest first: who changed what and when (secrets only as "changed").</summary>
    public IReadOnlyList<UnitRevisionView> Revisions { get; private set; } = [];

    /// <summary>Reads the row's revisions (<see cref="Revisions"/>) for the page.</summary>
    private async Task LoadRevisionsAsync(string mac, CancellationToken ct) =>
        Revisions = (await store.Lifecycle.ListUnitRevisionsAsync(mac, ct))
            .Select(r => new UnitRevisionView(r.Revision, r.At, r.Actor, r.Action,
                System.Text.Json.JsonSerializer.Deserialize<List<UnitFieldChange>>(r.Changes, System.Text.Json.JsonSerializerOptions.Web) ?? []))
            .Reverse().ToList();

    /// <summary>Whether the row may still be deleted rather than decommissioned: the unit never reached the server and no replacement involves it.</summary>
    public bool Deletable => Unit.DecommissionedAt is null && Unit.LastSeen is null && Unit.Inventory is null && Unit.ReplacedBy is null;

    /// <summary>
    /// Writes the form's row when the unit is still at <paramref name="revision"/>. Every field is sent as the page
    /// showed it: an emptied field clears it (the registration's rules decide whether it may be empty); the ISP password
    /// is kept unless a new one is typed or <paramref name="clearPassword"/> is ticked.
    /// </summary>
    [ConsoleAccess(OperatorRoles.Administrator)]
    public async Task<IActionResult> OnPostRecordAsync(string mac, long revision, string? serial, string? hardwareVersion, string? ispMethod, string? ispUsername,
        string? ispPassword, string? clearPassword, string? ipAddress, string? ispGateway, string? ispDns, string? domain, string? vpn, string? globalIp,
        string? subscriber)
    {
        if (!await LoadAsync(mac, HttpContext.RequestAborted)) { return NotFound(); }
        if (Unit.DecommissionedAt is not null) { Problem = $"Nothing was changed: {Unit.Mac} is decommissioned; its row is kept for audit."; return RedirectToPage(new { mac = Unit.Mac }); }
        if (revision != Unit.Revision)
        {
            Problem = $"Nothing was changed: {Unit.Mac} changed since this page was shown (revision {Unit.Revision}, the page had {revision}); look at it again.";
            return RedirectToPage(new { mac = Unit.Mac });
        }
        if (!string.IsNullOrEmpty(ispPassword) && clearPassword == "yes")
        {
            Problem = "Nothing was changed: type a new ISP password or tick \"clear\", not both.";
            return RedirectToPage(new { mac = Unit.Mac });
        }
        var dns = (ispDns ?? "").Split([' ', ',', ';', '\t'], StringSplitOptions.RemoveEmptyEntries);
        var edit = new UnitEditRequest(serial ?? "", hardwareVersion ?? "", ispMethod ?? "", ispUsername ?? "",
            clearPassword == "yes" ? "" : string.IsNullOrEmpty(ispPassword) ? null : ispPassword,
            ipAddress ?? "", domain ?? "", vpn ?? "", globalIp ?? "", subscriber ?? "", ispGateway ?? "", dns);
        try
        {
            var (row, error) = await lifecycle.EditAsync(Unit.Mac, revision, edit, Who, HttpContext.RequestAborted);
            if (row is null) { Problem = "Nothing was changed: " + error; }
            else if (row.Revision == revision) { Notice = $"The row of {Unit.Mac} is unchanged: the form held what it already had."; }
            else { Notice = $"The row of {Unit.Mac} is now at revision {row.Revision}; the history below says what changed."; }
        }
        catch (Exception e) when (e is StaleRevisionException or StoreConflictException or UnitNotFoundException)
        {
            Problem = "Nothing was changed: " + e.Message;
        }
        return RedirectToPage(new { mac = Unit.Mac });
    }

    /// <summary>Deletes a row that never reached the server (a registration made by mistake), when confirmed.</summary>
    [ConsoleAccess(OperatorRoles.Administrator)]
    public async Task<IActionResult> OnPostDeleteAsync(string mac, string? confirm, long revision)
    {
        if (!await LoadAsync(mac, HttpContext.RequestAborted)) { return NotFound(); }
        if (Precondition("delete", confirm, revision) is { } refused) { Problem = refused; return RedirectToPage(new { mac = Unit.Mac }); }
        try
        {
            // at the revision the page showed, checked again in the delete's transaction
            await lifecycle.DeleteAsync(Unit.Mac, revision, Who, HttpContext.RequestAborted);
        }
        catch (Exception e) when (e is StaleRevisionException or StoreConflictException or UnitNotFoundException)
        {
            Problem = "Nothing was done: " + e.Message;
            return RedirectToPage(new { mac = Unit.Mac });
        }
        Notice = $"The row of {Unit.Mac} is deleted.";
        return RedirectToPage("/Console/Units");
    }
}
