using System.Security.Cryptography;
using Tsunagu.Firmware.Storage;
using Tsunagu.Firmware.Updates.Phases;
using Tsunagu.Hal;
using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;

namespace Tsunagu.Firmware.Updates;

/// <summary>An installed application whose tree differs from its signed file digests, and why.</summary>
/// <param name="Seal">What it was installed from; null when it cannot be fetched again (its seal is unreadable or not signed by a trusted key).</param>
public sealed record AppDamage(string Application, string Version, string Problem, AppSeal? Seal);

/// <summary>
/// Installed applications checked against the file digests of the signed manifest that installed them (patent 0040,
/// docs/bundles.md section 9): at boot every application `current` names is hashed; a factory application differing
/// from its PROM copy is copied from the PROM again at once, a damaged one from a bundle is fetched again from the
/// host (only its payload's bytes, by range request) when the host is reached.
/// </summary>
public static class AppIntegrity
{
    /// <summary>Seals the applications of an install: NAME/VERSION -> the signed header of the bundle and its payload's place in the artifact.</summary>
    public static IReadOnlyList<AppSeal> Seals(BundleHeader header, BundleManifest manifest, UpdateOffer offer)
    {
        var seals = new List<AppSeal>();
        var offset = header.PayloadOffset;
        var manifestBase64 = Convert.ToBase64String(header.ManifestBytes);
        foreach (var p in manifest.Payloads)
        {
            if (p.Kind == PayloadKinds.Application)
            {
                seals.Add(new AppSeal(p.Application!, p.Version!, p.Name, manifestBase64, header.Signatures, offset, offer.ArtifactUrl, offer.Sha256));
            }
            offset += p.Size;
        }
        return seals;
    }

    /// <summary>The signed payload a seal names, after its manifest's signature is verified with <paramref name="keys"/>.</summary>
    /// <exception cref="ProtocolException">The manifest is not signed by a trusted key, or names no such application payload.</exception>
    public static BundlePayload VerifySeal(AppSeal seal, ReleaseKeySet keys)
    {
        byte[] manifestBytes;
        try
        {
            manifestBytes = Convert.FromBase64String(seal.Manifest);
        }
        catch (FormatException e)
        {
            throw new BundleCheckException(BundleCheck.Manifest, $"the seal of {seal.Application} {seal.Version}: manifest is not base64 ({e.Message})");
        }
        var (manifest, _) = BundleVerifier.VerifyManifest(new BundleHeader(manifestBytes, seal.Signatures, 0), keys);
        return manifest.Payloads.SingleOrDefault(p => p.Kind == PayloadKinds.Application && p.Name == seal.Payload &&
                                                      p.Application == seal.Application && p.Version == seal.Version)
               ?? throw new BundleCheckException(BundleCheck.Manifest, $"the seal of {seal.Application} {seal.Version}: the signed manifest has no payload {seal.Payload} of it");
    }

    /// <summary>Every regular file under <paramref name="tree"/>: path relative to it ('/' separated), size, SHA-256; sorted by path.</summary>
    /// <exception cref="InvalidDataException">The tree holds a symbolic link or a device.</exception>
    public static IReadOnlyList<BundleFile> DescribeTree(string tree)
    {
        var files = new List<BundleFile>();
        var root = Path.GetFullPath(tree);
        foreach (var entry in new DirectoryInfo(root).EnumerateFileSystemInfos("*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 }))
        {
            if (entry.LinkTarget is not null || (entry.Attributes & (FileAttributes.Device | FileAttributes.ReparsePoint)) != 0)
            {
                throw new InvalidDataException($"{entry.FullName}: not a regular file or directory");
            }
            if (entry is FileInfo file)
            {
                using var stream = file.OpenRead();
                var sha = Convert.ToHexStringLower(SHA256.HashData(stream));
                files.Add(new BundleFile(Path.GetRelativePath(root, file.FullName).Replace(Path.DirectorySeparatorChar, '/'), file.Length, sha));
            }
        }
        files.Sort((a, b) => string.CompareOrdinal(a.Path, b.Path));
        return files;
    }

    /// <summary>
    /// How <paramref name="tree"/> differs from <paramref name="expected"/> (a missing, extra or changed file, or one that
    /// cannot be read: damaged flash), or null when it does not.
    /// </summary>
    public static string? Compare(string tree, IReadOnlyList<BundleFile> expected)
    {
        if (!Directory.Exists(tree))
        {
            return "its tree is missing";
        }
        IReadOnlyList<BundleFile> actual;
        try
        {
            actual = DescribeTree(tree);
        }
        catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException)
        {
            return e is InvalidDataException ? e.Message : $"its tree cannot be read ({e.GetType().Name}: {e.Message})";
        }
        var byPath = actual.ToDictionary(f => f.Path, StringComparer.Ordinal);
        foreach (var f in expected)
        {
            if (!byPath.Remove(f.Path, out var found))
            {
                return $"{f.Path} is missing";
            }
            if (found.Size != f.Size || found.Sha256 != f.Sha256)
            {
                return $"{f.Path} differs from its signed digest ({found.Size} bytes, sha256 {found.Sha256[..12]}...; signed {f.Size} bytes, {f.Sha256[..12]}...)";
            }
        }
        return byPath.Count == 0 ? null : $"{byPath.Keys.Order(StringComparer.Ordinal).First()} is not part of it";
    }

    /// <summary>
    /// Checks every application `current` names. A factory application (no seal, the PROM's version) that differs from
    /// the PROM is copied from it again here; the damaged ones of bundles are returned for <see cref="RepairAsync"/>.
    /// </summary>
    public static IReadOnlyList<AppDamage> Check(AppStore apps, ReleaseKeySet keys, IReadOnlyList<PromApplication> factory, Action<string> log)
    {
        var damaged = new List<AppDamage>();
        foreach (var (name, version) in apps.Links())
        {
            AppSeal? seal;
            try
            {
                seal = apps.ReadSeal(name, version);
            }
            catch (Exception e) when (e is InvalidDataException or IOException or ArgumentException)
            {
                damaged.Add(new AppDamage(name, version, e.Message, null));
                log($"apps: {name} {version} cannot be checked or fetched again: {e.Message}");
                continue;
            }
            if (seal is null)
            {
                if (factory.FirstOrDefault(a => a.Name == name && a.Version == version) is { } prom)
                {
                    try
                    {
                        var differs = Compare(apps.TreePath(name, version), DescribeTree(prom.TreePath));
                        if (differs is not null)
                        {
                            apps.Replace(name, version, prom.TreePath);
                            log($"apps: factory {name} {version} was damaged ({differs}); copied from PROM again");
                        }
                    }
                    catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException)
                    {
                        // the PROM copy cannot be read or the tree cannot be replaced: damaged, and no seal to fetch it from the host
                        damaged.Add(new AppDamage(name, version, $"factory copy cannot be restored from the PROM ({e.GetType().Name}: {e.Message})", null));
                        log($"apps: factory {name} {version} cannot be copied from PROM again: {e.Message}");
                    }
                }
                else
                {
                    log($"apps: {name} {version} has no signed manifest on the unit (installed before file digests were kept); not checked");
                }
                continue;
            }
            BundlePayload payload;
            try
            {
                payload = VerifySeal(seal, keys);
            }
            catch (ProtocolException e)
            {
                damaged.Add(new AppDamage(name, version, e.Message, null));
                log($"apps: {name} {version} cannot be checked: {e.Message}");
                continue;
            }
            // a payload of a bundle built before file lists: the list of the tree made at install from its verified tar
            if ((payload.Files ?? seal.InstalledFiles) is not { } files)
            {
                log($"apps: {name} {version} was installed from a bundle without file digests and no list of its tree was kept; not checked");
                continue;
            }
            if (Compare(apps.TreePath(name, version), files) is { } problem)
            {
                damaged.Add(new AppDamage(name, version, problem, seal));
                log($"apps: {name} {version} is damaged: {problem}; it is fetched again from the host");
            }
        }
        return damaged;
    }

    /// <summary>
    /// Fetches a damaged application's payload again from <paramref name="source"/> (its bytes only, by range request),
    /// checks it against the signed payload digest and file digests, and replaces the damaged tree with it.
    /// </summary>
    /// <exception cref="BundleCheckException">The bytes fetched are not the signed payload.</exception>
    public static async Task RepairAsync(AppStore apps, AppDamage damage, ReleaseKeySet keys, IBundleSource source, string workDirectory, CancellationToken ct)
    {
        var seal = damage.Seal ?? throw new InvalidOperationException($"{damage.Application} {damage.Version}: no seal to fetch it again from");
        var payload = VerifySeal(seal, keys);
        if (Directory.Exists(workDirectory)) { Directory.Delete(workDirectory, recursive: true); }
        Directory.CreateDirectory(workDirectory);
        try
        {
            var tar = Path.Combine(workDirectory, "payload.tar");
            var (body, start) = await source.OpenAsync(seal.PayloadOffset, seal.PayloadOffset + payload.Size, ct);
            await using (body)
            await using (var file = File.Create(tar))
            {
                using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
                var skip = seal.PayloadOffset - start;
                if (skip < 0) { throw new IOException($"the host answered from byte {start}, after the requested {seal.PayloadOffset}"); }
                var buffer = new byte[81920];
                long written = 0;
                while (written < payload.Size)
                {
                    var read = await body.ReadAsync(buffer, ct);
                    if (read == 0) { break; }
                    var from = (int)Math.Min(skip, read);
                    skip -= from;
                    var count = (int)Math.Min(read - from, payload.Size - written);
                    sha.AppendData(buffer, from, count);
                    await file.WriteAsync(buffer.AsMemory(from, count), ct);
                    written += count;
                }
                if (written != payload.Size)
                {
                    throw new IOException($"{damage.Application} {damage.Version}: the host sent {written} of the payload's {payload.Size} bytes");
                }
                var digest = Convert.ToHexStringLower(sha.GetHashAndReset());
                if (digest != payload.Sha256)
                {
                    throw new BundleCheckException(BundleCheck.PayloadDigest, $"payload {payload.Name} fetched again: sha256 {digest}, signed {payload.Sha256}");
                }
            }
            var tree = Path.Combine(workDirectory, "tree");
            await ExtractPhase.ExtractTreeAsync(tar, tree, payload.Name, ct);
            // the payload's digest is verified above; its file list, when it has one, is checked too
            if (payload.Files is not null && Compare(tree, payload.Files) is { } problem)
            {
                throw new BundleCheckException(BundleCheck.Manifest, $"payload {payload.Name}: its tree does not match its signed files: {problem}");
            }
            apps.Replace(damage.Application, damage.Version, tree);
        }
        finally
        {
            Directory.Delete(workDirectory, recursive: true);
        }
    }
}
