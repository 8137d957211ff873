using System.Text.Json;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Catalogue;
using Tsunagu.Server.Data;
using Tsunagu.Server.Pages.Shared;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Pages.Console;

/// <summary>
/// The named service configurations (<c>PUT /api/v1/service-configs/{name}</c>: <c>default</c> is every registered unit's
/// first revision) and the contracts (<c>PUT /api/v1/contracts/{name}</c>: what a subscriber may change themselves), with
/// the API's rules, roles and audit entries (<c>service-config.put</c>, <c>contract.put</c>). A form either creates (the
/// name must be free) or changes what the page showed (it carries that document's digest; a document changed or deleted
/// meanwhile is refused), so two operators never overwrite each other unseen. A refused form is answered 400 (409 for a
/// name taken or a document changed meanwhile) with the reason beside the form as it was typed, and nothing is changed.
/// </summary>
[ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager, OperatorRoles.Support, OperatorRoles.Auditor)]
public sealed class ServicesModel(TsunaguStore store, OfferedCategories categories) : SessionPageModel("console")
{
    /// <summary>The form key of a new configuration's and a new contract's form (an existing one's is its kind and name).</summary>
    public const string NewConfig = "config-new", NewContract = "contract-new";

    public IReadOnlyList<NamedDocument> Configs { get; private set; } = [];

    /// <summary>The content-filter categories this server offers (what <c>contentFilter.categories</c> may name).</summary>
    public OfferedCategories Categories => categories;

    public IReadOnlyList<(NamedDocument Row, IReadOnlyList<string> Fields)> Contracts { get; private set; } = [];

    /// <summary>Subscribers per contract (those without one counted on the default contract).</summary>
    public IReadOnlyDictionary<string, long> Subscribers { get; private set; } = new Dictionary<string, long>();

    /// <summary>Why the form was refused, and which form (shown beside it as it was typed).</summary>
    public string? Refusal { get; private set; }

    public string? RefusedForm { get; private set; }

    private static readonly JsonSerializerOptions Indented = new(ProtocolJson.Default.Options) { WriteIndented = true };

    /// <summary>A stored configuration as the form shows it (indented JSON).</summary>
    public static string Pretty(NamedDocument config) =>
        JsonSerializer.Serialize(JsonSerializer.Deserialize(config.Document, ProtocolJson.Default.ServiceConfiguration), Indented);

    /// <summary>A configuration in one line: what the services do.</summary>
    public static string Summary(NamedDocument config)
    {
        // null-safe throughout: a document stored before a rule existed may lack a section, and the page must still show
        var c = JsonSerializer.Deserialize(config.Document, ProtocolJson.Default.ServiceConfiguration)!;
        var chosen = c.ContentFilter?.Categories is { Count: > 0 } names ? $", categories {string.Join(", ", names)}" : "";
        var filter = c.ContentFilter?.Enabled == true ? $"content filter on ({c.ContentFilter.BlockedDomains?.Count ?? 0} domain(s){chosen})" : "content filter off";
        var vpn = c.Vpn?.Enabled == true ? $"VPN on ({c.Vpn.Peers?.Count ?? 0} peer(s))" : "VPN off";
        var cache = c.Cache?.Enabled == true ? $"cache {c.Cache.SizeMegabytes} MB" : "cache off";
        var virus = c.VirusScan?.Enabled == true ? "virus check on" : "virus check off";
        return $"inbound {c.Firewall?.DefaultInbound ?? "(none)"}, {c.Firewall?.PortForwards?.Count ?? 0} port forward(s); {filter}; {vpn}; {cache}; {virus}";
    }

    public async Task OnGetAsync()
    {
        var ct = HttpContext.RequestAborted;
        Configs = await store.ServiceConfigs.ListServiceConfigsAsync(ct);
        Contracts = [.. (await store.Accounts.ListContractDocumentsAsync(ct)).Select(c =>
            (c, (IReadOnlyList<string>)(JsonSerializer.Deserialize(c.Document, ProtocolJson.Default.ListString) ?? [])))];
        Subscribers = await store.Accounts.CountSubscribersByContractAsync(ServiceConfigFields.DefaultContract, ct);
    }

    /// <summary>Creates (no <paramref name="baseDigest"/>) or changes a named service configuration, given whole as JSON.</summary>
    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public async Task<IActionResult> OnPostConfigAsync(string? name, string? document, string? baseDigest, CancellationToken ct)
    {
        var form = string.IsNullOrEmpty(baseDigest) ? NewConfig : "config:" + name;
        if (!InputRules.IsIdentifier(name)) { return await RefuseAsync(NewConfig, InputRules.Identifier("name")); }
        if (!IsDigest(baseDigest)) { return await RefuseAsync(form, "baseDigest: not the digest this page gives (64 hexadecimal digits); look at the page again"); }
        if (string.IsNullOrWhiteSpace(document)) { return await RefuseAsync(form, "document: empty"); }
        if (document.Length > AccountsApi.MaxServiceConfigBytes) { return await RefuseAsync(form, $"document: larger than {AccountsApi.MaxServiceConfigBytes} bytes"); }
        ServiceConfiguration? config;
        try
        {
            config = JsonSerializer.Deserialize(document, ProtocolJson.Default.ServiceConfiguration);
        }
        catch (JsonException e)
        {
            return await RefuseAsync(form, $"document: not a service configuration in JSON ({e.Message})");
        }
        if (config is null) { return await RefuseAsync(form, "document: not a service configuration in JSON (null)"); }
        try
        {
            // the document it replaces: a category it chose stays allowed after the operator stops offering it
            var stored = await store.ServiceConfigs.GetServiceConfigDocumentAsync(name, ct);
            categories.Validate(config, stored is null ? null : JsonSerializer.Deserialize(stored.Document, ProtocolJson.Default.ServiceConfiguration));
            await store.ServiceConfigs.PutServiceConfigCheckedAsync(name, config, NullIfEmpty(baseDigest), new AuditEntry(Who, "service-config.put", name, null), ct);
        }
        catch (InvalidServiceConfigException e)
        {
            return await RefuseAsync(form, e.Message);
        }
        catch (StoreConflictException e)
        {
            return await RefuseAsync(form, e.Message, conflict: true);
        }
        Notice = $"Service configuration {name} saved.";
        return RedirectToPage();
    }

    /// <summary>Creates (no <paramref name="baseDigest"/>) or changes a contract: the fields ticked are what its subscribers may change.</summary>
    [ConsoleAccess(OperatorRoles.Administrator)]
    public async Task<IActionResult> OnPostContractAsync(string? name, string[]? fields, string? baseDigest, CancellationToken ct)
    {
        var form = string.IsNullOrEmpty(baseDigest) ? NewContract : "contract:" + name;
        if (!ServiceConfigFields.IsContractName(name)) { return await RefuseAsync(NewContract, ServiceConfigFields.ContractNameRule); }
        if (!IsDigest(baseDigest)) { return await RefuseAsync(form, "baseDigest: not the digest this page gives (64 hexadecimal digits); look at the page again"); }
        if (ServiceConfigFields.ReadAllowList(fields ?? [], out var allowList) is { } bad) { return await RefuseAsync(form, bad); }
        try
        {
            await store.Accounts.PutContractCheckedAsync(name, allowList, NullIfEmpty(baseDigest), new AuditEntry(Who, "contract.put", name, string.Join(",", allowList)), ct);
        }
        catch (StoreConflictException e)
        {
            return await RefuseAsync(form, e.Message, conflict: true);
        }
        Notice = $"Contract {name} saved: its subscribers may change {(allowList.Count == 0 ? "nothing" : string.Join(", ", allowList))}.";
        return RedirectToPage();
    }

    /// <summary>Deletes a named service configuration (not <c>default</c>) as the page showed it, once the operator ticked the confirmation.</summary>
    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public Task<IActionResult> OnPostDeleteConfigAsync(string? name, string? baseDigest, string? confirm, CancellationToken ct) =>
        DeleteAsync("config:" + name, "service configuration", name, baseDigest, confirm, (n, digest) =>
            store.ServiceConfigs.DeleteServiceConfigAsync(n, Units.Registration.UnitRegistration.DefaultServiceConfig, digest, new AuditEntry(Who, "service-config.delete", n, null), ct));

    /// <summary>Deletes a contract no subscriber is on (not the default one) as the page showed it, once the operator ticked the confirmation.</summary>
    [ConsoleAccess(OperatorRoles.Administrator)]
    public Task<IActionResult> OnPostDeleteContractAsync(string? name, string? baseDigest, string? confirm, CancellationToken ct) =>
        DeleteAsync("contract:" + name, "contract", name, baseDigest, confirm, (n, digest) =>
            store.Accounts.DeleteContractAsync(n, ServiceConfigFields.DefaultContract, digest, new AuditEntry(Who, "contract.delete", n, null), ct));

    private async Task<IActionResult> DeleteAsync(string form, string what, string? name, string? baseDigest, string? confirm, Func<string, string, Task> delete)
    {
        if (string.IsNullOrEmpty(name) || name.Length > InputRules.MaxIdentifier || name.Any(char.IsControl)) { return await RefuseAsync(form, "name: not one this page gives"); }
        if (string.IsNullOrEmpty(baseDigest) || !IsDigest(baseDigest)) { return await RefuseAsync(form, "baseDigest: not the digest this page gives (64 hexadecimal digits); look at the page again"); }
        if (confirm != name) { return await RefuseAsync(form, $"tick \"Yes, delete {name}\" to delete the {what}"); }
        try
        {
            await delete(name, baseDigest);
        }
        catch (KeyNotFoundException e)
        {
            return await RefuseAsync(form, e.Message, conflict: true);
        }
        catch (StoreConflictException e)
        {
            return await RefuseAsync(form, e.Message, conflict: true);
        }
        Notice = $"The {what} {name} was deleted.";
        return RedirectToPage();
    }

    private static bool IsDigest(string? text) => string.IsNullOrEmpty(text) || InputRules.IsSha256Hex(text);

    private static string? NullIfEmpty(string? text) => string.IsNullOrEmpty(text) ? null : text;

    private async Task<PageResult> RefuseAsync(string form, string why, bool conflict = false)
    {
        Response.StatusCode = conflict ? StatusCodes.Status409Conflict : StatusCodes.Status400BadRequest;
        Refusal = "Nothing was changed: " + why;
        RefusedForm = form;
        await OnGetAsync();
        return Page();
    }
}
