using Tsunagu.Firmware.Net;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Supervision;

/// <summary>S300: authenticate to the host server (challenge-response); reuses a session that is still valid.</summary>
public sealed class HostSessionState : IState
{
    public StateId Id => StateId.HostSession;

    public async Task<Outcome> EnterAsync(SupervisorContext ctx, CancellationToken ct)
    {
        if (ctx.HostSession is { } s && s.ExpiresAt - ctx.Options.TokenRenewMargin > ctx.Time.GetUtcNow())
        {
            return Outcome.Success;
        }
        try
        {
            ctx.HostSession = await ctx.RequireClient().AuthenticateAsync(ctx.HostUri, ProofPurpose.Host, ctx.RequireIdentity(), ctx.Secret, ct);
            await ctx.ConfirmHostReachedAsync(ct);
            return Outcome.Success;
        }
        catch (ServerException e)
        {
            ctx.HostSession = null;
            var outcome = DefaultStates.FromServerError(ctx, "host authentication", e);
            return outcome == Outcome.SessionExpired ? Outcome.Retry : outcome;
        }
    }
}
