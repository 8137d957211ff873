using System.Diagnostics;
using Tsunagu.Server.Demo;

namespace Tsunagu.SystemTests.Qemu;

/// <summary>
/// The firmware image booted in QEMU (TCG) against the real server: first boot to an update and Ready, recovery
/// from a wiped `data`, a new slot that does not come up, hard power cuts, LEDs and the reset button.
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
    public async Task First_boot_provisions_updates_to_pattern_2_reboots_into_the_new_slot_and_is_ready()
    {
        await using var unit = await _lab.AddUnitAsync(1);
        var clock = Stopwatch.StartNew();
        unit.PowerOn();
        await unit.WaitReadyAsync(LabCatalogue.Pattern2, BootToReady);
        TestContext.Out.WriteLine($"boot to Ready on {LabCatalogue.Pattern2} (including the update and its reboot): {clock.Elapsed.TotalSeconds:0.0} s");
        var console = unit.FullConsole();
        Assert.That(console, Does.Contain("tsunagu-boot: starting slot a"), "the first boot runs the factory OS in slot A");
        Assert.That(console, Does.Contain("Tsunagu OS tsunagu-os 1.1 (b)"), "after the update the unit runs OS 1.1 from slot B");
        var state = await unit.ShellAsync("cat /data/boot/state");
        Assert.That(state, Does.Contain("primary=b").And.Contain("b_good=1").And.Contain("b_version=tsunagu-os 1.1"));
        Assert.That(await unit.ShellAsync("cat /etc/os-version"), Is.EqualTo("tsunagu-os 1.1"));
        // the services the host configured run on the real daemons
        Assert.That(await unit.ShellAsync("nft list tables"), Does.Contain("inet tsunagu"));
        Assert.That(await unit.ShellAsync("pidof dnsmasq >/dev/null && echo running"), Is.EqualTo("running"));
        var server = _lab.Unit(unit.Mac)!;
        Assert.That(server.Pattern, Is.EqualTo(LabCatalogue.Pattern2));
    }
}
