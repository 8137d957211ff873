using System.Data.Common;
using FluentMigrator.Runner;
using Microsoft.Data.Sqlite;
using Npgsql;

namespace Tsunagu.Server.Data;

public enum DatabaseKind { Sqlite, Postgres }

/// <summary>
/// Which database the server uses: a SQLite file (the default, zero setup) or PostgreSQL. Chosen by the
/// `Database` setting (`TSUNAGU_DATABASE`): a file name or path means SQLite; `postgres://...` or an Npgsql
/// connection string (`Host=...;Database=...`) means PostgreSQL.
/// </summary>
public sealed class Database
{
    private Database(DatabaseKind kind, string connectionString, string description)
    {
        Kind = kind;
        ConnectionString = connectionString;
        Description = description;
    }

    public DatabaseKind Kind { get; }

    /// <summary>How long a SQLite write waits for the single writer's lock before the request is answered 503.</summary>
    public TimeSpan BusyTimeout
    {
        get => _busyTimeout;
        set
        {
            _busyTimeout = value;
            _openString = null;
            _durablePragmas = null;
            _relaxedPragmas = null;
        }
    }

    private TimeSpan _busyTimeout = TimeSpan.FromSeconds(10);

    /// <summary>The connection string <see cref="Open(bool)"/> uses (SQLite: with the busy timeout as command timeout), built once per timeout.</summary>
    private string? _openString;

    public string ConnectionString { get; }

    /// <summary>For messages: the SQLite path, or the PostgreSQL host and database (never the password).</summary>
    public string Description { get; }

    public static Database Parse(string setting, string dataDirectory)
    {
        if (string.IsNullOrWhiteSpace(setting))
        {
            throw new ArgumentException("Tsunagu:Database is empty: give a SQLite file name or a PostgreSQL connection string");
        }
        if (setting.StartsWith("postgres://", StringComparison.OrdinalIgnoreCase) || setting.StartsWith("postgresql://", StringComparison.OrdinalIgnoreCase))
        {
            var uri = new Uri(setting);
            var user = Uri.UnescapeDataString(uri.UserInfo.Split(':')[0]);
            var builder = new NpgsqlConnectionStringBuilder
            {
                Host = uri.Host,
                Port = uri.IsDefaultPort || uri.Port < 0 ? 5432 : uri.Port,
                Database = uri.AbsolutePath.Trim('/'),
                Username = user,
            };
            if (uri.UserInfo.Contains(':')) { builder.Password = Uri.UnescapeDataString(uri.UserInfo[(uri.UserInfo.IndexOf(':') + 1)..]); }
            return Postgres(builder);
        }
        if (setting.Contains("Host=", StringComparison.OrdinalIgnoreCase))
        {
            try
            {
                return Postgres(new NpgsqlConnectionStringBuilder(setting));
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"Tsunagu:Database looks like a PostgreSQL connection string but is not valid: {e.Message}", e);
            }
        }
        var path = Path.IsPathRooted(setting) ? setting : Path.Combine(dataDirectory, setting);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var sqlite = new SqliteConnectionStringBuilder { DataSource = path, Pooling = true, DefaultTimeout = 30 };
        return new Database(DatabaseKind.Sqlite, sqlite.ToString(), $"SQLite {Path.GetFullPath(path)}");
    }

    private static Database Postgres(NpgsqlConnectionStringBuilder builder)
    {
        // a durable connection sets nothing after it opens, so it asks for durable commits as it starts: otherwise it would
        // take the server's or the database's default, and with synchronous_commit=off there a PostgreSQL crash can lose a
        // commit this server answered as durable (a unit's configuration acknowledgement, which nothing sends again)
        builder.Options = string.IsNullOrWhiteSpace(builder.Options) ? "-c synchronous_commit=on" : builder.Options + " -c synchronous_commit=on";
        return new(DatabaseKind.Postgres, builder.ToString(), $"PostgreSQL {builder.Host}:{builder.Port}/{builder.Database}");
    }

    /// <summary>Opens a pooled connection whose commits are durable: on disk before they return (SQLite synchronous=FULL).</summary>
    public DbConnection Open() => Open(durable: true);

    /// <summary>
    /// Opens a pooled connection. <paramref name="durable"/> false is for records a unit sends again on its next
    /// contact (which ones: docs/server.md, section 3): their commits do not wait for the disk (SQLite WAL with
    /// synchronous=NORMAL, PostgreSQL synchronous_commit=off). A crash of the process loses none of them; a power
    /// cut of the server machine may lose the last moments of them, never the database's consistency, and a later
    /// durable commit makes them durable too.
    /// </summary>
    public DbConnection Open(bool durable)
    {
        var connection = Connection();
        connection.Open();
        using var setup = SessionSetup(connection, durable);
        setup?.ExecuteNonQuery();
        return connection;
    }

    /// <summary><see cref="Open(bool)"/> without blocking the caller's thread where the provider can (Npgsql).</summary>
    public Task<DbConnection> OpenAsync(CancellationToken ct) => OpenAsync(durable: true, ct);

    /// <inheritdoc cref="Open(bool)"/>
    public async Task<DbConnection> OpenAsync(bool durable, CancellationToken ct)
    {
        var connection = Connection();
        try
        {
            await connection.OpenAsync(ct);
            await using var setup = SessionSetup(connection, durable);
            if (setup is not null) { await setup.ExecuteNonQueryAsync(ct); }
            return connection;
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    private DbConnection Connection()
    {
        // Microsoft.Data.Sqlite retries a busy database itself until the command timeout: that is the busy wait
        var openString = _openString ??= Kind == DatabaseKind.Sqlite
            ? new SqliteConnectionStringBuilder(ConnectionString) { DefaultTimeout = Math.Max(1, (int)Math.Ceiling(BusyTimeout.TotalSeconds)) }.ToString()
            : ConnectionString;
        // PostgreSQL: one pool; a session setting lasts until the connection goes back to it (Npgsql resets the session then)
        return Kind == DatabaseKind.Sqlite ? new SqliteConnection(openString) : new NpgsqlConnection(openString);
    }

    /// <summary>The command an opened connection runs first, or null: SQLite's pragmas, PostgreSQL's relaxed commit.</summary>
    private DbCommand? SessionSetup(DbConnection connection, bool durable)
    {
        if (Kind == DatabaseKind.Sqlite)
        {
            var pragma = connection.CreateCommand();
            // the pragmas are set on every open: a pooled connection keeps what its last user set
            pragma.CommandText = durable || !_walMode ? _durablePragmas ??= Pragmas("FULL") : _relaxedPragmas ??= Pragmas("NORMAL");
            return pragma;
        }
        if (durable) { return null; }
        var set = connection.CreateCommand();
        set.CommandText = "SET synchronous_commit = off";
        return set;
    }

    private string Pragmas(string synchronous) =>
        $"PRAGMA foreign_keys=ON; PRAGMA busy_timeout={(int)BusyTimeout.TotalMilliseconds}; PRAGMA synchronous={synchronous};";

    private string? _durablePragmas;
    private string? _relaxedPragmas;
    private bool _walMode;

    /// <summary>
    /// Brings the schema up to the newest migration, or up to <paramref name="upTo"/> (FluentMigrator; the version table
    /// records what ran).
    /// </summary>
    public void Migrate(long? upTo = null)
    {
        if (Kind == DatabaseKind.Sqlite)
        {
            using var c = Open();
            using var wal = c.CreateCommand();
            wal.CommandText = "PRAGMA journal_mode=WAL;";
            // synchronous=NORMAL keeps the database consistent through a power cut only in WAL mode: on a file system
            // that refuses WAL every commit waits for the disk
            _walMode = string.Equals(wal.ExecuteScalar() as string, "wal", StringComparison.OrdinalIgnoreCase);
        }
        using var services = new ServiceCollection()
            .AddFluentMigratorCore()
            .ConfigureRunner(runner =>
            {
                if (Kind == DatabaseKind.Sqlite) { runner.AddSQLite(); } else { runner.AddPostgres(); }
                runner.WithGlobalConnectionString(ConnectionString).ScanIn(typeof(Database).Assembly).For.Migrations();
            })
            .BuildServiceProvider(false);
        using var scope = services.CreateScope();
        var migrations = scope.ServiceProvider.GetRequiredService<IMigrationRunner>();
        if (upTo is { } version) { migrations.MigrateUp(version); } else { migrations.MigrateUp(); }
    }
}
