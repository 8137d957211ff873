using System.Diagnostics;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Tsunagu.Cli.Factory;
using Tsunagu.Demo;
using Tsunagu.IntegrationTests;
using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;
using Tsunagu.Server;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.SystemTests.Qemu;

/// <summary>
/// The server on loopback (both roles, SQLite, embedded broker) with the lab catalogue, and units of a QEMU board
/// (qemu-x86_64 unless the test names another) booted from its `make image` debug output by qemu-run.sh (beside this
/// file): QEMU under TCG, user networking with restrict=on, guestfwd to the server. Everything lives in a temporary directory removed at the end.
/// </summary>
public sealed class QemuLab : IAsyncDisposable
{
    public const string Password = "qemu-lab-operator";

    /// <summary>The lab server's AccessPointToken: the ISP lab's RADIUS server looks units' access passwords up with it.</summary>
    public const string AccessPointToken = "qemu-lab-access-point-token-0123456789";

    private QemuLab(string root, WebApplication app, ECDsa releaseKey)
    {
        Root = root;
        App = app;
        ReleaseKey = releaseKey;
    }

    private readonly System.Collections.Concurrent.ConcurrentQueue<(DateTimeOffset At, string Path)> _provisioningRequests = new();
    private readonly System.Collections.Concurrent.ConcurrentQueue<(string Path, int Status)> _accessPointRequests = new();

    private TaskCompletionSource? _provisioningHold;

    /// <summary>
    /// Holds every provisioning request (after recording it) until the result is disposed: a unit stays on its
    /// provisional link, waiting for the initial setting server, for as long as a test needs.
    /// </summary>
    public IDisposable HoldProvisioning()
    {
        var hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (Interlocked.CompareExchange(ref _provisioningHold, hold, null) is not null)
        {
            throw new InvalidOperationException("the provisioning requests are held already");
        }
        return new Release(() =>
        {
            Volatile.Write(ref _provisioningHold, null);
            hold.TrySetResult();
        });
    }

    private sealed class Release(Action release) : IDisposable
    {
        private int _done;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _done, 1) == 0) { release(); }
        }
    }

    /// <summary>Every request the server answered on the access point's route (the ISP lab's RADIUS server), with its status.</summary>
    public IReadOnlyCollection<(string Path, int Status)> AccessPointRequests => _accessPointRequests;

    /// <summary>The server's certificate (PEM): what units pin, and what the ISP lab's RADIUS server trusts.</summary>
    public string CertificatePath => Path.Combine(Root, "server", "tls", ServerCertificate.PemFile);

    public string Root { get; }

    /// <summary>Every request the server received on its provisioning routes (the provisional link), in order.</summary>
    public IReadOnlyCollection<(DateTimeOffset At, string Path)> ProvisioningRequests => _provisioningRequests;
    public WebApplication App { get; }
    public ECDsa ReleaseKey { get; }
    public TsunaguStore Store => App.Services.GetRequiredService<TsunaguStore>();
    public ArtifactStore Artifacts => App.Services.GetRequiredService<ArtifactStore>();
    public int Port => new Uri(ServerHost.BaseUrl(App)).Port;
    public int MqttPort { get; private set; }
    public string Pin => OperatorClient.PinFromPemFile(CertificatePath);

    public static string RepositoryRoot { get; } = FindRoot();
    /// <summary>The board the lab's units are (qemu-run.sh boots its debug image; set by <see cref="StartAsync"/>).</summary>
    public string Board { get; private init; } = "";

    /// <summary>The board's debug image (`make image BOARD=...` builds it).</summary>
    public string ImageDirectory => ImageDirectoryOf(Board);

    public static string ImageDirectoryOf(string board) => Path.Combine(RepositoryRoot, "out", "image", board + "-debug");

    /// <summary>Fails the test (never skips it) when the image or a tool is missing.</summary>
    public static void RequireImage(string board)
    {
        var imageDirectory = ImageDirectoryOf(board);
        foreach (var file in new[] { "disk.img", "vmlinuz", "initrd.img", "cmdline", "board.json", "os-1.1.sqfs" })
        {
            if (!File.Exists(Path.Combine(imageDirectory, file)))
            {
                Assert.Fail($"{Path.Combine(imageDirectory, file)} is missing: run `make image BOARD={board}` (make system-test does)");
            }
        }
        // the QEMU program is the board's (board.json qemu.command)
        var description = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(imageDirectory, "board.json")));
        var qemu = description?["qemu"]?["command"]?.GetValue<string>() ?? "";
        if (qemu.Length == 0) { Assert.Fail($"{Path.Combine(imageDirectory, "board.json")}: qemu.command is missing"); }
        foreach (var tool in new[] { qemu, "socat", "jq" })
        {
            if (!Environment.GetEnvironmentVariable("PATH")!.Split(':').Any(d => File.Exists(Path.Combine(d, tool))))
            {
                Assert.Fail($"{tool} is missing (install the packages listed in .ci/run)");
            }
        }
    }

    /// <summary>Starts the server with the lab catalogue of <paramref name="board"/>'s image (default qemu-x86_64).</summary>
    public static async Task<QemuLab> StartAsync(string board = "qemu-x86_64")
    {
        RequireImage(board);
        var imageDirectory = ImageDirectoryOf(board);
        var root = Path.Combine(Path.GetTempPath(), "tsunagu-qemu-" + Guid.NewGuid().ToString("N")[..10]);
        Directory.CreateDirectory(root);
        var mqttPort = TestServer.FreePort();
        var app = await ServerHost.BuildAsync(new ServerOptions
        {
            DataDirectory = Path.Combine(root, "server"), Port = 0, MqttPort = mqttPort, CheckIntervalSeconds = 3600,
            AccessPointToken = AccessPointToken, FilterCategories = LabCatalogue.OfferedCategories(),
        }, logging: l => l.SetMinimumLevel(LogLevel.Warning));
        var releaseKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var store = app.Services.GetRequiredService<TsunaguStore>();
        await DemoCatalogue.SeedAsync(store, app.Services.GetRequiredService<ArtifactStore>(), releaseKey, Password);
        await LabCatalogue.SeedAsync(store, app.Services.GetRequiredService<ArtifactStore>(), releaseKey, LabCatalogue.UpdateOsImage(imageDirectory));
        var lab = new QemuLab(root, app, releaseKey) { MqttPort = mqttPort, Board = LabCatalogue.BoardOf(imageDirectory) };
        app.Use(async (context, next) =>
        {
            if (context.Request.Path.StartsWithSegments(Routes.Prefix + "/provisioning", StringComparison.Ordinal))
            {
                lab._provisioningRequests.Enqueue((DateTimeOffset.UtcNow, context.Request.Path.Value!));
                if (Volatile.Read(ref lab._provisioningHold) is { } hold)
                {
                    await hold.Task.WaitAsync(context.RequestAborted);
                }
            }
            await next(context);
            if (context.Request.Path.StartsWithSegments(Routes.Prefix + "/access-point", StringComparison.Ordinal))
            {
                lab._accessPointRequests.Enqueue((context.Request.Path.Value!, context.Response.StatusCode));
            }
        });
        await app.StartAsync();
        return lab;
    }

    /// <summary>A unit: its own copy of the image, factory burned, registered with target <paramref name="target"/>.</summary>
    /// <param name="provisional">The factory's provisional link (default DHCP); a PPPoE one without a password gets the derived one.</param>
    /// <param name="singleLink">Burned as variant 2: the operator is the unit's ISP, the provisional link stays as the main one.</param>
    public async Task<QemuUnit> AddUnitAsync(int index, string target = LabCatalogue.Pattern2, WanAccount? isp = null, WanAccount? provisional = null,
        bool singleLink = false)
    {
        var dir = Path.Combine(Root, $"unit{index}");
        Directory.CreateDirectory(dir);
        var disk = Path.Combine(dir, "disk.img");
        TestServer.Run("cp", ["--sparse=always", Path.Combine(ImageDirectory, "disk.img"), disk]);
        var mac = MacOf(index);
        var identity = FactoryIdentities.Create(new IdentitySpec(mac, $"QEMU-{index:D4}", LabCatalogue.HardwareVersion, Board,
            $"https://10.0.2.100:{Port}/", provisional ?? new WanAccount("dhcp"), [Pin], [ReleaseKeys.PublicKeyBase64(ReleaseKey)], singleLink),
            App.Services.GetRequiredService<UnitKey>().Bytes);
        isp ??= new WanAccount("dhcp");
        using (var client = Operator())
        {
            await client.RegisterAsync(new RegisterUnitRequest(identity.Mac, identity.Serial, identity.HardwareVersion, isp,
                isp.Address, null, null, null, target, null), CancellationToken.None);
        }
        await GptImage.BurnFactoryAsync(disk, identity, CancellationToken.None);
        string? hdd = null;
        if (File.Exists(Path.Combine(ImageDirectory, "hdd.img")))
        {
            hdd = Path.Combine(dir, "hdd.img");
            TestServer.Run("cp", ["--sparse=always", Path.Combine(ImageDirectory, "hdd.img"), hdd]);
        }
        return new QemuUnit(this, identity.Mac, dir, disk, hdd);
    }

    public Task<UnitRow?> UnitAsync(string mac) => Store.Units.GetUnitAsync(mac);

    /// <summary>
    /// A new directory for guest <paramref name="name"/> of this lab. Two tests that chose the same name would share a
    /// console log, and the second would read the first's (a stale "ready" line): refused.
    /// </summary>
    /// <exception cref="InvalidOperationException">The lab already has a guest of that name.</exception>
    public static string NewGuestDirectory(QemuLab lab, string name)
    {
        var dir = Path.Combine(lab.Root, name);
        if (Directory.Exists(dir))
        {
            throw new InvalidOperationException($"the lab already has a guest named {name} ({dir}): each test names its guests after its own unit index");
        }
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>The MAC of the unit <see cref="AddUnitAsync"/> creates with <paramref name="index"/>.</summary>
    public static string MacOf(int index) => $"52:54:00:7e:00:{index:x2}";

    /// <summary>The operator's unit key (what the factory derives the unit's secrets from).</summary>
    public byte[] UnitKeyBytes => App.Services.GetRequiredService<UnitKey>().Bytes;

    public const string BrokenPattern = "qemu-3";
    public const string BrokenUpdate = "qemu-2-to-3";

    /// <summary>Pattern qemu-3 and update qemu-2-to-3, whose OS image is <paramref name="osImage"/> (one that does not boot).</summary>
    public async Task AddBrokenUpdate(string osImage) =>
        await LabCatalogue.AddOsUpdateAsync(Store, Artifacts, ReleaseKey, Board, BrokenUpdate, LabCatalogue.Pattern2, LabCatalogue.UpdateOs, LabCatalogue.Pattern2Applications,
            new PatternRow { Id = BrokenPattern, Name = "OS image without init", OsVersion = "tsunagu-os 1.2" }, LabCatalogue.Pattern2Applications, osImage, bundleVersion: 2);

    public const string HangingPattern = "qemu-4";
    public const string HangingUpdate = "qemu-2-to-4";

    /// <summary>Pattern qemu-4 and update qemu-2-to-4, whose OS image is <paramref name="osImage"/> (one that boots and hangs).</summary>
    public async Task AddHangingUpdate(string osImage) =>
        await LabCatalogue.AddOsUpdateAsync(Store, Artifacts, ReleaseKey, Board, HangingUpdate, LabCatalogue.Pattern2, LabCatalogue.UpdateOs, LabCatalogue.Pattern2Applications,
            new PatternRow { Id = HangingPattern, Name = "OS image that hangs", OsVersion = "tsunagu-os 1.3" }, LabCatalogue.Pattern2Applications, osImage, bundleVersion: 2);

    /// <summary>The lab's operator, as the CLI talks to the server (its certificate pinned).</summary>
    public OperatorClient Operator() => new(new Uri(ServerHost.BaseUrl(App)), DemoCatalogue.OperatorName, Password, [Pin]);

    /// <summary>The operator's forced check (MQTT push) for one unit.</summary>
    public async Task ForceCheckAsync(string mac)
    {
        using var client = Operator();
        var result = await client.ForceCheckAsync(new ForceCheckRequest([mac], null, 5), CancellationToken.None);
        Assert.That(result.Notified, Does.Contain(mac), "the forced check reached the unit");
    }

    public async ValueTask DisposeAsync()
    {
        await App.StopAsync();
        await App.DisposeAsync();
        ReleaseKey.Dispose();
        if (Environment.GetEnvironmentVariable("TSUNAGU_KEEP_LAB") is null)
        {
            try { Directory.Delete(Root, recursive: true); }
            catch (IOException e) { TestContext.Out.WriteLine($"lab directory {Root} not removed: {e.Message}"); }
        }
    }

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Tsunagu.slnx"))) { return dir.FullName; }
        }
        throw new InvalidOperationException($"no Tsunagu.slnx above {AppContext.BaseDirectory}");
    }
}

/// <summary>One QEMU unit: power on/off (hard), its console, its QEMU monitor and its service shell.</summary>
public sealed class QemuUnit(QemuLab lab, string mac, string directory, string disk, string? hdd) : IAsyncDisposable
{
    private Process? _qemu;

    public string Mac { get; } = mac;
    public string Directory { get; } = directory;
    public string Disk { get; } = disk;
    public string ConsolePath => Path.Combine(Directory, "console.log");
    public bool Running => _qemu is { HasExited: false };

    /// <summary>When set, the WAN port is a socket link to this loopback endpoint (the ISP lab) instead of user networking.</summary>
    public string? WanSocket { get; set; }

    /// <summary>
    /// When set, the LAN port is a socket link to this loopback endpoint (the ISP lab's LAN PC) instead of nothing; several
    /// endpoints separated by blanks put the LAN port and every PC on one QEMU hub (qemu-run.sh's LAN_SOCKET).
    /// </summary>
    public string? LanSocket { get; set; }

    /// <summary>
    /// When set, a third port (eth2) is a socket link to this loopback endpoint: the second WAN port of a board variant
    /// that keeps one for provisioning (<see cref="BoardVariant"/>; the ISP lab's <see cref="IspGuest.SlowEndpoint"/>).
    /// </summary>
    public string? ProvisioningSocket { get; set; }

    /// <summary>When set, the unit is this variant of its board (board/&lt;name&gt;/variants/, the kernel command line's tsunagu.board=).</summary>
    public string? BoardVariant { get; set; }

    /// <summary>When set, QEMU starts with the CPU stopped: the test sets things through <see cref="MonitorAsync"/> (set_link), then sends `cont`.</summary>
    public bool StartPaused { get; set; }

    /// <summary>
    /// Powers the unit on (the console log is appended to across power cycles). With <paramref name="fieldImage"/> (a
    /// field image's directory, `make field-image`: its stick.img, kernel and boot program) the unit boots from the
    /// field stick plugged into its USB port instead.
    /// </summary>
    public void PowerOn(string? fieldImage = null)
    {
        if (Running) { throw new InvalidOperationException($"unit {Mac} is already running"); }
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(QemuLab.RepositoryRoot, "tests", "Tsunagu.SystemTests", "Qemu", "qemu-run.sh"));
        start.Environment["DISK"] = Disk;
        start.Environment["IMAGE_DIR"] = fieldImage ?? lab.ImageDirectory;
        if (fieldImage is not null) { start.Environment["STICK"] = Path.Combine(fieldImage, "stick.img"); }
        start.Environment["SERVER_PORT"] = lab.Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        start.Environment["MQTT_PORT"] = lab.MqttPort.ToString(System.Globalization.CultureInfo.InvariantCulture);
        start.Environment["MAC"] = Mac;
        start.Environment["RUN_DIR"] = Directory;
        start.Environment["CONSOLE"] = "file";
        if (hdd is not null) { start.Environment["HDD"] = hdd; }
        if (WanSocket is not null) { start.Environment["WAN_SOCKET"] = WanSocket; }
        if (LanSocket is not null) { start.Environment["LAN_SOCKET"] = LanSocket; }
        if (ProvisioningSocket is not null) { start.Environment["PROVISIONING_SOCKET"] = ProvisioningSocket; }
        if (BoardVariant is not null) { start.Environment["BOARD_VARIANT"] = BoardVariant; }
        start.Environment["START_PAUSED"] = StartPaused ? "1" : "";
        if (File.Exists(ConsolePath))
        {
            // this power cycle's console starts empty: nothing from the previous one can satisfy a wait
            File.AppendAllText(Path.Combine(Directory, "console-history.log"), File.ReadAllText(ConsolePath));
            File.Delete(ConsolePath);
        }
        _qemu = Process.Start(start) ?? throw new InvalidOperationException("qemu-run.sh did not start");
        _qemu.OutputDataReceived += (_, e) => { if (e.Data is not null) { TestContext.Out.WriteLine($"qemu: {e.Data}"); } };
        _qemu.ErrorDataReceived += (_, e) => { if (e.Data is not null) { TestContext.Out.WriteLine($"qemu: {e.Data}"); } };
        _qemu.BeginOutputReadLine();
        _qemu.BeginErrorReadLine();
    }

    /// <summary>Waits until the unit powers itself off (QEMU ends), failing with the console tail after <paramref name="timeout"/>.</summary>
    public async Task WaitPoweredOffAsync(TimeSpan timeout, string what)
    {
        if (_qemu is null) { throw new InvalidOperationException($"unit {Mac} was not powered on"); }
        using var wait = new CancellationTokenSource(timeout);
        try
        {
            await _qemu.WaitForExitAsync(wait.Token);
        }
        catch (OperationCanceledException) when (wait.IsCancellationRequested)
        {
            Assert.Fail($"unit {Mac}: still running after {timeout.TotalSeconds:0} s, waiting for {what}\n--- console ---\n{Tail(FullConsole())}");
        }
        Assert.That(_qemu.ExitCode, Is.Zero, $"unit {Mac}: QEMU's exit code after {what}\n--- console ---\n{Tail(FullConsole())}");
        _qemu.Dispose();
        _qemu = null;
    }

    /// <summary>Pulls the plug: QEMU is killed, nothing in the guest gets to flush.</summary>
    public async Task PowerOffAsync()
    {
        if (_qemu is null) { return; }
        if (!_qemu.HasExited)
        {
            _qemu.Kill();
            await _qemu.WaitForExitAsync();
        }
        _qemu.Dispose();
        _qemu = null;
    }

    /// <summary>Overwrites the first 4 MiB of partition <paramref name="name"/> with zeros (the unit must be off).</summary>
    public void CorruptPartition(string name)
    {
        if (Running) { throw new InvalidOperationException($"unit {Mac}: power it off before corrupting {name}"); }
        var partition = GptImage.Find(Disk, name);
        using var file = new FileStream(Disk, FileMode.Open, FileAccess.Write);
        file.Position = partition.Offset;
        file.Write(new byte[Math.Min(partition.Length, 4 << 20)]);
        file.Flush(flushToDisk: true);
    }

    /// <summary>Flips one bit of the byte at <paramref name="offset"/> of partition <paramref name="name"/> (the unit must be off); returns the byte's old value.</summary>
    public byte FlipByte(string name, long offset)
    {
        if (Running) { throw new InvalidOperationException($"unit {Mac}: power it off before changing {name}"); }
        var partition = GptImage.Find(Disk, name);
        if (offset < 0 || offset >= partition.Length) { throw new ArgumentOutOfRangeException(nameof(offset), $"{name} is {partition.Length} bytes"); }
        using var file = new FileStream(Disk, FileMode.Open, FileAccess.ReadWrite);
        file.Position = partition.Offset + offset;
        var old = (byte)file.ReadByte();
        file.Position = partition.Offset + offset;
        file.WriteByte((byte)(old ^ 0x01));
        file.Flush(flushToDisk: true);
        return old;
    }

    /// <summary>Everything the unit printed on its console in this power cycle.</summary>
    public string Console() => File.Exists(ConsolePath) ? File.ReadAllText(ConsolePath) : "";

    private const string Provisioning = "Boot --NeedsProvisioning--> Provisional";

    /// <summary>How often the unit has started provisioning, across all power cycles.</summary>
    public int Provisionings() => FullConsole().Split(Provisioning).Length - 1;

    /// <summary>
    /// Whether the unit provisioned again after the first <paramref name="provisionings"/> times, then booted OS 1.1 (the
    /// update to qemu-2) and went Ready on it. The server's row can say Ready on qemu-2 from before: this reads the console.
    /// </summary>
    public bool ProvisionedAgainAndReadyOnOs11(int provisionings)
    {
        var console = FullConsole();
        if (Provisionings() <= provisionings) { return false; }
        var booted = console.IndexOf("Tsunagu OS tsunagu-os 1.1", console.LastIndexOf(Provisioning, StringComparison.Ordinal), StringComparison.Ordinal);
        return booted >= 0 && console.IndexOf("--> Ready", booted, StringComparison.Ordinal) >= 0;
    }

    /// <summary>Everything printed on the console across all power cycles (for failure messages).</summary>
    public string FullConsole()
    {
        var history = Path.Combine(Directory, "console-history.log");
        return (File.Exists(history) ? File.ReadAllText(history) : "") + Console();
    }

    /// <summary>Waits until <paramref name="condition"/> holds, failing with the console tail after <paramref name="timeout"/>.</summary>
    public Task WaitAsync(Func<bool> condition, TimeSpan timeout, string what) => WaitAsync(() => Task.FromResult(condition()), timeout, what);

    public async Task WaitAsync(Func<Task<bool>> condition, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!await condition())
        {
            if (!Running)
            {
                Assert.Fail($"unit {Mac}: QEMU ended while waiting for {what}\n--- console ---\n{Tail(FullConsole())}");
            }
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"unit {Mac}: no {what} within {timeout.TotalSeconds:0} s\n--- console ---\n{Tail(FullConsole())}");
            }
            await Task.Delay(250);
        }
    }

    /// <summary>Waits until the server records the unit Ready on <paramref name="pattern"/>.</summary>
    public async Task WaitReadyAsync(string pattern, TimeSpan timeout, Func<Task<bool>>? also = null) =>
        await WaitAsync(async () => (await lab.UnitAsync(Mac)) is { State: UnitStates.Ready } u && u.Pattern == pattern && (also is null || await also()), timeout,
            $"Ready on {pattern} as the server sees it (server has {(await lab.UnitAsync(Mac))?.State}/{(await lab.UnitAsync(Mac))?.Pattern})");

    /// <summary>A command for the QEMU monitor (e.g. `sendkey f12 6000`); returns its answer.</summary>
    public async Task<string> MonitorAsync(string command)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(Path.Combine(Directory, "monitor.sock")));
        await using var stream = new NetworkStream(socket, ownsSocket: false);
        await stream.WriteAsync(Encoding.ASCII.GetBytes(command + "\n"));
        var answer = await ReadUntilAsync(stream, "(qemu)", TimeSpan.FromSeconds(10), occurrences: 2);
        return answer;
    }

    /// <summary>Runs a shell command on the unit's service console (ttyS1, or the board's image.serviceConsole) and returns its output.</summary>
    public Task<string> ShellAsync(string command, TimeSpan? timeout = null) =>
        GuestShell.RunAsync(Path.Combine(Directory, "shell.sock"), command, timeout ?? TimeSpan.FromSeconds(20), $"unit {Mac}");

    internal static async Task<string> ReadUntilAsync(Stream stream, string marker, TimeSpan timeout, int occurrences = 1)
    {
        using var cts = new CancellationTokenSource(timeout);
        var text = new StringBuilder();
        var buffer = new byte[4096];
        while (true)
        {
            var current = text.ToString();
            var count = 0;
            for (var i = current.IndexOf(marker, StringComparison.Ordinal); i >= 0; i = current.IndexOf(marker, i + 1, StringComparison.Ordinal)) { count++; }
            if (count >= occurrences) { return current; }
            int n;
            try
            {
                n = await stream.ReadAsync(buffer, cts.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"no '{marker}' within {timeout.TotalSeconds:0} s; got: {current}");
            }
            if (n == 0) { throw new IOException($"the console closed before '{marker}'; got: {current}"); }
            text.Append(Encoding.UTF8.GetString(buffer, 0, n));
        }
    }

    private static string Tail(string text, int lines = 60) => string.Join('\n', text.Split('\n').TakeLast(lines));

    public async ValueTask DisposeAsync() => await PowerOffAsync();
}

/// <summary>A root shell on a guest's serial port (a unix socket QEMU listens on): the lab's units and guests.</summary>
/// <summary>Reading one partition of a unit's disk image (the unit off).</summary>
public static class DiskPartitions
{
    /// <summary>Hands partition <paramref name="name"/> of <paramref name="image"/> to <paramref name="chunk"/> in pieces of 1 MiB at most, in order.</summary>
    public static void Read(string image, string name, Action<byte[], int> chunk)
    {
        var partition = GptImage.Find(image, name);
        using var file = new FileStream(image, FileMode.Open, FileAccess.Read);
        file.Position = partition.Offset;
        var buffer = new byte[1 << 20];
        for (var left = partition.Length; left > 0;)
        {
            var read = file.Read(buffer, 0, (int)Math.Min(buffer.Length, left));
            if (read == 0) { throw new EndOfStreamException($"{image}: partition {name} ends past the end of the file"); }
            chunk(buffer, read);
            left -= read;
        }
    }
}

public static class GuestShell
{
    /// <summary>Runs <paramref name="command"/> on the shell at <paramref name="socketPath"/> and returns its output (CRs removed, trimmed).</summary>
    /// <exception cref="TimeoutException">The command's end marker did not come within <paramref name="timeout"/>.</exception>
    /// <exception cref="IOException">The console closed, or the output lacks its markers.</exception>
    public static async Task<string> RunAsync(string socketPath, string command, TimeSpan timeout, string guest)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath));
        await using var stream = new NetworkStream(socket, ownsSocket: false);
        var id = Guid.NewGuid().ToString("N")[..8];
        // the markers are quoted in the command so the terminal's echo of it (wrapped at 80 columns) never matches them
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"\necho BEG''{id}; {command}; echo END''{id}\n"));
        var output = await QemuUnit.ReadUntilAsync(stream, "END" + id, timeout);
        var begin = output.IndexOf("BEG" + id, StringComparison.Ordinal);
        var end = output.LastIndexOf("END" + id, StringComparison.Ordinal);
        if (begin < 0 || end < begin) { throw new IOException($"{guest}: shell output without its markers: {output}"); }
        return output[(begin + 3 + id.Length)..end].Replace("\r", "").Trim();
    }
}
