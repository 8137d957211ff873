using Tsunagu.Hal;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Supervision;

/// <summary>The servers refused this unit's identity; it gets nothing and asks again much later.</summary>
public sealed class RefusedState : IState
{
    public StateId Id => StateId.Refused;

    public async Task<Outcome> EnterAsync(SupervisorContext ctx, CancellationToken ct)
    {
        ctx.Hardware.Leds.Show(StatusIndication.Error);
        await Task.Delay(ctx.Options.RefusedRetryInterval, ctx.Time, ct);
        return Outcome.Success;
    }
}
