using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Mvc;
using Tsunagu.Server.Pages.Shared;
using Tsunagu.Server.Web;

namespace Tsunagu.Server.Pages.Console;

public sealed class LogoutModel() : SessionPageModel("console")
{
    public IActionResult OnGet() => Redirect("/console");

    public async Task<IActionResult> OnPostAsync()
    {
        await HttpContext.SignOutAsync(WebSessions.OperatorScheme);
        return Redirect("/console/login");
    }
}
