using Tsunagu.Protocol;

namespace Tsunagu.Hal.Simulated;

/// <summary>A WAN link with fault injection: refuse the next N set-ups, or drop the link that is up.</summary>
public sealed class SimulatedWanLink : IWanLink, INetworkAccess
{
    private readonly Lock _gate = new();
    private TaskCompletionSource _lost = NewLost();
    private int _failNextUps;

    public bool IsUp { get; private set; }
    public LinkRole? Role { get; private set; }
    public string? Address { get; private set; }
    public Task LinkLost { get { lock (_gate) { return _lost.Task; } } }

    /// <summary>Every set-up ever attempted, with its role and account method, for tests.</summary>
    public List<(LinkRole Role, string Method, bool Succeeded)> Attempts { get; } = [];

    /// <summary>When true, no set-up succeeds for the given role (the line or the ISP is down).</summary>
    public bool ProvisionalUnavailable { get; set; }
    public bool MainUnavailable { get; set; }

    /// <summary>The ISP refuses the accounts for which this is true (<see cref="WanRefusedException"/>), e.g. a wrong password.</summary>
    public Func<WanAccount, bool>? IspRefuses { get; set; }

    public void FailNextUps(int count) { lock (_gate) { _failNextUps = count; } }

    public Task UpAsync(LinkRole role, WanAccount account, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            var refuse = _failNextUps > 0 || (role == LinkRole.Provisional ? ProvisionalUnavailable : MainUnavailable);
            if (_failNextUps > 0) { _failNextUps--; }
            if (string.IsNullOrEmpty(account.Method)) { refuse = true; }
            Attempts.Add((role, account.Method, !refuse));
            if (!refuse && IspRefuses?.Invoke(account) == true)
            {
                Attempts[^1] = (role, account.Method, false);
                throw new WanRefusedException($"simulated {role} link ({account.Method}): the ISP refused the account");
            }
            if (refuse)
            {
                throw new HalException($"simulated {role} link ({account.Method}) did not come up", isTransient: true);
            }
            if (IsUp) { _lost.TrySetResult(); }
            _lost = NewLost();
            IsUp = true;
            Role = role;
            Address = role == LinkRole.Provisional ? "198.51.100.2" : account.Address ?? "203.0.113.2";
        }
        return Task.CompletedTask;
    }

    public Task DownAsync(CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            IsUp = false;
            Role = null;
            Address = null;
        }
        return Task.CompletedTask;
    }

    /// <summary>Drops the link as if the line went dead.</summary>
    public void Drop()
    {
        lock (_gate)
        {
            if (!IsUp) { return; }
            IsUp = false;
            Role = null;
            Address = null;
            _lost.TrySetResult();
        }
    }

    public HttpMessageHandler WrapHandler(HttpMessageHandler inner) => new RouteGate(this) { InnerHandler = inner };

    public void EnsureRoute()
    {
        if (!IsUp)
        {
            throw new HalException("no route to the server: the WAN link is down", isTransient: true);
        }
    }

    private static TaskCompletionSource NewLost() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    private sealed class RouteGate(SimulatedWanLink link) : DelegatingHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            if (!link.IsUp)
            {
                throw new HttpRequestException($"no route to {request.RequestUri?.Authority}: the WAN link is down");
            }
            return base.SendAsync(request, cancellationToken);
        }
    }
}
