using System.Globalization;

namespace Tsunagu.Firmware.Supervision;

/// <summary>A time and where it came from (said in the messages of checks that use it).</summary>
public readonly record struct TimeReading(DateTimeOffset Now, string Source, bool FromHost)
{
    public override string ToString() => $"{Now:O} by {Source}";
}

/// <summary>
/// The unit's idea of the true time. A unit has no time source of its own it can trust (no battery clock need
/// be right, and no NTP), so it takes the host's time from each version check answer (received over the TLS
/// session pinned to the factory trust anchor: a network attacker cannot forge or alter it) and carries it
/// forward on the monotonic clock (<see cref="TimeProvider.GetTimestamp"/>), which no change of the wall clock
/// moves. Until the first answer, and in a process that has not had one, it is the unit's own wall clock, and
/// says so.
/// </summary>
public sealed class TrustedClock(TimeProvider time)
{
    private readonly Lock _gate = new();
    private long _anchorTimestamp;
    private DateTimeOffset _anchorTime;
    private TimeSpan _uncertainty;
    private bool _set;

    /// <summary>Whether a host time has been taken since the process started.</summary>
    public bool HasHostTime { get { lock (_gate) { return _set; } } }

    /// <summary>
    /// Takes the host's time <paramref name="serverTime"/> from an answer to a request sent at monotonic time
    /// <paramref name="sentAt"/> and received at <paramref name="receivedAt"/>: the server stamped it somewhere
    /// in between, so it is placed at the midpoint, give or take half the round trip.
    /// </summary>
    public void Observe(DateTimeOffset serverTime, long sentAt, long receivedAt)
    {
        if (receivedAt < sentAt)
        {
            throw new ArgumentException($"received at {receivedAt} before sent at {sentAt}", nameof(receivedAt));
        }
        lock (_gate)
        {
            _anchorTimestamp = sentAt + (receivedAt - sentAt) / 2;
            _anchorTime = serverTime;
            _uncertainty = time.GetElapsedTime(sentAt, receivedAt) / 2;
            _set = true;
        }
    }

    /// <summary>How far the unit's wall clock is ahead of the host's time (negative: behind); null without a host time.</summary>
    public TimeSpan? WallClockOffset()
    {
        lock (_gate)
        {
            return _set ? time.GetUtcNow() - (_anchorTime + time.GetElapsedTime(_anchorTimestamp)) : null;
        }
    }

    /// <summary>The host's time carried forward on the monotonic clock; without one, the unit's own clock.</summary>
    public TimeReading Now()
    {
        lock (_gate)
        {
            if (!_set)
            {
                return new TimeReading(time.GetUtcNow(), "the unit's own clock (no host time since start)", false);
            }
            var age = time.GetElapsedTime(_anchorTimestamp);
            return new TimeReading(_anchorTime + age, string.Create(CultureInfo.InvariantCulture,
                $"the host's time (taken {age.TotalSeconds:0} s ago, +/- {_uncertainty.TotalMilliseconds:0} ms, carried on the monotonic clock)"), true);
        }
    }
}
