using System.Globalization;
using Microsoft.AspNetCore.Http.Features;
using Tsunagu.Protocol;

namespace Tsunagu.Server.Security;

/// <summary>
/// Request bodies are received before the request takes a place in the concurrency limit, within
/// <see cref="ServerOptions.RequestBodyTimeoutSeconds"/>: a client that sends slowly holds a connection, never one of the
/// places every other request needs. Units' and unauthenticated requests may send at most
/// <see cref="ServerOptions.MaxUnitRequestBodyBytes"/>. The two large uploads (bulk registration, artifacts) are read
/// by their endpoints after authentication, limited by Kestrel's minimum data rate.
/// </summary>
public static class RequestBodies
{
    private static readonly string[] UnitPaths = [Routes.Prefix + "/host", Routes.Prefix + "/provisioning", Routes.Prefix + "/subscriber/token"];
    private static readonly string[] LargePaths = [Routes.Prefix + "/artifacts", Routes.Units + "/bulk", "/console/register"];

    /// <summary>The console's registration page takes a CSV table of up to 10 MB as a form upload.</summary>
    public const long ConsoleUploadBytes = 11 * 1024 * 1024;

    public static IApplicationBuilder UseRequestBodiesFirst(this IApplicationBuilder app, ServerOptions options) => app.Use(async (http, next) =>
    {
        var request = http.Request;
        var size = http.Features.Get<IHttpMaxRequestBodySizeFeature>();
        var large = LargePaths.Any(p => request.Path.StartsWithSegments(p));
        if (size is { IsReadOnly: false })
        {
            if (UnitPaths.Any(p => request.Path.StartsWithSegments(p))) { size.MaxRequestBodySize = options.MaxUnitRequestBodyBytes; }
            else if (request.Path.StartsWithSegments("/console/register")) { size.MaxRequestBodySize = ConsoleUploadBytes; }
        }
        if (!large && (request.ContentLength > 0 || (request.ContentLength is null && request.Headers.TransferEncoding.Count > 0)))
        {
            request.EnableBuffering(bufferThreshold: 64 * 1024);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(http.RequestAborted);
            timeout.CancelAfter(TimeSpan.FromSeconds(options.RequestBodyTimeoutSeconds));
            try
            {
                await request.Body.CopyToAsync(Stream.Null, timeout.Token);
            }
            catch (OperationCanceledException) when (!http.RequestAborted.IsCancellationRequested)
            {
                await Refuse(http, StatusCodes.Status408RequestTimeout, "Request timeout",
                    $"body: not received within {options.RequestBodyTimeoutSeconds.ToString(CultureInfo.InvariantCulture)} s");
                return;
            }
            catch (BadHttpRequestException e)
            {
                await Refuse(http, e.StatusCode, e.StatusCode == StatusCodes.Status413PayloadTooLarge ? "Too large" : "Bad request",
                    e.StatusCode == StatusCodes.Status413PayloadTooLarge ? $"body: larger than this route accepts ({size?.MaxRequestBodySize} bytes)" : $"body: {e.Message}");
                return;
            }
            request.Body.Position = 0;
        }
        await next(http);
    });

    private static async Task Refuse(HttpContext http, int status, string title, string detail)
    {
        if (http.Response.HasStarted) { return; }
        http.Response.StatusCode = status;
        if (status == StatusCodes.Status408RequestTimeout) { http.Response.Headers.Connection = "close"; }
        await http.Response.WriteAsJsonAsync(new ProblemBody(ProblemTypes.Validation, title, status, detail), ProtocolJson.Default.ProblemBody, "application/problem+json");
    }
}
