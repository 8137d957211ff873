namespace Tsunagu.SystemTests.Qemu;

/// <summary>
/// The second board, qemu-arm64 (QEMU virt under TCG, Debian's arm64 kernel and packages, tsunagud cross-compiled
/// with Native AOT): the first boot, the fall back from a new slot that does not come up and from a slot whose bytes
/// fail dm-verity, the same tests as <see cref="QemuUnitTests"/> and <see cref="VerifiedBootTests"/> run on qemu-x86_64. They fail (never skip) without `make image BOARD=qemu-arm64`.
/// </summary>
[TestFixture, NonParallelizable, Category("arm64")]
public sealed class QemuArm64Tests
{
    /// <summary>
    /// TCG translates arm64 no slower than x86_64 here (first boot to Ready 33-70 s, docs/image.md); the margin over
    /// the x86_64 board's 4 min is for a CI machine whose cores other jobs share.
    /// </summary>
    private static readonly TimeSpan BootToReady = TimeSpan.FromMinutes(6);

    private QemuLab _lab = null!;

    [OneTimeSetUp]
    public async Task StartLab() => _lab = await QemuLab.StartAsync("qemu-arm64");

    [OneTimeTearDown]
    public async Task StopLab() => await _lab.DisposeAsync();

    [Test]
    public Task First_boot_provisions_updates_to_pattern_2_reboots_into_the_new_slot_and_is_ready() =>
        QemuUnitTests.FirstBootAsync(_lab, 1, BootToReady);

    [Test]
    public Task A_new_slot_that_does_not_come_up_falls_back_to_the_old_slot_and_the_failure_is_reported() =>
        QemuUnitTests.SlotFallbackAsync(_lab, 3, BootToReady);

    [Test]
    public Task A_changed_byte_in_the_active_slot_makes_the_boot_program_refuse_it_fall_back_to_the_other_slot_and_the_unit_report_it() =>
        VerifiedBootTests.ChangedByteFallbackAsync(_lab, 5, BootToReady);
}
