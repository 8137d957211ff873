using System.ComponentModel;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;

namespace Tsunagu.Firmware.Updates;

/// <summary>How a script run ended. <see cref="ExitCode"/> is null when it timed out.</summary>
public sealed record ScriptResult(string Script, string Phase, int? ExitCode, bool TimedOut, string Stderr, bool StderrTruncated, TimeSpan Elapsed)
{
    /// <summary>The contract's meaning of the result (docs/bundles.md).</summary>
    public ScriptVerdict Verdict => TimedOut ? ScriptVerdict.Abort
        : ExitCode switch { 0 => ScriptVerdict.Continue, ScriptRunner.RetryLaterExit => ScriptVerdict.RetryLater, _ => ScriptVerdict.Abort };

    public string Describe()
    {
        var how = TimedOut ? $"timed out after {Elapsed.TotalSeconds:0.#}s; its process group was killed"
            : ExitCode switch
            {
                0 => "exited 0 (continue)",
                1 => "exited 1 (abort and roll back)",
                ScriptRunner.RetryLaterExit => $"exited {ScriptRunner.RetryLaterExit} (retry later)",
                _ => $"exited {ExitCode}, which the contract treats as abort (0 continue, 1 abort, {ScriptRunner.RetryLaterExit} retry later)",
            };
        var tail = Stderr.Length > 400 ? "..." + Stderr[^400..] : Stderr;
        return $"{Phase} script {Script} {how}" + (tail.Length > 0 ? $"; stderr: {tail.TrimEnd()}" : "") + (StderrTruncated ? " [stderr capped]" : "");
    }
}

public enum ScriptVerdict { Continue, Abort, RetryLater }

/// <summary>
/// Runs update scripts under the contract (docs/bundles.md): `SCRIPT PHASE` in its own session and process group
/// (through `setsid`), stdin empty, environment `TSUNAGU_*`, stderr captured up to a cap, a timeout that kills
/// the whole process group. When the script ends its process group is killed too, so nothing it started outlives it.
/// </summary>
public sealed partial class ScriptRunner(TimeProvider time, int stderrCap = 16 * 1024, string setsid = "/usr/bin/setsid")
{
    public const int RetryLaterExit = 21;
    private const int SigKill = 9;

    public async Task<ScriptResult> RunAsync(string script, string phase, IReadOnlyDictionary<string, string> environment,
        string workingDirectory, TimeSpan timeout, CancellationToken ct)
    {
        if (OperatingSystem.IsWindows())
        {
            throw new PlatformNotSupportedException($"{phase} script {Path.GetFileName(script)}: update scripts run only on a POSIX system");
        }
        File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute |
                                     UnixFileMode.GroupRead | UnixFileMode.GroupExecute);
        Directory.CreateDirectory(workingDirectory);
        var info = new ProcessStartInfo(setsid)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(script);
        info.ArgumentList.Add(phase);
        foreach (var (k, v) in environment) { info.Environment[k] = v; }
        info.Environment["TSUNAGU_PHASE"] = phase;

        var started = time.GetTimestamp();
        using var process = new Process { StartInfo = info };
        try
        {
            process.Start();
        }
        catch (Win32Exception e)
        {
            throw new IOException($"{phase} script {Path.GetFileName(script)}: cannot start {setsid} {script}: {e.Message}", e);
        }
        // setsid(1) calls setsid(2) without forking when it is not a group leader (a fresh child never is),
        // so the script's pid is its process group id.
        var group = process.Id;
        process.StandardInput.Close();
        var stdout = process.StandardOutput.BaseStream.CopyToAsync(Stream.Null, CancellationToken.None);
        var stderr = CaptureAsync(process.StandardError.BaseStream);

        using var timeoutCts = new CancellationTokenSource(timeout, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, timeoutCts.Token);
        var timedOut = false;
        try
        {
            await process.WaitForExitAsync(linked.Token);
        }
        catch (OperationCanceledException)
        {
            KillGroup(group);
            await process.WaitForExitAsync(CancellationToken.None);
            if (ct.IsCancellationRequested)
            {
                throw;
            }
            timedOut = true;
        }
        KillGroup(group); // anything the script left running in its group goes with it
        var drained = Task.WhenAll(stdout, stderr);
        await Task.WhenAny(drained, Task.Delay(TimeSpan.FromSeconds(2), CancellationToken.None));
        var (text, truncated) = stderr.IsCompletedSuccessfully ? stderr.Result : ("", false);
        return new ScriptResult(Path.GetFileName(script), phase, timedOut ? null : process.ExitCode, timedOut, text, truncated,
            time.GetElapsedTime(started));
    }

    private async Task<(string Text, bool Truncated)> CaptureAsync(Stream stream)
    {
        var kept = new MemoryStream();
        var buffer = new byte[4096];
        var truncated = false;
        int read;
        while ((read = await stream.ReadAsync(buffer)) > 0)
        {
            var room = stderrCap - (int)kept.Length;
            if (room > 0) { kept.Write(buffer, 0, Math.Min(room, read)); }
            if (read > room) { truncated = true; }
        }
        return (Encoding.UTF8.GetString(kept.ToArray()), truncated);
    }

    private static void KillGroup(int group)
    {
        if (Kill(-group, SigKill) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            const int NoSuchProcess = 3;
            if (errno != NoSuchProcess)
            {
                throw new IOException($"cannot kill process group {group}: errno {errno} ({Marshal.GetPInvokeErrorMessage(errno)})");
            }
        }
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}
