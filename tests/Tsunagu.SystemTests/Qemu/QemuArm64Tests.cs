namespace Tsunagu.SystemTests.Qemu;

/// <summary>
/// The second board, qemu-arm64 (QEMU virt under TCG, Debian's arm64 kernel and packages, tsunagud cross-compiled
/// with Native AOT): the same tests as <see cref="QemuUnitTests"/>, <see cref="VerifiedBootTests"/> and
/// <see cref="PowerCutTests"/> run on qemu-x86_64. `make test` runs the first boot and the fall back from a new slot
/// that does not come up and from a slot whose bytes fail dm-verity; the wiped data partition, the technician's reimage,
/// the LEDs and the reset button, and the power cuts are long (category "long": `make test-arm64`, `make test-long`).
/// They fail (never skip) without `make image BOARD=qemu-arm64`.
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

    [Test, Category("long")]
    public Task A_wiped_data_partition_is_restored_from_prom_factory_and_the_host_without_action_on_the_unit() =>
        QemuUnitTests.WipedDataAsync(_lab, 2, BootToReady);

    [Test, Category("long")]
    public Task Leds_show_the_state_and_a_long_press_of_reset_wipes_data_and_provisions_again() =>
        QemuUnitTests.LedsAndResetAsync(_lab, 4, BootToReady);

    [Test, Category("long")]
    public Task A_unit_reimaged_by_a_technician_with_factory_burn_reimage_comes_back_as_itself() =>
        QemuUnitTests.ReimageAsync(_lab, 6, BootToReady);

    [Test, Category("long")]
    public Task A_unit_booted_from_the_field_stick_is_reimaged_around_its_factory_partition_and_comes_back_as_itself() =>
        FieldStick.ReimageAsync(_lab, 7, BootToReady);

    [Test, Category("long")]
    public Task The_field_stick_refuses_a_unit_of_another_board_or_without_an_identity_and_writes_nothing() => FieldStick.RefusalAsync(_lab, 8);

    [Test, Category("long")]
    public Task Power_cuts_in_provisioning_update_and_steady_state_keep_settings_counter_records_and_the_file_system() =>
        PowerCutTests.CampaignAsync("qemu-arm64");
}
