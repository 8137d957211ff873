using System.Runtime.InteropServices;

namespace Tsunagu.Firmware.Storage;

/// <summary>
/// Re-points a symbolic link atomically: create a new link beside it, then rename(2) it over the old one, so a
/// power cut leaves the old target or the new one, never neither.
/// </summary>
public static partial class AtomicLink
{
    public static void Point(string link, string target)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(link))!;
        var tmp = Path.Combine(directory, $".{Path.GetFileName(link)}-{Guid.NewGuid():N}");
        File.CreateSymbolicLink(tmp, target);
        if (Rename(tmp, link) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            File.Delete(tmp);
            throw new IOException($"cannot re-point {link} to {target}: rename failed with errno {errno} ({Marshal.GetPInvokeErrorMessage(errno)})");
        }
    }

    [LibraryImport("libc", EntryPoint = "rename", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Rename(string oldPath, string newPath);
}
