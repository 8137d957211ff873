using System.Text.Json;
using Microsoft.AspNetCore.Mvc;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Pages.Shared;
using Tsunagu.Server.Push;
using Tsunagu.Server.Security;
using Tsunagu.Server.Units.ForcedChecks;

namespace Tsunagu.Server.Pages.Console;

/// <summary>One unit: identity, device management table, inventory, pattern, configuration revisions, history; check now.</summary>
[ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager, OperatorRoles.Support, OperatorRoles.Auditor)]
public sealed class UnitModel(TsunaguStore store, IPushPublisher push, ForcedCheckService checks, TimeProvider time) : SessionPageModel("console")
{
    public UnitRow Unit { get; private set; } = new();
    public IReadOnlyDictionary<string, string> Applications { get; private set; } = new Dictionary<string, string>();
    public string? OsVersion { get; private set; }
    public IReadOnlyList<UnitConfigRow> Configs { get; private set; } = [];
    public IReadOnlyList<UnitEventRow> Events { get; private set; } = [];
    public IReadOnlyList<UpdateReportRow> Reports { get; private set; } = [];
    public IReadOnlyList<AuditRow> AuditEntries { get; private set; } = [];
    public IReadOnlyList<PushCheckRow> Checks { get; private set; } = [];
    public DateTimeOffset Now { get; private set; }

    public IActionResult OnGet(string mac)
    {
        if (!Load(mac)) { return NotFound(); }
        return Page();
    }

    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager, OperatorRoles.Support)]
    public async Task<IActionResult> OnPostCheckAsync(string mac, int importance = 5)
    {
        if (!Load(mac)) { return NotFound(); }
        if (importance is < 1 or > 5) { Problem = $"importance {importance} is outside 1..5"; return RedirectToPage(new { mac = Unit.Mac }); }
        if (push.BrokerUri is null) { Problem = "push is disabled on this server"; return RedirectToPage(new { mac = Unit.Mac }); }
        try
        {
            await checks.CheckNowAsync(Who, [Unit.Mac], importance, HttpContext.RequestAborted);
            Notice = $"Told {Unit.Mac} to check now (importance {importance}); the delivery and the unit's history below show when it arrives.";
        }
        catch (PushException e)
        {
            Problem = $"The push failed: {e.Message}";
        }
        return RedirectToPage(new { mac = Unit.Mac });
    }

    private bool Load(string mac)
    {
        if (!MacAddress.TryNormalize(mac, out var m) || store.GetUnit(m) is not { } unit) { return false; }
        Now = time.GetUtcNow();
        Unit = unit;
        if (unit.Inventory is { } json && JsonSerializer.Deserialize(json, ProtocolJson.Default.Inventory) is { } inventory)
        {
            Applications = inventory.Applications;
            OsVersion = inventory.OsVersion;
        }
        Configs = store.ListUnitConfigs(m).Reverse().ToList();
        Events = store.ListUnitEvents(m, 50);
        Reports = store.ListUpdateReports(m);
        // the audit log is read by those who oversee (OperatorRoles.Oversight), here as on the API
        AuditEntries = May(OperatorRoles.Oversight) ? store.ListAuditForUnit(m, 50) : [];
        Checks = store.ListPushChecksForUnit(m, 10);
        return true;
    }
}
