using Tsunagu.Protocol;

namespace Tsunagu.UnitTests.Protocol;

public class MediaImageTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), "tsunagu-media-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
        File.WriteAllBytes(Path.Combine(_dir, "a.tsb"), Enumerable.Range(0, 5000).Select(i => (byte)i).ToArray());
        File.WriteAllBytes(Path.Combine(_dir, "b.tsb"), "second bundle"u8.ToArray());
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    private async Task<byte[]> Image(params string[] bundles)
    {
        using var stream = new MemoryStream();
        await MediaImage.WriteAsync(stream, "field kit", bundles.Select(b => Path.Combine(_dir, b)).ToList(), new DateTimeOffset(2026, 11, 1, 0, 0, 0, TimeSpan.Zero), CancellationToken.None);
        return stream.ToArray();
    }

    private static Task<(MediaIndex Index, string Digest)> Inspect(byte[] image) => MediaImage.InspectAsync(new MemoryStream(image), CancellationToken.None);

    [Test]
    public async Task The_digest_depends_on_the_contents_only()
    {
        var image = await Image("a.tsb", "b.tsb");
        var (index, digest) = await Inspect(image);
        Assert.That(index.Bundles.Select(b => b.Size), Is.EqualTo(new long[] { 5000, 13 }));
        Assert.That((await Inspect(await Image("a.tsb", "b.tsb"))).Digest, Is.EqualTo(digest), "same contents, same digest");
        Assert.That((await Inspect([.. image, .. new byte[64 * 1024]])).Digest, Is.EqualTo(digest), "a larger stick (zeros after the archive) reads the same");
        Assert.That((await Inspect(await Image("a.tsb"))).Digest, Is.Not.EqualTo(digest));
    }

    [Test]
    public async Task A_changed_byte_changes_the_digest_or_breaks_the_index()
    {
        var image = await Image("a.tsb");
        var (_, digest) = await Inspect(image);
        var tampered = (byte[])image.Clone();
        tampered[^2000] ^= 0xff; // inside the bundle's bytes (the archive ends with 1024 zero bytes after it)
        var e = Assert.ThrowsAsync<MediaFormatException>(() => Inspect(tampered));
        Assert.That(e!.Message, Does.Contain("does not match the index"));
        Assert.That(digest, Has.Length.EqualTo(64));
    }

    [Test]
    public void Something_else_is_not_an_install_image()
    {
        var e = Assert.ThrowsAsync<MediaFormatException>(() => Inspect("this is not a tar archive at all, just some text"u8.ToArray()));
        Assert.That(e!.Message, Does.Contain("tsunagu-media.json").Or.Contain("not a readable install image"));
    }

    [Test]
    public async Task A_bundle_can_be_read_back_from_the_image()
    {
        var image = await Image("a.tsb");
        var (index, _) = await Inspect(image);
        await using var entry = await MediaImage.OpenEntryAsync(new MemoryStream(image), index.Bundles[0].File, CancellationToken.None);
        using var copy = new MemoryStream();
        await entry.CopyToAsync(copy);
        Assert.That(copy.ToArray(), Is.EqualTo(File.ReadAllBytes(Path.Combine(_dir, "a.tsb"))));
    }
}
