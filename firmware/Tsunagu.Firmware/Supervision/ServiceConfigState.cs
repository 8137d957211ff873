using System.Formats.Tar;
using System.IO.Compression;
using System.Text.Json;
using MQTTnet.Exceptions;
using Tsunagu.Firmware.Net;
using Tsunagu.Firmware.Services;
using Tsunagu.Firmware.Storage;
using Tsunagu.Hal;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Supervision;

/// <summary>S500: fetch this unit's service configuration, apply it, acknowledge the revision.</summary>
public sealed class ServiceConfigState : IState
{
    public StateId Id => StateId.ServiceConfig;

    public async Task<Outcome> EnterAsync(SupervisorContext ctx, CancellationToken ct)
    {
        var client = ctx.RequireClient();
        var store = ctx.RequireStore();
        var services = ctx.Services!;
        try
        {
            var response = await client.GetServiceConfigAsync(ctx.HostUri, ctx.HostToken, ct);
            var applied = store.Get(StateKeys.AppliedConfig, FirmwareJson.Default.AppliedConfig);
            if (applied?.Revision == response.Revision && services.CurrentRevision() == response.Revision)
            {
                if (!applied.Acknowledged)
                {
                    await client.AckServiceConfigAsync(ctx.HostUri, ctx.HostToken, new ServiceConfigAck(applied.Revision, applied.Error is null, applied.Error), ct);
                    store.Set(StateKeys.AppliedConfig, applied with { Acknowledged = true }, FirmwareJson.Default.AppliedConfig);
                }
                return Outcome.NothingToDo;
            }
            try
            {
                services.Apply(response.Revision, response.Configuration);
            }
            catch (InvalidServiceConfigException e)
            {
                ctx.Fail(Outcome.Failure, $"service configuration revision {response.Revision} refused", e);
                await client.AckServiceConfigAsync(ctx.HostUri, ctx.HostToken, new ServiceConfigAck(response.Revision, false, e.Message), ct);
                return Outcome.Failure;
            }
            store.Set(StateKeys.AppliedConfig, new AppliedConfig(response.Revision, false, null), FirmwareJson.Default.AppliedConfig);
            await client.AckServiceConfigAsync(ctx.HostUri, ctx.HostToken, new ServiceConfigAck(response.Revision, true, null), ct);
            store.Set(StateKeys.AppliedConfig, new AppliedConfig(response.Revision, true, null), FirmwareJson.Default.AppliedConfig);
            ctx.Log($"services: revision {response.Revision} applied");
            return Outcome.Success;
        }
        catch (ServerException e) when (e.ProblemType == ProblemTypes.NotFound)
        {
            ctx.Log("services: the host has no service configuration for this unit; keeping what runs");
            return Outcome.NothingToDo;
        }
        catch (ServerException e)
        {
            return DefaultStates.FromServerError(ctx, "service configuration", e);
        }
    }
}
