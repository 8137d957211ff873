using System.Buffers.Binary;
using System.Formats.Tar;
using System.Text;
using System.Text.Json;
using Tsunagu.Protocol;

namespace Tsunagu.Cli.Factory;

/// <summary>A disk image could not be used: not GPT, no such partition, or the content does not fit. The message names the file.</summary>
public sealed class DiskImageException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>`factory burn --reimage` for a unit the server does not have as given (unknown MAC, another serial or hardware).</summary>
public sealed class ReimageRefusedException(string message) : Exception(message);

/// <summary>One GPT partition: its name and where it lies in the image, in bytes.</summary>
public sealed record GptPartition(string Name, long Offset, long Length);

/// <summary>
/// Reads the GPT of a disk image file (512-byte sectors) and writes the `factory` partition: a POSIX tar archive
/// holding `identity.json`, read by the boot program with `tar -xf`. Nothing is mounted.
/// </summary>
public static class GptImage
{
    public const int SectorSize = 512;
    public const string FactoryPartition = "factory";

    /// <exception cref="DiskImageException">The file is missing, not a GPT disk, or its header is damaged.</exception>
    public static IReadOnlyList<GptPartition> ReadPartitions(string image)
    {
        using var file = Open(image, FileAccess.Read);
        var header = new byte[SectorSize];
        ReadExactly(file, SectorSize, header, image);
        if (Encoding.ASCII.GetString(header, 0, 8) != "EFI PART")
        {
            throw new DiskImageException($"{image}: not a GPT disk image (no 'EFI PART' header at sector 1)");
        }
        var headerSize = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(12));
        if (headerSize is < 92 or > SectorSize)
        {
            throw new DiskImageException($"{image}: GPT header size {headerSize} is invalid");
        }
        var storedCrc = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(16));
        var copy = header.AsSpan(0, headerSize).ToArray();
        copy.AsSpan(16, 4).Clear();
        if (Crc32(copy) != storedCrc)
        {
            throw new DiskImageException($"{image}: GPT header checksum mismatch (damaged partition table)");
        }
        var entriesLba = BinaryPrimitives.ReadInt64LittleEndian(header.AsSpan(72));
        var count = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(80));
        var entrySize = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(84));
        if (count is < 1 or > 1024 || entrySize is < 128 or > 4096)
        {
            throw new DiskImageException($"{image}: GPT declares {count} entries of {entrySize} bytes; not a sane table");
        }
        var entries = new byte[count * entrySize];
        ReadExactly(file, entriesLba * SectorSize, entries, image);
        if (Crc32(entries) != BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(88)))
        {
            throw new DiskImageException($"{image}: GPT partition entries checksum mismatch (damaged partition table)");
        }
        var result = new List<GptPartition>();
        for (var i = 0; i < count; i++)
        {
            var e = entries.AsSpan(i * entrySize, entrySize);
            if (e[..16].IndexOfAnyExcept((byte)0) < 0) { continue; } // unused entry
            var first = BinaryPrimitives.ReadInt64LittleEndian(e[32..]);
            var last = BinaryPrimitives.ReadInt64LittleEndian(e[40..]);
            var name = Encoding.Unicode.GetString(e.Slice(56, 72)).TrimEnd('\0');
            result.Add(new GptPartition(name, first * SectorSize, (last - first + 1) * SectorSize));
        }
        return result;
    }

    public static GptPartition Find(string image, string name)
    {
        var partitions = ReadPartitions(image);
        return partitions.FirstOrDefault(p => p.Name == name)
               ?? throw new DiskImageException($"{image}: no partition named '{name}' (found: {string.Join(", ", partitions.Select(p => p.Name))})");
    }

    /// <summary>Writes <paramref name="identity"/> into the image's `factory` partition, erasing what was there.</summary>
    public static async Task BurnFactoryAsync(string image, FactoryIdentity identity, CancellationToken cancellationToken)
    {
        var partition = Find(image, FactoryPartition);
        var json = JsonSerializer.SerializeToUtf8Bytes(identity, ProtocolJson.Default.FactoryIdentity);
        var archive = new MemoryStream();
        await using (var writer = new TarWriter(archive, TarEntryFormat.Ustar, leaveOpen: true))
        {
            var entry = new UstarTarEntry(TarEntryType.RegularFile, "identity.json")
            {
                DataStream = new MemoryStream(json), Mode = UnixFileMode.UserRead | UnixFileMode.GroupRead | UnixFileMode.OtherRead,
                ModificationTime = DateTimeOffset.UnixEpoch,
            };
            await writer.WriteEntryAsync(entry, cancellationToken);
        }
        if (archive.Length > partition.Length)
        {
            throw new DiskImageException($"{image}: the factory identity ({archive.Length} bytes) does not fit partition '{FactoryPartition}' ({partition.Length} bytes)");
        }
        var content = new byte[partition.Length];
        archive.GetBuffer().AsSpan(0, (int)archive.Length).CopyTo(content);
        await using var file = Open(image, FileAccess.ReadWrite);
        file.Position = partition.Offset;
        await file.WriteAsync(content, cancellationToken);
        await file.FlushAsync(cancellationToken);
        file.Flush(flushToDisk: true);
    }

    /// <summary>The identity in the image's `factory` partition.</summary>
    /// <exception cref="DiskImageException">The partition is empty (never burned) or does not hold a readable identity.</exception>
    public static async Task<FactoryIdentity> ReadFactoryAsync(string image, CancellationToken cancellationToken)
    {
        var partition = Find(image, FactoryPartition);
        var content = new byte[partition.Length];
        await using (var file = Open(image, FileAccess.Read))
        {
            file.Position = partition.Offset;
            await file.ReadExactlyAsync(content, cancellationToken);
        }
        if (content.AsSpan().IndexOfAnyExcept((byte)0) < 0)
        {
            throw new DiskImageException($"{image}: the factory partition is empty (burn it with `tsunagu factory burn`)");
        }
        try
        {
            await using var reader = new TarReader(new MemoryStream(content));
            while (await reader.GetNextEntryAsync(copyData: true, cancellationToken) is { } entry)
            {
                if (entry.Name == "identity.json" && entry.DataStream is { } data)
                {
                    return JsonSerializer.Deserialize(data, ProtocolJson.Default.FactoryIdentity)
                           ?? throw new DiskImageException($"{image}: factory identity.json is empty");
                }
            }
        }
        catch (Exception e) when (e is InvalidDataException or JsonException or FormatException)
        {
            throw new DiskImageException($"{image}: the factory partition does not hold a readable identity: {e.Message}", e);
        }
        throw new DiskImageException($"{image}: the factory partition holds no identity.json");
    }

    private static FileStream Open(string image, FileAccess access)
    {
        try
        {
            return new FileStream(image, FileMode.Open, access, access == FileAccess.Read ? FileShare.ReadWrite : FileShare.Read, 4096, useAsync: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DiskImageException($"{image}: cannot open the disk image: {e.Message}", e);
        }
    }

    private static void ReadExactly(FileStream file, long offset, byte[] buffer, string image)
    {
        if (offset + buffer.Length > file.Length)
        {
            throw new DiskImageException($"{image}: too small for a GPT disk image ({file.Length} bytes)");
        }
        file.Position = offset;
        file.ReadExactly(buffer);
    }

    /// <summary>CRC-32 (IEEE 802.3, reflected), as GPT uses for its header and entries.</summary>
    public static uint Crc32(ReadOnlySpan<byte> data)
    {
        var crc = 0xFFFFFFFFu;
        foreach (var b in data)
        {
            crc ^= b;
            for (var k = 0; k < 8; k++)
            {
                crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
            }
        }
        return ~crc;
    }
}
