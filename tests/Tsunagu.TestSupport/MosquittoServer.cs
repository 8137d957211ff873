using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using MQTTnet;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// A real Mosquitto with the dynamic-security plugin, started by the test on a free loopback port with its own
/// configuration in a temporary directory; stopped by PID.
/// </summary>
public sealed class MosquittoServer : IDisposable
{
    public const string Plugin = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so";
    private Process _process;
    private readonly string _directory;

    private MosquittoServer(Process process, string directory, int port, string adminPassword)
    {
        _process = process;
        _directory = directory;
        Port = port;
        AdminPassword = adminPassword;
    }

    public int Port { get; }
    public string AdminPassword { get; }

    /// <summary>The server's `Mqtt` setting for this broker.</summary>
    public string Setting => $"mqtt://admin:{AdminPassword}@127.0.0.1:{Port}";

    public static MosquittoServer Start()
    {
        if (!File.Exists("/usr/sbin/mosquitto") || !File.Exists(Plugin))
        {
            throw new InvalidOperationException($"Mosquitto with dynamic security is not installed (/usr/sbin/mosquitto, {Plugin}): install the Debian packages 'mosquitto' and 'mosquitto-clients' (.ci/run does)");
        }
        var directory = Path.Combine(Path.GetTempPath(), "tsunagu-mosquitto-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(directory);
        var password = Guid.NewGuid().ToString("N");
        TestServer.Run("mosquitto_ctrl", ["dynsec", "init", Path.Combine(directory, "dynsec.json"), "admin", password]);
        var port = TestServer.FreePort();
        File.WriteAllText(Path.Combine(directory, "mosquitto.conf"), $"""
            listener {port} 127.0.0.1
            allow_anonymous false
            plugin {Plugin}
            plugin_opt_config_file {Path.Combine(directory, "dynsec.json")}
            persistence false
            log_dest stdout
            log_type error
            log_type warning
            """);
        if (Environment.UserName == "root")
        {
            TestServer.Run("chown", ["-R", "mosquitto", directory]); // mosquitto drops root for its own user and must write dynsec.json
        }
        var process = Launch(directory, port);
        return new MosquittoServer(process, directory, port, password);
    }

    /// <summary>Starts mosquitto on the configuration in <paramref name="directory"/> and waits until it listens on <paramref name="port"/>.</summary>
    private static Process Launch(string directory, int port)
    {
        var start = new ProcessStartInfo("/usr/sbin/mosquitto") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(Path.Combine(directory, "mosquitto.conf"));
        var process = Process.Start(start) ?? throw new InvalidOperationException("could not start mosquitto");
        var output = new System.Text.StringBuilder();
        process.OutputDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        process.ErrorDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (true)
        {
            try
            {
                using var probe = new TcpClient();
                probe.Connect(IPAddress.Loopback, port);
                return process;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline && !process.HasExited)
            {
                Thread.Sleep(100);
            }
            catch (SocketException)
            {
                if (!process.HasExited) { process.Kill(); }
                throw new InvalidOperationException($"mosquitto did not open port {port}: {output}");
            }
        }
    }

    /// <summary>Kills the broker (as a crash would: no clean disconnects, no last wills sent); its accounts stay on disk.</summary>
    /// <summary>
    /// Logs in to this broker as the unit <paramref name="mac"/> and gives the broker's answer (a refusal the client
    /// throws for is NotAuthorized, its reason passed to
    /// <paramref name="log"/>). Without <paramref name="keep"/> the session is closed again; with it, that client stays connected.
    /// </summary>
    public async Task<MqttClientConnectResultCode> LoginAsync(string mac, string password, IMqttClient? keep = null, Action<string>? log = null)
    {
        var client = keep ?? new MqttClientFactory().CreateMqttClient();
        try
        {
            var result = await client.ConnectAsync(new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", Port)
                .WithClientId(Tsunagu.Protocol.UnitCredentials.BrokerClientId(mac)).WithCredentials(Tsunagu.Protocol.UnitCredentials.BrokerUsername(mac), password).Build());
            return result.ResultCode;
        }
        catch (MQTTnet.Adapter.MqttConnectingFailedException e)
        {
            log?.Invoke($"login of {mac}: {e.Message}");
            return MqttClientConnectResultCode.NotAuthorized;
        }
        finally
        {
            if (keep is null)
            {
                if (client.IsConnected) { await client.DisconnectAsync(); }
                client.Dispose();
            }
        }
    }

    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit(10_000);
        }
    }

    /// <summary>Starts the broker again on the same port and configuration (accounts kept; no retained messages: persistence is off).</summary>
    public void StartAgain()
    {
        Kill();
        _process.Dispose();
        _process = Launch(_directory, Port);
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit(10_000);
        }
        _process.Dispose();
        Directory.Delete(_directory, recursive: true);
    }
}
