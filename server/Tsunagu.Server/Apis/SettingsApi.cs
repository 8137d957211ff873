using Microsoft.AspNetCore.Http.HttpResults;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Apis;

/// <summary>The operator's settings: the importance policy of updates (patent 0048).</summary>
public static class SettingsApi
{
    public static void MapSettingsApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup(Routes.Prefix).AddEndpointFilter<RequireOperator>().WithTags("Settings");

        api.MapGet("/settings/update-policy", async (TsunaguStore store, CancellationToken ct) => TypedResults.Ok(await PolicySettings.GetAsync(store, ct))).AllowRoles(OperatorRoles.Read);
        api.MapPut("/settings/update-policy", async Task<Results<Ok<UpdatePolicy>, ProblemHttpResult>> (UpdatePolicy policy, TsunaguStore store, HttpContext http) =>
        {
            try
            {
                ImportancePolicy.Validate(policy);
            }
            catch (ArgumentException e)
            {
                return Problems.BadRequest(e.Message);
            }
            if (await Fleet.GroupWindows.StallUnderAsync(store, policy, http.RequestAborted) is { } stall)
            {
                return Problems.Conflict($"{stall}; nothing was changed (change the group's window first, or choose hours that meet it)");
            }
            await PolicySettings.SetAsync(store, policy,
                new AuditEntry(http.Caller().Subject, "settings.update-policy", null, System.Text.Json.JsonSerializer.Serialize(policy, ProtocolJson.Default.UpdatePolicy)), ct: http.RequestAborted);
            return TypedResults.Ok(policy);
        }).AllowRoles(OperatorRoles.Release);
    }
}

/// <summary>The importance policy as data (operator setting, patent 0048).</summary>
public static class PolicySettings
{
    public const string Key = "update-policy";

    public static async Task<UpdatePolicy> GetAsync(TsunaguStore store, CancellationToken ct = default) => Parse(await store.GetSettingAsync(Key, ct));

    /// <summary>The policy as of a catalogue snapshot (what a version check uses: no read of its own).</summary>
    public static UpdatePolicy From(CatalogueSnapshot catalogue) => Parse(catalogue.Setting(Key));

    private static UpdatePolicy Parse(string? json) =>
        json is not null ? System.Text.Json.JsonSerializer.Deserialize(json, ProtocolJson.Default.UpdatePolicy) ?? UpdatePolicy.Default : UpdatePolicy.Default;

    /// <summary>Stores the policy, with <paramref name="audit"/> (when given) in the same transaction.</summary>
    public static async Task SetAsync(TsunaguStore store, UpdatePolicy policy, AuditEntry? audit = null, CancellationToken ct = default) =>
        await store.SetSettingAsync(Key, System.Text.Json.JsonSerializer.Serialize(policy, ProtocolJson.Default.UpdatePolicy), audit, ct: ct);
}
