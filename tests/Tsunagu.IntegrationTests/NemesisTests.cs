using Tsunagu.Cli.Chaos;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// A short seeded schedule of the nemesis (`make chaos` runs long ones): the real server as a child process,
/// killed and restarted, a fault proxy partitioning, resetting and slowing the units' connections; an update
/// published as the second fault begins (every unit's first update report loses its answer, so each is sent again)
/// and a subscriber change in the middle of every fault. The invariants (recovery within a bound on the target
/// pattern, forced checks that reach every unit, the server's view, one successful install per unit, subscriber
/// changes listed and audited once, requests per unit per minute) must hold after every fault, and at the end nothing
/// the units reported, the operator forced or the subscribers changed may be lost or duplicated in the server's
/// history and audit. The history is printed either way.
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
                FaultCount = 8, // each once (server-clock-skew runs in the Mosquitto case)
                DataDirectory = directory,
                Faults =
                [
                    Faults.ServerKill, Faults.ServerRestart, Faults.Partition, Faults.Reset, Faults.Slow, Faults.TokenKeyRotation,
                    Faults.UnitClockSkew, Faults.BrokerRestart,
                ],
                PushReconnectBase = TimeSpan.FromSeconds(1),
                PushReconnectCap = TimeSpan.FromSeconds(10),
            });
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>
    /// The external broker: Mosquitto killed and started again while the server stays up, and the server's own faults
    /// that touch what it keeps (its clock, its disk, its process). Disk full mounts a tmpfs: root, as CI runs.
    /// </summary>
    [Test]
    public async Task On_Mosquitto_every_invariant_holds_through_broker_restarts_server_clock_jumps_a_full_disk_and_a_server_kill()
    {
        Assert.That(Environment.IsPrivilegedProcess, Is.True, "the disk-full fault mounts a small tmpfs as the server's disk: run it as root");
        var directory = TempDirectories.Create("chaos-mosquitto");
        try
        {
            await RunAsync(new ChaosSettings
            {
                Seed = 11,
                Units = 10,
                FaultCount = 5, // each of the four once, then one drawn
                Broker = "mosquitto",
                DataDirectory = directory,
                PushReconnectBase = TimeSpan.FromSeconds(1),
                PushReconnectCap = TimeSpan.FromSeconds(10),
                Faults = [Faults.BrokerRestart, Faults.ServerClockSkew, Faults.DiskFull, Faults.ServerKill],
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
