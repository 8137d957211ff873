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
            Assert.That(report.FaultsInjected, Is.EqualTo(settings.FaultCount), "the schedule injected every fault it drew");
            foreach (var invariant in report.Invariants)
            {
                Assert.That(invariant.Held, Is.True, $"{invariant.Name}: {invariant.Detail}\n{report.Describe()}");
            }
        });
    }

    [Test]
    public async Task On_SQLite_every_invariant_holds_through_each_fault_of_a_seeded_schedule()
    {
        var directory = TempDirectories.Create("chaos");
        try
        {
            await RunAsync(new ChaosSettings
            {
                Seed = 20261203,
                Units = 10,
                FaultCount = 8, // each of the 7 once, then one drawn
                DataDirectory = directory,
                PushReconnectBase = TimeSpan.FromSeconds(1),
                PushReconnectCap = TimeSpan.FromSeconds(10),
            });
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Test]
    public async Task On_PostgreSQL_every_invariant_holds_through_immediate_database_restarts_server_kills_and_partitions()
    {
        var directory = TempDirectories.Create("chaos-pg");
        using var postgres = PostgresServer.StartOwn();
        try
        {
            await RunAsync(new ChaosSettings
            {
                Seed = 7,
                Units = 10,
                FaultCount = 4,
                PushReconnectBase = TimeSpan.FromSeconds(1),
                PushReconnectCap = TimeSpan.FromSeconds(10),
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
