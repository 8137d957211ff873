using System.Collections.Concurrent;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Builder;
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

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The real server on loopback (HTTPS on a free port, embedded broker on a free port, SQLite in a temporary
/// directory) with the demo catalogue, plus a simulated fleet that records every unit's transitions.
/// </summary>
public sealed class TestServer : IAsyncDisposable
{
    public const string Password = "test-operator-password";

    private TestServer(string root, WebApplication app, SimulatedFleet fleet, ECDsa releaseKey)
    {
        Root = root;
        ReleaseKey = releaseKey;
        App = app;
        Fleet = fleet;
    }

    public string Root { get; }

    /// <summary>The release key that signs the demo bundle; its public half is in every identity from <see cref="Identity"/>.</summary>
    public ECDsa ReleaseKey { get; }
    public WebApplication App { get; }
    public SimulatedFleet Fleet { get; }
    public string Url => ServerHost.BaseUrl(App);
    public string CertificatePath => Path.Combine(Root, "server", "tls", ServerCertificate.PemFile);
    public string Pin => OperatorClient.PinFromPemFile(CertificatePath);
    public byte[] UnitKey => App.Services.GetRequiredService<UnitKey>().Bytes;
    public TsunaguStore Store => App.Services.GetRequiredService<TsunaguStore>();

    /// <summary>Runs <paramref name="sql"/> on the server's database (a test's set-up or fault); returns the rows it changed.</summary>
    public int ExecuteSql(string sql)
    {
        using var c = Store.Database.Open();
        using var command = c.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteNonQuery();
    }
    public ConcurrentDictionary<string, ConcurrentQueue<StateChange>> Changes { get; } = new();
    public ConcurrentQueue<string> Log { get; } = new();

    public static SupervisorOptions FastOptions { get; } = new()
    {
        CheckInterval = TimeSpan.FromHours(1),
        BackoffBase = TimeSpan.FromMilliseconds(50),
        BackoffCap = TimeSpan.FromMilliseconds(500),
        RefusedRetryInterval = TimeSpan.FromMilliseconds(300),
        MainLinkFailureLimit = 3,
    };

    /// <summary>
    /// <see cref="FastOptions"/> with an update's health check of one second, probed every 200 ms: rollout tests
    /// install many updates and wait for each to be reported.
    /// </summary>
    public static SupervisorOptions FastUpdateOptions { get; } = FastOptions with
    {
        Update = new Tsunagu.Firmware.Updates.UpdateOptions { HealthWindow = TimeSpan.FromSeconds(1), HealthProbeInterval = TimeSpan.FromMilliseconds(200) },
    };

    /// <summary>The database every server of this test uses: "sqlite" or "postgres" (set by the fixture).</summary>
    public static readonly AsyncLocal<string?> DatabaseKind = new();

    /// <summary>An extra log sink for the servers this test starts (sees warnings and above).</summary>
    public static readonly AsyncLocal<ILoggerProvider?> LogSink = new();

    /// <summary>Changes to the server options of the servers this test starts (limits, lifetimes).</summary>
    public static readonly AsyncLocal<Action<ServerOptions>?> Configure = new();

    /// <summary>The clock of the servers this test starts (null: the system's).</summary>
    public static readonly AsyncLocal<TimeProvider?> Time = new();

    /// <summary>
    /// A middleware the servers this test starts run after their own pipeline's limiter and before the endpoints (null:
    /// none): a test holds requests there to make a saturation certain instead of hoping for it.
    /// </summary>
    public static readonly AsyncLocal<Func<Microsoft.AspNetCore.Http.HttpContext, Microsoft.AspNetCore.Http.RequestDelegate, Task>?> Middleware = new();

    public static async Task<TestServer> StartAsync(SupervisorOptions? options = null, int port = 0, string mqtt = "embedded")
    {
        var root = Path.Combine(Path.GetTempPath(), "tsunagu-it-" + Guid.NewGuid().ToString("N"));
        var database = DatabaseKind.Value == "postgres" ? PostgresServer.Shared.CreateDatabase() : "tsunagu.db";
        Directory.CreateDirectory(root);
        await File.WriteAllTextAsync(Path.Combine(root, "database"), database);
        await File.WriteAllTextAsync(Path.Combine(root, "mqtt"), mqtt);
        var app = await BuildServerAsync(root, port);
        var releaseKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        await DemoCatalogue.SeedAsync(app.Services.GetRequiredService<TsunaguStore>(), app.Services.GetRequiredService<ArtifactStore>(), releaseKey, Password);
        if (Middleware.Value is { } middleware) { app.Use(middleware); }
        await app.StartAsync();
        TestServer? server = null;
        var fleet = new SimulatedFleet(Path.Combine(root, "fleet"), options ?? FastOptions,
            (unit, change) => server!.Changes.GetOrAdd(unit.Mac, _ => new()).Enqueue(change),
            (unit, message) => server!.Log.Enqueue($"{unit.Mac} {message}"));
        fleet.BuildProm(DemoCatalogue.OsVersion, DemoCatalogue.FactoryApplications);
        server = new TestServer(root, app, fleet, releaseKey);
        return server;
    }

    /// <summary>Builds a server on <paramref name="root"/>; the same root gives the same keys, certificate and database.</summary>
    public static async Task<WebApplication> BuildServerAsync(string root, int port)
    {
        var options = new ServerOptions
        {
            DataDirectory = Path.Combine(root, "server"), Port = port, MqttPort = 0,
            Database = File.ReadAllText(Path.Combine(root, "database")),
            Mqtt = File.ReadAllText(Path.Combine(root, "mqtt")),
        };
        Configure.Value?.Invoke(options);
        var sink = LogSink.Value;
        return await ServerHost.BuildAsync(options, logging: l =>
        {
            l.SetMinimumLevel(LogLevel.Warning);
            if (sink is not null) { l.AddProvider(sink); }
        }, time: Time.Value, services: s => s.AddSingleton<Tsunagu.Server.Fleet.IHostLoad>(new SettableHostLoad()));
    }

    /// <summary>
    /// The host's own load as the version check sees it: set by the test (0 unless set), so the importance decision does
    /// not depend on how busy the test machine is.
    /// </summary>
    public SettableHostLoad HostLoad => (SettableHostLoad)App.Services.GetRequiredService<Tsunagu.Server.Fleet.IHostLoad>();

    /// <summary>An HTTP client for this server that trusts only its pinned certificate, as a unit does.</summary>
    public HttpClient PinnedHttp() => PinnedHttp(Url, Pin);

    /// <summary>
    /// An HTTP client for this server signed in as the demo operator (HTTP Basic), trusting only its pinned certificate;
    /// with <paramref name="client"/>, it names itself in <c>X-Tsunagu-Client</c> as the CLI does.
    /// </summary>
    public HttpClient OperatorHttp(string? client = null)
    {
        var http = PinnedHttp();
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Basic",
            Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes($"{DemoCatalogue.OperatorName}:{Password}")));
        if (client is not null) { http.DefaultRequestHeaders.Add("X-Tsunagu-Client", client); }
        return http;
    }

    /// <summary>An HTTP client for the server at <paramref name="url"/> that trusts only the certificate <paramref name="pin"/> names.</summary>
    public static HttpClient PinnedHttp(string url, string pin) => new(new SocketsHttpHandler
    {
        SslOptions = { RemoteCertificateValidationCallback = TrustAnchor.Validator([pin]) },
    })
    { BaseAddress = new Uri(url) };

    /// <summary>
    /// Runs a program to completion and returns its standard output; fails with its exit code and error output when it
    /// does not succeed.
    /// </summary>
    public static string Run(string file, IEnumerable<string> arguments)
    {
        var start = new System.Diagnostics.ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in arguments) { start.ArgumentList.Add(a); }
        using var p = System.Diagnostics.Process.Start(start) ?? throw new InvalidOperationException($"could not start {file}");
        var stderr = p.StandardError.ReadToEndAsync();
        var stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', start.ArgumentList)} exited with {p.ExitCode}: {stderr.Result}");
        }
        return stdout;
    }

    /// <summary>A loopback port nothing listens on right now, for a service started next (<see cref="LoopbackPorts"/>).</summary>
    public static int FreePort() => Tsunagu.Cli.Fleet.LoopbackPorts.Next();

    public OperatorClient Operator() => new(new Uri(Url), DemoCatalogue.OperatorName, Password, [Pin]);

    public FactoryIdentity Identity(int index, byte[]? unitKey = null, string? serverUrl = null) =>
        FactoryIdentities.Create(new IdentitySpec(SimulatedFleet.MacFor(index), $"IT-{index:D4}", DemoCatalogue.HardwareVersion, "simulated",
            serverUrl ?? Url, new WanAccount("pppoe", "setup", "provisional"), [Pin], [ReleaseKeys.PublicKeyBase64(ReleaseKey)]), unitKey ?? UnitKey);

    /// <summary>Burns and registers <paramref name="count"/> units (not started).</summary>
    public async Task<List<FleetUnit>> AddUnitsAsync(int count, int firstIndex = 1)
    {
        using var client = Operator();
        var units = new List<FleetUnit>();
        for (var i = firstIndex; i < firstIndex + count; i++)
        {
            var identity = Identity(i);
            await client.RegisterAsync(Registration(identity), CancellationToken.None);
            units.Add(await Fleet.AddUnitAsync(identity, CancellationToken.None));
        }
        return units;
    }

    public static RegisterUnitRequest Registration(FactoryIdentity identity) =>
        new(identity.Mac, identity.Serial, identity.HardwareVersion, new WanAccount("pppoe", $"{identity.Serial}@isp.example", "secret"),
            null, "unit.example", null, null, null, null);

    public IReadOnlyList<StateChange> ChangesOf(string mac) => Changes.TryGetValue(mac, out var q) ? q.ToList() : [];

    public IReadOnlyList<StateId> ChainOf(string mac) => ChangesOf(mac).Select(c => c.To).ToList();

    /// <summary>Polls until the condition holds; fails with <paramref name="what"/> and the recent log otherwise.</summary>
    public Task WaitForAsync(Func<bool> condition, string what, TimeSpan? timeout = null) =>
        WaitForAsync(() => Task.FromResult(condition()), what, timeout);

    /// <summary>Polls until the condition (which reads the store) holds; fails with <paramref name="what"/> and the recent log otherwise.</summary>
    public async Task WaitForAsync(Func<Task<bool>> condition, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"timed out waiting for {what}\nrecent log:\n{string.Join("\n", Log.TakeLast(30))}");
            }
            await Task.Delay(25);
        }
    }

    /// <summary>Waits until the unit has entered Ready <paramref name="readyCount"/> times and the host has its ready report.</summary>
    public Task WaitReadyAsync(FleetUnit unit, int readyCount = 1) =>
        WaitForAsync(async () => ChainOf(unit.Mac).Count(s => s == StateId.Ready) >= readyCount && (await Store.Units.GetUnitAsync(unit.Mac))?.State == "Ready",
            $"{unit.Mac} to reach Ready ({readyCount}) with the host seeing it");

    public async ValueTask DisposeAsync()
    {
        await Fleet.DisposeAsync();
        await App.StopAsync();
        await App.DisposeAsync();
        ReleaseKey.Dispose();
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
            // a file still held by a closing handle: the temporary directory is left for the OS to clean
        }
    }
}
