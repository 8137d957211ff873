using Tsunagu.Hal;

namespace Tsunagu.Firmware.Supervision;

/// <summary>The servers refused this unit's identity; it gets nothing and asks again much later (the interval plus up to a tenth of it, drawn).</summary>
public sealed class RefusedState : IState
{
    public StateId Id => StateId.Refused;

    public async Task<Outcome> EnterAsync(SupervisorContext ctx, CancellationToken ct)
    {
        ctx.Hardware.Leds.Show(StatusIndication.Error);
        // the interval is the floor; up to a tenth more is drawn so refused units do not ask again in step
        var wait = ctx.Options.RefusedRetryInterval * (1 + 0.1 * ctx.Random.NextDouble());
        await Task.Delay(wait, ctx.Time, ct);
        return Outcome.Success;
    }
}
