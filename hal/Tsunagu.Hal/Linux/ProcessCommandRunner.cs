using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;

namespace Tsunagu.Hal.Linux;

/// <summary>
/// Runs programs as child processes, each in its own process group (started through `setsid`), so a timeout,
/// a cancellation or a stop kills the program and everything it spawned. Output is captured up to a limit.
/// Programs are looked up in <see cref="SearchPath"/> (default: this process's PATH), so tests can put fake
/// tools first.
/// </summary>
public sealed partial class ProcessCommandRunner : ICommandRunner
{
    private const int SigKill = 9;
    private const int SigTerm = 15;
    private readonly TimeProvider _time;

    public ProcessCommandRunner(IReadOnlyList<string>? searchPath = null, TimeProvider? time = null)
    {
        SearchPath = searchPath ?? (Environment.GetEnvironmentVariable("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin")
            .Split(':', StringSplitOptions.RemoveEmptyEntries);
        _time = time ?? TimeProvider.System;
    }

    public IReadOnlyList<string> SearchPath { get; }

    /// <summary>The absolute path of the program <paramref name="command"/> runs, or a <see cref="CommandException"/> naming the PATH searched.</summary>
    public string Resolve(CommandLine command)
    {
        var program = command.Program;
        if (program.Contains('/'))
        {
            return File.Exists(program) ? Path.GetFullPath(program)
                : throw new CommandException($"`{command}`: {program} does not exist", command, isTransient: false);
        }
        foreach (var dir in SearchPath)
        {
            var candidate = Path.Combine(dir, program);
            if (File.Exists(candidate)) { return candidate; }
        }
        throw new CommandException($"`{command}`: {program} not found on PATH ({string.Join(':', SearchPath)})", command, isTransient: false);
    }

    public async Task<CommandResult> RunAsync(CommandLine command, CommandOptions? options, CancellationToken cancellationToken)
    {
        options ??= CommandOptions.Default;
        using var process = StartProcess(command, options);
        var stdout = new CappedText(options.OutputLimit);
        var stderr = new CappedText(options.OutputLimit);
        var readers = Task.WhenAll(Pump(process.StandardOutput, stdout), Pump(process.StandardError, stderr));
        await FeedInputAsync(process, options.StandardInput);
        using var timeout = new CancellationTokenSource(options.Timeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        try
        {
            await process.WaitForExitAsync(linked.Token);
        }
        catch (OperationCanceledException)
        {
            KillGroup(process.Id, SigKill);
            await process.WaitForExitAsync(CancellationToken.None);
            cancellationToken.ThrowIfCancellationRequested();
            throw new CommandException($"`{command}` did not finish within {options.Timeout.TotalSeconds:0.#} s; its process group was killed",
                command, isTransient: true);
        }
        // a child that daemonized may hold the pipes open: take what has arrived shortly after the exit
        await Task.WhenAny(readers, Task.Delay(TimeSpan.FromSeconds(2), _time, CancellationToken.None));
        return new CommandResult(command, process.ExitCode, stdout.ToString(), stderr.ToString(), stdout.Truncated || stderr.Truncated);
    }

    public IRunningCommand Start(CommandLine command, CommandOptions? options)
    {
        options ??= CommandOptions.Default;
        var process = StartProcess(command, options);
        return new RunningProcess(command, process, options, _time);
    }

    private Process StartProcess(CommandLine command, CommandOptions options)
    {
        var program = Resolve(command);
        var setsid = Resolve(new CommandLine("setsid"));
        var info = new ProcessStartInfo(setsid)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(program);
        foreach (var argument in command.Arguments) { info.ArgumentList.Add(argument); }
        info.Environment["PATH"] = string.Join(':', SearchPath);
        if (options.Environment is { } env)
        {
            foreach (var (key, value) in env) { info.Environment[key] = value; }
        }
        try
        {
            return Process.Start(info) ?? throw new CommandException($"`{command}`: the process did not start", command, isTransient: true);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new CommandException($"`{command}`: cannot start {program}: {e.Message}", command, isTransient: false, e);
        }
    }

    private static async Task FeedInputAsync(Process process, string? input)
    {
        try
        {
            if (input is not null) { await process.StandardInput.WriteAsync(input); }
            process.StandardInput.Close();
        }
        catch (IOException)
        {
            // the program exited without reading its input: its exit status says what happened
        }
    }

    private static async Task Pump(StreamReader reader, CappedText sink)
    {
        var buffer = new char[4096];
        int read;
        while ((read = await reader.ReadAsync(buffer)) > 0)
        {
            sink.Append(buffer.AsSpan(0, read));
        }
    }

    /// <summary>
    /// Signals the process group led by <paramref name="pid"/>. While the leader is still running and has not yet
    /// become a group leader (setsid not done), the leader alone is signalled; after it exited, only its group.
    /// </summary>
    internal static void KillGroup(int pid, int signal, bool leaderRunning = true)
    {
        if (Kill(-pid, signal) != 0 && leaderRunning)
        {
            Kill(pid, signal);
        }
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);

    /// <summary>Keeps the first <c>limit</c> characters (one-shot commands) or, with <c>keepTail</c>, the last ones (daemons).</summary>
    private sealed class CappedText(int limit, bool keepTail = false)
    {
        private readonly StringBuilder _text = new();
        private readonly Lock _gate = new();
        public bool Truncated { get; private set; }

        public void Append(ReadOnlySpan<char> chunk)
        {
            lock (_gate)
            {
                if (keepTail)
                {
                    _text.Append(chunk);
                    if (_text.Length > limit) { _text.Remove(0, _text.Length - limit); Truncated = true; }
                    return;
                }
                var room = limit - _text.Length;
                if (chunk.Length > room) { Truncated = true; chunk = chunk[..Math.Max(0, room)]; }
                _text.Append(chunk);
            }
        }

        public override string ToString() { lock (_gate) { return _text.ToString(); } }
    }

    private sealed class RunningProcess : IRunningCommand
    {
        private readonly Process _process;
        private readonly CappedText _output;
        private readonly TimeProvider _time;

        public RunningProcess(CommandLine command, Process process, CommandOptions options, TimeProvider time)
        {
            Command = command;
            _process = process;
            _time = time;
            _output = new CappedText(Math.Min(options.OutputLimit, 8 * 1024), keepTail: true);
            ProcessId = process.Id;
            _ = Pump(process.StandardOutput, _output);
            _ = Pump(process.StandardError, _output);
            process.StandardInput.Close();
            Exited = WaitAsync();
        }

        public CommandLine Command { get; }
        public int ProcessId { get; }
        public Task<int> Exited { get; }
        public string RecentOutput() => _output.ToString();

        private async Task<int> WaitAsync()
        {
            await _process.WaitForExitAsync(CancellationToken.None);
            return _process.ExitCode;
        }

        public async Task StopAsync(TimeSpan grace, CancellationToken cancellationToken)
        {
            if (!Exited.IsCompleted)
            {
                KillGroup(ProcessId, SigTerm);
                if (await Task.WhenAny(Exited, Task.Delay(grace, _time, cancellationToken)) != Exited)
                {
                    KillGroup(ProcessId, SigKill);
                    await Exited;
                }
            }
            // whatever the leader left behind in its group goes with it
            KillGroup(ProcessId, SigKill, leaderRunning: false);
        }

        public async ValueTask DisposeAsync()
        {
            await StopAsync(TimeSpan.FromSeconds(5), CancellationToken.None);
            _process.Dispose();
        }
    }
}
