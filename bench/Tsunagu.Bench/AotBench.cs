using System.Diagnostics;
using System.Globalization;
using Tsunagu.Demo;
using Tsunagu.Hal;

namespace Tsunagu.Bench;

/// <summary>
/// tsunagud as Native AOT vs a Native AOT hello world, both published in this job: binary size, and resident
/// memory (VmRSS) of tsunagud 2 s after it reports Ready against a server on loopback (provisioning, the signed
/// bundle update, service configuration, push connection done) vs the hello world's 1 s after start.
/// </summary>
public static class AotBench
{
    public static async Task RunAsync(string work, List<Result> results, Action<string> progress)
    {
        var c = CultureInfo.InvariantCulture;
        var root = ServerProcess.RepoRoot();
        var dir = Path.Combine(work, "aot");
        Directory.CreateDirectory(dir);

        // the reference: a console hello world that stays up, outside the repository's build settings
        var helloSrc = Path.Combine(dir, "hello-src");
        Directory.CreateDirectory(helloSrc);
        await File.WriteAllTextAsync(Path.Combine(helloSrc, "Directory.Build.props"), "<Project />");
        await File.WriteAllTextAsync(Path.Combine(helloSrc, "Directory.Packages.props"), "<Project />");
        await File.WriteAllTextAsync(Path.Combine(helloSrc, "hello.csproj"), """
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup><OutputType>Exe</OutputType><TargetFramework>net10.0</TargetFramework><PublishAot>true</PublishAot><Nullable>enable</Nullable><ImplicitUsings>enable</ImplicitUsings></PropertyGroup>
            </Project>
            """);
        await File.WriteAllTextAsync(Path.Combine(helloSrc, "Program.cs"), "Console.WriteLine(\"Hello, World!\");\nThread.Sleep(Timeout.Infinite);\n");
        var clock = Stopwatch.StartNew();
        await Tools.RunAsync("dotnet", $"publish {helloSrc} -c Release -r linux-x64 -o {dir}/hello", TimeSpan.FromMinutes(10));
        progress(string.Create(c, $"aot: hello world published in {clock.Elapsed.TotalSeconds:0} s"));
        clock.Restart();
        // as `make tsunagud-aot`: LiteDB's trim/AOT analysis warnings are not errors there either
        await Tools.RunAsync("dotnet", $"publish {root}/firmware/tsunagud -c Release -r linux-x64 -p:TreatWarningsAsErrors=false -o {dir}/tsunagud",
            TimeSpan.FromMinutes(15));
        progress(string.Create(c, $"aot: tsunagud published in {clock.Elapsed.TotalSeconds:0} s"));
        var helloSize = new FileInfo(Path.Combine(dir, "hello", "hello")).Length;
        var tsunagudSize = new FileInfo(Path.Combine(dir, "tsunagud", "tsunagud")).Length;

        long helloRss;
        using (var hello = Tools.Start(Path.Combine(dir, "hello", "hello"), ""))
        {
            await Task.Delay(TimeSpan.FromSeconds(1));
            helloRss = Tools.VmRss(hello.Id);
            hello.Kill();
            await hello.WaitForExitAsync();
        }

        // a server with the demo catalogue (embedded broker), one registered unit, its factory partition and PROM
        await using var server = await DemoServer.StartAsync(Path.Combine(dir, "server"), mqttPort: 0, "02:54:53:fe:00:01", "AOT-1", unitTrustsReleaseKey: true);
        var identity = server.Unit;
        var unitDir = Path.Combine(dir, "unit");
        await DirectoryFactoryPartition.BurnAsync(Path.Combine(unitDir, "factory"), identity, CancellationToken.None);
        DirectoryPromPartition.Build(Path.Combine(unitDir, "prom"), DemoCatalogue.OsVersion, DemoCatalogue.FactoryApplications);
        Directory.CreateDirectory(Path.Combine(unitDir, "data"));

        var start = new ProcessStartInfo(Path.Combine(dir, "tsunagud", "tsunagud")) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "--factory", Path.Combine(unitDir, "factory"), "--prom", Path.Combine(unitDir, "prom"), "--data", Path.Combine(unitDir, "data") })
        {
            start.ArgumentList.Add(a);
        }
        using var daemon = Process.Start(start) ?? throw new InvalidOperationException("could not start tsunagud");
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var log = new System.Text.StringBuilder();
        void OnLine(string? line)
        {
            if (line is null) { return; }
            lock (log) { if (log.Length < 32_000) { log.AppendLine(line); } }
            if (line.Contains("--> Ready", StringComparison.Ordinal)) { ready.TrySetResult(); }
        }
        daemon.OutputDataReceived += (_, e) => OnLine(e.Data);
        daemon.ErrorDataReceived += (_, e) => OnLine(e.Data);
        daemon.BeginOutputReadLine();
        daemon.BeginErrorReadLine();
        clock.Restart();
        long tsunagudRss;
        try
        {
            await Task.WhenAny(ready.Task, daemon.WaitForExitAsync()).WaitAsync(TimeSpan.FromMinutes(2));
            if (!ready.Task.IsCompleted) { throw new InvalidOperationException($"tsunagud did not reach Ready:\n{log}"); }
            var toReady = clock.Elapsed.TotalSeconds;
            await Task.Delay(TimeSpan.FromSeconds(2));
            tsunagudRss = Tools.VmRss(daemon.Id);
            // Ready means the whole first boot: the unit now runs pattern 2 (the signed bundle was installed)
            var pattern = (await server.Store.Units.GetUnitAsync(identity.Mac))?.Pattern;
            if (pattern != DemoCatalogue.Pattern2) { throw new InvalidOperationException($"tsunagud reported Ready on {pattern ?? "no pattern"}, not {DemoCatalogue.Pattern2}:\n{log}"); }
            var transitions = log.ToString().Split('\n').Count(l => l.Contains("-->", StringComparison.Ordinal));
            progress(string.Create(c, $"aot: tsunagud Ready on {pattern} after {toReady:0.0} s ({transitions} state changes); VmRSS {tsunagudRss / 1024} KiB; hello world {helloRss / 1024} KiB"));
        }
        finally
        {
            if (!daemon.HasExited) { daemon.Kill(); }
            await daemon.WaitForExitAsync();
        }
        results.Add(new("tsunagud Native AOT binary size (bytes) vs AOT hello world", tsunagudSize, helloSize, "<=", 4,
            "both published -c Release -r linux-x64 -p:PublishAot=true in this job"));
        results.Add(new("tsunagud RSS at Ready (bytes) vs AOT hello world RSS", tsunagudRss, helloRss, "<=", 3,
            "VmRSS: tsunagud 2 s after Ready (first boot with the signed bundle update and push connection, server on loopback); hello world 1 s after start"));
    }
}
