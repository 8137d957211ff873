using System.Diagnostics;

namespace Tsunagu.SystemTests.Qemu;

/// <summary>
/// A guest of the ISP lab other than the unit (the access network guest, the LAN PC): QEMU started by its run script
/// beside this file, its console in <see cref="ConsolePath"/>, a root shell on its second serial port.
/// </summary>
public abstract class LabGuest : IAsyncDisposable
{
    private readonly Process _qemu;

    /// <summary>Starts <paramref name="script"/> (beside this file) with <paramref name="environment"/>; its output goes to the test's log.</summary>
    /// <param name="label">How failures and the script's output name the guest ("ISP guest", "LAN PC").</param>
    protected LabGuest(string script, IReadOnlyDictionary<string, string> environment, string directory, string label)
    {
        Directory = directory;
        Label = label;
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(QemuLab.RepositoryRoot, "tests", "Tsunagu.SystemTests", "Qemu", script));
        foreach (var (name, value) in environment) { start.Environment[name] = value; }
        start.Environment["RUN_DIR"] = directory;
        start.Environment["CONSOLE"] = "file";
        _qemu = Process.Start(start) ?? throw new InvalidOperationException($"{script} did not start");
        _qemu.OutputDataReceived += (_, e) => { if (e.Data is not null) { TestContext.Out.WriteLine($"{label} qemu: {e.Data}"); } };
        _qemu.ErrorDataReceived += (_, e) => { if (e.Data is not null) { TestContext.Out.WriteLine($"{label} qemu: {e.Data}"); } };
        _qemu.BeginOutputReadLine();
        _qemu.BeginErrorReadLine();
    }

    /// <summary>Where the guest's files go (console.log, shell.sock).</summary>
    public string Directory { get; }

    public string Label { get; }

    public string ConsolePath => Path.Combine(Directory, "console.log");

    public string Console() => File.Exists(ConsolePath) ? File.ReadAllText(ConsolePath) : "";

    /// <summary>Fails the test (never skips it) when the kernel or the initramfs of a guest is missing from <paramref name="imageDirectory"/>.</summary>
    protected static void RequireImage(string imageDirectory, string makeTarget)
    {
        foreach (var file in new[] { "vmlinuz", "initrd.img" })
        {
            if (!File.Exists(Path.Combine(imageDirectory, file)))
            {
                Assert.Fail($"{Path.Combine(imageDirectory, file)} is missing: run `make {makeTarget}` (make isp-lab-test does)");
            }
        }
    }

    /// <summary>Polls <paramref name="condition"/> until it holds; fails the test with the console when QEMU ends or <paramref name="timeout"/> passes.</summary>
    public async Task WaitAsync(Func<bool> condition, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (_qemu.HasExited) { Assert.Fail($"{Label}: QEMU ended while waiting for {what}\n--- console ---\n{Console()}"); }
            if (DateTime.UtcNow > deadline) { Assert.Fail($"{Label}: no {what} within {timeout.TotalSeconds:0} s\n--- console ---\n{Console()}"); }
            await Task.Delay(250);
        }
    }

    /// <summary>Runs a shell command on the guest's second serial port and returns its output.</summary>
    public Task<string> ShellAsync(string command, TimeSpan? timeout = null) =>
        GuestShell.RunAsync(Path.Combine(Directory, "shell.sock"), command, timeout ?? TimeSpan.FromSeconds(30), Label);

    public async ValueTask DisposeAsync()
    {
        if (!_qemu.HasExited)
        {
            _qemu.Kill(entireProcessTree: true);
            await _qemu.WaitForExitAsync();
        }
        _qemu.Dispose();
        GC.SuppressFinalize(this);
    }
}
