using System.Diagnostics;
using System.Text.Json;
using Tsunagu.Firmware.Services;
using Tsunagu.Firmware.Storage;
using Tsunagu.Hal;
using Tsunagu.Hal.Storage;
using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;
using Tsunagu.UnitTests.Services;

namespace Tsunagu.UnitTests.Storage;

/// <summary>
/// Power cuts after every write and every sync (<see cref="CrashDisk"/>): the state store and the atomic links,
/// reopened from every image a cut can leave, hold the old or the new value of whatever was being written, and
/// everything written before.
/// </summary>
public class PowerCutTests
{
    private const string Data = "/data";

    /// <summary>Rounds of the state store's script (TSUNAGU_STATE_CUT_ROUNDS for a longer run); each adds about 120 cut points and 250 images.</summary>
    private static int Rounds => int.TryParse(Environment.GetEnvironmentVariable("TSUNAGU_STATE_CUT_ROUNDS"), out var n) && n > 0 ? n : 6;

    /// <summary>One store operation of the script: the key it changes and the value's JSON afterwards (null: deleted).</summary>
    private sealed record Step(string Key, string? Json, Action<StateStore> Run);

    private static Step Set<T>(string key, T value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type) =>
        new(key, JsonSerializer.Serialize(value, type), s => s.Set(key, value, type));

    private static Step Delete(string key) => new(key, null, s => s.Delete(key));

    /// <summary>Each key the supervisor keeps, read back as JSON (null when absent).</summary>
    private static readonly Dictionary<string, Func<StateStore, string?>> Readers = new()
    {
        [StateKeys.Settings] = s => Json(s.Get(StateKeys.Settings, FirmwareJson.Default.UnitSettings), FirmwareJson.Default.UnitSettings),
        [StateKeys.PendingUpdate] = s => Json(s.Get(StateKeys.PendingUpdate, FirmwareJson.Default.PendingUpdate), FirmwareJson.Default.PendingUpdate),
        [StateKeys.AppliedConfig] = s => Json(s.Get(StateKeys.AppliedConfig, FirmwareJson.Default.AppliedConfig), FirmwareJson.Default.AppliedConfig),
        [StateKeys.BundleCounter] = s => Json(s.Get(StateKeys.BundleCounter, FirmwareJson.Default.BundleCounter), FirmwareJson.Default.BundleCounter),
        [StateKeys.TrustedKeys] = s => Json(s.Get(StateKeys.TrustedKeys, FirmwareJson.Default.TrustedKeys), FirmwareJson.Default.TrustedKeys),
        [StateKeys.ServiceTransaction] = s => Json(s.Get(StateKeys.ServiceTransaction, FirmwareJson.Default.ServiceTransaction), FirmwareJson.Default.ServiceTransaction),
        [StateKeys.PendingConfirm] = s => Json(s.Get(StateKeys.PendingConfirm, FirmwareJson.Default.PendingConfirm), FirmwareJson.Default.PendingConfirm),
        [StateKeys.ConfirmedConfig] = s => Json(s.Get(StateKeys.ConfirmedConfig, FirmwareJson.Default.ConfirmedConfig), FirmwareJson.Default.ConfirmedConfig),
        [StateKeys.PowerOnSpread] = s => Json(s.Get(StateKeys.PowerOnSpread, FirmwareJson.Default.PowerOnSpread), FirmwareJson.Default.PowerOnSpread),
    };

    private static string? Json<T>(T? value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type) where T : class =>
        value is null ? null : JsonSerializer.Serialize(value, type);

    /// <summary>
    /// What the supervisor writes, in its order: provisioning (settings, power-on spread), a confirmed service apply
    /// (transaction, pending confirm, commit, confirm, applied config), an update (journal phases, counter and keys
    /// at commit, journal removed), for <paramref name="rounds"/> rounds with new values each time.
    /// </summary>
    private static List<Step> Script(int rounds)
    {
        var steps = new List<Step>();
        var t0 = new DateTimeOffset(2026, 12, 3, 0, 0, 0, TimeSpan.Zero);
        steps.Add(Set(StateKeys.Settings, new UnitSettings("02:54:53:00:00:01", new WanAccount("pppoe", "user", "pw"), null, null, null, null,
            "https://host.example/", null), FirmwareJson.Default.UnitSettings));
        for (var r = 1; r <= rounds; r++)
        {
            steps.Add(Set(StateKeys.PowerOnSpread, new PowerOnSpread(60 * r), FirmwareJson.Default.PowerOnSpread));
            steps.Add(Set(StateKeys.ServiceTransaction, new ServiceTransaction(r, r - 1 == 0 ? null : r - 1, t0.AddHours(r)), FirmwareJson.Default.ServiceTransaction));
            steps.Add(Set(StateKeys.PendingConfirm, new PendingConfirm(r, r - 1 == 0 ? null : r - 1, t0.AddHours(r).AddMinutes(5)), FirmwareJson.Default.PendingConfirm));
            steps.Add(Delete(StateKeys.ServiceTransaction));
            steps.Add(Set(StateKeys.ConfirmedConfig, new ConfirmedConfig(r, t0.AddHours(r).AddMinutes(1)), FirmwareJson.Default.ConfirmedConfig));
            steps.Add(Delete(StateKeys.PendingConfirm));
            steps.Add(Set(StateKeys.AppliedConfig, new AppliedConfig(r, false, null), FirmwareJson.Default.AppliedConfig));
            steps.Add(Set(StateKeys.AppliedConfig, new AppliedConfig(r, true, null), FirmwareJson.Default.AppliedConfig));
            var id = $"u{r}";
            var previous = new Dictionary<string, string> { ["vcp"] = $"1.{r - 1}.0", ["firewall"] = "1.0.0" };
            var bundle = new BundleCounter(r * 10, $"b{r}");
            foreach (var phase in new[] { PendingUpdate.Downloading, PendingUpdate.Verified, PendingUpdate.Switching, PendingUpdate.Checking })
            {
                steps.Add(Set(StateKeys.PendingUpdate, new PendingUpdate(id, phase, null, 1, Bundle: bundle, ToPattern: $"p{r}", PreviousApps: previous, Entries: 1),
                    FirmwareJson.Default.PendingUpdate));
            }
            steps.Add(Set(StateKeys.BundleCounter, bundle, FirmwareJson.Default.BundleCounter));
            steps.Add(Set(StateKeys.TrustedKeys, new TrustedKeys([.. Enumerable.Range(1, r).Select(k => $"key-{k}")], []), FirmwareJson.Default.TrustedKeys));
            steps.Add(Set(StateKeys.PendingUpdate, new PendingUpdate(id, PendingUpdate.Installed,
                new UpdateReport(id, true, null, new Inventory("hw", "os", new Dictionary<string, string> { ["vcp"] = $"1.{r}.0" }, bundle)), 1, Bundle: bundle),
                FirmwareJson.Default.PendingUpdate));
            steps.Add(Delete(StateKeys.PendingUpdate));
        }
        return steps;
    }

    [Test]
    public void After_a_power_cut_at_any_write_or_sync_the_state_store_holds_each_value_old_or_new_and_the_bundle_counter_never_goes_back()
    {
        var watch = Stopwatch.StartNew();
        var disk = new CrashDisk();
        var script = Script(Rounds);
        // ops [Start, End) of each step; the open before the first step and the close after the last are cut too
        var spans = new List<(int Start, int End, Step Step)>();
        using (var store = StateStore.Open(Data, disk))
        {
            foreach (var step in script)
            {
                var start = disk.Operations;
                step.Run(store);
                spans.Add((start, disk.Operations, step));
            }
        }
        var (writes, syncs) = (disk.Writes, disk.Syncs);

        var images = 0;
        var cutPoints = new System.Collections.Concurrent.ConcurrentDictionary<int, bool>();
        var corrupt = 0;
        var corruptBeforeCommit = 0;
        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
        // images are independent: each is reopened on its own disk
        Parallel.ForEach(disk.Cuts(), cut =>
        {
            Interlocked.Increment(ref images);
            cutPoints[cut.Cut] = true;
            var committed = spans.Where(s => s.End <= cut.Cut).ToList();
            var inFlight = spans.SingleOrDefault(s => s.Start < cut.Cut && cut.Cut < s.End);
            try
            {
                using var store = StateStore.Open(Data, new CrashDisk(cut.Image));
                foreach (var (key, read) in Readers)
                {
                    var old = committed.LastOrDefault(s => s.Step.Key == key).Step?.Json;
                    var found = read(store);
                    var allowed = inFlight.Step?.Key == key ? new[] { old, inFlight.Step.Json } : [old];
                    if (!allowed.Contains(found))
                    {
                        failures.Enqueue($"cut {cut.Cut} ({cut.Mode}, after {cut.After}): {key} is {found ?? "absent"}, expected {string.Join(" or ", allowed.Select(a => a ?? "absent"))}");
                    }
                }
                var floor = committed.Where(s => s.Step.Key == StateKeys.BundleCounter)
                    .Select(s => JsonSerializer.Deserialize(s.Step.Json!, FirmwareJson.Default.BundleCounter)!.Version).DefaultIfEmpty(0).Max();
                var counter = store.Get(StateKeys.BundleCounter, FirmwareJson.Default.BundleCounter)?.Version ?? 0;
                if (counter < floor)
                {
                    failures.Enqueue($"cut {cut.Cut} ({cut.Mode}, after {cut.After}): bundle counter {counter} below the committed {floor}");
                }
            }
            catch (StateStoreCorruptException e)
            {
                Interlocked.Increment(ref corrupt);
                if (committed.Count == 0)
                {
                    Interlocked.Increment(ref corruptBeforeCommit); // nothing was stored yet: the supervisor rebuilds `data` and provisions, as it must anyway
                    return;
                }
                failures.Enqueue($"cut {cut.Cut} ({cut.Mode}, after {cut.After}): reported corrupt ({e.InnerException?.Message}); {committed.Count} operations had been committed");
            }
        });
        watch.Stop();
        TestContext.Out.WriteLine($"state store: {script.Count} operations, {writes} writes and {syncs} syncs recorded; {cutPoints.Count} cut points, " +
                                  $"{images} images reopened (lost/kept/torn/reordered), {corrupt} reported corrupt ({corruptBeforeCommit} before the first commit), {failures.Count} invariant failures, {watch.Elapsed.TotalSeconds:F1} s");
        Assert.That(failures, Is.Empty, string.Join("\n", failures.Order().Take(20)));
        Assert.That(cutPoints, Has.Count.GreaterThan(100 * Rounds), "the script must produce a meaningful number of cut points");
    }

    [Test]
    public void After_a_power_cut_at_any_write_or_sync_an_atomic_link_names_the_old_or_the_new_target_and_a_returned_switch_stays()
    {
        var disk = new CrashDisk();
        const string link = Data + "/apps/vcp/current";
        AtomicLink.Point(link, "1.0.0", disk);
        disk.Settle();
        var spans = new List<(int Start, int End, string? Target)>();
        foreach (var target in new string?[] { "1.1.0", "1.2.0", null, "1.3.0" })
        {
            var start = disk.Operations;
            if (target is null) { AtomicLink.Remove(link, disk); } else { AtomicLink.Point(link, target, disk); }
            spans.Add((start, disk.Operations, target));
        }

        var images = 0;
        var failures = new List<string>();
        foreach (var cut in disk.Cuts())
        {
            images++;
            var old = spans.Where(s => s.End <= cut.Cut).Select(s => s.Target).DefaultIfEmpty("1.0.0").Last();
            var inFlight = spans.Where(s => s.Start < cut.Cut && cut.Cut < s.End).Select(s => s.Target).ToList();
            var found = CrashDisk.ReadLink(cut.Image, link);
            if (found != old && !(inFlight.Count == 1 && found == inFlight[0]))
            {
                failures.Add($"cut {cut.Cut} ({cut.Mode}, after {cut.After}): current -> {found ?? "nothing"}, expected {old ?? "nothing"}" +
                             (inFlight.Count == 1 ? $" or {inFlight[0] ?? "nothing"}" : ""));
            }
        }
        TestContext.Out.WriteLine($"atomic link: {disk.Operations} cut points, {images} images, {failures.Count} failures");
        Assert.That(failures, Is.Empty, string.Join("\n", failures));
        Assert.That(images, Is.GreaterThanOrEqualTo(disk.Operations));
    }

    [Test]
    public void After_a_power_cut_at_any_write_or_sync_the_boot_state_file_is_the_old_or_the_new_state_never_torn()
    {
        var disk = new CrashDisk();
        const string path = Data + "/boot/state";
        var slots = BootSlots.Empty();
        slots.Written(BootSlot.A, "tsunagu-os 1.0");
        slots.MarkGood(BootSlot.A);
        slots.Written(BootSlot.B, "tsunagu-os 0.9");
        slots.Save(path, disk);
        disk.Settle();
        // an update's life in the boot state: the other slot written, activated, tried by the boot program, marked good;
        // then one that fails its tries and is given up; each step saved as the supervisor and the boot program do
        var steps = new (string What, Action<BootSlots> Change)[]
        {
            ("begin write b", s => s.BeginWrite(BootSlot.B, BootSlot.A)),
            ("written b", s => s.Written(BootSlot.B, "tsunagu-os 1.1")),
            ("activate b", s => s.Activate(BootSlot.B, 3)),
            ("boot picks b", s => s.PickSlot()),
            ("mark b good", s => s.MarkGood(BootSlot.B)),
            ("begin write a", s => s.BeginWrite(BootSlot.A, BootSlot.B)),
            ("written a", s => s.Written(BootSlot.A, "tsunagu-os 1.2")),
            ("activate a", s => s.Activate(BootSlot.A, 1)),
            ("boot picks a", s => s.PickSlot()),
            ("boot gives up on a", s => s.PickSlot()),
        };
        var spans = new List<(int Start, int End, string What, string Text)>();
        var initial = slots.File.ToString();
        foreach (var (what, change) in steps)
        {
            change(slots);
            var start = disk.Operations;
            slots.Save(path, disk);
            spans.Add((start, disk.Operations, what, slots.File.ToString()));
        }
        Assert.That(spans.Select(s => s.Text).Prepend(initial).Distinct().Count(), Is.EqualTo(steps.Length + 1), "every step changes the file");

        var images = 0;
        var failures = new List<string>();
        foreach (var cut in disk.Cuts())
        {
            images++;
            var old = spans.Where(s => s.End <= cut.Cut).Select(s => s.Text).DefaultIfEmpty(initial).Last();
            var inFlight = spans.Where(s => s.Start < cut.Cut && cut.Cut < s.End).ToList();
            string found;
            try
            {
                found = BootSlots.Load(path, new CrashDisk(cut.Image)).File.ToString();
            }
            catch (HalException e)
            {
                failures.Add($"cut {cut.Cut} ({cut.Mode}, after {cut.After}): unreadable: {e.Message}");
                continue;
            }
            if (found != old && !(inFlight.Count == 1 && found == inFlight[0].Text))
            {
                failures.Add($"cut {cut.Cut} ({cut.Mode}, after {cut.After}{(inFlight.Count == 1 ? ", saving '" + inFlight[0].What + "'" : "")}): " +
                             $"read [{found.ReplaceLineEndings(" ")}], expected [{old.ReplaceLineEndings(" ")}]" +
                             (inFlight.Count == 1 ? $" or [{inFlight[0].Text.ReplaceLineEndings(" ")}]" : ""));
            }
        }
        TestContext.Out.WriteLine($"boot state: {steps.Length} saves, {disk.Operations} cut points, {images} images, {failures.Count} failures");
        Assert.That(failures, Is.Empty, string.Join("\n", failures.Take(20)));
        Assert.That(disk.Operations, Is.GreaterThanOrEqualTo(steps.Length * 4), "each save is a write, a sync, a rename and a directory sync at least");
    }

    /// <summary>
    /// An update's switch as the installer does it (journal `switching` with the previous applications, each
    /// application's `current` re-pointed, journal `checking`, counter and keys committed, journal `installed`,
    /// journal removed), on one disk with the store: after every cut the update is committed (every link new,
    /// counter new) or not switched (every link old, counter old), or the journal says it is in flight and names the
    /// previous applications, so the restart rolls it back.
    /// </summary>
    [Test]
    public void After_a_power_cut_at_any_write_or_sync_an_update_is_committed_or_can_be_rolled_back()
    {
        var disk = new CrashDisk();
        var old = new Dictionary<string, string> { ["firewall"] = "1.0.0", ["vcp"] = "1.0.0" };
        var next = new Dictionary<string, string> { ["firewall"] = "1.1.0", ["vcp"] = "1.1.0" };
        string Link(string app) => $"{Data}/apps/{app}/current";
        var (c0, c1) = (new BundleCounter(10, "b1"), new BundleCounter(20, "b2"));
        using (var store = StateStore.Open(Data, disk))
        {
            store.Set(StateKeys.BundleCounter, c0, FirmwareJson.Default.BundleCounter);
            foreach (var (app, version) in old) { AtomicLink.Point(Link(app), version, disk); }
            disk.Settle();
            PendingUpdate Journal(string phase) => new("u2", phase, null, 1, Bundle: c1, ToPattern: "p2",
                PreviousApps: phase is PendingUpdate.Switching or PendingUpdate.Checking ? old : null, Entries: 1);
            store.Set(StateKeys.PendingUpdate, Journal(PendingUpdate.Verified), FirmwareJson.Default.PendingUpdate);
            store.Set(StateKeys.PendingUpdate, Journal(PendingUpdate.Switching), FirmwareJson.Default.PendingUpdate);
            foreach (var (app, version) in next) { AtomicLink.Point(Link(app), version, disk); }
            store.Set(StateKeys.PendingUpdate, Journal(PendingUpdate.Checking), FirmwareJson.Default.PendingUpdate);
            store.Set(StateKeys.BundleCounter, c1, FirmwareJson.Default.BundleCounter);
            store.Set(StateKeys.TrustedKeys, new TrustedKeys(["key-2"], []), FirmwareJson.Default.TrustedKeys);
            store.Set(StateKeys.PendingUpdate, Journal(PendingUpdate.Installed), FirmwareJson.Default.PendingUpdate);
            store.Delete(StateKeys.PendingUpdate);
        }

        var images = 0;
        var (committed, notSwitched, rollBack) = (0, 0, 0);
        var failures = new List<string>();
        foreach (var cut in disk.Cuts())
        {
            images++;
            var links = old.Keys.ToDictionary(a => a, a => CrashDisk.ReadLink(cut.Image, Link(a)));
            using var store = StateStore.Open(Data, new CrashDisk(cut.Image));
            var journal = store.Get(StateKeys.PendingUpdate, FirmwareJson.Default.PendingUpdate);
            var counter = store.Get(StateKeys.BundleCounter, FirmwareJson.Default.BundleCounter);
            var where = $"cut {cut.Cut} ({cut.Mode}, after {cut.After}): links {string.Join(",", links.Select(l => $"{l.Key}->{l.Value}"))}, " +
                        $"counter {counter?.Version}, journal {journal?.Phase ?? "none"}";
            if (journal is { InFlight: true })
            {
                rollBack++;
                if (journal.PreviousApps is not { } previous || !previous.OrderBy(p => p.Key).SequenceEqual(old.OrderBy(p => p.Key)) ||
                    links.Any(l => l.Value != old[l.Key] && l.Value != next[l.Key]) || (counter != c0 && counter != c1))
                {
                    failures.Add(where + ": in flight, but cannot be rolled back to the previous applications");
                }
            }
            else if (links.All(l => l.Value == next[l.Key]) && counter == c1)
            {
                committed++;
            }
            else if (links.All(l => l.Value == old[l.Key]) && counter == c0 && journal?.Phase != PendingUpdate.Installed)
            {
                notSwitched++;
            }
            else
            {
                failures.Add(where + ": neither committed nor rolled back, and no journal to roll back with");
            }
        }
        TestContext.Out.WriteLine($"update switch: {disk.Operations} cut points, {images} images: {committed} committed, {notSwitched} not switched, " +
                                  $"{rollBack} in flight with a journal to roll back; {failures.Count} failures");
        Assert.That(failures, Is.Empty, string.Join("\n", failures.Take(20)));
        Assert.That(committed, Is.GreaterThan(0));
        Assert.That(notSwitched, Is.GreaterThan(0));
        Assert.That(rollBack, Is.GreaterThan(0));
    }

    /// <summary>Records the durable-file calls, in order, and passes them on to the real file system.</summary>
    private sealed class RecordingFileSystem : IDurableFileSystem
    {
        public List<string> Calls { get; } = [];
        private static readonly IDurableFileSystem Real = PosixFileSystem.Instance;
        public bool FileExists(string path) => Real.FileExists(path);
        public Stream OpenFile(string path) { Calls.Add($"open {path}"); return Real.OpenFile(path); }
        public void SyncFile(string path) { Calls.Add($"fsync {path}"); Real.SyncFile(path); }
        public void CreateSymbolicLink(string path, string target) { Calls.Add($"symlink {path}"); Real.CreateSymbolicLink(path, target); }
        public void Rename(string source, string destination) { Calls.Add($"rename {source} {destination}"); Real.Rename(source, destination); }
        public void DeleteFile(string path) { Calls.Add($"delete {path}"); Real.DeleteFile(path); }
        public void SyncDirectory(string path) { Calls.Add($"fsync-dir {path}"); Real.SyncDirectory(path); }
    }

    [Test]
    public void Staging_and_switching_an_application_syncs_every_file_and_directory_before_the_rename_and_the_directory_after()
    {
        var dir = Path.Combine(Path.GetTempPath(), "tsunagu-appstore-" + Guid.NewGuid().ToString("N"));
        try
        {
            var source = Path.Combine(dir, "source");
            Directory.CreateDirectory(Path.Combine(source, "bin"));
            File.WriteAllText(Path.Combine(source, "app.conf"), "a=1\n");
            File.WriteAllText(Path.Combine(source, "bin", "run"), "#!/bin/sh\n");
            var files = new RecordingFileSystem();
            var apps = new AppStore(Path.Combine(dir, "data"), files);
            apps.Stage("vcp", "1.1.0", source);
            apps.Switch("vcp", "1.1.0");
            var appDir = Path.Combine(apps.Root, "vcp");

            var calls = files.Calls;
            var publish = calls.FindIndex(c => c.StartsWith("rename ") && c.EndsWith(" " + Path.Combine(appDir, "1.1.0")));
            Assert.That(publish, Is.Not.Negative, string.Join("\n", calls));
            var staging = calls[publish].Split(' ')[1];
            foreach (var file in new[] { "app.conf", Path.Combine("bin", "run") })
            {
                Assert.That(calls.IndexOf($"fsync {Path.Combine(staging, file)}"), Is.InRange(0, publish - 1), $"{file} synced before the rename\n" + string.Join("\n", calls));
            }
            foreach (var sub in new[] { staging, Path.Combine(staging, "bin") })
            {
                Assert.That(calls.IndexOf($"fsync-dir {sub}"), Is.InRange(0, publish - 1), $"{sub} synced before the rename\n" + string.Join("\n", calls));
            }
            Assert.That(calls[publish + 1], Is.EqualTo($"fsync-dir {appDir}"), "the directory is synced right after the rename");

            var link = calls.FindIndex(c => c.StartsWith("rename ") && c.EndsWith(" " + Path.Combine(appDir, "current")));
            Assert.That(link, Is.GreaterThan(publish + 1));
            Assert.That(calls[link - 1], Does.StartWith($"symlink {appDir}/.current-"));
            Assert.That(calls[link + 1], Is.EqualTo($"fsync-dir {appDir}"), "the link's directory is synced right after the rename");
            Assert.That(apps.Current(), Is.EqualTo(new Dictionary<string, string> { ["vcp"] = "1.1.0" }));
            Assert.That(File.ReadAllText(Path.Combine(appDir, "current", "bin", "run")), Is.EqualTo("#!/bin/sh\n"));
        }
        finally
        {
            if (Directory.Exists(dir)) { Directory.Delete(dir, recursive: true); }
        }
    }

    [Test]
    public async Task Applying_a_service_revision_syncs_the_staged_revision_before_its_rename_and_each_directory_after_a_rename()
    {
        var root = Path.Combine(Path.GetTempPath(), "tsunagu-apply-sync-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(root);
        try
        {
            using var store = StateStore.Open(root);
            var files = new RecordingFileSystem();
            var environment = ServiceConfigTests.WithHdd with { RunDirectory = Path.Combine(root, "run"), StateDirectory = Path.Combine(root, "state") };
            using (var applier = new ServiceApplier(root, new Tsunagu.Hal.Simulated.SimulatedServiceManager(), environment, store,
                       new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UnixEpoch), _ => { }, TimeSpan.Zero, files))
            {
                await applier.StartAsync(CancellationToken.None);
                await applier.ApplyAsync(1, ServiceConfigTests.Valid(), CancellationToken.None);
                Assert.That(applier.CurrentRevision(), Is.EqualTo(1));
            }
            var calls = files.Calls;
            var services = Path.Combine(root, "services");
            string Context() => "\n" + string.Join("\n", calls);

            var publish = calls.FindIndex(c => c.StartsWith("rename ") && c.EndsWith(" " + Path.Combine(services, "rev-1")));
            Assert.That(publish, Is.Not.Negative, Context());
            var staging = calls[publish].Split(' ')[1];
            Assert.That(calls.IndexOf($"fsync-dir {staging}"), Is.InRange(0, publish - 1), "the staged revision's directory is synced before its rename" + Context());
            Assert.That(calls[publish + 1], Is.EqualTo($"fsync-dir {services}"), Context());

            var link = calls.FindIndex(c => c.StartsWith("rename ") && c.EndsWith(" " + Path.Combine(services, "current")));
            Assert.That(link, Is.GreaterThan(publish + 1), Context());
            Assert.That(calls[link + 1], Is.EqualTo($"fsync-dir {services}"), Context());

            var key = environment.VpnKeyFile;
            var keyRename = calls.FindIndex(c => c.StartsWith("rename ") && c.EndsWith(" " + key));
            Assert.That(keyRename, Is.Not.Negative, "the VPN key is created by a rename" + Context());
            var tmp = calls[keyRename].Split(' ')[1];
            Assert.That(calls[keyRename - 1], Is.EqualTo($"fsync {tmp}"), "the key is synced before its rename" + Context());
            Assert.That(calls[keyRename + 1], Is.EqualTo($"fsync-dir {Path.GetDirectoryName(key)}"), Context());
            Assert.That(File.ReadAllText(key).Trim(), Has.Length.EqualTo(44));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }
}
