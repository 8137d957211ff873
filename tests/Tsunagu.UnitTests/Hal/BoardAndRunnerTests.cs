using Tsunagu.Hal;
using Tsunagu.Hal.Linux;

namespace Tsunagu.UnitTests.Hal;

/// <summary>The board loader and the process command runner, with fake tools on PATH.</summary>
public class BoardAndRunnerTests
{
    private string _dir = "";
    private ProcessCommandRunner _runner = null!;

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), "tsunagu-run-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path.Combine(_dir, "bin"));
        _runner = new ProcessCommandRunner([Path.Combine(_dir, "bin"), "/usr/sbin", "/usr/bin", "/sbin", "/bin"]);
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    internal static void FakeTool(string binDir, string name, string script)
    {
        var path = Path.Combine(binDir, name);
        File.WriteAllText(path, "#!/bin/sh\n" + script + "\n");
        if (!OperatingSystem.IsLinux()) { throw new PlatformNotSupportedException("fake tools are shell scripts: Linux only"); }
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    internal static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Tsunagu.slnx"))) { return dir.FullName; }
        }
        throw new DirectoryNotFoundException($"no Tsunagu.slnx above {TestContext.CurrentContext.TestDirectory}");
    }

    [Test]
    public void Board_descriptions_in_the_repository_load()
    {
        var qemu = BoardDescription.Resolve("qemu-x86_64", Path.Combine(RepositoryRoot(), "board"));
        Assert.That(qemu.Interfaces, Is.EqualTo(new BoardInterfaces("eth0", "eth1", "wg0")));
        Assert.That(qemu.Hdd, Is.EqualTo(new BoardHdd("/hdd")));
        // the second board: the same interfaces and cache disk, its own reset button's input device, the same watchdog
        var arm64 = BoardDescription.Resolve("qemu-arm64", Path.Combine(RepositoryRoot(), "board"));
        Assert.That(arm64.Name, Is.EqualTo("qemu-arm64"));
        Assert.That(arm64.Interfaces, Is.EqualTo(qemu.Interfaces));
        Assert.That(arm64.Hdd, Is.EqualTo(qemu.Hdd));
        Assert.That(arm64.Watchdog, Is.EqualTo(qemu.Watchdog));
        var simulated = BoardDescription.Load(Path.Combine(RepositoryRoot(), "board", "simulated"));
        Assert.That(simulated, Is.EqualTo(BoardDescription.Simulated), "the HAL embeds board/simulated/board.json");
        Assert.That(simulated.Hdd, Is.Null);
    }

    [TestCase("""{"name":"x","interfaces":{"wan":"eth0","vpn":"wg0"}}""", "interfaces.lan: missing")]
    [TestCase("""{"name":"x","interfaces":{"wan":"eth0 1","lan":"eth1","vpn":"wg0"}}""", "interfaces.wan: 'eth0 1' is not a Linux interface name")]
    [TestCase("""{"name":"x","interfaces":{"wan":"eth0","lan":"eth1","vpn":"wg0"},"hdd":{"mountPoint":"hdd"}}""", "hdd.mountPoint")]
    [TestCase("""{"interfaces":{"wan":"eth0","lan":"eth1","vpn":"wg0"}}""", "name: missing")]
    public void Incomplete_board_description_names_the_file_and_field(string json, string expected)
    {
        var file = Path.Combine(_dir, "board.json");
        File.WriteAllText(file, json);
        var e = Assert.Throws<BoardDescriptionException>(() => BoardDescription.Load(file));
        Assert.That(e!.Message, Does.StartWith(file + ": ").And.Contain(expected));
    }

    [Test]
    public async Task Runner_finds_fake_tools_first_on_its_path_and_captures_output()
    {
        FakeTool(Path.Combine(_dir, "bin"), "nft", """echo "fake nft $*"; echo "to stderr" >&2; exit 3""");
        var result = await _runner.RunAsync(new CommandLine("nft", "-c", "-f", "x y"), null, CancellationToken.None);
        Assert.That(result.ExitCode, Is.EqualTo(3));
        Assert.That(result.Output, Is.EqualTo("fake nft -c -f x y\n"));
        Assert.That(result.Error, Is.EqualTo("to stderr\n"));
        var e = Assert.Throws<CommandFailedException>(() => result.EnsureSuccess("firewall check"));
        Assert.That(e!.Message, Is.EqualTo("firewall check: `nft -c -f 'x y'` exited with 3: to stderr"));
    }

    [Test]
    public void Runner_names_the_path_when_a_tool_is_missing()
    {
        var e = Assert.ThrowsAsync<CommandException>(() => _runner.RunAsync(new CommandLine("no-such-tool-xyz"), null, CancellationToken.None));
        Assert.That(e!.Message, Does.Contain("no-such-tool-xyz not found on PATH").And.Contain(Path.Combine(_dir, "bin")));
    }

    [Test]
    public async Task Runner_caps_captured_output()
    {
        FakeTool(Path.Combine(_dir, "bin"), "chatty", "head -c 100000 /dev/zero | tr '\\0' x");
        var result = await _runner.RunAsync(new CommandLine("chatty"), new CommandOptions { OutputLimit = 1000 }, CancellationToken.None);
        Assert.That(result.Succeeded, Is.True);
        Assert.That(result.Output, Has.Length.EqualTo(1000));
        Assert.That(result.Truncated, Is.True);
    }

    [Test]
    public async Task Timeout_kills_the_whole_process_group()
    {
        var pidFile = Path.Combine(_dir, "child.pid");
        FakeTool(Path.Combine(_dir, "bin"), "hang", $"sleep 300 & echo $! > {pidFile}; wait");
        // the timeout runs on a fake clock moved only once the script has written its child's pid: however busy the
        // machine, the child exists when the timeout fires
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UnixEpoch);
        var runner = new ProcessCommandRunner([Path.Combine(_dir, "bin"), "/usr/sbin", "/usr/bin", "/sbin", "/bin"], time);
        var run = runner.RunAsync(new CommandLine("hang"), new CommandOptions { Timeout = TimeSpan.FromSeconds(5) }, CancellationToken.None);
        await WaitForPidFileAsync(pidFile);
        for (var i = 0; i < 600 && !run.IsCompleted; i++)
        {
            time.Advance(TimeSpan.FromSeconds(1));
            await Task.Delay(50);
        }
        var e = Assert.ThrowsAsync<CommandException>(() => run);
        Assert.That(e!.Message, Does.Contain("did not finish within 5 s"));
        var child = int.Parse((await File.ReadAllTextAsync(pidFile)).Trim(), System.Globalization.CultureInfo.InvariantCulture);
        await WaitGoneAsync(child);
    }

    [Test]
    public async Task Cancellation_kills_the_process_group_and_stopping_a_daemon_too()
    {
        var pidFile = Path.Combine(_dir, "child.pid");
        FakeTool(Path.Combine(_dir, "bin"), "hang", $"sleep 300 & echo $! > {pidFile}; wait");
        using var cts = new CancellationTokenSource();
        var run = _runner.RunAsync(new CommandLine("hang"), null, cts.Token);
        await WaitForPidFileAsync(pidFile); // cancelled once the script has started its child, not on a guess of when
        await cts.CancelAsync();
        Assert.CatchAsync<OperationCanceledException>(() => run.WaitAsync(TimeSpan.FromSeconds(60)));
        await WaitGoneAsync(int.Parse((await File.ReadAllTextAsync(pidFile)).Trim(), System.Globalization.CultureInfo.InvariantCulture));

        File.Delete(pidFile);
        await using var daemon = _runner.Start(new CommandLine("hang"), null);
        while (!File.Exists(pidFile) || (await File.ReadAllTextAsync(pidFile)).Trim().Length == 0) { await Task.Delay(20); }
        var child = int.Parse((await File.ReadAllTextAsync(pidFile)).Trim(), System.Globalization.CultureInfo.InvariantCulture);
        await daemon.StopAsync(TimeSpan.FromSeconds(2), CancellationToken.None);
        Assert.That(daemon.Exited.IsCompleted, Is.True);
        await WaitGoneAsync(child);
    }

    private static async Task WaitForPidFileAsync(string pidFile)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while ((!File.Exists(pidFile) || !(await File.ReadAllTextAsync(pidFile)).EndsWith('\n')) && DateTime.UtcNow < deadline) { await Task.Delay(20); }
        Assert.That(File.Exists(pidFile), Is.True, "the script wrote its child's pid");
    }

    private static async Task WaitGoneAsync(int pid)
    {
        for (var i = 0; i < 600 && IsAlive(pid); i++) { await Task.Delay(50); }
        Assert.That(IsAlive(pid), Is.False, $"process {pid} spawned by the command is still alive");
    }

    /// <summary>Alive and not a zombie waiting for its parent.</summary>
    private static bool IsAlive(int pid)
    {
        var stat = $"/proc/{pid}/stat";
        if (!File.Exists(stat)) { return false; }
        try
        {
            var text = File.ReadAllText(stat);
            return text[(text.LastIndexOf(')') + 2)] != 'Z';
        }
        catch (IOException)
        {
            return false;
        }
    }
}
