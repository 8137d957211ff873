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

        api.MapGet("/settings/update-policy", (TsunaguStore store) => TypedResults.Ok(PolicySettings.Get(store))).AllowRoles(OperatorRoles.Read);
        api.MapPut("/settings/update-policy", Results<Ok<UpdatePolicy>, ProblemHttpResult> (UpdatePolicy policy, TsunaguStore store, HttpContext http) =>
        {
            try
            {
                ImportancePolicy.Validate(policy);
            }
            catch (ArgumentException e)
            {
                return Problems.BadRequest(e.Message);
            }
            if (Fleet.GroupWindows.StallUnder(store, policy) is { } stall)
            {
                return Problems.Conflict($"{stall}; nothing was changed (change the group's window first, or choose hours that meet it)");
            }
            PolicySettings.Set(store, policy,
                new AuditEntry(http.Caller().Subject, "settings.update-policy", null, System.Text.Json.JsonSerializer.Serialize(policy, ProtocolJson.Default.UpdatePolicy)));
            return TypedResults.Ok(policy);
        }).AllowRoles(OperatorRoles.Release);
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

    /// <summary>Stores the policy, with <paramref name="audit"/> (when given) in the same transaction.</summary>
    public static void Set(TsunaguStore store, UpdatePolicy policy, AuditEntry? audit = null) =>
        store.SetSetting(Key, System.Text.Json.JsonSerializer.Serialize(policy, ProtocolJson.Default.UpdatePolicy), audit);
}
