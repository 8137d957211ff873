using System.Text.Json;
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
public sealed record NamedServiceConfigView(string Name, ServiceConfiguration Config);
public sealed record ContractView(string Name, IReadOnlyList<string> SubscriberFields);
public sealed record ContractRequest(IReadOnlyList<string>? SubscriberFields);

/// <summary>The operator's catalogue (patent figs. 7-8): software, patches, install patterns, update programs, artifacts, service configurations, contracts.</summary>
public static class CatalogueApi
{
    private const string DocumentTag = "the ETag of GET (the stored document's SHA-256 in lower-case hex, quoted)";

    public static void MapCatalogueApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup(Routes.Prefix).AddEndpointFilter<RequireOperator>().WithTags("Catalogue");

        api.MapGet("/software", async (TsunaguStore store, string? appId) => TypedResults.Ok(await store.Catalogue.ListSoftwareAsync(appId))).AllowRoles(OperatorRoles.Read);
        api.MapPost("/software", Task<Results<Created<SoftwareRow>, ProblemHttpResult>> (SoftwareRequest r, CatalogueService catalogue, TsunaguStore store, HttpContext http) => Problems.GuardAsync(async () =>
        {
            await catalogue.AddSoftwareAsync(new SoftwareRow { AppId = r.AppId, Version = r.Version, Name = r.Name, RequiredHardware = r.RequiredHardware, RequiredOs = r.RequiredOs },
                http.Caller().Subject, ct: http.RequestAborted);
            return TypedResults.Created($"{Routes.Prefix}/software?appId={r.AppId}", (await store.Catalogue.GetSoftwareAsync(r.AppId, r.Version, http.RequestAborted))!);
        })).ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Release);

        api.MapGet("/patches", async (TsunaguStore store, CancellationToken ct) => TypedResults.Ok(await store.Catalogue.ListPatchesAsync(ct))).AllowRoles(OperatorRoles.Read);
        api.MapPost("/patches", Task<Results<Created<PatchRequest>, ProblemHttpResult>> (PatchRequest r, CatalogueService catalogue, HttpContext http) => Problems.GuardAsync(async () =>
        {
            await catalogue.AddPatchAsync(new PatchRow
            {
                Id = r.Id, Name = r.Name, Version = r.Version, TargetApp = r.TargetApp, Importance = r.Importance,
                OsVersion = r.OsVersion, HardwareVersion = r.HardwareVersion,
            }, http.Caller().Subject, ct: http.RequestAborted);
            return TypedResults.Created($"{Routes.Prefix}/patches", r);
        })).ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Release);

        api.MapPut("/software/{appId}/{version}", Task<Results<Ok<SoftwareRow>, ProblemHttpResult>> (string appId, string version, SoftwareEdit r, CatalogueService catalogue, HttpContext http) =>
            Problems.GuardAsync(async () => TypedResults.Ok(await catalogue.EditSoftwareAsync(
                new SoftwareRow { AppId = appId, Version = version, Name = r.Name, RequiredHardware = r.RequiredHardware, RequiredOs = r.RequiredOs }, http.Caller().Subject, http.RequestAborted))))
            .ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Release);
        api.MapDelete("/software/{appId}/{version}", Task<Results<NoContent, ProblemHttpResult>> (string appId, string version, CatalogueService catalogue, HttpContext http) =>
            Problems.GuardAsync(async () =>
            {
                await catalogue.DeleteSoftwareAsync(appId, version, http.Caller().Subject, http.RequestAborted);
                return TypedResults.NoContent();
            })).ProducesProblem(StatusCodes.Status400BadRequest).ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Release);
        api.MapPut("/patches/{id}", Task<Results<Ok<PatchRequest>, ProblemHttpResult>> (string id, PatchRequest r, CatalogueService catalogue, HttpContext http) => Problems.GuardAsync(async () =>
        {
            if (r.Id != id) { throw new CatalogueRuleException($"id: the body's id must be the patch's ('{InputRules.Quote(id)}')"); }
            await catalogue.EditPatchAsync(new PatchRow
            {
                Id = id, Name = r.Name, Version = r.Version, TargetApp = r.TargetApp, Importance = r.Importance, OsVersion = r.OsVersion, HardwareVersion = r.HardwareVersion,
            }, http.Caller().Subject, http.RequestAborted);
            return TypedResults.Ok(r);
        })).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Release);
        api.MapDelete("/patches/{id}", Task<Results<NoContent, ProblemHttpResult>> (string id, CatalogueService catalogue, HttpContext http) => Problems.GuardAsync(async () =>
        {
            await catalogue.DeletePatchAsync(id, http.Caller().Subject, http.RequestAborted);
            return TypedResults.NoContent();
        })).ProducesProblem(StatusCodes.Status400BadRequest).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Release);

        api.MapGet("/patterns", async (TsunaguStore store, string? status, CancellationToken ct) => TypedResults.Ok((await store.Catalogue.ListPatternsAsync(status, ct)).Select(CatalogueService.View).ToList())).AllowRoles(OperatorRoles.Read);
        api.MapGet("/patterns/{id}", async Task<Results<Ok<PatternView>, ProblemHttpResult>> (string id, TsunaguStore store, CancellationToken ct) =>
            await store.Catalogue.GetPatternAsync(id, ct) is { } p ? TypedResults.Ok(CatalogueService.View(p)) : Problems.NotFound($"pattern {id} does not exist"))
            .ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Read);
        api.MapPost("/patterns", Task<Results<Created<PatternView>, ProblemHttpResult>> (NewPattern r, CatalogueService catalogue, HttpContext http) => Problems.GuardAsync(async () =>
        {
            var p = await catalogue.CreatePatternAsync(r, http.Caller().Subject, http.RequestAborted);
            return TypedResults.Created($"{Routes.Prefix}/patterns/{p.Id}", CatalogueService.View(p));
        })).ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Release);
        api.MapPost("/patterns/{id}/verify", Task<Results<Ok<PatternView>, ProblemHttpResult>> (string id, CatalogueService catalogue, HttpContext http) => Problems.GuardAsync(async () =>
        {
            var p = await catalogue.VerifyAsync(id, http.Caller().Subject, ct: http.RequestAborted);
            return TypedResults.Ok(CatalogueService.View(p));
        })).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Release);
        api.MapPost("/patterns/{id}/retire", Task<Results<Ok<PatternView>, ProblemHttpResult>> (string id, CatalogueService catalogue, HttpContext http) => Problems.GuardAsync(async () =>
        {
            var p = await catalogue.RetireAsync(id, http.Caller().Subject, ct: http.RequestAborted);
            return TypedResults.Ok(CatalogueService.View(p));
        })).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Release);

        api.MapDelete("/patterns/{id}", Task<Results<NoContent, ProblemHttpResult>> (string id, CatalogueService catalogue, HttpContext http) => Problems.GuardAsync(async () =>
        {
            await catalogue.DeletePatternAsync(id, http.Caller().Subject, http.RequestAborted);
            return TypedResults.NoContent();
        })).ProducesProblem(StatusCodes.Status400BadRequest).ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Release);

        api.MapGet("/update-programs", async (TsunaguStore store, CancellationToken ct) => TypedResults.Ok(await store.Catalogue.ListUpdateProgramsAsync(ct))).AllowRoles(OperatorRoles.Read);
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

        api.MapDelete("/update-programs/{id}", Task<Results<NoContent, ProblemHttpResult>> (string id, CatalogueService catalogue, HttpContext http) => Problems.GuardAsync(async () =>
        {
            await catalogue.DeleteUpdateProgramAsync(id, http.Caller().Subject, http.RequestAborted);
            return TypedResults.NoContent();
        })).ProducesProblem(StatusCodes.Status400BadRequest).ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict)
            .AllowRoles(OperatorRoles.Release);

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

        api.MapGet("/service-configs", async (TsunaguStore store, CancellationToken ct) =>
            TypedResults.Ok((await store.ServiceConfigs.ListServiceConfigsAsync(ct)).Select(n =>
                new NamedServiceConfigView(n.Name, JsonSerializer.Deserialize(n.Document, ProtocolJson.Default.ServiceConfiguration)!)).ToList()))
            .AllowRoles(OperatorRoles.Read);
        // the ETag of a named configuration or contract is its stored document's digest; a PUT or DELETE with If-Match
        // acts only while the document is still that one (409 otherwise, as the unit row's), without it as before
        api.MapGet("/service-configs/{name}", async Task<Results<Ok<ServiceConfiguration>, ProblemHttpResult>> (string name, TsunaguStore store, HttpContext http, CancellationToken ct) =>
        {
            if (await store.ServiceConfigs.GetServiceConfigDocumentAsync(name, ct) is not { } stored) { return Problems.NotFound($"service configuration {name} does not exist"); }
            http.Response.Headers.ETag = InputRules.DigestETag(stored.Digest);
            return TypedResults.Ok(JsonSerializer.Deserialize(stored.Document, ProtocolJson.Default.ServiceConfiguration)!);
        }).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Read);
        api.MapPut("/service-configs/{name}", async Task<Results<Ok<ServiceConfiguration>, ProblemHttpResult>> (string name, ServiceConfiguration config, TsunaguStore store,
            OfferedCategories categories, HttpContext http, CancellationToken ct) =>
        {
            if (!InputRules.IsIdentifier(name)) { return Problems.BadRequest(InputRules.Identifier("name"), "name"); }
            var (expected, badTag) = InputRules.IfMatchDigest(http, DocumentTag);
            if (badTag is not null) { return Problems.BadRequest(badTag); }
            try
            {
                // the document it replaces: a category it chose stays allowed after the operator stops offering it
                var stored = await store.ServiceConfigs.GetServiceConfigDocumentAsync(name, ct);
                categories.Validate(config, stored is null ? null : JsonSerializer.Deserialize(stored.Document, ProtocolJson.Default.ServiceConfiguration));
            }
            catch (InvalidServiceConfigException e)
            {
                return Problems.BadRequest(e.Message, e.Field);
            }
            var audit = new AuditEntry(http.Caller().Subject, "service-config.put", name, null);
            return await Problems.GuardAsync(async () =>
            {
                await (expected is null ? store.ServiceConfigs.UpsertServiceConfigAsync(name, config, audit, ct: ct) : store.ServiceConfigs.PutServiceConfigCheckedAsync(name, config, expected, audit, ct));
                http.Response.Headers.ETag = InputRules.DigestETag(NamedDocument.DigestOf(JsonSerializer.Serialize(config, ProtocolJson.Default.ServiceConfiguration)));
                return TypedResults.Ok(config);
            });
        }).ProducesProblem(StatusCodes.Status409Conflict).ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .WithMetadata(new Microsoft.AspNetCore.Mvc.RequestSizeLimitAttribute(AccountsApi.MaxServiceConfigBytes)).AllowRoles(OperatorRoles.Release);

        api.MapDelete("/service-configs/{name}", Task<Results<NoContent, ProblemHttpResult>> (string name, TsunaguStore store, HttpContext http) => Problems.GuardAsync(async () =>
        {
            var (expected, badTag) = InputRules.IfMatchDigest(http, DocumentTag);
            if (badTag is not null) { throw new CatalogueRuleException(badTag); }
            await store.ServiceConfigs.DeleteServiceConfigAsync(name, Units.Registration.UnitRegistration.DefaultServiceConfig, expected, new AuditEntry(http.Caller().Subject, "service-config.delete", name, null), http.RequestAborted);
            return TypedResults.NoContent();
        })).ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Release);

        // contracts: which service configuration fields a subscriber may change themselves (docs/operator-api.md)
        api.MapGet("/contracts", async (TsunaguStore store, CancellationToken ct) =>
            TypedResults.Ok((await store.Accounts.ListContractDocumentsAsync(ct)).Select(c =>
                new ContractView(c.Name, JsonSerializer.Deserialize(c.Document, ProtocolJson.Default.ListString) ?? [])).ToList()))
            .AllowRoles(OperatorRoles.Read);
        api.MapGet("/contracts/{name}", async Task<Results<Ok<ContractView>, ProblemHttpResult>> (string name, TsunaguStore store, HttpContext http, CancellationToken ct) =>
        {
            if (await store.Accounts.GetContractDocumentAsync(name, ct) is not { } stored) { return Problems.NotFound($"contract {name} does not exist"); }
            http.Response.Headers.ETag = InputRules.DigestETag(stored.Digest);
            return TypedResults.Ok(new ContractView(name, JsonSerializer.Deserialize(stored.Document, ProtocolJson.Default.ListString) ?? []));
        }).ProducesProblem(StatusCodes.Status404NotFound).AllowRoles(OperatorRoles.Read);
        api.MapPut("/contracts/{name}", async Task<Results<Ok<ContractView>, ProblemHttpResult>> (string name, ContractRequest request, TsunaguStore store, HttpContext http, CancellationToken ct) =>
        {
            if (!ServiceConfigFields.IsContractName(name)) { return Problems.BadRequest(ServiceConfigFields.ContractNameRule); }
            if (request.SubscriberFields is null) { return Problems.BadRequest("subscriberFields: missing"); }
            if (ServiceConfigFields.ReadAllowList(request.SubscriberFields, out var fields) is { } bad) { return Problems.BadRequest(bad); }
            var (expected, badTag) = InputRules.IfMatchDigest(http, DocumentTag);
            if (badTag is not null) { return Problems.BadRequest(badTag); }
            var audit = new AuditEntry(http.Caller().Subject, "contract.put", name, string.Join(",", fields));
            return await Problems.GuardAsync(async () =>
            {
                await (expected is null ? store.Accounts.UpsertContractAsync(name, fields, audit, ct: ct) : store.Accounts.PutContractCheckedAsync(name, fields, expected, audit, ct));
                http.Response.Headers.ETag = InputRules.DigestETag(NamedDocument.DigestOf(JsonSerializer.Serialize(fields, ProtocolJson.Default.ListString)));
                return TypedResults.Ok(new ContractView(name, fields));
            });
        }).ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Administration);
        api.MapDelete("/contracts/{name}", Task<Results<NoContent, ProblemHttpResult>> (string name, TsunaguStore store, HttpContext http) => Problems.GuardAsync(async () =>
        {
            var (expected, badTag) = InputRules.IfMatchDigest(http, DocumentTag);
            if (badTag is not null) { throw new CatalogueRuleException(badTag); }
            await store.Accounts.DeleteContractAsync(name, ServiceConfigFields.DefaultContract, expected, new AuditEntry(http.Caller().Subject, "contract.delete", name, null), http.RequestAborted);
            return TypedResults.NoContent();
        })).ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict).AllowRoles(OperatorRoles.Administration);
    }
}
