using System.Diagnostics;
using Tsunagu.Hal;

namespace Tsunagu.UnitTests.Hal;

/// <summary>
/// The boot program's choice of the OS slot (`select_slot` of rootfs/initramfs/boot-slots.sh, which the initramfs
/// `init` sources) run on the host: a shell with fake `dmsetup`, `dd` and `mount` commands in place of the real ones, the
/// slots as files, the boot state in a file. Each case checks the slot booted, from which device, what the kernel
/// command line tells the supervisor, and the boot state written.
/// </summary>
public class BootSelectionTests
{
    private string _dir = "";

    private static readonly string RootA = new('a', 64);
    private static readonly string RootB = new('b', 64);
    private static readonly string VerityA = $"4000:4000:0a1b:{RootA}";
    private static readonly string VerityB = $"5000:5000:0a1b:{RootB}";

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), $"tsunagu-bootsel-{Guid.NewGuid():N}");
        foreach (var d in new[] { "bin", "disk", "dm", "run", "lower" })
        {
            Directory.CreateDirectory(Path.Combine(_dir, d));
        }
        File.WriteAllText(Path.Combine(_dir, "disk", "slot_a"), "image a");
        File.WriteAllText(Path.Combine(_dir, "disk", "slot_b"), "image b");
        // dmsetup: `create verity-SLOT ...` fails as a missing dm-verity target does when dm/SLOT says nomap;
        // dd: reading /dev/mapper/verity-SLOT fails with an I/O error (what dm-verity returns for a changed block) when dm/SLOT says mismatch
        Tool("dmsetup", """
            echo "dmsetup $*" >> "$T/calls"
            [ "$1" = create ] || exit 0
            slot=${2#verity-}
            if [ "$(cat "$T/dm/$slot" 2>/dev/null)" = nomap ]; then
                echo "device-mapper: reload ioctl on $2 (253:0) failed: Invalid argument" >&2
                exit 1
            fi
            exit 0
            """);
        Tool("dd", """
            for a in "$@"; do case "$a" in if=*) src=${a#if=} ;; esac; done
            echo "dd $src" >> "$T/calls"
            slot=${src##*/verity-}
            if [ "$(cat "$T/dm/$slot" 2>/dev/null)" = mismatch ]; then
                echo "dd: error reading '$src': Input/output error" >&2
                exit 1
            fi
            exit 0
            """);
        Tool("mount", """
            for a in "$@"; do dev=$target; target=$a; done
            echo "mount $dev $target" >> "$T/calls"
            if grep -qx "$dev" "$T/nomount" 2>/dev/null; then
                echo "mount: $target: wrong fs type, bad option, bad superblock on $dev" >&2
                exit 1
            fi
            exit 0
            """);
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    private void Tool(string name, string body) => BoardAndRunnerTests.FakeTool(Path.Combine(_dir, "bin"), name, $"T='{_dir}'\n{body}");

    private sealed record Boot(string Mode, string Slot, string SlotDevice, string Cmdline, string Reason, string Log, string Calls, BootSlots State);

    /// <summary>One boot's choice on <paramref name="state"/>, with each slot's dm-verity outcome (ok, mismatch, nomap).</summary>
    private Boot Run(string state, string a = "ok", string b = "ok")
    {
        File.WriteAllText(Path.Combine(_dir, "state"), state);
        File.WriteAllText(Path.Combine(_dir, "dm", "a"), a);
        File.WriteAllText(Path.Combine(_dir, "dm", "b"), b);
        var script = $$"""
            T='{{_dir}}'
            PATH="$T/bin:$PATH"
            # busybox sh runs its own applets before PATH: functions come first
            dmsetup() { "$T/bin/dmsetup" "$@"; }
            dd() { "$T/bin/dd" "$@"; }
            mount() { "$T/bin/mount" "$@"; }
            log() { echo "$*" >> "$T/log"; }
            partition_device() { [ -e "$T/disk/$1" ] || return 1; echo "$T/disk/$1"; }
            feed_watchdog() { :; }
            BOOT_RUN="$T/run" LOWER="$T/lower" STATE="$T/state"
            . '{{BootControlTests.InitScript()}}'
            MODE=slot REASON= VERITY_FAILED= VERITY_UNCHECKED=
            read_state
            select_slot
            printf '%s\n%s\n%s\n%s\n%s\n' "$MODE" "$SLOT" "$SLOTDEV" "$VERITY_FAILED$VERITY_UNCHECKED" "$REASON"
            """;
        var shell = File.Exists("/usr/bin/busybox") || File.Exists("/bin/busybox") ? new[] { "busybox", "sh" } : ["sh"];
        var psi = new ProcessStartInfo(shell[0]) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in shell[1..]) { psi.ArgumentList.Add(arg); }
        psi.ArgumentList.Add("-s");
        using var process = Process.Start(psi)!;
        process.StandardInput.Write(script);
        process.StandardInput.Close();
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEnd();
        Assert.That(process.WaitForExit(30_000), Is.True, "the boot program's slot choice did not finish");
        Assert.That(process.ExitCode, Is.Zero, error);
        Assert.That(error, Is.Empty);
        var lines = output.Result.Split('\n');
        string Read(string name) => File.Exists(Path.Combine(_dir, name)) ? File.ReadAllText(Path.Combine(_dir, name)) : "";
        return new Boot(lines[0], lines[1], lines[2], lines[3].Trim(), lines[4], Read("log"), Read("calls"), BootSlots.Parse(Read("state")));
    }

    private static string State(string primary = "a", bool aGood = true, bool bGood = true, string pending = "", int tries = 0,
        string? aVerity = null, string? bVerity = null) =>
        $"primary={primary}\npending={pending}\ntries={tries}\na_version=1.0\na_good={(aGood ? 1 : 0)}\nb_version=1.1\nb_good={(bGood ? 1 : 0)}\nlast_failed=\n" +
        $"a_verity={aVerity ?? VerityA}\nb_verity={bVerity ?? VerityB}\n";

    private string Device(string slot) => Path.Combine(_dir, "disk", $"slot_{slot}");

    [Test]
    public void Both_slots_good_the_primary_one_is_verified_and_booted_from_its_mapping_and_the_state_is_unchanged()
    {
        var boot = Run(State(primary: "a"));
        Assert.That((boot.Mode, boot.Slot, boot.SlotDevice, boot.Cmdline), Is.EqualTo(("slot", "a", "/dev/mapper/verity-a", "")));
        Assert.That(boot.Calls, Does.Contain($"dmsetup create verity-a --readonly --noudevsync --table 0 32000 verity 1 {Device("a")} {Device("a")} 4096 4096 4000 4000 sha256 {RootA} 0a1b"));
        Assert.That(boot.Calls, Does.Contain("dd /dev/mapper/verity-a").And.Contain($"mount /dev/mapper/verity-a {_dir}/lower"));
        Assert.That(boot.Calls, Does.Not.Contain("verity-b"), "the other slot is not touched");
        Assert.That(boot.Log, Does.Contain($"slot a verified (dm-verity, 4000 blocks, root hash {RootA})"));
        Assert.That((boot.State.Primary, boot.State.IsGood(BootSlot.A), boot.State.IsGood(BootSlot.B), boot.State.LastFailed),
            Is.EqualTo(((BootSlot?)BootSlot.A, true, true, (BootSlot?)null)));
    }

    [Test]
    public void A_pending_slot_out_of_tries_is_marked_bad_and_the_active_one_boots()
    {
        var boot = Run(State(primary: "a", pending: "b", tries: 0, bGood: false));
        Assert.That((boot.Mode, boot.Slot, boot.SlotDevice), Is.EqualTo(("slot", "a", "/dev/mapper/verity-a")));
        Assert.That(boot.Log, Does.Contain("slot b did not come up within its tries; marking it bad"));
        Assert.That((boot.State.Pending, boot.State.IsGood(BootSlot.B), boot.State.LastFailed), Is.EqualTo(((BootSlot?)null, false, (BootSlot?)BootSlot.B)));
        Assert.That(boot.Calls, Does.Not.Contain("verity-b"));
    }

    [Test]
    public void The_active_slot_that_does_not_mount_is_marked_bad()
    {
        File.WriteAllText(Path.Combine(_dir, "nomount"), "/dev/mapper/verity-b\n");
        var boot = Run(State(primary: "b"));
        Assert.That(boot.Log, Does.Contain("slot b (/dev/mapper/verity-b) does not mount"));
        Assert.That(boot.State.IsGood(BootSlot.B), Is.False);
        Assert.That(boot.State.IsGood(BootSlot.A), Is.True, "the other slot is left as it was");
        // before: the recovery OS started although slot a was good
        Assert.That((boot.Mode, boot.Slot, boot.SlotDevice), Is.EqualTo(("slot", "a", "/dev/mapper/verity-a")), "the other good slot boots");
        Assert.That(boot.Log, Does.Contain("falling back to slot a"));
        Assert.That(boot.Calls, Does.Contain("dmsetup remove --noudevsync verity-b"), "the mapping of the slot that did not mount is removed");
    }

    [Test]
    public void An_active_slot_without_its_partition_is_marked_bad_and_the_other_good_slot_boots()
    {
        File.Delete(Device("b"));
        var boot = Run(State(primary: "b"));
        Assert.That(boot.Log, Does.Contain("no partition slot_b"));
        // before: the recovery OS started although slot a was good
        Assert.That((boot.Mode, boot.Slot, boot.SlotDevice), Is.EqualTo(("slot", "a", "/dev/mapper/verity-a")));
        Assert.That((boot.State.IsGood(BootSlot.B), boot.State.LastFailed), Is.EqualTo((false, (BootSlot?)BootSlot.B)));
    }

    [Test]
    public void A_slot_without_a_mapping_that_then_does_not_mount_is_not_reported_as_booted_unverified_and_the_other_slot_boots()
    {
        File.WriteAllText(Path.Combine(_dir, "nomount"), Device("a") + "\n");
        var boot = Run(State(primary: "a"), a: "nomap");
        Assert.That(boot.Log, Does.Contain($"slot a ({Device("a")}) does not mount"));
        // before: tsunagu.verity_unchecked=a was reported for a slot that never booted
        Assert.That((boot.Mode, boot.Slot, boot.SlotDevice, boot.Cmdline), Is.EqualTo(("slot", "b", "/dev/mapper/verity-b", "")));
        Assert.That((boot.State.IsGood(BootSlot.A), boot.State.IsGood(BootSlot.B), boot.State.LastFailed), Is.EqualTo((false, true, (BootSlot?)BootSlot.A)));
    }

    [TestCase("primary=x;touch {0}/ran;y\npending=\ntries=0\n", "recovery", "")]
    [TestCase("primary=a\npending=b;touch {0}/ran\ntries=2\n", "slot", "a")]
    [TestCase("primary=a\npending=$(touch {0}/ran)\ntries=2\n", "slot", "a")]
    [TestCase("primary=a\npending=\ntries=0\nlast_failed=a;touch {0}/ran\n", "slot", "a")]
    public void A_boot_state_naming_no_slot_runs_nothing_and_its_values_are_dropped(string head, string mode, string slot)
    {
        var state = string.Format(System.Globalization.CultureInfo.InvariantCulture, head, _dir) +
            $"a_version=1.0\na_good=1\nb_version=1.1\nb_good=1\na_verity={VerityA}\nb_verity={VerityB}\n";
        var boot = Run(state);
        // before: the value reached `eval` (mark_bad, pick_slot) and the command ran as root before any slot was verified
        Assert.That(File.Exists(Path.Combine(_dir, "ran")), Is.False, "a command in the boot state ran");
        Assert.That((boot.Mode, boot.Slot), Is.EqualTo((mode, slot)), "a value naming no slot counts as none");
        if (mode == "slot")
        {
            Assert.That(File.ReadAllText(Path.Combine(_dir, "state")), Does.Not.Contain("touch"), "the state written for the boot drops the value");
        }
        else
        {
            Assert.That(boot.Calls, Is.Empty, "no slot was read or mounted");
        }
    }

    [Test]
    public void A_slot_whose_bytes_differ_from_its_root_hash_is_marked_bad_reported_and_the_other_good_slot_boots()
    {
        var boot = Run(State(primary: "b"), b: "mismatch");
        Assert.That((boot.Mode, boot.Slot, boot.SlotDevice, boot.Cmdline), Is.EqualTo(("slot", "a", "/dev/mapper/verity-a", "tsunagu.verity_failed=b")));
        Assert.That(boot.Log, Does.Contain($"slot b fails verification (dm-verity, root hash {RootB}): dd: error reading '/dev/mapper/verity-b': Input/output error"));
        Assert.That(boot.Log, Does.Contain("falling back to slot a"));
        Assert.That(boot.Calls, Does.Contain("dmsetup remove --noudevsync verity-b"), "the refused mapping is removed");
        Assert.That(boot.Calls, Does.Not.Contain($"mount /dev/mapper/verity-b").And.Not.Contain($"mount {Device("b")}"), "the refused slot is never mounted");
        Assert.That((boot.State.Primary, boot.State.IsGood(BootSlot.A), boot.State.IsGood(BootSlot.B), boot.State.LastFailed),
            Is.EqualTo(((BootSlot?)BootSlot.A, true, false, (BootSlot?)BootSlot.B)));
    }

    [TestCase("nomap", null)]
    [TestCase("ok", "4000:4000:0a1b:short")]
    [TestCase("ok", "4000:4000:0a1b:$(reboot)")]
    [TestCase("ok", "04000:4000:0a1b:" + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")]
    public void A_slot_whose_mapping_cannot_be_made_stays_good_and_boots_unverified_from_its_partition_and_the_supervisor_is_told(string dm, string? verity)
    {
        var boot = Run(State(primary: "a", aVerity: verity), a: dm);
        Assert.That((boot.Mode, boot.Slot, boot.SlotDevice, boot.Cmdline), Is.EqualTo(("slot", "a", Device("a"), "tsunagu.verity_unchecked=a")));
        Assert.That(boot.Log, Does.Contain("slot a: booting it unverified (no dm-verity mapping); the slot stays good"));
        Assert.That(boot.Log, dm == "nomap" ? Does.Contain("the dm-verity mapping could not be made: device-mapper: reload ioctl") : Does.Contain("are not DATA_BLOCKS:HASH_START_BLOCK:SALT:ROOT_HASH"));
        Assert.That(boot.Calls, Does.Contain($"mount {Device("a")} {_dir}/lower"));
        Assert.That(boot.Calls, Does.Not.Contain("verity-b").And.Not.Contain("dd "), "nothing read through a mapping that does not exist");
        Assert.That((boot.State.Primary, boot.State.IsGood(BootSlot.A), boot.State.IsGood(BootSlot.B), boot.State.LastFailed),
            Is.EqualTo(((BootSlot?)BootSlot.A, true, true, (BootSlot?)null)), "a good slot is not marked bad for a mapping the boot program could not make");
        Assert.That(boot.State.Verity(BootSlot.A), Is.EqualTo(verity ?? VerityA), "the recorded parameters are kept");
    }

    [TestCase("blank")]
    [TestCase("missing")]
    public void A_slot_with_no_root_hash_recorded_stays_good_and_boots_unverified_from_its_partition_and_the_supervisor_is_told(string form)
    {
        var state = State(primary: "a", aVerity: "");
        if (form == "missing")
        {
            state = state.Replace("a_verity=\n", "", StringComparison.Ordinal);
            Assert.That(state, Does.Not.Contain("a_verity"));
        }
        var boot = Run(state);
        Assert.That((boot.Mode, boot.Slot, boot.SlotDevice, boot.Cmdline), Is.EqualTo(("slot", "a", Device("a"), "tsunagu.verity_unchecked=a")));
        Assert.That(boot.Log, Does.Contain("slot a has no dm-verity root hash recorded")
            .And.Contain("slot a: booting it unverified (no dm-verity mapping); the slot stays good"));
        Assert.That(boot.Calls, Does.Not.Contain("dmsetup").And.Not.Contain("dd "), "no mapping is attempted without parameters");
        Assert.That(boot.Calls, Does.Contain($"mount {Device("a")} {_dir}/lower"));
        Assert.That((boot.State.Primary, boot.State.IsGood(BootSlot.A), boot.State.IsGood(BootSlot.B), boot.State.LastFailed),
            Is.EqualTo(((BootSlot?)BootSlot.A, true, true, (BootSlot?)null)));
        Assert.That((boot.State.Verity(BootSlot.A), boot.State.Verity(BootSlot.B)), Is.EqualTo(((string?)null, (string?)VerityB)),
            "nothing is recorded for the slot, and the other slot's parameters are kept");
    }

    [Test]
    public void A_pending_slot_with_no_root_hash_recorded_uses_its_try_and_boots_unverified_with_the_supervisor_told()
    {
        var boot = Run(State(primary: "a", pending: "b", tries: 2, bGood: false, bVerity: ""));
        Assert.That((boot.Slot, boot.SlotDevice, boot.Cmdline), Is.EqualTo(("b", Device("b"), "tsunagu.verity_unchecked=b")));
        Assert.That((boot.State.Pending, boot.State.TriesLeft, boot.State.Primary), Is.EqualTo(((BootSlot?)BootSlot.B, 1, (BootSlot?)BootSlot.A)));
        Assert.That(boot.Calls, Does.Not.Contain("dmsetup"));
    }

    [Test]
    public void A_refused_slot_falls_back_to_a_slot_with_no_root_hash_which_is_reported_as_unverified_too()
    {
        var boot = Run(State(primary: "a", bVerity: ""), a: "mismatch");
        Assert.That((boot.Mode, boot.Slot, boot.SlotDevice, boot.Cmdline),
            Is.EqualTo(("slot", "b", Device("b"), "tsunagu.verity_failed=a tsunagu.verity_unchecked=b")));
        Assert.That((boot.State.Primary, boot.State.IsGood(BootSlot.A), boot.State.IsGood(BootSlot.B), boot.State.LastFailed),
            Is.EqualTo(((BootSlot?)BootSlot.B, false, true, (BootSlot?)BootSlot.A)));
    }

    [Test]
    public void A_pending_slot_whose_mapping_cannot_be_made_uses_its_try_and_boots_unverified()
    {
        var boot = Run(State(primary: "a", pending: "b", tries: 3, bGood: false), b: "nomap");
        Assert.That((boot.Slot, boot.SlotDevice, boot.Cmdline), Is.EqualTo(("b", Device("b"), "tsunagu.verity_unchecked=b")));
        Assert.That((boot.State.Pending, boot.State.TriesLeft, boot.State.Primary), Is.EqualTo(((BootSlot?)BootSlot.B, 2, (BootSlot?)BootSlot.A)));
    }

    [Test]
    public void Both_slots_failing_verification_start_the_recovery_os_with_both_reported()
    {
        var boot = Run(State(primary: "a"), a: "mismatch", b: "mismatch");
        Assert.That((boot.Mode, boot.Slot, boot.Reason), Is.EqualTo(("recovery", "", "no good slot")));
        Assert.That(boot.Cmdline, Is.EqualTo("tsunagu.verity_failed=a tsunagu.verity_failed=b"));
        Assert.That((boot.State.Primary, boot.State.IsGood(BootSlot.A), boot.State.IsGood(BootSlot.B)), Is.EqualTo(((BootSlot?)null, false, false)));
        Assert.That(boot.Calls, Does.Not.Contain("mount "), "no slot is mounted");
    }

    [Test]
    public void Both_slots_marked_bad_start_the_recovery_os_without_reading_either()
    {
        var boot = Run(State(primary: "", aGood: false, bGood: false));
        Assert.That((boot.Mode, boot.Slot, boot.Reason, boot.Cmdline), Is.EqualTo(("recovery", "", "no good slot", "")));
        Assert.That(boot.Calls, Is.Empty);
    }
}
