using System.Text.RegularExpressions;
using Tsunagu.UnitTests.Hal;

namespace Tsunagu.UnitTests.Server;

/// <summary>
/// The server is asynchronous all the way (server/README.md): no source file blocks a thread on a task, and outside the
/// start-up steps (migrations, <c>Database.Open</c>) no database command is synchronous. The sources are read as text.
/// </summary>
public partial class ServerAsyncTests
{
    // a read of .Result (not an assignment to a property of that name), .Wait() or .Wait(timeout) (not a semaphore's Wait(0),
    // which never blocks), GetAwaiter().GetResult()
    [GeneratedRegex(@"\.Result\b(?!\s*=[^=])|\.Wait\((?!0\))|GetAwaiter\(\)\.GetResult\(\)|\.RunSynchronously\(")]
    private static partial Regex Blocking();

    [GeneratedRegex(@"\.(Query|QuerySingle|QuerySingleOrDefault|QueryFirst|QueryFirstOrDefault|Execute|ExecuteScalar|ExecuteReader|ExecuteNonQuery)(<[^()]*>)?\(")]
    private static partial Regex SynchronousCommand();

    private static IEnumerable<(string Path, int Line, string Text)> ServerLines()
    {
        var server = Path.Combine(BoardAndRunnerTests.RepositoryRoot(), "server", "Tsunagu.Server");
        foreach (var file in Directory.EnumerateFiles(server, "*.cs", SearchOption.AllDirectories)
                     .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)
                                 && !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}", StringComparison.Ordinal)))
        {
            var lines = File.ReadAllLines(file);
            for (var i = 0; i < lines.Length; i++)
            {
                var text = lines[i].Trim();
                if (text.StartsWith("//", StringComparison.Ordinal)) { continue; }
                yield return (Path.GetRelativePath(server, file), i + 1, lines[i]);
            }
        }
    }

    [Test]
    public void No_server_source_blocks_on_a_task()
    {
        var lines = ServerLines().ToList();
        Assert.That(lines, Has.Count.GreaterThan(1000), "the server's sources were found");
        var blocking = lines.Where(l => Blocking().IsMatch(l.Text))
            .Select(l => $"{l.Path}:{l.Line}: {l.Text.Trim()}").ToList();
        Assert.That(blocking, Is.Empty, "sync over async in the server");
    }

    [Test]
    public void The_store_and_the_server_run_no_synchronous_database_command()
    {
        // start-up steps: the schema migration and the synchronous Database.Open kept for it and for tools
        var startUp = Path.Combine("Data", "Database.cs");
        var synchronous = ServerLines()
            .Where(l => l.Path != startUp && !l.Path.Contains("Migrations", StringComparison.Ordinal) && SynchronousCommand().IsMatch(l.Text))
            .Select(l => $"{l.Path}:{l.Line}: {l.Text.Trim()}").ToList();
        Assert.That(synchronous, Is.Empty, "synchronous database commands in the server");
    }

    [TestCase("var x = task.Result;")]
    [TestCase("task.Wait();")]
    [TestCase("task.Wait(TimeSpan.FromSeconds(1));")]
    [TestCase("store.Units.GetUnitAsync(mac).GetAwaiter().GetResult();")]
    public void The_scan_finds_a_blocking_call(string line) => Assert.That(Blocking().IsMatch(line), Is.True);

    [TestCase("context.Result = new ContentResult();")]
    [TestCase("_hashing.Wait(0) ? new Slot(_hashing) : null;")]
    [TestCase("var result = await task;")]
    public void The_scan_lets_a_non_blocking_line_through(string line) => Assert.That(Blocking().IsMatch(line), Is.False);

    [TestCase("c.Execute(sql, args, tx);")]
    [TestCase("c.Query<UnitRow>(sql).ToList();")]
    [TestCase("var n = c.ExecuteScalar<long>(\"SELECT 1\");")]
    public void The_scan_finds_a_synchronous_command(string line) => Assert.That(SynchronousCommand().IsMatch(line), Is.True);

    [TestCase("await c.ExecuteAsync(new CommandDefinition(sql, args, tx, cancellationToken: ct));")]
    [TestCase("await store.Units.QueryUnitsAsync(query, ct);")]
    public void The_scan_lets_an_asynchronous_command_through(string line) => Assert.That(SynchronousCommand().IsMatch(line), Is.False);
}
