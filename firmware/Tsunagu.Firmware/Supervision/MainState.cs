using Tsunagu.Hal;

namespace Tsunagu.Firmware.Supervision;

/// <summary>
/// S300: bring up the main link with the stored ISP account; after <see cref="SupervisorOptions.MainLinkFailureLimit"/>
/// failures, or <see cref="SupervisorOptions.MainLinkRefusalLimit"/> refusals of the account by the ISP, provision again.
/// </summary>
public sealed class MainState : IState
{
    public StateId Id => StateId.Main;

    public async Task<Outcome> EnterAsync(SupervisorContext ctx, CancellationToken ct)
    {
        ctx.Hardware.Leds.Show(StatusIndication.Connecting);
        var settings = ctx.RequireSettings();
        var wan = ctx.Hardware.Wan;
        var wanted = ctx.SingleLink && wan.Role == LinkRole.Provisional ? LinkRole.Provisional : LinkRole.Main;
        if (wan.IsUp && wan.Role == wanted)
        {
            ctx.MainLinkFailures = ctx.MainLinkRefusals = 0;
            return Outcome.Success;
        }
        try
        {
            await wan.DownAsync(ct);
            ctx.WanSessionEnded();
            await wan.UpAsync(LinkRole.Main, settings.Isp, ct);
            ctx.MainLinkFailures = ctx.MainLinkRefusals = 0;
            return Outcome.Success;
        }
        catch (WanRefusedException e)
        {
            ctx.MainLinkRefusals++;
            if (ctx.MainLinkRefusals >= ctx.Options.MainLinkRefusalLimit)
            {
                ctx.MainLinkFailures = ctx.MainLinkRefusals = 0;
                ctx.DropHostSession();
                return ctx.Fail(Outcome.IspRefused, $"the ISP refused the main link's account {ctx.Options.MainLinkRefusalLimit} times; fetching fresh settings", e);
            }
            return ctx.Fail(Outcome.Retry, $"main link refused by the ISP (refusal {ctx.MainLinkRefusals})", e);
        }
        catch (HalException e)
        {
            ctx.MainLinkFailures++;
            if (ctx.MainLinkFailures >= ctx.Options.MainLinkFailureLimit)
            {
                ctx.MainLinkFailures = 0;
                ctx.DropHostSession();
                return ctx.Fail(Outcome.LinkLost, $"main link failed {ctx.Options.MainLinkFailureLimit} times; provisioning again", e);
            }
            return ctx.Fail(Outcome.Retry, $"main link (attempt {ctx.MainLinkFailures})", e);
        }
    }
}
