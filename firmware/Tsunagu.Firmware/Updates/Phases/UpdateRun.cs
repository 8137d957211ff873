using Tsunagu.Firmware.Storage;
using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;

namespace Tsunagu.Firmware.Updates.Phases;

/// <summary>One entry into an update: the environment, the offer, the verified manifest once known, and what the phases share.</summary>
internal sealed class UpdateRun(UpdateEnvironment env, UpdateOffer offer)
{
    public UpdateEnvironment Env { get; } = env;
    public UpdateOptions Options { get; } = env.Options;
    public UpdateOffer Offer { get; } = offer;

    /// <summary>The manifest verified in this entry (by the download, or read again from the bundle on `data`).</summary>
    public BundleManifest? Manifest { get; set; }

    public string WorkDirectory(string updateId) => BundleInstaller.WorkDirectory(Env.DataRoot, updateId);

    /// <summary>Copies of the signature databases the bundle replaces, for its rollback.</summary>
    public string PreviousSignaturesDirectory(string updateId) => Path.Combine(WorkDirectory(updateId), "signatures-previous");

    public string BundlePath(PendingUpdate j) => Path.Combine(WorkDirectory(j.UpdateId), BundleInstaller.BundleFile);

    public void Checkpoint(string point) => Env.Checkpoint?.Invoke(point);

    public PendingUpdate? Journal() => Env.Store.Get(StateKeys.PendingUpdate, FirmwareJson.Default.PendingUpdate);

    public PendingUpdate Save(PendingUpdate j)
    {
        Env.Store.Set(StateKeys.PendingUpdate, j, FirmwareJson.Default.PendingUpdate);
        return j;
    }

    public void DeleteWork(string updateId)
    {
        var work = WorkDirectory(updateId);
        if (Directory.Exists(work)) { Directory.Delete(work, recursive: true); }
    }

    /// <summary>The verified manifest: re-reads the downloaded bundle's header and verifies its signature again (the file sat on `data` across a restart).</summary>
    public async Task<BundleManifest> ManifestAsync(PendingUpdate j, CancellationToken ct)
    {
        if (Manifest is { } known) { return known; }
        var path = BundlePath(j);
        if (!File.Exists(path))
        {
            throw new IOException($"update {j.UpdateId}: phase {j.Phase} but {path} is gone");
        }
        await using var file = File.OpenRead(path);
        var header = await BundleFormat.ReadHeaderAsync(file, ct);
        return Manifest = BundleVerifier.VerifyManifest(header, BundleInstaller.TrustedKeys(Env.Identity, Env.Store)).Manifest;
    }

    /// <summary>The manifest for a rollback's scripts, when the bundle can still be read; null otherwise (logged).</summary>
    public BundleManifest? TryManifest(PendingUpdate j)
    {
        if (Manifest is { } known) { return known; }
        var path = BundlePath(j);
        if (!File.Exists(path)) { return null; }
        try
        {
            using var file = File.OpenRead(path);
            var header = BundleFormat.ReadHeaderAsync(file, CancellationToken.None).GetAwaiter().GetResult();
            return Manifest = BundleVerifier.VerifyManifest(header, BundleInstaller.TrustedKeys(Env.Identity, Env.Store)).Manifest;
        }
        catch (Exception e) when (e is ProtocolException or IOException)
        {
            Env.Log($"update {j.UpdateId}: the downloaded bundle cannot be read for its rollback scripts ({e.Message})");
            return null;
        }
    }

    /// <summary>Runs the bundle's scripts of <paramref name="phase"/> in order; exit 21 asks to retry later, any other failure aborts.</summary>
    public async Task RunScriptsAsync(PendingUpdate j, BundleManifest m, string phase, CancellationToken ct)
    {
        foreach (var s in m.Steps.Where(s => s.Action == StepActions.RunScript && s.Phase == phase))
        {
            var result = await RunScriptAsync(j, m, s, ct);
            switch (result.Verdict)
            {
                case ScriptVerdict.Continue:
                    break;
                case ScriptVerdict.RetryLater:
                    throw new UpdateAbortedException(result.Describe(), retryLater: true);
                default:
                    throw new UpdateAbortedException(result.Describe());
            }
        }
    }

    public async Task<ScriptResult> RunScriptAsync(PendingUpdate j, BundleManifest m, BundleStep s, CancellationToken ct)
    {
        var work = WorkDirectory(j.UpdateId);
        var environment = new Dictionary<string, string>
        {
            ["TSUNAGU_BUNDLE_ID"] = m.BundleId,
            ["TSUNAGU_BUNDLE_VERSION"] = m.Version.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["TSUNAGU_FROM_PATTERN"] = Env.CurrentPattern ?? "",
            ["TSUNAGU_TO_PATTERN"] = m.ToPattern,
            ["TSUNAGU_DATA"] = Env.DataRoot,
            ["TSUNAGU_PAYLOADS"] = Path.Combine(work, "payloads"),
            ["TSUNAGU_STATE"] = Path.Combine(work, "script-state"),
            ["TSUNAGU_ATTEMPT"] = j.Attempts.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        Directory.CreateDirectory(Path.Combine(work, "script-state"));
        var timeout = s.TimeoutSeconds is { } seconds ? TimeSpan.FromSeconds(seconds) : Options.ScriptTimeout;
        var runner = new ScriptRunner(Env.Time, Options.StderrCap, Options.Setsid);
        var result = await runner.RunAsync(Path.Combine(work, "payloads", s.Payload), s.Phase!, environment, Path.Combine(work, "script-state"), timeout, ct);
        Env.Log($"update {j.UpdateId}: {result.Describe()}");
        return result;
    }
}
