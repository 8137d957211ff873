using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Mvc;
using Tsunagu.Server.Pages.Shared;
using Tsunagu.Server.Security;
using Tsunagu.Server.Web;

namespace Tsunagu.Server.Pages.Console;

[ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager, OperatorRoles.Support, OperatorRoles.Auditor)]
public sealed class LogoutModel() : SessionPageModel("console")
{
    public IActionResult OnGet() => Redirect("/console");

    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager, OperatorRoles.Support, OperatorRoles.Auditor)]
    public async Task<IActionResult> OnPostAsync()
    {
        await HttpContext.SignOutAsync(WebSessions.OperatorScheme);
        return Redirect("/console/login");
    }
}
