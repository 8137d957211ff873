using System.CommandLine;
using System.Formats.Tar;
using System.Globalization;
using System.Security.Cryptography;
using Tsunagu.Cli.Factory;
using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;

namespace Tsunagu.Cli;

/// <summary>
/// `tsunagu bundle keygen | create | sign | inspect | verify`: build update programs offline, sign them with a
/// release key, and check them exactly as a unit does (docs/bundles.md).
/// </summary>
public static class BundleCommands
{
    /// <summary>verify: every check passed.</summary>
    public const int Ok = 0;

    /// <summary>verify: a check failed; stderr names it ("FAILED signature: ...").</summary>
    public const int CheckFailed = 1;

    /// <summary>Wrong arguments or an unreadable file.</summary>
    public const int UsageError = 2;

    public static Command Create()
    {
        var bundle = new Command("bundle", "build, sign, inspect and verify update bundles");
        bundle.Subcommands.Add(Keygen());
        bundle.Subcommands.Add(CreateCommand());
        bundle.Subcommands.Add(Sign());
        bundle.Subcommands.Add(Inspect());
        bundle.Subcommands.Add(Verify());
        return bundle;
    }

    private static Command Keygen()
    {
        var outOption = new Option<string>("--out") { Description = "private key file to create (PKCS#8 PEM, mode 0600); the public key goes to FILE.pub", Required = true };
        var command = new Command("keygen", "create a release signing key (ECDSA P-256)") { outOption };
        command.SetAction(r => Guard(r, () =>
        {
            var path = r.GetValue(outOption)!;
            if (File.Exists(path)) { throw new ArgumentException($"{path} already exists; a release key is never overwritten"); }
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            FactoryIdentities.WritePrivate(path, key.ExportPkcs8PrivateKeyPem());
            File.WriteAllText(path + ".pub", ReleaseKeys.PublicKeyBase64(key) + "\n");
            r.InvocationConfiguration.Output.WriteLine($"release key {ReleaseKeys.KeyId(key)}: private {path}, public {path}.pub");
            return Task.FromResult(Ok);
        }));
        return command;
    }

    private static Command CreateCommand()
    {
        var outOption = new Option<string>("--out") { Description = "bundle file to write (unsigned)", Required = true };
        var idOption = new Option<string>("--id") { Description = "bundle id (the host's update program id)", Required = true };
        var versionOption = new Option<long>("--version") { Description = "monotonic bundle version (anti-rollback counter)", Required = true };
        var fromOption = new Option<string[]>("--from") { Description = "install pattern(s) the bundle applies to", Required = true, AllowMultipleArgumentsPerToken = true };
        var toOption = new Option<string>("--to") { Description = "install pattern the bundle produces", Required = true };
        var boardOption = new Option<string[]>("--board") { Description = "compatible board(s)", Required = true, AllowMultipleArgumentsPerToken = true };
        var hardwareOption = new Option<string[]>("--hardware") { Description = "compatible hardware version(s)", Required = true, AllowMultipleArgumentsPerToken = true };
        var osOption = new Option<string[]>("--os") { Description = "OS version(s) the bundle installs over", Required = true, AllowMultipleArgumentsPerToken = true };
        var importanceOption = new Option<int>("--importance") { Description = "importance 1..5", DefaultValueFactory = _ => 3 };
        var validOption = new Option<int>("--valid-days") { Description = "days until the bundle expires", DefaultValueFactory = _ => 90 };
        var appOption = new Option<string[]>("--app") { Description = "NAME=VERSION=DIR: an application tree", AllowMultipleArgumentsPerToken = true };
        var osImageOption = new Option<string?>("--os-image") { Description = "VERSION=FILE: an OS image for the inactive slot" };
        var signaturesOption = new Option<string[]>("--signatures") { Description = "FILE: a ClamAV signature database, named as the file (e.g. daily-7.hdb), installed for clamd", AllowMultipleArgumentsPerToken = true };
        var scriptOption = new Option<string[]>("--script") { Description = "PHASE=FILE[=TIMEOUT_SECONDS]; phases: pre-install, post-install, health, rollback", AllowMultipleArgumentsPerToken = true };
        var introduceOption = new Option<string[]>("--introduce-key") { Description = "public key file(s) (PEM or SPKI base64) that units trust after installing this bundle", AllowMultipleArgumentsPerToken = true };
        var retireOption = new Option<string[]>("--retire-key") { Description = "key id(s) units stop trusting after installing this bundle", AllowMultipleArgumentsPerToken = true };
        var command = new Command("create", "create an unsigned bundle from application trees, signature databases, an OS image and scripts")
        {
            outOption, idOption, versionOption, fromOption, toOption, boardOption, hardwareOption, osOption, importanceOption, validOption,
            appOption, osImageOption, signaturesOption, scriptOption, introduceOption, retireOption,
        };
        command.SetAction((r, ct) => Guard(r, async () =>
        {
            var temp = Directory.CreateTempSubdirectory("tsunagu-bundle-");
            try
            {
                var payloads = new List<(BundlePayload Payload, string File)>();
                var steps = new List<BundleStep>();
                var scripts = (r.GetValue(scriptOption) ?? []).Select(ParseScript).ToList();
                foreach (var s in scripts.Where(s => s.Phase == ScriptPhases.PreInstall)) { AddScript(s); }
                foreach (var spec in r.GetValue(appOption) ?? [])
                {
                    var parts = spec.Split('=', 3);
                    if (parts.Length != 3 || !Directory.Exists(parts[2])) { throw new ArgumentException($"--app {spec}: expected NAME=VERSION=DIR with an existing directory"); }
                    var tar = Path.Combine(temp.FullName, $"{parts[0]}-{parts[1]}.tar");
                    await using (var file = File.Create(tar))
                    {
                        await TarFile.CreateFromDirectoryAsync(parts[2], file, includeBaseDirectory: false, ct);
                    }
                    var name = $"{parts[0]}-{parts[1]}";
                    payloads.Add((new BundlePayload(name, PayloadKinds.Application, 0, "", parts[0], parts[1]), tar));
                    steps.Add(new BundleStep(StepActions.InstallApplication, name));
                }
                foreach (var database in r.GetValue(signaturesOption) ?? [])
                {
                    if (!File.Exists(database)) { throw new ArgumentException($"--signatures {database}: no such file"); }
                    var name = Path.GetFileName(database);
                    if (!SignatureDatabases.IsName(name)) { throw new ArgumentException($"--signatures {database}: '{name}' is not a database file name ({SignatureDatabases.NameRule})"); }
                    payloads.Add((new BundlePayload(name, PayloadKinds.Signatures, 0, ""), database));
                    steps.Add(new BundleStep(StepActions.InstallSignatures, name));
                }
                if (r.GetValue(osImageOption) is { } image)
                {
                    var parts = image.Split('=', 2);
                    if (parts.Length != 2 || !File.Exists(parts[1])) { throw new ArgumentException($"--os-image {image}: expected VERSION=FILE with an existing file"); }
                    // the image followed by its dm-verity hash tree; the manifest carries where it is and its root hash
                    var withTree = Path.Combine(temp.FullName, "os-with-hash-tree.img");
                    OsVerity verity;
                    await using (var source = File.OpenRead(parts[1]))
                    await using (var output = File.Create(withTree))
                    {
                        verity = await VerityTree.WriteAsync(source, output, VerityTree.NewSalt(), ct);
                    }
                    payloads.Add((new BundlePayload("os", PayloadKinds.OsImage, 0, "", null, parts[0], Verity: verity), withTree));
                    steps.Add(new BundleStep(StepActions.InstallOs, "os"));
                }
                foreach (var phase in new[] { ScriptPhases.PostInstall, ScriptPhases.Health, ScriptPhases.Rollback })
                {
                    foreach (var s in scripts.Where(s => s.Phase == phase)) { AddScript(s); }
                }
                var described = new List<BundlePayload>();
                foreach (var (payload, file) in payloads)
                {
                    await using var stream = File.OpenRead(file);
                    var (size, sha) = await BundleFormat.DescribeAsync(stream, ct);
                    var files = payload.Files;
                    if (payload.Kind == PayloadKinds.Application)
                    {
                        stream.Position = 0;
                        files = await BundleFormat.ListApplicationFilesAsync(stream, payload.Name, ct);
                    }
                    described.Add(payload with { Size = size, Sha256 = sha, Files = files });
                }
                var now = DateTimeOffset.UtcNow;
                var manifest = new BundleManifest(BundleManifest.CurrentFormat, r.GetValue(idOption)!, r.GetValue(versionOption),
                    r.GetValue(fromOption)!, r.GetValue(toOption)!,
                    new BundleCompatibility(r.GetValue(boardOption)!, r.GetValue(hardwareOption)!, r.GetValue(osOption)!),
                    r.GetValue(importanceOption), now, now.AddDays(r.GetValue(validOption)), described, steps,
                    (r.GetValue(introduceOption) ?? []).Select(f => ReadPublicKey(f)).Select(k => ReleaseKeys.PublicKeyBase64(k)).ToList() is { Count: > 0 } introduced ? introduced : null,
                    r.GetValue(retireOption) is { Length: > 0 } retired ? retired : null);
                var problems = manifest.Problems();
                if (problems.Count > 0) { throw new ArgumentException($"the manifest would be invalid: {BundleManifest.DescribeProblems(problems)}"); }
                var streams = payloads.Select(p => (Stream)File.OpenRead(p.File)).ToList();
                try
                {
                    await WriteAtomicallyAsync(r.GetValue(outOption)!, s => BundleFormat.WriteAsync(s, BundleFormat.SerializeManifest(manifest), [], streams, ct), ct);
                }
                finally
                {
                    foreach (var s in streams) { await s.DisposeAsync(); }
                }
                r.InvocationConfiguration.Output.WriteLine($"created {r.GetValue(outOption)}: bundle {manifest.BundleId} version {manifest.Version}, " +
                    $"{string.Join(", ", manifest.FromPatterns)} -> {manifest.ToPattern}, {described.Count} payload(s), unsigned");
                return Ok;

                void AddScript((string Phase, string File, int? Timeout) s)
                {
                    var name = $"{s.Phase}-{payloads.Count(p => p.Payload.Kind == PayloadKinds.Script)}-{Path.GetFileName(s.File)}";
                    payloads.Add((new BundlePayload(name, PayloadKinds.Script, 0, ""), s.File));
                    steps.Add(new BundleStep(StepActions.RunScript, name, s.Phase, s.Timeout));
                }
            }
            finally
            {
                temp.Delete(recursive: true);
            }
        }));
        return command;
    }

    private static (string Phase, string File, int? Timeout) ParseScript(string spec)
    {
        var parts = spec.Split('=');
        if (parts.Length is < 2 or > 3 || !ScriptPhases.All.Contains(parts[0]) || !File.Exists(parts[1]))
        {
            throw new ArgumentException($"--script {spec}: expected PHASE=FILE[=TIMEOUT_SECONDS] with PHASE one of {string.Join(", ", ScriptPhases.All)} and an existing file");
        }
        int? timeout = parts.Length == 3 ? int.TryParse(parts[2], CultureInfo.InvariantCulture, out var t) ? t : throw new ArgumentException($"--script {spec}: timeout '{parts[2]}' is not a number") : null;
        return (parts[0], parts[1], timeout);
    }

    private static Command Sign()
    {
        var bundleArgument = new Argument<string>("bundle") { Description = "bundle file" };
        var keyOption = new Option<string>("--key") { Description = "release private key (PKCS#8 PEM)", Required = true };
        var outOption = new Option<string?>("--out") { Description = "signed bundle to write (default: sign in place)" };
        var command = new Command("sign", "add a release key's signature over the manifest (existing signatures are kept)") { bundleArgument, keyOption, outOption };
        command.SetAction((r, ct) => Guard(r, async () =>
        {
            var path = r.GetValue(bundleArgument)!;
            using var key = ReleaseKeys.ParsePrivate(await File.ReadAllTextAsync(r.GetValue(keyOption)!, ct), r.GetValue(keyOption)!);
            await using var input = File.OpenRead(path);
            var header = await BundleFormat.ReadHeaderAsync(input, ct);
            var manifest = header.ParseManifest();
            var keyId = ReleaseKeys.KeyId(key);
            var signatures = header.Signatures.Where(s => s.KeyId != keyId).Append(ReleaseKeys.Sign(header.ManifestBytes, key)).ToList();
            var target = r.GetValue(outOption) ?? path;
            await WriteAtomicallyAsync(target, s => BundleFormat.WriteAsync(s, header.ManifestBytes, signatures, [input], ct), ct);
            r.InvocationConfiguration.Output.WriteLine($"signed bundle {manifest.BundleId} version {manifest.Version} with release key {keyId}: {target} ({signatures.Count} signature(s))");
            return Ok;
        }));
        return command;
    }

    private static Command Inspect()
    {
        var bundleArgument = new Argument<string>("bundle") { Description = "bundle file" };
        var command = new Command("inspect", "print a bundle's manifest, payloads and signatures (verifies nothing)") { bundleArgument };
        command.SetAction((r, ct) => Guard(r, async () =>
        {
            await using var input = File.OpenRead(r.GetValue(bundleArgument)!);
            var header = await BundleFormat.ReadHeaderAsync(input, ct);
            var m = header.ParseManifest();
            var o = r.InvocationConfiguration.Output;
            o.WriteLine($"bundle      {m.BundleId} version {m.Version} (format {m.Format}), importance {m.Importance}");
            o.WriteLine($"patterns    {string.Join(", ", m.FromPatterns)} -> {m.ToPattern}");
            o.WriteLine($"for         boards {string.Join(", ", m.Compatibility.Boards)}; hardware {string.Join(", ", m.Compatibility.HardwareVersions)}; OS {string.Join(", ", m.Compatibility.OsVersions)}");
            o.WriteLine($"valid       {m.CreatedAt:u} .. {m.ExpiresAt:u}");
            o.WriteLine($"size        {header.PayloadOffset + m.PayloadBytes} bytes ({header.PayloadOffset} header)");
            o.WriteLine("payloads");
            foreach (var p in m.Payloads)
            {
                var what = p.Kind switch { PayloadKinds.Application => $"{p.Application} {p.Version}", PayloadKinds.OsImage => $"OS {p.Version}", _ => "" };
                o.WriteLine($"  {p.Name,-32} {p.Kind,-6} {p.Size,10}  {p.Sha256}  {what}");
            }
            o.WriteLine("steps");
            foreach (var s in m.Steps)
            {
                o.WriteLine($"  {s.Action,-11} {s.Payload}{(s.Phase is null ? "" : $" ({s.Phase}{(s.TimeoutSeconds is { } t ? $", {t}s" : "")})")}");
            }
            if (m.IntroducesKeys is { Count: > 0 } add) { o.WriteLine($"introduces  {string.Join(", ", add.Select(k => ReleaseKeys.TryParse(k, out var key) ? ReleaseKeys.KeyId(key!) : "?"))}"); }
            if (m.RetiresKeys is { Count: > 0 } retire) { o.WriteLine($"retires     {string.Join(", ", retire)}"); }
            o.WriteLine(header.Signatures.Count == 0 ? "signatures  none (unsigned)" : $"signatures  {string.Join(", ", header.Signatures.Select(s => $"{s.KeyId} ({s.Algorithm})"))}");
            return Ok;
        }));
        return command;
    }

    private static Command Verify()
    {
        var bundleArgument = new Argument<string>("bundle") { Description = "bundle file" };
        var keyOption = new Option<string[]>("--key") { Description = "trusted release public key file(s): PEM or SPKI base64", Required = true, AllowMultipleArgumentsPerToken = true };
        var boardOption = new Option<string?>("--board") { Description = "check the bundle is for this board" };
        var hardwareOption = new Option<string?>("--hardware") { Description = "check the bundle is for this hardware version" };
        var osOption = new Option<string?>("--os") { Description = "check the bundle installs over this OS version" };
        var fromOption = new Option<string?>("--from-pattern") { Description = "check the bundle applies to this install pattern" };
        var installedOption = new Option<long?>("--installed-version") { Description = "check the version is higher than this last installed one" };
        var atOption = new Option<DateTimeOffset?>("--at") { Description = "check expiry at this time instead of now" };
        var command = new Command("verify", "check a bundle as a unit does: signature, manifest, target, expiry, payload sizes and digests")
        {
            bundleArgument, keyOption, boardOption, hardwareOption, osOption, fromOption, installedOption, atOption,
        };
        command.SetAction(async (r, ct) =>
        {
            var path = r.GetValue(bundleArgument)!;
            ReleaseKeySet keys;
            FileStream input;
            try
            {
                keys = new ReleaseKeySet(r.GetValue(keyOption)!.Select(ReadPublicKey).ToList());
                input = File.OpenRead(path);
            }
            catch (Exception e) when (e is ProtocolException or IOException or UnauthorizedAccessException or ArgumentException)
            {
                await r.InvocationConfiguration.Error.WriteLineAsync($"bundle verify: {e.Message}");
                return UsageError;
            }
            await using (input)
            {
                try
                {
                    var header = await BundleFormat.ReadHeaderAsync(input, ct);
                    var (m, keyId) = BundleVerifier.VerifyManifest(header, keys);
                    var target = new BundleTarget(
                        r.GetValue(boardOption) ?? m.Compatibility.Boards[0],
                        r.GetValue(hardwareOption) ?? m.Compatibility.HardwareVersions[0],
                        r.GetValue(osOption) ?? m.Compatibility.OsVersions[0],
                        r.GetValue(fromOption) ?? m.FromPatterns[0],
                        r.GetValue(installedOption) is { } v ? new BundleCounter(v, "") : null,
                        r.GetValue(atOption) ?? DateTimeOffset.UtcNow);
                    BundleVerifier.CheckTarget(m, target);
                    await BundleVerifier.VerifyPayloadsAsync(input, m, ct);
                    await r.InvocationConfiguration.Output.WriteLineAsync(
                        $"OK: bundle {m.BundleId} version {m.Version} signed by {keyId}; {m.Payloads.Count} payload(s), {header.PayloadOffset + m.PayloadBytes} bytes verified");
                    return Ok;
                }
                catch (BundleCheckException e)
                {
                    await r.InvocationConfiguration.Error.WriteLineAsync($"bundle verify: FAILED {e.Message}");
                    return CheckFailed;
                }
                catch (IOException e)
                {
                    await r.InvocationConfiguration.Error.WriteLineAsync($"bundle verify: {path}: {e.Message}");
                    return UsageError;
                }
            }
        });
        return command;
    }

    private static ECDsa ReadPublicKey(string fileOrBase64) =>
        File.Exists(fileOrBase64) ? ReleaseKeys.ParsePublic(File.ReadAllText(fileOrBase64), fileOrBase64) : ReleaseKeys.ParsePublic(fileOrBase64, "--key");

    private static async Task WriteAtomicallyAsync(string path, Func<Stream, Task> write, CancellationToken ct)
    {
        var tmp = path + ".tmp-" + Guid.NewGuid().ToString("N");
        try
        {
            await using (var output = File.Create(tmp))
            {
                await write(output);
                await output.FlushAsync(ct);
            }
            File.Move(tmp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) { File.Delete(tmp); }
        }
    }

    private static async Task<int> Guard(ParseResult r, Func<Task<int>> action)
    {
        try
        {
            return await action();
        }
        catch (Exception e) when (e is ProtocolException or IOException or UnauthorizedAccessException or ArgumentException or CryptographicException)
        {
            await r.InvocationConfiguration.Error.WriteLineAsync($"error: {e.Message}");
            return e is ArgumentException ? UsageError : 1;
        }
    }
}
