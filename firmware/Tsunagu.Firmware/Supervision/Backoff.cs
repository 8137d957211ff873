namespace Tsunagu.Firmware.Supervision;

/// <summary>Capped exponential backoff with full jitter: delay = random(0, min(cap, base * 2^attempt)).</summary>
public sealed class Backoff(TimeSpan baseDelay, TimeSpan cap, Random random)
{
    public int Attempt { get; private set; }

    public TimeSpan Next(TimeSpan? floor = null)
    {
        var ceiling = Math.Min(cap.TotalMilliseconds, baseDelay.TotalMilliseconds * Math.Pow(2, Math.Min(Attempt, 30)));
        Attempt++;
        var delay = TimeSpan.FromMilliseconds(random.NextDouble() * ceiling);
        return floor is { } f && f > delay ? (f < cap ? f : cap) : delay;
    }

    public void Reset() => Attempt = 0;
}
