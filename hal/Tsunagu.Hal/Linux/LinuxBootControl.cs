using System.Buffers;

namespace Tsunagu.Hal.Linux;

/// <summary>Where <see cref="LinuxBootControl"/> finds the boot state, the slots and the kernel command line.</summary>
public sealed record LinuxBootOptions
{
    /// <summary>The boot state file shared with the boot program: `DATA/boot/state`.</summary>
    public required string StatePath { get; init; }

    /// <summary>The kernel command line; its `tsunagu.slot=a|b|recovery` token says what was booted.</summary>
    public string CmdlinePath { get; init; } = "/proc/cmdline";

    /// <summary>The block class directory, searched for the slots' GPT partition names.</summary>
    public string SysBlockRoot { get; init; } = "/sys/class/block";

    /// <summary>Where the block device files are.</summary>
    public string DevRoot { get; init; } = "/dev";

    public string SlotAPartition { get; init; } = "slot_a";
    public string SlotBPartition { get; init; } = "slot_b";

    /// <summary>Run before rebooting, so every file system has written its data.</summary>
    public CommandLine SyncCommand { get; init; } = new("sync");

    /// <summary>Restarts the unit at once (busybox `reboot -f`: no init scripts, the supervisor already stopped what it runs).</summary>
    public CommandLine RebootCommand { get; init; } = new("reboot", "-f");

    /// <summary>How long <see cref="LinuxBootControl.RebootAsync"/> waits for the restart to end the process before reporting failure.</summary>
    public TimeSpan RebootGrace { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Chunk size of the image copy.</summary>
    public int CopyBufferSize { get; init; } = 1024 * 1024;

    /// <summary>Opens a slot's device for writing; default: the device file, unbuffered. Tests pass a file.</summary>
    public Func<string, Stream>? OpenDevice { get; init; }

    /// <summary>The options for a data partition mounted at <paramref name="dataRoot"/>: the state file is `boot/state` under it.</summary>
    public static LinuxBootOptions ForDataRoot(string dataRoot) => new() { StatePath = Path.Combine(dataRoot, "boot", "state") };
}

/// <summary>
/// A/B boot control shared with the boot program through the <see cref="BootSlots"/> model and its file
/// (<see cref="BootStateFile"/>, written atomically). The booted slot is the kernel command line's `tsunagu.slot`
/// (`recovery` or none: <see cref="Booted"/> is null). Slots are the partitions named `slot_a` and `slot_b`; an
/// image larger than its partition is refused before anything is written.
/// </summary>
public sealed class LinuxBootControl : IBootControl
{
    private readonly LinuxBootOptions _options;
    private readonly ICommandRunner _runner;
    private readonly TimeProvider _time;
    private readonly BlockDevices _devices;
    private readonly Lock _gate = new();
    private readonly BootSlots _slots;

    /// <exception cref="HalException">The state file or the kernel command line cannot be read.</exception>
    public LinuxBootControl(LinuxBootOptions options, ICommandRunner runner, TimeProvider? time = null)
    {
        _options = options;
        _runner = runner;
        _time = time ?? TimeProvider.System;
        _devices = new BlockDevices(options.SysBlockRoot, options.DevRoot);
        Booted = ReadBootedSlot(options.CmdlinePath);
        VerityFailures = ReadVerityFailures(options.CmdlinePath);
        VerityUnchecked = ReadSlotTokens(options.CmdlinePath, "tsunagu.verity_unchecked=");
        _slots = BootSlots.Load(options.StatePath);
    }

    public BootSlot? Booted { get; }

    public IReadOnlyList<BootSlot> VerityFailures { get; }

    public IReadOnlyList<BootSlot> VerityUnchecked { get; }

    public string? BootedOsVersion { get { lock (_gate) { return Booted is { } b ? _slots.Version(b) : null; } } }

    public BootSlot? LastFailed { get { lock (_gate) { return _slots.LastFailed; } } }

    /// <summary>The committed slot (`primary`), or null.</summary>
    public BootSlot? Primary { get { lock (_gate) { return _slots.Primary; } } }

    /// <summary>The slot being tried (`pending`), or null.</summary>
    public BootSlot? Pending { get { lock (_gate) { return _slots.Pending; } } }

    public SlotState Read(BootSlot slot)
    {
        lock (_gate) { return _slots.Read(slot); }
    }

    /// <summary>The partition holding <paramref name="slot"/>.</summary>
    /// <exception cref="HalException">No (or more than one) partition has the slot's name.</exception>
    public BlockPartition SlotPartition(BootSlot slot) => _devices.Find(slot == BootSlot.A ? _options.SlotAPartition : _options.SlotBPartition);

    public async Task WriteAsync(BootSlot slot, Stream image, string osVersion, CancellationToken cancellationToken)
    {
        BootSlots.ValidateOsVersion(slot, osVersion);
        if (Booted == slot)
        {
            throw new HalException($"slot {slot} is the booted slot; an update writes only the inactive slot", isTransient: false);
        }
        var partition = SlotPartition(slot);
        if (partition.SizeBytes <= 0)
        {
            throw new HalException($"{partition.DevicePath} ({partition.PartitionName}): the partition size is unknown", isTransient: false);
        }
        if (image.CanSeek && image.Length - image.Position > partition.SizeBytes)
        {
            throw new HalException($"slot {slot}: the image ({image.Length - image.Position} bytes) does not fit {partition.PartitionName} ({partition.DevicePath}, {partition.SizeBytes} bytes)",
                isTransient: false);
        }
        Change(s => s.BeginWrite(slot, Booted));
        var buffer = ArrayPool<byte>.Shared.Rent(Math.Max(4096, _options.CopyBufferSize));
        try
        {
            await using var device = _options.OpenDevice is { } open ? open(partition.DevicePath)
                : new FileStream(partition.DevicePath, FileMode.Open, FileAccess.Write, FileShare.None, bufferSize: 0);
            long written = 0;
            int read;
            while ((read = await image.ReadAsync(buffer.AsMemory(0, _options.CopyBufferSize), cancellationToken)) > 0)
            {
                if (written + read > partition.SizeBytes)
                {
                    throw new HalException($"slot {slot}: the image is larger than {partition.PartitionName} ({partition.DevicePath}, {partition.SizeBytes} bytes); the slot stays bad",
                        isTransient: false);
                }
                await device.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
                written += read;
            }
            if (device is FileStream file) { file.Flush(flushToDisk: true); } else { await device.FlushAsync(cancellationToken); }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HalException($"writing slot {slot} ({partition.DevicePath}) failed: {e.Message}", isTransient: true, e);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        Change(s => s.Written(slot, osVersion));
    }

    public void SetVerity(BootSlot slot, string? verity) => Change(s => s.SetVerity(slot, verity));

    public void Activate(BootSlot slot, int tries) => Change(s => s.Activate(slot, tries));

    public void MarkGood(BootSlot slot) => Change(s => s.MarkGood(slot));

    public void MarkBad(BootSlot slot) => Change(s => s.MarkBad(slot));

    /// <summary>Syncs the file systems, runs the reboot command, and waits for the restart to end this process.</summary>
    /// <exception cref="HalException">The reboot command failed, or the unit was still running after <see cref="LinuxBootOptions.RebootGrace"/>.</exception>
    public async Task RebootAsync(CancellationToken cancellationToken)
    {
        try
        {
            await _runner.RunAsync(_options.SyncCommand, null, cancellationToken);
        }
        catch (HalException)
        {
            // the reboot matters more; the kernel syncs on an orderly restart, and the state file was synced already
        }
        var result = await _runner.RunAsync(_options.RebootCommand, null, cancellationToken);
        result.EnsureSuccess("reboot");
        await Task.Delay(_options.RebootGrace, _time, cancellationToken);
        throw new HalException($"`{_options.RebootCommand}` succeeded but the unit was still running {_options.RebootGrace.TotalSeconds:0} s later", isTransient: true);
    }

    private void Change(Action<BootSlots> change)
    {
        lock (_gate)
        {
            change(_slots);
            _slots.Save(_options.StatePath);
        }
    }

    /// <summary>The slots named by `tsunagu.verity_failed=` tokens of the boot program's command line (slots it refused at this boot).</summary>
    /// <exception cref="HalException">The command line cannot be read.</exception>
    public static IReadOnlyList<BootSlot> ReadVerityFailures(string cmdlinePath) => ReadSlotTokens(cmdlinePath, "tsunagu.verity_failed=");

    /// <summary>The slots named by the command line's tokens starting with <paramref name="prefix"/>; tokens naming no slot are ignored.</summary>
    /// <exception cref="HalException">The command line cannot be read.</exception>
    public static IReadOnlyList<BootSlot> ReadSlotTokens(string cmdlinePath, string prefix)
    {
        string cmdline;
        try
        {
            cmdline = File.ReadAllText(cmdlinePath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HalException($"{cmdlinePath}: kernel command line unreadable: {e.Message}", isTransient: false, e);
        }
        return cmdline.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)
            .Where(t => t.StartsWith(prefix, StringComparison.Ordinal))
            .Select(t => BootStateFile.ParseSlot(t[prefix.Length..]))
            .OfType<BootSlot>().Distinct().ToList();
    }

    /// <summary>The slot named by the `tsunagu.slot=` token of the kernel command line; null for `recovery` or none.</summary>
    /// <exception cref="HalException">The command line cannot be read.</exception>
    public static BootSlot? ReadBootedSlot(string cmdlinePath)
    {
        string cmdline;
        try
        {
            cmdline = File.ReadAllText(cmdlinePath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HalException($"{cmdlinePath}: kernel command line unreadable: {e.Message}", isTransient: false, e);
        }
        const string prefix = "tsunagu.slot=";
        var token = cmdline.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).LastOrDefault(t => t.StartsWith(prefix, StringComparison.Ordinal));
        return BootStateFile.ParseSlot(token?[prefix.Length..]);
    }
}
