using System.Runtime.ExceptionServices;

namespace Tsunagu.Firmware.Net;

/// <summary>
/// Moves a response body through a consumer (hash, then write) with the next network read overlapping the
/// consumption of the chunk before it: two buffers, one being filled from the body while the other is consumed on
/// the thread pool, so TLS decryption and hashing + writing use two cores. Memory is bounded by two chunks.
/// </summary>
public static class OverlappedCopy
{
    /// <summary>The chunk size downloads use: two of them are in memory at most.</summary>
    public const int DefaultChunkSize = 256 * 1024;

    /// <summary>
    /// Reads <paramref name="source"/> until it ends or <paramref name="limit"/> bytes were read (it never asks for
    /// more than that), handing the bytes to <paramref name="consume"/> in order, in chunks of up to
    /// <paramref name="chunkSize"/> bytes. Returns the number of bytes read, all of them consumed.
    /// Never returns or throws while a consumer call is running. When the consumer throws, reading stops and its
    /// exception is rethrown; when reading fails, the bytes read before the failure are consumed first, then the
    /// read's exception is rethrown (so a resumable download keeps every byte that arrived). Once
    /// <paramref name="ct"/> is cancelled nothing more is consumed.
    /// </summary>
    public static async Task<long> CopyAsync(Stream source, long limit, Func<ReadOnlyMemory<byte>, CancellationToken, ValueTask> consume,
        CancellationToken ct, int chunkSize = DefaultChunkSize)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(consume);
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkSize, 1);
        var size = (int)Math.Min(chunkSize, Math.Max(limit, 1));
        var filling = GC.AllocateUninitializedArray<byte>(size);
        byte[]? spare = null; // allocated only when the body needs a second chunk
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var consuming = Task.CompletedTask;
        ExceptionDispatchInfo? readFailure = null;
        long total = 0;
        while (total < limit && readFailure is null)
        {
            (var filled, readFailure) = await FillAsync(source, filling.AsMemory(0, (int)Math.Min(size, limit - total)), stop.Token);
            if (filled == 0 || stop.IsCancellationRequested)
            {
                break; // the end, or cancelled (by the caller, or by a failed consumer): nothing more is consumed
            }
            await consuming; // the previous chunk is done: its buffer is free again
            total += filled;
            consuming = ConsumeAsync(filling.AsMemory(0, filled), consume, stop);
            (filling, spare) = (spare ?? GC.AllocateUninitializedArray<byte>(size), filling);
        }
        await consuming;
        readFailure?.Throw();
        return total;
    }

    private static Task ConsumeAsync(ReadOnlyMemory<byte> chunk, Func<ReadOnlyMemory<byte>, CancellationToken, ValueTask> consume,
        CancellationTokenSource stop) =>
        Task.Run(async () =>
        {
            try
            {
                await consume(chunk, stop.Token);
            }
            catch
            {
                stop.Cancel(); // the read in flight ends now; this exception is the one the caller sees
                throw;
            }
        }, CancellationToken.None);

    /// <summary>
    /// Reads until <paramref name="buffer"/> is full or the source ends; returns the bytes read and, when a read
    /// failed, its exception (rethrown by the caller once the bytes that did arrive are consumed).
    /// </summary>
    private static async Task<(int Read, ExceptionDispatchInfo? Failure)> FillAsync(Stream source, Memory<byte> buffer, CancellationToken ct)
    {
        var got = 0;
        try
        {
            while (got < buffer.Length)
            {
                var read = await source.ReadAsync(buffer[got..], ct);
                if (read == 0)
                {
                    break;
                }
                got += read;
            }
        }
        catch (Exception e)
        {
            return (got, ExceptionDispatchInfo.Capture(e));
        }
        return (got, null);
    }
}
