using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Tsunagu.Hal;
using Tsunagu.Hal.Storage;
using Tsunagu.Protocol.Bundles;

namespace Tsunagu.Firmware.Services;

/// <summary>A signature database was refused (name, size, or it does not load on its own) or clamd did not take it; the old signatures stay.</summary>
public class SignatureInstallException(string database, string message, Exception? inner = null)
    : Exception($"signature database '{database}': {message}", inner)
{
    public string Database { get; } = database;
}

/// <summary>`data` has too little free space for the database; nothing was written.</summary>
public sealed class SignatureSpaceException(string database, long needed, long free)
    : SignatureInstallException(database, $"needs {needed} bytes free on data (the database and a reserve of {SignatureInstaller.ReserveBytes}), {free} are free")
{
    public long Needed { get; } = needed;
    public long Free { get; } = free;
}

/// <summary>
/// Installs one ClamAV signature database into the signature directory on `data` (<see cref="ServiceEnvironment.SignatureDirectory"/>,
/// never the read-only OS) and has clamd load it: free space on `data` is checked first, the database is written to a
/// staging directory beside the signature directory, renamed into place (a database of the same name is kept in the
/// staging directory until clamd confirmed the new set), then clamd is told to RELOAD and its log says the outcome.
/// <para>
/// Any failure after the rename (clamd refused the set, the log did not say in time, the log could not be read, the caller
/// cancelled) puts the previous database back and has clamd load it again; the kept previous database is deleted only once
/// clamd confirmed the new set, or once it is back in place.
/// </para>
/// <para>
/// Validation before clamd sees the database depends on the board's reload mode (<see cref="ServiceRenderer.VirusScanLimits"/>):
/// a board with memory for two databases reloads concurrently, and clamd itself is the check (a set it cannot load leaves
/// the previous one in force, and the database is taken out again); a board without it frees the old database before
/// loading the new one, so a set clamd cannot load would leave it unable to scan: there the new database is first loaded
/// alone by `clamscan`, and only a database up to <see cref="SmallBoardCheckBytes"/> is accepted, which bounds the memory
/// of that second load.
/// </para>
/// </summary>
public sealed class SignatureInstaller(ServiceEnvironment env, ICommandRunner runner, TimeProvider time, Action<string> log,
    IDurableFileSystem? files = null) : Updates.ISignatureDatabases
{
    private readonly IDurableFileSystem _files = files ?? PosixFileSystem.Instance;

    /// <summary>The largest database accepted (ClamAV's full main database is about 160 MB).</summary>
    public const long MaxDatabaseBytes = SignatureDatabases.MaxBytes;

    /// <summary>What stays free on `data` after the database is written (the state store, the services' revisions, leases).</summary>
    public const long ReserveBytes = 16L * 1024 * 1024;

    /// <summary>How long clamd may take to load the new database set (a full database takes tens of seconds on a small board).</summary>
    public TimeSpan ReloadTimeout { get; init; } = ServiceCatalog.SignatureLoadTimeout;

    /// <summary>
    /// How long clamd may take to answer RELOAD on its socket (it answers before it loads anything): every RELOAD, the
    /// restore's included, which runs without the caller's token, ends by then.
    /// </summary>
    public TimeSpan ReloadAnswerTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Whether clamd runs now (the configuration in force enables virus checking and signatures are installed:
    /// <see cref="ServiceRenderer.VirusScanRuns"/>). When it does not, a database is checked alone by `clamscan` (clamd holds
    /// no memory then), placed, and loaded by clamd when it starts (virus checking turned on, or the refresh after the
    /// update that installed the first signatures); nothing is reloaded.
    /// </summary>
    public Func<bool> ClamdRuns { get; init; } = () => true;

    /// <summary>Free bytes on the file system holding a path (tests replace it).</summary>
    public Func<string, long> FreeBytes { get; init; } = path => new DriveInfo(path).AvailableFreeSpace;

    /// <summary>
    /// On a board that reloads without a second database in memory, the largest database loaded alone by `clamscan` before
    /// clamd sees it: a sixteenth of the board's virus-scan memory (the load of a database takes several times its size).
    /// </summary>
    public long SmallBoardCheckBytes => (env.Board.VirusScan?.MemoryMegabytes ?? BoardVirusScan.MinMemoryMegabytes) * 1024L * 1024 / 16;

    /// <summary>Whether clamd reloads concurrently here (and so is the check itself).</summary>
    private bool ConcurrentReload => env.Board.VirusScan is { } scan && ServiceRenderer.VirusScanLimits(scan).ConcurrentReload;

    /// <summary>A database file name (<see cref="SignatureDatabases.IsName"/>, the grammar a bundle's signatures payload is checked against).</summary>
    public static bool IsDatabaseName(string? name) => SignatureDatabases.IsName(name);

    /// <summary>Installs a database from a seekable stream (its remaining length is the database's size).</summary>
    public Task InstallAsync(string name, Stream content, CancellationToken ct) =>
        InstallAsync(name, content, content.CanSeek ? content.Length - content.Position : throw new ArgumentException("the stream's length is not known: give it", nameof(content)), ct);

    /// <summary>Installs <paramref name="content"/> (exactly <paramref name="length"/> bytes) as <paramref name="name"/> and reloads clamd.</summary>
    /// <exception cref="SignatureSpaceException">Too little free space on `data`; nothing was written.</exception>
    /// <exception cref="SignatureInstallException">Refused or not taken by clamd; the signature directory is as it was.</exception>
    /// <exception cref="OperationCanceledException">Cancelled; the signature directory is as it was (clamd was told to load it again).</exception>
    public async Task InstallAsync(string name, Stream content, long length, CancellationToken ct)
    {
        if (!IsDatabaseName(name))
        {
            throw new SignatureInstallException(name.Length > 64 ? name[..64] : name, "not a database file name (lower-case letters, digits, '._-' and a ClamAV database extension)");
        }
        if (length <= 0) { throw new SignatureInstallException(name, "is empty"); }
        if (length > MaxDatabaseBytes) { throw new SignatureInstallException(name, $"{length} bytes is larger than {MaxDatabaseBytes} bytes"); }
        var running = ClamdRuns();
        var check = !ConcurrentReload || !running;
        if (check && running && length > SmallBoardCheckBytes)
        {
            throw new SignatureInstallException(name, $"{length} bytes is larger than {SmallBoardCheckBytes} bytes, the most this board checks before a reload " +
                                                      "(it has no memory for a second database)");
        }
        var directory = env.SignatureDirectory;
        Directory.CreateDirectory(directory);
        RemoveLeftovers();
        var free = FreeBytes(directory);
        if (free < length + ReserveBytes)
        {
            throw new SignatureSpaceException(name, length + ReserveBytes, free);
        }

        var staging = Path.Combine(Path.GetDirectoryName(directory)!, $".clamav-staging-{Guid.NewGuid():N}");
        Directory.CreateDirectory(staging);
        var target = Path.Combine(directory, name);
        var previous = Path.Combine(staging, name + ".previous");
        var placed = false; // the new database is in the signature directory
        var replaced = false; // ... and the previous one waits in staging
        var settled = false; // the new set is confirmed, or the previous state is back: staging may go
        try
        {
            var staged = Path.Combine(staging, name);
            await CopyExactAsync(name, content, length, staged, ct);
            if (check) { await CheckLoadsAsync(name, staging, ct); }

            var cursor = new ClamdLogCursor(ClamdLog);
            replaced = File.Exists(target);
            if (replaced)
            {
                // the previous database waits in staging for a restore by this install; the sync only orders the two renames
                // (after a power cut RemoveLeftovers deletes staging: only the signature directory's copy is durable)
                _files.Rename(target, previous);
                _files.SyncDirectory(staging);
            }
            _files.Rename(staged, target);
            placed = true;
            _files.SyncDirectory(directory);
            var signatures = running ? await ReloadAsync(name, cursor, ct) : (long?)null;
            settled = true;
            log($"signatures: {name} installed ({length} bytes{(replaced ? ", replacing the previous one" : "")}); " +
                (signatures is { } n ? $"clamd reloaded {n} signatures" : "clamd is not running (virus checking is off, or waited for these first signatures) and loads them when it starts"));
        }
        catch (Exception e) when (placed && !settled)
        {
            // whatever ended the wait, cancellation included: the previous state goes back before the exception goes on
            settled = await RestoreAsync(name, target, previous, replaced, e, running);
            throw;
        }
        finally
        {
            if (!placed || settled)
            {
                Directory.Delete(staging, recursive: true);
            }
            else
            {
                log($"signatures: {name}: the previous database could not be put back; it is kept in {staging}");
            }
        }
    }

    public string? Installed(string name)
    {
        if (!IsDatabaseName(name)) { return null; }
        var path = Path.Combine(env.SignatureDirectory, name);
        return File.Exists(path) ? path : null;
    }

    /// <summary>
    /// Removes <paramref name="name"/> (a bundle rolled back that had added it) and has clamd load the rest; the database is
    /// kept aside until clamd confirmed, and put back on any failure, cancellation included.
    /// </summary>
    /// <exception cref="SignatureInstallException">clamd did not take the set without it; the database is back.</exception>
    public async Task RemoveAsync(string name, CancellationToken ct)
    {
        if (!IsDatabaseName(name)) { throw new SignatureInstallException(name.Length > 64 ? name[..64] : name, "not a database file name"); }
        var target = Path.Combine(env.SignatureDirectory, name);
        if (!File.Exists(target)) { return; }
        RemoveLeftovers();
        var staging = Path.Combine(Path.GetDirectoryName(env.SignatureDirectory)!, $".clamav-staging-{Guid.NewGuid():N}");
        Directory.CreateDirectory(staging);
        var previous = Path.Combine(staging, name + ".previous");
        var moved = false;
        var settled = false;
        var running = ClamdRuns();
        try
        {
            var cursor = new ClamdLogCursor(ClamdLog);
            _files.Rename(target, previous);
            moved = true;
            _files.SyncDirectory(env.SignatureDirectory);
            // clamd does not load an empty set (its reload fails, and a board without memory for two databases has freed
            // the old one by then): after the last database it is not told, and keeps what it has loaded until the refresh
            // after the update stops it (virus checking waits for signatures again: ServiceRenderer.VirusScanWaits)
            var last = !env.SignaturesInstalled;
            var signatures = running && !last ? await ReloadAsync(name, cursor, ct) : (long?)null;
            settled = true;
            log($"signatures: {name} removed; " + (signatures is { } n ? $"clamd reloaded {n} signatures"
                : running ? "it was the last database: clamd is not told to reload (it loads no empty set); the refresh after the update stops virus checking until signatures come again"
                : "clamd is not running (virus checking is off, or waits for signatures)"));
        }
        catch (Exception e) when (moved && !settled)
        {
            settled = await RestoreAsync(name, target, previous, replaced: true, e, running);
            throw;
        }
        finally
        {
            if (!moved || settled) { Directory.Delete(staging, recursive: true); }
            else { log($"signatures: {name}: the database could not be put back; it is kept in {staging}"); }
        }
    }

    /// <summary>
    /// What earlier installs left when the power was cut (staging directories beside the signature directory: a staged
    /// database and a kept previous one, up to twice the largest database) and the logs clamd set aside when it rotated
    /// its own (`clamd-*.log`): removed before each install or removal (they run one at a time, under the updater).
    /// </summary>
    private void RemoveLeftovers()
    {
        foreach (var stale in Directory.EnumerateDirectories(Path.GetDirectoryName(env.SignatureDirectory)!, ".clamav-staging-*"))
        {
            Directory.Delete(stale, recursive: true);
            log($"signatures: removed {Path.GetFileName(stale)}, left by an install that did not finish");
        }
        if (Directory.Exists(env.RunDirectory))
        {
            foreach (var rotated in Directory.EnumerateFiles(env.RunDirectory, "clamd-*.log"))
            {
                File.Delete(rotated);
            }
        }
    }

    /// <summary>Puts the previous database back and has clamd load the set again; true when the directory is as it was.</summary>
    private async Task<bool> RestoreAsync(string name, string target, string previous, bool replaced, Exception cause, bool running)
    {
        try
        {
            File.Delete(target);
            if (replaced) { _files.Rename(previous, target); }
            _files.SyncDirectory(env.SignatureDirectory);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            log($"signatures: {name} refused ({cause.Message}), and putting the previous database back failed: {e.Message}");
            return false;
        }
        if (!running)
        {
            log($"signatures: {name} refused ({cause.Message}); the previous database is back (clamd is not running)");
            return true;
        }
        try
        {
            // not the caller's token: a cancelled install still leaves clamd on the set on disk (bounded by the reload timeout)
            var signatures = await ReloadAsync(name, new ClamdLogCursor(ClamdLog), CancellationToken.None);
            log($"signatures: {name} refused ({cause.Message}); clamd reloaded the previous {signatures} signatures");
        }
        catch (SignatureInstallException e)
        {
            log($"signatures: {name} refused ({cause.Message}), and reloading the previous signatures failed too: {e.Message}");
        }
        return true;
    }

    private static async Task CopyExactAsync(string name, Stream content, long length, string path, CancellationToken ct)
    {
        await using (var output = new FileStream(path, FileMode.CreateNew, FileAccess.Write))
        {
            var buffer = new byte[81920];
            long total = 0;
            int n;
            while ((n = await content.ReadAsync(buffer, ct)) > 0)
            {
                total += n;
                if (total > length)
                {
                    throw new SignatureInstallException(name, $"longer than the {length} bytes announced");
                }
                await output.WriteAsync(buffer.AsMemory(0, n), ct);
            }
            if (total != length) { throw new SignatureInstallException(name, $"{total} bytes, not the {length} announced"); }
            output.Flush(flushToDisk: true);
        }
    }

    /// <summary>Loads the staged database alone with clamscan, scanning an empty file: it must load and hold at least one signature.</summary>
    private async Task CheckLoadsAsync(string name, string staging, CancellationToken ct)
    {
        var empty = Path.Combine(staging, "empty");
        await File.WriteAllBytesAsync(empty, [], ct);
        var result = await runner.RunAsync(new CommandLine("clamscan", $"--database={Path.Combine(staging, name)}", empty),
            new CommandOptions { Timeout = ReloadTimeout }, ct);
        var known = KnownViruses.Match(result.Output);
        if (!result.Succeeded || !known.Success || long.Parse(known.Groups[1].Value, CultureInfo.InvariantCulture) < 1)
        {
            throw new SignatureInstallException(name, $"does not load on its own (clamscan exit {result.ExitCode}): {result.Diagnostic()}");
        }
    }

    private static readonly Regex KnownViruses = new(@"^Known viruses: (\d{1,12})$", RegexOptions.Multiline | RegexOptions.CultureInvariant);

    private string ClamdLog => Path.Combine(env.RunDirectory, "clamd.log");

    /// <summary>
    /// RELOAD, then waits for clamd's log to say, after the RELOAD, that the new set is loaded and then in use (or that the
    /// reload failed). With concurrent reload (clamd's source, 1.4) the set is loaded in a thread of its own ("Database
    /// correctly reloaded") while the main loop goes on handing out scans with the old set, and the main loop puts it in
    /// use later ("Activating the newly loaded database...", just before the swap): a download checked between the two is
    /// checked with the old set. Without concurrent reload the main loop waits for the load, and the lines come together.
    /// </summary>
    /// <returns>How many signatures clamd loaded.</returns>
    private async Task<long> ReloadAsync(string name, ClamdLogCursor cursor, CancellationToken ct)
    {
        using (var answer = new CancellationTokenSource(ReloadAnswerTimeout, time))
        using (var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, answer.Token))
        {
            try
            {
                await ClamdControl.ReloadAsync(env.ClamdSocket, linked.Token);
            }
            catch (ClamdException e)
            {
                throw new SignatureInstallException(name, $"clamd did not take the reload: {e.Message}", e);
            }
            catch (OperationCanceledException e) when (answer.IsCancellationRequested && !ct.IsCancellationRequested)
            {
                throw new SignatureInstallException(name, $"clamd did not answer RELOAD within {ReloadAnswerTimeout.TotalSeconds:0} s", e);
            }
        }
        var deadline = time.GetUtcNow() + ReloadTimeout;
        long? loaded = null;
        while (true)
        {
            IReadOnlyList<string> lines;
            try
            {
                lines = cursor.ReadNewLines();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new SignatureInstallException(name, $"clamd's log {ClamdLog} could not be read: {e.Message}", e);
            }
            foreach (var line in lines)
            {
                if (line.Contains("Database reload failed", StringComparison.Ordinal) || line.Contains("Database load failed", StringComparison.Ordinal))
                {
                    throw new SignatureInstallException(name, $"clamd failed to reload its database: {line.Trim()}");
                }
                if (loaded is null && Reloaded.Match(line) is { Success: true } ok)
                {
                    loaded = long.Parse(ok.Groups[1].Value, CultureInfo.InvariantCulture);
                }
                else if (loaded is { } count && line.Contains(Activating, StringComparison.Ordinal))
                {
                    return count;
                }
            }
            if (time.GetUtcNow() >= deadline)
            {
                throw new SignatureInstallException(name, loaded is null
                    ? $"clamd did not finish reloading within {ReloadTimeout.TotalSeconds:0} s"
                    : $"clamd loaded the set but did not put it in use within {ReloadTimeout.TotalSeconds:0} s");
            }
            await Task.Delay(TimeSpan.FromMilliseconds(100), time, ct);
        }
    }

    private const string Activating = "Activating the newly loaded database";

    private static readonly Regex Reloaded = new(@"Database correctly reloaded \((\d{1,12}) signatures\)", RegexOptions.CultureInvariant);
}

/// <summary>
/// Reads what clamd appends to its log from a point on (where the cursor was made): whole lines only, each once. clamd
/// rotates its log at `LogFileMaxSize` (rendered with `LogRotate yes`, so it never stops writing, and the log stays
/// bounded): a log shorter than the point read to is a new log, read from its start. Polled every 100 ms, a rotation
/// cannot go unseen: the new log would have to grow past the old point (a megabyte) in between.
/// </summary>
public sealed class ClamdLogCursor(string path)
{
    private long _offset = File.Exists(path) ? new FileInfo(path).Length : 0;

    /// <exception cref="IOException">The log could not be read.</exception>
    public IReadOnlyList<string> ReadNewLines()
    {
        if (!File.Exists(path)) { return []; }
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        if (stream.Length < _offset)
        {
            _offset = 0; // rotated: all of the new log came after the cursor
        }
        stream.Seek(_offset, SeekOrigin.Begin);
        var buffer = new byte[Math.Min(stream.Length - _offset, 4L * 1024 * 1024)];
        var read = stream.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false);
        var end = read == 0 ? -1 : Array.LastIndexOf(buffer, (byte)'\n', read - 1);
        if (end < 0) { return []; }
        _offset += end + 1;
        return Encoding.UTF8.GetString(buffer, 0, end + 1).Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }
}
