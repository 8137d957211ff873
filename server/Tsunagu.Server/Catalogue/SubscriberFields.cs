using Tsunagu.Protocol;

namespace Tsunagu.Server.Catalogue;

/// <summary>A subscriber's change to a field their contract leaves to the operator; <see cref="Field"/> names it.</summary>
public sealed class FieldNotAllowedException(string field)
    : Exception($"{field}: your contract does not let you change this setting; your provider can")
{
    public string Field { get; } = field;
}

/// <summary>
/// The fields of a service configuration as a contract's allow-list names them ("dhcp.rangeStart", "vpn.peers"): a list
/// field is one field (its entries are changed together). What a subscriber may change is the contract's list; the
/// rest is the operator's.
/// </summary>
public static class ServiceConfigFields
{
    public const string DefaultContract = "standard";

    private static readonly (string Name, Func<ServiceConfiguration, object?> Read)[] Fields =
    [
        ("firewall.defaultInbound", c => c.Firewall.DefaultInbound),
        ("firewall.masquerade", c => c.Firewall.Masquerade),
        ("firewall.portForwards", c => c.Firewall.PortForwards),
        ("dhcp.lanAddress", c => c.Dhcp.LanAddress),
        ("dhcp.prefixLength", c => c.Dhcp.PrefixLength),
        ("dhcp.rangeStart", c => c.Dhcp.RangeStart),
        ("dhcp.rangeEnd", c => c.Dhcp.RangeEnd),
        ("dhcp.leaseTime", c => c.Dhcp.LeaseTime),
        ("dhcp.staticLeases", c => c.Dhcp.StaticLeases),
        ("dns.localDomain", c => c.Dns.LocalDomain),
        ("dns.upstreams", c => c.Dns.Upstreams),
        ("contentFilter.enabled", c => c.ContentFilter.Enabled),
        ("contentFilter.blockedDomains", c => c.ContentFilter.BlockedDomains),
        ("contentFilter.blockedAddresses", c => c.ContentFilter.BlockedAddresses ?? []),
        ("contentFilter.categories", c => c.ContentFilter.Categories ?? []),
        ("vpn.enabled", c => c.Vpn.Enabled),
        ("vpn.listenPort", c => c.Vpn.ListenPort),
        ("vpn.address", c => c.Vpn.Address),
        ("vpn.peers", c => c.Vpn.Peers),
        ("cache.enabled", c => c.Cache.Enabled),
        ("cache.sizeMegabytes", c => c.Cache.SizeMegabytes),
        ("cache.maxObjectMegabytes", c => c.Cache.MaxObjectMegabytes),
        ("virusScan.enabled", c => c.VirusScan?.Enabled ?? false),
    ];

    /// <summary>Every field name an allow-list may hold, in document order.</summary>
    public static IReadOnlyList<string> All { get; } = Fields.Select(f => f.Name).ToList();

    /// <summary>
    /// The allow-list of a contract that has none of its own: what the subscriber portal edits (port forwards, the
    /// content filter's switch, blocked sites and categories, the LAN address range, VPN peers).
    /// </summary>
    public static IReadOnlyList<string> PortalDefault { get; } =
    [
        "firewall.portForwards", "dhcp.lanAddress", "dhcp.prefixLength", "dhcp.rangeStart", "dhcp.rangeEnd",
        "contentFilter.enabled", "contentFilter.blockedDomains", "contentFilter.categories", "vpn.peers",
    ];

    public static bool IsKnown(string? name) => name is not null && All.Contains(name, StringComparer.Ordinal);

    /// <summary>What a contract's name may be (the API's and the console's one rule).</summary>
    public const string ContractNameRule = "name: 1..64 ASCII letters, digits, '-', '_' or '.'";

    public static bool IsContractName([System.Diagnostics.CodeAnalysis.NotNullWhen(true)] string? name) =>
        name is { Length: > 0 and <= 64 } && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.');

    /// <summary>
    /// A contract's allow-list as stored: every entry a known field (else why not, naming the entry), each once, in
    /// document order, so two lists of the same fields are stored alike.
    /// </summary>
    public static string? ReadAllowList(IReadOnlyList<string?> fields, out List<string> allowList)
    {
        allowList = [];
        for (var i = 0; i < fields.Count; i++)
        {
            if (!IsKnown(fields[i]))
            {
                return $"subscriberFields[{i}]: {ServiceConfigValidator.Show(fields[i])} is not a field; known: {string.Join(", ", All)}";
            }
        }
        var given = fields.ToHashSet(StringComparer.Ordinal);
        allowList = [.. All.Where(given.Contains)];
        return null;
    }

    /// <summary>The fields whose values differ between two valid configurations, in document order.</summary>
    public static IEnumerable<string> Changed(ServiceConfiguration before, ServiceConfiguration after)
    {
        foreach (var (name, read) in Fields)
        {
            if (!Same(read(before), read(after)))
            {
                yield return name;
            }
        }
    }

    /// <summary>Refuses a change to any field outside <paramref name="allowed"/>, naming the first such field.</summary>
    /// <exception cref="FieldNotAllowedException">A field outside the allow-list changed.</exception>
    public static void RequireAllowed(ServiceConfiguration before, ServiceConfiguration after, IReadOnlyCollection<string> allowed)
    {
        if (Changed(before, after).FirstOrDefault(f => !allowed.Contains(f)) is { } field)
        {
            throw new FieldNotAllowedException(field);
        }
    }

    // entries are records of scalars (or strings), so element equality is value equality
    private static bool Same(object? a, object? b) => (a, b) switch
    {
        (System.Collections.IEnumerable x, System.Collections.IEnumerable y) when a is not string => x.Cast<object?>().SequenceEqual(y.Cast<object?>()),
        _ => Equals(a, b),
    };
}
