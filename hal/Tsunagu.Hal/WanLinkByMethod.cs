using Tsunagu.Protocol;

namespace Tsunagu.Hal;

/// <summary>
/// The unit's WAN link: each <see cref="UpAsync"/> is handed to the link adapter of the account's method (`dhcp`,
/// `static`, `pppoe`...), so the provisional and the main link may use different adapters on the same interface. A
/// link that was up is lost when the next one is set up. Traffic goes through the network access of the adapter
/// used last (the first one given before any). Adapters share the interface: the one set up re-addresses it, the
/// one it replaces is not torn down first; an adapter that refuses the account before touching the interface (PPPoE)
/// leaves the link that is up as it was.
/// </summary>
public sealed class WanLinkByMethod : IWanLink, INetworkAccess, IDisposable
{
    private readonly IReadOnlyDictionary<string, IWanLink> _links;
    private readonly string _name;
    private readonly Lock _gate = new();
    private IWanLink _current;
    private TaskCompletionSource _lost = NewLost();

    /// <param name="name">The link, for messages (the WAN interface).</param>
    /// <param name="links">Method name (case-insensitive) to its adapter; the first is the one used before any link is set up.</param>
    /// <exception cref="ArgumentException">No adapter was given.</exception>
    public WanLinkByMethod(string name, params (string Method, IWanLink Link)[] links)
    {
        if (links.Length == 0) { throw new ArgumentException("at least one WAN link adapter is needed", nameof(links)); }
        _name = name;
        _links = links.ToDictionary(l => l.Method, l => l.Link, StringComparer.OrdinalIgnoreCase);
        _current = links[0].Link;
    }

    /// <summary>The adapter used last.</summary>
    public IWanLink Current { get { lock (_gate) { return _current; } } }

    public bool IsUp => Current.IsUp;
    public LinkRole? Role => Current.Role;
    public string? Address => Current.Address;
    public Task LinkLost { get { lock (_gate) { return _lost.Task; } } }

    /// <exception cref="HalException">No adapter serves the account's method, or the adapter failed.</exception>
    public async Task UpAsync(LinkRole role, WanAccount account, CancellationToken cancellationToken)
    {
        var method = account.Method?.Trim() ?? "";
        if (!_links.TryGetValue(method, out var link))
        {
            throw new HalException($"{_name}: WAN method '{account.Method}' is not supported ({string.Join(", ", _links.Keys)})", isTransient: false);
        }
        IWanLink previous;
        TaskCompletionSource previousLost;
        lock (_gate) { (previous, previousLost) = (_current, _lost); }
        var wasUp = previous.IsUp;
        var succeeded = false;
        try
        {
            await link.UpAsync(role, account, cancellationToken);
            succeeded = true;
            lock (_gate)
            {
                _current = link;
                var lost = _lost = NewLost();
                _ = link.LinkLost.ContinueWith(_ => lost.TrySetResult(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            }
        }
        finally
        {
            // the link that was up is lost once it is replaced, or taken down by the attempt; a refusal that touched nothing leaves it up
            if (wasUp && (succeeded || !previous.IsUp)) { previousLost.TrySetResult(); }
        }
    }

    public Task DownAsync(CancellationToken cancellationToken) => Current.DownAsync(cancellationToken);

    public HttpMessageHandler WrapHandler(HttpMessageHandler inner) => Network.WrapHandler(inner);

    public void ConfigureSockets(SocketsHttpHandler handler) => Network.ConfigureSockets(handler);

    public void EnsureRoute() => Network.EnsureRoute();

    private INetworkAccess Network => Current as INetworkAccess ?? _links.Values.OfType<INetworkAccess>().FirstOrDefault()
        ?? throw new HalException($"{_name}: no WAN link adapter carries traffic", isTransient: false);

    public void Dispose()
    {
        foreach (var link in _links.Values.Distinct()) { (link as IDisposable)?.Dispose(); }
    }

    private static TaskCompletionSource NewLost() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}

/// <summary>The ISP refused the link's account (PAP/CHAP authentication failed): retrying with the same account will not help.</summary>
public sealed class WanRefusedException(string message) : HalException(message, isTransient: false);
