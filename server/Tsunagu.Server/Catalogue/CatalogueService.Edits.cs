using System.Text.Json;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;

namespace Tsunagu.Server.Catalogue;

// Editing and deleting catalogue entries, where the rules allow it: nothing a pattern, a unit, an update program or a
// rollout refers to is deleted, and an edit that would make a pattern disagree with its software is refused.
public sealed partial class CatalogueService
{
    /// <summary>
    /// Changes the name and the hardware/OS requirements of catalogued software; a requirement that a pattern listing this
    /// version (draft, verified or retired) would no longer meet is refused. Audited as <c>software.edit</c>.
    /// </summary>
    /// <exception cref="KeyNotFoundException">The software is not catalogued.</exception>
    public async Task<SoftwareRow> EditSoftwareAsync(SoftwareRow software, string actor, CancellationToken ct = default)
    {
        RequireId(software.AppId, "appId");
        RequireId(software.Version, "version");
        RequireText(software.Name, "name", true);
        RequireText(software.RequiredHardware, "requiredHardware", false);
        RequireText(software.RequiredOs, "requiredOs", false);
        // the rules read the catalogue in the transaction that writes: a pattern added meanwhile is either seen or waits
        return await store.CatalogueEdits.InCatalogueTransactionAsync(async t =>
        {
            if (await t.GetSoftwareAsync(software.AppId, software.Version, ct) is null) { throw new KeyNotFoundException($"software {software.AppId} {software.Version} is not in the catalogue"); }
            foreach (var pattern in await PatternsListingAsync(t, software.AppId, software.Version, ct))
            {
                if (!Allows(software.RequiredHardware, pattern.HardwareVersion))
                {
                    throw new CatalogueRuleException($"requiredHardware: pattern {pattern.Id} lists {software.AppId} {software.Version} and is for hardware {pattern.HardwareVersion}");
                }
                if (!Allows(software.RequiredOs, pattern.OsVersion))
                {
                    throw new CatalogueRuleException($"requiredOs: pattern {pattern.Id} lists {software.AppId} {software.Version} and has OS {pattern.OsVersion}");
                }
            }
            await t.UpdateSoftwareAsync(software, new AuditEntry(actor, "software.edit", $"{software.AppId} {software.Version}", software.Name), ct);
            return (await t.GetSoftwareAsync(software.AppId, software.Version, ct))!;
        }, ct);
    }

    /// <summary>
    /// Removes catalogued software that no pattern lists, and that is not the last version of an application a patch is for.
    /// Audited as <c>software.delete</c>. The rules and the removal are one transaction.
    /// </summary>
    /// <exception cref="KeyNotFoundException">The software is not catalogued.</exception>
    /// <exception cref="StoreConflictException">A pattern or a patch refers to it; the message names the referrer.</exception>
    public async Task DeleteSoftwareAsync(string appId, string version, string actor, CancellationToken ct = default)
    {
        RequireId(appId, "appId");
        RequireId(version, "version");
        await store.CatalogueEdits.InCatalogueTransactionAsync(async t =>
        {
            if (await t.GetSoftwareAsync(appId, version, ct) is null) { throw new KeyNotFoundException($"software {appId} {version} is not in the catalogue"); }
            if ((await PatternsListingAsync(t, appId, version, ct)).FirstOrDefault() is { } pattern)
            {
                throw new StoreConflictException($"software {appId} {version} is listed by pattern {pattern.Id}; it cannot be deleted");
            }
            if (await t.SoftwareVersionsAsync(appId, ct) == 1 && await t.FirstPatchForAsync(appId, ct) is { } patch)
            {
                throw new StoreConflictException($"software {appId} {version} is the last version of {appId}, which patch {patch.Id} is for; delete the patch first");
            }
            return await t.DeleteSoftwareAsync(appId, version, new AuditEntry(actor, "software.delete", $"{appId} {version}", null), ct);
        }, ct);
    }

    /// <summary>Replaces a patch's fields by the rules of <see cref="AddPatchAsync"/> (its id stays). Audited as <c>patch.edit</c>.</summary>
    /// <exception cref="KeyNotFoundException">There is no such patch.</exception>
    public async Task EditPatchAsync(PatchRow patch, string actor, CancellationToken ct = default)
    {
        CheckPatchFields(patch);
        await store.CatalogueEdits.InCatalogueTransactionAsync(async t =>
        {
            if (await t.GetPatchAsync(patch.Id, ct) is null) { throw new KeyNotFoundException($"patch {patch.Id} does not exist"); }
            await CheckPatchApplicationAsync(t, patch, ct);
            return await t.UpdatePatchAsync(patch, new AuditEntry(actor, "patch.edit", patch.Id, $"{patch.TargetApp} {patch.Version} importance {patch.Importance}"), ct);
        }, ct);
    }

    /// <summary>Removes a patch (nothing refers to patches). Audited as <c>patch.delete</c>.</summary>
    /// <exception cref="KeyNotFoundException">There is no such patch.</exception>
    public async Task DeletePatchAsync(string id, string actor, CancellationToken ct = default)
    {
        RequireId(id, "id");
        await store.CatalogueEdits.InCatalogueTransactionAsync(async t => await t.DeletePatchAsync(id, new AuditEntry(actor, "patch.delete", id, null), ct)
            ? true
            : throw new KeyNotFoundException($"patch {id} does not exist"), ct);
    }

    /// <summary>
    /// Removes a draft pattern that no update program, unit or rollout refers to (verified and retired patterns stay: units
    /// may run them and the history names them). Audited as <c>pattern.delete</c>. A refused deletion writes nothing.
    /// </summary>
    /// <exception cref="KeyNotFoundException">There is no such pattern.</exception>
    /// <exception cref="StoreConflictException">It is not a draft, or something refers to it (the message names the first of each kind).</exception>
    public async Task DeletePatternAsync(string id, string actor, CancellationToken ct = default)
    {
        RequireId(id, "id");
        await store.CatalogueEdits.InCatalogueTransactionAsync(async t =>
        {
            var pattern = await t.GetPatternAsync(id, ct) ?? throw new KeyNotFoundException($"pattern {id} does not exist");
            if (pattern.Status != PatternStatus.Draft)
            {
                throw new StoreConflictException($"pattern {id} is {pattern.Status}; only a draft can be deleted (retire a verified one)");
            }
            var (programs, units, rollouts) = await t.PatternReferencesAsync(id, ct);
            string[] by = [.. new[] { (Referrers: programs, Kind: "update program"), (Referrers: units, Kind: "unit"), (Referrers: rollouts, Kind: "rollout") }
                .Where(r => r.Referrers.Count > 0)
                .Select(r => $"{r.Kind} {r.Referrers.First}{More(r.Referrers.Count)}")];
            if (by.Length > 0)
            {
                throw new StoreConflictException($"pattern {id} is referred to by {string.Join(", ", by)}; it cannot be deleted");
            }
            return await t.DeleteDraftPatternAsync(id, new AuditEntry(actor, "pattern.delete", id, null), ct)
                ? true
                : throw new StoreConflictException($"pattern {id} changed while being deleted; try again");
        }, ct);
    }

    /// <summary>
    /// Removes an update program that nothing refers to: no rollout still deciding (running or paused) moves units with it,
    /// no unit on its from-pattern is being updated (its report will name the program), no unit on its from-pattern
    /// targets its to-pattern unless another program leads there too, and it has no way back (that would become an update
    /// offered to every unit on its to-pattern). The rules read inside the deleting transaction, so a
    /// rollout or a reference committed meanwhile is seen. Audited as <c>update-program.delete</c>. The bundle file stays
    /// in the artifact store (content-addressed, listed as an artifact digest), but units are served a bundle only while a
    /// program names it. A version check reads the program again in its transaction (serialised with this one), so it never
    /// offers it once deleted, and a deletion after such a check sees the unit being updated from its pattern.
    /// </summary>
    /// <exception cref="KeyNotFoundException">There is no such program.</exception>
    /// <exception cref="StoreConflictException">Something refers to it; the message names the referrer.</exception>
    public async Task DeleteUpdateProgramAsync(string id, string actor, CancellationToken ct = default)
    {
        RequireId(id, "id");
        await store.CatalogueEdits.InCatalogueTransactionAsync(async t =>
        {
            var program = await t.GetUpdateProgramAsync(id, ct) ?? throw new KeyNotFoundException($"update program {id} does not exist");
            if (await t.ActiveRolloutsOfProgramAsync(id, ct) is [var rollout, ..] rollouts)
            {
                throw new StoreConflictException($"update program {id} is used by rollout {rollout}{More(rollouts.Count)}, which is not finished; abort it or let it complete first");
            }
            if (await t.WaysBackOfAsync(program, ct) is [var back, ..] backs)
            {
                // before: the way back became an ordinary program and every unit on the to-pattern was offered a downgrade
                throw new StoreConflictException($"update program {id} has a way back, {back}{More(backs.Count)} ({program.ToPattern} -> {program.FromPattern}), " +
                                                 $"which without it would be offered as an update to every unit on {program.ToPattern}; delete the way back first");
            }
            if (await t.UnitsNeedingProgramAsync(program, ct) is [var mac, ..] units)
            {
                throw new StoreConflictException($"update program {id} is needed by unit {mac}{More(units.Count)} (on {program.FromPattern}, and being updated from it or targeting {program.ToPattern}); " +
                                                 "wait for its update or change its target first");
            }
            return await t.DeleteUpdateProgramAsync(id, new AuditEntry(actor, "update-program.delete", id, $"{program.FromPattern} -> {program.ToPattern} artifact {program.ArtifactSha256}"), ct);
        }, ct);
    }

    /// <summary>
    /// Removes a registered install medium's digest: units presenting it from then on are told it is not genuine. Nothing in
    /// the server's tables refers to a medium (a unit's media checks are audit entries, kept as history), so only an unknown
    /// digest is refused. Audited as <c>media.delete</c>; only the digest and name are stored, so no file is removed.
    /// </summary>
    /// <exception cref="KeyNotFoundException">The digest is not registered.</exception>
    public async Task DeleteMediumAsync(string digest, string actor, CancellationToken ct = default)
    {
        var (d, problem) = ArtifactStore.ReadDigest(digest);
        if (problem is not null) { throw new CatalogueRuleException(problem); }
        await store.CatalogueEdits.InCatalogueTransactionAsync(async t =>
        {
            var medium = await t.GetMediumAsync(d, ct) ?? throw new KeyNotFoundException($"medium {d} is not registered");
            return await t.DeleteMediumAsync(d, new AuditEntry(actor, "media.delete", d, medium.Name), ct);
        }, ct);
    }

    /// <summary>
    /// The registration as stored (digest in lower case, name trimmed), or why it is refused: the digest must be a
    /// SHA-256 in hex, the name 1-128 printable characters. The API and the console use the same rules.
    /// </summary>
    public static (MediaRegistration? Medium, string? Problem) CheckMedium(MediaRegistration? r)
    {
        var (digest, problem) = ArtifactStore.ReadDigest(r?.Digest);
        if (problem is not null) { return (null, problem); }
        if (!Apis.InputRules.IsText(r!.Name, 128)) { return (null, "name: required; " + Apis.InputRules.Text("name", 128)); }
        return (new MediaRegistration(digest, r.Name.Trim()), null);
    }

    /// <summary>Registers a medium <see cref="CheckMedium"/> accepted, with its audit entry (<c>media.register</c>).</summary>
    /// <exception cref="StoreConflictException">The digest is registered already.</exception>
    public Task RegisterMediumAsync(MediaRegistration medium, string actor, CancellationToken ct = default) =>
        store.Media.AddMediumAsync(medium.Digest, medium.Name, new AuditEntry(actor, "media.register", medium.Digest, medium.Name), ct);

    private static string More(int count) => count > 1 ? $" and {count - 1} more" : "";

    /// <summary>Every pattern (any status) whose applications include <paramref name="appId"/> at <paramref name="version"/>.</summary>
    private static async Task<IEnumerable<PatternRow>> PatternsListingAsync(CatalogueTransaction t, string appId, string version, CancellationToken ct) =>
        (await t.ListPatternsAsync(ct: ct)).Where(p => (JsonSerializer.Deserialize(p.Applications, ProtocolJson.Default.DictionaryStringString) ?? [])
            .TryGetValue(appId, out var listed) && listed == version);
}
