using Tsunagu.Firmware.Storage;
using Tsunagu.Firmware.Supervision;
using Tsunagu.Protocol.Bundles;

namespace Tsunagu.Firmware.Updates.Phases;

/// <summary>
/// `downloading`: fetch the header with range requests, verify the manifest's signature, check that it is the offered
/// bundle and that it targets this unit (board, hardware, OS, pattern, version, expiry by the trusted time), then the
/// payloads, each hashed as it streams. A restart resumes where the bytes on disk end.
/// </summary>
internal sealed class DownloadPhase : IUpdatePhase
{
    public async Task<PendingUpdate> RunAsync(UpdateRun run, PendingUpdate j, CancellationToken ct)
    {
        var env = run.Env;
        var offer = run.Offer;
        Directory.CreateDirectory(run.WorkDirectory(j.UpdateId));
        var downloader = new BundleDownloader(env.Source, run.BundlePath(j), offer.Size, env.Log);
        var header = await downloader.FetchHeaderAsync(ct);
        var (manifest, keyId) = BundleVerifier.VerifyManifest(header, BundleInstaller.TrustedKeys(env.Identity, env.Store));
        if (manifest.BundleId != offer.UpdateId || manifest.ToPattern != offer.ToPattern)
        {
            throw new BundleCheckException(BundleCheck.Manifest,
                $"the signed manifest is bundle {manifest.BundleId} -> {manifest.ToPattern}; the host offered {offer.UpdateId} -> {offer.ToPattern}");
        }
        var now = env.TrustedNow?.Invoke() ?? new TimeReading(env.Time.GetUtcNow(), "the unit's own clock", false);
        BundleVerifier.CheckTarget(manifest, new BundleTarget(env.Identity.Board, env.Identity.HardwareVersion, env.OsVersion,
            env.CurrentPattern, BundleInstaller.Counter(env.Store), now.Now, now.Source));
        env.Log($"update {j.UpdateId}: manifest signed by release key {keyId}; bundle version {manifest.Version}, {manifest.Payloads.Count} payload(s), {header.PayloadOffset + manifest.PayloadBytes} bytes");
        await downloader.FetchPayloadsAsync(header, manifest, offer.Sha256, ct);
        run.Manifest = manifest;
        return j with { Phase = PendingUpdate.Verified, Bundle = new BundleCounter(manifest.Version, manifest.BundleId), ToPattern = manifest.ToPattern };
    }
}
