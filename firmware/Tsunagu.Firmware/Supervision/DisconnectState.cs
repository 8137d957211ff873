namespace Tsunagu.Firmware.Supervision;

/// <summary>S300: drop the provisional link (variant 2 keeps it: it is the main link).</summary>
public sealed class DisconnectState : IState
{
    public StateId Id => StateId.Disconnect;

    public async Task<Outcome> EnterAsync(SupervisorContext ctx, CancellationToken ct)
    {
        ctx.ProvisionalSession = null;
        if (ctx.SingleLink)
        {
            return Outcome.NothingToDo;
        }
        await ctx.Hardware.Wan.DownAsync(ct);
        ctx.WanSessionEnded();
        return Outcome.Success;
    }
}
