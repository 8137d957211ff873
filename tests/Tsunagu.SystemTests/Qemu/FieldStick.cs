using System.Security.Cryptography;
using Tsunagu.Cli.Factory;
using Tsunagu.Demo;

namespace Tsunagu.SystemTests.Qemu;

/// <summary>
/// The field image (`make field-image`, docs/image.md "Field reimage"): a unit booted from the USB stick gets the
/// board's factory image written around its `factory` partition, and comes back as itself; a unit the stick must not
/// write (no identity, another board) is refused with nothing written. Run on each board by <see cref="QemuUnitTests"/>
/// and <see cref="QemuArm64Tests"/>.
/// </summary>
internal static class FieldStick
{
    /// <summary>Writing 290 MiB and reading it back under TCG takes about a minute; the margin is for a busy machine.</summary>
    private static readonly TimeSpan ReimageTime = TimeSpan.FromMinutes(6);

    private static readonly TimeSpan RefusalTime = TimeSpan.FromMinutes(3);

    /// <summary>The lab's field image; fails (never skips) when `make field-image` has not built it.</summary>
    public static string Require(QemuLab lab)
    {
        var field = Path.Combine(lab.ImageDirectory, "field");
        foreach (var file in new[] { "stick.img", "vmlinuz", "initrd.img", "cmdline", "board.json" })
        {
            if (!File.Exists(Path.Combine(field, file)))
            {
                Assert.Fail($"{Path.Combine(field, file)} is missing: run `make field-image BOARD={lab.Board}` (make test does for qemu-x86_64)");
            }
        }
        return field;
    }

    /// <summary>
    /// A unit whose slots and data are broken is booted from the stick: the stick writes the factory image and powers
    /// off; `factory` is the unit's own byte for byte, every other partition the image's; powered on, the unit provisions
    /// as the same row of the device management table (no second registration) and is Ready on qemu-2. The unit is not
    /// booted before (a first boot to Ready would add a minute and a half under TCG and nothing the stick must keep: what
    /// a unit in service gets back from the host after losing `data` is <see cref="QemuUnitTests.WipedDataAsync"/>'s).
    /// </summary>
    public static async Task ReimageAsync(QemuLab lab, int index, TimeSpan bootToReady)
    {
        var field = Require(lab);
        await using var unit = await lab.AddUnitAsync(index);
        var before = (await lab.UnitAsync(unit.Mac))!;
        Assert.That(await QemuUnitTests.RegistrationsAsync(lab, unit.Mac), Is.EqualTo(1), "the unit was registered once, by the factory");
        var identity = Digest(unit.Disk, "factory");
        // what the technician finds: nothing on the flash but prom and factory is usable
        foreach (var broken in new[] { "slot_a", "slot_b", "data" }) { unit.CorruptPartition(broken); }

        unit.PowerOn(field);
        await unit.WaitPoweredOffAsync(ReimageTime, "the field stick's reimage and power-off");
        var console = unit.Console();
        Assert.That(console, Does.Contain($"unit {before.Serial} ({unit.Mac}) on /dev/vda: its identity is kept"));
        var image = Path.Combine(lab.ImageDirectory, "disk.img");
        var written = (new FileInfo(image).Length - GptImage.Find(image, "factory").Length) >> 20;
        Assert.That(console, Does.Contain($"written {written} of {written} MiB"), "progress to the end");
        Assert.That(console, Does.Contain($"field reimage done: unit {before.Serial} ({unit.Mac})"));
        Assert.That(console, Does.Not.Contain("REFUSED").And.Not.Contain("FAILED"));
        Assert.That(Digest(unit.Disk, "factory"), Is.EqualTo(identity), "the unit's factory partition is kept byte for byte");
        foreach (var name in new[] { "prom", "slot_a", "slot_b", "data" })
        {
            Assert.That(Digest(unit.Disk, name), Is.EqualTo(Digest(image, name)), $"{name} is the factory image's");
        }

        unit.PowerOn();
        await unit.WaitReadyAsync(LabCatalogue.Pattern2, bootToReady, () => Task.FromResult(unit.ProvisionedAgainAndReadyOnOs11(0)));
        var after = (await lab.UnitAsync(unit.Mac))!;
        Assert.That((after.Serial, after.CreatedAt), Is.EqualTo((before.Serial, before.CreatedAt)), "the same row of the device management table");
        Assert.That(await QemuUnitTests.RegistrationsAsync(lab, unit.Mac), Is.EqualTo(1), "no second registration");
        Assert.That(await unit.ShellAsync("cat /etc/os-version"), Is.EqualTo("tsunagu-os 1.1"), "updated to qemu-2 again");
    }

    /// <summary>
    /// The stick refuses, with not one byte of the disk changed, a unit whose identity names another board and a unit
    /// with no identity (a blank `factory`), and powers off both times.
    /// </summary>
    public static async Task RefusalAsync(QemuLab lab, int index)
    {
        var field = Require(lab);
        await using var unit = await lab.AddUnitAsync(index);
        var identity = await GptImage.ReadFactoryAsync(unit.Disk, CancellationToken.None);
        var other = lab.Board == "qemu-x86_64" ? "qemu-arm64" : "qemu-x86_64";
        await GptImage.BurnFactoryAsync(unit.Disk, identity with { Board = other }, CancellationToken.None);
        var disk = FileDigest(unit.Disk);

        unit.PowerOn(field);
        await unit.WaitPoweredOffAsync(RefusalTime, "the field stick's refusal of a unit of another board");
        Assert.That(unit.Console(), Does.Contain($"REFUSED: this unit is a {other}; the stick is for {lab.Board}")
            .And.Contain("nothing was written to the unit's disk").And.Not.Contain("writing the image"));
        Assert.That(FileDigest(unit.Disk), Is.EqualTo(disk), "the disk is unchanged");

        unit.CorruptPartition("factory");
        disk = FileDigest(unit.Disk);
        unit.PowerOn(field);
        await unit.WaitPoweredOffAsync(RefusalTime, "the field stick's refusal of a unit without an identity");
        Assert.That(unit.Console(), Does.Contain("REFUSED: the unit's factory partition holds no identity")
            .And.Contain("nothing was written to the unit's disk").And.Not.Contain("writing the image"));
        Assert.That(FileDigest(unit.Disk), Is.EqualTo(disk), "the disk is unchanged");
    }

    /// <summary>SHA-256 of partition <paramref name="name"/> of a GPT disk image.</summary>
    private static string Digest(string image, string name)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        DiskPartitions.Read(image, name, (buffer, count) => hash.AppendData(buffer, 0, count));
        return Convert.ToHexString(hash.GetHashAndReset());
    }

    private static string FileDigest(string path)
    {
        using var file = File.OpenRead(path);
        return Convert.ToHexString(SHA256.HashData(file));
    }
}
