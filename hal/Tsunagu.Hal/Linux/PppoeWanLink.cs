using Tsunagu.Protocol;

namespace Tsunagu.Hal.Linux;

/// <summary>
/// Method "pppoe": not supported yet (it would drive pppd on the interface). Setting it up fails at once, without
/// touching the interface, with an error that says so (not transient: retrying cannot help).
/// </summary>
public sealed class PppoeWanLink(string interfaceName) : IWanLink
{
    public bool IsUp => false;
    public LinkRole? Role => null;
    public string? Address => null;

    /// <summary>Never completes: this link is never up.</summary>
    public Task LinkLost { get; } = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously).Task;

    /// <exception cref="HalException">Always: PPPoE is not supported yet.</exception>
    public Task UpAsync(LinkRole role, WanAccount account, CancellationToken cancellationToken) =>
        throw new HalException($"{interfaceName}: the {role} link uses PPPoE, which is not supported yet (available: dhcp, static)", isTransient: false);

    public Task DownAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
