using System.Security.Cryptography;
using System.Text;
using Tsunagu.Protocol;

namespace Tsunagu.Server.Units.Lifecycle;

/// <summary>A sealed secret could not be opened: its key is not known here, or it was altered or moved to another row.</summary>
public sealed class SecretSealException(string message) : Exception(message);

/// <summary>
/// Seals the secrets of the device management table (ISP passwords) at rest with AES-256-GCM under the operator's
/// secrets key, <c>keys/secrets.key</c> in the data directory (32 random bytes made at first start; back it up with the
/// database: without it the sealed passwords are lost). A sealed value is <c>v1.KEYID.BASE64URL(nonce | ciphertext |
/// tag)</c>; the unit's MAC and the field name are authenticated with it, so a value copied to another row or field does
/// not open. Rotation (<see cref="SecretRotation"/>) writes the new key as <c>secrets.key.next</c>, reseals every row
/// under it in one transaction and then renames it over <c>secrets.key</c>; a start-up finds an interrupted rotation
/// by the <c>.next</c> file and reseals under the key in <c>secrets.key</c>, so every row opens either way.
/// </summary>
public sealed class SecretBox
{
    public const string FileName = "secrets.key";
    public const string NextSuffix = ".next";
    private const string Version = "v1";
    private const int NonceBytes = 12, TagBytes = 16;
    private readonly string? _path;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, byte[]> _ring = new(StringComparer.Ordinal);
    private (byte[] Key, string Id) _current;
    private (DateTime Written, long Length) _stamp;

    private SecretBox(string? path, byte[] key)
    {
        _path = path;
        _current = (key, IdOf(key));
        _ring[_current.Id] = key;
    }

    /// <summary>A box with a key of its own that lives as long as the process (stores made without a key file: tests, tools).</summary>
    public static SecretBox Ephemeral() => new(null, RandomNumberGenerator.GetBytes(32));

    /// <summary>Loads the key in <paramref name="directory"/> (making one first when there is none) and a pending rotation's key, if any.</summary>
    public static SecretBox LoadOrCreate(string directory)
    {
        Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, FileName);
        // replicas starting at once on one directory: the first key written is every replica's (a second key would leave
        // what the first sealed unreadable)
        Security.CreateOnceFile.ReadOrCreate(path, () => RandomNumberGenerator.GetBytes(32), UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var box = new SecretBox(path, ReadKey(path)) { _stamp = Stamp(path) };
        if (File.Exists(path + NextSuffix))
        {
            var next = ReadKey(path + NextSuffix);
            box._ring[IdOf(next)] = next;
        }
        return box;
    }

    /// <summary>The id of the key new values are sealed with.</summary>
    public string CurrentId
    {
        get
        {
            Refresh();
            lock (_lock) { return _current.Id; }
        }
    }

    /// <summary>Where the key file is (null for an ephemeral box).</summary>
    public string? KeyPath => _path;

    /// <summary>A short public name of a key (hex of the first 8 bytes of its SHA-256).</summary>
    public static string IdOf(ReadOnlySpan<byte> key) => Convert.ToHexStringLower(SHA256.HashData(key).AsSpan(0, 8));

    /// <summary>Seals <paramref name="clear"/> for <paramref name="field"/> of unit <paramref name="mac"/>; null stays null.</summary>
    public string? Seal(string mac, string field, string? clear)
    {
        if (clear is null) { return null; }
        Refresh();
        (byte[] Key, string Id) current;
        lock (_lock) { current = _current; }
        return SealWith(current.Key, current.Id, mac, field, clear);
    }

    internal static string SealWith(byte[] key, string id, string mac, string field, string clear)
    {
        var plain = Encoding.UTF8.GetBytes(clear);
        var output = new byte[NonceBytes + plain.Length + TagBytes];
        var nonce = output.AsSpan(0, NonceBytes);
        RandomNumberGenerator.Fill(nonce);
        using var gcm = new AesGcm(key, TagBytes);
        gcm.Encrypt(nonce, plain, output.AsSpan(NonceBytes, plain.Length), output.AsSpan(NonceBytes + plain.Length), Associated(mac, field));
        return $"{Version}.{id}.{Base64Url.Encode(output)}";
    }

    /// <summary>Opens a value <see cref="Seal"/> made for the same unit and field; null stays null.</summary>
    /// <exception cref="SecretSealException">Unknown key, altered value, or a value of another unit or field.</exception>
    public string? Open(string mac, string field, string? sealedValue)
    {
        if (sealedValue is null) { return null; }
        var parts = sealedValue.Split('.');
        if (parts.Length != 3 || parts[0] != Version)
        {
            throw new SecretSealException($"unit {mac} {field}: not a sealed value");
        }
        var key = KeyOf(parts[1]) ?? throw new SecretSealException(
            $"unit {mac} {field}: sealed with key {parts[1]}, which is not {_path ?? "this process's key"} (restore the key file it was sealed with)");
        byte[] data;
        try
        {
            data = Base64Url.Decode(parts[2]);
        }
        catch (FormatException)
        {
            throw new SecretSealException($"unit {mac} {field}: the sealed value is damaged");
        }
        if (data.Length < NonceBytes + TagBytes) { throw new SecretSealException($"unit {mac} {field}: the sealed value is damaged"); }
        var plain = new byte[data.Length - NonceBytes - TagBytes];
        try
        {
            using var gcm = new AesGcm(key, TagBytes);
            gcm.Decrypt(data.AsSpan(0, NonceBytes), data.AsSpan(NonceBytes, plain.Length), data.AsSpan(NonceBytes + plain.Length), plain, Associated(mac, field));
        }
        catch (AuthenticationTagMismatchException)
        {
            throw new SecretSealException($"unit {mac} {field}: the sealed value does not open (altered, or sealed for another unit)");
        }
        return Encoding.UTF8.GetString(plain);
    }

    /// <summary>The key id a sealed value names, or null when it is not a sealed value.</summary>
    public static string? KeyIdOf(string? sealedValue) =>
        sealedValue?.Split('.') is [Version, var id, _] ? id : null;

    /// <summary>Adds a rotation's new key: values sealed with it open; new values are still sealed with the current key.</summary>
    internal void AddKey(byte[] key)
    {
        lock (_lock) { _ring[IdOf(key)] = key; }
    }

    /// <summary>Makes <paramref name="key"/> the current key (the old one stays openable until <see cref="Forget"/>).</summary>
    internal void MakeCurrent(byte[] key)
    {
        lock (_lock)
        {
            _current = (key, IdOf(key));
            _ring[_current.Id] = key;
            if (_path is not null && File.Exists(_path)) { _stamp = Stamp(_path); }
        }
    }

    /// <summary>Forgets every key but the current one.</summary>
    internal void Forget()
    {
        lock (_lock)
        {
            foreach (var id in _ring.Keys.Where(id => id != _current.Id).ToList()) { _ring.Remove(id); }
        }
    }

    private byte[]? KeyOf(string id)
    {
        lock (_lock)
        {
            if (_ring.TryGetValue(id, out var key)) { return key; }
        }
        Refresh();
        lock (_lock)
        {
            return _ring.GetValueOrDefault(id);
        }
    }

    /// <summary>Another replica rotated the key (the file changed): take the new one as current, keep the old one openable.</summary>
    private void Refresh()
    {
        if (_path is null) { return; }
        lock (_lock)
        {
            var info = new FileInfo(_path);
            if (!info.Exists || (info.LastWriteTimeUtc, info.Length) == _stamp) { return; }
            try
            {
                var key = ReadKey(_path);
                _stamp = Stamp(_path);
                _current = (key, IdOf(key));
                _ring[_current.Id] = key;
                if (File.Exists(_path + NextSuffix))
                {
                    var next = ReadKey(_path + NextSuffix);
                    _ring[IdOf(next)] = next;
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or SecretSealException)
            {
                // a half-written replacement: keep the key in use; the next call reads it again
            }
        }
    }

    internal static void WriteKeyFile(string path, byte[] key)
    {
        using (var file = new FileStream(path + ".tmp", FileMode.Create, FileAccess.Write, FileShare.None))
        {
            file.Write(key);
            file.Flush(flushToDisk: true);
        }
        if (!OperatingSystem.IsWindows()) { File.SetUnixFileMode(path + ".tmp", UnixFileMode.UserRead | UnixFileMode.UserWrite); }
        File.Move(path + ".tmp", path, overwrite: true);
    }

    internal static byte[] ReadKey(string path)
    {
        var key = File.ReadAllBytes(path);
        if (key.Length != 32)
        {
            throw new SecretSealException($"{path} holds {key.Length} bytes; a secrets key is 32 random bytes (the server makes one at first start)");
        }
        return key;
    }

    private static (DateTime, long) Stamp(string path)
    {
        var info = new FileInfo(path);
        return (info.LastWriteTimeUtc, info.Length);
    }

    private static byte[] Associated(string mac, string field) => Encoding.UTF8.GetBytes($"tsunagu/unit-secret/v1\n{mac}\n{field}");
}
