using Microsoft.AspNetCore.Mvc;
using Tsunagu.Server.Catalogue;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Pages.Console;

// The unit's target install pattern (PUT /api/v1/units/{mac}/target-pattern in the console): the same rules and audit entry.
public sealed partial class UnitModel
{
    /// <summary>The verified patterns a unit can be given as its target.</summary>
    public IReadOnlyList<string> TargetChoices() =>
        [.. HttpContext.RequestServices.GetRequiredService<TsunaguStore>().ListPatterns(PatternStatus.Verified).Select(p => p.Id)];

    /// <summary>Sets (a verified pattern) or clears (empty) the unit's target pattern, by <see cref="CatalogueService.SetTargetPattern"/>.</summary>
    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public IActionResult OnPostTargetPattern(string mac, string? target)
    {
        if (!Load(mac)) { return NotFound(); }
        var pattern = string.IsNullOrWhiteSpace(target) ? null : target.Trim();
        try
        {
            HttpContext.RequestServices.GetRequiredService<CatalogueService>().SetTargetPattern(Unit.Mac, pattern, Who);
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
