using System.Net;

namespace Tsunagu.Protocol;

/// <summary>A service configuration that cannot be applied; <see cref="Field"/> names the offending field.</summary>
public sealed class InvalidServiceConfigException(string field, string problem)
    : Exception($"{field}: {problem}")
{
    public string Field { get; } = field;
}

/// <summary>Checks a service configuration before anything is rendered or swapped.</summary>
public static class ServiceConfigValidator
{
    public static void Validate(ServiceConfiguration config)
    {
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
            throw new InvalidServiceConfigException("firewall.defaultInbound", $"'{config.Firewall.DefaultInbound}' must be 'drop' or 'reject'");
        }
        for (var i = 0; i < config.Firewall.PortForwards.Count; i++)
        {
            var pf = config.Firewall.PortForwards[i];
            var at = $"firewall.portForwards[{i}]";
            Present(at, pf);
            if (pf.Protocol is not ("tcp" or "udp"))
            {
                throw new InvalidServiceConfigException($"{at}.protocol", $"'{pf.Protocol}' must be 'tcp' or 'udp'");
            }
            Port($"{at}.externalPort", pf.ExternalPort);
            Port($"{at}.internalPort", pf.InternalPort);
            Address($"{at}.internalAddress", pf.InternalAddress);
        }
        Address("dhcp.lanAddress", config.Dhcp.LanAddress);
        Address("dhcp.rangeStart", config.Dhcp.RangeStart);
        Address("dhcp.rangeEnd", config.Dhcp.RangeEnd);
        if (config.Dhcp.PrefixLength is < 8 or > 30)
        {
            throw new InvalidServiceConfigException("dhcp.prefixLength", $"{config.Dhcp.PrefixLength} is outside 8..30");
        }
        for (var i = 0; i < config.Dhcp.StaticLeases.Count; i++)
        {
            Present($"dhcp.staticLeases[{i}]", config.Dhcp.StaticLeases[i]);
            if (!MacAddress.TryNormalize(config.Dhcp.StaticLeases[i].Mac, out _))
            {
                throw new InvalidServiceConfigException($"dhcp.staticLeases[{i}].mac", $"'{config.Dhcp.StaticLeases[i].Mac}' is not a MAC address");
            }
            Address($"dhcp.staticLeases[{i}].address", config.Dhcp.StaticLeases[i].Address);
        }
        if (!IsDomainName(config.Dns.LocalDomain))
        {
            throw new InvalidServiceConfigException("dns.localDomain", $"'{config.Dns.LocalDomain}' is not a domain name");
        }
        for (var i = 0; i < config.Dns.Upstreams.Count; i++)
        {
            Address($"dns.upstreams[{i}]", config.Dns.Upstreams[i]);
        }
        for (var i = 0; i < config.ContentFilter.BlockedDomains.Count; i++)
        {
            if (!IsDomainName(config.ContentFilter.BlockedDomains[i]))
            {
                throw new InvalidServiceConfigException($"contentFilter.blockedDomains[{i}]", $"'{config.ContentFilter.BlockedDomains[i]}' is not a domain name");
            }
        }
        var blocked = config.ContentFilter.BlockedAddresses ?? [];
        for (var i = 0; i < blocked.Count; i++)
        {
            if (!IsPrefix(blocked[i]))
            {
                throw new InvalidServiceConfigException($"contentFilter.blockedAddresses[{i}]", $"'{blocked[i]}' is not an IP address or CIDR prefix");
            }
        }
        if (config.Vpn.Enabled)
        {
            Port("vpn.listenPort", config.Vpn.ListenPort);
            if (config.Vpn.Address is not null && !IsPrefix(config.Vpn.Address))
            {
                throw new InvalidServiceConfigException("vpn.address", $"'{config.Vpn.Address}' is not an address with prefix length (10.9.0.1/24)");
            }
            for (var i = 0; i < config.Vpn.Peers.Count; i++)
            {
                var peer = config.Vpn.Peers[i];
                Present($"vpn.peers[{i}]", peer);
                if (string.IsNullOrWhiteSpace(peer.Name) || peer.Name.Any(char.IsControl))
                {
                    throw new InvalidServiceConfigException($"vpn.peers[{i}].name", "must be a non-empty single line");
                }
                if (!IsWireGuardKey(peer.PublicKey))
                {
                    throw new InvalidServiceConfigException($"vpn.peers[{i}].publicKey", "must be a 32-byte key in base64");
                }
                var allowed = peer.AllowedIps?.Split(',', StringSplitOptions.TrimEntries) ?? [];
                if (allowed.Length == 0 || !allowed.All(IsPrefix))
                {
                    throw new InvalidServiceConfigException($"vpn.peers[{i}].allowedIps", $"'{peer.AllowedIps}' must be comma-separated CIDR prefixes");
                }
                if (peer.Endpoint is not null && !IsEndpoint(peer.Endpoint))
                {
                    throw new InvalidServiceConfigException($"vpn.peers[{i}].endpoint", $"'{peer.Endpoint}' must be host:port or [IPv6]:port");
                }
            }
        }
        if (config.Cache.Enabled && config.Cache.SizeMegabytes is < 16 or > 1_048_576)
        {
            throw new InvalidServiceConfigException("cache.sizeMegabytes", $"{config.Cache.SizeMegabytes} is outside 16..1048576");
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
            throw new InvalidServiceConfigException(field, $"'{value}' is not an IP address");
        }
    }

    /// <summary>A literal IPv4 (four dotted decimals) or IPv6 address; legacy forms such as "10.1" are refused.</summary>
    public static bool IsAddress(string? value) =>
        value is not null && IPAddress.TryParse(value, out var address) &&
        (address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? value.Contains(':') : value.Split('.').Length == 4);

    /// <summary>An address, or an address with a prefix length in range for its family ("10.0.0.0/8", "2001:db8::/32").</summary>
    public static bool IsPrefix(string? value)
    {
        if (value is null) { return false; }
        var slash = value.IndexOf('/');
        if (slash < 0) { return IsAddress(value); }
        var address = value[..slash];
        if (!IsAddress(address) || !int.TryParse(value.AsSpan(slash + 1), System.Globalization.NumberStyles.None, null, out var length)) { return false; }
        return length <= (address.Contains(':') ? 128 : 32);
    }

    private static bool IsEndpoint(string value)
    {
        var colon = value.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(value.AsSpan(colon + 1), System.Globalization.NumberStyles.None, null, out var port) || port is < 1 or > 65535)
        {
            return false;
        }
        var host = value[..colon];
        return host.StartsWith('[') && host.EndsWith(']') ? IsAddress(host[1..^1]) && host.Contains(':') : IsAddress(host) || IsDomainName(host);
    }

    private static bool IsDomainName(string? name) =>
        !string.IsNullOrEmpty(name) && name.Length <= 253 &&
        name.Split('.').All(l => l.Length is > 0 and <= 63 && l.All(c => char.IsAsciiLetterOrDigit(c) || c == '-') && l[0] != '-' && l[^1] != '-');

    private static bool IsWireGuardKey(string? key)
    {
        if (key is null) { return false; }
        try
        {
            return Convert.FromBase64String(key).Length == 32;
        }
        catch (FormatException)
        {
            return false;
        }
    }
}
