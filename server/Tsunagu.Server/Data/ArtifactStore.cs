using System.Security.Cryptography;

namespace Tsunagu.Server.Data;

/// <summary>Update artifacts in the data directory, named by their SHA-256 (content-addressed).</summary>
public sealed class ArtifactStore(string directory)
{
    public string Directory { get; } = directory;

    public static bool IsDigest(string text) => text.Length == 64 && text.All(char.IsAsciiHexDigitLower);

    /// <summary>
    /// A digest given by a person or a unit (64 hex digits in any case, meant in lower case): the digest as stored, or the
    /// problem naming the field and the value (quoted, control characters escaped) when it is not one.
    /// </summary>
    public static (string Digest, string? Problem) ReadDigest(string? given)
    {
        var digest = given?.ToLowerInvariant() ?? "";
        return IsDigest(digest) ? (digest, null) : (digest, $"digest: '{Apis.InputRules.Quote(given)}' is not a SHA-256 in hex");
    }

    /// <summary>Every stored artifact (digest and size), by digest.</summary>
    public IReadOnlyList<(string Sha256, long Size)> List() =>
        System.IO.Directory.Exists(Directory)
            ? System.IO.Directory.EnumerateFiles(Directory).Select(f => new FileInfo(f)).Where(f => IsDigest(f.Name))
                .OrderBy(f => f.Name, StringComparer.Ordinal).Select(f => (f.Name, f.Length)).ToList()
            : [];

    public string? PathOf(string sha256)
    {
        var path = Path.Combine(Directory, sha256);
        return IsDigest(sha256) && File.Exists(path) ? path : null;
    }

    /// <summary>
    /// Streams an upload into the store, hashing as it goes; refuses more than <paramref name="maxBytes"/>.
    /// <paramref name="commit"/> (when given) runs with the digest and size once the upload is complete and before it
    /// is kept (the caller's record of it, such as an audit entry); nothing is kept of an upload that fails or whose
    /// <paramref name="commit"/> throws.
    /// </summary>
    public Task<(string Sha256, long Size)> AddAsync(Stream content, long maxBytes, Func<string, long, Task>? commit, CancellationToken ct) =>
        AddAsync(content, maxBytes, null, commit, ct);

    /// <summary>
    /// <see cref="AddAsync(Stream, long, Func{string, long, Task}?, CancellationToken)"/> that first has
    /// <paramref name="inspect"/> read the complete upload (its temporary path); when that throws, nothing is kept and
    /// <paramref name="commit"/> does not run.
    /// </summary>
    public async Task<(string Sha256, long Size)> AddAsync(Stream content, long maxBytes, Func<string, CancellationToken, Task>? inspect,
        Func<string, long, Task>? commit, CancellationToken ct)
    {
        System.IO.Directory.CreateDirectory(Directory);
        var tmp = Path.Combine(Directory, $".upload-{Guid.NewGuid():N}");
        try
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            long size = 0;
            await using (var file = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 81920, useAsync: true))
            {
                var buffer = new byte[81920];
                int read;
                while ((read = await content.ReadAsync(buffer, ct)) > 0)
                {
                    size += read;
                    if (size > maxBytes)
                    {
                        throw new InvalidDataException($"the artifact is larger than the {maxBytes} bytes allowed");
                    }
                    hash.AppendData(buffer, 0, read);
                    await file.WriteAsync(buffer.AsMemory(0, read), ct);
                }
            }
            if (size == 0) { throw new InvalidDataException("the artifact is empty"); }
            var sha = Convert.ToHexStringLower(hash.GetHashAndReset());
            if (inspect is not null) { await inspect(tmp, ct); }
            if (commit is not null) { await commit(sha, size); }
            File.Move(tmp, Path.Combine(Directory, sha), overwrite: true);
            return (sha, size);
        }
        finally
        {
            if (File.Exists(tmp)) { File.Delete(tmp); }
        }
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
