using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Services;

/// <summary>
/// A value the renderer will not write into a daemon's configuration: it could end the line or the token it belongs
/// to and so start a directive of its own. Thrown by the renderer itself, independently of
/// <see cref="ServiceConfigValidator"/>, so that a gap in validation alone cannot inject a directive.
/// </summary>
public sealed class UnsafeConfigValueException(string daemon, string field, string problem)
    : InvalidServiceConfigException(field, $"{problem} (refused while rendering the {daemon} configuration)")
{
    public string Daemon { get; } = daemon;
}

/// <summary>
/// The renderer's own last line of defence: per daemon, the characters a value may contain where the renderer puts it.
/// Anything that could start a new line (newline, NUL, every other control character, Unicode line separators) is
/// refused everywhere; each daemon adds the characters that split or end a token in its grammar.
/// </summary>
public static class RenderGuard
{
    public const string DnsmasqName = "dnsmasq";
    public const string NftName = "nftables";
    public const string SquidName = "squid";
    public const string WireGuardName = "WireGuard";

    /// <summary>A dnsmasq option value or one comma-separated part of it: names, addresses, MACs, durations.</summary>
    public static string Dnsmasq(string field, string? value) =>
        Token(DnsmasqName, field, value, c => char.IsAsciiLetterOrDigit(c) || c is '.' or ':' or '-' or '_');

    /// <summary>A path in a dnsmasq option: no ',' (splits the value), '#' (comment), quotes, escapes or spaces.</summary>
    public static string DnsmasqPath(string field, string? value) =>
        Token(DnsmasqName, field, value, c => IsPathChar(c));

    /// <summary>An unquoted nft token: an address, prefix, protocol or number.</summary>
    public static string Nft(string field, string? value) =>
        Token(NftName, field, value, c => char.IsAsciiLetterOrDigit(c) || c is '.' or ':' or '/' or '-');

    /// <summary>An nft string in double quotes (interface names): nothing that ends the quotes or escapes.</summary>
    public static string NftQuoted(string field, string? value) =>
        "\"" + Token(NftName, field, value, c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_' or '@' or '+' or ':') + "\"";

    /// <summary>A squid directive argument: no spaces (split), '#', quotes, or '\' (squid continues a line ending in it).</summary>
    public static string Squid(string field, string? value) =>
        Token(SquidName, field, value, c => IsPathChar(c) || c == ':');

    /// <summary>A `wg setconf` key: base64 characters only.</summary>
    public static string WireGuardKey(string field, string? value) =>
        Token(WireGuardName, field, value, c => char.IsAsciiLetterOrDigit(c) || c is '+' or '/' or '=');

    /// <summary>A `wg setconf` list of prefixes: addresses, '/', ',' and spaces; no '#' (comment) or '='.</summary>
    public static string WireGuardPrefixes(string field, string? value) =>
        Token(WireGuardName, field, value, c => char.IsAsciiHexDigit(c) || c is '.' or ':' or '/' or ',' or ' ');

    /// <summary>A `wg setconf` endpoint: host name or address, brackets, ':' and the port; no ',', '#' or '='.</summary>
    public static string WireGuardEndpoint(string field, string? value) =>
        Token(WireGuardName, field, value, c => char.IsAsciiLetterOrDigit(c) || c is '.' or ':' or '-' or '[' or ']');

    /// <summary>Text of a comment line: any printable character of any script, never a line break.</summary>
    public static string Comment(string daemon, string field, string? value) => Token(daemon, field, value, c => !IsLineBreaking(c));

    private static bool IsPathChar(char c) => char.IsAsciiLetterOrDigit(c) || c is '/' or '.' or '-' or '_' or '+' or '@';

    /// <summary>Characters that end a line (or may, for some reader) or are invisible controls.</summary>
    public static bool IsLineBreaking(char c) =>
        char.IsControl(c) || c is '\u2028' or '\u2029' or '\ufeff';

    private static string Token(string daemon, string field, string? value, Func<char, bool> allowed)
    {
        if (string.IsNullOrEmpty(value))
        {
            throw new UnsafeConfigValueException(daemon, field, "is empty");
        }
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            if (IsLineBreaking(c))
            {
                throw new UnsafeConfigValueException(daemon, field, $"holds the control character U+{(int)c:X4} at {i}");
            }
            if (!allowed(c))
            {
                throw new UnsafeConfigValueException(daemon, field, $"holds '{c}' at {i}, which {daemon} would read as part of its own syntax");
            }
        }
        return value;
    }
}
