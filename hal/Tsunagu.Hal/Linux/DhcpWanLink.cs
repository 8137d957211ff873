using System.Globalization;
using Tsunagu.Protocol;

namespace Tsunagu.Hal.Linux;

/// <summary>
/// Method "dhcp": flushes the interface's addresses and runs `udhcpc -f -i IF -n -t N -T S -s SCRIPT` in the foreground
/// for as long as the link is up, so the lease is kept and renewed. The script configures the address, the default
/// route and resolv.conf, and records each event (`bound`, `renew`, `deconfig`, `leasefail`, `nak`) with the address in
/// <see cref="InterfaceWanOptions.DhcpStateFile"/>. The link is up at the first `bound`; it is lost when the carrier
/// goes, when the lease is lost (`deconfig` or `leasefail` after it was bound), or when udhcpc exits. No lease is a
/// transient failure.
/// </summary>
public sealed class DhcpWanLink(InterfaceWanOptions options, ICommandRunner runner, TimeProvider? time = null)
    : InterfaceWanLink(options, runner, time)
{
    private readonly Lock _clientGate = new();
    private IRunningCommand? _client;

    public override string Method => "dhcp";

    protected override async Task<string?> AddressAsync(LinkRole role, WanAccount account, CancellationToken cancellationToken)
    {
        await Ip("clear old addresses", cancellationToken, "addr", "flush", "dev", Interface);
        var o = Options;
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(o.DhcpStateFile))!);
        File.Delete(o.DhcpStateFile);
        var command = new CommandLine(o.DhcpProgram, "-f", "-i", Interface, "-n",
            "-t", o.DhcpTries.ToString(CultureInfo.InvariantCulture), "-T", o.DhcpTimeoutSeconds.ToString(CultureInfo.InvariantCulture),
            "-s", o.DhcpScript);
        // the script records the lease's events in the state file and its name servers in ResolvConf (empty: left alone)
        var client = Runner.Start(command, new CommandOptions
        {
            Environment = new Dictionary<string, string> { ["TSUNAGU_DHCP_STATE"] = o.DhcpStateFile, ["TSUNAGU_RESOLV_CONF"] = o.ResolvConf ?? "" },
        });
        lock (_clientGate) { _client = client; }
        var timeout = o.DhcpLeaseTimeout ?? TimeSpan.FromSeconds(o.DhcpTries * o.DhcpTimeoutSeconds + 15);
        var started = Time.GetTimestamp();
        while (true)
        {
            if (ReadEvent() is ["bound" or "renew", var address, ..] && WanAccountGrammar.IsIPv4(address))
            {
                return address;
            }
            if (client.Exited.IsCompleted)
            {
                var code = await client.Exited;
                throw new HalException($"{Interface}: no DHCP lease for the {role} link: `{command}` exited with {code}: {client.RecentOutput().Trim()}", isTransient: true);
            }
            if (Time.GetElapsedTime(started) >= timeout)
            {
                throw new HalException($"{Interface}: no DHCP lease for the {role} link within {timeout.TotalSeconds:0} s", isTransient: true);
            }
            await Task.WhenAny(Task.Delay(o.CarrierPollInterval / 4, Time, cancellationToken), client.Exited);
            cancellationToken.ThrowIfCancellationRequested();
        }
    }

    protected override string? LostBeyondCarrier()
    {
        IRunningCommand? client;
        lock (_clientGate) { client = _client; }
        if (client is null || client.Exited.IsCompleted) { return "the DHCP client stopped"; }
        return ReadEvent() is [var e, ..] && e is "deconfig" or "leasefail" or "nak" ? $"the DHCP lease was lost ({e})" : null;
    }

    protected override async Task ReleaseAsync()
    {
        IRunningCommand? client;
        lock (_clientGate)
        {
            client = _client;
            _client = null;
        }
        if (client is not null)
        {
            await client.StopAsync(TimeSpan.FromSeconds(3), CancellationToken.None);
            await client.DisposeAsync();
        }
    }

    private string[]? ReadEvent()
    {
        try
        {
            return File.Exists(Options.DhcpStateFile) ? File.ReadAllText(Options.DhcpStateFile).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries) : null;
        }
        catch (IOException)
        {
            return null; // being replaced by the script
        }
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
