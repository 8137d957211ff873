using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Tsunagu.Firmware.Services;
using Tsunagu.Hal;
using Tsunagu.Protocol;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// Real squid with the configuration the unit renders (its cache directory, run directory and ports moved into a
/// temporary directory and onto 127.0.0.1) in front of an origin server in the test: a repeat is a hit and never reaches
/// the origin, a range request of a large object fetches the whole object once and later ranges come from the cache, a
/// changed object is revalidated with the origin and the new content served, and the cache manager's counters (what
/// the unit reports) agree with squid's access log.
/// </summary>
[NonParallelizable]
public class CacheHitTests
{
    private static readonly string[] HitCodes = ["TCP_HIT", "TCP_MEM_HIT", "TCP_IMS_HIT", "TCP_INM_HIT", "TCP_REFRESH_UNMODIFIED", "TCP_REFRESH_FAIL_OLD", "TCP_NEGATIVE_HIT", "TCP_OFFLINE_HIT"];

    [Test]
    public async Task Repeats_are_hits_ranges_are_cached_and_a_changed_object_is_revalidated()
    {
        var root = TempDirectories.Create("squid");
        using var origin = new Origin();
        using var squid = await SquidUnderTest.StartAsync(root);
        using var http = new HttpClient(new SocketsHttpHandler { Proxy = new WebProxy($"http://127.0.0.1:{squid.Port}"), UseProxy = true }) { Timeout = TimeSpan.FromSeconds(60) };
        try
        {
            // a repeat: the second is served from the cache and the origin sees one request
            var first = await http.GetByteArrayAsync(origin.Url("/object.bin"));
            var second = await http.GetByteArrayAsync(origin.Url("/object.bin"));
            Assert.That(first, Is.EqualTo(origin.Object));
            Assert.That(second, Is.EqualTo(origin.Object));
            Assert.That(origin.Count("/object.bin"), Is.EqualTo(1), "the repeat never reached the origin");

            // a range of a large object: squid fetches it whole (no Range to the origin) and answers the range
            var range = await GetRangeAsync(http, origin.Url("/video.bin"), 1_000_000, 1_065_535);
            Assert.That(range, Is.EqualTo(origin.Video[1_000_000..1_065_536]));
            Assert.That(origin.Requests.Where(r => r.Path == "/video.bin").Select(r => r.Range), Is.EqualTo(new string?[] { null }), "the origin was asked for the whole object");
            // deterministic: wait until squid has received the whole object from the origin, then ask for another range
            await squid.WaitForAsync(c => c.Contains("server.http.kbytes_in = ") && KilobytesIn(c) >= origin.Video.Length / 1024, "squid to have the whole object");
            var later = await GetRangeAsync(http, origin.Url("/video.bin"), 5_000_000, 5_999_999);
            Assert.That(later, Is.EqualTo(origin.Video[5_000_000..6_000_000]));
            Assert.That(origin.Count("/video.bin"), Is.EqualTo(1), "the second range came from the cache");

            // revalidation: the origin says revalidate each time; unchanged -> 304 and the cached copy, changed -> the new one
            Assert.That(await http.GetStringAsync(origin.Url("/changing.txt")), Is.EqualTo("version 1"));
            Assert.That(await http.GetStringAsync(origin.Url("/changing.txt")), Is.EqualTo("version 1"));
            origin.Change("version 2");
            Assert.That(await http.GetStringAsync(origin.Url("/changing.txt")), Is.EqualTo("version 2"), "the changed object, not the cached one");
            var changing = origin.Requests.Where(r => r.Path == "/changing.txt").ToList();
            Assert.That(changing.Select(r => r.IfNoneMatch), Is.EqualTo(new string?[] { null, "\"v1\"", "\"v1\"" }), "squid revalidated with the validator it had");

            // the last transaction's line: every earlier one was written before it (one client, one request at a time)
            var log = await squid.AccessLogAsync("/changing.txt", 3);
            var codes = log.Select(l => (Url: l[6], Code: l[3].Split('/')[0])).ToList();
            TestContext.Out.WriteLine(string.Join("\n", log.Select(l => string.Join(' ', l))));
            Assert.Multiple(() =>
            {
                Assert.That(codes.Where(c => c.Url.EndsWith("/object.bin", StringComparison.Ordinal)).Select(c => c.Code).ToList(),
                    Has.Count.EqualTo(2).And.Some.Matches<string>(c => c is "TCP_HIT" or "TCP_MEM_HIT"));
                Assert.That(codes.Where(c => c.Url.EndsWith("/video.bin", StringComparison.Ordinal)).Select(c => c.Code).Last(), Is.AnyOf("TCP_HIT", "TCP_MEM_HIT"));
                Assert.That(codes.Where(c => c.Url.EndsWith("/changing.txt", StringComparison.Ordinal)).Select(c => c.Code),
                    Is.EqualTo(new[] { "TCP_MISS", "TCP_REFRESH_UNMODIFIED", "TCP_REFRESH_MODIFIED" }));
            });

            // the statistics the unit reports agree with the log
            // (the log also holds the start-up probe's empty connection and the cache manager's own requests, which are never hits)
            var report = CacheStatistics.Parse(await squid.CountersAsync());
            var fetches = codes.Where(c => c.Url.StartsWith(origin.Url("/"), StringComparison.Ordinal)).ToList();
            var hits = fetches.Count(c => HitCodes.Contains(c.Code));
            var managerRequests = squid.ManagerRequests;
            Assert.That(hits, Is.EqualTo(3), "the object's repeat, the second range and the unchanged revalidation");
            Assert.That(report.Hits, Is.EqualTo(hits), "squid's hit counter agrees with its log");
            Assert.That(report.Requests, Is.InRange(fetches.Count, fetches.Count + managerRequests), "requests: the fetches and the cache manager's own");
            Assert.That(report.BytesSaved, Is.GreaterThanOrEqualTo((origin.Object.Length + 1_000_000) / 1024 * 1024), "at least the repeated object and the cached range were saved");
            TestContext.Out.WriteLine($"hit ratio {hits}/{fetches.Count} = {100.0 * hits / fetches.Count:0.#}%; bytes served {report.BytesServed}, from the cache {report.BytesSaved}");
        }
        finally
        {
            await squid.StopAsync();
            Directory.Delete(root, recursive: true);
        }
    }

    private static long KilobytesIn(string counters) =>
        long.Parse(counters.Split('\n').First(l => l.StartsWith("server.http.kbytes_in = ", StringComparison.Ordinal))["server.http.kbytes_in = ".Length..].Trim(), System.Globalization.CultureInfo.InvariantCulture);

    private static async Task<byte[]> GetRangeAsync(HttpClient http, string url, long from, long to)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        request.Headers.Range = new System.Net.Http.Headers.RangeHeaderValue(from, to);
        using var response = await http.SendAsync(request);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.PartialContent), $"range {from}-{to} of {url}");
        return await response.Content.ReadAsByteArrayAsync();
    }
}

/// <summary>
/// An origin server on 127.0.0.1 that records every request it is sent; plain HTTP/1.1 written by hand, one request per
/// connection, so that every header of every answer (a 304 above all) is exactly what the test says.
/// </summary>
internal sealed class Origin : IDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private volatile string _changing = "version 1";
    private volatile string _etag = "\"v1\"";

    public Origin()
    {
        Object = RandomNumberGenerator.GetBytes(200_000);
        Video = RandomNumberGenerator.GetBytes(6_000_000);
        _listener.Start();
        _loop = Task.Run(LoopAsync);
    }

    public byte[] Object { get; }
    public byte[] Video { get; }
    public ConcurrentQueue<(string Path, string? Range, string? IfNoneMatch)> Requests { get; } = new();

    /// <summary>More paths and their answers (header lines ending in CRLF, and the body).</summary>
    public ConcurrentDictionary<string, (string Headers, byte[] Body)> Static { get; } = new();
    private int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public string Url(string path) => $"http://127.0.0.1:{Port}{path}";
    public int Count(string path) => Requests.Count(r => r.Path == path);

    public void Change(string content)
    {
        _changing = content;
        _etag = "\"v2\"";
    }

    private async Task LoopAsync()
    {
        var connections = new List<Task>();
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try { client = await _listener.AcceptTcpClientAsync(_stop.Token); }
            catch (OperationCanceledException) { break; }
            connections.Add(Task.Run(() => ServeAsync(client)));
        }
        await Task.WhenAll(connections);
    }

    private async Task ServeAsync(TcpClient client)
    {
        using (client)
        {
            try
            {
                var stream = client.GetStream();
                var head = new List<byte>();
                var one = new byte[1];
                while (head.Count < 65536 && !(head.Count >= 4 && head[^4] == '\r' && head[^3] == '\n' && head[^2] == '\r' && head[^1] == '\n'))
                {
                    if (await stream.ReadAsync(one, _stop.Token) == 0) { return; }
                    head.Add(one[0]);
                }
                var lines = System.Text.Encoding.ASCII.GetString([.. head]).Split("\r\n");
                var path = new Uri("http://x" + lines[0].Split(' ')[1]).AbsolutePath;
                var headers = lines.Skip(1).Where(l => l.Contains(':')).ToDictionary(l => l[..l.IndexOf(':')].Trim(), l => l[(l.IndexOf(':') + 1)..].Trim(), StringComparer.OrdinalIgnoreCase);
                Requests.Enqueue((path, headers.GetValueOrDefault("Range"), headers.GetValueOrDefault("If-None-Match")));
                var (status, extra, body) = path switch
                {
                    _ when Static.TryGetValue(path, out var fixedAnswer) => ("200 OK", fixedAnswer.Headers, fixedAnswer.Body),
                    "/object.bin" => ("200 OK", "Cache-Control: public, max-age=3600\r\nETag: \"o1\"\r\n", Object),
                    "/video.bin" => ("200 OK", "Cache-Control: public, max-age=3600\r\nETag: \"video1\"\r\n", Video),
                    "/changing.txt" when headers.GetValueOrDefault("If-None-Match") == _etag => ("304 Not Modified", $"Cache-Control: no-cache\r\nETag: {_etag}\r\n", null),
                    "/changing.txt" => ("200 OK", $"Cache-Control: no-cache\r\nETag: {_etag}\r\n", System.Text.Encoding.ASCII.GetBytes(_changing)),
                    _ => ("404 Not Found", "", []),
                };
                var response = $"HTTP/1.1 {status}\r\nDate: {DateTimeOffset.UtcNow:r}\r\nLast-Modified: Tue, 01 Dec 2026 00:00:00 GMT\r\n{extra}" +
                               (body is null ? "" : $"Content-Type: application/octet-stream\r\nContent-Length: {body.Length}\r\n") + "Connection: close\r\n\r\n";
                await stream.WriteAsync(System.Text.Encoding.ASCII.GetBytes(response), _stop.Token);
                if (body is not null) { await stream.WriteAsync(body, _stop.Token); }
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException)
            {
                // the proxy went away mid-answer, or the test is over; the request is recorded
            }
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        _loop.Wait(TimeSpan.FromSeconds(10));
        _stop.Dispose();
    }
}

/// <summary>
/// squid started by a test with the unit's rendered configuration, its directories under <c>root</c> and its ports on
/// 127.0.0.1 (the LAN address of the rendered configuration). Run as the current user, or as `proxy` when the test runs
/// as root (squid refuses root). Stopped by its process id.
/// </summary>
internal sealed class SquidUnderTest : IDisposable
{
    private readonly List<Process> _processes = [];
    private readonly StringWriter _output = new();

    private SquidUnderTest(ServiceEnvironment env, string root)
    {
        Environment = env;
        Port = env.CachePort;
        AccessLog = env.CacheAccessLog!;
        Root = root;
    }

    public ServiceEnvironment Environment { get; }
    public int Port { get; }
    public string AccessLog { get; }
    public string Root { get; }

    /// <summary>clamd's process, when virus checking runs.</summary>
    public Process? Clamd { get; private set; }

    public static ServiceConfiguration Configuration(int sizeMegabytes = 64, int maxObjectMegabytes = 16, bool virusScan = false) => new(
        new FirewallConfig("drop", true, []),
        new DhcpConfig("127.0.0.1", 8, "127.0.0.100", "127.0.0.199", "12h", []),
        new DnsConfig("home.arpa", ["127.0.0.1"]),
        new ContentFilterConfig(false, []),
        new VpnConfig(false, 0, null, []),
        new CacheConfig(true, sizeMegabytes, maxObjectMegabytes),
        virusScan ? new VirusScanConfig(true) : null);

    /// <param name="virusScan">The board's virus checking; with a configuration that enables it, clamd and c-icap run too.</param>
    /// <param name="signatures">Writes the first signature database into the given directory before clamd starts.</param>
    public static async Task<SquidUnderTest> StartAsync(string root, ServiceConfiguration? configuration = null, BoardVirusScan? virusScan = null,
        Action<string>? signatures = null)
    {
        var hdd = Path.Combine(root, "hdd");
        var run = Path.Combine(root, "run");
        Directory.CreateDirectory(hdd);
        Directory.CreateDirectory(run);
        var env = new ServiceEnvironment(BoardDescription.Simulated with { Hdd = new BoardHdd(hdd), VirusScan = virusScan }, run, Path.Combine(root, "state"))
        {
            CachePort = TestServer.FreePort(), InterceptPort = TestServer.FreePort(), IcapPort = TestServer.FreePort(), CacheAccessLog = Path.Combine(run, "access.log"),
        };
        if (virusScan is not null)
        {
            // the signatures first: without a database virus checking waits and nothing of it is rendered
            Directory.CreateDirectory(env.SignatureDirectory);
            signatures?.Invoke(env.SignatureDirectory);
        }
        var files = ServiceRenderer.Render(configuration ?? Configuration(), env);
        foreach (var (name, text) in files)
        {
            await File.WriteAllTextAsync(Path.Combine(root, name), text);
        }
        var config = Path.Combine(root, ServiceRenderer.Squid);
        Directory.CreateDirectory(ServiceRenderer.CacheDirectoryFor(configuration ?? Configuration(), env).InUse!);
        if (System.Environment.UserName == "root")
        {
            await RunAsync("chown", "-R", "proxy:proxy", hdd, run);
        }
        var squid = new SquidUnderTest(env, root);
        try
        {
            if (files.ContainsKey(ServiceRenderer.Clamd))
            {
                squid.Clamd = squid.Start("clamd", "-c", Path.Combine(root, ServiceRenderer.Clamd));
                await squid.WaitAsync(squid.Clamd, "clamd", async () => await ClamdControl.SendAsync(env.ClamdSocket, "PING", CancellationToken.None) == "PONG",
                    Path.Combine(run, "clamd.log"));
                var icap = squid.Start("c-icap", "-N", "-D", "-f", Path.Combine(root, ServiceRenderer.CIcap));
                await squid.WaitAsync(icap, "c-icap", () => Connects(env.IcapPort), Path.Combine(run, "c-icap-server.log"));
            }
            await RunAsync("squid", "-k", "parse", "-f", config);
            await RunAsync("squid", "-N", "-z", "-f", config);
            var process = squid.Start("squid", "-N", "-f", config);
            await squid.WaitAsync(process, "squid", () => Connects(env.CachePort), Path.Combine(run, "squid-cache.log"));
            return squid;
        }
        catch
        {
            squid.Dispose();
            throw;
        }
    }

    private Process Start(string tool, params string[] args)
    {
        var start = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) { start.ArgumentList.Add(a); }
        var process = Process.Start(start) ?? throw new InvalidOperationException($"{tool} did not start");
        _processes.Add(process);
        process.OutputDataReceived += (_, e) => { lock (_output) { _output.WriteLine(e.Data); } };
        process.ErrorDataReceived += (_, e) => { lock (_output) { _output.WriteLine(e.Data); } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    private static async Task<bool> Connects(int port)
    {
        using var probe = new TcpClient();
        await probe.ConnectAsync(IPAddress.Loopback, port);
        return true;
    }

    /// <summary>Polls <paramref name="ready"/> until it holds; fails at once if the process exits, after 120 s if it never holds.</summary>
    private async Task WaitAsync(Process process, string name, Func<Task<bool>> ready, string log)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (process.HasExited)
            {
                Assert.Fail($"{name} exited with {process.ExitCode}:\n{Output}\n{ReadLog(log)}");
            }
            try
            {
                if (await ready()) { return; }
            }
            catch (Exception e) when (e is SocketException or ClamdException && deadline.Elapsed < TimeSpan.FromSeconds(120))
            {
                // not listening yet
            }
            if (deadline.Elapsed > TimeSpan.FromSeconds(120)) { Assert.Fail($"{name} not ready in 120 s:\n{Output}\n{ReadLog(log)}"); }
            await Task.Delay(100);
        }
    }

    public string Output { get { lock (_output) { return _output.ToString(); } } }

    private static string ReadLog(string path) => File.Exists(path) ? File.ReadAllText(path) : "(no cache log)";

    /// <summary>How many times the test asked the cache manager.</summary>
    public int ManagerRequests { get; private set; }

    /// <summary>The cache manager's counters page, as the unit reads it.</summary>
    public async Task<string> CountersAsync()
    {
        ManagerRequests++;
        using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false });
        return await http.GetStringAsync($"http://127.0.0.1:{Port}{CacheStatistics.CountersPath}");
    }

    /// <summary>Polls the counters until <paramref name="done"/> holds (60 s at most).</summary>
    public async Task WaitForAsync(Func<string, bool> done, string what)
    {
        var deadline = Stopwatch.StartNew();
        while (!done(await CountersAsync()))
        {
            if (deadline.Elapsed > TimeSpan.FromSeconds(60)) { Assert.Fail($"timed out waiting for {what}"); }
            await Task.Delay(100);
        }
    }

    /// <summary>
    /// The access log's lines split in fields, once it holds <paramref name="count"/> lines for the URL ending in
    /// <paramref name="urlSuffix"/> (squid writes a line when a transaction ends, after the client has its answer);
    /// fails after 60 s.
    /// </summary>
    public async Task<List<string[]>> AccessLogAsync(string urlSuffix, int count)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var text = File.Exists(AccessLog) ? await File.ReadAllLinesAsync(AccessLog) : [];
            var fields = text.Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)).ToList();
            if (fields.Count(f => f.Length > 6 && f[6].EndsWith(urlSuffix, StringComparison.Ordinal)) >= count) { return fields; }
            if (deadline.Elapsed > TimeSpan.FromSeconds(60)) { Assert.Fail($"squid's access log has fewer than {count} lines for {urlSuffix} after 60 s:\n{string.Join('\n', text)}"); }
            await Task.Delay(100);
        }
    }

    /// <summary>Stops the daemons this test started, by their process ids (c-icap's own child with it), last started first.</summary>
    public async Task StopAsync()
    {
        for (var i = _processes.Count - 1; i >= 0; i--)
        {
            var process = _processes[i];
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync();
            }
        }
    }

    public void Dispose()
    {
        for (var i = _processes.Count - 1; i >= 0; i--)
        {
            var process = _processes[i];
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
                process.WaitForExit(10_000);
            }
            process.Dispose();
        }
    }

    internal static async Task RunAsync(string tool, params string[] args)
    {
        var start = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) { start.ArgumentList.Add(a); }
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"{tool} did not start");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        await process.WaitForExitAsync(timeout.Token);
        Assert.That(process.ExitCode, Is.Zero, $"{tool} {string.Join(' ', args)}:\n{await stderr}\n{await stdout}");
    }
}
