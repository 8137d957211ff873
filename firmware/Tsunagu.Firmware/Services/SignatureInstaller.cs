using System.Text.RegularExpressions;
using Tsunagu.Hal;
using Tsunagu.Hal.Storage;

namespace Tsunagu.Firmware.Services;

/// <summary>A signature database was refused (name, size, or it does not load on its own) or clamd did not take it; the old signatures stay.</summary>
public sealed class SignatureInstallException(string database, string message, Exception? inner = null)
    : Exception($"signature database '{database}': {message}", inner)
{
    public string Database { get; } = database;
}

/// <summary>
/// Installs one ClamAV signature database into the signature directory on `data` (<see cref="ServiceEnvironment.SignatureDirectory"/>,
/// never the read-only OS) and has clamd load it: the database is written to a staging directory beside it, loaded there
/// on its own by `clamscan` (a database clamd cannot load is refused before clamd ever sees it: a failed RELOAD leaves
/// clamd unable to scan), renamed into place (replacing a database of the same name, which is kept until the reload is
/// done), then clamd is told to RELOAD and its log is watched for the result. Any failure restores the previous state of
/// the directory: the old signatures stay in force.
/// </summary>
public sealed partial class SignatureInstaller(ServiceEnvironment env, ICommandRunner runner, TimeProvider time, Action<string> log,
    IDurableFileSystem? files = null)
{
    private readonly IDurableFileSystem _files = files ?? PosixFileSystem.Instance;

    /// <summary>The largest database accepted (ClamAV's full main database is about 160 MB).</summary>
    public const long MaxDatabaseBytes = 512L * 1024 * 1024;

    /// <summary>How long clamd may take to load the new database set (a full database takes tens of seconds on a small board).</summary>
    public TimeSpan ReloadTimeout { get; init; } = ServiceCatalog.SignatureLoadTimeout;

    /// <summary>A database file name: lower-case letters, digits, '.', '_', '-' and one of ClamAV's database extensions; no path.</summary>
    public static bool IsDatabaseName(string? name) => name is { Length: <= 64 } && DatabaseName().IsMatch(name) && !name.Contains("..", StringComparison.Ordinal);

    [GeneratedRegex(@"^[a-z0-9][a-z0-9._-]*\.(hdb|hsb|mdb|msb|ndb|ldb|cdb|fp|sfp|ign2|cvd|cld|cud)\z")]
    private static partial Regex DatabaseName();

    /// <summary>Installs <paramref name="content"/> as <paramref name="name"/> and reloads clamd.</summary>
    /// <exception cref="SignatureInstallException">Refused or not taken by clamd; the signature directory is as it was.</exception>
    public async Task InstallAsync(string name, Stream content, CancellationToken ct)
    {
        if (!IsDatabaseName(name))
        {
            throw new SignatureInstallException(name.Length > 64 ? name[..64] : name, "not a database file name (lower-case letters, digits, '._-' and a ClamAV database extension)");
        }
        var directory = env.SignatureDirectory;
        Directory.CreateDirectory(directory);
        var staging = Path.Combine(Path.GetDirectoryName(directory)!, $".clamav-staging-{Guid.NewGuid():N}");
        Directory.CreateDirectory(staging);
        try
        {
            var staged = Path.Combine(staging, name);
            await CopyBoundedAsync(name, content, staged, ct);
            await CheckLoadsAsync(name, staging, ct);

            var target = Path.Combine(directory, name);
            var previous = Path.Combine(staging, name + ".previous");
            var replaced = File.Exists(target);
            if (replaced) { _files.Rename(target, previous); }
            _files.Rename(staged, target);
            _files.SyncDirectory(directory);
            try
            {
                await ReloadAsync(name, ct);
            }
            catch (SignatureInstallException)
            {
                File.Delete(target);
                if (replaced) { _files.Rename(previous, target); }
                _files.SyncDirectory(directory);
                await ReloadAfterRestoreAsync(name);
                throw;
            }
            log($"signatures: {name} installed ({new FileInfo(target).Length} bytes{(replaced ? ", replacing the previous one" : "")}) and loaded by clamd");
        }
        finally
        {
            Directory.Delete(staging, recursive: true);
        }
    }

    private static async Task CopyBoundedAsync(string name, Stream content, string path, CancellationToken ct)
    {
        await using (var output = new FileStream(path, FileMode.CreateNew, FileAccess.Write))
        {
            var buffer = new byte[81920];
            long total = 0;
            int n;
            while ((n = await content.ReadAsync(buffer, ct)) > 0)
            {
                total += n;
                if (total > MaxDatabaseBytes)
                {
                    throw new SignatureInstallException(name, $"larger than {MaxDatabaseBytes} bytes");
                }
                await output.WriteAsync(buffer.AsMemory(0, n), ct);
            }
            if (total == 0) { throw new SignatureInstallException(name, "is empty"); }
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
        var known = KnownViruses().Match(result.Output);
        if (!result.Succeeded || !known.Success || long.Parse(known.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) < 1)
        {
            throw new SignatureInstallException(name, $"does not load on its own (clamscan exit {result.ExitCode}): {result.Diagnostic()}");
        }
    }

    [GeneratedRegex(@"^Known viruses: (\d{1,12})$", RegexOptions.Multiline)]
    private static partial Regex KnownViruses();

    private string ClamdLog => Path.Combine(env.RunDirectory, "clamd.log");

    /// <summary>RELOAD, then waits for clamd's log to say the reload is done (or failed).</summary>
    private async Task ReloadAsync(string name, CancellationToken ct)
    {
        var (ok, failed) = ReloadOutcomes();
        try
        {
            await ClamdControl.ReloadAsync(env.ClamdSocket, ct);
        }
        catch (ClamdException e)
        {
            throw new SignatureInstallException(name, $"clamd did not take the reload: {e.Message}", e);
        }
        var deadline = time.GetUtcNow() + ReloadTimeout;
        while (true)
        {
            var (okNow, failedNow) = ReloadOutcomes();
            if (failedNow > failed) { throw new SignatureInstallException(name, "clamd failed to reload its database"); }
            if (okNow > ok) { return; }
            if (time.GetUtcNow() >= deadline)
            {
                throw new SignatureInstallException(name, $"clamd did not finish reloading within {ReloadTimeout.TotalSeconds:0} s");
            }
            await Task.Delay(TimeSpan.FromMilliseconds(100), time, ct);
        }
    }

    private async Task ReloadAfterRestoreAsync(string name)
    {
        try
        {
            await ReloadAsync(name, CancellationToken.None);
            log($"signatures: {name} refused; clamd reloaded the previous signatures");
        }
        catch (SignatureInstallException e)
        {
            log($"signatures: {name} refused, and reloading the previous signatures failed too: {e.Message}");
        }
    }

    /// <summary>How many reloads clamd's log reports as done and as failed.</summary>
    private (int Ok, int Failed) ReloadOutcomes()
    {
        if (!File.Exists(ClamdLog)) { return (0, 0); }
        string[] lines;
        using (var stream = new FileStream(ClamdLog, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete))
        using (var reader = new StreamReader(stream))
        {
            lines = reader.ReadToEnd().Split('\n');
        }
        return (lines.Count(l => l.Contains("Database correctly reloaded", StringComparison.Ordinal)),
            lines.Count(l => l.Contains("Database reload failed", StringComparison.Ordinal)));
    }
}
