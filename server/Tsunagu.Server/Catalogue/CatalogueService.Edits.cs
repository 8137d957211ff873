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
        if (store.GetSoftware(software.AppId, software.Version) is null) { throw new KeyNotFoundException($"software {software.AppId} {software.Version} is not in the catalogue"); }
        foreach (var pattern in PatternsListing(software.AppId, software.Version))
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
        if (!store.UpdateSoftware(software, new AuditEntry(actor, "software.edit", $"{software.AppId} {software.Version}", software.Name)))
        {
            throw new KeyNotFoundException($"software {software.AppId} {software.Version} is not in the catalogue");
        }
        return store.GetSoftware(software.AppId, software.Version)!;
    }

    /// <summary>
    /// Removes catalogued software that no pattern lists, and that is not the last version of an application a patch is for.
    /// Audited as <c>software.delete</c>.
    /// </summary>
    /// <exception cref="KeyNotFoundException">The software is not catalogued.</exception>
    public void DeleteSoftware(string appId, string version, string actor)
    {
        RequireId(appId, "appId");
        RequireId(version, "version");
        if (store.GetSoftware(appId, version) is null) { throw new KeyNotFoundException($"software {appId} {version} is not in the catalogue"); }
        if (PatternsListing(appId, version).FirstOrDefault() is { } pattern)
        {
            throw new CatalogueRuleException($"software {appId} {version} is listed by pattern {pattern.Id}; it cannot be deleted");
        }
        if (store.ListSoftware(appId).Count == 1 && store.ListPatches().FirstOrDefault(p => p.TargetApp == appId) is { } patch)
        {
            throw new CatalogueRuleException($"software {appId} {version} is the last version of {appId}, which patch {patch.Id} is for; delete the patch first");
        }
        if (!store.DeleteSoftware(appId, version, new AuditEntry(actor, "software.delete", $"{appId} {version}", null)))
        {
            throw new KeyNotFoundException($"software {appId} {version} is not in the catalogue");
        }
    }

    /// <summary>Replaces a patch's fields by the rules of <see cref="AddPatch"/> (its id stays). Audited as <c>patch.edit</c>.</summary>
    /// <exception cref="KeyNotFoundException">There is no such patch.</exception>
    public void EditPatch(PatchRow patch, string actor)
    {
        CheckPatch(patch);
        if (store.GetPatch(patch.Id) is null || !store.UpdatePatch(patch, new AuditEntry(actor, "patch.edit", patch.Id, $"{patch.TargetApp} {patch.Version} importance {patch.Importance}")))
        {
            throw new KeyNotFoundException($"patch {patch.Id} does not exist");
        }
    }

    /// <summary>Removes a patch (nothing refers to patches). Audited as <c>patch.delete</c>.</summary>
    /// <exception cref="KeyNotFoundException">There is no such patch.</exception>
    public void DeletePatch(string id, string actor)
    {
        RequireId(id, "id");
        if (!store.DeletePatch(id, new AuditEntry(actor, "patch.delete", id, null)))
        {
            throw new KeyNotFoundException($"patch {id} does not exist");
        }
    }

    /// <summary>
    /// Removes a draft pattern that no update program, unit or rollout refers to (verified and retired patterns stay: units
    /// may run them and the history names them). Audited as <c>pattern.delete</c>.
    /// </summary>
    /// <exception cref="KeyNotFoundException">There is no such pattern.</exception>
    public void DeletePattern(string id, string actor)
    {
        RequireId(id, "id");
        var pattern = store.GetPattern(id) ?? throw new KeyNotFoundException($"pattern {id} does not exist");
        if (pattern.Status != PatternStatus.Draft)
        {
            throw new CatalogueRuleException($"pattern {id} is {pattern.Status}; only a draft can be deleted (retire a verified one)");
        }
        var (programs, units, rollouts) = store.PatternReferences(id);
        if (programs + units + rollouts > 0)
        {
            throw new CatalogueRuleException($"pattern {id} is referred to by {programs} update program(s), {units} unit(s) and {rollouts} rollout(s); it cannot be deleted");
        }
        if (!store.DeleteDraftPattern(id, new AuditEntry(actor, "pattern.delete", id, null)))
        {
            throw new CatalogueRuleException($"pattern {id} changed while being deleted; try again");
        }
    }

    /// <summary>Every pattern (any status) whose applications include <paramref name="appId"/> at <paramref name="version"/>.</summary>
    private IEnumerable<PatternRow> PatternsListing(string appId, string version) =>
        store.ListPatterns().Where(p => (JsonSerializer.Deserialize(p.Applications, ProtocolJson.Default.DictionaryStringString) ?? [])
            .TryGetValue(appId, out var listed) && listed == version);
}
