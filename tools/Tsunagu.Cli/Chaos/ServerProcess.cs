using System.Diagnostics;
using System.Text;

namespace Tsunagu.Cli.Chaos;

/// <summary>
/// The server as a child process (`tsunagu-server.dll` beside this program) that the nemesis can kill with SIGKILL,
/// stop with SIGTERM and start again on the same data directory and ports. <paramref name="environment"/> is added to
/// the process's environment (the server clock's skew runs it under libfaketime, <see cref="ServerClock"/>).
/// </summary>
public sealed class ServerProcess(string dataDirectory, int port, int mqttPort, IReadOnlyList<string> settings,
    IReadOnlyDictionary<string, string>? environment = null) : IAsyncDisposable
{
    private Process? _process;
    private readonly StringBuilder _output = new();

    public int Port => port;
    public bool IsRunning => _process is { HasExited: false };

    /// <summary>The running process's id (null before the start).</summary>
    public int? Pid => _process?.Id;

    /// <summary>The last lines the server wrote (bounded), for failure messages.</summary>
    public string RecentOutput
    {
        get { lock (_output) { return _output.ToString(); } }
    }

    public static string ServerDll()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "tsunagu-server.dll");
        return File.Exists(path) ? path : throw new FileNotFoundException($"the server's build is missing beside this program ({path})", path);
    }

    public async Task StartAsync(CancellationToken ct)
    {
        if (IsRunning) { throw new InvalidOperationException("the server process is already running"); }
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { ServerDll(), $"--DataDirectory={dataDirectory}", $"--Port={port}", $"--MqttPort={mqttPort}", "--Logging:LogLevel:Default=Warning" }
                     .Concat(settings.Select(s => "--" + s)))
        {
            start.ArgumentList.Add(a);
        }
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[name] = value;
        }
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var process = Process.Start(start) ?? throw new InvalidOperationException("could not start the server");
        void OnLine(string? line)
        {
            if (line is null) { return; }
            lock (_output)
            {
                if (_output.Length > 32_000) { _output.Remove(0, 16_000); }
                _output.AppendLine(line);
            }
            if (line.Contains("listening on", StringComparison.Ordinal)) { ready.TrySetResult(); }
        }
        process.OutputDataReceived += (_, e) => OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;
        await Task.WhenAny(ready.Task, process.WaitForExitAsync(ct)).WaitAsync(TimeSpan.FromMinutes(2), ct);
        if (!ready.Task.IsCompleted)
        {
            throw new InvalidOperationException($"the server exited before listening:\n{RecentOutput}");
        }
    }

    /// <summary>SIGKILL: no shutdown, no flush, no last words.</summary>
    public async Task KillAsync()
    {
        if (_process is not { HasExited: false } p) { return; }
        p.Kill(entireProcessTree: false);
        await p.WaitForExitAsync();
    }

    /// <summary>SIGTERM and wait for a clean shutdown (killed after 30 s).</summary>
    public async Task StopAsync()
    {
        if (_process is not { HasExited: false } p) { return; }
        using (var kill = Process.Start(new ProcessStartInfo("kill", ["-TERM", p.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])))
        {
            kill?.WaitForExit();
        }
        try
        {
            await p.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        }
        catch (TimeoutException)
        {
            await KillAsync();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        _process?.Dispose();
    }
}
