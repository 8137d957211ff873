using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Tsunagu.Cli.Factory;
using Tsunagu.Cli.Fleet;
using Tsunagu.Demo;
using Tsunagu.Firmware.Net;
using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;
using Tsunagu.Server.Data;

namespace Tsunagu.Bench;

/// <summary>The settings of the scale part (environment, see docs/scaling.md).</summary>
public sealed record ScaleSettings(int Units, double Rate, double Seconds, int MaxInFlight, int StormUnits, int StormSpreadSeconds)
{
    public static ScaleSettings FromEnvironment(double seconds)
    {
        var c = CultureInfo.InvariantCulture;
        string Get(string name, string fallback) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : fallback;
        return new ScaleSettings(int.Parse(Get("BENCH_SCALE_UNITS", "3000"), c), double.Parse(Get("BENCH_SCALE_RATE", "556"), c), seconds,
            int.Parse(Get("BENCH_SCALE_IN_FLIGHT", "128"), c), int.Parse(Get("BENCH_CLUSTER_STORM_UNITS", "2000"), c),
            int.Parse(Get("BENCH_CLUSTER_STORM_SPREAD", "0"), c));
    }
}

/// <summary>
/// The rows of issue 21 on the production topology (deploy/cluster.sh: HAProxy ending TLS, two replicas, PostgreSQL,
/// Mosquitto, nginx for artifacts), started by the bench:
/// <list type="bullet">
/// <item>units per core: steady-state check-ins (<see cref="CheckIn"/>, the firmware's client, real TLS and proofs, each
/// unit from its own loopback address) at a fixed offered rate for BENCH_SECONDS; CPU of every server-side process from
/// /proc (replicas summed, HAProxy, PostgreSQL with its backends); the reference is nginx with the same certificate
/// answering the same five requests on as many new TLS connections, at the same rate, from the same client code; then the
/// same for the steady check (<see cref="CheckIn.SteadyAsync"/>, one request proved over the nonce of the unit's last
/// answer), the check a unit with nothing to do makes;</item>
/// <item>the reconnect storm on PostgreSQL behind the two replicas (fleetsim workers through HAProxy).</item>
/// </list>
/// </summary>
public static class ScaleBench
{
    /// <summary>Seconds between two checks of a unit in the figure "units per core".</summary>
    public const double CheckIntervalSeconds = 1800;

    /// <summary>Units per registration table (one operator request each, answered within the operator client's 60 s on a busy machine).</summary>
    private const int RegisterChunk = 100;

    /// <summary>The goal of issue 21: one million units on this 2-core machine.</summary>
    public const double GoalUnitsPerCore = 500_000;

    public static async Task RunAsync(string work, ScaleSettings settings, List<Result> results, bool unitsPerCore, bool storm, Action<string> progress,
        CancellationToken ct)
    {
        var c = CultureInfo.InvariantCulture;
        var dir = Path.Combine(work, "scale");
        Directory.CreateDirectory(dir);
        var clusterSettings = new Dictionary<string, string>
        {
            ["CheckIntervalSeconds"] = CheckIntervalSeconds.ToString(c),
            ["PowerOnSpreadSeconds"] = settings.StormSpreadSeconds.ToString(c),
        };
        await using var cluster = await ClusterProcess.StartAsync(Path.Combine(dir, "cluster"), 2, clusterSettings, progress, ct);
        var releaseKeyFile = Path.Combine(dir, "release.pub");
        using (var releaseKey = ECDsa.Create(ECCurve.NamedCurves.nistP256))
        {
            var store = new TsunaguStore(Database.Parse(cluster.Database, cluster.Dir), TimeProvider.System,
                Tsunagu.Server.Units.Lifecycle.SecretBox.LoadOrCreate(Path.Combine(cluster.Data, "keys")));
            await DemoCatalogue.SeedAsync(store, new ArtifactStore(Path.Combine(cluster.Data, "artifacts")), releaseKey, cluster.Password);
            await File.WriteAllTextAsync(releaseKeyFile, ReleaseKeys.PublicKeyBase64(releaseKey), ct);
        }
        Npgsql.NpgsqlConnection.ClearAllPools();

        if (unitsPerCore)
        {
            results.AddRange(await UnitsPerCoreAsync(dir, cluster, settings, progress, ct));
        }
        if (storm)
        {
            var units = settings.StormUnits;
            var metric = $"reconnect storm on PostgreSQL behind HAProxy and 2 replicas, {units:N0} units power-cycled together (servers up), power-on spread {settings.StormSpreadSeconds} s: attempts per unit (ideal 1)" +
                         (units == 20_000 ? "" : $" (MEASURED AT {units:N0} UNITS, not 20,000)");
            var stormDir = Path.Combine(dir, "storm");
            Directory.CreateDirectory(stormDir);
            // after the load phase a busy machine may have delayed /healthz past HAProxy's check timeout: the storm's
            // first boot starts once HAProxy routes to a replica again (three healthy answers in a row through it)
            await WaitForHealthyAsync(cluster, progress, ct);
            // the storm's units are numbered after the load generator's, so their MACs never collide
            results.Add(await StormBench.BootAndStormAsync(metric, stormDir, units, 0x100000, cluster.Url, cluster.Data, cluster.Password, releaseKeyFile,
                1.0, settings.StormSpreadSeconds, () => Task.CompletedTask, progress, ct));
        }
    }

    private static async Task WaitForHealthyAsync(ClusterProcess cluster, Action<string> progress, CancellationToken ct)
    {
        using var handler = new SocketsHttpHandler
        {
            SslOptions = { RemoteCertificateValidationCallback = TrustAnchor.Validator([cluster.Pin]) },
        };
        using var http = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(10) };
        var healthy = 0;
        var clock = Stopwatch.StartNew();
        while (healthy < 3 && clock.Elapsed < TimeSpan.FromMinutes(2))
        {
            try
            {
                using var answer = await http.GetAsync(new Uri(cluster.Url, Routes.Health), ct);
                healthy = answer.IsSuccessStatusCode ? healthy + 1 : 0;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !ct.IsCancellationRequested)
            {
                healthy = 0;
            }
            await Task.Delay(500, ct);
        }
        progress(string.Create(CultureInfo.InvariantCulture, $"scale: HAProxy {(healthy >= 3 ? "routes to the replicas" : "still finds no healthy replica")} after {clock.Elapsed.TotalSeconds:0} s"));
    }

    /// <summary>Whether the unit is registered, asked again (every 3 s, 10 times) while no replica answers.</summary>
    private static async Task<bool> IsRegisteredAsync(OperatorClient op, string mac, CancellationToken ct)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await op.SendAsync(HttpMethod.Get, Routes.Units + "/" + mac, null, ct);
                return true;
            }
            catch (OperatorApiException e) when (e.Status == 404)
            {
                return false;
            }
            catch (OperatorApiException e) when (attempt < 10 && e.Status is 502 or 503 or 504)
            {
                await Task.Delay(3000, ct);
            }
        }
    }

    private static async Task<List<Result>> UnitsPerCoreAsync(string dir, ClusterProcess cluster, ScaleSettings settings, Action<string> progress, CancellationToken ct)
    {
        var c = CultureInfo.InvariantCulture;
        var unitKey = FactoryIdentities.ReadUnitKey(Path.Combine(cluster.Data, "keys", Tsunagu.Server.Apis.UnitKey.FileName));
        // the units, registered on the factory pattern (no update to offer), RegisterChunk rows per table
        var units = new List<LoadUnit>();
        var registerClock = Stopwatch.StartNew();
        using (var op = new OperatorClient(cluster.Url, DemoCatalogue.OperatorName, cluster.Password, [cluster.Pin]))
        {
            for (var first = 1; first <= settings.Units; first += RegisterChunk)
            {
                var csv = new StringBuilder("mac,serial,hardware_version,isp_method,isp_username,isp_password,domain,subscriber,target_pattern\n");
                for (var i = first; i < Math.Min(settings.Units + 1, first + RegisterChunk); i++)
                {
                    var mac = SimulatedFleet.MacFor(i);
                    var identity = FactoryIdentities.Create(new IdentitySpec(mac, $"LOAD-{i:D7}", DemoCatalogue.HardwareVersion, DemoCatalogue.Board,
                        cluster.Url.ToString(), new WanAccount("pppoe", "setup", "provisional"), [cluster.Pin], []), unitKey);
                    units.Add(new LoadUnit(i - 1, identity, Convert.FromBase64String(identity.UnitSecret)));
                    csv.Append(c, $"{mac},LOAD-{i:D7},{DemoCatalogue.HardwareVersion},dhcp,,,unit{i}.example,,{DemoCatalogue.Pattern1}\n");
                }
                for (var attempt = 1; ; attempt++)
                {
                    try
                    {
                        await op.SendAsync(HttpMethod.Post, Routes.Units + "/bulk", new StringContent(csv.ToString(), Encoding.UTF8, "text/csv"), ct);
                        break;
                    }
                    catch (OperatorApiException e) when (attempt < 10 && e.Status is 502 or 503 or 504)
                    {
                        // HAProxy found no healthy replica (a busy machine delays /healthz), a replica turned it away, or
                        // the replica's answer was lost after it committed (504: HAProxy's server timeout). A table is
                        // registered in one transaction, so its first and last units tell which: both registered means the
                        // whole table was, neither that it was not and it is sent again.
                        progress($"scale: registration answered {e.Status}; again in 3 s");
                        await Task.Delay(3000, ct);
                        var last = Math.Min(settings.Units, first + RegisterChunk - 1);
                        if (await IsRegisteredAsync(op, SimulatedFleet.MacFor(first), ct) && await IsRegisteredAsync(op, SimulatedFleet.MacFor(last), ct))
                        {
                            progress($"scale: the table from unit {first} had been registered before its answer was lost");
                            break;
                        }
                    }
                }
            }
        }
        progress(string.Create(c, $"scale: {units.Count} units registered in {registerClock.Elapsed.TotalSeconds:0.0} s; first check-in of each (not measured)"));

        // each unit's first check writes its inventory, state and configuration acknowledgement: not the steady state
        var warmClock = Stopwatch.StartNew();
        var warm = await OpenLoop.RunAsync((i, t) => CheckIn.RunAsync(cluster.Url, cluster.Pin, units[i], t), 1000, TimeSpan.FromSeconds(units.Count / 1000.0), 32, ct, startAll: true);
        progress(string.Create(c, $"scale: first check-ins {warm.Ok}/{units.Count} ok in {warmClock.Elapsed.TotalSeconds:0.0} s ({warm.PerSecond:0} /s at 32 in flight); errors {string.Join(" | ", warm.FirstErrors)}"));
        if (warm.Ok < units.Count * 0.99)
        {
            return [Result.NotMeasured("units per core (30-minute check interval)", ">=", GoalUnitsPerCore, $"only {warm.Ok}/{units.Count} units completed their first check-in: {string.Join(" | ", warm.FirstErrors)}")];
        }
        var canned = await CannedAnswersAsync(cluster.Url, cluster.Pin, units[0], ct);

        // the measured runs: units in turn, so a unit checks again only after all the others (units / rate seconds later);
        // first the full exchange every unit runs when something changed (and every unit did before the steady check),
        // then the steady check (one request) a unit that has nothing to do runs, each with the nonce of its last answer
        var replicas = cluster.ReplicaPids();
        var duration = TimeSpan.FromSeconds(settings.Seconds);
        async Task<(LoadRun Run, CpuSample Used)> OursAsync(string what, Func<int, CancellationToken, Task<(CheckInOutcome, int, string?)>> checkIn)
        {
            await Task.Delay(StatisticsLag, ct);
            var counters = DatabaseCounters(cluster);
            var before = new CpuSample(replicas.Sum(ProcessTreeCpu.Read), ProcessTreeCpu.Read(cluster.HaproxyPid), ProcessTreeCpu.Read(cluster.PostgresPid),
                Environment.CpuUsage.TotalTime.TotalSeconds, counters.Commits, counters.Rows);
            progress(string.Create(c, $"scale: {what} at {settings.Rate:0}/s for {settings.Seconds:0} s through HAProxy ({settings.MaxInFlight} in flight at most)"));
            var run = await OpenLoop.RunAsync(checkIn, settings.Rate, duration, settings.MaxInFlight, ct);
            var used = (await SampleAsync(cluster, replicas, ct)).Minus(before);
            progress(string.Create(c, $"scale: {run.Ok} ok in {run.Seconds:0.0} s ({run.PerSecond:0.0}/s), 5xx {run.ServerErrors}, 4xx {run.ClientErrors}, transport {run.TransportErrors}; p99 {run.P99Ms:0} ms; CPU s replicas {used.Replicas:0.00}, HAProxy {used.Haproxy:0.00}, PostgreSQL {used.Postgres:0.00}, generator {used.Generator:0.00}"));
            return (run, used);
        }
        var full = await OursAsync("full-exchange check-ins", (i, t) => CheckIn.RunAsync(cluster.Url, cluster.Pin, units[i % units.Count], t));
        var steady = await OursAsync("steady checks", (i, t) => CheckIn.SteadyAsync(cluster.Url, cluster.Pin, units[i % units.Count], t));

        // the reference: nginx with the server's certificate answering the same requests with the server's own answers
        var nginxDir = Path.Combine(dir, "nginx-reference");
        var (nginx, nginxUrl) = await StartNginxAsync(nginxDir, cluster.CertificateAndKeyPem, canned, ct);
        (LoadRun Run, double Cpu, double Generator) fullReference, steadyReference;
        try
        {
            async Task<(LoadRun, double, double)> TheirsAsync(string what, Func<int, CancellationToken, Task<(CheckInOutcome, int, string?)>> checkIn)
            {
                var nginxBefore = ProcessTreeCpu.Read(nginx.Id);
                var generatorBefore = Environment.CpuUsage.TotalTime.TotalSeconds;
                progress($"scale: the same {what} against nginx");
                var run = await OpenLoop.RunAsync(checkIn, settings.Rate, duration, settings.MaxInFlight, ct);
                var cpu = ProcessTreeCpu.Read(nginx.Id) - nginxBefore;
                progress(string.Create(c, $"scale: nginx {run.Ok} ok ({run.PerSecond:0.0}/s), errors {run.ServerErrors + run.ClientErrors + run.TransportErrors}, p99 {run.P99Ms:0} ms, CPU {cpu:0.00} s"));
                return (run, cpu, Environment.CpuUsage.TotalTime.TotalSeconds - generatorBefore);
            }
            fullReference = await TheirsAsync("full-exchange check-ins", (i, t) => CheckIn.RunAsync(nginxUrl, cluster.Pin, units[i % units.Count], t));
            // nginx's canned steady answer hands every unit the same next nonce: harmless, the phases against nginx come last
            steadyReference = await TheirsAsync("steady checks", (i, t) => CheckIn.SteadyAsync(nginxUrl, cluster.Pin, units[i % units.Count], t));
        }
        finally
        {
            await Tools.StopNginxAsync(nginx);
        }

        var rows = new List<Result>();
        rows.AddRange(Rows("", "check-ins", "steady-state check-ins", "a new TLS connection each, host token expired as at a 30-minute interval",
            full.Run, full.Used, fullReference));
        rows.AddRange(Rows(", steady check (one request)", "steady checks", "steady checks",
            "a new TLS connection each, proved over the nonce of the unit's last answer, every one answered 'nothing to do'",
            steady.Run, steady.Used, steadyReference));
        return rows;

        List<Result> Rows(string kind, string noun, string label, string how, LoadRun ours, CpuSample used, (LoadRun Run, double Cpu, double Generator) reference)
        {
            var (theirs, nginxCpu, nginxGenerator) = reference;
            var perThousand = used.Server / ours.Ok * 1000;
            var nginxPerThousand = nginxCpu / Math.Max(1, theirs.Ok) * 1000;
            double UnitsPerCore(double cpuPerThousand) => cpuPerThousand <= 0 ? double.PositiveInfinity : CheckIntervalSeconds * 1000 / cpuPerThousand;
            var gap = units.Count / settings.Rate;
            var requestsPerCheck = ours.Ok == 0 ? 0 : (double)ours.Requests / (ours.Ok + ours.ServerErrors + ours.ClientErrors + ours.TransportErrors);
            var breakdown = string.Create(c,
                $"CPU s per 1,000 {noun}: replicas (2, summed) {used.Replicas / ours.Ok * 1000:0.00}, HAProxy {used.Haproxy / ours.Ok * 1000:0.00}, PostgreSQL {used.Postgres / ours.Ok * 1000:0.00} = {perThousand:0.00}; nginx {nginxPerThousand:0.00}; " +
                $"PostgreSQL per check-in: {(double)used.Commits / ours.Ok:0.0} commits, {(double)used.RowsWritten / ours.Ok:0.0} rows written; " +
                $"load generator {used.Generator / ours.Ok * 1000:0.00} (vs {nginxGenerator / Math.Max(1, theirs.Ok) * 1000:0.00} against nginx); " +
                $"units per core: replicas alone {UnitsPerCore(used.Replicas / ours.Ok * 1000):0}, PostgreSQL alone {UnitsPerCore(used.Postgres / ours.Ok * 1000):0}, HAProxy alone {UnitsPerCore(used.Haproxy / ours.Ok * 1000):0}");
            var result = new List<Result>
            {
                new($"units per core at a 30-minute check interval{kind}, server side (2 replicas + HAProxy + PostgreSQL) vs nginx (same TLS connections, same requests); goal 500,000 (1M units on 2 cores)",
                    UnitsPerCore(perThousand), UnitsPerCore(nginxPerThousand), ">=", GoalUnitsPerCore,
                    string.Create(c, $"{ours.Ok} {label} ({requestsPerCheck:0.00} requests each, {how}), {units.Count} units in turn (each checks every {gap:0} s), offered {settings.Rate:0}/s for {settings.Seconds:0} s; units per core = {CheckIntervalSeconds:0} s / CPU s per check-in; ") + breakdown,
                    Absolute: true),
                new(string.Create(c, $"steady-state check-in p99 latency (ms){kind} at {settings.Rate:0}/s offered, through HAProxy to 2 replicas on PostgreSQL, vs nginx; goal p99 < 1 s, no 5xx"),
                    ours.P99Ms, theirs.P99Ms, "<=", 1000,
                    string.Create(c, $"achieved {ours.PerSecond:0.0}/s (nginx {theirs.PerSecond:0.0}/s) of {settings.Rate:0}/s offered, open loop, latency from when each check-in was due, at most {settings.MaxInFlight} in flight (reached {ours.MaxInFlight}); p50 {ours.P50Ms:0} ms, max {ours.MaxMs:0} ms; " +
                        $"5xx {ours.ServerErrors}, 4xx {ours.ClientErrors}, transport errors {ours.TransportErrors} of {ours.Scheduled} started ({ours.Due - ours.Scheduled} due but not started by the end; nginx {theirs.Due - theirs.Scheduled}) (nginx: {theirs.ServerErrors}/{theirs.ClientErrors}/{theirs.TransportErrors}){(ours.FirstErrors.Count > 0 ? "; first errors: " + string.Join(" | ", ours.FirstErrors) : "")}; the load generator runs on the same 2 cores"),
                    Absolute: true),
            };
            if (ours.ServerErrors > 0)
            {
                result[^1] = result[^1] with { Note = result[^1].Note + $"; NOT MET: {ours.ServerErrors} {noun} ended with a 5xx" };
            }
            return result;
        }
    }

    private sealed record CpuSample(double Replicas, double Haproxy, double Postgres, double Generator, long Commits, long RowsWritten)
    {
        public double Server => Replicas + Haproxy + Postgres;

        public CpuSample Minus(CpuSample o) => new(Replicas - o.Replicas, Haproxy - o.Haproxy, Postgres - o.Postgres, Generator - o.Generator,
            Commits - o.Commits, RowsWritten - o.RowsWritten);
    }

    /// <summary>How long an idle PostgreSQL backend may keep its statistics before reporting them (PGSTAT_IDLE_INTERVAL, 10 s), and a second more.</summary>
    private static readonly TimeSpan StatisticsLag = TimeSpan.FromSeconds(11);

    /// <summary>CPU now; the database's counters after <see cref="StatisticsLag"/> (the load is stopped or not yet started then).</summary>
    private static async Task<CpuSample> SampleAsync(ClusterProcess cluster, IReadOnlyList<int> replicas, CancellationToken ct)
    {
        var cpu = new CpuSample(replicas.Sum(ProcessTreeCpu.Read), ProcessTreeCpu.Read(cluster.HaproxyPid), ProcessTreeCpu.Read(cluster.PostgresPid),
            Environment.CpuUsage.TotalTime.TotalSeconds, 0, 0);
        await Task.Delay(StatisticsLag, ct);
        var (commits, rows) = DatabaseCounters(cluster);
        return cpu with { Commits = commits, RowsWritten = rows };
    }

    private static (long Commits, long Rows) DatabaseCounters(ClusterProcess cluster)
    {
        // the database's own counters: transactions committed and rows inserted, updated or deleted (pg_stat_database;
        // they include this query's own transaction)
        using var connection = new Npgsql.NpgsqlConnection(cluster.Database + ";Pooling=false");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT pg_stat_force_next_flush(); SELECT xact_commit, tup_inserted + tup_updated + tup_deleted FROM pg_stat_database WHERE datname = current_database()";
        using var reader = command.ExecuteReader();
        reader.NextResult();
        reader.Read();
        return (reader.GetInt64(0), reader.GetInt64(1));
    }

    /// <summary>The server's answers to one steady-state check-in, as the JSON it sent (nginx then sends the same bytes' worth).</summary>
    private static async Task<Dictionary<string, string>> CannedAnswersAsync(Uri server, string pin, LoadUnit unit, CancellationToken ct)
    {
        using var client = new UnitClient(new LoopbackSource(unit.Source), [pin]);
        var challenge = await PostRawAsync<ChallengeResponse>(server, pin, unit, Routes.HostChallenge, null, JsonSerializer.Serialize(new ChallengeRequest(unit.Identity.Mac), ProtocolJson.Default.ChallengeRequest), ProtocolJson.Default.ChallengeResponse, ct);
        var session = await client.AuthenticateAsync(server, ProofPurpose.Host, unit.Identity, unit.Secret, ct);
        var check = await client.VersionCheckAsync(server, session.Token, new VersionCheckRequest(CheckIn.FactoryInventory, new UnitLoad(0.05, 0.01), false, null), ct);
        var config = await client.GetServiceConfigAsync(server, session.Token, ct);
        var ready = await client.ReportReadyAsync(server, session.Token, new ReadyReport(CheckIn.FactoryInventory, config.Revision, "192.0.2.10"), ct);
        unit.Nonce = ready.NextCheck;
        var proof = UnitCredentials.ComputeProof(unit.Secret, ProofPurpose.SteadyCheck, unit.Identity.Mac, ready.NextCheck!.Id, ready.NextCheck.Nonce);
        var steady = await client.SteadyCheckAsync(server, new SteadyCheckRequest(unit.Identity.Mac, ready.NextCheck.Id, proof, CheckIn.FactoryInventory, 1,
            config.Revision, "192.0.2.10"), ct);
        if (!steady.Steady)
        {
            throw new InvalidOperationException($"the first unit's steady check found something to do: {steady.Reason}");
        }
        unit.Nonce = steady.Next;
        return new Dictionary<string, string>
        {
            [Routes.SteadyCheck] = JsonSerializer.Serialize(steady, ProtocolJson.Default.SteadyCheckResponse),
            [Routes.HostChallenge] = JsonSerializer.Serialize(challenge, ProtocolJson.Default.ChallengeResponse),
            [Routes.HostSession] = JsonSerializer.Serialize(session, ProtocolJson.Default.SessionResponse),
            [Routes.VersionCheck] = JsonSerializer.Serialize(check, ProtocolJson.Default.VersionCheckResponse),
            [Routes.ServiceConfig] = JsonSerializer.Serialize(config, ProtocolJson.Default.ServiceConfigResponse),
            [Routes.Ready] = JsonSerializer.Serialize(ready, ProtocolJson.Default.ReadyAck),
        };
    }

    private static async Task<T> PostRawAsync<T>(Uri server, string pin, LoadUnit unit, string path, string? token, string body, JsonTypeInfo<T> type, CancellationToken ct)
    {
        using var handler = new SocketsHttpHandler
        {
            SslOptions = { RemoteCertificateValidationCallback = TrustAnchor.Validator([pin]) },
        };
        using var http = new HttpClient(new LoopbackSource(unit.Source).WrapHandler(handler), disposeHandler: false);
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(server, path)) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        if (token is not null) { request.Headers.Authorization = new("Bearer", token); }
        using var response = await http.SendAsync(request, ct);
        response.EnsureSuccessStatusCode();
        return await JsonSerializer.DeserializeAsync(await response.Content.ReadAsStreamAsync(ct), type, ct)
               ?? throw new InvalidOperationException($"{path}: empty answer");
    }

    private static async Task<(Process Nginx, Uri Url)> StartNginxAsync(string dir, string certificateAndKey, Dictionary<string, string> answers, CancellationToken ct)
    {
        Directory.CreateDirectory(Path.Combine(dir, "tmp"));
        var port = Tools.FreePort();
        var locations = new StringBuilder();
        foreach (var (path, json) in answers)
        {
            if (json.Contains('$', StringComparison.Ordinal) || json.Contains('\\', StringComparison.Ordinal) || json.Contains('\'', StringComparison.Ordinal))
            {
                throw new InvalidOperationException($"the answer of {path} holds a character nginx's return text would change: {json}");
            }
            locations.Append(CultureInfo.InvariantCulture, $"    location = {path} {{ default_type application/json; return 200 '{json}'; }}\n");
        }
        await File.WriteAllTextAsync(Path.Combine(dir, "nginx.conf"), $$"""
            worker_processes 2;
            daemon off;
            pid {{dir}}/nginx.pid;
            error_log {{dir}}/error.log;
            events { worker_connections 4096; }
            http {
              access_log off;
              client_body_temp_path {{dir}}/tmp; proxy_temp_path {{dir}}/tmp; fastcgi_temp_path {{dir}}/tmp; uwsgi_temp_path {{dir}}/tmp; scgi_temp_path {{dir}}/tmp;
              server {
                listen 127.0.0.1:{{port}} ssl;
                ssl_certificate {{certificateAndKey}}; ssl_certificate_key {{certificateAndKey}};
            {{locations}}  }
            }
            """, ct);
        var nginx = Tools.Start("/usr/sbin/nginx", $"-c {dir}/nginx.conf -p {dir}");
        await Tools.WaitForPortAsync(port);
        return (nginx, new Uri($"https://127.0.0.1:{port}/"));
    }

}
