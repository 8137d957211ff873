using System.Net;
using Tsunagu.Firmware.Net;
using Tsunagu.Firmware.Storage;
using Tsunagu.Firmware.Updates;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Supervision;

/// <summary>
/// S600-S800, the periodic check of a Ready unit in one request (docs/protocol.md, "Steady check"): the unit proves itself
/// over the single-use nonce of the host's last answer and says what it runs and applied; the host answers "nothing to do"
/// (<see cref="Outcome.NothingToDo"/>: it recorded what the ready report would have) or "something changed". Whenever the
/// unit has anything of its own to do or report (a forced check, an update in flight or its report unsent, a deferred
/// update, damaged applications, an install medium not yet checked, a configuration not acknowledged) or holds no nonce
/// (or one expired by the host's time), it asks nothing and gives <see cref="Outcome.FullCheckDue"/>: the full exchange runs as before.
/// </summary>
public sealed class SteadyCheckState : IState
{
    public StateId Id => StateId.SteadyCheck;

    /// <summary>
    /// Steady checks with one nonce that may end with a server error other than "busy" before the unit runs the full
    /// exchange: a host whose steady route alone fails (a fault in it, a proxy in front that does not pass it) still hears
    /// from the unit through the other routes. "Busy" (429, 503) and no answer at all are retried with the kept nonce until
    /// the nonce expires: the host is up and said when to come back, or it cannot be reached on any route, and when it
    /// is back the one request is the cheaper one for it (a whole-host outage does not turn every unit's next check into
    /// the five requests of the full exchange).
    /// </summary>
    public const int AttemptLimit = 3;

    /// <summary>Why this check needs the full exchange whatever the host says, or null when a steady check may be asked.</summary>
    private static string? OwnReason(SupervisorContext ctx, AppliedConfig? applied)
    {
        var store = ctx.RequireStore();
        return ctx.CheckNonce is null ? "no nonce from the host's last answer"
            : ctx.Clock.Now() is { FromHost: true } now && now.Now >= ctx.CheckNonce.ExpiresAt ? $"the host's nonce expired at {ctx.CheckNonce.ExpiresAt:O}"
            : ctx.Settings is null ? "no stored settings"
            : ctx.DeferredLookAt is not null ? "a deferred update is looked at again"
            : ctx.DamagedApps.Count > 0 ? "damaged applications are fetched again"
            : store.Get(StateKeys.PendingUpdate, FirmwareJson.Default.PendingUpdate) is { } pending && !IsSettled(pending) ? "an update is in flight or its report unsent"
            : InstallMediaCheck.Unchecked(ctx) ? "an install medium is not checked yet"
            : applied is { Acknowledged: false } || applied?.Error is not null ? "the applied configuration is not acknowledged or failed"
            : null;
    }

    /// <summary>
    /// A failed update whose report the host acknowledged: the record stays only to count the update's attempts
    /// (<see cref="PendingUpdate.AttemptLimit"/>), nothing is left to do or report for it.
    /// </summary>
    private static bool IsSettled(PendingUpdate pending) => pending is { Phase: PendingUpdate.Failed, Report: null };

    /// <summary>The host answered and asked to be called later: it is up, and neither route would fare better now.</summary>
    private static bool IsBusy(ServerException e) => e.Status is HttpStatusCode.TooManyRequests or HttpStatusCode.ServiceUnavailable;

    public async Task<Outcome> EnterAsync(SupervisorContext ctx, CancellationToken ct)
    {
        if (!ctx.Hardware.Wan.IsUp)
        {
            return Outcome.LinkLost;
        }
        // the check serves every request made until now (as the version check does); a forced one runs the full exchange
        if (ctx.TakeForced())
        {
            ctx.RequestCheck(forced: true);
            return Outcome.FullCheckDue;
        }
        var applied = ctx.RequireStore().Get(StateKeys.AppliedConfig, FirmwareJson.Default.AppliedConfig);
        if (OwnReason(ctx, applied) is { } reason)
        {
            ctx.Log($"check: full exchange ({reason})");
            return Outcome.FullCheckDue;
        }
        // single use: given up once the host answered (it took the nonce, or refused it); kept while no answer came
        // (no answer, 429, 503): the host then either never saw the request or refuses the nonce at the retry
        var nonce = ctx.CheckNonce!;
        var identity = ctx.RequireIdentity();
        var running = await HostAnswer.RunningAsync(ctx, applied, ct);
        var request = new SteadyCheckRequest(identity.Mac, nonce.Id,
            UnitCredentials.ComputeProof(ctx.Secret, ProofPurpose.SteadyCheck, identity.Mac, nonce.Id, nonce.Nonce),
            ctx.CurrentInventory(), ctx.RequireSettings().SettingsRevision,
            running.AppliedRevision, running.WanAddress, running.Vpn, running.Cache);
        SteadyCheckResponse response;
        try
        {
            var sentAt = ctx.Time.GetTimestamp();
            response = await ctx.RequireClient().SteadyCheckAsync(ctx.HostUri, request, ct);
            ctx.Clock.Observe(response.ServerTime, sentAt, ctx.Time.GetTimestamp());
        }
        catch (ServerException e) when (!ctx.Hardware.Wan.IsUp)
        {
            return ctx.Fail(Outcome.LinkLost, "steady check", e);
        }
        catch (ServerException e) when (e.IsTransient)
        {
            // busy, no answer, or a server error fewer than AttemptLimit times: the same one request again after the
            // backoff, not the five of the full exchange
            var serverError = !IsBusy(e) && e.Status is not null;
            if (!serverError || ++ctx.SteadyCheckFailures < AttemptLimit)
            {
                return ctx.Fail(Outcome.Retry, "steady check", e);
            }
            ctx.LogError("steady check", e);
            ctx.CheckNonce = null;
            ctx.Log($"check: full exchange (the host answered the steady check with a server error {AttemptLimit} times)");
            return Outcome.FullCheckDue;
        }
        catch (ServerException e)
        {
            // refused, unknown nonce, an older host without the route: the full exchange says what follows
            ctx.CheckNonce = null;
            ctx.Log($"check: full exchange (the host did not take the steady check: {e.Message})");
            return Outcome.FullCheckDue;
        }
        ctx.CheckNonce = null;
        await HostAnswer.CorrectClockAsync(ctx, "steady check", ct);
        HostAnswer.AdoptPowerOnSpread(ctx, response.PowerOnSpreadSeconds, "steady check");
        HostAnswer.AdoptCheckInterval(ctx, response.CheckIntervalSeconds);
        await ctx.ConfirmHostReachedAsync(ct);
        if (!response.Steady)
        {
            ctx.Log($"check: full exchange ({response.Reason ?? "the host has something to tell"})");
            return Outcome.FullCheckDue;
        }
        ctx.CheckNonce = response.Next;
        ctx.ReadyReported = true;
        ctx.LastError = null;
        return Outcome.NothingToDo;
    }
}
