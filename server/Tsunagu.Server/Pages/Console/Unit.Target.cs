using Microsoft.AspNetCore.Mvc;
using Tsunagu.Server.Catalogue;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Pages.Console;

// The unit's target install pattern (PUT /api/v1/units/{mac}/target-pattern in the console): the same rules and audit entry.
public sealed partial class UnitModel
{
    /// <summary>The verified patterns a unit can be given as its target.</summary>
    public async Task<IReadOnlyList<string>> TargetChoicesAsync() =>
        [.. (await HttpContext.RequestServices.GetRequiredService<TsunaguStore>().Catalogue.ListPatternsAsync(PatternStatus.Verified, HttpContext.RequestAborted)).Select(p => p.Id)];

    /// <summary>Sets (a verified pattern) or clears (empty) the unit's target pattern, by <see cref="CatalogueService.SetTargetPatternAsync"/>.</summary>
    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public async Task<IActionResult> OnPostTargetPattern(string mac, string? target)
    {
        if (!await LoadAsync(mac, HttpContext.RequestAborted)) { return NotFound(); }
        var pattern = string.IsNullOrWhiteSpace(target) ? null : target.Trim();
        try
        {
            await HttpContext.RequestServices.GetRequiredService<CatalogueService>().SetTargetPatternAsync(Unit.Mac, pattern, Who, HttpContext.RequestAborted);
            Notice = pattern is null
                ? $"{Unit.Mac} has no target pattern now: it follows the update programs to the newest pattern."
                : $"{Unit.Mac} now targets {pattern}; it moves there at its next version check.";
        }
        catch (CatalogueRuleException e)
        {
            Problem = "Nothing was changed: " + e.Message;
        }
        return RedirectToPage(new { mac = Unit.Mac });
    }
}
