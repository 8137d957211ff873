using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using Tsunagu.Firmware.Net;
using Tsunagu.Firmware.Storage;
using Tsunagu.Firmware.Supervision;
using Tsunagu.Firmware.Updates;
using Tsunagu.Hal.Simulated;
using Tsunagu.Protocol;
using static Tsunagu.UnitTests.Supervision.SimulatedUnits;

namespace Tsunagu.UnitTests.Supervision;

/// <summary>
/// The real supervisor and states against an in-process host on virtual time that hands out steady-check nonces: a Ready
/// unit's periodic check that finds nothing to do is one request; whenever the host answers that something changed, does
/// not know the nonce, is an older host, or the unit has a forced check, the unit runs the full exchange and is Ready again.
/// </summary>
public class SteadyCheckTests
{
    private static readonly DateTimeOffset Start = new(2026, 11, 1, 12, 0, 0, TimeSpan.Zero);

    /// <summary>A host that checks the steady proof over the nonce it handed out and takes each nonce once.</summary>
    public sealed class Host(VirtualTime time) : HttpMessageHandler
    {
        private readonly ConcurrentDictionary<string, string> _nonces = new();
        private readonly ConcurrentDictionary<string, DateTimeOffset> _expiries = new();
        private int _issued;

        public ConcurrentQueue<(DateTimeOffset At, string Path, int Status, bool? Steady)> Requests { get; } = new();

        /// <summary>Answers the next steady check "something changed" (once).</summary>
        public volatile bool Changed;

        /// <summary>An older host: no nonce in the ready answer, no steady-check route.</summary>
        public bool Old { get; init; }

        /// <summary>While set, steady checks are answered 503.</summary>
        public volatile bool Unavailable;

        /// <summary>While not zero, steady checks are answered with this status; -1: no answer at all.</summary>
        public volatile int Failing;

        /// <summary>The answers of the next steady checks, one each, before <see cref="Failing"/>: a status, -1 no answer, 0 the real answer.</summary>
        public ConcurrentQueue<int> Script { get; } = new();

        /// <summary>The nonce id each steady check was sent with, in order.</summary>
        public ConcurrentQueue<string> SteadyNonces { get; } = new();

        /// <summary>Steady checks sent with a nonce whose expiry had passed by the host's time.</summary>
        public int ExpiredSent;

        /// <summary>The next steady check is taken (its nonce used up) but its answer is lost on the way (once).</summary>
        public volatile bool LoseNextAnswer;

        /// <summary>The power-on spread the steady answers carry (null: none).</summary>
        public int? Spread { get; set; }

        public int Count(string path) => Requests.Count(r => r.Path == path);

        /// <summary>How far the unit's wall clock (the supervisor's transition times) is off the host's.</summary>
        public TimeSpan Skew => time.WallSkew;

        /// <summary>The host forgets every nonce it handed out (as after its database was restored).</summary>
        public void ForgetNonces() => _nonces.Clear();

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var path = request.RequestUri!.AbsolutePath;
            try
            {
                var (response, steady) = await AnswerAsync(request, path, time.TrueNow, cancellationToken);
                Requests.Enqueue((time.TrueNow, path, (int)response.StatusCode, steady));
                return response;
            }
            catch (HttpRequestException)
            {
                Requests.Enqueue((time.TrueNow, path, 0, null));
                throw;
            }
        }

        private CheckNonce Issue(DateTimeOffset now)
        {
            var id = $"n{Interlocked.Increment(ref _issued)}";
            var nonce = UnitCredentials.NewNonce();
            _nonces[id] = nonce;
            _expiries[id] = now + TimeSpan.FromHours(1);
            return new CheckNonce(id, nonce, _expiries[id]);
        }

        private async Task<(HttpResponseMessage, bool?)> AnswerAsync(HttpRequestMessage request, string path, DateTimeOffset now, CancellationToken ct)
        {
            switch (path)
            {
                case Routes.HostChallenge:
                    return (Json(new ChallengeResponse("c", "n", now + TimeSpan.FromMinutes(1)), ProtocolJson.Default.ChallengeResponse), null);
                case Routes.HostSession:
                    return (Json(new SessionResponse($"t{now.Ticks}", TokenScope.Host, now + TimeSpan.FromMinutes(30), "025453000001", 1800),
                        ProtocolJson.Default.SessionResponse), null);
                case Routes.VersionCheck:
                    return (Json(new VersionCheckResponse("p1", "p1", null, UpdatePolicy.Default, 600, ServerTime: now), ProtocolJson.Default.VersionCheckResponse), null);
                case Routes.ServiceConfig:
                    return (Problem(HttpStatusCode.NotFound, ProblemTypes.NotFound, "no service configuration"), null);
                case Routes.Ready:
                    return (Json(new ReadyAck("p1", 600, Old ? null : Issue(now)), ProtocolJson.Default.ReadyAck), null);
                case Routes.SteadyCheck when !Old:
                    var body = await request.Content!.ReadFromJsonAsync(ProtocolJson.Default.SteadyCheckRequest, ct);
                    if (_expiries.TryGetValue(body!.NonceId, out var expires) && now >= expires)
                    {
                        Interlocked.Increment(ref ExpiredSent);
                    }
                    SteadyNonces.Enqueue(body.NonceId);
                    if (Unavailable) { return (Problem(HttpStatusCode.ServiceUnavailable, "about:blank", "busy"), null); }
                    switch (Script.TryDequeue(out var scripted) ? scripted : Failing)
                    {
                        case -1: throw new HttpRequestException("no answer");
                        case > 0 and var failing: return (Problem((HttpStatusCode)failing, "about:blank", "fault"), null);
                    }
                    Assert.That(body!.Mac, Is.EqualTo(Mac));
                    Assert.That(body.Inventory.Applications, Does.ContainKey("vcp"), "the unit says what it runs");
                    if (now >= expires || !_nonces.TryRemove(body.NonceId, out var nonce) ||
                        !UnitCredentials.VerifyProof(Secret, ProofPurpose.SteadyCheck, Mac, body.NonceId, nonce, body.Proof))
                    {
                        return (Problem(HttpStatusCode.Unauthorized, ProblemTypes.ChallengeExpired, "unknown nonce"), null);
                    }
                    if (LoseNextAnswer)
                    {
                        LoseNextAnswer = false;
                        throw new HttpRequestException("the answer was lost after the host took the nonce");
                    }
                    var changed = Changed;
                    Changed = false;
                    return changed
                        ? (Json(new SteadyCheckResponse(false, 600, now, "changed", PowerOnSpreadSeconds: Spread), ProtocolJson.Default.SteadyCheckResponse), false)
                        : (Json(new SteadyCheckResponse(true, 600, now, null, Issue(now), Spread), ProtocolJson.Default.SteadyCheckResponse), true);
                default:
                    return (Problem(HttpStatusCode.NotFound, ProblemTypes.NotFound, $"no route {path}"), null);
            }
        }
    }

    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = Path.Combine(Path.GetTempPath(), "tsunagu-steady-" + Guid.NewGuid().ToString("N"));

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
    };

    /// <summary>
    /// A unit with stored settings runs against <paramref name="host"/> for <paramref name="minutes"/> virtual minutes;
    /// <paramref name="at"/> is called on every transition with the minutes since the start (to change the host or the unit).
    /// </summary>
    private async Task<List<StateChange>> RunAsync(VirtualTime time, Host host, int minutes, Action<double, Supervisor>? at = null, Action<Supervisor>? setup = null, Action<StateStore>? seed = null)
    {
        var unit = New(_dir);
        await BurnAsync(unit);
        StoreSettings(unit, seed);
        // virtual minutes end the run; the real-time limit only keeps a hung run from hanging the suite
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(10));
        var changes = new List<StateChange>();
        await using var supervisor = new Supervisor(unit.Hardware, Options, time, new Random(7));
        supervisor.Context.Client = new UnitClient(new ScriptedNetwork(host), ["pin"]);
        setup?.Invoke(supervisor);
        supervisor.StateChanged += c =>
        {
            changes.Add(c);
            var elapsed = (time.TrueNow - Start).TotalMinutes;
            at?.Invoke(elapsed, supervisor);
            if (elapsed >= minutes || host.Requests.Count > 2000) { cts.Cancel(); }
        };
        await supervisor.RunAsync(cts.Token);
        Assert.That(host.Requests, Has.Count.LessThanOrEqualTo(2000), "no tight loop");
        Assert.That((time.TrueNow - Start).TotalMinutes, Is.GreaterThanOrEqualTo(minutes), "the virtual minutes ended the run, not the safety limit");
        return changes;
    }

    /// <summary>The requests of each periodic check: from one Ready wait's end (CheckDue) to the next entry of Ready.</summary>
    private static List<List<string>> Checks(Host host, List<StateChange> changes)
    {
        var requests = host.Requests.ToList();
        var skew = changes.Count == 0 ? TimeSpan.Zero : host.Skew;
        var starts = changes.Where(c => c.From == StateId.Ready && c.Outcome == Outcome.CheckDue).Select(c => c.At - skew).ToList();
        return starts.Select((s, i) => requests.Where(r => r.At >= s && (i + 1 >= starts.Count || r.At < starts[i + 1])).Select(r => r.Path).ToList())
            .Where((_, i) => i + 1 < starts.Count)
            .ToList();
    }

    [Test]
    public async Task A_steady_unit_checks_in_one_request_and_stays_Ready()
    {
        var time = new VirtualTime(Start);
        var host = new Host(time);
        var changes = await RunAsync(time, host, 120);

        var checks = Checks(host, changes);
        TestContext.Out.WriteLine($"{checks.Count} periodic checks, {host.Requests.Count} requests; first exchange {host.Requests.Count - checks.Sum(c => c.Count)}");
        Assert.That(checks, Has.Count.GreaterThanOrEqualTo(120 / 11 - 1), "a periodic check at least every interval plus jitter");
        Assert.That(checks, Has.All.EqualTo(new[] { Routes.SteadyCheck }), "each periodic check is exactly one request");
        Assert.That(host.Requests.Where(r => r.Path == Routes.SteadyCheck).Select(r => r.Steady), Has.All.True);
        Assert.That(host.Count(Routes.HostSession), Is.EqualTo(1), "one authentication: the first exchange");
        Assert.That(changes.Where(c => c.From == StateId.SteadyCheck).Select(c => (c.Outcome, c.To)), Has.All.EqualTo((Outcome.NothingToDo, StateId.Ready)));
        Assert.That(changes.Last(c => c.From == StateId.SteadyCheck).Delay, Is.EqualTo(TimeSpan.Zero));
    }

    [Test]
    public async Task A_unit_whose_failed_update_was_reported_still_checks_in_one_request()
    {
        // the failed attempt's report was acknowledged (Report null): the record stays only to count attempts
        var time = new VirtualTime(Start);
        var host = new Host(time);
        var failed = new PendingUpdate("u1", PendingUpdate.Failed, null, 1, InstallId: "i1");
        var changes = await RunAsync(time, host, 60, seed: store => store.Set(StateKeys.PendingUpdate, failed, FirmwareJson.Default.PendingUpdate));

        var checks = Checks(host, changes);
        Assert.That(checks, Is.Not.Empty, "precondition: periodic checks ran");
        Assert.That(checks, Has.All.EqualTo(new[] { Routes.SteadyCheck }), "each periodic check is the one steady request");
        Assert.That(host.Count(Routes.HostSession), Is.EqualTo(1), "one full exchange: the first");
    }

    [TestCase(3)]
    [TestCase(-5)]
    public async Task A_steady_unit_whose_clock_goes_off_is_set_from_the_steady_answer_and_adopts_the_hosts_spread(int skewHours)
    {
        var time = new VirtualTime(Start);
        var host = new Host(time);
        var clock = new SimulatedSystemClock(time, step => time.WallSkew += step);
        var skewed = false;
        int? spread = null;
        var steadyBefore = 0;
        var changes = await RunAsync(time, host, 120, (minutes, supervisor) =>
        {
            // after the first exchange (which ran the version check): the clock jumps, and the host's spread changes
            if (!skewed && minutes >= 30 && supervisor.State == StateId.Ready)
            {
                skewed = true;
                steadyBefore = host.Count(Routes.SteadyCheck);
                time.WallSkew = TimeSpan.FromHours(skewHours);
                host.Spread = 90;
            }
            spread = supervisor.Context.Store?.Get(StateKeys.PowerOnSpread, FirmwareJson.Default.PowerOnSpread)?.Seconds;
        }, setup: s => s.Context.SystemClock = clock);

        Assert.That(skewed && steadyBefore > 0, Is.True, "precondition: the unit was steady before its clock went off");
        Assert.That(host.Count(Routes.HostSession), Is.EqualTo(1), "precondition: no full exchange (no version check) after the first");
        Assert.That(host.Count(Routes.SteadyCheck), Is.GreaterThan(steadyBefore), "steady checks after the clock went off");
        Assert.That(clock.Sets, Has.Count.EqualTo(1), "set once, by the first steady answer after the clock went off");
        Assert.That(time.WallSkew.Duration(), Is.LessThan(TimeSpan.FromSeconds(1)), "the unit's clock shows the host's time again");
        Assert.That(spread, Is.EqualTo(90), "the host's power-on spread reached the steady unit");
        Assert.That(changes.Where(c => c.From == StateId.SteadyCheck).Select(c => c.Outcome), Has.All.EqualTo(Outcome.NothingToDo));
    }

    public sealed record Case(string Name, Action<Host, Supervisor> Change)
    {
        public override string ToString() => Name;
    }

    public static IEnumerable<Case> Changes()
    {
        yield return new Case("the host answers that something changed", (host, _) => host.Changed = true);
        yield return new Case("the host no longer knows the nonce", (host, _) => host.ForgetNonces());
        yield return new Case("a forced check", (_, supervisor) => supervisor.RequestCheck(forced: true));
    }

    [TestCaseSource(nameof(Changes))]
    public async Task After_a_change_the_unit_runs_the_full_exchange_once_and_is_steady_again(Case c)
    {
        var time = new VirtualTime(Start);
        var host = new Host(time);
        var changed = false;
        var changes = await RunAsync(time, host, 120, (minutes, supervisor) =>
        {
            if (!changed && minutes >= 45 && supervisor.State == StateId.Ready)
            {
                changed = true;
                c.Change(host, supervisor);
            }
        });

        var checks = Checks(host, changes);
        var full = checks.Where(k => k.Contains(Routes.VersionCheck)).ToList();
        TestContext.Out.WriteLine($"{c.Name}: {checks.Count} checks; " + string.Join(" | ", checks.Select(k => string.Join(",", k.Select(p => p.Split('/').Last())))));
        Assert.That(full, Has.Count.EqualTo(1), "the change is answered by exactly one full exchange");
        // the full exchange: at most the steady check, challenge, session, version check, configuration, ready
        Assert.That(checks, Has.All.Count.InRange(1, 6), "requests per check stay bounded");
        Assert.That(full.Select(k => k.Last()), Has.All.EqualTo(Routes.Ready), "each full exchange ends with the ready report");
        Assert.That(checks.Last(), Is.EqualTo(new[] { Routes.SteadyCheck }), "steady again afterwards");
        Assert.That(changes.Count(ch => ch.To == StateId.Ready), Is.GreaterThanOrEqualTo(checks.Count + 1), "every check ends Ready");
        Assert.That(changes.Where(ch => ch.From == StateId.SteadyCheck && ch.Outcome == Outcome.FullCheckDue).Select(ch => ch.To), Has.All.EqualTo(StateId.HostSession));
    }

    [Test]
    public async Task Against_an_older_host_the_unit_never_asks_a_steady_check_and_runs_the_full_exchange()
    {
        var time = new VirtualTime(Start);
        var host = new Host(time) { Old = true };
        var changes = await RunAsync(time, host, 60);

        var checks = Checks(host, changes);
        Assert.That(host.Count(Routes.SteadyCheck), Is.Zero, "no nonce from the host: no steady check asked");
        Assert.That(checks, Has.Count.GreaterThanOrEqualTo(4));
        Assert.That(checks, Has.All.Contains(Routes.VersionCheck).And.All.Contains(Routes.Ready));
        Assert.That(checks, Has.All.Count.LessThanOrEqualTo(5));
    }

    [Test]
    public async Task A_steady_check_the_host_cannot_answer_is_the_same_one_request_again_with_the_kept_nonce()
    {
        var time = new VirtualTime(Start);
        var host = new Host(time);
        var changes = await RunAsync(time, host, 90, (minutes, _) => host.Unavailable = minutes is >= 30 and < 40);

        var retries = changes.Where(ch => ch.From == StateId.SteadyCheck && ch.Outcome == Outcome.Retry).ToList();
        Assert.That(retries, Is.Not.Empty, "precondition: a periodic check fell in the outage");
        Assert.That(retries.Select(r => r.To), Has.All.EqualTo(StateId.SteadyCheck), "503: the steady check again, not the full exchange");
        Assert.That(retries.Select(r => r.Delay), Has.All.GreaterThanOrEqualTo(Options.BackoffBase), "after the retry backoff");
        Assert.That(host.Requests.Count(r => r.Path == Routes.SteadyCheck && r.Status == 503), Is.EqualTo(retries.Count), "one request per retry");
        Assert.That(host.Count(Routes.HostSession), Is.EqualTo(1), "no full exchange: the kept nonce was taken after the outage");
        Assert.That(host.Requests.Where(r => r.Path == Routes.SteadyCheck && r.Status == 200).Select(r => r.Steady), Has.All.True);
        Assert.That(host.Requests.Where(r => r.At >= Start.AddMinutes(40)).Select(r => r.Path), Has.All.EqualTo(Routes.SteadyCheck));
        var exits = changes.Where(ch => ch.From == StateId.SteadyCheck).Select(ch => (ch.Outcome, ch.To)).ToList();
        Assert.That(exits, Has.All.EqualTo((Outcome.NothingToDo, StateId.Ready)).Or.EqualTo((Outcome.Retry, StateId.SteadyCheck)),
            "a steady check either found nothing to do or was retried: never the full exchange");
        var afterOutage = exits.Skip(exits.LastIndexOf((Outcome.Retry, StateId.SteadyCheck)) + 1).ToList();
        Assert.That(afterOutage, Is.Not.Empty.And.All.EqualTo((Outcome.NothingToDo, StateId.Ready)), "after the outage every steady check finds nothing to do");
    }

    [TestCase(500)]
    [TestCase(502)]
    public async Task A_steady_route_that_keeps_failing_is_asked_at_most_AttemptLimit_times_per_nonce_then_the_full_exchange_runs(int status)
    {
        var time = new VirtualTime(Start);
        var host = new Host(time);
        var changes = await RunAsync(time, host, 150, (minutes, _) => host.Failing = minutes is >= 30 and < 100 ? status : 0);

        var window = host.Requests.Where(r => r.At >= Start.AddMinutes(30) && r.At < Start.AddMinutes(100)).ToList();
        var runs = new List<(int Failures, string? Next)>();
        for (var i = 0; i < window.Count; i++)
        {
            if (window[i].Path != Routes.SteadyCheck || window[i].Status == 200) { continue; }
            var end = i;
            while (end < window.Count && window[end].Path == Routes.SteadyCheck && window[end].Status != 200) { end++; }
            runs.Add((end - i, end < window.Count ? window[end].Path : null));
            i = end;
        }
        TestContext.Out.WriteLine(string.Join(", ", runs));
        Assert.That(runs, Has.Count.GreaterThanOrEqualTo(3), "precondition: several periodic checks met the failing route");
        Assert.That(runs.Select(r => r.Failures), Has.All.LessThanOrEqualTo(SteadyCheckState.AttemptLimit), "never more attempts with one nonce");
        Assert.That(runs.Where(r => r.Next is not null).Select(r => r.Failures), Has.All.EqualTo(SteadyCheckState.AttemptLimit),
            "each failing run ends at the limit");
        Assert.That(runs.Where(r => r.Next is not null).Select(r => r.Next), Has.All.AnyOf(Routes.HostChallenge, Routes.HostSession, Routes.VersionCheck),
            "and the full exchange follows at once (authenticating again only when the session token ran out)");
        Assert.That(window.Count(r => r.Path == Routes.Ready && r.Status == 200), Is.GreaterThanOrEqualTo(runs.Count - 1),
            "each full exchange reached the host and reported the unit ready");
        Assert.That(changes.Count(ch => ch.From == StateId.SteadyCheck && ch.Outcome == Outcome.FullCheckDue && ch.To == StateId.HostSession),
            Is.EqualTo(runs.Count(r => r.Failures == SteadyCheckState.AttemptLimit)));
        Assert.That(Checks(host, changes).Last(), Is.EqualTo(new[] { Routes.SteadyCheck }), "one request again once the route answers");
    }

    /// <summary>
    /// Busy answers (429, 503) and no answer at all between server errors on one nonce: the unit keeps the nonce through
    /// all of them, and only the answered server errors count towards <see cref="SteadyCheckState.AttemptLimit"/>. The
    /// script is the answers of the steady checks after minute 30, in order (-1 no answer, 0 the host's real answer).
    /// </summary>
    [TestCase(new[] { 503, 500, -1, 429, 500, 503, -1, 502 }, TestName = "{m}(busy, none and 429 between three server errors)")]
    [TestCase(new[] { 500, -1, -1, 500, 503, 503, 503, 503, 500 }, TestName = "{m}(a long busy spell before the third server error)")]
    [TestCase(new[] { 503, -1, 500, 429, 500, 503, 0 }, TestName = "{m}(two server errors, then the answer)")]
    public async Task Busy_and_unanswered_steady_checks_between_server_errors_keep_the_nonce_and_only_the_errors_count_towards_the_limit(int[] script)
    {
        var time = new VirtualTime(Start);
        var host = new Host(time);
        var armedAt = -1;
        var changes = await RunAsync(time, host, 120, (minutes, _) =>
        {
            if (minutes < 30 || armedAt >= 0) { return; }
            armedAt = host.SteadyNonces.Count;
            foreach (var answer in script) { host.Script.Enqueue(answer); }
        });

        Assert.That(armedAt, Is.GreaterThan(0), "precondition: steady checks before the script");
        Assert.That(host.Script, Is.Empty, "every scripted answer was given");
        var steady = host.Requests.Where(r => r.Path == Routes.SteadyCheck).ToList();
        var nonces = host.SteadyNonces.ToList();
        var scripted = steady.Skip(armedAt).Take(script.Length).ToList();
        Assert.That(scripted.Select(r => r.Status), Is.EqualTo(script.Select(a => a switch { -1 => 0, 0 => 200, _ => a })),
            "each scripted answer went to one request of the unit, in order: none skipped, none asked twice");
        Assert.That(nonces.Skip(armedAt).Take(script.Length).Distinct(), Has.Exactly(1).Items, "one nonce through every busy answer, no answer and server error");
        var errors = script.Count(a => a >= 500 && a != 503);
        // the request right after the last scripted one (the full exchange may start at the same virtual instant)
        var all = host.Requests.ToList();
        var last = all.Select((r, i) => (r, i)).Where(x => x.r.Path == Routes.SteadyCheck).ElementAt(armedAt + script.Length - 1).i;
        var following = all.ElementAtOrDefault(last + 1).Path;
        if (errors >= SteadyCheckState.AttemptLimit)
        {
            Assert.That(following, Is.AnyOf(Routes.HostChallenge, Routes.HostSession, Routes.VersionCheck),
                $"the {SteadyCheckState.AttemptLimit}rd server error, not a busy answer before it, gave way to the full exchange at once");
            Assert.That(nonces, Has.Count.GreaterThan(armedAt + script.Length), "a steady check after the full exchange");
            Assert.That(nonces[armedAt + script.Length], Is.Not.EqualTo(nonces[armedAt]), "the next steady check has the full exchange's new nonce");
        }
        else
        {
            Assert.That(scripted[^1].Steady, Is.True, "fewer server errors than the limit: the kept nonce was taken");
            Assert.That(host.Requests.Count(r => r.Path == Routes.HostSession), Is.EqualTo(1), "and no full exchange ran");
        }
        Assert.That(host.ExpiredSent, Is.Zero);
        Assert.That(Checks(host, changes).Last(), Is.EqualTo(new[] { Routes.SteadyCheck }), "one request again at the end");
    }

    [TestCase(503)]
    [TestCase(-1, TestName = "{m}(no answer)")]
    public async Task A_busy_or_unreachable_host_is_asked_with_the_kept_nonce_until_the_nonce_expires_and_never_with_an_expired_one(int status)
    {
        var time = new VirtualTime(Start);
        var host = new Host(time);
        var changes = await RunAsync(time, host, 200, (minutes, _) => host.Failing = minutes is >= 30 and < 170 ? status : 0);

        var busy = host.Requests.Count(r => r.Path == Routes.SteadyCheck && r.Status == Math.Max(status, 0));
        var sessions = host.Requests.Where(r => r.Path == Routes.HostSession).Select(r => r.At).ToList();
        TestContext.Out.WriteLine($"{busy} busy answers; host sessions at {string.Join(", ", sessions.Select(s => (s - Start).TotalMinutes.ToString("0.0")))} min");
        Assert.That(busy, Is.GreaterThan(2 * SteadyCheckState.AttemptLimit), "busy answers and no answer are not counted against the attempt limit");
        Assert.That(host.ExpiredSent, Is.Zero, "the unit never sends a nonce past its expiry");
        Assert.That(host.Requests.Count(r => r.Status == 401), Is.Zero, "so no steady check is refused");
        Assert.That(sessions.Count(s => s >= Start.AddMinutes(30) && s < Start.AddMinutes(170)), Is.InRange(1, 3),
            "a full exchange once the nonce expires (every hour of the 140-minute outage), no more");
        Assert.That(changes.Where(ch => ch.From == StateId.SteadyCheck && ch.Outcome == Outcome.Retry).Select(ch => ch.To), Has.All.EqualTo(StateId.SteadyCheck));
        Assert.That(Checks(host, changes).Last(), Is.EqualTo(new[] { Routes.SteadyCheck }), "one request again after the outage");
    }

    [Test]
    public async Task A_steady_check_the_host_refuses_drops_the_nonce_and_runs_the_full_exchange()
    {
        var time = new VirtualTime(Start);
        var host = new Host(time);
        var forgot = false;
        var changes = await RunAsync(time, host, 60, (minutes, supervisor) =>
        {
            if (!forgot && minutes >= 30 && supervisor.State == StateId.Ready) { forgot = true; host.ForgetNonces(); }
        });

        Assert.That(host.Requests.Count(r => r.Path == Routes.SteadyCheck && r.Status == 401), Is.EqualTo(1), "the refused nonce is not sent again");
        Assert.That(changes.Where(ch => ch.From == StateId.SteadyCheck && ch.Outcome == Outcome.FullCheckDue).Select(ch => ch.To), Is.EqualTo(new[] { StateId.HostSession }));
        Assert.That(host.Count(Routes.HostSession), Is.EqualTo(2), "the first exchange and the one after the refusal");
    }

    [Test]
    public async Task A_steady_check_whose_answer_was_lost_after_the_host_took_the_nonce_is_refused_at_the_retry_and_one_full_exchange_follows()
    {
        var time = new VirtualTime(Start);
        var host = new Host(time);
        var lost = false;
        var changes = await RunAsync(time, host, 60, (minutes, supervisor) =>
        {
            if (!lost && minutes >= 30 && supervisor.State == StateId.Ready) { lost = true; host.LoseNextAnswer = true; }
        });

        Assert.That(lost && !host.LoseNextAnswer, Is.True, "precondition: a steady check's answer was lost");
        Assert.That(changes.Count(ch => ch.From == StateId.SteadyCheck && ch.Outcome == Outcome.Retry), Is.EqualTo(1), "no answer: the same request once more");
        Assert.That(host.Requests.Count(r => r.Path == Routes.SteadyCheck && r.Status == 401), Is.EqualTo(1), "the retry's nonce was used: refused once");
        Assert.That(host.Count(Routes.HostSession), Is.EqualTo(2), "the first exchange and exactly one after the refusal");
        Assert.That(Checks(host, changes).Last(), Is.EqualTo(new[] { Routes.SteadyCheck }), "steady again afterwards");
    }

    public sealed record OwnCase(string Name, Action<SupervisorContext, SimulatedUnit, string> Arrange)
    {
        public override string ToString() => Name;
    }

    public static IEnumerable<OwnCase> SomethingOfItsOwn()
    {
        yield return new OwnCase("damaged applications", (ctx, _, _) => ctx.DamagedApps = [new AppDamage("vcp", "1.0.0", "a file differs", null)]);
        yield return new OwnCase("an update in flight", (ctx, _, _) =>
            ctx.RequireStore().Set(StateKeys.PendingUpdate, new PendingUpdate("u1", PendingUpdate.Switching, null, 1), FirmwareJson.Default.PendingUpdate));
        yield return new OwnCase("a failed update with its report unsent", (ctx, _, _) =>
            ctx.RequireStore().Set(StateKeys.PendingUpdate, new PendingUpdate("u1", PendingUpdate.Failed, new UpdateReport("u1", false, "a script failed", new Inventory("r1", "os 1", new Dictionary<string, string> { ["vcp"] = "1.0.0" })), 1),
                FirmwareJson.Default.PendingUpdate));
        yield return new OwnCase("an install medium not checked yet", (_, unit, dir) =>
        {
            var image = Path.Combine(dir, "medium.img");
            File.WriteAllBytes(image, [1, 2, 3]);
            unit.Media.Insert(image);
        });
        yield return new OwnCase("an applied configuration that failed", (ctx, _, _) =>
            ctx.RequireStore().Set(StateKeys.AppliedConfig, new AppliedConfig(3, true, "nft: syntax error"), FirmwareJson.Default.AppliedConfig));
        yield return new OwnCase("no stored settings", (ctx, _, _) => ctx.Settings = null);
    }

    [TestCaseSource(nameof(SomethingOfItsOwn))]
    public async Task A_unit_with_something_of_its_own_asks_nothing_and_keeps_its_nonce(OwnCase c)
    {
        var unit = New(_dir);
        Directory.CreateDirectory(unit.Data.Root);
        var nonce = new CheckNonce("n1", "x", Start.AddHours(1));
        var ctx = new SupervisorContext(unit.Hardware, Options, new VirtualTime(Start), new Random(1), _ => { })
        {
            Store = StateStore.Open(unit.Data.Root),
            Settings = Settings,
            CheckNonce = nonce,
        };
        try
        {
            await unit.Hardware.Wan.UpAsync(Tsunagu.Hal.LinkRole.Main, new WanAccount("pppoe", "u", "p"), CancellationToken.None);
            c.Arrange(ctx, unit, _dir);
            // no Client: any request would throw
            Assert.That(await new SteadyCheckState().EnterAsync(ctx, CancellationToken.None), Is.EqualTo(Outcome.FullCheckDue), c.Name);
            Assert.That(ctx.CheckNonce, Is.SameAs(nonce), "no request: the nonce is kept");
        }
        finally
        {
            ctx.Store.Dispose();
        }
    }

    [Test]
    public async Task A_unit_with_something_to_report_asks_nothing_and_runs_the_full_exchange()
    {
        var unit = New(_dir);
        Directory.CreateDirectory(unit.Data.Root);
        var ctx = new SupervisorContext(unit.Hardware, Options, new VirtualTime(Start), new Random(1), _ => { })
        {
            Store = StateStore.Open(unit.Data.Root),
            Settings = Settings,
        };
        try
        {
            await unit.Hardware.Wan.UpAsync(Tsunagu.Hal.LinkRole.Main, new WanAccount("pppoe", "u", "p"), CancellationToken.None);
            // no Client: any request would throw
            Assert.That(await new SteadyCheckState().EnterAsync(ctx, CancellationToken.None), Is.EqualTo(Outcome.FullCheckDue), "no nonce");
            ctx.CheckNonce = new CheckNonce("n1", "x", Start.AddHours(1));
            ctx.DeferredLookAt = Start.AddMinutes(5);
            Assert.That(await new SteadyCheckState().EnterAsync(ctx, CancellationToken.None), Is.EqualTo(Outcome.FullCheckDue), "a deferred update");
            ctx.DeferredLookAt = null;
            ctx.Store.Set(StateKeys.AppliedConfig, new AppliedConfig(3, false, null), FirmwareJson.Default.AppliedConfig);
            Assert.That(await new SteadyCheckState().EnterAsync(ctx, CancellationToken.None), Is.EqualTo(Outcome.FullCheckDue), "a configuration not acknowledged");
            ctx.Store.Set(StateKeys.AppliedConfig, new AppliedConfig(3, true, null), FirmwareJson.Default.AppliedConfig);
            ctx.RequestCheck(forced: true);
            Assert.That(await new SteadyCheckState().EnterAsync(ctx, CancellationToken.None), Is.EqualTo(Outcome.FullCheckDue), "a forced check");
            Assert.That(ctx.TakeForced(), Is.True, "the forced check is left for the version check");
            Assert.That(ctx.CheckNonce, Is.Not.Null, "no request: the nonce is kept");
            await unit.Hardware.Wan.DownAsync(CancellationToken.None);
            Assert.That(await new SteadyCheckState().EnterAsync(ctx, CancellationToken.None), Is.EqualTo(Outcome.LinkLost));
        }
        finally
        {
            ctx.Store.Dispose();
        }
    }
}
