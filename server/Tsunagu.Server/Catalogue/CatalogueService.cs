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
    /// <summary>Adds catalogued software; the audit entry (<c>software.add</c> by <paramref name="actor"/>) commits with it.</summary>
    public void AddSoftware(SoftwareRow software, string actor)
    {
        RequireId(software.AppId, "appId");
        RequireId(software.Version, "version");
        RequireText(software.Name, "name", true);
        RequireText(software.RequiredHardware, "requiredHardware", false);
        RequireText(software.RequiredOs, "requiredOs", false);
        store.AddSoftware(software, new AuditEntry(actor, "software.add", $"{software.AppId} {software.Version}", null));
    }

    /// <summary>Adds a patch; the audit entry (<c>patch.add</c> by <paramref name="actor"/>) commits with it.</summary>
    public void AddPatch(PatchRow patch, string actor)
    {
        CheckPatchFields(patch);
        store.InCatalogueTransaction(t =>
        {
            CheckPatchApplication(t, patch);
            t.AddPatch(patch, store.Now(), new AuditEntry(actor, "patch.add", patch.Id, $"{patch.TargetApp} {patch.Version} importance {patch.Importance}"));
            return true;
        });
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
    private static void CheckPatchApplication(CatalogueTransaction t, PatchRow patch)
    {
        if (t.SoftwareVersions(patch.TargetApp) == 0)
        {
            throw new CatalogueRuleException($"targetApp: application '{patch.TargetApp}' is not in the software catalogue");
        }
    }

    /// <summary>
    /// Creates a draft pattern after checking every application version against the catalogue; the audit entry
    /// (<c>pattern.create</c> by <paramref name="actor"/>) commits with it.
    /// </summary>
    public PatternRow CreatePattern(NewPattern pattern, string actor)
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
        return store.InCatalogueTransaction(t =>
        {
            CheckAgainstCatalogue(t, pattern.Id, pattern.HardwareVersion, pattern.OsVersion, pattern.Applications);
            t.AddPattern(row, store.Now(), new AuditEntry(actor, "pattern.create", row.Id, row.Applications));
            return t.GetPattern(row.Id)!;
        });
    }

    /// <summary>
    /// draft -> verified, after checking the catalogue again (it may have changed since the draft); the audit entry
    /// (<c>pattern.verify</c> by <paramref name="actor"/>, <paramref name="detail"/>) commits with it.
    /// </summary>
    public PatternRow Verify(string id, string actor, string? detail = null)
    {
        return store.InCatalogueTransaction(t =>
        {
            var pattern = t.GetPattern(id) ?? throw new KeyNotFoundException($"pattern {id} does not exist");
            if (pattern.Status != PatternStatus.Draft)
            {
                throw new CatalogueRuleException($"pattern {id} is {pattern.Status}; only a draft can be verified");
            }
            var apps = JsonSerializer.Deserialize(pattern.Applications, ProtocolJson.Default.DictionaryStringString) ?? [];
            CheckAgainstCatalogue(t, id, pattern.HardwareVersion, pattern.OsVersion, apps);
            if (!t.SetPatternStatus(id, PatternStatus.Draft, PatternStatus.Verified, store.Now(), new AuditEntry(actor, "pattern.verify", id, detail)))
            {
                throw new CatalogueRuleException($"pattern {id} changed while being verified; try again");
            }
            return t.GetPattern(id)!;
        });
    }

    /// <summary>
    /// verified -> retired: no longer a target; units on it keep running and are moved by update programs. The audit
    /// entry (<c>pattern.retire</c> by <paramref name="actor"/>, <paramref name="detail"/>) commits with it.
    /// </summary>
    public PatternRow Retire(string id, string actor, string? detail = null)
    {
        var pattern = store.GetPattern(id) ?? throw new KeyNotFoundException($"pattern {id} does not exist");
        if (pattern.Status != PatternStatus.Verified)
        {
            throw new CatalogueRuleException($"pattern {id} is {pattern.Status}; only a verified pattern can be retired");
        }
        var targeting = store.QueryUnits(new UnitQuery()).Where(u => u.TargetPattern == id).Select(u => u.Mac).ToList();
        if (targeting.Count > 0)
        {
            throw new CatalogueRuleException($"pattern {id} is the target of {targeting.Count} unit(s) (first: {targeting[0]}); give them another target first");
        }
        store.SetPatternStatus(id, PatternStatus.Verified, PatternStatus.Retired, new AuditEntry(actor, "pattern.retire", id, detail));
        return store.GetPattern(id)!;
    }

    /// <summary>
    /// Adds an update program whose artifact is a bundle for exactly this program; the audit entry
    /// (<c>update-program.add</c> by <paramref name="actor"/>) commits with it.
    /// </summary>
    public async Task<UpdateProgramRow> AddUpdateProgramAsync(NewUpdateProgram program, string actor, CancellationToken ct)
    {
        var (from, to) = CheckProgram(program);
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
        store.AddUpdateProgram(row, new AuditEntry(actor, "update-program.add", row.Id, $"{row.FromPattern} -> {row.ToPattern} importance {row.Importance}"));
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
        var (from, to) = CheckProgram(program);
        if (store.GetUpdateProgram(program.Id) is not null) { throw new StoreConflictException($"update program {program.Id} already exists"); }
        UpdateProgramRow? row = null;
        await artifacts.AddAsync(bundle, MaxArtifactBytes, (path, c) => CheckBundleAsync(path, program, c), (sha, size) =>
        {
            row = new UpdateProgramRow
            {
                Id = program.Id, FromPattern = from.Id, ToPattern = to.Id, Importance = program.Importance, Priority = program.Priority,
                ArtifactSha256 = sha, ArtifactSize = size,
            };
            // one transaction: a failed write leaves neither the program nor an audit entry, and the bundle is not kept
            store.AddUpdateProgram(row, new AuditEntry(actor, "update-program.add", row.Id, $"{row.FromPattern} -> {row.ToPattern} importance {row.Importance}"),
                new AuditEntry(actor, "artifact.upload", sha, $"{size} bytes"));
        }, ct);
        return row!;
    }

    /// <summary>An update program's fields against the catalogue: its from-pattern and its (verified) to-pattern.</summary>
    private (PatternRow From, PatternRow To) CheckProgram(NewUpdateProgram program)
    {
        RequireId(program.Id, "id");
        RequireId(program.FromPattern, "fromPattern");
        RequireId(program.ToPattern, "toPattern");
        if (program.Importance is < 1 or > 5) { throw new CatalogueRuleException($"importance: {program.Importance} is outside 1..5"); }
        var from = store.GetPattern(program.FromPattern) ?? throw new CatalogueRuleException($"fromPattern: pattern '{program.FromPattern}' does not exist");
        var to = store.GetPattern(program.ToPattern) ?? throw new CatalogueRuleException($"toPattern: pattern '{program.ToPattern}' does not exist");
        if (to.Status != PatternStatus.Verified)
        {
            throw new CatalogueRuleException($"toPattern: pattern '{to.Id}' is {to.Status}; only a verified pattern can be a target");
        }
        if (from.Id == to.Id) { throw new CatalogueRuleException("toPattern: an update program must lead to another pattern"); }
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
    public void SetTargetPattern(string mac, string? pattern, string actor)
    {
        if (pattern is not null && !Apis.InputRules.IsIdentifier(pattern)) { throw new CatalogueRuleException(Apis.InputRules.Identifier("pattern")); }
        if (pattern is not null && store.GetPattern(pattern) is not { Status: PatternStatus.Verified })
        {
            throw new CatalogueRuleException($"targetPattern: '{pattern}' is not a verified pattern");
        }
        store.SetTargetPattern(mac, pattern, new AuditEntry(actor, "unit.target-pattern", mac, pattern ?? "none"));
    }

    /// <summary>Largest artifact accepted (bytes); larger uploads get 413.</summary>
    public const long MaxArtifactBytes = 4L * 1024 * 1024 * 1024;

    /// <summary>
    /// Stores an uploaded artifact (content-addressed); the audit entry (<c>artifact.upload</c> by <paramref name="actor"/>)
    /// is written before the artifact is kept, and nothing is kept when it fails.
    /// </summary>
    /// <exception cref="InvalidDataException">The upload is empty or larger than <see cref="MaxArtifactBytes"/>.</exception>
    public Task<(string Sha256, long Size)> UploadArtifactAsync(Stream content, string actor, CancellationToken ct) =>
        artifacts.AddAsync(content, MaxArtifactBytes, (sha, size) => store.Audit(actor, "artifact.upload", sha, $"{size} bytes"), ct);

    private static void CheckAgainstCatalogue(CatalogueTransaction t, string id, string hardware, string os, IReadOnlyDictionary<string, string> applications)
    {
        foreach (var (app, version) in applications)
        {
            var software = t.GetSoftware(app, version)
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
