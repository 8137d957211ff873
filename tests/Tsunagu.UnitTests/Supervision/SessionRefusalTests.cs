using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using Tsunagu.Firmware.Net;
using Tsunagu.Firmware.Supervision;
using Tsunagu.Hal.Simulated;
using Tsunagu.Protocol;
using static Tsunagu.UnitTests.Supervision.SimulatedUnits;

namespace Tsunagu.UnitTests.Supervision;

/// <summary>
/// The real supervisor and states against an in-process host on virtual time: a token the unit believes valid is
/// refused (the host's token key was replaced), or the unit's wall clock is an hour off the host's. The unit
/// authenticates again after a backoff, judges lifetimes by what the host said on its monotonic clock, and its
/// requests over many virtual minutes stay bounded.
/// </summary>
public partial class SessionRefusalTests
{
    private static readonly DateTimeOffset Start = new(2026, 11, 1, 12, 0, 0, TimeSpan.Zero);

    /// <summary>
    /// A host on the true time: issues tokens for <see cref="Lifetime"/>, accepts only tokens of the current key
    /// generation that have not expired by its clock, and records every request with its status.
    /// </summary>
    private sealed class Host(VirtualTime time) : HttpMessageHandler
    {
        private readonly ConcurrentDictionary<string, (int Generation, DateTimeOffset Expires)> _tokens = new();
        private int _generation;
        private int _issued;

        public TimeSpan Lifetime { get; init; } = TimeSpan.FromMinutes(30);
        public ConcurrentQueue<(DateTimeOffset At, string Path, int Status)> Requests { get; } = new();

        /// <summary>From this (true) time on, the token key is replaced once: every token issued before is refused.</summary>
        public DateTimeOffset? RotateAt { get; init; }

        /// <summary>Before this (true) time, every token is refused, even a new one (as by a replica with another key).</summary>
        public DateTimeOffset? RefuseAllBefore { get; init; }

        public int Rotations { get; private set; }

        public int Count(string path, int? status = null) => Requests.Count(r => r.Path == path && (status is null || r.Status == status));

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var now = time.TrueNow;
            if (RotateAt is { } at && now >= at && Rotations == 0)
            {
                Interlocked.Increment(ref _generation);
                Rotations++;
            }
            var path = request.RequestUri!.AbsolutePath;
            var response = await AnswerAsync(request, path, now, cancellationToken);
            Requests.Enqueue((now, path, (int)response.StatusCode));
            return response;
        }

        private async Task<HttpResponseMessage> AnswerAsync(HttpRequestMessage request, string path, DateTimeOffset now, CancellationToken ct)
        {
            switch (path)
            {
                case Routes.HostChallenge:
                    return Json(new ChallengeResponse("c", "n", now + TimeSpan.FromMinutes(1)), ProtocolJson.Default.ChallengeResponse);
                case Routes.HostSession:
                    var body = await request.Content!.ReadFromJsonAsync(ProtocolJson.Default.SessionRequest, ct);
                    Assert.That(body!.Mac, Is.EqualTo(Mac));
                    var token = $"t{Interlocked.Increment(ref _issued)}";
                    _tokens[token] = (_generation, now + Lifetime);
                    return Json(new SessionResponse(token, TokenScope.Host, now + Lifetime, "025453000001", (long)Lifetime.TotalSeconds),
                        ProtocolJson.Default.SessionResponse);
            }
            var bearer = request.Headers.Authorization?.Parameter;
            if (bearer is null || (RefuseAllBefore is { } until && now < until) || !_tokens.TryGetValue(bearer, out var t) || t.Generation != _generation || t.Expires <= now)
            {
                return Problem(HttpStatusCode.Unauthorized, ProblemTypes.InvalidToken, "token signature invalid or expired");
            }
            return path switch
            {
                Routes.VersionCheck => Json(new VersionCheckResponse("p1", "p1", null, UpdatePolicy.Default, 600, ServerTime: now), ProtocolJson.Default.VersionCheckResponse),
                Routes.ServiceConfig => Problem(HttpStatusCode.NotFound, ProblemTypes.NotFound, "no service configuration"),
                Routes.Ready => Json(new ReadyAck("p1", 600), ProtocolJson.Default.ReadyAck),
                _ => Problem(HttpStatusCode.NotFound, ProblemTypes.NotFound, $"no route {path}"),
            };
        }
    }

    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = Path.Combine(Path.GetTempPath(), "tsunagu-session-" + Guid.NewGuid().ToString("N"));

    [TearDown]
    public void TearDown()
    {
        if (Directory.Exists(_dir)) { Directory.Delete(_dir, recursive: true); }
    }

    private static readonly SupervisorOptions Options = new()
    {
        CheckInterval = TimeSpan.FromMinutes(10),
        CheckJitter = 0.1,
        BackoffBase = TimeSpan.FromSeconds(1),
        BackoffCap = TimeSpan.FromMinutes(5),
        TokenRenewMargin = TimeSpan.FromSeconds(30),
    };

    private sealed record Run(List<StateChange> Changes, Host Host, bool RanOut, TimeReading Clock, TimeSpan? WallClockOffset);

    /// <summary>
    /// A unit with stored settings (boot goes to Main) runs against <paramref name="host"/> until <paramref name="minutes"/>
    /// of virtual time have passed, or it has sent <paramref name="requestLimit"/> requests (a tight loop: the run stops).
    /// </summary>
    /// <param name="unit">A unit made by <see cref="NewUnit"/> whose own clocks the supervisor runs on; null: a new unit on <paramref name="time"/>.</param>
    private async Task<Run> RunAsync(VirtualTime time, Host host, int minutes, int requestLimit = 3000, Action<Supervisor>? setup = null,
        SimulatedUnit? unit = null)
    {
        var ownClock = unit is not null;
        unit ??= NewUnit("unit", null);
        await BurnAsync(unit);
        StoreSettings(unit);

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var changes = new List<StateChange>();
        var ranOut = false;
        await using var supervisor = new Supervisor(unit.Hardware, Options, ownClock ? unit.Time : time, new Random(7));
        if (ownClock) { supervisor.Context.SystemClock = unit.SystemClock; }
        supervisor.Context.Client = new UnitClient(new ScriptedNetwork(host), ["pin"]);
        setup?.Invoke(supervisor);
        supervisor.StateChanged += c =>
        {
            changes.Add(c);
            if (time.TrueNow - Start >= TimeSpan.FromMinutes(minutes)) { cts.Cancel(); }
            if (host.Requests.Count >= requestLimit) { ranOut = true; cts.Cancel(); }
        };
        await supervisor.RunAsync(cts.Token);
        return new Run(changes, host, ranOut || time.TrueNow - Start < TimeSpan.FromMinutes(minutes), supervisor.Context.Clock.Now(),
            supervisor.Context.Clock.WallClockOffset());
    }

    private SimulatedUnit NewUnit(string name, TimeProvider? time) => New(_dir, name, time: time);

    public sealed record Case(string Name, int SkewHours, bool Rotate)
    {
        public override string ToString() => Name;
    }

    public static IEnumerable<Case> Cases()
    {
        yield return new Case("clocks agree, host key replaced", 0, true);
        yield return new Case("unit 1 h behind, host key replaced", -1, true);
        yield return new Case("unit 1 h ahead, host key replaced", 1, true);
        yield return new Case("unit 1 h behind", -1, false);
        yield return new Case("unit 1 h ahead", 1, false);
        yield return new Case("clocks agree", 0, false);
    }

    [TestCaseSource(nameof(Cases))]
    public async Task A_refused_or_skewed_token_costs_one_reauthentication_and_requests_stay_bounded(Case c)
    {
        const int minutes = 180;
        var time = new VirtualTime(Start) { WallSkew = TimeSpan.FromHours(c.SkewHours) };
        // the key is replaced 35 min in: the token from about 20 min in is still valid for 15 min by every measure the unit has
        var host = new Host(time) { RotateAt = c.Rotate ? Start + TimeSpan.FromMinutes(35) : null };
        var run = await RunAsync(time, host, minutes);

        var checks = host.Count(Routes.VersionCheck);
        var refused = host.Requests.Count(r => r.Status == 401);
        var sessions = host.Count(Routes.HostSession, 200);
        var rotations = c.Rotate ? 1 : 0;
        // a check cycle is at most challenge, session, version check, service configuration, ready: 5 requests;
        // each replaced key adds the refused call and one authentication: 3
        var cycles = (int)Math.Ceiling(minutes / (Options.CheckInterval.TotalMinutes * (1 - Options.CheckJitter))) + 1;
        var bound = 5 * cycles + 3 * rotations;
        TestContext.Out.WriteLine($"{c.Name}: {host.Requests.Count} requests in {minutes} virtual min (bound {bound}), " +
                                  $"{checks} version checks, {sessions} sessions, {refused} refused");
        Assert.Multiple(() =>
        {
            Assert.That(run.RanOut, Is.False, $"no tight loop: the run reached {minutes} virtual minutes below the request limit");
            Assert.That(host.Requests.Count, Is.LessThanOrEqualTo(bound), "requests in the run");
            Assert.That(refused, Is.EqualTo(rotations), "a token is refused only once per replaced key: a valid token is never sent expired");
            Assert.That(sessions, Is.GreaterThanOrEqualTo(minutes / (int)host.Lifetime.TotalMinutes), "renewed at least once per lifetime");
            Assert.That(sessions, Is.LessThanOrEqualTo(checks / 2 + 1 + rotations), "a valid token is reused for later checks, whatever the wall clock says");
            Assert.That(checks, Is.GreaterThanOrEqualTo(minutes / 11), "a periodic check at least every interval plus jitter");
        });
        var list = host.Requests.ToList();
        for (var i = 0; i < list.Count; i++)
        {
            if (list[i].Status != 401) { continue; }
            Assert.That(list.Skip(i + 1).Select(r => r.Path).Take(3), Is.EqualTo(new[] { Routes.HostChallenge, Routes.HostSession, Routes.VersionCheck }),
                "after a refusal the unit drops the token and authenticates before its next call");
        }
        var waits = run.Changes.Where(ch => ch.Outcome == Outcome.SessionExpired).ToList();
        Assert.That(waits, Has.Count.EqualTo(rotations));
        Assert.That(waits.Select(w => w.Delay), Has.All.InRange(Options.BackoffBase, Options.BackoffBase * 2), "floor plus jitter before authenticating again");
        Assert.That(run.Changes.Count(ch => ch.To == StateId.Ready), Is.GreaterThanOrEqualTo(checks - 1), "every check ends Ready");

        // the unit's trusted time is the host's, carried on the monotonic clock, whatever its wall clock says
        Assert.That(run.Clock.FromHost, Is.True);
        Assert.That(run.Clock.Now, Is.EqualTo(time.TrueNow));
        Assert.That(run.Clock.Source, Does.StartWith("the host's time"));
        Assert.That(run.WallClockOffset, Is.EqualTo(TimeSpan.FromHours(c.SkewHours)));
    }

    [Test]
    public async Task Consecutive_refusals_grow_the_backoff_to_the_cap_and_an_accepted_session_resets_it()
    {
        const int minutes = 120;
        var time = new VirtualTime(Start);
        // for the first hour the host refuses every token, new ones too; 75 min in its key is replaced once
        var host = new Host(time) { RefuseAllBefore = Start + TimeSpan.FromMinutes(60), RotateAt = Start + TimeSpan.FromMinutes(75) };
        var run = await RunAsync(time, host, minutes);

        var refusals = run.Changes.Where(ch => ch.Outcome == Outcome.SessionExpired).ToList();
        var first = refusals.Where(ch => ch.At < Start + TimeSpan.FromMinutes(60)).Select(ch => ch.Delay).ToList();
        TestContext.Out.WriteLine($"{first.Count} refusals in the first hour, {host.Requests.Count} requests in {minutes} virtual min; " +
                                  $"waits {string.Join(", ", first.Select(w => $"{w.TotalSeconds:0}"))} s");
        Assert.That(run.RanOut, Is.False, "no tight loop");
        for (var k = 0; k < first.Count; k++)
        {
            var ceiling = Options.BackoffBase + TimeSpan.FromTicks(Math.Min(Options.BackoffCap.Ticks, Options.BackoffBase.Ticks << Math.Min(k, 30)));
            Assert.That(first[k], Is.InRange(Options.BackoffBase, ceiling < Options.BackoffCap ? ceiling : Options.BackoffCap), $"refusal {k + 1}");
        }
        // floor 1 s, jitter doubling from 1 s to the 5 min cap: an hour holds about 30 refusals
        Assert.That(first, Has.Count.InRange(10, 45), "refusals in the first hour");
        Assert.That(first.Skip(first.Count / 2).Average(w => w.TotalSeconds), Is.GreaterThan(Options.BackoffCap.TotalSeconds / 4), "the later waits are near the cap");
        Assert.That(host.Requests.Count(r => r.At < Start + TimeSpan.FromMinutes(60)), Is.LessThanOrEqualTo(3 * 45 + 5),
            "each refusal costs the refused call and one authentication");

        // accepted again, then one replaced key: the backoff was reset, so the unit is back after the floor and the first jitter
        var late = refusals.Where(ch => ch.At >= Start + TimeSpan.FromMinutes(60)).ToList();
        Assert.That(late, Has.Count.EqualTo(1));
        Assert.That(late[0].Delay, Is.InRange(Options.BackoffBase, Options.BackoffBase * 2));
        Assert.That(run.Changes.Last(ch => ch.To == StateId.Ready).At, Is.GreaterThan(late[0].At), "Ready again after the replaced key");
    }
}
