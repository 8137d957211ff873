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
            try
            {
                await PolicySettings.SetCheckedAsync(store, policy, http.Caller().Subject, http.RequestAborted);
            }
            catch (StoreConflictException e)
            {
                return Problems.Conflict(e.Message);
            }
            return TypedResults.Ok(policy);
        }).AllowRoles(OperatorRoles.Release);
    }
}

/// <summary>The importance policy as data (operator setting, patent 0048).</summary>
public static class PolicySettings
{
    public const string Key = "update-policy";

    public static async Task<UpdatePolicy> GetAsync(TsunaguStore store, CancellationToken ct = default) => Parse(await store.Settings.GetSettingAsync(Key, ct));

    /// <summary>The policy as of a catalogue snapshot (what a version check uses: no read of its own).</summary>
    public static UpdatePolicy From(CatalogueSnapshot catalogue) => Parse(catalogue.Setting(Key));

    /// <summary>The policy a stored setting holds (null: none stored, the default).</summary>
    public static UpdatePolicy Parse(string? json) =>
        json is not null ? System.Text.Json.JsonSerializer.Deserialize(json, ProtocolJson.Default.UpdatePolicy) ?? UpdatePolicy.Default : UpdatePolicy.Default;

    /// <summary>
    /// Stores the policy with its audit entry, unless it would hold the units of a running or paused rollout forever (its
    /// group's window never overlaps the policy's window its update waits for): then a <see cref="StoreConflictException"/>
    /// says which, and nothing is written. The rollouts, their groups' windows and their updates are read inside the
    /// transaction that writes the policy, under the catalogue's lock, which a group's window change and a rollout's
    /// creation take too: whichever commits second sees the other.
    /// </summary>
    public static async Task SetCheckedAsync(TsunaguStore store, UpdatePolicy policy, string actor, CancellationToken ct)
    {
        var json = System.Text.Json.JsonSerializer.Serialize(policy, ProtocolJson.Default.UpdatePolicy);
        await store.Settings.SetSettingCheckedAsync(Key, json,
            uses => uses.Select(u => MaintenanceWindow.Parse(u.Window).Window is { } window
                    ? Fleet.GroupWindows.Stall(u.GroupName, window, u.Name, u.UpdateId, (int)u.Importance, policy)
                    : null).FirstOrDefault(s => s is not null) is { } stall
                ? $"{stall}; nothing was changed (change the group's window first, or choose hours that meet it)"
                : null,
            new AuditEntry(actor, "settings.update-policy", null, json), ct);
    }

    /// <summary>Stores the policy, with <paramref name="audit"/> (when given) in the same transaction.</summary>
    public static async Task SetAsync(TsunaguStore store, UpdatePolicy policy, AuditEntry? audit = null, CancellationToken ct = default) =>
        await store.Settings.SetSettingAsync(Key, System.Text.Json.JsonSerializer.Serialize(policy, ProtocolJson.Default.UpdatePolicy), audit, ct: ct);
}
