using Microsoft.AspNetCore.Http.HttpResults;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;
using Tsunagu.Server.Units;

namespace Tsunagu.Server.Fleet;

/// <summary>A unit's tags, replaced as a whole (an empty list clears them).</summary>
public sealed record UnitTagsRequest(IReadOnlyList<string>? Tags);
public sealed record UnitTagsView(string Mac, IReadOnlyList<string> Tags);
public sealed record TagCount(string Tag, long Units);

/// <summary>Tags on units and groups of units: what rollouts (<see cref="Rollouts.RolloutsApi"/>) move.</summary>
public static class FleetApi
{
    public const string TagsRoute = Routes.Prefix + "/tags";
    public const string GroupsRoute = Routes.Prefix + "/groups";

    public static void MapFleetApi(this IEndpointRouteBuilder app)
    {
        var units = app.MapGroup(Routes.Units).AddEndpointFilter<RequireOperator>();
        units.MapGet("/{mac}/tags", async Task<Results<Ok<UnitTagsView>, ProblemHttpResult>> (string mac, TsunaguStore store) =>
                MacAddress.TryNormalize(mac, out var m) && await store.Units.GetUnitForCheckAsync(m) is not null
                    ? TypedResults.Ok(new UnitTagsView(m, await store.Fleet.GetTagsAsync(m)))
                    : Problems.NotFound($"unit {mac} is not registered"))
            .ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Read);
        units.MapPut("/{mac}/tags", async Task<Results<Ok<UnitTagsView>, ProblemHttpResult>> (string mac, UnitTagsRequest? request, TsunaguStore store, HttpContext http) =>
            {
                if (!MacAddress.TryNormalize(mac, out var m)) { return Problems.NotFound($"unit {InputRules.Quote(mac)} is not registered"); }
                try
                {
                    return TypedResults.Ok(new UnitTagsView(m, await Tags.ReplaceAsync(store, m, request?.Tags, http.Caller().Subject, http.RequestAborted)));
                }
                catch (TagsRuleException e)
                {
                    return e.NotFound ? Problems.NotFound(e.Message) : e.Conflict ? Problems.Conflict(e.Message) : Problems.BadRequest(e.Message, "tags");
                }
            })
            .ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Release);

        var tagsApi = app.MapGroup(TagsRoute).AddEndpointFilter<RequireOperator>();
        tagsApi.MapGet("", async (TsunaguStore store, CancellationToken ct) => TypedResults.Ok((await store.Fleet.ListTagCountsAsync(ct)).Select(t => new TagCount(t.Tag, t.Units)).ToList()))
            .AllowRoles(OperatorRoles.Read);
        tagsApi.MapGet("/{tag}/units", async Task<Results<Ok<List<UnitView>>, ProblemHttpResult>> (string tag, TsunaguStore store, CancellationToken ct) =>
            {
                if (!Tags.IsTag(tag)) { return Problems.BadRequest(Tags.Rule("tag"), "tag"); }
                var units = new List<UnitView>();
                foreach (var mac in await store.Fleet.UnitsWithTagAsync(tag, ct))
                {
                    if (await store.Units.GetUnitAsync(mac, ct) is { } unit) { units.Add(UnitViews.View(unit)); }
                }
                return TypedResults.Ok(units);
            })
            .AllowRoles(OperatorRoles.Read);

        var groups = app.MapGroup(GroupsRoute).AddEndpointFilter<RequireOperator>();
        groups.MapGet("", async (TsunaguStore store, CancellationToken ct) =>
            {
                var views = new List<GroupView>();
                foreach (var g in await store.Fleet.ListGroupsAsync(ct)) { views.Add(Groups.View(g, await store.Fleet.GroupMembersAsync(g, ct), withMembers: false)); }
                return TypedResults.Ok(views);
            })
            .AllowRoles(OperatorRoles.Read);
        groups.MapGet("/{name}", async Task<Results<Ok<GroupView>, ProblemHttpResult>> (string name, TsunaguStore store, CancellationToken ct) =>
                InputRules.IsIdentifier(name) && await store.Fleet.GetGroupAsync(name, ct) is { } g
                    ? TypedResults.Ok(Groups.View(g, await store.Fleet.GroupMembersAsync(g, ct), withMembers: true))
                    : Problems.NotFound($"no group '{InputRules.Quote(name)}'"))
            .ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Read);
        groups.MapPost("", async Task<Results<Created<GroupView>, ProblemHttpResult>> (NewGroup? request, TsunaguStore store, HttpContext http) =>
            {
                try
                {
                    var view = await Groups.CreateAsync(request, store, http.Caller().Subject, http.RequestAborted);
                    return TypedResults.Created($"{GroupsRoute}/{view.Name}", view);
                }
                catch (GroupRuleException e)
                {
                    return e.Conflict ? Problems.Conflict(e.Message) : Problems.BadRequest(e.Message);
                }
            })
            .ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Release);
        groups.MapPut("/{name}/window", async Task<Results<Ok<GroupView>, ProblemHttpResult>> (string name, TsunaguStore store, HttpContext http) =>
            {
                // the body is read here, after the operator and role checks (a body parameter is bound before them), and by
                // hand: a missing window must be told apart from a null one
                System.Text.Json.JsonElement? body;
                try
                {
                    body = await http.Request.ReadFromJsonAsync<System.Text.Json.JsonElement?>(http.RequestAborted);
                }
                catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException)
                {
                    return Problems.BadRequest("body: a JSON object {\"window\": ...} is required", "window");
                }
                var (request, error) = GroupWindowRequest.TryRead(body);
                if (request is null)
                {
                    return Problems.BadRequest(error!, "window");
                }
                try
                {
                    return TypedResults.Ok(await Groups.SetWindowAsync(name, request, store, http.Caller().Subject, http.RequestAborted));
                }
                catch (GroupRuleException e)
                {
                    return e.NotFound ? Problems.NotFound(e.Message) : e.Conflict ? Problems.Conflict(e.Message) : Problems.BadRequest(e.Message, "window");
                }
            })
            .Accepts<GroupWindowRequest>("application/json")
            .ProducesProblem(StatusCodes.Status400BadRequest).ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict)
            .AllowRoles(OperatorRoles.Release);
        groups.MapDelete("/{name}", async Task<Results<NoContent, ProblemHttpResult>> (string name, TsunaguStore store, HttpContext http) =>
            {
                if (!InputRules.IsIdentifier(name)) { return Problems.NotFound($"no group '{InputRules.Quote(name)}'"); }
                try
                {
                    return await store.Fleet.DeleteGroupAsync(name, new AuditEntry(http.Caller().Subject, "group.delete", name, null), http.RequestAborted)
                        ? TypedResults.NoContent()
                        : Problems.NotFound($"no group '{InputRules.Quote(name)}'");
                }
                catch (StoreConflictException e)
                {
                    return Problems.Conflict(e.Message);
                }
            })
            .ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Release);
    }
}
