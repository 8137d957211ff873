using Microsoft.AspNetCore.Mvc;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;
using Tsunagu.Server.Web;

namespace Tsunagu.Server.Pages.Shared;

/// <summary>
/// Log in to one area: the password checked against the area's own accounts through <see cref="PasswordGuard"/>
/// (limited per account and source, per source, per account from unknown sources; bounded hashing), a session
/// cookie of the area's own scheme carrying the account's security stamp.
/// </summary>
public abstract class LoginPageModel(string area, string scheme, string scope, Func<string, CancellationToken, Task<string?>> passwordHash, TsunaguStore store, PasswordGuard guard)
    : SessionPageModel(area)
{
    [BindProperty] public LoginForm Form { get; set; } = new();

    public void OnGet() { }

    public async Task<IActionResult> OnPostAsync(string? returnUrl)
    {
        if (!ModelState.IsValid) { return Page(); }
        var check = await guard.CheckAsync(scope, Form.Name, Form.Password, HttpContext.Connection.RemoteIpAddress, passwordHash, HttpContext.RequestAborted);
        if (check.Verdict is PasswordVerdict.Limited or PasswordVerdict.Busy)
        {
            var seconds = Math.Max(1, (int)Math.Ceiling(check.RetryAfter.TotalSeconds));
            Response.StatusCode = check.Verdict == PasswordVerdict.Limited ? StatusCodes.Status429TooManyRequests : StatusCodes.Status503ServiceUnavailable;
            Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            ModelState.AddModelError("", check.Verdict == PasswordVerdict.Limited
                ? $"Too many log in attempts; try again in {seconds} seconds." : $"The server is busy; try again in {seconds} seconds.");
            return Page();
        }
        if (check.Verdict != PasswordVerdict.Accepted)
        {
            ModelState.AddModelError("", "Name or password is wrong.");
            return Page();
        }
        await WebSessions.SignInAsync(HttpContext, scheme, Form.Name, scope, PasswordHasher.Stamp(await passwordHash(Form.Name, HttpContext.RequestAborted)));
        await store.AuditAsync(scope == Protocol.TokenScope.Operator ? Form.Name : $"{scope}:{Form.Name}", $"{scope}.login", null, "web session", HttpContext.RequestAborted);
        var home = "/" + Area;
        return LocalRedirect(returnUrl is not null && Url.IsLocalUrl(returnUrl) && returnUrl.StartsWith(home, StringComparison.Ordinal) ? returnUrl : home);
    }
}
