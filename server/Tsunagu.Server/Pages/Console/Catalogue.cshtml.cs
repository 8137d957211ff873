using Microsoft.AspNetCore.Mvc;
using Tsunagu.Server.Catalogue;
using Tsunagu.Server.Data;
using Tsunagu.Server.Pages.Shared;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Pages.Console;

/// <summary>The catalogue (patent figs. 7-8): software, patches by importance, install patterns and their lifecycle, update programs, artifact and install-media digests.</summary>
[ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager, OperatorRoles.Support, OperatorRoles.Auditor)]
public sealed class CatalogueModel(TsunaguStore store, CatalogueService catalogue, ArtifactStore artifacts) : SessionPageModel("console")
{
    public IReadOnlyList<SoftwareRow> Software { get; private set; } = [];
    public IReadOnlyList<PatchRow> Patches { get; private set; } = [];
    public IReadOnlyList<Apis.PatternView> Patterns { get; private set; } = [];
    public IReadOnlyList<UpdateProgramRow> Programs { get; private set; } = [];
    public IReadOnlyList<(string Sha256, long Size)> Media { get; private set; } = [];
    public IReadOnlyList<Tsunagu.Protocol.MediaRegistration> GenuineMedia { get; private set; } = [];

    public void OnGet()
    {
        Software = store.ListSoftware();
        Patches = store.ListPatches();
        Patterns = store.ListPatterns().Select(Apis.CatalogueApi.ToView).ToList();
        Programs = store.ListUpdatePrograms();
        Media = artifacts.List();
        GenuineMedia = store.ListMedia();
    }

    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public IActionResult OnPostVerify(string id) => Apply(id, "pattern.verify", () => catalogue.Verify(id), "verified");

    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public IActionResult OnPostRetire(string id) => Apply(id, "pattern.retire", () => catalogue.Retire(id), "retired");

    private IActionResult Apply(string id, string action, Func<PatternRow> change, string done)
    {
        try
        {
            change();
            store.Audit(Who, action, id, "web console");
            Notice = $"Pattern {id} {done}.";
        }
        catch (Exception e) when (e is CatalogueRuleException or KeyNotFoundException)
        {
            Problem = e.Message;
        }
        return RedirectToPage();
    }
}
