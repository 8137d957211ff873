namespace Tsunagu.Server.Data;

/// <summary>Host-side states of a unit, as the server observes them.</summary>
public static class UnitStates
{
    public const string Registered = "Registered";
    public const string Provisioning = "Provisioning";
    public const string Connected = "Connected";
    public const string Updating = "Updating";
    public const string Configuring = "Configuring";
    public const string Ready = "Ready";
    public const string OffPattern = "OffPattern";
    public const string Decommissioned = "Decommissioned";
}

public static class PatternStatus
{
    public const string Draft = "draft";
    public const string Verified = "verified";
    public const string Retired = "retired";
}

public static class ConfigStatus
{
    public const string Provisional = "provisional";
    public const string Applied = "applied";
    public const string Final = "final";
    public const string Failed = "failed";
}

public sealed class UnitRow
{
    public string Mac { get; set; } = "";
    public string Serial { get; set; } = "";
    public string HardwareVersion { get; set; } = "";
    public string IspMethod { get; set; } = "";
    public string? IspUsername { get; set; }
    public string? IspPassword { get; set; }
    public string? IpAddress { get; set; }
    public string? Domain { get; set; }
    public string? Vpn { get; set; }
    public string? GlobalIp { get; set; }
    public string? Subscriber { get; set; }
    public string State { get; set; } = UnitStates.Registered;
    public string? Pattern { get; set; }
    public string? TargetPattern { get; set; }
    public long? AppliedConfigRevision { get; set; }
    public long? ConfigRevision { get; set; }
    public string? Inventory { get; set; }
    public string? WanAddress { get; set; }
    public long? LowWindowStart { get; set; }
    public long? LowWindowEnd { get; set; }
    public string? TimeZone { get; set; }
    /// <summary>The unit's own maintenance window as <see cref="Tsunagu.Protocol.MaintenanceWindow"/> writes it (M0024); null: none.</summary>
    public string? MaintenanceWindow { get; set; }
    public long Online { get; set; }
    public long? LastBundleVersion { get; set; }
    public string? LastBundleId { get; set; }
    public string? PresenceAt { get; set; }
    public string? LastSeen { get; set; }
    public string? LastError { get; set; }
    public string CreatedAt { get; set; } = "";
    public long Revision { get; set; } = 1;
    public string? DecommissionedAt { get; set; }
    public string? ReplacedBy { get; set; }
    public string? IspPasswordSealed { get; set; }
    public string? IspGateway { get; set; }
    /// <summary>The static account's name servers, comma-separated.</summary>
    public string? IspDns { get; set; }
    public long SettingsRevision { get; set; } = 1;
    /// <summary>The unit's WireGuard public key, listen port and the address its ready report came from (M0014).</summary>
    public string? VpnPublicKey { get; set; }
    public long? VpnListenPort { get; set; }
    public string? VpnEndpointAddress { get; set; }
    public string? VpnReportedAt { get; set; }
    /// <summary>The unit's cache statistics from its last ready report that had them (M0016); null when it never reported any.</summary>
    public long? CacheRequests { get; set; }
    public long? CacheHits { get; set; }
    public long? CacheBytesServed { get; set; }
    public long? CacheBytesSaved { get; set; }
    public string? CacheReportedAt { get; set; }

    /// <summary>Where peers reach the unit's WireGuard ("address:port", "[v6]:port"); null until both are known.</summary>
    public string? VpnEndpoint => VpnEndpointAddress is { } a && VpnListenPort is { } p
        ? (a.Contains(':', StringComparison.Ordinal) ? $"[{a}]:{p}" : $"{a}:{p}")
        : null;

    public IReadOnlyList<string>? DnsList => IspDns is null ? null : IspDns.Split(',');
}

/// <summary>The columns of a unit a version check reads (a narrow read: the full row costs twice as much on SQLite).</summary>
public sealed class UnitCheckRow
{
    public string Mac { get; set; } = "";
    public string State { get; set; } = UnitStates.Registered;
    public string? Pattern { get; set; }
    public string? TargetPattern { get; set; }
    public string? Inventory { get; set; }
    public long? LowWindowStart { get; set; }
    public long? LowWindowEnd { get; set; }
    public string? TimeZone { get; set; }
    public string? MaintenanceWindow { get; set; }
    public long? LastBundleVersion { get; set; }
    public string? LastBundleId { get; set; }
    public long SettingsRevision { get; set; } = 1;

    public const string Columns = "mac, state, pattern, target_pattern, inventory, low_window_start, low_window_end, time_zone, maintenance_window, last_bundle_version, last_bundle_id, settings_revision";
}

public sealed class PatternRow
{
    public string Id { get; set; } = "";
    public string Name { get; set; } = "";
    public string HardwareVersion { get; set; } = "";
    public string OsVersion { get; set; } = "";
    public string Applications { get; set; } = "{}";
    public string Status { get; set; } = PatternStatus.Draft;
    public string? CreatedAt { get; set; }
    public string? VerifiedAt { get; set; }
    public string? RetiredAt { get; set; }
}

public sealed class SoftwareRow
{
    public string AppId { get; set; } = "";
    public string Version { get; set; } = "";
    public string Name { get; set; } = "";
    public string? RequiredHardware { get; set; }
    public string? RequiredOs { get; set; }
}

public sealed class PatchRow
{
    public string Id { get; set; } = "";
    public string Name { get; set; } = "";
    public string Version { get; set; } = "";
    public string TargetApp { get; set; } = "";
    public long Importance { get; set; }
    public string? OsVersion { get; set; }
    public string? HardwareVersion { get; set; }
}

/// <summary>An operator account as listed: its role, and whether it can sign in (disabled accounts cannot).</summary>
public sealed record OperatorRow(string Name, string Role, bool Enabled);

public sealed class AuditRow
{
    public long Id { get; set; }
    public string At { get; set; } = "";
    public string Actor { get; set; } = "";
    public string Action { get; set; } = "";
    public string? Target { get; set; }
    public string? Detail { get; set; }
}

public sealed class UpdateProgramRow
{
    public string Id { get; set; } = "";
    public string FromPattern { get; set; } = "";
    public string ToPattern { get; set; } = "";
    public long Importance { get; set; }
    public long Priority { get; set; }
    public string ArtifactSha256 { get; set; } = "";
    public long ArtifactSize { get; set; }
}

public sealed class UnitConfigRow
{
    public string Mac { get; set; } = "";
    public long Revision { get; set; }
    public string Document { get; set; } = "";
    public string Status { get; set; } = ConfigStatus.Provisional;
    public string? Error { get; set; }
    public string Origin { get; set; } = "operator";

    /// <summary>1 for a new revision; n when it is the host's (n-1)th retry of the failed revision <see cref="RetryOf"/> (patent 0070).</summary>
    public long Attempt { get; set; } = 1;
    public long? RetryOf { get; set; }

    /// <summary>When further attempts of this revision were cancelled (the host retries it no more), and by whom.</summary>
    public string? RetryCancelledAt { get; set; }
    public string? RetryCancelledBy { get; set; }
    public string? CreatedAt { get; set; }
    public string? UpdatedAt { get; set; }
}

public sealed class ChallengeRow
{
    public string Id { get; set; } = "";
    public string Mac { get; set; } = "";
    public string Purpose { get; set; } = "";
    public string Nonce { get; set; } = "";
    public string ExpiresAt { get; set; } = "";
}

public sealed class MediumRow
{
    public string Digest { get; set; } = "";
    public string Name { get; set; } = "";
}

/// <summary>Kinds of <see cref="UnitEventRow"/>: what the host saw a unit do.</summary>
public static class UnitEventKinds
{
    public const string Check = "check";
    public const string Update = "update";
    public const string Config = "config";
    public const string Ready = "ready";
}

public sealed class UnitEventRow
{
    public long Id { get; set; }
    public string Mac { get; set; } = "";
    public string At { get; set; } = "";
    public string Kind { get; set; } = "";
    public string? Detail { get; set; }
    public long Failed { get; set; }
}

public sealed class UpdateReportRow
{
    public long Id { get; set; }
    public string Mac { get; set; } = "";
    public string UpdateId { get; set; } = "";
    public long Success { get; set; }
    public string? Error { get; set; }
    public string? Pattern { get; set; }
    public string At { get; set; } = "";
    public string? InstallId { get; set; }
}
