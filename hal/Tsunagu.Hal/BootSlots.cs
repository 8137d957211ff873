using System.Text;
using Tsunagu.Hal.Storage;

namespace Tsunagu.Hal;

/// <summary>
/// The A/B slot model over the boot state file (<see cref="BootStateFile"/>): what the supervisor does to the
/// slots (write, activate, mark good or bad) and what the boot program does at each boot (<see cref="PickSlot"/>,
/// the same steps as `pick_slot` of the initramfs script). The Linux boot control and its simulated twin both
/// keep their state in this model and this file format; they differ only in where images go and how a reboot
/// happens. Not thread-safe: the boot controls hold their own lock around it.
/// </summary>
public sealed partial class BootSlots
{
    private BootSlots(BootStateFile file) => File = file;

    /// <summary>The file this model reads and writes.</summary>
    public BootStateFile File { get; }

    public static BootSlots Empty() => new(BootStateFile.Empty());

    public static BootSlots Parse(string text) => new(BootStateFile.Parse(text));

    /// <summary>The state at <paramref name="path"/>, or an empty one when the file does not exist yet.</summary>
    /// <param name="files">The file system (tests pass a power-cut model); the real one when null.</param>
    /// <exception cref="HalException">The file exists but cannot be read.</exception>
    public static BootSlots Load(string path, IDurableFileSystem? files = null)
    {
        files ??= PosixFileSystem.Instance;
        try
        {
            if (!files.FileExists(path)) { return Empty(); }
            if (files is PosixFileSystem) { return Parse(System.IO.File.ReadAllText(path)); } // read-only access is enough
            using var stream = files.OpenFile(path);
            using var reader = new StreamReader(stream, Encoding.UTF8);
            return Parse(reader.ReadToEnd());
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HalException($"{path}: boot state unreadable: {e.Message}", isTransient: false, e);
        }
    }

    /// <summary>
    /// Replaces the file at <paramref name="path"/> atomically: the new content goes to `path.tmp`, which is synced,
    /// renamed over the file, and the directory synced. A power cut at any point leaves the old file or the new one.
    /// </summary>
    /// <param name="files">The file system (tests pass a power-cut model); the real one when null.</param>
    /// <exception cref="HalException">The file cannot be written.</exception>
    public void Save(string path, IDurableFileSystem? files = null)
    {
        files ??= PosixFileSystem.Instance;
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        var tmp = path + ".tmp";
        try
        {
            if (files is PosixFileSystem) { Directory.CreateDirectory(directory); }
            var bytes = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false).GetBytes(File.ToString());
            using (var stream = files.OpenFile(tmp))
            {
                stream.SetLength(0); // a `.tmp` left by an earlier cut holds stale bytes
                stream.Write(bytes);
                stream.Flush(); // fsync(2)
            }
            files.Rename(tmp, path);
            files.SyncDirectory(directory);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HalException($"{path}: writing the boot state failed: {e.Message}", isTransient: true, e);
        }
    }

    /// <summary>The committed slot (`primary`), or null.</summary>
    public BootSlot? Primary => File.GetSlot(BootStateFile.Primary);

    /// <summary>The slot being tried (`pending`), or null.</summary>
    public BootSlot? Pending => File.GetSlot(BootStateFile.Pending);

    /// <summary>Boot tries left for <see cref="Pending"/>.</summary>
    public int TriesLeft => File.GetInt(BootStateFile.Tries);

    /// <summary>The slot the boot program last gave up on (`last_failed`), or null.</summary>
    public BootSlot? LastFailed => File.GetSlot(BootStateFile.LastFailed);

    /// <summary>The OS version written to <paramref name="slot"/>; null while it holds no complete image.</summary>
    public string? Version(BootSlot slot) => File.Get(BootStateFile.SlotKey(slot, "version")) is { Length: > 0 } v ? v : null;

    public bool IsGood(BootSlot slot) => File.Get(BootStateFile.SlotKey(slot, "good")) == "1";

    public SlotState Read(BootSlot slot) => new(slot, Version(slot), IsGood(slot), Pending == slot ? TriesLeft : 0);

    /// <summary>Refuses what cannot be one line of the state file (spaces are fine: "tsunagu-os 1.1").</summary>
    /// <exception cref="HalException">Empty, padded with white space, or holding control characters.</exception>
    public static void ValidateOsVersion(BootSlot slot, string osVersion)
    {
        if (string.IsNullOrWhiteSpace(osVersion) || osVersion != osVersion.Trim() || osVersion.Any(char.IsControl))
        {
            throw new HalException($"slot {slot}: '{osVersion}' is not an OS version (no control characters, no leading or trailing white space)", isTransient: false);
        }
    }

    /// <summary>Before an image is written: the slot is bad and holds no version until <see cref="Written"/>.</summary>
    /// <exception cref="HalException"><paramref name="slot"/> is <paramref name="booted"/>.</exception>
    public void BeginWrite(BootSlot slot, BootSlot? booted)
    {
        if (booted == slot)
        {
            throw new HalException($"slot {slot} is the booted slot; an update writes only the inactive slot", isTransient: false);
        }
        MarkBad(slot);
        File.Set(BootStateFile.SlotKey(slot, "version"), "");
        File.Set(BootStateFile.SlotKey(slot, "verity"), "");
    }

    /// <summary>The slot's dm-verity parameters (`DATA_BLOCKS:HASH_START_BLOCK:SALT:ROOT_HASH`), or null when its image has none.</summary>
    public string? Verity(BootSlot slot) => File.Get(BootStateFile.SlotKey(slot, "verity")) is { Length: > 0 } v ? v : null;

    /// <summary>Records the dm-verity parameters of the image written into <paramref name="slot"/>; null clears them.</summary>
    /// <exception cref="HalException">Not of the form the boot program reads.</exception>
    public void SetVerity(BootSlot slot, string? verity)
    {
        if (verity is not null && !VerityForm().IsMatch(verity))
        {
            throw new HalException($"slot {slot}: '{verity}' is not DATA_BLOCKS:HASH_START_BLOCK:SALT:ROOT_HASH (decimal, decimal, hex, 64 hex digits)", isTransient: false);
        }
        File.Set(BootStateFile.SlotKey(slot, "verity"), verity ?? "");
    }

    [System.Text.RegularExpressions.GeneratedRegex("^[1-9][0-9]{0,15}:[1-9][0-9]{0,15}:([0-9a-f]{2}){1,256}:[0-9a-f]{64}$")]
    private static partial System.Text.RegularExpressions.Regex VerityForm();

    /// <summary>The image is complete: the slot holds <paramref name="osVersion"/> (still bad until it is activated and marked good).</summary>
    public void Written(BootSlot slot, string osVersion)
    {
        ValidateOsVersion(slot, osVersion);
        File.Set(BootStateFile.SlotKey(slot, "version"), osVersion);
    }

    /// <exception cref="HalException">The slot holds no complete image.</exception>
    public void Activate(BootSlot slot, int tries)
    {
        if (Version(slot) is null)
        {
            throw new HalException($"slot {slot} holds no complete image; it cannot be activated", isTransient: false);
        }
        File.SetSlot(BootStateFile.Pending, slot);
        File.SetInt(BootStateFile.Tries, Math.Max(1, tries));
    }

    public void MarkGood(BootSlot slot)
    {
        File.Set(BootStateFile.SlotKey(slot, "good"), "1");
        File.SetSlot(BootStateFile.Primary, slot);
        File.SetSlot(BootStateFile.Pending, null);
        File.SetInt(BootStateFile.Tries, 0);
        File.SetSlot(BootStateFile.LastFailed, null);
    }

    public void MarkBad(BootSlot slot)
    {
        File.Set(BootStateFile.SlotKey(slot, "good"), "0");
        if (Primary == slot) { File.SetSlot(BootStateFile.Primary, null); }
        if (Pending == slot)
        {
            File.SetSlot(BootStateFile.Pending, null);
            File.SetInt(BootStateFile.Tries, 0);
        }
    }

    /// <summary>The boot program gives up on <paramref name="slot"/>: it is marked bad and reported in <see cref="LastFailed"/>.</summary>
    public void GiveUp(BootSlot slot)
    {
        MarkBad(slot);
        File.SetSlot(BootStateFile.LastFailed, slot);
    }

    /// <summary>
    /// One choice of the boot program: the pending slot while it has tries left (one try is used), else, when a pending
    /// slot ran out of tries, it is given up and the choice made again; else the committed slot when it is good; else
    /// none (the PROM's recovery OS).
    /// </summary>
    public BootSlot? PickSlot()
    {
        while (true)
        {
            if (Pending is { } pending && TriesLeft > 0)
            {
                File.SetInt(BootStateFile.Tries, TriesLeft - 1);
                return pending;
            }
            if (Pending is { } exhausted)
            {
                GiveUp(exhausted);
                continue;
            }
            return Primary is { } primary && IsGood(primary) ? primary : null;
        }
    }

    public override string ToString() => File.ToString();
}
