using System.Security.Cryptography;
using Tsunagu.Protocol;

namespace Tsunagu.Server.Push;

/// <summary>
/// The key unit broker passwords are made and checked with (<see cref="BrokerPassword"/>): <c>keys/broker.key</c> in
/// the data directory, 32 random bytes made at first start. The operator rotates it by replacing the file (write the
/// new key next to it, then rename it over the old one); the server notices the change at the next login or session,
/// without a restart. There is no grace period: the old key is refused at once, so a rotation is also the way to
/// revoke every password handed out so far. Units are refused once, open a new host session and log in again.
/// </summary>
public sealed class BrokerKey
{
    public const string FileName = "broker.key";
    private readonly string _path;
    private readonly Lock _lock = new();
    private byte[] _key;
    private (DateTime Written, long Length) _stamp;
    private string _id;

    private BrokerKey(string path)
    {
        _path = path;
        (_key, _stamp) = Read(path);
        _id = IdOf(_key);
    }

    /// <summary>A short public name of a key (hex of the first 8 bytes of its SHA-256): the same on every replica.</summary>
    public static string IdOf(ReadOnlySpan<byte> key) => Convert.ToHexStringLower(SHA256.HashData(key).AsSpan(0, 8));

    /// <summary>Loads the key in <paramref name="directory"/>, making one first when there is none.</summary>
    public static BrokerKey LoadOrCreate(string directory)
    {
        Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, FileName);
        // replicas starting at once on one directory: the first key written is every replica's
        Security.CreateOnceFile.ReadOrCreate(path, () => RandomNumberGenerator.GetBytes(32));
        return new BrokerKey(path);
    }

    /// <summary>The key now and its id (<see cref="IdOf"/>).</summary>
    public (byte[] Key, string Id) Current
    {
        get
        {
            lock (_lock)
            {
                var info = new FileInfo(_path);
                if (info.Exists && (info.LastWriteTimeUtc, info.Length) != _stamp)
                {
                    try
                    {
                        var (key, stamp) = Read(_path);
                        (_key, _stamp, _id) = (key, stamp, IdOf(key));
                    }
                    catch (Exception e) when (e is IOException or UnauthorizedAccessException or BrokerKeyException)
                    {
                        // a half-written or unreadable replacement: keep the key in use; the next call reads it again
                    }
                }
                return (_key, _id);
            }
        }
    }

    private static (byte[], (DateTime, long)) Read(string path)
    {
        var info = new FileInfo(path);
        var key = File.ReadAllBytes(path);
        if (key.Length < 16)
        {
            throw new BrokerKeyException($"{path} holds {key.Length} bytes; a broker key has at least 16 (32 random bytes are made by the server)");
        }
        return (key, (info.LastWriteTimeUtc, key.Length));
    }
}

/// <summary>The broker key file cannot be used; the message says why.</summary>
public sealed class BrokerKeyException(string message) : Exception(message);
