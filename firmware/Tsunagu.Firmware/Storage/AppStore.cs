using System.Text.Json;
using Tsunagu.Hal.Storage;
using Tsunagu.Protocol.Bundles;

namespace Tsunagu.Firmware.Storage;

/// <summary>
/// Installed applications on `data`: `apps/NAME/VERSION/` trees and an atomically switched `apps/NAME/current`
/// symbolic link naming the version in use. Publishing goes through <c>files</c> (default: the real
/// file system): a staged tree is synced, file by file and directory by directory, before the rename that
/// publishes it, and every rename or removal is followed by a sync of its directory. A replace of a tree
/// (<see cref="Replace"/>) cut by a power failure is finished by the next reader (<see cref="Current"/>,
/// <see cref="Links"/>), so the version `current` names is always found with its old tree or its new one.
/// Correctness depends only on renames: a leftover tree (set aside or half staged) that cannot be removed is renamed to
/// `.discarded-ID`, which no reader looks at, and its removal is tried again by later readers without ever failing one
/// (the failure is logged through <c>log</c> once, when the tree is set aside).
/// </summary>
public sealed class AppStore(string dataRoot, IDurableFileSystem? files = null, Action<string>? log = null)
{
    private readonly IDurableFileSystem _files = files ?? PosixFileSystem.Instance;
    private readonly Action<string> _log = log ?? (_ => { });
    private readonly Lock _gate = new();
    private readonly HashSet<string> _undeletableLogged = new(StringComparer.Ordinal);

    /// <summary>The complete replacement of NAME/VERSION while it is being swapped in (<see cref="Replace"/>): `apps/NAME/.replacing-VERSION`.</summary>
    private const string ReplacingPrefix = ".replacing-";

    /// <summary>The tree a replacement set aside (<see cref="Replace"/>): `apps/NAME/.replaced-VERSION`.</summary>
    private const string ReplacedPrefix = ".replaced-";

    private const string StagingPrefix = ".staging-";

    /// <summary>A leftover tree whose removal failed, renamed out of the way (<see cref="RemoveLeftover"/>): `apps/NAME/.discarded-ID`.</summary>
    private const string DiscardedPrefix = ".discarded-";

    public string Root { get; } = Path.Combine(dataRoot, "apps");

    /// <summary>Application name -> version that `current` points to.</summary>
    public IReadOnlyDictionary<string, string> Current()
    {
        var result = new SortedDictionary<string, string>(StringComparer.Ordinal);
        if (!Directory.Exists(Root))
        {
            return result;
        }
        Recover();
        foreach (var appDir in Directory.GetDirectories(Root))
        {
            var link = new FileInfo(Path.Combine(appDir, "current"));
            if (link.LinkTarget is { } target && Directory.Exists(Path.Combine(appDir, target)))
            {
                result[Path.GetFileName(appDir)] = target;
            }
        }
        return result;
    }

    /// <summary>Application name -> version its `current` link names, whether or not that version's tree is still there.</summary>
    public IReadOnlyDictionary<string, string> Links()
    {
        var result = new SortedDictionary<string, string>(StringComparer.Ordinal);
        if (!Directory.Exists(Root))
        {
            return result;
        }
        Recover();
        foreach (var appDir in Directory.GetDirectories(Root))
        {
            if (new FileInfo(Path.Combine(appDir, "current")).LinkTarget is { } target)
            {
                result[Path.GetFileName(appDir)] = target;
            }
        }
        return result;
    }

    /// <summary>The tree of NAME/VERSION.</summary>
    public string TreePath(string name, string version)
    {
        ValidateSegment(name, "application name");
        ValidateSegment(version, "application version");
        return Path.Combine(Root, name, version);
    }

    /// <summary>Where NAME/VERSION's seal (what it was installed from) is kept: `apps/NAME/.seal-VERSION`.</summary>
    public string SealPath(string name, string version)
    {
        ValidateSegment(name, "application name");
        ValidateSegment(version, "application version");
        return Path.Combine(Root, name, $".seal-{version}");
    }

    /// <summary>Writes NAME/VERSION's seal atomically (a power cut leaves the old seal or the new one).</summary>
    public void WriteSeal(AppSeal seal)
    {
        var path = SealPath(seal.Application, seal.Version);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var temp = $"{path}.tmp-{Guid.NewGuid():N}";
        File.WriteAllBytes(temp, JsonSerializer.SerializeToUtf8Bytes(seal, FirmwareJson.Default.AppSeal));
        _files.SyncFile(temp);
        _files.Rename(temp, path);
        _files.SyncDirectory(Path.GetDirectoryName(path)!);
    }

    /// <summary>NAME/VERSION's seal; null when it has none (a factory application, or one installed before seals were kept).</summary>
    /// <exception cref="InvalidDataException">The seal exists but is not a seal of NAME/VERSION.</exception>
    public AppSeal? ReadSeal(string name, string version)
    {
        var path = SealPath(name, version);
        if (!File.Exists(path))
        {
            return null;
        }
        AppSeal? seal;
        try
        {
            seal = JsonSerializer.Deserialize(File.ReadAllBytes(path), FirmwareJson.Default.AppSeal);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not a readable seal: {e.Message}", e);
        }
        if (seal is null || seal.Application != name || seal.Version != version || seal.Manifest is null || seal.Signatures is null ||
            seal.Payload is null || seal.ArtifactUrl is null || seal.PayloadOffset < 0)
        {
            throw new InvalidDataException($"{path}: not a seal of {name} {version}");
        }
        if (seal.InstalledFiles is { } files && FileListRules.Problem(files) is var (rule, detail))
        {
            throw new InvalidDataException(
                $"{path}: the file list of {name} {version} is not a list of relative paths with sizes and SHA-256 digests (rule {FileListRules.Name(rule)}: {detail})");
        }
        return seal;
    }

    /// <summary>
    /// Replaces the tree of an installed NAME/VERSION with a copy of <paramref name="sourceTree"/> (a damaged tree
    /// restored), in steps each made durable before the next: the copy is staged and synced, renamed to
    /// `.replacing-VERSION` (from here on the new tree is complete and the replace goes forward), the old tree renamed to
    /// `.replaced-VERSION`, the new one renamed in, the old one removed. A power cut at any step leaves the old tree in
    /// place, or a complete new tree that <see cref="Recover"/> (run by every reader) puts in place.
    /// </summary>
    /// <exception cref="IOException">A step failed; what was done is finished or undone by the next <see cref="Recover"/>.</exception>
    public void Replace(string name, string version, string sourceTree)
    {
        var appDir = Path.GetDirectoryName(TreePath(name, version))!;
        lock (_gate)
        {
            Directory.CreateDirectory(appDir);
            RecoverApplication(appDir);
            var staging = Path.Combine(appDir, $"{StagingPrefix}{version}-{Guid.NewGuid():N}");
            CopyTree(sourceTree, staging);
            var replacing = Path.Combine(appDir, ReplacingPrefix + version);
            _files.Rename(staging, replacing);
            _files.SyncDirectory(appDir);
            SwapIn(appDir, version);
        }
    }

    /// <summary>
    /// Finishes what a replace cut by a power failure left in every application directory: a complete replacement
    /// (`.replacing-VERSION`) is swapped in, a tree set aside (`.replaced-VERSION`) is removed once its version's tree is
    /// in place (put back when it is not), and an unfinished staged copy (`.staging-*`) is removed.
    /// </summary>
    public void Recover()
    {
        lock (_gate)
        {
            if (!Directory.Exists(Root)) { return; }
            foreach (var appDir in Directory.GetDirectories(Root))
            {
                RecoverApplication(appDir);
            }
        }
    }

    private void RecoverApplication(string appDir)
    {
        var changed = false;
        foreach (var entry in Directory.GetDirectories(appDir))
        {
            var name = Path.GetFileName(entry);
            if (name.StartsWith(ReplacingPrefix, StringComparison.Ordinal))
            {
                SwapIn(appDir, name[ReplacingPrefix.Length..]);
            }
        }
        foreach (var entry in Directory.GetDirectories(appDir))
        {
            var name = Path.GetFileName(entry);
            if (name.StartsWith(ReplacedPrefix, StringComparison.Ordinal))
            {
                var version = name[ReplacedPrefix.Length..];
                if (Directory.Exists(Path.Combine(appDir, version)))
                {
                    RemoveLeftover(appDir, entry);
                }
                else
                {
                    _files.Rename(entry, Path.Combine(appDir, version));
                }
                changed = true;
            }
            else if (name.StartsWith(StagingPrefix, StringComparison.Ordinal))
            {
                RemoveLeftover(appDir, entry);
                changed = true;
            }
            else if (name.StartsWith(DiscardedPrefix, StringComparison.Ordinal))
            {
                TryDeleteTree(entry, logFailure: false); // logged when it was set aside
            }
        }
        if (changed) { _files.SyncDirectory(appDir); }
    }

    /// <summary>
    /// Removes a tree no reader needs (a set-aside or half-staged tree), best-effort: when it cannot be removed (an
    /// unreadable, damaged tree) it is renamed to a unique `.discarded-ID`, which readers ignore and later recoveries try
    /// to remove again, so a failed removal never fails a read or makes the next recovery redo a swap.
    /// </summary>
    /// <exception cref="IOException">The rename out of the way failed.</exception>
    private void RemoveLeftover(string appDir, string tree)
    {
        if (TryDeleteTree(tree, logFailure: true)) { return; }
        _files.Rename(tree, Path.Combine(appDir, $"{DiscardedPrefix}{Guid.NewGuid():N}"));
        _files.SyncDirectory(appDir);
    }

    /// <summary>Deletes <paramref name="tree"/>; false (logged once per tree when <paramref name="logFailure"/>) when it cannot be removed.</summary>
    private bool TryDeleteTree(string tree, bool logFailure)
    {
        try
        {
            _files.DeleteTree(tree);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            if (logFailure && _undeletableLogged.Add(tree))
            {
                _log($"apps: cannot remove {tree} ({e.GetType().Name}: {e.Message}); it is left out of the way and removed later");
            }
            return false;
        }
    }

    /// <summary>`.replacing-VERSION` (complete and synced) becomes VERSION: the old tree set aside, the new one renamed in, the old one removed.</summary>
    private void SwapIn(string appDir, string version)
    {
        var target = Path.Combine(appDir, version);
        var replacing = Path.Combine(appDir, ReplacingPrefix + version);
        var replaced = Path.Combine(appDir, ReplacedPrefix + version);
        if (Directory.Exists(target))
        {
            if (Directory.Exists(replaced))
            {
                // an older set-aside tree of the same version (its removal was cut): the one in place is the one to set aside
                RemoveLeftover(appDir, replaced);
            }
            _files.Rename(target, replaced);
            _files.SyncDirectory(appDir);
        }
        _files.Rename(replacing, target);
        _files.SyncDirectory(appDir);
        if (Directory.Exists(replaced))
        {
            RemoveLeftover(appDir, replaced);
            _files.SyncDirectory(appDir);
        }
    }

    /// <summary>Copies <paramref name="sourceTree"/> in as NAME/VERSION (if not already there) without switching.</summary>
    public void Stage(string name, string version, string sourceTree)
    {
        ValidateSegment(name, "application name");
        ValidateSegment(version, "application version");
        var target = Path.Combine(Root, name, version);
        lock (_gate)
        {
            if (Directory.Exists(target))
            {
                return;
            }
            var staging = Path.Combine(Root, name, $"{StagingPrefix}{version}-{Guid.NewGuid():N}");
            CopyTree(sourceTree, staging);
            _files.Rename(staging, target);
            _files.SyncDirectory(Path.Combine(Root, name));
        }
    }

    /// <summary>Points NAME/current at VERSION with a single rename, so a power cut leaves old or new, never neither.</summary>
    public void Switch(string name, string version)
    {
        ValidateSegment(name, "application name");
        ValidateSegment(version, "application version");
        var appDir = Path.Combine(Root, name);
        if (!Directory.Exists(Path.Combine(appDir, version)))
        {
            throw new InvalidOperationException($"cannot switch {name} to {version}: {Path.Combine(appDir, version)} is not installed");
        }
        AtomicLink.Point(Path.Combine(appDir, "current"), version, _files);
    }

    /// <summary>Removes NAME/current (an application the rolled-back update had added); the version trees stay.</summary>
    public void Unlink(string name)
    {
        ValidateSegment(name, "application name");
        var link = Path.Combine(Root, name, "current");
        if (new FileInfo(link).LinkTarget is not null)
        {
            AtomicLink.Remove(link, _files);
        }
    }

    public static void ValidateSegment(string value, string what)
    {
        if (string.IsNullOrWhiteSpace(value) || value is "." or ".." || value.StartsWith('.') ||
            value.IndexOfAny(['/', '\\', '\0']) >= 0 || value.Length > 128)
        {
            throw new ArgumentException($"'{value}' is not a valid {what}");
        }
    }

    /// <summary>Copies a tree and syncs every file and directory of the copy, so the rename that publishes it publishes whole files.</summary>
    private void CopyTree(string source, string destination)
    {
        Directory.CreateDirectory(destination);
        foreach (var file in Directory.GetFiles(source))
        {
            var copy = Path.Combine(destination, Path.GetFileName(file));
            File.Copy(file, copy);
            _files.SyncFile(copy);
        }
        foreach (var dir in Directory.GetDirectories(source))
        {
            CopyTree(dir, Path.Combine(destination, Path.GetFileName(dir)));
        }
        _files.SyncDirectory(destination);
    }
}
