using Tsunagu.Firmware.Net;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Supervision;

/// <summary>S200: fetch this unit's row of the device management table.</summary>
public sealed class FetchSettingsState : IState
{
    public StateId Id => StateId.FetchSettings;

    public async Task<Outcome> EnterAsync(SupervisorContext ctx, CancellationToken ct)
    {
        var identity = ctx.RequireIdentity();
        var session = ctx.ProvisionalSession;
        if (session is null)
        {
            return Outcome.SessionExpired;
        }
        try
        {
            var settings = await ctx.RequireClient().GetSettingsAsync(new Uri(identity.Bootstrap.InitialServerUrl), session.Token, ct);
            ctx.SessionAccepted();
            if (settings.Mac != MacAddress.Normalize(identity.Mac) || !Uri.TryCreate(settings.HostServerUrl, UriKind.Absolute, out _))
            {
                ctx.LastError = $"settings: the server sent settings for {settings.Mac} with host '{settings.HostServerUrl}'";
                ctx.Log(ctx.LastError);
                return Outcome.Retry;
            }
            ctx.FetchedSettings = settings;
            return Outcome.Success;
        }
        catch (ServerException e)
        {
            return DefaultStates.FromServerError(ctx, "fetch settings", e);
        }
    }
}
