using Tsunagu.Firmware.Storage;
using Tsunagu.Firmware.Updates;
using Tsunagu.Hal.Storage;

namespace Tsunagu.UnitTests.Updates;

/// <summary>
/// <see cref="AppStore.Replace"/> (a damaged application tree restored) cut by a power failure at each of its steps:
/// after the restart the application's `current` version is found with its old tree or its new one, whole, and nothing
/// the replace staged is left behind.
/// </summary>
public class AppStoreReplaceTests
{
    private string _dir = "";

    private static readonly Dictionary<string, string> OldTree = new() { ["VERSION"] = "firewall 1.1.0\n", ["rules/main.nft"] = "damaged" };
    private static readonly Dictionary<string, string> NewTree = new() { ["VERSION"] = "firewall 1.1.0\n", ["rules/main.nft"] = "table inet filter {}\n", ["rules/extra.nft"] = "x" };

    [SetUp]
    public void SetUp() => _dir = Path.Combine(Path.GetTempPath(), $"tsunagu-replace-{Guid.NewGuid():N}");

    [TearDown]
    public void TearDown()
    {
        if (Directory.Exists(_dir)) { Directory.Delete(_dir, recursive: true); }
    }

    private sealed class PowerCut : Exception;

    /// <summary>The real file system, cut (an exception before the operation) at durable operation number <see cref="CutAt"/> (from 0).</summary>
    private sealed class CuttingFileSystem(int cutAt) : IDurableFileSystem
    {
        private static readonly IDurableFileSystem Real = PosixFileSystem.Instance;
        public int CutAt { get; } = cutAt;
        public int Operations { get; private set; }
        public List<string> Done { get; } = [];

        private void Step(string what)
        {
            if (Operations++ == CutAt) { throw new PowerCut(); }
            Done.Add(what);
        }

        public bool FileExists(string path) => Real.FileExists(path);
        public Stream OpenFile(string path) { Step($"open {path}"); return Real.OpenFile(path); }
        public void SyncFile(string path) { Step($"fsync {path}"); Real.SyncFile(path); }
        public void CreateSymbolicLink(string path, string target) { Step($"symlink {path}"); Real.CreateSymbolicLink(path, target); }
        public void Rename(string source, string destination) { Step($"rename {source} {destination}"); Real.Rename(source, destination); }
        public void DeleteFile(string path) { Step($"delete {path}"); Real.DeleteFile(path); }
        public void SyncDirectory(string path) { Step($"fsync-dir {path}"); Real.SyncDirectory(path); }
    }

    private static string WriteTree(string root, Dictionary<string, string> files)
    {
        foreach (var (path, content) in files)
        {
            var full = Path.Combine(root, path);
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            File.WriteAllText(full, content);
        }
        return root;
    }

    private static Dictionary<string, string> ReadTree(string root) =>
        AppIntegrity.DescribeTree(root).ToDictionary(f => f.Path, f => File.ReadAllText(Path.Combine(root, f.Path)));

    /// <summary>A unit with firewall 1.1.0 installed (its tree <see cref="OldTree"/>) and the replacement tree beside it.</summary>
    private (string Data, string Source) Installed(string name)
    {
        var root = Path.Combine(_dir, name);
        var data = Path.Combine(root, "data");
        var apps = new AppStore(data);
        apps.Stage("firewall", "1.0.0", WriteTree(Path.Combine(root, "factory"), new() { ["VERSION"] = "firewall 1.0.0\n" }));
        apps.Stage("firewall", "1.1.0", WriteTree(Path.Combine(root, "old"), OldTree));
        apps.Switch("firewall", "1.1.0");
        return (data, WriteTree(Path.Combine(root, "new"), NewTree));
    }

    [Test]
    public void A_power_cut_at_any_step_of_a_replace_leaves_the_old_tree_or_the_new_one_and_the_next_replace_completes()
    {
        var (data, source) = Installed("whole");
        var uncut = new CuttingFileSystem(int.MaxValue);
        new AppStore(data, uncut).Replace("firewall", "1.1.0", source);
        Assert.That(ReadTree(Path.Combine(data, "apps", "firewall", "1.1.0")), Is.EqualTo(NewTree));
        var steps = uncut.Operations;
        Assert.That(steps, Is.GreaterThan(4), string.Join("\n", uncut.Done));

        var (oldSeen, newSeen) = (0, 0);
        for (var cut = 0; cut <= steps; cut++)
        {
            (data, source) = Installed($"cut-{cut}");
            var files = new CuttingFileSystem(cut);
            var where = $"cut before operation {cut} of {steps} (after: {files.Done.LastOrDefault() ?? "nothing"})";
            try
            {
                new AppStore(data, files).Replace("firewall", "1.1.0", source);
                Assert.That(cut, Is.EqualTo(steps), $"{where}: the replace finished without reaching its cut");
            }
            catch (PowerCut)
            {
                where = $"cut before operation {cut} of {steps} (after: {files.Done.LastOrDefault() ?? "nothing"})";
            }

            // the restart: the same data, the real file system
            var apps = new AppStore(data);
            Assert.That(apps.Current(), Is.EqualTo(new Dictionary<string, string> { ["firewall"] = "1.1.0" }), where + ": the bundle's version is still current");
            Assert.That(apps.Links(), Is.EqualTo(new Dictionary<string, string> { ["firewall"] = "1.1.0" }), where);
            var tree = ReadTree(apps.TreePath("firewall", "1.1.0"));
            Assert.That(tree, Is.EqualTo(OldTree).Or.EqualTo(NewTree), where + ": one whole tree, not a mix");
            if (tree.Count == NewTree.Count && !tree.Except(NewTree).Any()) { newSeen++; } else { oldSeen++; }
            Assert.That(Directory.GetFileSystemEntries(Path.Combine(data, "apps", "firewall")).Select(Path.GetFileName).Order(StringComparer.Ordinal),
                Is.EqualTo(new[] { "1.0.0", "1.1.0", "current" }), where + ": nothing staged or set aside is left");
            Assert.That(ReadTree(apps.TreePath("firewall", "1.0.0")), Is.EqualTo(new Dictionary<string, string> { ["VERSION"] = "firewall 1.0.0\n" }), where + ": other versions untouched");

            // the check finds it again (old tree) or not (new), and the next replace completes
            apps.Replace("firewall", "1.1.0", source);
            Assert.That(ReadTree(apps.TreePath("firewall", "1.1.0")), Is.EqualTo(NewTree), where);
        }
        TestContext.Out.WriteLine($"replace: {steps} durable operations; after a cut the old tree was found {oldSeen} times, the new one {newSeen} times");
        Assert.That(oldSeen, Is.GreaterThan(0));
        Assert.That(newSeen, Is.GreaterThan(0));
    }

    [Test]
    public void A_replace_of_a_missing_tree_puts_the_tree_in_place()
    {
        var (data, source) = Installed("missing");
        var apps = new AppStore(data);
        Directory.Delete(apps.TreePath("firewall", "1.1.0"), recursive: true);
        Assert.That(apps.Current(), Is.Empty, "precondition: current names a missing tree");
        apps.Replace("firewall", "1.1.0", source);
        Assert.That(apps.Current(), Is.EqualTo(new Dictionary<string, string> { ["firewall"] = "1.1.0" }));
        Assert.That(ReadTree(apps.TreePath("firewall", "1.1.0")), Is.EqualTo(NewTree));
    }

    /// <summary>The real file system whose tree removals fail (an unreadable, damaged tree) after removing one file, while <see cref="Failing"/>.</summary>
    private sealed class UndeletableTrees : IDurableFileSystem
    {
        private static readonly IDurableFileSystem Real = PosixFileSystem.Instance;
        public bool Failing { get; set; } = true;
        public int FailedDeletes { get; private set; }

        public bool FileExists(string path) => Real.FileExists(path);
        public Stream OpenFile(string path) => Real.OpenFile(path);
        public void SyncFile(string path) => Real.SyncFile(path);
        public void CreateSymbolicLink(string path, string target) => Real.CreateSymbolicLink(path, target);
        public void Rename(string source, string destination) => Real.Rename(source, destination);
        public void DeleteFile(string path) => Real.DeleteFile(path);
        public void SyncDirectory(string path) => Real.SyncDirectory(path);

        public void DeleteTree(string path)
        {
            if (!Failing) { Real.DeleteTree(path); return; }
            FailedDeletes++;
            if (Directory.EnumerateFiles(path, "*", SearchOption.AllDirectories).FirstOrDefault() is { } first) { File.Delete(first); }
            throw new IOException($"Input/output error: {path}");
        }
    }

    [Test]
    public void A_set_aside_tree_that_cannot_be_removed_fails_neither_the_replace_nor_any_later_read()
    {
        var (data, source) = Installed("undeletable");
        var files = new UndeletableTrees();
        var logged = new List<string>();
        var apps = new AppStore(data, files, logged.Add);

        apps.Replace("firewall", "1.1.0", source);

        Assert.That(files.FailedDeletes, Is.GreaterThan(0), "precondition: the set-aside tree's removal failed");
        var appDir = Path.Combine(data, "apps", "firewall");
        var names = Directory.GetFileSystemEntries(appDir).Select(f => Path.GetFileName(f)!).ToList();
        Assert.That(names.Where(n => n.StartsWith(".replaced-", StringComparison.Ordinal) || n.StartsWith(".replacing-", StringComparison.Ordinal)), Is.Empty,
            "no tree is left under a name recovery acts on");
        Assert.That(names.Count(n => n.StartsWith(".discarded-", StringComparison.Ordinal)), Is.EqualTo(1), "the undeletable tree is out of the way, once");
        for (var read = 0; read < 3; read++)
        {
            Assert.That(apps.Current(), Is.EqualTo(new Dictionary<string, string> { ["firewall"] = "1.1.0" }), $"read {read}");
            Assert.That(apps.Links(), Is.EqualTo(new Dictionary<string, string> { ["firewall"] = "1.1.0" }), $"read {read}");
            Assert.That(new AppStore(data, files).Current(), Is.EqualTo(new Dictionary<string, string> { ["firewall"] = "1.1.0" }), $"read {read} after a restart");
        }
        Assert.That(ReadTree(apps.TreePath("firewall", "1.1.0")), Is.EqualTo(NewTree), "the new tree, whole, is in place");
        Assert.That(logged, Has.Count.EqualTo(1).And.Some.Contains(".replaced-1.1.0"), "the failed removal is logged, once per tree");

        // a staged copy that cannot be removed is moved out of the way the same way
        var staging = Directory.CreateDirectory(Path.Combine(appDir, ".staging-1.2.0-cut")).FullName;
        File.WriteAllText(Path.Combine(staging, "VERSION"), "half");
        Assert.That(apps.Current(), Is.EqualTo(new Dictionary<string, string> { ["firewall"] = "1.1.0" }));
        Assert.That(Directory.Exists(staging), Is.False);

        // once removal works again, a later read removes what was set aside
        files.Failing = false;
        Assert.That(new AppStore(data, files).Current(), Is.EqualTo(new Dictionary<string, string> { ["firewall"] = "1.1.0" }));
        Assert.That(Directory.GetFileSystemEntries(appDir).Select(Path.GetFileName).Order(StringComparer.Ordinal),
            Is.EqualTo(new[] { "1.0.0", "1.1.0", "current" }), "nothing discarded is left once it can be removed");
    }
}
