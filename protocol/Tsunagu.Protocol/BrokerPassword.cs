using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Tsunagu.Protocol;

/// <summary>
/// A unit's password on the push broker: short-lived and derived from the server's broker key, never from anything
/// the unit keeps for good. <c>v1.&lt;expiry, Unix seconds&gt;.&lt;base64url HMAC-SHA256(broker key, label | MAC | expiry)&gt;</c>.
/// The host hands it out in the host session answer; the broker checks the MAC, the expiry and the HMAC, so it needs
/// no table of passwords, and a new broker key makes every password issued before it worthless at once.
/// Expiries are aligned to multiples of the lifetime, so every session a unit opens within the same half-lifetime
/// gets the same password (an external broker is told a unit's password only when it changes).
/// </summary>
public static class BrokerPassword
{
    private const string Label = "tsunagu/v1/broker-password|";
    private const string Version = "v1";

    /// <summary>Longest password accepted for checking (a v1 password is about 60 characters).</summary>
    public const int MaxLength = 128;

    /// <summary>
    /// The expiry of the password issued at <paramref name="now"/>: the end of the lifetime-long window that
    /// contains now + lifetime/2, so what is left of it is more than half a lifetime and at most one and a half.
    /// </summary>
    public static DateTimeOffset ExpiryFor(DateTimeOffset now, TimeSpan lifetime)
    {
        var seconds = (long)lifetime.TotalSeconds;
        if (seconds < 2)
        {
            throw new ProtocolException($"a broker password lifetime of {lifetime} is too short: at least 2 s");
        }
        var window = (now.ToUnixTimeSeconds() + seconds / 2) / seconds;
        return DateTimeOffset.FromUnixTimeSeconds((window + 1) * seconds);
    }

    /// <summary>The password of the unit with <paramref name="mac"/> that is valid until <paramref name="expiresAt"/> (whole seconds).</summary>
    public static string Issue(ReadOnlySpan<byte> brokerKey, string mac, DateTimeOffset expiresAt)
    {
        if (brokerKey.Length < 16)
        {
            throw new ProtocolException($"the broker key is {brokerKey.Length} bytes; at least 16 are required");
        }
        var expiry = expiresAt.ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
        return $"{Version}.{expiry}.{Base64Url.Encode(Mac(brokerKey, mac, expiry))}";
    }

    /// <summary>Why a password is refused, or null when it is good for <paramref name="mac"/> at <paramref name="now"/>.</summary>
    public static string? Check(ReadOnlySpan<byte> brokerKey, string mac, string? password, DateTimeOffset now)
    {
        if (password is null || password.Length > MaxLength)
        {
            return "no password, or one too long";
        }
        var parts = password.Split('.');
        if (parts.Length != 3 || parts[0] != Version || parts[1].Length is 0 or > 11 || !parts[1].All(char.IsAsciiDigit)
            || !long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var expiry))
        {
            return "not a broker password";
        }
        byte[] given;
        try
        {
            given = Base64Url.Decode(parts[2]);
        }
        catch (FormatException)
        {
            return "not a broker password";
        }
        if (Base64Url.Encode(given) != parts[2])
        {
            // the last character's unused bits: another spelling of the same bytes is not the password issued
            return "not a broker password";
        }
        if (!CryptographicOperations.FixedTimeEquals(given, Mac(brokerKey, mac, parts[1])))
        {
            return "wrong password (another unit's, or made with a broker key that has been replaced)";
        }
        if (expiry <= now.ToUnixTimeSeconds())
        {
            return $"password expired at {DateTimeOffset.FromUnixTimeSeconds(expiry):O}";
        }
        return null;
    }

    /// <summary>The expiry written in a password, or null when it is not a v1 password (nothing is checked).</summary>
    public static DateTimeOffset? ExpiryOf(string password)
    {
        var parts = password.Split('.');
        return parts.Length == 3 && parts[0] == Version && parts[1].Length is > 0 and <= 11 && parts[1].All(char.IsAsciiDigit)
            ? DateTimeOffset.FromUnixTimeSeconds(long.Parse(parts[1], CultureInfo.InvariantCulture))
            : null;
    }

    private static byte[] Mac(ReadOnlySpan<byte> brokerKey, string mac, string expiry) =>
        HMACSHA256.HashData(brokerKey, Encoding.ASCII.GetBytes($"{Label}{MacAddress.Normalize(mac)}|{expiry}"));
}
