using System.Net.Sockets;
using System.Text;
using Tsunagu.Firmware.Services;
using Tsunagu.Hal;

namespace Tsunagu.UnitTests.Services;

/// <summary>
/// The signature installer against a stand-in for clamd on its socket (answers RELOAD, writes what the test says to its
/// log): every way an install can end after the new database is in place leaves the directory as it was, unless clamd
/// confirmed the new set after the RELOAD.
/// </summary>
[NonParallelizable]
public class SignatureInstallerTests
{
    private static readonly byte[] Old = "44d88612fea8a8f36de82e1278abb02f:68:Old.Eicar\n"u8.ToArray();
    private static readonly byte[] New = "Tsunagu.Test.Marker:0:*:54534e554741\n"u8.ToArray();
    private string _root = "";
    private ServiceEnvironment _env = null!;
    private TimerCountingClock _time = null!;
    private readonly System.Collections.Concurrent.ConcurrentQueue<string> _log = new(); // written by the installer's tasks

    [SetUp]
    public void SetUp()
    {
        _root = Path.Combine(Path.GetTempPath(), "tsunagu-sig-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(_root);
        _env = Environment(1024);
        Directory.CreateDirectory(_env.RunDirectory);
        Directory.CreateDirectory(_env.SignatureDirectory);
        File.WriteAllBytes(Path.Combine(_env.SignatureDirectory, "tsunagu.ndb"), Old);
        _time = new TimerCountingClock(new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero));
        _log.Clear();
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_root, recursive: true);

    private ServiceEnvironment Environment(int memoryMegabytes) => new(
        BoardDescription.Simulated with { VirusScan = new BoardVirusScan(memoryMegabytes, "/usr/lib/c_icap") },
        Path.Combine(_root, "run"), Path.Combine(_root, "state"));

    private string LogFile => Path.Combine(_env.RunDirectory, "clamd.log");
    private string Target => Path.Combine(_env.SignatureDirectory, "tsunagu.ndb");
    private string[] Staging() => Directory.GetDirectories(Path.GetDirectoryName(_env.SignatureDirectory)!, ".clamav-staging-*");

    private SignatureInstaller Installer(RecordingRunner? runner = null, ServiceEnvironment? env = null, Func<string, long>? free = null,
        Tsunagu.Hal.Storage.IDurableFileSystem? files = null) =>
        new(env ?? _env, runner ?? new RecordingRunner(), _time, _log.Enqueue, files)
        {
            ReloadTimeout = TimeSpan.FromSeconds(30),
            FreeBytes = free ?? (_ => 1L << 40),
        };

    /// <summary>
    /// Moves the fake clock until <paramref name="task"/> is done, and only while the installer waits on it: to the end of
    /// its wait between two readings of clamd's log once clamd has dealt with every RELOAD it received (its log line written),
    /// or to the end of its wait for clamd's answer while clamd holds a RELOAD without a word. Nothing else moves it (not a busy machine that is slow to send the RELOAD, read the answer or poll
    /// the log), so each timeout counts only the waits it is meant to; real time bounds the whole only against a hang.
    /// </summary>
    private async Task Drive(Task task, FakeClamd clamd)
    {
        var poll = TimeSpan.FromMilliseconds(100); // the installer's wait between two readings of the log
        var deadline = DateTime.UtcNow.AddSeconds(120);
        while (!task.IsCompleted && DateTime.UtcNow < deadline)
        {
            var now = _time.GetUtcNow();
            if (_time.NextDue is { } due && ((due - now <= poll && clamd.Settled) || clamd.Held > 0))
            {
                _time.Advance(TimeSpan.FromTicks(Math.Max(1, (due - now).Ticks)));
            }
            else
            {
                await Task.Delay(5);
            }
        }
        Assert.That(task.IsCompleted, Is.True, "the install ended");
    }

    [Test]
    public async Task Only_a_reload_reported_after_the_reload_counts_also_when_clamd_rotated_its_log_meanwhile()
    {
        // the log holds earlier reloads; clamd rotates it (a new, shorter file) and then reports this reload
        File.WriteAllText(LogFile, string.Concat(Enumerable.Repeat("Database correctly reloaded (5 signatures)\nActivating the newly loaded database...\n", 40)));
        using var clamd = new FakeClamd(_env.ClamdSocket, reload =>
        {
            File.WriteAllText(LogFile, "Reading databases from /data/clamav\n");
            File.AppendAllText(LogFile, "Database correctly reloaded (7 signatures)\nActivating the newly loaded database...\n");
        });
        var runner = new RecordingRunner();
        var install = Installer(runner).InstallAsync("tsunagu.ndb", new MemoryStream(New), CancellationToken.None);
        await Drive(install, clamd);
        await install;
        Assert.That(File.ReadAllBytes(Target), Is.EqualTo(New));
        Assert.That(_log, Has.Some.Contains("clamd reloaded 7 signatures"), "the count of this reload, not of an earlier one");
        Assert.That(runner.Commands, Is.Empty, "a board that reloads concurrently loads no second copy: clamd is the check");
        Assert.That(Staging(), Is.Empty, "the previous database goes once the new one is confirmed");
        Assert.That(clamd.Reloads, Is.EqualTo(1));
    }

    [Test]
    public async Task Earlier_reloads_in_the_log_do_not_confirm_a_reload_that_never_reports()
    {
        File.WriteAllText(LogFile, "Database correctly reloaded (5 signatures)\n");
        using var clamd = new FakeClamd(_env.ClamdSocket, reload =>
        {
            if (reload == 2) { File.AppendAllText(LogFile, "Database correctly reloaded (5 signatures)\nActivating the newly loaded database...\n"); }
        });
        var install = Installer().InstallAsync("tsunagu.ndb", new MemoryStream(New), CancellationToken.None);
        await Drive(install, clamd);
        var e = Assert.ThrowsAsync<SignatureInstallException>(() => install);
        Assert.That(e!.Message, Does.Contain("did not finish reloading within 30 s"));
        Assert.That(File.ReadAllBytes(Target), Is.EqualTo(Old), "the previous database is back");
        Assert.That(clamd.Reloads, Is.EqualTo(2), "clamd was told to load the previous set again");
        Assert.That(Staging(), Is.Empty);
    }

    [Test]
    public async Task A_set_clamd_loaded_but_never_put_in_use_is_not_confirmed_and_the_previous_database_goes_back()
    {
        // clamd loads a set in a thread of its own and puts it in use later in its main loop: a download checked in between
        // is checked with the old set, so "correctly reloaded" alone does not confirm the install
        using var clamd = new FakeClamd(_env.ClamdSocket, reload => File.AppendAllText(LogFile, reload == 1
            ? "Database correctly reloaded (2 signatures)\nDatabase reload completed.\n"
            : "Database correctly reloaded (1 signatures)\nActivating the newly loaded database...\n"));
        var install = Installer().InstallAsync("tsunagu.ndb", new MemoryStream(New), CancellationToken.None);
        await Drive(install, clamd);
        var e = Assert.ThrowsAsync<SignatureInstallException>(() => install);
        Assert.That(e!.Message, Does.Contain("clamd loaded the set but did not put it in use within 30 s"));
        Assert.That(File.ReadAllBytes(Target), Is.EqualTo(Old), "the previous database is back");
        Assert.That(clamd.Reloads, Is.EqualTo(2), "and clamd was told to load it again");
        Assert.That(Staging(), Is.Empty);
    }

    [Test]
    public async Task A_cancelled_install_puts_the_previous_database_back_and_reloads_it()
    {
        var reloadSeen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var clamd = new FakeClamd(_env.ClamdSocket, reload =>
        {
            if (reload == 1) { reloadSeen.TrySetResult(); } // the new set: clamd is still loading when the caller gives up
            else { File.AppendAllText(LogFile, "Database correctly reloaded (1 signatures)\nActivating the newly loaded database...\n"); }
        });
        using var cts = new CancellationTokenSource();
        var install = Installer().InstallAsync("tsunagu.ndb", new MemoryStream(New), cts.Token);
        await reloadSeen.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.That(File.ReadAllBytes(Target), Is.EqualTo(New), "precondition: the new database is in place, the old one kept aside");
        await cts.CancelAsync();
        await Drive(install, clamd);
        Assert.CatchAsync<OperationCanceledException>(() => install);
        Assert.That(File.ReadAllBytes(Target), Is.EqualTo(Old), "the previous database is back");
        Assert.That(Directory.GetFiles(_env.SignatureDirectory).Select(Path.GetFileName), Is.EqualTo(new[] { "tsunagu.ndb" }));
        Assert.That(clamd.Reloads, Is.EqualTo(2), "clamd loads the previous set again");
        Assert.That(_log, Has.Some.Contains("clamd reloaded the previous 1 signatures"));
        Assert.That(Staging(), Is.Empty);
    }

    [Test]
    public async Task A_restore_whose_reload_clamd_never_answers_ends_by_its_own_timeout_with_the_previous_database_back()
    {
        // the new set fails to load; the restore's RELOAD then meets a clamd that accepts and never answers
        using var clamd = new FakeClamd(_env.ClamdSocket,
            reload => File.AppendAllText(LogFile, "ERROR: reload_th: Database load failed: Malformed database\nWARNING: Database reload failed, keeping the previous instance\n"),
            answers: reload => reload == 1);
        var installer = Installer();
        var install = installer.InstallAsync("tsunagu.ndb", new MemoryStream(New), CancellationToken.None);
        await Drive(install, clamd);
        var e = Assert.ThrowsAsync<SignatureInstallException>(() => install);
        Assert.That(e!.Message, Does.Contain("clamd failed to reload its database"), "the refusal of the new set is what the caller hears");
        Assert.That(clamd.Reloads, Is.EqualTo(2), "the restore sent its RELOAD");
        Assert.That(_log, Has.Some.Contains($"reloading the previous signatures failed too: signature database 'tsunagu.ndb': clamd did not answer RELOAD within {installer.ReloadAnswerTimeout.TotalSeconds:0} s"));
        Assert.That(File.ReadAllBytes(Target), Is.EqualTo(Old), "the previous database is back");
        Assert.That(Staging(), Is.Empty);
    }

    /// <summary>The real file system, recording renames and directory syncs in order.</summary>
    private sealed class Recording : Tsunagu.Hal.Storage.IDurableFileSystem
    {
        private static readonly Tsunagu.Hal.Storage.IDurableFileSystem Real = Tsunagu.Hal.Storage.PosixFileSystem.Instance;
        public List<string> Calls { get; } = [];
        public bool FileExists(string path) => Real.FileExists(path);
        public Stream OpenFile(string path) => Real.OpenFile(path);
        public void SyncFile(string path) { Calls.Add($"fsync {path}"); Real.SyncFile(path); }
        public void CreateSymbolicLink(string path, string target) => Real.CreateSymbolicLink(path, target);
        public void Rename(string source, string destination) { Calls.Add($"rename {source} {destination}"); Real.Rename(source, destination); }
        public void DeleteFile(string path) => Real.DeleteFile(path);
        public void SyncDirectory(string path) { Calls.Add($"fsync-dir {path}"); Real.SyncDirectory(path); }
    }

    [Test]
    public async Task The_previous_database_kept_aside_is_synced_in_its_directory_before_the_new_one_takes_its_name()
    {
        using var clamd = new FakeClamd(_env.ClamdSocket, _ => File.AppendAllText(LogFile, "Database correctly reloaded (1 signatures)\nActivating the newly loaded database...\n"));
        var files = new Recording();
        var install = Installer(files: files).InstallAsync("tsunagu.ndb", new MemoryStream(New), CancellationToken.None);
        await Drive(install, clamd);
        await install;
        var calls = files.Calls;
        var setAside = calls.FindIndex(c => c.StartsWith($"rename {Target} ", StringComparison.Ordinal));
        var renamedIn = calls.FindIndex(c => c.StartsWith("rename ", StringComparison.Ordinal) && c.EndsWith(" " + Target, StringComparison.Ordinal));
        Assert.That(setAside, Is.Not.Negative, string.Join("\n", calls));
        var staging = Path.GetDirectoryName(calls[setAside].Split(' ')[2])!;
        Assert.That(calls.IndexOf($"fsync-dir {staging}", setAside), Is.InRange(setAside + 1, renamedIn - 1), string.Join("\n", calls));
        Assert.That(File.ReadAllBytes(Target), Is.EqualTo(New));
    }

    [Test]
    public async Task A_set_clamd_refuses_is_taken_out_again_and_a_new_name_leaves_nothing_behind()
    {
        using var clamd = new FakeClamd(_env.ClamdSocket, reload => File.AppendAllText(LogFile, reload % 2 == 1
            ? "ERROR: reload_th: Database load failed: Malformed database\nWARNING: Database reload failed, keeping the previous instance\n"
            : "Database correctly reloaded (1 signatures)\nActivating the newly loaded database...\n"));
        foreach (var name in new[] { "tsunagu.ndb", "tsunagu-2.ndb" })
        {
            var install = Installer().InstallAsync(name, new MemoryStream(New), CancellationToken.None);
            await Drive(install, clamd);
            var e = Assert.ThrowsAsync<SignatureInstallException>(() => install);
            Assert.That(e!.Message, Does.Contain("clamd failed to reload its database").And.Contain("Malformed database"));
            Assert.That(Directory.GetFiles(_env.SignatureDirectory).Select(Path.GetFileName), Is.EqualTo(new[] { "tsunagu.ndb" }), name);
            Assert.That(File.ReadAllBytes(Target), Is.EqualTo(Old), name);
        }
        Assert.That(clamd.Reloads, Is.EqualTo(4), "each refused set was followed by a reload of the previous one");
        Assert.That(Staging(), Is.Empty);
    }

    [Test]
    public async Task Too_little_free_space_on_data_is_refused_before_anything_is_written()
    {
        using var clamd = new FakeClamd(_env.ClamdSocket, _ => File.AppendAllText(LogFile, "Database correctly reloaded (1 signatures)\nActivating the newly loaded database...\n"));
        var e = Assert.ThrowsAsync<SignatureSpaceException>(() => Installer(free: _ => 10_000_000).InstallAsync("tsunagu.ndb", new MemoryStream(New), CancellationToken.None));
        Assert.That((e!.Needed, e.Free), Is.EqualTo((New.Length + SignatureInstaller.ReserveBytes, 10_000_000L)));
        Assert.That(e.Message, Does.Contain($"needs {New.Length + SignatureInstaller.ReserveBytes} bytes free").And.Contain("10000000 are free"));
        Assert.That(File.ReadAllBytes(Target), Is.EqualTo(Old));
        Assert.That(Staging(), Is.Empty);
        Assert.That(clamd.Reloads, Is.Zero);
        await Task.CompletedTask;
    }

    [Test]
    public async Task With_virus_checking_off_a_database_is_checked_alone_and_placed_without_a_reload()
    {
        // no clamd socket at all: a reload would fail with "clamd did not take the reload"
        var runner = new RecordingRunner { Respond = c => new CommandResult(c, 0, "Known viruses: 1\n", "", false) };
        var installer = new SignatureInstaller(_env, runner, _time, _log.Enqueue)
        {
            ReloadTimeout = TimeSpan.FromSeconds(30), FreeBytes = _ => 1L << 40, ClamdRuns = () => false,
        };
        // what a power cut during an earlier install left, and a log clamd set aside when it rotated its own
        var leftover = Path.Combine(Path.GetDirectoryName(_env.SignatureDirectory)!, ".clamav-staging-0123456789abcdef");
        Directory.CreateDirectory(leftover);
        File.WriteAllBytes(Path.Combine(leftover, "tsunagu.ndb.previous"), Old);
        var rotated = Path.Combine(_env.RunDirectory, "clamd-20300101_000000.log");
        File.WriteAllText(rotated, "old lines\n");
        await installer.InstallAsync("tsunagu.ndb", new MemoryStream(New), CancellationToken.None);
        Assert.That(File.ReadAllBytes(Target), Is.EqualTo(New), "placed for clamd's next start");
        Assert.That((Directory.Exists(leftover), File.Exists(rotated)), Is.EqualTo((false, false)), "leftovers removed before the install");
        Assert.That(runner.Commands, Has.Count.EqualTo(1).And.All.StartsWith("clamscan --database="), "checked alone, clamd holding no memory");
        Assert.That(_log, Has.Some.Contains("clamd is not running"));
        Assert.That(Staging(), Is.Empty);

        // one that does not load alone is refused and the previous one stays
        runner.Respond = c => new CommandResult(c, 2, "", "Malformed database", false);
        var e = Assert.ThrowsAsync<SignatureInstallException>(() => installer.InstallAsync("tsunagu.ndb", new MemoryStream(Old), CancellationToken.None));
        Assert.That(e!.Message, Does.Contain("does not load on its own"));
        Assert.That(File.ReadAllBytes(Target), Is.EqualTo(New));

        // and a removal (a bundle rolled back) takes it out without a reload
        await installer.RemoveAsync("tsunagu.ndb", CancellationToken.None);
        Assert.That(File.Exists(Target), Is.False);
        Assert.That(Staging(), Is.Empty);
    }

    [Test]
    public async Task Removing_the_last_database_does_not_ask_a_running_clamd_to_load_an_empty_set()
    {
        using var clamd = new FakeClamd(_env.ClamdSocket, reload => File.AppendAllText(LogFile, "Database correctly reloaded (1 signatures)\nActivating the newly loaded database...\n"));
        var installer = Installer();
        var second = Path.Combine(_env.SignatureDirectory, "second.hdb");
        File.WriteAllBytes(second, Old);
        // not the last: clamd loads the rest
        var removal = installer.RemoveAsync("second.hdb", CancellationToken.None);
        await Drive(removal, clamd);
        await removal;
        Assert.That((File.Exists(second), clamd.Reloads), Is.EqualTo((false, 1)), "removed, and clamd loaded the rest");

        // the last one: taken out, clamd not told (the refresh after the update stops it)
        await installer.RemoveAsync("tsunagu.ndb", CancellationToken.None);
        Assert.That(File.Exists(Target), Is.False);
        Assert.That(_env.SignaturesInstalled, Is.False);
        Assert.That(clamd.Reloads, Is.EqualTo(1), "no reload of an empty set (clamd refuses one)");
        Assert.That(_log, Has.Some.Contains("it was the last database"));
        Assert.That(Staging(), Is.Empty);
    }

    [Test]
    public async Task A_board_without_memory_for_two_databases_checks_the_new_one_alone_and_only_up_to_its_bound()
    {
        var small = Environment(256);
        using var clamd = new FakeClamd(small.ClamdSocket, _ => File.AppendAllText(LogFile, "Database correctly reloaded (2 signatures)\nActivating the newly loaded database...\n"));
        var runner = new RecordingRunner { Respond = c => new CommandResult(c, 0, "Known viruses: 1\n", "", false) };
        var installer = Installer(runner, small);
        Assert.That(installer.SmallBoardCheckBytes, Is.EqualTo(16L * 1024 * 1024));

        // larger than the board checks: refused before it is written (the stream is not even read)
        var big = new MemoryStream(New);
        var e = Assert.ThrowsAsync<SignatureInstallException>(() => installer.InstallAsync("tsunagu-big.ndb", big, installer.SmallBoardCheckBytes + 1, CancellationToken.None));
        Assert.That(e!.Message, Does.Contain("the most this board checks before a reload"));
        Assert.That((big.Position, runner.Commands.Count, clamd.Reloads), Is.EqualTo((0L, 0, 0)));

        var install = installer.InstallAsync("tsunagu.ndb", new MemoryStream(New), CancellationToken.None);
        await Drive(install, clamd);
        await install;
        Assert.That(runner.Commands, Has.Count.EqualTo(1).And.All.StartsWith("clamscan --database="), "the new database alone, once");
        Assert.That(File.ReadAllBytes(Target), Is.EqualTo(New));

        // one clamscan cannot load: clamd never sees it (a failed reload here would leave clamd unable to scan)
        runner.Respond = c => new CommandResult(c, 2, "", "Malformed database", false);
        e = Assert.ThrowsAsync<SignatureInstallException>(() => installer.InstallAsync("tsunagu.ndb", new MemoryStream(Old), CancellationToken.None));
        Assert.That(e!.Message, Does.Contain("does not load on its own"));
        Assert.That((File.ReadAllBytes(Target), clamd.Reloads), Is.EqualTo((New, 1)));
    }

    [Test]
    public void A_database_that_is_not_what_was_announced_is_refused_and_changes_nothing()
    {
        var installer = Installer();
        Assert.ThrowsAsync<SignatureInstallException>(() => installer.InstallAsync("tsunagu.ndb", new MemoryStream(New), New.Length + 5, CancellationToken.None), "shorter than announced");
        Assert.ThrowsAsync<SignatureInstallException>(() => installer.InstallAsync("tsunagu.ndb", new MemoryStream(New), New.Length - 5, CancellationToken.None), "longer than announced");
        Assert.ThrowsAsync<SignatureInstallException>(() => installer.InstallAsync("tsunagu.ndb", new MemoryStream(), CancellationToken.None), "empty");
        Assert.ThrowsAsync<SignatureInstallException>(() => installer.InstallAsync("tsunagu.ndb", new MemoryStream(New), SignatureInstaller.MaxDatabaseBytes + 1, CancellationToken.None));
        foreach (var name in new[] { "../evil.ndb", "x.ndb/..", "Tsunagu.NDB", "a.conf", "tsunagu\n.ndb", "", new string('a', 70) + ".ndb" })
        {
            Assert.ThrowsAsync<SignatureInstallException>(() => installer.InstallAsync(name, new MemoryStream(New), CancellationToken.None), name);
        }
        Assert.That(File.ReadAllBytes(Target), Is.EqualTo(Old));
        Assert.That(Directory.GetFiles(_env.SignatureDirectory).Select(Path.GetFileName), Is.EqualTo(new[] { "tsunagu.ndb" }));
        Assert.That(Staging(), Is.Empty);
    }

    [Test]
    public void The_log_cursor_reads_whole_lines_once_and_a_rotated_log_from_its_start()
    {
        File.WriteAllText(LogFile, "old line\n");
        var cursor = new ClamdLogCursor(LogFile);
        Assert.That(cursor.ReadNewLines(), Is.Empty);
        File.AppendAllText(LogFile, "first\nhalf");
        Assert.That(cursor.ReadNewLines(), Is.EqualTo(new[] { "first" }));
        File.AppendAllText(LogFile, " done\n");
        Assert.That(cursor.ReadNewLines(), Is.EqualTo(new[] { "half done" }));
        File.WriteAllText(LogFile, "rotated\n");
        Assert.That(cursor.ReadNewLines(), Is.EqualTo(new[] { "rotated" }));
        File.Delete(LogFile);
        Assert.That(cursor.ReadNewLines(), Is.Empty);
    }

    /// <summary>clamd's socket: answers each RELOAD with RELOADING, then calls the given action with its number (from 1).</summary>
    private sealed class FakeClamd : IDisposable
    {
        private readonly Socket _listener = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _loop;
        private int _reloads;
        private int _held;
        private int _handled;

        /// <param name="answers">Whether clamd answers the RELOAD of that number (from 1); one it does not answer holds the connection open without a word.</param>
        public FakeClamd(string path, Action<int> onReload, Func<int, bool>? answers = null)
        {
            _listener.Bind(new UnixDomainSocketEndPoint(path));
            _listener.Listen(8);
            _loop = Task.Run(async () =>
            {
                while (!_stop.IsCancellationRequested)
                {
                    Socket client;
                    try { client = await _listener.AcceptAsync(_stop.Token); }
                    catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException) { return; }
                    using (client)
                    {
                        var request = new List<byte>();
                        var buffer = new byte[64];
                        while (!request.Contains(0))
                        {
                            var n = await client.ReceiveAsync(buffer, SocketFlags.None);
                            if (n == 0) { break; }
                            request.AddRange(buffer[..n]);
                        }
                        Assert.That(Encoding.ASCII.GetString([.. request]), Is.EqualTo("zRELOAD\0"));
                        var number = Interlocked.Increment(ref _reloads);
                        if (answers is not null && !answers(number))
                        {
                            // held without a word until the installer gives up on it and closes the connection
                            Interlocked.Increment(ref _held);
                            try
                            {
                                while (await client.ReceiveAsync(buffer, SocketFlags.None, _stop.Token) > 0) { }
                            }
                            catch (Exception e) when (e is OperationCanceledException or SocketException) { return; }
                            finally { Interlocked.Decrement(ref _held); }
                            Interlocked.Increment(ref _handled);
                            continue;
                        }
                        // the log line is written before the answer: the installer's log cursor was taken before the RELOAD,
                        // so it still reads the line, and never waits on a line the stand-in has yet to write
                        onReload(number);
                        Interlocked.Increment(ref _handled);
                        await client.SendAsync("RELOADING\0"u8.ToArray(), SocketFlags.None);
                    }
                }
            });
        }

        public int Reloads => Volatile.Read(ref _reloads);

        /// <summary>RELOADs received and held without an answer whose connection is still open.</summary>
        public int Held => Volatile.Read(ref _held);

        /// <summary>
        /// Whether every RELOAD received has been dealt with: its log handler ran (before the answer), or it was held and the
        /// installer closed it. Until then the installer's next reading of the log may come before the handler's line.
        /// </summary>
        public bool Settled => Volatile.Read(ref _handled) == Reloads;

        public void Dispose()
        {
            _stop.Cancel();
            _listener.Dispose();
            _loop.Wait(TimeSpan.FromSeconds(10));
            _stop.Dispose();
        }
    }
}
