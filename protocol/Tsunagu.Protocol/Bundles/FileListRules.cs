namespace Tsunagu.Protocol.Bundles;

/// <summary>A rule an application's file list must follow (a signed payload's `files`, a seal's kept list).</summary>
public enum FileListRule
{
    /// <summary>At most <see cref="BundleManifest.MaxApplicationFiles"/> regular files.</summary>
    FileLimit,

    /// <summary>Each path once, relative, of single segments without control characters (<see cref="BundleManifest.IsRelativePath"/>).</summary>
    Path,

    /// <summary>Each size zero or more.</summary>
    Size,

    /// <summary>Each SHA-256 64 lower-case hex digits.</summary>
    Digest,
}

/// <summary>
/// The rules of an application's file list (docs/bundles.md sections 1 and 9), in one place: a signed payload's `files`
/// (<see cref="BundleManifest.Problems"/>) and the list a unit's seal keeps for a payload without one are held to the
/// same rules and refused with the same words.
/// </summary>
public static class FileListRules
{
    /// <summary>The kebab-case name used in messages: "file-limit", "path", "size", "digest".</summary>
    public static string Name(FileListRule rule) => rule switch
    {
        FileListRule.FileLimit => "file-limit",
        _ => rule.ToString().ToLowerInvariant(),
    };

    /// <summary>
    /// Every rule <paramref name="files"/> breaks, in list order, with what breaks it (empty when it breaks none). A list
    /// past the file limit is that problem alone; of one entry, a path that is not relative hides that it appears twice.
    /// </summary>
    public static IEnumerable<(FileListRule Rule, string Detail)> Problems(IReadOnlyList<BundleFile?> files)
    {
        if (files.Count > BundleManifest.MaxApplicationFiles)
        {
            yield return (FileListRule.FileLimit, TooManyFiles());
            yield break;
        }
        var paths = new HashSet<string>(StringComparer.Ordinal);
        foreach (var f in files)
        {
            if (f is null)
            {
                yield return (FileListRule.Path, "an entry is null");
                continue;
            }
            if (PathProblem(f.Path) is { } path)
            {
                yield return (FileListRule.Path, path);
            }
            else if (!paths.Add(f.Path!))
            {
                yield return (FileListRule.Path, Twice(f.Path!));
            }
            if (f.Size < 0)
            {
                yield return (FileListRule.Size, $"'{Printable(f.Path ?? "null")}' size: {f.Size} is negative");
            }
            if (f.Sha256 is not { Length: 64 } || !f.Sha256.All(char.IsAsciiHexDigitLower))
            {
                yield return (FileListRule.Digest, $"'{Printable(f.Path ?? "null")}' sha256: not 64 lower-case hex digits");
            }
        }
    }

    /// <summary>The first rule <paramref name="files"/> breaks, with what breaks it; null when it breaks none.</summary>
    public static (FileListRule Rule, string Detail)? Problem(IReadOnlyList<BundleFile?> files) =>
        Problems(files).Select(p => ((FileListRule, string)?)p).FirstOrDefault();

    /// <summary>
    /// The words of a list past the file limit, the same for a signed list and a tree unpacked (which is refused at its
    /// first file past the limit, so its whole count is not known).
    /// </summary>
    public static string TooManyFiles() => $"more than {BundleManifest.MaxApplicationFiles} files";

    /// <summary>The words of <paramref name="path"/> listed twice, or unpacked twice from one tar.</summary>
    public static string Twice(string path) => $"'{Printable(path)}' appears twice";

    /// <summary>Why <paramref name="path"/> (relative to its tree, '/' separated) cannot be in a file list; null when it can.</summary>
    public static string? PathProblem(string? path) => BundleManifest.IsRelativePath(path)
        ? null
        : $"'{Printable(path ?? "null")}' is not a relative path of at most 1024 characters, of single segments without control characters, backslashes or blank segments";

    /// <summary>A path as it may be logged and reported: control characters escaped, at most 64 characters.</summary>
    public static string Printable(string path)
    {
        var escaped = string.Concat(path.Select(c => char.IsControl(c) ? $"\\u{(int)c:x4}" : c.ToString()));
        return escaped.Length <= 64 ? escaped : escaped[..64] + "...";
    }
}
