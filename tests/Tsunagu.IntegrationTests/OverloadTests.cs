using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Tsunagu.Cli.Fleet;
using Tsunagu.Firmware.Supervision;
using Tsunagu.Hal;
using Tsunagu.Protocol;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// A saturated server answers 503/429 with Retry-After at once; units wait at least that long (capped full-jitter
/// backoff above it), and a reconnect storm against a tiny server ends with every unit Ready after few attempts.
/// </summary>
[NonParallelizable]
public class OverloadTests
{
    private static readonly SupervisorOptions StormOptions = TestServer.FastOptions with
    {
        BackoffBase = TimeSpan.FromMilliseconds(200),
        BackoffCap = TimeSpan.FromSeconds(8),
    };

    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    [TearDown]
    public void TearDown() => TestServer.Configure.Value = null;

    private static async Task<(List<FleetUnit> Units, FleetMeter Meter)> AddMeteredUnitsAsync(TestServer server, int count)
    {
        var meter = new FleetMeter();
        var csv = new StringBuilder("mac,serial,isp_method,isp_username,isp_password\n");
        var units = new List<FleetUnit>();
        for (var i = 1; i <= count; i++)
        {
            var identity = server.Identity(i);
            csv.Append(CultureInfo.InvariantCulture, $"{identity.Mac},{identity.Serial},pppoe,u{i}@isp.example,p{i}\n");
            units.Add(await server.Fleet.AddUnitAsync(identity, CancellationToken.None, u => new MeteredNetwork(u.Hardware.Wan, meter, u.Meter, null)));
        }
        using var client = server.Operator();
        await client.SendAsync(HttpMethod.Post, Routes.Units + "/bulk", new StringContent(csv.ToString(), Encoding.UTF8, "text/csv"), CancellationToken.None);
        return (units, meter);
    }

    /// <summary>Every request of one unit: when it was sent, when it was answered, with what status (null: no answer).</summary>
    private sealed class TracingNetwork(INetworkAccess link, ConcurrentQueue<(long Sent, long Answered, int? Status, TimeSpan? RetryAfter)> trace) : INetworkAccess
    {
        public HttpMessageHandler WrapHandler(HttpMessageHandler inner) => link.WrapHandler(new Tracer(trace) { InnerHandler = inner });
        public void EnsureRoute() => link.EnsureRoute();

        private sealed class Tracer(ConcurrentQueue<(long, long, int?, TimeSpan?)> trace) : DelegatingHandler
        {
            protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
            {
                var sent = Stopwatch.GetTimestamp();
                try
                {
                    var response = await base.SendAsync(request, cancellationToken);
                    trace.Enqueue((sent, Stopwatch.GetTimestamp(), (int)response.StatusCode, response.Headers.RetryAfter?.Delta));
                    return response;
                }
                catch (HttpRequestException)
                {
                    trace.Enqueue((sent, Stopwatch.GetTimestamp(), null, null));
                    throw;
                }
            }
        }
    }

    [Test]
    public async Task Units_facing_a_saturated_server_get_503_with_retry_after_wait_for_it_and_all_become_ready()
    {
        TestServer.Configure.Value = o => { o.MaxConcurrentRequests = 2; o.RequestQueueLimit = 0; };
        // Saturation is made, not hoped for: once armed, every request that got one of the 2 permits waits behind the
        // gate holding it (this middleware runs after the server's limiter) until the first 503 has been answered
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var armed = 0;
        TestServer.Middleware.Value = async (http, next) =>
        {
            if (Volatile.Read(ref armed) == 1) { await gate.Task.WaitAsync(http.RequestAborted); }
            await next(http);
        };
        await using var server = await TestServer.StartAsync(StormOptions);
        TestServer.Middleware.Value = null;
        var traces = new Dictionary<string, ConcurrentQueue<(long Sent, long Answered, int? Status, TimeSpan? RetryAfter)>>();
        var csv = new StringBuilder("mac,serial,isp_method,isp_username,isp_password\n");
        var units = new List<FleetUnit>();
        for (var i = 1; i <= 40; i++)
        {
            var identity = server.Identity(i);
            csv.Append(CultureInfo.InvariantCulture, $"{identity.Mac},{identity.Serial},pppoe,u{i}@isp.example,p{i}\n");
            var trace = traces[identity.Mac] = new();
            units.Add(await server.Fleet.AddUnitAsync(identity, CancellationToken.None, u => new TracingNetwork(u.Hardware.Wan, trace)));
        }
        using (var client = server.Operator())
        {
            await client.SendAsync(HttpMethod.Post, Routes.Units + "/bulk", new StringContent(csv.ToString(), Encoding.UTF8, "text/csv"), CancellationToken.None);
        }
        Volatile.Write(ref armed, 1);
        server.Fleet.StartAll();
        // answered while both permits are held behind the gate: a 503 comes at once, not after waiting for a permit
        await server.WaitForAsync(() => traces.Values.Any(t => t.Any(r => r.Status == 503)), "a 503 while both permits are held", TimeSpan.FromSeconds(60));
        gate.SetResult();
        await server.WaitForAsync(() => units.AllAsync(async u => (await server.Store.Units.GetUnitAsync(u.Mac))?.State == "Ready" && traces[u.Mac].Any(t => t.Status == 200)),
            "every unit Ready despite the overload", TimeSpan.FromSeconds(120));

        var all = traces.Values.SelectMany(t => t).ToList();
        var busy = all.Where(t => t.Status == 503).ToList();
        Assert.That(busy, Is.Not.Empty, "the server was saturated: it answered 503");
        Assert.That(all.Where(t => t.Status is null), Is.Empty, "no request went unanswered or timed out");
        Assert.That(busy.All(t => t.RetryAfter >= TimeSpan.FromSeconds(1)), Is.True, "every 503 carries Retry-After");
        TestContext.Out.WriteLine($"{busy.Count} answers 503, the slowest after {busy.Max(t => t.Answered - t.Sent) * 1000.0 / Stopwatch.Frequency:0} ms");
        // honoured: after a 503, the unit sends nothing before Retry-After has passed
        foreach (var (mac, trace) in traces)
        {
            var requests = trace.OrderBy(t => t.Sent).ToList();
            for (var k = 0; k < requests.Count - 1; k++)
            {
                if (requests[k].Status != 503) { continue; }
                var waited = TimeSpan.FromSeconds((requests[k + 1].Sent - requests[k].Answered) * 1.0 / Stopwatch.Frequency);
                Assert.That(waited, Is.GreaterThanOrEqualTo(requests[k].RetryAfter!.Value - TimeSpan.FromMilliseconds(20)),
                    $"{mac}: request {k + 1} came {waited.TotalMilliseconds:0} ms after a 503 with Retry-After {requests[k].RetryAfter}");
            }
        }
        foreach (var unit in units)
        {
            Assert.That(server.ChangesOf(unit.Mac).Where(c => c.Outcome == Outcome.Retry).All(r => r.Delay <= StormOptions.BackoffCap), Is.True,
                $"{unit.Mac}: delays are capped");
        }
    }

    [Test]
    public async Task A_reconnect_storm_after_a_server_restart_ends_with_every_unit_ready_after_few_attempts()
    {
        const int count = 200;
        await using var server = await TestServer.StartAsync(StormOptions);
        var (units, meter) = await AddMeteredUnitsAsync(server, count);
        server.Fleet.StartAll();
        await server.WaitForAsync(() => units.All(u => u.Meter.ReadyAcks >= 1), "the fleet's first boot", TimeSpan.FromSeconds(180));

        // mass power cut: every unit and the server go down; the server comes back small, every unit at once
        await Task.WhenAll(units.Select(u => server.Fleet.PowerOffAsync(u)));
        var port = new Uri(server.Url).Port;
        await server.App.StopAsync();
        TestServer.Configure.Value = o => { o.MaxConcurrentRequests = 4; o.RequestQueueLimit = 16; };
        var again = await TestServer.BuildServerAsync(server.Root, port);
        // Saturation is made, not hoped for: until the gate opens, every request that got one of the 4 permits waits
        // here holding it (this middleware runs after the server's limiter), so of the 200 units' first requests at
        // most 4 + 16 are taken and the rest are turned away with 503, however fast or loaded the machine is.
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        again.Use(async (http, next) =>
        {
            await gate.Task.WaitAsync(http.RequestAborted);
            await next(http);
        });
        await again.StartAsync();
        try
        {
            meter.Reset();
            var before = units.Select(u => (u.Meter.Requests, Changes: server.ChangesOf(u.Mac).Count)).ToArray();
            var clock = System.Diagnostics.Stopwatch.StartNew();
            server.Fleet.StartAll();
            await server.WaitForAsync(() => meter.Errors.TryGetValue("503", out var turnedAway) && turnedAway > 0, "the first 503 of the storm", TimeSpan.FromSeconds(60));
            gate.SetResult();
            await server.WaitForAsync(() => units.All(u => u.Meter.ReadyAcks >= 2), "every unit Ready after the storm", TimeSpan.FromSeconds(120));
            var elapsed = clock.Elapsed;

            var retries = units.Select((u, i) => (long)server.ChangesOf(u.Mac).Skip(before[i].Changes).Count(ch => ch.Outcome == Outcome.Retry)).ToArray();
            var requests = units.Select((u, i) => u.Meter.Requests - before[i].Requests).ToArray();
            var busy = meter.Errors.TryGetValue("503", out var b) ? b : 0;
            TestContext.Out.WriteLine($"storm of {count}: {elapsed.TotalSeconds:0.0} s, 503s {busy}, requests/unit {requests.Average():0.00}, " +
                                      $"attempts/unit {1 + retries.Average():0.00} (max {1 + retries.Max()}), errors {string.Join(", ", meter.Errors)}");
            Assert.That(busy, Is.GreaterThan(0), "the storm saturated the small server (made certain by the gate)");
            Assert.That(meter.Errors.Keys.Where(k => k.StartsWith("transport", StringComparison.Ordinal)), Is.Empty, "nothing timed out");
            Assert.That(1 + retries.Average(), Is.LessThanOrEqualTo(5.0), "attempts per unit stay a small multiple of one (6.2 before Retry-After got jitter added)");
            Assert.That(requests.Average(), Is.LessThanOrEqualTo(5 * 3.0), "requests per unit: a clean reconnect is 5 requests");
        }
        finally
        {
            await server.Fleet.DisposeAsync();
            await again.StopAsync();
            await again.DisposeAsync();
        }
    }
}
