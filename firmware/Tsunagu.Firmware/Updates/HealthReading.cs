using Tsunagu.Firmware.Net;

namespace Tsunagu.Firmware.Updates;

/// <summary>What one probe of a newly installed pattern found.</summary>
public enum HealthVerdict
{
    Healthy,

    /// <summary>The new software failed its own part: an application not at its version, a health script, services, a request the host refused.</summary>
    SoftwareFault,

    /// <summary>The local checks passed but the host could not be reached (link down, no connection, timeout, the host's own error).</summary>
    HostUnreachable,
}

/// <summary>A probe's verdict and, unless healthy, why.</summary>
public readonly record struct HealthReading(HealthVerdict Verdict, string? Reason)
{
    public static HealthReading Healthy { get; } = new(HealthVerdict.Healthy, null);

    public static HealthReading Fault(string reason) => new(HealthVerdict.SoftwareFault, reason);

    public static HealthReading Unreachable(string reason) => new(HealthVerdict.HostUnreachable, reason);

    /// <summary>
    /// A failed request to the host: a transient error (no connection, timeout, 5xx, 429) is the host or the path; an
    /// answer refusing the request (4xx) means the host was reached and the unit's software asked wrongly.
    /// </summary>
    public static HealthReading FromHostError(ServerException e) =>
        e.IsTransient ? Unreachable($"host unreachable: {e.Message}") : Fault($"the host refused the unit's request: {e.Message}");
}
