using System.Globalization;
using Tsunagu.Protocol;

namespace Tsunagu.Hal.Linux;

/// <summary>
/// Method "dhcp": flushes the interface's addresses and runs `udhcpc -i IF -n -q -t N -T S -s SCRIPT` for one lease
/// (the script configures the address, the default route and resolv.conf), then reads the address the lease gave.
/// No lease is a transient failure.
/// </summary>
public sealed class DhcpWanLink(InterfaceWanOptions options, ICommandRunner runner, TimeProvider? time = null)
    : InterfaceWanLink(options, runner, time)
{
    public override string Method => "dhcp";

    protected override async Task<string?> AddressAsync(LinkRole role, WanAccount account, CancellationToken cancellationToken)
    {
        await Ip("clear old addresses", cancellationToken, "addr", "flush", "dev", Interface);
        var o = Options;
        var command = new CommandLine(o.DhcpProgram, "-i", Interface, "-n", "-q",
            "-t", o.DhcpTries.ToString(CultureInfo.InvariantCulture), "-T", o.DhcpTimeoutSeconds.ToString(CultureInfo.InvariantCulture),
            "-s", o.DhcpScript);
        var timeout = TimeSpan.FromSeconds(o.DhcpTries * o.DhcpTimeoutSeconds + 15);
        var result = await Runner.RunAsync(command, new CommandOptions { Timeout = timeout }, cancellationToken);
        if (!result.Succeeded)
        {
            throw new HalException($"{Interface}: no DHCP lease for the {role} link: `{command}` exited with {result.ExitCode}: {result.Diagnostic()}", isTransient: true);
        }
        var shown = await Ip("read the address", cancellationToken, "-4", "-o", "addr", "show", "dev", Interface);
        return ParseAddress(shown.Output);
    }

    /// <summary>The address of the first `inet A.B.C.D/N` in `ip -o addr` output, without its prefix length.</summary>
    public static string? ParseAddress(string ipOutput)
    {
        var tokens = ipOutput.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        var i = Array.IndexOf(tokens, "inet");
        if (i < 0 || i + 1 >= tokens.Length) { return null; }
        var cidr = tokens[i + 1];
        var slash = cidr.IndexOf('/');
        return slash < 0 ? cidr : cidr[..slash];
    }
}
