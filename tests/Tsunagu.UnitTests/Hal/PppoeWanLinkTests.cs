using System.Diagnostics;
using Microsoft.Extensions.Time.Testing;
using Tsunagu.Hal;
using Tsunagu.Hal.Linux;
using Tsunagu.Protocol;

namespace Tsunagu.UnitTests.Hal;

/// <summary>The PPPoE link: pppd's options file, the account's grammar, up from the ip-up hook, lost, refused, cancelled.</summary>
public class PppoeWanLinkTests : FakeRootTests
{
    private static readonly WanAccount Account = new("pppoe", "user@isp.example", "s3cret pass");

    /// <summary>Records the PADTs asked for, and whether pppd had stopped by then.</summary>
    private sealed class RecordingTerminator(Func<bool> pppdStopped) : IPppoeTerminator
    {
        public List<(string Interface, PppoeSession Session, bool PppdStopped)> Sent { get; } = [];
        public HalException? Fail { get; set; }

        public void SendPadt(string ethernetInterface, PppoeSession session)
        {
            if (Fail is { } e) { throw e; }
            Sent.Add((ethernetInterface, session, pppdStopped()));
        }
    }

    // the kernel's table while a session runs: session 0x1234 (printed byte-swapped on a little-endian machine), and one
    // on another port
    private const string Sessions = "Id       Address              Device\n00003412 52:54:00:15:00:01     eth0\n00000100 02:00:00:00:00:09     eth1\n";

    private (PppoeWanLink Link, RecordingRunner Runner, FakeTimeProvider Time) Link(Action<FakeDaemon>? onStart = null, IPppoeTerminator? terminator = null)
    {
        var runner = new RecordingRunner
        {
            OnStart = onStart ?? (_ => Write("run/ppp/wan.state", "up ppp0 100.64.0.2 100.64.0.1 192.0.2.53\n")),
        };
        var time = new FakeTimeProvider(Start);
        var link = new PppoeWanLink(new PppoeWanOptions
        {
            Interface = "eth0", RunDirectory = Path.Combine(_dir, "run/ppp"), ResolvConf = Path.Combine(_dir, "resolv.conf"),
            HookScript = "/usr/lib/tsunagu/ppp-event", SessionsFile = Path.Combine(_dir, "proc-net-pppoe"),
            PidDirectory = Path.Combine(_dir, "var-run"), ProcDirectory = Path.Combine(_dir, "proc"),
        }, runner, time, terminator ?? new RecordingTerminator(() => true));
        return (link, runner, time);
    }

    [Test]
    public async Task Dials_with_a_private_options_file_and_is_up_when_the_hook_reports_an_address()
    {
        var (link, runner, _) = Link();
        string? options = null;
        UnixFileMode mode = 0;
        runner.OnStart = d =>
        {
            options = File.ReadAllText(link.OptionsPath);
            mode = OperatingSystem.IsWindows() ? 0 : File.GetUnixFileMode(link.OptionsPath);
            Write("run/ppp/wan.state", "up ppp0 100.64.0.2 100.64.0.1 192.0.2.53\n");
        };
        await link.UpAsync(LinkRole.Main, Account, CancellationToken.None);
        Assert.That(runner.Commands, Is.EqualTo(new[] { "ip link set eth0 up", $"pppd file {link.OptionsPath} nodetach" }));
        Assert.That(mode, Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite), "the options file holds the password");
        Assert.That(options!.Split('\n'), Is.SupersetOf(new[]
        {
            "plugin pppoe.so", "nic-eth0", "user \"user@isp.example\"", "password \"s3cret pass\"", "hide-password", "noauth",
            "mtu 1492", "mru 1492", "lcp-echo-interval 10", "lcp-echo-failure 3", "maxfail 1", "unit 0", "ifname ppp0", "defaultroute",
            $"ipparam {link.StatePath}", "ip-up-script /usr/lib/tsunagu/ppp-event", "ip-down-script /usr/lib/tsunagu/ppp-event",
        }));
        Assert.That(options.Split('\n'), Has.None.StartsWith("require-").And.None.EqualTo("persist"), "CHAP and PAP both allowed; redial is the supervisor's");
        Assert.That((link.IsUp, link.Role, link.Address), Is.EqualTo((true, (LinkRole?)LinkRole.Main, "100.64.0.2")));
        Assert.That(Read("resolv.conf"), Is.EqualTo("nameserver 192.0.2.53\n"));
        Assert.That(() => link.EnsureRoute(), Throws.Nothing);

        await link.DownAsync(CancellationToken.None);
        Assert.That((link.IsUp, runner.Daemons[0].Stopped, File.Exists(link.OptionsPath)), Is.EqualTo((false, true, false)),
            "hanging up stops pppd and removes the password");
        Assert.That(link.LinkLost.IsCompleted, Is.False, "a hang-up asked for is not a lost link");
    }

    [Test]
    public async Task Before_the_first_dial_a_pppd_left_from_before_that_holds_the_interface_is_stopped()
    {
        var (link, runner, _) = Link();
        Assert.That(link.PidFilePath, Is.EqualTo(Path.Combine(_dir, "var-run", "ppp-tsunagu-ppp0.pid")), "pppd's own name for the linkname's pid file");
        Write("var-run/ppp-tsunagu-ppp0.pid", "4242\nppp0\n");
        Write("proc/4242/comm", "pppd\n");
        var running = true;
        runner.Respond = c =>
        {
            if (c.ToString() == "kill -TERM 4242")
            {
                Assert.That(runner.Daemons, Is.Empty, "stopped before a new pppd is started");
                Directory.Delete(Path.Combine(_dir, "proc", "4242"), recursive: true);
                running = false;
            }
            return null;
        };
        await link.UpAsync(LinkRole.Main, Account, CancellationToken.None);
        Assert.That(running, Is.False);
        Assert.That(runner.Commands, Is.EqualTo(new[] { "kill -TERM 4242", "ip link set eth0 up", $"pppd file {link.OptionsPath} nodetach" }));
        Assert.That((link.IsUp, link.StalePppdStopped), Is.EqualTo((true, (int?)4242)));

        // later dials: the pppd running is this link's own, stopped its own way
        Write("proc/4242/comm", "pppd\n");
        await link.UpAsync(LinkRole.Main, Account, CancellationToken.None);
        Assert.That(runner.Commands.Count(c => c.StartsWith("kill", StringComparison.Ordinal)), Is.EqualTo(1), "checked once, before the first dial");
    }

    [TestCase("4242\nppp0\n", "sshd\n", TestName = "{m}(a reused pid)")]
    [TestCase("4242\nppp0\n", null, TestName = "{m}(a pid that is gone)")]
    [TestCase("1\n", "pppd\n", TestName = "{m}(pid 1)")]
    [TestCase("-4242\n", "pppd\n", TestName = "{m}(a negative pid)")]
    [TestCase("42 42\n", "pppd\n", TestName = "{m}(garbage)")]
    [TestCase("", "pppd\n", TestName = "{m}(empty)")]
    public async Task A_pid_file_that_names_no_running_pppd_stops_nothing(string pidFile, string? comm)
    {
        var (link, runner, _) = Link();
        Write("var-run/ppp-tsunagu-ppp0.pid", pidFile);
        if (comm is not null)
        {
            Write("proc/4242/comm", comm);
            Write("proc/1/comm", comm);
        }
        await link.UpAsync(LinkRole.Main, Account, CancellationToken.None);
        Assert.That(runner.Commands, Is.EqualTo(new[] { "ip link set eth0 up", $"pppd file {link.OptionsPath} nodetach" }), "no signal sent");
        Assert.That((link.IsUp, link.StalePppdStopped), Is.EqualTo((true, (int?)null)));
    }

    [TestCase("user\nplugin /tmp/evil.so", "pw")]
    [TestCase("-user", "pw")]
    [TestCase("user name", "pw")]
    [TestCase("user", "pw\"\nplugin /tmp/evil.so")]
    [TestCase("user", "pw\\")]
    [TestCase("user", "pw\u0007")]
    [TestCase("user", "")]
    [TestCase(null, "pw")]
    [TestCase("user", null)]
    public void An_account_that_could_inject_an_option_is_refused_before_anything_is_touched(string? user, string? password)
    {
        var (link, runner, _) = Link();
        var e = Assert.ThrowsAsync<HalException>(() => link.UpAsync(LinkRole.Main, new WanAccount("pppoe", user, password), CancellationToken.None));
        Assert.That(e!.IsTransient, Is.False);
        Assert.That(e.Message, Does.Contain("PPPoE account is refused"));
        Assert.That(runner.Commands, Is.Empty);
        Assert.That(File.Exists(link.OptionsPath), Is.False);
    }

    [Test]
    public void A_refusal_by_the_access_concentrator_is_a_typed_error_and_leaves_nothing_running()
    {
        var (link, runner, _) = Link(d =>
        {
            d.Output = "PAP authentication failed\n";
            d.Exit(PppoeWanLink.ExitAuthenticationFailed);
        });
        var e = Assert.ThrowsAsync<WanRefusedException>(() => link.UpAsync(LinkRole.Main, Account, CancellationToken.None));
        Assert.That(e!.Message, Does.Contain("refused the Main PPPoE account").And.Contain("PAP authentication failed"));
        Assert.That((link.IsUp, File.Exists(link.OptionsPath)), Is.EqualTo((false, false)));

        runner.OnStart = d => d.Exit(10);
        var other = Assert.ThrowsAsync<HalException>(() => link.UpAsync(LinkRole.Main, Account, CancellationToken.None));
        Assert.That(other, Is.Not.InstanceOf<WanRefusedException>());
        Assert.That(other!.IsTransient, Is.True, "a failed negotiation may succeed on the next dial");
    }

    [Test]
    public void The_kernels_session_table_gives_the_session_of_the_port_in_network_order()
    {
        var session = LinuxPppoeTerminator.Parse(Sessions, "eth0", littleEndian: true);
        Assert.That((session?.Id, Convert.ToHexString(session?.PeerMac ?? [])), Is.EqualTo(((ushort?)0x1234, "525400150001")));
        Assert.That(LinuxPppoeTerminator.Parse(Sessions, "eth0", littleEndian: false)!.Value.Id, Is.EqualTo(0x3412), "a big-endian kernel prints it as it is");
        Assert.That(LinuxPppoeTerminator.Parse(Sessions, "eth1", littleEndian: true)!.Value.Id, Is.EqualTo(1));
        foreach (var (table, why) in new[]
        {
            ("Id       Address              Device\n", "no session"),
            ("00003412 52:54:00:15:00:01     eth0\n", "no header: the first line is always the header"),
            (Sessions + "00005612 52:54:00:15:00:02     eth0\n", "two sessions on the port: not ours to guess"),
            ("Id\n00000000 52:54:00:15:00:01 eth0\n", "session 0 is no session"),
            ("Id\n00010000 52:54:00:15:00:01 eth0\n", "not 16 bits"),
            ("Id\nzz003412 52:54:00:15:00:01 eth0\n", "not hex"),
            ("Id\n00003412 52:54:00:15:00 eth0\n", "a MAC of 5 bytes"),
            ("Id\n00003412 52:54:00:15:00:0g eth0\n", "a MAC not hex"),
            ("Id\n00003412 52:54:00:15:00:01 eth0 extra\n", "a fourth field"),
            ("Id\n00003412 52:54:00:15:00:01 eth0x\n", "another port whose name begins alike"),
        })
        {
            Assert.That(LinuxPppoeTerminator.Parse(table, "eth0", littleEndian: true), Is.Null, why);
        }
    }

    [Test]
    public void A_padt_frame_goes_to_the_concentrator_with_the_session_and_no_tags()
    {
        var frame = LinuxPppoeTerminator.Frame([2, 0, 0, 0, 0, 1], new PppoeSession(0x1234, [0x52, 0x54, 0x00, 0x15, 0x00, 0x01]));
        Assert.That(Convert.ToHexString(frame), Is.EqualTo("525400150001" + "020000000001" + "8863" + "11" + "A7" + "1234" + "0000"));
    }

    [Test]
    public async Task A_hang_up_sends_a_padt_for_its_session_after_pppd_ended_and_a_session_that_ended_by_itself_none()
    {
        Write("proc-net-pppoe", Sessions);
        RecordingRunner? runnerRef = null;
        var terminator = new RecordingTerminator(() => runnerRef!.Daemons.All(d => d.Stopped));
        var (link, runner, time) = Link(terminator: terminator);
        runnerRef = runner;
        await link.UpAsync(LinkRole.Provisional, Account, CancellationToken.None);
        Assert.That(terminator.Sent, Is.Empty, "nothing sent while the session runs");
        await link.DownAsync(CancellationToken.None);
        Assert.That(terminator.Sent.Select(p => (p.Interface, p.Session.Id, Convert.ToHexString(p.Session.PeerMac), p.PppdStopped)),
            Is.EqualTo(new[] { ("eth0", (ushort)0x1234, "525400150001", true) }), "one PADT, for the session of eth0, once pppd ended");
        await link.DownAsync(CancellationToken.None);
        Assert.That(terminator.Sent, Has.Count.EqualTo(1), "a second hang-up has no session to end");

        // a session that ends by itself (a dead line; the peer hung up) gets no PADT, nor does its pppd's leftover
        File.Delete(link.StatePath);
        await link.UpAsync(LinkRole.Main, Account, CancellationToken.None);
        var lost = link.LinkLost;
        runner.Daemons[1].Exit(15);
        await lost.WaitAsync(TimeSpan.FromSeconds(5));
        await link.DownAsync(CancellationToken.None);
        Assert.That(terminator.Sent, Has.Count.EqualTo(1), "no PADT for a session that ended by itself");

        // a new dial hangs the previous session up with its PADT; a PADT that cannot be sent is told, and the hang-up completes
        File.Delete(link.StatePath);
        await link.UpAsync(LinkRole.Provisional, Account, CancellationToken.None);
        File.Delete(link.StatePath);
        await link.UpAsync(LinkRole.Main, Account, CancellationToken.None);
        Assert.That(terminator.Sent, Has.Count.EqualTo(2), "dialling the main link hung up the provisional session with a PADT");
        terminator.Fail = new HalException("eth0: no packet socket", isTransient: true);
        await link.DownAsync(CancellationToken.None);
        Assert.That((link.IsUp, link.PadtProblem, runner.Daemons.All(d => d.Stopped)), Is.EqualTo((false, (string?)"eth0: no packet socket", true)));
        _ = time;
    }

    [Test]
    public async Task Without_the_kernels_session_table_a_hang_up_sends_nothing()
    {
        var terminator = new RecordingTerminator(() => true);
        var (link, _, _) = Link(terminator: terminator);
        await link.UpAsync(LinkRole.Main, Account, CancellationToken.None);
        await link.DownAsync(CancellationToken.None);
        Assert.That((terminator.Sent.Count, link.PadtProblem), Is.EqualTo((0, (string?)null)));
    }

    [Test]
    public async Task A_dead_line_is_reported_lost_and_the_next_up_dials_again()
    {
        var (link, runner, time) = Link();
        await link.UpAsync(LinkRole.Main, Account, CancellationToken.None);
        var lost = link.LinkLost;
        Assert.That(lost.IsCompleted, Is.False);
        runner.Daemons[0].Exit(15); // LCP echo unanswered
        await lost.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.That((link.IsUp, link.LostReason), Is.EqualTo((false, (string?)"eth0: the peer stopped answering LCP echo requests (pppd exit 15)")));

        File.Delete(link.StatePath);
        await link.UpAsync(LinkRole.Main, Account, CancellationToken.None);
        Assert.That((link.IsUp, runner.Daemons.Count), Is.EqualTo((true, 2)), "redialled with a fresh pppd");
        var second = link.LinkLost;
        Assert.That(second, Is.Not.SameAs(lost));
        Write("run/ppp/wan.state", "down ppp0\n"); // ip-down while pppd still runs
        time.Advance(TimeSpan.FromSeconds(1)); // the watch's next look at the state file
        await second.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.That((link.IsUp, runner.Daemons[1].Stopped), Is.EqualTo((false, true)));
    }

    [Test]
    public async Task Dialling_is_cancellable_and_times_out()
    {
        var (link, runner, time) = Link(_ => { });
        using var cts = new CancellationTokenSource();
        var up = link.UpAsync(LinkRole.Provisional, Account, cts.Token);
        await cts.CancelAsync();
        Assert.That(async () => await up.WaitAsync(TimeSpan.FromSeconds(5)), Throws.InstanceOf<OperationCanceledException>());
        Assert.That((link.IsUp, runner.Daemons[0].Stopped, File.Exists(link.OptionsPath)), Is.EqualTo((false, true, false)));

        var slow = link.UpAsync(LinkRole.Provisional, Account, CancellationToken.None);
        var watch = Stopwatch.StartNew();
        while (!slow.IsCompleted && watch.Elapsed < TimeSpan.FromSeconds(10))
        {
            time.Advance(TimeSpan.FromSeconds(1));
            await Task.Delay(5);
        }
        var e = Assert.ThrowsAsync<HalException>(() => slow);
        Assert.That((e!.IsTransient, e.Message), Is.EqualTo((true, "eth0: the Provisional PPPoE session did not come up within 60 s: ")));
        Assert.That(runner.Daemons[1].Stopped, Is.True);
    }

    [Test]
    public void The_hook_script_records_up_and_down_for_the_link()
    {
        var hook = Path.Combine(BoardAndRunnerTests.RepositoryRoot(), "rootfs/overlay/usr/lib/tsunagu/ppp-event");
        var state = Path.Combine(_dir, "wan.state");
        Run(hook, new() { ["DNS1"] = "192.0.2.53", ["DNS2"] = "" }, "ppp0", "/dev/null", "0", "100.64.0.2", "100.64.0.1", state);
        Assert.That(File.ReadAllText(state).Trim(), Is.EqualTo("up ppp0 100.64.0.2 100.64.0.1 192.0.2.53"));
        Run(hook, new() { ["CONNECT_TIME"] = "42" }, "ppp0", "/dev/null", "0", "100.64.0.2", "100.64.0.1", state);
        Assert.That(File.ReadAllText(state).Trim(), Is.EqualTo("down ppp0"));
    }

    private static void Run(string script, Dictionary<string, string> env, params string[] args)
    {
        var info = new ProcessStartInfo("sh") { UseShellExecute = false };
        info.ArgumentList.Add(script);
        foreach (var a in args) { info.ArgumentList.Add(a); }
        foreach (var (k, v) in env) { info.Environment[k] = v; }
        using var p = Process.Start(info)!;
        Assert.That(p.WaitForExit(10_000), Is.True);
        Assert.That(p.ExitCode, Is.Zero);
    }
}
