namespace Tsunagu.Hal;

/// <summary>
/// The unit's wall clock (the kernel's CLOCK_REALTIME, and the RTC when the board has one), which the firmware sets
/// from a trusted time when the unit has no better source. Reading it is <see cref="TimeProvider.GetUtcNow"/>.
/// </summary>
public interface ISystemClock
{
    /// <summary>Whether the clock is kept right by a source of the board's own (an NTP daemon that has synchronized it).</summary>
    bool IsSynchronized { get; }

    /// <summary>Sets the wall clock to <paramref name="utc"/> (to the second); the monotonic clock does not move.</summary>
    /// <exception cref="HalException">The clock could not be set.</exception>
    Task SetAsync(DateTimeOffset utc, CancellationToken cancellationToken);
}
