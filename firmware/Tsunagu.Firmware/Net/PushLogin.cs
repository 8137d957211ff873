using Tsunagu.Firmware.Supervision;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Net;

/// <summary>
/// Where the push listener gets its broker login: the password of the unit's host session. When the one in use is
/// about to expire or was refused, the listener asks for a newer one: the state machine's current session when it
/// carries a newer password, else a host session of its own (challenge-response, as the state machine does).
/// </summary>
public static class PushLogin
{
    /// <summary>The login of the state machine's current host session, or null when there is none or it carries none.</summary>
    public static PushCredential? Current(SupervisorContext ctx) =>
        ctx.HostSession is { } session ? PushCredential.Of(session, ctx.HostSessionRequestedAt) : null;

    /// <summary>A renewal for <see cref="PushListener.StartAsync(Uri, string, PushCredential, Func{PushCredential, CancellationToken, Task{PushCredential}}?, CancellationToken)"/>.</summary>
    public static Func<PushCredential, CancellationToken, Task<PushCredential>> Renewal(SupervisorContext ctx, TimeSpan margin) => async (inUse, ct) =>
    {
        if (Current(ctx) is { } current && current.Password != inUse.Password && (current.Left(ctx.Time) is not { } left || left > margin))
        {
            return current;
        }
        var requestedAt = ctx.Time.GetTimestamp();
        var session = await ctx.RequireClient().AuthenticateAsync(ctx.HostUri, ProofPurpose.Host, ctx.RequireIdentity(), ctx.Secret, ct);
        return PushCredential.Of(session, requestedAt)
               ?? throw new InvalidOperationException("the host session answer carries no broker password (a server without short-lived broker passwords)");
    };
}
