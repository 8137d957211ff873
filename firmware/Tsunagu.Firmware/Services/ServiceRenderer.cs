using System.Text;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Services;

/// <summary>
/// Renders a service configuration into the configuration files of the daemons that carry it out:
/// nftables (firewall, NAT, filter), dnsmasq (DHCP, DNS, content filter), WireGuard (VPN), squid (cache).
/// </summary>
public static class ServiceRenderer
{
    public static IReadOnlyDictionary<string, string> Render(ServiceConfiguration config, string wanInterface = "wan", string lanInterface = "lan")
    {
        ServiceConfigValidator.Validate(config);
        var files = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["nftables.nft"] = Nftables(config, wanInterface, lanInterface),
            ["dnsmasq.conf"] = Dnsmasq(config, lanInterface),
        };
        if (config.Vpn.Enabled)
        {
            files["wg0.conf"] = WireGuard(config.Vpn);
        }
        if (config.Cache.Enabled)
        {
            files["squid.conf"] = Squid(config.Cache, config.Dhcp);
        }
        return files;
    }

    private static string Nftables(ServiceConfiguration c, string wan, string lan)
    {
        var sb = new StringBuilder();
        sb.Append("flush ruleset\n\ntable inet tsunagu {\n");
        sb.Append("  chain input {\n    type filter hook input priority filter; policy ").Append(c.Firewall.DefaultInbound == "reject" ? "drop" : "drop").Append(";\n");
        sb.Append("    ct state established,related accept\n    ct state invalid drop\n    iif lo accept\n");
        sb.Append("    iifname \"").Append(lan).Append("\" accept\n");
        if (c.Vpn.Enabled)
        {
            sb.Append("    iifname \"").Append(wan).Append("\" udp dport ").Append(c.Vpn.ListenPort).Append(" accept\n");
        }
        if (c.Firewall.DefaultInbound == "reject")
        {
            sb.Append("    reject\n");
        }
        sb.Append("  }\n");
        sb.Append("  chain forward {\n    type filter hook forward priority filter; policy drop;\n");
        sb.Append("    ct state established,related accept\n    ct status dnat accept\n");
        sb.Append("    iifname \"").Append(lan).Append("\" oifname \"").Append(wan).Append("\" accept\n  }\n");
        sb.Append("  chain prerouting {\n    type nat hook prerouting priority dstnat;\n");
        foreach (var pf in c.Firewall.PortForwards)
        {
            sb.Append("    iifname \"").Append(wan).Append("\" ").Append(pf.Protocol).Append(" dport ").Append(pf.ExternalPort)
              .Append(" dnat ip to ").Append(pf.InternalAddress).Append(':').Append(pf.InternalPort).Append('\n');
        }
        sb.Append("  }\n");
        sb.Append("  chain postrouting {\n    type nat hook postrouting priority srcnat;\n");
        if (c.Firewall.Masquerade)
        {
            sb.Append("    oifname \"").Append(wan).Append("\" masquerade\n");
        }
        sb.Append("  }\n}\n");
        return sb.ToString();
    }

    private static string Dnsmasq(ServiceConfiguration c, string lan)
    {
        var sb = new StringBuilder();
        sb.Append("interface=").Append(lan).Append("\nbind-dynamic\nno-resolv\ndomain-needed\nbogus-priv\n");
        sb.Append("domain=").Append(c.Dns.LocalDomain).Append("\nlocal=/").Append(c.Dns.LocalDomain).Append("/\n");
        foreach (var upstream in c.Dns.Upstreams)
        {
            sb.Append("server=").Append(upstream).Append('\n');
        }
        sb.Append("dhcp-range=").Append(c.Dhcp.RangeStart).Append(',').Append(c.Dhcp.RangeEnd).Append(',').Append(c.Dhcp.LeaseTime).Append('\n');
        sb.Append("dhcp-option=option:router,").Append(c.Dhcp.LanAddress).Append('\n');
        foreach (var lease in c.Dhcp.StaticLeases)
        {
            sb.Append("dhcp-host=").Append(MacAddress.Normalize(lease.Mac)).Append(',').Append(lease.Address);
            if (!string.IsNullOrEmpty(lease.Hostname)) { sb.Append(',').Append(lease.Hostname); }
            sb.Append('\n');
        }
        if (c.ContentFilter.Enabled)
        {
            foreach (var domain in c.ContentFilter.BlockedDomains)
            {
                sb.Append("address=/").Append(domain).Append("/\n");
            }
        }
        return sb.ToString();
    }

    private static string WireGuard(VpnConfig vpn)
    {
        var sb = new StringBuilder();
        sb.Append("[Interface]\nListenPort = ").Append(vpn.ListenPort).Append('\n');
        foreach (var peer in vpn.Peers)
        {
            sb.Append("\n# ").Append(peer.Name).Append("\n[Peer]\nPublicKey = ").Append(peer.PublicKey)
              .Append("\nAllowedIPs = ").Append(peer.AllowedIps).Append('\n');
            if (!string.IsNullOrEmpty(peer.Endpoint)) { sb.Append("Endpoint = ").Append(peer.Endpoint).Append('\n'); }
        }
        return sb.ToString();
    }

    private static string Squid(CacheConfig cache, DhcpConfig dhcp)
    {
        var sb = new StringBuilder();
        sb.Append("http_port ").Append(dhcp.LanAddress).Append(":3128\n");
        sb.Append("acl lan src ").Append(dhcp.LanAddress).Append('/').Append(dhcp.PrefixLength).Append('\n');
        sb.Append("http_access allow lan\nhttp_access deny all\n");
        sb.Append("cache_dir ufs /hdd/squid ").Append(cache.SizeMegabytes).Append(" 16 256\n");
        return sb.ToString();
    }
}
