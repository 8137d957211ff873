using System.Diagnostics;
using Tsunagu.Protocol.Bundles;

namespace Tsunagu.UnitTests.Protocol;

/// <summary>
/// The dm-verity hash tree the bundles' OS images carry (<see cref="VerityTree"/>) against cryptsetup's veritysetup, which
/// builds the factory slot's (image/mkdisk.sh): the same root hash and tree for the same image and salt, and
/// `veritysetup verify` accepts it and refuses it after one byte of the image changed.
/// </summary>
public sealed class VerityTreeTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "tsunagu-verity-" + Guid.NewGuid().ToString("N")));

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    private static (int Exit, string Output) Veritysetup(params string[] args)
    {
        var psi = new ProcessStartInfo("veritysetup") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) { psi.ArgumentList.Add(a); }
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("veritysetup did not start (make packages installs cryptsetup-bin)");
        var output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        Assert.That(p.WaitForExit(120_000), Is.True);
        return (p.ExitCode, output);
    }

    // one block (no level), one hash block, two levels; a length that is not whole blocks
    [TestCase(4096)]
    [TestCase(2 * 4096)]
    [TestCase(300 * 4096)]
    [TestCase(129 * 4096)]
    [TestCase(77 * 4096 + 1000)]
    public async Task The_tree_and_root_hash_are_veritysetups_and_one_changed_byte_fails_its_verify(int length)
    {
        var image = new byte[length];
        new Random(length).NextBytes(image);
        var salt = VerityTree.NewSalt();
        var ours = Path.Combine(_dir, "ours.img");
        OsVerity verity;
        await using (var output = File.Create(ours))
        {
            verity = await VerityTree.WriteAsync(new MemoryStream(image), output, salt, CancellationToken.None);
        }
        var blocks = (length + 4095) / 4096;
        Assert.That((verity.DataBlocks, verity.HashStartBlock, verity.Salt), Is.EqualTo(((long)blocks, (long)blocks, salt)));
        Assert.That(verity.Problems(), Is.Empty);

        // veritysetup's own tree for the same image (padded to whole blocks) and salt
        var theirs = Path.Combine(_dir, "theirs.img");
        var padded = new byte[blocks * 4096];
        image.CopyTo(padded, 0);
        await File.WriteAllBytesAsync(theirs, padded);
        var format = Veritysetup("format", "--no-superblock", "--hash=sha256", "--data-block-size=4096", "--hash-block-size=4096",
            $"--data-blocks={blocks}", $"--hash-offset={blocks * 4096L}", $"--salt={salt}", theirs, theirs);
        Assert.That(format.Exit, Is.Zero, format.Output);
        Assert.That(format.Output, Does.Contain($"Root hash:      \t{verity.RootHash}").Or.Match($@"Root hash:\s+{verity.RootHash}"));
        Assert.That(await File.ReadAllBytesAsync(ours), Is.EqualTo(await File.ReadAllBytesAsync(theirs)), "the same bytes: image, padding and tree");

        string[] Verify(string file, string root) => ["verify", "--no-superblock", "--hash=sha256", "--data-block-size=4096", "--hash-block-size=4096",
            $"--data-blocks={blocks}", $"--hash-offset={blocks * 4096L}", $"--salt={salt}", file, file, root];
        Assert.That(Veritysetup(Verify(ours, verity.RootHash)).Exit, Is.Zero);
        var bytes = await File.ReadAllBytesAsync(ours);
        bytes[length / 2] ^= 0x01;
        await File.WriteAllBytesAsync(ours, bytes);
        Assert.That(Veritysetup(Verify(ours, verity.RootHash)).Exit, Is.Not.Zero, "one changed byte of the image");
    }

    [Test]
    public void Malformed_parameters_are_named_and_the_boot_state_form_is_the_boot_programs()
    {
        var good = new OsVerity(10, 10, "ab", new string('c', 64));
        Assert.That(good.ToString(), Is.EqualTo($"10:10:ab:{new string('c', 64)}"));
        Assert.That(good.Problems(), Is.Empty);
        Assert.That((good with { DataBlocks = 0 }).Problems(), Has.Some.StartsWith("dataBlocks"));
        Assert.That((good with { HashStartBlock = 9 }).Problems(), Has.Some.StartsWith("hashStartBlock"));
        Assert.That((good with { Salt = "abc" }).Problems(), Has.Some.StartsWith("salt"));
        Assert.That((good with { Salt = "AB" }).Problems(), Has.Some.StartsWith("salt"));
        Assert.That((good with { Salt = "a:" }).Problems(), Has.Some.StartsWith("salt"));
        Assert.That((good with { RootHash = "cc" }).Problems(), Has.Some.StartsWith("rootHash"));
        Assert.ThrowsAsync<ArgumentException>(() => VerityTree.WriteAsync(new MemoryStream(), new MemoryStream(), "ab", CancellationToken.None));

        // in a manifest: an OS image's parameters are checked, and only an OS image has them
        var manifest = new BundleManifest(BundleManifest.CurrentFormat, "p1-to-p2", 2, ["pattern-1"], "pattern-2",
            new BundleCompatibility(["simulated"], ["r1"], ["os 1"]), 5, DateTimeOffset.UtcNow, DateTimeOffset.UtcNow.AddDays(1),
            [new BundlePayload("os", PayloadKinds.OsImage, 11 * 4096, new string('b', 64), null, "os 2", Verity: good)],
            [new BundleStep(StepActions.InstallOs, "os")]);
        Assert.That(manifest.Problems(), Is.Empty);
        Assert.That((manifest with { Payloads = [manifest.Payloads[0] with { Verity = good with { Salt = "x" } }] }).Problems(), Has.Some.StartsWith("payloads.os.verity.salt"));
        Assert.That((manifest with { Payloads = [manifest.Payloads[0] with { Size = 10 * 4096 }] }).Problems(), Has.Some.Contains("starts past the image"));
        // block counts too large for bytes are a manifest problem, not an overflow that passes the check (a regression)
        foreach (var huge in new[] { long.MaxValue, long.MaxValue / 4096 + 1, (long.MaxValue / 4096) - 1 })
        {
            var hugeVerity = good with { DataBlocks = huge, HashStartBlock = huge };
            Assert.That(hugeVerity.Problems(), Is.Empty, "precondition: the parameters alone are well formed");
            IReadOnlyList<string>? problems = null;
            Assert.DoesNotThrow(() => problems = (manifest with { Payloads = [manifest.Payloads[0] with { Verity = hugeVerity }] }).Problems());
            Assert.That(problems, Has.Some.Contains("starts past the image"), $"{huge} blocks");
        }
        Assert.That((manifest with { Payloads = [manifest.Payloads[0] with { Size = long.MaxValue, Verity = good with { HashStartBlock = long.MaxValue / 4096 } }] }).Problems(),
            Has.Some.Contains("starts past the image"), "the tree's first block must fit too");
        // an image of one block has an empty tree: the payload is that block alone (a regression: such a bundle was refused)
        var one = new OsVerity(1, 1, "ab", new string('c', 64));
        Assert.That((manifest with { Payloads = [manifest.Payloads[0] with { Size = 4096, Verity = one }] }).Problems(), Is.Empty);
        var script = new BundlePayload("s", PayloadKinds.Script, 1, new string('b', 64), Verity: good);
        Assert.That((manifest with { Payloads = [manifest.Payloads[0], script], Steps = [.. manifest.Steps, new BundleStep(StepActions.RunScript, "s", ScriptPhases.Health)] }).Problems(),
            Has.Some.EqualTo("payloads.s.verity: only an OS image has a hash tree"));
    }
}
