using Tsunagu.Firmware.Storage;
using Tsunagu.Hal;
using Tsunagu.Protocol.Bundles;

namespace Tsunagu.Firmware.Updates.Phases;

/// <summary>
/// Back to the previous verified pattern: rollback scripts (their failures are logged, never stop the rollback),
/// the previous `current` link of every application, applications the bundle added unlinked, the new OS slot marked
/// bad, and last the signature databases the bundle replaced or added put back or removed (failures logged).
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
        var rebootNeeded = false;
        if (j.TargetSlot is { } slotName)
        {
            var slot = Enum.Parse<BootSlot>(slotName);
            env.Boot.MarkBad(slot);
            rebootNeeded = env.Boot.Booted == slot;
        }
        // the signatures last: applications and slot are back whatever clamd makes of the old databases
        if (m is not null)
        {
            await RestoreSignaturesAsync(run, j, m, ct);
        }
        return rebootNeeded;
    }

    /// <summary>
    /// Puts back the signature databases the bundle replaced (from the copies the extract phase kept) and removes those it
    /// added; only when the extract phase got that far. Failures are logged: the rollback goes on.
    /// </summary>
    private static async Task RestoreSignaturesAsync(UpdateRun run, PendingUpdate j, BundleManifest m, CancellationToken ct)
    {
        var kept = run.PreviousSignaturesDirectory(j.UpdateId);
        if (run.Env.Signatures is not { } databases || !Directory.Exists(kept)) { return; }
        foreach (var step in m.Steps.Where(s => s.Action == StepActions.InstallSignatures).Reverse())
        {
            var copy = Path.Combine(kept, step.Payload);
            try
            {
                if (File.Exists(copy) && databases.Installed(step.Payload) is { } installed && SameContent(copy, installed))
                {
                    continue; // the switch never got to it
                }
                if (File.Exists(copy))
                {
                    await using var database = File.OpenRead(copy);
                    await databases.InstallAsync(step.Payload, database, database.Length, ct);
                }
                else
                {
                    await databases.RemoveAsync(step.Payload, ct);
                }
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // any failure (a refusal, an I/O error, a clamscan that timed out): logged, and the rollback goes on
                run.Env.Log($"update {j.UpdateId}: rollback continues although the signatures {step.Payload} could not be put back: {e.Message}");
            }
        }
    }

    private static bool SameContent(string a, string b)
    {
        if (new FileInfo(a).Length != new FileInfo(b).Length) { return false; }
        using var x = File.OpenRead(a);
        using var y = File.OpenRead(b);
        return System.Security.Cryptography.SHA256.HashData(x).AsSpan().SequenceEqual(System.Security.Cryptography.SHA256.HashData(y));
    }
}
