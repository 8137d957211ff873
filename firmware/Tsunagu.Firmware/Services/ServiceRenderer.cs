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
        sb.Append("    iifname \"").Append(env.Lan).Append("\" accept\n  }\n");
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
        var (wan, lan, vpn) = (Quote(env.Wan), Quote(env.Lan), Quote(env.Vpn));
        var blocked = c.ContentFilter.Enabled ? c.ContentFilter.BlockedAddresses ?? [] : [];
        var blocked4 = blocked.Where(b => !b.Contains(':')).ToList();
        var blocked6 = blocked.Where(b => b.Contains(':')).ToList();
        var sb = new StringBuilder();
        TableHeader(sb);
        if (blocked4.Count > 0)
        {
            sb.Append("  set blocked4 {\n    type ipv4_addr; flags interval;\n    elements = { ").Append(string.Join(", ", blocked4)).Append(" }\n  }\n");
        }
        if (blocked6.Count > 0)
        {
            sb.Append("  set blocked6 {\n    type ipv6_addr; flags interval;\n    elements = { ").Append(string.Join(", ", blocked6)).Append(" }\n  }\n");
        }

        sb.Append("  chain input {\n    type filter hook input priority filter; policy drop;\n");
        sb.Append("    ct state established,related accept\n    ct state invalid drop\n    iif \"lo\" accept\n");
        sb.Append("    iifname ").Append(lan).Append(" accept\n");
        sb.Append("    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } accept\n");
        if (c.Vpn.Enabled)
        {
            sb.Append("    iifname ").Append(wan).Append(" udp dport ").Append(c.Vpn.ListenPort).Append(" accept\n");
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
        foreach (var pf in c.Firewall.PortForwards)
        {
            var v6 = pf.InternalAddress.Contains(':');
            sb.Append("    iifname ").Append(wan).Append(' ').Append(pf.Protocol).Append(" dport ").Append(pf.ExternalPort)
              .Append(v6 ? " dnat ip6 to [" : " dnat ip to ").Append(pf.InternalAddress).Append(v6 ? "]:" : ":").Append(pf.InternalPort).Append('\n');
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
        sb.Append("interface=").Append(env.Lan).Append("\nbind-dynamic\nno-resolv\nno-hosts\ndomain-needed\nbogus-priv\n");
        sb.Append("pid-file=").Append(Path.Combine(env.RunDirectory, "dnsmasq.pid")).Append('\n');
        sb.Append("dhcp-leasefile=").Append(Path.Combine(env.StateDirectory, "dnsmasq.leases")).Append('\n');
        sb.Append("domain=").Append(c.Dns.LocalDomain).Append("\nlocal=/").Append(c.Dns.LocalDomain).Append("/\nexpand-hosts\n");
        foreach (var upstream in c.Dns.Upstreams)
        {
            sb.Append("server=").Append(upstream).Append('\n');
        }
        sb.Append("dhcp-authoritative\n");
        sb.Append("dhcp-range=").Append(c.Dhcp.RangeStart).Append(',').Append(c.Dhcp.RangeEnd).Append(',').Append(c.Dhcp.LeaseTime).Append('\n');
        sb.Append("dhcp-option=option:router,").Append(c.Dhcp.LanAddress).Append('\n');
        sb.Append("dhcp-option=option:dns-server,").Append(c.Dhcp.LanAddress).Append('\n');
        foreach (var lease in c.Dhcp.StaticLeases)
        {
            sb.Append("dhcp-host=").Append(MacAddress.Normalize(lease.Mac)).Append(',').Append(lease.Address);
            if (!string.IsNullOrEmpty(lease.Hostname)) { sb.Append(',').Append(lease.Hostname); }
            sb.Append('\n');
        }
        if (c.ContentFilter.Enabled)
        {
            sb.Append("# content filter: these domains and their subdomains get NXDOMAIN\n");
            foreach (var domain in c.ContentFilter.BlockedDomains)
            {
                sb.Append("address=/").Append(domain).Append("/\n");
            }
        }
        return sb.ToString();
    }

    /// <summary>`wg setconf` format. The private key is not in it: it is set from the unit's key file.</summary>
    private static string RenderWireGuard(VpnConfig vpn)
    {
        var sb = new StringBuilder();
        sb.Append("# rendered by tsunagu; the private key is set separately from the unit's own key file\n");
        sb.Append("[Interface]\nListenPort = ").Append(vpn.ListenPort).Append('\n');
        foreach (var peer in vpn.Peers)
        {
            sb.Append("\n# ").Append(peer.Name).Append(peer.Endpoint is null ? " (road warrior)" : " (site to site)")
              .Append("\n[Peer]\nPublicKey = ").Append(peer.PublicKey)
              .Append("\nAllowedIPs = ").Append(peer.AllowedIps).Append('\n');
            if (!string.IsNullOrEmpty(peer.Endpoint))
            {
                sb.Append("Endpoint = ").Append(peer.Endpoint).Append("\nPersistentKeepalive = 25\n");
            }
        }
        return sb.ToString();
    }

    private static string RenderSquid(ServiceConfiguration c, ServiceEnvironment env)
    {
        var sb = new StringBuilder();
        sb.Append("# rendered by tsunagu; the cache lives on the HDD, which may be wiped at any time (squid -z recreates it)\n");
        sb.Append("http_port ").Append(c.Dhcp.LanAddress).Append(":3128\n");
        sb.Append("acl lan src ").Append(Network(c.Dhcp.LanAddress, c.Dhcp.PrefixLength)).Append('\n');
        sb.Append("http_access allow lan\nhttp_access deny all\n");
        // a fixed name and the unit's own resolver: no lookup of the host name, and the content filter applies to the cache too
        sb.Append("visible_hostname tsunagu\ndns_nameservers ").Append(c.Dhcp.LanAddress).Append('\n');
        sb.Append("cache_dir ufs ").Append(env.CacheDirectory).Append(' ').Append(c.Cache.SizeMegabytes).Append(" 16 256\n");
        sb.Append("coredump_dir ").Append(env.CacheDirectory).Append('\n');
        sb.Append("pid_filename ").Append(Path.Combine(env.RunDirectory, "squid.pid")).Append('\n');
        sb.Append("cache_log ").Append(Path.Combine(env.RunDirectory, "squid-cache.log")).Append('\n');
        sb.Append("access_log none\n");
        return sb.ToString();
    }

    /// <summary>"192.168.10.1", 24 -> "192.168.10.0/24".</summary>
    public static string Network(string address, int prefixLength)
    {
        var bytes = IPAddress.Parse(address).GetAddressBytes();
        for (var i = 0; i < bytes.Length; i++)
        {
            var keep = Math.Clamp(prefixLength - i * 8, 0, 8);
            bytes[i] &= (byte)(0xff << (8 - keep));
        }
        return $"{new IPAddress(bytes)}/{prefixLength}";
    }

    private static string Quote(string name) => $"\"{name}\"";
}
