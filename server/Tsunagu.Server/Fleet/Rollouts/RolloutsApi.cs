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
            foreach (var row in await store.ListRolloutsAsync(ct: ct)) { views.Add(await rollouts.ViewAsync(row, ct)); }
            return TypedResults.Ok(views);
        })
            .AllowRoles(OperatorRoles.Read);
        api.MapGet("/{name}", async Task<Results<Ok<RolloutView>, ProblemHttpResult>> (string name, RolloutService rollouts, TsunaguStore store) =>
                InputRules.IsIdentifier(name) && await store.GetRolloutAsync(name) is { } row
                    ? TypedResults.Ok(await rollouts.ViewAsync(row))
                    : Problems.NotFound($"no rollout '{InputRules.Quote(name)}'"))
            .ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Read);
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
}
