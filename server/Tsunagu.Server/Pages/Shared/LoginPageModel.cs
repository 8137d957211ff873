using Microsoft.AspNetCore.Mvc;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;
using Tsunagu.Server.Web;

namespace Tsunagu.Server.Pages.Shared;

/// <summary>
/// Log in to one area: rate-limited per name and per source (<see cref="LoginThrottle"/>), the password checked
/// against the area's own accounts, a session cookie of the area's own scheme.
/// </summary>
public abstract class LoginPageModel(string area, string scheme, string scope, Func<string, string?> passwordHash, TsunaguStore store, LoginThrottle throttle)
    : SessionPageModel(area)
{
    [BindProperty] public LoginForm Form { get; set; } = new();

    public void OnGet() { }

    public async Task<IActionResult> OnPostAsync(string? returnUrl)
    {
        if (!ModelState.IsValid) { return Page(); }
        if (throttle.TryAttempt(Area, Form.Name, HttpContext.Connection.RemoteIpAddress) is { } wait)
        {
            var seconds = Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds));
            Response.StatusCode = StatusCodes.Status429TooManyRequests;
            Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            ModelState.AddModelError("", $"Too many log in attempts; try again in {seconds} seconds.");
            return Page();
        }
        if (passwordHash(Form.Name) is not { } hash || !PasswordHasher.Verify(Form.Password, hash))
        {
            ModelState.AddModelError("", "Name or password is wrong.");
            return Page();
        }
        await WebSessions.SignInAsync(HttpContext, scheme, Form.Name, scope);
        store.Audit(scope == Protocol.TokenScope.Operator ? Form.Name : $"{scope}:{Form.Name}", $"{scope}.login", null, "web session");
        var home = "/" + Area;
        return LocalRedirect(returnUrl is not null && Url.IsLocalUrl(returnUrl) && returnUrl.StartsWith(home, StringComparison.Ordinal) ? returnUrl : home);
    }
}
