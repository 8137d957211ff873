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
        _directory = Path.Combine(Path.GetTempPath(), "tsunagu-fleetsim-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(_directory);
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_directory, recursive: true);

    /// <summary>Starts `tsunagu fleetsim ARGS`; the caller talks to its standard input and reads its output.</summary>
    private static Process Start(params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "tsunagu.dll"));
        start.ArgumentList.Add("fleetsim");
        foreach (var a in args) { start.ArgumentList.Add(a); }
        return Process.Start(start)!;
    }

    private static async Task<(int Exit, string Out, string Err)> RunAsync(Process p, TimeSpan limit)
    {
        using (p)
        {
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            try
            {
                await p.WaitForExitAsync().WaitAsync(limit);
            }
            catch (TimeoutException)
            {
                p.Kill(entireProcessTree: true);
                throw;
            }
            return (p.ExitCode, await stdout, await stderr);
        }
    }

    [Test]
    public async Task A_fleet_waits_powered_off_for_its_signal_then_reconnects_and_reports_as_json()
    {
        var json = Path.Combine(_directory, "report.json");
        var p = Start("--units", "8", "--scenario", "power-cut", "--no-first-boot-update", "--no-push", "--power-on-signal",
            "--data", Path.Combine(_directory, "sim"), "--json", json, "--timeout", "120");
        // the first boot runs, then the fleet reports itself powered off and waits
        string? line;
        var lines = new List<string>();
        using (var limit = new CancellationTokenSource(TimeSpan.FromSeconds(120)))
        {
            while ((line = await p.StandardOutput.ReadLineAsync(limit.Token)) is not null && line.Trim() != "powered-off") { lines.Add(line); }
        }
        Assert.That(line, Is.EqualTo("powered-off"), "the fleet said it is powered off; before it: " + string.Join('\n', lines));
        await p.StandardInput.WriteLineAsync("power-on");
        await p.StandardInput.FlushAsync();
        var (exit, _, err) = await RunAsync(p, TimeSpan.FromSeconds(150));
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
        var p = Start("--units", "2", "--scenario", "power-cut", "--no-first-boot-update", "--no-push", "--power-on-signal",
            "--data", Path.Combine(_directory, "sim"), "--timeout", "120");
        string? line;
        using (var limit = new CancellationTokenSource(TimeSpan.FromSeconds(120)))
        {
            while ((line = await p.StandardOutput.ReadLineAsync(limit.Token)) is not null && line.Trim() != "powered-off") { }
        }
        Assert.That(line, Is.EqualTo("powered-off"));
        await p.StandardInput.WriteLineAsync("power-of");
        await p.StandardInput.FlushAsync();
        var (exit, _, err) = await RunAsync(p, TimeSpan.FromSeconds(60));
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(err, Does.Contain("--power-on-signal: expected 'power-on' on standard input, read 'power-of'"));
    }

    [Test]
    public async Task A_release_key_that_is_missing_or_not_a_key_is_refused_before_anything_starts()
    {
        var missing = Path.Combine(_directory, "no-such.pub");
        var (exit, _, err) = await RunAsync(Start("--units", "1", "--release-key", missing, "--data", Path.Combine(_directory, "sim")), TimeSpan.FromSeconds(60));
        Assert.That(exit, Is.EqualTo(2));
        Assert.That(err, Does.Contain($"--release-key {missing}: no such file"));

        var garbage = Path.Combine(_directory, "garbage.pub");
        await File.WriteAllTextAsync(garbage, "this is not a key\n");
        (exit, _, err) = await RunAsync(Start("--units", "1", "--release-key", garbage, "--data", Path.Combine(_directory, "sim")), TimeSpan.FromSeconds(60));
        Assert.That(exit, Is.EqualTo(2));
        Assert.That(err, Does.Contain($"--release-key {garbage}: not a release public key"));
        Assert.That(Directory.Exists(Path.Combine(_directory, "sim")), Is.False, "nothing was started or written");
    }
}
