using System.Security.Cryptography;
using System.Text;
using Tsunagu.Hal;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Services;

/// <summary>
/// Turns a rendered configuration into the services the service manager runs, in start order: the firewall
/// first (so nothing is ever open before it is up), the LAN address, DHCP/DNS, the VPN, the cache. Each
/// service's digest covers only its own configuration, so a change reloads only what it touches.
/// </summary>
public static class ServiceCatalog
{
    public const string Firewall = "firewall";
    public const string Lan = "lan";
    public const string DhcpDns = "dnsmasq";
    public const string Vpn = "wireguard";
    public const string Cache = "squid";
    public const string VirusEngine = "clamd";
    public const string VirusIcap = "c-icap";

    /// <param name="directory">Where the rendered files are: a staged revision (validation) or `services/current`.</param>
    /// <param name="rendered">The files as they are in <paramref name="directory"/> (each service's digest is of its file's
    /// bytes, so a service is restarted exactly when what it reads changed); null: rendered from <paramref name="config"/>.</param>
    public static IReadOnlyList<ServiceSpec> Build(ServiceConfiguration config, ServiceEnvironment env, string directory, IReadOnlyDictionary<string, string>? rendered = null)
    {
        var files = rendered ?? ServiceRenderer.Render(config, env);
        string File(string name) => Path.Combine(directory, name);
        var services = new List<ServiceSpec>
        {
            FirewallSpec(File(ServiceRenderer.Nftables), files[ServiceRenderer.Nftables]),
            new(Lan, Digest($"{config.Dhcp.LanAddress}/{config.Dhcp.PrefixLength}", env.Lan))
            {
                Setup =
                [
                    new CommandLine("ip", "link", "set", env.Lan, "up"),
                    new CommandLine("ip", "-4", "address", "flush", "dev", env.Lan, "scope", "global"),
                    new CommandLine("ip", "address", "add", $"{config.Dhcp.LanAddress}/{config.Dhcp.PrefixLength}", "dev", env.Lan),
                ],
            },
            new(DhcpDns, Digest(files[ServiceRenderer.Dnsmasq]))
            {
                Checks = [new CommandLine("dnsmasq", "--test", "-C", File(ServiceRenderer.Dnsmasq))],
                Daemon = new CommandLine("dnsmasq", "--keep-in-foreground", "-C", File(ServiceRenderer.Dnsmasq)),
            },
        };
        if (files.TryGetValue(ServiceRenderer.WireGuard, out var wg))
        {
            var configure = new List<CommandLine>
            {
                new("wg", "setconf", env.Vpn, File(ServiceRenderer.WireGuard)),
                new("wg", "set", env.Vpn, "private-key", env.VpnKeyFile),
            };
            if (config.Vpn.Address is { } address)
            {
                configure.Add(new CommandLine("ip", "address", "replace", address, "dev", env.Vpn));
            }
            configure.Add(new CommandLine("ip", "link", "set", env.Vpn, "up"));
            services.Add(new ServiceSpec(Vpn, Digest(wg, config.Vpn.Address ?? ""))
            {
                // userspace WireGuard: works on every kernel; the variable lets it run where the module exists too
                Daemon = new CommandLine("wireguard-go", "--foreground", env.Vpn),
                DaemonEnvironment = new Dictionary<string, string> { ["WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD"] = "1" },
                Configure = configure,
                Probes = [new CommandLine("wg", "show", env.Vpn, "listen-port")],
            });
        }
        if (files.TryGetValue(ServiceRenderer.Clamd, out var clamd) && files.TryGetValue(ServiceRenderer.CIcap, out var icap))
        {
            // before squid, which sends every download to c-icap, which asks clamd
            services.Add(new ServiceSpec(VirusEngine, Digest(clamd))
            {
                // clamd refuses to start without a database, and the image carries none: the first signatures come as an
                // update program, and until then the renderer leaves clamd out (ServiceRenderer.VirusScanWaits)
                Setup = [new CommandLine("mkdir", "-p", env.SignatureDirectory)],
                Daemon = new CommandLine("clamd", "-c", File(ServiceRenderer.Clamd)),
                // clamd opens its socket once the database is loaded: a configuration or a database it refuses never answers
                Ready = [new CommandLine("clamdscan", $"--config-file={File(ServiceRenderer.Clamd)}", "--ping", "1")],
                ReadyTimeout = SignatureLoadTimeout,
            });
            services.Add(new ServiceSpec(VirusIcap, Digest(icap))
            {
                Daemon = new CommandLine("c-icap", "-N", "-D", "-f", File(ServiceRenderer.CIcap)),
                // c-icap answers OPTIONS for the scanning service only when its modules loaded (c-icap-client exits 0 either way)
                Ready = [IcapReady(env.IcapPort)],
            });
        }
        if (files.TryGetValue(ServiceRenderer.Squid, out var squid))
        {
            var (cacheDirectory, otherCacheDirectory) = ServiceRenderer.CacheDirectoryFor(ServiceRenderer.StoresChecked(squid, env), env);
            services.Add(new ServiceSpec(Cache, Digest(squid))
            {
                Checks = [new CommandLine("squid", "-k", "parse", "-f", File(ServiceRenderer.Squid))],
                // the HDD may have been wiped: create the cache structure again before every start. The other store goes:
                // objects stored unchecked are never served once virus checking runs, and the disk does not keep both
                Setup =
                [
                    DiscardCache(otherCacheDirectory!),
                    new CommandLine("mkdir", "-p", cacheDirectory!),
                    new CommandLine("chown", "proxy:proxy", cacheDirectory!),
                    new CommandLine("squid", "-N", "-z", "-f", File(ServiceRenderer.Squid)),
                ],
                Daemon = new CommandLine("squid", "-N", "-f", File(ServiceRenderer.Squid)),
                // squid serves once its cache manager answers on the proxy port (as the unit's statistics read it)
                Ready = [new CommandLine("busybox", "wget", "-q", "-Y", "off", "-O", "/dev/null",
                    $"http://{config.Dhcp.LanAddress}:{env.CachePort}{CacheStatistics.CountersPath}")],
            });
        }
        return services;
    }

    /// <summary>How long clamd may take to load its signatures at start (a full database takes tens of seconds on a small board).</summary>
    public static readonly TimeSpan SignatureLoadTimeout = TimeSpan.FromMinutes(3);

    /// <summary>
    /// Discards a cache store: renamed at once to `DIR.discarded.PID` (squid never reads it again) and deleted with every
    /// earlier discarded one in the background, so that a store of many files does not hold squid's start past the
    /// set-up's time limit (a power cut during the deletion leaves a discarded store, deleted at the next start). A store
    /// that cannot be renamed fails the set-up, and squid does not start on a cache it would share with it.
    /// </summary>
    internal static CommandLine DiscardCache(string directory) =>
        new("sh", "-c", "[ ! -e \"$1\" ] || mv -- \"$1\" \"$1.discarded.$$\" || exit 1; rm -rf -- \"$1\".discarded.* </dev/null >/dev/null 2>&1 &", "discard-cache",
            RenderGuard.Squid("hdd.mountPoint", directory));

    /// <summary>An ICAP OPTIONS request for the scanning service that succeeds only on c-icap's "200 OK".</summary>
    private static CommandLine IcapReady(int port) =>
        new("sh", "-c", "c-icap-client -i 127.0.0.1 -p \"$1\" -s \"$2\" -v 2>&1 | grep -q '^[[:space:]]*ICAP/1.0 200'", "icap-ready",
            port is >= 1 and <= 65535 ? port.ToString(System.Globalization.CultureInfo.InvariantCulture)
                : throw new UnsafeConfigValueException(RenderGuard.SquidName, "icapPort", $"{port} is not a port number"),
            ServiceRenderer.IcapService);

    /// <summary>Only the fail-closed firewall: what runs when there is no configuration to run.</summary>
    public static IReadOnlyList<ServiceSpec> FailClosed(string rulesetFile, string ruleset) => [FirewallSpec(rulesetFile, ruleset)];

    private static ServiceSpec FirewallSpec(string file, string ruleset) => new(Firewall, Digest(ruleset))
    {
        Checks = [new CommandLine("nft", "--check", "--file", file)],
        // nft -f is one transaction: the old ruleset stays until the new one is complete, so the WAN is never open
        Setup = [new CommandLine("nft", "--file", file), new CommandLine("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")],
        Probes = [new CommandLine("nft", "list", "table", "inet", ServiceRenderer.Table)],
    };

    private static string Digest(params string[] parts) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(string.Join("\0", parts))))[..16];
}
