using System.Runtime.InteropServices;

namespace Tsunagu.Hal.Storage;

/// <summary>
/// The file operations the unit's durable paths (state store, atomic links, the boot state file) go through, with their durability
/// spelt out: a file's content is on the disk once its stream was flushed (<see cref="Stream.Flush()"/> is
/// fsync(2)); a directory's entries (a created file, a rename, a link, a deletion) are on the disk once the
/// directory was synced. Production uses <see cref="PosixFileSystem.Instance"/>; tests put a model under it that
/// can cut the power after any write or sync.
/// </summary>
public interface IDurableFileSystem
{
    bool FileExists(string path);

    /// <summary>Opens <paramref name="path"/> for reading and writing, creating it when missing; the stream's Flush() is fsync(2).</summary>
    Stream OpenFile(string path);

    /// <summary>fsync(2) of a file written and closed by other code (a copied file), before it is published by a rename.</summary>
    /// <exception cref="IOException">The file cannot be opened or synced.</exception>
    void SyncFile(string path);

    void CreateSymbolicLink(string path, string target);

    /// <summary>rename(2): atomically replaces <paramref name="destination"/>.</summary>
    /// <exception cref="IOException">The rename failed.</exception>
    void Rename(string source, string destination);

    void DeleteFile(string path);

    /// <summary>fsync(2) of the directory: its entries as they are now survive a power cut.</summary>
    /// <exception cref="IOException">The directory cannot be opened or synced.</exception>
    void SyncDirectory(string path);

    /// <summary>Removes a directory tree and everything in it (not made durable: callers only remove what no reader needs).</summary>
    /// <exception cref="IOException">An entry cannot be removed; part of the tree may be gone.</exception>
    /// <exception cref="UnauthorizedAccessException">An entry cannot be removed for lack of permission.</exception>
    void DeleteTree(string path) => Directory.Delete(path, recursive: true);
}

/// <summary>The real file system: FileStream, rename(2), and fsync(2) of a directory opened with O_RDONLY|O_DIRECTORY.</summary>
public sealed partial class PosixFileSystem : IDurableFileSystem
{
    private const int ORdOnly = 0;
    private static readonly int ODirectory = DirectoryFlag(RuntimeInformation.ProcessArchitecture);
    private const int OCloexec = 0x80000;

    /// <summary>
    /// O_DIRECTORY on <paramref name="architecture"/>: 0x4000 on arm64 and arm (their own fcntl.h), 0x10000 elsewhere
    /// (asm-generic, x86_64). On arm64 0x10000 is O_DIRECT, which opening a directory refuses with EINVAL.
    /// </summary>
    public static int DirectoryFlag(Architecture architecture) => architecture is Architecture.Arm64 or Architecture.Arm ? 0x4000 : 0x10000;

    public static PosixFileSystem Instance { get; } = new();

    private PosixFileSystem() { }

    public bool FileExists(string path) => File.Exists(path);

    public Stream OpenFile(string path) =>
        new SyncingFileStream(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read, 8192, FileOptions.RandomAccess));

    public void CreateSymbolicLink(string path, string target) => File.CreateSymbolicLink(path, target);

    public void Rename(string source, string destination)
    {
        if (RenamePath(source, destination) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new IOException($"cannot rename {source} to {destination}: errno {errno} ({Marshal.GetPInvokeErrorMessage(errno)})");
        }
    }

    public void DeleteFile(string path) => File.Delete(path);

    public void SyncDirectory(string path)
    {
        if (!OperatingSystem.IsLinux()) { return; }
        var fd = Open(path, ORdOnly | ODirectory | OCloexec);
        if (fd < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new IOException($"{path}: cannot open the directory to sync it: errno {errno} ({Marshal.GetPInvokeErrorMessage(errno)})");
        }
        try
        {
            if (Fsync(fd) != 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                throw new IOException($"{path}: fsync of the directory failed: errno {errno} ({Marshal.GetPInvokeErrorMessage(errno)})");
            }
        }
        finally
        {
            _ = Close(fd);
        }
    }

    public void SyncFile(string path)
    {
        if (!OperatingSystem.IsLinux()) { return; }
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read); // fsync(2) needs no write access
        if (FsyncHandle(file) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new IOException($"{path}: fsync failed: errno {errno} ({Marshal.GetPInvokeErrorMessage(errno)})");
        }
    }

    [LibraryImport("libc", EntryPoint = "rename", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int RenamePath(string oldPath, string newPath);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int FsyncHandle(Microsoft.Win32.SafeHandles.SafeFileHandle fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);

    /// <summary>
    /// A file stream whose Flush() reaches the disk. LiteDB calls Flush() at each commit and checkpoint; on a stream
    /// it was handed (rather than a file it opened itself) that would otherwise only empty the stream's buffer.
    /// </summary>
    private sealed class SyncingFileStream(FileStream file) : Stream
    {
        public override bool CanRead => file.CanRead;
        public override bool CanSeek => file.CanSeek;
        public override bool CanWrite => file.CanWrite;
        public override long Length => file.Length;
        public override long Position { get => file.Position; set => file.Position = value; }
        public override void Flush() => file.Flush(flushToDisk: true);
        public override int Read(byte[] buffer, int offset, int count) => file.Read(buffer, offset, count);
        public override long Seek(long offset, SeekOrigin origin) => file.Seek(offset, origin);
        public override void SetLength(long value) => file.SetLength(value);
        public override void Write(byte[] buffer, int offset, int count) => file.Write(buffer, offset, count);

        protected override void Dispose(bool disposing)
        {
            if (disposing) { file.Dispose(); }
            base.Dispose(disposing);
        }
    }
}
