using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Mvc;
using Tsunagu.Server.Pages.Shared;
using Tsunagu.Server.Web;

namespace Tsunagu.Server.Pages.Portal;

public sealed class LogoutModel() : SessionPageModel("portal")
{
    public IActionResult OnGet() => Redirect("/portal");

    public async Task<IActionResult> OnPostAsync()
    {
        await HttpContext.SignOutAsync(WebSessions.SubscriberScheme);
        return Redirect("/portal/login");
    }
}
