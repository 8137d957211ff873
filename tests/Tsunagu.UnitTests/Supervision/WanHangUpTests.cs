using Tsunagu.Firmware.Net;
using Tsunagu.Firmware.Supervision;
using Tsunagu.Hal;
using Tsunagu.Hal.Simulated;
using Tsunagu.Protocol;

namespace Tsunagu.UnitTests.Supervision;

/// <summary>
/// What the supervisor does to the WAN session around a restart and a change of session: the update's restart hangs the
/// link up first (the ISP lab's test shows the access concentrator freeing the session at once), and a hang-up closes the
/// unit client's pooled connections (UnitClientTests shows why).
/// </summary>
public class WanHangUpTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = Path.Combine(Path.GetTempPath(), "tsunagu-hangup-" + Guid.NewGuid().ToString("N"));

    [TearDown]
    public void TearDown()
    {
        if (Directory.Exists(_dir)) { Directory.Delete(_dir, recursive: true); }
    }

    /// <summary>The unit's network as it is: the client's own socket handler (its pool) is used.</summary>
    private sealed class Direct : INetworkAccess
    {
        public HttpMessageHandler WrapHandler(HttpMessageHandler inner) => inner;

        public void EnsureRoute() { }
    }

    /// <summary>A WAN link that is up and whose hang-up fails (pppd cannot be stopped, say) with <c>failure</c>.</summary>
    private sealed class FailingHangUp(Func<CancellationToken, Exception>? failure = null) : IWanLink
    {
        public int Downs { get; private set; }
        public bool IsUp => true;
        public LinkRole? Role => LinkRole.Main;
        public string? Address => "10.64.0.10";
        public Task LinkLost { get; } = new TaskCompletionSource().Task;

        public Task UpAsync(LinkRole role, WanAccount account, CancellationToken cancellationToken) => Task.CompletedTask;

        public Task DownAsync(CancellationToken cancellationToken)
        {
            Downs++;
            throw failure?.Invoke(cancellationToken) ?? new HalException("ppp0: pppd did not stop", isTransient: true);
        }
    }

    private (SimulatedUnit Unit, SupervisorContext Context, List<string> Log) Context(Func<UnitHardware, UnitHardware>? change = null)
    {
        var prom = Path.Combine(_dir, "prom");
        DirectoryPromPartition.Build(prom, "os 1", new Dictionary<string, string> { ["vcp"] = "1.0.0" });
        var unit = new SimulatedUnit(Path.Combine(_dir, "unit"), prom);
        var log = new List<string>();
        var context = new SupervisorContext(change?.Invoke(unit.Hardware) ?? unit.Hardware, new SupervisorOptions(), TimeProvider.System, new Random(1), log.Add);
        return (unit, context, log);
    }

    [Test]
    public async Task Before_a_restart_an_up_link_is_hung_up_and_the_client_connections_dropped()
    {
        var (unit, ctx, log) = Context();
        using var client = new UnitClient(new Direct(), ["pin"]);
        ctx.Client = client;
        await unit.Wan.UpAsync(LinkRole.Main, new WanAccount("pppoe", "u", "p"), CancellationToken.None);
        Assert.That(unit.Wan.IsUp, Is.True, "precondition: the session is up");

        await ctx.HangUpBeforeRestartAsync(CancellationToken.None);
        Assert.That(unit.Wan.IsUp, Is.False, "hung up before the restart");
        Assert.That(client.ConnectionsDropped, Is.EqualTo(1));
        Assert.That(log, Is.Empty, "nothing went wrong");

        // a link that is down already: nothing to hang up, nothing dropped again
        await ctx.HangUpBeforeRestartAsync(CancellationToken.None);
        Assert.That(client.ConnectionsDropped, Is.EqualTo(1));
    }

    [Test]
    public async Task A_hang_up_that_fails_is_logged_and_the_restart_goes_on()
    {
        var wan = new FailingHangUp();
        var (_, ctx, log) = Context(h => h with { Wan = wan });
        await ctx.HangUpBeforeRestartAsync(CancellationToken.None);
        Assert.That(wan.Downs, Is.EqualTo(1), "the hang-up was tried once");
        Assert.That(log, Has.Count.EqualTo(1).And.Some.Contains("hang-up before the restart failed").And.Some.Contains("pppd did not stop"));
    }

    private static IEnumerable<TestCaseData> NonHalFailures()
    {
        yield return new TestCaseData(new Func<CancellationToken, Exception>(_ => new UnauthorizedAccessException("/var/run/ppp-wan.pid: permission denied"))).SetName("{m}(UnauthorizedAccessException)");
        yield return new TestCaseData(new Func<CancellationToken, Exception>(_ => new IOException("/proc/412/comm: I/O error"))).SetName("{m}(IOException)");
        yield return new TestCaseData(new Func<CancellationToken, Exception>(_ => new InvalidOperationException("pppd state"))).SetName("{m}(InvalidOperationException)");
        // a time-out of the link's own, not the caller's cancellation
        yield return new TestCaseData(new Func<CancellationToken, Exception>(_ => new OperationCanceledException("pppd stop timed out", new CancellationToken(true)))).SetName("{m}(own time-out)");
    }

    [TestCaseSource(nameof(NonHalFailures))]
    public async Task A_hang_up_that_fails_with_any_error_is_logged_and_the_restart_goes_on(Func<CancellationToken, Exception> failure)
    {
        var wan = new FailingHangUp(failure);
        var (_, ctx, log) = Context(h => h with { Wan = wan });
        using var client = new UnitClient(new Direct(), ["pin"]);
        ctx.Client = client;
        Assert.That(() => ctx.HangUpBeforeRestartAsync(CancellationToken.None), Throws.Nothing, "the restart that follows is not stopped");
        Assert.That(wan.Downs, Is.EqualTo(1), "the hang-up was tried once");
        Assert.That(log, Has.Count.EqualTo(1).And.Some.Contains("hang-up before the restart failed").And.Some.Contains(failure(default).Message));
        Assert.That(client.ConnectionsDropped, Is.Zero, "the session did not end");
    }

    [Test]
    public void A_hang_up_cancelled_by_its_caller_is_not_swallowed()
    {
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        var wan = new FailingHangUp(ct => new OperationCanceledException(ct));
        var (_, ctx, log) = Context(h => h with { Wan = wan });
        Assert.That(() => ctx.HangUpBeforeRestartAsync(cts.Token), Throws.InstanceOf<OperationCanceledException>());
        Assert.That(log, Is.Empty, "a cancellation is not a failure to log");
    }

    [Test]
    public void A_change_of_wan_session_without_a_client_yet_is_harmless()
    {
        var (_, ctx, _) = Context();
        Assert.That(ctx.WanSessionEnded, Throws.Nothing, "Boot creates the client; a link change before it has nothing to drop");
    }
}
