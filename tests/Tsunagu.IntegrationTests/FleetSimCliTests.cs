using System.Diagnostics;
using System.Text.Json;

namespace Tsunagu.IntegrationTests;

/// <summary>`tsunagu fleetsim` as the bench runs it: a process of its own, its report as JSON, its errors.</summary>
[NonParallelizable]
public class FleetSimCliTests
{
    private string _directory = null!;

    [SetUp]
    public void SetUp()
    {
        _directory = TempDirectories.Create("fleetsim");
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_directory, recursive: true);

    /// <summary>A running `tsunagu fleetsim ARGS`: standard input to talk to, output lines to read; killed on dispose if still running.</summary>
    private sealed class FleetSim : IDisposable
    {
        private readonly Process _process;
        private readonly Task<string> _stderr;

        public FleetSim(params string[] args)
        {
            var start = new ProcessStartInfo("dotnet") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
            start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "tsunagu.dll"));
            start.ArgumentList.Add("fleetsim");
            foreach (var a in args) { start.ArgumentList.Add(a); }
            _process = Process.Start(start)!;
            _stderr = _process.StandardError.ReadToEndAsync();
        }

        /// <summary>Reads standard output until the line <paramref name="wanted"/>; returns it, or null at the end of output.</summary>
        public async Task<(string? Line, List<string> Before)> ReadUntilAsync(string wanted, TimeSpan limit)
        {
            using var cts = new CancellationTokenSource(limit);
            var before = new List<string>();
            string? line;
            while ((line = await _process.StandardOutput.ReadLineAsync(cts.Token)) is not null && line.Trim() != wanted) { before.Add(line); }
            return (line?.Trim(), before);
        }

        public async Task SayAsync(string line)
        {
            await _process.StandardInput.WriteLineAsync(line);
            await _process.StandardInput.FlushAsync();
        }

        public async Task<(int Exit, string Err)> ExitAsync(TimeSpan limit)
        {
            var rest = _process.StandardOutput.ReadToEndAsync();
            await _process.WaitForExitAsync().WaitAsync(limit);
            await rest;
            return (_process.ExitCode, await _stderr);
        }

        public void Dispose()
        {
            if (!_process.HasExited) { _process.Kill(entireProcessTree: true); }
            _process.Dispose();
        }
    }

    [Test]
    public async Task A_fleet_waits_powered_off_for_its_signal_then_reconnects_and_reports_as_json()
    {
        var json = Path.Combine(_directory, "report.json");
        using var sim = new FleetSim("--units", "8", "--scenario", "power-cut", "--no-first-boot-update", "--no-push", "--power-on-signal",
            "--data", Path.Combine(_directory, "sim"), "--json", json, "--timeout", "120");
        // the first boot runs, then the fleet reports itself powered off and waits
        var (line, before) = await sim.ReadUntilAsync("powered-off", TimeSpan.FromSeconds(120));
        Assert.That(line, Is.EqualTo("powered-off"), "the fleet said it is powered off; before it: " + string.Join('\n', before));
        await sim.SayAsync("power-on");
        var (exit, err) = await sim.ExitAsync(TimeSpan.FromSeconds(150));
        Assert.That(exit, Is.Zero, err);

        using var report = JsonDocument.Parse(await File.ReadAllTextAsync(json));
        var storm = report.RootElement.EnumerateArray().Single(r => r.GetProperty("scenario").GetString() == "power-cut");
        Assert.That(storm.GetProperty("units").GetInt32(), Is.EqualTo(8));
        Assert.That(storm.GetProperty("completed").GetInt32(), Is.EqualTo(8), "every unit came back after the signal");
        Assert.That(storm.GetProperty("requests").GetDouble(), Is.GreaterThanOrEqualTo(8 * 5), "each unit made at least its five reconnect requests");
    }

    [Test]
    public async Task A_power_on_signal_other_than_power_on_stops_the_fleet_with_what_was_read()
    {
        using var sim = new FleetSim("--units", "2", "--scenario", "power-cut", "--no-first-boot-update", "--no-push", "--power-on-signal",
            "--data", Path.Combine(_directory, "sim"), "--timeout", "120");
        var (line, _) = await sim.ReadUntilAsync("powered-off", TimeSpan.FromSeconds(120));
        Assert.That(line, Is.EqualTo("powered-off"));
        await sim.SayAsync("power-of");
        var (exit, err) = await sim.ExitAsync(TimeSpan.FromSeconds(60));
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(err, Does.Contain("--power-on-signal: expected 'power-on' on standard input, read 'power-of'"));
    }

    [Test]
    public async Task A_release_key_that_is_missing_or_not_a_key_is_refused_before_anything_starts()
    {
        var missing = Path.Combine(_directory, "no-such.pub");
        int exit;
        string err;
        using (var sim = new FleetSim("--units", "1", "--release-key", missing, "--data", Path.Combine(_directory, "sim")))
        {
            (exit, err) = await sim.ExitAsync(TimeSpan.FromSeconds(60));
        }
        Assert.That(exit, Is.EqualTo(2));
        Assert.That(err, Does.Contain($"--release-key {missing}: no such file"));

        var garbage = Path.Combine(_directory, "garbage.pub");
        await File.WriteAllTextAsync(garbage, "this is not a key\n");
        using (var sim = new FleetSim("--units", "1", "--release-key", garbage, "--data", Path.Combine(_directory, "sim")))
        {
            (exit, err) = await sim.ExitAsync(TimeSpan.FromSeconds(60));
        }
        Assert.That(exit, Is.EqualTo(2));
        Assert.That(err, Does.Contain($"--release-key {garbage}: not a release public key"));
        Assert.That(Directory.Exists(Path.Combine(_directory, "sim")), Is.False, "nothing was started or written");
    }
}
