using System.Formats.Tar;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Tsunagu.Protocol;

/// <summary>A bundle on an install medium: its file inside the image, digest and size.</summary>
public sealed record MediaBundle(string File, string Sha256, long Size);

/// <summary>The index at the start of an install medium.</summary>
public sealed record MediaIndex(int Format, string Name, DateTimeOffset CreatedAt, IReadOnlyList<MediaBundle> Bundles)
{
    public const int CurrentFormat = 1;
}

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web)]
[JsonSerializable(typeof(MediaIndex))]
public sealed partial class MediaJson : JsonSerializerContext;

/// <summary>The medium is not a Tsunagu install image, or is damaged; the message says what and where.</summary>
public sealed class MediaFormatException(string message) : Exception(message);

/// <summary>
/// Local install media (patent 0037). An image is a POSIX tar stream, so it can be kept as a file or written raw
/// to a USB stick (`dd`) and read back from the block device without mounting anything: first
/// `tsunagu-media.json` (<see cref="MediaIndex"/>), then `bundles/SHA256.tsb` for each bundle.
/// Its digest (the patent's "value" the host compares with genuine media) is SHA-256 over every entry's name,
/// size and content digest in order, so padding after the archive (a larger stick) does not change it.
/// </summary>
public static class MediaImage
{
    public const string IndexEntry = "tsunagu-media.json";

    public static async Task WriteAsync(Stream destination, string name, IReadOnlyList<string> bundlePaths, DateTimeOffset now, CancellationToken ct)
    {
        var bundles = new List<(MediaBundle Entry, string Path)>();
        foreach (var path in bundlePaths)
        {
            await using var file = File.OpenRead(path);
            var sha = Convert.ToHexStringLower(await SHA256.HashDataAsync(file, ct));
            if (bundles.Any(b => b.Entry.Sha256 == sha)) { continue; }
            bundles.Add((new MediaBundle($"bundles/{sha}.tsb", sha, file.Length), path));
        }
        var index = new MediaIndex(MediaIndex.CurrentFormat, name, now, bundles.Select(b => b.Entry).ToList());
        await using var tar = new TarWriter(destination, TarEntryFormat.Ustar, leaveOpen: true);
        var indexEntry = new UstarTarEntry(TarEntryType.RegularFile, IndexEntry)
        {
            DataStream = new MemoryStream(JsonSerializer.SerializeToUtf8Bytes(index, MediaJson.Default.MediaIndex)),
            ModificationTime = now,
        };
        await tar.WriteEntryAsync(indexEntry, ct);
        foreach (var (entry, path) in bundles)
        {
            await using var content = File.OpenRead(path);
            await tar.WriteEntryAsync(new UstarTarEntry(TarEntryType.RegularFile, entry.File) { DataStream = content, ModificationTime = now }, ct);
        }
    }

    /// <summary>Reads the index and computes the digest in one pass over the image.</summary>
    /// <exception cref="MediaFormatException">Not an image, or an entry disagrees with the index.</exception>
    public static async Task<(MediaIndex Index, string Digest)> InspectAsync(Stream image, CancellationToken ct)
    {
        using var digest = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        MediaIndex? index = null;
        var seen = new Dictionary<string, (string Sha, long Size)>(StringComparer.Ordinal);
        try
        {
            await using var reader = new TarReader(image, leaveOpen: true);
            while (await reader.GetNextEntryAsync(copyData: false, ct) is { } entry)
            {
                if (entry.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile))
                {
                    throw new MediaFormatException($"entry '{entry.Name}' is a {entry.EntryType}; an install medium holds files only");
                }
                byte[] sha;
                byte[]? content = null;
                if (entry.Name == IndexEntry)
                {
                    using var buffer = new MemoryStream();
                    if (entry.DataStream is not null) { await entry.DataStream.CopyToAsync(buffer, ct); }
                    content = buffer.ToArray();
                    sha = SHA256.HashData(content);
                }
                else
                {
                    sha = entry.DataStream is null ? SHA256.HashData([]) : await SHA256.HashDataAsync(entry.DataStream, ct);
                }
                digest.AppendData(Encoding.UTF8.GetBytes($"{entry.Name}\n{entry.Length}\n{Convert.ToHexStringLower(sha)}\n"));
                if (content is not null)
                {
                    index = JsonSerializer.Deserialize(content, MediaJson.Default.MediaIndex)
                            ?? throw new MediaFormatException($"{IndexEntry} is empty");
                }
                else
                {
                    seen[entry.Name] = (Convert.ToHexStringLower(sha), entry.Length);
                }
            }
        }
        catch (Exception e) when (IsDamage(e))
        {
            throw new MediaFormatException($"not a readable install image: {e.Message}");
        }
        if (index is null) { throw new MediaFormatException($"no {IndexEntry}: not a Tsunagu install image"); }
        if (index.Format != MediaIndex.CurrentFormat) { throw new MediaFormatException($"{IndexEntry}: format {index.Format} is not supported"); }
        if (string.IsNullOrWhiteSpace(index.Name) || index.Bundles is null)
        {
            throw new MediaFormatException($"{IndexEntry}: name and bundles are required");
        }
        for (var i = 0; i < index.Bundles.Count; i++)
        {
            var b = index.Bundles[i];
            if (b is null || b.Sha256 is not { Length: 64 } || !b.Sha256.All(char.IsAsciiHexDigitLower) || b.File != $"bundles/{b.Sha256}.tsb" || b.Size < 0)
            {
                throw new MediaFormatException($"{IndexEntry}: bundles[{i}] is not a valid entry (file bundles/SHA256.tsb, sha256, size)");
            }
        }
        foreach (var bundle in index.Bundles)
        {
            if (!seen.TryGetValue(bundle.File, out var found))
            {
                throw new MediaFormatException($"{IndexEntry} lists {bundle.File}, which the image does not hold");
            }
            if (found.Sha != bundle.Sha256 || found.Size != bundle.Size)
            {
                throw new MediaFormatException($"{bundle.File}: content does not match the index (sha256 {found.Sha}, {found.Size} bytes)");
            }
        }
        return (index, Convert.ToHexStringLower(digest.GetHashAndReset()));
    }

    /// <summary>Opens the bytes of one file in the image (the image must be seekable).</summary>
    /// <exception cref="MediaFormatException">The image does not hold the file, or is damaged before it.</exception>
    public static async Task<Stream> OpenEntryAsync(Stream image, string file, CancellationToken ct)
    {
        var reader = new TarReader(image, leaveOpen: true);
        try
        {
            while (await reader.GetNextEntryAsync(copyData: false, ct) is { } entry)
            {
                if (entry.Name == file && entry.DataStream is { } data)
                {
                    return data;
                }
            }
        }
        catch (Exception e) when (IsDamage(e))
        {
            throw new MediaFormatException($"not a readable install image before {file}: {e.Message}");
        }
        throw new MediaFormatException($"the image holds no {file}");
    }

    /// <summary>
    /// What reading a damaged image throws: the tar reader's format errors, for entry sizes past the end of the
    /// stream or beyond 64 bits its position and overflow errors, for entry types it does not read (sparse files)
    /// NotSupportedException, for an extended attributes entry whose size field is larger than it may be its
    /// InvalidOperationException (only that one: thrown by the tar reader itself); the index's JSON errors.
    /// </summary>
    private static bool IsDamage(Exception e) =>
        e is InvalidDataException or FormatException or JsonException or EndOfStreamException or OverflowException or ArgumentOutOfRangeException
            or NotSupportedException
        || (e is InvalidOperationException && e.Source == typeof(TarReader).Assembly.GetName().Name);
}
