using System.Buffers.Binary;
using System.Formats.Tar;
using System.Security.Cryptography;
using System.Text.Json;

namespace Tsunagu.Protocol.Bundles;

/// <summary>Which check a bundle failed; the CLI and the unit name it in every refusal.</summary>
public enum BundleCheck
{
    Format, Signature, Manifest, Board, Hardware, Os, FromPattern, Version, Expiry, Size, PayloadDigest, Digest,
}

/// <summary>A bundle failed <see cref="Check"/>; the message says what was found and what was expected.</summary>
public sealed class BundleCheckException(BundleCheck check, string message)
    : ProtocolException($"{BundleChecks.Name(check)}: {message}")
{
    public BundleCheck Check { get; } = check;
}

public static class BundleChecks
{
    /// <summary>The kebab-case name used in messages: "signature", "from-pattern", "payload-digest"...</summary>
    public static string Name(BundleCheck check) => check switch
    {
        BundleCheck.FromPattern => "from-pattern",
        BundleCheck.PayloadDigest => "payload-digest",
        _ => check.ToString().ToLowerInvariant(),
    };
}

/// <summary>The part of a bundle before its payloads: the manifest bytes exactly as signed, and the signatures.</summary>
public sealed record BundleHeader(byte[] ManifestBytes, IReadOnlyList<BundleSignature> Signatures, long PayloadOffset)
{
    /// <summary>Parses the manifest. Call it on an unverified header only to display it; the unit verifies first.</summary>
    /// <exception cref="BundleCheckException">Check <see cref="BundleCheck.Manifest"/>.</exception>
    public BundleManifest ParseManifest()
    {
        BundleManifest? manifest;
        try
        {
            manifest = JsonSerializer.Deserialize(ManifestBytes, BundleJson.Default.BundleManifest);
        }
        catch (JsonException e)
        {
            throw new BundleCheckException(BundleCheck.Manifest, $"not valid JSON: {e.Message}");
        }
        if (manifest is null)
        {
            throw new BundleCheckException(BundleCheck.Manifest, "empty");
        }
        var problems = manifest.Problems();
        if (problems.Count > 0)
        {
            throw new BundleCheckException(BundleCheck.Manifest, BundleManifest.DescribeProblems(problems));
        }
        return manifest;
    }
}

/// <summary>
/// The bundle container (docs/bundles.md): "TSNGBNDL", u32 format, u32 manifest length, u32 signature block
/// length (all big-endian), the manifest (UTF-8 JSON, signed as is), the signature block (JSON array of
/// <see cref="BundleSignature"/>), then every payload in manifest order, nothing after.
/// </summary>
public static class BundleFormat
{
    public static ReadOnlySpan<byte> Magic => "TSNGBNDL"u8;
    public const int PrefixLength = 20;
    public const int ContainerFormat = 1;
    public const int MaxManifestBytes = 1 << 20;
    public const int MaxSignatureBytes = 64 << 10;
    public const string FileExtension = ".tsb";

    /// <summary>The lengths of the manifest and the signature block from the fixed prefix.</summary>
    /// <exception cref="BundleCheckException">Check <see cref="BundleCheck.Format"/>.</exception>
    public static (int ManifestLength, int SignatureLength) ReadPrefix(ReadOnlySpan<byte> prefix)
    {
        if (prefix.Length < PrefixLength || !prefix[..8].SequenceEqual(Magic))
        {
            throw new BundleCheckException(BundleCheck.Format, "not a Tsunagu bundle (no TSNGBNDL header)");
        }
        var format = BinaryPrimitives.ReadUInt32BigEndian(prefix[8..]);
        var manifest = BinaryPrimitives.ReadUInt32BigEndian(prefix[12..]);
        var signatures = BinaryPrimitives.ReadUInt32BigEndian(prefix[16..]);
        if (format != ContainerFormat)
        {
            throw new BundleCheckException(BundleCheck.Format, $"container format {format} is not supported (expected {ContainerFormat})");
        }
        if (manifest is 0 or > MaxManifestBytes)
        {
            throw new BundleCheckException(BundleCheck.Format, $"manifest length {manifest} is outside 1..{MaxManifestBytes}");
        }
        if (signatures is 0 or > MaxSignatureBytes)
        {
            throw new BundleCheckException(BundleCheck.Format, $"signature block length {signatures} is outside 1..{MaxSignatureBytes}");
        }
        return ((int)manifest, (int)signatures);
    }

    /// <summary>Reads the prefix, the manifest bytes and the signatures; leaves the stream at the first payload.</summary>
    /// <exception cref="BundleCheckException">Check <see cref="BundleCheck.Format"/>: truncated or malformed.</exception>
    public static async Task<BundleHeader> ReadHeaderAsync(Stream bundle, CancellationToken ct)
    {
        var prefix = new byte[PrefixLength];
        await ReadExactlyAsync(bundle, prefix, "header", ct);
        var (manifestLength, signatureLength) = ReadPrefix(prefix);
        var manifest = new byte[manifestLength];
        await ReadExactlyAsync(bundle, manifest, "manifest", ct);
        var signatureBytes = new byte[signatureLength];
        await ReadExactlyAsync(bundle, signatureBytes, "signature block", ct);
        return new BundleHeader(manifest, ParseSignatures(signatureBytes), PrefixLength + (long)manifestLength + signatureLength);
    }

    private static List<BundleSignature> ParseSignatures(byte[] block)
    {
        try
        {
            var list = JsonSerializer.Deserialize(block, BundleJson.Default.ListBundleSignature);
            if (list is null || list.Any(s => s is null || string.IsNullOrEmpty(s.KeyId) || s.Value is null))
            {
                throw new BundleCheckException(BundleCheck.Format, "the signature block has an empty entry");
            }
            return list;
        }
        catch (JsonException e)
        {
            throw new BundleCheckException(BundleCheck.Format, $"the signature block is not valid JSON: {e.Message}");
        }
    }

    private static async Task ReadExactlyAsync(Stream stream, byte[] buffer, string what, CancellationToken ct)
    {
        try
        {
            await stream.ReadExactlyAsync(buffer, ct);
        }
        catch (EndOfStreamException)
        {
            throw new BundleCheckException(BundleCheck.Format, $"truncated in the {what}");
        }
    }

    public static byte[] SerializeManifest(BundleManifest manifest) => JsonSerializer.SerializeToUtf8Bytes(manifest, BundleJson.Default.BundleManifest);

    public static byte[] SerializeSignatures(IReadOnlyList<BundleSignature> signatures) =>
        JsonSerializer.SerializeToUtf8Bytes(signatures.ToList(), BundleJson.Default.ListBundleSignature);

    /// <summary>Writes a whole bundle: header, manifest, signatures, then each payload stream in manifest order.</summary>
    public static async Task WriteAsync(Stream destination, byte[] manifestBytes, IReadOnlyList<BundleSignature> signatures,
        IReadOnlyList<Stream> payloads, CancellationToken ct)
    {
        var signatureBytes = SerializeSignatures(signatures);
        var prefix = new byte[PrefixLength];
        Magic.CopyTo(prefix);
        BinaryPrimitives.WriteUInt32BigEndian(prefix.AsSpan(8), ContainerFormat);
        BinaryPrimitives.WriteUInt32BigEndian(prefix.AsSpan(12), (uint)manifestBytes.Length);
        BinaryPrimitives.WriteUInt32BigEndian(prefix.AsSpan(16), (uint)signatureBytes.Length);
        await destination.WriteAsync(prefix, ct);
        await destination.WriteAsync(manifestBytes, ct);
        await destination.WriteAsync(signatureBytes, ct);
        foreach (var payload in payloads)
        {
            await payload.CopyToAsync(destination, ct);
        }
    }

    /// <summary>Size and lower-case hex SHA-256 of a payload stream (read to its end).</summary>
    public static async Task<(long Size, string Sha256)> DescribeAsync(Stream payload, CancellationToken ct)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[81920];
        long size = 0;
        int read;
        while ((read = await payload.ReadAsync(buffer, ct)) > 0)
        {
            hash.AppendData(buffer, 0, read);
            size += read;
        }
        return (size, Convert.ToHexStringLower(hash.GetHashAndReset()));
    }

    /// <summary>
    /// Builds a signed bundle in memory (demo catalogue, tests): fills in each payload's size and digest, signs
    /// the manifest with every key given.
    /// </summary>
    public static async Task<byte[]> BuildAsync(BundleManifest template, IReadOnlyList<(BundlePayload Payload, byte[] Content)> payloads,
        IReadOnlyList<ECDsa> signingKeys, CancellationToken ct)
    {
        var described = new List<BundlePayload>();
        foreach (var (payload, content) in payloads)
        {
            var files = payload.Kind == PayloadKinds.Application
                ? await ListApplicationFilesAsync(new MemoryStream(content, writable: false), payload.Name, ct)
                : payload.Files;
            described.Add(payload with { Size = content.LongLength, Sha256 = Convert.ToHexStringLower(SHA256.HashData(content)), Files = files });
        }
        var manifest = template with { Payloads = described };
        var problems = manifest.Problems();
        if (problems.Count > 0)
        {
            throw new BundleCheckException(BundleCheck.Manifest, BundleManifest.DescribeProblems(problems));
        }
        var bytes = SerializeManifest(manifest);
        var signatures = signingKeys.Select(k => ReleaseKeys.Sign(bytes, k)).ToList();
        using var output = new MemoryStream();
        await WriteAsync(output, bytes, signatures, payloads.Select(p => (Stream)new MemoryStream(p.Content, writable: false)).ToList(), ct);
        return output.ToArray();
    }

    /// <summary>
    /// The regular files of an application tar with their sizes and SHA-256 (<see cref="BundlePayload.Files"/>), sorted by
    /// path. Entries other than files and directories, and paths that leave the tree, are refused.
    /// </summary>
    /// <exception cref="BundleCheckException">Check <see cref="BundleCheck.Manifest"/>: an entry the unit would refuse.</exception>
    public static async Task<IReadOnlyList<BundleFile>> ListApplicationFilesAsync(Stream tar, string payload, CancellationToken ct)
    {
        var files = new SortedDictionary<string, BundleFile>(StringComparer.Ordinal);
        await using var reader = new TarReader(tar, leaveOpen: true);
        while (await reader.GetNextEntryAsync(copyData: false, ct) is { } entry)
        {
            var path = TreePath(entry.Name);
            switch (entry.EntryType)
            {
                case TarEntryType.Directory when path is null || BundleManifest.IsRelativePath(path):
                    break;
                case TarEntryType.RegularFile or TarEntryType.V7RegularFile when BundleManifest.IsRelativePath(path):
                    using (var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256))
                    {
                        long size = 0;
                        if (entry.DataStream is { } data)
                        {
                            var buffer = new byte[81920];
                            int read;
                            while ((read = await data.ReadAsync(buffer, ct)) > 0)
                            {
                                sha.AppendData(buffer, 0, read);
                                size += read;
                            }
                        }
                        if (!files.TryAdd(path!, new BundleFile(path!, size, Convert.ToHexStringLower(sha.GetHashAndReset()))))
                        {
                            throw new BundleCheckException(BundleCheck.Manifest, $"payload {payload}: {FileListRules.Twice(path!)}");
                        }
                    }
                    break;
                default:
                    throw new BundleCheckException(BundleCheck.Manifest,
                        $"payload {payload}: entry '{entry.Name}' ({entry.EntryType}) is not a file or directory inside the application tree");
            }
        }
        return files.Values.ToList();
    }

    /// <summary>A tar entry's name as a path inside the tree: without a leading "./" or a trailing '/'; null for the tree itself.</summary>
    public static string? TreePath(string entryName)
    {
        var path = entryName;
        while (path.StartsWith("./", StringComparison.Ordinal)) { path = path[2..]; }
        path = path.TrimEnd('/');
        return path is "" or "." ? null : path;
    }

    /// <summary>An application tree as the uncompressed tar an application payload carries: relative path -> content.</summary>
    public static byte[] ApplicationTar(IReadOnlyDictionary<string, byte[]> files)
    {
        using var buffer = new MemoryStream();
        using (var tar = new TarWriter(buffer, TarEntryFormat.Pax, leaveOpen: true))
        {
            foreach (var (path, content) in files.OrderBy(f => f.Key, StringComparer.Ordinal))
            {
                tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, path) { DataStream = new MemoryStream(content, writable: false) });
            }
        }
        return buffer.ToArray();
    }
}
