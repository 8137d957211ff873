namespace Tsunagu.Hal.Simulated;

/// <summary>
/// A simulated unit's wall clock: reads <paramref name="time"/>; a set moves the simulation's wall clock by the
/// difference through <paramref name="step"/> (e.g. a skewed test clock) and is recorded in <see cref="Sets"/>.
/// </summary>
public sealed class SimulatedSystemClock(TimeProvider time, Action<TimeSpan> step) : ISystemClock
{
    private readonly Lock _gate = new();
    private readonly List<DateTimeOffset> _sets = [];

    /// <summary>Whether the simulated unit has a source of its own (an NTP daemon) that keeps its clock right.</summary>
    public bool IsSynchronized { get; set; }

    /// <summary>Fault injection: sets fail with this while not null.</summary>
    public HalException? Failure { get; set; }

    public IReadOnlyList<DateTimeOffset> Sets { get { lock (_gate) { return [.. _sets]; } } }

    public Task SetAsync(DateTimeOffset utc, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (Failure is { } failure) { throw failure; }
        var whole = new DateTimeOffset(utc.UtcTicks - utc.UtcTicks % TimeSpan.TicksPerSecond, TimeSpan.Zero);
        lock (_gate)
        {
            step(whole - time.GetUtcNow());
            _sets.Add(whole);
        }
        return Task.CompletedTask;
    }
}
