namespace Tsunagu.Hal.Linux;

/// <summary>Where <see cref="LinuxDataPartition"/>'s file system is mounted.</summary>
public sealed record LinuxDataOptions
{
    /// <summary>The mount point of the `data` partition.</summary>
    public string Root { get; init; } = "/data";

    /// <summary>
    /// When set, <see cref="LinuxDataPartition.EnsureReadyAsync"/> also requires <see cref="Root"/> to be a mount point
    /// listed in this file (so nothing is written to the root file system by mistake). Null: not checked.
    /// </summary>
    public string? MountInfoPath { get; init; } = "/proc/self/mountinfo";

    /// <summary>Entries of the root that <see cref="LinuxDataPartition.FormatAsync"/> keeps (ext4's lost+found).</summary>
    public IReadOnlyList<string> KeepOnFormat { get; init; } = ["lost+found"];
}

/// <summary>
/// The `data` partition as mounted by the boot program. <see cref="EnsureReadyAsync"/> checks that it is mounted, a
/// directory and writable (a probe file is created, synced and deleted); <see cref="FormatAsync"/> deletes everything
/// under the mount point (not the mount point itself) and syncs it.
/// </summary>
public sealed class LinuxDataPartition(LinuxDataOptions? options = null) : IDataPartition
{
    private readonly LinuxDataOptions _options = options ?? new LinuxDataOptions();

    public string Root => _options.Root;

    public Task EnsureReadyAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (!Directory.Exists(Root))
        {
            throw new HalException($"{Root}: the data partition's mount point does not exist", isTransient: false);
        }
        if (_options.MountInfoPath is { } mountInfo && !IsMountPoint(mountInfo, Root))
        {
            throw new HalException($"{Root}: the data partition is not mounted (not in {mountInfo})", isTransient: false);
        }
        var probe = Path.Combine(Root, $".tsunagu-probe-{Environment.ProcessId}");
        try
        {
            using (var stream = new FileStream(probe, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                stream.Write("probe\n"u8);
                stream.Flush(flushToDisk: true);
            }
            File.Delete(probe);
            Posix.FsyncDirectory(Root);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HalException($"{Root}: the data partition is not writable: {e.Message}", isTransient: false, e);
        }
        return Task.CompletedTask;
    }

    public Task FormatAsync(CancellationToken cancellationToken)
    {
        if (!Directory.Exists(Root))
        {
            throw new HalException($"{Root}: the data partition's mount point does not exist", isTransient: false);
        }
        try
        {
            foreach (var entry in new DirectoryInfo(Root).EnumerateFileSystemInfos())
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (_options.KeepOnFormat.Contains(entry.Name)) { continue; }
                if (entry.LinkTarget is not null || entry is FileInfo)
                {
                    File.Delete(entry.FullName); // a symbolic link goes, never what it points to
                }
                else
                {
                    Directory.Delete(entry.FullName, recursive: true);
                }
            }
            Posix.FsyncDirectory(Root);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HalException($"{Root}: erasing the data partition failed: {e.Message}", isTransient: false, e);
        }
        return Task.CompletedTask;
    }

    /// <summary>Whether <paramref name="path"/> is a mount point in a /proc/self/mountinfo style file (field 5, octal escapes).</summary>
    public static bool IsMountPoint(string mountInfoPath, string path)
    {
        string[] lines;
        try
        {
            lines = File.ReadAllLines(mountInfoPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HalException($"{mountInfoPath}: cannot read the mount table: {e.Message}", isTransient: false, e);
        }
        var wanted = Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));
        foreach (var line in lines)
        {
            var fields = line.Split(' ');
            if (fields.Length > 4 && Unescape(fields[4]) == wanted) { return true; }
        }
        return false;
    }

    private static string Unescape(string field)
    {
        if (!field.Contains('\\')) { return field; }
        var text = new System.Text.StringBuilder();
        for (var i = 0; i < field.Length; i++)
        {
            if (field[i] == '\\' && IsOctal(field, i + 1))
            {
                text.Append((char)Convert.ToInt32(field.Substring(i + 1, 3), 8));
                i += 3;
            }
            else
            {
                text.Append(field[i]);
            }
        }
        return text.ToString();
    }

    private static bool IsOctal(string s, int at) => at + 3 <= s.Length && s.Substring(at, 3).All(c => c is >= '0' and <= '7');
}
