using System.Text.Json;
using Tsunagu.Hal.Storage;

namespace Tsunagu.Firmware.Storage;

/// <summary>
/// Installed applications on `data`: `apps/NAME/VERSION/` trees and an atomically switched `apps/NAME/current`
/// symbolic link naming the version in use. Publishing goes through <c>files</c> (default: the real
/// file system): a staged tree is synced, file by file and directory by directory, before the rename that
/// publishes it, and every rename or removal is followed by a sync of its directory.
/// </summary>
public sealed class AppStore(string dataRoot, IDurableFileSystem? files = null)
{
    private readonly IDurableFileSystem _files = files ?? PosixFileSystem.Instance;

    public string Root { get; } = Path.Combine(dataRoot, "apps");

    /// <summary>Application name -> version that `current` points to.</summary>
    public IReadOnlyDictionary<string, string> Current()
    {
        var result = new SortedDictionary<string, string>(StringComparer.Ordinal);
        if (!Directory.Exists(Root))
        {
            return result;
        }
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
        return seal;
    }

    /// <summary>
    /// Replaces the tree of an installed NAME/VERSION with a copy of <paramref name="sourceTree"/> (a damaged tree
    /// restored): the copy is staged and synced, the damaged tree renamed away, the copy renamed in, the damaged one
    /// removed. A power cut between the renames leaves `current` naming a missing tree, which the next check finds.
    /// </summary>
    public void Replace(string name, string version, string sourceTree)
    {
        var target = TreePath(name, version);
        var appDir = Path.Combine(Root, name);
        var staging = Path.Combine(appDir, $".staging-{version}-{Guid.NewGuid():N}");
        CopyTree(sourceTree, staging);
        string? damaged = null;
        if (Directory.Exists(target))
        {
            damaged = Path.Combine(appDir, $".damaged-{version}-{Guid.NewGuid():N}");
            _files.Rename(target, damaged);
        }
        _files.Rename(staging, target);
        _files.SyncDirectory(appDir);
        if (damaged is not null)
        {
            Directory.Delete(damaged, recursive: true);
            _files.SyncDirectory(appDir);
        }
    }

    /// <summary>Copies <paramref name="sourceTree"/> in as NAME/VERSION (if not already there) without switching.</summary>
    public void Stage(string name, string version, string sourceTree)
    {
        ValidateSegment(name, "application name");
        ValidateSegment(version, "application version");
        var target = Path.Combine(Root, name, version);
        if (Directory.Exists(target))
        {
            return;
        }
        var staging = Path.Combine(Root, name, $".staging-{version}-{Guid.NewGuid():N}");
        CopyTree(sourceTree, staging);
        _files.Rename(staging, target);
        _files.SyncDirectory(Path.Combine(Root, name));
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
