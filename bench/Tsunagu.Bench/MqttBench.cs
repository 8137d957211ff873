using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Dapper;
using MQTTnet;
using MQTTnet.Protocol;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;

namespace Tsunagu.Bench;

/// <summary>What the MQTT pairs measured (fan-out times and idle memory), for one unit count.</summary>
public sealed record MqttFigures(
    int Units, double EmbeddedFanOutSeconds, double MosquittoViaServerSeconds, double MosquittoAloneSeconds,
    double ServerRssPerUnitBytes, double MosquittoRssPerUnitBytes, double EmbeddedConnectSeconds, double MosquittoConnectSeconds,
    double ServerCheckRequestSeconds, double ServerViaMosquittoRequestSeconds);

/// <summary>
/// Forced-check fan-out and idle memory per connected unit: N lightweight MQTT clients in this process (each logs
/// in, subscribes to its own command topic and announces itself online, as the firmware's PushListener does),
/// against (a) the server's embedded broker, (b) a real Mosquitto the server publishes through, and the reference:
/// a plain MQTTnet publisher sending the same N messages to the same Mosquitto. The server runs as a child
/// process (its own descriptors and RSS); Mosquitto too; both are stopped by PID.
/// </summary>
public static class MqttBench
{
    public const string Pattern = "bench-pattern";
    public const int PublishWindow = 64;

    public static async Task<MqttFigures> RunAsync(string work, int units, Action<string> progress, CancellationToken ct)
    {
        var macs = Enumerable.Range(1, units).Select(i => $"02:54:42:{i >> 16 & 0xff:x2}:{i >> 8 & 0xff:x2}:{i & 0xff:x2}").ToList();

        // ---- (a) embedded broker ------------------------------------------------------------------------------
        var embeddedDir = Path.Combine(work, "mqtt-embedded");
        var unitKey = Seed(embeddedDir, macs);
        var passwords = Passwords(embeddedDir);
        double embeddedFanOut, serverPerUnit, embeddedConnect, embeddedRequest;
        await using (var server = await ServerProcess.StartAsync(embeddedDir, null, progress, ct))
        {
            var rssBefore = await SettledRssAsync(server.Pid, ct);
            await using var swarm = new UnitSwarm(units);
            var clock = Stopwatch.StartNew();
            await swarm.ConnectAsync("127.0.0.1", server.MqttPort, macs, passwords, ct);
            embeddedConnect = clock.Elapsed.TotalSeconds;
            progress(string.Create(CultureInfo.InvariantCulture, $"mqtt: {units} units connected to the embedded broker in {embeddedConnect:0.0} s"));
            var rssAfter = await SettledRssAsync(server.Pid, ct);
            serverPerUnit = (double)(rssAfter - rssBefore) / units;
            // best of two, as for Mosquitto below (the first forced check also pays the server's start-up: JIT, first queries)
            var runs = new List<(double, double)> { await ForcedCheckAsync(server, swarm, ct), await ForcedCheckAsync(server, swarm, ct) };
            (embeddedFanOut, embeddedRequest) = runs.MinBy(r => r.Item1);
            progress($"mqtt: embedded fan-out runs {string.Join(", ", runs.Select(r => r.Item1.ToString("0.000", CultureInfo.InvariantCulture)))} s");
            progress(string.Create(CultureInfo.InvariantCulture, $"mqtt: embedded fan-out {embeddedFanOut:0.000} s (request answered after {embeddedRequest:0.000} s); server RSS {rssBefore / 1048576.0:0} -> {rssAfter / 1048576.0:0} MiB"));
        }

        // ---- (b) Mosquitto, through the server, and (ref) Mosquitto alone --------------------------------------
        var mosquittoDir = Path.Combine(work, "mqtt-mosquitto");
        unitKey = Seed(mosquittoDir, macs);
        passwords = Passwords(mosquittoDir);
        await using var mosquitto = await Mosquitto.StartAsync(Path.Combine(work, "mosquitto"), macs, passwords, ct);
        double viaServer, alone, mosquittoPerUnit, mosquittoConnect, viaServerRequest;
        await using (var server = await ServerProcess.StartAsync(mosquittoDir, mosquitto.Setting, progress, ct))
        {
            var rssBefore = await SettledRssAsync(mosquitto.Pid, ct);
            await using var swarm = new UnitSwarm(units);
            var clock = Stopwatch.StartNew();
            await swarm.ConnectAsync("127.0.0.1", mosquitto.Port, macs, passwords, ct);
            mosquittoConnect = clock.Elapsed.TotalSeconds;
            progress(string.Create(CultureInfo.InvariantCulture, $"mqtt: {units} units connected to Mosquitto in {mosquittoConnect:0.0} s"));
            var rssAfter = await SettledRssAsync(mosquitto.Pid, ct);
            // alternate reference and server, best of two each: the machine is shared, a single run is noisy
            var aloneRuns = new List<double>();
            var viaRuns = new List<(double, double)>();
            for (var round = 0; round < 2; round++)
            {
                aloneRuns.Add(await PublishAloneAsync(mosquitto.Port, macs, unitKey, swarm, ct));
                viaRuns.Add(await ForcedCheckAsync(server, swarm, ct));
            }
            alone = aloneRuns.Min();
            (viaServer, viaServerRequest) = viaRuns.MinBy(r => r.Item1);
            progress(string.Create(CultureInfo.InvariantCulture, $"mqtt: via server + Mosquitto {string.Join(", ", viaRuns.Select(r => r.Item1.ToString("0.000", CultureInfo.InvariantCulture)))} s; Mosquitto alone {string.Join(", ", aloneRuns.Select(r => r.ToString("0.000", CultureInfo.InvariantCulture)))} s; Mosquitto RSS {rssBefore / 1048576.0:0.0} -> {rssAfter / 1048576.0:0.0} MiB"));
        }
        // memory: a fresh Mosquitto with nothing loaded (the dynamic-security one has freed its start-up parse of N
        // accounts, and malloc hands that memory to the first connections, so its RSS hardly moves)
        await using (var plain = await Mosquitto.StartPlainAsync(Path.Combine(work, "mosquitto-plain"), ct))
        {
            var rssBefore = await SettledRssAsync(plain.Pid, ct);
            await using var swarm = new UnitSwarm(units);
            await swarm.ConnectAsync("127.0.0.1", plain.Port, macs, passwords, ct);
            var rssAfter = await SettledRssAsync(plain.Pid, ct);
            mosquittoPerUnit = (double)(rssAfter - rssBefore) / units;
            progress(string.Create(CultureInfo.InvariantCulture, $"mqtt: plain Mosquitto RSS {rssBefore / 1048576.0:0.0} -> {rssAfter / 1048576.0:0.0} MiB with {units} idle units"));
        }
        return new MqttFigures(units, embeddedFanOut, viaServer, alone, serverPerUnit, mosquittoPerUnit, embeddedConnect, mosquittoConnect,
            embeddedRequest, viaServerRequest);
    }

    /// <summary>The operator's forced check of every unit (by pattern): seconds until every unit received it, and until the request was answered.</summary>
    private static async Task<(double AllReceived, double Answered)> ForcedCheckAsync(ServerProcess server, UnitSwarm swarm, CancellationToken ct)
    {
        var done = swarm.Expect();
        var clock = Stopwatch.StartNew();
        using var http = server.Operator();
        using var response = await http.PostAsync("/api/v1/units/check",
            new StringContent($$"""{"pattern":"{{Pattern}}","importance":3}""", Encoding.UTF8, "application/json"), ct);
        var answered = clock.Elapsed.TotalSeconds;
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"forced check answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(ct)}");
        }
        await done.WaitAsync(TimeSpan.FromMinutes(2), ct);
        return (clock.Elapsed.TotalSeconds, answered);
    }

    /// <summary>The reference: one MQTTnet client with the server's Mosquitto account publishes the same N messages (QoS 1, same window).</summary>
    private static async Task<double> PublishAloneAsync(int port, IReadOnlyList<string> macs, byte[] unitKey, UnitSwarm swarm, CancellationToken ct)
    {
        using var client = new MqttClientFactory().CreateMqttClient();
        var password = Base64Url.Encode(HMACSHA256.HashData(unitKey, Encoding.ASCII.GetBytes("tsunagu/v1/broker-server")));
        var connect = await client.ConnectAsync(new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", port)
            .WithClientId("bench-publisher").WithCredentials("tsunagu-server", password).WithCleanStart(true).Build(), ct);
        if (connect.ResultCode != MqttClientConnectResultCode.Success) { throw new InvalidOperationException($"reference publisher refused: {connect.ResultCode}"); }
        var done = swarm.Expect();
        var clock = Stopwatch.StartNew();
        await Parallel.ForEachAsync(macs, new ParallelOptions { MaxDegreeOfParallelism = PublishWindow, CancellationToken = ct }, async (mac, token) =>
        {
            var message = new PushMessage(PushMessage.CheckNow, 3, UnitCredentials.NewNonce(12), DateTimeOffset.UtcNow);
            var result = await client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(PushTopics.Commands(mac))
                .WithPayload(JsonSerializer.SerializeToUtf8Bytes(message, ProtocolJson.Default.PushMessage))
                .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).WithMessageExpiryInterval(3600).Build(), token);
            if (!result.IsSuccess) { throw new InvalidOperationException($"Mosquitto refused the reference publish to {mac}: {result.ReasonCode}"); }
        });
        await done.WaitAsync(TimeSpan.FromMinutes(2), ct);
        var seconds = clock.Elapsed.TotalSeconds;
        await client.DisconnectAsync(cancellationToken: ct);
        return seconds;
    }

    /// <summary>Unit broker passwords as the server's host sessions issue them now: from the broker key of the data directory, with the default lifetime.</summary>
    private static UnitPasswords Passwords(string directory)
    {
        var (key, keyId) = Tsunagu.Server.Push.BrokerKey.LoadOrCreate(Path.Combine(directory, "keys")).Current;
        var expires = BrokerPassword.ExpiryFor(DateTimeOffset.UtcNow, new Tsunagu.Server.ServerOptions().BrokerPasswordLifetime);
        return new UnitPasswords(mac => BrokerPassword.Issue(key, mac, expires), expires, keyId);
    }

    /// <summary>A data directory with N registered units on <see cref="Pattern"/> (one transaction) and the unit key; returns the key.</summary>
    private static byte[] Seed(string directory, IReadOnlyList<string> macs)
    {
        if (Directory.Exists(directory)) { Directory.Delete(directory, recursive: true); }
        Directory.CreateDirectory(directory);
        var key = UnitKey.LoadOrCreate(Path.Combine(directory, "keys")).Bytes;
        var database = Database.Parse("tsunagu.db", directory);
        database.Migrate();
        var store = new TsunaguStore(database, TimeProvider.System);
        using var c = store.Database.Open();
        using var tx = c.BeginTransaction();
        var now = store.Now();
        c.Execute("""
            INSERT INTO units (mac, serial, hardware_version, isp_method, state, pattern, created_at)
            VALUES (@mac, @serial, 'r1', 'dhcp', 'ready', @pattern, @now)
            """, macs.Select((mac, i) => new { mac, serial = $"MQ-{i:D6}", pattern = Pattern, now }), tx);
        tx.Commit();
        return key;
    }

    /// <summary>RSS of a process after it has been quiet for a moment (2 s).</summary>
    public static async Task<long> SettledRssAsync(int pid, CancellationToken ct)
    {
        await Task.Delay(TimeSpan.FromSeconds(2), ct);
        return Tools.VmRss(pid);
    }
}

/// <summary>N lightweight unit clients: each logs in, subscribes to its command topic, publishes "online" (retained), counts what it receives.</summary>
public sealed class UnitSwarm(int capacity) : IAsyncDisposable
{
    private readonly List<IMqttClient> _clients = new(capacity);
    private int _received;
    private int _expected = int.MaxValue;
    private TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Starts a new round: completes when every connected client has received one more "check" message.</summary>
    public Task Expect()
    {
        _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        Volatile.Write(ref _received, 0);
        Volatile.Write(ref _expected, _clients.Count);
        return _done.Task;
    }

    public async Task ConnectAsync(string host, int port, IReadOnlyList<string> macs, UnitPasswords passwords, CancellationToken ct)
    {
        var connected = new IMqttClient[macs.Count];
        await Parallel.ForEachAsync(Enumerable.Range(0, macs.Count), new ParallelOptions { MaxDegreeOfParallelism = 32, CancellationToken = ct }, async (i, token) =>
        {
            var mac = macs[i];
            var client = new MqttClientFactory().CreateMqttClient();
            client.ApplicationMessageReceivedAsync += _ =>
            {
                if (Interlocked.Increment(ref _received) == Volatile.Read(ref _expected)) { _done.TrySetResult(); }
                return Task.CompletedTask;
            };
            var options = new MqttClientOptionsBuilder()
                .WithTcpServer(host, port)
                .WithClientId(UnitCredentials.BrokerClientId(mac))
                .WithCredentials(UnitCredentials.BrokerUsername(mac), passwords.Of(mac))
                .WithWillTopic(PushTopics.Status(mac)).WithWillPayload(Encoding.UTF8.GetBytes(Presence.Offline)).WithWillRetain(true)
                .WithWillQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
                .WithCleanStart(true).WithKeepAlivePeriod(TimeSpan.FromSeconds(60)).WithTimeout(TimeSpan.FromSeconds(30)).Build();
            for (var attempt = 1; ; attempt++)
            {
                try
                {
                    var result = await client.ConnectAsync(options, token);
                    if (result.ResultCode != MqttClientConnectResultCode.Success) { throw new InvalidOperationException($"{mac}: login refused: {result.ResultCode}"); }
                    break;
                }
                catch (MQTTnet.Exceptions.MqttCommunicationException) when (attempt < 3)
                {
                    await Task.Delay(500 * attempt, token);
                }
            }
            var granted = await client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
                .WithTopicFilter(PushTopics.Commands(mac), MqttQualityOfServiceLevel.AtLeastOnce).Build(), token);
            if (granted.Items.Any(g => (int)g.ResultCode >= 0x80)) { throw new InvalidOperationException($"{mac}: subscription refused"); }
            await client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(PushTopics.Status(mac))
                .WithPayload(Encoding.UTF8.GetBytes(Presence.Online)).WithRetainFlag(true)
                .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build(), token);
            connected[i] = client;
        });
        _clients.AddRange(connected);
    }

    public async ValueTask DisposeAsync()
    {
        await Parallel.ForEachAsync(_clients, new ParallelOptions { MaxDegreeOfParallelism = 64 }, async (client, _) =>
        {
            try
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                if (client.IsConnected) { await client.DisconnectAsync(cancellationToken: cts.Token); }
            }
            catch (Exception e) when (e is OperationCanceledException or MQTTnet.Exceptions.MqttCommunicationException)
            {
                // the broker may already be gone; the socket is closed by Dispose
            }
            client.Dispose();
        });
        _clients.Clear();
    }
}

/// <summary>A Mosquitto with dynamic security whose configuration already holds every unit's account, as the server would create them.</summary>
public sealed class Mosquitto : IAsyncDisposable
{
    private const string Plugin = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so";
    private readonly Process _process;

    private Mosquitto(Process process, int port, string setting) { _process = process; Port = port; Setting = setting; }

    public int Port { get; }
    public string Setting { get; }
    public int Pid => _process.Id;

    /// <summary>A Mosquitto with only a loopback listener, anonymous logins, no plugin: per-connection memory with nothing loaded before.</summary>
    public static async Task<Mosquitto> StartPlainAsync(string directory, CancellationToken ct)
    {
        if (Directory.Exists(directory)) { Directory.Delete(directory, recursive: true); }
        Directory.CreateDirectory(directory);
        var port = Tools.FreePort();
        await File.WriteAllTextAsync(Path.Combine(directory, "mosquitto.conf"), $"""
            listener {port} 127.0.0.1
            allow_anonymous true
            max_connections -1
            persistence false
            log_dest stderr
            log_type error
            log_type warning
            """, ct);
        var process = Tools.Start("/usr/sbin/mosquitto", $"-c {Path.Combine(directory, "mosquitto.conf")}");
        await Tools.WaitForPortAsync(port);
        return new Mosquitto(process, port, $"mqtt://127.0.0.1:{port}");
    }

    public static async Task<Mosquitto> StartAsync(string directory, IReadOnlyList<string> macs, UnitPasswords passwords, CancellationToken ct)
    {
        if (!File.Exists("/usr/sbin/mosquitto") || !File.Exists(Plugin))
        {
            throw new InvalidOperationException($"make bench needs Mosquitto with dynamic security (/usr/sbin/mosquitto, {Plugin}): apt-get install mosquitto mosquitto-clients");
        }
        if (Directory.Exists(directory)) { Directory.Delete(directory, recursive: true); }
        Directory.CreateDirectory(directory);
        var admin = Guid.NewGuid().ToString("N");
        var dynsec = Path.Combine(directory, "dynsec.json");
        await Tools.RunAsync("mosquitto_ctrl", $"dynsec init {dynsec} admin {admin}");
        // Accounts written directly (the same roles and ACLs BrokerLink.EnsureUnitAccountAsync creates): creating
        // 10,000 accounts through the control topic makes Mosquitto rewrite the whole file after each command.
        var config = JsonNode.Parse(await File.ReadAllTextAsync(dynsec, ct))!.AsObject();
        var clients = config["clients"]!.AsArray();
        var roles = config["roles"]!.AsArray();
        foreach (var mac in macs)
        {
            var user = UnitCredentials.BrokerUsername(mac);
            var salt = RandomNumberGenerator.GetBytes(12);
            var password = passwords.Of(mac);
            var hash = Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(password), salt, 101, HashAlgorithmName.SHA512, 64);
            roles.Add(new JsonObject
            {
                ["rolename"] = "unit-" + user,
                ["acls"] = new JsonArray(Acl("subscribeLiteral", PushTopics.Commands(mac)), Acl("publishClientReceive", PushTopics.Commands(mac)),
                    Acl("publishClientSend", PushTopics.Status(mac))),
            });
            clients.Add(new JsonObject
            {
                ["username"] = user, ["clientid"] = UnitCredentials.BrokerClientId(mac),
                ["textdescription"] = Tsunagu.Server.Push.BrokerLink.Description(passwords.ExpiresAt, passwords.KeyId),
                ["password"] = Convert.ToBase64String(hash), ["salt"] = Convert.ToBase64String(salt), ["iterations"] = 101,
                ["roles"] = new JsonArray(new JsonObject { ["rolename"] = "unit-" + user }),
            });
        }
        await File.WriteAllTextAsync(dynsec, config.ToJsonString(), ct);
        var port = Tools.FreePort();
        await File.WriteAllTextAsync(Path.Combine(directory, "mosquitto.conf"), $"""
            listener {port} 127.0.0.1
            allow_anonymous false
            max_connections -1
            plugin {Plugin}
            plugin_opt_config_file {dynsec}
            persistence false
            log_dest stderr
            log_type error
            log_type warning
            """, ct);
        if (Environment.UserName == "root")
        {
            await Tools.RunAsync("chown", $"-R mosquitto {directory}"); // mosquitto drops root for its own user and writes dynsec.json
        }
        var process = Tools.Start("/usr/sbin/mosquitto", $"-c {Path.Combine(directory, "mosquitto.conf")}");
        await Tools.WaitForPortAsync(port);
        return new Mosquitto(process, port, $"mqtt://admin:{admin}@127.0.0.1:{port}");
    }

    private static JsonObject Acl(string type, string topic) => new() { ["acltype"] = type, ["topic"] = topic, ["priority"] = 0, ["allow"] = true };

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited) { _process.Kill(); }
        await _process.WaitForExitAsync();
        _process.Dispose();
    }
}

/// <summary>The units' broker passwords (as their host sessions would carry them), their expiry and the id of the key that made them.</summary>
public sealed record UnitPasswords(Func<string, string> Of, DateTimeOffset ExpiresAt, string KeyId);
