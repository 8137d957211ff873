using System.ComponentModel.DataAnnotations;
using Microsoft.AspNetCore.Mvc;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Pages.Shared;
using Tsunagu.Server.Subscribers;

namespace Tsunagu.Server.Pages.Portal;

public sealed class PortForwardForm
{
    [Display(Name = "Protocol")] public string Protocol { get; set; } = "tcp";
    [Range(1, 65535), Display(Name = "Outside port")] public int ExternalPort { get; set; }
    [Required, Display(Name = "LAN address")] public string InternalAddress { get; set; } = "";
    [Range(1, 65535), Display(Name = "LAN port")] public int InternalPort { get; set; }
}

public sealed class LanForm
{
    [Required, Display(Name = "Router LAN address")] public string LanAddress { get; set; } = "";
    [Range(8, 30), Display(Name = "Prefix length")] public int PrefixLength { get; set; }
    [Required, Display(Name = "First address handed out")] public string RangeStart { get; set; } = "";
    [Required, Display(Name = "Last address handed out")] public string RangeEnd { get; set; } = "";
}

public sealed class VpnPeerForm
{
    [Required, StringLength(64), Display(Name = "Peer name")] public string Name { get; set; } = "";
    [Required, StringLength(64), Display(Name = "Public key")] public string PublicKey { get; set; } = "";
    [Required, Display(Name = "Allowed IPs")] public string AllowedIps { get; set; } = "";
    [Display(Name = "Endpoint (optional)")] public string? Endpoint { get; set; }
}

/// <summary>
/// The subscriber's unit: status and services, and the settings the contract leaves to them (patent 0069-0070).
/// Every change is a new revision that goes provisional -> applied -> final, or shows why it failed.
/// </summary>
public sealed class UnitModel(SubscriberChanges changes, ConfigRetries retries, ServerOptions options, Catalogue.OfferedCategories offered, TimeProvider time) : SessionPageModel("portal")
{
    public UnitRow? Unit { get; private set; }
    public UnitConfigRow? Current { get; private set; }
    public ServiceConfiguration? Services { get; private set; }
    public IReadOnlyList<UnitConfigRow> Revisions { get; private set; } = [];
    public bool Pending => Revisions.Count > 0 && (Revisions[0].Status is ConfigStatus.Provisional or ConfigStatus.Applied || retries.Cancellable(Revisions[0]));

    /// <summary>A revision's state in words: "retrying (attempt n of m)" while the host retries a failed change, then its final outcome.</summary>
    public string State(UnitConfigRow revision) => ConfigRetries.Describe(revision, Revisions.Count > 0 && revision.Revision == Revisions[0].Revision, options.ConfigRetryAttempts)
        .Replace($"cancelled by subscriber:{Who}", "cancelled by you", StringComparison.Ordinal);

    /// <summary>Whether the newest change is being retried, so that the subscriber can stop further attempts.</summary>
    public bool CanCancelRetry => Revisions.Count > 0 && retries.Cancellable(Revisions[0]);
    public DateTimeOffset Now { get; private set; }
    /// <summary>The fields the subscriber's contract lets them change; the page offers only those.</summary>
    public IReadOnlySet<string> Allowed { get; private set; } = new HashSet<string>();
    public bool May(params string[] fields) => fields.Any(Allowed.Contains);

    /// <summary>
    /// The unit's newest revision when the page was shown; every change form sends it back (a hidden field), and the change
    /// is stored only while it is still the newest (as the API's If-Match). A form without it is refused as stale.
    /// </summary>
    [BindProperty] public long Basis { get; set; }

    /// <summary>The newest revision now (0: none), which the forms carry as <see cref="Basis"/>.</summary>
    public long Newest => Revisions.Count == 0 ? 0 : Revisions[0].Revision;

    [BindProperty] public PortForwardForm Forward { get; set; } = new();
    [BindProperty] public LanForm Lan { get; set; } = new();
    [BindProperty] public VpnPeerForm Peer { get; set; } = new();
    [BindProperty] public bool FilterEnabled { get; set; }
    [BindProperty] public string? BlockedSites { get; set; }

    /// <summary>The categories ticked in the filter form (their names).</summary>
    [BindProperty] public List<string?>? Categories { get; set; }

    /// <summary>Sent by a filter form that showed the categories' boxes; a form without it keeps the categories.</summary>
    [BindProperty] public bool CategoriesShown { get; set; }

    /// <summary>The categories the filter form offers to tick: those the operator offers, then any the unit chose that are no longer offered.</summary>
    public IReadOnlyList<(string Name, string? Title)> CategoryChoices => offered.Choices(Services?.ContentFilter.Categories);

    /// <summary>A category as people read it: its title, or its name while it is not offered any more.</summary>
    public string CategoryLabel(string name) => offered.TitleOf(name) ?? $"{name} (no longer offered by your provider)";

    public async Task<IActionResult> OnGetAsync(string mac)
    {
        if (!await LoadAsync(mac, HttpContext.RequestAborted)) { return Missing(); }
        Lan = new LanForm { LanAddress = Services!.Dhcp.LanAddress, PrefixLength = Services.Dhcp.PrefixLength, RangeStart = Services.Dhcp.RangeStart, RangeEnd = Services.Dhcp.RangeEnd };
        FilterEnabled = Services.ContentFilter.Enabled;
        BlockedSites = string.Join('\n', Services.ContentFilter.BlockedDomains);
        return Page();
    }

    public Task<IActionResult> OnPostAddForwardAsync(string mac) => Change(mac, nameof(Forward),
        $"add port forward {Forward.Protocol} {Forward.ExternalPort} -> {Forward.InternalAddress}:{Forward.InternalPort}",
        c => c with { Firewall = c.Firewall with { PortForwards = [.. c.Firewall.PortForwards, new PortForward(Forward.Protocol, Forward.ExternalPort, Forward.InternalAddress.Trim(), Forward.InternalPort)] } });

    public Task<IActionResult> OnPostRemoveForwardAsync(string mac, int index) => Change(mac, null, $"remove port forward {index + 1}",
        c => index < 0 || index >= c.Firewall.PortForwards.Count
            ? throw new SubscriberChangeException($"there is no port forward {index + 1}")
            : c with { Firewall = c.Firewall with { PortForwards = c.Firewall.PortForwards.Where((_, i) => i != index).ToList() } });

    public Task<IActionResult> OnPostFilterAsync(string mac) => Change(mac, null, "content filter",
        c => c with
        {
            ContentFilter = c.ContentFilter with
            {
                Enabled = May("contentFilter.enabled") ? FilterEnabled : c.ContentFilter.Enabled,
                BlockedDomains = May("contentFilter.blockedDomains")
                ? (BlockedSites ?? "").Split(['\n', '\r', ',', ' '], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Distinct(StringComparer.OrdinalIgnoreCase).ToList()
                : c.ContentFilter.BlockedDomains,
                Categories = May("contentFilter.categories") && CategoriesShown
                ? Catalogue.OfferedCategories.Chosen(c.ContentFilter.Categories, Categories)
                : c.ContentFilter.Categories,
            }
        });

    public Task<IActionResult> OnPostLanAsync(string mac) => Change(mac, nameof(Lan),
        $"LAN {Lan.LanAddress}/{Lan.PrefixLength}, addresses {Lan.RangeStart}-{Lan.RangeEnd}",
        c => c with { Dhcp = c.Dhcp with { LanAddress = Lan.LanAddress.Trim(), PrefixLength = Lan.PrefixLength, RangeStart = Lan.RangeStart.Trim(), RangeEnd = Lan.RangeEnd.Trim() } });

    public Task<IActionResult> OnPostAddPeerAsync(string mac) => Change(mac, nameof(Peer), $"add VPN peer {Peer.Name}",
        c => c.Vpn.Peers.Any(p => p.Name == Peer.Name.Trim())
            ? throw new SubscriberChangeException($"a VPN peer named {Peer.Name} exists already")
            : c with { Vpn = c.Vpn with { Peers = [.. c.Vpn.Peers, new VpnPeer(Peer.Name.Trim(), Peer.PublicKey.Trim(), Peer.AllowedIps.Trim(), string.IsNullOrWhiteSpace(Peer.Endpoint) ? null : Peer.Endpoint.Trim())] } });

    public Task<IActionResult> OnPostRemovePeerAsync(string mac, string name) => Change(mac, null, $"remove VPN peer {name}",
        c => c with { Vpn = c.Vpn with { Peers = c.Vpn.Peers.Where(p => p.Name != name).ToList() } });

    /// <summary>Stops the host's further attempts of the newest (failed) change; the unit stays on its last good settings.</summary>
    public async Task<IActionResult> OnPostCancelRetryAsync(string mac, long revision)
    {
        if (!await LoadAsync(mac, HttpContext.RequestAborted)) { return Missing(); }
        if (Revisions.Count == 0 || Revisions[0].Revision != revision)
        {
            Problem = $"Not changed: revision {revision} is not your unit's newest change any more; look again.";
        }
        else if (await retries.CancelAsync(Unit!.Mac, $"subscriber:{Who}", HttpContext.RequestAborted) is { } cancelled)
        {
            Notice = $"No further attempt of revision {cancelled} will be made; your unit keeps its last good settings.";
        }
        else
        {
            Problem = $"Not changed: revision {revision} is not being retried (it was applied, gave up, or was cancelled already).";
        }
        return Redirect($"/portal/units/{Unit!.Mac}");
    }

    /// <summary>Checks the one form that was sent, then hands the change to <see cref="SubscriberChanges"/>.</summary>
    private async Task<IActionResult> Change(string mac, string? form, string what, Func<ServiceConfiguration, ServiceConfiguration> change)
    {
        if (!await LoadAsync(mac, HttpContext.RequestAborted)) { return Missing(); }
        foreach (var key in ModelState.Keys.Where(k => k != nameof(Basis) && (form is null || !k.StartsWith(form + ".", StringComparison.Ordinal))).ToList())
        {
            ModelState.Remove(key);
        }
        if (!ModelState.IsValid) { return Page(); }
        try
        {
            var result = await changes.ChangeAsync(Who, Unit!.Mac, what, change, HttpContext.RequestAborted, Basis);
            Notice = $"Change saved as revision {result.Revision} ({what}). " + (result.PushError ?? "Your unit has been told to apply it now.");
        }
        catch (SubscriberChangeException e)
        {
            Problem = $"Not changed: {e.Message}";
        }
        catch (Catalogue.FieldNotAllowedException e)
        {
            Problem = $"Not changed: {e.Message}";
        }
        return Redirect($"/portal/units/{Unit!.Mac}");
    }

    private async Task<bool> LoadAsync(string mac, CancellationToken ct)
    {
        Now = time.GetUtcNow();
        Unit = await changes.OwnUnitAsync(Who, mac, HttpContext.RequestAborted);
        if (Unit is null) { return false; }
        // one read: the revision the page's forms send back (Newest) is the one its document was taken with
        var (current, revisions) = await changes.ReadAsync(Unit.Mac, HttpContext.RequestAborted);
        if (current is { } c)
        {
            Current = c.Row;
            Services = c.Document;
        }
        Revisions = revisions;
        Allowed = await changes.AllowedFieldsAsync(Who, HttpContext.RequestAborted);
        return Services is not null;
    }

    private IActionResult Missing()
    {
        Unit = null;
        Response.StatusCode = StatusCodes.Status404NotFound;
        return Page();
    }
}
