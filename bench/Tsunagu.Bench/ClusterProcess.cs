using System.Diagnostics;
using System.Globalization;
using Tsunagu.Cli.Factory;

namespace Tsunagu.Bench;

/// <summary>
/// The production topology of deploy/cluster.sh (HAProxy, replicas, nginx, PostgreSQL, Mosquitto) under a directory of
/// the bench, started and stopped by that script (which stops what it started by the PIDs it wrote).
/// </summary>
public sealed class ClusterProcess : IAsyncDisposable
{
    private readonly string _script;

    private ClusterProcess(string dir, string script, IReadOnlyDictionary<string, string> env)
    {
        Dir = dir;
        _script = script;
        Url = new Uri(env["URL"]);
        Password = env["OPERATOR_PASSWORD"];
        Database = env["DATABASE"];
        Data = env["DATA"];
        Pin = OperatorClient.PinFromPemFile(env["CERTIFICATE"]);
    }

    public string Dir { get; }
    public Uri Url { get; }
    public string Password { get; }
    public string Database { get; }
    public string Data { get; }
    public string Pin { get; }

    /// <summary>The PEM with the server's certificate and private key that HAProxy presents (mode 600).</summary>
    public string CertificateAndKeyPem => Path.Combine(Dir, "tls", "haproxy.pem");

    /// <summary>The replicas' PIDs, as the script wrote them.</summary>
    public IReadOnlyList<int> ReplicaPids() => Directory.GetFiles(Path.Combine(Dir, "run"), "replica-*.pid").Order(StringComparer.Ordinal)
        .Select(f => int.Parse(File.ReadLines(f).First(), CultureInfo.InvariantCulture)).ToList();

    public int HaproxyPid => int.Parse(File.ReadLines(Path.Combine(Dir, "run", "haproxy.pid")).First(), CultureInfo.InvariantCulture);

    /// <summary>PostgreSQL's postmaster (its backends are its children).</summary>
    public int PostgresPid => int.Parse(File.ReadLines(Path.Combine(Dir, "pg", "data", "postmaster.pid")).First(), CultureInfo.InvariantCulture);

    public int MosquittoPid => int.Parse(File.ReadLines(Path.Combine(Dir, "run", "mosquitto.pid")).First(), CultureInfo.InvariantCulture);

    /// <param name="settings">Server settings for every replica, as TSUNAGU_* environment variables (name without the prefix, value).</param>
    public static async Task<ClusterProcess> StartAsync(string dir, int replicas, IReadOnlyDictionary<string, string> settings, Action<string> progress,
        CancellationToken ct)
    {
        var script = Path.Combine(ServerProcess.RepoRoot(), "deploy", "cluster.sh");
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { script, "start", dir }) { start.ArgumentList.Add(a); }
        start.Environment["PORT"] = Tools.FreePort().ToString(CultureInfo.InvariantCulture);
        start.Environment["REPLICAS"] = replicas.ToString(CultureInfo.InvariantCulture);
        start.Environment["SERVER_DLL"] = ServerProcess.ServerDll();
        start.Environment["OPERATOR_PASSWORD"] = Guid.NewGuid().ToString("N");
        foreach (var (name, value) in settings) { start.Environment["TSUNAGU_" + name.ToUpperInvariant()] = value; }
        using (var process = Process.Start(start) ?? throw new InvalidOperationException("could not start deploy/cluster.sh"))
        {
            var output = process.StandardOutput.ReadToEndAsync(ct);
            var errors = process.StandardError.ReadToEndAsync(ct);
            try
            {
                await process.WaitForExitAsync(ct).WaitAsync(TimeSpan.FromMinutes(5), ct);
            }
            catch (TimeoutException)
            {
                process.Kill(entireProcessTree: true);
                await StopAsync(script, dir);
                throw new TimeoutException($"deploy/cluster.sh start {dir} did not finish in 5 minutes");
            }
            if (process.ExitCode != 0)
            {
                await StopAsync(script, dir);
                throw new InvalidOperationException($"deploy/cluster.sh start {dir} failed ({process.ExitCode}): {await errors}\n{await output}");
            }
            progress((await output).Trim());
        }
        var env = File.ReadAllLines(Path.Combine(dir, "cluster.env")).Where(l => l.Contains('=', StringComparison.Ordinal))
            .ToDictionary(l => l[..l.IndexOf('=', StringComparison.Ordinal)], l => l[(l.IndexOf('=', StringComparison.Ordinal) + 1)..]);
        return new ClusterProcess(dir, script, env);
    }

    private static Task StopAsync(string script, string dir) => Tools.RunAsync("bash", $"{script} stop {dir}", TimeSpan.FromMinutes(2));

    public async ValueTask DisposeAsync() => await StopAsync(_script, Dir);
}

/// <summary>CPU seconds of a process and of its children, living and waited for (Linux /proc).</summary>
public static class ProcessTreeCpu
{
    /// <summary>utime + stime + cutime + cstime of <paramref name="pid"/> plus utime + stime of its living children, seconds.</summary>
    public static double Read(int pid)
    {
        var own = Fields(pid);
        var total = own is null ? 0 : (own[11] + own[12] + own[13] + own[14]) / 100.0;
        var childrenFile = $"/proc/{pid}/task/{pid}/children";
        if (!File.Exists(childrenFile)) { return total; }
        foreach (var child in File.ReadAllText(childrenFile).Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            if (Fields(int.Parse(child, CultureInfo.InvariantCulture)) is { } f) { total += (f[11] + f[12]) / 100.0; }
        }
        return total;
    }

    private static long[]? Fields(int pid)
    {
        string stat;
        try
        {
            stat = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException or IOException)
        {
            return null; // a child that exited between the listing and the read: its time is in the parent's cutime once waited for
        }
        return stat[(stat.LastIndexOf(')') + 2)..].Split(' ').Take(15).Select(x => long.TryParse(x, CultureInfo.InvariantCulture, out var v) ? v : 0).ToArray();
    }
}
