using System.Net;
using Microsoft.Data.Sqlite;
using Npgsql;
using Tsunagu.Server;
using Tsunagu.Server.Data;

namespace Tsunagu.IntegrationTests;

/// <summary>The limits that keep a server serving under a storm: descriptors, connections, commit durability.</summary>
[NonParallelizable]
public class ServerLimitsTests
{
    private string _directory = null!;

    [SetUp]
    public void SetUp()
    {
        TestServer.DatabaseKind.Value = "sqlite";
        _directory = TempDirectories.Create("limits");
    }

    [TearDown]
    public void TearDown()
    {
        TestServer.Configure.Value = null;
        SqliteConnection.ClearAllPools();
        Directory.Delete(_directory, recursive: true);
    }

    /// <summary>Runs one statement on the connection, then closes it; returns the first value.</summary>
    private static object? Scalar(System.Data.Common.DbConnection connection, string sql)
    {
        using (connection)
        {
            using var command = connection.CreateCommand();
            command.CommandText = sql;
            return command.ExecuteScalar();
        }
    }

    [Test]
    public void The_descriptor_limit_is_the_soft_limit_of_open_files()
    {
        string[] limits =
        [
            "Limit                     Soft Limit           Hard Limit           Units     ",
            "Max processes             95161                95161                processes ",
            "Max open files            20000                524288               files     ",
        ];
        Assert.That(DescriptorLimit.Parse(limits), Is.EqualTo(20_000));
        Assert.That(DescriptorLimit.Parse(["Max open files            unlimited            unlimited            files     "]), Is.Null);
        Assert.That(DescriptorLimit.Parse(["Max processes             95161                95161                processes "]), Is.Null);
        if (OperatingSystem.IsLinux())
        {
            Assert.That(DescriptorLimit.Read(), Is.GreaterThan(0), "this process's own limit is readable");
        }
        Assert.That(DescriptorLimit.Read(Path.Combine(_directory, "no-such-file")), Is.Null);
    }

    [Test]
    public void Unit_reports_commit_without_waiting_for_the_disk_and_everything_else_waits_on_the_same_pool()
    {
        var database = Database.Parse("tsunagu.db", _directory);
        database.Migrate();
        // the same pooled connection goes back and forth: each open sets its own durability
        Assert.That(Scalar(database.Open(durable: false), "PRAGMA synchronous"), Is.EqualTo(1L), "unit reports: synchronous=NORMAL");
        Assert.That(Scalar(database.Open(), "PRAGMA synchronous"), Is.EqualTo(2L), "everything else: synchronous=FULL");
        Assert.That(Scalar(database.Open(durable: false), "PRAGMA synchronous"), Is.EqualTo(1L));
        Assert.That(Scalar(database.Open(durable: true), "PRAGMA synchronous"), Is.EqualTo(2L));
    }

    [Test]
    public void On_postgresql_unit_reports_commit_without_waiting_for_the_wal_flush()
    {
        var connectionString = PostgresServer.Shared.CreateDatabase();
        // the test server runs with synchronous_commit=off for speed: this database asks for durable commits, as a production one would
        var admin = new NpgsqlConnection(connectionString);
        admin.Open();
        Scalar(admin, $"ALTER DATABASE {new NpgsqlConnectionStringBuilder(connectionString).Database} SET synchronous_commit = on");
        NpgsqlConnection.ClearAllPools(); // the admin session started before the change
        var database = Database.Parse(connectionString, _directory);
        Assert.That(Scalar(database.Open(durable: false), "SHOW synchronous_commit"), Is.EqualTo("off"));
        Assert.That(Scalar(database.Open(), "SHOW synchronous_commit"), Is.EqualTo("on"));
        Assert.That(Scalar(database.Open(durable: false), "SHOW synchronous_commit"), Is.EqualTo("off"));
        NpgsqlConnection.ClearAllPools();

    }

    [Test]
    public void On_postgresql_a_durable_connection_commits_durably_whatever_the_server_default()
    {
        // the test server's default is synchronous_commit=off: a durable connection must not inherit it (a crash of
        // PostgreSQL could then lose a configuration acknowledgement the server had answered as recorded)
        var connectionString = PostgresServer.Shared.CreateDatabase();
        var database = Database.Parse(connectionString, _directory);
        Assert.That(Scalar(database.Open(), "SHOW synchronous_commit"), Is.EqualTo("on"));
        Assert.That(Scalar(database.Open(durable: false), "SHOW synchronous_commit"), Is.EqualTo("off"));
        Assert.That(Scalar(database.Open(), "SHOW synchronous_commit"), Is.EqualTo("on"), "a pooled connection a unit report relaxed is durable again");
        NpgsqlConnection.ClearAllPools();
    }

    [Test]
    public async Task Past_its_connection_limit_the_server_closes_new_connections_and_takes_them_again_when_one_goes()
    {
        TestServer.Configure.Value = o => o.MaxConnections = 2;
        await using var server = await TestServer.StartAsync();
        using var first = server.PinnedHttp();
        using var second = server.PinnedHttp();
        Assert.That((await first.GetAsync("/healthz")).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await second.GetAsync("/healthz")).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        // both connections stay open (keep-alive): a third is closed at once, answered by nothing
        using (var third = server.PinnedHttp())
        {
            third.Timeout = TimeSpan.FromSeconds(10);
            Assert.That(async () => await third.GetAsync("/healthz"), Throws.InstanceOf<HttpRequestException>(), "a connection past the limit is refused");
        }
        first.Dispose();
        using var fourth = server.PinnedHttp();
        HttpStatusCode? status = null;
        for (var attempt = 0; attempt < 50 && status is null; attempt++)
        {
            try { status = (await fourth.GetAsync("/healthz")).StatusCode; }
            catch (HttpRequestException) { await Task.Delay(100); } // the server may not have seen the close yet
        }
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), "a place freed by a closed connection is taken again");
    }

    private static IEnumerable<TestCaseData> BadLimits()
    {
        TestCaseData Case(string name, Action<ServerOptions> set, string named) => new TestCaseData(set, named).SetArgDisplayNames(name);
        yield return Case("queue timeout 0", o => o.RequestQueueTimeoutSeconds = 0, "RequestQueueTimeoutSeconds");
        yield return Case("queue timeout 301", o => o.RequestQueueTimeoutSeconds = 301, "RequestQueueTimeoutSeconds");
        yield return Case("queue timeout NaN", o => o.RequestQueueTimeoutSeconds = double.NaN, "RequestQueueTimeoutSeconds");
        yield return Case("connections 0", o => o.MaxConnections = 0, "MaxConnections");
        yield return Case("connections -5", o => o.MaxConnections = -5, "MaxConnections");
        yield return Case("keep-alive 0", o => o.KeepAliveSeconds = 0, "KeepAliveSeconds");
        yield return Case("keep-alive 3601", o => o.KeepAliveSeconds = 3601, "KeepAliveSeconds");
    }

    [TestCaseSource(nameof(BadLimits))]
    public void Bad_limits_are_refused_with_the_setting_named(Action<ServerOptions> set, string named)
    {
        var options = new ServerOptions();
        Assert.That(() => options.Validate(), Throws.Nothing, "the defaults are valid");
        set(options);
        Assert.That(() => options.Validate(), Throws.ArgumentException.With.Message.Contains(named));
    }
}
