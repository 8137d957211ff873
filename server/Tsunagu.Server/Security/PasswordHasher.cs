using System.Security.Cryptography;
using System.Text;
using Tsunagu.Protocol;

namespace Tsunagu.Server.Security;

/// <summary>PBKDF2-SHA256 password hashes: "pbkdf2-sha256$iterations$salt$hash".</summary>
public static class PasswordHasher
{
    private const int Iterations = 100_000;

    /// <summary>The stored "hash" of a disabled account: matches no password, and differs on every disabling (its stamp changes).</summary>
    public static string Disabled() => "disabled$" + Convert.ToBase64String(RandomNumberGenerator.GetBytes(16));

    public static string Hash(string password)
    {
        var salt = RandomNumberGenerator.GetBytes(16);
        var hash = Rfc2898DeriveBytes.Pbkdf2(password, salt, Iterations, HashAlgorithmName.SHA256, 32);
        return $"pbkdf2-sha256${Iterations}${Convert.ToBase64String(salt)}${Convert.ToBase64String(hash)}";
    }

    /// <summary>True when <paramref name="stored"/> is a hash <see cref="Verify"/> can check (not a disabled account).</summary>
    public static bool IsWellFormed(string? stored)
    {
        var parts = stored?.Split('$');
        return parts is { Length: 4 } && parts[0] == "pbkdf2-sha256" && int.TryParse(parts[1], out var iterations) && iterations is > 0 and <= 10_000_000
               && IsBase64(parts[2]) && IsBase64(parts[3]);
    }

    private static bool IsBase64(string s) => s.Length > 0 && Convert.TryFromBase64String(s, new byte[s.Length], out _);

    public static bool Verify(string password, string stored)
    {
        if (!IsWellFormed(stored))
        {
            return false;
        }
        var parts = stored.Split('$');
        var iterations = int.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture);
        var expected = Convert.FromBase64String(parts[3]);
        var actual = Rfc2898DeriveBytes.Pbkdf2(password, Convert.FromBase64String(parts[2]), iterations, HashAlgorithmName.SHA256, expected.Length);
        return CryptographicOperations.FixedTimeEquals(expected, actual);
    }

    /// <summary>
    /// The account's security stamp: it changes whenever the stored hash does (a new password, a disabling), so tokens and
    /// cookies that carry it end then. Null for no account.
    /// </summary>
    public static string? Stamp(string? stored) =>
        stored is null ? null : Base64Url.Encode(SHA256.HashData(Encoding.UTF8.GetBytes("tsunagu-stamp\0" + stored)))[..16];
}
