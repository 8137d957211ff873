using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;
using Tsunagu.Server.Data;

namespace Tsunagu.Server.Demo;

/// <summary>
/// The catalogue of the QEMU board's firmware image (`make image`): pattern `qemu-1` is what the image ships
/// (OS 1.0 in slot A and the PROM, factory applications), pattern `qemu-2` brings OS 1.1 (a real slot image built by
/// `make image`) and firewall 1.1.0, by update program `qemu-1-to-2` of importance 5.
/// </summary>
public static class LabCatalogue
{
    public const string Board = "qemu-x86_64";
    public const string HardwareVersion = "qemu-r1";
    public const string FactoryOs = "tsunagu-os 1.0";
    public const string UpdateOs = "tsunagu-os 1.1";
    public const string Pattern1 = "qemu-1";
    public const string Pattern2 = "qemu-2";
    public const string UpdateId = "qemu-1-to-2";

    public static readonly IReadOnlyDictionary<string, string> FactoryApplications =
        new SortedDictionary<string, string>(StringComparer.Ordinal) { ["cache-manager"] = "1.0.0", ["firewall"] = "1.0.0", ["vcp"] = "1.0.0" };

    public static readonly IReadOnlyDictionary<string, string> Pattern2Applications =
        new SortedDictionary<string, string>(StringComparer.Ordinal) { ["cache-manager"] = "1.0.0", ["firewall"] = "1.1.0", ["vcp"] = "1.0.0" };

    /// <summary>The OS image of the update in an image output folder (`out/image/qemu-x86_64`).</summary>
    public static string UpdateOsImage(string imageDirectory) => Path.Combine(imageDirectory, "os-1.1.sqfs");

    /// <summary>
    /// Seeds the lab patterns and the update program (idempotent). The bundle carries <paramref name="osImage"/>
    /// (OS <see cref="UpdateOs"/>) and firewall 1.1.0, signed with <paramref name="releaseKey"/>.
    /// </summary>
    /// <exception cref="FileNotFoundException">The OS image is missing: build it with `make image`.</exception>
    public static void Seed(TsunaguStore store, ArtifactStore artifacts, ECDsa releaseKey, string osImage, TimeProvider? time = null)
    {
        if (!File.Exists(osImage))
        {
            throw new FileNotFoundException($"{osImage}: the update's OS image is missing; build it with `make image BOARD={Board}`", osImage);
        }
        foreach (var (app, version) in FactoryApplications.Concat(Pattern2Applications).Distinct())
        {
            store.EnsureSoftware(new SoftwareRow { AppId = app, Version = version, Name = app, RequiredHardware = HardwareVersion });
        }
        store.UpsertPattern(Pattern(Pattern1, "QEMU board factory image", FactoryOs, FactoryApplications));
        store.UpsertPattern(Pattern(Pattern2, "QEMU board: OS 1.1, firewall 1.1.0", UpdateOs, Pattern2Applications));
        var now = (time ?? TimeProvider.System).GetUtcNow();
        var os = File.ReadAllBytes(osImage);
        var firewall = BundleFormat.ApplicationTar(new Dictionary<string, byte[]> { ["VERSION"] = Encoding.UTF8.GetBytes("firewall 1.1.0\n") });
        List<(BundlePayload, byte[])> payloads =
        [
            (new BundlePayload("os-1.1", PayloadKinds.OsImage, 0, "", null, UpdateOs), os),
            (new BundlePayload("firewall-1.1.0", PayloadKinds.Application, 0, "", "firewall", "1.1.0"), firewall),
        ];
        var manifest = new BundleManifest(BundleManifest.CurrentFormat, UpdateId, 1, [Pattern1], Pattern2,
            new BundleCompatibility([Board], [HardwareVersion], [FactoryOs]), 5, now, now.AddDays(365), [],
            [new BundleStep(StepActions.InstallOs, "os-1.1"), new BundleStep(StepActions.InstallApplication, "firewall-1.1.0")]);
        var bundle = BundleFormat.BuildAsync(manifest, payloads, [releaseKey], CancellationToken.None).GetAwaiter().GetResult();
        var (sha, size) = artifacts.Add(bundle);
        store.UpsertUpdateProgram(new UpdateProgramRow
        {
            Id = UpdateId, FromPattern = Pattern1, ToPattern = Pattern2, Importance = 5, Priority = 10, ArtifactSha256 = sha, ArtifactSize = size,
        });
    }

    private static PatternRow Pattern(string id, string name, string os, IReadOnlyDictionary<string, string> apps) => new()
    {
        Id = id, Name = name, HardwareVersion = HardwareVersion, OsVersion = os, Status = PatternStatus.Verified,
        Applications = JsonSerializer.Serialize(apps.ToDictionary(), ProtocolJson.Default.DictionaryStringString),
    };
}
