using Tsunagu.Firmware.Storage;
using Tsunagu.Hal;

namespace Tsunagu.Firmware.Updates.Phases;

/// <summary>
/// `rebooting`, after the restart: the boot program either booted the new slot (on to `checking`) or used up its
/// tries and fell back, which fails the update (rolled back: the slot is marked bad).
/// </summary>
internal sealed class BootedPhase : IUpdatePhase
{
    public Task<PendingUpdate> RunAsync(UpdateRun run, PendingUpdate j, CancellationToken ct)
    {
        var boot = run.Env.Boot;
        var target = Enum.Parse<BootSlot>(j.TargetSlot ?? throw new InvalidDataException($"update {j.UpdateId}: phase {j.Phase} without a target slot"));
        if (boot.Booted != target)
        {
            throw new UpdateAbortedException($"the new OS in slot {target} did not boot within {run.Options.BootTries} tries; the unit runs {boot.Booted?.ToString() ?? "the PROM"}");
        }
        return Task.FromResult(j with { Phase = PendingUpdate.Checking });
    }
}
