using Tsunagu.Firmware.Storage;
using Tsunagu.Hal;
using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;

namespace Tsunagu.Firmware.Updates.Phases;

/// <summary>
/// `checking`: the `post-install` scripts, then the health check (<see cref="HealthCheck"/>); then the commit: the new
/// slot marked good, the bundle counter raised, the release keys updated, `installed` with the report. A restart here
/// rolls back and installs again.
/// </summary>
internal sealed class CheckPhase : IUpdatePhase
{
    public async Task<PendingUpdate> RunAsync(UpdateRun run, PendingUpdate j, CancellationToken ct)
    {
        var env = run.Env;
        var m = await run.ManifestAsync(j, ct);
        run.Checkpoint("checking");
        await run.RunScriptsAsync(j, m, ScriptPhases.PostInstall, ct);
        await HealthCheck.WaitAsync(run, j, m, ct);
        run.Checkpoint("committing");
        if (j.TargetSlot is { } slot)
        {
            env.Boot.MarkGood(Enum.Parse<BootSlot>(slot));
        }
        BundleInstaller.RaiseCounter(env.Store, new BundleCounter(m.Version, m.BundleId));
        if (m.IntroducesKeys is { Count: > 0 } || m.RetiresKeys is { Count: > 0 })
        {
            var keys = env.Store.Get(StateKeys.TrustedKeys, FirmwareJson.Default.TrustedKeys) ?? new TrustedKeys([], []);
            keys = new TrustedKeys(keys.Introduced.Union(m.IntroducesKeys ?? []).ToList(), keys.Retired.Union(m.RetiresKeys ?? []).ToList());
            env.Store.Set(StateKeys.TrustedKeys, keys, FirmwareJson.Default.TrustedKeys);
            env.Log($"update {j.UpdateId}: release keys introduced {(m.IntroducesKeys ?? []).Count}, retired {string.Join(", ", m.RetiresKeys ?? [])}");
        }
        var report = new UpdateReport(j.UpdateId, true, null, env.Inventory(), j.InstallId);
        env.Log($"update {j.UpdateId}: committed bundle version {m.Version}, pattern {m.ToPattern}");
        return j with { Phase = PendingUpdate.Installed, Report = report, Entries = 0 };
    }
}
