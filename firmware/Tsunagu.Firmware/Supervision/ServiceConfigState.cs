using Tsunagu.Firmware.Net;
using Tsunagu.Firmware.Services;
using Tsunagu.Firmware.Storage;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Supervision;

/// <summary>
/// S500: fetch this unit's service configuration, apply it as a transaction, acknowledge the revision. A
/// revision that failed or was reverted is not applied again; its failure is acknowledged instead.
/// </summary>
public sealed class ServiceConfigState : IState
{
    public StateId Id => StateId.ServiceConfig;

    public async Task<Outcome> EnterAsync(SupervisorContext ctx, CancellationToken ct)
    {
        var client = ctx.RequireClient();
        var store = ctx.RequireStore();
        var services = ctx.Services ?? throw new InvalidOperationException("the service applier is not created (Boot has not run)");
        // the host marks the unit Configuring at the version check before this state and at this fetch: whatever path led
        // here (a periodic check, a redial after a dead line, a new session), Ready must be reported again
        ctx.ReadyReported = false;
        try
        {
            var response = await client.GetServiceConfigAsync(ctx.HostUri, ctx.HostToken, ct);
            ctx.SessionAccepted();
            await ctx.ConfirmHostReachedAsync(ct);
            var applied = store.Get(StateKeys.AppliedConfig, FirmwareJson.Default.AppliedConfig);
            if (applied?.Revision == response.Revision && (services.CurrentRevision() == response.Revision || applied.Error is not null))
            {
                if (!applied.Acknowledged)
                {
                    await client.AckServiceConfigAsync(ctx.HostUri, ctx.HostToken, new ServiceConfigAck(applied.Revision, applied.Error is null, applied.Error), ct);
                    store.Set(StateKeys.AppliedConfig, applied with { Acknowledged = true }, FirmwareJson.Default.AppliedConfig);
                }
                return Outcome.NothingToDo;
            }
            ApplyReport report;
            try
            {
                report = await services.ApplyAsync(response.Revision, response.Configuration, ct);
            }
            catch (InvalidServiceConfigException e)
            {
                ctx.LogError($"service configuration revision {response.Revision} refused", e);
                await client.AckServiceConfigAsync(ctx.HostUri, ctx.HostToken, new ServiceConfigAck(response.Revision, false, e.Message), ct);
                return Outcome.Failure;
            }
            catch (ServiceApplyException e)
            {
                // refused by a daemon's checker, or rolled back: remembered so it is not tried again every check
                ctx.LogError("services", e);
                store.Set(StateKeys.AppliedConfig, new AppliedConfig(response.Revision, false, e.Message), FirmwareJson.Default.AppliedConfig);
                await client.AckServiceConfigAsync(ctx.HostUri, ctx.HostToken, new ServiceConfigAck(response.Revision, false, e.Message), ct);
                store.Set(StateKeys.AppliedConfig, new AppliedConfig(response.Revision, true, e.Message), FirmwareJson.Default.AppliedConfig);
                return Outcome.Failure;
            }
            store.Set(StateKeys.AppliedConfig, new AppliedConfig(response.Revision, false, null), FirmwareJson.Default.AppliedConfig);
            await client.AckServiceConfigAsync(ctx.HostUri, ctx.HostToken, new ServiceConfigAck(response.Revision, true, null), ct);
            store.Set(StateKeys.AppliedConfig, new AppliedConfig(response.Revision, true, null), FirmwareJson.Default.AppliedConfig);
            await ctx.ConfirmHostReachedAsync(ct);
            ctx.Log($"services: revision {response.Revision} applied and confirmed ({report.Elapsed.TotalMilliseconds:0} ms)");
            return Outcome.Success;
        }
        catch (ServerException e) when (e.ProblemType == ProblemTypes.NotFound)
        {
            ctx.SessionAccepted();
            ctx.Log("services: the host has no service configuration for this unit; keeping what runs");
            return Outcome.NothingToDo;
        }
        catch (ServerException e)
        {
            return DefaultStates.FromServerError(ctx, "service configuration", e);
        }
    }
}
