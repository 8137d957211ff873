using Tsunagu.Firmware.Updates;

namespace Tsunagu.Firmware.Supervision;

/// <summary>Tunables of the supervisor; <see cref="Validate"/> runs at start-up.</summary>
public sealed record SupervisorOptions
{
    /// <summary>Period of the S600-S800 re-check; the host may shorten or lengthen it.</summary>
    public TimeSpan CheckInterval { get; init; } = TimeSpan.FromHours(24);

    /// <summary>Fraction of the interval by which each period is randomly spread (0.1 = +/-10%).</summary>
    public double CheckJitter { get; init; } = 0.1;

    /// <summary>
    /// An update of importance 4 deferred because the unit or its WAN was busy is looked at again after this (a
    /// deferred update of importance 3 or below at the opening of its window), not a whole check period later.
    /// </summary>
    public TimeSpan DeferredRecheck { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>The floor of every retry delay and the unit of its jitter (which doubles per consecutive failure up to the cap).</summary>
    public TimeSpan BackoffBase { get; init; } = TimeSpan.FromSeconds(1);
    public TimeSpan BackoffCap { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>After this many consecutive failures to bring up the main link, fall back to provisioning.</summary>
    public int MainLinkFailureLimit { get; init; } = 5;

    /// <summary>After this many consecutive refusals of the main link's account by the ISP, fall back to provisioning for fresh settings.</summary>
    public int MainLinkRefusalLimit { get; init; } = 3;

    /// <summary>How long a refused unit waits before asking again.</summary>
    public TimeSpan RefusedRetryInterval { get; init; } = TimeSpan.FromMinutes(30);

    /// <summary>Variant 2 (patent 0075): the operator is also the ISP; the provisional link stays as the main link.</summary>
    public bool SingleLink { get; init; }

    /// <summary>
    /// Validity left below which a session token is renewed before use. Validity is the lifetime the server gave
    /// (<c>expiresInSeconds</c>) measured on the unit's monotonic clock from when it asked for the token.
    /// </summary>
    public TimeSpan TokenRenewMargin { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Bounds of the updater: script timeouts and retries, restart loop limit, boot tries, health window.</summary>
    public UpdateOptions Update { get; init; } = new();

    /// <summary>
    /// Confirmed apply: a newly applied service configuration is reverted to the last confirmed one unless the host
    /// is reached within this time (the deadline is persisted and survives a restart). Zero: confirmed at once.
    /// </summary>
    public TimeSpan ConfirmTimeout { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>The push connection: reconnect backoff, keep-alive (<see cref="Net.PushOptions"/>).</summary>
    public Net.PushOptions Push { get; init; } = new();

    /// <summary>
    /// After this many unexpected errors of states in a row (<see cref="Outcome.Fault"/>) the supervisor counts as
    /// unhealthy and stops feeding the board's watchdog, which then restarts the unit.
    /// </summary>
    public int WatchdogFaultLimit { get; init; } = 10;

    /// <summary>Pid files and logs of the service daemons (tmpfs on a unit); default `data/services/run`.</summary>
    public string? ServiceRunDirectory { get; init; }

    /// <summary>Runs `clamscan` for the signature installer (a board without concurrent reload checks a database with it); null: real processes.</summary>
    public Hal.ICommandRunner? SignatureCommands { get; init; }

    public void Validate()
    {
        Update.Validate();
        Push.Validate();
        if (ConfirmTimeout < TimeSpan.Zero) { throw new ArgumentException($"ConfirmTimeout must not be negative (was {ConfirmTimeout})"); }
        if (CheckInterval <= TimeSpan.Zero) { throw new ArgumentException($"CheckInterval must be positive (was {CheckInterval})"); }
        if (DeferredRecheck <= TimeSpan.Zero) { throw new ArgumentException($"DeferredRecheck must be positive (was {DeferredRecheck})"); }
        if (CheckJitter is < 0 or >= 1) { throw new ArgumentException($"CheckJitter must be in [0, 1) (was {CheckJitter})"); }
        if (BackoffBase <= TimeSpan.Zero || BackoffCap < BackoffBase) { throw new ArgumentException($"backoff needs 0 < BackoffBase <= BackoffCap (was {BackoffBase}, {BackoffCap})"); }
        if (MainLinkRefusalLimit < 1) { throw new ArgumentException($"MainLinkRefusalLimit must be at least 1 (was {MainLinkRefusalLimit})"); }
        if (WatchdogFaultLimit < 1) { throw new ArgumentException($"WatchdogFaultLimit must be at least 1 (was {WatchdogFaultLimit})"); }
        if (MainLinkFailureLimit < 1) { throw new ArgumentException($"MainLinkFailureLimit must be at least 1 (was {MainLinkFailureLimit})"); }
    }
}
