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

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web)]
[JsonSerializable(typeof(PendingUpdate))]
[JsonSerializable(typeof(AppliedConfig))]
[JsonSerializable(typeof(UnitSettings))]
public sealed partial class FirmwareJson : JsonSerializerContext;
