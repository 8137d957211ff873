using System.Runtime.InteropServices;

namespace Tsunagu.Hal.Linux;

/// <summary>Durability helpers the adapters share: fsync of directories.</summary>
internal static partial class Posix
{
    private const int ORdOnly = 0;
    private static readonly int ODirectory = Storage.PosixFileSystem.DirectoryFlag(RuntimeInformation.ProcessArchitecture);
    private const int OCloexec = 0x80000;

    /// <summary>Flushes a directory's entries (creations, renames, deletions in it) to the disk.</summary>
    /// <exception cref="HalException">The directory cannot be opened or synced.</exception>
    public static void FsyncDirectory(string path)
    {
        if (!OperatingSystem.IsLinux()) { return; }
        var fd = Open(path, ORdOnly | ODirectory | OCloexec);
        if (fd < 0)
        {
            throw new HalException($"{path}: cannot open the directory to sync it: errno {Marshal.GetLastPInvokeError()}", isTransient: false);
        }
        try
        {
            if (Fsync(fd) != 0)
            {
                throw new HalException($"{path}: fsync of the directory failed: errno {Marshal.GetLastPInvokeError()}", isTransient: true);
            }
        }
        finally
        {
            _ = Close(fd);
        }
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
