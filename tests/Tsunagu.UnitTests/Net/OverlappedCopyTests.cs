using System.Security.Cryptography;
using Tsunagu.Firmware.Net;

namespace Tsunagu.UnitTests.Net;

/// <summary>
/// A body stream under test control: hands out at most <see cref="MaxPerRead"/> bytes per read, can fail with an
/// <see cref="IOException"/> or block until cancelled once <see cref="FailAt"/> / <see cref="BlockAt"/> bytes were
/// read, and reports where each read starts.
/// </summary>
internal sealed class ScriptedStream(byte[] content) : Stream
{
    private int _position;
    public int MaxPerRead { get; init; } = int.MaxValue;
    public int FailAt { get; init; } = -1;
    public int BlockAt { get; init; } = -1;
    public Action<int>? OnRead { get; init; }

    /// <summary>Bytes handed out so far.</summary>
    public int Delivered => _position;

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        OnRead?.Invoke(_position);
        await Task.Yield();
        if (_position == FailAt) { throw new IOException($"connection reset at byte {_position}"); }
        if (_position == BlockAt) { await Task.Delay(Timeout.Infinite, cancellationToken); }
        var limit = content.Length;
        if (FailAt >= 0) { limit = Math.Min(limit, FailAt); }
        if (BlockAt >= 0) { limit = Math.Min(limit, BlockAt); }
        var n = Math.Min(Math.Min(buffer.Length, MaxPerRead), limit - _position);
        content.AsMemory(_position, n).CopyTo(buffer);
        _position += n;
        return n;
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("async reads only");
    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => _position; set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

public class OverlappedCopyTests
{
    private const int Chunk = 64 * 1024;

    private sealed class Sink
    {
        public MemoryStream Bytes { get; } = new();
        public List<int> Chunks { get; } = [];

        public ValueTask Consume(ReadOnlyMemory<byte> chunk, CancellationToken ct)
        {
            Chunks.Add(chunk.Length);
            Bytes.Write(chunk.Span);
            return ValueTask.CompletedTask;
        }
    }

    [Test]
    public async Task A_body_of_many_chunks_arrives_whole_and_in_order_in_chunks_no_larger_than_the_chunk_size()
    {
        var content = RandomNumberGenerator.GetBytes(Chunk * 5 + 1234);
        var sink = new Sink();
        var read = await OverlappedCopy.CopyAsync(new ScriptedStream(content) { MaxPerRead = 1000 }, long.MaxValue, sink.Consume, CancellationToken.None, Chunk);
        Assert.That(read, Is.EqualTo(content.Length));
        Assert.That(sink.Bytes.ToArray(), Is.EqualTo(content));
        Assert.That(sink.Chunks, Has.All.LessThanOrEqualTo(Chunk));
        Assert.That(sink.Chunks.Take(5), Has.All.EqualTo(Chunk), "small reads are gathered into full chunks");
    }

    [Test]
    public async Task It_never_reads_past_the_limit()
    {
        var content = RandomNumberGenerator.GetBytes(Chunk * 3);
        var source = new ScriptedStream(content);
        var sink = new Sink();
        var read = await OverlappedCopy.CopyAsync(source, Chunk + 10, sink.Consume, CancellationToken.None, Chunk);
        Assert.That((read, source.Delivered), Is.EqualTo((Chunk + 10L, Chunk + 10)));
        Assert.That(sink.Bytes.ToArray(), Is.EqualTo(content[..(Chunk + 10)]));
    }

    [Test]
    public async Task The_next_read_runs_while_the_previous_chunk_is_consumed()
    {
        var content = RandomNumberGenerator.GetBytes(Chunk * 3);
        var secondChunkRequested = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var source = new ScriptedStream(content) { OnRead = at => { if (at >= Chunk) { secondChunkRequested.TrySetResult(); } } };
        var consumed = 0L;
        var read = await OverlappedCopy.CopyAsync(source, long.MaxValue, async (chunk, ct) =>
        {
            if (consumed == 0)
            {
                // a sequential copy would never read the second chunk before this returns: it would time out here
                await secondChunkRequested.Task.WaitAsync(TimeSpan.FromSeconds(10), ct);
            }
            consumed += chunk.Length;
        }, CancellationToken.None, Chunk);
        Assert.That((read, consumed), Is.EqualTo((content.LongLength, content.LongLength)));
    }

    [Test]
    public void A_consumer_failure_stops_reading_and_is_the_exception_the_caller_sees()
    {
        var content = RandomNumberGenerator.GetBytes(Chunk * 10);
        var source = new ScriptedStream(content);
        var calls = 0;
        var e = Assert.ThrowsAsync<InvalidDataException>(() => OverlappedCopy.CopyAsync(source, long.MaxValue, (chunk, ct) =>
        {
            if (++calls == 2) { throw new InvalidDataException("payload digest mismatch"); }
            return ValueTask.CompletedTask;
        }, CancellationToken.None, Chunk));
        Assert.That(e!.Message, Is.EqualTo("payload digest mismatch"));
        Assert.That(calls, Is.EqualTo(2), "nothing consumed after the failure");
        Assert.That(source.Delivered, Is.LessThanOrEqualTo(Chunk * 3), "at most one chunk read ahead of the consumer");
    }

    [Test]
    public void Bytes_that_arrived_before_a_read_failure_are_all_consumed_before_it_is_rethrown()
    {
        var content = RandomNumberGenerator.GetBytes(Chunk * 4);
        const int failAt = Chunk * 2 + 777; // inside the third chunk
        var consumed = new MemoryStream();
        var e = Assert.ThrowsAsync<IOException>(() => OverlappedCopy.CopyAsync(new ScriptedStream(content) { FailAt = failAt, MaxPerRead = 4096 }, long.MaxValue,
            async (chunk, ct) =>
            {
                await Task.Delay(20, ct); // slower than the network: the failing read overtakes the consumer
                consumed.Write(chunk.Span);
            }, CancellationToken.None, Chunk));
        Assert.That(e!.Message, Does.Contain($"at byte {failAt}"));
        Assert.That(consumed.ToArray(), Is.EqualTo(content[..failAt]), "also the bytes of the unfinished chunk");
    }

    [Test]
    public void Cancellation_ends_a_stalled_read_and_no_consumer_runs_after_it()
    {
        var content = RandomNumberGenerator.GetBytes(Chunk * 4);
        using var cancel = new CancellationTokenSource();
        var running = 0;
        var consumedAfterCancel = false;
        var copy = OverlappedCopy.CopyAsync(new ScriptedStream(content) { BlockAt = Chunk + 100 }, long.MaxValue, async (chunk, ct) =>
        {
            Interlocked.Increment(ref running);
            if (cancel.IsCancellationRequested) { consumedAfterCancel = true; }
            await Task.Yield();
            cancel.Cancel(); // the stall is after this chunk: cancel once the first one is being consumed
            Interlocked.Decrement(ref running);
        }, cancel.Token, Chunk);
        Assert.That(async () => await copy.WaitAsync(TimeSpan.FromSeconds(10)), Throws.InstanceOf<OperationCanceledException>());
        Assert.That(running, Is.Zero, "no consumer call outlives the copy");
        Assert.That(consumedAfterCancel, Is.False, "the bytes read before the stall are not consumed once cancelled");
    }

    [Test]
    public async Task An_empty_body_and_a_zero_limit_read_nothing()
    {
        var sink = new Sink();
        Assert.That(await OverlappedCopy.CopyAsync(new ScriptedStream([]), 100, sink.Consume, CancellationToken.None), Is.Zero);
        var source = new ScriptedStream([1, 2, 3]);
        Assert.That(await OverlappedCopy.CopyAsync(source, 0, sink.Consume, CancellationToken.None), Is.Zero);
        Assert.That((sink.Chunks.Count, source.Delivered), Is.EqualTo((0, 0)));
    }
}
