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
        var runner = new RecordingRunner();
        // udhcpc's script and pppd's ip-up hook record their events; here the test plays them
        runner.OnStart = d =>
        {
            if (d.Command.Program == "udhcpc") { Write("run/dhcp.state", "bound 10.0.2.15\n"); }
            if (d.Command.Program == "pppd") { Write("run/ppp/wan.state", "up ppp0 100.64.0.2 100.64.0.1 192.0.2.53 192.0.2.54\n"); }
        };
        var time = new FakeTimeProvider(Start);
        var options = new InterfaceWanOptions
        {
            Interface = "eth0", DhcpScript = "/etc/udhcpc.script", NetClassRoot = Path.Combine(_dir, "net"),
            DhcpStateFile = Path.Combine(_dir, "run/dhcp.state"), ResolvConf = Path.Combine(_dir, "resolv.conf"),
        };
        var link = new WanLinkByMethod("eth0", ("dhcp", new DhcpWanLink(options, runner, time)), ("static", new StaticWanLink(options, runner, time)),
            ("pppoe", new PppoeWanLink(Pppoe(), runner, time)));
        return (link, runner, time);
    }

    private PppoeWanOptions Pppoe() => new()
    {
        Interface = "eth0", RunDirectory = Path.Combine(_dir, "run/ppp"), ResolvConf = Path.Combine(_dir, "resolv.conf"),
        HookScript = "/usr/lib/tsunagu/ppp-event",
    };

    [Test]
    public async Task Dhcp_link_keeps_udhcpc_running_and_takes_the_address_it_bound()
    {
        var (link, runner, _) = Wan();
        await link.UpAsync(LinkRole.Provisional, new WanAccount("dhcp"), CancellationToken.None);
        Assert.That(runner.Commands, Is.EqualTo(new[]
        {
            "ip link set eth0 up",
            "ip addr flush dev eth0",
            "udhcpc -f -i eth0 -n -t 5 -T 3 -s /etc/udhcpc.script",
        }), "no -q: udhcpc stays to renew the lease");
        Assert.That(runner.Daemons[0].Options!.Environment!["TSUNAGU_DHCP_STATE"], Is.EqualTo(Path.Combine(_dir, "run/dhcp.state")));
        Assert.That(runner.Daemons[0].Options!.Environment!["TSUNAGU_RESOLV_CONF"], Is.EqualTo(Path.Combine(_dir, "resolv.conf")), "the lease's name servers go where the link's options say");
        Assert.That(runner.Daemons[0].Stopped, Is.False);
        Assert.That((link.IsUp, link.Role, link.Address), Is.EqualTo((true, (LinkRole?)LinkRole.Provisional, "10.0.2.15")));
        Assert.That(() => link.EnsureRoute(), Throws.Nothing);
        using var inner = new HttpClientHandler();
        Assert.That(link.WrapHandler(inner), Is.SameAs(inner));

        runner.Commands.Clear();
        await link.DownAsync(CancellationToken.None);
        Assert.That(runner.Commands, Is.EqualTo(new[] { "ip route flush dev eth0", "ip addr flush dev eth0" }));
        Assert.That(runner.Daemons[0].Stopped, Is.True, "Down stops the DHCP client");
        Assert.That((link.IsUp, link.Role, link.Address), Is.EqualTo((false, (LinkRole?)null, (string?)null)));
        var e = Assert.Throws<HalException>(() => link.EnsureRoute());
        Assert.That(e!.Message, Does.Contain("eth0 is down"));
    }

    [Test]
    public void Dhcp_without_a_lease_is_transient()
    {
        var (link, runner, _) = Wan();
        runner.OnStart = d =>
        {
            d.Output = "udhcpc: no lease, failing\n";
            d.Exit(1);
        };
        var e = Assert.ThrowsAsync<HalException>(() => link.UpAsync(LinkRole.Main, new WanAccount("dhcp"), CancellationToken.None));
        Assert.That(e!.IsTransient, Is.True);
        Assert.That(e.Message, Does.Contain("eth0: no DHCP lease for the Main link").And.Contain("no lease, failing"));
        Assert.That(link.IsUp, Is.False);
    }

    [Test]
    public async Task Dhcp_link_is_lost_when_the_lease_is_and_renewals_keep_it()
    {
        var (link, runner, time) = Wan();
        await link.UpAsync(LinkRole.Main, new WanAccount("dhcp"), CancellationToken.None);
        var lost = link.LinkLost;
        Write("run/dhcp.state", "renew 10.0.2.15\n");
        time.Advance(TimeSpan.FromSeconds(3));
        await Task.Delay(50);
        Assert.That(lost.IsCompleted, Is.False, "a renewed lease keeps the link");
        Write("run/dhcp.state", "deconfig \n");
        time.Advance(TimeSpan.FromSeconds(1));
        await lost.WaitAsync(TimeSpan.FromSeconds(5));
        var dhcp = (DhcpWanLink)link.Current;
        Assert.That((link.IsUp, dhcp.LostReason), Is.EqualTo((false, (string?)"eth0: the DHCP lease was lost (deconfig)")));

        // a client that dies is a lost link too
        await link.UpAsync(LinkRole.Main, new WanAccount("dhcp"), CancellationToken.None);
        Assert.That(runner.Daemons[0].Stopped, Is.True, "the old client is stopped before a new one starts");
        var second = link.LinkLost;
        runner.Daemons[1].Exit(1);
        time.Advance(TimeSpan.FromSeconds(1));
        await second.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.That(dhcp.LostReason, Is.EqualTo("eth0: the DHCP client stopped"));
    }

    [Test]
    public async Task Dhcp_up_is_cancellable_and_stops_the_client()
    {
        var (link, runner, _) = Wan();
        runner.OnStart = _ => { }; // no lease yet
        using var cts = new CancellationTokenSource();
        var up = link.UpAsync(LinkRole.Main, new WanAccount("dhcp"), cts.Token);
        await cts.CancelAsync();
        Assert.That(async () => await up.WaitAsync(TimeSpan.FromSeconds(5)), Throws.InstanceOf<OperationCanceledException>());
        Assert.That((link.IsUp, runner.Daemons.Single().Stopped), Is.EqualTo((false, true)));
    }

    [Test]
    public async Task Static_link_sets_address_gateway_and_default_route()
    {
        var (link, runner, _) = Wan();
        await link.UpAsync(LinkRole.Main, new WanAccount("static", Address: "203.0.113.7", Gateway: "203.0.113.1", Dns: ["192.0.2.53", "192.0.2.54"]), CancellationToken.None);
        Assert.That(Read("resolv.conf"), Is.EqualTo("nameserver 192.0.2.53\nnameserver 192.0.2.54\n"));
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
        runner.Commands.Clear();
        var missing = Assert.ThrowsAsync<HalException>(() => link.UpAsync(LinkRole.Main, new WanAccount("static"), CancellationToken.None));
        Assert.That(missing!.Message, Does.Contain("address: required for static"));
        foreach (var bad in new[]
        {
            new WanAccount("static", Address: "192.0.2.9/33", Gateway: "192.0.2.1"),
            new WanAccount("static", Address: "192.0.2.9", Gateway: "192.0.2.1 dev lo"),
            new WanAccount("static", Address: "192.0.2.9", Gateway: "192.0.2.1", Dns: ["192.0.2.53\nnameserver 6.6.6.6"]),
            new WanAccount("static", Address: "1", Gateway: "192.0.2.1"),
        })
        {
            var refused = Assert.ThrowsAsync<HalException>(() => link.UpAsync(LinkRole.Main, bad, CancellationToken.None));
            Assert.That(refused!.IsTransient, Is.False);
        }
        Assert.That(runner.Commands, Is.Empty, "a refused static account touches nothing");
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
        var p = Assert.ThrowsAsync<HalException>(() => link.UpAsync(LinkRole.Main, new WanAccount("pppoe", "user", "pw\nplugin /tmp/x.so"), CancellationToken.None));
        Assert.That(p!.Message, Does.Contain("PPPoE account is refused"));
        Assert.That(runner.Commands, Is.Empty);
        Assert.That((link.IsUp, main.IsCompleted), Is.EqualTo((true, false)), "PPPoE refused: the static link is still up and not lost");
        Assert.That(link.Current, Is.InstanceOf<StaticWanLink>());

        await link.UpAsync(LinkRole.Main, new WanAccount("pppoe", "user@isp.example", "pw"), CancellationToken.None);
        Assert.That(link.Current, Is.InstanceOf<PppoeWanLink>());
        await main.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.That((link.IsUp, link.Address), Is.EqualTo((true, "100.64.0.2")));
    }

    [Test]
    public async Task Two_ports_provisional_on_one_main_on_the_other_and_only_one_up()
    {
        var main = new Tsunagu.Hal.Simulated.SimulatedWanLink();
        var provisioning = new Tsunagu.Hal.Simulated.SimulatedWanLink();
        using var link = new WanLinkByRole(main, provisioning);
        await link.UpAsync(LinkRole.Provisional, new WanAccount("pppoe", "setup", "pw"), CancellationToken.None);
        Assert.That((provisioning.IsUp, main.IsUp, link.Role), Is.EqualTo((true, false, (LinkRole?)LinkRole.Provisional)));
        Assert.That(main.Attempts, Is.Empty, "the main port stays down while provisioning");
        var provisionalLost = link.LinkLost;

        main.MainUnavailable = true;
        Assert.ThrowsAsync<HalException>(() => link.UpAsync(LinkRole.Main, new WanAccount("dhcp"), CancellationToken.None));
        Assert.That((provisioning.IsUp, provisionalLost.IsCompleted, link.Role), Is.EqualTo((true, false, (LinkRole?)LinkRole.Provisional)),
            "a main port that fails leaves provisioning as it was");

        main.MainUnavailable = false;
        await link.UpAsync(LinkRole.Main, new WanAccount("dhcp"), CancellationToken.None);
        Assert.That((main.IsUp, provisioning.IsUp, link.Role), Is.EqualTo((true, false, (LinkRole?)LinkRole.Main)), "one default route");
        await provisionalLost.WaitAsync(TimeSpan.FromSeconds(5));
        var mainLost = link.LinkLost;
        Assert.That(mainLost.IsCompleted, Is.False);
        main.Drop();
        await mainLost.WaitAsync(TimeSpan.FromSeconds(5));
    }
}
