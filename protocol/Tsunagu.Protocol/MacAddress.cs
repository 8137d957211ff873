using System.Globalization;

namespace Tsunagu.Protocol;

/// <summary>A unit's MAC address in canonical form: six lower-case hex pairs joined by colons.</summary>
public static class MacAddress
{
    /// <summary>Returns the canonical form of <paramref name="text"/>, accepting ':' '-' or no separators.</summary>
    /// <exception cref="ProtocolException">The text is not a 48-bit MAC address.</exception>
    public static string Normalize(string? text)
    {
        if (!TryNormalize(text, out var mac))
        {
            throw new ProtocolException($"'{text}' is not a MAC address (expected six hex pairs such as 02:00:5e:10:00:01)");
        }
        return mac;
    }

    public static bool TryNormalize(string? text, out string mac)
    {
        mac = string.Empty;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }
        var hex = text.Trim().Replace(":", "", StringComparison.Ordinal).Replace("-", "", StringComparison.Ordinal);
        // hex digits only: ulong.TryParse would also take inner whitespace at the ends and trailing NUL characters
        if (hex.Length != 12 || !hex.All(char.IsAsciiHexDigit) || !ulong.TryParse(hex, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out _))
        {
            return false;
        }
        hex = hex.ToLowerInvariant();
        mac = string.Join(':', Enumerable.Range(0, 6).Select(i => hex.Substring(i * 2, 2)));
        return true;
    }

    /// <summary>The MAC with colons removed, for use in MQTT topics and file names.</summary>
    public static string Compact(string canonicalMac) => canonicalMac.Replace(":", "", StringComparison.Ordinal);
}
