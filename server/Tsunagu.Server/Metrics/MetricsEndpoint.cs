using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;

namespace Tsunagu.Server.Metrics;

/// <summary>
/// <c>GET /metrics</c> in the Prometheus text format, for a scraper that presents <c>Authorization: Bearer</c> with
/// <see cref="ServerOptions.MetricsToken"/>. Without a token configured the route does not exist (404): the counts of a
/// fleet are not for units or subscribers, who reach the same port.
/// </summary>
public static class MetricsEndpoint
{
    public const string Path = "/metrics";

    public static void AddTsunaguMetrics(this IServiceCollection services)
    {
        services.AddSingleton<ServerMetrics>();
        services.AddSingleton<FleetGauges>();
    }

    /// <summary>Times every request, labelled by the route template that answered it (never the raw path).</summary>
    public static void UseRequestMetrics(this IApplicationBuilder app)
    {
        var metrics = app.ApplicationServices.GetRequiredService<ServerMetrics>();
        app.Use(async (context, next) =>
        {
            var started = Stopwatch.GetTimestamp();
            try
            {
                await next(context);
            }
            finally
            {
                var route = (context.GetEndpoint() as RouteEndpoint)?.RoutePattern.RawText ?? ServerMetrics.NoRoute;
                metrics.Request(route, context.Request.Method, context.Response.StatusCode, Stopwatch.GetElapsedTime(started));
            }
        });
    }

    public static void MapMetrics(this IEndpointRouteBuilder app, ServerOptions options)
    {
        if (options.MetricsToken is not { } token)
        {
            return;
        }
        var expected = SHA256.HashData(Encoding.UTF8.GetBytes(token));
        // resolved here, so the gauges' collection callback is registered before the first scrape
        var registry = app.ServiceProvider.GetRequiredService<ServerMetrics>().Registry;
        app.ServiceProvider.GetRequiredService<FleetGauges>();
        app.MapGet(Path, async (HttpContext http) =>
        {
            if (!Authorized(http.Request.Headers.Authorization.ToString(), expected))
            {
                http.Response.Headers.WWWAuthenticate = "Bearer";
                return Apis.Problems.Unauthorized(Protocol.ProblemTypes.InvalidToken, "the metrics need Authorization: Bearer with the server's MetricsToken");
            }
            http.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            http.Response.Headers.CacheControl = "no-store";
            await registry.CollectAndExportAsTextAsync(http.Response.Body, http.RequestAborted);
            return Results.Empty;
        }).ExcludeFromDescription();
    }

    /// <summary>Compares the presented token with the configured one in constant time (as SHA-256 digests, so lengths do not leak).</summary>
    public static bool Authorized(string header, byte[] expectedDigest)
    {
        const string scheme = "Bearer ";
        if (!header.StartsWith(scheme, StringComparison.OrdinalIgnoreCase) || header.Length > 1024)
        {
            return false;
        }
        var presented = SHA256.HashData(Encoding.UTF8.GetBytes(header[scheme.Length..].Trim()));
        return CryptographicOperations.FixedTimeEquals(presented, expectedDigest);
    }
}
