using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Fleet.Rollouts;

public sealed record EmergencyStopResponse(IReadOnlyList<string> Paused);

/// <summary>Staged rollouts: create, list, show with per-wave progress, pause, resume, abort, and the emergency stop.</summary>
public static class RolloutsApi
{
    public const string Route = Routes.Prefix + "/rollouts";

    public static void MapRolloutsApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup(Route).AddEndpointFilter<RequireOperator>();
        api.MapGet("", async (RolloutService rollouts, TsunaguStore store, CancellationToken ct) =>
        {
            var views = new List<RolloutView>();
            foreach (var row in await store.Rollouts.ListRolloutsAsync(ct: ct)) { views.Add(await rollouts.ViewAsync(row, ct)); }
            return TypedResults.Ok(views);
        })
            .AllowRoles(OperatorRoles.Read);
        api.MapGet("/{name}", async Task<Results<Ok<RolloutView>, ProblemHttpResult>> (string name, RolloutService rollouts, TsunaguStore store) =>
                InputRules.IsIdentifier(name) && await store.Rollouts.GetRolloutAsync(name) is { } row
                    ? TypedResults.Ok(await rollouts.ViewAsync(row))
                    : Problems.NotFound($"no rollout '{InputRules.Quote(name)}'"))
            .ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Read);
        // the members a view lists only the first of (RolloutService.ListedMembers), a page at a time: ?after=MAC&limit=N,
        // a Link header (rel="next") while more may follow
        api.MapGet("/{name}/returns", (string name, string? after, string? limit, RolloutService rollouts, TsunaguStore store, HttpContext http) =>
                PageAsync(name, "returns", after, limit, store, http, (row, a, take) => rollouts.ReturnsAsync(row.Name, a, take, http.RequestAborted), m => m.Mac))
            .ProducesProblem(StatusCodes.Status400BadRequest).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Read);
        api.MapGet("/{name}/never-offered", (string name, string? after, string? limit, RolloutService rollouts, TsunaguStore store, HttpContext http) =>
                PageAsync(name, "never-offered", after, limit, store, http, (row, a, take) => rollouts.NeverOfferedPageAsync(row, a, take, http.RequestAborted), m => m.Mac))
            .ProducesProblem(StatusCodes.Status400BadRequest).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Read);
        api.MapPost("", async Task<Results<Created<RolloutView>, ProblemHttpResult>> (NewRollout? request, RolloutService rollouts, HttpContext http) =>
            {
                RolloutView view;
                try
                {
                    view = await rollouts.CreateAsync(request, http.Caller().Subject, http.RequestAborted);
                }
                catch (RolloutRuleException e)
                {
                    return e.Conflict ? Problems.Conflict(e.Message) : Problems.BadRequest(e.Message);
                }
                await rollouts.StartAsync(view.Name, http.RequestAborted);
                return TypedResults.Created($"{Route}/{view.Name}", view);
            })
            .ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Release);
        foreach (var action in new[] { "pause", "resume" })
        {
            api.MapPost($"/{{name}}/{action}", async Task<Results<Ok<RolloutView>, ProblemHttpResult>> (string name, RolloutService rollouts, HttpContext http) =>
                {
                    try
                    {
                        return TypedResults.Ok(await rollouts.ActAsync(name, action, http.Caller().Subject, http.RequestAborted));
                    }
                    catch (RolloutRuleException e)
                    {
                        return e.Conflict ? Problems.Conflict(e.Message) : Problems.NotFound(e.Message);
                    }
                })
                .ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Release);
        }
        // the body is optional: {"units": "keep"} (the default: moved units stay) or {"units": "revert"} (they return)
        api.MapPost("/{name}/abort", async Task<Results<Ok<RolloutView>, ProblemHttpResult>> (string name, [FromBody] AbortRequest? request, RolloutService rollouts, HttpContext http) =>
            {
                try
                {
                    return TypedResults.Ok(await rollouts.ActAsync(name, "abort", http.Caller().Subject, http.RequestAborted, request?.Units));
                }
                catch (RolloutRuleException e)
                {
                    return e.Conflict ? Problems.Conflict(e.Message) : e.Bad ? Problems.BadRequest(e.Message, "units") : Problems.NotFound(e.Message);
                }
            })
            .ProducesProblem(StatusCodes.Status400BadRequest).ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict)
            .AllowRoles(OperatorRoles.Release);
        api.MapPost("/emergency-stop", async (RolloutService rollouts, HttpContext http) => TypedResults.Ok(new EmergencyStopResponse(await rollouts.EmergencyStopAsync(http.Caller().Subject, http.RequestAborted))))
            .AllowRoles(OperatorRoles.Check);
    }

    /// <summary>The most members one page of <c>returns</c> or <c>never-offered</c> gives; the default is <see cref="RolloutService.ListedMembers"/>.</summary>
    public const int MaxPage = 1000;

    /// <summary>
    /// One page of a rollout's members: <paramref name="after"/> a MAC (any spelling <see cref="MacAddress"/> reads; the
    /// page starts after it), <paramref name="limit"/> 1..<see cref="MaxPage"/>. Bad input is 400 and an unknown rollout
    /// 404, before anything is read.
    /// </summary>
    private static async Task<Results<Ok<IReadOnlyList<T>>, ProblemHttpResult>> PageAsync<T>(string name, string list, string? after, string? limit, TsunaguStore store,
        HttpContext http, Func<RolloutRow, string?, int, Task<IReadOnlyList<T>>> read, Func<T, string> macOf)
    {
        string? from = null;
        if (!string.IsNullOrEmpty(after) && !MacAddress.TryNormalize(after, out from))
        {
            return Problems.BadRequest("after: a MAC address (the last of the previous page)", "after");
        }
        var take = RolloutService.ListedMembers;
        if (!string.IsNullOrEmpty(limit) && !(int.TryParse(limit, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out take) && take is >= 1 and <= MaxPage))
        {
            return Problems.BadRequest($"limit: a whole number from 1 to {MaxPage}", "limit");
        }
        if (!InputRules.IsIdentifier(name) || await store.Rollouts.GetRolloutAsync(name, http.RequestAborted) is not { } row)
        {
            return Problems.NotFound($"no rollout '{InputRules.Quote(name)}'");
        }
        var page = await read(row, from, take);
        if (page.Count == take)
        {
            http.Response.Headers.Link = $"<{Route}/{Uri.EscapeDataString(row.Name)}/{list}?after={macOf(page[^1])}&limit={take}>; rel=\"next\"";
        }
        return TypedResults.Ok(page);
    }
}
