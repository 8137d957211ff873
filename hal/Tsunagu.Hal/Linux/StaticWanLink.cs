using Tsunagu.Protocol;

namespace Tsunagu.Hal.Linux;

/// <summary>
/// Method "static": the account's address (a plain address becomes a /32 with a host route to the gateway), a default
/// route via its gateway, and its name servers in resolv.conf. An account that breaks <see cref="WanAccountGrammar"/>
/// (no address or gateway, not IPv4, a bad prefix length) is refused before anything is touched (not transient).
/// </summary>
public sealed class StaticWanLink(InterfaceWanOptions options, ICommandRunner runner, TimeProvider? time = null)
    : InterfaceWanLink(options, runner, time)
{
    public override string Method => "static";

    protected override void Validate(LinkRole role, WanAccount account)
    {
        base.Validate(role, account);
        if (WanAccountGrammar.Problem(account) is { } problem)
        {
            throw new HalException($"{Interface}: the static {role} account is refused: {problem}", isTransient: false);
        }
    }

    protected override async Task<string?> AddressAsync(LinkRole role, WanAccount account, CancellationToken cancellationToken)
    {
        if (string.IsNullOrWhiteSpace(account.Address))
        {
            throw new HalException($"{Interface}: the static {role} account has no address", isTransient: false);
        }
        if (string.IsNullOrWhiteSpace(account.Gateway))
        {
            throw new HalException($"{Interface}: the static {role} account has no gateway", isTransient: false);
        }
        var cidr = account.Address.Contains('/') ? account.Address.Trim() : account.Address.Trim() + "/32";
        await Ip("clear old addresses", cancellationToken, "addr", "flush", "dev", Interface);
        await Ip("set the static address", cancellationToken, "addr", "add", cidr, "dev", Interface);
        await Ip("route to the gateway", cancellationToken, "route", "replace", account.Gateway.Trim(), "dev", Interface);
        await Ip("set the default route", cancellationToken, "route", "replace", "default", "via", account.Gateway.Trim(), "dev", Interface);
        if (account.Dns is { Count: > 0 } dns && Options.ResolvConf is { } resolv)
        {
            File.WriteAllText(resolv, string.Concat(dns.Select(d => $"nameserver {d}\n")));
        }
        return cidr[..cidr.IndexOf('/')];
    }
}
