using Tsunagu.Firmware.Net;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Supervision;

/// <summary>
/// S300: authenticate to the host server (challenge-response). Reuses a session while more than
/// <see cref="SupervisorOptions.TokenRenewMargin"/> of the lifetime the server gave it is left on the unit's
/// monotonic clock; a token the server refused was dropped already (<see cref="DefaultStates.FromServerError"/>).
/// </summary>
public sealed class HostSessionState : IState
{
    public StateId Id => StateId.HostSession;

    public async Task<Outcome> EnterAsync(SupervisorContext ctx, CancellationToken ct)
    {
        if (ctx.HostSession is not null && ctx.HostSessionValidityLeft() > ctx.Options.TokenRenewMargin)
        {
            return Outcome.Success;
        }
        ctx.DropHostSession();
        try
        {
            // the lifetime counts from before the request: the token is never thought valid longer than the server meant
            var requestedAt = ctx.Time.GetTimestamp();
            var session = await ctx.RequireClient().AuthenticateAsync(ctx.HostUri, ProofPurpose.Host, ctx.RequireIdentity(), ctx.Secret, ct);
            ctx.SetHostSession(session, requestedAt);
            await ctx.ConfirmHostReachedAsync(ct);
            return Outcome.Success;
        }
        catch (ServerException e)
        {
            return DefaultStates.FromServerError(ctx, "host authentication", e);
        }
    }
}
