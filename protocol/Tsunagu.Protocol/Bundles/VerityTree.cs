using System.Globalization;
using System.Security.Cryptography;

namespace Tsunagu.Protocol.Bundles;

/// <summary>
/// What the boot program needs to map an OS slot through the kernel's dm-verity target (docs/image.md): the image's
/// data blocks, where its hash tree starts (both in 4096-byte blocks from the start of the slot), the salt and the root
/// hash (hex). Hash tree format 1, SHA-256, 4096-byte data and hash blocks, no superblock: what
/// `veritysetup format --no-superblock --hash-offset=HashStartBlock*4096` writes for the same salt.
/// </summary>
public sealed record OsVerity(long DataBlocks, long HashStartBlock, string Salt, string RootHash)
{
    public const int BlockSize = 4096;
    public const string Algorithm = "sha256";

    /// <summary>The boot state's form, `DATA_BLOCKS:HASH_START_BLOCK:SALT:ROOT_HASH` (`a_verity`, `b_verity`).</summary>
    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"{DataBlocks}:{HashStartBlock}:{Salt}:{RootHash}");

    /// <summary>Every rule broken (empty when well formed): whole blocks, the tree after the data, hex salt and root hash.</summary>
    public IReadOnlyList<string> Problems()
    {
        var problems = new List<string>();
        if (DataBlocks < 1) { problems.Add($"dataBlocks: {DataBlocks} must be at least 1"); }
        if (HashStartBlock < DataBlocks) { problems.Add($"hashStartBlock: {HashStartBlock} is inside the data ({DataBlocks} blocks)"); }
        if (Salt is not { Length: > 0 and <= 512 } || Salt.Length % 2 != 0 || !Salt.All(char.IsAsciiHexDigitLower)) { problems.Add("salt: not 1..256 bytes of lower-case hex"); }
        if (RootHash is not { Length: 64 } || !RootHash.All(char.IsAsciiHexDigitLower)) { problems.Add("rootHash: not 64 lower-case hex digits"); }
        return problems;
    }
}

/// <summary>Writes an OS image followed by its dm-verity hash tree (<see cref="OsVerity"/>).</summary>
public static class VerityTree
{
    private const int DigestsPerBlock = OsVerity.BlockSize / 32;

    /// <summary>A fresh random salt (32 bytes, hex).</summary>
    public static string NewSalt() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));

    /// <summary>
    /// Copies <paramref name="image"/> to <paramref name="output"/> padded with zeros to whole blocks, then its hash tree
    /// (top level first, the leaves last, as the kernel reads it), and returns where it is and its root hash.
    /// </summary>
    public static async Task<OsVerity> WriteAsync(Stream image, Stream output, string salt, CancellationToken ct)
    {
        var saltBytes = Convert.FromHexString(salt);
        var block = new byte[OsVerity.BlockSize];
        var leaves = new MemoryStream();
        long dataBlocks = 0;
        while (true)
        {
            var read = await ReadBlockAsync(image, block, ct);
            if (read == 0) { break; }
            Array.Clear(block, read, block.Length - read);
            await output.WriteAsync(block, ct);
            leaves.Write(Digest(saltBytes, block));
            dataBlocks++;
            if (read < block.Length) { break; }
        }
        if (dataBlocks == 0)
        {
            throw new ArgumentException("an empty image has no hash tree", nameof(image));
        }
        var levels = new List<byte[]>();
        byte[] root;
        if (dataBlocks == 1)
        {
            // the kernel's tree for one block has no level: the root is that block's digest
            root = leaves.ToArray();
        }
        else
        {
            var level = Pad(leaves.ToArray());
            levels.Add(level);
            while (level.Length > OsVerity.BlockSize)
            {
                var upper = new MemoryStream();
                for (var i = 0; i < level.Length; i += OsVerity.BlockSize)
                {
                    upper.Write(Digest(saltBytes, level.AsSpan(i, OsVerity.BlockSize)));
                }
                level = Pad(upper.ToArray());
                levels.Add(level);
            }
            root = Digest(saltBytes, level);
        }
        for (var i = levels.Count - 1; i >= 0; i--)
        {
            await output.WriteAsync(levels[i], ct);
        }
        return new OsVerity(dataBlocks, dataBlocks, salt, Convert.ToHexStringLower(root));
    }

    private static byte[] Digest(byte[] salt, ReadOnlySpan<byte> data)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(salt);
        sha.AppendData(data);
        return sha.GetHashAndReset();
    }

    private static byte[] Pad(byte[] digests)
    {
        var blocks = (digests.Length + OsVerity.BlockSize - 1) / OsVerity.BlockSize;
        var padded = new byte[blocks * OsVerity.BlockSize];
        digests.CopyTo(padded, 0);
        return padded;
    }

    private static async Task<int> ReadBlockAsync(Stream stream, byte[] block, CancellationToken ct)
    {
        var total = 0;
        while (total < block.Length)
        {
            var read = await stream.ReadAsync(block.AsMemory(total), ct);
            if (read == 0) { break; }
            total += read;
        }
        return total;
    }
}
