using Tsunagu.Firmware.Services;
using Tsunagu.Hal;

namespace Tsunagu.UnitTests.Services;

/// <summary>
/// The firewall's WAN rules on a PPPoE line: the LAN's traffic leaves by pppd's interface (`ppp0`), not by the board's WAN
/// port, so every rule about the WAN names both; and forwarded SYNs have their MSS clamped to the route's MTU.
/// </summary>
public class WanInterfaceRulesTests
{
    private static readonly ServiceEnvironment Env = new(BoardDescription.Simulated with
    {
        Interfaces = BoardDescription.Simulated.Interfaces with { Wan = "eth0", Lan = "eth1" },
    }, "/run/tsunagu", "/data/services/state");

    private const string WanSet = "{ \"eth0\", \"ppp0\" }";

    private static string Nft(ServiceEnvironment env) => ServiceRenderer.Render(ServiceConfigTests.Valid(), env)[ServiceRenderer.Nftables];

    private static List<string> Lines(string ruleset) => ruleset.Split('\n').Select(l => l.Trim()).ToList();

    [Test]
    public void Every_wan_rule_names_the_port_and_the_ppp_interface()
    {
        var lines = Lines(Nft(Env));
        Assert.That(Env.WanPpp, Is.EqualTo("ppp0"), "the interface pppd's `ifname` gives the main WAN port's session");
        Assert.That(lines, Does.Contain($"iifname \"eth1\" oifname {WanSet} accept"), "the LAN is forwarded out by either");
        Assert.That(lines, Does.Contain($"oifname {WanSet} masquerade"), "and masqueraded out by either");
        Assert.That(lines, Does.Contain($"iifname {WanSet} udp dport 51820 accept"), "the VPN listens on either");
        Assert.That(lines, Does.Contain($"iifname {WanSet} tcp dport 8080 dnat ip to 192.168.10.20:80"), "a port forward comes in by either");
        var naming = lines.Where(l => l.Contains("\"eth0\"") || l.Contains("\"ppp0\"")).ToList();
        Assert.That(naming, Has.Count.EqualTo(4));
        Assert.That(naming, Has.All.Contains(WanSet), "no rule names one of the two alone");
    }

    [Test]
    public void A_dhcp_or_static_line_keeps_every_rule_on_the_port()
    {
        // against the ruleset that names the port alone (an environment whose PPP interface is the port: nothing to add),
        // the only difference is the set in place of the port: no rule of a DHCP or static line is lost or moved
        var both = Nft(Env);
        var portOnly = Nft(Env with { WanPpp = "eth0" });
        Assert.That(Lines(portOnly).Where(l => l.Contains("\"eth0\"")).ToList(), Has.Count.EqualTo(4).And.None.Contains("{"));
        Assert.That(both.Replace(WanSet, "\"eth0\"", StringComparison.Ordinal), Is.EqualTo(portOnly));
    }

    [Test]
    public void A_renamed_ppp_interface_is_the_one_named()
    {
        var lines = Lines(Nft(Env with { WanPpp = "ppp7" }));
        Assert.That(lines, Does.Contain("oifname { \"eth0\", \"ppp7\" } masquerade"));
        Assert.That(lines, Has.None.Contains("\"ppp0\""));
    }

    [Test]
    public void Forwarded_syns_have_their_mss_clamped_before_any_accept()
    {
        var lines = Lines(Nft(Env));
        const string clamp = "tcp flags syn tcp option maxseg size set rt mtu";
        Assert.That(lines.Count(l => l == clamp), Is.EqualTo(1));
        var forward = lines.IndexOf("chain forward {");
        var end = lines.IndexOf("}", forward);
        var chain = lines[forward..end];
        Assert.That(chain, Does.Contain(clamp), "in the forward chain");
        Assert.That(chain.IndexOf(clamp), Is.LessThan(chain.FindIndex(l => l.EndsWith(" accept", StringComparison.Ordinal))),
            "before the first accept: a SYN-ACK is already established");
    }

    [TestCase("ppp0\" accept")]
    [TestCase("ppp0 }")]
    [TestCase("ppp0\n")]
    [TestCase("")]
    public void An_unsafe_ppp_interface_name_is_refused_by_the_guard(string name)
    {
        var e = Assert.Throws<UnsafeConfigValueException>(() => ServiceRenderer.RenderChecked(ServiceConfigTests.Valid(), Env with { WanPpp = name }));
        Assert.That((e!.Daemon, e.Field), Is.EqualTo(("nftables", "interfaces.wanPpp")));
    }
}
