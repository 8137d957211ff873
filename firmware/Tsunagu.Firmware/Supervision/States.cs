using System.Formats.Tar;
using System.IO.Compression;
using System.Text.Json;
using MQTTnet.Exceptions;
using Tsunagu.Firmware.Net;
using Tsunagu.Firmware.Services;
using Tsunagu.Firmware.Storage;
using Tsunagu.Hal;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Supervision;

/// <summary>The real states, one small class each; <see cref="Transitions"/> wires them together.</summary>
public static class DefaultStates
{
    public static IReadOnlyDictionary<StateId, IState> Create() => new IState[]
    {
        new BootState(), new ProvisionalState(), new FetchSettingsState(), new StoreSettingsState(), new DisconnectState(),
        new MainState(), new HostSessionState(), new VersionCheckState(), new UpdateState(), new ServiceConfigState(),
        new ReadyState(), new RefusedState(),
    }.ToDictionary(s => s.Id);

    /// <summary>Maps a failed server call to the outcome the table expects.</summary>
    internal static Outcome FromServerError(SupervisorContext ctx, string what, ServerException e) =>
        e.IsRefusal ? ctx.Fail(Outcome.Refused, what, e)
        : e.IsSessionExpired ? ctx.Fail(Outcome.SessionExpired, what, e)
        : !ctx.Hardware.Wan.IsUp ? ctx.Fail(Outcome.LinkLost, what, e)
        : ctx.Fail(Outcome.Retry, what, e);
}

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
        ctx.HostSession = null;
        ctx.ProvisionalSession = null;
        ctx.Settings = null;

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
        ctx.Apps = new AppStore(ctx.Hardware.Data.Root);
        ctx.Services = new ServiceApplier(ctx.Hardware.Data.Root);
        var installed = ctx.Apps.Current();
        foreach (var app in ctx.Hardware.Prom.FactoryApplications.Where(a => !installed.ContainsKey(a.Name)))
        {
            ctx.Apps.Stage(app.Name, app.Version, app.TreePath);
            ctx.Apps.Switch(app.Name, app.Version);
            ctx.Log($"boot: restored factory {app.Name} {app.Version} from PROM");
        }
        ctx.Client ??= new UnitClient(ctx.Hardware.Network, identity.ServerCertificatePins);

        var settings = ctx.Store.Get(StateKeys.Settings, FirmwareJson.Default.UnitSettings);
        if (settings is null || settings.Mac != MacAddress.Normalize(identity.Mac))
        {
            return Outcome.NeedsProvisioning;
        }
        ctx.Settings = settings;
        return Outcome.Success;
    }
}

/// <summary>S100: bring up the provisional link and prove the unit's identity to the initial setting server.</summary>
public sealed class ProvisionalState : IState
{
    public StateId Id => StateId.Provisional;

    public async Task<Outcome> EnterAsync(SupervisorContext ctx, CancellationToken ct)
    {
        ctx.Hardware.Leds.Show(StatusIndication.Provisioning);
        var identity = ctx.RequireIdentity();
        try
        {
            if (ctx.Hardware.Wan.Role != LinkRole.Provisional)
            {
                await ctx.Hardware.Wan.DownAsync(ct);
                await ctx.Hardware.Wan.UpAsync(LinkRole.Provisional, identity.Bootstrap.ProvisionalWan, ct);
            }
        }
        catch (HalException e)
        {
            return ctx.Fail(Outcome.Retry, "provisional link", e);
        }
        try
        {
            ctx.ProvisionalSession = await ctx.RequireClient().AuthenticateAsync(
                new Uri(identity.Bootstrap.InitialServerUrl), ProofPurpose.Provisional, identity, ctx.Secret, ct);
            return Outcome.Success;
        }
        catch (ServerException e)
        {
            var outcome = DefaultStates.FromServerError(ctx, "provisional authentication", e);
            return outcome == Outcome.LinkLost || outcome == Outcome.SessionExpired ? Outcome.Retry : outcome;
        }
    }
}

/// <summary>S200: fetch this unit's row of the device management table.</summary>
public sealed class FetchSettingsState : IState
{
    public StateId Id => StateId.FetchSettings;

    public async Task<Outcome> EnterAsync(SupervisorContext ctx, CancellationToken ct)
    {
        var identity = ctx.RequireIdentity();
        var session = ctx.ProvisionalSession;
        if (session is null)
        {
            return Outcome.SessionExpired;
        }
        try
        {
            var settings = await ctx.RequireClient().GetSettingsAsync(new Uri(identity.Bootstrap.InitialServerUrl), session.Token, ct);
            if (settings.Mac != MacAddress.Normalize(identity.Mac) || !Uri.TryCreate(settings.HostServerUrl, UriKind.Absolute, out _))
            {
                ctx.LastError = $"settings: the server sent settings for {settings.Mac} with host '{settings.HostServerUrl}'";
                ctx.Log(ctx.LastError);
                return Outcome.Retry;
            }
            ctx.FetchedSettings = settings;
            return Outcome.Success;
        }
        catch (ServerException e)
        {
            return DefaultStates.FromServerError(ctx, "fetch settings", e);
        }
    }
}

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

/// <summary>S300: drop the provisional link (variant 2 keeps it: it is the main link).</summary>
public sealed class DisconnectState : IState
{
    public StateId Id => StateId.Disconnect;

    public async Task<Outcome> EnterAsync(SupervisorContext ctx, CancellationToken ct)
    {
        ctx.ProvisionalSession = null;
        if (ctx.Options.SingleLink)
        {
            return Outcome.NothingToDo;
        }
        await ctx.Hardware.Wan.DownAsync(ct);
        return Outcome.Success;
    }
}

/// <summary>S300: bring up the main link with the stored ISP account; after N failures, provision again.</summary>
public sealed class MainState : IState
{
    public StateId Id => StateId.Main;

    public async Task<Outcome> EnterAsync(SupervisorContext ctx, CancellationToken ct)
    {
        ctx.Hardware.Leds.Show(StatusIndication.Connecting);
        var settings = ctx.RequireSettings();
        var wan = ctx.Hardware.Wan;
        var wanted = ctx.Options.SingleLink && wan.Role == LinkRole.Provisional ? LinkRole.Provisional : LinkRole.Main;
        if (wan.IsUp && wan.Role == wanted)
        {
            ctx.MainLinkFailures = 0;
            return Outcome.Success;
        }
        try
        {
            await wan.DownAsync(ct);
            await wan.UpAsync(LinkRole.Main, settings.Isp, ct);
            ctx.MainLinkFailures = 0;
            return Outcome.Success;
        }
        catch (HalException e)
        {
            ctx.MainLinkFailures++;
            if (ctx.MainLinkFailures >= ctx.Options.MainLinkFailureLimit)
            {
                ctx.MainLinkFailures = 0;
                ctx.HostSession = null;
                return ctx.Fail(Outcome.LinkLost, $"main link failed {ctx.Options.MainLinkFailureLimit} times; provisioning again", e);
            }
            return ctx.Fail(Outcome.Retry, $"main link (attempt {ctx.MainLinkFailures})", e);
        }
    }
}

/// <summary>S300: authenticate to the host server (challenge-response); reuses a session that is still valid.</summary>
public sealed class HostSessionState : IState
{
    public StateId Id => StateId.HostSession;

    public async Task<Outcome> EnterAsync(SupervisorContext ctx, CancellationToken ct)
    {
        if (ctx.HostSession is { } s && s.ExpiresAt - ctx.Options.TokenRenewMargin > ctx.Time.GetUtcNow())
        {
            return Outcome.Success;
        }
        try
        {
            ctx.HostSession = await ctx.RequireClient().AuthenticateAsync(ctx.HostUri, ProofPurpose.Host, ctx.RequireIdentity(), ctx.Secret, ct);
            return Outcome.Success;
        }
        catch (ServerException e)
        {
            ctx.HostSession = null;
            var outcome = DefaultStates.FromServerError(ctx, "host authentication", e);
            return outcome == Outcome.SessionExpired ? Outcome.Retry : outcome;
        }
    }
}

/// <summary>S400: ask the host whether this unit's pattern has an update, and decide by importance whether to run it now.</summary>
public sealed class VersionCheckState : IState
{
    public StateId Id => StateId.VersionCheck;

    public async Task<Outcome> EnterAsync(SupervisorContext ctx, CancellationToken ct)
    {
        var forced = ctx.TakeForced();
        var load = ctx.Hardware.Load.Read();
        VersionCheckResponse response;
        try
        {
            response = await ctx.RequireClient().VersionCheckAsync(ctx.HostUri, ctx.HostToken,
                new VersionCheckRequest(ctx.CurrentInventory(), load, forced, null), ct);
        }
        catch (ServerException e)
        {
            if (forced) { ctx.RequestCheck(forced: true); }
            return DefaultStates.FromServerError(ctx, "version check", e);
        }
        ctx.CheckInterval = response.CheckIntervalSeconds > 0 ? TimeSpan.FromSeconds(response.CheckIntervalSeconds) : ctx.Options.CheckInterval;
        ctx.Offer = response.Update;
        var store = ctx.RequireStore();
        var pending = store.Get(StateKeys.PendingUpdate, FirmwareJson.Default.PendingUpdate);
        if (pending is { Phase: PendingUpdate.Failed, Report: { } unsent })
        {
            try
            {
                await ctx.RequireClient().ReportUpdateAsync(ctx.HostUri, ctx.HostToken, unsent, ct);
                pending = pending with { Report = null };
                store.Set(StateKeys.PendingUpdate, pending, FirmwareJson.Default.PendingUpdate);
            }
            catch (ServerException e)
            {
                return DefaultStates.FromServerError(ctx, $"update {unsent.UpdateId}: failure report", e);
            }
        }
        if (response.Update is not { } offer)
        {
            return Outcome.NothingToDo;
        }
        if (pending is { Phase: PendingUpdate.Failed } && pending.UpdateId == offer.UpdateId && pending.Attempts >= 3)
        {
            ctx.Log($"update {offer.UpdateId} failed {pending.Attempts} times; not trying it again until the host offers another");
            return Outcome.NothingToDo;
        }
        var localNow = TimeZoneInfo.ConvertTime(ctx.Time.GetUtcNow(), ctx.Time.LocalTimeZone);
        if (!ImportancePolicy.MayRunNow(offer.Importance, load, response.Policy, localNow, forced))
        {
            ctx.Log($"update {offer.UpdateId} (importance {offer.Importance}) deferred: cpu {load.Cpu:P0}, wan {load.Wan:P0}");
            return Outcome.NothingToDo;
        }
        return Outcome.UpdateAvailable;
    }
}

/// <summary>S400: download the update program, check its digest, install it atomically, report the new inventory.</summary>
public sealed class UpdateState : IState
{
    public StateId Id => StateId.Update;

    public async Task<Outcome> EnterAsync(SupervisorContext ctx, CancellationToken ct)
    {
        ctx.Hardware.Leds.Show(StatusIndication.Updating);
        var offer = ctx.Offer ?? throw new InvalidOperationException("Update entered without an offer");
        var store = ctx.RequireStore();
        var pending = store.Get(StateKeys.PendingUpdate, FirmwareJson.Default.PendingUpdate);
        if (pending?.UpdateId != offer.UpdateId || pending.Phase != PendingUpdate.Installed || pending.Report is null)
        {
            var attempts = pending?.UpdateId == offer.UpdateId ? pending.Attempts + 1 : 1;
            store.Set(StateKeys.PendingUpdate, new PendingUpdate(offer.UpdateId, PendingUpdate.Downloading, null, attempts), FirmwareJson.Default.PendingUpdate);
            try
            {
                await InstallAsync(ctx, offer, ct);
            }
            catch (ServerException e) when (e.IsTransient || e.IsSessionExpired)
            {
                return DefaultStates.FromServerError(ctx, $"update {offer.UpdateId}: download", e);
            }
            catch (Exception e) when (e is UpdateRejectedException or ServerException or IOException or InvalidDataException or ArgumentException or JsonException)
            {
                ctx.Fail(Outcome.Failure, $"update {offer.UpdateId}", e);
                var failed = new UpdateReport(offer.UpdateId, false, e.Message, ctx.CurrentInventory());
                store.Set(StateKeys.PendingUpdate, new PendingUpdate(offer.UpdateId, PendingUpdate.Failed, failed, attempts), FirmwareJson.Default.PendingUpdate);
                if (await TryReportAsync(ctx, failed, ct))
                {
                    store.Set(StateKeys.PendingUpdate, new PendingUpdate(offer.UpdateId, PendingUpdate.Failed, null, attempts), FirmwareJson.Default.PendingUpdate);
                }
                return Outcome.Failure;
            }
            var report = new UpdateReport(offer.UpdateId, true, null, ctx.CurrentInventory());
            store.Set(StateKeys.PendingUpdate, new PendingUpdate(offer.UpdateId, PendingUpdate.Installed, report, attempts), FirmwareJson.Default.PendingUpdate);
            pending = store.Get(StateKeys.PendingUpdate, FirmwareJson.Default.PendingUpdate)!;
            ctx.Log($"update {offer.UpdateId}: installed pattern {offer.ToPattern} software");
        }
        try
        {
            var ack = await ctx.RequireClient().ReportUpdateAsync(ctx.HostUri, ctx.HostToken, pending.Report!, ct);
            store.Delete(StateKeys.PendingUpdate);
            ctx.Log($"update {offer.UpdateId}: host recorded pattern {ack.Pattern}");
            return Outcome.Success;
        }
        catch (ServerException e)
        {
            return DefaultStates.FromServerError(ctx, $"update {offer.UpdateId}: report", e);
        }
    }

    private static async Task<bool> TryReportAsync(SupervisorContext ctx, UpdateReport report, CancellationToken ct)
    {
        try
        {
            await ctx.RequireClient().ReportUpdateAsync(ctx.HostUri, ctx.HostToken, report, ct);
            return true;
        }
        catch (ServerException e)
        {
            ctx.Log($"update {report.UpdateId}: failure report not delivered ({e.Message}); the next version check sends it again");
            return false;
        }
    }

    private static async Task InstallAsync(SupervisorContext ctx, UpdateOffer offer, CancellationToken ct)
    {
        AppStore.ValidateSegment(offer.UpdateId, "update id");
        var work = Path.Combine(ctx.Hardware.Data.Root, "tmp", offer.UpdateId);
        if (Directory.Exists(work)) { Directory.Delete(work, recursive: true); }
        Directory.CreateDirectory(work);
        var artifact = Path.Combine(work, "artifact.tar.gz");
        try
        {
            await using (var file = new FileStream(artifact, FileMode.Create, FileAccess.Write, FileShare.None, 81920, useAsync: true))
            {
                var (sha, length) = await ctx.RequireClient().DownloadAsync(ctx.HostUri, offer.ArtifactUrl, ctx.HostToken, file, offer.Size, ct);
                if (length != offer.Size)
                {
                    throw new UpdateRejectedException($"artifact is {length} bytes, the offer declares {offer.Size}");
                }
                if (!string.Equals(sha, offer.Sha256, StringComparison.OrdinalIgnoreCase))
                {
                    throw new UpdateRejectedException($"artifact SHA-256 is {sha}, the offer declares {offer.Sha256}");
                }
                await file.FlushAsync(ct);
            }
            var tree = Path.Combine(work, "tree");
            var manifest = await ExtractAsync(artifact, tree, ct);
            if (manifest.UpdateId != offer.UpdateId || manifest.ToPattern != offer.ToPattern)
            {
                throw new UpdateRejectedException($"artifact manifest is for {manifest.UpdateId} -> {manifest.ToPattern}, the offer is {offer.UpdateId} -> {offer.ToPattern}");
            }
            var apps = ctx.Apps!;
            foreach (var app in manifest.Applications)
            {
                var source = Path.Combine(tree, "apps", app.Name, app.Version);
                if (!Directory.Exists(source))
                {
                    throw new UpdateRejectedException($"artifact lists {app.Name} {app.Version} but holds no apps/{app.Name}/{app.Version}/");
                }
                apps.Stage(app.Name, app.Version, source);
            }
            foreach (var app in manifest.Applications)
            {
                apps.Switch(app.Name, app.Version);
            }
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    /// <summary>Unpacks regular files and directories only, refusing any path that leaves <paramref name="destination"/>.</summary>
    private static async Task<UpdateArtifactManifest> ExtractAsync(string archive, string destination, CancellationToken ct)
    {
        Directory.CreateDirectory(destination);
        var root = Path.GetFullPath(destination) + Path.DirectorySeparatorChar;
        UpdateArtifactManifest? manifest = null;
        await using var file = File.OpenRead(archive);
        await using var gzip = new GZipStream(file, CompressionMode.Decompress);
        await using var reader = new TarReader(gzip);
        while (await reader.GetNextEntryAsync(copyData: false, ct) is { } entry)
        {
            var target = Path.GetFullPath(Path.Combine(destination, entry.Name));
            if (!target.StartsWith(root, StringComparison.Ordinal))
            {
                throw new UpdateRejectedException($"artifact entry '{entry.Name}' points outside the update directory");
            }
            switch (entry.EntryType)
            {
                case TarEntryType.Directory:
                    Directory.CreateDirectory(target);
                    break;
                case TarEntryType.RegularFile or TarEntryType.V7RegularFile:
                    Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                    await entry.ExtractToFileAsync(target, overwrite: false, ct);
                    if (entry.Name == "manifest.json")
                    {
                        await using var m = File.OpenRead(target);
                        manifest = await JsonSerializer.DeserializeAsync(m, ProtocolJson.Default.UpdateArtifactManifest, ct);
                    }
                    break;
                default:
                    throw new UpdateRejectedException($"artifact entry '{entry.Name}' is a {entry.EntryType}; only files and directories are allowed");
            }
        }
        return manifest ?? throw new UpdateRejectedException("artifact has no manifest.json");
    }
}

/// <summary>An update program that must not be installed; the message says which check failed.</summary>
public sealed class UpdateRejectedException(string message) : Exception(message);

/// <summary>S500: fetch this unit's service configuration, apply it, acknowledge the revision.</summary>
public sealed class ServiceConfigState : IState
{
    public StateId Id => StateId.ServiceConfig;

    public async Task<Outcome> EnterAsync(SupervisorContext ctx, CancellationToken ct)
    {
        var client = ctx.RequireClient();
        var store = ctx.RequireStore();
        var services = ctx.Services!;
        try
        {
            var response = await client.GetServiceConfigAsync(ctx.HostUri, ctx.HostToken, ct);
            var applied = store.Get(StateKeys.AppliedConfig, FirmwareJson.Default.AppliedConfig);
            if (applied?.Revision == response.Revision && services.CurrentRevision() == response.Revision)
            {
                if (!applied.Acknowledged)
                {
                    await client.AckServiceConfigAsync(ctx.HostUri, ctx.HostToken, new ServiceConfigAck(applied.Revision, applied.Error is null, applied.Error), ct);
                    store.Set(StateKeys.AppliedConfig, applied with { Acknowledged = true }, FirmwareJson.Default.AppliedConfig);
                }
                return Outcome.NothingToDo;
            }
            try
            {
                services.Apply(response.Revision, response.Configuration);
            }
            catch (InvalidServiceConfigException e)
            {
                ctx.Fail(Outcome.Failure, $"service configuration revision {response.Revision} refused", e);
                await client.AckServiceConfigAsync(ctx.HostUri, ctx.HostToken, new ServiceConfigAck(response.Revision, false, e.Message), ct);
                return Outcome.Failure;
            }
            store.Set(StateKeys.AppliedConfig, new AppliedConfig(response.Revision, false, null), FirmwareJson.Default.AppliedConfig);
            await client.AckServiceConfigAsync(ctx.HostUri, ctx.HostToken, new ServiceConfigAck(response.Revision, true, null), ct);
            store.Set(StateKeys.AppliedConfig, new AppliedConfig(response.Revision, true, null), FirmwareJson.Default.AppliedConfig);
            ctx.Log($"services: revision {response.Revision} applied");
            return Outcome.Success;
        }
        catch (ServerException e) when (e.ProblemType == ProblemTypes.NotFound)
        {
            ctx.Log("services: the host has no service configuration for this unit; keeping what runs");
            return Outcome.NothingToDo;
        }
        catch (ServerException e)
        {
            return DefaultStates.FromServerError(ctx, "service configuration", e);
        }
    }
}

/// <summary>S600-S800: tell the host the unit is ready, listen for pushes, wait for the next check.</summary>
public sealed class ReadyState : IState
{
    public StateId Id => StateId.Ready;

    public async Task<Outcome> EnterAsync(SupervisorContext ctx, CancellationToken ct)
    {
        ctx.Hardware.Leds.Show(StatusIndication.Ready);
        if (!File.Exists(ctx.RequireStore().Path))
        {
            ctx.Log("ready: the state store is gone from data; rebuilding from the factory identity");
            return Outcome.DataLost;
        }
        if (!ctx.Hardware.Wan.IsUp)
        {
            return Outcome.LinkLost;
        }
        if (!ctx.ReadyReported)
        {
            try
            {
                var applied = ctx.RequireStore().Get(StateKeys.AppliedConfig, FirmwareJson.Default.AppliedConfig);
                await ctx.RequireClient().ReportReadyAsync(ctx.HostUri, ctx.HostToken,
                    new ReadyReport(ctx.CurrentInventory(), applied?.Revision, ctx.Hardware.Wan.Address), ct);
                ctx.ReadyReported = true;
                ctx.LastError = null;
            }
            catch (ServerException e)
            {
                return DefaultStates.FromServerError(ctx, "ready report", e);
            }
        }
        await EnsurePushAsync(ctx, ct);

        var spread = ctx.CheckInterval.TotalMilliseconds * ctx.Options.CheckJitter * (2 * ctx.Random.NextDouble() - 1);
        var wait = ctx.CheckInterval + TimeSpan.FromMilliseconds(spread);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var period = Task.Delay(wait, ctx.Time, cts.Token);
        var push = ctx.WaitForCheckRequestAsync(cts.Token);
        var lost = ctx.Hardware.Wan.LinkLost;
        var first = await Task.WhenAny(period, push, lost);
        await cts.CancelAsync();
        ct.ThrowIfCancellationRequested();
        if (first == lost || !ctx.Hardware.Wan.IsUp)
        {
            ctx.Log("ready: WAN link lost");
            return Outcome.LinkLost;
        }
        ctx.ReadyReported = false;
        return Outcome.CheckDue;
    }

    private static async Task EnsurePushAsync(SupervisorContext ctx, CancellationToken ct)
    {
        var settings = ctx.RequireSettings();
        if (settings.PushBroker is null || ctx.HostSession is null || ctx.Push is { IsConnected: true })
        {
            return;
        }
        ctx.Push ??= new PushListener(message =>
        {
            ctx.Log($"push: {message.Type} (importance {message.Importance})");
            if (message.Type == PushMessage.CheckNow)
            {
                ctx.RequestCheck(forced: true);
            }
        }, ctx.Log);
        try
        {
            var identity = ctx.RequireIdentity();
            await ctx.Push.EnsureConnectedAsync(new Uri(settings.PushBroker), MacAddress.Normalize(identity.Mac),
                ctx.HostSession.PushUsername ?? MacAddress.Compact(MacAddress.Normalize(identity.Mac)), ctx.HostSession.Token, ct);
        }
        catch (Exception e) when (e is MqttCommunicationException or InvalidOperationException
                                  || (e is OperationCanceledException && !ct.IsCancellationRequested))
        {
            ctx.Log($"push: broker {settings.PushBroker} not reachable ({e.Message}); periodic checks continue");
        }
    }
}

/// <summary>The servers refused this unit's identity; it gets nothing and asks again much later.</summary>
public sealed class RefusedState : IState
{
    public StateId Id => StateId.Refused;

    public async Task<Outcome> EnterAsync(SupervisorContext ctx, CancellationToken ct)
    {
        ctx.Hardware.Leds.Show(StatusIndication.Error);
        await Task.Delay(ctx.Options.RefusedRetryInterval, ctx.Time, ct);
        return Outcome.Success;
    }
}
