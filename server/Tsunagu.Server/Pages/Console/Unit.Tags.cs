using Microsoft.AspNetCore.Mvc;
using Tsunagu.Server.Data;
using Tsunagu.Server.Fleet;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Pages.Console;

// The unit's tags (PUT /api/v1/units/{mac}/tags in the console): the same grammar (Fleet.Tags), roles and audit entry.
public sealed partial class UnitModel
{
    /// <summary>Longest text the tags field takes: every tag at its longest, one separator each.</summary>
    public const int MaxTagsText = Tags.MaxPerUnit * (Tags.MaxLength + 1);

    /// <summary>The unit's tags, sorted.</summary>
    public async Task<IReadOnlyList<string>> UnitTagsAsync() =>
        _tags ??= await HttpContext.RequestServices.GetRequiredService<TsunaguStore>().Fleet.GetTagsAsync(Unit.Mac, HttpContext.RequestAborted);

    private IReadOnlyList<string>? _tags;

    /// <summary>Replaces the unit's tags by those typed (separated by spaces, commas or semicolons; empty clears them).</summary>
    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public async Task<IActionResult> OnPostTags(string mac, string? tags)
    {
        if (!await LoadAsync(mac, HttpContext.RequestAborted)) { return NotFound(); }
        var text = tags ?? "";
        if (text.Length > MaxTagsText) { Problem = $"Nothing was changed: {Tags.Rule("tags")}"; return RedirectToPage(new { mac = Unit.Mac }); }
        var list = text.Split([' ', ',', ';', '\t', '\r', '\n'], StringSplitOptions.RemoveEmptyEntries);
        try
        {
            var normal = await Tags.ReplaceAsync(HttpContext.RequestServices.GetRequiredService<TsunaguStore>(), Unit.Mac, list, Who, HttpContext.RequestAborted);
            Notice = normal.Count == 0 ? $"{Unit.Mac} has no tags now." : $"Tags of {Unit.Mac}: {string.Join(' ', normal)}.";
        }
        catch (TagsRuleException e)
        {
            Problem = "Nothing was changed: " + e.Message;
        }
        return RedirectToPage(new { mac = Unit.Mac });
    }
}
