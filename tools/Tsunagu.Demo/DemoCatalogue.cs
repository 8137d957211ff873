using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;
using Tsunagu.Server.Units.Registration;

namespace Tsunagu.Demo;

/// <summary>
/// The demo catalogue: pattern 1 (the factory software), pattern 2 (newer versions of two applications), an
/// update program 1 -> 2 of importance 5 (a bundle signed with the demo's release key), one service configuration,
/// and an operator account.
/// </summary>
public static class DemoCatalogue
{
    public const string HardwareVersion = "r1";
    public const string OsVersion = "tsunagu-os 1.0";
    public const string Pattern1 = "pattern-1";
    public const string Pattern2 = "pattern-2";
    public const string UpdateId = "p1-to-p2";
    public const string OperatorName = "operator";
    public const string Board = "simulated";
    public const long BundleVersion = 1;

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

    /// <summary>
    /// Seeds the catalogue (idempotent) and sets the operator password; returns the password. The update program's
    /// bundle is signed with <paramref name="releaseKey"/>, whose public half the demo units carry in their factory identity.
    /// </summary>
    public static async Task<string> SeedAsync(TsunaguStore store, ArtifactStore artifacts, ECDsa releaseKey, string? operatorPassword = null, TimeProvider? time = null, CancellationToken ct = default)
    {
        foreach (var (app, version) in FactoryApplications.Concat(Pattern2Applications).Distinct())
        {
            await store.Catalogue.EnsureSoftwareAsync(new SoftwareRow { AppId = app, Version = version, Name = app, RequiredHardware = HardwareVersion });
        }
        await store.Catalogue.UpsertPatternAsync(Pattern(Pattern1, "factory software", FactoryApplications));
        await store.Catalogue.UpsertPatternAsync(Pattern(Pattern2, "firewall 1.1.0, vcp 1.2.0", Pattern2Applications));
        var (sha, size) = artifacts.Add(BuildBundle(UpdateId, BundleVersion, Pattern1, Pattern2,
            Pattern2Applications.Where(a => FactoryApplications[a.Key] != a.Value).ToDictionary(), releaseKey, (time ?? TimeProvider.System).GetUtcNow()));
        await store.Catalogue.UpsertUpdateProgramAsync(new UpdateProgramRow
        {
            Id = UpdateId, FromPattern = Pattern1, ToPattern = Pattern2, Importance = 5, Priority = 10,
            ArtifactSha256 = sha, ArtifactSize = size,
        });
        await store.ServiceConfigs.UpsertServiceConfigAsync(UnitRegistration.DefaultServiceConfig, StandardServices);
        operatorPassword ??= UnitCredentials.NewNonce(12);
        await store.Accounts.UpsertOperatorAsync(OperatorName, PasswordHasher.Hash(operatorPassword));
        return operatorPassword;
    }

    private static PatternRow Pattern(string id, string name, IReadOnlyDictionary<string, string> apps) =>
        VerifiedPattern(id, name, HardwareVersion, OsVersion, apps);

    /// <summary>A verified install pattern row: hardware, OS and application versions.</summary>
    internal static PatternRow VerifiedPattern(string id, string name, string hardware, string os, IReadOnlyDictionary<string, string> apps) => new()
    {
        Id = id, Name = name, HardwareVersion = hardware, OsVersion = os, Status = PatternStatus.Verified,
        Applications = JsonSerializer.Serialize(apps.ToDictionary(), ProtocolJson.Default.DictionaryStringString),
    };

    /// <summary>
    /// A signed bundle that installs <paramref name="applications"/> (one application payload each, a small
    /// VERSION file in its tree), for boards/hardware/OS of the demo, valid for a year from <paramref name="now"/>.
    /// </summary>
    public static byte[] BuildBundle(string bundleId, long version, string from, string to, IReadOnlyDictionary<string, string> applications,
        ECDsa releaseKey, DateTimeOffset now)
    {
        var payloads = applications.Select(a => (
            new BundlePayload($"{a.Key}-{a.Value}", PayloadKinds.Application, 0, "", a.Key, a.Value),
            BundleFormat.ApplicationTar(new Dictionary<string, byte[]> { ["VERSION"] = Encoding.UTF8.GetBytes($"{a.Key} {a.Value}\n") }))).ToList();
        var manifest = new BundleManifest(BundleManifest.CurrentFormat, bundleId, version, [from], to,
            new BundleCompatibility([Board], [HardwareVersion], [OsVersion]), 5, now, now.AddDays(365), [],
            payloads.Select(p => new BundleStep(StepActions.InstallApplication, p.Item1.Name)).ToList());
        // in-memory streams only: the task completes synchronously
        return BundleFormat.BuildAsync(manifest, payloads, [releaseKey], CancellationToken.None).GetAwaiter().GetResult();
    }
}
