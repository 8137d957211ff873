using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Mvc;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;
using Tsunagu.Server.Units.ServiceConfigs;

namespace Tsunagu.Server.Pages.Console;

// The unit's service configuration (PUT /api/v1/units/{mac}/service-config in the console): the same service, rules,
// audit entry and push. Two forms: the common fields (the rest of the document is kept from the newest revision), and
// the whole document as JSON. The common fields include the virus check and the content-filter categories (each sent
// with a marker: a form without it keeps the setting). Each carries the revision the page showed; a configuration changed meanwhile is refused.
public sealed partial class UnitModel
{
    private ServiceConfigService ConfigService => HttpContext.RequestServices.GetRequiredService<ServiceConfigService>();

    /// <summary>The content-filter categories this server offers, for the form's boxes.</summary>
    public Catalogue.OfferedCategories Categories => HttpContext.RequestServices.GetRequiredService<Catalogue.OfferedCategories>();

    /// <summary>The newest revision's document, or null when the unit has none.</summary>
    public ServiceConfiguration? CurrentConfig { get; private set; }

    /// <summary>The newest revision number (0: none), which the forms send back.</summary>
    public long CurrentConfigRevision { get; private set; }

    /// <summary>The newest document as indented JSON, for the whole-document form.</summary>
    public string CurrentConfigJson => CurrentConfig is null ? "" : JsonSerializer.Serialize(CurrentConfig, IndentedJson);

    private static readonly JsonSerializerOptions IndentedJson = new(ProtocolJson.Default.Options) { WriteIndented = true };

    /// <summary>A revision's state for people (<see cref="ServiceConfigService.Describe"/>: retries and attempts).</summary>
    public string ConfigState(UnitConfigRow revision) => ConfigService.Describe(revision, revision.Revision == CurrentConfigRevision);

    private async Task LoadConfigAsync(CancellationToken ct)
    {
        if (await ConfigService.LatestAsync(Unit.Mac, ct) is { } latest)
        {
            CurrentConfig = latest.Document;
            CurrentConfigRevision = latest.Row.Revision;
        }
    }

    /// <summary>The common fields of the configuration; everything else (port forwards, DHCP, VPN peers) stays as the newest revision has it.</summary>
    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.Support)]
    public async Task<IActionResult> OnPostServiceConfigAsync(string mac, long baseRevision, string? defaultInbound, string? masquerade, string? localDomain,
        string? upstreams, string? filterEnabled, string? blockedDomains, string? blockedAddresses, string? vpnEnabled, string? vpnListenPort, string? vpnAddress,
        string? cacheEnabled, string? cacheMegabytes, string? virusScanShown = null, string? virusScanEnabled = null, string? categoriesShown = null, string[]? categories = null)
    {
        if (!await LoadAsync(mac, HttpContext.RequestAborted)) { return NotFound(); }
        if (CurrentConfig is not { } current)
        {
            return ConfigRefused("the unit has no configuration yet to start from; give the whole document below");
        }
        if (!int.TryParse(vpnListenPort, NumberStyles.None, CultureInfo.InvariantCulture, out var port)) { return ConfigRefused("vpn.listenPort: a whole number"); }
        if (!int.TryParse(cacheMegabytes, NumberStyles.None, CultureInfo.InvariantCulture, out var cache)) { return ConfigRefused("cache.sizeMegabytes: a whole number"); }
        var addresses = Lines(blockedAddresses);
        var config = current with
        {
            Firewall = current.Firewall with { DefaultInbound = defaultInbound?.Trim() ?? "", Masquerade = masquerade == "yes" },
            Dns = current.Dns with { LocalDomain = localDomain?.Trim() ?? "", Upstreams = Lines(upstreams) },
            ContentFilter = current.ContentFilter with
            {
                Enabled = filterEnabled == "yes",
                BlockedDomains = Lines(blockedDomains),
                BlockedAddresses = addresses.Count == 0 && current.ContentFilter.BlockedAddresses is null ? null : addresses,
                // a form without the categories' boxes (an older page) keeps them as the newest revision has them
                Categories = categoriesShown != "yes" ? current.ContentFilter.Categories : Catalogue.OfferedCategories.Chosen(current.ContentFilter.Categories, categories),
            },
            Vpn = current.Vpn with { Enabled = vpnEnabled == "yes", ListenPort = port, Address = string.IsNullOrWhiteSpace(vpnAddress) ? null : vpnAddress.Trim() },
            Cache = current.Cache with { Enabled = cacheEnabled == "yes", SizeMegabytes = cache },
            // a form without the virus check field (an older page) keeps it as the newest revision has it
            VirusScan = virusScanShown != "yes" ? current.VirusScan
                : virusScanEnabled == "yes" ? new VirusScanConfig(true)
                : current.VirusScan is null ? null : new VirusScanConfig(false),
        };
        return await AssignConfigAsync(baseRevision, config);
    }

    /// <summary>The whole configuration as JSON (the API's request body).</summary>
    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.Support)]
    public async Task<IActionResult> OnPostServiceConfigJsonAsync(string mac, long baseRevision, string? document)
    {
        if (!await LoadAsync(mac, HttpContext.RequestAborted)) { return NotFound(); }
        if (string.IsNullOrWhiteSpace(document)) { return ConfigRefused("document: empty"); }
        if (document.Length > Apis.AccountsApi.MaxServiceConfigBytes) { return ConfigRefused($"document: larger than {Apis.AccountsApi.MaxServiceConfigBytes} bytes"); }
        ServiceConfiguration? config;
        try
        {
            config = JsonSerializer.Deserialize(document, ProtocolJson.Default.ServiceConfiguration);
        }
        catch (JsonException e)
        {
            return ConfigRefused($"document: not a service configuration in JSON ({e.Message})");
        }
        return await AssignConfigAsync(baseRevision, config!);
    }

    private async Task<IActionResult> AssignConfigAsync(long baseRevision, ServiceConfiguration config)
    {
        if (baseRevision != CurrentConfigRevision)
        {
            return ConfigRefused($"the configuration of {Unit.Mac} changed since this page was shown (revision {CurrentConfigRevision}, the page had {baseRevision}); look at it again");
        }
        try
        {
            var assigned = await ConfigService.AssignAsync(Unit.Mac, config, Who, HttpContext.RequestAborted, baseRevision);
            Notice = $"Service configuration revision {assigned.Revision} for {assigned.Mac} stored (provisional)" +
                (assigned.PushWarning is null ? "; the unit was told to fetch it now." : $"; {assigned.PushWarning}.");
        }
        catch (InvalidServiceConfigException e)
        {
            return ConfigRefused(e.Message);
        }
        catch (StaleConfigRevisionException e)
        {
            // another save from the same revision landed between the check above and this one
            return ConfigRefused($"the configuration of {Unit.Mac} changed since this page was shown (revision {e.Actual}, the page had {e.Expected}); look at it again");
        }
        catch (StoreConflictException e)
        {
            return ConfigRefused(e.Message);
        }
        return RedirectToPage(new { mac = Unit.Mac });
    }

    private RedirectToPageResult ConfigRefused(string why)
    {
        Problem = "Nothing was stored: " + why;
        return RedirectToPage(new { mac = Unit.Mac });
    }

    private static List<string> Lines(string? text) =>
        [.. (text ?? "").Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)];
}
