using Tsunagu.Firmware.Net;
using Tsunagu.Hal;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Supervision;

/// <summary>S100: bring up the provisional link and prove the unit's identity to the initial setting server.</summary>
public sealed class ProvisionalState : IState
{
    public StateId Id => StateId.Provisional;

    public async Task<Outcome> EnterAsync(SupervisorContext ctx, CancellationToken ct)
    {
        ctx.Hardware.Leds.Show(StatusIndication.Provisioning);
        var identity = ctx.RequireIdentity();
        try
        {
            if (ctx.Hardware.Wan.Role != LinkRole.Provisional)
            {
                await ctx.Hardware.Wan.DownAsync(ct);
                ctx.WanSessionEnded();
                await ctx.Hardware.Wan.UpAsync(LinkRole.Provisional, identity.Bootstrap.ProvisionalWan, ct);
            }
        }
        catch (HalException e)
        {
            return ctx.Fail(Outcome.Retry, "provisional link", e);
        }
        try
        {
            ctx.ProvisionalSession = await ctx.RequireClient().AuthenticateAsync(
                new Uri(identity.Bootstrap.InitialServerUrl), ProofPurpose.Provisional, identity, ctx.Secret, ct);
            return Outcome.Success;
        }
        catch (ServerException e)
        {
            return DefaultStates.FromServerError(ctx, "provisional authentication", e);
        }
    }
}
