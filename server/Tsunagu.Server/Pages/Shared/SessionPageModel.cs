using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.Filters;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace Tsunagu.Server.Pages.Shared;

/// <summary>Pages of one area (console or portal): the layout learns the area and who is signed in.</summary>
public abstract class SessionPageModel(string area) : PageModel
{
    /// <summary>"console" or "portal": the path the area lives under.</summary>
    protected string Area { get; } = area;

    /// <summary>The signed-in operator's or subscriber's name.</summary>
    public string Who => User.Identity?.Name ?? throw new InvalidOperationException("page reached without a session");

    /// <summary>The signed-in operator's role (console pages; <see cref="Web.ConsoleAccessFilter"/>), null elsewhere.</summary>
    public string? Role => HttpContext.Items[Web.ConsoleAccessFilter.RoleItem] as string;

    /// <summary>Whether the signed-in operator's role allows <paramref name="access"/>: pages show only what it does.</summary>
    public bool May(Security.OperatorAccess access) => access.Allows(Role);

    /// <summary>A message for the person after an action (shown once, after the redirect).</summary>
    [TempData] public string? Notice { get; set; }
    [TempData] public string? Problem { get; set; }

    public override void OnPageHandlerExecuting(PageHandlerExecutingContext context)
    {
        ViewData["Area"] = Area;
        ViewData["User"] = User.Identity?.IsAuthenticated == true ? User.Identity.Name : null;
    }

    public static string Ago(string? timestamp, DateTimeOffset now)
    {
        if (timestamp is null) { return "never"; }
        var at = DateTimeOffset.Parse(timestamp, System.Globalization.CultureInfo.InvariantCulture);
        var d = now - at;
        return d.TotalSeconds < 60 ? $"{Math.Max(0, (int)d.TotalSeconds)} s ago"
            : d.TotalMinutes < 60 ? $"{(int)d.TotalMinutes} min ago"
            : d.TotalHours < 48 ? $"{(int)d.TotalHours} h ago" : $"{(int)d.TotalDays} days ago";
    }

    /// <summary>A form or query value trimmed; null when it is missing or only white space (the field was left empty).</summary>
    protected static string? Blank(string? value) => string.IsNullOrWhiteSpace(value) ? null : value.Trim();

    /// <summary>A timestamp as the page shows it (UTC, to the second).</summary>
    public static string Time(string? timestamp) => timestamp is null ? "—" : timestamp.Length >= 19 ? timestamp[..19].Replace('T', ' ') + " UTC" : timestamp;
}
