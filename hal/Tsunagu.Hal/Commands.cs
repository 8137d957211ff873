namespace Tsunagu.Hal;

/// <summary>An external program and its arguments (never a shell string).</summary>
public sealed record CommandLine(string Program, IReadOnlyList<string> Arguments)
{
    public CommandLine(string program, params string[] arguments) : this(program, (IReadOnlyList<string>)arguments) { }

    public override string ToString() => Arguments.Count == 0 ? Program : $"{Program} {string.Join(' ', Arguments.Select(Quote))}";

    private static string Quote(string a) => a.Length > 0 && a.All(c => !char.IsWhiteSpace(c) && c is not ('\'' or '"')) ? a : $"'{a.Replace("'", "'\\''")}'";
}

public sealed record CommandOptions
{
    public static CommandOptions Default { get; } = new();

    /// <summary>Longest run of a one-shot command; the whole process group is killed when it is exceeded.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Characters kept of each of standard output and standard error; the rest is read and dropped.</summary>
    public int OutputLimit { get; init; } = 64 * 1024;

    /// <summary>Variables added to (or replacing those of) the runner's environment.</summary>
    public IReadOnlyDictionary<string, string>? Environment { get; init; }

    public string? StandardInput { get; init; }
}

public sealed record CommandResult(CommandLine Command, int ExitCode, string Output, string Error, bool Truncated)
{
    public bool Succeeded => ExitCode == 0;

    /// <exception cref="CommandFailedException">The command exited with a non-zero status.</exception>
    public CommandResult EnsureSuccess(string what) => Succeeded ? this : throw new CommandFailedException(what, this);

    /// <summary>Standard error, else standard output, trimmed to a few lines: what a message should quote.</summary>
    public string Diagnostic()
    {
        var text = (string.IsNullOrWhiteSpace(Error) ? Output : Error).Trim();
        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        return lines.Length <= 8 ? text : string.Join('\n', lines[^8..]);
    }
}

/// <summary>An external program could not be run, timed out, or failed.</summary>
public class CommandException(string message, CommandLine command, bool isTransient, Exception? inner = null)
    : HalException(message, isTransient, inner)
{
    public CommandLine Command { get; } = command;
}

/// <summary>A command ran and exited non-zero; <see cref="Result"/> holds its output.</summary>
public sealed class CommandFailedException(string what, CommandResult result)
    : CommandException($"{what}: `{result.Command}` exited with {result.ExitCode}: {result.Diagnostic()}", result.Command, isTransient: false)
{
    public CommandResult Result { get; } = result;
}

/// <summary>A long-running program started by an <see cref="ICommandRunner"/> (a daemon kept in the foreground).</summary>
public interface IRunningCommand : IAsyncDisposable
{
    CommandLine Command { get; }
    int ProcessId { get; }

    /// <summary>Completes with the exit status when the program ends, for whatever reason.</summary>
    Task<int> Exited { get; }

    /// <summary>The last few kilobytes the program wrote (standard output and error interleaved).</summary>
    string RecentOutput();

    /// <summary>Asks the process group to stop (SIGTERM), then kills it (SIGKILL) after <paramref name="grace"/>.</summary>
    Task StopAsync(TimeSpan grace, CancellationToken cancellationToken);
}

/// <summary>
/// The one way the unit runs external programs (nft, dnsmasq, ip, wg, squid, pppd...). Implementations: a
/// process-based runner, and wrappers (e.g. running inside a network namespace). Tests put fake tools on PATH.
/// </summary>
public interface ICommandRunner
{
    /// <summary>Runs a program to completion and captures its output (capped).</summary>
    /// <exception cref="CommandException">The program was not found, could not start, or exceeded its timeout.</exception>
    /// <exception cref="OperationCanceledException">Cancelled; the process group was killed.</exception>
    Task<CommandResult> RunAsync(CommandLine command, CommandOptions? options, CancellationToken cancellationToken);

    /// <summary>Starts a long-running program in its own process group.</summary>
    /// <exception cref="CommandException">The program was not found or could not start.</exception>
    IRunningCommand Start(CommandLine command, CommandOptions? options);
}

/// <summary>Runs every command behind a fixed prefix, e.g. `ip netns exec NAME` to run inside a network namespace.</summary>
public sealed class PrefixCommandRunner(ICommandRunner inner, params string[] prefix) : ICommandRunner
{
    public static PrefixCommandRunner InNetworkNamespace(ICommandRunner inner, string name) => new(inner, "ip", "netns", "exec", name);

    public Task<CommandResult> RunAsync(CommandLine command, CommandOptions? options, CancellationToken cancellationToken) =>
        inner.RunAsync(Wrap(command), options, cancellationToken);

    public IRunningCommand Start(CommandLine command, CommandOptions? options) => inner.Start(Wrap(command), options);

    private CommandLine Wrap(CommandLine command) => prefix.Length == 0 ? command
        : new CommandLine(prefix[0], [.. prefix[1..], command.Program, .. command.Arguments]);
}
