namespace Tsunagu.Server.Security;

/// <summary>
/// A file made once and then shared by every replica that starts on the same data directory (the keys, the server's
/// certificate): the first writer wins. Each writer writes a file of its own (its data synced, readable by the owner
/// only) and links it in under the name only if nothing is there yet (a hard link, which fails when the name exists), so
/// two replicas starting at once never both keep what they made, never replace each other's file, and never read a
/// half-written one; the one that lost reads the winner's.
/// </summary>
public static class CreateOnceFile
{
    /// <summary>Read and write for the server's own user only: what a key or a certificate's private key is created with.</summary>
    public const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>The file's bytes: read when it exists, else <paramref name="make"/>'s, published unless another writer was first.</summary>
    public static byte[] ReadOrCreate(string path, Func<byte[]> make, UnixFileMode? mode = null) =>
        File.Exists(path) ? File.ReadAllBytes(path) : Publish(path, make(), mode);

    /// <summary>
    /// Publishes <paramref name="content"/> as <paramref name="path"/> unless the file exists by then; returns what the
    /// file holds afterwards (the winner's bytes). No temporary file is left either way.
    /// </summary>
    internal static byte[] Publish(string path, byte[] content, UnixFileMode? mode = null)
    {
        var temporary = $"{path}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
        try
        {
            var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None };
            if (!OperatingSystem.IsWindows()) { options.UnixCreateMode = mode ?? OwnerOnly; } // never readable by others, not even briefly
            using (var file = new FileStream(temporary, options))
            {
                file.Write(content);
                file.Flush(flushToDisk: true);
            }
            if (LinkNoReplace(temporary, path))
            {
                return content;
            }
            return File.ReadAllBytes(path); // another replica was first: its file is complete (linked in whole)
        }
        finally
        {
            File.Delete(temporary);
        }
    }

    /// <summary>
    /// Gives <paramref name="source"/>'s file the name <paramref name="destination"/> unless that name exists: link(2), which
    /// fails with EEXIST atomically (File.Move without overwrite looks first and then renames: two writers can both pass
    /// the look, and the second replaces the first's file). False when the name exists.
    /// </summary>
    /// <exception cref="IOException">Neither the link nor the move could be made.</exception>
    private static bool LinkNoReplace(string source, string destination)
    {
        if (OperatingSystem.IsWindows())
        {
            try { File.Move(source, destination, overwrite: false); return true; }
            catch (IOException) when (File.Exists(destination)) { return false; }
        }
        if (Link(source, destination) == 0) { return true; }
        const int EExist = 17;
        if (System.Runtime.InteropServices.Marshal.GetLastPInvokeError() == EExist) { return false; }
        // a file system without hard links (some network and FUSE mounts: EPERM, EOPNOTSUPP): a move without overwrite,
        // which is not atomic there, rather than no start at all
        try
        {
            File.Move(source, destination, overwrite: false);
            return true;
        }
        catch (IOException) when (File.Exists(destination))
        {
            return false;
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "link", SetLastError = true, CharSet = System.Runtime.InteropServices.CharSet.Ansi, BestFitMapping = false, ThrowOnUnmappableChar = true)]
    private static extern int Link(string source, string destination);
}
