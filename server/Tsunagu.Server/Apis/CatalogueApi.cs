using Microsoft.AspNetCore.Http.HttpResults;
using Tsunagu.Protocol;
using Tsunagu.Server.Catalogue;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Apis;

public sealed record SoftwareRequest(string AppId, string Version, string Name, string? RequiredHardware, string? RequiredOs);
public sealed record SoftwareEdit(string Name, string? RequiredHardware, string? RequiredOs);
public sealed record PatchRequest(string Id, string Name, string Version, string TargetApp, int Importance, string? OsVersion, string? HardwareVersion);
public sealed record PatternView(string Id, string Name, string HardwareVersion, string OsVersion, IReadOnlyDictionary<string, string> Applications,
    string Status, string? CreatedAt, string? VerifiedAt, string? RetiredAt);
public sealed record ArtifactView(string Sha256, long Size);
/// <summary>A contract: the service configuration fields its subscribers may change (<see cref="ServiceConfigFields.All"/>).</summary>
public sealed record ContractView(string Name, IReadOnlyList<string> SubscriberFields);
public sealed record ContractRequest(IReadOnlyList<string>? SubscriberFields);

/// <summary>The operator's catalogue (patent figs. 7-8): software, patches, install patterns, update programs, artifacts, service configurations, contracts.</summary>
public static class CatalogueApi
{
    public static void MapCatalogueApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup(Routes.Prefix).AddEndpointFilter<RequireOperator>().WithTags("Catalogue");

        api.MapGet("/software", (TsunaguStore store, string? appId) => TypedResults.Ok(store.ListSoftware(appId))).AllowRoles(OperatorRoles.Read);
        api.MapPost("/software", Results<Created<SoftwareRow>, ProblemHttpResult> (SoftwareRequest r, CatalogueService catalogue, TsunaguStore store, HttpContext http) => Problems.Guard(() =>
        {
            catalogue.AddSoftware(new SoftwareRow { AppId = r.AppId, Version = r.Version, Name = r.Name, RequiredHardware = r.RequiredHardware, RequiredOs = r.RequiredOs },
                http.Caller().Subject);
            return TypedResults.Created($"{Routes.Prefix}/software?appId={r.AppId}", store.GetSoftware(r.AppId, r.Version)!);
        })).ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Release);

        api.MapGet("/patches", (TsunaguStore store) => TypedResults.Ok(store.ListPatches())).AllowRoles(OperatorRoles.Read);
        api.MapPost("/patches", Results<Created<PatchRequest>, ProblemHttpResult> (PatchRequest r, CatalogueService catalogue, HttpContext http) => Problems.Guard(() =>
        {
            catalogue.AddPatch(new PatchRow
            {
                Id = r.Id, Name = r.Name, Version = r.Version, TargetApp = r.TargetApp, Importance = r.Importance,
                OsVersion = r.OsVersion, HardwareVersion = r.HardwareVersion,
            }, http.Caller().Subject);
            return TypedResults.Created($"{Routes.Prefix}/patches", r);
        })).ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Release);

        api.MapPut("/software/{appId}/{version}", Results<Ok<SoftwareRow>, ProblemHttpResult> (string appId, string version, SoftwareEdit r, CatalogueService catalogue, HttpContext http) =>
            Problems.Guard(() => TypedResults.Ok(catalogue.EditSoftware(
                new SoftwareRow { AppId = appId, Version = version, Name = r.Name, RequiredHardware = r.RequiredHardware, RequiredOs = r.RequiredOs }, http.Caller().Subject))))
            .ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Release);
        api.MapDelete("/software/{appId}/{version}", Results<NoContent, ProblemHttpResult> (string appId, string version, CatalogueService catalogue, HttpContext http) =>
            Problems.Guard(() =>
            {
                catalogue.DeleteSoftware(appId, version, http.Caller().Subject);
                return TypedResults.NoContent();
            })).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Release);
        api.MapPut("/patches/{id}", Results<Ok<PatchRequest>, ProblemHttpResult> (string id, PatchRequest r, CatalogueService catalogue, HttpContext http) => Problems.Guard(() =>
        {
            if (r.Id != id) { throw new CatalogueRuleException($"id: the body's id must be the patch's ('{InputRules.Quote(id)}')"); }
            catalogue.EditPatch(new PatchRow
            {
                Id = id, Name = r.Name, Version = r.Version, TargetApp = r.TargetApp, Importance = r.Importance, OsVersion = r.OsVersion, HardwareVersion = r.HardwareVersion,
            }, http.Caller().Subject);
            return TypedResults.Ok(r);
        })).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Release);
        api.MapDelete("/patches/{id}", Results<NoContent, ProblemHttpResult> (string id, CatalogueService catalogue, HttpContext http) => Problems.Guard(() =>
        {
            catalogue.DeletePatch(id, http.Caller().Subject);
            return TypedResults.NoContent();
        })).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Release);

        api.MapGet("/patterns", (TsunaguStore store, string? status) => TypedResults.Ok(store.ListPatterns(status).Select(ToView).ToList())).AllowRoles(OperatorRoles.Read);
        api.MapGet("/patterns/{id}", Results<Ok<PatternView>, ProblemHttpResult> (string id, TsunaguStore store) =>
            store.GetPattern(id) is { } p ? TypedResults.Ok(ToView(p)) : Problems.NotFound($"pattern {id} does not exist"))
            .ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Read);
        api.MapPost("/patterns", Results<Created<PatternView>, ProblemHttpResult> (NewPattern r, CatalogueService catalogue, HttpContext http) => Problems.Guard(() =>
        {
            var p = catalogue.CreatePattern(r, http.Caller().Subject);
            return TypedResults.Created($"{Routes.Prefix}/patterns/{p.Id}", ToView(p));
        })).ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Release);
        api.MapPost("/patterns/{id}/verify", Results<Ok<PatternView>, ProblemHttpResult> (string id, CatalogueService catalogue, HttpContext http) => Problems.Guard(() =>
        {
            var p = catalogue.Verify(id, http.Caller().Subject);
            return TypedResults.Ok(ToView(p));
        })).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Release);
        api.MapPost("/patterns/{id}/retire", Results<Ok<PatternView>, ProblemHttpResult> (string id, CatalogueService catalogue, HttpContext http) => Problems.Guard(() =>
        {
            var p = catalogue.Retire(id, http.Caller().Subject);
            return TypedResults.Ok(ToView(p));
        })).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Release);

        api.MapDelete("/patterns/{id}", Results<NoContent, ProblemHttpResult> (string id, CatalogueService catalogue, HttpContext http) => Problems.Guard(() =>
        {
            catalogue.DeletePattern(id, http.Caller().Subject);
            return TypedResults.NoContent();
        })).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Release);

        api.MapGet("/update-programs", (TsunaguStore store) => TypedResults.Ok(store.ListUpdatePrograms())).AllowRoles(OperatorRoles.Read);
        api.MapPost("/update-programs", async Task<Results<Created<UpdateProgramRow>, ProblemHttpResult>> (NewUpdateProgram r, CatalogueService catalogue, HttpContext http) =>
        {
            try
            {
                var p = await catalogue.AddUpdateProgramAsync(r, http.Caller().Subject, http.RequestAborted);
                return TypedResults.Created($"{Routes.Prefix}/update-programs", p);
            }
            catch (CatalogueRuleException e)
            {
                return Problems.BadRequest(e.Message);
            }
            catch (StoreConflictException e)
            {
                return Problems.Conflict(e.Message);
            }
        }).ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Release);

        api.MapPost("/artifacts", async Task<Results<Created<ArtifactView>, ProblemHttpResult>> (HttpRequest request, CatalogueService catalogue, HttpContext http, CancellationToken ct) =>
        {
            try
            {
                var (sha, size) = await catalogue.UploadArtifactAsync(request.Body, http.Caller().Subject, ct);
                return TypedResults.Created($"{Routes.Artifacts}/{sha}", new ArtifactView(sha, size));
            }
            catch (InvalidDataException e)
            {
                return Problems.BadRequest(e.Message);
            }
        }).DisableAntiforgery().ProducesProblem(StatusCodes.Status413PayloadTooLarge).WithMetadata(new Microsoft.AspNetCore.Mvc.RequestSizeLimitAttribute(CatalogueService.MaxArtifactBytes))
            .AllowRoles(OperatorRoles.Release);

        api.MapGet("/service-configs/{name}", Results<Ok<ServiceConfiguration>, ProblemHttpResult> (string name, TsunaguStore store) =>
            store.GetServiceConfig(name) is { } c ? TypedResults.Ok(c) : Problems.NotFound($"service configuration {name} does not exist"))
            .ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Read);
        api.MapPut("/service-configs/{name}", Results<Ok<ServiceConfiguration>, ProblemHttpResult> (string name, ServiceConfiguration config, TsunaguStore store, HttpContext http) =>
        {
            if (!InputRules.IsIdentifier(name)) { return Problems.BadRequest(InputRules.Identifier("name"), "name"); }
            try
            {
                ServiceConfigValidator.Validate(config);
            }
            catch (InvalidServiceConfigException e)
            {
                return Problems.BadRequest(e.Message, e.Field);
            }
            store.UpsertServiceConfig(name, config, new AuditEntry(http.Caller().Subject, "service-config.put", name, null));
            return TypedResults.Ok(config);
        }).ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .WithMetadata(new Microsoft.AspNetCore.Mvc.RequestSizeLimitAttribute(AccountsApi.MaxServiceConfigBytes)).AllowRoles(OperatorRoles.Release);

        // contracts: which service configuration fields a subscriber may change themselves (docs/operator-api.md)
        api.MapGet("/contracts", (TsunaguStore store) =>
            TypedResults.Ok(store.ListContracts().Select(n => new ContractView(n, store.GetContract(n) ?? [])).ToList())).AllowRoles(OperatorRoles.Read);
        api.MapGet("/contracts/{name}", Results<Ok<ContractView>, ProblemHttpResult> (string name, TsunaguStore store) =>
            store.GetContract(name) is { } fields ? TypedResults.Ok(new ContractView(name, fields)) : Problems.NotFound($"contract {name} does not exist"))
            .ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Read);
        api.MapPut("/contracts/{name}", Results<Ok<ContractView>, ProblemHttpResult> (string name, ContractRequest request, TsunaguStore store, HttpContext http) =>
        {
            if (string.IsNullOrEmpty(name) || name.Length > 64 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
            {
                return Problems.BadRequest("name: 1..64 ASCII letters, digits, '-', '_' or '.'");
            }
            if (request.SubscriberFields is null) { return Problems.BadRequest("subscriberFields: missing"); }
            for (var i = 0; i < request.SubscriberFields.Count; i++)
            {
                if (!ServiceConfigFields.IsKnown(request.SubscriberFields[i]))
                {
                    return Problems.BadRequest($"subscriberFields[{i}]: {ServiceConfigValidator.Show(request.SubscriberFields[i])} is not a field; known: {string.Join(", ", ServiceConfigFields.All)}");
                }
            }
            var fields = request.SubscriberFields.Distinct(StringComparer.Ordinal).OrderBy(f => ServiceConfigFields.All.ToList().IndexOf(f)).ToList();
            store.UpsertContract(name, fields, new AuditEntry(http.Caller().Subject, "contract.put", name, string.Join(",", fields)));
            return TypedResults.Ok(new ContractView(name, fields));
        }).AllowRoles(OperatorRoles.Administration);
    }

    public static PatternView ToView(PatternRow p) => new(p.Id, p.Name, p.HardwareVersion, p.OsVersion,
        System.Text.Json.JsonSerializer.Deserialize(p.Applications, ProtocolJson.Default.DictionaryStringString) ?? [],
        p.Status, p.CreatedAt, p.VerifiedAt, p.RetiredAt);
}
