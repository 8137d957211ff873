using System.Net;
using System.Text;
using Tsunagu.Hal;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Services;

/// <summary>
/// Renders a service configuration into the configuration files of the daemons that carry it out:
/// nftables (firewall, NAT, blocked destinations), dnsmasq (DHCP, DNS, content filter by domain), WireGuard
/// (VPN peers) and squid (cache, only on boards with an HDD). Same configuration, environment and category lists (the one
/// thing read from the unit, <see cref="FilterLists"/>): same bytes.
/// </summary>
public static class ServiceRenderer
{
    public const string Nftables = "nftables.nft";
    public const string Dnsmasq = "dnsmasq.conf";
    public const string WireGuard = "wg0.conf";
    public const string Squid = "squid.conf";
    public const string Clamd = "clamd.conf";
    public const string CIcap = "c-icap.conf";

    /// <summary>The ICAP service squid sends responses to (c-icap's virus_scan, answering 204 for clean content).</summary>
    public const string IcapService = "avscan";

    /// <summary>
    /// How far into an object (MB) a range request still makes squid fetch the object from its start to cache it: 32 MB take
    /// about 26 s at 10 Mbit/s before the client gets its first byte, the longest wait judged acceptable for a seek.
    /// </summary>
    public const int RangeOffsetLimitMegabytes = 32;

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
        if (VirusScanRuns(config, env))
        {
            files[Clamd] = RenderClamd(env);
            files[CIcap] = RenderCIcap(env);
        }
        return files;
    }

    /// <summary>
    /// Virus checking runs where the configuration enables it, the cache runs (squid is the path downloads take), the
    /// board can run it (<see cref="BoardVirusScan"/>) and a signature database is installed that the checker did not fail
    /// to start on (<see cref="ServiceEnvironment.SignaturesUsable"/>; until then it waits: <see cref="VirusScanWaits"/>).
    /// </summary>
    public static bool VirusScanRuns(ServiceConfiguration config, ServiceEnvironment env) => VirusScanGiven(config, env) && env.SignaturesUsable;

    /// <summary>
    /// Virus checking is given (configuration, cache and board) but no signatures are installed yet (or the checker failed
    /// to start on the set installed): clamd cannot start without a database, so clamd and c-icap are not run and squid
    /// passes downloads unchecked, as on a unit without virus checking, rather than failing every download. The first
    /// signatures (an update program) start them (<see cref="ServiceApplier.RefreshAsync"/> after the install).
    /// </summary>
    public static bool VirusScanWaits(ServiceConfiguration config, ServiceEnvironment env) => VirusScanGiven(config, env) && !env.SignaturesUsable;

    private static bool VirusScanGiven(ServiceConfiguration config, ServiceEnvironment env) =>
        config.VirusScan is { Enabled: true } && env.Board.VirusScan is not null && CacheRuns(config, env);

    /// <summary>The scan limits a board's memory allows: threads, the largest download scanned (MB) and whether a reload may hold two databases.</summary>
    public static (int Threads, int MaxScanMegabytes, bool ConcurrentReload) VirusScanLimits(BoardVirusScan board) =>
        (board.MemoryMegabytes >= 512 ? 2 : 1, Math.Clamp(board.MemoryMegabytes / 16, 4, 64), board.MemoryMegabytes >= 512);

    /// <summary>How long an idle clamd worker thread waits for a new job before it ends (rendered `IdleTimeout`).</summary>
    public const int ClamdIdleTimeoutSeconds = 5;

    private static string RenderClamd(ServiceEnvironment env)
    {
        var (threads, maxScan, concurrent) = VirusScanLimits(env.Board.VirusScan!);
        var sb = new StringBuilder();
        sb.Append("# rendered by tsunagu; signatures are update programs installed in the database directory, loaded by RELOAD\n");
        sb.Append("Foreground yes\n");
        sb.Append("LocalSocket ").Append(RenderGuard.Squid("runDirectory", env.ClamdSocket)).Append('\n');
        sb.Append("DatabaseDirectory ").Append(RenderGuard.Squid("stateDirectory", env.SignatureDirectory)).Append('\n');
        sb.Append("PidFile ").Append(RenderGuard.Squid("runDirectory", Path.Combine(env.RunDirectory, "clamd.pid"))).Append('\n');
        sb.Append("LogFile ").Append(RenderGuard.Squid("runDirectory", Path.Combine(env.RunDirectory, "clamd.log"))).Append('\n');
        // the signature installer reads a reload's outcome from the log: clamd rotates it at the limit instead of
        // stopping logging there (its default); rotated logs are removed by SignatureInstaller before each install
        sb.Append("LogFileMaxSize 1M\nLogRotate yes\n");
        sb.Append("TemporaryDirectory ").Append(RenderGuard.Squid("runDirectory", env.RunDirectory)).Append('\n');
        // the database is reloaded only when told (a new signature bundle), never by polling it
        sb.Append("SelfCheck 0\n");
        sb.Append("MaxThreads ").Append(threads).Append("\nMaxQueue ").Append(threads * 4).Append('\n');
        sb.Append("StreamMaxLength ").Append(maxScan).Append("M\nMaxScanSize ").Append(maxScan).Append("M\nMaxFileSize ").Append(maxScan).Append("M\n");
        // a board with little memory does not hold the old and the new database at once; scans wait during a reload
        sb.Append("ConcurrentDatabaseReload ").Append(concurrent ? "yes" : "no").Append('\n');
        // such a reload first waits for every worker thread to end, and a worker that scanned stays alive, idle, this long
        // (clamd's default, 30 s, held new signatures, and every download meanwhile, that long after any scan)
        sb.Append("IdleTimeout ").Append(ClamdIdleTimeoutSeconds).Append('\n');
        return sb.ToString();
    }

    private static string RenderCIcap(ServiceEnvironment env)
    {
        var (threads, maxScan, _) = VirusScanLimits(env.Board.VirusScan!);
        var sb = new StringBuilder();
        sb.Append("# rendered by tsunagu; c-icap's virus_scan service asks clamd over its socket\n");
        sb.Append("PidFile ").Append(RenderGuard.Squid("runDirectory", Path.Combine(env.RunDirectory, "c-icap.pid"))).Append('\n');
        sb.Append("CommandsSocket ").Append(RenderGuard.Squid("runDirectory", Path.Combine(env.RunDirectory, "c-icap.ctl"))).Append('\n');
        sb.Append("Port 127.0.0.1:").Append(Port("icapPort", env.IcapPort, RenderGuard.SquidName)).Append('\n');
        sb.Append("StartServers 1\nMaxServers 1\nThreadsPerChild ").Append(threads * 4).Append("\nMinSpareThreads 1\nMaxSpareThreads ").Append(threads * 4).Append('\n');
        sb.Append("MaxRequestsPerChild 0\nTimeout 300\n");
        sb.Append("TmpDir ").Append(RenderGuard.Squid("runDirectory", env.RunDirectory)).Append('\n');
        // downloads larger than this are buffered in TmpDir, not memory
        sb.Append("MaxMemObject 131072\n");
        var modules = RenderGuard.Squid("virusScan.icapModulesDirectory", env.Board.VirusScan!.IcapModulesDirectory);
        sb.Append("ModulesDir ").Append(modules).Append("\nServicesDir ").Append(modules).Append('\n');
        sb.Append("TemplateDir /usr/share/c_icap/templates/\nTemplateDefaultLanguage en\nLoadMagicFile /etc/c-icap/c-icap.magic\n");
        sb.Append("ServerLog ").Append(RenderGuard.Squid("runDirectory", Path.Combine(env.RunDirectory, "c-icap-server.log"))).Append('\n');
        sb.Append("AccessLog ").Append(RenderGuard.Squid("runDirectory", Path.Combine(env.RunDirectory, "c-icap-access.log"))).Append('\n');
        sb.Append("Module common clamd_mod.so\n");
        sb.Append("clamd_mod.ClamdSocket ").Append(RenderGuard.Squid("runDirectory", env.ClamdSocket)).Append('\n');
        sb.Append("Service antivirus_module virus_scan.so\n");
        // not mode=simple: with squid 5.7 a download over 64 kB stalled (c-icap echoed data squid would not read yet)
        sb.Append("ServiceAlias ").Append(IcapService).Append(" virus_scan?allow204=on&sizelimit=off\n");
        sb.Append("virus_scan.ScanFileTypes TEXT DATA EXECUTABLE ARCHIVE GIF JPEG MSOFFICE\n");
        sb.Append("virus_scan.MaxObjectSize ").Append(maxScan).Append("M\n");
        sb.Append("virus_scan.DefaultEngine clamd\n");
        return sb.ToString();
    }

    /// <summary>The cache runs only where it is enabled and the board has a cache disk.</summary>
    public static bool CacheRuns(ServiceConfiguration config, ServiceEnvironment env) => config.Cache.Enabled && env.CacheDirectory is not null;

    /// <summary>
    /// The cache directory squid uses (null without an HDD) and the one it does not, which its start empties: the checked
    /// store while virus checking runs, the plain one otherwise. Objects stored unchecked are never served by a squid that
    /// checks (ServiceEnvironment.CheckedCacheDirectory).
    /// </summary>
    public static (string? InUse, string? Other) CacheDirectoryFor(ServiceConfiguration config, ServiceEnvironment env) => CacheDirectoryFor(VirusScanRuns(config, env), env);

    /// <summary>The cache directory of a squid that checks (or not) and the other one.</summary>
    public static (string? InUse, string? Other) CacheDirectoryFor(bool checking, ServiceEnvironment env) =>
        checking ? (env.CheckedCacheDirectory, env.CacheDirectory) : (env.CacheDirectory, env.CheckedCacheDirectory);

    /// <summary>
    /// Whether a rendered squid.conf stores its cache in <see cref="ServiceEnvironment.CheckedCacheDirectory"/>: squid's
    /// set-up prepares the directory the file it starts with names, whatever the rendering of this moment would say.
    /// </summary>
    public static bool StoresChecked(string squidConf, ServiceEnvironment env) =>
        env.CheckedCacheDirectory is { } dir && squidConf.Contains($"\ncache_dir ufs {dir} ", StringComparison.Ordinal);

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
        var (wan, lan, vpn) = (WanInterfaces(env), RenderGuard.NftQuoted("interfaces.lan", env.Lan), RenderGuard.NftQuoted("interfaces.vpn", env.Vpn));
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
        // a SYN's MSS lowered to what the route out allows (PPPoE: MTU 1492, MSS 1452; the kernel never raises it), before
        // any accept: a SYN-ACK is already "established"; without it, full-size segments are lost where ICMP is filtered
        sb.Append("    tcp flags syn tcp option maxseg size set rt mtu\n");
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
        if (CacheRuns(c, env))
        {
            // the LAN's plain HTTP to anywhere but the unit goes to squid's intercept port; tcp/443 is left alone. A blocked
            // address is not redirected: squid's own fetch would not pass the forward chain's reject, so it goes there.
            sb.Append("    iifname ").Append(lan).Append(" ip daddr != ").Append(RenderGuard.Nft("dhcp.lanAddress", c.Dhcp.LanAddress))
              .Append(blocked4.Count > 0 ? " ip daddr != @blocked4" : "")
              .Append(" tcp dport 80 redirect to :").Append(Port("interceptPort", env.InterceptPort)).Append('\n');
        }
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

    /// <summary>
    /// The WAN interfaces as one nft expression: the port and the PPP interface as an anonymous set (<c>{ "eth0", "ppp0" }</c>),
    /// each name through <see cref="RenderGuard"/>.
    /// </summary>
    private static string WanInterfaces(ServiceEnvironment env)
    {
        var names = env.WanInterfaces;
        var quoted = names.Select((name, i) => RenderGuard.NftQuoted(i == 0 ? "interfaces.wan" : "interfaces.wanPpp", name)).ToList();
        return quoted.Count == 1 ? quoted[0] : "{ " + string.Join(", ", quoted) + " }";
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
            var categories = c.ContentFilter.Categories ?? [];
            for (var i = 0; i < categories.Count; i++)
            {
                // a name is a file name too: the guard holds before any file is looked for
                if (!FilterCategories.IsName(categories[i]))
                {
                    throw new UnsafeConfigValueException(RenderGuard.DnsmasqName, $"contentFilter.categories[{i}]", "is not a category name");
                }
            }
            foreach (var list in FilterLists.Load(env.FilterListDirectory, categories))
            {
                var category = list.Category;
                var at = $"contentFilter.categories.{category}";
                if (list.Domains is not { } domains)
                {
                    // the reason may quote a refused line: shown, never able to end the comment
                    var problem = new string(list.Problem!.Select(ch => RenderGuard.IsLineBreaking(ch) ? '?' : ch).ToArray());
                    sb.Append("# category ").Append(category).Append(": nothing refused: ").Append(problem).Append('\n');
                    continue;
                }
                sb.Append("# category ").Append(category).Append(": ").Append(domains.Count).Append(" domains\n");
                foreach (var listed in domains)
                {
                    sb.Append("address=/").Append(RenderGuard.Dnsmasq(at, listed)).Append("/\n");
                }
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
        var cacheDirectory = RenderGuard.Squid("hdd.mountPoint", CacheDirectoryFor(c, env).InUse);
        var size = c.Cache.SizeMegabytes is >= ServiceConfigValidator.MinCacheMegabytes and <= ServiceConfigValidator.MaxCacheMegabytes
            ? c.Cache.SizeMegabytes : throw new UnsafeConfigValueException(RenderGuard.SquidName, "cache.sizeMegabytes", $"{c.Cache.SizeMegabytes} is out of range");
        var maxObject = ServiceConfigValidator.MaxObjectMegabytes(c.Cache) is var m && m >= 1 && m <= ServiceConfigValidator.MaxObjectMegabytesLimit
            ? m : throw new UnsafeConfigValueException(RenderGuard.SquidName, "cache.maxObjectMegabytes", $"{m} is out of range");
        var port = Port("cachePort", env.CachePort, RenderGuard.SquidName);
        var intercept = Port("interceptPort", env.InterceptPort, RenderGuard.SquidName);
        if (port == intercept) { throw new UnsafeConfigValueException(RenderGuard.SquidName, "interceptPort", $"{intercept} is also the proxy port"); }
        // the proxy port serves clients configured to use it and the unit's own cache manager queries; the firewall
        // redirects the LAN's tcp/80 to the intercept port (HTTPS is never redirected: TLS is not intercepted)
        sb.Append("http_port ").Append(lanAddress).Append(':').Append(port).Append('\n');
        sb.Append("http_port ").Append(lanAddress).Append(':').Append(intercept).Append(" intercept\n");
        sb.Append("acl lan src ").Append(RenderGuard.Squid("dhcp.prefixLength", Network(lanAddress, c.Dhcp.PrefixLength))).Append('\n');
        sb.Append("acl unit src ").Append(lanAddress).Append("/32\n");
        // the cache manager (statistics) answers the unit itself only
        sb.Append("http_access allow localhost manager\nhttp_access allow unit manager\nhttp_access deny manager\n");
        sb.Append("http_access allow lan\nhttp_access deny all\n");
        // a fixed name and the unit's own resolver: no lookup of the host name, and the content filter applies to the cache too
        sb.Append("visible_hostname tsunagu\ndns_nameservers ").Append(lanAddress).Append('\n');
        // no ICMP probing of origins (a helper process and raw sockets the unit has no use for)
        sb.Append("pinger_enable off\n");
        sb.Append("cache_mem 16 MB\nmaximum_object_size_in_memory 1 MB\n");
        sb.Append("cache_dir ufs ").Append(cacheDirectory).Append(' ').Append(size).Append(" 16 256\n");
        sb.Append("maximum_object_size ").Append(maxObject).Append(" MB\n");
        // a range request (a video segment, a resumed download) starting within the first RangeOffsetLimitMegabytes fetches
        // the whole object so that it is cached; one further in goes to the origin as a range (not cached): squid would
        // otherwise download everything before it first, which on a slow line keeps the client waiting for minutes. A
        // client that goes away does not abort a fetch the cache can still keep
        sb.Append("range_offset_limit ").Append(Math.Min(maxObject, RangeOffsetLimitMegabytes)).Append(" MB\nquick_abort_min -1 KB\n");
        // freshness: the origin's Cache-Control and Expires rule; without them a heuristic of 20% of the age, at most
        // 3 days; dynamic answers are never kept without the origin saying so. A stale object is revalidated with the
        // origin (If-Modified-Since / If-None-Match): the cache stays in step with the origin
        sb.Append("refresh_pattern -i (/cgi-bin/|\\?) 0 0% 0\nrefresh_pattern . 0 20% 4320\n");
        sb.Append("coredump_dir ").Append(cacheDirectory).Append('\n');
        sb.Append("pid_filename ").Append(RenderGuard.Squid("runDirectory", Path.Combine(env.RunDirectory, "squid.pid"))).Append('\n');
        sb.Append("cache_log ").Append(RenderGuard.Squid("runDirectory", Path.Combine(env.RunDirectory, "squid-cache.log"))).Append('\n');
        sb.Append(env.CacheAccessLog is { } log ? $"access_log stdio:{RenderGuard.Squid("cacheAccessLog", log)} squid\n" : "access_log none\n");
        if (VirusScanRuns(c, env))
        {
            // every response goes through c-icap before it is cached or sent; a refused download gets c-icap's page.
            // bypass=off: when the checker is down, downloads fail rather than pass unchecked
            sb.Append("icap_enable on\n");
            sb.Append("icap_service avscan respmod_precache bypass=off icap://127.0.0.1:").Append(Port("icapPort", env.IcapPort, RenderGuard.SquidName))
              .Append('/').Append(IcapService).Append('\n');
            sb.Append("adaptation_access avscan allow all\n");
        }
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
