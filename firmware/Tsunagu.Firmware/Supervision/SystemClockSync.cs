using Tsunagu.Hal;

namespace Tsunagu.Firmware.Supervision;

/// <summary>
/// Sets the unit's wall clock from the host's time (<see cref="TrustedClock"/>) when it is further off than a
/// threshold and the unit has no better source of its own (<see cref="ISystemClock.IsSynchronized"/>), so logs,
/// certificates and the daemons' schedules agree with the operator. The firmware's own checks do not depend on it:
/// expiry uses the trusted time, deadlines the monotonic clock.
/// </summary>
public static class SystemClockSync
{
    /// <summary>True when the clock was set; a failure to set it is logged (the next version check tries again).</summary>
    public static async Task<bool> SetFromHostAsync(ISystemClock clock, TrustedClock trusted, TimeSpan threshold, Action<string> log, CancellationToken ct)
    {
        if (trusted.WallClockOffset() is not { } offset || offset.Duration() <= threshold)
        {
            return false;
        }
        if (clock.IsSynchronized)
        {
            log($"clock: {offset.TotalSeconds:+0;-0} s off the host's time, but kept by the unit's own synchronized source; left alone");
            return false;
        }
        var now = trusted.Now();
        try
        {
            await clock.SetAsync(now.Now, ct);
        }
        catch (HalException e)
        {
            log($"clock: setting it to {now} failed ({e.Message}); it stays {offset.TotalSeconds:+0;-0} s off");
            return false;
        }
        log($"clock: was {offset.TotalSeconds:+0;-0} s off; set to {now}");
        return true;
    }
}
