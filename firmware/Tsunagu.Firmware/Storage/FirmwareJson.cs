using System.Text.Json;
using System.Text.Json.Serialization;
using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;

namespace Tsunagu.Firmware.Storage;

/// <summary>
/// Where an update stands, persisted before each risky step so a restart resumes or rolls back
/// (firmware/DESIGN.md section 5). <see cref="Entries"/> counts entries that did not end in a controlled way:
/// too many means a restart loop, which is stopped. <see cref="PreviousApps"/> is the verified pattern's
/// application set to roll back to; <see cref="TargetSlot"/> the OS slot being installed, if any.
/// <see cref="InstallId"/> names this install attempt (<see cref="InstallIds"/>): drawn and stored before the attempt's
/// first phase runs, kept across restarts of the same attempt, sent with its report; a new attempt draws a new one.
/// </summary>
public sealed record PendingUpdate(string UpdateId, string Phase, UpdateReport? Report, int Attempts,
    UpdateOffer? Offer = null, BundleCounter? Bundle = null, string? ToPattern = null,
    IReadOnlyDictionary<string, string>? PreviousApps = null, string? TargetSlot = null,
    int Entries = 0, int ScriptRetries = 0, string? InstallId = null)
{
    public const string Downloading = "downloading";
    public const string Verified = "verified";
    public const string Switching = "switching";
    public const string Rebooting = "rebooting";
    public const string Checking = "checking";
    public const string Installed = "installed";
    public const string Failed = "failed";

    /// <summary>Failed attempts of one update after which the unit no longer tries it.</summary>
    public const int AttemptLimit = 3;

    /// <summary>Phases in which the unit's software may be neither the old pattern nor the new one.</summary>
    public bool InFlight => Phase is Switching or Rebooting or Checking;
}

/// <summary>
/// The list of an unpacked application tree kept between the unpacking and the switch (payloads without file digests):
/// tied to the payload's signed digest, the update and its install attempt, with the digest of <see cref="Files"/> as written.
/// </summary>
public sealed record KeptTreeList(string PayloadSha256, string UpdateId, string? InstallId, string ListSha256, IReadOnlyList<BundleFile> Files);

/// <summary>The host's power-on spread (VersionCheckResponse.PowerOnSpreadSeconds), kept for the next power-on.</summary>
public sealed record PowerOnSpread(int Seconds);

/// <summary>Release keys introduced or retired by committed bundles (key rotation, docs/bundles.md).</summary>
public sealed record TrustedKeys(IReadOnlyList<string> Introduced, IReadOnlyList<string> Retired);

/// <summary>The service configuration revision in force on the unit, and whether the host has acknowledged it.</summary>
public sealed record AppliedConfig(int Revision, bool Acknowledged, string? Error);

/// <summary>A service apply between swap and commit; a restart that finds it restores <see cref="Previous"/>.</summary>
public sealed record ServiceTransaction(int Revision, int? Previous, DateTimeOffset StartedAt);

/// <summary>
/// An applied revision waiting for the host to be reached (confirmed apply). When <see cref="Deadline"/> passes
/// first, the unit goes back to <see cref="Confirmed"/> (null: the fail-closed firewall alone).
/// </summary>
public sealed record PendingConfirm(int Revision, int? Confirmed, DateTimeOffset Deadline);

/// <summary>The last revision confirmed by reaching the host after it was applied.</summary>
public sealed record ConfirmedConfig(int Revision, DateTimeOffset At);

/// <summary>
/// What an installed application version was installed from (docs/bundles.md section 9): the bundle's manifest bytes
/// exactly as signed (base64) with its signatures, the payload that carried the tree and where its bytes start in the
/// host's artifact. The tree is checked against the payload's signed file digests; a damaged one is fetched again
/// from <see cref="ArtifactUrl"/> (bytes <see cref="PayloadOffset"/> .. + size). For a payload without file digests (a
/// bundle built before file lists), <see cref="InstalledFiles"/> is the tree as unpacked from the verified tar at install:
/// what the tree is checked against instead (kept on `data`, not signed).
/// </summary>
public sealed record AppSeal(string Application, string Version, string Payload, string Manifest,
    IReadOnlyList<BundleSignature> Signatures, long PayloadOffset, string ArtifactUrl, string ArtifactSha256,
    IReadOnlyList<BundleFile>? InstalledFiles = null);

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web)]
[JsonSerializable(typeof(PowerOnSpread))]
[JsonSerializable(typeof(ServiceTransaction))]
[JsonSerializable(typeof(PendingConfirm))]
[JsonSerializable(typeof(ConfirmedConfig))]
[JsonSerializable(typeof(PendingUpdate))]
[JsonSerializable(typeof(AppliedConfig))]
[JsonSerializable(typeof(UnitSettings))]
[JsonSerializable(typeof(BundleCounter))]
[JsonSerializable(typeof(TrustedKeys))]
[JsonSerializable(typeof(AppSeal))]
[JsonSerializable(typeof(List<BundleFile>))]
[JsonSerializable(typeof(KeptTreeList))]
public sealed partial class FirmwareJson : JsonSerializerContext;
