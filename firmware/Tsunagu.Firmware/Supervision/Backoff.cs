namespace Tsunagu.Firmware.Supervision;

/// <summary>
/// Capped exponential backoff with a floor and jitter: delay = floor + random(0, min(cap, base * 2^attempt)), and
/// never more than the cap. The floor is <c>minimum</c> (so no retry is ever immediate, however lucky the draw), or
/// a server's Retry-After when that is longer: the jitter is added to it (never before it, and spread after it, so
/// units that were all told "2 s" do not all come back in the same instant). A floor at or past the cap gives the cap.
/// </summary>
public sealed class Backoff(TimeSpan baseDelay, TimeSpan cap, Random random, TimeSpan minimum = default)
{
    public int Attempt { get; private set; }

    public TimeSpan Next(TimeSpan? floor = null)
    {
        var ceiling = Math.Min(cap.TotalMilliseconds, baseDelay.TotalMilliseconds * Math.Pow(2, Math.Min(Attempt, 30)));
        Attempt++;
        var start = floor is { } f && f > minimum ? f : minimum;
        var delay = start + TimeSpan.FromMilliseconds(random.NextDouble() * ceiling);
        return delay < cap ? delay : cap;
    }

    public void Reset() => Attempt = 0;
}
