using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;

namespace Tsunagu.SystemTests.Qemu;

/// <summary>Where a cut lands: while the unit provisions, while it installs its update, or while it runs.</summary>
public enum CutPhase { Provisioning, Update, Steady }

/// <summary>One power cut and what the unit and the server showed after it.</summary>
public sealed record PowerCut(int Index, CutPhase Phase, string Step, TimeSpan Delay, string LastLine, bool Fresh, bool SettingsStored,
    bool Provisioned, long? CounterBefore, long? CounterAfter, string RunningOs, int FsckRawExit, int FsckReplayExit, int FsckCleanExit,
    TimeSpan ToReady, IReadOnlyList<string> Failures);

/// <summary>
/// Hard power cuts of one QEMU unit (QEMU killed, nothing in the guest flushes) at chosen steps of provisioning, of the
/// update's install and of steady state, each followed by a random delay. After every cut, with QEMU off, the `data`
/// file system is checked with e2fsck; then the unit is powered on and, once the server sees it Ready again, the
/// invariants are checked: no provisioning when the settings had been stored, the bundle counter the unit reports never
/// below the one it reported before, the unit running the OS the server records, its boot state file complete, and
/// exactly one successful update report in the server's history per install.
/// </summary>
public sealed class PowerCutCampaign(QemuLab lab, QemuUnit unit, int seed, TextWriter log)
{
    /// <summary>A boot with provisioning, the update and its restart takes 2-4 minutes under TCG on a quiet machine; far more on a loaded one.</summary>
    public static readonly TimeSpan BootToReady = TimeSpan.FromMinutes(10);

    /// <summary>The console lines a cut waits for, per phase; the random delay after each is up to the phase's bound.</summary>
    public static readonly IReadOnlyDictionary<CutPhase, string[]> Steps = new Dictionary<CutPhase, string[]>
    {
        [CutPhase.Provisioning] = ["--> Provisional", "--> FetchSettings", "--> StoreSettings", "StoreSettings --Success-->"],
        [CutPhase.Update] = ["--> Update", "manifest signed by release key", "trying slot", "tsunagu-boot: starting slot"],
        [CutPhase.Steady] = ["--> Ready"],
    };

    private static readonly Dictionary<CutPhase, int> MaxDelayMs = new()
    {
        // provisioning takes about a second under TCG: a short delay keeps the cut inside it
        [CutPhase.Provisioning] = 300, [CutPhase.Update] = 2_000, [CutPhase.Steady] = 20_000,
    };

    private readonly Random _random = new(seed);
    private readonly List<PowerCut> _cuts = [];
    private int _installs; // fresh starts (first boot, and each boot after `data` was wiped): each must end in one successful update report
    private bool _updated; // the unit has finished its update since the last fresh start
    private bool _settingsStored;
    private long? _counter;
    private bool _on;

    public IReadOnlyList<PowerCut> Cuts => _cuts;
    public int Seed => seed;

    /// <summary>Runs one cut in <paramref name="phase"/>: wipes `data` first when the phase is already behind the unit.</summary>
    public async Task CutAsync(CutPhase phase)
    {
        var fresh = false;
        if (_installs == 0 || (phase == CutPhase.Provisioning && _settingsStored) || (phase == CutPhase.Update && _updated))
        {
            if (_installs > 0)
            {
                await unit.PowerOffAsync();
                unit.CorruptPartition("data"); // the boot program rebuilds it from the recovery OS: provisioning and the update again
            }
            _installs++;
            _settingsStored = false;
            _updated = false;
            _counter = null;
            fresh = true;
            unit.PowerOn();
            _on = true;
        }
        else if (!_on)
        {
            unit.PowerOn();
            _on = true;
        }
        var steps = Steps[phase];
        var step = steps[_random.Next(steps.Length)];
        await unit.WaitAsync(() => unit.Console().Contains(step, StringComparison.Ordinal), BootToReady, $"'{step}' before cut {_cuts.Count + 1}");
        var delay = TimeSpan.FromMilliseconds(_random.Next(0, MaxDelayMs[phase]));
        await Task.Delay(delay);
        var console = unit.Console();
        await unit.PowerOffAsync();
        _on = false;
        var lastLine = console.Split('\n').LastOrDefault(l => l.Contains("-->", StringComparison.Ordinal) || l.StartsWith("tsunagu-boot:", StringComparison.Ordinal)
                                                            || l.Contains("update ", StringComparison.Ordinal))?.Trim() ?? "(before the OS)";
        // settings on `data` once StoreSettings returned; the unit also has them when it booted with them (no provisioning in this cycle)
        _settingsStored |= console.Contains("StoreSettings --Success-->", StringComparison.Ordinal) || console.Contains("Boot --Success--> Main", StringComparison.Ordinal);
        var failures = new List<string>();

        var (raw, replay, clean, fsckOutput) = CheckDataFileSystem();
        if (clean != 0) { failures.Add($"e2fsck -fn after the journal replay exited {clean}: {fsckOutput}"); }

        var provisioningBefore = lab.ProvisioningRequests.Count;
        var clock = Stopwatch.StartNew();
        unit.PowerOn();
        _on = true;
        await unit.WaitAsync(async () => (await lab.UnitAsync(unit.Mac)) is { State: UnitStates.Ready } u && u.Pattern == LabCatalogue.Pattern2
                                   && unit.Console().Contains("--> Ready", StringComparison.Ordinal), BootToReady, $"Ready on {LabCatalogue.Pattern2} after cut {_cuts.Count + 1}");
        var toReady = clock.Elapsed;
        var after = unit.Console();
        var provisioned = after.Contains("--NeedsProvisioning--> Provisional", StringComparison.Ordinal);
        var provisioningRequests = lab.ProvisioningRequests.Count - provisioningBefore;
        if (_settingsStored && (provisioned || provisioningRequests > 0))
        {
            failures.Add($"provisioned again although the settings were stored ({provisioningRequests} provisioning request(s) at the server)");
        }
        if (!provisioned && provisioningRequests > 0)
        {
            failures.Add($"{provisioningRequests} provisioning request(s) at the server from a unit that did not provision");
        }
        _settingsStored = true;
        _updated = true;

        var row = (await lab.UnitAsync(unit.Mac))!;
        var counter = row.Inventory is { } json ? JsonSerializer.Deserialize(json, ProtocolJson.Default.Inventory)?.LastBundle?.Version : null;
        if (counter is null) { failures.Add("the unit reports no bundle counter at Ready on the updated pattern"); }
        if (_counter is { } before && (counter ?? long.MinValue) < before)
        {
            failures.Add($"the bundle counter went back from {before} to {counter?.ToString(CultureInfo.InvariantCulture) ?? "none"}");
        }
        var counterBefore = _counter;
        _counter = counter;

        var os = await unit.ShellAsync("cat /etc/os-version");
        if (os != "tsunagu-os 1.1") { failures.Add($"the unit runs '{os}' while the server records it Ready on {row.Pattern}"); }
        var state = await unit.ShellAsync("cat /data/boot/state");
        var primary = Value(state, "primary");
        if (primary is not ("a" or "b") || Value(state, primary + "_good") != "1" || Value(state, primary + "_version") != os)
        {
            failures.Add($"boot state does not name a good primary slot running {os}: {state.ReplaceLineEndings(" ")}");
        }

        var successes = (await lab.Store.History.ListUnitEventsAsync(unit.Mac, 1_000)).Count(e => e.Kind == UnitEventKinds.Update && e.Failed == 0);
        if (successes != _installs)
        {
            failures.Add($"{successes} successful update report(s) in the server's history for {_installs} install(s): a report {(successes > _installs ? "duplicated" : "lost")}");
        }

        var cut = new PowerCut(_cuts.Count + 1, phase, step, delay, lastLine, fresh, _settingsStored, provisioned, counterBefore, counter, os,
            raw, replay, clean, toReady, failures);
        _cuts.Add(cut);
        log.WriteLine($"cut {cut.Index} [{phase}] {delay.TotalSeconds:0.00} s after '{step}' (last line: {lastLine}); e2fsck {raw}/{replay}/{clean}; "
                      + $"{(provisioned ? "provisioned" : "no provisioning")}; counter {counterBefore?.ToString(CultureInfo.InvariantCulture) ?? "-"} -> {counter?.ToString(CultureInfo.InvariantCulture) ?? "-"}; "
                      + $"Ready after {toReady.TotalSeconds:0.0} s{(failures.Count == 0 ? "" : "; FAILED: " + string.Join("; ", failures))}");
    }

    private static string? Value(string state, string key) =>
        state.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.StartsWith(key + "=", StringComparison.Ordinal))?[(key.Length + 1)..];

    /// <summary>
    /// e2fsck on a copy of the `data` partition (QEMU is off): `-fn` as the cut left it, then the journal replayed as
    /// the kernel does at mount (`-E journal_only`), then `-fn` again, which must find nothing.
    /// </summary>
    private (int Raw, int Replay, int Clean, string Output) CheckDataFileSystem()
    {
        var copy = Path.Combine(unit.Directory, "data-fsck.img");
        using (var target = new FileStream(copy, FileMode.Create, FileAccess.Write))
        {
            DiskPartitions.Read(unit.Disk, "data", (buffer, count) => target.Write(buffer, 0, count));
        }
        try
        {
            var (raw, _) = E2fsck("-fn", copy);
            var (replay, replayOutput) = E2fsck("-y -E journal_only", copy);
            var (clean, cleanOutput) = E2fsck("-fn", copy);
            return (raw, replay, clean, replayOutput + cleanOutput);
        }
        finally
        {
            File.Delete(copy);
        }
    }

    private static (int Exit, string Output) E2fsck(string options, string image)
    {
        var start = new ProcessStartInfo("e2fsck") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var o in options.Split(' ')) { start.ArgumentList.Add(o); }
        start.ArgumentList.Add(image);
        using var p = Process.Start(start) ?? throw new InvalidOperationException("e2fsck did not start");
        var stderr = p.StandardError.ReadToEndAsync();
        var stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        // 8 and above: e2fsck could not run at all (not a verdict on the file system)
        if (p.ExitCode >= 8) { throw new InvalidOperationException($"e2fsck {options} {image} exited with {p.ExitCode}: {stdout}{stderr.Result}"); }
        return (p.ExitCode, stdout + stderr.Result);
    }

    public const string ReportBegin = "<!-- power-cuts:begin (written by `make power-cuts`) -->";
    public const string ReportEnd = "<!-- power-cuts:end -->";

    /// <summary>The results as the generated section of docs/reliability.md.</summary>
    public string Report(TimeSpan elapsed, string machine)
    {
        var s = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        var failed = _cuts.Count(c => c.Failures.Count > 0);
        s.AppendLine(inv, $"`make power-cuts N={_cuts.Count}` (seed {seed}), {DateTime.UtcNow:yyyy-MM-dd}, {machine}: {_cuts.Count} cuts in {elapsed.TotalMinutes:0.0} min, "
                          + $"{failed} with a broken invariant.");
        s.AppendLine();
        s.AppendLine("| phase | cuts | after a fresh start | provisioned again: with settings stored / in all | e2fsck -fn as cut: clean / errors | journal replay: e2fsck exit ≠ 0 | e2fsck -fn after replay: clean | time to Ready: median / longest | failures |");
        s.AppendLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var phase in Enum.GetValues<CutPhase>())
        {
            var cuts = _cuts.Where(c => c.Phase == phase).ToList();
            if (cuts.Count == 0) { continue; }
            var times = cuts.Select(c => c.ToReady.TotalSeconds).Order().ToList();
            s.AppendLine(inv, $"| {phase.ToString().ToLowerInvariant()} | {cuts.Count} | {cuts.Count(c => c.Fresh)} | "
                              + $"{cuts.Count(c => c.Provisioned && c.SettingsStored)} / {cuts.Count(c => c.Provisioned)} | "
                              + $"{cuts.Count(c => c.FsckRawExit == 0)} / {cuts.Count(c => c.FsckRawExit != 0)} | {cuts.Count(c => c.FsckReplayExit != 0)} | "
                              + $"{cuts.Count(c => c.FsckCleanExit == 0)} | {times[times.Count / 2]:0.0} s / {times[^1]:0.0} s | {cuts.Count(c => c.Failures.Count > 0)} |");
        }
        s.AppendLine();
        s.AppendLine("| # | phase | cut | last console line before it | e2fsck (as cut / replay / after) | provisioned | bundle counter | Ready after | result |");
        s.AppendLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var c in _cuts)
        {
            s.AppendLine(inv, $"| {c.Index} | {c.Phase.ToString().ToLowerInvariant()}{(c.Fresh ? " (fresh)" : "")} | {c.Delay.TotalSeconds:0.00} s after `{c.Step}` | "
                              + $"`{c.LastLine.Replace("|", "\\|", StringComparison.Ordinal)}` | {c.FsckRawExit} / {c.FsckReplayExit} / {c.FsckCleanExit} | {(c.Provisioned ? "yes" : "no")} | "
                              + $"{c.CounterBefore?.ToString(inv) ?? "-"} → {c.CounterAfter?.ToString(inv) ?? "-"} | {c.ToReady.TotalSeconds:0.0} s | "
                              + $"{(c.Failures.Count == 0 ? "held" : "BROKEN: " + string.Join("; ", c.Failures).Replace("|", "\\|", StringComparison.Ordinal))} |");
        }
        return s.ToString();
    }

    /// <summary>Replaces the generated section of <paramref name="path"/> (between the markers) with <paramref name="section"/>.</summary>
    public static void WriteReport(string path, string section)
    {
        var text = File.ReadAllText(path);
        var begin = text.IndexOf(ReportBegin, StringComparison.Ordinal);
        var end = text.IndexOf(ReportEnd, StringComparison.Ordinal);
        if (begin < 0 || end < begin) { throw new InvalidOperationException($"{path}: no '{ReportBegin}' ... '{ReportEnd}' section to replace"); }
        File.WriteAllText(path, text[..(begin + ReportBegin.Length)] + "\n" + section + text[end..]);
    }
}
