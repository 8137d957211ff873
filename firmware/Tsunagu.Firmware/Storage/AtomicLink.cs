using Tsunagu.Hal.Storage;

namespace Tsunagu.Firmware.Storage;

/// <summary>
/// Re-points a symbolic link atomically: create a new link beside it, rename(2) it over the old one, then sync the
/// directory, so a power cut leaves the old target or the new one, never neither, and once <see cref="Point"/>
/// returns the new one survives. (A symbolic link has no content to sync before the rename: its target is
/// part of the entry the directory sync makes durable.)
/// </summary>
public static class AtomicLink
{
    /// <exception cref="IOException">The link cannot be created, renamed or its directory synced.</exception>
    public static void Point(string link, string target, IDurableFileSystem? files = null)
    {
        files ??= PosixFileSystem.Instance;
        var directory = Path.GetDirectoryName(Path.GetFullPath(link))!;
        var tmp = Path.Combine(directory, $".{Path.GetFileName(link)}-{Guid.NewGuid():N}");
        files.CreateSymbolicLink(tmp, target);
        try
        {
            files.Rename(tmp, link);
        }
        catch (IOException e)
        {
            files.DeleteFile(tmp);
            throw new IOException($"cannot re-point {link} to {target}: {e.Message}", e);
        }
        files.SyncDirectory(directory);
    }

    /// <summary>Removes <paramref name="link"/> and syncs its directory, so the removal survives a power cut.</summary>
    public static void Remove(string link, IDurableFileSystem? files = null)
    {
        files ??= PosixFileSystem.Instance;
        files.DeleteFile(link);
        files.SyncDirectory(Path.GetDirectoryName(Path.GetFullPath(link))!);
    }
}
