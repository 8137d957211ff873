using System.Diagnostics;
using System.Text.RegularExpressions;
using Tsunagu.UnitTests.Hal;

namespace Tsunagu.UnitTests.Image;

/// <summary>
/// The consoles of the firmware image: a production build (image/image.mk) runs no shell on any console and its
/// boot program ignores tsunagu.break; the lab's debug build (DEBUG_SHELL=1) has the root shell on ttyS1 that the
/// QEMU tests use, and the break shell. Builds the image's configuration files (`make -f image/image.mk config`),
/// the same files the OS images are made of.
/// </summary>
public partial class ImageConsoleTests
{
    private string _out = "";

    [SetUp]
    public void CreateOutput() => _out = Directory.CreateTempSubdirectory("tsunagu-image-config-").FullName;

    [TearDown]
    public void RemoveOutput() => Directory.Delete(_out, recursive: true);

    [Test]
    public void Production_image_runs_no_shell_on_any_console()
    {
        var (inittab, init) = BuildConfig(debugShell: false);
        var entries = InittabEntries(inittab);
        Assert.That(entries, Has.Some.Matches<InittabEntry>(e => e.Process == "/usr/lib/tsunagu/tsunagud-run"), "the supervisor still runs");
        Assert.That(entries.Where(e => IsShell(e.Process)).Select(e => e.Line), Is.Empty, "inittab starts a shell without authentication");
        Assert.That(init.Split('\n').Where(IsInteractiveShell), Is.Empty, "the boot program starts a shell");
        Assert.That(init, Does.Not.Contain("tsunagu.break=1)"), "the boot program honours tsunagu.break");
    }

    [Test]
    public void Debug_image_has_the_lab_shell_on_ttyS1_and_the_break_shell()
    {
        var (inittab, init) = BuildConfig(debugShell: true);
        var shells = InittabEntries(inittab).Where(e => IsShell(e.Process)).ToList();
        Assert.That(shells.Select(e => (e.Id, e.Action)), Is.EqualTo(new[] { ("ttyS1", "respawn") }), "one shell, on the second serial port");
        Assert.That(init.Split('\n').Where(IsInteractiveShell), Has.Exactly(1).Items, "the break shell");
        Assert.That(init, Does.Contain("tsunagu.break=1) BREAK=1"));
    }

    [Test]
    public void Debug_shell_option_takes_only_1_or_nothing()
    {
        var (code, output) = Make("DEBUG_SHELL=yes", $"OUT={_out}/x", "config");
        Assert.That(code, Is.Not.Zero);
        Assert.That(output, Does.Contain("DEBUG_SHELL='yes'"));
        Assert.That(Directory.Exists(Path.Combine(_out, "x")), Is.False, "nothing is built");
    }

    private sealed record InittabEntry(string Id, string Action, string Process, string Line);

    /// <summary>busybox inittab: id:runlevels:action:process, '#' comments.</summary>
    private static List<InittabEntry> InittabEntries(string text) =>
        text.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')).Select(l =>
        {
            var parts = l.Split(':', 4);
            Assert.That(parts, Has.Length.EqualTo(4), $"inittab line '{l}'");
            return new InittabEntry(parts[0], parts[2], parts[3].Trim(), l);
        }).ToList();

    /// <summary>A process that gives whoever is on the terminal a shell: sh/ash/bash/hush, a login shell, getty -n with a shell.</summary>
    private static bool IsShell(string process)
    {
        var words = process.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var program = Path.GetFileName(words[0].TrimStart('-'));
        return program is "sh" or "ash" or "bash" or "hush" or "cttyhack"
               || (program is "getty" && words.Contains("-n") && words.Contains("-l"))
               || (program is "login" && words.Contains("-f"));
    }

    /// <summary>A shell-script line that starts an interactive shell (no script argument).</summary>
    private static bool IsInteractiveShell(string line) => InteractiveShell().IsMatch(line.Split('#')[0]);

    [GeneratedRegex(@"(^|[;&|]|\bsetsid|\bexec|\bcttyhack)\s*(/bin/)?(sh|ash|bash)(\s+-[il]+)?\s*$|\bcttyhack\b")]
    private static partial Regex InteractiveShell();

    private (string Inittab, string Init) BuildConfig(bool debugShell)
    {
        var (code, output) = Make(debugShell ? "DEBUG_SHELL=1" : "DEBUG_SHELL=", $"OUT={_out}", "config");
        Assert.That(code, Is.Zero, output);
        return (File.ReadAllText(Path.Combine(_out, "stage", "config", "rootfs", "etc", "inittab")),
            File.ReadAllText(Path.Combine(_out, "stage", "config", "initramfs", "init")));
    }

    private static (int Code, string Output) Make(params string[] args)
    {
        var start = new ProcessStartInfo("make", ["--no-print-directory", "-s", "-f", "image/image.mk", "BOARD=qemu-x86_64", .. args])
        {
            WorkingDirectory = BoardAndRunnerTests.RepositoryRoot(), RedirectStandardOutput = true, RedirectStandardError = true,
        };
        using var make = Process.Start(start)!;
        var stdout = make.StandardOutput.ReadToEndAsync();
        var stderr = make.StandardError.ReadToEnd();
        make.WaitForExit();
        return (make.ExitCode, stdout.Result + stderr);
    }
}
