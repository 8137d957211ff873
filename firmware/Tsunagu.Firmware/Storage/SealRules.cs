using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;

namespace Tsunagu.Firmware.Storage;

/// <summary>A rule the file list an application's seal keeps (<see cref="AppSeal.InstalledFiles"/>) must follow.</summary>
public enum SealRule
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
/// The rules of a seal's kept file list: the same as those of a signed payload's `files` (docs/bundles.md sections 1 and
/// 9). <see cref="AppStore.ReadSeal"/> refuses a seal whose list breaks one, so a tree whose list would break one is
/// refused when it is unpacked, before anything is switched: installed, it could never be checked.
/// </summary>
public static class SealRules
{
    /// <summary>The kebab-case name used in messages: "file-limit", "path", "size", "digest".</summary>
    public static string Name(SealRule rule) => rule switch
    {
        SealRule.FileLimit => "file-limit",
        _ => rule.ToString().ToLowerInvariant(),
    };

    /// <summary>The first rule <paramref name="files"/> breaks, with what breaks it; null when it breaks none.</summary>
    public static (SealRule Rule, string Detail)? Problem(IReadOnlyList<BundleFile?> files)
    {
        if (files.Count > BundleManifest.MaxApplicationFiles)
        {
            return (SealRule.FileLimit, $"{files.Count} files, more than {BundleManifest.MaxApplicationFiles}");
        }
        var paths = new HashSet<string>(StringComparer.Ordinal);
        foreach (var f in files)
        {
            if (f is null)
            {
                return (SealRule.Path, "an entry is null");
            }
            if (PathProblem(f.Path) is { } path)
            {
                return (SealRule.Path, path);
            }
            if (!paths.Add(f.Path))
            {
                return (SealRule.Path, $"'{Printable(f.Path)}' appears twice");
            }
            if (f.Size < 0)
            {
                return (SealRule.Size, $"'{Printable(f.Path)}': size {f.Size} is negative");
            }
            if (f.Sha256 is not { Length: 64 } || !f.Sha256.All(char.IsAsciiHexDigitLower))
            {
                return (SealRule.Digest, $"'{Printable(f.Path)}': sha256 is not 64 lower-case hex digits");
            }
        }
        return null;
    }

    /// <summary>Why <paramref name="path"/> (relative to its tree, '/' separated) cannot be in a seal; null when it can.</summary>
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

/// <summary>
/// An application payload whose unpacked tree breaks a rule of the file list its seal would keep (<see cref="SealRules"/>):
/// refused at install, before anything is switched, so the version installed before stays as it was.
/// </summary>
public sealed class SealRuleException(string payload, SealRule rule, string detail)
    : ProtocolException($"seal {SealRules.Name(rule)}: payload {payload}: its unpacked tree cannot be sealed: {detail}")
{
    public string Payload { get; } = payload;
    public SealRule Rule { get; } = rule;
}
