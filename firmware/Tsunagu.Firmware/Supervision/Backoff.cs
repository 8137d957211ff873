namespace Tsunagu.Firmware.Supervision;

/// <summary>
/// Capped exponential backoff with full jitter: delay = random(0, min(cap, base * 2^attempt)). A server's
/// Retry-After is a floor the jitter is added to (never before it, and spread after it, so units that were all
/// told "2 s" do not all come back in the same instant), limited to the cap.
/// </summary>
public sealed class Backoff(TimeSpan baseDelay, TimeSpan cap, Random random)
{
    public int Attempt { get; private set; }

    public TimeSpan Next(TimeSpan? floor = null)
    {
        var ceiling = Math.Min(cap.TotalMilliseconds, baseDelay.TotalMilliseconds * Math.Pow(2, Math.Min(Attempt, 30)));
        Attempt++;
        var delay = TimeSpan.FromMilliseconds(random.NextDouble() * ceiling);
        if (floor is { } f && f > TimeSpan.Zero)
        {
            delay += f;
        }
        return delay < cap ? delay : cap;
    }

    public void Reset() => Attempt = 0;
}
