using System.Text.Json;
using Tsunagu.Protocol;

namespace Tsunagu.Hal;

// The read-only partitions as the mounted directories the boot program leaves them in (`/factory`, `/prom`); the
// simulation lays them out the same way.

/// <summary>The factory partition as a directory holding identity.json.</summary>
public sealed class DirectoryFactoryPartition(string root) : IFactoryPartition
{
    public const string IdentityFile = "identity.json";
    public string Root { get; } = root;

    public async Task<FactoryIdentity> ReadIdentityAsync(CancellationToken cancellationToken)
    {
        var path = Path.Combine(Root, IdentityFile);
        try
        {
            await using var stream = File.OpenRead(path);
            var identity = await JsonSerializer.DeserializeAsync(stream, ProtocolJson.Default.FactoryIdentity, cancellationToken)
                           ?? throw new HalException($"{path}: empty factory identity", isTransient: false);
            if (identity.FormatVersion != FactoryIdentity.CurrentFormat)
            {
                throw new HalException($"{path}: factory identity format {identity.FormatVersion} is not supported (expected {FactoryIdentity.CurrentFormat})", false);
            }
            MacAddress.Normalize(identity.Mac);
            return identity;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException or ProtocolException)
        {
            throw new HalException($"{path}: factory identity unreadable: {e.Message}", isTransient: false, e);
        }
    }

    /// <summary>Writes an identity the way the factory does; the partition is read-only afterwards.</summary>
    public static async Task BurnAsync(string root, FactoryIdentity identity, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(root);
        var path = Path.Combine(root, IdentityFile);
        var tmp = path + ".tmp";
        await using (var stream = File.Create(tmp))
        {
            await JsonSerializer.SerializeAsync(stream, identity, ProtocolJson.Default.FactoryIdentity, cancellationToken);
        }
        File.Move(tmp, path, overwrite: true);
    }
}

/// <summary>The PROM as a directory: `os-version` and `apps/NAME/VERSION/` trees.</summary>
public sealed class DirectoryPromPartition : IPromPartition
{
    public DirectoryPromPartition(string root)
    {
        var versionFile = Path.Combine(root, "os-version");
        if (!File.Exists(versionFile))
        {
            throw new HalException($"{versionFile}: the PROM has no OS version", isTransient: false);
        }
        OsVersion = File.ReadAllText(versionFile).Trim();
        var apps = new List<PromApplication>();
        var appsRoot = Path.Combine(root, "apps");
        if (Directory.Exists(appsRoot))
        {
            foreach (var appDir in Directory.GetDirectories(appsRoot).Order(StringComparer.Ordinal))
            {
                foreach (var versionDir in Directory.GetDirectories(appDir))
                {
                    apps.Add(new PromApplication(Path.GetFileName(appDir), Path.GetFileName(versionDir), versionDir));
                }
            }
        }
        FactoryApplications = apps;
    }

    public string OsVersion { get; }
    public IReadOnlyList<PromApplication> FactoryApplications { get; }

    /// <summary>Creates a PROM tree with the given OS version and application versions (a small file per app).</summary>
    public static void Build(string root, string osVersion, IReadOnlyDictionary<string, string> applications)
    {
        Directory.CreateDirectory(root);
        File.WriteAllText(Path.Combine(root, "os-version"), osVersion + "\n");
        foreach (var (name, version) in applications)
        {
            var dir = Path.Combine(root, "apps", name, version);
            Directory.CreateDirectory(dir);
            File.WriteAllText(Path.Combine(dir, "VERSION"), $"{name} {version}\n");
        }
    }
}
