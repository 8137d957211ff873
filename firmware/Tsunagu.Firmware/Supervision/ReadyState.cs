using Tsunagu.Firmware.Net;
using Tsunagu.Firmware.Storage;
using Tsunagu.Hal;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Supervision;

/// <summary>
/// S600-S800: tell the host the unit is ready (unless a steady check just did: <see cref="SupervisorContext.ReadyReported"/>),
/// listen for pushes, wait for the next check, which starts with <see cref="StateId.SteadyCheck"/>.
/// </summary>
public sealed class ReadyState : IState
{
    public StateId Id => StateId.Ready;

    /// <summary>
    /// What the ready report says about OS slots the boot program refused at this boot (dm-verity) and slots it booted
    /// unverified (no dm-verity root hash recorded for them, or a mapping it could not set up); null when none.
    /// </summary>
    public static string? BootProblem(IReadOnlyList<BootSlot> verityFailures, IReadOnlyList<BootSlot>? verityUnchecked = null)
    {
        var problems = new List<string>();
        if (verityFailures.Count > 0)
        {
            problems.Add($"OS slot {Slots(verityFailures)} failed dm-verity verification at boot (its image differs from its root hash) and was not booted");
        }
        if (verityUnchecked is { Count: > 0 })
        {
            problems.Add($"OS slot {Slots(verityUnchecked)} was booted unverified: no dm-verity root hash was recorded for it or the boot program could not set up its mapping (see boot.log)");
        }
        return problems.Count == 0 ? null : string.Join("; ", problems);
        static string Slots(IReadOnlyList<BootSlot> slots) => string.Join(" and ", slots.Select(BootStateFile.SlotName));
    }

    public async Task<Outcome> EnterAsync(SupervisorContext ctx, CancellationToken ct)
    {
        ctx.Hardware.Leds.Show(StatusIndication.Ready);
        if (!File.Exists(ctx.RequireStore().Path))
        {
            ctx.Log("ready: the state store is gone from data; rebuilding from the factory identity");
            return Outcome.DataLost;
        }
        if (!ctx.Hardware.Wan.IsUp)
        {
            return Outcome.LinkLost;
        }
        // subscribe to pushes before the host hears "ready": a unit the host sees as Ready can be forced to check at once
        await EnsurePushAsync(ctx, ct);
        if (!ctx.ReadyReported)
        {
            try
            {
                var running = await HostAnswer.RunningAsync(ctx, ctx.RequireStore().Get(StateKeys.AppliedConfig, FirmwareJson.Default.AppliedConfig), ct);
                var bootProblem = ctx.BootProblemReported ? null : BootProblem(ctx.Hardware.Boot.VerityFailures, ctx.Hardware.Boot.VerityUnchecked);
                var ack = await ctx.RequireClient().ReportReadyAsync(ctx.HostUri, ctx.HostToken,
                    new ReadyReport(ctx.CurrentInventory(), running.AppliedRevision, running.WanAddress, running.Vpn, running.Cache, bootProblem), ct);
                ctx.ReadyReported = true;
                ctx.CheckNonce = ack.NextCheck;
                ctx.BootProblemReported = true;
                await ctx.ConfirmHostReachedAsync(ct);
                ctx.LastError = null;
            }
            catch (ServerException e)
            {
                return DefaultStates.FromServerError(ctx, "ready report", e);
            }
        }

        var spread = ctx.CheckInterval.TotalMilliseconds * ctx.Options.CheckJitter * (2 * ctx.Random.NextDouble() - 1);
        var wait = ctx.CheckInterval + TimeSpan.FromMilliseconds(spread);
        if (ctx.DeferredLookAt is { } lookAt)
        {
            // a deferred update is looked at again when its wait can end (load: shortly; a window: when it opens)
            var untilLook = lookAt - ctx.Clock.Now().Now;
            wait = untilLook < TimeSpan.Zero ? TimeSpan.Zero : untilLook < wait ? untilLook : wait;
        }
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var period = Task.Delay(wait, ctx.Time, cts.Token);
        var push = ctx.WaitForCheckRequestAsync(cts.Token);
        var lost = ctx.Hardware.Wan.LinkLost;
        var first = await Task.WhenAny(period, push, lost);
        await cts.CancelAsync();
        ct.ThrowIfCancellationRequested();
        if (first == lost || !ctx.Hardware.Wan.IsUp)
        {
            ctx.Log("ready: WAN link lost");
            return Outcome.LinkLost;
        }
        ctx.ReadyReported = false;
        return Outcome.CheckDue;
    }

    /// <summary>
    /// Starts the push listener's connection loop the first time the unit is Ready with a host session and a broker,
    /// and waits for its first attempt; afterwards the listener keeps the connection by itself (reconnects with
    /// backoff in the background), so this returns at once.
    /// </summary>
    private static async Task EnsurePushAsync(SupervisorContext ctx, CancellationToken ct)
    {
        var settings = ctx.RequireSettings();
        if (settings.PushBroker is null || ctx.HostSession is null)
        {
            return;
        }
        ctx.Push ??= new PushListener(message =>
        {
            ctx.Log($"push: {message.Type} (importance {message.Importance}, reason {message.Reason ?? PushReasons.Operator})");
            if (message.Type == PushMessage.CheckNow)
            {
                // a configuration push checks now without forcing a deferred update: each update keeps its own importance
                ctx.RequestCheck(forced: message.ForcesUpdates);
            }
        }, ctx.Log, ctx.Time, new Random(ctx.Random.Next()), ctx.Options.Push,
            ctx.RequireIdentity().ServerCertificatePins);
        var identity = ctx.RequireIdentity();
        Uri broker;
        try
        {
            broker = new Uri(settings.PushBroker);
        }
        catch (UriFormatException e)
        {
            ctx.Log($"push: broker address '{settings.PushBroker}' is not a URI ({e.Message}); periodic checks continue");
            return;
        }
        if (PushLogin.Current(ctx) is not { } login)
        {
            ctx.Log("push: the host session carries no broker password; periodic checks continue");
            return;
        }
        if (!await ctx.Push.StartAsync(broker, MacAddress.Normalize(identity.Mac), login, PushLogin.Renewal(ctx, ctx.Options.Push.CredentialRenewMargin), ct))
        {
            ctx.Log($"push: broker {settings.PushBroker} not reachable yet; periodic checks continue and the connection is retried in the background");
        }
    }
}
