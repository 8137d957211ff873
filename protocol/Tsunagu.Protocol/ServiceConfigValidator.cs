using System.Globalization;
using System.Net;

namespace Tsunagu.Protocol;

/// <summary>A service configuration that cannot be applied; <see cref="Field"/> names the offending field.</summary>
public class InvalidServiceConfigException(string field, string problem)
    : Exception($"{field}: {problem}")
{
    public string Field { get; } = field;
}

/// <summary>
/// Checks a service configuration before anything is stored (server) or rendered (unit). Every field that reaches a
/// daemon's configuration is checked by type and grammar, lists and strings have limits, and no field may hold a
/// control character; a refusal names the field ("dhcp.staticLeases[2].hostname").
/// </summary>
public static class ServiceConfigValidator
{
    public const int MaxPortForwards = 256;
    public const int MaxStaticLeases = 1024;
    public const int MaxUpstreams = 8;
    public const int MaxBlockedDomains = 10_000;
    public const int MaxBlockedAddresses = 10_000;
    public const int MaxPeers = 256;
    public const int MaxAllowedIpsPerPeer = 64;
    public const int MaxPeerNameLength = 64;
    public const int MinCacheMegabytes = 16;
    public const int MaxCacheMegabytes = 1_048_576;
    /// <summary>The largest object the cache keeps when the configuration does not say, and the bound of what it may say.</summary>
    public const int DefaultMaxObjectMegabytes = 256;
    public const int MaxObjectMegabytesLimit = 8192;
    /// <summary>dnsmasq's own lower bound for a lease (shorter ones are raised to it); the upper bound is one year.</summary>
    public const long MinLeaseSeconds = 120;
    public const long MaxLeaseSeconds = 366L * 24 * 3600;

    /// <summary>The largest object a cache of this configuration keeps, in MB: the configured one or the default, never more than the cache.</summary>
    public static int MaxObjectMegabytes(CacheConfig cache) => Math.Min(cache.MaxObjectMegabytes ?? DefaultMaxObjectMegabytes, cache.SizeMegabytes);

    public static void Validate(ServiceConfiguration config)
    {
        Present("configuration", config);
        Present("firewall", config.Firewall);
        Present("firewall.portForwards", config.Firewall.PortForwards);
        Present("dhcp", config.Dhcp);
        Present("dhcp.staticLeases", config.Dhcp.StaticLeases);
        Present("dns", config.Dns);
        Present("dns.upstreams", config.Dns.Upstreams);
        Present("contentFilter", config.ContentFilter);
        Present("contentFilter.blockedDomains", config.ContentFilter.BlockedDomains);
        Present("vpn", config.Vpn);
        Present("vpn.peers", config.Vpn.Peers);
        Present("cache", config.Cache);

        if (config.Firewall.DefaultInbound is not ("drop" or "reject"))
        {
            throw new InvalidServiceConfigException("firewall.defaultInbound", $"{Show(config.Firewall.DefaultInbound)} must be 'drop' or 'reject'");
        }
        Count("firewall.portForwards", config.Firewall.PortForwards.Count, MaxPortForwards);
        var forwarded = new Dictionary<(string, int), int>();
        for (var i = 0; i < config.Firewall.PortForwards.Count; i++)
        {
            var at = $"firewall.portForwards[{i}]";
            var pf = Entry(at, config.Firewall.PortForwards[i]);
            if (pf.Protocol is not ("tcp" or "udp"))
            {
                throw new InvalidServiceConfigException($"{at}.protocol", $"{Show(pf.Protocol)} must be 'tcp' or 'udp'");
            }
            Port($"{at}.externalPort", pf.ExternalPort);
            Port($"{at}.internalPort", pf.InternalPort);
            Address($"{at}.internalAddress", pf.InternalAddress);
            if (forwarded.TryGetValue((pf.Protocol, pf.ExternalPort), out var other))
            {
                throw new InvalidServiceConfigException($"{at}.externalPort", $"{pf.Protocol} port {pf.ExternalPort} is forwarded by firewall.portForwards[{other}] already");
            }
            forwarded[(pf.Protocol, pf.ExternalPort)] = i;
        }

        Address4("dhcp.lanAddress", config.Dhcp.LanAddress);
        if (config.Dhcp.PrefixLength is < 8 or > 30)
        {
            throw new InvalidServiceConfigException("dhcp.prefixLength", $"{config.Dhcp.PrefixLength} is outside 8..30");
        }
        Address4("dhcp.rangeStart", config.Dhcp.RangeStart);
        Address4("dhcp.rangeEnd", config.Dhcp.RangeEnd);
        if (Ipv4Value(config.Dhcp.RangeStart) > Ipv4Value(config.Dhcp.RangeEnd))
        {
            throw new InvalidServiceConfigException("dhcp.rangeEnd", $"'{config.Dhcp.RangeEnd}' is before the first address '{config.Dhcp.RangeStart}'");
        }
        if (!IsLeaseTime(config.Dhcp.LeaseTime))
        {
            throw new InvalidServiceConfigException("dhcp.leaseTime",
                $"{Show(config.Dhcp.LeaseTime)} must be 'infinite' or a number with an optional unit s, m, h, d or w, between {MinLeaseSeconds} s and {MaxLeaseSeconds / 86400} days");
        }
        Count("dhcp.staticLeases", config.Dhcp.StaticLeases.Count, MaxStaticLeases);
        var leasedAddresses = new Dictionary<string, int>(StringComparer.Ordinal);
        var leasedMacs = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < config.Dhcp.StaticLeases.Count; i++)
        {
            var at = $"dhcp.staticLeases[{i}]";
            var lease = Entry(at, config.Dhcp.StaticLeases[i]);
            if (lease.Mac is null || lease.Mac.Length > 17 || !MacAddress.TryNormalize(lease.Mac, out _))
            {
                throw new InvalidServiceConfigException($"{at}.mac", $"{Show(lease.Mac)} is not a MAC address");
            }
            Address4($"{at}.address", lease.Address);
            // dnsmasq refuses two reservations of one address; one device has one reservation
            if (leasedAddresses.TryGetValue(lease.Address, out var other))
            {
                throw new InvalidServiceConfigException($"{at}.address", $"'{lease.Address}' is reserved by dhcp.staticLeases[{other}] already");
            }
            if (!leasedMacs.Add(MacAddress.Normalize(lease.Mac)))
            {
                throw new InvalidServiceConfigException($"{at}.mac", $"'{lease.Mac}' has a reservation already");
            }
            leasedAddresses[lease.Address] = i;
            if (lease.Hostname is not null && !IsHostLabel(lease.Hostname))
            {
                throw new InvalidServiceConfigException($"{at}.hostname",
                    $"{Show(lease.Hostname)} must be a host name of one label: letters, digits and '-', starting with a letter, at most 63 characters");
            }
        }

        if (!IsDomainName(config.Dns.LocalDomain))
        {
            throw new InvalidServiceConfigException("dns.localDomain", $"{Show(config.Dns.LocalDomain)} is not a domain name");
        }
        Count("dns.upstreams", config.Dns.Upstreams.Count, MaxUpstreams);
        for (var i = 0; i < config.Dns.Upstreams.Count; i++)
        {
            Address($"dns.upstreams[{i}]", config.Dns.Upstreams[i]);
        }

        Count("contentFilter.blockedDomains", config.ContentFilter.BlockedDomains.Count, MaxBlockedDomains);
        for (var i = 0; i < config.ContentFilter.BlockedDomains.Count; i++)
        {
            if (!IsDomainName(config.ContentFilter.BlockedDomains[i]))
            {
                throw new InvalidServiceConfigException($"contentFilter.blockedDomains[{i}]", $"{Show(config.ContentFilter.BlockedDomains[i])} is not a domain name");
            }
        }
        var categories = config.ContentFilter.Categories ?? [];
        Count("contentFilter.categories", categories.Count, FilterCategories.MaxChosen);
        var chosen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < categories.Count; i++)
        {
            if (!FilterCategories.IsName(categories[i]))
            {
                throw new InvalidServiceConfigException($"contentFilter.categories[{i}]", $"{Show(categories[i])} is not a category name ({FilterCategories.NameRule})");
            }
            if (!chosen.Add(categories[i]))
            {
                throw new InvalidServiceConfigException($"contentFilter.categories[{i}]", $"{Show(categories[i])} is chosen twice");
            }
        }
        var blocked = config.ContentFilter.BlockedAddresses ?? [];
        Count("contentFilter.blockedAddresses", blocked.Count, MaxBlockedAddresses);
        for (var i = 0; i < blocked.Count; i++)
        {
            if (!IsNetwork(blocked[i]))
            {
                throw new InvalidServiceConfigException($"contentFilter.blockedAddresses[{i}]",
                    $"{Show(blocked[i])} is not an IP address or a CIDR prefix without host bits (10.0.0.0/8)");
            }
        }

        // the VPN section is checked even when the VPN is off: it is stored, and turning it on must not reveal a bad peer
        if (config.Vpn.Enabled || config.Vpn.ListenPort != 0)
        {
            Port("vpn.listenPort", config.Vpn.ListenPort);
        }
        if (config.Vpn.Address is not null && !IsPrefix(config.Vpn.Address))
        {
            throw new InvalidServiceConfigException("vpn.address", $"{Show(config.Vpn.Address)} is not an address with prefix length (10.9.0.1/24)");
        }
        Count("vpn.peers", config.Vpn.Peers.Count, MaxPeers);
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < config.Vpn.Peers.Count; i++)
        {
            var at = $"vpn.peers[{i}]";
            var peer = Entry(at, config.Vpn.Peers[i]);
            if (!IsPeerName(peer.Name))
            {
                throw new InvalidServiceConfigException($"{at}.name",
                    $"{Show(peer.Name)} must be 1..{MaxPeerNameLength} letters, digits, spaces or . _ - @ + ( ), not starting or ending with a space");
            }
            if (!names.Add(peer.Name))
            {
                throw new InvalidServiceConfigException($"{at}.name", $"'{peer.Name}' is the name of another peer");
            }
            if (!IsWireGuardKey(peer.PublicKey))
            {
                throw new InvalidServiceConfigException($"{at}.publicKey", "must be a 32-byte key in base64 (44 characters)");
            }
            if (!IsAllowedIps(peer.AllowedIps))
            {
                throw new InvalidServiceConfigException($"{at}.allowedIps", $"{Show(peer.AllowedIps)} must be comma-separated CIDR prefixes (at most {MaxAllowedIpsPerPeer})");
            }
            if (peer.Endpoint is not null && !IsEndpoint(peer.Endpoint))
            {
                throw new InvalidServiceConfigException($"{at}.endpoint", $"{Show(peer.Endpoint)} must be host:port or [IPv6]:port");
            }
        }

        // a cache that is off may keep size 0; one that is on needs a size squid can use
        var minCache = config.Cache.Enabled ? MinCacheMegabytes : 0;
        if (config.Cache.SizeMegabytes < minCache || config.Cache.SizeMegabytes > MaxCacheMegabytes)
        {
            throw new InvalidServiceConfigException("cache.sizeMegabytes", $"{config.Cache.SizeMegabytes} is outside {minCache}..{MaxCacheMegabytes}");
        }
        if (config.Cache.MaxObjectMegabytes is { } maxObject && (maxObject < 1 || maxObject > MaxObjectMegabytesLimit || (config.Cache.Enabled && maxObject > config.Cache.SizeMegabytes)))
        {
            throw new InvalidServiceConfigException("cache.maxObjectMegabytes",
                $"{maxObject} is outside 1..{MaxObjectMegabytesLimit} or larger than the cache ({config.Cache.SizeMegabytes} MB)");
        }
    }

    /// <summary>JSON that lacks a section leaves it null despite the contract; refuse it by name.</summary>
    private static void Present(string field, object? value)
    {
        if (value is null)
        {
            throw new InvalidServiceConfigException(field, "missing");
        }
    }

    /// <summary>A JSON list may hold null entries despite the contract; refuse them by position.</summary>
    private static T Entry<T>(string field, T? value) where T : class =>
        value ?? throw new InvalidServiceConfigException(field, "is null; every entry must be an object");

    private static void Count(string field, int count, int max)
    {
        if (count > max)
        {
            throw new InvalidServiceConfigException(field, $"{count} entries; at most {max}");
        }
    }

    private static void Port(string field, int port)
    {
        if (port is < 1 or > 65535)
        {
            throw new InvalidServiceConfigException(field, $"{port} is not a port number (1..65535)");
        }
    }

    private static void Address(string field, string? value)
    {
        if (!IsAddress(value))
        {
            throw new InvalidServiceConfigException(field, $"{Show(value)} is not an IP address");
        }
    }

    private static void Address4(string field, string? value)
    {
        if (!IsAddress(value) || value!.Contains(':'))
        {
            throw new InvalidServiceConfigException(field, $"{Show(value)} is not an IPv4 address");
        }
    }

    /// <summary>A value for an error message: quoted, cut short, everything but printable ASCII escaped (the message is logged and shown).</summary>
    public static string Show(string? value)
    {
        if (value is null) { return "null"; }
        var shown = value.Length > 64 ? value[..64] + "…" : value;
        var sb = new System.Text.StringBuilder("'");
        foreach (var c in shown)
        {
            if (c is < ' ' or > '~') { sb.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}"); }
            else { sb.Append(c); }
        }
        return sb.Append('\'').ToString();
    }

    /// <summary>
    /// A literal IPv4 address (four decimals 0..255, no leading zeros) or IPv6 address (hex digits, ':' and an embedded
    /// IPv4 tail only: no zone, no brackets). Legacy forms such as "10.1" or "010.0.0.1" are refused.
    /// </summary>
    public static bool IsAddress(string? value)
    {
        if (string.IsNullOrEmpty(value) || value.Length > 45) { return false; }
        if (value.Contains(':'))
        {
            return value.All(c => char.IsAsciiHexDigit(c) || c is ':' or '.') && IPAddress.TryParse(value, out var v6) &&
                v6.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6;
        }
        var parts = value.Split('.');
        return parts.Length == 4 && parts.All(p => p.Length is >= 1 and <= 3 && p.All(char.IsAsciiDigit) && (p.Length == 1 || p[0] != '0') &&
            int.Parse(p, CultureInfo.InvariantCulture) <= 255);
    }

    /// <summary>An address, or an address with a prefix length in range for its family ("10.0.0.0/8", "2001:db8::/32").</summary>
    public static bool IsPrefix(string? value)
    {
        if (value is null) { return false; }
        var slash = value.IndexOf('/');
        if (slash < 0) { return IsAddress(value); }
        var address = value[..slash];
        var length = value.AsSpan(slash + 1);
        // digits only: int.TryParse would also take trailing NUL characters
        if (!IsAddress(address) || length.Length is 0 or > 3 || !AllDigits(length) || !int.TryParse(length, NumberStyles.None, CultureInfo.InvariantCulture, out var bits)) { return false; }
        return bits <= (address.Contains(':') ? 128 : 32);
    }

    /// <summary>A prefix whose host bits are zero ("10.0.0.0/8", not "10.0.0.1/8"), or a single address.</summary>
    public static bool IsNetwork(string? value)
    {
        if (!IsPrefix(value)) { return false; }
        var slash = value!.IndexOf('/');
        if (slash < 0) { return true; }
        var bytes = IPAddress.Parse(value[..slash]).GetAddressBytes();
        var bits = int.Parse(value.AsSpan(slash + 1), CultureInfo.InvariantCulture);
        for (var i = 0; i < bytes.Length; i++)
        {
            var keep = Math.Clamp(bits - i * 8, 0, 8);
            if ((bytes[i] & ~(0xff << (8 - keep)) & 0xff) != 0) { return false; }
        }
        return true;
    }

    private static bool AllDigits(ReadOnlySpan<char> text)
    {
        foreach (var c in text)
        {
            if (!char.IsAsciiDigit(c)) { return false; }
        }
        return true;
    }

    private static long Ipv4Value(string address)
    {
        var b = IPAddress.Parse(address).GetAddressBytes();
        return ((long)b[0] << 24) | ((long)b[1] << 16) | ((long)b[2] << 8) | b[3];
    }

    /// <summary>dnsmasq's lease time: "infinite", or digits with an optional unit (s, m, h, d, w), 2 minutes to a year.</summary>
    public static bool IsLeaseTime(string? value)
    {
        if (value == "infinite") { return true; }
        if (string.IsNullOrEmpty(value) || value.Length > 8) { return false; }
        var unit = value[^1] switch { 's' => 1L, 'm' => 60L, 'h' => 3600L, 'd' => 86400L, 'w' => 604800L, _ => 0L };
        var digits = unit == 0 ? value : value[..^1];
        if (unit == 0) { unit = 1; }
        if (digits.Length == 0 || !digits.All(char.IsAsciiDigit)) { return false; }
        var seconds = long.Parse(digits, CultureInfo.InvariantCulture) * unit;
        return seconds is >= MinLeaseSeconds and <= MaxLeaseSeconds;
    }

    /// <summary>
    /// One DNS label for a DHCP client's name: starts with a letter (a name of digits would read as a lease time to
    /// dnsmasq), then letters, digits and '-', not ending with '-'; not one of dnsmasq's words "infinite" and "ignore".
    /// </summary>
    public static bool IsHostLabel(string? name) =>
        !string.IsNullOrEmpty(name) && name.Length <= 63 && char.IsAsciiLetter(name[0]) && name[^1] != '-' &&
        name.All(c => char.IsAsciiLetterOrDigit(c) || c == '-') &&
        !name.Equals("infinite", StringComparison.OrdinalIgnoreCase) && !name.Equals("ignore", StringComparison.OrdinalIgnoreCase);

    /// <summary>A DNS name: dot-separated labels of ASCII letters, digits and '-' (not at either end), at most 253 characters.</summary>
    public static bool IsDomainName(string? name) =>
        !string.IsNullOrEmpty(name) && name.Length <= 253 &&
        name.Split('.').All(l => l.Length is > 0 and <= 63 && l.All(c => char.IsAsciiLetterOrDigit(c) || c == '-') && l[0] != '-' && l[^1] != '-');

    /// <summary>A VPN peer's display name: letters and digits of any script, spaces and a few marks; no control characters.</summary>
    public static bool IsPeerName(string? name) =>
        !string.IsNullOrEmpty(name) && name.Length <= MaxPeerNameLength && name[0] != ' ' && name[^1] != ' ' &&
        name.All(c => char.IsLetterOrDigit(c) || c is ' ' or '.' or '_' or '-' or '@' or '+' or '(' or ')');

    /// <summary>A WireGuard key: exactly 44 characters of standard base64 that decode to 32 bytes (no whitespace inside).</summary>
    public static bool IsWireGuardKey(string? key)
    {
        if (key is null || key.Length != 44 || key[43] != '=' || !key[..43].All(c => char.IsAsciiLetterOrDigit(c) || c is '+' or '/'))
        {
            return false;
        }
        Span<byte> bytes = stackalloc byte[33];
        return Convert.TryFromBase64String(key, bytes, out var written) && written == 32;
    }

    /// <summary>WireGuard AllowedIPs: CIDR prefixes separated by ',' and optional spaces.</summary>
    public static bool IsAllowedIps(string? value)
    {
        if (string.IsNullOrEmpty(value) || value.Length > 64 * 44) { return false; }
        var parts = value.Split(',');
        return parts.Length <= MaxAllowedIpsPerPeer && parts.All(p => p.Trim(' ') is var t && t.Length > 0 && IsPrefix(t));
    }

    private static bool IsEndpoint(string value)
    {
        var colon = value.LastIndexOf(':');
        var port = value.AsSpan(colon + 1);
        if (colon <= 0 || port.Length is 0 or > 5 || !AllDigits(port) || !int.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out var number) || number is < 1 or > 65535)
        {
            return false;
        }
        var host = value[..colon];
        return host.StartsWith('[') && host.EndsWith(']') ? host.Length > 2 && IsAddress(host[1..^1]) && host.Contains(':') : IsAddress(host) && !host.Contains(':') || IsDomainName(host);
    }
}
