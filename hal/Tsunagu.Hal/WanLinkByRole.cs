namespace Tsunagu.Hal;

/// <summary>
/// Two WAN ports (the patent's variant 3): the provisional link is set up on <see cref="Provisioning"/> (e.g. a slow
/// line kept for provisioning) and the main link on <see cref="Main"/>. The port set up last carries traffic and is
/// what <see cref="IsUp"/>, <see cref="Role"/> and <see cref="Address"/> describe; once a port is up, the other is taken
/// down, so the unit has one default route. A link that was up is lost when the other port's link replaces it.
/// </summary>
public sealed class WanLinkByRole : IWanLink, INetworkAccess, IDisposable
{
    private readonly Lock _gate = new();
    private IWanLink _current;
    private TaskCompletionSource _lost = NewLost();

    public WanLinkByRole(IWanLink main, IWanLink provisioning)
    {
        Main = main;
        Provisioning = provisioning;
        _current = main;
    }

    public IWanLink Main { get; }
    public IWanLink Provisioning { get; }

    /// <summary>The port used last.</summary>
    public IWanLink Current { get { lock (_gate) { return _current; } } }

    public bool IsUp => Current.IsUp;
    public LinkRole? Role => Current.Role;
    public string? Address => Current.Address;
    public Task LinkLost { get { lock (_gate) { return _lost.Task; } } }

    /// <exception cref="HalException">The port's link could not be set up; the other port is left as it was.</exception>
    public async Task UpAsync(LinkRole role, Protocol.WanAccount account, CancellationToken cancellationToken)
    {
        var link = role == LinkRole.Provisional ? Provisioning : Main;
        var other = ReferenceEquals(link, Main) ? Provisioning : Main;
        TaskCompletionSource previousLost;
        lock (_gate) { previousLost = _lost; }
        await link.UpAsync(role, account, cancellationToken);
        lock (_gate)
        {
            _current = link;
            var lost = _lost = NewLost();
            _ = link.LinkLost.ContinueWith(_ => lost.TrySetResult(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
        previousLost.TrySetResult();
        if (other.IsUp) { await other.DownAsync(cancellationToken); }
    }

    public Task DownAsync(CancellationToken cancellationToken) => Current.DownAsync(cancellationToken);

    public HttpMessageHandler WrapHandler(HttpMessageHandler inner) => Network.WrapHandler(inner);

    public void ConfigureSockets(SocketsHttpHandler handler) => Network.ConfigureSockets(handler);

    public void EnsureRoute() => Network.EnsureRoute();

    private INetworkAccess Network => Current as INetworkAccess
        ?? throw new HalException("no WAN port carries traffic", isTransient: false);

    public void Dispose()
    {
        (Main as IDisposable)?.Dispose();
        (Provisioning as IDisposable)?.Dispose();
    }

    private static TaskCompletionSource NewLost() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
