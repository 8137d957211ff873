using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Tsunagu.Cli.Factory;
using Tsunagu.Cli.Fleet;
using Tsunagu.Demo;
using Tsunagu.Firmware.Supervision;
using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;
using Tsunagu.Server;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.Cli;

/// <summary>
/// `tsunagu demo`: the server with both roles on SQLite and the embedded broker, the demo catalogue, and a
/// small fleet of simulated units running the real supervisor, printing each state transition.
/// </summary>
public static class DemoCommand
{
    public sealed record Settings(int Units, string DataDirectory, int Port, int MqttPort, TimeSpan CheckInterval, string? LabImage = null,
        string? OperatorPassword = null);

    /// <summary>The demo subscriber: unit 1 belongs to them, and the banner prints their portal login.</summary>
    public const string SubscriberName = "subscriber1";

    public static async Task<int> RunAsync(Settings settings, TextWriter output, CancellationToken ct)
    {
        if (settings.Units is < 0 or > 10_000)
        {
            output.WriteLine($"error: --units {settings.Units} is outside 0..10000");
            return 2;
        }
        if (settings.OperatorPassword is { Length: < 8 })
        {
            output.WriteLine("error: --operator-password: at least 8 characters");
            return 2;
        }
        // A second demo (or anything else) on the ports: refuse before the database, the keys or the files are touched.
        foreach (var (port, what) in new[] { (settings.Port, "--port"), (settings.MqttPort, "--mqtt-port") })
        {
            if (PortInUse(port) is { } reason)
            {
                output.WriteLine($"error: {what} {port} on 127.0.0.1 {reason} (another `make run`? stop it or choose another PORT/MQTT_PORT); nothing was changed");
                return 2;
            }
        }
        var root = Path.GetFullPath(settings.DataDirectory);
        var passwordFile = Path.Combine(root, "operator-password");
        var subscriberPasswordFile = Path.Combine(root, "subscriber-password");
        // the ISP lab's access point (make lab LAB=isp) looks units' PPP passwords up with it
        var accessPointTokenFile = Path.Combine(root, "access-point-token");
        var accessPointToken = StableAccessPointToken(accessPointTokenFile);
        var serverOptions = new ServerOptions
        {
            AccessPointToken = accessPointToken,
            DataDirectory = Path.Combine(root, "server"),
            Port = settings.Port,
            MqttPort = settings.MqttPort,
            CheckIntervalSeconds = (int)Math.Max(1, settings.CheckInterval.TotalSeconds),
            // the lab's pattern qemu-1-lists carries these categories' lists
            FilterCategories = settings.LabImage is null ? [] : LabCatalogue.OfferedCategories(),
        };
        var app = await ServerHost.BuildAsync(serverOptions, logging: l => l.SetMinimumLevel(LogLevel.Warning));
        using var releaseKey = FactoryIdentities.LoadOrCreateReleaseSigningKey(Path.Combine(serverOptions.DataDirectory, "keys", "release.key"));
        var password = await DemoCatalogue.SeedAsync(app.Services.GetRequiredService<TsunaguStore>(), app.Services.GetRequiredService<ArtifactStore>(), releaseKey,
            settings.OperatorPassword ?? StablePassword(passwordFile));
        if (settings.LabImage is { } labImage)
        {
            var osImage = LabCatalogue.UpdateOsImage(labImage);
            if (!File.Exists(osImage))
            {
                output.WriteLine($"error: --lab-image {labImage}: {osImage} is missing; build it with `make image`");
                return 2;
            }
            await LabCatalogue.SeedAsync(app.Services.GetRequiredService<TsunaguStore>(), app.Services.GetRequiredService<ArtifactStore>(), releaseKey, osImage);
        }
        await File.WriteAllTextAsync(Path.Combine(root, "release.pub"), ReleaseKeys.PublicKeyBase64(releaseKey) + "\n", ct);
        try
        {
            await app.StartAsync(ct);
        }
        catch (IOException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.AddressAlreadyInUse } || e.Message.Contains("address already in use", StringComparison.OrdinalIgnoreCase))
        {
            // taken between the check above and now
            output.WriteLine($"error: port {settings.Port} or {settings.MqttPort} on 127.0.0.1 is in use: {e.Message}");
            return 2;
        }
        var url = ServerHost.BaseUrl(app);
        var certPath = Path.Combine(serverOptions.DataDirectory, "tls", ServerCertificate.PemFile);
        await File.WriteAllTextAsync(passwordFile, password + "\n", ct);
        await File.WriteAllTextAsync(accessPointTokenFile, accessPointToken + "\n", ct);
        var pin = OperatorClient.PinFromPemFile(certPath);
        var subscriberPassword = StablePassword(subscriberPasswordFile);
        using (var operatorClient = new OperatorClient(new Uri(url), DemoCatalogue.OperatorName, password, [pin]))
        {
            await operatorClient.SendJsonAsync(HttpMethod.Post, "/api/v1/subscribers", new NewSubscriber(SubscriberName, subscriberPassword), ct);
        }
        await File.WriteAllTextAsync(subscriberPasswordFile, subscriberPassword + "\n", ct);
        output.WriteLine($"server      {url}  (initial setting + host roles, SQLite {Path.Combine(serverOptions.DataDirectory, serverOptions.Database)})");
        output.WriteLine($"mqtt        mqtts://{serverOptions.ListenAddress}:{serverOptions.MqttPort} (embedded broker, TLS with the server's certificate)");
        output.WriteLine($"operator    {DemoCatalogue.OperatorName} / {password}   (also in {passwordFile})");
        output.WriteLine($"console     {url}console   (log in as {DemoCatalogue.OperatorName} / {password})");
        output.WriteLine($"portal      {url}portal    (log in as {SubscriberName} / {subscriberPassword}, the subscriber of {SimulatedFleet.MacFor(1)}; also in {subscriberPasswordFile})");
        output.WriteLine($"try         curl --cacert {certPath} -u {DemoCatalogue.OperatorName}:{password} {url}api/v1/units");
        output.WriteLine($"catalogue   {DemoCatalogue.Pattern1} (factory) -> {DemoCatalogue.Pattern2} by update {DemoCatalogue.UpdateId} (importance 5), a bundle signed with release key {ReleaseKeys.KeyId(releaseKey)}");
        if (settings.LabImage is not null)
        {
            output.WriteLine($"lab         {LabCatalogue.Pattern1} (QEMU image) -> {LabCatalogue.Pattern2} by update {LabCatalogue.UpdateId}; boot a unit with `make lab`");
        }
        output.WriteLine();

        var unitKey = app.Services.GetRequiredService<UnitKey>().Bytes;
        var releasePublicKey = ReleaseKeys.PublicKeyBase64(releaseKey);
        var lockObject = new Lock();
        var supervisorOptions = new SupervisorOptions
        {
            CheckInterval = settings.CheckInterval,
            BackoffBase = TimeSpan.FromMilliseconds(200),
            BackoffCap = TimeSpan.FromSeconds(10),
            RefusedRetryInterval = TimeSpan.FromMinutes(1),
        };
        await using var fleet = new SimulatedFleet(Path.Combine(root, "fleet"), supervisorOptions,
            (unit, change) =>
            {
                lock (lockObject)
                {
                    output.WriteLine($"{change.At:HH:mm:ss.fff} {unit.Mac}  {change.From,-13} --{change.Outcome,-15}--> {change.To}" +
                                     (change.Delay > TimeSpan.Zero ? $"  (retry in {change.Delay.TotalSeconds:0.0}s)" : ""));
                }
            },
            (unit, message) => { lock (lockObject) { output.WriteLine($"             {unit.Mac}  {message}"); } });
        fleet.BuildProm(DemoCatalogue.OsVersion, DemoCatalogue.FactoryApplications);
        using (var operatorClient = new OperatorClient(new Uri(url), DemoCatalogue.OperatorName, password, [pin]))
        {
            var existing = (await operatorClient.ListUnitsAsync(null, null, ct)).Select(u => u.Mac).ToHashSet();
            for (var i = 1; i <= settings.Units; i++)
            {
                var mac = SimulatedFleet.MacFor(i);
                var identity = FactoryIdentities.Create(new IdentitySpec(mac, $"TSN-{i:D6}", DemoCatalogue.HardwareVersion, "simulated",
                    url, new WanAccount("pppoe", $"setup-{MacAddress.Compact(mac)}@init.tsunagu.example", "provisional"), [pin], [releasePublicKey]), unitKey);
                await fleet.AddUnitAsync(identity, ct);
                if (!existing.Contains(mac))
                {
                    await operatorClient.RegisterAsync(new RegisterUnitRequest(mac, identity.Serial, identity.HardwareVersion,
                        new WanAccount("pppoe", $"user{i}@isp.example", $"isp-password-{i}"), null, $"unit{i}.home.example",
                        null, null, null, $"subscriber{i}"), ct);
                }
            }
        }
        output.WriteLine($"fleet       {settings.Units} simulated units under {Path.Combine(root, "fleet")}; Ctrl-C stops everything");
        output.WriteLine();
        fleet.StartAll();
        // Ctrl-C reaches either the command line (ct) or the web host (SIGTERM/SIGINT stop the application).
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct, app.Lifetime.ApplicationStopping);
        try
        {
            await Task.Delay(Timeout.Infinite, stop.Token);
        }
        catch (OperationCanceledException)
        {
            output.WriteLine("stopping: powering off the fleet and the server");
        }
        await fleet.DisposeAsync();
        await app.StopAsync(CancellationToken.None);
        await app.DisposeAsync();
        return 0;
    }

    /// <summary>Why nothing can listen on 127.0.0.1:<paramref name="port"/> (null when a listener can; 0 is any free port).</summary>
    internal static string? PortInUse(int port)
    {
        if (port <= 0) { return null; }
        try
        {
            var probe = new TcpListener(IPAddress.Loopback, port);
            probe.Start();
            probe.Stop();
            return null;
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            return "is in use";
        }
        catch (SocketException e)
        {
            return $"cannot be listened on ({e.SocketErrorCode})";
        }
    }

    /// <summary>
    /// The password in <paramref name="file"/> when an earlier run wrote one (so the demo's logins stay the same
    /// from run to run), otherwise a new one.
    /// </summary>
    internal static string StableAccessPointToken(string file)
    {
        var kept = File.Exists(file) ? File.ReadAllText(file).Trim() : "";
        return kept.Length == 48 && kept.All(char.IsAsciiHexDigitUpper) ? kept : Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(24));
    }

    internal static string StablePassword(string file)
    {
        var kept = File.Exists(file) ? File.ReadAllText(file).Trim() : "";
        return kept.Length >= 8 && kept.All(c => c is > ' ' and < (char)127) ? kept : UnitCredentials.NewNonce(12);
    }
}
