using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Tsunagu.Firmware.Storage;

/// <summary>
/// Starts the write-out of a file's dirty pages without waiting for it (sync_file_range(2) with
/// SYNC_FILE_RANGE_WRITE), so a long download reaches the disk while it is still arriving: the page cache holds a
/// bounded amount of it whatever the RAM size, and the final fsync only waits for the tail. A hint: where the file
/// system cannot do it, nothing happens.
/// </summary>
public static partial class Writeback
{
    private const uint SyncFileRangeWrite = 2;
    private const int EINVAL = 22, ESPIPE = 29, ENOSYS = 38, EOPNOTSUPP = 95;

    /// <summary>Starts writing out every dirty page of <paramref name="file"/>. False when the file system cannot.</summary>
    /// <exception cref="IOException">The kernel reported an I/O error.</exception>
    public static bool Start(FileStream file)
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }
        if (SyncFileRange(file.SafeFileHandle, 0, 0, SyncFileRangeWrite) == 0)
        {
            return true;
        }
        var errno = Marshal.GetLastPInvokeError();
        if (errno is EINVAL or ESPIPE or ENOSYS or EOPNOTSUPP)
        {
            return false; // not a regular file on a file system that supports it: the final fsync does all the work
        }
        throw new IOException($"{file.Name}: starting write-out failed with errno {errno} ({Marshal.GetPInvokeErrorMessage(errno)})");
    }

    [LibraryImport("libc", EntryPoint = "sync_file_range", SetLastError = true)]
    private static partial int SyncFileRange(SafeFileHandle fd, long offset, long nbytes, uint flags);
}

/// <summary>Starts the write-out of a file (<see cref="Writeback.Start"/>) each time another <see cref="Interval"/> bytes were written to it.</summary>
public sealed class WritebackPacer(Stream destination)
{
    public const long Interval = 8L << 20;
    private readonly FileStream? _file = destination as FileStream;
    private long _pending;
    private bool _enabled = destination is FileStream;

    /// <summary>Counts <paramref name="count"/> bytes just written; every <see cref="Interval"/> bytes, starts their write-out.</summary>
    public async ValueTask WroteAsync(int count, CancellationToken ct)
    {
        if (!_enabled || (_pending += count) < Interval)
        {
            return;
        }
        _pending = 0;
        await _file!.FlushAsync(ct); // what the stream still buffers goes to the kernel first
        _enabled = Writeback.Start(_file);
    }
}
