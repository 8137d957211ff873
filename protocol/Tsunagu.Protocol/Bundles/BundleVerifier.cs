using System.Security.Cryptography;

namespace Tsunagu.Protocol.Bundles;

/// <summary>
/// What a bundle is checked against: the unit's board, hardware and OS, its current install pattern (as the
/// host reported it), the last bundle it committed, and the time now, with where that time came from
/// (<paramref name="TimeSource"/>, e.g. "the host's time"; named in the expiry check's message).
/// </summary>
public sealed record BundleTarget(string Board, string HardwareVersion, string OsVersion, string? CurrentPattern,
    BundleCounter? Installed, DateTimeOffset Now, string? TimeSource = null);

/// <summary>
/// The checks every bundle passes before anything in it is unpacked or run, in this order: container format,
/// signature by a trusted release key, manifest rules, target (board, hardware, OS, from-pattern, version,
/// expiry), then each payload's size and SHA-256 while it streams.
/// </summary>
public static class BundleVerifier
{
    /// <summary>Verifies the signature, then parses and validates the manifest. Returns it with the id of the key that signed it.</summary>
    /// <exception cref="BundleCheckException">Signature or Manifest.</exception>
    public static (BundleManifest Manifest, string KeyId) VerifyManifest(BundleHeader header, ReleaseKeySet keys)
    {
        var keyId = keys.Verify(header);
        return (header.ParseManifest(), keyId);
    }

    /// <summary>Compatibility, from-pattern, anti-rollback version and expiry.</summary>
    /// <exception cref="BundleCheckException">The first check that fails.</exception>
    public static void CheckTarget(BundleManifest m, BundleTarget t)
    {
        var c = m.Compatibility;
        if (!c.Boards.Contains(t.Board))
        {
            throw new BundleCheckException(BundleCheck.Board, $"bundle {m.BundleId} is for board(s) {string.Join(", ", c.Boards)}; this unit is '{t.Board}'");
        }
        if (!c.HardwareVersions.Contains(t.HardwareVersion))
        {
            throw new BundleCheckException(BundleCheck.Hardware, $"bundle {m.BundleId} is for hardware {string.Join(", ", c.HardwareVersions)}; this unit is '{t.HardwareVersion}'");
        }
        if (!c.OsVersions.Contains(t.OsVersion))
        {
            throw new BundleCheckException(BundleCheck.Os, $"bundle {m.BundleId} installs over OS {string.Join(", ", c.OsVersions)}; this unit runs '{t.OsVersion}'");
        }
        if (t.CurrentPattern is null || !m.FromPatterns.Contains(t.CurrentPattern))
        {
            throw new BundleCheckException(BundleCheck.FromPattern,
                $"bundle {m.BundleId} applies to pattern(s) {string.Join(", ", m.FromPatterns)}; this unit is on {(t.CurrentPattern is null ? "no verified pattern" : $"'{t.CurrentPattern}'")}");
        }
        if (t.Installed is { } last && !(m.Version > last.Version || (m.Version == last.Version && m.BundleId == last.BundleId)))
        {
            throw new BundleCheckException(BundleCheck.Version,
                $"bundle {m.BundleId} version {m.Version} is not higher than the last installed version {last.Version}" + (last.BundleId.Length > 0 ? $" (bundle {last.BundleId})" : ""));
        }
        if (t.Now >= m.ExpiresAt)
        {
            throw new BundleCheckException(BundleCheck.Expiry, $"bundle {m.BundleId} expired at {m.ExpiresAt:O} (now {t.Now:O}{(t.TimeSource is { } source ? $" by {source}" : "")})");
        }
    }

    /// <summary>
    /// Reads the payloads that follow the header, checking each one's size and SHA-256 as it streams, and that
    /// nothing follows the last. <paramref name="sink"/>, when given, receives each payload's bytes in order.
    /// </summary>
    /// <exception cref="BundleCheckException">Size or PayloadDigest.</exception>
    public static async Task VerifyPayloadsAsync(Stream payloads, BundleManifest m, CancellationToken ct,
        Func<BundlePayload, ReadOnlyMemory<byte>, CancellationToken, ValueTask>? sink = null)
    {
        var buffer = new byte[81920];
        foreach (var p in m.Payloads)
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var left = p.Size;
            while (left > 0)
            {
                var read = await payloads.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, left)), ct);
                if (read == 0)
                {
                    throw new BundleCheckException(BundleCheck.Size, $"payload {p.Name} ends after {p.Size - left} of its declared {p.Size} bytes");
                }
                hash.AppendData(buffer, 0, read);
                if (sink is not null) { await sink(p, buffer.AsMemory(0, read), ct); }
                left -= read;
            }
            var sha = Convert.ToHexStringLower(hash.GetHashAndReset());
            if (sha != p.Sha256)
            {
                throw new BundleCheckException(BundleCheck.PayloadDigest, $"payload {p.Name} has SHA-256 {sha}; the manifest declares {p.Sha256}");
            }
        }
        if (await payloads.ReadAsync(buffer.AsMemory(0, 1), ct) > 0)
        {
            throw new BundleCheckException(BundleCheck.Size, "bytes follow the last payload; the bundle is longer than its manifest declares");
        }
    }

    /// <summary>Every check on a whole bundle stream; <paramref name="target"/> null skips the unit-specific ones.</summary>
    public static async Task<(BundleManifest Manifest, string KeyId)> VerifyAsync(Stream bundle, ReleaseKeySet keys, BundleTarget? target, CancellationToken ct)
    {
        var header = await BundleFormat.ReadHeaderAsync(bundle, ct);
        var (manifest, keyId) = VerifyManifest(header, keys);
        if (target is not null)
        {
            CheckTarget(manifest, target);
        }
        await VerifyPayloadsAsync(bundle, manifest, ct);
        return (manifest, keyId);
    }
}
