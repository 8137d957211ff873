using System.Security.Cryptography;
using System.Text;

namespace Tsunagu.Protocol;

/// <summary>
/// Unit secrets and proofs. The factory derives each unit's secret from the operator's unit key (HMAC-SHA256
/// over the MAC) and burns only that secret into the unit; the unit key itself never leaves the operator.
/// A unit proves who it is by answering a server nonce with an HMAC keyed by its secret; the secret never
/// crosses the wire.
/// </summary>
public static class UnitCredentials
{
    public const int UnitKeyBytes = 32;
    private const string SecretLabel = "tsunagu/v1/unit-secret|";
    private const string ProofLabel = "tsunagu/v1/proof|";
    private const string AccessPasswordLabel = "tsunagu/v1/provisioning-ppp-password|";

    /// <summary>Characters of a provisioning PPP password (base64url of the HMAC, 144 bits).</summary>
    public const int AccessPasswordLength = 24;

    /// <summary>Derives the secret of the unit with <paramref name="mac"/> from the operator's unit key.</summary>
    public static byte[] DeriveUnitSecret(ReadOnlySpan<byte> unitKey, string mac)
    {
        if (unitKey.Length < 16)
        {
            throw new ProtocolException($"the unit key is {unitKey.Length} bytes; at least 16 are required");
        }
        var data = Encoding.ASCII.GetBytes(SecretLabel + MacAddress.Normalize(mac));
        return HMACSHA256.HashData(unitKey, data);
    }

    /// <summary>
    /// The unit's PPP password at the operator's provisioning access point (patent 0055): derived like the unit secret
    /// from the operator's unit key and the MAC, under its own label, so the access point's authenticator can check it
    /// with the key while the unit holds only the password. Base64url (letters, digits, '-', '_'): valid in a PPP options file.
    /// </summary>
    public static string DeriveAccessPassword(ReadOnlySpan<byte> unitKey, string mac)
    {
        if (unitKey.Length < 16)
        {
            throw new ProtocolException($"the unit key is {unitKey.Length} bytes; at least 16 are required");
        }
        var data = Encoding.ASCII.GetBytes(AccessPasswordLabel + MacAddress.Normalize(mac));
        return Base64Url.Encode(HMACSHA256.HashData(unitKey, data))[..AccessPasswordLength];
    }

    /// <summary>The unit's PPP user name at the provisioning access point: its MAC without separators.</summary>
    public static string AccessUsername(string mac) => MacAddress.Compact(MacAddress.Normalize(mac));

    /// <summary>The proof a unit sends for a challenge: HMAC(secret, label | purpose | mac | challengeId | nonce).</summary>
    public static string ComputeProof(ReadOnlySpan<byte> unitSecret, string purpose, string mac, string challengeId, string nonce)
    {
        var data = Encoding.UTF8.GetBytes($"{ProofLabel}{purpose}|{MacAddress.Normalize(mac)}|{challengeId}|{nonce}");
        return Convert.ToBase64String(HMACSHA256.HashData(unitSecret, data));
    }

    /// <summary>Checks a proof in constant time. A proof that is not base64 is simply wrong.</summary>
    public static bool VerifyProof(ReadOnlySpan<byte> unitSecret, string purpose, string mac, string challengeId, string nonce, string proof)
    {
        var expected = Convert.FromBase64String(ComputeProof(unitSecret, purpose, mac, challengeId, nonce));
        byte[] given;
        try
        {
            given = Convert.FromBase64String(proof);
        }
        catch (FormatException)
        {
            return false;
        }
        return CryptographicOperations.FixedTimeEquals(expected, given);
    }

    /// <summary>The unit's user name and client id on the push broker.</summary>
    public static string BrokerUsername(string mac) => MacAddress.Compact(MacAddress.Normalize(mac));
    public static string BrokerClientId(string mac) => "unit-" + BrokerUsername(mac);

    /// <summary>A fresh random nonce, base64url without padding.</summary>
    public static string NewNonce(int bytes = 32) => Base64Url.Encode(RandomNumberGenerator.GetBytes(bytes));
}

/// <summary>Base64url without padding (RFC 4648 section 5).</summary>
public static class Base64Url
{
    public static string Encode(ReadOnlySpan<byte> data) =>
        Convert.ToBase64String(data).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    public static byte[] Decode(string text)
    {
        var s = text.Replace('-', '+').Replace('_', '/');
        s += (s.Length % 4) switch { 2 => "==", 3 => "=", 0 => "", _ => throw new FormatException("invalid base64url length") };
        return Convert.FromBase64String(s);
    }
}

/// <summary>Purposes a challenge is issued for; a proof for one purpose is worthless for another.</summary>
public static class ProofPurpose
{
    public const string Provisional = "provisional";
    public const string Host = "host";

    /// <summary>A steady check's proof, over the single-use nonce the host handed out in its previous answer (<see cref="CheckNonce"/>).</summary>
    public const string SteadyCheck = "steady-check";
}

/// <summary>Token scopes. A token of one scope is refused everywhere another scope is required.</summary>
public static class TokenScope
{
    public const string Provisional = "provisional";
    public const string Host = "host";
    public const string Operator = "operator";
    public const string Subscriber = "subscriber";
}
