using Tsunagu.Firmware.Storage;
using Tsunagu.Hal;
using Tsunagu.Protocol.Bundles;

namespace Tsunagu.Firmware.Updates.Phases;

/// <summary>
/// Back to the previous verified pattern: rollback scripts (their failures are logged, never stop the rollback),
/// the previous `current` link of every application, applications the bundle added unlinked, the new OS slot
/// marked bad.
/// </summary>
internal static class Rollback
{
    /// <summary>True when the unit runs the bad slot and must reboot into the previous one.</summary>
    public static async Task<bool> RunAsync(UpdateRun run, PendingUpdate j, BundleManifest? m, CancellationToken ct)
    {
        var env = run.Env;
        env.Log($"update {j.UpdateId}: rolling back to the previous pattern");
        if (m is not null && Directory.Exists(Path.Combine(run.WorkDirectory(j.UpdateId), "payloads")))
        {
            foreach (var s in m.Steps.Where(s => s is { Action: StepActions.RunScript, Phase: ScriptPhases.Rollback }))
            {
                var result = await run.RunScriptAsync(j, m, s, ct);
                if (result.Verdict != ScriptVerdict.Continue)
                {
                    env.Log($"update {j.UpdateId}: rollback continues although {result.Describe()}");
                }
            }
        }
        if (j.PreviousApps is { } previous)
        {
            var now = env.Apps.Current();
            foreach (var (name, version) in previous.Where(p => now.GetValueOrDefault(p.Key) != p.Value))
            {
                env.Apps.Switch(name, version);
            }
            foreach (var added in now.Keys.Where(n => !previous.ContainsKey(n)))
            {
                env.Apps.Unlink(added);
            }
        }
        if (j.TargetSlot is { } slotName)
        {
            var slot = Enum.Parse<BootSlot>(slotName);
            env.Boot.MarkBad(slot);
            return env.Boot.Booted == slot;
        }
        return false;
    }
}
