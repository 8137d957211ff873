using System.Globalization;
using Tsunagu.Protocol;

namespace Tsunagu.Hal.Linux;

/// <summary>How <see cref="LinuxWanLink"/> brings its interface up and watches it.</summary>
public sealed record LinuxWanOptions
{
    /// <summary>The WAN interface (the board's `interfaces.wan`).</summary>
    public required string Interface { get; init; }

    /// <summary>The `ip` program (busybox applet or iproute2).</summary>
    public string IpProgram { get; init; } = "ip";

    /// <summary>The DHCP client (busybox udhcpc).</summary>
    public string DhcpProgram { get; init; } = "udhcpc";

    /// <summary>The script udhcpc runs to configure the lease (`-s`): it sets the address, the default route and resolv.conf.</summary>
    public string DhcpScript { get; init; } = "/usr/share/udhcpc/default.script";

    /// <summary>DISCOVER packets sent before giving up (`-t`).</summary>
    public int DhcpTries { get; init; } = 5;

    /// <summary>Seconds between DISCOVER packets (`-T`).</summary>
    public int DhcpTimeoutSeconds { get; init; } = 3;

    /// <summary>The network class directory: `IF/carrier` and `IF/operstate` say whether the link is alive.</summary>
    public string NetClassRoot { get; init; } = "/sys/class/net";

    /// <summary>Time between two looks at the carrier while the link is up.</summary>
    public TimeSpan CarrierPollInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Longest run of one `ip` command.</summary>
    public TimeSpan CommandTimeout { get; init; } = TimeSpan.FromSeconds(10);
}

/// <summary>
/// The WAN link on one Linux interface, with busybox tools: method "dhcp" runs `udhcpc -i IF -n -q -t N -T S -s
/// SCRIPT` (one lease; the script configures the interface), method "static" adds the account's address (a plain
/// address becomes a /32 with a host route to the gateway) and a default route via the gateway. Method "pppoe" is
/// not supported by this adapter (a PPPoE adapter driving pppd is separate; both roles may use different adapters).
/// <see cref="LinkLost"/> completes when the interface loses its carrier (`carrier` 0, `operstate` down, or the
/// interface gone), polled with the <see cref="TimeProvider"/>. Traffic uses the kernel's routing, so
/// <see cref="WrapHandler"/> passes requests through.
/// </summary>
public sealed class LinuxWanLink : IWanLink, INetworkAccess, IDisposable
{
    private readonly ICommandRunner _runner;
    private readonly LinuxWanOptions _options;
    private readonly TimeProvider _time;
    private readonly Lock _gate = new();
    private TaskCompletionSource _lost = NewLost();
    private CancellationTokenSource? _watch;

    public LinuxWanLink(LinuxWanOptions options, ICommandRunner runner, TimeProvider? time = null)
    {
        _options = options;
        _runner = runner;
        _time = time ?? TimeProvider.System;
    }

    public string Interface => _options.Interface;
    public bool IsUp { get; private set; }
    public LinkRole? Role { get; private set; }
    public string? Address { get; private set; }
    public Task LinkLost { get { lock (_gate) { return _lost.Task; } } }

    /// <summary>The carrier watch of the link that is up (for tests), or a completed task.</summary>
    public Task Watching { get; private set; } = Task.CompletedTask;

    public async Task UpAsync(LinkRole role, WanAccount account, CancellationToken cancellationToken)
    {
        var method = account.Method?.Trim().ToLowerInvariant();
        if (method == "pppoe")
        {
            throw new HalException($"{Interface}: the {role} link uses PPPoE, which this adapter (DHCP and static addressing) does not provide", isTransient: false);
        }
        if (method is not ("dhcp" or "static"))
        {
            throw new HalException($"{Interface}: WAN method '{account.Method}' is not supported (dhcp, static)", isTransient: false);
        }
        StopWatching(completeLost: true);
        lock (_gate)
        {
            IsUp = false;
            Role = null;
            Address = null;
        }
        await Ip("bring the interface up", cancellationToken, "link", "set", Interface, "up");
        string? address;
        if (method == "dhcp")
        {
            await Ip("clear old addresses", cancellationToken, "addr", "flush", "dev", Interface);
            await LeaseAsync(role, cancellationToken);
            address = await ReadAddressAsync(cancellationToken);
        }
        else
        {
            address = await StaticAsync(role, account, cancellationToken);
        }
        lock (_gate)
        {
            _lost = NewLost();
            IsUp = true;
            Role = role;
            Address = address;
            _watch = new CancellationTokenSource();
            Watching = WatchCarrierAsync(_lost, _watch.Token);
        }
    }

    private async Task LeaseAsync(LinkRole role, CancellationToken cancellationToken)
    {
        var o = _options;
        var command = new CommandLine(o.DhcpProgram, "-i", Interface, "-n", "-q",
            "-t", o.DhcpTries.ToString(CultureInfo.InvariantCulture), "-T", o.DhcpTimeoutSeconds.ToString(CultureInfo.InvariantCulture),
            "-s", o.DhcpScript);
        var timeout = TimeSpan.FromSeconds(o.DhcpTries * o.DhcpTimeoutSeconds + 15);
        var result = await _runner.RunAsync(command, new CommandOptions { Timeout = timeout }, cancellationToken);
        if (!result.Succeeded)
        {
            throw new HalException($"{Interface}: no DHCP lease for the {role} link: `{command}` exited with {result.ExitCode}: {result.Diagnostic()}", isTransient: true);
        }
    }

    private async Task<string> StaticAsync(LinkRole role, WanAccount account, CancellationToken cancellationToken)
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
        return cidr[..cidr.IndexOf('/')];
    }

    /// <summary>The first IPv4 address of the interface, from `ip -4 -o addr show dev IF`.</summary>
    private async Task<string?> ReadAddressAsync(CancellationToken cancellationToken)
    {
        var result = await Ip("read the address", cancellationToken, "-4", "-o", "addr", "show", "dev", Interface);
        return ParseAddress(result.Output);
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

    public async Task DownAsync(CancellationToken cancellationToken)
    {
        StopWatching(completeLost: false);
        lock (_gate)
        {
            IsUp = false;
            Role = null;
            Address = null;
        }
        await Ip("remove the default route", cancellationToken, tolerateFailure: true, "route", "flush", "dev", Interface);
        await Ip("remove the addresses", cancellationToken, tolerateFailure: true, "addr", "flush", "dev", Interface);
    }

    private async Task WatchCarrierAsync(TaskCompletionSource lost, CancellationToken cancellationToken)
    {
        try
        {
            while (true)
            {
                await Task.Delay(_options.CarrierPollInterval, _time, cancellationToken);
                if (!HasCarrier())
                {
                    lock (_gate)
                    {
                        if (cancellationToken.IsCancellationRequested) { return; }
                        IsUp = false;
                        Role = null;
                        Address = null;
                    }
                    lost.TrySetResult();
                    return;
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Down or a new Up
        }
    }

    /// <summary>Whether the interface exists, is not operationally down, and has a carrier.</summary>
    public bool HasCarrier()
    {
        var dir = Path.Combine(_options.NetClassRoot, Interface);
        try
        {
            if (!Directory.Exists(dir)) { return false; }
            var operstate = Path.Combine(dir, "operstate");
            if (File.Exists(operstate) && File.ReadAllText(operstate).Trim() is "down" or "lowerlayerdown" or "notpresent") { return false; }
            var carrier = Path.Combine(dir, "carrier");
            return !File.Exists(carrier) || File.ReadAllText(carrier).Trim() != "0";
        }
        catch (IOException)
        {
            return false; // reading carrier of an interface that is administratively down fails with EINVAL
        }
    }

    private void StopWatching(bool completeLost)
    {
        lock (_gate)
        {
            _watch?.Cancel();
            _watch?.Dispose();
            _watch = null;
            if (completeLost && IsUp) { _lost.TrySetResult(); }
        }
    }

    private Task<CommandResult> Ip(string what, CancellationToken cancellationToken, params string[] arguments) =>
        Ip(what, cancellationToken, tolerateFailure: false, arguments);

    private async Task<CommandResult> Ip(string what, CancellationToken cancellationToken, bool tolerateFailure, params string[] arguments)
    {
        var command = new CommandLine(_options.IpProgram, arguments);
        var result = await _runner.RunAsync(command, new CommandOptions { Timeout = _options.CommandTimeout }, cancellationToken);
        if (!result.Succeeded && !tolerateFailure)
        {
            throw new HalException($"{Interface}: cannot {what}: `{command}` exited with {result.ExitCode}: {result.Diagnostic()}", isTransient: false);
        }
        return result;
    }

    public HttpMessageHandler WrapHandler(HttpMessageHandler inner) => inner;

    public void EnsureRoute()
    {
        if (!IsUp)
        {
            throw new HalException($"no route to the server: the WAN link on {Interface} is down", isTransient: true);
        }
    }

    public void Dispose() => StopWatching(completeLost: false);

    private static TaskCompletionSource NewLost() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
