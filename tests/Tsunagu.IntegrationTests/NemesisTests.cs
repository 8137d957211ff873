using Tsunagu.Cli.Chaos;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// A short seeded schedule of the nemesis (`make chaos` runs long ones): the real server as a child process,
/// killed and restarted, a fault proxy partitioning, resetting and slowing the units' connections; the invariants
/// (recovery within a bound, forced checks that reach every unit, the server's view, requests per unit per minute)
/// must hold after every fault. The history is printed either way.
/// </summary>
[NonParallelizable]
public class NemesisTests
{
    private static async Task RunAsync(ChaosSettings settings)
    {
        await using var nemesis = new Nemesis(settings, line => TestContext.Out.WriteLine(line));
        var report = await nemesis.RunAsync(CancellationToken.None);
        TestContext.Out.WriteLine(report.Describe());
        Assert.Multiple(() =>
        {
            Assert.That(report.FaultsInjected, Is.GreaterThanOrEqualTo(3), "the schedule injected faults");
            foreach (var invariant in report.Invariants)
            {
                Assert.That(invariant.Held, Is.True, $"{invariant.Name}: {invariant.Detail}\n{report.Describe()}");
            }
        });
    }

    [Test]
    public async Task On_SQLite_every_invariant_holds_through_a_seeded_schedule_of_server_kills_restarts_partitions_resets_and_slow_links()
    {
        var directory = TempDirectories.Create("chaos");
        try
        {
            await RunAsync(new ChaosSettings
            {
                Seed = 20261203,
                Units = 10,
                Duration = TimeSpan.FromSeconds(100),
                DataDirectory = directory,
            });
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Test]
    public async Task On_PostgreSQL_every_invariant_holds_through_immediate_database_restarts_and_server_kills()
    {
        var directory = TempDirectories.Create("chaos-pg");
        using var postgres = PostgresServer.StartOwn();
        try
        {
            await RunAsync(new ChaosSettings
            {
                Seed = 7,
                Units = 10,
                Duration = TimeSpan.FromSeconds(60),
                DataDirectory = directory,
                Database = postgres.CreateDatabase(),
                Faults = [Faults.DatabaseRestart, Faults.ServerKill, Faults.Partition],
                RestartDatabase = postgres.RestartImmediateAsync,
            });
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}
