using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Microsoft.Extensions.DependencyInjection;
using Tsunagu.Demo;
using Tsunagu.IntegrationTests;
using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Units.ServiceConfigs;

namespace Tsunagu.SystemTests.Qemu;

/// <summary>
/// The firmware image booted in QEMU (TCG) against the real server: first boot to an update and Ready, recovery
/// from a wiped `data`, a new slot that does not come up (a panic) or hangs (the watchdog), LEDs and the reset button (hard
/// power cuts: <see cref="PowerCutTests"/>).
/// </summary>
[TestFixture, NonParallelizable]
public sealed class QemuUnitTests
{
    private static readonly TimeSpan BootToReady = TimeSpan.FromMinutes(4);

    private QemuLab _lab = null!;

    [OneTimeSetUp]
    public async Task StartLab() => _lab = await QemuLab.StartAsync();

    [OneTimeTearDown]
    public async Task StopLab() => await _lab.DisposeAsync();

    [Test]
    public Task First_boot_provisions_updates_to_pattern_2_reboots_into_the_new_slot_and_is_ready() => FirstBootAsync(_lab, 1, BootToReady);

    /// <summary>
    /// First boot of a new unit of <paramref name="lab"/>'s board: provisioning, the update to qemu-2, its reboot into
    /// slot B and Ready with the services; prom and factory read-only; then a normal power-on to Ready (every board).
    /// </summary>
    internal static async Task FirstBootAsync(QemuLab lab, int index, TimeSpan bootToReady)
    {
        await using var unit = await lab.AddUnitAsync(index);
        var clock = Stopwatch.StartNew();
        unit.PowerOn();
        await unit.WaitReadyAsync(LabCatalogue.Pattern2, bootToReady);
        TestContext.Out.WriteLine($"{lab.Board}: boot to Ready on {LabCatalogue.Pattern2} (including the update and its reboot): {clock.Elapsed.TotalSeconds:0.0} s");
        var console = unit.FullConsole();
        Assert.That(console, Does.Contain("tsunagu-boot: starting slot a"), "the first boot runs the factory OS in slot A");
        Assert.That(console, Does.Contain("Tsunagu OS tsunagu-os 1.1 (b)"), "after the update the unit runs OS 1.1 from slot B");
        // every boot so far (the factory slot's, the updated slot's): the boot program arms the board's watchdog and the
        // supervisor sets its timeout (that it feeds it, and that a hung OS is reset, is make test-long's)
        var boots = Regex.Count(console, "tsunagu-boot: starting (slot |the recovery OS)");
        Assert.That(boots, Is.GreaterThanOrEqualTo(2), "at least two boots: slot A, then slot B after the update");
        Assert.That(Regex.Count(console, @"tsunagu-boot: watchdog /dev/\S+ armed"), Is.EqualTo(boots), "the boot program arms the board's watchdog on every boot");
        Assert.That(Regex.Count(console, @"watchdog armed: timeout \d+ s"), Is.EqualTo(boots), "the supervisor takes the watchdog over on every boot");
        var state = await unit.ShellAsync("cat /data/boot/state");
        Assert.That(state, Does.Contain("primary=b").And.Contain("b_good=1").And.Contain("b_version=tsunagu-os 1.1"));
        Assert.That(await unit.ShellAsync("cat /etc/os-version"), Is.EqualTo("tsunagu-os 1.1"));
        // the services the host configured run on the real daemons
        Assert.That(await unit.ShellAsync("nft list tables"), Does.Contain("inet tsunagu"));
        Assert.That(await unit.ShellAsync("pidof dnsmasq >/dev/null && echo running"), Is.EqualTo("running"));
        Assert.That(await unit.ShellAsync("squid -v | head -n 1"), Does.StartWith("Squid Cache: Version"), "a board with a cache disk carries squid");
        Assert.That(await unit.ShellAsync("grep ' /hdd ' /proc/mounts | cut -d' ' -f3"), Is.EqualTo("ext4"), "the cache disk is formatted and mounted");
        var server = (await lab.UnitAsync(unit.Mac))!;
        Assert.That(server.Pattern, Is.EqualTo(LabCatalogue.Pattern2));
        // prom and factory are read-only at the block layer (the boot program's blockdev --setro); data is writable
        foreach (var (name, readOnly) in new[] { ("prom", true), ("factory", true), ("data", false) })
        {
            var device = await unit.ShellAsync($"basename $(dirname $(grep -l '^PARTNAME={name}$' /sys/class/block/vda*/uevent))");
            Assert.That(device, Does.Match("^vda[0-9]+$"), $"the partition named {name}");
            Assert.That(await unit.ShellAsync($"blockdev --getro /dev/{device}"), Is.EqualTo(readOnly ? "1" : "0"), $"{name} ({device}) read-only: {readOnly}");
            if (readOnly)
            {
                Assert.That(await unit.ShellAsync($"dd if=/dev/zero of=/dev/{device} bs=512 count=1 conv=notrunc 2>/dev/null && echo written || echo refused"),
                    Is.EqualTo("refused"), $"a write to {name} is refused by the kernel");
            }
        }

        // measurements for docs/image.md: the supervisor's memory at Ready, and a normal boot (stored settings) to Ready
        var rss = await unit.ShellAsync("grep VmRSS /proc/$(pidof tsunagud)/status");
        var size = await unit.ShellAsync("wc -c < /usr/lib/tsunagu/tsunagud");
        TestContext.Out.WriteLine($"{lab.Board}: tsunagud at Ready: {rss}; binary {size} bytes");
        Assert.That(rss, Does.Match(@"VmRSS:\s+\d+ kB"));
        await unit.PowerOffAsync();
        clock.Restart();
        unit.PowerOn();
        await unit.WaitAsync(() => unit.Console().Contains("--> Ready"), bootToReady, "Ready after a normal power-on");
        TestContext.Out.WriteLine($"{lab.Board}: power-on to Ready with stored settings: {clock.Elapsed.TotalSeconds:0.0} s");
        Assert.That(unit.Console(), Does.Contain("Boot --Success--> Main"), "a normal boot with valid stored settings goes straight to Main");
    }

    [Test]
    public Task A_wiped_data_partition_is_restored_from_prom_factory_and_the_host_without_action_on_the_unit() =>
        WipedDataAsync(_lab, 2, BootToReady);

    /// <summary>
    /// A Ready unit of <paramref name="lab"/>'s board whose `data` is wiped while it is off: the boot program starts the
    /// recovery OS from prom, which rebuilds `data`, and the host brings the unit back to qemu-2 with its services (every board).
    /// Its VPN runs with the same key pair after the wipe (derived from the factory secret), so its peers keep working.
    /// </summary>
    internal static async Task WipedDataAsync(QemuLab lab, int index, TimeSpan bootToReady)
    {
        await using var unit = await lab.AddUnitAsync(index);
        var peer = RandomNumberGenerator.GetBytes(32);
        WireGuardKeys.Clamp(peer);
        await lab.App.Services.GetRequiredService<ServiceConfigService>().AssignAsync(unit.Mac, DemoCatalogue.StandardServices with
        {
            Vpn = new VpnConfig(true, 51820, "10.99.0.1/24", [new VpnPeer("office", WireGuardKeys.ToText(WireGuardKeys.PublicKey(peer)), "10.99.0.2/32", null)]),
        }, "qemu-lab", CancellationToken.None);
        unit.PowerOn();
        await unit.WaitReadyAsync(LabCatalogue.Pattern2, bootToReady, async () => (await lab.UnitAsync(unit.Mac))?.VpnPublicKey is not null);
        var vpn = (await lab.UnitAsync(unit.Mac))!;
        Assert.That((await unit.ShellAsync("wg show wg0 public-key")).Trim(), Is.EqualTo(vpn.VpnPublicKey), "the unit's VPN runs with the key the host shows");
        var sessionsBefore = (await lab.Store.History.ListUnitEventsAsync(unit.Mac)).Count;
        await unit.PowerOffAsync();
        unit.CorruptPartition("data");
        await lab.Store.Units.TouchAsync(unit.Mac, error: null); // nothing about the unit changes on the server side
        unit.PowerOn();
        await unit.WaitAsync(() => unit.Console().Contains("starting the recovery OS from prom: data unreadable"), TimeSpan.FromSeconds(90),
            "the boot program's fall back to the recovery OS");
        await unit.WaitReadyAsync(LabCatalogue.Pattern2, bootToReady, () => Task.FromResult(unit.Console().Contains("Tsunagu OS tsunagu-os 1.1 (a)")));
        Assert.That(unit.Console(), Does.Contain("rebuilding data"));
        Assert.That(await unit.ShellAsync("cat /data/boot/state"), Does.Contain("primary=a").And.Contain("a_version=tsunagu-os 1.1"));
        Assert.That(await unit.ShellAsync("nft list tables"), Does.Contain("inet tsunagu"), "the host restored the services too");
        Assert.That((await lab.Store.History.ListUnitEventsAsync(unit.Mac)).Count, Is.GreaterThan(sessionsBefore));
        // the VPN again, with the same key pair: a peer configured against the unit before the wipe still works
        await unit.WaitAsync(async () => (await lab.UnitAsync(unit.Mac))?.VpnReportedAt != vpn.VpnReportedAt, TimeSpan.FromMinutes(2), "the VPN report after the recovery");
        Assert.That((await lab.UnitAsync(unit.Mac))!.VpnPublicKey, Is.EqualTo(vpn.VpnPublicKey), "the host shows the same public key");
        Assert.That((await unit.ShellAsync("wg show wg0 public-key")).Trim(), Is.EqualTo(vpn.VpnPublicKey), "the unit's VPN runs with the same key");
    }

    [Test]
    public Task A_unit_reimaged_by_a_technician_with_factory_burn_reimage_comes_back_as_itself() => ReimageAsync(_lab, 6, BootToReady);

    /// <summary>
    /// A technician reimages a Ready unit of <paramref name="lab"/>'s board: the whole disk is written again from the
    /// image (the factory partition with it), `tsunagu factory burn --reimage` (the CLI, as a technician runs it) writes
    /// the same identity into it and registers nothing, and the unit comes back as itself: it provisions again with the
    /// secrets its identity derives from the operator's unit key, is updated to qemu-2 and Ready, in the same row of the
    /// device management table, with no second registration (every board).
    /// </summary>
    internal static async Task ReimageAsync(QemuLab lab, int index, TimeSpan bootToReady)
    {
        await using var unit = await lab.AddUnitAsync(index);
        unit.PowerOn();
        await unit.WaitReadyAsync(LabCatalogue.Pattern2, bootToReady);
        var before = (await lab.UnitAsync(unit.Mac))!;
        Assert.That(await RegistrationsAsync(lab, unit.Mac), Is.EqualTo(1), "the unit was registered once, by the factory");
        var provisioned = unit.Provisionings();
        await unit.PowerOffAsync();
        TestServer.Run("cp", ["--sparse=always", Path.Combine(lab.ImageDirectory, "disk.img"), unit.Disk]);
        var cli = Path.Combine(AppContext.BaseDirectory, "tsunagu.dll");
        Assert.That(() => TestServer.Run("dotnet", [cli, "factory", "show", "--image", unit.Disk]), Throws.InvalidOperationException,
            "the fresh image carries no identity");
        var burned = TestServer.Run("dotnet", [cli, "factory", "burn", "--reimage", "--image", unit.Disk, "--mac", unit.Mac,
            "--serial", before.Serial, "--hardware", before.HardwareVersion, "--board", lab.Board, "--provisional-method", "dhcp",
            "--unit-key", Path.Combine(lab.Root, "server", "keys", UnitKey.FileName),
            "--release-public-key", ReleaseKeys.PublicKeyBase64(lab.ReleaseKey),
            "--bootstrap-url", $"https://10.0.2.100:{lab.Port}/", "--server", $"https://127.0.0.1:{lab.Port}/", "--server-cert", lab.CertificatePath,
            "--password", QemuLab.Password]); // the server is asked whether it has the unit as given
        Assert.That(burned, Does.Contain($"rewritten for {unit.Mac}").And.Contain("comes back as itself"));
        Assert.That(TestServer.Run("dotnet", [cli, "factory", "show", "--image", unit.Disk]), Does.Contain($"mac {unit.Mac}").And.Contain($"board {lab.Board}"));
        unit.PowerOn();
        await unit.WaitReadyAsync(LabCatalogue.Pattern2, bootToReady, () => Task.FromResult(unit.ProvisionedAgainAndReadyOnOs11(provisioned)));
        var after = (await lab.UnitAsync(unit.Mac))!;
        Assert.That((after.Serial, after.CreatedAt), Is.EqualTo((before.Serial, before.CreatedAt)), "the same row of the device management table");
        Assert.That(await RegistrationsAsync(lab, unit.Mac), Is.EqualTo(1), "no second registration");
        Assert.That(await unit.ShellAsync("cat /etc/os-version"), Is.EqualTo("tsunagu-os 1.1"), "updated to qemu-2 again");
    }

    /// <summary>How often the server's audit log says <paramref name="mac"/> was registered (the factory's burn does it once).</summary>
    internal static async Task<int> RegistrationsAsync(QemuLab lab, string mac) =>
        (await lab.Store.ListAuditAsync(target: mac)).Count(a => a.Action == "unit.register");

    [Test]
    public Task A_unit_booted_from_the_field_stick_is_reimaged_around_its_factory_partition_and_comes_back_as_itself() =>
        FieldStick.ReimageAsync(_lab, 7, BootToReady);

    [Test]
    public Task The_field_stick_refuses_a_unit_of_another_board_or_without_an_identity_and_writes_nothing() => FieldStick.RefusalAsync(_lab, 8);

    [Test]
    public Task A_new_slot_that_does_not_come_up_falls_back_to_the_old_slot_and_the_failure_is_reported() => SlotFallbackAsync(_lab, 3, BootToReady);

    /// <summary>
    /// A new slot that does not come up on <paramref name="lab"/>'s board: three tries, the old slot again, the failure
    /// reported, Ready on qemu-2 (every board).
    /// </summary>
    internal static async Task SlotFallbackAsync(QemuLab lab, int index, TimeSpan bootToReady)
    {
        // qemu-3: an OS image that mounts but has no init, so the kernel panics on every try (panic=1 restarts it)
        var broken = Path.Combine(lab.Root, "broken-os");
        Directory.CreateDirectory(Path.Combine(broken, "etc"));
        await File.WriteAllTextAsync(Path.Combine(broken, "etc", "os-version"), "tsunagu-os 1.2\n");
        TestServer.Run("mksquashfs", [broken, Path.Combine(lab.Root, "broken.sqfs"), "-noappend", "-quiet", "-no-progress", "-comp", "zstd"]);
        await lab.AddBrokenUpdate(Path.Combine(lab.Root, "broken.sqfs"));
        await using var unit = await lab.AddUnitAsync(index);
        unit.PowerOn();
        await unit.WaitReadyAsync(LabCatalogue.Pattern2, bootToReady);
        await lab.Store.Units.SetTargetPatternAsync(unit.Mac, QemuLab.BrokenPattern);
        Assert.That(await unit.MonitorAsync("info status"), Does.Contain("running"));
        await lab.ForceCheckAsync(unit.Mac);
        await unit.WaitAsync(async () => (await lab.UnitAsync(unit.Mac))?.LastError?.Contains($"update {QemuLab.BrokenUpdate} failed", StringComparison.Ordinal) == true,
            bootToReady, "the failure report of the broken update");
        var console = unit.FullConsole();
        Assert.That(console, Does.Contain("trying slot a (2 tries left after this one)"));
        Assert.That(console, Does.Contain("trying slot a (0 tries left after this one)"));
        Assert.That(console, Does.Contain("slot a did not come up within its tries; marking it bad"));
        await unit.WaitReadyAsync(LabCatalogue.Pattern2, bootToReady);
        var state = await unit.ShellAsync("cat /data/boot/state");
        Assert.That(state, Does.Contain("primary=b").And.Contain("a_good=0").And.Contain("last_failed=a"));
        Assert.That(await unit.ShellAsync("cat /etc/os-version"), Is.EqualTo("tsunagu-os 1.1"), "the unit runs the old slot again");
    }

    /// <summary>
    /// Long (`make test-long`, `make system-test`; not `make test`): about 7 minutes of the watchdog's own timeouts. Every
    /// first boot (<see cref="FirstBootAsync"/>, both boards) checks that the watchdog is armed and taken over.
    /// </summary>
    [Test, Category("long")]
    public async Task A_new_slot_that_hangs_without_a_panic_is_restarted_by_the_watchdog_uses_up_its_tries_falls_back_and_the_failure_is_reported()
    {
        // qemu-4: OS 1.1's image whose supervisor never starts: the OS boots and hangs, nothing feeds the watchdog the
        // boot program armed, nothing panics
        var hung = Path.Combine(_lab.Root, "hung-os");
        TestServer.Run("unsquashfs", ["-q", "-d", hung, LabCatalogue.UpdateOsImage(_lab.ImageDirectory)]);
        var run = Path.Combine(hung, "usr", "lib", "tsunagu", "tsunagud-run");
        File.Delete(run);
        await File.WriteAllTextAsync(run, "#!/bin/sh\necho 'tsunagud-run: this OS hangs' > /dev/console\nexec sleep 2147483647\n");
        File.SetUnixFileMode(run, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute
                                  | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        await File.WriteAllTextAsync(Path.Combine(hung, "etc", "os-version"), "tsunagu-os 1.3\n");
        TestServer.Run("mksquashfs", [hung, Path.Combine(_lab.Root, "hung.sqfs"), "-noappend", "-quiet", "-no-progress", "-comp", "zstd", "-all-root"]);
        await _lab.AddHangingUpdate(Path.Combine(_lab.Root, "hung.sqfs"));
        await using var unit = await _lab.AddUnitAsync(5);
        unit.PowerOn();
        await unit.WaitReadyAsync(LabCatalogue.Pattern2, BootToReady);
        Assert.That(unit.Console(), Does.Contain("tsunagu-boot: watchdog /dev/watchdog armed"), "the boot program arms the board's watchdog");
        Assert.That(unit.Console(), Does.Contain("watchdog armed: timeout 60 s"), "the supervisor takes it over and feeds it");
        var boots = Boots(unit.Console());
        await Task.Delay(TimeSpan.FromSeconds(90));
        Assert.That(Boots(unit.Console()), Is.EqualTo(boots), "a healthy unit is fed: no restart after the watchdog's 60 s");

        await _lab.Store.Units.SetTargetPatternAsync(unit.Mac, QemuLab.HangingPattern);
        await _lab.ForceCheckAsync(unit.Mac);
        // three tries of about a minute each until the watchdog restarts the unit, then the fall back to slot b
        await unit.WaitAsync(async () => (await _lab.UnitAsync(unit.Mac))?.LastError?.Contains($"update {QemuLab.HangingUpdate} failed", StringComparison.Ordinal) == true,
            TimeSpan.FromMinutes(20), "the failure report of the update whose OS hangs");
        var console = unit.Console();
        Assert.That(unit.Running, Is.True, "one QEMU process throughout: the restarts were the guest's own");
        Assert.That(console.Split("tsunagud-run: this OS hangs").Length - 1, Is.EqualTo(3), "the hung OS ran once per try");
        Assert.That(console, Does.Contain("trying slot a (2 tries left after this one)"));
        Assert.That(console, Does.Contain("trying slot a (0 tries left after this one)"));
        Assert.That(console, Does.Contain("slot a did not come up within its tries; marking it bad"));
        Assert.That(console, Does.Not.Contain("Kernel panic"), "no try ended in a panic: the watchdog restarted each");
        await unit.WaitReadyAsync(LabCatalogue.Pattern2, BootToReady);
        var state = await unit.ShellAsync("cat /data/boot/state");
        Assert.That(state, Does.Contain("primary=b").And.Contain("a_good=0").And.Contain("last_failed=a"));
        Assert.That(await unit.ShellAsync("cat /etc/os-version"), Is.EqualTo("tsunagu-os 1.1"), "the unit runs the old slot again");
        Assert.That((await _lab.UnitAsync(unit.Mac))!.Pattern, Is.EqualTo(LabCatalogue.Pattern2));

        static int Boots(string console) => console.Split("tsunagu-boot: starting").Length - 1;
    }

    [Test]
    public Task Leds_show_the_state_and_a_long_press_of_reset_wipes_data_and_provisions_again() => LedsAndResetAsync(_lab, 4, BootToReady);

    /// <summary>
    /// The LEDs of <paramref name="lab"/>'s board (its emulated keyboard's lock LEDs, board.json) show Ready; a short press
    /// of reset (F12 on that keyboard) changes nothing, a long one wipes `data` and the unit provisions again (every board).
    /// </summary>
    internal static async Task LedsAndResetAsync(QemuLab lab, int index, TimeSpan bootToReady)
    {
        await using var unit = await lab.AddUnitAsync(index);
        unit.PowerOn();
        await unit.WaitReadyAsync(LabCatalogue.Pattern2, bootToReady);
        // board.json: ready = power, status and wan on (num, caps and scroll lock of the emulated keyboard)
        var leds = "";
        await unit.WaitAsync(() => (leds = Leds(unit)) == "1 1 1", TimeSpan.FromSeconds(20), $"the Ready LEDs (power, status, wan on; last read: '{leds}')");
        var provisioned = unit.Provisionings();
        await unit.MonitorAsync("sendkey f12 1000");   // a short press changes nothing
        await Task.Delay(TimeSpan.FromSeconds(3));
        Assert.That(unit.Console(), Does.Not.Contain("reset button held"));
        await unit.MonitorAsync("sendkey f12 7000");   // longer than the board's 5 s
        await unit.WaitAsync(() => unit.Console().Contains("reset button held"), TimeSpan.FromSeconds(30), "the long press");
        await unit.WaitAsync(() => unit.Console().Contains("starting the recovery OS from prom: no good slot"), TimeSpan.FromSeconds(90),
            "the restart into the recovery OS after the wipe");
        await unit.WaitReadyAsync(LabCatalogue.Pattern2, bootToReady,
            () => Task.FromResult(unit.ProvisionedAgainAndReadyOnOs11(provisioned)));
        await unit.WaitAsync(() => Leds(unit) == "1 1 1", TimeSpan.FromSeconds(20), "the Ready LEDs after the reset");

        string Leds(QemuUnit u)
        {
            try
            {
                return u.ShellAsync("cat /sys/class/leds/input*::numlock/brightness /sys/class/leds/input*::capslock/brightness /sys/class/leds/input*::scrolllock/brightness | tr '\\n' ' '")
                    .GetAwaiter().GetResult().Trim();
            }
            catch (Exception e) when (e is IOException or TimeoutException or System.Net.Sockets.SocketException)
            {
                return $"unreadable: {e.Message}";
            }
        }
    }
}
