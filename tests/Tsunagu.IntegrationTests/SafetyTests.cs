using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using Microsoft.AspNetCore.Http;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;

namespace Tsunagu.IntegrationTests;

/// <summary>Rate limits, overload answers and token scopes of the server.</summary>
[NonParallelizable]
public class SafetyTests
{
    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    [TearDown]
    public void TearDown() => TestServer.Configure.Value = null;

    private static HttpClient Http(TestServer server) => server.PinnedHttp();

    [Test]
    public async Task Authentication_is_rate_limited_per_mac_with_retry_after()
    {
        TestServer.Configure.Value = o => o.AuthAttemptsPerMacPerMinute = 3;
        await using var server = await TestServer.StartAsync();
        using var http = Http(server);
        for (var i = 0; i < 3; i++)
        {
            Assert.That((await http.PostAsJsonAsync(Routes.HostChallenge, new ChallengeRequest("02:54:53:00:00:01"))).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        }
        var limited = await http.PostAsJsonAsync(Routes.ProvisioningChallenge, new ChallengeRequest("02:54:53:00:00:01"));
        Assert.That(limited.StatusCode, Is.EqualTo(HttpStatusCode.TooManyRequests));
        Assert.That(limited.Headers.RetryAfter?.Delta, Is.Not.Null.And.GreaterThan(TimeSpan.Zero).And.LessThanOrEqualTo(TimeSpan.FromSeconds(60)));
        Assert.That(await limited.Content.ReadAsStringAsync(), Does.Contain("02:54:53:00:00:01"));
        Assert.That((await http.PostAsJsonAsync(Routes.HostChallenge, new ChallengeRequest("02:54:53:00:00:02"))).StatusCode, Is.EqualTo(HttpStatusCode.OK), "other units are not held back");
    }

    [Test]
    public async Task Authentication_is_rate_limited_per_source_address_with_retry_after()
    {
        TestServer.Configure.Value = o => o.AuthAttemptsPerSourcePerMinute = 5;
        await using var server = await TestServer.StartAsync();
        using var http = Http(server);
        var statuses = new List<HttpResponseMessage>();
        for (var i = 1; i <= 8; i++)
        {
            statuses.Add(await http.PostAsJsonAsync(Routes.ProvisioningChallenge, new ChallengeRequest($"02:54:53:00:01:{i:x2}")));
        }
        Assert.That(statuses.Take(5).Select(r => r.StatusCode), Is.All.EqualTo(HttpStatusCode.OK));
        Assert.That(statuses.Skip(5).Select(r => r.StatusCode), Is.All.EqualTo(HttpStatusCode.TooManyRequests));
        Assert.That(statuses[^1].Headers.RetryAfter?.Delta, Is.Not.Null.And.GreaterThan(TimeSpan.Zero));
        using var client = server.Operator();
        Assert.That(await client.ListUnitsAsync(null, null, CancellationToken.None), Is.Empty, "other endpoints are not limited by it");
    }

    [Test]
    public async Task Steady_checks_are_rate_limited_per_source_address_like_the_session_endpoints()
    {
        TestServer.Configure.Value = o => o.AuthAttemptsPerSourcePerMinute = 5;
        await using var server = await TestServer.StartAsync();
        using var http = Http(server);
        var statuses = new List<HttpResponseMessage>();
        for (var i = 1; i <= 8; i++)
        {
            // an unknown nonce each time: 401 while the source has attempts left, then 429
            var request = new SteadyCheckRequest($"02:54:53:00:02:{i:x2}", $"n{i}", "AAAA", new Inventory(DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion, DemoCatalogue.Pattern2Applications), 1, null);
            statuses.Add(await http.PostAsJsonAsync(Routes.SteadyCheck, request, ProtocolJson.Default.SteadyCheckRequest));
        }
        Assert.That(statuses.Take(5).Select(r => r.StatusCode), Is.All.EqualTo(HttpStatusCode.Unauthorized));
        Assert.That(statuses.Skip(5).Select(r => r.StatusCode), Is.All.EqualTo(HttpStatusCode.TooManyRequests));
        Assert.That(statuses[^1].Headers.RetryAfter?.Delta, Is.Not.Null.And.GreaterThan(TimeSpan.Zero));
    }

    [Test]
    public async Task An_overloaded_server_answers_503_with_retry_after_instead_of_timing_out()
    {
        // one request holds the only permit (made certain: it is held past the limiter until released); with no queue a
        // probe is turned away while it is held, not made to wait for it
        await using (var permit = await HoldTheOnlyPermitAsync(o => o.RequestQueueLimit = 0))
        {
            var (http, holder) = (permit.Http, permit.Holder);
            var basic = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{DemoCatalogue.OperatorName}:{TestServer.Password}")));

            using var busy = await http.GetAsync("/healthz").WaitAsync(TimeSpan.FromSeconds(120));
            Assert.That(busy.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
            Assert.That(holder.IsCompleted, Is.False, "answered while the permit was still held: turned away at once, not queued behind it");
            Assert.That(busy.Headers.RetryAfter?.Delta, Is.GreaterThan(TimeSpan.Zero), "a 503 says when to come back");
            Assert.That(await busy.Content.ReadAsStringAsync(), Does.Contain("overloaded"));

            permit.Release();
            Assert.That((await holder.WaitAsync(TimeSpan.FromSeconds(60))).StatusCode, Is.EqualTo(HttpStatusCode.OK), "the held request is served once released");
            using var after = new HttpRequestMessage(HttpMethod.Get, Routes.Units) { Headers = { Authorization = basic } };
            Assert.That((await http.SendAsync(after)).StatusCode, Is.EqualTo(HttpStatusCode.OK), "capacity is back once the held request is done");
        }
    }

    [Test]
    public async Task Operators_come_from_the_start_up_settings_or_another_operator()
    {
        TestServer.Configure.Value = o => { o.OperatorName = "night-shift"; o.OperatorPassword = "night-shift-password"; };
        await using var server = await TestServer.StartAsync();
        using var http = Http(server);
        async Task<HttpStatusCode> ListAs(string user, string password)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, Routes.Units);
            request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}")));
            return (await http.SendAsync(request)).StatusCode;
        }
        Assert.That(await ListAs("night-shift", "night-shift-password"), Is.EqualTo(HttpStatusCode.OK));
        using var client = server.Operator();
        var weak = Assert.ThrowsAsync<Tsunagu.Cli.Factory.OperatorApiException>(() =>
            client.SendJsonAsync(HttpMethod.Post, "/api/v1/operators", new NewSubscriber("day-shift", "short"), CancellationToken.None));
        Assert.That(weak!.Message, Does.Contain("at least 12"));
        await client.SendJsonAsync(HttpMethod.Post, "/api/v1/operators", new NewSubscriber("day-shift", "day-shift-password"), CancellationToken.None);
        Assert.That(await ListAs("day-shift", "day-shift-password"), Is.EqualTo(HttpStatusCode.OK));
        Assert.That(await ListAs("day-shift", "night-shift-password"), Is.EqualTo(HttpStatusCode.Unauthorized));
    }

    [Test]
    public async Task A_host_only_server_does_not_serve_the_initial_setting_role()
    {
        TestServer.Configure.Value = o => o.Roles = "host";
        await using var server = await TestServer.StartAsync();
        using var http = Http(server);
        Assert.That((await http.PostAsJsonAsync(Routes.ProvisioningChallenge, new ChallengeRequest("02:54:53:00:00:01"))).StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
        Assert.That((await http.PostAsJsonAsync(Routes.HostChallenge, new ChallengeRequest("02:54:53:00:00:01"))).StatusCode, Is.EqualTo(HttpStatusCode.OK));
    }

    [Test]
    public async Task Operator_and_subscriber_tokens_are_scoped()
    {
        await using var server = await TestServer.StartAsync();
        var units = await server.AddUnitsAsync(2);
        using var http = Http(server);
        using var client = server.Operator();
        await client.SendJsonAsync(HttpMethod.Post, "/api/v1/subscribers", new NewSubscriber("alice", "alice-password"), CancellationToken.None);
        Assert.That((await server.Store.Units.GetUnitAsync(units[0].Mac))!.Subscriber, Is.Null);
        await client.SendAsync(HttpMethod.Post, "/api/v1/units/bulk", new StringContent("mac,serial,isp_method,subscriber\n02:54:53:00:20:01,S9,dhcp,alice\n", Encoding.UTF8, "text/csv"), CancellationToken.None);

        var operatorToken = (await (await Send(http, HttpMethod.Post, "/api/v1/operator/token", null, basic: true)).Content.ReadFromJsonAsync<TokenResponse>())!;
        Assert.That(operatorToken.Scope, Is.EqualTo(TokenScope.Operator));
        Assert.That((await Send(http, HttpMethod.Get, Routes.Units, operatorToken.Token)).StatusCode, Is.EqualTo(HttpStatusCode.OK));

        Assert.That((await http.PostAsJsonAsync("/api/v1/subscriber/token", new SubscriberLogin("alice", "wrong-password"))).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        var subscriber = (await (await http.PostAsJsonAsync("/api/v1/subscriber/token", new SubscriberLogin("alice", "alice-password"))).Content.ReadFromJsonAsync<TokenResponse>())!;
        var mine = await (await Send(http, HttpMethod.Get, "/api/v1/subscriber/units", subscriber.Token)).Content.ReadFromJsonAsync<List<UnitView>>();
        Assert.That(mine!.Select(u => u.Mac), Is.EqualTo(new[] { "02:54:53:00:20:01" }), "a subscriber sees only their own unit");
        Assert.That((await Send(http, HttpMethod.Get, Routes.Units, subscriber.Token)).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That((await Send(http, HttpMethod.Get, Routes.ServiceConfig, subscriber.Token)).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That((await Send(http, HttpMethod.Get, "/api/v1/subscriber/units", operatorToken.Token)).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
    }

    private static async Task<HttpResponseMessage> Send(HttpClient http, HttpMethod method, string path, string? bearer, bool basic = false)
    {
        using var request = new HttpRequestMessage(method, path) { Headers = { { "X-Tsunagu-Client", "test" } } };
        request.Headers.Authorization = basic
            ? new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{DemoCatalogue.OperatorName}:{TestServer.Password}")))
            : new AuthenticationHeaderValue("Bearer", bearer);
        return await http.SendAsync(request);
    }

    private const string HoldHeader = "X-Test-Hold";

    /// <summary>
    /// A server with one request permit (and the given queue <paramref name="limits"/>) whose permit a request to
    /// `/healthz` holds past the limiter until <see cref="HeldPermit.Release"/> (or the end): returned once it is held.
    /// </summary>
    private static async Task<HeldPermit> HoldTheOnlyPermitAsync(Action<Tsunagu.Server.ServerOptions> limits)
    {
        var (held, release) = (new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously), new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        TestServer.Configure.Value = o => { o.MaxConcurrentRequests = 1; limits(o); };
        TestServer.Middleware.Value = HoldPermit(held, release);
        TestServer server;
        try
        {
            server = await TestServer.StartAsync();
        }
        finally
        {
            TestServer.Middleware.Value = null;
        }
        var permit = new HeldPermit(server, Http(server), release);
        try
        {
            permit.Holder = permit.Http.SendAsync(new HttpRequestMessage(HttpMethod.Get, "/healthz") { Headers = { { HoldHeader, "1" } } });
            await held.Task.WaitAsync(TimeSpan.FromSeconds(60));
            return permit;
        }
        catch
        {
            await permit.DisposeAsync();
            throw;
        }
    }

    /// <summary>A server, a client of it, and the request of that client holding the server's only permit until released.</summary>
    private sealed class HeldPermit(TestServer server, HttpClient http, TaskCompletionSource release) : IAsyncDisposable
    {
        public HttpClient Http { get; } = http;

        /// <summary>The request holding the permit: answered once released.</summary>
        public Task<HttpResponseMessage> Holder { get; set; } = Task.FromException<HttpResponseMessage>(new InvalidOperationException("not sent"));

        public void Release() => release.TrySetResult();

        public async ValueTask DisposeAsync()
        {
            Release();
            Http.Dispose();
            await server.DisposeAsync();
        }
    }

    /// <summary>
    /// Holds every request that carries <see cref="HoldHeader"/> after it got its permit from the server's limiter,
    /// until <paramref name="release"/> completes; <paramref name="held"/> completes when the first one is held.
    /// </summary>
    private static Func<HttpContext, RequestDelegate, Task> HoldPermit(TaskCompletionSource held, TaskCompletionSource release) => async (http, next) =>
    {
        if (http.Request.Headers.ContainsKey(HoldHeader))
        {
            held.TrySetResult();
            await release.Task.WaitAsync(http.RequestAborted);
        }
        await next(http);
    };

    [Test]
    public async Task A_request_queued_longer_than_the_queue_timeout_gets_503()
    {
        await using (var permit = await HoldTheOnlyPermitAsync(o => { o.RequestQueueLimit = 100; o.RequestQueueTimeoutSeconds = 2; }))
        {
            var (http, holder) = (permit.Http, permit.Holder);

            var started = Stopwatch.StartNew();
            using var busy = await http.GetAsync("/healthz").WaitAsync(TimeSpan.FromSeconds(120));
            var waited = started.Elapsed;
            TestContext.Out.WriteLine($"turned away after {waited.TotalSeconds:0.00} s in the queue");
            Assert.That(busy.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable), "turned away after the queue timeout, while the permit is still held");
            Assert.That(holder.IsCompleted, Is.False, "the permit was still held");
            // a lower bound only (a timer never fires early; a busy machine only makes it longer): it queued, not refused at once
            Assert.That(waited, Is.GreaterThanOrEqualTo(TimeSpan.FromMilliseconds(1900)), "it waited in the queue (100 places) before it was turned away");
            Assert.That(busy.Headers.RetryAfter?.Delta, Is.GreaterThan(TimeSpan.Zero));
            Assert.That(await busy.Content.ReadAsStringAsync(), Does.Contain("overloaded"));

            permit.Release();
            Assert.That((await holder.WaitAsync(TimeSpan.FromSeconds(60))).StatusCode, Is.EqualTo(HttpStatusCode.OK), "the held request is served once released");
        }
    }

    [Test]
    public async Task A_request_whose_permit_comes_back_within_the_queue_timeout_gets_its_answer()
    {
        // a queue timeout no busy machine reaches: what is checked is that a queued request is served, not turned away
        await using (var permit = await HoldTheOnlyPermitAsync(o => { o.RequestQueueLimit = 100; o.RequestQueueTimeoutSeconds = 300; }))
        {
            var (http, holder) = (permit.Http, permit.Holder);

            var queued = http.GetAsync("/healthz");
            await Task.Delay(300);
            Assert.That(queued.IsCompleted, Is.False, "the probe is waiting in the queue while the permit is held");
            permit.Release();
            Assert.That((await queued.WaitAsync(TimeSpan.FromSeconds(120))).StatusCode, Is.EqualTo(HttpStatusCode.OK), "served once the permit came back");
            Assert.That((await holder.WaitAsync(TimeSpan.FromSeconds(60))).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        }
    }
}

/// <summary>A busy database is overload: answered 503 + Retry-After at once, not a 500 after a long wait.</summary>
[NonParallelizable]
public class BusyDatabaseTests
{
    [SetUp]
    public void SetUp()
    {
        TestServer.DatabaseKind.Value = "sqlite";
        TestServer.Configure.Value = o => o.DatabaseBusyTimeout = TimeSpan.FromMilliseconds(300);
    }

    [TearDown]
    public void TearDown() => TestServer.Configure.Value = null;

    [Test]
    public async Task A_write_that_finds_sqlite_locked_is_answered_503_with_retry_after()
    {
        await using var server = await TestServer.StartAsync();
        using var http = server.PinnedHttp();
        var file = Path.Combine(server.Root, "server", "tsunagu.db");
        using (var holder = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={file};Pooling=False"))
        {
            holder.Open();
            using var begin = holder.CreateCommand();
            begin.CommandText = "BEGIN IMMEDIATE; INSERT INTO settings (key, value) VALUES ('lock-holder', 'x');";
            begin.ExecuteNonQuery(); // this test now holds SQLite's only write lock

            var started = DateTime.UtcNow;
            var response = await http.PostAsJsonAsync(Routes.HostChallenge, new ChallengeRequest("02:54:53:00:00:01"));
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
            Assert.That(response.Headers.RetryAfter?.Delta, Is.GreaterThan(TimeSpan.Zero));
            Assert.That(DateTime.UtcNow - started, Is.LessThan(TimeSpan.FromSeconds(5)), "answered after the configured busy wait, not 30 s");
            Assert.That(await response.Content.ReadAsStringAsync(), Does.Contain("database is busy"));
        }
        // the lock is gone (rolled back with the connection): the same request succeeds
        Assert.That((await http.PostAsJsonAsync(Routes.HostChallenge, new ChallengeRequest("02:54:53:00:00:01"))).StatusCode, Is.EqualTo(HttpStatusCode.OK));
    }
}
