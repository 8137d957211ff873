using Microsoft.Extensions.Time.Testing;
using Tsunagu.Hal;
using Tsunagu.Hal.Linux;
using Tsunagu.Protocol;

namespace Tsunagu.UnitTests.Hal;

/// <summary>The WAN link: the DHCP, static and PPPoE adapters on one interface, chosen by the account method.</summary>
public class WanLinkTests : FakeRootTests
{
    private (WanLinkByMethod Link, RecordingRunner Runner, FakeTimeProvider Time) Wan()
    {
        Write("net/eth0/carrier", "1\n");
        Write("net/eth0/operstate", "up\n");
        var runner = new RecordingRunner
        {
            Respond = c => c.ToString() == "ip -4 -o addr show dev eth0"
                ? new CommandResult(c, 0, "2: eth0    inet 10.0.2.15/24 brd 10.0.2.255 scope global eth0\\       valid_lft forever preferred_lft forever\n", "", false)
                : null,
        };
        var time = new FakeTimeProvider(Start);
        var options = new InterfaceWanOptions { Interface = "eth0", DhcpScript = "/etc/udhcpc.script", NetClassRoot = Path.Combine(_dir, "net") };
        var link = new WanLinkByMethod("eth0", ("dhcp", new DhcpWanLink(options, runner, time)), ("static", new StaticWanLink(options, runner, time)),
            ("pppoe", new PppoeWanLink("eth0")));
        return (link, runner, time);
    }

    [Test]
    public async Task Dhcp_link_runs_udhcpc_once_and_reads_the_address()
    {
        var (link, runner, _) = Wan();
        await link.UpAsync(LinkRole.Provisional, new WanAccount("dhcp"), CancellationToken.None);
        Assert.That(runner.Commands, Is.EqualTo(new[]
        {
            "ip link set eth0 up",
            "ip addr flush dev eth0",
            "udhcpc -i eth0 -n -q -t 5 -T 3 -s /etc/udhcpc.script",
            "ip -4 -o addr show dev eth0",
        }));
        Assert.That((link.IsUp, link.Role, link.Address), Is.EqualTo((true, (LinkRole?)LinkRole.Provisional, "10.0.2.15")));
        Assert.That(() => link.EnsureRoute(), Throws.Nothing);
        using var inner = new HttpClientHandler();
        Assert.That(link.WrapHandler(inner), Is.SameAs(inner));

        runner.Commands.Clear();
        await link.DownAsync(CancellationToken.None);
        Assert.That(runner.Commands, Is.EqualTo(new[] { "ip route flush dev eth0", "ip addr flush dev eth0" }));
        Assert.That((link.IsUp, link.Role, link.Address), Is.EqualTo((false, (LinkRole?)null, (string?)null)));
        var e = Assert.Throws<HalException>(() => link.EnsureRoute());
        Assert.That(e!.Message, Does.Contain("eth0 is down"));
    }

    [Test]
    public void Dhcp_without_a_lease_is_transient_and_pppoe_is_not_supported()
    {
        var (link, runner, _) = Wan();
        runner.Respond = c => c.Program == "udhcpc" ? new CommandResult(c, 1, "", "udhcpc: no lease, failing\n", false) : null;
        var e = Assert.ThrowsAsync<HalException>(() => link.UpAsync(LinkRole.Main, new WanAccount("dhcp"), CancellationToken.None));
        Assert.That(e!.IsTransient, Is.True);
        Assert.That(e.Message, Does.Contain("eth0: no DHCP lease for the Main link").And.Contain("no lease, failing"));
        Assert.That(link.IsUp, Is.False);

        runner.Commands.Clear();
        var p = Assert.ThrowsAsync<HalException>(() => link.UpAsync(LinkRole.Main, new WanAccount("pppoe", "user", "pw"), CancellationToken.None));
        Assert.That(p!.IsTransient, Is.False);
        Assert.That(p.Message, Does.Contain("PPPoE"));
        Assert.That(runner.Commands, Is.Empty, "nothing is touched for an unsupported method");
    }

    [Test]
    public async Task Static_link_sets_address_gateway_and_default_route()
    {
        var (link, runner, _) = Wan();
        await link.UpAsync(LinkRole.Main, new WanAccount("static", Address: "203.0.113.7", Gateway: "203.0.113.1"), CancellationToken.None);
        Assert.That(runner.Commands, Is.EqualTo(new[]
        {
            "ip link set eth0 up",
            "ip addr flush dev eth0",
            "ip addr add 203.0.113.7/32 dev eth0",
            "ip route replace 203.0.113.1 dev eth0",
            "ip route replace default via 203.0.113.1 dev eth0",
        }));
        Assert.That(link.Address, Is.EqualTo("203.0.113.7"));

        runner.Commands.Clear();
        await link.UpAsync(LinkRole.Main, new WanAccount("static", Address: "192.0.2.9/24", Gateway: "192.0.2.1"), CancellationToken.None);
        Assert.That(runner.Commands, Does.Contain("ip addr add 192.0.2.9/24 dev eth0"));
        Assert.That(link.Address, Is.EqualTo("192.0.2.9"));

        runner.Respond = c => c.Arguments.Contains("default") ? new CommandResult(c, 2, "", "RTNETLINK answers: Network is unreachable", false) : null;
        var e = Assert.ThrowsAsync<HalException>(() => link.UpAsync(LinkRole.Main, new WanAccount("static", Address: "192.0.2.9/24", Gateway: "198.51.100.1"), CancellationToken.None));
        Assert.That(e!.Message, Does.Contain("eth0: cannot set the default route").And.Contain("Network is unreachable"));
        var missing = Assert.ThrowsAsync<HalException>(() => link.UpAsync(LinkRole.Main, new WanAccount("static"), CancellationToken.None));
        Assert.That(missing!.Message, Does.Contain("has no address"));
    }

    [Test]
    public async Task Link_lost_completes_when_the_carrier_goes_down()
    {
        var (link, _, time) = Wan();
        await link.UpAsync(LinkRole.Main, new WanAccount("dhcp"), CancellationToken.None);
        var lost = link.LinkLost;
        time.Advance(TimeSpan.FromSeconds(3));
        await Task.Delay(50);
        Assert.That(lost.IsCompleted, Is.False, "the carrier is still there");
        Write("net/eth0/carrier", "0\n");
        time.Advance(TimeSpan.FromSeconds(1));
        await lost.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.That(link.IsUp, Is.False);

        // a new Up gives a fresh LinkLost; Down stops watching without completing it
        Write("net/eth0/carrier", "1\n");
        await link.UpAsync(LinkRole.Main, new WanAccount("dhcp"), CancellationToken.None);
        var second = link.LinkLost;
        Assert.That(second, Is.Not.SameAs(lost));
        await link.DownAsync(CancellationToken.None);
        Write("net/eth0/operstate", "down\n");
        time.Advance(TimeSpan.FromSeconds(5));
        await ((InterfaceWanLink)link.Current).Watching;
        Assert.That(second.IsCompleted, Is.False);
        Assert.That(((InterfaceWanLink)link.Current).HasCarrier(), Is.False, "operstate down");
    }

    [Test]
    public async Task The_account_method_picks_the_adapter_and_the_link_it_replaces_is_lost()
    {
        var (link, runner, _) = Wan();
        await link.UpAsync(LinkRole.Provisional, new WanAccount("DHCP"), CancellationToken.None);
        Assert.That(link.Current, Is.InstanceOf<DhcpWanLink>());
        var provisional = link.LinkLost;
        await link.UpAsync(LinkRole.Main, new WanAccount("static", Address: "203.0.113.7", Gateway: "203.0.113.1"), CancellationToken.None);
        Assert.That(link.Current, Is.InstanceOf<StaticWanLink>());
        await provisional.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.That((link.IsUp, link.Role, link.Address), Is.EqualTo((true, (LinkRole?)LinkRole.Main, "203.0.113.7")));
        Assert.That(link.LinkLost.IsCompleted, Is.False, "the main link is up");

        runner.Commands.Clear();
        var e = Assert.ThrowsAsync<HalException>(() => link.UpAsync(LinkRole.Main, new WanAccount("carrier-pigeon"), CancellationToken.None));
        Assert.That(e!.Message, Does.Contain("'carrier-pigeon' is not supported").And.Contain("dhcp, static, pppoe"));
        Assert.That(runner.Commands, Is.Empty);
        Assert.That(link.IsUp, Is.True, "a refused method leaves the link up as it was");

        var main = link.LinkLost;
        var p = Assert.ThrowsAsync<HalException>(() => link.UpAsync(LinkRole.Main, new WanAccount("pppoe", "user", "pw"), CancellationToken.None));
        Assert.That(p!.Message, Does.Contain("PPPoE, which is not supported yet"));
        Assert.That(runner.Commands, Is.Empty);
        Assert.That((link.IsUp, link.Current, main.IsCompleted), Is.EqualTo((true, link.Current, false)), "PPPoE refused: the static link is still up and not lost");
        Assert.That(link.Current, Is.InstanceOf<StaticWanLink>());
    }
}
