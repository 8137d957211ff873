using System.Net;
using System.Text;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Services;

/// <summary>
/// Renders a service configuration into the configuration files of the daemons that carry it out:
/// nftables (firewall, NAT, blocked destinations), dnsmasq (DHCP, DNS, content filter by domain), WireGuard
/// (VPN peers) and squid (cache, only on boards with an HDD). Pure: same input, same bytes.
/// </summary>
public static class ServiceRenderer
{
    public const string Nftables = "nftables.nft";
    public const string Dnsmasq = "dnsmasq.conf";
    public const string WireGuard = "wg0.conf";
    public const string Squid = "squid.conf";

    /// <summary>The table every rule of Tsunagu lives in; replaced as a whole, in one nft transaction.</summary>
    public const string Table = "tsunagu";

    /// <exception cref="InvalidServiceConfigException">The configuration is invalid; the message names the field.</exception>
    public static IReadOnlyDictionary<string, string> Render(ServiceConfiguration config, ServiceEnvironment env)
    {
        ServiceConfigValidator.Validate(config);
        return RenderChecked(config, env);
    }

    /// <summary>
    /// Renders without <see cref="ServiceConfigValidator"/>: only the renderer's own guards stand between a value and a
    /// daemon's configuration. For tests that prove those guards hold on their own.
    /// </summary>
    /// <exception cref="UnsafeConfigValueException">A value could start a directive of its own.</exception>
    internal static IReadOnlyDictionary<string, string> RenderChecked(ServiceConfiguration config, ServiceEnvironment env)
    {
        var files = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            [Nftables] = RenderNftables(config, env),
            [Dnsmasq] = RenderDnsmasq(config, env),
        };
        if (config.Vpn.Enabled)
        {
            files[WireGuard] = RenderWireGuard(config.Vpn);
        }
        if (CacheRuns(config, env))
        {
            files[Squid] = RenderSquid(config, env);
        }
        return files;
    }

    /// <summary>The cache runs only where it is enabled and the board has a cache disk.</summary>
    public static bool CacheRuns(ServiceConfiguration config, ServiceEnvironment env) => config.Cache.Enabled && env.CacheDirectory is not null;

    /// <summary>
    /// The ruleset in force when no configuration is: nothing enters from the WAN but replies, nothing is
    /// forwarded, the LAN can reach the unit. Loaded at boot before any daemon and when there is nothing to restore.
    /// </summary>
    public static string RenderFailClosed(ServiceEnvironment env)
    {
        var sb = new StringBuilder();
        TableHeader(sb);
        sb.Append("  chain input {\n    type filter hook input priority filter; policy drop;\n");
        sb.Append("    ct state established,related accept\n    iif \"lo\" accept\n");
        sb.Append("    iifname ").Append(RenderGuard.NftQuoted("interfaces.lan", env.Lan)).Append(" accept\n  }\n");
        sb.Append("  chain forward {\n    type filter hook forward priority filter; policy drop;\n  }\n}\n");
        return sb.ToString();
    }

    private static void TableHeader(StringBuilder sb)
    {
        sb.Append("# rendered by tsunagu; replaces table inet ").Append(Table).Append(" atomically (one nft transaction)\n");
        sb.Append("table inet ").Append(Table).Append(" {}\ndelete table inet ").Append(Table).Append("\n");
        sb.Append("table inet ").Append(Table).Append(" {\n");
    }

    private static string RenderNftables(ServiceConfiguration c, ServiceEnvironment env)
    {
        var (wan, lan, vpn) = (RenderGuard.NftQuoted("interfaces.wan", env.Wan), RenderGuard.NftQuoted("interfaces.lan", env.Lan), RenderGuard.NftQuoted("interfaces.vpn", env.Vpn));
        var blocked = c.ContentFilter.Enabled ? c.ContentFilter.BlockedAddresses ?? [] : [];
        var guarded = blocked.Select((b, i) => RenderGuard.Nft($"contentFilter.blockedAddresses[{i}]", b)).ToList();
        var blocked4 = guarded.Where(b => !b.Contains(':')).ToList();
        var blocked6 = guarded.Where(b => b.Contains(':')).ToList();
        var sb = new StringBuilder();
        TableHeader(sb);
        if (blocked4.Count > 0)
        {
            sb.Append("  set blocked4 {\n    type ipv4_addr; flags interval; auto-merge;\n    elements = { ").Append(string.Join(", ", blocked4)).Append(" }\n  }\n");
        }
        if (blocked6.Count > 0)
        {
            sb.Append("  set blocked6 {\n    type ipv6_addr; flags interval; auto-merge;\n    elements = { ").Append(string.Join(", ", blocked6)).Append(" }\n  }\n");
        }

        sb.Append("  chain input {\n    type filter hook input priority filter; policy drop;\n");
        sb.Append("    ct state established,related accept\n    ct state invalid drop\n    iif \"lo\" accept\n");
        sb.Append("    iifname ").Append(lan).Append(" accept\n");
        sb.Append("    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } accept\n");
        if (c.Vpn.Enabled)
        {
            sb.Append("    iifname ").Append(wan).Append(" udp dport ").Append(Port("vpn.listenPort", c.Vpn.ListenPort)).Append(" accept\n");
            sb.Append("    iifname ").Append(vpn).Append(" accept\n");
        }
        if (c.Firewall.DefaultInbound == "reject")
        {
            sb.Append("    reject with icmpx type admin-prohibited\n");
        }
        sb.Append("  }\n");

        sb.Append("  chain forward {\n    type filter hook forward priority filter; policy drop;\n");
        if (blocked4.Count > 0) { sb.Append("    ip daddr @blocked4 reject with icmpx type admin-prohibited\n"); }
        if (blocked6.Count > 0) { sb.Append("    ip6 daddr @blocked6 reject with icmpx type admin-prohibited\n"); }
        sb.Append("    ct state established,related accept\n    ct state invalid drop\n    ct status dnat accept\n");
        sb.Append("    iifname ").Append(lan).Append(" oifname ").Append(wan).Append(" accept\n");
        if (c.Vpn.Enabled)
        {
            sb.Append("    iifname ").Append(vpn).Append(" oifname ").Append(lan).Append(" accept\n");
            sb.Append("    iifname ").Append(lan).Append(" oifname ").Append(vpn).Append(" accept\n");
        }
        sb.Append("  }\n");

        sb.Append("  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n");
        for (var i = 0; i < c.Firewall.PortForwards.Count; i++)
        {
            var pf = c.Firewall.PortForwards[i];
            var at = $"firewall.portForwards[{i}]";
            var protocol = pf.Protocol is "tcp" or "udp" ? pf.Protocol : throw new UnsafeConfigValueException(RenderGuard.NftName, $"{at}.protocol", "is neither tcp nor udp");
            var address = RenderGuard.Nft($"{at}.internalAddress", pf.InternalAddress);
            var v6 = address.Contains(':');
            sb.Append("    iifname ").Append(wan).Append(' ').Append(protocol).Append(" dport ").Append(Port($"{at}.externalPort", pf.ExternalPort))
              .Append(v6 ? " dnat ip6 to [" : " dnat ip to ").Append(address).Append(v6 ? "]:" : ":").Append(Port($"{at}.internalPort", pf.InternalPort)).Append('\n');
        }
        sb.Append("  }\n");

        sb.Append("  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n");
        if (c.Firewall.Masquerade)
        {
            sb.Append("    oifname ").Append(wan).Append(" masquerade\n");
        }
        sb.Append("  }\n}\n");
        return sb.ToString();
    }

    private static string RenderDnsmasq(ServiceConfiguration c, ServiceEnvironment env)
    {
        var sb = new StringBuilder();
        sb.Append("# rendered by tsunagu\n");
        sb.Append("interface=").Append(RenderGuard.Dnsmasq("interfaces.lan", env.Lan)).Append("\nbind-dynamic\nno-resolv\nno-hosts\ndomain-needed\nbogus-priv\n");
        sb.Append("pid-file=").Append(RenderGuard.DnsmasqPath("runDirectory", Path.Combine(env.RunDirectory, "dnsmasq.pid"))).Append('\n');
        sb.Append("dhcp-leasefile=").Append(RenderGuard.DnsmasqPath("stateDirectory", Path.Combine(env.StateDirectory, "dnsmasq.leases"))).Append('\n');
        var domain = RenderGuard.Dnsmasq("dns.localDomain", c.Dns.LocalDomain);
        sb.Append("domain=").Append(domain).Append("\nlocal=/").Append(domain).Append("/\nexpand-hosts\n");
        for (var i = 0; i < c.Dns.Upstreams.Count; i++)
        {
            sb.Append("server=").Append(RenderGuard.Dnsmasq($"dns.upstreams[{i}]", c.Dns.Upstreams[i])).Append('\n');
        }
        sb.Append("dhcp-authoritative\n");
        sb.Append("dhcp-range=").Append(RenderGuard.Dnsmasq("dhcp.rangeStart", c.Dhcp.RangeStart)).Append(',')
          .Append(RenderGuard.Dnsmasq("dhcp.rangeEnd", c.Dhcp.RangeEnd)).Append(',').Append(RenderGuard.Dnsmasq("dhcp.leaseTime", c.Dhcp.LeaseTime)).Append('\n');
        var router = RenderGuard.Dnsmasq("dhcp.lanAddress", c.Dhcp.LanAddress);
        sb.Append("dhcp-option=option:router,").Append(router).Append('\n');
        sb.Append("dhcp-option=option:dns-server,").Append(router).Append('\n');
        for (var i = 0; i < c.Dhcp.StaticLeases.Count; i++)
        {
            var lease = c.Dhcp.StaticLeases[i];
            var mac = MacAddress.TryNormalize(lease.Mac, out var m) ? m
                : throw new UnsafeConfigValueException(RenderGuard.DnsmasqName, $"dhcp.staticLeases[{i}].mac", "is not a MAC address");
            sb.Append("dhcp-host=").Append(RenderGuard.Dnsmasq($"dhcp.staticLeases[{i}].mac", mac))
              .Append(',').Append(RenderGuard.Dnsmasq($"dhcp.staticLeases[{i}].address", lease.Address));
            if (!string.IsNullOrEmpty(lease.Hostname)) { sb.Append(',').Append(RenderGuard.Dnsmasq($"dhcp.staticLeases[{i}].hostname", lease.Hostname)); }
            sb.Append('\n');
        }
        if (c.ContentFilter.Enabled)
        {
            sb.Append("# content filter: these domains and their subdomains get NXDOMAIN\n");
            for (var i = 0; i < c.ContentFilter.BlockedDomains.Count; i++)
            {
                sb.Append("address=/").Append(RenderGuard.Dnsmasq($"contentFilter.blockedDomains[{i}]", c.ContentFilter.BlockedDomains[i])).Append("/\n");
            }
        }
        return sb.ToString();
    }

    /// <summary>`wg setconf` format. The private key is not in it: it is set from the unit's key file.</summary>
    private static string RenderWireGuard(VpnConfig vpn)
    {
        var sb = new StringBuilder();
        sb.Append("# rendered by tsunagu; the private key is set separately from the unit's own key file\n");
        sb.Append("[Interface]\nListenPort = ").Append(Port("vpn.listenPort", vpn.ListenPort, RenderGuard.WireGuardName)).Append('\n');
        for (var i = 0; i < vpn.Peers.Count; i++)
        {
            var peer = vpn.Peers[i];
            var at = $"vpn.peers[{i}]";
            sb.Append("\n# ").Append(RenderGuard.Comment(RenderGuard.WireGuardName, $"{at}.name", peer.Name)).Append(peer.Endpoint is null ? " (road warrior)" : " (site to site)")
              .Append("\n[Peer]\nPublicKey = ").Append(RenderGuard.WireGuardKey($"{at}.publicKey", peer.PublicKey))
              .Append("\nAllowedIPs = ").Append(RenderGuard.WireGuardPrefixes($"{at}.allowedIps", peer.AllowedIps)).Append('\n');
            if (!string.IsNullOrEmpty(peer.Endpoint))
            {
                sb.Append("Endpoint = ").Append(RenderGuard.WireGuardEndpoint($"{at}.endpoint", peer.Endpoint)).Append("\nPersistentKeepalive = 25\n");
            }
        }
        return sb.ToString();
    }

    private static string RenderSquid(ServiceConfiguration c, ServiceEnvironment env)
    {
        var sb = new StringBuilder();
        sb.Append("# rendered by tsunagu; the cache lives on the HDD, which may be wiped at any time (squid -z recreates it)\n");
        var lanAddress = RenderGuard.Squid("dhcp.lanAddress", c.Dhcp.LanAddress);
        var cacheDirectory = RenderGuard.Squid("hdd.mountPoint", env.CacheDirectory);
        var size = c.Cache.SizeMegabytes is >= ServiceConfigValidator.MinCacheMegabytes and <= ServiceConfigValidator.MaxCacheMegabytes
            ? c.Cache.SizeMegabytes : throw new UnsafeConfigValueException(RenderGuard.SquidName, "cache.sizeMegabytes", $"{c.Cache.SizeMegabytes} is out of range");
        sb.Append("http_port ").Append(lanAddress).Append(":3128\n");
        sb.Append("acl lan src ").Append(RenderGuard.Squid("dhcp.prefixLength", Network(lanAddress, c.Dhcp.PrefixLength))).Append('\n');
        sb.Append("http_access allow lan\nhttp_access deny all\n");
        // a fixed name and the unit's own resolver: no lookup of the host name, and the content filter applies to the cache too
        sb.Append("visible_hostname tsunagu\ndns_nameservers ").Append(lanAddress).Append('\n');
        sb.Append("cache_dir ufs ").Append(cacheDirectory).Append(' ').Append(size).Append(" 16 256\n");
        sb.Append("coredump_dir ").Append(cacheDirectory).Append('\n');
        sb.Append("pid_filename ").Append(RenderGuard.Squid("runDirectory", Path.Combine(env.RunDirectory, "squid.pid"))).Append('\n');
        sb.Append("cache_log ").Append(RenderGuard.Squid("runDirectory", Path.Combine(env.RunDirectory, "squid-cache.log"))).Append('\n');
        sb.Append("access_log none\n");
        return sb.ToString();
    }

    /// <summary>"192.168.10.1", 24 -> "192.168.10.0/24".</summary>
    public static string Network(string address, int prefixLength)
    {
        if (!IPAddress.TryParse(address, out var parsed) || prefixLength < 0 || prefixLength > parsed.GetAddressBytes().Length * 8)
        {
            throw new UnsafeConfigValueException(RenderGuard.SquidName, "dhcp.prefixLength", $"'{address}/{prefixLength}' is not a network");
        }
        var bytes = parsed.GetAddressBytes();
        for (var i = 0; i < bytes.Length; i++)
        {
            var keep = Math.Clamp(prefixLength - i * 8, 0, 8);
            bytes[i] &= (byte)(0xff << (8 - keep));
        }
        return $"{new IPAddress(bytes)}/{prefixLength}";
    }

    private static int Port(string field, int port, string daemon = RenderGuard.NftName) =>
        port is >= 1 and <= 65535 ? port : throw new UnsafeConfigValueException(daemon, field, $"{port} is not a port number");
}
