using System.Text.Json;
using Microsoft.AspNetCore.Mvc;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;
using Tsunagu.Server.Pages.Shared;
using Tsunagu.Server.Push;
using Tsunagu.Server.Security;
using Tsunagu.Server.Units.ForcedChecks;
using Tsunagu.Server.Units.Lifecycle;

namespace Tsunagu.Server.Pages.Console;

/// <summary>One unit: identity, device management table, inventory, pattern, configuration revisions, history; check now.</summary>
[ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager, OperatorRoles.Support, OperatorRoles.Auditor)]
public sealed partial class UnitModel(TsunaguStore store, IPushPublisher push, ForcedCheckService checks, UnitLifecycle lifecycle, TimeProvider time) : SessionPageModel("console")
{
    public UnitRow Unit { get; private set; } = new();

    /// <summary>The unit's last reported cache statistics in words: hit ratio and bytes served from the cache.</summary>
    public static string CacheSummary(UnitRow u) => u.CacheRequests is { } requests && u.CacheHits is { } hits
        ? string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"{hits} hits of {requests} requests ({(requests == 0 ? 0 : 100.0 * hits / requests):0.#}%); {Mebibytes(u.CacheBytesSaved ?? 0)} of {Mebibytes(u.CacheBytesServed ?? 0)} served from the cache; reported {Time(u.CacheReportedAt)}")
        : "no statistics reported (no cache disk, or the cache is off)";

    private static string Mebibytes(long bytes) => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{bytes / 1048576.0:0.0} MiB");
    public IReadOnlyDictionary<string, string> Applications { get; private set; } = new Dictionary<string, string>();
    public string? OsVersion { get; private set; }
    public IReadOnlyList<UnitConfigRow> Configs { get; private set; } = [];
    public IReadOnlyList<UnitEventRow> Events { get; private set; } = [];
    public IReadOnlyList<UpdateReportRow> Reports { get; private set; } = [];
    public IReadOnlyList<AuditRow> AuditEntries { get; private set; } = [];
    public IReadOnlyList<PushCheckRow> Checks { get; private set; } = [];
    public DateTimeOffset Now { get; private set; }

    public async Task<IActionResult> OnGetAsync(string mac)
    {
        if (!await LoadAsync(mac, HttpContext.RequestAborted)) { return NotFound(); }
        return Page();
    }

    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager, OperatorRoles.Support)]
    public async Task<IActionResult> OnPostCheckAsync(string mac, int importance = 5)
    {
        if (!await LoadAsync(mac, HttpContext.RequestAborted)) { return NotFound(); }
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

    // Lifecycle actions (the operator API's, docs/operator-api.md "Unit lifecycle"): each form carries the revision of the row
    // the page showed (a row changed meanwhile is refused, as If-Match is on the API) and a confirmation box that must be ticked.

    /// <summary>The reason an action may not go ahead (unconfirmed, or a stale page), or null.</summary>
    private string? Precondition(string action, string? confirm, long revision)
    {
        if (confirm != "yes") { return $"Nothing was done: tick the box to confirm that you want to {action} {Unit.Mac}."; }
        if (revision != Unit.Revision) { return $"Nothing was done: {Unit.Mac} changed since this page was shown (revision {Unit.Revision}, the page had {revision}); look at it again."; }
        return Unit.DecommissionedAt is not null ? $"Nothing was done: {Unit.Mac} is decommissioned." : null;
    }

    [ConsoleAccess(OperatorRoles.Administrator)]
    public async Task<IActionResult> OnPostDecommissionAsync(string mac, string? confirm, long revision, string? reason)
    {
        if (!await LoadAsync(mac, HttpContext.RequestAborted)) { return NotFound(); }
        reason = string.IsNullOrWhiteSpace(reason) ? null : reason.Trim();
        if (Precondition("decommission", confirm, revision) is { } refused) { Problem = refused; }
        else if (!InputRules.IsOptionalText(reason, 256)) { Problem = "Nothing was done: " + InputRules.Text("Reason", 256); }
        else
        {
            try
            {
                await lifecycle.DecommissionAsync(Unit.Mac, revision, Who, reason, HttpContext.RequestAborted);
                Notice = $"{Unit.Mac} is decommissioned: every endpoint and the broker refuse it from now on.";
            }
            catch (Exception e) when (e is StaleRevisionException or StoreConflictException or UnitNotFoundException)
            {
                Problem = "Nothing was done: " + e.Message;
            }
        }
        return RedirectToPage(new { mac = Unit.Mac });
    }

    [ConsoleAccess(OperatorRoles.Administrator)]
    public async Task<IActionResult> OnPostReplaceAsync(string mac, string? confirm, long revision, string? newMac, string? newSerial)
    {
        if (!await LoadAsync(mac, HttpContext.RequestAborted)) { return NotFound(); }
        if (Precondition("replace", confirm, revision) is { } refused)
        {
            Problem = refused;
            return RedirectToPage(new { mac = Unit.Mac });
        }
        try
        {
            var (row, error) = await lifecycle.ReplaceAsync(Unit.Mac, revision, new ReplaceUnitRequest(newMac ?? "", newSerial ?? ""), Who, HttpContext.RequestAborted);
            if (row is null)
            {
                Problem = "Nothing was done: " + error;
                return RedirectToPage(new { mac = Unit.Mac });
            }
            Notice = $"{row.Mac} replaces {Unit.Mac}: it keeps the subscriber, the account and the service configuration; {Unit.Mac} is decommissioned.";
            return RedirectToPage(new { mac = row.Mac });
        }
        catch (Exception e) when (e is StaleRevisionException or StoreConflictException or UnitNotFoundException)
        {
            Problem = "Nothing was done: " + e.Message;
            return RedirectToPage(new { mac = Unit.Mac });
        }
    }

    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.Support)]
    public async Task<IActionResult> OnPostTransferAsync(string mac, string? confirm, long revision, string? to, string? withConfig)
    {
        if (!await LoadAsync(mac, HttpContext.RequestAborted)) { return NotFound(); }
        if (Precondition("move the subscriber of", confirm, revision) is { } refused) { Problem = refused; }
        else if (!Protocol.MacAddress.TryNormalize(to, out var target)) { Problem = $"Nothing was done: '{InputRules.Quote(to)}' is not a MAC address."; }
        else
        {
            try
            {
                await store.Lifecycle.TransferSubscriberAsync(Unit.Mac, revision, target, null, withConfig == "yes", Who, HttpContext.RequestAborted);
                Notice = $"The subscriber of {Unit.Mac} moved to {target}{(withConfig == "yes" ? " with the service configuration" : "")}.";
            }
            catch (Exception e) when (e is StaleRevisionException or StoreConflictException or UnitNotFoundException)
            {
                Problem = "Nothing was done: " + e.Message;
            }
        }
        return RedirectToPage(new { mac = Unit.Mac });
    }

    private async Task<bool> LoadAsync(string mac, CancellationToken ct)
    {
        if (!MacAddress.TryNormalize(mac, out var m) || await store.Units.GetUnitAsync(m, HttpContext.RequestAborted) is not { } unit) { return false; }
        Now = time.GetUtcNow();
        Unit = unit;
        if (unit.Inventory is { } json && JsonSerializer.Deserialize(json, ProtocolJson.Default.Inventory) is { } inventory)
        {
            Applications = inventory.Applications;
            OsVersion = inventory.OsVersion;
        }
        Configs = (await store.ServiceConfigs.ListUnitConfigsAsync(m, HttpContext.RequestAborted)).Reverse().ToList();
        Events = await store.History.ListUnitEventsAsync(m, 50, ct: HttpContext.RequestAborted);
        Reports = await store.History.ListUpdateReportsAsync(m, ct: HttpContext.RequestAborted);
        // the audit log is read by those who oversee (OperatorRoles.Oversight), here as on the API
        AuditEntries = May(OperatorRoles.Oversight) ? await store.History.ListAuditForUnitAsync(m, 50, ct: HttpContext.RequestAborted) : [];
        Checks = await store.PushChecks.ListPushChecksForUnitAsync(m, 10, HttpContext.RequestAborted);
        await LoadConfigAsync(ct);
        await LoadRevisionsAsync(m, ct);
        return true;
    }
}
