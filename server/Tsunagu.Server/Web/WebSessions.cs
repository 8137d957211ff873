using System.Security.Claims;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.DataProtection;
using Tsunagu.Protocol;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Web;

/// <summary>
/// Browser sessions of the operator console (/console) and the subscriber portal (/portal): two cookie schemes
/// with their own cookies, each sent only under its own path, so one session never opens the other's pages.
/// </summary>
public static class WebSessions
{
    public const string OperatorScheme = "operator-session";
    public const string SubscriberScheme = "subscriber-session";
    public const string OperatorPolicy = "operator";
    public const string SubscriberPolicy = "subscriber";
    public const string ScopeClaim = "tsunagu:scope";
    public const string StampClaim = "tsunagu:stamp";
    public const string SignedInClaim = "tsunagu:signed-in";

    public static IServiceCollection AddWebSessions(this IServiceCollection services, ServerOptions options, string keysDirectory, TimeProvider time)
    {
        // cookie keys live with the server's other keys, so every replica sharing the data directory reads the same cookies
        services.AddDataProtection().SetApplicationName("tsunagu").PersistKeysToFileSystem(new DirectoryInfo(Path.Combine(keysDirectory, "data-protection")));
        services.AddRazorPages(pages =>
        {
            pages.Conventions.AuthorizeFolder("/Console", OperatorPolicy);
            pages.Conventions.AllowAnonymousToPage("/Console/Login");
            pages.Conventions.AuthorizeFolder("/Portal", SubscriberPolicy);
            pages.Conventions.AllowAnonymousToPage("/Portal/Login");
        }).AddApplicationPart(typeof(WebSessions).Assembly) // the pages live here, whichever program hosts the server (tests, the demo)
            .AddMvcOptions(o => o.Filters.Add(new ConsoleAccessFilter()));
        services.AddAuthentication()
            .AddCookie(OperatorScheme, o => Configure(o, "/console", "tsunagu-operator", options.OperatorTokenLifetime, options.WebSessionAbsoluteLifetime,
                (store, name, ct) => store.Accounts.GetOperatorHashAsync(name, ct)))
            .AddCookie(SubscriberScheme, o => Configure(o, "/portal", "tsunagu-subscriber", options.SubscriberTokenLifetime, options.WebSessionAbsoluteLifetime,
                (store, name, ct) => store.Accounts.GetSubscriberHashAsync(name, ct)));
        services.AddAuthorization(a =>
        {
            a.AddPolicy(OperatorPolicy, p => p.AddAuthenticationSchemes(OperatorScheme).RequireAuthenticatedUser().RequireClaim(ScopeClaim, TokenScope.Operator));
            a.AddPolicy(SubscriberPolicy, p => p.AddAuthenticationSchemes(SubscriberScheme).RequireAuthenticatedUser().RequireClaim(ScopeClaim, TokenScope.Subscriber));
        });
        services.AddAntiforgery(o =>
        {
            o.Cookie.Name = "tsunagu-csrf";
            o.Cookie.SecurePolicy = CookieSecurePolicy.Always;
            o.Cookie.SameSite = SameSiteMode.Strict;
            o.FormFieldName = "__csrf";
        });
        services.AddSingleton(new PasswordGuard(options, time));
        return services;
    }

    private static void Configure(CookieAuthenticationOptions o, string path, string cookie, TimeSpan lifetime, TimeSpan absolute,
        Func<Data.TsunaguStore, string, CancellationToken, Task<string?>> passwordHash)
    {
        o.Cookie.Name = cookie;
        o.Cookie.Path = path;
        o.Cookie.HttpOnly = true;
        o.Cookie.SecurePolicy = CookieSecurePolicy.Always;
        o.Cookie.SameSite = SameSiteMode.Strict;
        o.LoginPath = path + "/login";
        o.LogoutPath = path + "/logout";
        o.AccessDeniedPath = path + "/login";
        o.ExpireTimeSpan = lifetime;
        o.SlidingExpiration = true;
        // sliding, but never past the absolute lifetime from sign-in; and only while the account's stamp is unchanged
        o.Events.OnValidatePrincipal = async context =>
        {
            var http = context.HttpContext;
            var now = http.RequestServices.GetRequiredService<TimeProvider>().GetUtcNow();
            var principal = context.Principal;
            var name = principal?.Identity?.Name;
            var signedIn = long.TryParse(principal?.FindFirst(SignedInClaim)?.Value, System.Globalization.NumberStyles.None,
                System.Globalization.CultureInfo.InvariantCulture, out var at) ? DateTimeOffset.FromUnixTimeSeconds(at) : (DateTimeOffset?)null;
            var stamp = principal?.FindFirst(StampClaim)?.Value;
            if (name is null || signedIn is null || signedIn + absolute <= now || stamp is null ||
                stamp != PasswordHasher.Stamp(await passwordHash(http.RequestServices.GetRequiredService<Data.TsunaguStore>(), name, http.RequestAborted)))
            {
                context.RejectPrincipal();
                await http.SignOutAsync(context.Scheme.Name);
            }
        };
    }

    public static Task SignInAsync(HttpContext http, string scheme, string name, string scope, string? stamp) =>
        http.SignInAsync(scheme, new ClaimsPrincipal(new ClaimsIdentity(
        [
            new Claim(ClaimTypes.Name, name), new Claim(ScopeClaim, scope), new Claim(StampClaim, stamp ?? ""),
            new Claim(SignedInClaim, http.RequestServices.GetRequiredService<TimeProvider>().GetUtcNow().ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture)),
        ], scheme)));

    /// <summary>HSTS on every response; for every page: no framing, no sniffing, scripts and styles from this server only.</summary>
    public static IApplicationBuilder UseWebSecurityHeaders(this IApplicationBuilder app) => app.Use((http, next) =>
    {
        // HTTPS only, everywhere: browsers never try this host over plain HTTP again
        http.Response.OnStarting(() =>
        {
            http.Response.Headers.StrictTransportSecurity = TlsPolicy.StrictTransportSecurity;
            return Task.CompletedTask;
        });
        if (http.Request.Path.StartsWithSegments("/console") || http.Request.Path.StartsWithSegments("/portal"))
        {
            var h = http.Response.Headers;
            h.ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";
            h.XFrameOptions = "DENY";
            h.XContentTypeOptions = "nosniff";
            h["Referrer-Policy"] = "same-origin";
            h.CacheControl = "no-store";
        }
        return next(http);
    });
}
