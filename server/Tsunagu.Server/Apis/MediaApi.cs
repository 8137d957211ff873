using Microsoft.AspNetCore.Http.HttpResults;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Apis;

/// <summary>Genuine install media (patent 0037): the digests the operator registers; units check theirs through the host server.</summary>
public static class MediaApi
{
    public static void MapMediaApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup(Routes.Prefix).AddEndpointFilter<RequireOperator>().WithTags("Media");

        api.MapGet("/media", async (TsunaguStore store, CancellationToken ct) => TypedResults.Ok(await store.Media.ListMediaAsync(ct))).AllowRoles(OperatorRoles.Read);
        api.MapPost("/media", async Task<Results<Created<MediaRegistration>, ProblemHttpResult>> (MediaRegistration r, Catalogue.CatalogueService catalogue, HttpContext http) =>
        {
            var (medium, problem) = Catalogue.CatalogueService.CheckMedium(r);
            if (medium is null) { return Problems.BadRequest(problem!); }
            return await Problems.GuardAsync(async () =>
            {
                await catalogue.RegisterMediumAsync(medium, http.Caller().Subject, http.RequestAborted);
                return TypedResults.Created($"{Routes.Media}/{medium.Digest}", medium);
            });
        }).ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Release);
        api.MapDelete("/media/{digest}", Task<Results<NoContent, ProblemHttpResult>> (string digest, Catalogue.CatalogueService catalogue, HttpContext http) => Problems.GuardAsync(async () =>
        {
            await catalogue.DeleteMediumAsync(digest, http.Caller().Subject, http.RequestAborted);
            return TypedResults.NoContent();
        })).ProducesProblem(StatusCodes.Status400BadRequest).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Release);
    }
}
