namespace Tsunagu.Firmware.Updates;

/// <summary>Bounds of the updater (firmware/DESIGN.md section 5, docs/bundles.md).</summary>
public sealed record UpdateOptions
{
    /// <summary>Timeout of a script step that names none.</summary>
    public TimeSpan ScriptTimeout { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>Bytes of a script's stderr that are kept; the rest is dropped and the result marked capped.</summary>
    public int StderrCap { get; init; } = 16 * 1024;

    /// <summary>How many times scripts may answer "retry later" (exit 21) for one update before it is given up.</summary>
    public int ScriptRetryLimit { get; init; } = 3;

    /// <summary>Entries into one update that did not end in a controlled way (restarts); one more is a restart loop, which is stopped.</summary>
    public int RestartLimit { get; init; } = 3;

    /// <summary>Boots a new OS slot gets before the boot program falls back.</summary>
    public int BootTries { get; init; } = 3;

    /// <summary>How long the health check may take to pass after an install, and how often it probes.</summary>
    public TimeSpan HealthWindow { get; init; } = TimeSpan.FromMinutes(2);
    public TimeSpan HealthProbeInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How long, in all, the health check keeps probing while the new software passes its own checks but the host
    /// is unreachable; this time does not count against <see cref="HealthWindow"/>. When it is used up the update is
    /// rolled back: a unit that cannot reach its host cannot be repaired remotely, and the previous pattern could.
    /// </summary>
    public TimeSpan HostUnreachableGrace { get; init; } = TimeSpan.FromMinutes(30);

    /// <summary>The setsid(1) that puts each script in its own process group.</summary>
    public string Setsid { get; init; } = "/usr/bin/setsid";

    public void Validate()
    {
        if (ScriptTimeout <= TimeSpan.Zero) { throw new ArgumentException($"Update.ScriptTimeout must be positive (was {ScriptTimeout})"); }
        if (StderrCap < 0) { throw new ArgumentException($"Update.StderrCap must not be negative (was {StderrCap})"); }
        if (ScriptRetryLimit < 0 || RestartLimit < 1 || BootTries < 1)
        {
            throw new ArgumentException($"Update limits need ScriptRetryLimit >= 0, RestartLimit >= 1, BootTries >= 1 (were {ScriptRetryLimit}, {RestartLimit}, {BootTries})");
        }
        if (HealthWindow < TimeSpan.Zero || HealthProbeInterval <= TimeSpan.Zero || HostUnreachableGrace < TimeSpan.Zero)
        {
            throw new ArgumentException($"Update.HealthWindow and HostUnreachableGrace must not be negative and HealthProbeInterval must be positive (were {HealthWindow}, {HostUnreachableGrace}, {HealthProbeInterval})");
        }
    }
}
