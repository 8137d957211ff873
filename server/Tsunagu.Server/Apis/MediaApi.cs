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
            var digest = r.Digest?.ToLowerInvariant() ?? "";
            if (!ArtifactStore.IsDigest(digest)) { return Problems.BadRequest($"digest: '{r.Digest}' is not a SHA-256 in hex"); }
            if (!InputRules.IsText(r.Name, 128)) { return Problems.BadRequest("name: required; " + InputRules.Text("name", 128)); }
            return await Problems.GuardAsync(async () =>
            {
                await store.AddMediumAsync(digest, r.Name.Trim(), new AuditEntry(http.Caller().Subject, "media.register", digest, r.Name), ct: http.RequestAborted);
                return TypedResults.Created($"{Routes.Media}/{digest}", new MediaRegistration(digest, r.Name.Trim()));
            });
        }).ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Release);
    }
}
