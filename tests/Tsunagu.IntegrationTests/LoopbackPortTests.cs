using System.Net;
using System.Net.Sockets;
using Tsunagu.Cli.Fleet;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The ports tests give the services they start (<see cref="TestServer.FreePort"/>): never one a client connection's source
/// port can take between the choice and the service's bind (the LAN PC's QEMU once found its port taken that way).
/// </summary>
public class LoopbackPortTests
{
    [Test]
    public void A_port_for_a_service_is_never_in_the_range_client_connections_take_their_source_ports_from()
    {
        var (low, high) = LoopbackPorts.EphemeralRange();
        var ports = Enumerable.Range(0, 200).Select(_ => TestServer.FreePort()).ToList();

        Assert.That(ports.Where(p => p >= low && p <= high), Is.Empty, $"ports in the ephemeral range {low}-{high}");
        Assert.That(ports, Is.Unique, "a process never gets the same port twice");
        Assert.That(ports.All(p => p >= LoopbackPorts.Lowest), Is.True);
    }

    [Test]
    public void A_port_something_listens_on_is_not_free()
    {
        var port = TestServer.FreePort();
        Assert.That(LoopbackPorts.Free(port), Is.True);
        using var holder = new TcpListener(IPAddress.Loopback, port);
        holder.Start();
        Assert.That(LoopbackPorts.Free(port), Is.False);
    }

    [Test]
    public void A_port_another_process_holds_the_lock_of_is_not_given()
    {
        // another process's claim, made deterministic: a child (one process: the shell that locks becomes the sleep) holds the
        // lock file of the port this process would try next; flock(1) takes the same advisory lock the claim does
        var held = LoopbackPorts.Candidate();
        while (!LoopbackPorts.Free(held)) { LoopbackPorts.Next(); held = LoopbackPorts.Candidate(); }
        Directory.CreateDirectory(LoopbackPorts.LockDirectory);
        var file = Path.Combine(LoopbackPorts.LockDirectory, $"{held}.lock");
        using var child = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("sh", ["-c", "exec 9>\"$0\"; flock -x 9; echo locked; exec sleep 60", file]) { RedirectStandardOutput = true })!;
        try
        {
            Assert.That(child.StandardOutput.ReadLine(), Is.EqualTo("locked"));
            Assert.That(LoopbackPorts.Claim(held), Is.Null, "the other process's lock is seen");
            Assert.That(LoopbackPorts.Candidate(), Is.EqualTo(held), "the port the next call tries first");
            var given = LoopbackPorts.Next();
            Assert.That(given, Is.Not.EqualTo(held), "passed over: another process holds it");
        }
        finally
        {
            child.Kill();
            child.WaitForExit();
        }
        using var claim = LoopbackPorts.Claim(held);
        Assert.That(claim, Is.Not.Null, "free again once the other process ended");
    }

    [TestCase("32768\t60999\n", 32768, 60999)]
    [TestCase("1024 65535", 1024, 65535)]
    public void The_kernels_range_is_read(string text, int low, int high) =>
        Assert.That(LoopbackPorts.ParseRange(text), Is.EqualTo((low, high)));

    [TestCase("")]
    [TestCase("32768")]
    [TestCase("60999 32768")]
    [TestCase("0 100")]
    [TestCase("1 70000")]
    [TestCase("-1 100")]
    [TestCase("a b")]
    [TestCase("1 2 3")]
    public void A_range_that_is_not_two_ports_low_first_is_refused(string text) =>
        Assert.Throws<FormatException>(() => LoopbackPorts.ParseRange(text));

    [Test]
    public void The_pool_is_below_the_range_else_above_it_else_refused()
    {
        Assert.That(LoopbackPorts.Pool((32768, 60999)), Is.EqualTo((20000, 32767)));
        Assert.That(LoopbackPorts.Pool((10000, 50000)), Is.EqualTo((50001, 65535)), "a range starting low leaves the ports above it");
        Assert.That(LoopbackPorts.Pool((1024, 10000)), Is.EqualTo((20000, 65535)));
        var refused = Assert.Throws<InvalidOperationException>(() => LoopbackPorts.Pool((1024, 65535)));
        Assert.That(refused!.Message, Does.Contain("1024-65535").And.Contain("ip_local_port_range"));
    }
}
