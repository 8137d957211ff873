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
