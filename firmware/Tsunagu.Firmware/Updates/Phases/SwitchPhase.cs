using Tsunagu.Firmware.Services;
using Tsunagu.Firmware.Storage;
using Tsunagu.Hal;
using Tsunagu.Protocol.Bundles;

namespace Tsunagu.Firmware.Updates.Phases;

/// <summary>
/// `switching`: stage every application, switch each `current` link, install each signature database (clamd loads it
/// without dropping scans; a database clamd does not take aborts the update, which rolls back), write an OS image into the inactive slot and
/// activate it for <see cref="UpdateOptions.BootTries"/> boots. Next: `rebooting` with an OS image, else `checking`.
/// A restart here rolls back to the journalled previous applications and installs again.
/// </summary>
internal sealed class SwitchPhase : IUpdatePhase
{
    public async Task<PendingUpdate> RunAsync(UpdateRun run, PendingUpdate j, CancellationToken ct)
    {
        var env = run.Env;
        var m = await run.ManifestAsync(j, ct);
        run.Checkpoint("switching");
        var work = run.WorkDirectory(j.UpdateId);
        var apps = m.Steps.Where(s => s.Action == StepActions.InstallApplication).Select(s => m.Payloads.Single(p => p.Name == s.Payload)).ToList();
        BundleHeader header;
        await using (var bundle = File.OpenRead(run.BundlePath(j)))
        {
            header = await BundleFormat.ReadHeaderAsync(bundle, ct);
        }
        // what each tree is checked against from now on, and where it is fetched again from when it is damaged; a payload
        // without file digests: the list of the tree unpacked from its verified tar, as the unpacking checked it against
        // the seal's rules (read before the first tree is staged)
        var seals = AppIntegrity.Seals(header, m, run.Offer);
        var appSeals = apps.Select(p =>
        {
            var seal = seals.Single(s => s.Payload == p.Name);
            return p.Files is null ? seal with { InstalledFiles = ExtractPhase.KeptList(work, p, j, env.Log) } : seal;
        }).ToList();
        foreach (var (p, seal) in apps.Zip(appSeals))
        {
            env.Apps.Stage(p.Application!, p.Version!, Path.Combine(work, "trees", p.Name));
            env.Apps.WriteSeal(seal);
        }
        foreach (var p in apps)
        {
            env.Apps.Switch(p.Application!, p.Version!);
            run.Checkpoint($"switched {p.Application}");
        }
        foreach (var step in m.Steps.Where(s => s.Action == StepActions.InstallSignatures))
        {
            var p = m.Payloads.Single(x => x.Name == step.Payload);
            var databases = env.Signatures ?? throw new UpdateAbortedException($"update {j.UpdateId}: signatures {p.Name} but this unit runs no virus checking");
            try
            {
                await using var database = File.OpenRead(Path.Combine(work, "payloads", p.Name));
                await databases.InstallAsync(p.Name, database, p.Size, ct);
            }
            catch (SignatureInstallException e)
            {
                throw new UpdateAbortedException($"update {j.UpdateId}: {e.Message}");
            }
            run.Checkpoint($"signatures {p.Name}");
        }
        var os = m.Payloads.SingleOrDefault(p => p.Kind == PayloadKinds.OsImage);
        if (os is not null && j.TargetSlot is { } target)
        {
            var slot = Enum.Parse<BootSlot>(target);
            await using (var image = File.OpenRead(Path.Combine(work, "payloads", os.Name)))
            {
                await env.Boot.WriteAsync(slot, image, os.Version!, ct);
            }
            // the root hash the signed manifest carries: the boot program maps the slot through dm-verity with it
            env.Boot.SetVerity(slot, os.Verity?.ToString());
            env.Boot.Activate(slot, run.Options.BootTries);
            env.Log($"update {j.UpdateId}: OS {os.Version} written to slot {slot}, activated for {run.Options.BootTries} boot tries");
            return j with { Phase = PendingUpdate.Rebooting };
        }
        return j with { Phase = PendingUpdate.Checking };
    }
}
