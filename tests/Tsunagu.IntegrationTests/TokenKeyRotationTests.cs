using System.Collections.Concurrent;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Tsunagu.Cli.Fleet;
using Tsunagu.Firmware.Supervision;
using Tsunagu.Protocol;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The operator replaces the server's token key (as after a leak) while a fleet is Ready: every token the units
/// hold is refused. Each unit drops its token, authenticates once after a short backoff and is Ready again; the
/// server counts what each unit sent.
/// </summary>
[NonParallelizable]
public class TokenKeyRotationTests
{
    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    /// <summary>
    /// Every request the server completes, from its own hosting diagnostics (before any middleware, so a request a
    /// limiter or filter refuses is counted too): path, status, and the unit named by its bearer token (null without one).
    /// </summary>
    private sealed class ServerRequests : IObserver<KeyValuePair<string, object?>>, IDisposable
    {
        private const string EndRequest = "Microsoft.AspNetCore.Hosting.EndRequest";
        private IDisposable? _subscription;

        public ConcurrentQueue<(string Path, int Status, string? Unit)> Requests { get; } = new();

        public static ServerRequests Attach(WebApplication app)
        {
            var counter = new ServerRequests();
            counter._subscription = app.Services.GetRequiredService<DiagnosticListener>().Subscribe(counter, name => name == EndRequest);
            return counter;
        }

        public void OnNext(KeyValuePair<string, object?> value)
        {
            if (value.Key != EndRequest || value.Value is null) { return; }
            var type = value.Value.GetType();
            var http = (type.GetProperty("httpContext")?.GetValue(value.Value) ?? type.GetField("httpContext")?.GetValue(value.Value)) as HttpContext
                       ?? throw new InvalidOperationException($"{EndRequest}: no httpContext in {type}");
            Requests.Enqueue((http.Request.Path.Value ?? "", http.Response.StatusCode, Subject(http.Request.Headers.Authorization.ToString())));
        }

        /// <summary>The subject of a bearer token (its claims are readable whether or not its signature is still good).</summary>
        private static string? Subject(string authorization)
        {
            const string scheme = "Bearer ";
            if (!authorization.StartsWith(scheme, StringComparison.Ordinal)) { return null; }
            var body = authorization[scheme.Length..].Split('.')[0];
            using var claims = JsonDocument.Parse(Tsunagu.Protocol.Base64Url.Decode(body));
            return claims.RootElement.GetProperty("sub").GetString();
        }

        public void OnCompleted() { }
        public void OnError(Exception error) { }
        public void Dispose() => _subscription?.Dispose();
    }

    [Test]
    public async Task After_the_token_key_is_replaced_every_unit_authenticates_once_and_is_ready_again_with_few_requests()
    {
        const int count = 6;
        // a forced check after the key change: the refused version check, challenge, session, version check,
        // service configuration, ready report = 6 requests; a unit that loops on its refused token blows through this
        const int boundPerUnit = 8;
        var port = TestServer.FreePort();
        await using var server = await TestServer.StartAsync(port: port);
        var units = await server.AddUnitsAsync(count);
        server.Fleet.StartAll();
        foreach (var unit in units) { await server.WaitReadyAsync(unit); }
        var readyBefore = units.ToDictionary(u => u.Mac, u => server.ChainOf(u.Mac).Count(s => s == StateId.Ready));
        var changesBefore = units.ToDictionary(u => u.Mac, u => server.ChangesOf(u.Mac).Count);

        // the operator replaces the token key: the server is restarted on the same data directory with a new one
        await server.App.StopAsync();
        var keyFile = Path.Combine(server.Root, "server", "keys", "token.key");
        var oldKey = await File.ReadAllBytesAsync(keyFile);
        await File.WriteAllBytesAsync(keyFile, RandomNumberGenerator.GetBytes(oldKey.Length));
        var again = await TestServer.BuildServerAsync(server.Root, port);
        using var seen = ServerRequests.Attach(again);
        await again.StartAsync();
        try
        {
            // every unit checks now (what a push does), still holding the token it believes valid for another half hour
            foreach (var unit in units) { unit.Supervisor.RequestCheck(); }
            var deadline = Stopwatch.StartNew();
            bool AllReadyAgain() => units.All(u => server.ChainOf(u.Mac).Count(s => s == StateId.Ready) > readyBefore[u.Mac] &&
                                                   seen.Requests.Any(r => r.Unit == u.Mac && r.Path == Routes.Ready && r.Status == 200));
            while (!AllReadyAgain() && deadline.Elapsed < TimeSpan.FromSeconds(30)) { await Task.Delay(50); }
            await Task.Delay(500); // anything a unit still sends after it is Ready again is counted too

            var requests = seen.Requests.ToList();
            var perUnit = units.ToDictionary(u => u.Mac, u => requests.Count(r => r.Unit == u.Mac));
            TestContext.Out.WriteLine($"{requests.Count} requests from {count} units after the key change " +
                                      $"({requests.Count(r => r.Status == 401)} refused); per unit with a token: {string.Join(", ", perUnit.Values)}; " +
                                      string.Join(", ", requests.GroupBy(r => $"{r.Path} {r.Status}").Select(g => $"{g.Key}: {g.Count()}")));
            Assert.Multiple(() =>
            {
                Assert.That(AllReadyAgain(), Is.True, "every unit Ready again, its ready report accepted by the restarted server");
                Assert.That(requests, Has.Count.LessThanOrEqualTo(count * boundPerUnit), "requests from the fleet");
                foreach (var unit in units)
                {
                    Assert.That(perUnit[unit.Mac] + 2, Is.LessThanOrEqualTo(boundPerUnit), $"{unit.Mac}: token requests plus its challenge and session");
                    Assert.That(requests.Count(r => r.Unit == unit.Mac && r.Status == 401), Is.EqualTo(1), $"{unit.Mac}: its old token is refused once, then dropped");
                    var refusals = server.ChangesOf(unit.Mac).Skip(changesBefore[unit.Mac]).Where(c => c.Outcome == Outcome.SessionExpired).ToList();
                    Assert.That(refusals, Has.Count.EqualTo(1), $"{unit.Mac}: one refusal");
                    Assert.That(refusals.Select(r => r.Delay), Has.All.GreaterThanOrEqualTo(TestServer.FastOptions.BackoffBase),
                        $"{unit.Mac}: waits the floor before authenticating again");
                    // fleetsim's meter, over the same transitions, reports the refusal as a retry and a re-authentication
                    var meter = new UnitMeter();
                    foreach (var change in server.ChangesOf(unit.Mac).Skip(changesBefore[unit.Mac])) { meter.Count(change); }
                    Assert.That((meter.Retries, meter.Reauthentications), Is.EqualTo((1L, 1L)), $"{unit.Mac}: counted by fleetsim");
                }
                Assert.That(requests.Count(r => r.Path == Routes.HostSession && r.Status == 200), Is.EqualTo(count), "one new session per unit");
                Assert.That(requests.Where(r => r.Status >= 500), Is.Empty, "no server error");
                foreach (var unit in units)
                {
                    // the version check answer carried the server's time: the unit's trusted time is the server's
                    var reading = unit.Supervisor.Context.Clock.Now();
                    Assert.That(reading.FromHost, Is.True, $"{unit.Mac}: has the host's time");
                    Assert.That(reading.Now, Is.EqualTo(DateTimeOffset.UtcNow).Within(TimeSpan.FromSeconds(5)), $"{unit.Mac}: {reading}");
                }
            });
        }
        finally
        {
            await Task.WhenAll(units.Select(u => server.Fleet.PowerOffAsync(u)));
            await again.StopAsync();
            await again.DisposeAsync();
        }
    }
}
