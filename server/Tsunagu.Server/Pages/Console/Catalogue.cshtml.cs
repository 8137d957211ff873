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
    public IActionResult OnPostVerify(string id) => Apply(id, () => catalogue.Verify(id, Who, "web console"), "verified");

    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public IActionResult OnPostRetire(string id) => Apply(id, () => catalogue.Retire(id, Who, "web console"), "retired");

    private IActionResult Apply(string id, Func<PatternRow> change, string done)
    {
        try
        {
            change();
            Notice = $"Pattern {id} {done}.";
        }
        catch (Exception e) when (e is CatalogueRuleException or KeyNotFoundException)
        {
            Problem = e.Message;
        }
        return RedirectToPage();
    }
}
