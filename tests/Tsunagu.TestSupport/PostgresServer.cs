using System.Diagnostics;
using Npgsql;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// A real PostgreSQL started for the test run: initdb into a temporary directory, `postgres` on a free
/// loopback port (run as the `postgres` system user when the tests run as root), stopped by PID at the end.
/// </summary>
public sealed class PostgresServer : IDisposable
{
    private static readonly Lock Gate = new();
    private static PostgresServer? _shared;
    private Process _process;
    private readonly string _directory;
    private readonly string _bin;

    private PostgresServer(Process process, string directory, string bin, int port)
    {
        _process = process;
        _directory = directory;
        _bin = bin;
        Port = port;
    }

    public int Port { get; }

    /// <summary>The run's server, started on first use.</summary>
    public static PostgresServer Shared
    {
        get
        {
            lock (Gate)
            {
                return _shared ??= Start();
            }
        }
    }

    public static void StopShared()
    {
        lock (Gate)
        {
            _shared?.Dispose();
            _shared = null;
        }
    }

    /// <summary>Creates an empty database and returns its connection string.</summary>
    public string CreateDatabase()
    {
        var name = "t_" + Guid.NewGuid().ToString("N")[..16];
        using var c = new NpgsqlConnection(ConnectionString("postgres"));
        c.Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = $"CREATE DATABASE {name}";
        cmd.ExecuteNonQuery();
        return ConnectionString(name);
    }

    public string ConnectionString(string database) =>
        new NpgsqlConnectionStringBuilder { Host = "127.0.0.1", Port = Port, Username = "tsunagu", Database = database, Pooling = true, MaxPoolSize = 20 }.ToString();

    /// <summary>A server of its own (not the shared one), e.g. for a test that restarts it.</summary>
    public static PostgresServer StartOwn() => Start();

    /// <summary>
    /// An immediate shutdown (SIGQUIT to the postmaster: no checkpoint, every connection cut, crash recovery at the
    /// next start), then a start on the same data and port.
    /// </summary>
    public async Task RestartImmediateAsync(CancellationToken ct)
    {
        var postmaster = int.Parse(File.ReadLines(Path.Combine(_directory, "data", "postmaster.pid")).First(), System.Globalization.CultureInfo.InvariantCulture);
        Process.Start("kill", ["-QUIT", postmaster.ToString(System.Globalization.CultureInfo.InvariantCulture)])!.WaitForExit();
        await _process.WaitForExitAsync(ct).WaitAsync(TimeSpan.FromSeconds(30), ct);
        _process.Dispose();
        _process = Launch(_bin, _directory, Port);
        await Task.Run(() => WaitAccepting(this), ct);
    }

    private static PostgresServer Start()
    {
        var bin = Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql").Select(d => Path.Combine(d, "bin")).Where(d => File.Exists(Path.Combine(d, "initdb")))
                .OrderByDescending(d => d, StringComparer.Ordinal).FirstOrDefault()
            : null;
        if (bin is null)
        {
            throw new InvalidOperationException("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): install the Debian package 'postgresql' (.ci/run does)");
        }
        var directory = Path.Combine(Path.GetTempPath(), "tsunagu-pg-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(directory);
        var asRoot = Environment.UserName == "root";
        if (asRoot)
        {
            TestServer.Run("chown", ["postgres:postgres", directory]);
        }
        TestServer.Run(asRoot ? "runuser" : Path.Combine(bin, "initdb"),
            [.. asRoot ? new[] { "-u", "postgres", "--", Path.Combine(bin, "initdb") } : [], "-D", Path.Combine(directory, "data"), "-U", "tsunagu", "-A", "trust", "--no-sync", "-E", "UTF8"]);
        var port = TestServer.FreePort();
        var server = new PostgresServer(Launch(bin, directory, port), directory, bin, port);
        WaitAccepting(server);
        return server;
    }

    private static Process Launch(string bin, string directory, int port)
    {
        var asRoot = Environment.UserName == "root";
        var args = new List<string>();
        if (asRoot) { args.AddRange(["-u", "postgres", "--", Path.Combine(bin, "postgres")]); }
        args.AddRange(["-D", Path.Combine(directory, "data"), "-p", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "-k", directory,
            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=200"]);
        var start = new ProcessStartInfo(asRoot ? "runuser" : Path.Combine(bin, "postgres")) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args) { start.ArgumentList.Add(a); }
        var process = Process.Start(start) ?? throw new InvalidOperationException("could not start postgres");
        process.ErrorDataReceived += (_, _) => { };
        process.OutputDataReceived += (_, _) => { };
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        return process;
    }

    private static void WaitAccepting(PostgresServer server)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            try
            {
                using var c = new NpgsqlConnection(server.ConnectionString("postgres"));
                c.Open();
                return;
            }
            catch (NpgsqlException) when (DateTime.UtcNow < deadline && !server._process.HasExited)
            {
                Thread.Sleep(200);
            }
        }
    }

    public void Dispose()
    {
        NpgsqlConnection.ClearAllPools();
        if (!_process.HasExited)
        {
            // runuser forwards SIGTERM to postgres: a "smart" shutdown
            Process.Start("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!.WaitForExit();
            if (!_process.WaitForExit(15_000))
            {
                _process.Kill(entireProcessTree: true);
            }
        }
        _process.Dispose();
        Directory.Delete(_directory, recursive: true);
    }
}
