using System.Text;
using CsCheck;
using Tsunagu.Hal;
using Tsunagu.Hal.Linux;
using Tsunagu.Hal.Simulated;

namespace Tsunagu.UnitTests.Hal;

/// <summary>The A/B boot state: one model and file format for the Linux boot control, its simulated twin and the boot program.</summary>
public class BootControlTests : FakeRootTests
{
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
        Assert.That(stateWhileWriting, Is.EqualTo("# written by the boot program\nprimary=a\npending=\ntries=0\na_version=1.0.0\na_good=1\nb_version=\nb_good=0\nboot_count=17\nlast_failed=\na_verity=\nb_verity=\n"),
            "the slot is marked bad and its version cleared before the image is written");
        Assert.That(File.ReadAllBytes(Path.Combine(_dir, "dev", "vda4")), Is.EqualTo(image));
        Assert.That(File.ReadAllBytes(Path.Combine(_dir, "dev", "vda3")), Is.Empty, "the booted slot is untouched");
        Assert.That(Read("data/boot/state"), Is.EqualTo("# written by the boot program\nprimary=a\npending=\ntries=0\na_version=1.0.0\na_good=1\nb_version=2.0.0\nb_good=0\nboot_count=17\nlast_failed=\na_verity=\nb_verity=\n"));
        Assert.That(File.Exists(Path.Combine(_dir, "data", "boot", "state.tmp")), Is.False);

        boot.Activate(BootSlot.B, 3);
        Assert.That(Read("data/boot/state"), Is.EqualTo("# written by the boot program\nprimary=a\npending=b\ntries=3\na_version=1.0.0\na_good=1\nb_version=2.0.0\nb_good=0\nboot_count=17\nlast_failed=\na_verity=\nb_verity=\n"));
        Assert.That(boot.Read(BootSlot.B), Is.EqualTo(new SlotState(BootSlot.B, "2.0.0", false, 3)));

        // the boot program tried b, which came up: the firmware on b commits it
        Write("data/boot/state", "# written by the boot program\nprimary=a\npending=b\ntries=2\na_version=1.0.0\na_good=1\nb_version=2.0.0\nb_good=0\nboot_count=18\nlast_failed=\n");
        var onB = Boot(runner, "console=ttyS0 tsunagu.slot=b");
        Assert.That((onB.Booted, onB.BootedOsVersion, onB.Read(BootSlot.B).TriesLeft), Is.EqualTo(((BootSlot?)BootSlot.B, "2.0.0", 2)));
        onB.MarkGood(BootSlot.B);
        Assert.That(Read("data/boot/state"), Is.EqualTo("# written by the boot program\nprimary=b\npending=\ntries=0\na_version=1.0.0\na_good=1\nb_version=2.0.0\nb_good=1\nboot_count=18\nlast_failed=\na_verity=\nb_verity=\n"));
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
        Assert.That(Read("data/boot/state"), Is.EqualTo("primary=\npending=\ntries=0\na_version=1.2.3\na_good=0\nb_version=\nb_good=0\nlast_failed=\na_verity=\nb_verity=\n"));
        Assert.Throws<HalException>(() => boot.Activate(BootSlot.B, 3), "slot b holds no image");
    }

    [Test]
    public async Task A_written_slots_root_hash_is_recorded_cleared_by_the_next_write_and_a_malformed_one_refused()
    {
        var boot = Boot(new RecordingRunner(), "tsunagu.slot=a tsunagu.verity_failed=b");
        Assert.That(boot.VerityFailures, Is.EqualTo(new[] { BootSlot.B }), "the slots the boot program refused at this boot");
        var verity = $"4812:4812:{new string('a', 64)}:{new string('0', 64)}";
        await boot.WriteAsync(BootSlot.B, new MemoryStream([1, 2, 3]), "2.0.0", CancellationToken.None);
        boot.SetVerity(BootSlot.B, verity);
        Assert.That(Read("data/boot/state"), Does.Contain($"\nb_verity={verity}\n"));
        foreach (var bad in new[] { "", "1:1:ab", "0:1:ab:" + new string('0', 64), "1:1:ABCD:" + new string('0', 64), "1:1:abc:" + new string('0', 64),
                     "1:1:ab:" + new string('0', 63), "1:1:ab:" + new string('0', 64) + "\nprimary=b", "-1:1:ab:" + new string('0', 64) })
        {
            Assert.Throws<HalException>(() => boot.SetVerity(BootSlot.B, bad), bad);
        }
        Assert.That(Read("data/boot/state"), Does.Contain($"\nb_verity={verity}\n"), "a refused value changes nothing");
        await boot.WriteAsync(BootSlot.B, new MemoryStream([4]), "2.0.1", CancellationToken.None);
        Assert.That(Read("data/boot/state"), Does.Contain("\nb_verity=\n"), "a new image's root hash is not the old one's");
        Assert.That(Boot(new RecordingRunner(), "tsunagu.slot=a").VerityFailures, Is.Empty);
    }

    [Test]
    public void Slots_booted_unverified_are_read_from_the_command_line_apart_from_refused_ones_and_reported()
    {
        var boot = Boot(new RecordingRunner(), "tsunagu.slot=a tsunagu.verity_unchecked=a tsunagu.verity_unchecked=x tsunagu.verity_unchecked=a");
        Assert.That((boot.VerityFailures, boot.VerityUnchecked), Is.EqualTo((Array.Empty<BootSlot>(), new[] { BootSlot.A })), "a token naming no slot is ignored");
        var problem = Tsunagu.Firmware.Supervision.ReadyState.BootProblem(boot.VerityFailures, boot.VerityUnchecked);
        Assert.That(problem, Is.EqualTo("OS slot a was booted unverified: no dm-verity root hash was recorded for it or the boot program could not set up its mapping (see boot.log)"));
        Assert.That(Tsunagu.Firmware.Supervision.ReadyState.BootProblem([BootSlot.B], [BootSlot.A]),
            Does.StartWith("OS slot b failed dm-verity verification").And.Contain("; OS slot a was booted unverified"));
        Assert.That(Tsunagu.Firmware.Supervision.ReadyState.BootProblem([], []), Is.Null);
        Assert.That(problem!.Length, Is.LessThanOrEqualTo(Tsunagu.Protocol.ReadyReport.MaxBootProblemLength));
        Assert.That(Boot(new RecordingRunner(), "tsunagu.slot=b tsunagu.verity_failed=a").VerityUnchecked, Is.Empty);
    }

    [Test]
    public void Last_failed_slot_is_reported_until_a_slot_is_committed()
    {
        Write("data/boot/state", "primary=a\npending=\ntries=0\na_version=1.0.0\na_good=1\nb_version=2.0.0\nb_good=0\nlast_failed=b\n");
        var boot = Boot(new RecordingRunner());
        Assert.That(boot.LastFailed, Is.EqualTo(BootSlot.B));
        boot.MarkGood(BootSlot.A);
        Assert.That(boot.LastFailed, Is.Null);
        Assert.That(Read("data/boot/state"), Does.Contain("\nlast_failed=\n"));
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

    [Test]
    public async Task Simulated_and_linux_boot_controls_share_the_state_file()
    {
        var sim = new SimulatedBootControl(Path.Combine(_dir, "sim"));
        await sim.WriteAsync(BootSlot.B, new MemoryStream([2]), "2.0 beta", CancellationToken.None);
        sim.Activate(BootSlot.B, 3);
        await sim.RebootAsync(CancellationToken.None);
        Assert.That(Read("sim/state"), Is.EqualTo("primary=\npending=b\ntries=2\na_version=\na_good=0\nb_version=2.0 beta\nb_good=0\nlast_failed=\na_verity=\nb_verity=\n"),
            "the boot state file of a real unit, one try used by the boot program");

        var linux = new LinuxBootControl(new LinuxBootOptions { StatePath = Path.Combine(_dir, "sim", "state"), CmdlinePath = Path.Combine(_dir, "sim", "cmdline") },
            new RecordingRunner());
        Assert.That((linux.Booted, linux.BootedOsVersion, linux.Pending), Is.EqualTo(((BootSlot?)BootSlot.B, "2.0 beta", (BootSlot?)BootSlot.B)));
        linux.MarkGood(BootSlot.B);
        Assert.That(new SimulatedBootControl(Path.Combine(_dir, "sim")).Read(BootSlot.B), Is.EqualTo(new SlotState(BootSlot.B, "2.0 beta", true, 0)));
        Assert.That(() => sim.WriteAsync(BootSlot.A, new MemoryStream([1]), "1.0\nprimary=a", CancellationToken.None), Throws.InstanceOf<HalException>(),
            "the simulated twin refuses what the file cannot hold, as the real one does");
    }

    // ---- the boot program (initramfs script) against the model ----

    /// <summary>The boot program's slot choice: the repository's `boot-slots.sh`, which the initramfs `init` sources.</summary>
    internal static string InitScript()
    {
        for (var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); dir is not null; dir = dir.Parent)
        {
            foreach (var candidate in new[] { "rootfs/initramfs/boot-slots.sh" })
            {
                var path = Path.Combine(dir.FullName, candidate);
                if (File.Exists(path)) { return path; }
            }
        }
        Assert.Fail("the boot program's boot-slots.sh was not found above " + TestContext.CurrentContext.TestDirectory);
        return "";
    }

    /// <summary>The boot state functions of the boot program, between the `boot-state-begin` and `boot-state-end` markers.</summary>
    private static string BootStateFunctions()
    {
        var text = File.ReadAllText(InitScript());
        var begin = text.IndexOf("# boot-state-begin", StringComparison.Ordinal);
        var end = text.IndexOf("# boot-state-end", StringComparison.Ordinal);
        Assert.That(begin, Is.GreaterThanOrEqualTo(0).And.LessThan(end), "the boot state markers of boot-slots.sh");
        return text[begin..end];
    }

    /// <summary>Runs one boot of the script's choice (read_state, pick_slot, write_state) on <paramref name="statePath"/>: the slot it picked.</summary>
    private static string RunBootProgram(string functions, string statePath)
    {
        var shell = File.Exists("/usr/bin/busybox") || File.Exists("/bin/busybox") ? new[] { "busybox", "sh" } : ["sh"];
        var psi = new System.Diagnostics.ProcessStartInfo(shell[0]) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in shell[1..]) { psi.ArgumentList.Add(a); }
        psi.ArgumentList.Add("-s");
        using var process = System.Diagnostics.Process.Start(psi)!;
        process.StandardInput.Write($"log() {{ :; }}\n{functions}\nSTATE='{statePath}'\nread_state\npick_slot\nwrite_state\nprintf '%s' \"$SLOT\"\n");
        process.StandardInput.Close();
        var output = process.StandardOutput.ReadToEnd();
        var error = process.StandardError.ReadToEnd();
        Assert.That(process.WaitForExit(10_000), Is.True, "the boot program's functions did not finish");
        Assert.That(process.ExitCode, Is.Zero, error);
        Assert.That(error, Is.Empty);
        return output;
    }

    private static readonly string[] Versions = ["1.0.0", "2.0 beta", "v=3"];

    private static readonly string[] ExtraLines = ["# written by hand", "boot_count=17", "pending=a", "tries=9", "a_good=1", "note=x=y"];
    [Test]
    public void The_boot_program_and_the_model_choose_the_same_slot_and_write_the_same_state()
    {
        var functions = BootStateFunctions();
        // a seed stands for what the supervisor may have done to the slots (steps on the model), then lines other tools left in the file
        Gen.Int.Sample(seed =>
        {
            var random = new Random(seed);
            var statePath = Path.Combine(_dir, $"state-{Guid.NewGuid():N}");
            var model = BootSlots.Empty();
            for (var i = random.Next(9); i > 0; i--)
            {
                var (slot, n) = (random.Next(2) == 0 ? BootSlot.A : BootSlot.B, random.Next(5));
                switch (random.Next(7))
                {
                    case 6: model.SetVerity(slot, n == 0 ? null : $"{n * 100}:{n * 100}:0a1b:{new string((char)('0' + n), 64)}"); break;
                    case 0: model.BeginWrite(slot, booted: null); break;
                    case 1: model.Written(slot, Versions[n % Versions.Length]); break;
                    case 2 when model.Version(slot) is not null: model.Activate(slot, n); break;
                    case 3: model.MarkGood(slot); break;
                    case 4: model.MarkBad(slot); break;
                    case 5: model.GiveUp(slot); break;
                }
            }
            // lines the model keeps: comments, unknown keys, a known key set twice (the first one counts)
            var extra = Enumerable.Range(0, random.Next(4)).Select(_ => ExtraLines[random.Next(ExtraLines.Length)]);
            var text = model + string.Concat(extra.Select(l => l + "\n"));
            File.WriteAllText(statePath, text);

            var expected = BootSlots.Parse(text);
            var chosen = expected.PickSlot();
            var picked = RunBootProgram(functions, statePath);
            var written = BootSlots.Parse(File.ReadAllText(statePath));

            Assert.That(picked, Is.EqualTo(chosen is { } c ? BootStateFile.SlotName(c) : ""), text);
            foreach (var (key, _) in BootStateFile.Defaults)
            {
                Assert.That(written.File.Get(key), Is.EqualTo(expected.File.Get(key)), $"{key} after one boot of\n{text}");
            }
            var known = BootStateFile.Defaults.Select(d => d.Key + "=").ToArray();
            Assert.That(Unknown(File.ReadAllText(statePath)), Is.EqualTo(Unknown(expected.ToString())), "lines the boot program does not know are kept");
            IEnumerable<string> Unknown(string state) => state.Split('\n').Where(l => l.Length > 0 && !known.Any(k => l.StartsWith(k, StringComparison.Ordinal)));
        }, iter: 60);
    }
}
