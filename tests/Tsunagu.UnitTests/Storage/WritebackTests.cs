using System.Security.Cryptography;
using Tsunagu.Firmware.Storage;

namespace Tsunagu.UnitTests.Storage;

public class WritebackTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), "tsunagu-writeback-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    /// <summary>A file stream that counts how often its buffer is pushed to the kernel.</summary>
    private sealed class CountingFile(string path) : FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 4096, useAsync: true)
    {
        public int Flushes { get; private set; }

        public override Task FlushAsync(CancellationToken cancellationToken)
        {
            Flushes++;
            return base.FlushAsync(cancellationToken);
        }
    }

    [Test]
    public void Write_out_starts_on_a_regular_file_and_is_declined_where_the_kernel_cannot_do_it()
    {
        using (var file = new FileStream(Path.Combine(_dir, "a"), FileMode.Create))
        {
            file.Write(new byte[10_000]);
            file.Flush();
            Assert.That(Writeback.Start(file), Is.True);
        }
        using var device = new FileStream("/dev/null", FileMode.Open, FileAccess.Write);
        Assert.That(Writeback.Start(device), Is.False, "a character device: ESPIPE, nothing to write out");
    }

    [Test]
    public async Task The_pacer_starts_write_out_once_per_interval_and_the_file_keeps_every_byte()
    {
        var content = RandomNumberGenerator.GetBytes((int)(WritebackPacer.Interval * 5 / 2));
        var path = Path.Combine(_dir, "b");
        await using (var file = new CountingFile(path))
        {
            var pacer = new WritebackPacer(file);
            foreach (var chunk in content.Chunk(300_000))
            {
                await file.WriteAsync(chunk);
                await pacer.WroteAsync(chunk.Length, CancellationToken.None);
            }
            Assert.That(file.Flushes, Is.EqualTo(2), "two full intervals written");
        }
        Assert.That(await File.ReadAllBytesAsync(path), Is.EqualTo(content));
    }

    private sealed class CountingMemory : MemoryStream
    {
        public int Flushes { get; private set; }

        public override Task FlushAsync(CancellationToken cancellationToken)
        {
            Flushes++;
            return base.FlushAsync(cancellationToken);
        }
    }

    [Test]
    public async Task The_pacer_leaves_a_stream_that_is_not_a_file_alone()
    {
        using var memory = new CountingMemory();
        var pacer = new WritebackPacer(memory);
        for (var i = 0; i < 3; i++)
        {
            await pacer.WroteAsync((int)WritebackPacer.Interval, CancellationToken.None);
        }
        Assert.That(memory.Flushes, Is.Zero);
    }
}
