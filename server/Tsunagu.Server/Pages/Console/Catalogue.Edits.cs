using System.Globalization;
using Microsoft.AspNetCore.Mvc;
using Tsunagu.Server.Catalogue;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Pages.Console;

// Patches added, software and patches edited, and software, patches and draft patterns deleted from the catalogue page:
// CatalogueService's rules, as on the API; a refused form changes nothing and says why.
public sealed partial class CatalogueModel
{
    /// <summary>Adds a patch, by <see cref="CatalogueService.AddPatchAsync"/>.</summary>
    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public async Task<IActionResult> OnPostAddPatchAsync(string? id, string? name, string? version, string? targetApp, string? importance, string? osVersion, string? hardwareVersion)
    {
        if (Patch(id, name, version, targetApp, importance, osVersion, hardwareVersion) is not { } patch) { return Refused("Nothing was created", "importance: a whole number from 1 to 5"); }
        return await ChangeAsync(async () => await catalogue.AddPatchAsync(patch, Who, HttpContext.RequestAborted), $"Patch {patch.Id} added.");
    }

    /// <summary>Changes a patch's fields, by <see cref="CatalogueService.EditPatchAsync"/>.</summary>
    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public async Task<IActionResult> OnPostEditPatchAsync(string? id, string? name, string? version, string? targetApp, string? importance, string? osVersion, string? hardwareVersion)
    {
        if (Patch(id, name, version, targetApp, importance, osVersion, hardwareVersion) is not { } patch) { return Refused("Nothing was changed", "importance: a whole number from 1 to 5"); }
        return await ChangeAsync(async () => await catalogue.EditPatchAsync(patch, Who, HttpContext.RequestAborted), $"Patch {patch.Id} changed.", "Nothing was changed");
    }

    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public async Task<IActionResult> OnPostDeletePatchAsync(string? id) =>
        await ChangeAsync(async () => await catalogue.DeletePatchAsync(id?.Trim() ?? "", Who, HttpContext.RequestAborted), $"Patch {id} deleted.", "Nothing was deleted");

    /// <summary>Changes software's name and requirements, by <see cref="CatalogueService.EditSoftwareAsync"/>.</summary>
    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public async Task<IActionResult> OnPostEditSoftwareAsync(string? appId, string? version, string? name, string? requiredHardware, string? requiredOs)
    {
        var row = new SoftwareRow
        {
            AppId = appId?.Trim() ?? "", Version = version?.Trim() ?? "", Name = name?.Trim() ?? "",
            RequiredHardware = string.IsNullOrWhiteSpace(requiredHardware) ? null : requiredHardware.Trim(),
            RequiredOs = string.IsNullOrWhiteSpace(requiredOs) ? null : requiredOs.Trim(),
        };
        return await ChangeAsync(async () => await catalogue.EditSoftwareAsync(row, Who, HttpContext.RequestAborted), $"Software {row.AppId} {row.Version} changed.", "Nothing was changed");
    }

    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public async Task<IActionResult> OnPostDeleteSoftwareAsync(string? appId, string? version) =>
        await ChangeAsync(async () => await catalogue.DeleteSoftwareAsync(appId?.Trim() ?? "", version?.Trim() ?? "", Who, HttpContext.RequestAborted), $"Software {appId} {version} deleted.", "Nothing was deleted");

    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public async Task<IActionResult> OnPostDeletePatternAsync(string? id) =>
        await ChangeAsync(async () => await catalogue.DeletePatternAsync(id?.Trim() ?? "", Who, HttpContext.RequestAborted), $"Draft pattern {id} deleted.", "Nothing was deleted");

    /// <summary>
    /// Deletes a registered medium's digest, by <see cref="CatalogueService.DeleteMediumAsync"/>, once the operator confirmed it
    /// (<paramref name="confirm"/> is the digest, ticked in the confirmation step).
    /// </summary>
    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public async Task<IActionResult> OnPostDeleteMediumAsync(string? digest, string? confirm)
    {
        var d = digest?.Trim() ?? "";
        if (confirm != d || d.Length == 0) { return Refused("Nothing was deleted", $"confirm: tick \"Yes, delete\" to delete medium {Apis.InputRules.Quote(d)}"); }
        return await ChangeAsync(async () => await catalogue.DeleteMediumAsync(d, Who, HttpContext.RequestAborted), $"Medium {d} deleted: units presenting it are told it is not genuine.", "Nothing was deleted");
    }

    private static PatchRow? Patch(string? id, string? name, string? version, string? targetApp, string? importance, string? osVersion, string? hardwareVersion) =>
        !int.TryParse(importance, NumberStyles.None, CultureInfo.InvariantCulture, out var imp)
            ? null
            : new PatchRow
            {
                Id = id?.Trim() ?? "", Name = name?.Trim() ?? "", Version = version?.Trim() ?? "", TargetApp = targetApp?.Trim() ?? "", Importance = imp,
                OsVersion = string.IsNullOrWhiteSpace(osVersion) ? null : osVersion.Trim(),
                HardwareVersion = string.IsNullOrWhiteSpace(hardwareVersion) ? null : hardwareVersion.Trim(),
            };

    private RedirectToPageResult Refused(string nothing, string why)
    {
        Problem = $"{nothing}: {why}";
        return RedirectToPage();
    }
}
