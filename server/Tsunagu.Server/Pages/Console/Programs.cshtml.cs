using System.Globalization;
using Microsoft.AspNetCore.Mvc;
using Tsunagu.Server.Catalogue;
using Tsunagu.Server.Data;
using Tsunagu.Server.Pages.Shared;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Pages.Console;

/// <summary>
/// Update programs (patent 0048-0050) and the form that adds one with its signed bundle in one upload
/// (<see cref="CatalogueService.AddUpdateProgramWithBundleAsync"/>: the API's rules; a bundle with a bad signature,
/// or for another program, is refused and nothing is kept or written).
/// </summary>
[ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager, OperatorRoles.Support, OperatorRoles.Auditor)]
[RequestSizeLimit(CatalogueService.MaxArtifactBytes)]
[RequestFormLimits(MultipartBodyLengthLimit = CatalogueService.MaxArtifactBytes)]
public sealed class ProgramsModel(TsunaguStore store, CatalogueService catalogue) : SessionPageModel("console")
{
    public IReadOnlyList<UpdateProgramRow> Programs { get; private set; } = [];
    public IReadOnlyList<Apis.PatternView> Patterns { get; private set; } = [];

    public async Task OnGetAsync()
    {
        Programs = await store.Catalogue.ListUpdateProgramsAsync(HttpContext.RequestAborted);
        Patterns = (await store.Catalogue.ListPatternsAsync(ct: HttpContext.RequestAborted)).Select(CatalogueService.View).ToList();
    }

    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public async Task<IActionResult> OnPostAsync(IFormFile? bundle, string? id, string? fromPattern, string? toPattern, string? importance, string? priority)
    {
        if (!int.TryParse(importance, NumberStyles.None, CultureInfo.InvariantCulture, out var imp))
        {
            return Refuse("importance: a whole number from 1 to 5");
        }
        var pri = 0;
        if (!string.IsNullOrWhiteSpace(priority) && !int.TryParse(priority, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out pri))
        {
            return Refuse("priority: a whole number");
        }
        if (bundle is null || bundle.Length == 0) { return Refuse("bundle: choose the signed bundle file (.tsb) to upload"); }
        var program = new NewUpdateProgram(id?.Trim() ?? "", fromPattern?.Trim() ?? "", toPattern?.Trim() ?? "", imp, pri, "");
        try
        {
            await using var content = bundle.OpenReadStream();
            var row = await catalogue.AddUpdateProgramWithBundleAsync(program, content, Who, HttpContext.RequestAborted);
            Notice = $"Update program {row.Id} added ({row.FromPattern} → {row.ToPattern}), bundle {row.ArtifactSha256[..12]}… ({row.ArtifactSize} bytes).";
        }
        catch (Exception e) when (e is CatalogueRuleException or StoreConflictException or InvalidDataException)
        {
            return Refuse(e.Message);
        }
        return RedirectToPage();
    }

    /// <summary>
    /// Deletes an update program, by <see cref="CatalogueService.DeleteUpdateProgramAsync"/>, once the operator confirmed it
    /// (<paramref name="confirm"/> is the program's id, typed or ticked in the confirmation step); a refusal names what refers to it.
    /// </summary>
    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public async Task<IActionResult> OnPostDeleteAsync(string? id, string? confirm)
    {
        var program = id?.Trim() ?? "";
        if (confirm != program || program.Length == 0)
        {
            Problem = $"Nothing was deleted: confirm: tick \"Yes, delete {Apis.InputRules.Quote(program)}\" to delete the update program";
            return RedirectToPage();
        }
        try
        {
            await catalogue.DeleteUpdateProgramAsync(program, Who, HttpContext.RequestAborted);
            Notice = $"Update program {program} deleted (its bundle stays among the artifact digests).";
        }
        catch (Exception e) when (e is CatalogueRuleException or StoreConflictException or KeyNotFoundException)
        {
            Problem = "Nothing was deleted: " + e.Message;
        }
        return RedirectToPage();
    }

    private RedirectToPageResult Refuse(string why)
    {
        Problem = "Nothing was added: " + why;
        return RedirectToPage();
    }
}
