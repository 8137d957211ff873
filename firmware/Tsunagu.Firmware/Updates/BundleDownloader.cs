using System.Security.Cryptography;
using Tsunagu.Firmware.Net;
using Tsunagu.Firmware.Storage;
using Tsunagu.Protocol.Bundles;

namespace Tsunagu.Firmware.Updates;

/// <summary>Where a bundle's bytes come from: byte ranges of one artifact.</summary>
public interface IBundleSource
{
    /// <summary>Opens bytes [from, toExclusive). Returns the body and the offset it really starts at (0 when the range was ignored).</summary>
    Task<(Stream Body, long Start)> OpenAsync(long from, long toExclusive, CancellationToken cancellationToken);
}

/// <summary>The host's artifact endpoint, with range requests.</summary>
public sealed class HostBundleSource(UnitClient client, Uri host, string relativeUrl, string token) : IBundleSource
{
    public Task<(Stream Body, long Start)> OpenAsync(long from, long toExclusive, CancellationToken cancellationToken) =>
        client.OpenRangeAsync(host, relativeUrl, token, from, toExclusive, cancellationToken);
}

/// <summary>
/// Downloads a bundle into a `.part` file that survives restarts: every fetch asks only for the bytes not yet on
/// disk (HTTP range request), never reads past the size the offer declares, and hashes the whole bundle and each
/// payload as the bytes stream (the bytes already on disk are hashed first on a resume).
/// </summary>
public sealed class BundleDownloader(IBundleSource source, string partPath, long declaredSize, Action<string> log)
{
    /// <summary>Every range requested, as (from, toExclusive), for the log and for tests.</summary>
    public List<(long From, long To)> Requests { get; } = [];

    /// <summary>Fetches (or finds on disk) the prefix, manifest and signatures. Nothing after them is fetched.</summary>
    public async Task<BundleHeader> FetchHeaderAsync(CancellationToken ct)
    {
        if (File.Exists(partPath) && new FileInfo(partPath).Length > declaredSize)
        {
            log($"download: {partPath} is longer than the declared {declaredSize} bytes; starting again");
            File.Delete(partPath);
        }
        await EnsureAsync(BundleFormat.PrefixLength, null, ct);
        var prefix = new byte[BundleFormat.PrefixLength];
        await using (var file = File.OpenRead(partPath))
        {
            await file.ReadExactlyAsync(prefix, ct);
        }
        var (manifestLength, signatureLength) = BundleFormat.ReadPrefix(prefix);
        var headerLength = BundleFormat.PrefixLength + (long)manifestLength + signatureLength;
        if (headerLength > declaredSize)
        {
            throw new BundleCheckException(BundleCheck.Size, $"the bundle header alone is {headerLength} bytes; the offer declares {declaredSize}");
        }
        await EnsureAsync(headerLength, null, ct);
        await using var stream = File.OpenRead(partPath);
        return await BundleFormat.ReadHeaderAsync(stream, ct);
    }

    /// <summary>
    /// Fetches the rest. Refuses a bundle whose manifest does not add up to the declared size, a payload whose
    /// SHA-256 differs from the manifest (as soon as its last byte arrives), any byte past the declared size,
    /// and a bundle whose SHA-256 differs from <paramref name="expectedSha256"/> (the offer's).
    /// </summary>
    public async Task FetchPayloadsAsync(BundleHeader header, BundleManifest manifest, string expectedSha256, CancellationToken ct)
    {
        var total = header.PayloadOffset + manifest.PayloadBytes;
        if (total != declaredSize)
        {
            throw new BundleCheckException(BundleCheck.Size, $"the manifest adds up to {total} bytes; the offer declares {declaredSize}");
        }
        using var hasher = new StreamHasher(header.PayloadOffset, manifest.Payloads);
        var onDisk = new FileInfo(partPath).Length;
        if (onDisk > 0)
        {
            await using var existing = File.OpenRead(partPath);
            var buffer = new byte[81920];
            int read;
            while ((read = await existing.ReadAsync(buffer, ct)) > 0)
            {
                hasher.Append(buffer.AsSpan(0, read));
            }
        }
        await EnsureAsync(total, hasher, ct);
        var sha = hasher.Finish();
        if (!string.Equals(sha, expectedSha256, StringComparison.OrdinalIgnoreCase))
        {
            throw new BundleCheckException(BundleCheck.Digest, $"the bundle's SHA-256 is {sha}; the offer declares {expectedSha256}");
        }
    }

    private async Task EnsureAsync(long upTo, StreamHasher? hasher, CancellationToken ct)
    {
        var have = File.Exists(partPath) ? new FileInfo(partPath).Length : 0;
        if (have >= upTo)
        {
            return;
        }
        Requests.Add((have, upTo));
        if (have > 0)
        {
            log($"download: resuming at byte {have} of {declaredSize}");
        }
        var (body, start) = await source.OpenAsync(have, upTo, ct);
        await using (body)
        {
            if (start < have)
            {
                // the server ignored the range: skip what is already on disk
                var skipBuffer = new byte[81920];
                var skip = have - start;
                while (skip > 0)
                {
                    var n = await body.ReadAsync(skipBuffer.AsMemory(0, (int)Math.Min(skipBuffer.Length, skip)), ct);
                    if (n == 0) { throw new ServerException($"download: the body ended before byte {have}", isTransient: true); }
                    skip -= n;
                }
            }
            await using var file = new FileStream(partPath, FileMode.Append, FileAccess.Write, FileShare.None, 81920, useAsync: true);
            var position = have;
            try
            {
                // the next read overlaps hashing and writing the chunk before it; every byte that arrived is on disk
                // (and counted in `position`) before a failure is rethrown, so the next attempt resumes after it
                var writeback = new WritebackPacer(file);
                await OverlappedCopy.CopyAsync(body, upTo - position, async (chunk, cancel) =>
                {
                    hasher?.Append(chunk.Span);
                    await file.WriteAsync(chunk, cancel);
                    position += chunk.Length;
                    await writeback.WroteAsync(chunk.Length, cancel);
                }, ct);
                if (position < upTo)
                {
                    throw new ServerException($"download interrupted at byte {position} of {upTo}; the next attempt resumes there", isTransient: true);
                }
                if (upTo == declaredSize && await body.ReadAsync(new byte[1], ct) > 0)
                {
                    throw new BundleCheckException(BundleCheck.Size, $"the server sends more than the declared {declaredSize} bytes");
                }
            }
            finally
            {
                await file.FlushAsync(CancellationToken.None);
                file.Flush(flushToDisk: true);
            }
        }
    }

    /// <summary>SHA-256 of the whole bundle and of each payload, fed bytes in order.</summary>
    private sealed class StreamHasher(long payloadOffset, IReadOnlyList<BundlePayload> payloads) : IDisposable
    {
        private readonly long _offset = payloadOffset;
        private readonly IncrementalHash _whole = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        private readonly IncrementalHash _payload = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        private long _position;
        private int _index;
        private long _payloadStart = payloadOffset;

        public void Append(ReadOnlySpan<byte> data)
        {
            _whole.AppendData(data);
            while (!data.IsEmpty)
            {
                if (_position < _offset)
                {
                    var header = (int)Math.Min(data.Length, _offset - _position);
                    _position += header;
                    data = data[header..];
                    continue;
                }
                if (_index >= payloads.Count)
                {
                    throw new BundleCheckException(BundleCheck.Size, "bytes follow the last payload");
                }
                var p = payloads[_index];
                var take = (int)Math.Min(data.Length, _payloadStart + p.Size - _position);
                _payload.AppendData(data[..take]);
                _position += take;
                data = data[take..];
                CompletePayloadsAtPosition();
            }
            CompletePayloadsAtPosition();
        }

        private void CompletePayloadsAtPosition()
        {
            while (_index < payloads.Count && _position >= _offset && _position == _payloadStart + payloads[_index].Size)
            {
                var p = payloads[_index];
                var sha = Convert.ToHexStringLower(_payload.GetHashAndReset());
                if (sha != p.Sha256)
                {
                    throw new BundleCheckException(BundleCheck.PayloadDigest, $"payload {p.Name} has SHA-256 {sha}; the manifest declares {p.Sha256}");
                }
                _payloadStart += p.Size;
                _index++;
            }
        }

        public string Finish()
        {
            if (_index != payloads.Count)
            {
                throw new BundleCheckException(BundleCheck.Size, $"the bundle ended inside payload {payloads[_index].Name}");
            }
            return Convert.ToHexStringLower(_whole.GetHashAndReset());
        }

        public void Dispose()
        {
            _whole.Dispose();
            _payload.Dispose();
        }
    }
}
