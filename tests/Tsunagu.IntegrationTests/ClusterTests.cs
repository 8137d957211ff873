using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using Tsunagu.Cli.Chaos;
using Tsunagu.Cli.Factory;
using Tsunagu.Cli.Fleet;
using Tsunagu.Demo;
using Tsunagu.Firmware.Supervision;
using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;
using Tsunagu.Server.Cluster;
using Tsunagu.Server.Data;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// Several server processes on one PostgreSQL: the authentication limits hold for the total over the replicas, the
/// once-only work moves when its replica dies, artifacts are sent by nginx, and the whole topology of
/// deploy/cluster.sh (HAProxy, two replicas, nginx, PostgreSQL, Mosquitto) keeps a fleet Ready through the loss of a replica.
/// </summary>
[NonParallelizable]
public class ClusterTests
{
    private static readonly string[] Quiet = ["Logging:LogLevel:Default=Warning"];

    /// <summary>Two replicas (processes) on one fresh database and one data directory, with <paramref name="settings"/>.</summary>
    private static async Task<(ServerProcess[] Replicas, string Database, string Root)> StartReplicasAsync(params string[] settings)
    {
        var root = Path.Combine(Path.GetTempPath(), "tsunagu-replicas-" + Guid.NewGuid().ToString("N")[..12]);
        var database = PostgresServer.Shared.CreateDatabase();
        var all = settings.Concat(Quiet).Append($"Database={database}").Append("Mqtt=embedded").ToList();
        var replicas = new[]
        {
            new ServerProcess(Path.Combine(root, "data"), TestServer.FreePort(), -1, all),
            new ServerProcess(Path.Combine(root, "data"), TestServer.FreePort(), -1, all),
        };
        // the first one makes the keys, the certificate and the schema; the second starts on them
        await replicas[0].StartAsync(CancellationToken.None);
        await replicas[1].StartAsync(CancellationToken.None);
        return (replicas, database, root);
    }

    private static HttpClient Http(int port, string root) =>
        TestServer.PinnedHttp($"https://127.0.0.1:{port}/", OperatorClient.PinFromPemFile(Path.Combine(root, "data", "tls", "server.pem")));

    /// <summary>Waits, when needed, so that a few seconds of requests fall in one clock minute (the limits' window).</summary>
    private static async Task StartOfAMinuteAsync()
    {
        var second = DateTimeOffset.UtcNow.Second;
        if (second > 40) { await Task.Delay(TimeSpan.FromSeconds(61 - second)); }
    }

    [Test]
    public async Task The_per_MAC_and_per_source_limits_hold_for_the_total_over_two_replicas()
    {
        var (replicas, _, root) = await StartReplicasAsync("AuthAttemptsPerMacPerMinute=5", "AuthAttemptsPerSourcePerMinute=12");
        try
        {
            using var first = Http(replicas[0].Port, root);
            using var second = Http(replicas[1].Port, root);
            await StartOfAMinuteAsync();
            var minute = DateTimeOffset.UtcNow.ToUnixTimeSeconds() / 60;
            async Task<HttpStatusCode> Challenge(int i, string mac) =>
                (await (i % 2 == 0 ? first : second).PostAsJsonAsync(Routes.HostChallenge, new ChallengeRequest(mac))).StatusCode;

            // one MAC, ten attempts alternating between the replicas: five in all are let through, not five at each
            var sameMac = new List<HttpStatusCode>();
            for (var i = 0; i < 10; i++) { sameMac.Add(await Challenge(i, "02:54:53:00:10:01")); }
            // ten more from the same source with other MACs: the source has used 10 of its 12, so two more pass
            var otherMacs = new List<HttpStatusCode>();
            for (var i = 0; i < 10; i++) { otherMacs.Add(await Challenge(i, SimulatedFleet.MacFor(0x2000 + i))); }
            Assert.That(DateTimeOffset.UtcNow.ToUnixTimeSeconds() / 60, Is.EqualTo(minute), "the requests fell in one minute (the test waits for the start of one)");

            Assert.Multiple(() =>
            {
                Assert.That(sameMac.Count(s => s == HttpStatusCode.OK), Is.EqualTo(5), $"per-MAC answers: {string.Join(", ", sameMac)}");
                Assert.That(sameMac.Count(s => s == HttpStatusCode.TooManyRequests), Is.EqualTo(5));
                Assert.That(otherMacs.Count(s => s == HttpStatusCode.OK), Is.EqualTo(2), $"per-source answers: {string.Join(", ", otherMacs)}");
                Assert.That(otherMacs.Count(s => s == HttpStatusCode.TooManyRequests), Is.EqualTo(8));
            });
        }
        finally
        {
            foreach (var r in replicas) { await r.DisposeAsync(); }
            Directory.Delete(root, recursive: true);
        }
    }

    [Test]
    public async Task Once_only_work_runs_on_one_replica_and_moves_to_the_other_when_its_holder_is_killed()
    {
        // long enough that a replica stalled by a loaded machine for a few seconds keeps its lease while it lives
        const int lease = 12;
        var (replicas, database, root) = await StartReplicasAsync($"OnceOnlyLeaseSeconds={lease}");
        try
        {
            var store = new TsunaguStore(Database.Parse(database, root), TimeProvider.System);
            async Task<ServerProcess?> HolderAsync()
            {
                if (await store.Cluster.LeaseHolderAsync(ReplicaLease.Name) is not ({ } holder, true)) { return null; }
                var pid = int.Parse(holder.Split('/')[1], CultureInfo.InvariantCulture);
                return replicas.SingleOrDefault(r => r.Pid == pid);
            }
            Task AddExpiredChallengeAsync(string id) => store.Units.AddChallengeAsync(new ChallengeRow
            {
                Id = id, Mac = "02:54:53:00:20:01", Purpose = ProofPurpose.Host, Nonce = "n",
                ExpiresAt = DateTimeOffset.UtcNow.AddMinutes(-5).ToString("O", CultureInfo.InvariantCulture),
            });
            async Task<bool> GoneAsync(string id) => await store.Units.TakeChallengeAsync(id, ProofPurpose.Host) is null;

            await WaitAsync(async () => await HolderAsync() is not null, "one replica to hold the once-only lease", TimeSpan.FromSeconds(30));
            var holder = (await HolderAsync())!;
            var other = replicas.Single(r => r != holder);
            await AddExpiredChallengeAsync("cleanup-before-kill");
            // the holder's round removes it (a take that finds it would remove it too, so look without taking)
            await WaitAsync(() => !ChallengeExists(store, "cleanup-before-kill"), "the holder to clean up an expired challenge", TimeSpan.FromSeconds(3 * lease));

            int holderPid = holder.Pid!.Value, otherPid = other.Pid!.Value;
            await holder.KillAsync(); // SIGKILL: no release of the lease
            // the dead holder's last renewal, by the database's clock (what the takeover is measured against, not the
            // test's clock: a loaded machine delays the test's polling, not the database's timestamps)
            var dead = LeaseRow(store);
            Assert.That(dead.Holder, Does.Contain($"/{holderPid}/"), "nobody else held it while its holder lived");
            await AddExpiredChallengeAsync("cleanup-after-kill");
            var taken = (Holder: "", ExpiresMs: 0L, NowMs: 0L);
            await WaitAsync(() => (taken = LeaseRow(store)).Holder.Contains($"/{otherPid}/", StringComparison.Ordinal),
                "the other replica to take the lease", TimeSpan.FromSeconds(3 * lease + 60));
            Assert.That(await HolderAsync(), Is.SameAs(other));
            await WaitAsync(() => !ChallengeExists(store, "cleanup-after-kill"), "the new holder to clean up", TimeSpan.FromSeconds(3 * lease));
            // the renewal seen first is the taking one unless the test's polling stalled for a renewal period; either way it
            // was made no earlier than the take
            var takenAtMs = taken.ExpiresMs - lease * 1000;
            TestContext.Out.WriteLine($"lease of {lease} s taken over {(takenAtMs - dead.ExpiresMs) / 1000.0:0.00} s after it expired");
            Assert.That(takenAtMs, Is.GreaterThanOrEqualTo(dead.ExpiresMs), "never taken while the dead holder's lease was still valid");
            // how soon after the expiry is the other replica's scheduling (the wait above bounds it); what must hold is the order
            Assert.That(await GoneAsync("cleanup-after-kill"), Is.True);
        }
        finally
        {
            foreach (var r in replicas) { await r.DisposeAsync(); }
            Directory.Delete(root, recursive: true);
        }
    }

    /// <summary>The once-only lease's row and the database's clock, in Unix milliseconds.</summary>
    private static (string Holder, long ExpiresMs, long NowMs) LeaseRow(TsunaguStore store)
    {
        using var c = store.Database.Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = "SELECT holder, expires_at_ms, (extract(epoch FROM clock_timestamp()) * 1000)::bigint FROM leases WHERE name = @name";
        var p = cmd.CreateParameter();
        p.ParameterName = "name";
        p.Value = ReplicaLease.Name;
        cmd.Parameters.Add(p);
        using var row = cmd.ExecuteReader();
        return row.Read() ? (row.GetString(0), row.GetInt64(1), row.GetInt64(2)) : ("", 0, 0);
    }

    private static bool ChallengeExists(TsunaguStore store, string id)
    {
        using var c = store.Database.Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = "SELECT count(*) FROM challenges WHERE id = @id";
        var p = cmd.CreateParameter();
        p.ParameterName = "id";
        p.Value = id;
        cmd.Parameters.Add(p);
        return Convert.ToInt64(cmd.ExecuteScalar(), CultureInfo.InvariantCulture) > 0;
    }

    [Test]
    public async Task With_a_redirect_prefix_the_server_authorizes_the_download_and_leaves_the_bytes_to_the_proxy()
    {
        TestServer.Configure.Value = o => o.ArtifactRedirectPrefix = "/internal/artifacts/";
        try
        {
            await using var server = await TestServer.StartAsync();
            await server.AddUnitsAsync(1);
            var mac = SimulatedFleet.MacFor(1);
            var sha = (await server.Store.Catalogue.ListUpdateProgramsAsync()).First().ArtifactSha256;
            using var http = server.PinnedHttp();
            var anonymous = await http.GetAsync($"{Routes.Artifacts}/{sha}");
            Assert.That(anonymous.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
            Assert.That(anonymous.Headers.Contains("X-Accel-Redirect"), Is.False, "no redirect without a host token");

            var session = await server.HostSessionAsync(mac);
            http.DefaultRequestHeaders.Authorization = new("Bearer", session.Token);
            var answer = await http.GetAsync($"{Routes.Artifacts}/{sha}");
            Assert.That(answer.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(answer.Headers.GetValues("X-Accel-Redirect").Single(), Is.EqualTo("/internal/artifacts/" + sha));
            Assert.That(await answer.Content.ReadAsByteArrayAsync(), Is.Empty, "the bytes come from nginx, not from the server");

            var unknown = await http.GetAsync($"{Routes.Artifacts}/{new string('0', 64)}");
            Assert.That(unknown.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
            Assert.That(unknown.Headers.Contains("X-Accel-Redirect"), Is.False, "nothing is redirected that is not offered");
        }
        finally
        {
            TestServer.Configure.Value = null;
        }
    }

    /// <summary>A unit challenge from the test's connection (127.0.0.1) with <paramref name="forwardedFor"/> as X-Forwarded-For.</summary>
    private static async Task<HttpStatusCode> ChallengeAsync(HttpClient http, int unit, string? forwardedFor)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, Routes.HostChallenge) { Content = JsonContent.Create(new ChallengeRequest(SimulatedFleet.MacFor(0x3000 + unit))) };
        if (forwardedFor is not null) { request.Headers.TryAddWithoutValidation("X-Forwarded-For", forwardedFor); }
        using var answer = await http.SendAsync(request);
        return answer.StatusCode;
    }

    [Test]
    public async Task A_trusted_proxy_names_the_source_and_a_malformed_X_Forwarded_For_counts_as_the_proxy()
    {
        TestServer.Configure.Value = o =>
        {
            o.TrustedProxies = ["127.0.0.1"];
            o.AuthAttemptsPerSourcePerMinute = 3;
        };
        try
        {
            await using var server = await TestServer.StartAsync();
            using var http = server.PinnedHttp();
            var unit = 0;
            // two units behind the proxy, each with its own limit: three each, the fourth refused
            var first = new List<HttpStatusCode>();
            var second = new List<HttpStatusCode>();
            for (var i = 0; i < 4; i++)
            {
                first.Add(await ChallengeAsync(http, unit++, "192.0.2.1"));
                second.Add(await ChallengeAsync(http, unit++, "192.0.2.2"));
            }
            // what the proxy cannot vouch for is the proxy's own request: counted as 127.0.0.1, never a 5xx
            var malformed = new List<HttpStatusCode>();
            foreach (var header in new[] { "not-an-address", "999.1.1.1", "192.0.2.9, junk", "192.0.2.9 192.0.2.10" })
            {
                malformed.Add(await ChallengeAsync(http, unit++, header));
            }
            var fresh = await ChallengeAsync(http, unit++, "192.0.2.3");
            Assert.Multiple(() =>
            {
                Assert.That(first, Is.EqualTo(new[] { HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests }), "192.0.2.1");
                Assert.That(second, Is.EqualTo(new[] { HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests }), "192.0.2.2");
                Assert.That(malformed, Is.EqualTo(new[] { HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests }),
                    "malformed headers share the proxy's own limit");
                Assert.That(fresh, Is.EqualTo(HttpStatusCode.OK), "another unit behind the proxy is not held back by them");
            });
        }
        finally
        {
            TestServer.Configure.Value = null;
        }
    }

    [TestCase(null)]
    [TestCase("192.0.2.200")]
    public async Task X_Forwarded_For_from_a_peer_that_is_not_a_trusted_proxy_is_ignored(string? trusted)
    {
        TestServer.Configure.Value = o =>
        {
            o.TrustedProxies = trusted is null ? [] : [trusted];
            o.AuthAttemptsPerSourcePerMinute = 3;
        };
        try
        {
            await using var server = await TestServer.StartAsync();
            using var http = server.PinnedHttp();
            // every request names another client; the limit still counts them all as the connection's peer
            var answers = new List<HttpStatusCode>();
            for (var i = 0; i < 5; i++) { answers.Add(await ChallengeAsync(http, i, $"192.0.2.{i + 1}")); }
            Assert.That(answers, Is.EqualTo(new[] { HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests, HttpStatusCode.TooManyRequests }));
        }
        finally
        {
            TestServer.Configure.Value = null;
        }
    }

    [Test]
    public async Task A_fleet_behind_HAProxy_stays_Ready_and_gets_a_forced_check_after_a_replica_is_killed()
    {
        using var topology = await ClusterTopology.StartAsync();
        var store = new TsunaguStore(Database.Parse(topology.Database, topology.Root), TimeProvider.System,
            Server.Units.Lifecycle.SecretBox.LoadOrCreate(Path.Combine(topology.Data, "keys")));
        using var releaseKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        await DemoCatalogue.SeedAsync(store, new ArtifactStore(Path.Combine(topology.Data, "artifacts")), releaseKey, TestServer.Password);
        var unitKey = File.ReadAllBytes(Path.Combine(topology.Data, "keys", Server.Apis.UnitKey.FileName));

        var changes = new ConcurrentDictionary<string, ConcurrentQueue<StateId>>();
        var log = new ConcurrentQueue<string>();
        await using var fleet = new SimulatedFleet(Path.Combine(topology.Root, "fleet"), TestServer.FastOptions,
            (unit, change) => changes.GetOrAdd(unit.Mac, _ => new()).Enqueue(change.To), (unit, message) => log.Enqueue($"{unit.Mac} {message}"));
        fleet.BuildProm(DemoCatalogue.OsVersion, DemoCatalogue.FactoryApplications);
        var meter = new FleetMeter();
        using var client = new OperatorClient(new Uri(topology.Url), DemoCatalogue.OperatorName, TestServer.Password, [topology.Pin]);
        const int count = 12;
        var units = new List<FleetUnit>();
        for (var i = 1; i <= count; i++)
        {
            var identity = FactoryIdentities.Create(new IdentitySpec(SimulatedFleet.MacFor(i), $"CL-{i:D4}", DemoCatalogue.HardwareVersion, "simulated",
                topology.Url, new WanAccount("pppoe", "setup", "provisional"), [topology.Pin], [ReleaseKeys.PublicKeyBase64(releaseKey)]), unitKey);
            await client.RegisterAsync(TestServer.Registration(identity), CancellationToken.None);
            units.Add(await fleet.AddUnitAsync(identity, CancellationToken.None, u => new MeteredNetwork(u.Hardware.Wan, meter, u.Meter, null)));
        }
        int Count(FleetUnit u, StateId state) => changes.TryGetValue(u.Mac, out var q) ? q.Count(s => s == state) : 0;
        string Recent() => string.Join("\n", log.TakeLast(20));

        fleet.StartAll();
        await WaitAsync(() => units.AllAsync(async u => u.Meter.ReadyAcks >= 1 && (await store.Units.GetUnitAsync(u.Mac))?.State == "Ready"), "every unit Ready through HAProxy",
            TimeSpan.FromSeconds(90), Recent);
        await WaitAsync(() => units.All(u => u.Supervisor.Context.Push?.IsConnected == true), "every unit on Mosquitto", TimeSpan.FromSeconds(30), Recent);
        // the artifact of the demo's update, through HAProxy and nginx: a range, as a resumed download asks for it
        var sha = (await store.Catalogue.ListUpdateProgramsAsync()).First().ArtifactSha256;
        var whole = await File.ReadAllBytesAsync(Path.Combine(topology.Data, "artifacts", sha));
        using (var http = TestServer.PinnedHttp(topology.Url, topology.Pin))
        {
            var session = await HostSessionAsync(http, unitKey, units[0].Mac);
            using var request = new HttpRequestMessage(HttpMethod.Get, $"{Routes.Artifacts}/{sha}");
            request.Headers.Authorization = new("Bearer", session.Token);
            request.Headers.Range = new(10, null);
            var part = await http.SendAsync(request);
            Assert.That(part.StatusCode, Is.EqualTo(HttpStatusCode.PartialContent), "a range through nginx");
            Assert.That(await part.Content.ReadAsByteArrayAsync(), Is.EqualTo(whole[10..]), "the rest of the file from byte 10");
        }

        // SIGKILL one replica; the fleet is checked through the other
        var before = units.ToDictionary(u => u.Mac, u => (Checks: Count(u, StateId.VersionCheck), Ready: u.Meter.ReadyAcks, u.Meter.Requests));
        topology.KillReplica(1);
        var forced = await RetryAsync(() => client.ForceCheckAsync(new ForceCheckRequest(units.Select(u => u.Mac).ToList(), null), CancellationToken.None));
        Assert.That(forced.Notified, Is.EquivalentTo(units.Select(u => u.Mac)), "every unit was sent the check");
        // a unit whose connection to the broker was down when the check was published (clean start: the broker keeps
        // nothing for it) gets it when it says "online" again, from the holder of the once-only lease: when the killed
        // replica held it, the survivor takes it over once it expires (30 s, the cluster's default; it tries every third
        // of that) and sends it within a poll; then the check itself (30 s: a margin for a loaded machine)
        var lease = TimeSpan.FromSeconds(new Server.ServerOptions().OnceOnlyLeaseSeconds);
        var bound = lease + lease / 3 + Server.Push.BrokerLink.HolderPoll + TimeSpan.FromSeconds(30);
        bool Done(FleetUnit u) => Count(u, StateId.VersionCheck) > before[u.Mac].Checks && u.Meter.ReadyAcks > before[u.Mac].Ready;
        await WaitAsync(() => units.All(Done), "every unit to check and report Ready again with one replica left", bound,
            () => $"not yet: {string.Join(", ", units.Where(u => !Done(u)).Select(u => u.Mac))}\n{Recent()}");
        await Task.Delay(2000); // a second check (a resend acted on twice) would show now
        var requests = units.Select(u => u.Meter.Requests - before[u.Mac].Requests).ToArray();
        TestContext.Out.WriteLine($"after the kill: requests per unit {requests.Average():0.0} (max {requests.Max()}), errors {string.Join(", ", meter.Errors)}");
        Assert.Multiple(async () =>
        {
            foreach (var u in units)
            {
                Assert.That(Count(u, StateId.VersionCheck), Is.EqualTo(before[u.Mac].Checks + 1), $"{u.Mac}: one check for one forced check");
                Assert.That((await store.Units.GetUnitAsync(u.Mac))!.State, Is.EqualTo("Ready"), u.Mac);
            }
            // a check is a version check, a configuration fetch and acknowledgement and a ready report, with a new session
            // (challenge, session) when the token went to the dead replica's... tokens are shared, so a few retries at most
            Assert.That(requests.Max(), Is.LessThanOrEqualTo(12), "requests per unit for one forced check stay bounded");
        });
    }

    private static async Task<SessionResponse> HostSessionAsync(HttpClient http, byte[] unitKey, string mac)
    {
        var challenge = (await (await http.PostAsJsonAsync(Routes.HostChallenge, new ChallengeRequest(mac))).Content.ReadFromJsonAsync<ChallengeResponse>())!;
        var proof = UnitCredentials.ComputeProof(UnitCredentials.DeriveUnitSecret(unitKey, mac), ProofPurpose.Host, mac, challenge.ChallengeId, challenge.Nonce);
        var answer = await http.PostAsJsonAsync(Routes.HostSession, new SessionRequest(mac, challenge.ChallengeId, proof));
        Assert.That(answer.StatusCode, Is.EqualTo(HttpStatusCode.OK), await answer.Content.ReadAsStringAsync());
        return (await answer.Content.ReadFromJsonAsync<SessionResponse>())!;
    }

    /// <summary>The operator's request while HAProxy may still route to the killed replica (a 502/503 is tried again, at most a few times).</summary>
    private static async Task<T> RetryAsync<T>(Func<Task<T>> call)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await call();
            }
            catch (OperatorApiException e) when (attempt < 5 && e.Status is 502 or 503)
            {
                await Task.Delay(1000);
            }
        }
    }

    private static Task WaitAsync(Func<bool> condition, string what, TimeSpan timeout, Func<string>? context = null) =>
        WaitAsync(() => Task.FromResult(condition()), what, timeout, context);

    private static async Task WaitAsync(Func<Task<bool>> condition, string what, TimeSpan timeout, Func<string>? context = null)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline) { Assert.Fail($"timed out waiting for {what}\n{context?.Invoke()}"); }
            await Task.Delay(100);
        }
    }

    /// <summary>deploy/cluster.sh start on a temporary directory (the server build beside the tests), stopped at the end by the PIDs it wrote.</summary>
    private sealed class ClusterTopology : IDisposable
    {
        private readonly string _script;

        private ClusterTopology(string root, string script, IReadOnlyDictionary<string, string> env)
        {
            Root = root;
            _script = script;
            Url = env["URL"];
            Database = env["DATABASE"];
            Data = env["DATA"];
            Pin = OperatorClient.PinFromPemFile(env["CERTIFICATE"]);
        }

        public string Root { get; }
        public string Url { get; }
        public string Database { get; }
        public string Data { get; }
        public string Pin { get; }

        public static async Task<ClusterTopology> StartAsync()
        {
            var repo = new DirectoryInfo(AppContext.BaseDirectory);
            while (repo is not null && !File.Exists(Path.Combine(repo.FullName, "deploy", "cluster.sh"))) { repo = repo.Parent; }
            var script = Path.Combine(repo?.FullName ?? throw new FileNotFoundException("deploy/cluster.sh not found above the tests"), "deploy", "cluster.sh");
            var root = Path.Combine(Path.GetTempPath(), "tsunagu-cluster-" + Guid.NewGuid().ToString("N")[..12]);
            var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in new[] { script, "start", root }) { start.ArgumentList.Add(a); }
            start.Environment["PORT"] = TestServer.FreePort().ToString(CultureInfo.InvariantCulture);
            start.Environment["SERVER_DLL"] = ServerProcess.ServerDll();
            start.Environment["OPERATOR_PASSWORD"] = TestServer.Password;
            using var process = Process.Start(start)!;
            var output = process.StandardOutput.ReadToEndAsync();
            var error = process.StandardError.ReadToEndAsync();
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(4));
            if (process.ExitCode != 0)
            {
                Stop(script, root);
                throw new InvalidOperationException($"deploy/cluster.sh start failed ({process.ExitCode}): {await output}\n{await error}\n{Logs(root)}");
            }
            TestContext.Out.WriteLine(await output);
            var env = File.ReadAllLines(Path.Combine(root, "cluster.env")).Select(l => l.Split('=', 2)).ToDictionary(p => p[0], p => p[1]);
            return new ClusterTopology(root, script, env);
        }

        private static string Logs(string root) => Directory.Exists(Path.Combine(root, "logs"))
            ? string.Join("\n", Directory.GetFiles(Path.Combine(root, "logs")).Select(f => $"== {Path.GetFileName(f)}\n{string.Join("\n", File.ReadLines(f).TakeLast(15))}"))
            : "";

        /// <summary>SIGKILL to replica <paramref name="index"/> by the PID the script wrote.</summary>
        public void KillReplica(int index)
        {
            var pid = int.Parse(File.ReadAllText(Path.Combine(Root, "run", $"replica-{index}.pid")).Trim(), CultureInfo.InvariantCulture);
            using var replica = Process.GetProcessById(pid);
            replica.Kill();
            replica.WaitForExit(10_000);
        }

        private static void Stop(string script, string root) => TestServer.Run("bash", [script, "stop", root]);

        public void Dispose()
        {
            Stop(_script, Root);
            Directory.Delete(Root, recursive: true);
        }
    }
}
