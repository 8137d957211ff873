using System.Text.Json;
using System.Text.Json.Serialization;

namespace Tsunagu.Hal.Simulated;

/// <summary>
/// The A/B slots and the boot program's state as files in a directory (`slot-a.img`, `slot-b.img`,
/// `bootstate.json`), surviving simulated power cuts. <see cref="RebootAsync"/> makes the boot program's choice
/// at once: a pending slot with tries left is tried (one try used per boot; a slot in <see cref="CrashingSlots"/>
/// fails to come up and uses the next try); when its tries are used up it is marked bad and the committed slot
/// boots, or the PROM when there is none, and the exhausted slot is reported in <see cref="LastFailed"/>.
/// </summary>
public sealed class SimulatedBootControl : IBootControl
{
    private readonly Lock _gate = new();
    private BootFile _state;

    public SimulatedBootControl(string root)
    {
        Root = root;
        Directory.CreateDirectory(root);
        _state = Load();
    }

    public string Root { get; }
    private string StatePath => Path.Combine(Root, "bootstate.json");

    /// <summary>Fault injection: an OS written to one of these slots does not boot.</summary>
    public HashSet<BootSlot> CrashingSlots { get; } = [];

    /// <summary>How many times the boot program has run (each simulated reboot and each failed try).</summary>
    public int Boots { get { lock (_gate) { return _state.Boots; } } }

    public BootSlot? Booted { get { lock (_gate) { return _state.Booted; } } }

    public string? BootedOsVersion
    {
        get { lock (_gate) { return _state.Booted is { } b ? Slot(b).OsVersion : null; } }
    }

    public BootSlot? LastFailed { get { lock (_gate) { return _state.LastFailed; } } }

    public SlotState Read(BootSlot slot)
    {
        lock (_gate)
        {
            var s = Slot(slot);
            var tries = _state.Pending == slot ? _state.TriesLeft : 0;
            return new SlotState(slot, s.OsVersion, s.Good, tries);
        }
    }

    public string ImagePath(BootSlot slot) => Path.Combine(Root, $"slot-{slot.ToString().ToLowerInvariant()}.img");

    public async Task WriteAsync(BootSlot slot, Stream image, string osVersion, CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            if (_state.Booted == slot)
            {
                throw new HalException($"slot {slot} is the booted slot; an update writes only the inactive slot", isTransient: false);
            }
            MarkBadLocked(slot);
            Slot(slot).OsVersion = null;
            Save();
        }
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
        lock (_gate)
        {
            Slot(slot).OsVersion = osVersion;
            Save();
        }
    }

    public void Activate(BootSlot slot, int tries)
    {
        lock (_gate)
        {
            if (Slot(slot).OsVersion is null)
            {
                throw new HalException($"slot {slot} holds no complete image; it cannot be activated", isTransient: false);
            }
            _state.Pending = slot;
            _state.TriesLeft = Math.Max(1, tries);
            Save();
        }
    }

    public void MarkGood(BootSlot slot)
    {
        lock (_gate)
        {
            Slot(slot).Good = true;
            _state.Primary = slot;
            _state.LastFailed = null;
            if (_state.Pending == slot) { _state.Pending = null; _state.TriesLeft = 0; }
            Save();
        }
    }

    public void MarkBad(BootSlot slot)
    {
        lock (_gate)
        {
            MarkBadLocked(slot);
            Save();
        }
    }

    public Task RebootAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            while (true)
            {
                _state.Boots++;
                if (_state.Pending is { } pending && _state.TriesLeft > 0)
                {
                    _state.TriesLeft--;
                    if (!CrashingSlots.Contains(pending))
                    {
                        _state.Booted = pending;
                        break;
                    }
                    continue; // the new OS did not come up: the watchdog resets the board, the boot program runs again
                }
                if (_state.Pending is { } exhausted)
                {
                    MarkBadLocked(exhausted);
                    _state.LastFailed = exhausted;
                }
                _state.Booted = _state.Primary is { } primary && Slot(primary).Good ? primary : null;
                break;
            }
            Save();
        }
        return Task.CompletedTask;
    }

    private void MarkBadLocked(BootSlot slot)
    {
        Slot(slot).Good = false;
        if (_state.Primary == slot) { _state.Primary = null; }
        if (_state.Pending == slot) { _state.Pending = null; _state.TriesLeft = 0; }
    }

    private SlotFile Slot(BootSlot slot) => slot == BootSlot.A ? _state.A : _state.B;

    private BootFile Load()
    {
        if (!File.Exists(StatePath))
        {
            return new BootFile();
        }
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllText(StatePath), BootJson.Default.BootFile) ?? new BootFile();
        }
        catch (JsonException e)
        {
            throw new HalException($"{StatePath}: boot state unreadable: {e.Message}", isTransient: false, e);
        }
    }

    private void Save()
    {
        var tmp = StatePath + ".tmp";
        File.WriteAllText(tmp, JsonSerializer.Serialize(_state, BootJson.Default.BootFile));
        File.Move(tmp, StatePath, overwrite: true);
    }

    internal sealed class SlotFile
    {
        public string? OsVersion { get; set; }
        public bool Good { get; set; }
    }

    internal sealed class BootFile
    {
        public SlotFile A { get; set; } = new();
        public SlotFile B { get; set; } = new();
        public BootSlot? Primary { get; set; }
        public BootSlot? Pending { get; set; }
        public int TriesLeft { get; set; }
        public BootSlot? Booted { get; set; }
        public BootSlot? LastFailed { get; set; }
        public int Boots { get; set; }
    }
}

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, UseStringEnumConverter = true)]
[JsonSerializable(typeof(SimulatedBootControl.BootFile))]
internal sealed partial class BootJson : JsonSerializerContext;
