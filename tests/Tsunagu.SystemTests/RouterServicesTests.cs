using System.Diagnostics;
using System.Runtime.Versioning;
using Microsoft.Extensions.Time.Testing;
using Tsunagu.Cli;
using Tsunagu.Firmware.Services;
using Tsunagu.Firmware.Storage;
using Tsunagu.Hal;
using Tsunagu.Hal.Linux;
using Tsunagu.Protocol;

[assembly: SupportedOSPlatform("linux")]

namespace Tsunagu.SystemTests;

/// <summary>
/// The router's services with the real daemons (nft, dnsmasq, wireguard-go, squid) in network namespaces the
/// test creates. Needs root and the packages in .ci/run; a missing tool fails the test, it is never skipped.
/// </summary>
[NonParallelizable]
public class RouterServicesTests
{
    private Lab _lab = null!;
    private StateStore _store = null!;
    private readonly List<ProcessServiceManager> _managers = [];
    private readonly List<ServiceApplier> _appliers = [];
    private readonly List<string> _log = [];

    [SetUp]
    public async Task SetUp()
    {
        _lab = await Lab.CreateAsync();
        Directory.CreateDirectory(Path.Combine(_lab.Root, "data"));
        _store = StateStore.Open(Path.Combine(_lab.Root, "data"));
        _log.Clear();
    }

    [TearDown]
    public async Task TearDown()
    {
        foreach (var applier in _appliers) { applier.Dispose(); }
        foreach (var manager in _managers) { await manager.DisposeAsync(); }
        _appliers.Clear();
        _managers.Clear();
        _store.Dispose();
        await _lab.DisposeAsync();
        if (TestContext.CurrentContext.Result.Outcome.Status == NUnit.Framework.Interfaces.TestStatus.Failed)
        {
            TestContext.Out.WriteLine(string.Join("\n", _log));
        }
    }

    private ServiceEnvironment Environment => new(_lab.Board, Path.Combine(_lab.Root, "run"), Path.Combine(_lab.Root, "data", "services", "state"));

    private (ProcessServiceManager Manager, ServiceApplier Applier) NewUnit(TimeProvider? time = null, TimeSpan? confirm = null,
        ServiceManagerOptions? options = null)
    {
        var manager = new ProcessServiceManager(_lab.RouterCommands, options ?? new ServiceManagerOptions { HealthSettle = TimeSpan.FromMilliseconds(500) },
            log: _log.Add);
        var applier = new ServiceApplier(Path.Combine(_lab.Root, "data"), manager, Environment, _store, time ?? TimeProvider.System, _log.Add,
            confirm ?? TimeSpan.Zero);
        _managers.Add(manager);
        _appliers.Add(applier);
        return (manager, applier);
    }

    internal static ServiceConfiguration Config(int forwardPort = 8080, bool vpn = false, bool cache = false) => new(
        new FirewallConfig("drop", true, [new PortForward("tcp", forwardPort, "192.168.77.20", 80)]),
        new DhcpConfig(Lab.LanAddress, 24, "192.168.77.100", "192.168.77.150", "1h", [new StaticLease(Lab.ClientMac, Lab.StaticLeaseAddress, "printer")]),
        new DnsConfig("home.arpa", [Lab.InternetAddress]),
        new ContentFilterConfig(true, ["ads.example"], [Lab.BlockedAddress]),
        new VpnConfig(vpn, 51820, "10.99.0.1/24",
        [
            new VpnPeer("office", Convert.ToBase64String(Enumerable.Range(1, 32).Select(i => (byte)i).ToArray()), "10.99.0.2/32, 192.168.88.0/24", "203.0.113.7:51820"),
            new VpnPeer("laptop", Convert.ToBase64String(Enumerable.Range(2, 32).Select(i => (byte)i).ToArray()), "10.99.0.3/32", null),
        ]),
        new CacheConfig(cache, 64));

    private async Task<string> RulesetAsync() => (await _lab.InAsync(_lab.Router, "nft", "list", "ruleset")).EnsureSuccess("nft list ruleset").Output;

    private async Task<string> ResolveAsync(string name) =>
        (await _lab.InAsync(_lab.Client, "busybox", "nslookup", name, Lab.LanAddress)) is var r ? r.Output + r.Error : "";

    private async Task<bool> PingAsync(string address) =>
        (await _lab.InAsync(_lab.Client, "busybox", "ping", "-c", "1", "-W", "2", address)).Succeeded;

    [Test]
    public async Task Every_rendering_passes_the_daemons_own_checkers()
    {
        var env = Environment;
        var dir = Path.Combine(_lab.Root, "render");
        var configFile = Path.Combine(_lab.Root, "config.json");
        await File.WriteAllTextAsync(configFile, System.Text.Json.JsonSerializer.Serialize(Config(vpn: true, cache: true), ProtocolJson.Default.ServiceConfiguration));
        var boardFile = Path.Combine(_lab.Root, "board.json");
        var i = _lab.Board.Interfaces;
        await File.WriteAllTextAsync(boardFile, $$$"""
            {"name":"lab","interfaces":{"wan":"{{{i.Wan}}}","lan":"{{{i.Lan}}}","vpn":"{{{i.Vpn}}}"},
             "hdd":{"mountPoint":"{{{_lab.Board.Hdd!.MountPoint}}}"}}
            """);
        var output = new StringWriter();
        var error = new StringWriter();
        var code = ServicesCommand.Render(new ServicesCommand.Settings(configFile, boardFile, "board", dir, Path.Combine(_lab.Root, "data"), env.RunDirectory), output, error);
        Assert.That(code, Is.EqualTo(0), error.ToString());
        Assert.That(Directory.GetFiles(dir).Select(Path.GetFileName).Order(),
            Is.EqualTo(new[] { "dnsmasq.conf", "nftables.nft", "services.txt", "squid.conf", "wg0.conf" }));

        (await _lab.InAsync(_lab.Router, "nft", "--check", "--file", Path.Combine(dir, "nftables.nft"))).EnsureSuccess("nft -c");
        (await _lab.InAsync(_lab.Router, "dnsmasq", "--test", "-C", Path.Combine(dir, "dnsmasq.conf"))).EnsureSuccess("dnsmasq --test");
        (await _lab.InAsync(_lab.Router, "squid", "-k", "parse", "-f", Path.Combine(dir, "squid.conf"))).EnsureSuccess("squid -k parse");

        // wg parses the file by loading it into a real (userspace) WireGuard interface
        await using var wg = _lab.RouterCommands.Start(new CommandLine("wireguard-go", "--foreground", _lab.Board.Interfaces.Vpn),
            new CommandOptions { Environment = new Dictionary<string, string> { ["WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD"] = "1" } });
        CommandResult set;
        var clock = Stopwatch.StartNew();
        do
        {
            await Task.Delay(100);
            set = await _lab.InAsync(_lab.Router, "wg", "setconf", _lab.Board.Interfaces.Vpn, Path.Combine(dir, "wg0.conf"));
        } while (!set.Succeeded && clock.Elapsed < TimeSpan.FromSeconds(10) && !wg.Exited.IsCompleted);
        set.EnsureSuccess("wg setconf");
        var shown = (await _lab.InAsync(_lab.Router, "wg", "showconf", _lab.Board.Interfaces.Vpn)).EnsureSuccess("wg showconf").Output;
        Assert.That(shown, Does.Contain("ListenPort = 51820").And.Contain("Endpoint = 203.0.113.7:51820").And.Contain("AllowedIPs = 10.99.0.3/32"));

        // and the checkers do refuse: a broken file of each kind
        await File.WriteAllTextAsync(Path.Combine(dir, "bad.nft"), "table inet t { chain c { type filter hook input priority 0; policy maybe; } }\n");
        Assert.That((await _lab.InAsync(_lab.Router, "nft", "--check", "--file", Path.Combine(dir, "bad.nft"))).Succeeded, Is.False);
        await File.WriteAllTextAsync(Path.Combine(dir, "bad.conf"), "dhcp-range=192.168.77.100,192.168.77.150,banana\n");
        Assert.That((await _lab.InAsync(_lab.Router, "dnsmasq", "--test", "-C", Path.Combine(dir, "bad.conf"))).Succeeded, Is.False);
    }

    [Test]
    public async Task Render_command_names_the_invalid_field()
    {
        var configFile = Path.Combine(_lab.Root, "bad.json");
        await File.WriteAllTextAsync(configFile, System.Text.Json.JsonSerializer.Serialize(
            Config() with { Dhcp = Config().Dhcp with { RangeEnd = "192.168.77" } }, ProtocolJson.Default.ServiceConfiguration));
        var error = new StringWriter();
        var code = ServicesCommand.Render(new ServicesCommand.Settings(configFile, "simulated", Path.Combine(RepositoryRoot(), "board"),
            Path.Combine(_lab.Root, "out"), "/data", "/run/tsunagu"), TextWriter.Null, error);
        Assert.That(code, Is.EqualTo(1));
        Assert.That(error.ToString(), Does.Contain("dhcp.rangeEnd: '192.168.77' is not an IPv4 address"));
        Assert.That(Directory.Exists(Path.Combine(_lab.Root, "out")), Is.False, "nothing is written for an invalid configuration");
    }

    [Test]
    public async Task Applied_configuration_serves_dhcp_dns_content_filter_and_nat()
    {
        var (manager, applier) = NewUnit();
        await applier.StartAsync(CancellationToken.None);
        var report = await applier.ApplyAsync(1, Config(vpn: true, cache: true), CancellationToken.None);
        TestContext.Out.WriteLine($"apply of revision 1 (5 services, cold): {report.Elapsed.TotalMilliseconds:0} ms: {report.Changes}");
        Assert.That(manager.Status().Select(s => (s.Name, s.State)), Is.EqualTo(new[]
        {
            ("firewall", ServiceState.Done), ("lan", ServiceState.Done), ("dnsmasq", ServiceState.Running),
            ("wireguard", ServiceState.Running), ("squid", ServiceState.Running),
        }));

        var ruleset = await RulesetAsync();
        Assert.That(ruleset, Does.Contain("policy drop").And.Contain($"oifname {{ \"ppp0\", \"{_lab.Board.Interfaces.Wan}\" }} masquerade") // nft lists a set sorted
            .And.Contain("tcp dport 8080 dnat ip to 192.168.77.20:80").And.Contain(Lab.BlockedAddress));

        var lease = await _lab.LeaseAsync();
        Assert.That(lease, Is.EqualTo($"{Lab.StaticLeaseAddress} {Lab.LanAddress} {Lab.LanAddress}"), "static lease, router and DNS from dnsmasq");

        Assert.That(await ResolveAsync("ads.example"), Does.Contain("NXDOMAIN"), "the content filter refuses the blocked domain");
        Assert.That(await ResolveAsync("tracker.ads.example"), Does.Contain("NXDOMAIN"), "and its subdomains");
        Assert.That(await ResolveAsync("printer.home.arpa"), Does.Contain(Lab.StaticLeaseAddress), "the local domain resolves DHCP names");

        Assert.That(await PingAsync(Lab.InternetAddress), Is.True, "an allowed address is reached through NAT (the internet has no route to the LAN)");
        Assert.That(await PingAsync(Lab.BlockedAddress), Is.False, "a blocked destination is refused by the firewall");

        var wg = (await _lab.InAsync(_lab.Router, "wg", "show", _lab.Board.Interfaces.Vpn, "peers")).EnsureSuccess("wg show").Output;
        Assert.That(wg.Split('\n', StringSplitOptions.RemoveEmptyEntries), Has.Length.EqualTo(2));
        Assert.That(Directory.Exists(Path.Combine(_lab.Board.Hdd!.MountPoint, "squid", "00")), Is.True, "squid -z built the cache on the HDD");

        var again = await applier.ApplyAsync(2, Config(forwardPort: 8081, vpn: true, cache: true), CancellationToken.None);
        TestContext.Out.WriteLine($"apply of revision 2 (firewall change only): {again.Elapsed.TotalMilliseconds:0} ms: {again.Changes}");
        Assert.That(again.Changes.Reloaded, Is.EqualTo(new[] { "firewall" }));
        Assert.That(again.Changes.Unchanged, Is.EqualTo(new[] { "lan", "dnsmasq", "wireguard", "squid" }));
        Assert.That(await RulesetAsync(), Does.Contain("tcp dport 8081 dnat").And.Not.Contain("tcp dport 8080"));
    }

    /// <summary>
    /// On a PPPoE line the LAN's traffic leaves by pppd's interface, not by the board's WAN port. Here the board's port is
    /// an interface that does not exist and the lab's WAN veth, at PPPoE's MTU 1492, plays the PPP interface: the LAN
    /// reaches the internet only if the rules name it (the internet has no route back to the LAN: only masqueraded
    /// traffic is answered).
    /// </summary>
    [Test]
    public async Task Traffic_leaving_by_the_ppp_interface_is_forwarded_masqueraded_and_its_mss_clamped()
    {
        var ppp = _lab.Board.Interfaces.Wan;
        await Lab.HostAsync("ip", "-n", _lab.Router, "link", "set", ppp, "mtu", "1492");
        var board = _lab.Board with { Interfaces = _lab.Board.Interfaces with { Wan = $"e{_lab.Id}" } };
        var env = new ServiceEnvironment(board, Path.Combine(_lab.Root, "run"), Path.Combine(_lab.Root, "data", "services", "state")) { WanPpp = ppp };
        var file = Path.Combine(_lab.Root, "pppoe.nft");
        await File.WriteAllTextAsync(file, ServiceRenderer.Render(Config(vpn: true, cache: false), env)[ServiceRenderer.Nftables]);
        (await _lab.InAsync(_lab.Router, "nft", "--check", "--file", file)).EnsureSuccess("nft -c of the PPPoE ruleset");
        (await _lab.InAsync(_lab.Router, "nft", "--file", file)).EnsureSuccess("nft -f of the PPPoE ruleset");

        var ruleset = await RulesetAsync(); // nft lists a set sorted: "e..." before "w..."
        Assert.That(ruleset, Does.Contain($"oifname {{ \"{board.Interfaces.Wan}\", \"{ppp}\" }} masquerade")
            .And.Contain($"iifname {{ \"{board.Interfaces.Wan}\", \"{ppp}\" }} tcp dport 8080 dnat ip to 192.168.77.20:80")
            .And.Contain("tcp option maxseg size set rt mtu"), "the kernel holds the rules as rendered");

        // the LAN side by hand (no dnsmasq needed): the client in the LAN prefix, its default route the router
        var lan = _lab.Board.Interfaces.Lan;
        await Lab.HostAsync("ip", "-n", _lab.Router, "address", "add", $"{Lab.LanAddress}/24", "dev", lan);
        await Lab.HostAsync("ip", "-n", _lab.Router, "link", "set", lan, "up");
        await Lab.HostAsync("ip", "netns", "exec", _lab.Router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1");
        await Lab.HostAsync("ip", "-n", _lab.Client, "address", "add", "192.168.77.50/24", "dev", _lab.ClientInterface);
        await Lab.HostAsync("ip", "-n", _lab.Client, "route", "add", "default", "via", Lab.LanAddress);
        Assert.That(await PingAsync(Lab.InternetAddress), Is.True, "the LAN reaches the internet out by the PPP interface, masqueraded");

        // a TCP connection from the LAN (MTU 1500: its SYN offers MSS 1460) arrives with the MSS of the PPP interface's route
        // (no TCP timestamps from the client: ss's mss is then the MSS itself, not less the 12 bytes of the option)
        await Lab.HostAsync("ip", "netns", "exec", _lab.Client, "sysctl", "-q", "-w", "net.ipv4.tcp_timestamps=0");
        await using var server = _lab.StartIn(_lab.Internet, "busybox", "nc", "-l", "-p", "8000", "-e", "cat");
        var sockets = "";
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(20))
        {
            await using var client = _lab.StartIn(_lab.Client, "busybox", "sh", "-c", $"sleep 5 | busybox nc {Lab.InternetAddress} 8000");
            await Task.Delay(500);
            sockets = (await _lab.InAsync(_lab.Internet, "ss", "-tni", "state", "established", "( sport = :8000 )")).EnsureSuccess("ss").Output;
            if (sockets.Contains("mss:", StringComparison.Ordinal)) { break; }
        }
        Assert.That(sockets, Does.Contain("mss:1452"), "MSS 1452 = 1492 - 40: the SYN was clamped to the route's MTU");
        Assert.That(sockets, Does.Contain(Lab.RouterWanAddress), "and it came from the router's WAN address (masqueraded)");
    }

    [Test]
    public async Task A_change_refused_before_it_is_applied_leaves_the_old_configuration_running()
    {
        var (manager, applier) = NewUnit();
        await applier.StartAsync(CancellationToken.None);
        await applier.ApplyAsync(1, Config(), CancellationToken.None);
        var before = await RulesetAsync();
        var dnsmasqBefore = manager.Status().Single(s => s.Name == "dnsmasq");

        // a lease time dnsmasq would refuse is refused by the unit's own validation, before anything is staged
        // (a refusal by the daemons' checkers takes the same path: ServiceTransactionTests)
        var broken = Config(forwardPort: 9090) with { Dhcp = Config().Dhcp with { LeaseTime = "banana" } };
        var e = Assert.ThrowsAsync<InvalidServiceConfigException>(() => applier.ApplyAsync(2, broken, CancellationToken.None));
        Assert.That(e!.Field, Is.EqualTo("dhcp.leaseTime"));

        Assert.That(applier.CurrentRevision(), Is.EqualTo(1));
        Assert.That(await RulesetAsync(), Is.EqualTo(before), "the firewall was not touched");
        Assert.That(manager.Status().Single(s => s.Name == "dnsmasq"), Is.EqualTo(dnsmasqBefore), "dnsmasq kept running, not restarted");
        Assert.That(await _lab.LeaseAsync(), Does.StartWith(Lab.StaticLeaseAddress));
    }

    [Test]
    public async Task Supervisor_killed_in_the_middle_of_an_apply_recovers_to_the_previous_configuration()
    {
        var (manager, applier) = NewUnit();
        await applier.StartAsync(CancellationToken.None);
        await applier.ApplyAsync(1, Config(), CancellationToken.None);

        using var kill = new CancellationTokenSource();
        var dying = new ServiceApplier(Path.Combine(_lab.Root, "data"), new KilledAfterReload(manager, kill), Environment, _store,
            TimeProvider.System, _log.Add, TimeSpan.Zero);
        _appliers.Add(dying);
        Assert.CatchAsync<OperationCanceledException>(() => dying.ApplyAsync(2, Config(forwardPort: 9090), kill.Token));
        Assert.That(await RulesetAsync(), Does.Contain("dport 9090"), "revision 2 was half applied when the supervisor died");
        await manager.StopAllAsync(CancellationToken.None); // its daemons die with it (power cut)

        var (_, restarted) = NewUnit();
        var clock = Stopwatch.StartNew();
        await restarted.StartAsync(CancellationToken.None);
        TestContext.Out.WriteLine($"recovery at boot: {clock.ElapsedMilliseconds} ms");
        Assert.That(restarted.CurrentRevision(), Is.EqualTo(1));
        var ruleset = await RulesetAsync();
        Assert.That(ruleset, Does.Contain("dport 8080").And.Not.Contain("dport 9090"));
        Assert.That(await _lab.LeaseAsync(), Does.StartWith(Lab.StaticLeaseAddress));
    }

    [Test]
    public async Task Confirm_timer_reverts_after_losing_the_host_also_across_a_restart()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var timeout = TimeSpan.FromMinutes(2);
        var (manager, applier) = NewUnit(time, timeout);
        await applier.StartAsync(CancellationToken.None);
        await applier.ApplyAsync(1, Config(forwardPort: 8080), CancellationToken.None);
        Assert.That(await applier.ConfirmAsync(CancellationToken.None), Is.True, "the host was reached after revision 1");

        // revision 2 is applied, then the host is never reached: the timer fires while the unit runs
        await applier.ApplyAsync(2, Config(forwardPort: 8082), CancellationToken.None);
        Assert.That(await RulesetAsync(), Does.Contain("dport 8082"));
        time.Advance(timeout);
        await applier.ConfirmTimer!;
        Assert.That(applier.CurrentRevision(), Is.EqualTo(1));
        Assert.That(await RulesetAsync(), Does.Contain("dport 8080").And.Not.Contain("dport 8082"));

        // revision 3 is applied, the unit restarts before the deadline and stays down past it
        await applier.ApplyAsync(3, Config(forwardPort: 8083), CancellationToken.None);
        time.Advance(TimeSpan.FromSeconds(30));
        applier.Dispose();
        await manager.StopAllAsync(CancellationToken.None);
        time.Advance(timeout);
        var (_, restarted) = NewUnit(time, timeout);
        await restarted.StartAsync(CancellationToken.None);
        Assert.That(restarted.CurrentRevision(), Is.EqualTo(1));
        Assert.That(await RulesetAsync(), Does.Contain("dport 8080").And.Not.Contain("dport 8083"));
        var applied = _store.Get(StateKeys.AppliedConfig, FirmwareJson.Default.AppliedConfig)!;
        Assert.That((applied.Revision, applied.Acknowledged), Is.EqualTo((3, false)));
        Assert.That(applied.Error, Does.StartWith("reverted to revision 1"));
        Assert.That(await _lab.LeaseAsync(), Does.StartWith(Lab.StaticLeaseAddress), "the LAN is served by revision 1 again");
    }

    [Test]
    public async Task Crashed_daemon_is_restarted_until_the_crash_loop_limit()
    {
        var (manager, applier) = NewUnit(options: new ServiceManagerOptions
        {
            HealthSettle = TimeSpan.FromMilliseconds(300), CrashLimit = 3, CrashWindow = TimeSpan.FromMinutes(1), RestartDelay = TimeSpan.FromMilliseconds(200),
        });
        await applier.StartAsync(CancellationToken.None);
        await applier.ApplyAsync(1, Config(), CancellationToken.None);
        var pidFile = Path.Combine(Environment.RunDirectory, "dnsmasq.pid");
        for (var crash = 1; crash <= 3; crash++)
        {
            var pid = await WaitForPidAsync(pidFile);
            (await _lab.InAsync(_lab.Router, "kill", "-KILL", pid.ToString(System.Globalization.CultureInfo.InvariantCulture))).EnsureSuccess("kill dnsmasq");
            var deadline = Stopwatch.StartNew();
            var expected = crash < 3 ? ServiceState.Running : ServiceState.CrashLoop;
            ServiceStatus status;
            do
            {
                await Task.Delay(100);
                status = manager.Status().Single(s => s.Name == "dnsmasq");
            } while ((status.State != expected || (expected == ServiceState.Running && status.Restarts < crash)) && deadline.Elapsed < TimeSpan.FromSeconds(15));
            Assert.That(status.State, Is.EqualTo(expected), $"after crash {crash}: {status.LastError}");
            if (crash < 3)
            {
                Assert.That(status.Restarts, Is.EqualTo(crash));
                Assert.That(await WaitForPidAsync(pidFile, notPid: pid), Is.Not.EqualTo(pid));
            }
        }
        var health = await manager.CheckHealthAsync(CancellationToken.None);
        Assert.That(health, Has.Some.StartsWith("dnsmasq: daemon not running (CrashLoop"));
    }

    private static async Task<int> WaitForPidAsync(string pidFile, int notPid = 0)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(10))
        {
            if (File.Exists(pidFile) && int.TryParse((await File.ReadAllTextAsync(pidFile)).Trim(), out var pid) && pid != notPid) { return pid; }
            await Task.Delay(50);
        }
        throw new AssertionException($"{pidFile} did not name a new dnsmasq process within 10 s");
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Tsunagu.slnx"))) { return dir.FullName; }
        }
        throw new DirectoryNotFoundException($"no Tsunagu.slnx above {TestContext.CurrentContext.TestDirectory}");
    }

    /// <summary>Reloads for real, then "kills the supervisor" before the health check and the commit.</summary>
    private sealed class KilledAfterReload(IServiceManager inner, CancellationTokenSource kill) : IServiceManager
    {
        public Task ValidateAsync(IReadOnlyList<ServiceSpec> services, CancellationToken ct) => inner.ValidateAsync(services, ct);

        public async Task<ServiceChanges> ApplyAsync(IReadOnlyList<ServiceSpec> services, CancellationToken ct)
        {
            var changes = await inner.ApplyAsync(services, ct);
            await kill.CancelAsync();
            ct.ThrowIfCancellationRequested();
            return changes;
        }

        public Task<ServiceChanges> RestoreAsync(IReadOnlyList<ServiceSpec> services, CancellationToken ct) => inner.RestoreAsync(services, ct);
        public Task<IReadOnlyList<string>> CheckHealthAsync(CancellationToken ct) => inner.CheckHealthAsync(ct);
        public IReadOnlyList<ServiceStatus> Status() => inner.Status();
        public Task StopAllAsync(CancellationToken ct) => inner.StopAllAsync(ct);
    }
}
