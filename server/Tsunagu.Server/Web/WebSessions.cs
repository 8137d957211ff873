using System.Net;
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
        }).AddApplicationPart(typeof(WebSessions).Assembly); // the pages live here, whichever program hosts the server (tests, the demo)
        services.AddAuthentication()
            .AddCookie(OperatorScheme, o => Configure(o, "/console", "tsunagu-operator", options.OperatorTokenLifetime))
            .AddCookie(SubscriberScheme, o => Configure(o, "/portal", "tsunagu-subscriber", options.SubscriberTokenLifetime));
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
        services.AddSingleton(new LoginThrottle(options.LoginAttemptsPerMinute, time));
        services.AddSingleton<SubscriberChanges>();
        return services;
    }

    private static void Configure(CookieAuthenticationOptions o, string path, string cookie, TimeSpan lifetime)
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
    }

    public static Task SignInAsync(HttpContext http, string scheme, string name, string scope) =>
        http.SignInAsync(scheme, new ClaimsPrincipal(new ClaimsIdentity([new Claim(ClaimTypes.Name, name), new Claim(ScopeClaim, scope)], scheme)));

    /// <summary>Headers for every page: no framing, no sniffing, scripts and styles from this server only.</summary>
    public static IApplicationBuilder UseWebSecurityHeaders(this IApplicationBuilder app) => app.Use((http, next) =>
    {
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

/// <summary>
/// Sign-in attempts of the console and the portal, limited per account name and per source address (each its own
/// <see cref="AttemptCounter"/> window), so guessing one password or many accounts from one place is slowed alike.
/// </summary>
public sealed class LoginThrottle(int perMinute, TimeProvider time)
{
    private readonly AttemptCounter _byName = new(perMinute, time);
    private readonly AttemptCounter _bySource = new(perMinute, time);

    /// <summary>Null when the attempt may go ahead, else how long to wait.</summary>
    public TimeSpan? TryAttempt(string realm, string name, IPAddress? source)
    {
        var byName = _byName.TryAttempt($"{realm}:{name.Trim().ToLowerInvariant()}");
        var bySource = _bySource.TryAttempt($"{realm}:{source?.ToString() ?? "unknown"}");
        return byName is null ? bySource : bySource is null ? byName : (byName > bySource ? byName : bySource);
    }
}
