using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;

namespace Tsunagu.Bench;

/// <summary>
/// The server (tsunagu-server.dll, built with the bench) as a child process on loopback: its own file descriptors
/// and its own RSS. Stopped by PID.
/// </summary>
public sealed class ServerProcess : IAsyncDisposable
{
    private const string OperatorName = "bench";
    private readonly Process _process;
    private readonly string _password;

    private ServerProcess(Process process, int port, int mqttPort, string password)
    {
        _process = process;
        Port = port;
        MqttPort = mqttPort;
        _password = password;
    }

    public int Pid => _process.Id;
    public int Port { get; }
    public int MqttPort { get; }
    public Uri Url => new($"https://127.0.0.1:{Port}/");

    /// <summary>The repository (the directory with Tsunagu.slnx above the bench's build output).</summary>
    public static string RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "Tsunagu.slnx"))) { return d.FullName; }
        }
        throw new InvalidOperationException($"no Tsunagu.slnx above {AppContext.BaseDirectory}");
    }

    /// <summary>The server's build output next to the bench's (same configuration).</summary>
    public static string ServerDll() => BuiltDll(Path.Combine("server", "Tsunagu.Server"), "tsunagu-server.dll");

    /// <summary>A project's build output (<paramref name="project"/> relative to the repository) in the bench's configuration and framework.</summary>
    public static string BuiltDll(string project, string dll)
    {
        var benchOut = AppContext.BaseDirectory.TrimEnd('/');                    // .../bench/Tsunagu.Bench/bin/Release/net10.0
        var framework = Path.GetFileName(benchOut);
        var configuration = Path.GetFileName(Path.GetDirectoryName(benchOut)!);
        var root = Path.GetFullPath(Path.Combine(benchOut, "../../../../.."));
        var path = Path.Combine(root, project, "bin", configuration, framework, dll);
        return File.Exists(path) ? path : throw new FileNotFoundException($"the build of {project} is missing ({path}); build bench/Tsunagu.Bench first", path);
    }

    /// <param name="mqtt">null: embedded broker; "none": no broker; else the server's Mqtt setting (a Mosquitto with dynamic security).</param>
    /// <param name="port">The HTTPS port (a restart keeps the one units know); null: a free one.</param>
    /// <param name="settings">More server settings, as name=value.</param>
    public static async Task<ServerProcess> StartAsync(string dataDirectory, string? mqtt, Action<string> progress, CancellationToken ct,
        int? port = null, IEnumerable<string>? settings = null)
    {
        port ??= Tools.FreePort();
        var noBroker = mqtt == "none";
        var mqttPort = mqtt is null ? Tools.FreePort() : -1;
        var password = Guid.NewGuid().ToString("N");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[]
                 {
                     ServerDll(), $"--DataDirectory={dataDirectory}", $"--Port={port}", $"--MqttPort={(noBroker ? -1 : 0)}", $"--MqttPlainPort={(mqtt is null ? mqttPort : -1)}",
                     $"--Mqtt={(mqtt is null || noBroker ? "embedded" : mqtt)}", $"--OperatorName={OperatorName}", $"--OperatorPassword={password}",
                     "--Logging:LogLevel:Default=Warning",
                 }.Concat((settings ?? []).Select(s => $"--{s}")))
        {
            start.ArgumentList.Add(a);
        }
        var process = Process.Start(start) ?? throw new InvalidOperationException("could not start the server");
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var output = new StringBuilder();
        void OnLine(string? line)
        {
            if (line is null) { return; }
            lock (output) { if (output.Length < 64_000) { output.AppendLine(line); } }
            if (line.Contains("listening on", StringComparison.Ordinal)) { ready.TrySetResult(); }
        }
        process.OutputDataReceived += (_, e) => OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var server = new ServerProcess(process, port.Value, mqttPort, password);
        try
        {
            await Task.WhenAny(ready.Task, process.WaitForExitAsync(ct)).WaitAsync(TimeSpan.FromMinutes(3), ct);
            if (!ready.Task.IsCompleted) { throw new InvalidOperationException($"the server exited before listening:\n{output}"); }
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
        progress($"server process {process.Id} on {server.Url} ({(mqtt is null ? $"embedded broker on {mqttPort}" : noBroker ? "no broker" : "Mosquitto")})");
        return server;
    }

    public HttpClient Operator()
    {
        var http = new HttpClient(new SocketsHttpHandler
        {
            SslOptions = { RemoteCertificateValidationCallback = (_, _, _, _) => true }, // loopback bench, the server's own self-signed certificate
        })
        { BaseAddress = Url, Timeout = TimeSpan.FromMinutes(3) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{OperatorName}:{_password}")));
        return http;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited) { _process.Kill(); }
        await _process.WaitForExitAsync();
        _process.Dispose();
    }
}
