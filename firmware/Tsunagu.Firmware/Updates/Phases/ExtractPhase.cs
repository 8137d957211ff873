using System.Formats.Tar;
using System.Text.Json;
using Tsunagu.Firmware.Storage;
using Tsunagu.Hal;
using Tsunagu.Protocol.Bundles;

namespace Tsunagu.Firmware.Updates.Phases;

/// <summary>
/// `verified`: copy each payload out of the bundle, hashing it again (what is installed is what was verified), unpack
/// the application trees, keep a copy of each signature database the bundle replaces, run the `pre-install` scripts; then journal the previous applications and the target slot,
/// which the switch needs to be rolled back. A restart runs this phase again.
/// </summary>
internal sealed class ExtractPhase : IUpdatePhase
{
    public async Task<PendingUpdate> RunAsync(UpdateRun run, PendingUpdate j, CancellationToken ct)
    {
        var m = await run.ManifestAsync(j, ct);
        var work = run.WorkDirectory(j.UpdateId);
        var payloadDir = Path.Combine(work, "payloads");
        await ExtractPayloadsAsync(run, j, m, payloadDir, ct);
        foreach (var step in m.Steps.Where(s => s is { Action: StepActions.InstallApplication }))
        {
            var p = m.Payloads.Single(x => x.Name == step.Payload);
            var tree = Path.Combine(work, "trees", p.Name);
            if (Directory.Exists(tree)) { Directory.Delete(tree, recursive: true); }
            await ExtractTreeAsync(Path.Combine(payloadDir, p.Name), tree, p.Name, ct);
            // the tar's digest is signed, and so is each file's: the tree must be exactly the files the manifest lists
            if (p.Files is null)
            {
                // the list its seal keeps must be one the boot check can read: a tree that breaks its rules is refused here,
                // before anything is switched, not found uncheckable at every boot. Kept beside the tree for the switch,
                // which seals it: the tree is hashed once
                KeepList(work, p, j, SealableList(tree, p.Name));
                run.Env.Log($"update {j.UpdateId}: payload {p.Name} lists no file digests (a bundle built before file lists); " +
                            "its tree is checked from now on against the list of what its verified tar unpacked");
            }
            else if (AppIntegrity.Compare(tree, p.Files) is { } problem)
            {
                throw new BundleCheckException(BundleCheck.Manifest, $"payload {p.Name}: its tree does not match its signed files: {problem}");
            }
        }
        KeepPreviousSignatures(run, j, m);
        await run.RunScriptsAsync(j, m, ScriptPhases.PreInstall, ct);

        var os = m.Payloads.SingleOrDefault(p => p.Kind == PayloadKinds.OsImage);
        BootSlot? target = os is null ? null : run.Env.Boot.Booted == BootSlot.A ? BootSlot.B : BootSlot.A;
        return j with { Phase = PendingUpdate.Switching, PreviousApps = new Dictionary<string, string>(run.Env.Apps.Current()), TargetSlot = target?.ToString() };
    }

    /// <summary>
    /// For each signatures step: refuses the bundle on a unit without virus checking (before anything changed), and keeps a
    /// copy of the database it replaces in `signatures-previous/` of the work directory, which the rollback installs again
    /// (a database the bundle adds has no copy: the rollback removes it). Each copy and the directory holding it are
    /// synced here, before the switch renames the new database in: a power cut after that rename still finds a whole copy
    /// for the rollback.
    /// </summary>
    private static void KeepPreviousSignatures(UpdateRun run, PendingUpdate j, BundleManifest m)
    {
        var steps = m.Steps.Where(s => s.Action == StepActions.InstallSignatures).ToList();
        if (steps.Count == 0) { return; }
        var databases = run.Env.Signatures ?? throw new UpdateAbortedException(
            $"update {j.UpdateId}: the bundle carries signatures ({string.Join(", ", steps.Select(s => s.Payload))}) but this unit runs no virus checking");
        var kept = run.PreviousSignaturesDirectory(j.UpdateId);
        if (Directory.Exists(kept)) { Directory.Delete(kept, recursive: true); }
        Directory.CreateDirectory(kept);
        var files = run.Env.Files;
        foreach (var step in steps)
        {
            if (databases.Installed(step.Payload) is { } installed)
            {
                var copy = Path.Combine(kept, step.Payload);
                File.Copy(installed, copy);
                files.SyncFile(copy);
            }
        }
        files.SyncDirectory(kept);
        files.SyncDirectory(Path.GetDirectoryName(kept)!);
    }

    private static async Task ExtractPayloadsAsync(UpdateRun run, PendingUpdate j, BundleManifest m, string payloadDir, CancellationToken ct)
    {
        if (Directory.Exists(payloadDir)) { Directory.Delete(payloadDir, recursive: true); }
        Directory.CreateDirectory(payloadDir);
        await using var bundle = File.OpenRead(run.BundlePath(j));
        await BundleFormat.ReadHeaderAsync(bundle, ct);
        FileStream? current = null;
        string? currentName = null;
        try
        {
            await BundleVerifier.VerifyPayloadsAsync(bundle, m, ct, async (p, bytes, token) =>
            {
                if (currentName != p.Name)
                {
                    if (current is not null) { await current.DisposeAsync(); }
                    current = File.Create(Path.Combine(payloadDir, p.Name));
                    currentName = p.Name;
                }
                await current!.WriteAsync(bytes, token);
            });
        }
        finally
        {
            if (current is not null) { await current.DisposeAsync(); }
        }
        foreach (var p in m.Payloads.Where(p => p.Size == 0))
        {
            await File.WriteAllBytesAsync(Path.Combine(payloadDir, p.Name), [], ct);
        }
    }

    /// <summary>
    /// Unpacks an application tar: regular files and directories only, no path outside <paramref name="destination"/>,
    /// and a tree its seal can list (<see cref="FileListRules"/>: each file's path in the tree valid and unpacked once, at most
    /// <see cref="BundleManifest.MaxApplicationFiles"/> files; refused at the first file that breaks a rule, so a tar of a
    /// million files is not unpacked to find out). A signed file list follows the same rules, so a tree that breaks one
    /// could not match it either.
    /// </summary>
    /// <exception cref="SealRuleException">The tree breaks a rule of the seal's file list.</exception>
    /// <exception cref="BundleCheckException">Check <see cref="BundleCheck.Manifest"/>: an entry that is not a file or directory, or leaves the tree.</exception>
    internal static async Task ExtractTreeAsync(string tarPath, string destination, string payload, CancellationToken ct)
    {
        Directory.CreateDirectory(destination);
        var root = Path.GetFullPath(destination) + Path.DirectorySeparatorChar;
        await using var file = File.OpenRead(tarPath);
        await using var reader = new TarReader(file);
        var files = 0;
        while (await NextEntryAsync(reader, payload, ct) is { } entry)
        {
            var target = Path.GetFullPath(Path.Combine(destination, entry.Name));
            if (!target.StartsWith(root, StringComparison.Ordinal))
            {
                throw new BundleCheckException(BundleCheck.Manifest, $"payload {payload}: entry '{FileListRules.Printable(entry.Name)}' points outside its application tree");
            }
            switch (entry.EntryType)
            {
                case TarEntryType.Directory:
                    Directory.CreateDirectory(target);
                    break;
                case TarEntryType.RegularFile or TarEntryType.V7RegularFile:
                    // the path the seal would list: the file's place in the tree, as AppIntegrity.DescribeTree reads it back
                    var path = target[root.Length..].Replace(Path.DirectorySeparatorChar, '/');
                    if (++files > BundleManifest.MaxApplicationFiles)
                    {
                        throw new SealRuleException(payload, FileListRule.FileLimit, FileListRules.TooManyFiles());
                    }
                    if (FileListRules.PathProblem(path) is { } problem)
                    {
                        throw new SealRuleException(payload, FileListRule.Path, problem);
                    }
                    if (File.Exists(target) || Directory.Exists(target))
                    {
                        throw new SealRuleException(payload, FileListRule.Path, FileListRules.Twice(path));
                    }
                    Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                    await entry.ExtractToFileAsync(target, overwrite: false, ct);
                    break;
                default:
                    throw new BundleCheckException(BundleCheck.Manifest,
                        $"payload {payload}: entry '{FileListRules.Printable(entry.Name)}' is a {entry.EntryType}; only files and directories are allowed");
            }
        }
    }

    /// <summary>The tar's next entry; a header the reader cannot parse (a signer's tool writing what this one refuses) is a check failure naming the payload.</summary>
    private static async Task<TarEntry?> NextEntryAsync(TarReader reader, string payload, CancellationToken ct)
    {
        try
        {
            return await reader.GetNextEntryAsync(copyData: false, ct);
        }
        catch (Exception e) when (e is InvalidDataException or FormatException)
        {
            throw new BundleCheckException(BundleCheck.Manifest, $"payload {payload}: not a tar the unit can read ({e.Message})");
        }
    }

    /// <summary>Where the list of payload <paramref name="payload"/>'s unpacked tree is kept between this phase and the switch.</summary>
    internal static string KeptListPath(string work, string payload) => Path.Combine(work, "tree-lists", payload + ".json");

    /// <summary>
    /// Keeps <paramref name="files"/>, the list of payload <paramref name="payload"/>'s tree, whole or not at all (written
    /// aside, then renamed), tied to the payload's signed digest and this install attempt, with the digest of the list itself.
    /// </summary>
    private static void KeepList(string work, BundlePayload payload, PendingUpdate j, IReadOnlyList<BundleFile> files)
    {
        var path = KeptListPath(work, payload.Name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var temp = path + ".tmp";
        var kept = new KeptTreeList(payload.Sha256, j.UpdateId, j.InstallId, ListDigest(files), files);
        File.WriteAllBytes(temp, JsonSerializer.SerializeToUtf8Bytes(kept, FirmwareJson.Default.KeptTreeList));
        File.Move(temp, path, overwrite: true);
    }

    private static string ListDigest(IReadOnlyList<BundleFile> files) =>
        Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(JsonSerializer.SerializeToUtf8Bytes([.. files], FirmwareJson.Default.ListBundleFile)));

    /// <summary>
    /// The list its seal keeps of the tree of payload <paramref name="payload"/> in <paramref name="work"/>: the one this
    /// phase made when it checked the tree, so the tree is hashed once. Made again (and checked again) from the tree, with a
    /// warning in <paramref name="log"/> saying why, when the kept one is missing or unreadable, breaks a rule of a file
    /// list, is the list of another payload or install attempt, or is not the list that was written (its own digest differs).
    /// </summary>
    /// <exception cref="SealRuleException">The list made again breaks a rule.</exception>
    internal static IReadOnlyList<BundleFile> KeptList(string work, BundlePayload payload, PendingUpdate j, Action<string> log)
    {
        string why;
        try
        {
            var kept = JsonSerializer.Deserialize(File.ReadAllBytes(KeptListPath(work, payload.Name)), FirmwareJson.Default.KeptTreeList);
            why = kept switch
            {
                null or { Files: null } => "it is empty",
                _ when kept.PayloadSha256 != payload.Sha256 => $"it is the list of another payload (sha256 {FileListRules.Printable(kept.PayloadSha256 ?? "null")})",
                _ when kept.UpdateId != j.UpdateId || kept.InstallId != j.InstallId => "it was made by another install attempt",
                _ when FileListRules.Problem(kept.Files) is var (rule, detail) => $"it breaks rule {FileListRules.Name(rule)}: {detail}",
                _ when kept.ListSha256 != ListDigest(kept.Files) => "it is not the list that was written (its digest differs)",
                _ => "",
            };
            if (why.Length == 0)
            {
                return kept!.Files!;
            }
        }
        catch (FileNotFoundException)
        {
            why = "it is missing";
        }
        catch (DirectoryNotFoundException)
        {
            why = "it is missing";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException)
        {
            why = $"it is unreadable ({e.GetType().Name})";
        }
        log($"update {j.UpdateId}: payload {payload.Name}: the list of its tree kept at unpacking is not used ({why}); its tree is listed and checked again");
        return SealableList(Path.Combine(work, "trees", payload.Name), payload.Name);
    }

    /// <summary>
    /// The list of <paramref name="tree"/> (unpacked from payload <paramref name="payload"/>) its seal keeps, checked
    /// against the rules <see cref="AppStore.ReadSeal"/> applies: a tree whose list would be refused there is refused here.
    /// </summary>
    /// <exception cref="SealRuleException">The list breaks a rule.</exception>
    internal static IReadOnlyList<BundleFile> SealableList(string tree, string payload)
    {
        var files = AppIntegrity.DescribeTree(tree);
        if (FileListRules.Problem(files) is var (rule, detail))
        {
            throw new SealRuleException(payload, rule, detail);
        }
        return files;
    }
}
