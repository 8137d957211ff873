using System.Text;
using Microsoft.Extensions.Time.Testing;
using Tsunagu.Hal;
using Tsunagu.Hal.Linux;
using Tsunagu.Hal.Simulated;
using Tsunagu.Protocol;

namespace Tsunagu.UnitTests;

/// <summary>The WAN link, data partition, boot control and system load adapters against fake sysfs, procfs, devices and tools.</summary>
public class LinuxAdapterTests : FakeRootTests
{

    // ---- WAN link ----

    private (LinuxWanLink Link, RecordingRunner Runner, FakeTimeProvider Time) Wan()
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
        var link = new LinuxWanLink(new LinuxWanOptions { Interface = "eth0", DhcpScript = "/etc/udhcpc.script", NetClassRoot = Path.Combine(_dir, "net") }, runner, time);
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
        await link.Watching;
        Assert.That(second.IsCompleted, Is.False);
        Assert.That(link.HasCarrier(), Is.False, "operstate down");
    }

    // ---- data partition ----

    [Test]
    public async Task Data_partition_must_be_mounted_and_writable()
    {
        var root = Path.Combine(_dir, "data");
        Directory.CreateDirectory(root);
        var escaped = root.Replace(" ", "\\040");
        var mountinfo = Write("mountinfo", $"22 1 253:0 / / rw,relatime - ext4 /dev/vda2 rw\n30 22 253:5 / {escaped} rw,noatime - ext4 /dev/vda5 rw\n");
        var data = new LinuxDataPartition(new LinuxDataOptions { Root = root, MountInfoPath = mountinfo });
        await data.EnsureReadyAsync(CancellationToken.None);
        Assert.That(Directory.EnumerateFileSystemEntries(root), Is.Empty, "the probe file is gone");

        var unmounted = new LinuxDataPartition(new LinuxDataOptions { Root = Path.Combine(_dir, "other"), MountInfoPath = mountinfo });
        Directory.CreateDirectory(unmounted.Root);
        var e = Assert.ThrowsAsync<HalException>(() => unmounted.EnsureReadyAsync(CancellationToken.None));
        Assert.That(e!.Message, Does.Contain("not mounted").And.Contain(mountinfo));
        var absent = new LinuxDataPartition(new LinuxDataOptions { Root = Path.Combine(_dir, "absent"), MountInfoPath = null });
        e = Assert.ThrowsAsync<HalException>(() => absent.EnsureReadyAsync(CancellationToken.None));
        Assert.That(e!.Message, Does.Contain("absent: the data partition's mount point does not exist"));
    }

    [Test]
    public async Task Format_erases_everything_under_the_mount_point_only()
    {
        var root = Path.Combine(_dir, "data");
        Write("data/state.db", "x");
        Write("data/apps/web/1.0/VERSION", "1.0");
        Write("data/lost+found/.keep", "");
        Write("outside/precious", "keep me");
        File.CreateSymbolicLink(Path.Combine(root, "link"), Path.Combine(_dir, "outside"));
        var data = new LinuxDataPartition(new LinuxDataOptions { Root = root, MountInfoPath = null });
        await data.FormatAsync(CancellationToken.None);
        Assert.That(Directory.Exists(root), Is.True);
        Assert.That(Directory.EnumerateFileSystemEntries(root).Select(Path.GetFileName), Is.EqualTo(new[] { "lost+found" }));
        Assert.That(Read("outside/precious"), Is.EqualTo("keep me"), "a link is removed, not followed");
        await data.EnsureReadyAsync(CancellationToken.None);
    }

    // ---- boot control ----

    private const long SlotBytes = 64 * 1024;

    private LinuxBootControl Boot(RecordingRunner runner, string cmdline = "console=ttyS0 root=/dev/vda3 tsunagu.slot=a quiet", TimeProvider? time = null)
    {
        Write("block/vda/uevent", "MAJOR=253\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n");
        Write("block/vda1/uevent", "MAJOR=253\nMINOR=1\nDEVNAME=vda1\nDEVTYPE=partition\nPARTN=1\nPARTNAME=prom\n");
        Write("block/vda3/uevent", "MAJOR=253\nMINOR=3\nDEVNAME=vda3\nDEVTYPE=partition\nPARTN=3\nPARTNAME=slot_a\n");
        Write("block/vda3/size", $"{SlotBytes / 512}\n");
        Write("block/vda4/uevent", "MAJOR=253\nMINOR=4\nDEVNAME=vda4\nDEVTYPE=partition\nPARTN=4\nPARTNAME=slot_b\n");
        Write("block/vda4/size", $"{SlotBytes / 512}\n");
        if (!File.Exists(Path.Combine(_dir, "dev/vda4")))
        {
            Write("dev/vda3", "");
            Write("dev/vda4", "");
        }
        Write("cmdline", cmdline + "\n");
        return new LinuxBootControl(new LinuxBootOptions
        {
            StatePath = Path.Combine(_dir, "data", "boot", "state"),
            CmdlinePath = Path.Combine(_dir, "cmdline"),
            SysBlockRoot = Path.Combine(_dir, "block"),
            DevRoot = Path.Combine(_dir, "dev"),
            CopyBufferSize = 4096,
            OpenDevice = path => new FileStream(path, FileMode.Open, FileAccess.Write),
        }, runner, time);
    }

    [Test]
    public void Block_devices_are_found_by_partition_name()
    {
        _ = Boot(new RecordingRunner());
        var devices = new BlockDevices(Path.Combine(_dir, "block"), "/dev");
        Assert.That(devices.Find("slot_b"), Is.EqualTo(new BlockPartition("slot_b", "/dev/vda4", SlotBytes)));
        Assert.That(devices.List().Select(p => p.PartitionName), Is.EqualTo(new[] { "prom", "slot_a", "slot_b" }));
        var e = Assert.Throws<HalException>(() => devices.Find("data"));
        Assert.That(e!.Message, Does.Contain("no partition named 'data'").And.Contain("slot_a on /dev/vda3"));
        Write("block/sda2/uevent", "DEVNAME=sda2\nPARTNAME=slot_b\n");
        e = Assert.Throws<HalException>(() => devices.Find("slot_b"));
        Assert.That(e!.Message, Does.Contain("'slot_b' is ambiguous: /dev/sda2, /dev/vda4"));
    }

    [Test]
    public async Task Update_cycle_writes_the_shared_state_file_in_its_fixed_format()
    {
        Write("data/boot/state", "# written by the boot program\nprimary=a\npending=\ntries=0\na_version=1.0.0\na_good=1\nb_version=0.9.0\nb_good=1\nboot_count=17\nlast_failed=\n");
        var runner = new RecordingRunner();
        var boot = Boot(runner);
        Assert.That((boot.Booted, boot.BootedOsVersion, boot.LastFailed), Is.EqualTo(((BootSlot?)BootSlot.A, "1.0.0", (BootSlot?)null)));
        Assert.That(boot.Read(BootSlot.B), Is.EqualTo(new SlotState(BootSlot.B, "0.9.0", true, 0)));

        var image = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("tsunagu-os-2.0.0 ", 2000))); // 34 kB: several chunks
        string? stateWhileWriting = null;
        var opts = new LinuxBootOptions
        {
            StatePath = Path.Combine(_dir, "data", "boot", "state"), CmdlinePath = Path.Combine(_dir, "cmdline"),
            SysBlockRoot = Path.Combine(_dir, "block"), DevRoot = Path.Combine(_dir, "dev"), CopyBufferSize = 4096,
            OpenDevice = path =>
            {
                stateWhileWriting = Read("data/boot/state");
                return new FileStream(path, FileMode.Open, FileAccess.Write);
            },
        };
        boot = new LinuxBootControl(opts, runner);
        await boot.WriteAsync(BootSlot.B, new ForwardOnlyStream(new MemoryStream(image)), "2.0.0", CancellationToken.None);
        Assert.That(stateWhileWriting, Is.EqualTo("# written by the boot program\nprimary=a\npending=\ntries=0\na_version=1.0.0\na_good=1\nb_version=\nb_good=0\nboot_count=17\nlast_failed=\n"),
            "the slot is marked bad and its version cleared before the image is written");
        Assert.That(File.ReadAllBytes(Path.Combine(_dir, "dev", "vda4")), Is.EqualTo(image));
        Assert.That(File.ReadAllBytes(Path.Combine(_dir, "dev", "vda3")), Is.Empty, "the booted slot is untouched");
        Assert.That(Read("data/boot/state"), Is.EqualTo("# written by the boot program\nprimary=a\npending=\ntries=0\na_version=1.0.0\na_good=1\nb_version=2.0.0\nb_good=0\nboot_count=17\nlast_failed=\n"));
        Assert.That(File.Exists(Path.Combine(_dir, "data", "boot", "state.tmp")), Is.False);

        boot.Activate(BootSlot.B, 3);
        Assert.That(Read("data/boot/state"), Is.EqualTo("# written by the boot program\nprimary=a\npending=b\ntries=3\na_version=1.0.0\na_good=1\nb_version=2.0.0\nb_good=0\nboot_count=17\nlast_failed=\n"));
        Assert.That(boot.Read(BootSlot.B), Is.EqualTo(new SlotState(BootSlot.B, "2.0.0", false, 3)));

        // the boot program tried b, which came up: the firmware on b commits it
        Write("data/boot/state", "# written by the boot program\nprimary=a\npending=b\ntries=2\na_version=1.0.0\na_good=1\nb_version=2.0.0\nb_good=0\nboot_count=18\nlast_failed=\n");
        var onB = Boot(runner, "console=ttyS0 tsunagu.slot=b");
        Assert.That((onB.Booted, onB.BootedOsVersion, onB.Read(BootSlot.B).TriesLeft), Is.EqualTo(((BootSlot?)BootSlot.B, "2.0.0", 2)));
        onB.MarkGood(BootSlot.B);
        Assert.That(Read("data/boot/state"), Is.EqualTo("# written by the boot program\nprimary=b\npending=\ntries=0\na_version=1.0.0\na_good=1\nb_version=2.0.0\nb_good=1\nboot_count=18\nlast_failed=\n"));
        onB.MarkBad(BootSlot.A);
        Assert.That(Read("data/boot/state"), Does.Contain("\na_good=0\n").And.Contain("primary=b\n"));
        onB.MarkBad(BootSlot.B);
        Assert.That(Read("data/boot/state"), Does.Contain("primary=\n").And.Contain("b_good=0\n"));
        Assert.That(runner.Commands, Is.Empty);
    }

    [Test]
    public async Task A_fresh_state_file_gets_every_key()
    {
        var boot = Boot(new RecordingRunner(), "tsunagu.slot=recovery");
        Assert.That((boot.Booted, boot.BootedOsVersion), Is.EqualTo(((BootSlot?)null, (string?)null)));
        await boot.WriteAsync(BootSlot.A, new MemoryStream([1, 2, 3]), "1.2.3", CancellationToken.None);
        Assert.That(Read("data/boot/state"), Is.EqualTo("primary=\npending=\ntries=0\na_version=1.2.3\na_good=0\nb_version=\nb_good=0\nlast_failed=\n"));
        Assert.Throws<HalException>(() => boot.Activate(BootSlot.B, 3), "slot b holds no image");
    }

    [Test]
    public void Last_failed_slot_is_reported_until_a_slot_is_committed()
    {
        Write("data/boot/state", "primary=a\npending=\ntries=0\na_version=1.0.0\na_good=1\nb_version=2.0.0\nb_good=0\nlast_failed=b\n");
        var boot = Boot(new RecordingRunner());
        Assert.That(boot.LastFailed, Is.EqualTo(BootSlot.B));
        boot.MarkGood(BootSlot.A);
        Assert.That(boot.LastFailed, Is.Null);
        Assert.That(Read("data/boot/state"), Does.EndWith("last_failed=\n"));
    }

    [Test]
    public void Oversized_image_and_the_booted_slot_are_refused_before_anything_is_written()
    {
        Write("data/boot/state", "primary=a\npending=\ntries=0\na_version=1.0.0\na_good=1\nb_version=0.9.0\nb_good=1\nlast_failed=\n");
        var before = Read("data/boot/state");
        Write("dev/vda4", "old image");
        var boot = Boot(new RecordingRunner());
        var e = Assert.ThrowsAsync<HalException>(() => boot.WriteAsync(BootSlot.B, new MemoryStream(new byte[SlotBytes + 1]), "2.0.0", CancellationToken.None));
        Assert.That(e!.Message, Does.Contain($"({SlotBytes + 1} bytes) does not fit slot_b").And.Contain("vda4"));
        Assert.That(e.IsTransient, Is.False);
        Assert.That(Read("dev/vda4"), Is.EqualTo("old image"));
        Assert.That(Read("data/boot/state"), Is.EqualTo(before));

        e = Assert.ThrowsAsync<HalException>(() => boot.WriteAsync(BootSlot.A, new MemoryStream([1]), "2.0.0", CancellationToken.None));
        Assert.That(e!.Message, Does.Contain("booted slot"));
        Assert.That(Read("data/boot/state"), Is.EqualTo(before));

        // a stream of unknown length is cut off at the partition's end, and the slot stays bad
        e = Assert.ThrowsAsync<HalException>(() => boot.WriteAsync(BootSlot.B, new ForwardOnlyStream(new MemoryStream(new byte[SlotBytes + 4096])), "2.0.0", CancellationToken.None));
        Assert.That(e!.Message, Does.Contain("larger than slot_b"));
        Assert.That(new FileInfo(Path.Combine(_dir, "dev", "vda4")).Length, Is.LessThanOrEqualTo(SlotBytes));
        Assert.That(boot.Read(BootSlot.B), Is.EqualTo(new SlotState(BootSlot.B, null, false, 0)));
    }

    [Test]
    public void Reboot_syncs_then_runs_the_reboot_command_and_waits()
    {
        var runner = new RecordingRunner();
        var boot = Boot(runner, time: new VirtualTime(Start));
        var e = Assert.ThrowsAsync<HalException>(() => boot.RebootAsync(CancellationToken.None));
        Assert.That(runner.Commands, Is.EqualTo(new[] { "sync", "reboot -f" }));
        Assert.That(e!.Message, Does.Contain("still running 60 s later"));

        runner.Respond = c => c.Program == "reboot" ? new CommandResult(c, 1, "", "reboot: Operation not permitted", false) : null;
        Assert.ThrowsAsync<CommandFailedException>(() => boot.RebootAsync(CancellationToken.None));
    }

    [Test]
    public async Task Simulated_boot_control_reports_the_slot_that_did_not_come_up()
    {
        var boot = new SimulatedBootControl(Path.Combine(_dir, "sim"));
        await boot.WriteAsync(BootSlot.A, new MemoryStream([1]), "1.0.0", CancellationToken.None);
        boot.Activate(BootSlot.A, 2);
        await boot.RebootAsync(CancellationToken.None);
        boot.MarkGood(BootSlot.A);
        await boot.WriteAsync(BootSlot.B, new MemoryStream([2]), "2.0.0", CancellationToken.None);
        boot.CrashingSlots.Add(BootSlot.B);
        boot.Activate(BootSlot.B, 2);
        await boot.RebootAsync(CancellationToken.None);
        Assert.That((boot.Booted, boot.LastFailed), Is.EqualTo(((BootSlot?)BootSlot.A, (BootSlot?)BootSlot.B)));
        Assert.That(new SimulatedBootControl(Path.Combine(_dir, "sim")).LastFailed, Is.EqualTo(BootSlot.B), "kept across restarts");
        boot.MarkGood(BootSlot.A);
        Assert.That(boot.LastFailed, Is.Null);
    }

    // ---- system load ----

    private void Counters(long user, long system, long idle, long iowait, long rx, long tx)
    {
        Write("proc/stat", $"cpu  {user} 0 {system} {idle} {iowait} 0 0 0 0 0\ncpu0 {user} 0 {system} {idle} {iowait} 0 0 0 0 0\nintr 1 2 3\n");
        Write("proc/net/dev", "Inter-|   Receive                                                |  Transmit\n" +
                              " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n" +
                              "    lo:  999999     10    0    0    0     0          0         0   999999      10    0    0    0     0       0          0\n" +
                              $"  eth0: {rx} 100 0 0 0 0 0 0 {tx} 100 0 0 0 0 0 0\n");
    }

    [Test]
    public void System_load_compares_two_samples_of_the_kernel_counters()
    {
        Counters(user: 1000, system: 500, idle: 8000, iowait: 500, rx: 1_000_000, tx: 2_000_000);
        Write("net/eth0/speed", "100\n");
        var time = new FakeTimeProvider(Start);
        var load = new LinuxSystemLoad(new LinuxLoadOptions { WanInterface = "eth0", ProcRoot = Path.Combine(_dir, "proc"), NetClassRoot = Path.Combine(_dir, "net") }, time);
        time.Advance(TimeSpan.FromSeconds(2));
        // 2 s: 300 of 400 jiffies busy; 5 MB received = 20 Mb/s of 100
        Counters(user: 1200, system: 600, idle: 8050, iowait: 550, rx: 6_000_000, tx: 2_500_000);
        var reading = load.Read();
        Assert.That(reading.Cpu, Is.EqualTo(0.75).Within(1e-9));
        Assert.That(reading.Wan, Is.EqualTo(0.2).Within(1e-9));

        time.Advance(TimeSpan.FromSeconds(10));
        Counters(user: 1200, system: 600, idle: 9050, iowait: 550, rx: 6_000_000, tx: 2_500_000);
        Assert.That(load.Read(), Is.EqualTo(new UnitLoad(0, 0)), "idle since the last reading");

        File.Delete(Path.Combine(_dir, "net/eth0/speed")); // virtio has no speed: the fallback (100 Mb/s) or the configured capacity
        var configured = new LinuxSystemLoad(new LinuxLoadOptions { WanInterface = "eth0", ProcRoot = Path.Combine(_dir, "proc"), WanMbps = 1000, NetClassRoot = Path.Combine(_dir, "net") }, time);
        time.Advance(TimeSpan.FromSeconds(1));
        Counters(user: 1200, system: 600, idle: 9050, iowait: 550, rx: 6_000_000, tx: 2_500_000 + 125_000_000);
        Assert.That(configured.Read().Wan, Is.EqualTo(1.0), "1 Gb/s sent on a 1 Gb/s link");
    }
}
