using Tsunagu.Firmware.Storage;

namespace Tsunagu.Firmware.Supervision;

/// <summary>S200: keep the settings durably on `data` so a reboot goes straight to the main connection.</summary>
public sealed class StoreSettingsState : IState
{
    public StateId Id => StateId.StoreSettings;

    public Task<Outcome> EnterAsync(SupervisorContext ctx, CancellationToken ct)
    {
        var settings = ctx.FetchedSettings ?? throw new InvalidOperationException("StoreSettings entered without fetched settings");
        try
        {
            ctx.RequireStore().Set(StateKeys.Settings, settings, FirmwareJson.Default.UnitSettings);
        }
        catch (Exception e) when (e is IOException or LiteDB.LiteException)
        {
            return Task.FromResult(ctx.Fail(Outcome.Retry, "store settings", e));
        }
        ctx.Settings = settings;
        ctx.FetchedSettings = null;
        return Task.FromResult(Outcome.Success);
    }
}
