using System.Text;
using System.Text.Json;
using Tsunagu.Firmware.Updates;
using Tsunagu.Hal;
using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;
using Tsunagu.UnitTests.Protocol;

namespace Tsunagu.UnitTests.Updates;

/// <summary>
/// Installed applications checked against the file digests of their signed manifest, and a damaged one fetched again
/// from the host (<see cref="AppIntegrity"/>, patent 0040), on the updater's real data directory and stores.
/// </summary>
public partial class UpdaterTests
{
    private static readonly byte[] Blob = Encoding.UTF8.GetBytes(string.Concat(Enumerable.Repeat("firewall rules ", 2000)));

    private async Task<Built> InstallPattern2Async()
    {
        var b = await BuildAsync(_key, firewallBlob: Blob);
        var result = await Installer(new MemorySource(b.Bytes)).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(result.Status, Is.EqualTo(InstallStatus.Committed), result.Report?.Error);
        return b;
    }

    private IReadOnlyList<AppDamage> CheckApps(IReadOnlyList<PromApplication>? factory = null) =>
        AppIntegrity.Check(_apps, BundleInstaller.TrustedKeys(_identity, _store), factory ?? [], _log.Add);

    private string Tree(string name, string version) => _apps.TreePath(name, version);

    [Test]
    public async Task An_installed_application_keeps_its_signed_seal_and_an_intact_tree_passes_the_check()
    {
        var b = await InstallPattern2Async();
        var seal = _apps.ReadSeal("firewall", "1.1.0")!;
        Assert.That(seal.ArtifactSha256, Is.EqualTo(b.Offer.Sha256));
        var payload = AppIntegrity.VerifySeal(seal, BundleInstaller.TrustedKeys(_identity, _store));
        Assert.That(payload.Files!.Select(f => f.Path), Is.EqualTo(new[] { "VERSION", "blob" }));
        // the seal's offset is where the payload's bytes are in the artifact
        Assert.That(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(b.Bytes.AsSpan((int)seal.PayloadOffset, (int)payload.Size))),
            Is.EqualTo(payload.Sha256));
        Assert.That(CheckApps(), Is.Empty, string.Join("\n", _log));
    }

    [TestCase("changed")]
    [TestCase("truncated")]
    [TestCase("removed")]
    [TestCase("added")]
    [TestCase("tree-missing")]
    public async Task A_damaged_application_is_found_at_boot_and_fetched_again_from_the_host_by_its_payloads_bytes_only(string damage)
    {
        var b = await InstallPattern2Async();
        var tree = Tree("firewall", "1.1.0");
        var before = AppIntegrity.DescribeTree(tree);
        switch (damage)
        {
            case "changed":
                var bytes = File.ReadAllBytes(Path.Combine(tree, "blob"));
                bytes[1234] ^= 0x01;
                File.WriteAllBytes(Path.Combine(tree, "blob"), bytes);
                break;
            case "truncated":
                File.WriteAllBytes(Path.Combine(tree, "blob"), Blob[..100]);
                break;
            case "removed":
                File.Delete(Path.Combine(tree, "VERSION"));
                break;
            case "added":
                File.WriteAllText(Path.Combine(tree, "planted"), "not signed");
                break;
            case "tree-missing":
                Directory.Delete(tree, recursive: true);
                break;
        }
        Restart();
        var damaged = CheckApps();
        Assert.That(damaged.Select(d => (d.Application, d.Version)), Is.EqualTo(new[] { ("firewall", "1.1.0") }), "only the damaged application");
        Assert.That(damaged[0].Seal, Is.Not.Null);
        Assert.That(_apps.Links()["firewall"], Is.EqualTo("1.1.0"));

        var host = new MemorySource(b.Bytes);
        await AppIntegrity.RepairAsync(_apps, damaged[0], BundleInstaller.TrustedKeys(_identity, _store), host, Path.Combine(_dir, "data", "tmp", "repair"), CancellationToken.None);
        Assert.That(AppIntegrity.DescribeTree(tree), Is.EqualTo(before), "the tree is exactly the signed one again");
        Assert.That(CheckApps(), Is.Empty);
        Assert.That(_apps.Current(), Is.EqualTo(Pattern2), "nothing else changed");
        // one bounded request: the payload's bytes, nothing else of the bundle
        var seal = _apps.ReadSeal("firewall", "1.1.0")!;
        var size = AppIntegrity.VerifySeal(seal, BundleInstaller.TrustedKeys(_identity, _store)).Size;
        Assert.That(host.Ranges, Is.EqualTo(new[] { (seal.PayloadOffset, seal.PayloadOffset + size) }));
        Assert.That(Directory.GetFileSystemEntries(Path.Combine(_dir, "data", "apps", "firewall")).Select(Path.GetFileName),
            Is.EquivalentTo(new[] { "1.0.0", "1.1.0", "current", ".seal-1.1.0" }), "no staging or damaged tree left behind");
        Assert.That(Directory.Exists(Path.Combine(_dir, "data", "tmp", "repair")), Is.False);
    }

    [Test]
    public async Task Bytes_from_the_host_that_are_not_the_signed_payload_are_refused_and_the_damaged_tree_is_left_as_it_was()
    {
        var b = await InstallPattern2Async();
        var tree = Tree("firewall", "1.1.0");
        File.WriteAllText(Path.Combine(tree, "blob"), "damaged");
        var damaged = CheckApps().Single();
        var forged = (byte[])b.Bytes.Clone();
        forged[(int)damaged.Seal!.PayloadOffset + 600] ^= 0xff;
        var e = Assert.ThrowsAsync<BundleCheckException>(() => AppIntegrity.RepairAsync(_apps, damaged, BundleInstaller.TrustedKeys(_identity, _store),
            new MemorySource(forged), Path.Combine(_dir, "data", "tmp", "repair"), CancellationToken.None));
        Assert.That(e!.Check, Is.EqualTo(BundleCheck.PayloadDigest));
        Assert.That(File.ReadAllText(Path.Combine(tree, "blob")), Is.EqualTo("damaged"));
        Assert.That(CheckApps(), Has.Count.EqualTo(1), "still damaged, fetched again at the next check");

        // a host that sends the payload short
        var cut = new MemorySource(b.Bytes) { CutAfter = 10 };
        Assert.ThrowsAsync<IOException>(() => AppIntegrity.RepairAsync(_apps, damaged, BundleInstaller.TrustedKeys(_identity, _store),
            cut, Path.Combine(_dir, "data", "tmp", "repair"), CancellationToken.None));
        Assert.That(File.ReadAllText(Path.Combine(tree, "blob")), Is.EqualTo("damaged"));
    }

    [Test]
    public async Task A_seal_altered_on_the_unit_is_not_trusted_and_nothing_is_fetched_for_it()
    {
        await InstallPattern2Async();
        var sealPath = _apps.SealPath("firewall", "1.1.0");
        var seal = _apps.ReadSeal("firewall", "1.1.0")!;
        // the manifest rewritten to list the damaged content's digest: its signature no longer verifies
        File.WriteAllText(Path.Combine(Tree("firewall", "1.1.0"), "blob"), "planted");
        var manifest = Encoding.UTF8.GetString(Convert.FromBase64String(seal.Manifest)).Replace("\"blob\"", "\"blob2\"", StringComparison.Ordinal);
        _apps.WriteSeal(seal with { Manifest = Convert.ToBase64String(Encoding.UTF8.GetBytes(manifest)) });
        var damaged = CheckApps();
        Assert.That(damaged.Single().Seal, Is.Null, "an unverifiable seal is not used to fetch anything");
        Assert.That(damaged.Single().Problem, Does.StartWith("signature:"));

        File.WriteAllText(sealPath, "{not json");
        Assert.That(CheckApps().Single().Seal, Is.Null);
        File.WriteAllText(sealPath, "{\"application\":\"dns\",\"version\":\"2.0.0\"}");
        Assert.That(CheckApps().Single().Problem, Does.Contain("not a seal of firewall 1.1.0"));
    }

    [Test]
    public void A_damaged_factory_application_is_copied_from_the_prom_again_and_an_intact_one_is_left_alone()
    {
        // Pattern1's applications were staged from _dir/prom in SetUp, without seals
        var factory = Pattern1.Select(a => new PromApplication(a.Key, a.Value, Path.Combine(_dir, "prom", a.Key, a.Value))).ToList();
        Assert.That(CheckApps(factory), Is.Empty);
        File.AppendAllText(Path.Combine(Tree("vcp", "1.0.0"), "VERSION"), "damaged");
        var untouched = File.GetLastWriteTimeUtc(Path.Combine(Tree("firewall", "1.0.0"), "VERSION"));
        Assert.That(CheckApps(factory), Is.Empty, "restored on the spot, nothing to fetch");
        Assert.That(File.ReadAllText(Path.Combine(Tree("vcp", "1.0.0"), "VERSION")), Is.EqualTo("vcp 1.0.0\n"));
        Assert.That(File.GetLastWriteTimeUtc(Path.Combine(Tree("firewall", "1.0.0"), "VERSION")), Is.EqualTo(untouched));
        Assert.That(_log, Has.Some.Contains("factory vcp 1.0.0 was damaged"));
    }

    /// <summary>A file that cannot be opened in the tree (a socket: open fails with an IOException even for root, as a damaged flash read does).</summary>
    private static System.Net.Sockets.Socket Unreadable(string path)
    {
        var socket = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        socket.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(path));
        return socket;
    }

    [Test]
    public async Task An_application_whose_files_cannot_be_read_is_damaged_and_fetched_again_not_an_error_that_stops_the_boot()
    {
        await InstallPattern2Async();
        var tree = Tree("firewall", "1.1.0");
        var blob = Path.Combine(tree, "blob");
        File.Delete(blob);
        using (Unreadable(blob))
        {
            Assert.Throws(Is.InstanceOf<IOException>(), () => File.ReadAllBytes(blob), "precondition: the file cannot be read");
            Restart();
            IReadOnlyList<AppDamage>? damaged = null;
            Assert.DoesNotThrow(() => damaged = CheckApps());
            Assert.That(damaged!.Select(d => (d.Application, d.Version)), Is.EqualTo(new[] { ("firewall", "1.1.0") }));
            Assert.That(damaged![0].Seal, Is.Not.Null, "it can be fetched again from the host");
            Assert.That(damaged![0].Problem, Does.Contain("cannot be read"));
        }
    }

    [Test]
    public void A_factory_application_whose_prom_copy_cannot_be_read_is_reported_damaged_and_the_other_ones_are_still_checked()
    {
        var factory = Pattern1.Select(a => new PromApplication(a.Key, a.Value, Path.Combine(_dir, "prom", a.Key, a.Value))).ToList();
        Assert.That(CheckApps(factory), Is.Empty);
        var promVersion = Path.Combine(_dir, "prom", "vcp", "1.0.0", "VERSION");
        File.Delete(promVersion);
        File.AppendAllText(Path.Combine(Tree("firewall", "1.0.0"), "VERSION"), "damaged");
        using (Unreadable(promVersion))
        {
            IReadOnlyList<AppDamage>? damaged = null;
            Assert.DoesNotThrow(() => damaged = CheckApps(factory));
            Assert.That(damaged!.Select(d => (d.Application, d.Version, d.Seal)), Is.EqualTo(new (string, string, Tsunagu.Firmware.Storage.AppSeal?)[] { ("vcp", "1.0.0", null) }));
            Assert.That(File.ReadAllText(Path.Combine(Tree("firewall", "1.0.0"), "VERSION")), Is.EqualTo("firewall 1.0.0\n"), "the other factory application is still restored");
        }
    }

    /// <summary>A manifest whose one step installs firewall 1.1.0 from payload firewall-1.1.0, listing <paramref name="files"/>.</summary>
    private static BundleManifest ManifestListing(IReadOnlyList<BundleFile> files) => new(BundleManifest.CurrentFormat, "p1-to-p2", 2, ["pattern-1"], "pattern-2",
        new BundleCompatibility(["simulated"], ["r1"], ["os 1"]), 5, DateTimeOffset.UtcNow, DateTimeOffset.UtcNow.AddDays(1),
        [new BundlePayload("firewall-1.1.0", PayloadKinds.Application, 1, new string('b', 64), "firewall", "1.1.0", files)],
        [new BundleStep(StepActions.InstallApplication, "firewall-1.1.0")]);

    [TestCase("../etc/passwd", "is not a relative path")]
    [TestCase("/etc/passwd", "is not a relative path")]
    [TestCase("a//b", "is not a relative path")]
    [TestCase("bin/./x", "is not a relative path")]
    [TestCase("bad\nname", "is not a relative path")]
    [TestCase("twice", "appears twice")]
    [TestCase("short-digest", "sha256: not 64 lower-case hex digits")]
    [TestCase("negative", "size: -1 is negative")]
    public void An_application_payloads_file_list_is_validated(string path, string problem)
    {
        var good = new BundleFile("VERSION", 1, new string('a', 64));
        List<BundleFile> files = path switch
        {
            "twice" => [good, good],
            "short-digest" => [good with { Sha256 = "abc" }],
            "negative" => [good with { Size = -1 }],
            _ => [good with { Path = path }],
        };
        var manifest = ManifestListing(files);
        Assert.That(manifest.Problems(), Has.Some.Contains(problem));
        Assert.That((manifest with { Payloads = [manifest.Payloads[0] with { Files = [good] }] }).Problems(), Is.Empty);
        Assert.That((manifest with { Payloads = [manifest.Payloads[0] with { Files = null }] }).Problems(), Is.Empty,
            "a bundle built before file lists is a valid bundle");
    }

    /// <summary>A tree on disk whose list breaks a rule of a file list, beside a good VERSION file.</summary>
    private string UnsealableTree(string rule)
    {
        var tree = Path.Combine(_dir, "unsealable-" + rule);
        Directory.CreateDirectory(tree);
        File.WriteAllText(Path.Combine(tree, "VERSION"), "v\n");
        var extra = rule switch
        {
            "control" => ["conf/tab\there"],
            "delete" => ["conf/x\u007f"],
            "backslash" => ["conf\\rules"],
            "blank-segment" => [" /rules"],
            "long" => [string.Join('/', Enumerable.Repeat(new string('d', 250), 5))],
            "file-limit" => Enumerable.Range(0, BundleManifest.MaxApplicationFiles).Select(i => $"f/{i:d5}").ToArray(),
            _ => throw new ArgumentOutOfRangeException(nameof(rule)),
        };
        foreach (var name in extra)
        {
            var file = Path.Combine(tree, name);
            Directory.CreateDirectory(Path.GetDirectoryName(file)!);
            File.WriteAllText(file, "");
        }
        return tree;
    }

    [TestCase("control", "path")]
    [TestCase("delete", "path")]
    [TestCase("backslash", "path")]
    [TestCase("blank-segment", "path")]
    [TestCase("long", "path")]
    [TestCase("file-limit", "file-limit")]
    public void A_tree_that_cannot_be_sealed_is_refused_with_the_same_words_as_a_signed_file_list_of_it(string tree, string rule)
    {
        // the same tree, listed as the seal would keep it and as a signer would sign it: one set of rules, one message
        var dir = UnsealableTree(tree);
        var listed = AppIntegrity.DescribeTree(dir);
        var sealing = Assert.Throws<Tsunagu.Firmware.Storage.SealRuleException>(() => Tsunagu.Firmware.Updates.Phases.ExtractPhase.SealableList(dir, "firewall-1.1.0"));
        var (brokenRule, detail) = FileListRules.Problem(listed)!.Value;
        Assert.That(FileListRules.Name(brokenRule), Is.EqualTo(rule));
        Assert.That(sealing!.Message, Is.EqualTo($"seal {rule}: payload firewall-1.1.0: its unpacked tree cannot be sealed: {detail}"));

        var manifest = ManifestListing(listed);
        Assert.That(manifest.Problems(), Is.EqualTo(new[] { $"payloads.firewall-1.1.0.files: {detail}" }), "the signed list of the same tree: the same words");

        // a seal that keeps the list anyway (written by hand, or by an older unit) is refused with them too
        var seal = new Tsunagu.Firmware.Storage.AppSeal("firewall", "9.9.9", "firewall-9.9.9", "bWFuaWZlc3Q=", [], 0, "/x", new string('c', 64), listed);
        _apps.WriteSeal(seal);
        var reading = Assert.Throws<InvalidDataException>(() => _apps.ReadSeal("firewall", "9.9.9"));
        Assert.That(reading!.Message, Does.EndWith($"(rule {rule}: {detail})"));
    }

    [TestCase("negative", "size")]
    [TestCase("short-digest", "digest")]
    [TestCase("twice", "path")]
    [TestCase("null", "path")]
    public void A_file_list_no_tree_could_have_is_refused_with_the_same_words_in_a_seal_and_in_a_signed_manifest(string list, string rule)
    {
        var good = new BundleFile("VERSION", 1, new string('a', 64));
        List<BundleFile> files = list switch
        {
            "negative" => [good with { Size = -1 }],
            "short-digest" => [good with { Sha256 = "ABC" }],
            "twice" => [good, good],
            _ => [good, null!], // JSON may hold a null entry despite the contract
        };
        var (brokenRule, detail) = FileListRules.Problem(files)!.Value;
        Assert.That(FileListRules.Name(brokenRule), Is.EqualTo(rule));
        var manifest = ManifestListing(files);
        Assert.That(manifest.Problems(), Is.EqualTo(new[] { $"payloads.firewall-1.1.0.files: {detail}" }));
        _apps.WriteSeal(new Tsunagu.Firmware.Storage.AppSeal("firewall", "9.9.9", "firewall-9.9.9", "bWFuaWZlc3Q=", [], 0, "/x", new string('c', 64), files));
        Assert.That(Assert.Throws<InvalidDataException>(() => _apps.ReadSeal("firewall", "9.9.9"))!.Message, Does.EndWith($"(rule {rule}: {detail})"));
    }

    [Test]
    public async Task The_seal_of_a_tree_without_file_lists_keeps_the_list_made_when_it_was_unpacked_and_checked()
    {
        // the tree is hashed once, when it is unpacked and checked; the switch seals that list. A change to the unpacked
        // tree after its check is not sealed as if it were what the verified tar held: the boot check finds it
        var b = await BuildWithoutFileListsAsync();
        var unpacked = new List<BundleFile>();
        var result = await Installer(new MemorySource(b.Bytes), checkpoint: point =>
        {
            if (point != "switching") { return; }
            var tree = Path.Combine(BundleInstaller.WorkDirectory(Path.Combine(_dir, "data"), b.Offer.UpdateId), "trees", "firewall-1.1.0");
            unpacked.AddRange(AppIntegrity.DescribeTree(tree));
            File.AppendAllText(Path.Combine(tree, "VERSION"), "changed after its check");
        }).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(result.Status, Is.EqualTo(InstallStatus.Committed), result.Report?.Error);
        Assert.That(unpacked, Is.Not.Empty, "precondition: the switch ran after the unpacking");
        Assert.That(_apps.ReadSeal("firewall", "1.1.0")!.InstalledFiles, Is.EqualTo(unpacked), "the list of the tree as unpacked from the verified tar");
        var damaged = CheckApps();
        Assert.That(damaged.Select(d => (d.Application, d.Version)), Is.EqualTo(new[] { ("firewall", "1.1.0") }));
        Assert.That(damaged[0].Problem, Does.Contain("VERSION differs"));
    }

    [TestCase("missing", "it is missing")]
    [TestCase("unreadable", "it is unreadable")]
    [TestCase("null-entry", "it breaks rule path: an entry is null")]
    [TestCase("another-payload", "it is the list of another payload")]
    [TestCase("another-attempt", "it was made by another install attempt")]
    [TestCase("sizes-differ", "it is not the list that was written")]
    public async Task A_switch_that_finds_no_usable_kept_list_lists_and_checks_the_unpacked_tree_again_and_says_why(string kept, string why)
    {
        var b = await BuildWithoutFileListsAsync();
        var work = BundleInstaller.WorkDirectory(Path.Combine(_dir, "data"), b.Offer.UpdateId);
        var path = Tsunagu.Firmware.Updates.Phases.ExtractPhase.KeptListPath(work, "firewall-1.1.0");
        var result = await Installer(new MemorySource(b.Bytes), checkpoint: point =>
        {
            if (point != "switching") { return; }
            Assert.That(File.Exists(path), Is.True, "precondition: the unpacking kept its list");
            var list = JsonSerializer.Deserialize(File.ReadAllBytes(path), Tsunagu.Firmware.Storage.FirmwareJson.Default.KeptTreeList)!;
            Assert.That(list.Files, Is.EqualTo(AppIntegrity.DescribeTree(Path.Combine(work, "trees", "firewall-1.1.0"))), "precondition: the list of the tree");
            var replaced = kept switch
            {
                "null-entry" => list with { Files = [null!] },
                "another-payload" => list with { PayloadSha256 = new string('e', 64) },
                "another-attempt" => list with { InstallId = "another" },
                // a list that follows every rule, for this payload and attempt, but not the one written: its sizes differ from the tree
                "sizes-differ" => list with { Files = [.. list.Files.Select(f => f with { Size = f.Size + 1 })] },
                _ => null,
            };
            if (kept == "missing") { File.Delete(path); }
            else if (kept == "unreadable") { File.WriteAllText(path, "{\"payloadSha256\": "); }
            else { File.WriteAllBytes(path, JsonSerializer.SerializeToUtf8Bytes(replaced!, Tsunagu.Firmware.Storage.FirmwareJson.Default.KeptTreeList)); }
        }).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(result.Status, Is.EqualTo(InstallStatus.Committed), result.Report?.Error);
        Assert.That(_apps.ReadSeal("firewall", "1.1.0")!.InstalledFiles, Is.EqualTo(AppIntegrity.DescribeTree(Tree("firewall", "1.1.0"))), "the seal keeps the list of the real tree");
        Assert.That(_log, Has.Some.Contains("payload firewall-1.1.0: the list of its tree kept at unpacking is not used (" + why));
        Restart();
        Assert.That(CheckApps(), Is.Empty, string.Join("\n", _log));
    }

    [Test]
    public async Task A_switch_that_finds_its_kept_list_whole_uses_it_and_warns_of_nothing()
    {
        var b = await BuildWithoutFileListsAsync();
        var result = await Installer(new MemorySource(b.Bytes)).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(result.Status, Is.EqualTo(InstallStatus.Committed), result.Report?.Error);
        Assert.That(_log, Has.None.Contains("kept at unpacking is not used"));
    }

    [Test]
    public void A_manifest_with_many_problems_is_refused_naming_the_first_twenty_and_counting_the_rest()
    {
        var files = Enumerable.Range(0, 25).Select(i => new BundleFile($"f{i:d2}", -1, new string('a', 64))).ToList();
        var bytes = BundleFormat.SerializeManifest(ManifestListing(files));
        var e = Assert.Throws<BundleCheckException>(() => new BundleHeader(bytes, [], 0).ParseManifest());
        var shown = Enumerable.Range(0, 20).Select(i => $"payloads.firewall-1.1.0.files: 'f{i:d2}' size: -1 is negative");
        Assert.That(e!.Message, Is.EqualTo($"manifest: {string.Join("; ", shown)}; and 5 more"));
        Assert.That(BundleManifest.DescribeProblems(["a", "b"]), Is.EqualTo("a; b"), "a short list is named whole");
    }

    /// <summary>
    /// pattern 2 as a bundle built before application payloads carried `files`: the same tars (firewall with <see cref="Blob"/>,
    /// dns), their digests signed, no file lists.
    /// </summary>
    private Task<Built> BuildWithoutFileListsAsync() => BuildWithoutFileListsAsync(
        BundleFormat.ApplicationTar(new Dictionary<string, byte[]> { ["VERSION"] = Encoding.UTF8.GetBytes("firewall 1.1.0\n"), ["blob"] = Blob }));

    /// <summary>
    /// An update built before file lists: firewall <paramref name="firewallVersion"/> from <paramref name="firewallTar"/> and
    /// dns 2.0.0, from <paramref name="from"/> to <paramref name="to"/>, release counter <paramref name="version"/>.
    /// </summary>
    private async Task<Built> BuildWithoutFileListsAsync(byte[] firewallTar, string firewallVersion = "1.1.0", string id = "p1-to-p2",
        string from = "pattern-1", string to = "pattern-2", long version = 2)
    {
        var dns = BundleFormatTests.App("dns", "2.0.0").Item2;
        BundlePayload Payload(string name, string app, string version, byte[] tar) =>
            new(name, PayloadKinds.Application, tar.Length, Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(tar)), app, version);
        var firewall = $"firewall-{firewallVersion}";
        var manifest = new BundleManifest(BundleManifest.CurrentFormat, id, version, [from], to,
            new BundleCompatibility(["simulated"], ["r1"], ["os 1"]), 5, DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddDays(1),
            [Payload(firewall, "firewall", firewallVersion, firewallTar), Payload("dns-2.0.0", "dns", "2.0.0", dns)],
            [new BundleStep(StepActions.InstallApplication, firewall), new BundleStep(StepActions.InstallApplication, "dns-2.0.0")]);
        Assert.That(manifest.Problems(), Is.Empty, "precondition: a valid manifest");
        var bytes = BundleFormat.SerializeManifest(manifest);
        Assert.That(System.Text.Encoding.UTF8.GetString(bytes), Does.Not.Contain("\"files\""), "precondition: the manifest of an older bundle");
        using var output = new MemoryStream();
        await BundleFormat.WriteAsync(output, bytes, [ReleaseKeys.Sign(bytes, _key)], [new MemoryStream(firewallTar), new MemoryStream(dns)], CancellationToken.None);
        var bundle = output.ToArray();
        return new Built(bundle, new UpdateOffer(id, from, to, 5, "/api/v1/host/artifacts/x",
            Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bundle)), bundle.LongLength));
    }

    /// <summary>
    /// A tar of regular files in the given order (names as given, duplicates kept), in GNU format: its names are raw bytes
    /// (a long one in a long-name entry), so a name may hold any character but NUL.
    /// </summary>
    private static byte[] Tar(IEnumerable<(string Name, byte[] Content)> entries)
    {
        using var buffer = new MemoryStream();
        using (var tar = new System.Formats.Tar.TarWriter(buffer, System.Formats.Tar.TarEntryFormat.Gnu, leaveOpen: true))
        {
            foreach (var (name, content) in entries)
            {
                tar.WriteEntry(new System.Formats.Tar.GnuTarEntry(System.Formats.Tar.TarEntryType.RegularFile, name) { DataStream = new MemoryStream(content) });
            }
        }
        return buffer.ToArray();
    }

    /// <summary>A firewall tree that breaks one rule of a seal's file list, besides a good VERSION file.</summary>
    private static byte[] TreeBreaking(string rule) => Tar(EntriesBreaking(rule));

    /// <summary>The entries of <see cref="TreeBreaking"/>, in tar order.</summary>
    private static List<(string Name, byte[] Content)> EntriesBreaking(string rule)
    {
        var version = ("VERSION", "firewall 1.2.0\n"u8.ToArray());
        (string, byte[]) Extra(string name) => (name, "x"u8.ToArray());
        return rule switch
        {
            "file-limit" => [version, .. Enumerable.Range(0, BundleManifest.MaxApplicationFiles).Select(i => ($"rules/{i:d5}", Array.Empty<byte>()))],
            "control" => [version, Extra("conf/bad\nname")],
            "delete" => [version, Extra("conf/x\u007f")],
            "backslash" => [version, Extra("conf\\rules")],
            "blank-segment" => [version, Extra(" /rules")],
            "long" => [version, Extra(string.Join('/', Enumerable.Repeat(new string('d', 250), 5)))],
            "twice" => [version, Extra("rules"), Extra("rules")],
            _ => throw new ArgumentOutOfRangeException(nameof(rule)),
        };
    }

    [TestCase("file-limit", "seal file-limit:", "more than 10000 files")]
    [TestCase("control", "seal path:", "'conf/bad\\u000aname' is not a relative path")]
    [TestCase("delete", "seal path:", "'conf/x\\u007f' is not a relative path")]
    [TestCase("backslash", "seal path:", "is not a relative path")]
    [TestCase("blank-segment", "seal path:", "' /rules' is not a relative path")]
    [TestCase("long", "seal path:", "is not a relative path of at most 1024 characters")]
    [TestCase("twice", "seal path:", "'rules' appears twice")]
    public async Task A_bundle_without_file_lists_whose_tree_cannot_be_sealed_is_refused_at_install_and_the_installed_version_is_left_as_it_was(
        string rule, string prefix, string detail)
    {
        // installed before: pattern 2, firewall 1.1.0 with its seal (a kept list, from an older bundle too)
        var first = await BuildWithoutFileListsAsync();
        Assert.That((await Installer(new MemorySource(first.Bytes)).RunAsync(first.Offer, CancellationToken.None)).Status, Is.EqualTo(InstallStatus.Committed));
        var appsDir = Path.Combine(_dir, "data", "apps");
        var sealBefore = File.ReadAllBytes(_apps.SealPath("firewall", "1.1.0"));
        var treesBefore = Pattern2.ToDictionary(a => a.Key, a => AppIntegrity.DescribeTree(Tree(a.Key, a.Value)));
        var entriesBefore = Directory.GetFileSystemEntries(appsDir, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal).ToList();
        var counterBefore = BundleInstaller.Counter(_store);
        _log.Clear();

        var b = await BuildWithoutFileListsAsync(TreeBreaking(rule), "1.2.0", "p2-to-p3", "pattern-1", "pattern-3", 3);
        var result = await Installer(new MemorySource(b.Bytes)).RunAsync(b.Offer, CancellationToken.None);

        Assert.That(result.Status, Is.EqualTo(InstallStatus.Failed), "a tree whose list no seal could keep is never installed");
        Assert.That(result.Report!.Error, Does.StartWith($"{prefix} payload firewall-1.2.0: its unpacked tree cannot be sealed: ").And.Contain(detail));
        // the unpacking refuses the tree with the words a signed list of the same files is refused with
        var listed = EntriesBreaking(rule).Select(e => new BundleFile(e.Name, e.Content.Length, Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(e.Content)))).ToList();
        var (_, signed) = FileListRules.Problem(listed)!.Value;
        Assert.That(result.Report.Error, Does.EndWith($"its unpacked tree cannot be sealed: {signed}"));
        Assert.That(ManifestListing(listed).Problems(), Is.EqualTo(new[] { $"payloads.firewall-1.1.0.files: {signed}" }));
        Assert.That(result.Report.Error, Has.None.Matches<char>(char.IsControl), "the report carries no control character from the tar");
        Assert.That(result.Report.Inventory.Applications, Is.EqualTo(Pattern2));
        // the installed version is exactly as it was: links, trees, seals, nothing staged beside them, and it still passes its check
        Assert.That(_apps.Current(), Is.EqualTo(Pattern2));
        Assert.That(Pattern2.ToDictionary(a => a.Key, a => AppIntegrity.DescribeTree(Tree(a.Key, a.Value))), Is.EqualTo(treesBefore));
        Assert.That(File.ReadAllBytes(_apps.SealPath("firewall", "1.1.0")), Is.EqualTo(sealBefore));
        Assert.That(Directory.GetFileSystemEntries(appsDir, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal), Is.EqualTo(entriesBefore),
            "no tree or seal of firewall 1.2.0, no staged copy");
        Assert.That(BundleInstaller.Counter(_store), Is.EqualTo(counterBefore), "the refused bundle's release counter is not recorded");
        Assert.That(Directory.Exists(BundleInstaller.WorkDirectory(Path.Combine(_dir, "data"), b.Offer.UpdateId)), Is.False, "its unpacked tree is removed");
        Restart();
        Assert.That(CheckApps(), Is.Empty, string.Join("\n", _log));
    }

    [Test]
    public async Task A_signed_application_tar_the_unit_cannot_read_is_refused_naming_its_payload_and_the_installed_version_stays()
    {
        // a PAX header whose path holds a newline: written by the writer, refused by the unit's reader
        using var buffer = new MemoryStream();
        using (var writer = new System.Formats.Tar.TarWriter(buffer, System.Formats.Tar.TarEntryFormat.Pax, leaveOpen: true))
        {
            writer.WriteEntry(new System.Formats.Tar.PaxTarEntry(System.Formats.Tar.TarEntryType.RegularFile, "bad\nname") { DataStream = new MemoryStream([1]) });
        }
        var b = await BuildWithoutFileListsAsync(buffer.ToArray(), "1.2.0", "p1-to-p3", "pattern-1", "pattern-3", 3);
        var result = await Installer(new MemorySource(b.Bytes)).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(result.Status, Is.EqualTo(InstallStatus.Failed));
        Assert.That(result.Report!.Error, Does.StartWith("manifest: payload firewall-1.2.0: not a tar the unit can read ("));
        Assert.That(_apps.Current(), Is.EqualTo(Pattern1));
        Assert.That(Directory.Exists(Path.Combine(_dir, "data", "apps", "firewall", "1.2.0")), Is.False);
    }

    [Test]
    public async Task An_application_tree_is_unpacked_up_to_the_file_limit_and_refused_at_the_first_file_past_it()
    {
        var dir = Path.Combine(_dir, "limit");
        Directory.CreateDirectory(dir);
        var atLimit = Path.Combine(dir, "at-limit.tar");
        File.WriteAllBytes(atLimit, Tar(Enumerable.Range(0, BundleManifest.MaxApplicationFiles).Select(i => ($"f/{i:d5}", Array.Empty<byte>()))));
        await Tsunagu.Firmware.Updates.Phases.ExtractPhase.ExtractTreeAsync(atLimit, Path.Combine(dir, "a"), "p", CancellationToken.None);
        Assert.That(Tsunagu.Firmware.Updates.Phases.ExtractPhase.SealableList(Path.Combine(dir, "a"), "p"), Has.Count.EqualTo(BundleManifest.MaxApplicationFiles));

        var past = Path.Combine(dir, "past.tar");
        File.WriteAllBytes(past, Tar(Enumerable.Range(0, BundleManifest.MaxApplicationFiles + 500).Select(i => ($"f/{i:d5}", Array.Empty<byte>()))));
        var e = Assert.ThrowsAsync<Tsunagu.Firmware.Storage.SealRuleException>(() =>
            Tsunagu.Firmware.Updates.Phases.ExtractPhase.ExtractTreeAsync(past, Path.Combine(dir, "b"), "p", CancellationToken.None));
        Assert.That((e!.Rule, e.Payload), Is.EqualTo((FileListRule.FileLimit, "p")));
        Assert.That(Directory.GetFiles(Path.Combine(dir, "b"), "*", SearchOption.AllDirectories), Has.Length.EqualTo(BundleManifest.MaxApplicationFiles),
            "nothing past the limit is unpacked");
    }

    [Test]
    public void A_tree_changed_after_unpacking_so_that_its_list_breaks_a_rule_is_refused_before_it_is_sealed()
    {
        var tree = Path.Combine(_dir, "tree");
        Directory.CreateDirectory(Path.Combine(tree, "conf"));
        File.WriteAllText(Path.Combine(tree, "VERSION"), "v\n");
        Assert.That(Tsunagu.Firmware.Updates.Phases.ExtractPhase.SealableList(tree, "p"), Has.Count.EqualTo(1));
        File.WriteAllText(Path.Combine(tree, "conf", "tab\there"), "x");
        var e = Assert.Throws<Tsunagu.Firmware.Storage.SealRuleException>(() => Tsunagu.Firmware.Updates.Phases.ExtractPhase.SealableList(tree, "p"));
        Assert.That(e!.Rule, Is.EqualTo(FileListRule.Path));
        Assert.That(e.Message, Does.StartWith("seal path: payload p: ").And.Contain("conf/tab\\u0009here"));
    }

    [Test]
    public async Task A_bundle_built_before_file_lists_installs_and_its_trees_are_checked_against_the_list_kept_at_install_and_fetched_again()
    {
        var b = await BuildWithoutFileListsAsync();
        var result = await Installer(new MemorySource(b.Bytes)).RunAsync(b.Offer, CancellationToken.None);
        Assert.That(result.Status, Is.EqualTo(InstallStatus.Committed), result.Report?.Error);
        Assert.That(_apps.Current(), Is.EqualTo(Pattern2));
        Assert.That(_log, Has.Some.Contains("payload firewall-1.1.0 lists no file digests"));
        var tree = Tree("firewall", "1.1.0");
        var installed = AppIntegrity.DescribeTree(tree);
        var seal = _apps.ReadSeal("firewall", "1.1.0")!;
        Assert.That(seal.InstalledFiles, Is.EqualTo(installed), "the seal keeps the list of the tree unpacked from the verified tar");
        Assert.That(AppIntegrity.VerifySeal(seal, BundleInstaller.TrustedKeys(_identity, _store)).Files, Is.Null, "the signed manifest has none");
        Restart();
        Assert.That(CheckApps(), Is.Empty, string.Join("\n", _log));

        // damaged: found at boot and fetched again by the payload's bytes, whose signed digest vouches for the tree
        var bytes = File.ReadAllBytes(Path.Combine(tree, "blob"));
        bytes[4321] ^= 0x20;
        File.WriteAllBytes(Path.Combine(tree, "blob"), bytes);
        File.WriteAllText(Path.Combine(tree, "planted"), "not in the tar");
        var damaged = CheckApps();
        Assert.That(damaged.Select(d => (d.Application, d.Version)), Is.EqualTo(new[] { ("firewall", "1.1.0") }));
        Assert.That(damaged[0].Problem, Does.Contain("blob differs"));
        var host = new MemorySource(b.Bytes);
        await AppIntegrity.RepairAsync(_apps, damaged[0], BundleInstaller.TrustedKeys(_identity, _store), host, Path.Combine(_dir, "data", "tmp", "repair"), CancellationToken.None);
        Assert.That(AppIntegrity.DescribeTree(tree), Is.EqualTo(installed), "the tree is the one the verified tar unpacked again");
        Assert.That(CheckApps(), Is.Empty);
        Assert.That(host.Ranges, Has.Count.EqualTo(1), "one bounded request");

        // bytes that are not the signed payload are refused as for any bundle
        File.WriteAllText(Path.Combine(tree, "blob"), "damaged");
        var forged = (byte[])b.Bytes.Clone();
        forged[(int)seal.PayloadOffset + 700] ^= 0xff;
        var e = Assert.ThrowsAsync<BundleCheckException>(() => AppIntegrity.RepairAsync(_apps, CheckApps().Single(), BundleInstaller.TrustedKeys(_identity, _store),
            new MemorySource(forged), Path.Combine(_dir, "data", "tmp", "repair"), CancellationToken.None));
        Assert.That(e!.Check, Is.EqualTo(BundleCheck.PayloadDigest));
        Assert.That(File.ReadAllText(Path.Combine(tree, "blob")), Is.EqualTo("damaged"));
    }

    [TestCase("../../etc/passwd", "path")]
    [TestCase("bad\nname", "path")]
    [TestCase("short-digest", "digest")]
    [TestCase("twice", "path")]
    [TestCase("null", "path")]
    public async Task A_kept_file_list_altered_on_the_unit_is_refused_and_nothing_is_fetched_for_it(string bad, string rule)
    {
        var b = await BuildWithoutFileListsAsync();
        Assert.That((await Installer(new MemorySource(b.Bytes)).RunAsync(b.Offer, CancellationToken.None)).Status, Is.EqualTo(InstallStatus.Committed));
        var seal = _apps.ReadSeal("firewall", "1.1.0")!;
        var first = seal.InstalledFiles![0];
        _apps.WriteSeal(seal with
        {
            InstalledFiles = bad switch
            {
                "short-digest" => [first with { Sha256 = "abc" }],
                "twice" => [first, first],
                "null" => [first, null!],
                _ => [first with { Path = bad }],
            },
        });
        var damaged = CheckApps();
        Assert.That(damaged.Single().Seal, Is.Null, "an unreadable seal is not used to fetch anything");
        Assert.That(damaged.Single().Problem, Does.Contain("is not a list of relative paths").And.Contain($"(rule {rule}: "));
    }

    [Test]
    public void A_tar_with_a_link_or_a_path_outside_the_tree_gets_no_file_list()
    {
        foreach (var entry in new System.Formats.Tar.PaxTarEntry[]
                 {
                     new(System.Formats.Tar.TarEntryType.SymbolicLink, "link") { LinkName = "/etc/passwd" },
                     new(System.Formats.Tar.TarEntryType.RegularFile, "../outside") { DataStream = new MemoryStream([1]) },
                 })
        {
            using var buffer = new MemoryStream();
            using (var tar = new System.Formats.Tar.TarWriter(buffer, leaveOpen: true)) { tar.WriteEntry(entry); }
            buffer.Position = 0;
            var e = Assert.ThrowsAsync<BundleCheckException>(() => BundleFormat.ListApplicationFilesAsync(buffer, "p", CancellationToken.None));
            Assert.That(e!.Check, Is.EqualTo(BundleCheck.Manifest));
        }
    }

    [Test]
    public async Task A_bundle_whose_application_tree_differs_from_its_signed_file_list_is_refused_before_anything_is_switched()
    {
        // a signer's mistake: the tar's digest is signed, but the file list says otherwise
        var tar = BundleFormat.ApplicationTar(new Dictionary<string, byte[]> { ["VERSION"] = "firewall 1.1.0\n"u8.ToArray() });
        var files = await BundleFormat.ListApplicationFilesAsync(new MemoryStream(tar), "firewall-1.1.0", CancellationToken.None);
        var manifest = new BundleManifest(BundleManifest.CurrentFormat, "p1-to-p2", 2, ["pattern-1"], "pattern-2",
            new BundleCompatibility(["simulated"], ["r1"], ["os 1"]), 5, DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddDays(1),
            [new BundlePayload("firewall-1.1.0", PayloadKinds.Application, tar.Length, Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(tar)),
                "firewall", "1.1.0", [files[0] with { Sha256 = new string('0', 64) }])],
            [new BundleStep(StepActions.InstallApplication, "firewall-1.1.0")]);
        var bytes = BundleFormat.SerializeManifest(manifest);
        using var output = new MemoryStream();
        await BundleFormat.WriteAsync(output, bytes, [ReleaseKeys.Sign(bytes, _key)], [new MemoryStream(tar)], CancellationToken.None);
        var bundle = output.ToArray();
        var offer = new UpdateOffer("p1-to-p2", "pattern-1", "pattern-2", 5, "/api/v1/host/artifacts/x",
            Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bundle)), bundle.LongLength);
        var result = await Installer(new MemorySource(bundle)).RunAsync(offer, CancellationToken.None);
        Assert.That(result.Status, Is.EqualTo(InstallStatus.Failed));
        Assert.That(result.Report!.Error, Does.StartWith("manifest:").And.Contain("VERSION differs from its signed digest"));
        Assert.That(_apps.Current(), Is.EqualTo(Pattern1));
    }
}
