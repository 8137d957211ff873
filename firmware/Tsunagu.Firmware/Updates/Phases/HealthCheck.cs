using Tsunagu.Firmware.Storage;
using Tsunagu.Protocol.Bundles;

namespace Tsunagu.Firmware.Updates.Phases;

/// <summary>
/// The health check of a new pattern: every installed application at its version, the `health` scripts exit 0, and
/// the environment's probe (services, host) passes; probed every <see cref="UpdateOptions.HealthProbeInterval"/>
/// until <see cref="UpdateOptions.HealthWindow"/> ends, measured on the monotonic clock (a change of the wall clock
/// neither ends nor stretches it).
/// </summary>
internal static class HealthCheck
{
    public static async Task WaitAsync(UpdateRun run, PendingUpdate j, BundleManifest m, CancellationToken ct)
    {
        var env = run.Env;
        var o = run.Options;
        var started = env.Time.GetTimestamp();
        while (true)
        {
            var reason = await ProbeAsync(run, j, m, ct);
            if (reason is null)
            {
                return;
            }
            if (env.Time.GetElapsedTime(started) + o.HealthProbeInterval > o.HealthWindow)
            {
                throw new UpdateAbortedException($"health check failed within {o.HealthWindow.TotalSeconds:0.#}s: {reason}");
            }
            env.Log($"update {j.UpdateId}: not healthy yet ({reason})");
            await Task.Delay(o.HealthProbeInterval, env.Time, ct);
        }
    }

    private static async Task<string?> ProbeAsync(UpdateRun run, PendingUpdate j, BundleManifest m, CancellationToken ct)
    {
        var current = run.Env.Apps.Current();
        foreach (var p in m.Payloads.Where(p => p.Kind == PayloadKinds.Application))
        {
            if (!current.TryGetValue(p.Application!, out var v) || v != p.Version)
            {
                return $"application {p.Application} is not at {p.Version} (found {current.GetValueOrDefault(p.Application!) ?? "none"})";
            }
        }
        foreach (var s in m.Steps.Where(s => s is { Action: StepActions.RunScript, Phase: ScriptPhases.Health }))
        {
            var result = await run.RunScriptAsync(j, m, s, ct);
            if (result.Verdict != ScriptVerdict.Continue)
            {
                return result.Describe();
            }
        }
        return await run.Env.HealthProbe(ct);
    }
}
