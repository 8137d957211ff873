using System.Security.Cryptography;
using System.Text;

namespace Tsunagu.Protocol.Bundles;

/// <summary>
/// Release keys: ECDSA P-256. Public keys travel as SubjectPublicKeyInfo DER in standard base64 (the form of
/// <see cref="FactoryIdentity.ReleasePublicKeys"/>); a key's id is the first 16 hex digits of SHA-256(SPKI).
/// </summary>
public static class ReleaseKeys
{
    /// <summary>Domain separation: a manifest signature can never be mistaken for any other signature.</summary>
    private static readonly byte[] SignedPrefix = Encoding.ASCII.GetBytes("tsunagu/v1/bundle-manifest\n");

    public static string KeyId(ReadOnlySpan<byte> subjectPublicKeyInfo) => Convert.ToHexStringLower(SHA256.HashData(subjectPublicKeyInfo))[..16];

    public static string KeyId(ECDsa key) => KeyId(key.ExportSubjectPublicKeyInfo());

    public static string PublicKeyBase64(ECDsa key) => Convert.ToBase64String(key.ExportSubjectPublicKeyInfo());

    /// <summary>Parses an SPKI base64 public key; false when it is not a P-256 key.</summary>
    public static bool TryParse(string spkiBase64, out ECDsa? key)
    {
        key = null;
        try
        {
            var bytes = Convert.FromBase64String(spkiBase64);
            var k = ECDsa.Create();
            k.ImportSubjectPublicKeyInfo(bytes, out var read);
            if (read != bytes.Length || !IsP256(k))
            {
                k.Dispose();
                return false;
            }
            key = k;
            return true;
        }
        catch (Exception e) when (e is FormatException or CryptographicException)
        {
            return false;
        }
    }

    /// <summary>Reads a public key given as a PEM text ("PUBLIC KEY" or a private key, whose public half is used) or as SPKI base64.</summary>
    /// <exception cref="ProtocolException">Neither form.</exception>
    public static ECDsa ParsePublic(string text, string source)
    {
        text = text.Trim();
        if (text.StartsWith("-----BEGIN", StringComparison.Ordinal))
        {
            try
            {
                var key = ECDsa.Create();
                key.ImportFromPem(text);
                return key;
            }
            catch (Exception e) when (e is ArgumentException or CryptographicException)
            {
                throw new ProtocolException($"{source}: not an ECDSA P-256 key in PEM form: {e.Message}", e);
            }
        }
        return TryParse(text, out var k) ? k! : throw new ProtocolException($"{source}: not an ECDSA P-256 public key (PEM or SPKI base64)");
    }

    /// <summary>Reads a private release key (PKCS#8 PEM, as `tsunagu bundle keygen` and the demo write it).</summary>
    /// <exception cref="ProtocolException">Not a P-256 private key.</exception>
    public static ECDsa ParsePrivate(string pem, string source)
    {
        try
        {
            var key = ECDsa.Create();
            key.ImportFromPem(pem);
            _ = key.ExportParameters(includePrivateParameters: true);
            if (!IsP256(key)) { throw new ProtocolException($"{source}: a release key must be ECDSA P-256"); }
            return key;
        }
        catch (Exception e) when (e is ArgumentException or CryptographicException)
        {
            throw new ProtocolException($"{source}: not an ECDSA P-256 private key in PEM form: {e.Message}", e);
        }
    }

    /// <summary>Signs the exact manifest bytes (ES256, IEEE P1363 r||s).</summary>
    public static BundleSignature Sign(ReadOnlySpan<byte> manifestBytes, ECDsa privateKey)
    {
        if (!IsP256(privateKey)) { throw new ProtocolException("a release key must be ECDSA P-256"); }
        var value = privateKey.SignData(Message(manifestBytes), HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
        return new BundleSignature(KeyId(privateKey), BundleSignature.Es256, Convert.ToBase64String(value));
    }

    private static bool IsP256(ECDsa key)
    {
        var oid = key.ExportParameters(false).Curve.Oid;
        return oid.Value == "1.2.840.10045.3.1.7" || oid.FriendlyName is "nistP256" or "ECDSA_P256";
    }

    internal static bool Verify(ReadOnlySpan<byte> manifestBytes, BundleSignature signature, ECDsa publicKey)
    {
        if (signature.Algorithm != BundleSignature.Es256) { return false; }
        byte[] value;
        try { value = Convert.FromBase64String(signature.Value); }
        catch (FormatException) { return false; }
        return publicKey.VerifyData(Message(manifestBytes), value, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
    }

    private static byte[] Message(ReadOnlySpan<byte> manifestBytes) => [.. SignedPrefix, .. manifestBytes];
}

/// <summary>
/// The release keys a unit trusts: the factory's, plus keys introduced by committed bundles, minus retired ones
/// (key rotation, docs/bundles.md).
/// </summary>
public sealed class ReleaseKeySet
{
    private readonly Dictionary<string, ECDsa> _keys = new(StringComparer.Ordinal);

    /// <exception cref="ProtocolException">A key is not a P-256 public key.</exception>
    public ReleaseKeySet(IEnumerable<string> spkiBase64, IEnumerable<string>? retiredKeyIds = null)
    {
        var i = 0;
        foreach (var text in spkiBase64)
        {
            if (!ReleaseKeys.TryParse(text, out var key))
            {
                throw new ProtocolException($"release key #{i}: not an ECDSA P-256 public key (SPKI, base64)");
            }
            _keys[ReleaseKeys.KeyId(key!)] = key!;
            i++;
        }
        foreach (var retired in retiredKeyIds ?? [])
        {
            _keys.Remove(retired);
        }
    }

    public ReleaseKeySet(IEnumerable<ECDsa> keys)
    {
        foreach (var key in keys) { _keys[ReleaseKeys.KeyId(key)] = key; }
    }

    public IReadOnlyCollection<string> KeyIds => _keys.Keys;

    /// <summary>The id of the trusted key whose signature over the manifest is valid.</summary>
    /// <exception cref="BundleCheckException">Check <see cref="BundleCheck.Signature"/>: unsigned, no trusted key, or no valid signature.</exception>
    public string Verify(BundleHeader header)
    {
        if (header.Signatures.Count == 0)
        {
            throw new BundleCheckException(BundleCheck.Signature, "the bundle is not signed");
        }
        if (_keys.Count == 0)
        {
            throw new BundleCheckException(BundleCheck.Signature, "no release key is trusted, so no bundle can be accepted");
        }
        var known = header.Signatures.Where(s => _keys.ContainsKey(s.KeyId)).ToList();
        if (known.Count == 0)
        {
            throw new BundleCheckException(BundleCheck.Signature,
                $"signed by key {string.Join(", ", header.Signatures.Select(s => s.KeyId))}, which is not a trusted release key (trusted: {string.Join(", ", _keys.Keys)})");
        }
        foreach (var s in known)
        {
            if (ReleaseKeys.Verify(header.ManifestBytes, s, _keys[s.KeyId]))
            {
                return s.KeyId;
            }
        }
        throw new BundleCheckException(BundleCheck.Signature,
            $"the signature by key {string.Join(", ", known.Select(s => s.KeyId))} does not match the manifest (manifest altered or signature corrupt)");
    }
}
