using System.Diagnostics;
using System.Text.RegularExpressions;
using Tsunagu.Demo;

namespace Tsunagu.SystemTests.Qemu;

/// <summary>
/// The verified boot chain on the QEMU board (TCG): the OS slot the update wrote is mapped through dm-verity with the
/// root hash of the signed manifest; one byte of it changed while the unit is off makes the boot program refuse it, fall
/// back to the other slot and the unit report it. An installed application damaged on `data` is fetched again from the host.
/// </summary>
[TestFixture, NonParallelizable]
public sealed partial class VerifiedBootTests
{
    private static readonly TimeSpan BootToReady = TimeSpan.FromMinutes(4);

    private QemuLab _lab = null!;

    [OneTimeSetUp]
    public async Task StartLab() => _lab = await QemuLab.StartAsync();

    [OneTimeTearDown]
    public async Task StopLab() => await _lab.DisposeAsync();

    [GeneratedRegex(@"slot ([ab]) verified \(dm-verity, (\d+) blocks, root hash [0-9a-f]{64}\) in ([0-9.]+) s")]
    private static partial Regex Verified();

    [Test]
    public Task A_changed_byte_in_the_active_slot_makes_the_boot_program_refuse_it_fall_back_to_the_other_slot_and_the_unit_report_it() =>
        ChangedByteFallbackAsync(_lab, 11, BootToReady);

    /// <summary>
    /// The unit updates to pattern 2 (slot b, mapped through dm-verity with the manifest's root hash); one byte of slot b
    /// changed while it is off makes the boot program refuse it and boot slot a, and the unit reports the refusal.
    /// The same steps on every board (<see cref="QemuArm64Tests"/> runs them on qemu-arm64).
    /// </summary>
    public static async Task ChangedByteFallbackAsync(QemuLab lab, int index, TimeSpan bootToReady)
    {
        await using var unit = await lab.AddUnitAsync(index);
        var clock = Stopwatch.StartNew();
        unit.PowerOn();
        await unit.WaitReadyAsync(LabCatalogue.Pattern2, bootToReady);
        TestContext.Out.WriteLine($"first boot to Ready on {LabCatalogue.Pattern2}: {clock.Elapsed.TotalSeconds:0.0} s");
        var console = unit.FullConsole();
        // the factory slot (root hash from the image build) and the updated one (root hash from the signed manifest) were verified
        var verified = Verified().Matches(console).Select(m => (Slot: m.Groups[1].Value, Blocks: m.Groups[2].Value, Seconds: m.Groups[3].Value)).ToList();
        Assert.That(verified.Select(v => v.Slot), Is.EqualTo(new[] { "a", "b" }), console);
        foreach (var v in verified) { TestContext.Out.WriteLine($"slot {v.Slot}: {v.Blocks} blocks of 4 KiB verified at boot in {v.Seconds} s"); }
        var state = await unit.ShellAsync("cat /data/boot/state");
        Assert.That(state, Does.Contain("primary=b").And.Contain("b_good=1").And.Match(@"b_verity=\d+:\d+:[0-9a-f]+:[0-9a-f]{64}"));
        Assert.That(await unit.ShellAsync("cat /sys/block/dm-0/dm/name"), Is.EqualTo("verity-b"), "the OS runs from the dm-verity mapping");
        var rootHash = Regex.Match(state, @"b_verity=\d+:\d+:[0-9a-f]+:([0-9a-f]{64})").Groups[1].Value;

        await unit.PowerOffAsync();
        // one byte in the middle of the OS image (inside the squashfs, before the hash tree)
        var blocks = long.Parse(Regex.Match(state, @"b_verity=(\d+):").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        unit.FlipByte("slot_b", blocks * 4096 / 2 + 123);
        unit.PowerOn();
        await unit.WaitAsync(() => unit.Console().Contains("tsunagu-boot: starting slot a"), bootToReady, "the fall back to slot a");
        var boot = unit.Console();
        Assert.That(boot, Does.Contain($"slot b fails verification (dm-verity, root hash {rootHash})"));
        Assert.That(boot, Does.Contain("falling back to slot a"));
        await unit.WaitAsync(async () => (await lab.UnitAsync(unit.Mac))?.LastError?.Contains("failed dm-verity verification", StringComparison.Ordinal) == true,
            bootToReady, "the unit's report of the refused slot");
        Assert.That((await lab.UnitAsync(unit.Mac))!.LastError, Does.StartWith("OS slot b failed dm-verity verification at boot"));
        Assert.That(await unit.ShellAsync("cat /etc/os-version"), Is.EqualTo("tsunagu-os 1.0"), "the unit runs the other slot");
        state = await unit.ShellAsync("cat /data/boot/state");
        Assert.That(state, Does.Contain("primary=a").And.Contain("b_good=0").And.Contain("last_failed=b"));
    }

    [Test]
    public async Task An_installed_application_damaged_on_data_is_fetched_again_from_the_host_at_the_next_boot()
    {
        await using var unit = await _lab.AddUnitAsync(12);
        unit.PowerOn();
        await unit.WaitReadyAsync(LabCatalogue.Pattern2, BootToReady);
        var version = await unit.ShellAsync("cat /data/apps/firewall/current/VERSION");
        Assert.That(version, Is.EqualTo("firewall 1.1.0"), "the update installed firewall 1.1.0");
        Assert.That(await unit.ShellAsync("test -s /data/apps/firewall/.seal-1.1.0 && echo sealed"), Is.EqualTo("sealed"));
        // the flash changes the file under the unit; then it is switched off
        await unit.ShellAsync("echo damaged > /data/apps/firewall/1.1.0/VERSION; sync");
        await unit.PowerOffAsync();
        unit.PowerOn();
        await unit.WaitAsync(() => unit.Console().Contains("firewall 1.1.0 fetched again from the host and restored"), BootToReady,
            "the damaged application fetched again");
        Assert.That(unit.Console(), Does.Contain("apps: firewall 1.1.0 is damaged: VERSION differs from its signed digest"));
        await unit.WaitAsync(() => unit.Console().Contains("--> Ready"), BootToReady, "Ready after the repair");
        Assert.That(await unit.ShellAsync("cat /data/apps/firewall/1.1.0/VERSION"), Is.EqualTo("firewall 1.1.0"));
        Assert.That((await _lab.UnitAsync(unit.Mac))!.Pattern, Is.EqualTo(LabCatalogue.Pattern2));
    }
}
