using System.Text.Json;
using System.Text.Json.Serialization;
using Tsunagu.Protocol.Bundles;

namespace Tsunagu.Protocol;

// ---- Factory identity (the `factory` partition) -------------------------------------------------------

/// <summary>
/// How a WAN link is brought up: "pppoe" (<see cref="Username"/>, <see cref="Password"/>), "dhcp", or "static"
/// (<see cref="Address"/> with an optional prefix length, <see cref="Gateway"/>, <see cref="Dns"/>). Its grammar is
/// <see cref="WanAccountGrammar"/>.
/// </summary>
public sealed record WanAccount(string Method, string? Username = null, string? Password = null,
    string? Address = null, string? Gateway = null, IReadOnlyList<string>? Dns = null);

/// <summary>
/// Everything a unit needs for its first connection (patent 0030-0032). <see cref="SingleLink"/>: the operator is also
/// this unit's ISP (patent 0075, variant 2), so the provisional connection is kept and used as the main one (no hang-up,
/// no second dial); absent (false) in identities burned before it existed.
/// </summary>
public sealed record BootstrapInfo(string InitialServerUrl, WanAccount ProvisionalWan, bool SingleLink = false);

/// <summary>The per-unit contents of the read-only factory partition.</summary>
public sealed record FactoryIdentity(
    int FormatVersion,
    string Mac,
    string Serial,
    string HardwareVersion,
    string Board,
    BootstrapInfo Bootstrap,
    IReadOnlyList<string> ServerCertificatePins,
    IReadOnlyList<string> ReleasePublicKeys,
    string UnitSecret)
{
    public const int CurrentFormat = 1;
}

// ---- Authentication (S100, S300) -------------------------------------------------------------------------

public sealed record ChallengeRequest(string Mac);
public sealed record ChallengeResponse(string ChallengeId, string Nonce, DateTimeOffset ExpiresAt);
public sealed record SessionRequest(string Mac, string ChallengeId, string Proof);
/// <summary>
/// A session token. <see cref="ExpiresInSeconds"/> is its lifetime from the moment the server issued it: a unit
/// measures it on its own monotonic clock and never compares <see cref="ExpiresAt"/> (the server's clock) with its
/// own wall clock. Null from a server that does not send it: the unit then uses the token for one check only.
/// A host session also carries the unit's push broker login: <see cref="PushUsername"/> and the short-lived
/// <see cref="PushPassword"/> (<see cref="BrokerPassword"/>), valid <see cref="PushPasswordExpiresInSeconds"/> from issue.
/// </summary>
public sealed record SessionResponse(string Token, string Scope, DateTimeOffset ExpiresAt, string? PushUsername = null,
    long? ExpiresInSeconds = null, string? PushPassword = null, long? PushPasswordExpiresInSeconds = null);

// ---- Settings (S200): the device management table row of patent fig. 6 ----------------------------------

/// <summary>
/// A unit's settings. <see cref="SettingsRevision"/> grows each time the operator changes the row (its WAN account
/// above all): a unit whose host check reports a newer revision than the one it stored fetches them again and redials.
/// </summary>
public sealed record UnitSettings(
    string Mac,
    WanAccount Isp,
    string? IpAddress,
    string? Domain,
    string? Vpn,
    string? GlobalIp,
    string HostServerUrl,
    string? PushBroker,
    int SettingsRevision = 0);

// ---- Version check and update (S400) ---------------------------------------------------------------------

/// <summary>
/// What is installed on a unit: hardware and OS versions, each application's current version, and the last
/// bundle it committed (its anti-rollback counter; null before the first bundle).
/// </summary>
public sealed record Inventory(string HardwareVersion, string OsVersion, IReadOnlyDictionary<string, string> Applications,
    BundleCounter? LastBundle = null);

/// <summary>CPU and WAN utilisation as fractions 0..1, from the HAL.</summary>
public sealed record UnitLoad(double Cpu, double Wan);

public sealed record VersionCheckRequest(Inventory Inventory, UnitLoad Load, bool Forced, string? PushNonce);

/// <summary>
/// When a unit may apply an update of importance below 5 (patent 0048, 0064); an operator setting. The window hours
/// are local hours in <see cref="TimeZone"/> (an IANA zone id, e.g. "Asia/Tokyo"): the host sends each unit the zone of
/// its table row, so host and unit judge the window by the same clock; null: the unit's own local zone.
/// <see cref="HostLoadThreshold"/>: the host's own load (a fraction, patent 0064) at or above which the host defers
/// importance 4 and 3 too; only the host knows its load, so the unit's own decision leaves it out.
/// <see cref="UnitWindow"/>: the unit's own recurring maintenance window (<see cref="MaintenanceWindow"/> grammar, its
/// table row; null: none), on the same clock. With one, every importance below 5 waits for it: 4 for it and the load,
/// 3 and below for it instead of the policy's hours (<see cref="ImportancePolicy.Decide"/>). The fleet's policy has none.
/// </summary>
public sealed record UpdatePolicy(double CpuThreshold, double WanThreshold, int LowWindowStartHour, int LowWindowEndHour,
    int MaintenanceStartHour = 3, int MaintenanceEndHour = 4, string? TimeZone = null, double HostLoadThreshold = 0.8, string? UnitWindow = null)
{
    public static UpdatePolicy Default { get; } = new(0.5, 0.5, 2, 5, 3, 4);
}

public sealed record UpdateOffer(
    string UpdateId,
    string FromPattern,
    string ToPattern,
    int Importance,
    string ArtifactUrl,
    string Sha256,
    long Size);

/// <summary>
/// The host's answer to a version check. <see cref="LastInstalledBundle"/>: the highest bundle counter the host has
/// seen this unit report (in any inventory); the unit takes the higher of it and its own, so the anti-rollback
/// counter survives a wiped data partition. Null when the host has none (or does not track it).
/// <see cref="PowerOnSpreadSeconds"/>: the unit keeps it and, at each power-on with stored settings, waits a random
/// 0..that many seconds before it connects, so a fleet that loses power together does not come back in one instant.
/// <see cref="DeferredImportance"/>: with <see cref="Deferred"/>, the importance of the update the host held back, so the
/// unit knows when to ask again (importance 4: shortly; 3 and below: when the window opens).
/// </summary>
public sealed record VersionCheckResponse(
    string? CurrentPattern,
    string? TargetPattern,
    UpdateOffer? Update,
    UpdatePolicy Policy,
    int CheckIntervalSeconds,
    string? Deferred = null,
    BundleCounter? LastInstalledBundle = null,
    int? PowerOnSpreadSeconds = null,
    DateTimeOffset? ServerTime = null,
    int? SettingsRevision = null,
    int? DeferredImportance = null);

/// <summary>
/// The outcome of one install attempt. <see cref="InstallId"/> names the attempt (<see cref="InstallIds"/>): the unit
/// draws it when the attempt starts and keeps it in its update journal, so a report it sends again (it never saw the
/// answer) carries the same id and the host records it once, while a new attempt of the same update (after a failure,
/// or after the unit's `data` was wiped) carries a new one. Null from units older than the field.
/// </summary>
public sealed record UpdateReport(string UpdateId, bool Success, string? Error, Inventory Inventory, string? InstallId = null);
public sealed record UpdateReportAck(string UpdateId, string? Pattern);

// The update artifact itself is a signed bundle: Bundles/BundleManifest.cs and docs/bundles.md.

// ---- Service configuration (S500) ------------------------------------------------------------------------

public sealed record PortForward(string Protocol, int ExternalPort, string InternalAddress, int InternalPort);
public sealed record FirewallConfig(string DefaultInbound, bool Masquerade, IReadOnlyList<PortForward> PortForwards);
public sealed record StaticLease(string Mac, string Address, string? Hostname);
public sealed record DhcpConfig(string LanAddress, int PrefixLength, string RangeStart, string RangeEnd, string LeaseTime,
    IReadOnlyList<StaticLease> StaticLeases);
public sealed record DnsConfig(string LocalDomain, IReadOnlyList<string> Upstreams);
/// <summary>Domains refused by the unit's DNS; <see cref="BlockedAddresses"/> (optional, addresses or CIDR prefixes) are
/// destinations the firewall refuses to forward to. <see cref="Categories"/> (optional): the operator's category lists
/// (<see cref="FilterCategories"/>) whose domains are refused too; the lists reach the unit as a signed update program.</summary>
public sealed record ContentFilterConfig(bool Enabled, IReadOnlyList<string> BlockedDomains, IReadOnlyList<string>? BlockedAddresses = null,
    IReadOnlyList<string>? Categories = null);
public sealed record VpnPeer(string Name, string PublicKey, string AllowedIps, string? Endpoint);
public sealed record VpnConfig(bool Enabled, int ListenPort, string? Address, IReadOnlyList<VpnPeer> Peers);
/// <summary>
/// The transparent HTTP cache (boards with a cache disk only). <see cref="MaxObjectMegabytes"/>: the largest object kept
/// (a video, an update); null: <see cref="ServiceConfigValidator.DefaultMaxObjectMegabytes"/>, never more than the cache.
/// </summary>
public sealed record CacheConfig(bool Enabled, int SizeMegabytes, int? MaxObjectMegabytes = null);

/// <summary>
/// Virus checking of the LAN's HTTP downloads (ClamAV through squid's ICAP): runs where the contract enables it, the
/// cache runs and the board can run it (its `board.json` has `virusScan`). Null: off.
/// </summary>
public sealed record VirusScanConfig(bool Enabled);

public sealed record ServiceConfiguration(
    FirewallConfig Firewall,
    DhcpConfig Dhcp,
    DnsConfig Dns,
    ContentFilterConfig ContentFilter,
    VpnConfig Vpn,
    CacheConfig Cache,
    VirusScanConfig? VirusScan = null);

public sealed record ServiceConfigResponse(int Revision, ServiceConfiguration Configuration);
public sealed record ServiceConfigAck(int Revision, bool Success, string? Error);

// ---- Ready (S400 "tell the host it is ready", S600) ------------------------------------------------------

/// <summary>
/// A unit's ready report. <see cref="Vpn"/>: its WireGuard public key and listen port (<see cref="UnitVpnReport"/>); null
/// from units older than the field.
/// </summary>
/// <summary>
/// The unit is Ready. <see cref="BootProblem"/>: what went wrong at this boot before the supervisor started (an OS slot
/// refused by dm-verity), sent once per boot; at most <see cref="MaxBootProblemLength"/> characters, no control characters.
/// </summary>
public sealed record ReadyReport(Inventory Inventory, int? ConfigRevision, string? WanAddress, UnitVpnReport? Vpn = null, UnitCacheReport? Cache = null,
    string? BootProblem = null)
{
    public const int MaxBootProblemLength = 500;
}

/// <summary>
/// The unit's cache statistics since its cache daemon started (squid's counters): requests served to the LAN, those
/// served from the cache, bytes sent to the LAN and bytes of them sent from the cache (the WAN traffic it saved). Null
/// in a ready report from a unit that runs no cache (no cache disk, or the cache off) or from an older unit. Every
/// number is required: a report that leaves one out is refused, not read as zero.
/// </summary>
public sealed record UnitCacheReport(
    [property: JsonRequired] long Requests,
    [property: JsonRequired] long Hits,
    [property: JsonRequired] long BytesServed,
    [property: JsonRequired] long BytesSaved)
{
    /// <summary>Bounds a report must keep: no unit serves more in one run of its cache.</summary>
    public const long MaxRequests = 1_000_000_000_000;
    public const long MaxBytes = 1L << 60;

    /// <summary>What is wrong with the numbers, or null: each within its bound, hits not above requests, bytes saved not above bytes served.</summary>
    public string? Problem() => this switch
    {
        { Requests: < 0 or > MaxRequests } => $"cache.requests: {Requests} is outside 0..{MaxRequests}",
        { Hits: < 0 } or { Hits: > MaxRequests } => $"cache.hits: {Hits} is outside 0..{MaxRequests}",
        _ when Hits > Requests => $"cache.hits: {Hits} is more than cache.requests {Requests}",
        { BytesServed: < 0 or > MaxBytes } => $"cache.bytesServed: {BytesServed} is outside 0..{MaxBytes}",
        { BytesSaved: < 0 or > MaxBytes } => $"cache.bytesSaved: {BytesSaved} is outside 0..{MaxBytes}",
        _ when BytesSaved > BytesServed => $"cache.bytesSaved: {BytesSaved} is more than cache.bytesServed {BytesServed}",
        _ => null,
    };
}

/// <summary>
/// The unit's WireGuard public key (<see cref="WireGuardKeys"/>: derived from its factory secret, so the same after a
/// wipe of `data`) and the UDP port it listens on (null while its VPN is off). Peers reach it at the WAN address the
/// host sees and this port.
/// </summary>
public sealed record UnitVpnReport(string PublicKey, int? ListenPort);

/// <summary>
/// The host's answer to a ready report. <see cref="NextCheck"/>: the single-use nonce the unit's next periodic check may
/// prove itself with (<see cref="SteadyCheckRequest"/>); null from a host older than the steady check.
/// </summary>
public sealed record ReadyAck(string? Pattern, int NextCheckSeconds, CheckNonce? NextCheck = null);

/// <summary>
/// A single-use nonce for the unit's next steady check, handed out in the host's answer to a ready report or a steady
/// check: <see cref="Id"/> names it, <see cref="Nonce"/> is what the proof is computed over, <see cref="ExpiresAt"/> (host
/// time) is when the host forgets it. The host takes it at the first steady check that proves itself with it.
/// </summary>
public sealed record CheckNonce(string Id, string Nonce, DateTimeOffset ExpiresAt);

/// <summary>
/// A Ready unit's periodic check in one request (docs/protocol.md, "Steady check"): its MAC, the id of the nonce the host
/// handed out last and the proof over it (<see cref="UnitCredentials.ComputeProof"/> with <see cref="ProofPurpose.SteadyCheck"/>),
/// what it runs (<see cref="Inventory"/>), the settings revision it stored, the configuration revision it applied (null:
/// none), and what its ready report would say besides (WAN address, VPN, cache statistics).
/// </summary>
public sealed record SteadyCheckRequest(string Mac, string NonceId, string Proof, Inventory Inventory, int SettingsRevision, int? ConfigRevision,
    string? WanAddress = null, UnitVpnReport? Vpn = null, UnitCacheReport? Cache = null);

/// <summary>
/// The host's answer to a steady check. <see cref="Steady"/> true: nothing to do, the host recorded what a ready report
/// records, the next check is in <see cref="CheckIntervalSeconds"/> and may prove itself with <see cref="Next"/>. False:
/// something changed (<see cref="Reason"/>); the unit runs the full exchange (session, version check, configuration, ready).
/// Either way <see cref="ServerTime"/> sets a clock too far off the host's and <see cref="PowerOnSpreadSeconds"/> is the
/// power-on spread the version check's answer carries (a steady unit runs no version check).
/// </summary>
public sealed record SteadyCheckResponse(bool Steady, int CheckIntervalSeconds, DateTimeOffset ServerTime, string? Reason = null, CheckNonce? Next = null,
    int? PowerOnSpreadSeconds = null);

// ---- Push (S700 forced check, patent 0053/0071) ----------------------------------------------------------

/// <summary>
/// A push on a unit's command topic: "check now", with the importance the sender gave it and why it was sent
/// (<see cref="PushReasons"/>). Only an operator's check (reason <see cref="PushReasons.Operator"/>, or none from an older
/// server) forces the unit's pending update; a configuration push wakes the unit to fetch its configuration and leaves
/// each update to its own importance.
/// </summary>
public sealed record PushMessage(string Type, int Importance, string Nonce, DateTimeOffset IssuedAt, string? Reason = null)
{
    public const string CheckNow = "check";

    /// <summary>True when this push forces pending updates (an operator's check); false for a configuration push.</summary>
    public bool ForcesUpdates => Reason != PushReasons.Config;
}

/// <summary>Why a push was sent.</summary>
public static class PushReasons
{
    /// <summary>The operator's forced check (patent 0053, 0071): pending updates run at once, whatever their importance.</summary>
    public const string Operator = "operator";

    /// <summary>A new service configuration revision (a subscriber's change, the operator's, a retry): fetch it now; updates keep their own importance.</summary>
    public const string Config = "config";

    public static bool IsReason(string? reason) => reason is Operator or Config;
}

/// <summary>Retained presence payloads on a unit's status topic; "offline" is the unit's last will.</summary>
public static class Presence
{
    public const string Online = "online";
    public const string Offline = "offline";
}

/// <summary>A unit's acknowledgement of a push, published (not retained) on its status topic: <c>{"ack":"&lt;nonce&gt;"}</c>.</summary>
public sealed record PushAck(string Ack);

public static class PushTopics
{
    public const string Root = "tsunagu/v1/units";
    public static string Commands(string mac) => $"{Root}/{MacAddress.Compact(mac)}/cmd";
    public static string Status(string mac) => $"{Root}/{MacAddress.Compact(mac)}/status";
}

// ---- Local install media (patent 0037) ------------------------------------------------------------------

public sealed record MediaCheckRequest(string Digest);
public sealed record MediaCheckResponse(string Digest, bool Genuine, string? Name);
public sealed record MediaRegistration(string Digest, string Name);

// ---- Operator API ----------------------------------------------------------------------------------------

public sealed record RegisterUnitRequest(
    string Mac,
    string Serial,
    string HardwareVersion,
    WanAccount Isp,
    string? IpAddress,
    string? Domain,
    string? Vpn,
    string? GlobalIp,
    string? TargetPattern,
    string? Subscriber);

public sealed record UnitView(
    string Mac,
    string Serial,
    string HardwareVersion,
    string State,
    string? Pattern,
    string? TargetPattern,
    int? ConfigRevision,
    int? AppliedConfigRevision,
    DateTimeOffset? LastSeen,
    string? LastError,
    bool Online = false,
    IReadOnlyDictionary<string, string>? Applications = null,
    string? Subscriber = null,
    UnitVpnView? Vpn = null);

/// <summary>
/// What a unit last reported of its VPN: its WireGuard public key, its listen port (null while its VPN is off), and the
/// address the host saw the report come from (the endpoint peers use with the port), with when it was reported.
/// </summary>
public sealed record UnitVpnView(string PublicKey, int? ListenPort, string? EndpointAddress, DateTimeOffset? ReportedAt);

/// <summary>Selects units for a forced check: an explicit list, a pattern, an application (and version); filters combine.</summary>
public sealed record ForceCheckRequest(IReadOnlyList<string>? Macs, string? Pattern, int Importance = 5, string? Application = null, string? Version = null);

/// <summary>One row's outcome of a bulk registration.</summary>
public sealed record BulkRowResult(int Line, string? Mac, string? Error);
public sealed record BulkRegisterResponse(int Registered, IReadOnlyList<BulkRowResult> Rows);
/// <summary>
/// The answer to a forced check: the selected units (<c>notified</c>: a push was sent or is retried), the check's id
/// for <c>GET /api/v1/units/check/{id}</c>, and each unit's delivery as it stood when the answer was made.
/// </summary>
public sealed record ForceCheckResponse(IReadOnlyList<string> Notified, string? CheckId = null, IReadOnlyList<PushDelivery>? Units = null);

/// <summary>One unit's part of a forced check: <c>delivered</c> (acknowledged), <c>pending</c> (sent, not yet acknowledged) or <c>offline</c>.</summary>
public sealed record PushDelivery(string Mac, string Status, int Attempts, DateTimeOffset? SentAt, DateTimeOffset? DeliveredAt);

/// <summary>A forced check's delivery, counted and per unit.</summary>
public sealed record ForceCheckStatus(string CheckId, DateTimeOffset CreatedAt, int Importance, string Actor,
    int Delivered, int Pending, int Offline, IReadOnlyList<PushDelivery> Units);

// ---- JSON ------------------------------------------------------------------------------------------------

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, WriteIndented = false,
    DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(FactoryIdentity))]
[JsonSerializable(typeof(ChallengeRequest))]
[JsonSerializable(typeof(ChallengeResponse))]
[JsonSerializable(typeof(SessionRequest))]
[JsonSerializable(typeof(SessionResponse))]
[JsonSerializable(typeof(UnitSettings))]
[JsonSerializable(typeof(VersionCheckRequest))]
[JsonSerializable(typeof(VersionCheckResponse))]
[JsonSerializable(typeof(UpdateReport))]
[JsonSerializable(typeof(UpdateReportAck))]
[JsonSerializable(typeof(ServiceConfiguration))]
[JsonSerializable(typeof(ServiceConfigResponse))]
[JsonSerializable(typeof(ServiceConfigAck))]
[JsonSerializable(typeof(ReadyReport))]
[JsonSerializable(typeof(UnitVpnReport))]
[JsonSerializable(typeof(UnitCacheReport))]
[JsonSerializable(typeof(ReadyAck))]
[JsonSerializable(typeof(SteadyCheckRequest))]
[JsonSerializable(typeof(SteadyCheckResponse))]
[JsonSerializable(typeof(PushMessage))]
[JsonSerializable(typeof(RegisterUnitRequest))]
[JsonSerializable(typeof(UnitView))]
[JsonSerializable(typeof(List<UnitView>))]
[JsonSerializable(typeof(ForceCheckRequest))]
[JsonSerializable(typeof(ForceCheckResponse))]
[JsonSerializable(typeof(ForceCheckStatus))]
[JsonSerializable(typeof(PushAck))]
[JsonSerializable(typeof(Inventory))]
[JsonSerializable(typeof(Dictionary<string, string>))]
[JsonSerializable(typeof(List<string>))]
[JsonSerializable(typeof(ProblemBody))]
[JsonSerializable(typeof(BulkRegisterResponse))]
[JsonSerializable(typeof(UpdatePolicy))]
[JsonSerializable(typeof(MediaCheckRequest))]
[JsonSerializable(typeof(MediaCheckResponse))]
public sealed partial class ProtocolJson : JsonSerializerContext;

/// <summary>RFC 9457 problem details as the unit reads them.</summary>
public sealed record ProblemBody(string? Type, string? Title, int? Status, string? Detail);

public static class ProblemTypes
{
    public const string Prefix = "urn:tsunagu:problem:";
    public const string UnitRefused = Prefix + "unit-refused";
    public const string UnknownUnit = Prefix + "unknown-unit";
    public const string ChallengeExpired = Prefix + "challenge-expired";
    public const string InvalidToken = Prefix + "invalid-token";
    public const string WrongScope = Prefix + "wrong-scope";
    public const string Validation = Prefix + "validation";
    public const string OffPattern = Prefix + "off-pattern";
    public const string NotFound = Prefix + "not-found";
    public const string Conflict = Prefix + "conflict";
    /// <summary>A forced check while push is disabled or the server is not connected to the broker (503).</summary>
    public const string PushUnavailable = Prefix + "push-unavailable";
    /// <summary>The server is at capacity, its database busy or its password checks all taken (503).</summary>
    public const string Overloaded = Prefix + "overloaded";
    /// <summary>Too many attempts for one MAC, account or source address (429).</summary>
    public const string RateLimited = Prefix + "rate-limited";
    /// <summary>A subscriber changed a service configuration field their contract leaves to the operator.</summary>
    public const string FieldNotAllowed = Prefix + "field-not-allowed";
    /// <summary>An operator whose role may not use the endpoint (403).</summary>
    public const string RoleNotAllowed = Prefix + "role-not-allowed";
}
