using System.Net.Http.Headers;
using Tsunagu.Protocol;

namespace Tsunagu.Server.Security;

/// <summary>
/// No state-changing API call that a page on another site can make: a browser that holds the operator's Basic
/// credentials would attach them to a cross-site form post. A POST, PUT, PATCH or DELETE under /api/ must name a body
/// type an HTML form cannot send (application/json or any +json type, text/csv, application/octet-stream) or carry
/// the <see cref="ClientHeader"/> header; either makes a cross-site request need a CORS preflight, which this server
/// never grants. Anything else is answered 415 before authentication, routing or the body is read.
/// </summary>
public static class CrossSiteRequests
{
    public const string ClientHeader = "X-Tsunagu-Client";

    public static readonly string[] AllowedTypes = ["application/json", "text/csv", "application/octet-stream"];

    public static IApplicationBuilder UseCrossSiteRequestGuard(this IApplicationBuilder app) => app.Use(async (http, next) =>
    {
        var request = http.Request;
        if (request.Path.StartsWithSegments(Routes.Prefix) && IsStateChanging(request.Method) && !IsAllowed(request))
        {
            http.Response.StatusCode = StatusCodes.Status415UnsupportedMediaType;
            await http.Response.WriteAsJsonAsync(new ProblemBody(ProblemTypes.Validation, "Unsupported media type", 415,
                $"Content-Type: a {request.Method} to the API needs a body of type {string.Join(", ", AllowedTypes)} (or +json), " +
                $"or the {ClientHeader} header; '{Apis.InputRules.Quote(request.ContentType)}' is what a cross-site form could send"),
                ProtocolJson.Default.ProblemBody, "application/problem+json");
            return;
        }
        await next(http);
    });

    private static bool IsStateChanging(string method) =>
        HttpMethods.IsPost(method) || HttpMethods.IsPut(method) || HttpMethods.IsPatch(method) || HttpMethods.IsDelete(method);

    private static bool IsAllowed(HttpRequest request)
    {
        if (request.Headers.ContainsKey(ClientHeader)) { return true; }
        if (!MediaTypeHeaderValue.TryParse(request.ContentType, out var type) || type.MediaType is not { } media) { return false; }
        return AllowedTypes.Contains(media, StringComparer.OrdinalIgnoreCase)
               || (media.StartsWith("application/", StringComparison.OrdinalIgnoreCase) && media.EndsWith("+json", StringComparison.OrdinalIgnoreCase));
    }
}
