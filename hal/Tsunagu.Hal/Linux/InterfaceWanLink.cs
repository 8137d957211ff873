using Tsunagu.Protocol;

namespace Tsunagu.Hal.Linux;

/// <summary>How the WAN links on one Linux interface (<see cref="InterfaceWanLink"/>) bring it up and watch it.</summary>
public sealed record InterfaceWanOptions
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

    /// <summary>Where the DHCP link's udhcpc script records the lease events (`TSUNAGU_DHCP_STATE`); tmpfs on a unit.</summary>
    public string DhcpStateFile { get; init; } = "/run/tsunagu/dhcp.state";

    /// <summary>How long the DHCP link waits for its first lease (DISCOVER tries times their interval, plus a margin).</summary>
    public TimeSpan? DhcpLeaseTimeout { get; init; }

    /// <summary>Written with a static account's or a DHCP lease's name servers (null: leave resolv.conf alone).</summary>
    public string? ResolvConf { get; init; } = "/etc/resolv.conf";

    /// <summary>Longest run of one `ip` command.</summary>
    public TimeSpan CommandTimeout { get; init; } = TimeSpan.FromSeconds(10);
}

/// <summary>
/// A WAN link on one Linux interface, with busybox `ip`: what every addressing method shares. <see cref="UpAsync"/>
/// brings the interface up and lets the method address it; <see cref="LinkLost"/> completes when the interface loses
/// its carrier (`carrier` 0, `operstate` down, or the interface gone) or what the method holds (the DHCP lease),
/// polled with the <see cref="TimeProvider"/>.
/// Traffic uses the kernel's routing, so <see cref="WrapHandler"/> passes requests through.
/// </summary>
public abstract class InterfaceWanLink : IWanLink, INetworkAccess, IDisposable
{
    private readonly ICommandRunner _runner;
    private readonly TimeProvider _time;
    private readonly Lock _gate = new();
    private TaskCompletionSource _lost = NewLost();
    private CancellationTokenSource? _watch;

    protected InterfaceWanLink(InterfaceWanOptions options, ICommandRunner runner, TimeProvider? time)
    {
        Options = options;
        _runner = runner;
        _time = time ?? TimeProvider.System;
    }

    protected InterfaceWanOptions Options { get; }

    /// <summary>The account method this link serves (`dhcp`, `static`).</summary>
    public abstract string Method { get; }

    public string Interface => Options.Interface;
    public bool IsUp { get; private set; }
    public LinkRole? Role { get; private set; }
    public string? Address { get; private set; }
    public Task LinkLost { get { lock (_gate) { return _lost.Task; } } }

    /// <summary>The carrier watch of the link that is up (for tests), or a completed task.</summary>
    public Task Watching { get; private set; } = Task.CompletedTask;

    /// <summary>Addresses the interface (it is up, its old addresses not yet flushed); returns the address it got.</summary>
    /// <exception cref="HalException">The account is incomplete or the addressing failed.</exception>
    protected abstract Task<string?> AddressAsync(LinkRole role, WanAccount account, CancellationToken cancellationToken);

    /// <summary>Refuses an account this link cannot set up before anything is touched.</summary>
    /// <exception cref="HalException">The account is not for this method, or is incomplete.</exception>
    protected virtual void Validate(LinkRole role, WanAccount account)
    {
        if (!string.Equals(account.Method?.Trim(), Method, StringComparison.OrdinalIgnoreCase))
        {
            throw new HalException($"{Interface}: the {role} link uses method '{account.Method}'; this link does {Method}", isTransient: false);
        }
    }

    /// <summary>Why the link that is up is lost besides its carrier (the DHCP lease gone), polled with the carrier; null while it holds.</summary>
    protected virtual string? LostBeyondCarrier() => null;

    /// <summary>Stops what the method keeps running for the link (the DHCP client); called before a new Up and on Down.</summary>
    protected virtual Task ReleaseAsync() => Task.CompletedTask;

    /// <summary>Why the last link was lost (for messages), or null.</summary>
    public string? LostReason { get; private set; }

    public async Task UpAsync(LinkRole role, WanAccount account, CancellationToken cancellationToken)
    {
        Validate(role, account);
        StopWatching(completeLost: true);
        await ReleaseAsync();
        lock (_gate)
        {
            IsUp = false;
            Role = null;
            Address = null;
        }
        await Ip("bring the interface up", cancellationToken, "link", "set", Interface, "up");
        string? address;
        try
        {
            address = await AddressAsync(role, account, cancellationToken);
        }
        catch
        {
            await ReleaseAsync();
            throw;
        }
        lock (_gate)
        {
            _lost = NewLost();
            LostReason = null;
            IsUp = true;
            Role = role;
            Address = address;
            _watch = new CancellationTokenSource();
            Watching = WatchCarrierAsync(_lost, _watch.Token);
        }
    }

    public async Task DownAsync(CancellationToken cancellationToken)
    {
        StopWatching(completeLost: false);
        await ReleaseAsync();
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
                await Task.Delay(Options.CarrierPollInterval, _time, cancellationToken);
                var reason = HasCarrier() ? LostBeyondCarrier() : "the carrier is gone";
                if (reason is not null)
                {
                    lock (_gate)
                    {
                        if (cancellationToken.IsCancellationRequested) { return; }
                        LostReason = $"{Interface}: {reason}";
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
        var dir = Path.Combine(Options.NetClassRoot, Interface);
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

    protected Task<CommandResult> Ip(string what, CancellationToken cancellationToken, params string[] arguments) =>
        Ip(what, cancellationToken, tolerateFailure: false, arguments);

    private async Task<CommandResult> Ip(string what, CancellationToken cancellationToken, bool tolerateFailure, params string[] arguments)
    {
        var command = new CommandLine(Options.IpProgram, arguments);
        var result = await _runner.RunAsync(command, new CommandOptions { Timeout = Options.CommandTimeout }, cancellationToken);
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

    protected ICommandRunner Runner => _runner;
    protected TimeProvider Time => _time;

    public void Dispose()
    {
        StopWatching(completeLost: false);
        GC.SuppressFinalize(this);
    }

    private static TaskCompletionSource NewLost() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
