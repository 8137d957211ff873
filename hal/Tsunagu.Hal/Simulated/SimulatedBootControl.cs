using System.Globalization;
using Tsunagu.Hal.Linux;

namespace Tsunagu.Hal.Simulated;

/// <summary>
/// The A/B slots and the boot program as files in a directory: `slot-a.img`, `slot-b.img`, `state` (the boot state
/// file of a real unit, <see cref="BootStateFile"/>, kept by the same <see cref="BootSlots"/> model), `cmdline` (the
/// `tsunagu.slot=` line the boot program hands the OS) and `boots`; all survive simulated power cuts.
/// <see cref="RebootAsync"/> runs the boot program's choice (<see cref="BootSlots.PickSlot"/>) at once: a slot in
/// <see cref="CrashingSlots"/> fails to come up and the watchdog restarts the board, which uses the next try; when a
/// pending slot's tries are used up it is given up (<see cref="LastFailed"/>) and the committed slot boots, or the
/// PROM when there is none.
/// </summary>
public sealed class SimulatedBootControl : IBootControl
{
    private readonly Lock _gate = new();
    private readonly BootSlots _slots;
    private BootSlot? _booted;
    private int _boots;

    public SimulatedBootControl(string root)
    {
        Root = root;
        Directory.CreateDirectory(root);
        _slots = BootSlots.Load(StatePath);
        _booted = File.Exists(CmdlinePath) ? LinuxBootControl.ReadBootedSlot(CmdlinePath) : null;
        _boots = File.Exists(BootsPath) && int.TryParse(File.ReadAllText(BootsPath).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : 0;
    }

    public string Root { get; }

    /// <summary>The boot state file, in the format of a real unit's `DATA/boot/state`.</summary>
    public string StatePath => Path.Combine(Root, "state");

    private string CmdlinePath => Path.Combine(Root, "cmdline");
    private string BootsPath => Path.Combine(Root, "boots");

    /// <summary>Fault injection: an OS written to one of these slots does not boot.</summary>
    public HashSet<BootSlot> CrashingSlots { get; } = [];

    /// <summary>How many times the boot program has run (each simulated reboot and each failed try).</summary>
    public int Boots { get { lock (_gate) { return _boots; } } }

    public BootSlot? Booted { get { lock (_gate) { return _booted; } } }

    public string? BootedOsVersion { get { lock (_gate) { return _booted is { } b ? _slots.Version(b) : null; } } }

    public BootSlot? LastFailed { get { lock (_gate) { return _slots.LastFailed; } } }

    public SlotState Read(BootSlot slot)
    {
        lock (_gate) { return _slots.Read(slot); }
    }

    public string ImagePath(BootSlot slot) => Path.Combine(Root, $"slot-{BootStateFile.SlotName(slot)}.img");

    public async Task WriteAsync(BootSlot slot, Stream image, string osVersion, CancellationToken cancellationToken)
    {
        BootSlots.ValidateOsVersion(slot, osVersion);
        Change(s => s.BeginWrite(slot, _booted));
        var path = ImagePath(slot);
        try
        {
            await using (var file = new FileStream(path + ".tmp", FileMode.Create, FileAccess.Write, FileShare.None, 81920, useAsync: true))
            {
                await image.CopyToAsync(file, cancellationToken);
                await file.FlushAsync(cancellationToken);
            }
            File.Move(path + ".tmp", path, overwrite: true);
        }
        catch (IOException e)
        {
            throw new HalException($"writing slot {slot} ({path}) failed: {e.Message}", isTransient: true, e);
        }
        Change(s => s.Written(slot, osVersion));
    }

    public void SetVerity(BootSlot slot, string? verity) => Change(s => s.SetVerity(slot, verity));

    public void Activate(BootSlot slot, int tries) => Change(s => s.Activate(slot, tries));

    public void MarkGood(BootSlot slot) => Change(s => s.MarkGood(slot));

    public void MarkBad(BootSlot slot) => Change(s => s.MarkBad(slot));

    public Task RebootAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            BootSlot? chosen;
            while (true)
            {
                _boots++;
                chosen = _slots.PickSlot();
                if (chosen is { } slot && _slots.Pending == slot && CrashingSlots.Contains(slot))
                {
                    continue; // the new OS did not come up: the watchdog resets the board, the boot program runs again
                }
                break;
            }
            _booted = chosen;
            _slots.Save(StatePath);
            File.WriteAllText(BootsPath, _boots.ToString(CultureInfo.InvariantCulture) + "\n");
            File.WriteAllText(CmdlinePath, $"tsunagu.slot={(chosen is { } c ? BootStateFile.SlotName(c) : "recovery")}\n");
        }
        return Task.CompletedTask;
    }

    private void Change(Action<BootSlots> change)
    {
        lock (_gate)
        {
            change(_slots);
            _slots.Save(StatePath);
        }
    }
}
