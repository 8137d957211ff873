using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.Filters;
using Tsunagu.Server.Data;
using Tsunagu.Server.Pages.Shared;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Web;

/// <summary>
/// Operator roles on the console: a page is shown to the roles its page model's <see cref="ConsoleAccessAttribute"/>
/// names, and an action (a POST handler) is done only for the roles its handler's own attribute names. A console page
/// or action without a decision refuses everyone; the role is read at every request, so a changed role counts at once.
/// The pages hide what the role may not use (<see cref="SessionPageModel.May"/>); this filter refuses it whatever is sent.
/// </summary>
public sealed class ConsoleAccessFilter : IAsyncPageFilter
{
    /// <summary>Where the signed-in operator's role is kept for the rest of the request.</summary>
    public const string RoleItem = "tsunagu:operator-role";

    public Task OnPageHandlerSelectionAsync(PageHandlerSelectedContext context) => Task.CompletedTask;

    public async Task OnPageHandlerExecutionAsync(PageHandlerExecutingContext context, PageHandlerExecutionDelegate next)
    {
        var model = context.HandlerInstance;
        if (!IsConsolePage(model?.GetType()) || model is LoginPageModel)
        {
            await next();
            return;
        }
        var http = context.HttpContext;
        var name = http.User.Identity?.Name;
        var role = name is null ? null : await http.RequestServices.GetRequiredService<TsunaguStore>().Accounts.GetOperatorRoleAsync(name, http.RequestAborted);
        http.Items[RoleItem] = role;
        if (model is Microsoft.AspNetCore.Mvc.RazorPages.PageModel page) { page.ViewData["Role"] = role; }
        var access = Decision(model!.GetType(), context.HandlerMethod?.MethodInfo, context.HandlerMethod?.HttpMethod);
        if (access is null || !access.Allows(role))
        {
            context.Result = new ContentResult
            {
                StatusCode = StatusCodes.Status403Forbidden, ContentType = "text/plain; charset=utf-8",
                Content = access is null
                    ? "No operator role may use this console page or action."
                    : $"Your role ({role ?? "none"}) may not use this console page or action; it needs one of: {string.Join(", ", access.Roles)}.",
            };
            return;
        }
        await next();
    }

    /// <summary>Pages of the operator console (their models live in the console's namespace).</summary>
    public static bool IsConsolePage(Type? model) => model?.Namespace == typeof(Pages.Console.IndexModel).Namespace;

    /// <summary>
    /// The decision for one handler of a console page: a GET (or no handler) uses the page's; any other method only
    /// its handler's own (an action is never allowed by the page's decision alone).
    /// </summary>
    public static OperatorAccess? Decision(Type model, System.Reflection.MethodInfo? handler, string? httpMethod)
    {
        var own = handler?.GetCustomAttributes(typeof(ConsoleAccessAttribute), inherit: true).OfType<ConsoleAccessAttribute>().FirstOrDefault();
        if (own is not null) { return own; }
        var isRead = handler is null || string.Equals(httpMethod, "GET", StringComparison.OrdinalIgnoreCase) || string.Equals(httpMethod, "HEAD", StringComparison.OrdinalIgnoreCase);
        return isRead ? model.GetCustomAttributes(typeof(ConsoleAccessAttribute), inherit: true).OfType<ConsoleAccessAttribute>().FirstOrDefault() : null;
    }
}
