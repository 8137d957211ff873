using System.Diagnostics;

namespace Tsunagu.SystemTests.Qemu;

/// <summary>
/// What the lab's guests refuse before they start anything: a URL that cannot go into the LAN PC's shell command, and a
/// socket link of qemu-run.sh that is not on loopback. No guest boots.
/// </summary>
[TestFixture]
public sealed class LabInputTests
{
    [TestCase("http://www.lab.example/")]
    [TestCase("http://www.lab.example")]
    [TestCase("http://198.51.100.80:8080/index.html?a=1&b=2")]
    [TestCase("https://www.lab.example/clip.txt")]
    public void A_plain_http_or_https_url_is_fetchable(string url) => Assert.DoesNotThrow(() => LanPc.RequireFetchableUrl(url));

    [TestCase("http://x/'; reboot -f; echo '")]
    [TestCase("http://x/a b")]
    [TestCase("http://x/\n")]
    [TestCase("http://x/\treboot")]
    [TestCase("http://x;reboot/")]
    [TestCase("http://$(reboot)/")]
    [TestCase("ftp://www.lab.example/")]
    [TestCase("httpss://www.lab.example/")]
    [TestCase("www.lab.example")]
    [TestCase("")]
    public void A_url_that_could_break_out_of_the_shell_command_is_refused(string url) =>
        Assert.That(() => LanPc.RequireFetchableUrl(url), Throws.ArgumentException.With.Message.Contains("not a URL"));

    [TestCase("198.51.100.80; reboot", "www.lab.example", "address")]
    [TestCase("198.051.100.80", "www.lab.example", "address")]
    [TestCase("::1", "www.lab.example", "address")]
    [TestCase("198.51.100.80", "www.lab.example; reboot", "name")]
    [TestCase("198.51.100.80", "-servername", "name")]
    [TestCase("198.51.100.80", "", "name")]
    public void A_tls_peer_query_that_is_not_an_address_and_a_name_is_refused(string address, string name, string argument) =>
        Assert.That(() => LanPc.RequireTlsPeer(address, name), Throws.ArgumentException.With.Property("ParamName").EqualTo(argument));

    [Test]
    public void An_address_and_a_name_make_a_tls_peer_query() => Assert.DoesNotThrow(() => LanPc.RequireTlsPeer("198.51.100.80", "www.lab.example"));

    [TestCase("52:54:00:1A:00:02")]
    [TestCase("52:54:00:1a:00")]
    [TestCase("52:54:00:1a:00:02,id=x")]
    [TestCase("")]
    public void A_pc_mac_that_is_not_six_hex_pairs_is_refused(string mac) =>
        Assert.That(() => LanPc.RequireMac(mac), Throws.ArgumentException.With.Message.Contains("not a MAC address"));

    [TestCase("WAN_SOCKET", "10.0.0.1:4000")]
    [TestCase("WAN_SOCKET", "localhost:4000")]
    [TestCase("LAN_SOCKET", "0.0.0.0:4000")]
    [TestCase("LAN_SOCKET", "127.0.0.1")]
    [TestCase("LAN_SOCKET", "127.0.0.1:4000,listen=0.0.0.0:5000")]
    [TestCase("LAN_SOCKET", "192.168.1.2:4000")]
    [TestCase("LAN_SOCKET", "127.0.0.1:4000 10.0.0.1:4001", "10.0.0.1:4001")]
    [TestCase("LAN_SOCKET", "127.0.0.1:4000 127.0.0.1:4001\n0.0.0.0:4002", "0.0.0.0:4002")]
    public async Task Qemu_run_refuses_a_socket_link_off_loopback(string variable, string value, string? offending = null)
    {
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(QemuLab.RepositoryRoot, "tests", "Tsunagu.SystemTests", "Qemu", "qemu-run.sh"));
        // no disk: a script that got past the check would stop at the missing disk with another message
        start.Environment["DISK"] = Path.Combine(Path.GetTempPath(), $"no-disk-{Guid.NewGuid():N}.img");
        start.Environment[variable] = value;
        using var script = Process.Start(start)!;
        var stdout = script.StandardOutput.ReadToEndAsync();
        var stderr = await script.StandardError.ReadToEndAsync();
        await script.WaitForExitAsync();
        Assert.That((script.ExitCode, await stdout), Is.EqualTo((2, "")));
        Assert.That(stderr, Does.Contain($"qemu-run: {variable}='{offending ?? value}' is not a loopback address"));
    }

    [Test]
    public async Task Qemu_run_refuses_more_lan_links_than_its_hub_takes()
    {
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(QemuLab.RepositoryRoot, "tests", "Tsunagu.SystemTests", "Qemu", "qemu-run.sh"));
        start.Environment["DISK"] = Path.Combine(Path.GetTempPath(), $"no-disk-{Guid.NewGuid():N}.img");
        start.Environment["LAN_SOCKET"] = string.Join(' ', Enumerable.Range(1, 9).Select(i => $"127.0.0.1:{40000 + i}"));
        using var script = Process.Start(start)!;
        var stdout = script.StandardOutput.ReadToEndAsync();
        var stderr = await script.StandardError.ReadToEndAsync();
        await script.WaitForExitAsync();
        Assert.That((script.ExitCode, await stdout), Is.EqualTo((2, "")));
        Assert.That(stderr, Does.Contain("qemu-run: LAN_SOCKET names 9 links; at most 8"));
    }

    [Test]
    public async Task Qemu_run_takes_a_loopback_socket_link_and_goes_on_to_its_other_checks()
    {
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(QemuLab.RepositoryRoot, "tests", "Tsunagu.SystemTests", "Qemu", "qemu-run.sh"));
        var disk = Path.Combine(Path.GetTempPath(), $"no-disk-{Guid.NewGuid():N}.img");
        start.Environment["DISK"] = disk;
        start.Environment["WAN_SOCKET"] = "127.0.0.1:40001";
        start.Environment["LAN_SOCKET"] = "127.0.0.2:40002 127.0.0.3:40003";
        using var script = Process.Start(start)!;
        var stdout = script.StandardOutput.ReadToEndAsync();
        var stderr = await script.StandardError.ReadToEndAsync();
        await script.WaitForExitAsync();
        await stdout;
        Assert.That(script.ExitCode, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain($"qemu-run: {disk} is missing").And.Not.Contain("loopback"));
    }
}
