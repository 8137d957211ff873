using Tsunagu.Cli.Factory;
using Tsunagu.Protocol;

namespace Tsunagu.IntegrationTests;

/// <summary>`tsunagu factory burn/show` on a GPT disk image made by sfdisk, as `make image` makes it.</summary>
[TestFixture]
public sealed class FactoryImageTests
{
    private string _dir = null!;

    [SetUp]
    public void CreateDirectory()
    {
        _dir = TempDirectories.Create("gpt");
    }

    [TearDown]
    public void RemoveDirectory() => Directory.Delete(_dir, recursive: true);

    /// <summary>An 8 MiB GPT disk image in <paramref name="dir"/> with a 1 MiB partition per name.</summary>
    internal static string MakeDisk(string dir, params string[] partitions)
    {
        var disk = Path.Combine(dir, "disk.img");
        using (var f = new FileStream(disk, FileMode.Create)) { f.SetLength(8L << 20); }
        var layout = Path.Combine(dir, "layout");
        File.WriteAllText(layout, "label: gpt\n" + string.Concat(partitions.Select(p => $"name={p}, size=1MiB\n")));
        TestServer.Run("bash", ["-c", $"sfdisk --quiet --no-reread --no-tell-kernel '{disk}' < '{layout}'"]);
        return disk;
    }

    private static FactoryIdentity Identity(string mac) => new(FactoryIdentity.CurrentFormat, mac, "SN-1", "qemu-r1", "qemu-x86_64",
        new BootstrapInfo("https://10.0.2.100:8443/", new WanAccount("dhcp")), ["pin"], ["key"], "c2VjcmV0");

    /// <summary>Zeroes partition <paramref name="name"/> of <paramref name="image"/>.</summary>
    internal static void Erase(string image, string name)
    {
        var partition = GptImage.Find(image, name);
        using var file = new FileStream(image, FileMode.Open, FileAccess.Write);
        file.Position = partition.Offset;
        file.Write(new byte[partition.Length]);
    }

    [Test]
    public async Task Burn_writes_a_tar_with_the_identity_into_the_factory_partition_only()
    {
        var disk = MakeDisk(_dir, "prom", "factory", "data");
        var partitions = GptImage.ReadPartitions(disk);
        Assert.That(partitions.Select(p => p.Name), Is.EqualTo(new[] { "prom", "factory", "data" }));
        var data = partitions[2];
        await using (var f = new FileStream(disk, FileMode.Open)) { f.Position = data.Offset; f.Write(new byte[] { 1, 2, 3 }); }

        await GptImage.BurnFactoryAsync(disk, Identity("52:54:00:12:34:56"), CancellationToken.None);

        var read = await GptImage.ReadFactoryAsync(disk, CancellationToken.None);
        Assert.That(read.Mac, Is.EqualTo("52:54:00:12:34:56"));
        Assert.That(read.UnitSecret, Is.EqualTo("c2VjcmV0"));
        var bytes = await File.ReadAllBytesAsync(disk);
        Assert.That(bytes.AsSpan((int)data.Offset, 3).ToArray(), Is.EqualTo(new byte[] { 1, 2, 3 }), "the next partition is untouched");
        // busybox tar (the boot program) reads the raw partition
        var factory = partitions[1];
        var extract = Path.Combine(_dir, "x");
        Directory.CreateDirectory(extract);
        await File.WriteAllBytesAsync(Path.Combine(_dir, "factory.raw"), bytes.AsSpan((int)factory.Offset, (int)factory.Length).ToArray());
        TestServer.Run("busybox", ["tar", "-xf", Path.Combine(_dir, "factory.raw"), "-C", extract]);
        Assert.That(await File.ReadAllTextAsync(Path.Combine(extract, "identity.json")), Does.Contain("52:54:00:12:34:56"));

        // burning again (a reimage) replaces the identity completely
        await GptImage.BurnFactoryAsync(disk, Identity("52:54:00:12:34:57"), CancellationToken.None);
        Assert.That((await GptImage.ReadFactoryAsync(disk, CancellationToken.None)).Mac, Is.EqualTo("52:54:00:12:34:57"));
    }

    [Test]
    public void Wrong_images_are_refused_with_the_reason()
    {
        var noFactory = MakeDisk(_dir, "prom", "data");
        Assert.That(() => GptImage.BurnFactoryAsync(noFactory, Identity("52:54:00:12:34:56"), CancellationToken.None),
            Throws.TypeOf<DiskImageException>().With.Message.Contains("no partition named 'factory' (found: prom, data)"));

        var plain = Path.Combine(_dir, "plain.img");
        File.WriteAllBytes(plain, new byte[1 << 20]);
        Assert.That(() => GptImage.ReadPartitions(plain), Throws.TypeOf<DiskImageException>().With.Message.Contains("not a GPT disk image"));

        var damaged = MakeDisk(_dir, "prom", "factory");
        using (var f = new FileStream(damaged, FileMode.Open)) { f.Position = 512 + 40; f.WriteByte(0x7f); }
        Assert.That(() => GptImage.ReadPartitions(damaged), Throws.TypeOf<DiskImageException>().With.Message.Contains("checksum mismatch"));

        var empty = MakeDisk(_dir, "prom", "factory");
        Assert.That(() => GptImage.ReadFactoryAsync(empty, CancellationToken.None),
            Throws.TypeOf<DiskImageException>().With.Message.Contains("factory partition is empty"));
    }

    [Test]
    public void A_pppoe_provisional_link_gets_the_password_derived_from_the_mac_and_never_the_key()
    {
        var key = Enumerable.Range(7, 32).Select(i => (byte)i).ToArray();
        var spec = new IdentitySpec("02:00:5e:10:00:07", "S7", "hw1", "qemu-x86_64", "https://10.0.2.100:8443/", new WanAccount("pppoe"), ["pin"], ["key"]);
        var identity = FactoryIdentities.Create(spec, key);
        var wan = identity.Bootstrap.ProvisionalWan;
        Assert.That((wan.Username, wan.Password), Is.EqualTo(("02005e100007", UnitCredentials.DeriveAccessPassword(key, "02:00:5e:10:00:07"))));
        Assert.That(System.Text.Json.JsonSerializer.Serialize(identity), Does.Not.Contain(Convert.ToBase64String(key)), "the operator's key is not on the unit");
        var given = FactoryIdentities.Create(spec with { ProvisionalWan = new WanAccount("pppoe", "setup", "given") }, key);
        Assert.That(given.Bootstrap.ProvisionalWan.Password, Is.EqualTo("given"), "an explicit password is kept");
        Assert.Throws<ArgumentException>(() => FactoryIdentities.Create(spec with { ProvisionalWan = new WanAccount("pppoe", "a b", "pw") }, key));
    }
}

