using Tsunagu.Firmware.Net;
using Tsunagu.Firmware.Services;
using Tsunagu.Firmware.Storage;
using Tsunagu.Firmware.Updates;
using Tsunagu.Hal;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Supervision;

/// <summary>Reads the factory identity, opens (or rebuilds) `data`, restores the factory software if missing.</summary>
public sealed class BootState : IState
{
    public StateId Id => StateId.Boot;

    public async Task<Outcome> EnterAsync(SupervisorContext ctx, CancellationToken ct)
    {
        ctx.Hardware.Leds.Show(StatusIndication.Booting);
        FactoryIdentity identity;
        try
        {
            identity = await ctx.Hardware.Factory.ReadIdentityAsync(ct);
        }
        catch (HalException e)
        {
            return ctx.Fail(Outcome.Retry, "boot: factory partition", e);
        }
        ctx.Identity = identity;
        ctx.Secret = Convert.FromBase64String(identity.UnitSecret);
        ctx.StartOver();

        await ctx.Hardware.Data.EnsureReadyAsync(ct);
        ctx.Store?.Dispose();
        try
        {
            ctx.Store = StateStore.Open(ctx.Hardware.Data.Root);
        }
        catch (StateStoreCorruptException e)
        {
            ctx.Log($"boot: {e.Message}; formatting data and provisioning again");
            await ctx.Hardware.Data.FormatAsync(ct);
            ctx.Store = StateStore.Open(ctx.Hardware.Data.Root);
        }
        ctx.Apps = new AppStore(ctx.Hardware.Data.Root, log: ctx.Log);
        if (ctx.Store.Get(StateKeys.PendingUpdate, FirmwareJson.Default.PendingUpdate) is { Phase: PendingUpdate.Rebooting or PendingUpdate.Checking } resumed)
        {
            // the health check must run within this, whether or not the host can be reached (a new OS may break the link)
            var limit = ctx.Options.Update.HostUnreachableGrace + ctx.Options.Update.HealthWindow;
            ctx.ArmUpdateDeadline(limit);
            ctx.Log($"boot: update {resumed.UpdateId} is in phase {resumed.Phase}; rolled back unless its health check starts within {limit.TotalSeconds:0.#}s");
        }
        else
        {
            ctx.DisarmUpdateDeadline();
        }
        ctx.Services?.Dispose();
        var dataRoot = ctx.Hardware.Data.Root;
        var environment = new ServiceEnvironment(ctx.Hardware.Board,
            ctx.Options.ServiceRunDirectory ?? Path.Combine(dataRoot, "services", "run"), Path.Combine(dataRoot, "services", "state"))
        {
            FilterListDirectory = Path.Combine(ctx.Apps.Root, FilterCategories.Application, "current"),
        };
        ctx.Services = new ServiceApplier(dataRoot, ctx.Hardware.Services, environment, ctx.Store, ctx.Time, ctx.Log, ctx.Options.ConfirmTimeout)
        {
            VpnPrivateKey = ctx.Secret.Length >= WireGuardKeys.MinSecretBytes ? WireGuardKeys.DerivePrivateKey(ctx.Secret) : null,
        };
        try
        {
            // the LAN keeps being served with the last good configuration (or the fail-closed firewall) from boot on
            await ctx.Services.StartAsync(ct);
        }
        catch (HalException e)
        {
            ctx.LogError("boot: starting the services", e);
        }
        var installed = ctx.Apps.Current();
        foreach (var app in ctx.Hardware.Prom.FactoryApplications.Where(a => !installed.ContainsKey(a.Name)))
        {
            ctx.Apps.Stage(app.Name, app.Version, app.TreePath);
            ctx.Apps.Switch(app.Name, app.Version);
            ctx.Log($"boot: restored factory {app.Name} {app.Version} from PROM");
        }
        // every installed application against the signed digests it was installed with (patent 0040)
        ctx.DamagedApps = AppIntegrity.Check(ctx.Apps, BundleInstaller.TrustedKeys(identity, ctx.Store), ctx.Hardware.Prom.FactoryApplications, ctx.Log);
        // the services started before the applications were recovered, restored and repaired: the content filter's category
        // lists are read again (nothing restarts when they did not change)
        await ctx.Services.RefreshAsync("applications checked at boot", ct);
        ctx.Client ??= new UnitClient(ctx.Hardware.Network, identity.ServerCertificatePins);

        var settings = ctx.Store.Get(StateKeys.Settings, FirmwareJson.Default.UnitSettings);
        if (settings is null || settings.Mac != MacAddress.Normalize(identity.Mac))
        {
            return Outcome.NeedsProvisioning;
        }
        ctx.Settings = settings;
        if (ctx.Store.Get(StateKeys.PowerOnSpread, FirmwareJson.Default.PowerOnSpread) is { Seconds: > 0 } spread)
        {
            // the LAN is already served (above); only the first contact with the operator waits
            var wait = TimeSpan.FromSeconds(ctx.Random.NextDouble() * spread.Seconds);
            ctx.Log($"boot: waiting {wait.TotalSeconds:0.0} s before connecting (the host's power-on spread is {spread.Seconds} s)");
            await Task.Delay(wait, ctx.Time, ct);
        }
        return Outcome.Success;
    }
}
