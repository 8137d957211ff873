using Microsoft.AspNetCore.Http.HttpResults;
using Tsunagu.Protocol;
using Tsunagu.Server.Catalogue;
using Tsunagu.Server.Data;

namespace Tsunagu.Server.Apis;

/// <summary>
/// RFC 9457 problem responses with the contract's problem types (<see cref="ProblemTypes"/>), as typed results so that
/// handlers can declare them in their <c>Results&lt;...&gt;</c> return types. <c>field</c>, when given, names the
/// offending field as a member of its own beside the detail.
/// </summary>
public static class Problems
{
    public static ProblemHttpResult Unauthorized(string type, string detail) => Make(StatusCodes.Status401Unauthorized, type, "Not authenticated", detail);
    public static ProblemHttpResult Forbidden(string type, string detail, string? field = null) =>
        Make(StatusCodes.Status403Forbidden, type, "Not allowed", detail, field);
    public static ProblemHttpResult BadRequest(string detail, string? field = null) =>
        Make(StatusCodes.Status400BadRequest, ProblemTypes.Validation, "Invalid request", detail, field);
    public static ProblemHttpResult NotFound(string detail) => Make(StatusCodes.Status404NotFound, ProblemTypes.NotFound, "Not found", detail);
    public static ProblemHttpResult Conflict(string detail) => Make(StatusCodes.Status409Conflict, ProblemTypes.Conflict, "Conflict", detail);
    public static ProblemHttpResult TooLarge(string detail) => Make(StatusCodes.Status413PayloadTooLarge, ProblemTypes.Validation, "Too large", detail);

    /// <summary>A forced check that cannot be pushed now (push disabled, or the broker connection down): 503.</summary>
    public static ProblemHttpResult PushUnavailable(string title, string detail) =>
        Make(StatusCodes.Status503ServiceUnavailable, ProblemTypes.PushUnavailable, title, detail);

    public static ProblemHttpResult Make(int status, string type, string title, string detail, string? field = null,
        IDictionary<string, object?>? extensions = null)
    {
        if (field is not null)
        {
            extensions = new Dictionary<string, object?>(extensions ?? new Dictionary<string, object?>()) { ["field"] = field };
        }
        return TypedResults.Problem(detail: detail, statusCode: status, title: title, type: type, extensions: extensions);
    }

    /// <summary>Runs a write and turns the catalogue's and the store's refusals into problem answers (400, 409, 404).</summary>
    public static async Task<Results<TResult, ProblemHttpResult>> GuardAsync<TResult>(Func<Task<TResult>> action) where TResult : IResult
    {
        try
        {
            return await action();
        }
        catch (CatalogueRuleException e)
        {
            return Problems.BadRequest(e.Message);
        }
        catch (StoreConflictException e)
        {
            return Problems.Conflict(e.Message);
        }
        catch (KeyNotFoundException e)
        {
            return Problems.NotFound(e.Message);
        }
    }
}

/// <summary>A problem answer with a Retry-After header when <paramref name="after"/> is given (429, 503).</summary>
public sealed class RetryAfterResult(TimeSpan? after, ProblemHttpResult inner) : IResult
{
    public ProblemHttpResult Inner { get; } = inner;

    public Task ExecuteAsync(HttpContext httpContext)
    {
        if (after is { } wait)
        {
            httpContext.Response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        return Inner.ExecuteAsync(httpContext);
    }
}
