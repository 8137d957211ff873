using Tsunagu.Firmware.Storage;
using Tsunagu.Firmware.Updates;
using Tsunagu.Firmware.Updates.Phases;
using Tsunagu.Protocol;

namespace Tsunagu.UnitTests.Updates;

/// <summary>The updater's phase table (<see cref="UpdatePhaseTable"/>) is what runs: the order, and where a restart in each phase continues.</summary>
public partial class UpdaterTests
{
    private static IEnumerable<string> TablePhases() => UpdatePhaseTable.Rows.Select(r => r.Phase);

    /// <summary>Runs the update to its end as the supervisor would, rebooting when asked; records each phase entered.</summary>
    private async Task<(InstallResult Result, List<string> Entered, int? CutAt, string? JournalAtCut)> DriveAsync(UpdateOffer offer, IBundleSource source, string? cutAtPhase)
    {
        var entered = new List<string>();
        var cut = false;
        void Checkpoint(string point)
        {
            if (!point.StartsWith("phase ", StringComparison.Ordinal)) { return; }
            entered.Add(point["phase ".Length..]);
            if (!cut && point == $"phase {cutAtPhase}") { cut = true; throw new PowerCut(point); }
        }
        int? cutAt = null;
        string? journalAtCut = null;
        for (var boot = 0; boot < 12; boot++)
        {
            InstallResult result;
            try
            {
                result = await Installer(source, checkpoint: Checkpoint).RunAsync(offer, CancellationToken.None);
            }
            catch (PowerCut)
            {
                (cutAt, journalAtCut) = (entered.Count, Journal?.Phase);
                await _boot.RebootAsync(CancellationToken.None); // a power cut is a reboot too
                Restart();
                continue;
            }
            if (result.Status != InstallStatus.Reboot) { return (result, entered, cutAt, journalAtCut); }
            await _boot.RebootAsync(CancellationToken.None);
            Restart();
        }
        throw new AssertionException("the update did not end within 12 boots: " + string.Join(", ", entered));
    }

    [Test]
    public async Task The_phases_run_in_the_order_of_the_phase_table()
    {
        var os = await BuildAsync(_key, osVersion: "os 2");
        var (result, entered, _, _) = await DriveAsync(os.Offer, new MemorySource(os.Bytes), cutAtPhase: null);
        Assert.That(result.Status, Is.EqualTo(InstallStatus.Committed), result.Report?.Error);
        Assert.That(entered, Is.EqualTo(TablePhases()), "an OS update runs every phase of the table, in its order");
        Assert.That(_boot.BootedOsVersion, Is.EqualTo("os 2"));

        // an application-only update skips the phase that runs after a reboot, and only that one
        TearDown();
        SetUp();
        var apps = await BuildAsync(_key);
        (result, entered, _, _) = await DriveAsync(apps.Offer, new MemorySource(apps.Bytes), cutAtPhase: null);
        Assert.That(result.Status, Is.EqualTo(InstallStatus.Committed), result.Report?.Error);
        Assert.That(entered, Is.EqualTo(UpdatePhaseTable.Rows.Where(r => !r.AfterReboot).Select(r => r.Phase)));
        Assert.That(_apps.Current(), Is.EqualTo(Pattern2));
    }

    [Test]
    public void The_phase_table_hands_over_only_forward_and_every_phase_is_reachable()
    {
        var phases = TablePhases().ToList();
        Assert.That(phases, Is.Unique);
        Assert.That(phases[0], Is.EqualTo(PendingUpdate.Downloading));
        foreach (var row in UpdatePhaseTable.Rows)
        {
            foreach (var next in row.OnSuccess)
            {
                Assert.That(UpdatePhaseTable.Terminal.Contains(next) || phases.IndexOf(next) > phases.IndexOf(row.Phase), $"{row.Phase} -> {next} goes back");
            }
        }
        // the documented policy (firmware/DESIGN.md section 5): where half-switched software may run, a restart rolls back first
        Assert.That(UpdatePhaseTable.Rows.ToDictionary(r => r.Phase, r => (r.OnRestart, r.OnFailure)), Is.EqualTo(new Dictionary<string, (OnRestart, OnFailure)>
        {
            [PendingUpdate.Downloading] = (OnRestart.Continue, OnFailure.Fail),
            [PendingUpdate.Verified] = (OnRestart.Continue, OnFailure.RollBackThenFail),
            [PendingUpdate.Switching] = (OnRestart.RollBackToVerified, OnFailure.RollBackThenFail),
            [PendingUpdate.Rebooting] = (OnRestart.Continue, OnFailure.RollBackThenFail),
            [PendingUpdate.Checking] = (OnRestart.RollBackToVerified, OnFailure.RollBackThenFail),
        }));
        Assert.That(UpdatePhaseTable.Rows.Where(r => r.OnRestart == OnRestart.Continue).Select(r => r.Phase),
            Has.None.Matches<string>(p => new PendingUpdate("u", p, null, 1).InFlight && p != PendingUpdate.Rebooting),
            "no phase with half-switched software simply continues, but the one the boot program judges");
        var reached = UpdatePhaseTable.Rows.SelectMany(r => r.OnSuccess).ToHashSet();
        Assert.That(phases.Skip(1), Is.SubsetOf(reached));
        Assert.That(reached, Does.Contain(PendingUpdate.Installed));
    }

    private static IEnumerable<string> JournalledPhases() => UpdatePhaseTable.Rows.Select(r => r.Phase);

    [TestCaseSource(nameof(JournalledPhases))]
    public async Task A_power_cut_in_each_journalled_phase_continues_where_the_phase_table_says_and_the_update_commits(string phase)
    {
        var b = await BuildAsync(_key, osVersion: "os 2");
        var source = new MemorySource(b.Bytes);
        var (result, entered, cutAt, journalAtCut) = await DriveAsync(b.Offer, source, cutAtPhase: phase);
        Assert.That(cutAt, Is.Not.Null, "the cut happened");
        Assert.That(journalAtCut, Is.EqualTo(phase), "the phase was journalled before it ran");

        var row = UpdatePhaseTable.Row(phase);
        var expected = row.OnRestart == OnRestart.Continue ? phase : PendingUpdate.Verified;
        Assert.That(entered[cutAt!.Value], Is.EqualTo(expected), $"after a cut in {phase}: {string.Join(", ", entered)}");
        if (row.OnRestart == OnRestart.RollBackToVerified)
        {
            Assert.That(_log, Has.Some.Contains($"restarted in phase {phase}; rolling back"));
        }
        // from where it continued, the phases run in the table's order to the end
        var rest = entered.Skip(cutAt.Value).ToList();
        Assert.That(rest, Is.EqualTo(TablePhases().SkipWhile(p => p != expected)));

        Assert.That(result.Status, Is.EqualTo(InstallStatus.Committed), result.Report?.Error);
        Assert.That(_apps.Current(), Is.EqualTo(Pattern2));
        Assert.That(_boot.BootedOsVersion, Is.EqualTo("os 2"));
        Assert.That(_boot.Read(_boot.Booted!.Value).Good, Is.True);
        Assert.That(BundleInstaller.Counter(_store)!.Version, Is.EqualTo(2));
        Assert.That(source.Ranges.Count(r => r.To == b.Bytes.Length), Is.EqualTo(1), "the bundle was downloaded once");
    }
}
