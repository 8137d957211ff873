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

        api.MapGet("/media", async (TsunaguStore store, CancellationToken ct) => TypedResults.Ok(await store.ListMediaAsync(ct))).AllowRoles(OperatorRoles.Read);
        api.MapPost("/media", async Task<Results<Created<MediaRegistration>, ProblemHttpResult>> (MediaRegistration r, TsunaguStore store, HttpContext http) =>
        {
            var (medium, problem) = Check(r);
            if (medium is null) { return Problems.BadRequest(problem!); }
            return await Problems.GuardAsync(async () =>
            {
                await RegisterAsync(store, medium, http.Caller().Subject, http.RequestAborted);
                return TypedResults.Created($"{Routes.Media}/{medium.Digest}", medium);
            });
        }).ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Release);
        api.MapDelete("/media/{digest}", Task<Results<NoContent, ProblemHttpResult>> (string digest, Catalogue.CatalogueService catalogue, HttpContext http) => Problems.GuardAsync(async () =>
        {
            await catalogue.DeleteMediumAsync(digest, http.Caller().Subject, http.RequestAborted);
            return TypedResults.NoContent();
        })).ProducesProblem(StatusCodes.Status400BadRequest).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Release);
    }

    /// <summary>
    /// The registration as stored (digest in lower case, name trimmed), or why it is refused: the digest must be a
    /// SHA-256 in hex, the name 1-128 printable characters. The API and the console use the same rules.
    /// </summary>
    public static (MediaRegistration? Medium, string? Problem) Check(MediaRegistration? r)
    {
        var (digest, problem) = ArtifactStore.ReadDigest(r?.Digest);
        if (problem is not null) { return (null, problem); }
        if (!InputRules.IsText(r!.Name, 128)) { return (null, "name: required; " + InputRules.Text("name", 128)); }
        return (new MediaRegistration(digest, r.Name.Trim()), null);
    }

    /// <summary>Registers a checked medium with its audit entry.</summary>
    /// <exception cref="StoreConflictException">The digest is registered already.</exception>
    public static Task RegisterAsync(TsunaguStore store, MediaRegistration medium, string actor, CancellationToken ct) =>
        store.AddMediumAsync(medium.Digest, medium.Name, new AuditEntry(actor, "media.register", medium.Digest, medium.Name), ct);
}
