using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Tsunagu.Cli.Chaos;

/// <summary>
/// A real Mosquitto with the dynamic-security plugin for the nemesis (the server's external broker): its own
/// configuration and accounts in a directory of the run, a loopback port, and a process the nemesis can kill
/// (SIGKILL: no clean disconnects, no wills) and start again on the same port and accounts while the server stays up.
/// </summary>
public sealed class MosquittoProcess : IAsyncDisposable
{
    public const string Program = "/usr/sbin/mosquitto";
    public const string Plugin = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so";
    private readonly string _directory;
    private readonly StringBuilder _output = new();
    private Process? _process;

    private MosquittoProcess(string directory, int port, string adminPassword)
    {
        _directory = directory;
        Port = port;
        AdminPassword = adminPassword;
    }

    public int Port { get; }
    public string AdminPassword { get; }

    /// <summary>The broker's configuration and accounts.</summary>
    public string Directory => _directory;

    /// <summary>The server's <c>Mqtt</c> setting for this broker.</summary>
    public string Setting => $"mqtt://admin:{AdminPassword}@127.0.0.1:{Port}";

    public bool IsRunning => _process is { HasExited: false };

    public static bool IsAvailable => File.Exists(Program) && File.Exists(Plugin);

    /// <summary>Writes the configuration and the admin account into <paramref name="directory"/> and starts the broker.</summary>
    public static async Task<MosquittoProcess> StartAsync(string directory, int port, CancellationToken ct)
    {
        if (!IsAvailable)
        {
            throw new ArgumentException($"--broker mosquitto needs Mosquitto with dynamic security ({Program}, {Plugin}): install the Debian packages 'mosquitto' and 'mosquitto-clients'");
        }
        System.IO.Directory.CreateDirectory(directory);
        var password = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16));
        var dynsec = Path.Combine(directory, "dynsec.json");
        await RunAsync("mosquitto_ctrl", ["dynsec", "init", dynsec, "admin", password], ct);
        await File.WriteAllTextAsync(Path.Combine(directory, "mosquitto.conf"), string.Create(CultureInfo.InvariantCulture, $"""
            listener {port} 127.0.0.1
            allow_anonymous false
            plugin {Plugin}
            plugin_opt_config_file {dynsec}
            persistence false
            log_dest stdout
            log_type error
            log_type warning

            """), ct);
        if (Environment.IsPrivilegedProcess)
        {
            // run as root, mosquitto drops to its own user, which must be able to write the accounts
            await RunAsync("chown", ["-R", "mosquitto", directory], ct);
        }
        var broker = new MosquittoProcess(directory, port, password);
        await broker.StartAgainAsync(ct);
        return broker;
    }

    /// <summary>Starts the broker (again) on its port and configuration, and waits until it takes connections.</summary>
    public async Task StartAgainAsync(CancellationToken ct)
    {
        if (IsRunning) { throw new InvalidOperationException("mosquitto is already running"); }
        _process?.Dispose();
        var start = new ProcessStartInfo(Program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(Path.Combine(_directory, "mosquitto.conf"));
        var process = Process.Start(start) ?? throw new InvalidOperationException("could not start mosquitto");
        process.OutputDataReceived += (_, e) => Keep(e.Data);
        process.ErrorDataReceived += (_, e) => Keep(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;
        var deadline = Stopwatch.GetTimestamp() + 15 * Stopwatch.Frequency;
        while (true)
        {
            try
            {
                using var probe = new TcpClient();
                await probe.ConnectAsync(IPAddress.Loopback, Port, ct);
                return;
            }
            catch (SocketException) when (Stopwatch.GetTimestamp() < deadline && !process.HasExited)
            {
                await Task.Delay(100, ct);
            }
            catch (SocketException e)
            {
                await KillAsync();
                string output;
                lock (_output) { output = _output.ToString(); }
                throw new InvalidOperationException($"mosquitto did not take connections on port {Port}: {e.SocketErrorCode}; it wrote: {output}");
            }
        }
    }

    private void Keep(string? line)
    {
        if (line is null) { return; }
        lock (_output)
        {
            if (_output.Length > 16_000) { _output.Remove(0, 8_000); }
            _output.AppendLine(line);
        }
    }

    /// <summary>SIGKILL, as a crash: the units and the server see their connections drop without a word.</summary>
    public async Task KillAsync()
    {
        if (_process is not { HasExited: false } p) { return; }
        p.Kill(entireProcessTree: false);
        await p.WaitForExitAsync();
    }

    private static async Task RunAsync(string program, IReadOnlyList<string> arguments, CancellationToken ct)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in arguments) { start.ArgumentList.Add(a); }
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {program}");
        var output = process.StandardOutput.ReadToEndAsync(ct);
        var error = process.StandardError.ReadToEndAsync(ct);
        await process.WaitForExitAsync(ct);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{program} {string.Join(' ', arguments)} exited with {process.ExitCode}: {await output}{await error}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        _process?.Dispose();
    }
}
