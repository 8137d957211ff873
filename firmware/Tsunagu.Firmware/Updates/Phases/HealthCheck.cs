using Tsunagu.Firmware.Storage;
using Tsunagu.Protocol.Bundles;

namespace Tsunagu.Firmware.Updates.Phases;

/// <summary>
/// The health check of a new pattern. Each probe runs the new software's own checks first (every application at its
/// version, the `health` scripts exit 0), then the environment's probe (services, then the host), and says whose
/// fault a failure is (<see cref="HealthReading"/>). Time is measured on the monotonic clock (a change of the wall
/// clock neither ends nor stretches it) and split by the verdict of the probe it follows:
/// <list type="bullet">
/// <item>a software fault that lasts past <see cref="UpdateOptions.HealthWindow"/> rolls the update back;</item>
/// <item>time in which the host is unreachable while the software passes its checks does not count against that
/// window; probing goes on until <see cref="UpdateOptions.HostUnreachableGrace"/> of it is used up, which rolls back.</item>
/// </list>
/// </summary>
internal static class HealthCheck
{
    public static async Task WaitAsync(UpdateRun run, PendingUpdate j, BundleManifest m, CancellationToken ct)
    {
        var env = run.Env;
        var o = run.Options;
        var (faulty, unreachable) = (TimeSpan.Zero, TimeSpan.Zero);
        while (true)
        {
            var probed = env.Time.GetTimestamp();
            var reading = await ProbeAsync(run, j, m, ct);
            switch (reading.Verdict)
            {
                case HealthVerdict.Healthy:
                    return;
                case HealthVerdict.HostUnreachable when unreachable + o.HealthProbeInterval > o.HostUnreachableGrace:
                    throw new UpdateAbortedException($"health check: the host stayed unreachable for {unreachable.TotalSeconds:0.#}s after the update " +
                                                     $"(the limit is {o.HostUnreachableGrace.TotalSeconds:0.#}s) while the new software passed its own checks: {reading.Reason}");
                case HealthVerdict.SoftwareFault when faulty + o.HealthProbeInterval > o.HealthWindow:
                    throw new UpdateAbortedException($"health check failed within {o.HealthWindow.TotalSeconds:0.#}s: {reading.Reason}");
            }
            env.Log($"update {j.UpdateId}: not healthy yet ({reading.Reason})");
            await Task.Delay(o.HealthProbeInterval, env.Time, ct);
            var spent = env.Time.GetElapsedTime(probed);
            if (reading.Verdict == HealthVerdict.HostUnreachable) { unreachable += spent; } else { faulty += spent; }
        }
    }

    private static async Task<HealthReading> ProbeAsync(UpdateRun run, PendingUpdate j, BundleManifest m, CancellationToken ct)
    {
        var current = run.Env.Apps.Current();
        foreach (var p in m.Payloads.Where(p => p.Kind == PayloadKinds.Application))
        {
            if (!current.TryGetValue(p.Application!, out var v) || v != p.Version)
            {
                return HealthReading.Fault($"application {p.Application} is not at {p.Version} (found {current.GetValueOrDefault(p.Application!) ?? "none"})");
            }
        }
        foreach (var s in m.Steps.Where(s => s is { Action: StepActions.RunScript, Phase: ScriptPhases.Health }))
        {
            var result = await run.RunScriptAsync(j, m, s, ct);
            if (result.Verdict != ScriptVerdict.Continue)
            {
                return HealthReading.Fault(result.Describe());
            }
        }
        return await run.Env.HealthProbe(ct);
    }
}
