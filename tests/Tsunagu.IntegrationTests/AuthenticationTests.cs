using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.Extensions.DependencyInjection;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Security;

namespace Tsunagu.IntegrationTests;

/// <summary>A clock that stands still until the test moves it (timers still run on the system's).</summary>
public sealed class ManualClock(DateTimeOffset start) : TimeProvider
{
    private DateTimeOffset _now = start;
    private readonly Lock _lock = new();

    public ManualClock() : this(DateTimeOffset.UtcNow) { }

    public override DateTimeOffset GetUtcNow()
    {
        lock (_lock) { return _now; }
    }

    public void Advance(TimeSpan by)
    {
        lock (_lock) { _now += by; }
    }
}

/// <summary>Password guessing, sessions and tokens of operators and subscribers, refused units.</summary>
[NonParallelizable]
public class AuthenticationTests
{
    private ManualClock _clock = null!;

    [SetUp]
    public void SetUp()
    {
        TestServer.DatabaseKind.Value = "sqlite";
        _clock = new ManualClock();
        TestServer.Time.Value = _clock;
    }

    [TearDown]
    public void TearDown()
    {
        TestServer.Configure.Value = null;
        TestServer.Time.Value = null;
    }

    /// <summary>A client of the server whose connections come from <paramref name="source"/> (any 127.0.0.0/8 address).</summary>
    private static HttpClient From(TestServer server, string source) => new(new SocketsHttpHandler
    {
        SslOptions = { RemoteCertificateValidationCallback = TrustAnchor.Validator([server.Pin]) },
        ConnectCallback = async (context, ct) =>
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                socket.Bind(new IPEndPoint(IPAddress.Parse(source), 0));
                await socket.ConnectAsync(context.DnsEndPoint, ct);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        },
    })
    { BaseAddress = new Uri(server.Url) };

    private static AuthenticationHeaderValue Basic(string user, string password) =>
        new("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}")));

    private static async Task<HttpResponseMessage> ListUnits(HttpClient http, AuthenticationHeaderValue auth)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, Routes.Units) { Headers = { Authorization = auth } };
        return await http.SendAsync(request);
    }

    private static PasswordGuard Guard(TestServer server) => server.App.Services.GetRequiredService<PasswordGuard>();

    /// <summary>Holds every hashing slot, so a request that needed to hash would be answered 503.</summary>
    private static List<IDisposable> HoldAllHashing(TestServer server)
    {
        var held = new List<IDisposable>();
        while (Guard(server).TryTakeHashingSlot() is { } slot) { held.Add(slot); }
        Assert.That(held, Is.Not.Empty);
        return held;
    }

    [Test]
    public async Task Operator_guesses_are_limited_per_account_and_source_with_429_before_any_hashing()
    {
        TestServer.Configure.Value = o => { o.LoginAttemptsPerMinute = 3; o.ConcurrentPasswordChecks = 1; };
        await using var server = await TestServer.StartAsync();
        using var http = server.PinnedHttp();
        for (var i = 0; i < 3; i++)
        {
            Assert.That((await ListUnits(http, Basic(DemoCatalogue.OperatorName, $"guess-{i}"))).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        }
        // with every hashing slot taken, a check that hashed would get 503: 429 shows the limit answered first
        var held = HoldAllHashing(server);
        var limited = await ListUnits(http, Basic(DemoCatalogue.OperatorName, TestServer.Password));
        Assert.That(limited.StatusCode, Is.EqualTo(HttpStatusCode.TooManyRequests), "the fourth attempt this minute is refused, even with the right password");
        Assert.That(limited.Headers.RetryAfter?.Delta, Is.GreaterThan(TimeSpan.Zero).And.LessThanOrEqualTo(TimeSpan.FromSeconds(60)));
        Assert.That(await limited.Content.ReadAsStringAsync(), Does.Contain("rate-limited"));
        var busy = await ListUnits(http, Basic("someone-else", "guess"));
        Assert.That(busy.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable), "another account needs a hash: no slot, answered at once");
        Assert.That(busy.Headers.RetryAfter?.Delta, Is.GreaterThan(TimeSpan.Zero));
        held.ForEach(h => h.Dispose());

        _clock.Advance(TimeSpan.FromSeconds(61));
        Assert.That((await ListUnits(http, Basic(DemoCatalogue.OperatorName, TestServer.Password))).StatusCode, Is.EqualTo(HttpStatusCode.OK), "a new minute, a new window");
    }

    [Test]
    public async Task Subscriber_token_guesses_are_limited_with_429_before_any_hashing()
    {
        TestServer.Configure.Value = o => { o.LoginAttemptsPerMinute = 3; o.ConcurrentPasswordChecks = 1; };
        await using var server = await TestServer.StartAsync();
        await server.Store.Accounts.UpsertSubscriberAsync("alice", PasswordHasher.Hash("alice-password"));
        using var http = server.PinnedHttp();
        for (var i = 0; i < 3; i++)
        {
            Assert.That((await http.PostAsJsonAsync("/api/v1/subscriber/token", new SubscriberLogin("alice", $"guess-{i}"))).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        }
        var held = HoldAllHashing(server);
        var limited = await http.PostAsJsonAsync("/api/v1/subscriber/token", new SubscriberLogin("alice", "alice-password"));
        held.ForEach(h => h.Dispose());
        Assert.That(limited.StatusCode, Is.EqualTo(HttpStatusCode.TooManyRequests));
        Assert.That(limited.Headers.RetryAfter?.Delta, Is.GreaterThan(TimeSpan.Zero));
        _clock.Advance(TimeSpan.FromSeconds(61));
        Assert.That((await http.PostAsJsonAsync("/api/v1/subscriber/token", new SubscriberLogin("alice", "alice-password"))).StatusCode, Is.EqualTo(HttpStatusCode.OK));
    }

    [Test]
    public async Task Guesses_from_other_addresses_never_lock_the_owner_out_and_one_address_cannot_try_many_accounts()
    {
        TestServer.Configure.Value = o => { o.LoginAttemptsPerMinute = 100; o.PasswordAttemptsPerAccountPerMinute = 3; o.PasswordAttemptsPerSourcePerMinute = 4; };
        await using var server = await TestServer.StartAsync();
        using var owner = From(server, "127.0.0.1");
        using var attacker = From(server, "127.0.0.2");
        using var second = From(server, "127.0.0.3");
        using var sprayer = From(server, "127.0.0.4");
        var right = Basic(DemoCatalogue.OperatorName, TestServer.Password);
        Assert.That((await ListUnits(owner, right)).StatusCode, Is.EqualTo(HttpStatusCode.OK), "the owner signs in from their address");
        _clock.Advance(TimeSpan.FromMinutes(10)); // the recognised password has lapsed: the next check hashes again

        for (var i = 0; i < 3; i++)
        {
            Assert.That((await ListUnits(attacker, Basic(DemoCatalogue.OperatorName, $"guess-{i}"))).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        }
        Assert.That((await ListUnits(attacker, Basic(DemoCatalogue.OperatorName, "guess-3"))).StatusCode, Is.EqualTo(HttpStatusCode.TooManyRequests));
        Assert.That((await ListUnits(second, Basic(DemoCatalogue.OperatorName, "guess-4"))).StatusCode, Is.EqualTo(HttpStatusCode.TooManyRequests),
            "the account's window counts guesses from every address it has not signed in from");
        Assert.That((await ListUnits(owner, right)).StatusCode, Is.EqualTo(HttpStatusCode.OK), "the owner's address is not held back by them");

        for (var i = 0; i < 4; i++)
        {
            Assert.That((await ListUnits(sprayer, Basic($"account-{i}", "guess"))).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        }
        Assert.That((await ListUnits(sprayer, Basic("account-9", "guess"))).StatusCode, Is.EqualTo(HttpStatusCode.TooManyRequests), "one address, many accounts");
    }

    [Test]
    public async Task Unknown_accounts_cost_a_hash_like_known_ones()
    {
        TestServer.Configure.Value = o => { o.LoginAttemptsPerMinute = 1000; o.PasswordAttemptsPerSourcePerMinute = 1000; o.PasswordAttemptsPerAccountPerMinute = 1000; };
        await using var server = await TestServer.StartAsync();
        using var http = server.PinnedHttp();
        // an unknown name waits for a hashing slot like a known one: it is hashed (against a dummy), not answered early
        var held = HoldAllHashing(server);
        Assert.That((await ListUnits(http, Basic("nobody-here", "guess"))).StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
        Assert.That((await ListUnits(http, Basic(DemoCatalogue.OperatorName, "guess"))).StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
        held.ForEach(h => h.Dispose());

        // and takes about as long (medians of interleaved runs; a lookup without a hash is 100x faster)
        var known = new List<double>();
        var unknown = new List<double>();
        for (var i = 0; i < 7; i++)
        {
            var watch = Stopwatch.StartNew();
            Assert.That((await ListUnits(http, Basic(DemoCatalogue.OperatorName, $"wrong-{i}"))).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
            known.Add(watch.Elapsed.TotalMilliseconds);
            watch.Restart();
            Assert.That((await ListUnits(http, Basic($"nobody-{i}", $"wrong-{i}"))).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
            unknown.Add(watch.Elapsed.TotalMilliseconds);
        }
        var (k, u) = (known.Order().ElementAt(3), unknown.Order().ElementAt(3));
        Assert.That(u, Is.GreaterThan(k / 3), $"median known {k:F1} ms, unknown {u:F1} ms");
    }

    [Test]
    public async Task A_burst_of_correct_basic_requests_hashes_once_and_is_served()
    {
        TestServer.Configure.Value = o => o.ConcurrentPasswordChecks = 1;
        await using var server = await TestServer.StartAsync();
        using var http = server.PinnedHttp();
        var right = Basic(DemoCatalogue.OperatorName, TestServer.Password);
        var answers = await Task.WhenAll(Enumerable.Range(0, 32).Select(_ => ListUnits(http, right)));
        Assert.That(answers.Select(a => a.StatusCode), Is.All.EqualTo(HttpStatusCode.OK), "one client's burst shares one hash");
    }

    // ---- sessions and tokens ------------------------------------------------------------------------------------

    private static async Task<TokenResponse> OperatorToken(HttpClient http, AuthenticationHeaderValue auth)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/v1/operator/token") { Headers = { Authorization = auth } };
        request.Content = JsonContent.Create(new { });
        var response = await http.SendAsync(request);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), await response.Content.ReadAsStringAsync());
        return (await response.Content.ReadFromJsonAsync<TokenResponse>())!;
    }

    [Test]
    public async Task A_token_minted_with_a_token_keeps_the_first_ones_expiry()
    {
        await using var server = await TestServer.StartAsync();
        using var http = server.PinnedHttp();
        var first = await OperatorToken(http, Basic(DemoCatalogue.OperatorName, TestServer.Password));
        _clock.Advance(TimeSpan.FromMinutes(40));
        var second = await OperatorToken(http, new AuthenticationHeaderValue("Bearer", first.Token));
        Assert.That(second.ExpiresAt, Is.EqualTo(first.ExpiresAt), "a token cannot extend itself");
        _clock.Advance(TimeSpan.FromMinutes(21));
        Assert.That((await ListUnits(http, new AuthenticationHeaderValue("Bearer", second.Token))).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
    }

    [Test]
    public async Task Tokens_end_when_the_password_changes_or_the_account_is_disabled()
    {
        await using var server = await TestServer.StartAsync();
        using var http = server.PinnedHttp();
        using var client = server.Operator();
        await client.SendJsonAsync(HttpMethod.Post, "/api/v1/operators", new NewSubscriber("day-shift", "day-shift-password"), CancellationToken.None);
        await client.SendJsonAsync(HttpMethod.Post, "/api/v1/subscribers", new NewSubscriber("alice", "alice-password"), CancellationToken.None);
        var dayShift = await OperatorToken(http, Basic("day-shift", "day-shift-password"));
        var bearer = new AuthenticationHeaderValue("Bearer", dayShift.Token);
        Assert.That((await ListUnits(http, bearer)).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        await client.SendJsonAsync(HttpMethod.Post, "/api/v1/operators", new NewSubscriber("day-shift", "another-day-password"), CancellationToken.None);
        Assert.That((await ListUnits(http, bearer)).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized), "a new password ends the old tokens");

        async Task<HttpStatusCode> Mine(string token)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/api/v1/subscriber/units") { Headers = { Authorization = new("Bearer", token) } };
            return (await http.SendAsync(request)).StatusCode;
        }
        var alice = (await (await http.PostAsJsonAsync("/api/v1/subscriber/token", new SubscriberLogin("alice", "alice-password"))).Content.ReadFromJsonAsync<TokenResponse>())!;
        Assert.That(await Mine(alice.Token), Is.EqualTo(HttpStatusCode.OK));
        await client.SendJsonAsync(HttpMethod.Post, "/api/v1/subscribers/alice/disable", new { }, CancellationToken.None);
        Assert.That(await Mine(alice.Token), Is.EqualTo(HttpStatusCode.Unauthorized), "disabling ends the subscriber's tokens");
        Assert.That((await http.PostAsJsonAsync("/api/v1/subscriber/token", new SubscriberLogin("alice", "alice-password"))).StatusCode,
            Is.EqualTo(HttpStatusCode.Unauthorized), "and a disabled account signs in no more");

        var night = await OperatorToken(http, Basic("day-shift", "another-day-password"));
        await client.SendJsonAsync(HttpMethod.Post, "/api/v1/operators/day-shift/disable", new { }, CancellationToken.None);
        Assert.That((await ListUnits(http, new AuthenticationHeaderValue("Bearer", night.Token))).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        Assert.That((await ListUnits(http, Basic("day-shift", "another-day-password"))).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
    }

    /// <summary>Signs in to the console with a form post (antiforgery token from the page); returns a client holding the cookie.</summary>
    private static async Task<HttpClient> ConsoleSession(TestServer server, string name, string password)
    {
        var (http, status, body) = await ConsoleLogIn(server, name, password);
        Assert.That(status, Is.EqualTo(HttpStatusCode.Redirect), body);
        return http;
    }

    /// <summary>Posts the console's log in form; returns the client (with any cookie), the answer's status and body.</summary>
    private static async Task<(HttpClient Http, HttpStatusCode Status, string Body)> ConsoleLogIn(TestServer server, string name, string password)
    {
        var cookies = new CookieContainer();
        var http = new HttpClient(new SocketsHttpHandler
        {
            CookieContainer = cookies, AllowAutoRedirect = false,
            SslOptions = { RemoteCertificateValidationCallback = TrustAnchor.Validator([server.Pin]) },
        })
        { BaseAddress = new Uri(server.Url) };
        var page = await http.GetStringAsync("/console/login");
        string Field(string pattern) => Regex.Match(page, pattern).Groups[1].Value;
        var form = new FormUrlEncodedContent(new Dictionary<string, string>
        {
            [Field("name=\"([^\"]*Name)\"")] = name,
            [Field("name=\"([^\"]*Password)\"")] = password,
            ["__csrf"] = WebUtility.HtmlDecode(Field("name=\"__csrf\"[^>]*value=\"([^\"]+)\"")),
        });
        var posted = await http.PostAsync("/console/login", form);
        return (http, posted.StatusCode, await posted.Content.ReadAsStringAsync());
    }

    private static async Task<HttpStatusCode> ConsoleHome(HttpClient http) => (await http.GetAsync("/console")).StatusCode;

    [Test]
    public async Task Console_sessions_end_at_their_absolute_lifetime_however_active()
    {
        TestServer.Configure.Value = o => o.WebSessionAbsoluteLifetime = TimeSpan.FromMinutes(2);
        await using var server = await TestServer.StartAsync();
        using var http = await ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        Assert.That(await ConsoleHome(http), Is.EqualTo(HttpStatusCode.OK));
        _clock.Advance(TimeSpan.FromSeconds(70));
        Assert.That(await ConsoleHome(http), Is.EqualTo(HttpStatusCode.OK), "active within the sliding and the absolute lifetime");
        _clock.Advance(TimeSpan.FromSeconds(70));
        Assert.That(await ConsoleHome(http), Is.EqualTo(HttpStatusCode.Redirect), "past the absolute lifetime: back to the log in page");
    }

    [Test]
    public async Task Console_sessions_end_when_the_password_changes()
    {
        await using var server = await TestServer.StartAsync();
        using var http = await ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        Assert.That(await ConsoleHome(http), Is.EqualTo(HttpStatusCode.OK));
        using var client = server.Operator();
        await client.SendJsonAsync(HttpMethod.Post, "/api/v1/operators", new NewSubscriber("day-shift", "day-shift-password"), CancellationToken.None);
        Assert.That(await ConsoleHome(http), Is.EqualTo(HttpStatusCode.OK), "another account's change leaves the session alone");
        await server.Store.Accounts.UpsertOperatorAsync(DemoCatalogue.OperatorName, PasswordHasher.Hash("a-new-operator-password"));
        Assert.That(await ConsoleHome(http), Is.EqualTo(HttpStatusCode.Redirect));
    }

    [Test]
    public async Task Console_guesses_are_limited_per_account_and_source()
    {
        TestServer.Configure.Value = o => o.LoginAttemptsPerMinute = 2;
        await using var server = await TestServer.StartAsync();
        for (var i = 0; i < 2; i++)
        {
            var (client, status, body) = await ConsoleLogIn(server, DemoCatalogue.OperatorName, $"guess-{i}");
            client.Dispose();
            Assert.That((status, body.Contains("Name or password is wrong", StringComparison.Ordinal)), Is.EqualTo((HttpStatusCode.OK, true)));
        }
        var (third, thirdStatus, _) = await ConsoleLogIn(server, DemoCatalogue.OperatorName, TestServer.Password);
        third.Dispose();
        Assert.That(thirdStatus, Is.EqualTo(HttpStatusCode.TooManyRequests), "the third attempt this minute, even with the right password");
        // API and console share the account's windows: the third attempt from this address is refused before hashing
        using var http = server.PinnedHttp();
        Assert.That((await ListUnits(http, Basic(DemoCatalogue.OperatorName, TestServer.Password))).StatusCode, Is.EqualTo(HttpStatusCode.TooManyRequests));
        _clock.Advance(TimeSpan.FromSeconds(61));
        using var session = await ConsoleSession(server, DemoCatalogue.OperatorName, TestServer.Password);
        Assert.That(await ConsoleHome(session), Is.EqualTo(HttpStatusCode.OK));
    }

    // ---- refused units ----------------------------------------------------------------------------------------

    [Test]
    public async Task A_refused_proof_changes_nothing_about_the_unit_and_refusals_are_audited_in_aggregate()
    {
        await using var server = await TestServer.StartAsync();
        var units = await server.AddUnitsAsync(1);
        var mac = units[0].Mac;
        using var http = server.PinnedHttp();
        var before = (await server.Store.Units.GetUnitAsync(mac))!;
        for (var i = 0; i < 20; i++)
        {
            var challenge = (await (await http.PostAsJsonAsync(Routes.HostChallenge, new ChallengeRequest(mac))).Content.ReadFromJsonAsync<ChallengeResponse>())!;
            var refused = await http.PostAsJsonAsync(Routes.HostSession, new SessionRequest(mac, challenge.ChallengeId, Convert.ToBase64String(new byte[32])));
            Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        }
        for (var i = 0; i < 20; i++)
        {
            var other = $"02:54:53:99:00:{i:x2}";
            var challenge = (await (await http.PostAsJsonAsync(Routes.HostChallenge, new ChallengeRequest(other))).Content.ReadFromJsonAsync<ChallengeResponse>())!;
            Assert.That((await http.PostAsJsonAsync(Routes.HostSession, new SessionRequest(other, challenge.ChallengeId, Convert.ToBase64String(new byte[32])))).StatusCode,
                Is.EqualTo(HttpStatusCode.Unauthorized));
        }
        var after = (await server.Store.Units.GetUnitAsync(mac))!;
        Assert.That((after.LastSeen, after.LastError, after.State), Is.EqualTo((before.LastSeen, before.LastError, before.State)), "anyone can send a wrong proof");
        var refusals = (await server.Store.ListAuditAsync(1000)).Where(a => a.Action == RefusalAudit.Action).ToList();
        Assert.That(refusals.Count(a => a.Target == mac), Is.EqualTo(1), "the first refusal of a period is written at once, the rest counted");
        Assert.That(refusals.Count(a => a.Target == RefusalAudit.UnregisteredKey), Is.EqualTo(1), "invented MACs are counted together per source");

        await server.App.Services.GetRequiredService<RefusalAudit>().FlushAsync(all: true);
        var summaries = (await server.Store.ListAuditAsync(1000)).Where(a => a.Action == RefusalAudit.Action).ToList();
        Assert.That(summaries.Count(a => a.Target == mac), Is.EqualTo(2));
        Assert.That(summaries.Single(a => a.Target == mac && a.Detail!.Contains("refusals")).Detail, Does.Contain("20 refusals").And.Contain("127.0.0.1"));
        Assert.That(summaries.Single(a => a.Target == RefusalAudit.UnregisteredKey && a.Detail!.Contains("refusals")).Detail, Does.Contain("20 refusals"));
    }

    [Test]
    public async Task A_session_request_without_a_proof_is_400_and_leaves_the_challenge_usable()
    {
        await using var server = await TestServer.StartAsync();
        var units = await server.AddUnitsAsync(1);
        var mac = units[0].Mac;
        using var http = server.PinnedHttp();
        var challenge = (await (await http.PostAsJsonAsync(Routes.HostChallenge, new ChallengeRequest(mac))).Content.ReadFromJsonAsync<ChallengeResponse>())!;
        var bad = await http.PostAsync(Routes.HostSession, new StringContent($$"""{"mac":"{{mac}}","challengeId":"{{challenge.ChallengeId}}","proof":null}""", Encoding.UTF8, "application/json"));
        Assert.That(bad.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(await bad.Content.ReadAsStringAsync(), Does.Contain("proof"));
        var secret = UnitCredentials.DeriveUnitSecret(server.UnitKey, mac);
        var proof = UnitCredentials.ComputeProof(secret, ProofPurpose.Host, mac, challenge.ChallengeId, challenge.Nonce);
        Assert.That((await http.PostAsJsonAsync(Routes.HostSession, new SessionRequest(mac, challenge.ChallengeId, proof))).StatusCode, Is.EqualTo(HttpStatusCode.OK),
            "the malformed request did not use the challenge up");
    }

    [Test]
    public async Task A_challenge_of_one_purpose_opens_no_session_of_another_and_stays_usable_for_its_own()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = server.PinnedHttp();
        var secret = UnitCredentials.DeriveUnitSecret(server.UnitKey, mac);
        // a provisional challenge taken to the host session, with a proof computed for the host over it: the right unit,
        // the right secret, the wrong kind of challenge
        var provisional = (await (await http.PostAsJsonAsync(Routes.ProvisioningChallenge, new ChallengeRequest(mac))).Content.ReadFromJsonAsync<ChallengeResponse>())!;
        var before = HostileInputTests.Snapshot(server);
        using (var refused = await http.PostAsJsonAsync(Routes.HostSession,
                   new SessionRequest(mac, provisional.ChallengeId, UnitCredentials.ComputeProof(secret, ProofPurpose.Host, mac, provisional.ChallengeId, provisional.Nonce))))
        {
            Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
            Assert.That(await refused.Content.ReadAsStringAsync(), Does.Contain(ProblemTypes.ChallengeExpired));
        }
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "the refusal took nothing and changed nothing");
        using var own = await http.PostAsJsonAsync(Routes.ProvisioningSession,
            new SessionRequest(mac, provisional.ChallengeId, UnitCredentials.ComputeProof(secret, ProofPurpose.Provisional, mac, provisional.ChallengeId, provisional.Nonce)));
        Assert.That(own.StatusCode, Is.EqualTo(HttpStatusCode.OK), "the challenge still opens the session it was made for");
    }
}
