using System.Security.Cryptography;

namespace Tsunagu.Server.Data;

/// <summary>Update artifacts in the data directory, named by their SHA-256 (content-addressed).</summary>
public sealed class ArtifactStore(string directory)
{
    public string Directory { get; } = directory;

    public static bool IsDigest(string text) => text.Length == 64 && text.All(char.IsAsciiHexDigitLower);

    public string? PathOf(string sha256)
    {
        var path = Path.Combine(Directory, sha256);
        return IsDigest(sha256) && File.Exists(path) ? path : null;
    }

    /// <summary>Stores the bytes and returns their digest and size.</summary>
    public (string Sha256, long Size) Add(byte[] content)
    {
        System.IO.Directory.CreateDirectory(Directory);
        var sha = Convert.ToHexStringLower(SHA256.HashData(content));
        var path = Path.Combine(Directory, sha);
        if (!File.Exists(path))
        {
            File.WriteAllBytes(path + ".tmp", content);
            File.Move(path + ".tmp", path, overwrite: true);
        }
        return (sha, content.LongLength);
    }
}
