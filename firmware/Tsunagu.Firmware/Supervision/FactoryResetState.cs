using Tsunagu.Hal;

namespace Tsunagu.Firmware.Supervision;

/// <summary>
/// Patent 0040, entered when the reset button is held: everything on `data` goes and the unit restarts; <see cref="BootState"/>
/// then finds no settings and the unit provisions itself again from `factory`. What the unit knew in memory is
/// forgotten by <see cref="BootState"/>, as after any restart.
/// </summary>
public sealed class FactoryResetState : IState
{
    public StateId Id => StateId.FactoryReset;

    public async Task<Outcome> EnterAsync(SupervisorContext ctx, CancellationToken ct)
    {
        ctx.Log("reset button held: wiping data and provisioning again");
        ctx.Hardware.Leds.Show(StatusIndication.Booting);
        await ctx.ReleaseAsync();
        if (ctx.Hardware.Wan.IsUp)
        {
            await ctx.Hardware.Wan.DownAsync(ct);
        }
        await ctx.Hardware.Data.FormatAsync(ct);
        await ctx.Hardware.Boot.RebootAsync(ct);
        return Outcome.Success;
    }
}
