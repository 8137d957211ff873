using System.Security.Cryptography;
using System.Text;
using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;
using Tsunagu.Server.Data;

namespace Tsunagu.Demo;

/// <summary>
/// The catalogue of the QEMU board's firmware image (`make image`): pattern `qemu-1` is what the image ships
/// (OS 1.0 in slot A and the PROM, factory applications), pattern `qemu-2` brings OS 1.1 (a real slot image built by
/// `make image`) and firewall 1.1.0, by update program `qemu-1-to-2` of importance 5. The board the bundles are for
/// is the image's (`name` of the `board.json` the image build copies beside the OS images).
/// </summary>
public static class LabCatalogue
{
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

    /// <summary>
    /// Pattern `qemu-1-lists`: the factory software and the content filter's category lists (application
    /// <see cref="FilterCategories.Application"/> <see cref="FilterListsVersion"/>), by update program `qemu-1-to-1-lists` of
    /// importance 5, which carries the lists alone (no OS, no restart): the operator's new lists reaching a unit.
    /// </summary>
    public const string ListsPattern = "qemu-1-lists";
    public const string ListsUpdate = "qemu-1-to-1-lists";
    public const string FilterListsVersion = "2026.12.1";

    /// <summary>
    /// The lab's categories: each one's title (what the lab's server offers, server option FilterCategories) and its list;
    /// `malware` names a domain the lab's DNS server answers (malware.example).
    /// </summary>
    public static readonly IReadOnlyDictionary<string, (string Title, string List)> FilterLists = new SortedDictionary<string, (string, string)>(StringComparer.Ordinal)
    {
        ["malware"] = ("Malware and phishing", "# the lab's malware category\nmalware.example\n"),
        ["gambling"] = ("Gambling", "casino.example\n"),
    };

    /// <summary>What the lab's server offers: the categories of <see cref="FilterLists"/>.</summary>
    public static List<Server.Catalogue.FilterCategoryOption?> OfferedCategories() =>
        [.. FilterLists.Select(c => new Server.Catalogue.FilterCategoryOption { Name = c.Key, Title = c.Value.Title })];

    public static readonly IReadOnlyDictionary<string, string> ListsApplications =
        new SortedDictionary<string, string>(FactoryApplications.ToDictionary(), StringComparer.Ordinal) { [FilterCategories.Application] = FilterListsVersion };

    /// <summary>
    /// Pattern `qemu-1-sigs`: the factory software and the lab's first virus signatures (<see cref="FirstSignatures"/>), by
    /// update program `qemu-1-to-1-sigs` of importance 5, which carries the database and the signature set's version (no
    /// OS, no restart). Pattern `qemu-1-sigs-2` adds <see cref="NewSignatures"/> by `qemu-1-sigs-to-2`: the patent's new
    /// virus (bundle version 2: a unit installs only a bundle newer than its last). A pattern names its signature set as
    /// application <see cref="SignaturesApplication"/> (docs/bundles.md):
    /// the host knows a unit's pattern by its inventory, which holds no databases.
    /// </summary>
    public const string SignaturesPattern = "qemu-1-sigs";
    public const string SignaturesUpdate = "qemu-1-to-1-sigs";
    public const string NewSignaturesPattern = "qemu-1-sigs-2";
    public const string NewSignaturesUpdate = "qemu-1-sigs-to-2";
    public const string SignaturesApplication = "virus-signatures";

    public static readonly IReadOnlyDictionary<string, string> SignaturesApplications =
        new SortedDictionary<string, string>(FactoryApplications.ToDictionary(), StringComparer.Ordinal) { [SignaturesApplication] = "2026.12.1" };

    public static readonly IReadOnlyDictionary<string, string> NewSignaturesApplications =
        new SortedDictionary<string, string>(FactoryApplications.ToDictionary(), StringComparer.Ordinal) { [SignaturesApplication] = "2026.12.2" };

    /// <summary>The EICAR test file: what every virus scanner finds, and the lab's first signatures know.</summary>
    public static readonly byte[] Eicar = Encoding.ASCII.GetBytes(@"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*");

    /// <summary>The name the first signatures give the EICAR file.</summary>
    public const string EicarVirusName = "Tsunagu.Lab.Eicar";

    /// <summary>A byte string only the new signatures know, and the name they give a file holding it.</summary>
    public const string NewVirusMarker = "TSUNAGU-LAB-VIRUS-OF-THE-WEEK";
    public const string NewVirusName = "Tsunagu.Lab.New";

    /// <summary>The first database: the EICAR file by its MD5 and size (ClamAV's `.hdb`).</summary>
    public static readonly IReadOnlyDictionary<string, byte[]> FirstSignatures = new Dictionary<string, byte[]>(StringComparer.Ordinal)
    {
        ["tsunagu-lab.hdb"] = Encoding.ASCII.GetBytes($"{Convert.ToHexStringLower(MD5.HashData(Eicar))}:{Eicar.Length}:{EicarVirusName}\n"),
    };

    /// <summary>The new database: any file holding <see cref="NewVirusMarker"/> (ClamAV's `.ndb`, a body pattern anywhere).</summary>
    public static readonly IReadOnlyDictionary<string, byte[]> NewSignatures = new Dictionary<string, byte[]>(StringComparer.Ordinal)
    {
        ["tsunagu-lab-2.ndb"] = Encoding.ASCII.GetBytes($"{NewVirusName}:0:*:{Convert.ToHexStringLower(Encoding.ASCII.GetBytes(NewVirusMarker))}\n"),
    };

    /// <summary>The OS image of the update in an image output folder (`out/image/BOARD-debug`).</summary>
    public static string UpdateOsImage(string imageDirectory) => Path.Combine(imageDirectory, "os-1.1.sqfs");

    /// <summary>The name of the board an image output folder was built for (its `board.json`).</summary>
    /// <exception cref="FileNotFoundException">The folder has no board.json: build it with `make image`.</exception>
    /// <exception cref="InvalidDataException">The board.json has no name.</exception>
    public static string BoardOf(string imageDirectory)
    {
        var path = Path.Combine(imageDirectory, "board.json");
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{path}: the image's board description is missing; build it with `make image`", path);
        }
        try
        {
            var name = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path))?["name"]?.GetValue<string>();
            return string.IsNullOrWhiteSpace(name) ? throw new InvalidDataException($"{path}: name: missing") : name;
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException)
        {
            throw new InvalidDataException($"{path}: name: unreadable ({e.Message})", e);
        }
    }

    /// <summary>
    /// Seeds the lab patterns and the update program (idempotent). The bundle carries <paramref name="osImage"/>
    /// (OS <see cref="UpdateOs"/>) and firewall 1.1.0, signed with <paramref name="releaseKey"/>.
    /// </summary>
    /// <exception cref="FileNotFoundException">The OS image is missing: build it with `make image`.</exception>
    public static async Task SeedAsync(TsunaguStore store, ArtifactStore artifacts, ECDsa releaseKey, string osImage, TimeProvider? time = null, CancellationToken ct = default)
    {
        if (!File.Exists(osImage))
        {
            throw new FileNotFoundException($"{osImage}: the update's OS image is missing; build it with `make image`", osImage);
        }
        var board = BoardOf(Path.GetDirectoryName(Path.GetFullPath(osImage))!);
        foreach (var (app, version) in FactoryApplications.Concat(Pattern2Applications).Distinct())
        {
            await store.Catalogue.EnsureSoftwareAsync(new SoftwareRow { AppId = app, Version = version, Name = app, RequiredHardware = HardwareVersion });
        }
        await store.Catalogue.UpsertPatternAsync(Pattern(Pattern1, "QEMU board factory image", FactoryOs, FactoryApplications));
        await AddOsUpdateAsync(store, artifacts, releaseKey, board, UpdateId, Pattern1, FactoryOs, FactoryApplications,
            new PatternRow { Id = Pattern2, Name = "QEMU board: OS 1.1, firewall 1.1.0", OsVersion = UpdateOs }, Pattern2Applications, osImage, time);
        await AddOsUpdateAsync(store, artifacts, releaseKey, board, ListsUpdate, Pattern1, FactoryOs, FactoryApplications,
            new PatternRow { Id = ListsPattern, Name = "QEMU board factory image and the content filter's category lists", OsVersion = FactoryOs }, ListsApplications,
            osImage: null, time);
        await AddOsUpdateAsync(store, artifacts, releaseKey, board, SignaturesUpdate, Pattern1, FactoryOs, FactoryApplications,
            new PatternRow { Id = SignaturesPattern, Name = "QEMU board factory image and the lab's first virus signatures", OsVersion = FactoryOs }, SignaturesApplications,
            osImage: null, time, signatures: FirstSignatures);
        await AddOsUpdateAsync(store, artifacts, releaseKey, board, NewSignaturesUpdate, SignaturesPattern, FactoryOs, SignaturesApplications,
            new PatternRow { Id = NewSignaturesPattern, Name = "QEMU board factory image and the lab's new virus signatures", OsVersion = FactoryOs }, NewSignaturesApplications,
            osImage: null, time, bundleVersion: 2, signatures: NewSignatures);
    }

    /// <summary>
    /// Adds verified pattern <paramref name="to"/> for board <paramref name="board"/> (its applications <paramref name="toApps"/>, its OS the one in
    /// <paramref name="osImage"/>) and an update program of importance 5 from <paramref name="fromPattern"/>: a signed
    /// bundle (release counter <paramref name="bundleVersion"/>) with the OS image for the inactive slot and one application payload per changed application.
    /// Without <paramref name="osImage"/> the bundle carries the applications alone (the unit installs them without a restart);
    /// <paramref name="signatures"/> adds one ClamAV database payload per entry (file name, content), installed for clamd.
    /// </summary>
    public static async Task AddOsUpdateAsync(TsunaguStore store, ArtifactStore artifacts, ECDsa releaseKey, string board, string updateId, string fromPattern, string fromOs,
        IReadOnlyDictionary<string, string> fromApps, PatternRow to, IReadOnlyDictionary<string, string> toApps, string? osImage, TimeProvider? time = null, long bundleVersion = 1,
        IReadOnlyDictionary<string, byte[]>? signatures = null)
    {
        foreach (var (app, version) in toApps)
        {
            await store.Catalogue.EnsureSoftwareAsync(new SoftwareRow { AppId = app, Version = version, Name = app, RequiredHardware = HardwareVersion });
        }
        await store.Catalogue.UpsertPatternAsync(Pattern(to.Id, to.Name, to.OsVersion, toApps));
        var now = (time ?? TimeProvider.System).GetUtcNow();
        List<(BundlePayload, byte[])> payloads = [];
        if (osImage is not null)
        {
            // the OS image followed by its dm-verity hash tree; the signed manifest carries the root hash
            using var withTree = new MemoryStream();
            OsVerity verity;
            using (var image = File.OpenRead(osImage))
            {
                verity = VerityTree.WriteAsync(image, withTree, VerityTree.NewSalt(), CancellationToken.None).GetAwaiter().GetResult();
            }
            payloads.Add((new BundlePayload("os", PayloadKinds.OsImage, 0, "", null, to.OsVersion, Verity: verity), withTree.ToArray()));
        }
        foreach (var (app, version) in toApps.Where(a => !fromApps.TryGetValue(a.Key, out var v) || v != a.Value))
        {
            payloads.Add((new BundlePayload($"{app}-{version}", PayloadKinds.Application, 0, "", app, version), BundleFormat.ApplicationTar(ApplicationTree(app, version))));
        }
        foreach (var (name, database) in signatures ?? new Dictionary<string, byte[]>())
        {
            payloads.Add((new BundlePayload(name, PayloadKinds.Signatures, 0, ""), database));
        }
        var manifest = new BundleManifest(BundleManifest.CurrentFormat, updateId, bundleVersion, [fromPattern], to.Id,
            new BundleCompatibility([board], [HardwareVersion], [fromOs]), 5, now, now.AddDays(365), [],
            payloads.Select(p => new BundleStep(p.Item1.Kind switch
            {
                PayloadKinds.OsImage => StepActions.InstallOs,
                PayloadKinds.Signatures => StepActions.InstallSignatures,
                _ => StepActions.InstallApplication,
            }, p.Item1.Name)).ToList());
        var bundle = BundleFormat.BuildAsync(manifest, payloads, [releaseKey], CancellationToken.None).GetAwaiter().GetResult();
        var (sha, size) = artifacts.Add(bundle);
        await store.Catalogue.UpsertUpdateProgramAsync(new UpdateProgramRow
        {
            Id = updateId, FromPattern = fromPattern, ToPattern = to.Id, Importance = 5, Priority = 10, ArtifactSha256 = sha, ArtifactSize = size,
        });
    }

    /// <summary>An application's tree in the lab's bundles: a VERSION file, and for the category lists each list of <see cref="FilterLists"/>.</summary>
    private static Dictionary<string, byte[]> ApplicationTree(string app, string version)
    {
        var tree = new Dictionary<string, byte[]> { ["VERSION"] = Encoding.UTF8.GetBytes($"{app} {version}\n") };
        if (app == FilterCategories.Application)
        {
            foreach (var (category, (_, list)) in FilterLists)
            {
                FilterCategories.Parse(FilterCategories.FileName(category), list);
                tree[FilterCategories.FileName(category)] = Encoding.UTF8.GetBytes(list);
            }
        }
        return tree;
    }

    private static PatternRow Pattern(string id, string name, string os, IReadOnlyDictionary<string, string> apps) =>
        DemoCatalogue.VerifiedPattern(id, name, HardwareVersion, os, apps);
}
