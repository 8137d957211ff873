using System.Diagnostics;

namespace Tsunagu.SystemTests.Qemu;

/// <summary>
/// Hard power cuts of a QEMU unit with its state checked after each (<see cref="PowerCutCampaign"/>). In `make test` a
/// short campaign: one cut in provisioning, one in the update's install, one at steady state. `make power-cuts N=...`
/// runs N cuts (TSUNAGU_POWER_CUTS) and writes the results into docs/reliability.md (TSUNAGU_POWER_CUT_REPORT).
/// </summary>
[TestFixture, NonParallelizable]
public sealed class PowerCutTests
{
    [Test]
    public Task Power_cuts_in_provisioning_update_and_steady_state_keep_settings_counter_records_and_the_file_system() =>
        CampaignAsync("qemu-x86_64");

    /// <summary>The campaign on a unit of <paramref name="board"/>.</summary>
    internal static async Task CampaignAsync(string board)
    {
        var cuts = int.TryParse(Environment.GetEnvironmentVariable("TSUNAGU_POWER_CUTS"), out var n) && n > 0 ? n : 3;
        var seed = int.TryParse(Environment.GetEnvironmentVariable("TSUNAGU_POWER_CUT_SEED"), out var s) ? s : Environment.TickCount & 0xffff;
        var report = Environment.GetEnvironmentVariable("TSUNAGU_POWER_CUT_REPORT");
        TestContext.Out.WriteLine($"{cuts} power cuts, seed {seed} (TSUNAGU_POWER_CUT_SEED={seed} repeats the choices)");
        await using var lab = await QemuLab.StartAsync(board);
        await using var unit = await lab.AddUnitAsync(5);
        var campaign = new PowerCutCampaign(lab, unit, seed, TestContext.Out);
        var clock = Stopwatch.StartNew();
        // provisioning, the update, then steady state; a longer campaign repeats the order with every other cut at steady state
        CutPhase[] order = [CutPhase.Provisioning, CutPhase.Update, CutPhase.Steady, CutPhase.Steady];
        for (var i = 0; i < cuts; i++)
        {
            await campaign.CutAsync(i < 3 ? (CutPhase)i : order[i % order.Length]);
        }
        var section = campaign.Report(clock.Elapsed, $"{Environment.ProcessorCount} cores, load average {File.ReadAllText("/proc/loadavg").Split(' ')[0]} at the end");
        TestContext.Out.WriteLine(section);
        if (report is not null) { PowerCutCampaign.WriteReport(report, section); }
        Assert.That(campaign.Cuts.Where(c => c.Failures.Count > 0).Select(c => $"cut {c.Index} ({c.Phase}, {c.Step}): {string.Join("; ", c.Failures)}"), Is.Empty);
        Assert.That(campaign.Cuts, Has.Count.EqualTo(cuts));
    }
}
