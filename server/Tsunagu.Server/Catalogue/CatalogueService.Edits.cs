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
    public SoftwareRow EditSoftware(SoftwareRow software, string actor)
    {
        RequireId(software.AppId, "appId");
        RequireId(software.Version, "version");
        RequireText(software.Name, "name", true);
        RequireText(software.RequiredHardware, "requiredHardware", false);
        RequireText(software.RequiredOs, "requiredOs", false);
        // the rules read the catalogue in the transaction that writes: a pattern added meanwhile is either seen or waits
        return store.InCatalogueTransaction(t =>
        {
            if (t.GetSoftware(software.AppId, software.Version) is null) { throw new KeyNotFoundException($"software {software.AppId} {software.Version} is not in the catalogue"); }
            foreach (var pattern in PatternsListing(t, software.AppId, software.Version))
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
            t.UpdateSoftware(software, new AuditEntry(actor, "software.edit", $"{software.AppId} {software.Version}", software.Name));
            return t.GetSoftware(software.AppId, software.Version)!;
        });
    }

    /// <summary>
    /// Removes catalogued software that no pattern lists, and that is not the last version of an application a patch is for.
    /// Audited as <c>software.delete</c>. The rules and the removal are one transaction.
    /// </summary>
    /// <exception cref="KeyNotFoundException">The software is not catalogued.</exception>
    public void DeleteSoftware(string appId, string version, string actor)
    {
        RequireId(appId, "appId");
        RequireId(version, "version");
        store.InCatalogueTransaction(t =>
        {
            if (t.GetSoftware(appId, version) is null) { throw new KeyNotFoundException($"software {appId} {version} is not in the catalogue"); }
            if (PatternsListing(t, appId, version).FirstOrDefault() is { } pattern)
            {
                throw new CatalogueRuleException($"software {appId} {version} is listed by pattern {pattern.Id}; it cannot be deleted");
            }
            if (t.SoftwareVersions(appId) == 1 && t.FirstPatchFor(appId) is { } patch)
            {
                throw new CatalogueRuleException($"software {appId} {version} is the last version of {appId}, which patch {patch.Id} is for; delete the patch first");
            }
            return t.DeleteSoftware(appId, version, new AuditEntry(actor, "software.delete", $"{appId} {version}", null));
        });
    }

    /// <summary>Replaces a patch's fields by the rules of <see cref="AddPatch"/> (its id stays). Audited as <c>patch.edit</c>.</summary>
    /// <exception cref="KeyNotFoundException">There is no such patch.</exception>
    public void EditPatch(PatchRow patch, string actor)
    {
        CheckPatchFields(patch);
        store.InCatalogueTransaction(t =>
        {
            if (t.GetPatch(patch.Id) is null) { throw new KeyNotFoundException($"patch {patch.Id} does not exist"); }
            CheckPatchApplication(t, patch);
            return t.UpdatePatch(patch, new AuditEntry(actor, "patch.edit", patch.Id, $"{patch.TargetApp} {patch.Version} importance {patch.Importance}"));
        });
    }

    /// <summary>Removes a patch (nothing refers to patches). Audited as <c>patch.delete</c>.</summary>
    /// <exception cref="KeyNotFoundException">There is no such patch.</exception>
    public void DeletePatch(string id, string actor)
    {
        RequireId(id, "id");
        store.InCatalogueTransaction(t => t.DeletePatch(id, new AuditEntry(actor, "patch.delete", id, null))
            ? true
            : throw new KeyNotFoundException($"patch {id} does not exist"));
    }

    /// <summary>
    /// Removes a draft pattern that no update program, unit or rollout refers to (verified and retired patterns stay: units
    /// may run them and the history names them). Audited as <c>pattern.delete</c>. A refused deletion writes nothing.
    /// </summary>
    /// <exception cref="KeyNotFoundException">There is no such pattern.</exception>
    public void DeletePattern(string id, string actor)
    {
        RequireId(id, "id");
        store.InCatalogueTransaction(t =>
        {
            var pattern = t.GetPattern(id) ?? throw new KeyNotFoundException($"pattern {id} does not exist");
            if (pattern.Status != PatternStatus.Draft)
            {
                throw new CatalogueRuleException($"pattern {id} is {pattern.Status}; only a draft can be deleted (retire a verified one)");
            }
            var (programs, units, rollouts) = t.PatternReferences(id);
            if (programs + units + rollouts > 0)
            {
                throw new CatalogueRuleException($"pattern {id} is referred to by {programs} update program(s), {units} unit(s) and {rollouts} rollout(s); it cannot be deleted");
            }
            return t.DeleteDraftPattern(id, new AuditEntry(actor, "pattern.delete", id, null))
                ? true
                : throw new CatalogueRuleException($"pattern {id} changed while being deleted; try again");
        });
    }

    /// <summary>Every pattern (any status) whose applications include <paramref name="appId"/> at <paramref name="version"/>.</summary>
    private static IEnumerable<PatternRow> PatternsListing(CatalogueTransaction t, string appId, string version) =>
        t.ListPatterns().Where(p => (JsonSerializer.Deserialize(p.Applications, ProtocolJson.Default.DictionaryStringString) ?? [])
            .TryGetValue(appId, out var listed) && listed == version);
}
