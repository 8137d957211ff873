using System.Text.RegularExpressions;

namespace Tsunagu.Protocol;

/// <summary>
/// The grammar of a WAN account (<see cref="WanAccount"/>): what the server accepts into the device management table
/// and what a unit accepts before any of it reaches `pppd`, `ip` or resolv.conf. No control characters, no white space
/// in names, no quote or backslash in a password (the PPP options file quotes it), IPv4 addresses in dotted-quad form.
/// </summary>
public static partial class WanAccountGrammar
{
    /// <summary>The methods a WAN account may name.</summary>
    public static readonly IReadOnlyList<string> Methods = ["pppoe", "dhcp", "static"];

    /// <summary>Most name servers a static account may carry.</summary>
    public const int MaxDns = 3;

    public const int MaxUsernameLength = 128;
    public const int MaxPasswordLength = 128;

    /// <summary>What is wrong with <paramref name="account"/>, or null when it is well formed for its method.</summary>
    public static string? Problem(WanAccount? account)
    {
        if (account is null) { return "the WAN account is missing"; }
        var method = account.Method?.Trim().ToLowerInvariant();
        if (method is null || !Methods.Contains(method)) { return $"method: must be one of {string.Join(", ", Methods)}"; }
        if (UsernameProblem(account.Username) is { } u) { return u; }
        if (PasswordProblem(account.Password) is { } p) { return p; }
        if (account.Address is not null && !IsIPv4Prefix(account.Address)) { return "address: must be an IPv4 address, optionally with a prefix length /1-/32"; }
        if (account.Gateway is not null && !IsIPv4(account.Gateway)) { return "gateway: must be an IPv4 address"; }
        if (account.Dns is { } dns)
        {
            if (dns.Count > MaxDns) { return $"dns: at most {MaxDns} name servers"; }
            if (dns.Any(d => d is null || !IsIPv4(d))) { return "dns: each name server must be an IPv4 address"; }
        }
        switch (method)
        {
            case "pppoe":
                if (account.Username is null) { return "username: required for pppoe"; }
                if (account.Password is null) { return "password: required for pppoe"; }
                break;
            case "static":
                if (account.Address is null) { return "address: required for static"; }
                if (account.Gateway is null) { return "gateway: required for static"; }
                break;
        }
        return null;
    }

    /// <summary>Throws when <paramref name="account"/> is not well formed.</summary>
    /// <exception cref="ProtocolException">The account breaks the grammar; the message says which field.</exception>
    public static WanAccount Require(WanAccount? account) =>
        Problem(account) is { } problem ? throw new ProtocolException($"WAN account: {problem}") : account!;

    /// <summary>A PPP user name: letters, digits and <c>._@+/=:%-</c>, not starting with '-' (it could read as an option).</summary>
    public static string? UsernameProblem(string? username) =>
        username is null || UsernamePattern().IsMatch(username) ? null
        : $"username: 1-{MaxUsernameLength} characters of letters, digits and ._@+/=:%- not starting with '-'";

    /// <summary>A PPP password: printable ASCII (space allowed), no quote or backslash.</summary>
    public static string? PasswordProblem(string? password) =>
        password is null || (password.Length is > 0 and <= MaxPasswordLength && password.All(c => c is >= ' ' and <= '~' and not '"' and not '\\')) ? null
        : $"password: 1-{MaxPasswordLength} printable ASCII characters without \" or \\";

    /// <summary>A dotted-quad IPv4 address without leading zeros.</summary>
    public static bool IsIPv4(string? text) => text is not null && IPv4Pattern().IsMatch(text);

    /// <summary>An IPv4 address with an optional prefix length 1-32.</summary>
    public static bool IsIPv4Prefix(string? text)
    {
        if (text is null) { return false; }
        var slash = text.IndexOf('/');
        if (slash < 0) { return IsIPv4(text); }
        var prefix = text[(slash + 1)..];
        return IsIPv4(text[..slash]) && prefix.Length is 1 or 2 && prefix.All(char.IsAsciiDigit) && prefix[0] != '0'
            && int.Parse(prefix, System.Globalization.CultureInfo.InvariantCulture) <= 32;
    }

    [GeneratedRegex(@"^[A-Za-z0-9._@+/=:%][A-Za-z0-9._@+/=:%-]{0,127}\z", RegexOptions.CultureInvariant)]
    private static partial Regex UsernamePattern();

    [GeneratedRegex(@"^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}\z", RegexOptions.CultureInvariant)]
    private static partial Regex IPv4Pattern();
}
