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
        return await store.InCatalogueTransactionAsync(async t =>
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
    public async Task DeleteSoftwareAsync(string appId, string version, string actor, CancellationToken ct = default)
    {
        RequireId(appId, "appId");
        RequireId(version, "version");
        await store.InCatalogueTransactionAsync(async t =>
        {
            if (await t.GetSoftwareAsync(appId, version, ct) is null) { throw new KeyNotFoundException($"software {appId} {version} is not in the catalogue"); }
            if ((await PatternsListingAsync(t, appId, version, ct)).FirstOrDefault() is { } pattern)
            {
                throw new CatalogueRuleException($"software {appId} {version} is listed by pattern {pattern.Id}; it cannot be deleted");
            }
            if (await t.SoftwareVersionsAsync(appId, ct) == 1 && await t.FirstPatchForAsync(appId, ct) is { } patch)
            {
                throw new CatalogueRuleException($"software {appId} {version} is the last version of {appId}, which patch {patch.Id} is for; delete the patch first");
            }
            return await t.DeleteSoftwareAsync(appId, version, new AuditEntry(actor, "software.delete", $"{appId} {version}", null), ct);
        }, ct);
    }

    /// <summary>Replaces a patch's fields by the rules of <see cref="AddPatchAsync"/> (its id stays). Audited as <c>patch.edit</c>.</summary>
    /// <exception cref="KeyNotFoundException">There is no such patch.</exception>
    public async Task EditPatchAsync(PatchRow patch, string actor, CancellationToken ct = default)
    {
        CheckPatchFields(patch);
        await store.InCatalogueTransactionAsync(async t =>
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
        await store.InCatalogueTransactionAsync(async t => await t.DeletePatchAsync(id, new AuditEntry(actor, "patch.delete", id, null), ct)
            ? true
            : throw new KeyNotFoundException($"patch {id} does not exist"), ct);
    }

    /// <summary>
    /// Removes a draft pattern that no update program, unit or rollout refers to (verified and retired patterns stay: units
    /// may run them and the history names them). Audited as <c>pattern.delete</c>. A refused deletion writes nothing.
    /// </summary>
    /// <exception cref="KeyNotFoundException">There is no such pattern.</exception>
    public async Task DeletePatternAsync(string id, string actor, CancellationToken ct = default)
    {
        RequireId(id, "id");
        await store.InCatalogueTransactionAsync(async t =>
        {
            var pattern = await t.GetPatternAsync(id, ct) ?? throw new KeyNotFoundException($"pattern {id} does not exist");
            if (pattern.Status != PatternStatus.Draft)
            {
                throw new CatalogueRuleException($"pattern {id} is {pattern.Status}; only a draft can be deleted (retire a verified one)");
            }
            var (programs, units, rollouts) = await t.PatternReferencesAsync(id, ct);
            if (programs + units + rollouts > 0)
            {
                throw new CatalogueRuleException($"pattern {id} is referred to by {programs} update program(s), {units} unit(s) and {rollouts} rollout(s); it cannot be deleted");
            }
            return await t.DeleteDraftPatternAsync(id, new AuditEntry(actor, "pattern.delete", id, null), ct)
                ? true
                : throw new CatalogueRuleException($"pattern {id} changed while being deleted; try again");
        }, ct);
    }

    /// <summary>Every pattern (any status) whose applications include <paramref name="appId"/> at <paramref name="version"/>.</summary>
    private static async Task<IEnumerable<PatternRow>> PatternsListingAsync(CatalogueTransaction t, string appId, string version, CancellationToken ct) =>
        (await t.ListPatternsAsync(ct: ct)).Where(p => (JsonSerializer.Deserialize(p.Applications, ProtocolJson.Default.DictionaryStringString) ?? [])
            .TryGetValue(appId, out var listed) && listed == version);
}
