using System.Security.Cryptography;

namespace Tsunagu.Protocol;

/// <summary>
/// Install ids (<see cref="UpdateReport.InstallId"/>): 128 random bits as 32 lowercase hexadecimal digits, one per
/// install attempt. The host keys update reports on (unit, install id).
/// </summary>
public static class InstallIds
{
    public const int Length = 32;

    /// <summary>A new install id from the system's cryptographic random source.</summary>
    public static string New() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(Length / 2));

    /// <summary>True when <paramref name="id"/> is exactly 32 lowercase hexadecimal digits.</summary>
    public static bool IsValid(string? id) => id is { Length: Length } && id.All(c => char.IsAsciiDigit(c) || c is >= 'a' and <= 'f');
}
