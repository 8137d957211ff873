using System.Text.Json;
using System.Text.Json.Serialization;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Storage;

/// <summary>Where an update stands, persisted before each risky step so a restart resumes or reports it.</summary>
public sealed record PendingUpdate(string UpdateId, string Phase, UpdateReport? Report, int Attempts)
{
    public const string Downloading = "downloading";
    public const string Installed = "installed";
    public const string Failed = "failed";
}

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

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web)]
[JsonSerializable(typeof(ServiceTransaction))]
[JsonSerializable(typeof(PendingConfirm))]
[JsonSerializable(typeof(ConfirmedConfig))]
[JsonSerializable(typeof(PendingUpdate))]
[JsonSerializable(typeof(AppliedConfig))]
[JsonSerializable(typeof(UnitSettings))]
public sealed partial class FirmwareJson : JsonSerializerContext;
