using Tsunagu.Firmware.Net;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Updates;

/// <summary>An install medium the host has confirmed genuine, with its index.</summary>
public sealed record VerifiedMedium(string ImagePath, string Digest, MediaIndex Index)
{
    /// <summary>The bundle with this SHA-256 on the medium, or null.</summary>
    public MediaBundle? Find(string sha256) => Index.Bundles.FirstOrDefault(b => string.Equals(b.Sha256, sha256, StringComparison.OrdinalIgnoreCase));
}

/// <summary>
/// Reads a bundle from a genuine install medium instead of the network (patent 0037). The bytes go through the
/// same downloader, so the bundle's signature, size and digests are checked exactly as for a download.
/// </summary>
public sealed class MediumBundleSource(VerifiedMedium medium, MediaBundle bundle) : IBundleSource
{
    public async Task<(Stream Body, long Start)> OpenAsync(long from, long toExclusive, CancellationToken cancellationToken)
    {
        var image = new FileStream(medium.ImagePath, FileMode.Open, FileAccess.Read, FileShare.Read, 81920, useAsync: true);
        try
        {
            var entry = await MediaImage.OpenEntryAsync(image, bundle.File, cancellationToken);
            entry.Seek(from, SeekOrigin.Begin);
            return (new Slice(entry, image, Math.Min(toExclusive, bundle.Size) - from), from);
        }
        catch
        {
            await image.DisposeAsync();
            throw;
        }
    }

    /// <summary>At most <c>length</c> bytes of an entry; disposing it closes the image.</summary>
    private sealed class Slice(Stream inner, Stream image, long length) : ForwardOnlyStream
    {
        private long _left = length;

        public override int Read(Span<byte> buffer)
        {
            if (_left <= 0) { return 0; }
            var n = inner.Read(buffer[..(int)Math.Min(buffer.Length, _left)]);
            _left -= n;
            return n;
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_left <= 0) { return 0; }
            var n = await inner.ReadAsync(buffer[..(int)Math.Min(buffer.Length, _left)], cancellationToken);
            _left -= n;
            return n;
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing) { inner.Dispose(); image.Dispose(); }
            base.Dispose(disposing);
        }
    }
}
