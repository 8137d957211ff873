using System.Formats.Tar;
using System.IO.Compression;
using System.Text;
using System.Text.Json;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Demo;

/// <summary>
/// The demo catalogue: pattern 1 (the factory software), pattern 2 (newer versions of two applications), an
/// update program 1 -> 2 of importance 5, one service configuration, and an operator account.
/// </summary>
public static class DemoCatalogue
{
    public const string HardwareVersion = "r1";
    public const string OsVersion = "tsunagu-os 1.0";
    public const string Pattern1 = "pattern-1";
    public const string Pattern2 = "pattern-2";
    public const string UpdateId = "p1-to-p2";
    public const string OperatorName = "operator";

    public static readonly IReadOnlyDictionary<string, string> FactoryApplications =
        new SortedDictionary<string, string>(StringComparer.Ordinal) { ["cache-manager"] = "1.0.0", ["firewall"] = "1.0.0", ["vcp"] = "1.0.0" };

    public static readonly IReadOnlyDictionary<string, string> Pattern2Applications =
        new SortedDictionary<string, string>(StringComparer.Ordinal) { ["cache-manager"] = "1.0.0", ["firewall"] = "1.1.0", ["vcp"] = "1.2.0" };

    public static ServiceConfiguration StandardServices { get; } = new(
        new FirewallConfig("drop", true, [new PortForward("tcp", 8080, "192.168.10.20", 80)]),
        new DhcpConfig("192.168.10.1", 24, "192.168.10.100", "192.168.10.199", "12h", []),
        new DnsConfig("home.arpa", ["192.0.2.53"]),
        new ContentFilterConfig(true, ["ads.example", "malware.example"]),
        new VpnConfig(false, 51820, null, []),
        new CacheConfig(false, 0));

    /// <summary>Seeds the catalogue (idempotent) and sets the operator password; returns the password.</summary>
    public static string Seed(TsunaguStore store, ArtifactStore artifacts, string? operatorPassword = null)
    {
        foreach (var (app, version) in FactoryApplications.Concat(Pattern2Applications).Distinct())
        {
            store.EnsureSoftware(new SoftwareRow { AppId = app, Version = version, Name = app, RequiredHardware = HardwareVersion });
        }
        store.UpsertPattern(Pattern(Pattern1, "factory software", FactoryApplications));
        store.UpsertPattern(Pattern(Pattern2, "firewall 1.1.0, vcp 1.2.0", Pattern2Applications));
        var (sha, size) = artifacts.Add(BuildArtifact(UpdateId, Pattern1, Pattern2,
            Pattern2Applications.Where(a => FactoryApplications[a.Key] != a.Value).ToDictionary()));
        store.UpsertUpdateProgram(new UpdateProgramRow
        {
            Id = UpdateId, FromPattern = Pattern1, ToPattern = Pattern2, Importance = 5, Priority = 10,
            ArtifactSha256 = sha, ArtifactSize = size,
        });
        store.UpsertServiceConfig(OperatorApi.DefaultServiceConfig, StandardServices);
        operatorPassword ??= UnitCredentials.NewNonce(12);
        store.UpsertOperator(OperatorName, PasswordHasher.Hash(operatorPassword));
        return operatorPassword;
    }

    private static PatternRow Pattern(string id, string name, IReadOnlyDictionary<string, string> apps) => new()
    {
        Id = id, Name = name, HardwareVersion = HardwareVersion, OsVersion = OsVersion, Status = PatternStatus.Verified,
        Applications = JsonSerializer.Serialize(apps.ToDictionary(), ProtocolJson.Default.DictionaryStringString),
    };

    /// <summary>An update artifact: tar.gz with manifest.json and apps/NAME/VERSION/ trees.</summary>
    public static byte[] BuildArtifact(string updateId, string from, string to, IReadOnlyDictionary<string, string> applications)
    {
        using var buffer = new MemoryStream();
        using (var gzip = new GZipStream(buffer, CompressionLevel.Optimal, leaveOpen: true))
        using (var tar = new TarWriter(gzip, TarEntryFormat.Pax, leaveOpen: true))
        {
            var manifest = new UpdateArtifactManifest(updateId, from, to,
                applications.Select(a => new ArtifactApplication(a.Key, a.Value)).ToList());
            Add(tar, "manifest.json", JsonSerializer.SerializeToUtf8Bytes(manifest, ProtocolJson.Default.UpdateArtifactManifest));
            foreach (var (name, version) in applications)
            {
                Add(tar, $"apps/{name}/{version}/VERSION", Encoding.UTF8.GetBytes($"{name} {version}\n"));
            }
        }
        return buffer.ToArray();
    }

    private static void Add(TarWriter tar, string name, byte[] content)
    {
        var entry = new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(content) };
        tar.WriteEntry(entry);
    }
}
