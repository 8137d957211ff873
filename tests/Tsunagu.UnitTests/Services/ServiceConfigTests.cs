using Tsunagu.Firmware.Services;
using Tsunagu.Firmware.Storage;
using Tsunagu.Hal;
using Tsunagu.Hal.Simulated;
using Tsunagu.Protocol;

namespace Tsunagu.UnitTests.Services;

public class ServiceConfigTests
{
    internal static ServiceConfiguration Valid() => new(
        new FirewallConfig("drop", true, [new PortForward("tcp", 8080, "192.168.10.20", 80)]),
        new DhcpConfig("192.168.10.1", 24, "192.168.10.100", "192.168.10.199", "12h", [new StaticLease("02:00:00:00:00:09", "192.168.10.9", "printer")]),
        new DnsConfig("home.arpa", ["192.0.2.53"]),
        new ContentFilterConfig(true, ["ads.example"]),
        new VpnConfig(true, 51820, "10.9.0.1/24", [new VpnPeer("office", Convert.ToBase64String(new byte[32]), "10.9.0.2/32", null)]),
        new CacheConfig(true, 512));

    internal static ServiceEnvironment WithHdd { get; } = new(
        BoardDescription.Simulated with { Hdd = new BoardHdd("/hdd") }, "/run/tsunagu", "/data/services/state");

    [Test]
    public void Valid_configuration_renders_every_daemon_it_enables()
    {
        var files = ServiceRenderer.Render(Valid(), WithHdd);
        Assert.That(files.Keys, Is.EquivalentTo(new[] { "nftables.nft", "dnsmasq.conf", "wg0.conf", "squid.conf" }));
        Assert.Multiple(() =>
        {
            Assert.That(files["nftables.nft"], Does.Contain("policy drop").And.Contain("tcp dport 8080 dnat ip to 192.168.10.20:80").And.Contain("masquerade"));
            Assert.That(files["dnsmasq.conf"], Does.Contain("dhcp-range=192.168.10.100,192.168.10.199,12h").And.Contain("address=/ads.example/")
                .And.Contain("dhcp-host=02:00:00:00:00:09,192.168.10.9,printer"));
            Assert.That(files["wg0.conf"], Does.Contain("ListenPort = 51820").And.Contain("AllowedIPs = 10.9.0.2/32"));
            Assert.That(files["squid.conf"], Does.Contain("cache_dir ufs /hdd/squid 512"));
        });
    }

    private static IEnumerable<TestCaseData> Invalid()
    {
        var v = Valid();
        yield return new TestCaseData(v with { Firewall = v.Firewall with { DefaultInbound = "accept" } }, "firewall.defaultInbound");
        yield return new TestCaseData(v with { Firewall = v.Firewall with { PortForwards = [new PortForward("tcp", 70000, "192.168.10.20", 80)] } }, "firewall.portForwards[0].externalPort");
        yield return new TestCaseData(v with { Firewall = v.Firewall with { PortForwards = [new PortForward("icmp", 1, "192.168.10.20", 80)] } }, "firewall.portForwards[0].protocol");
        yield return new TestCaseData(v with { Dhcp = v.Dhcp with { RangeStart = "192.168.10" } }, "dhcp.rangeStart");
        yield return new TestCaseData(v with { Dhcp = v.Dhcp with { StaticLeases = [new StaticLease("zz", "192.168.10.9", null)] } }, "dhcp.staticLeases[0].mac");
        yield return new TestCaseData(v with { Dns = v.Dns with { LocalDomain = "bad domain" } }, "dns.localDomain");
        yield return new TestCaseData(v with { ContentFilter = v.ContentFilter with { BlockedDomains = ["-x.example"] } }, "contentFilter.blockedDomains[0]");
        yield return new TestCaseData(v with { Vpn = v.Vpn with { Peers = [new VpnPeer("p", "short", "10.9.0.2/32", null)] } }, "vpn.peers[0].publicKey");
        yield return new TestCaseData(v with { Cache = v.Cache with { SizeMegabytes = 1 } }, "cache.sizeMegabytes");
        yield return new TestCaseData(v with { ContentFilter = v.ContentFilter with { BlockedAddresses = ["10.0.0.0/33"] } }, "contentFilter.blockedAddresses[0]");
        yield return new TestCaseData(v with { Vpn = v.Vpn with { Address = "10.9.0.1/xx" } }, "vpn.address");
        yield return new TestCaseData(v with { Vpn = v.Vpn with { Peers = [v.Vpn.Peers[0] with { AllowedIps = "10.9.0.2" + "/40" }] } }, "vpn.peers[0].allowedIps");
        yield return new TestCaseData(v with { Vpn = v.Vpn with { Peers = [v.Vpn.Peers[0] with { Endpoint = "office.example" }] } }, "vpn.peers[0].endpoint");
        yield return new TestCaseData(v with { Dns = null! }, "dns");
        yield return new TestCaseData(v with { ContentFilter = v.ContentFilter with { Categories = ["Adult"] } }, "contentFilter.categories[0]").SetName("{m}(category upper case)");
        yield return new TestCaseData(v with { ContentFilter = v.ContentFilter with { Categories = ["ads", "ads\nconf-dir=/tmp"] } }, "contentFilter.categories[1]").SetName("{m}(category newline)");
        yield return new TestCaseData(v with { ContentFilter = v.ContentFilter with { Categories = ["ads", "malware", "ads"] } }, "contentFilter.categories[2]").SetName("{m}(category twice)");
        yield return new TestCaseData(v with { ContentFilter = v.ContentFilter with { Categories = ["../x"] } }, "contentFilter.categories[0]").SetName("{m}(category path)");
        yield return new TestCaseData(v with { ContentFilter = v.ContentFilter with { Categories = Enumerable.Range(0, FilterCategories.MaxChosen + 1).Select(i => $"c{i}").ToList() } },
            "contentFilter.categories").SetName("{m}(too many categories)");
        // injection through fields that are copied into dnsmasq.conf, wg0.conf and nftables.nft
        yield return new TestCaseData(v with { Dhcp = v.Dhcp with { LeaseTime = "12h\ndhcp-script=/tmp/x" } }, "dhcp.leaseTime").SetName("{m}(leaseTime newline)");
        yield return new TestCaseData(v with { Dhcp = v.Dhcp with { LeaseTime = "banana" } }, "dhcp.leaseTime").SetName("{m}(leaseTime word)");
        yield return new TestCaseData(v with { Dhcp = v.Dhcp with { StaticLeases = [new StaticLease("02:00:00:00:00:09", "192.168.10.9", "printer\nconf-dir=/tmp")] } },
            "dhcp.staticLeases[0].hostname").SetName("{m}(hostname newline)");
        yield return new TestCaseData(v with { Dhcp = v.Dhcp with { StaticLeases = [new StaticLease("02:00:00:00:00:09", "192.168.10.9", "printer,set:x")] } },
            "dhcp.staticLeases[0].hostname").SetName("{m}(hostname comma)");
        yield return new TestCaseData(v with { Dhcp = v.Dhcp with { StaticLeases = [new StaticLease("02:00:00:00:00:09", "192.168.10.9", "45")] } },
            "dhcp.staticLeases[0].hostname").SetName("{m}(hostname read as lease time)");
        yield return new TestCaseData(v with { Dhcp = v.Dhcp with { StaticLeases = [new StaticLease("02:00:00:00:00:09", "010.0.0.1", null)] } },
            "dhcp.staticLeases[0].address").SetName("{m}(octal address)");
        yield return new TestCaseData(v with { Dhcp = v.Dhcp with { LanAddress = "2001:db8::1" } }, "dhcp.lanAddress").SetName("{m}(IPv6 LAN address)");
        yield return new TestCaseData(v with { Vpn = v.Vpn with { Peers = [v.Vpn.Peers[0] with { AllowedIps = "10.9.0.2/32\n" }] } }, "vpn.peers[0].allowedIps").SetName("{m}(allowedIps newline)");
        yield return new TestCaseData(v with { Vpn = v.Vpn with { Peers = [v.Vpn.Peers[0] with { AllowedIps = "10.9.0.2/32\0" }] } }, "vpn.peers[0].allowedIps").SetName("{m}(allowedIps NUL)");
        yield return new TestCaseData(v with { Vpn = v.Vpn with { Peers = [v.Vpn.Peers[0] with { Endpoint = "192.0.2.7:51820\0" }] } }, "vpn.peers[0].endpoint").SetName("{m}(endpoint NUL)");
        yield return new TestCaseData(v with { Dhcp = v.Dhcp with { StaticLeases = [new StaticLease("02:00:00:00:00:0\0", "192.168.10.9", null)] } }, "dhcp.staticLeases[0].mac").SetName("{m}(MAC NUL)");
        yield return new TestCaseData(v with { Vpn = v.Vpn with { Peers = [v.Vpn.Peers[0] with { PublicKey = "AAAAAAAAAAAAAAAAAAAAAA\nAAAAAAAAAAAAAAAAAAAAA=" }] } },
            "vpn.peers[0].publicKey").SetName("{m}(key with newline)");
        yield return new TestCaseData(v with { Vpn = v.Vpn with { Enabled = false, Peers = [v.Vpn.Peers[0] with { Name = "x\n[Peer]" }] } }, "vpn.peers[0].name").SetName("{m}(peer of a disabled VPN)");
        yield return new TestCaseData(v with { ContentFilter = v.ContentFilter with { BlockedAddresses = ["10.0.0.1/8"] } }, "contentFilter.blockedAddresses[0]").SetName("{m}(host bits)");
        yield return new TestCaseData(v with { Dns = v.Dns with { Upstreams = Enumerable.Repeat("192.0.2.53", 9).ToList() } }, "dns.upstreams").SetName("{m}(too many upstreams)");
        yield return new TestCaseData(v with { Dhcp = v.Dhcp with { StaticLeases = [.. v.Dhcp.StaticLeases, v.Dhcp.StaticLeases[0] with { Mac = "02:00:00:00:00:0a" }] } },
            "dhcp.staticLeases[1].address").SetName("{m}(address reserved twice: dnsmasq refuses it)");
        yield return new TestCaseData(v with { Firewall = v.Firewall with { PortForwards = [.. v.Firewall.PortForwards, v.Firewall.PortForwards[0] with { InternalPort = 81 }] } },
            "firewall.portForwards[1].externalPort").SetName("{m}(port forwarded twice)");
        // null entries in lists name the entry (they were a NullReferenceException)
        yield return new TestCaseData(v with { Firewall = v.Firewall with { PortForwards = [null!] } }, "firewall.portForwards[0]").SetName("{m}(null port forward)");
        yield return new TestCaseData(v with { Dhcp = v.Dhcp with { StaticLeases = [.. v.Dhcp.StaticLeases, v.Dhcp.StaticLeases[0] with { Mac = "02:00:00:00:00:0a", Address = "192.168.10.10" }, null!] } },
            "dhcp.staticLeases[2]").SetName("{m}(null static lease)");
        yield return new TestCaseData(v with { Vpn = v.Vpn with { Peers = [null!] } }, "vpn.peers[0]").SetName("{m}(null peer)");
        yield return new TestCaseData(v with { Vpn = v.Vpn with { Peers = [v.Vpn.Peers[0] with { PublicKey = null! }] } }, "vpn.peers[0].publicKey").SetName("{m}(null key)");
        yield return new TestCaseData(v with { Vpn = v.Vpn with { Peers = [v.Vpn.Peers[0] with { AllowedIps = null! }] } }, "vpn.peers[0].allowedIps").SetName("{m}(null allowedIps)");
    }

    private static IEnumerable<TestCaseData> Unsafe()
    {
        var v = Valid();
        yield return new TestCaseData(v with { Dhcp = v.Dhcp with { LeaseTime = "12h\ndhcp-script=/tmp/x" } }, WithHdd, "dnsmasq", "dhcp.leaseTime").SetName("{m}(leaseTime newline)");
        yield return new TestCaseData(v with { Dhcp = v.Dhcp with { StaticLeases = [new StaticLease("02:00:00:00:00:09", "192.168.10.9", "p,set:x")] } }, WithHdd, "dnsmasq",
            "dhcp.staticLeases[0].hostname").SetName("{m}(hostname comma)");
        yield return new TestCaseData(v with { ContentFilter = v.ContentFilter with { BlockedDomains = ["a/#/b"] } }, WithHdd, "dnsmasq", "contentFilter.blockedDomains[0]").SetName("{m}(domain slash)");
        yield return new TestCaseData(v with { Dns = v.Dns with { Upstreams = ["1.2.3.4\u2028server=6.6.6.6"] } }, WithHdd, "dnsmasq", "dns.upstreams[0]").SetName("{m}(line separator)");
        yield return new TestCaseData(v with { Vpn = v.Vpn with { Peers = [v.Vpn.Peers[0] with { Name = "x\r\n[Peer]" }] } }, WithHdd, "WireGuard", "vpn.peers[0].name").SetName("{m}(peer name)");
        yield return new TestCaseData(v with { Vpn = v.Vpn with { Peers = [v.Vpn.Peers[0] with { AllowedIps = "0.0.0.0/0 # x" }] } }, WithHdd, "WireGuard", "vpn.peers[0].allowedIps").SetName("{m}(wg comment)");
        yield return new TestCaseData(v with { Firewall = v.Firewall with { PortForwards = [new PortForward("tcp", 1, "1.2.3.4 accept", 2)] } }, WithHdd, "nftables",
            "firewall.portForwards[0].internalAddress").SetName("{m}(nft token)");
        yield return new TestCaseData(v, WithHdd with { Board = WithHdd.Board with { Interfaces = WithHdd.Board.Interfaces with { Wan = "wan\" accept" } } }, "nftables", "interfaces.wan")
            .SetName("{m}(nft quote)");
        yield return new TestCaseData(v, WithHdd with { RunDirectory = "/run/ts unagu" }, "dnsmasq", "runDirectory").SetName("{m}(path with space)");
        yield return new TestCaseData(v, WithHdd with { Board = WithHdd.Board with { Hdd = new BoardHdd("/hdd \\") } }, "squid", "hdd.mountPoint").SetName("{m}(squid continuation)");
        yield return new TestCaseData(v with { Cache = v.Cache with { SizeMegabytes = -1 } }, WithHdd, "squid", "cache.sizeMegabytes").SetName("{m}(negative cache)");
        yield return new TestCaseData(v with { ContentFilter = v.ContentFilter with { Categories = ["ads", "../../etc/x"] } }, WithHdd with { FilterListDirectory = "/data/apps/filter-lists/current" },
            "dnsmasq", "contentFilter.categories[1]").SetName("{m}(category path)");
        yield return new TestCaseData(v with { ContentFilter = v.ContentFilter with { Categories = ["ads\naddress=/x/1.2.3.4"] } }, WithHdd, "dnsmasq", "contentFilter.categories[0]")
            .SetName("{m}(category newline)");
    }

    /// <summary>The renderer refuses on its own (validation bypassed) anything that could start a directive.</summary>
    [TestCaseSource(nameof(Unsafe))]
    public void Renderer_refuses_a_value_that_could_start_a_directive_even_without_validation(ServiceConfiguration config, ServiceEnvironment env, string daemon, string field)
    {
        var e = Assert.Throws<UnsafeConfigValueException>(() => ServiceRenderer.RenderChecked(config, env));
        Assert.That((e!.Daemon, e.Field), Is.EqualTo((daemon, field)));
        Assert.That(e.Message, Does.StartWith(field + ":"));
    }

    [TestCaseSource(nameof(Invalid))]
    public void Invalid_configuration_is_refused_naming_the_field(ServiceConfiguration config, string field)
    {
        var e = Assert.Throws<InvalidServiceConfigException>(() => ServiceRenderer.Render(config, WithHdd));
        Assert.That(e!.Field, Is.EqualTo(field));
        Assert.That(e.Message, Does.StartWith(field + ":"));
    }

    [Test]
    public void Cache_is_rendered_only_on_a_board_with_an_hdd()
    {
        var noHdd = WithHdd with { Board = BoardDescription.Simulated };
        Assert.That(ServiceRenderer.Render(Valid(), noHdd).Keys, Does.Not.Contain(ServiceRenderer.Squid));
        Assert.That(ServiceCatalog.Build(Valid(), noHdd, "/x").Select(s => s.Name), Is.EqualTo(new[] { "firewall", "lan", "dnsmasq", "wireguard" }));
        Assert.That(ServiceCatalog.Build(Valid(), WithHdd, "/x").Select(s => s.Name), Is.EqualTo(new[] { "firewall", "lan", "dnsmasq", "wireguard", "squid" }));
    }

    [Test]
    public void A_change_touches_only_the_digest_of_the_service_it_concerns()
    {
        var before = ServiceCatalog.Build(Valid(), WithHdd, "/x").ToDictionary(s => s.Name, s => s.Digest);
        var changed = Valid() with { Firewall = Valid().Firewall with { PortForwards = [] } };
        var after = ServiceCatalog.Build(changed, WithHdd, "/y").ToDictionary(s => s.Name, s => s.Digest);
        Assert.That(before.Keys.Where(k => before[k] != after[k]), Is.EqualTo(new[] { "firewall" }));
    }

    [Test]
    public async Task Applier_switches_revisions_and_keeps_the_running_one_when_a_new_one_is_invalid()
    {
        var root = Path.Combine(Path.GetTempPath(), "tsunagu-svc-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(root);
        try
        {
            using var store = StateStore.Open(root);
            var manager = new SimulatedServiceManager();
            using var applier = new ServiceApplier(root, manager, WithHdd with { RunDirectory = Path.Combine(root, "run"), StateDirectory = Path.Combine(root, "state") },
                store, TimeProvider.System, _ => { }, TimeSpan.Zero);
            Assert.That(applier.CurrentRevision(), Is.Null);
            await applier.ApplyAsync(1, Valid(), CancellationToken.None);
            Assert.That(applier.CurrentRevision(), Is.EqualTo(1));
            var bad = Valid() with { Dhcp = Valid().Dhcp with { LanAddress = "nope" } };
            Assert.ThrowsAsync<InvalidServiceConfigException>(() => applier.ApplyAsync(2, bad, CancellationToken.None));
            Assert.That(applier.CurrentRevision(), Is.EqualTo(1));
            Assert.That(File.ReadAllText(Path.Combine(applier.Root, "current", "nftables.nft")), Does.Contain("dnat ip to"));
            await applier.ApplyAsync(2, Valid() with { Firewall = Valid().Firewall with { PortForwards = [] } }, CancellationToken.None);
            Assert.That(applier.CurrentRevision(), Is.EqualTo(2));
            Assert.That(File.ReadAllText(Path.Combine(applier.Root, "current", "nftables.nft")), Does.Not.Contain("dnat ip to"));
            Assert.That(Directory.GetDirectories(applier.Root, "rev-*").Select(Path.GetFileName), Is.EqualTo(new[] { "rev-2" }));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }
}
