using Tsunagu.Firmware.Services;
using Tsunagu.Protocol;

namespace Tsunagu.UnitTests;

public class ServiceConfigTests
{
    internal static ServiceConfiguration Valid() => new(
        new FirewallConfig("drop", true, [new PortForward("tcp", 8080, "192.168.10.20", 80)]),
        new DhcpConfig("192.168.10.1", 24, "192.168.10.100", "192.168.10.199", "12h", [new StaticLease("02:00:00:00:00:09", "192.168.10.9", "printer")]),
        new DnsConfig("home.arpa", ["192.0.2.53"]),
        new ContentFilterConfig(true, ["ads.example"]),
        new VpnConfig(true, 51820, "10.9.0.1/24", [new VpnPeer("office", Convert.ToBase64String(new byte[32]), "10.9.0.2/32", null)]),
        new CacheConfig(true, 512));

    [Test]
    public void Valid_configuration_renders_every_daemon_it_enables()
    {
        var files = ServiceRenderer.Render(Valid());
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
    }

    [TestCaseSource(nameof(Invalid))]
    public void Invalid_configuration_is_refused_naming_the_field(ServiceConfiguration config, string field)
    {
        var e = Assert.Throws<InvalidServiceConfigException>(() => ServiceRenderer.Render(config));
        Assert.That(e!.Field, Is.EqualTo(field));
        Assert.That(e.Message, Does.StartWith(field + ":"));
    }

    [Test]
    public void Applier_switches_revisions_and_keeps_the_running_one_when_a_new_one_is_invalid()
    {
        var root = Path.Combine(Path.GetTempPath(), "tsunagu-svc-" + Guid.NewGuid().ToString("N"));
        try
        {
            var applier = new ServiceApplier(root);
            Assert.That(applier.CurrentRevision(), Is.Null);
            applier.Apply(1, Valid());
            Assert.That(applier.CurrentRevision(), Is.EqualTo(1));
            var bad = Valid() with { Dhcp = Valid().Dhcp with { LanAddress = "nope" } };
            Assert.Throws<InvalidServiceConfigException>(() => applier.Apply(2, bad));
            Assert.That(applier.CurrentRevision(), Is.EqualTo(1));
            Assert.That(File.ReadAllText(Path.Combine(applier.Root, "current", "nftables.nft")), Does.Contain("dnat ip to"));
            applier.Apply(2, Valid() with { Firewall = Valid().Firewall with { PortForwards = [] } });
            Assert.That(applier.CurrentRevision(), Is.EqualTo(2));
            Assert.That(File.ReadAllText(Path.Combine(applier.Root, "current", "nftables.nft")), Does.Not.Contain("dnat ip to"));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }
}
