using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;

namespace Tsunagu.Bench;

/// <summary>One row of the table: value and reference measured in this run; null when the pair was not measured.</summary>
/// <remarks><paramref name="Absolute"/>: the target is a value the row's own value must reach (a goal in its unit), not a ratio to the reference.</remarks>
public sealed record Result(string Metric, double? Value, double? Reference, string Comparison, double Target, string Note, bool Absolute = false)
{
    public double? Ratio => Value is { } v && Reference is { } r && r > 0 ? v / r : null;

    public bool? Met => (Absolute ? Value : Ratio) is not { } x ? null : Comparison == ">=" ? x >= Target : x <= Target;

    public string TargetText => $"{Comparison} {Target.ToString(CultureInfo.InvariantCulture)}{(Absolute ? " (value)" : "")}";

    public static Result NotMeasured(string metric, string comparison, double target, string why) => new(metric, null, null, comparison, target, "NOT MEASURED: " + why);
}

public sealed record LoadResult(double PerSecond, long Errors, double P99Ms);

/// <summary>The load generator used for both sides of a pair: same client, same concurrency, same duration.</summary>
public static class Load
{
    private static HttpClient Client(int connections) => new(new SocketsHttpHandler
    {
        MaxConnectionsPerServer = connections,
        SslOptions = { RemoteCertificateValidationCallback = (_, _, _, _) => true }, // loopback bench: both servers use self-signed certificates
    });

    public static async Task<LoadResult> RunAsync(Func<HttpRequestMessage> request, int concurrency, TimeSpan duration)
    {
        using var http = Client(concurrency);
        using (var warm = await http.SendAsync(request())) { warm.EnsureSuccessStatusCode(); }
        long ok = 0, errors = 0;
        var latencies = new List<long>[concurrency];
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(async i =>
        {
            latencies[i] = [];
            while (clock.Elapsed < duration)
            {
                var started = Stopwatch.GetTimestamp();
                using var response = await http.SendAsync(request());
                await response.Content.LoadIntoBufferAsync();
                latencies[i].Add(Stopwatch.GetTimestamp() - started);
                if (response.IsSuccessStatusCode) { Interlocked.Increment(ref ok); } else { Interlocked.Increment(ref errors); }
            }
        }));
        var all = latencies.SelectMany(l => l).Order().ToArray();
        var p99 = all.Length == 0 ? 0 : all[Math.Min(all.Length - 1, (int)(all.Length * 0.99))] * 1000.0 / Stopwatch.Frequency;
        return new LoadResult(ok / clock.Elapsed.TotalSeconds, errors, p99);
    }

    /// <summary>Fetches <paramref name="uri"/> <paramref name="times"/> times; returns the CPU seconds of process <paramref name="pid"/> (null: this process).</summary>
    public static async Task<double> DownloadCpuAsync(Uri uri, int times, int? pid, string? token = null, string? pin = null)
    {
        _ = pin;
        using var http = Client(1);
        var buffer = new byte[1 << 16];
        var before = pid is { } p ? Tools.ProcessCpu(p) : Environment.CpuUsage.TotalTime.TotalSeconds;
        for (var i = 0; i < times; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, uri);
            if (token is not null) { request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token); }
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            response.EnsureSuccessStatusCode();
            await using var body = await response.Content.ReadAsStreamAsync();
            while (await body.ReadAsync(buffer) > 0) { }
        }
        var after = pid is { } q ? Tools.ProcessCpu(q) : Environment.CpuUsage.TotalTime.TotalSeconds;
        return after - before;
    }
}

public static class Tools
{
    /// <summary>
    /// SIGTERM to nginx's master, which stops its workers (SIGKILL to the master alone would leave them running); the
    /// whole tree is killed if it has not exited within 10 s.
    /// </summary>
    public static async Task StopNginxAsync(System.Diagnostics.Process nginx)
    {
        await RunAsync("kill", $"-TERM {nginx.Id}");
        try
        {
            await nginx.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (TimeoutException)
        {
            nginx.Kill(entireProcessTree: true);
            await nginx.WaitForExitAsync();
        }
        nginx.Dispose();
    }

    public static string Num(double? v) => v is not { } x ? "-" : x >= 100 ? x.ToString("0", CultureInfo.InvariantCulture) : x.ToString("0.000", CultureInfo.InvariantCulture);

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public static void WriteRandom(string path, long size)
    {
        using var file = File.Create(path);
        var buffer = new byte[1 << 20];
        for (long written = 0; written < size; written += buffer.Length)
        {
            Random.Shared.NextBytes(buffer);
            file.Write(buffer, 0, (int)Math.Min(buffer.Length, size - written));
        }
    }

    public static Process Start(string file, string arguments) =>
        Process.Start(new ProcessStartInfo(file, arguments) { UseShellExecute = false, RedirectStandardError = false })
        ?? throw new InvalidOperationException($"could not start {file}");

    public static Task<string> RunAsync(string file, string arguments) => RunAsync(file, arguments, TimeSpan.FromMinutes(2));

    public static async Task<string> RunAsync(string file, string arguments, TimeSpan limit)
    {
        using var process = Process.Start(new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false })
                            ?? throw new InvalidOperationException($"could not start {file}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(limit);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {arguments} did not finish within {limit}");
        }
        if (process.ExitCode != 0) { throw new InvalidOperationException($"{file} {arguments} exited with {process.ExitCode}: {await stderr}"); }
        return await stdout;
    }

    public static async Task WaitForPortAsync(int port)
    {
        for (var i = 0; i < 100; i++)
        {
            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync(IPAddress.Loopback, port);
                return;
            }
            catch (SocketException)
            {
                await Task.Delay(50);
            }
        }
        throw new InvalidOperationException($"nothing listens on 127.0.0.1:{port} after 5 s");
    }

    /// <summary>openssl speed -mr: "+F4:n:256:sign/s:verify/s" lines for ECDSA.</summary>
    public static double ParseOpensslEcdsaVerify(string output)
    {
        var line = output.Split('\n').FirstOrDefault(l => l.StartsWith("+F4:", StringComparison.Ordinal))
                   ?? throw new InvalidOperationException($"no ECDSA result in openssl speed output:\n{output}");
        var fields = line.Trim().Split(':');
        return double.Parse(fields[^1], CultureInfo.InvariantCulture);
    }

    /// <summary>utime + stime of a process, seconds (Linux /proc).</summary>
    public static double ProcessCpu(int pid)
    {
        // nginx serves from worker processes: count the process and its children (nginx workers are long-lived)
        var children = File.Exists($"/proc/{pid}/task/{pid}/children")
            ? File.ReadAllText($"/proc/{pid}/task/{pid}/children").Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToList()
            : [];
        return OwnCpu(pid) + children.Sum(OwnCpu);
    }

    private static double OwnCpu(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        var ticks = long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
        return ticks / 100.0;
    }

    /// <summary>VmRSS of another process, bytes (Linux /proc).</summary>
    public static long VmRss(int pid)
    {
        var line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
    }

    public static long Rss() { using var self = Process.GetCurrentProcess(); self.Refresh(); return self.WorkingSet64; }
}
