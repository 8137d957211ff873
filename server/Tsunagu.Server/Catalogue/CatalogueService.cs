using System.Text.Json;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;

namespace Tsunagu.Server.Catalogue;

/// <summary>A catalogue change that breaks a rule; the message says which and why.</summary>
public sealed class CatalogueRuleException(string message) : Exception(message);

public sealed record NewPattern(string Id, string Name, string HardwareVersion, string OsVersion, IReadOnlyDictionary<string, string> Applications);
public sealed record NewUpdateProgram(string Id, string FromPattern, string ToPattern, int Importance, int Priority, string ArtifactSha256);

/// <summary>
/// The rules of the host's catalogue (patent 0044-0049): software and patches are catalogued; an install pattern
/// is a combination of catalogued versions that agrees with their hardware/OS requirements, and goes
/// draft -> verified -> retired; only verified patterns are targets; update programs lead from one pattern to a
/// verified one.
/// </summary>
public sealed partial class CatalogueService(TsunaguStore store, ArtifactStore artifacts, ServerOptions options)
{
    /// <summary>A pattern as the API and the console show it (its applications read from the stored JSON).</summary>
    public static Apis.PatternView View(PatternRow p) => new(p.Id, p.Name, p.HardwareVersion, p.OsVersion,
        JsonSerializer.Deserialize(p.Applications, ProtocolJson.Default.DictionaryStringString) ?? [],
        p.Status, p.CreatedAt, p.VerifiedAt, p.RetiredAt);

    /// <summary>Adds catalogued software; the audit entry (<c>software.add</c> by <paramref name="actor"/>) commits with it.</summary>
    public async Task AddSoftwareAsync(SoftwareRow software, string actor, CancellationToken ct = default)
    {
        RequireId(software.AppId, "appId");
        RequireId(software.Version, "version");
        RequireText(software.Name, "name", true);
        RequireText(software.RequiredHardware, "requiredHardware", false);
        RequireText(software.RequiredOs, "requiredOs", false);
        await store.Catalogue.AddSoftwareAsync(software, new AuditEntry(actor, "software.add", $"{software.AppId} {software.Version}", null), ct: ct);
    }

    /// <summary>Adds a patch; the audit entry (<c>patch.add</c> by <paramref name="actor"/>) commits with it.</summary>
    public async Task AddPatchAsync(PatchRow patch, string actor, CancellationToken ct = default)
    {
        CheckPatchFields(patch);
        await store.CatalogueEdits.InCatalogueTransactionAsync(async t =>
        {
            await CheckPatchApplicationAsync(t, patch, ct);
            await t.AddPatchAsync(patch, store.Now(), new AuditEntry(actor, "patch.add", patch.Id, $"{patch.TargetApp} {patch.Version} importance {patch.Importance}"), ct: ct);
            return true;
        }, ct);
    }

    /// <summary>A patch's fields by type and grammar.</summary>
    private static void CheckPatchFields(PatchRow patch)
    {
        RequireId(patch.Id, "id");
        RequireId(patch.TargetApp, "targetApp");
        RequireId(patch.Version, "version");
        RequireText(patch.Name, "name", false);
        patch.Name ??= ""; // optional: a body without it (or with null) names nothing, and the column holds text
        RequireText(patch.OsVersion, "osVersion", false);
        RequireText(patch.HardwareVersion, "hardwareVersion", false);
        if (patch.Importance is < 1 or > 5) { throw new CatalogueRuleException($"importance: {patch.Importance} is outside 1..5"); }
    }

    /// <summary>The patch's application is in the software catalogue (read in the transaction that writes the patch).</summary>
    private static async Task CheckPatchApplicationAsync(CatalogueTransaction t, PatchRow patch, CancellationToken ct)
    {
        if (await t.SoftwareVersionsAsync(patch.TargetApp, ct) == 0)
        {
            throw new CatalogueRuleException($"targetApp: application '{patch.TargetApp}' is not in the software catalogue");
        }
    }

    /// <summary>
    /// Creates a draft pattern after checking every application version against the catalogue; the audit entry
    /// (<c>pattern.create</c> by <paramref name="actor"/>) commits with it.
    /// </summary>
    public async Task<PatternRow> CreatePatternAsync(NewPattern pattern, string actor, CancellationToken ct = default)
    {
        RequireId(pattern.Id, "id");
        RequireText(pattern.Name, "name", false);
        RequireText(pattern.HardwareVersion, "hardwareVersion", true);
        RequireText(pattern.OsVersion, "osVersion", true);
        if (pattern.Applications is null || pattern.Applications.Count is 0 or > MaxApplications)
        {
            throw new CatalogueRuleException($"applications: a pattern needs 1 to {MaxApplications} application versions");
        }
        foreach (var (app, version) in pattern.Applications)
        {
            if (!Apis.InputRules.IsIdentifier(app)) { throw new CatalogueRuleException(Apis.InputRules.Identifier("applications (name)")); }
            if (!Apis.InputRules.IsIdentifier(version)) { throw new CatalogueRuleException(Apis.InputRules.Identifier($"applications.{app}")); }
        }
        var row = new PatternRow
        {
            Id = pattern.Id, Name = string.IsNullOrWhiteSpace(pattern.Name) ? pattern.Id : pattern.Name,
            HardwareVersion = pattern.HardwareVersion, OsVersion = pattern.OsVersion, Status = PatternStatus.Draft,
            Applications = JsonSerializer.Serialize(new SortedDictionary<string, string>(pattern.Applications.ToDictionary(), StringComparer.Ordinal).ToDictionary(),
                ProtocolJson.Default.DictionaryStringString),
        };
        // the software is checked in the transaction that adds the pattern: software deleted or changed meanwhile is seen
        return await store.CatalogueEdits.InCatalogueTransactionAsync(async t =>
        {
            await CheckAgainstCatalogueAsync(t, pattern.Id, pattern.HardwareVersion, pattern.OsVersion, pattern.Applications, ct);
            await t.AddPatternAsync(row, store.Now(), new AuditEntry(actor, "pattern.create", row.Id, row.Applications), ct: ct);
            return (await t.GetPatternAsync(row.Id, ct))!;
        }, ct);
    }

    /// <summary>
    /// draft -> verified, after checking the catalogue again (it may have changed since the draft); the audit entry
    /// (<c>pattern.verify</c> by <paramref name="actor"/>, <paramref name="detail"/>) commits with it.
    /// </summary>
    public async Task<PatternRow> VerifyAsync(string id, string actor, string? detail = null, CancellationToken ct = default)
    {
        return await store.CatalogueEdits.InCatalogueTransactionAsync(async t =>
        {
            var pattern = await t.GetPatternAsync(id, ct) ?? throw new KeyNotFoundException($"pattern {id} does not exist");
            if (pattern.Status != PatternStatus.Draft)
            {
                throw new CatalogueRuleException($"pattern {id} is {pattern.Status}; only a draft can be verified");
            }
            var apps = JsonSerializer.Deserialize(pattern.Applications, ProtocolJson.Default.DictionaryStringString) ?? [];
            await CheckAgainstCatalogueAsync(t, id, pattern.HardwareVersion, pattern.OsVersion, apps, ct);
            // the host knows a unit's pattern by its inventory (hardware, OS, applications): of two matchable patterns with
            // the same content, units on either would be recorded on one, and offered the program to the other forever
            var twin = (await t.ListPatternsAsync(ct)).FirstOrDefault(p => p.Id != id && p.Status != PatternStatus.Draft && SameContent(p, pattern));
            if (twin is not null)
            {
                throw new CatalogueRuleException($"pattern {id} has the hardware, OS and application versions of {twin.Status} pattern '{twin.Id}': " +
                    "the host could not tell units on the two apart (a pattern that differs only in virus signatures names the signature set's version as an application, docs/bundles.md)");
            }
            if (!await t.SetPatternStatusAsync(id, PatternStatus.Draft, PatternStatus.Verified, store.Now(), new AuditEntry(actor, "pattern.verify", id, detail), ct: ct))
            {
                throw new CatalogueRuleException($"pattern {id} changed while being verified; try again");
            }
            return (await t.GetPatternAsync(id, ct))!;
        }, ct);
    }

    /// <summary>
    /// verified -> retired: no longer a target; units on it keep running and are moved by update programs. The audit
    /// entry (<c>pattern.retire</c> by <paramref name="actor"/>, <paramref name="detail"/>) commits with it.
    /// </summary>
    public async Task<PatternRow> RetireAsync(string id, string actor, string? detail = null, CancellationToken ct = default)
    {
        var pattern = await store.Catalogue.GetPatternAsync(id, ct) ?? throw new KeyNotFoundException($"pattern {id} does not exist");
        if (pattern.Status != PatternStatus.Verified)
        {
            throw new CatalogueRuleException($"pattern {id} is {pattern.Status}; only a verified pattern can be retired");
        }
        var targeting = (await store.Units.QueryUnitsAsync(new UnitQuery(), ct)).Where(u => u.TargetPattern == id).Select(u => u.Mac).ToList();
        if (targeting.Count > 0)
        {
            throw new CatalogueRuleException($"pattern {id} is the target of {targeting.Count} unit(s) (first: {targeting[0]}); give them another target first");
        }
        await store.Catalogue.SetPatternStatusAsync(id, PatternStatus.Verified, PatternStatus.Retired, new AuditEntry(actor, "pattern.retire", id, detail), ct: ct);
        return (await store.Catalogue.GetPatternAsync(id, ct))!;
    }

    /// <summary>
    /// Adds an update program whose artifact is a bundle for exactly this program; the audit entry
    /// (<c>update-program.add</c> by <paramref name="actor"/>) commits with it.
    /// </summary>
    public async Task<UpdateProgramRow> AddUpdateProgramAsync(NewUpdateProgram program, string actor, CancellationToken ct)
    {
        var (from, to) = await CheckProgramAsync(program, ct);
        var sha = program.ArtifactSha256?.ToLowerInvariant() ?? "";
        if (artifacts.PathOf(sha) is not { } path)
        {
            throw new CatalogueRuleException($"artifactSha256: no uploaded artifact has digest '{program.ArtifactSha256}' (upload it first)");
        }
        await CheckBundleAsync(path, program, ct);
        var row = new UpdateProgramRow
        {
            Id = program.Id, FromPattern = from.Id, ToPattern = to.Id, Importance = program.Importance, Priority = program.Priority,
            ArtifactSha256 = sha, ArtifactSize = new FileInfo(path).Length,
        };
        await store.Catalogue.AddUpdateProgramAsync(row, new AuditEntry(actor, "update-program.add", row.Id, $"{row.FromPattern} -> {row.ToPattern} importance {row.Importance}"), ct: ct);
        return row;
    }

    /// <summary>
    /// Adds an update program with its bundle in one step (the console's upload): the program's fields are checked
    /// first, then the uploaded bundle as <see cref="AddUpdateProgramAsync"/> checks it (format, signature by a release
    /// key, the program's id and patterns); only then are the bundle kept and the program written with its audit entries
    /// (<c>update-program.add</c> and <c>artifact.upload</c>) in one transaction. A refused upload keeps nothing and writes nothing.
    /// <see cref="NewUpdateProgram.ArtifactSha256"/> is ignored: the digest is the upload's.
    /// </summary>
    /// <exception cref="InvalidDataException">The upload is empty or larger than <see cref="MaxArtifactBytes"/>.</exception>
    public async Task<UpdateProgramRow> AddUpdateProgramWithBundleAsync(NewUpdateProgram program, Stream bundle, string actor, CancellationToken ct)
    {
        var (from, to) = await CheckProgramAsync(program, ct);
        if (await store.Catalogue.GetUpdateProgramAsync(program.Id, ct) is not null) { throw new StoreConflictException($"update program {program.Id} already exists"); }
        UpdateProgramRow? row = null;
        await artifacts.AddAsync(bundle, MaxArtifactBytes, (path, c) => CheckBundleAsync(path, program, c), async (sha, size) =>
        {
            row = new UpdateProgramRow
            {
                Id = program.Id, FromPattern = from.Id, ToPattern = to.Id, Importance = program.Importance, Priority = program.Priority,
                ArtifactSha256 = sha, ArtifactSize = size,
            };
            // one transaction: a failed write leaves neither the program nor an audit entry, and the bundle is not kept
            await store.Catalogue.AddUpdateProgramAsync(row, new AuditEntry(actor, "update-program.add", row.Id, $"{row.FromPattern} -> {row.ToPattern} importance {row.Importance}"),
                new AuditEntry(actor, "artifact.upload", sha, $"{size} bytes"), ct: ct);
        }, ct);
        return row!;
    }

    /// <summary>Whether two patterns hold the same hardware, OS and application versions: the snapshot's match of an inventory, applied to <paramref name="b"/>.</summary>
    private static bool SameContent(PatternRow a, PatternRow b) =>
        CatalogueSnapshot.Holds(a, JsonSerializer.Deserialize(a.Applications, ProtocolJson.Default.DictionaryStringString) ?? [],
            b.HardwareVersion, b.OsVersion, JsonSerializer.Deserialize(b.Applications, ProtocolJson.Default.DictionaryStringString) ?? []);

    /// <summary>An update program's fields against the catalogue: its from-pattern and its (verified) to-pattern.</summary>
    private async Task<(PatternRow From, PatternRow To)> CheckProgramAsync(NewUpdateProgram program, CancellationToken ct)
    {
        RequireId(program.Id, "id");
        RequireId(program.FromPattern, "fromPattern");
        RequireId(program.ToPattern, "toPattern");
        if (program.Importance is < 1 or > 5) { throw new CatalogueRuleException($"importance: {program.Importance} is outside 1..5"); }
        var from = await store.Catalogue.GetPatternAsync(program.FromPattern, ct) ?? throw new CatalogueRuleException($"fromPattern: pattern '{program.FromPattern}' does not exist");
        var to = await store.Catalogue.GetPatternAsync(program.ToPattern, ct) ?? throw new CatalogueRuleException($"toPattern: pattern '{program.ToPattern}' does not exist");
        if (to.Status != PatternStatus.Verified)
        {
            throw new CatalogueRuleException($"toPattern: pattern '{to.Id}' is {to.Status}; only a verified pattern can be a target");
        }
        if (from.Id == to.Id) { throw new CatalogueRuleException("toPattern: an update program must lead to another pattern"); }
        if (SameContent(from, to))
        {
            // the unit's inventory would not change: the host would record it on the from-pattern again and offer the program again
            throw new CatalogueRuleException($"toPattern: pattern '{to.Id}' has the hardware, OS and application versions of '{from.Id}': the unit's inventory would not change");
        }
        if (from.HardwareVersion != to.HardwareVersion)
        {
            throw new CatalogueRuleException($"toPattern: pattern '{to.Id}' is for hardware {to.HardwareVersion}, '{from.Id}' for {from.HardwareVersion}");
        }
        return (from, to);
    }

    /// <summary>
    /// The artifact must be a well-formed bundle for exactly this program: same id, leading from its from-pattern
    /// to its to-pattern; with release keys configured, it must also carry a valid signature by one of them.
    /// </summary>
    private async Task CheckBundleAsync(string path, NewUpdateProgram program, CancellationToken ct)
    {
        Protocol.Bundles.BundleManifest manifest;
        try
        {
            await using var file = File.OpenRead(path);
            var header = await Protocol.Bundles.BundleFormat.ReadHeaderAsync(file, ct);
            manifest = header.ParseManifest();
            if (options.ReleasePublicKeys.Length > 0)
            {
                Protocol.Bundles.BundleVerifier.VerifyManifest(header, new Protocol.Bundles.ReleaseKeySet(options.ReleasePublicKeys));
            }
        }
        catch (Protocol.Bundles.BundleCheckException e)
        {
            throw new CatalogueRuleException($"artifactSha256: the artifact is not an acceptable bundle: {e.Message}");
        }
        if (manifest.BundleId != program.Id)
        {
            throw new CatalogueRuleException($"id: the bundle's id is '{manifest.BundleId}', the update program's '{program.Id}'");
        }
        if (manifest.ToPattern != program.ToPattern || !manifest.FromPatterns.Contains(program.FromPattern))
        {
            throw new CatalogueRuleException($"the bundle leads from {string.Join("/", manifest.FromPatterns)} to {manifest.ToPattern}, the update program from {program.FromPattern} to {program.ToPattern}");
        }
    }

    /// <summary>Sets (or clears) a unit's target pattern, a verified one; the audit entry (<c>unit.target-pattern</c> by <paramref name="actor"/>) commits with it.</summary>
    public async Task SetTargetPatternAsync(string mac, string? pattern, string actor, CancellationToken ct = default)
    {
        if (pattern is not null && !Apis.InputRules.IsIdentifier(pattern)) { throw new CatalogueRuleException(Apis.InputRules.Identifier("pattern")); }
        if (pattern is not null && await store.Catalogue.GetPatternAsync(pattern, ct) is not { Status: PatternStatus.Verified })
        {
            throw new CatalogueRuleException($"targetPattern: '{pattern}' is not a verified pattern");
        }
        await store.Units.SetTargetPatternAsync(mac, pattern, new AuditEntry(actor, "unit.target-pattern", mac, pattern ?? "none"), ct: ct);
    }

    /// <summary>Largest artifact accepted (bytes); larger uploads get 413.</summary>
    public const long MaxArtifactBytes = 4L * 1024 * 1024 * 1024;

    /// <summary>
    /// Stores an uploaded artifact (content-addressed); the audit entry (<c>artifact.upload</c> by <paramref name="actor"/>)
    /// is written before the artifact is kept, and nothing is kept when it fails.
    /// </summary>
    /// <exception cref="InvalidDataException">The upload is empty or larger than <see cref="MaxArtifactBytes"/>.</exception>
    public Task<(string Sha256, long Size)> UploadArtifactAsync(Stream content, string actor, CancellationToken ct) =>
        artifacts.AddAsync(content, MaxArtifactBytes, async (sha, size) => await store.AuditAsync(actor, "artifact.upload", sha, $"{size} bytes", ct), ct);

    private static async Task CheckAgainstCatalogueAsync(CatalogueTransaction t, string id, string hardware, string os, IReadOnlyDictionary<string, string> applications, CancellationToken ct)
    {
        foreach (var (app, version) in applications)
        {
            var software = await t.GetSoftwareAsync(app, version, ct)
                ?? throw new CatalogueRuleException($"pattern {id}: {app} {version} is not in the software catalogue");
            if (!Allows(software.RequiredHardware, hardware))
            {
                throw new CatalogueRuleException($"pattern {id}: {app} {version} requires hardware {software.RequiredHardware}, the pattern is for {hardware}");
            }
            if (!Allows(software.RequiredOs, os))
            {
                throw new CatalogueRuleException($"pattern {id}: {app} {version} requires OS {software.RequiredOs}, the pattern has {os}");
            }
        }
    }

    /// <summary>A requirement is a comma-separated list of accepted values; none means any.</summary>
    private static bool Allows(string? requirement, string value) =>
        string.IsNullOrWhiteSpace(requirement) || requirement.Split(',', StringSplitOptions.TrimEntries).Contains(value, StringComparer.Ordinal);

    /// <summary>Most applications one pattern (or one unit's inventory) lists.</summary>
    public const int MaxApplications = 64;

    private static void RequireId(string? value, string field)
    {
        if (!Apis.InputRules.IsIdentifier(value)) { throw new CatalogueRuleException(Apis.InputRules.Identifier(field)); }
    }

    private static void RequireText(string? value, string field, bool required)
    {
        if (required ? !Apis.InputRules.IsText(value, 128) : !Apis.InputRules.IsOptionalText(value, 128))
        {
            throw new CatalogueRuleException((required ? $"{field}: required; " : "") + Apis.InputRules.Text(field, 128));
        }
    }
}
