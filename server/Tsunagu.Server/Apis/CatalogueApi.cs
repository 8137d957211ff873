using Tsunagu.Protocol;
using Tsunagu.Server.Catalogue;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Apis;

public sealed record SoftwareRequest(string AppId, string Version, string Name, string? RequiredHardware, string? RequiredOs);
public sealed record PatchRequest(string Id, string Name, string Version, string TargetApp, int Importance, string? OsVersion, string? HardwareVersion);
public sealed record PatternView(string Id, string Name, string HardwareVersion, string OsVersion, IReadOnlyDictionary<string, string> Applications,
    string Status, string? CreatedAt, string? VerifiedAt, string? RetiredAt);
public sealed record ArtifactView(string Sha256, long Size);
/// <summary>A contract: the service configuration fields its subscribers may change (<see cref="ServiceConfigFields.All"/>).</summary>
public sealed record ContractView(string Name, IReadOnlyList<string> SubscriberFields);
public sealed record ContractRequest(IReadOnlyList<string>? SubscriberFields);

/// <summary>The operator's catalogue (patent figs. 7-8): software, patches, install patterns, update programs, artifacts.</summary>
public static class CatalogueApi
{
    public const long MaxArtifactBytes = 4L * 1024 * 1024 * 1024;

    public static void MapCatalogueApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup(Routes.Prefix).AddEndpointFilter<RequireOperator>().WithTags("Catalogue");

        api.MapGet("/software", (TsunaguStore store, string? appId) => Results.Ok(store.ListSoftware(appId)));
        api.MapPost("/software", (SoftwareRequest r, CatalogueService catalogue, TsunaguStore store, HttpContext http) => Guard(() =>
        {
            catalogue.AddSoftware(new SoftwareRow { AppId = r.AppId, Version = r.Version, Name = r.Name, RequiredHardware = r.RequiredHardware, RequiredOs = r.RequiredOs });
            store.Audit(http.Caller().Subject, "software.add", $"{r.AppId} {r.Version}", null);
            return Results.Created($"{Routes.Prefix}/software?appId={r.AppId}", store.GetSoftware(r.AppId, r.Version));
        }));

        api.MapGet("/patches", (TsunaguStore store) => Results.Ok(store.ListPatches()));
        api.MapPost("/patches", (PatchRequest r, CatalogueService catalogue, TsunaguStore store, HttpContext http) => Guard(() =>
        {
            catalogue.AddPatch(new PatchRow
            {
                Id = r.Id, Name = r.Name, Version = r.Version, TargetApp = r.TargetApp, Importance = r.Importance,
                OsVersion = r.OsVersion, HardwareVersion = r.HardwareVersion,
            });
            store.Audit(http.Caller().Subject, "patch.add", r.Id, $"{r.TargetApp} {r.Version} importance {r.Importance}");
            return Results.Created($"{Routes.Prefix}/patches", r);
        }));

        api.MapGet("/patterns", (TsunaguStore store, string? status) => Results.Ok(store.ListPatterns(status).Select(ToView)));
        api.MapGet("/patterns/{id}", (string id, TsunaguStore store) =>
            store.GetPattern(id) is { } p ? Results.Ok(ToView(p)) : Problems.NotFound($"pattern {id} does not exist"));
        api.MapPost("/patterns", (NewPattern r, CatalogueService catalogue, TsunaguStore store, HttpContext http) => Guard(() =>
        {
            var p = catalogue.CreatePattern(r);
            store.Audit(http.Caller().Subject, "pattern.create", p.Id, p.Applications);
            return Results.Created($"{Routes.Prefix}/patterns/{p.Id}", ToView(p));
        }));
        api.MapPost("/patterns/{id}/verify", (string id, CatalogueService catalogue, TsunaguStore store, HttpContext http) => Guard(() =>
        {
            var p = catalogue.Verify(id);
            store.Audit(http.Caller().Subject, "pattern.verify", id, null);
            return Results.Ok(ToView(p));
        }));
        api.MapPost("/patterns/{id}/retire", (string id, CatalogueService catalogue, TsunaguStore store, HttpContext http) => Guard(() =>
        {
            var p = catalogue.Retire(id);
            store.Audit(http.Caller().Subject, "pattern.retire", id, null);
            return Results.Ok(ToView(p));
        }));

        api.MapGet("/update-programs", (TsunaguStore store) => Results.Ok(store.ListUpdatePrograms()));
        api.MapPost("/update-programs", async (NewUpdateProgram r, CatalogueService catalogue, TsunaguStore store, HttpContext http) =>
        {
            try
            {
                var p = await catalogue.AddUpdateProgramAsync(r, http.RequestAborted);
                store.Audit(http.Caller().Subject, "update-program.add", p.Id, $"{p.FromPattern} -> {p.ToPattern} importance {p.Importance}");
                return Results.Created($"{Routes.Prefix}/update-programs", p);
            }
            catch (CatalogueRuleException e)
            {
                return Problems.BadRequest(e.Message);
            }
            catch (StoreConflictException e)
            {
                return Problems.Conflict(e.Message);
            }
        });

        api.MapPost("/artifacts", async (HttpRequest request, ArtifactStore artifacts, TsunaguStore store, HttpContext http, CancellationToken ct) =>
        {
            try
            {
                var (sha, size) = await artifacts.AddAsync(request.Body, MaxArtifactBytes, ct);
                store.Audit(http.Caller().Subject, "artifact.upload", sha, $"{size} bytes");
                return Results.Created($"{Routes.Artifacts}/{sha}", new ArtifactView(sha, size));
            }
            catch (InvalidDataException e)
            {
                return Problems.BadRequest(e.Message);
            }
        }).DisableAntiforgery().WithMetadata(new Microsoft.AspNetCore.Mvc.RequestSizeLimitAttribute(MaxArtifactBytes));

        api.MapGet("/service-configs/{name}", (string name, TsunaguStore store) =>
            store.GetServiceConfig(name) is { } c ? Results.Ok(c) : Problems.NotFound($"service configuration {name} does not exist"));
        api.MapPut("/service-configs/{name}", (string name, ServiceConfiguration config, TsunaguStore store, HttpContext http) =>
        {
            if (!InputRules.IsIdentifier(name)) { return Problems.BadRequest(InputRules.Identifier("name")); }
            try
            {
                ServiceConfigValidator.Validate(config);
            }
            catch (InvalidServiceConfigException e)
            {
                return Problems.BadRequest(e.Message);
            }
            store.UpsertServiceConfig(name, config);
            store.Audit(http.Caller().Subject, "service-config.put", name, null);
            return Results.Ok(config);
        });

        // contracts: which service configuration fields a subscriber may change themselves (docs/operator-api.md)
        api.MapGet("/contracts", (TsunaguStore store) =>
            Results.Ok(store.ListContracts().Select(n => new ContractView(n, store.GetContract(n) ?? [])).ToList()));
        api.MapGet("/contracts/{name}", (string name, TsunaguStore store) =>
            store.GetContract(name) is { } fields ? Results.Ok(new ContractView(name, fields)) : Problems.NotFound($"contract {name} does not exist"));
        api.MapPut("/contracts/{name}", (string name, ContractRequest request, TsunaguStore store, HttpContext http) =>
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
            store.UpsertContract(name, fields);
            store.Audit(http.Caller().Subject, "contract.put", name, string.Join(",", fields));
            return Results.Ok(new ContractView(name, fields));
        });

        api.MapGet("/settings/update-policy", (TsunaguStore store) => Results.Ok(PolicySettings.Get(store)));
        api.MapPut("/settings/update-policy", (UpdatePolicy policy, TsunaguStore store, HttpContext http) =>
        {
            try
            {
                ImportancePolicy.Validate(policy);
            }
            catch (ArgumentException e)
            {
                return Problems.BadRequest(e.Message);
            }
            PolicySettings.Set(store, policy);
            store.Audit(http.Caller().Subject, "settings.update-policy", null, System.Text.Json.JsonSerializer.Serialize(policy, ProtocolJson.Default.UpdatePolicy));
            return Results.Ok(policy);
        });

        api.MapGet("/media", (TsunaguStore store) => Results.Ok(store.ListMedia()));
        api.MapPost("/media", (MediaRegistration r, TsunaguStore store, HttpContext http) =>
        {
            var digest = r.Digest?.ToLowerInvariant() ?? "";
            if (!ArtifactStore.IsDigest(digest)) { return Problems.BadRequest($"digest: '{r.Digest}' is not a SHA-256 in hex"); }
            if (!InputRules.IsText(r.Name, 128)) { return Problems.BadRequest("name: required; " + InputRules.Text("name", 128)); }
            return Guard(() =>
            {
                store.AddMedium(digest, r.Name.Trim());
                store.Audit(http.Caller().Subject, "media.register", digest, r.Name);
                return Results.Created($"{Routes.Media}/{digest}", new MediaRegistration(digest, r.Name.Trim()));
            });
        });

        api.MapGet("/audit", (TsunaguStore store, int? limit, string? actor, string? target) =>
            Results.Ok(store.ListAudit(Math.Clamp(limit ?? 200, 1, 10_000), actor, target)));
    }

    public static PatternView ToView(PatternRow p) => new(p.Id, p.Name, p.HardwareVersion, p.OsVersion,
        System.Text.Json.JsonSerializer.Deserialize(p.Applications, ProtocolJson.Default.DictionaryStringString) ?? [],
        p.Status, p.CreatedAt, p.VerifiedAt, p.RetiredAt);

    /// <summary>Turns the catalogue's rule violations into problem responses.</summary>
    internal static IResult Guard(Func<IResult> action)
    {
        try
        {
            return action();
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

/// <summary>The importance policy as data (operator setting, patent 0048).</summary>
public static class PolicySettings
{
    public const string Key = "update-policy";

    public static UpdatePolicy Get(TsunaguStore store) => Parse(store.GetSetting(Key));

    /// <summary>The policy as of a catalogue snapshot (what a version check uses: no read of its own).</summary>
    public static UpdatePolicy From(CatalogueSnapshot catalogue) => Parse(catalogue.Setting(Key));

    private static UpdatePolicy Parse(string? json) =>
        json is not null ? System.Text.Json.JsonSerializer.Deserialize(json, ProtocolJson.Default.UpdatePolicy) ?? UpdatePolicy.Default : UpdatePolicy.Default;

    public static void Set(TsunaguStore store, UpdatePolicy policy) =>
        store.SetSetting(Key, System.Text.Json.JsonSerializer.Serialize(policy, ProtocolJson.Default.UpdatePolicy));
}
