using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Tsunagu.Demo;
using Tsunagu.Firmware.Net;
using Tsunagu.Hal.Simulated;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;

namespace Tsunagu.Bench;

/// <summary>The HTTP and crypto pairs: version check vs nginx, signature verification vs openssl, download vs openssl + dd, CPU per GB vs nginx.</summary>
public static class HttpBench
{
    public static async Task RunAsync(string work, double seconds, List<Result> results)
    {
        var c = CultureInfo.InvariantCulture;
        // ---- the server, in this process, with the demo catalogue ---------------------------------------------------
        await using var server = await DemoServer.StartAsync(Path.Combine(work, "server"), mqttPort: -1, "02:54:53:ff:00:01", "BENCH-1", unitTrustsReleaseKey: false);
        var (app, options, releaseKey, url, pin, identity) = (server.App, server.Options, server.ReleaseKey, server.Url, server.Pin, server.Unit);
        var link = new SimulatedWanLink();
        await link.UpAsync(Tsunagu.Hal.LinkRole.Main, new WanAccount("dhcp", null, null), CancellationToken.None);
        using var unitClient = new UnitClient(link, [pin]);
        var session = await unitClient.AuthenticateAsync(url, ProofPurpose.Host, identity, Convert.FromBase64String(identity.UnitSecret), CancellationToken.None);
        Console.WriteLine($"server {url} ready; nginx and openssl run as child processes; {seconds} s per load measurement");

        // ---- nginx on loopback with its own self-signed certificate (same curve as the server's) --------------------
        var nginxDir = Path.Combine(work, "nginx");
        Directory.CreateDirectory(nginxDir);
        await Tools.RunAsync("openssl", $"req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=127.0.0.1 -keyout {nginxDir}/key.pem -out {nginxDir}/cert.pem");
        var artifactSize = 256L * 1024 * 1024;
        var artifactPath = Path.Combine(work, "artifact.bin");
        Tools.WriteRandom(artifactPath, artifactSize);
        var nginxPort = Tools.FreePort();
        await File.WriteAllTextAsync(Path.Combine(nginxDir, "nginx.conf"), $$"""
            worker_processes 1;
            daemon off;
            pid {{nginxDir}}/nginx.pid;
            error_log {{nginxDir}}/error.log;
            events { worker_connections 4096; }
            http {
              access_log off;
              sendfile on;
              client_body_temp_path {{nginxDir}}/tmp; proxy_temp_path {{nginxDir}}/tmp; fastcgi_temp_path {{nginxDir}}/tmp; uwsgi_temp_path {{nginxDir}}/tmp; scgi_temp_path {{nginxDir}}/tmp;
              server {
                listen 127.0.0.1:{{nginxPort}} ssl;
                ssl_certificate {{nginxDir}}/cert.pem; ssl_certificate_key {{nginxDir}}/key.pem;
                location = /ok { default_type application/json; return 200 '{"status":"ok"}'; }
                location /files/ { alias {{work}}/; }
              }
            }
            """);
        Directory.CreateDirectory(Path.Combine(nginxDir, "tmp"));
        using var nginx = Tools.Start("/usr/sbin/nginx", $"-c {nginxDir}/nginx.conf -p {nginxDir}");
        await Tools.WaitForPortAsync(nginxPort);

        // 1. version-check throughput vs nginx static 200, same load generator, same concurrency, HTTPS keep-alive
        var inventory = new Inventory(DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion, DemoCatalogue.FactoryApplications);
        var body = JsonSerializer.SerializeToUtf8Bytes(new VersionCheckRequest(inventory, new UnitLoad(0.1, 0.1), false, null), ProtocolJson.Default.VersionCheckRequest);
        HttpRequestMessage VersionCheck(Uri baseUrl) => new(HttpMethod.Post, new Uri(baseUrl, Routes.VersionCheck))
        {
            Headers = { Authorization = new AuthenticationHeaderValue("Bearer", session.Token) },
            Content = new ByteArrayContent(body) { Headers = { ContentType = new MediaTypeHeaderValue("application/json") } },
        };
        var nginxUrl = new Uri($"https://127.0.0.1:{nginxPort}/");
        var concurrency = 32;
        // three rounds, ours and nginx alternating, best round of each: a burst of other load on the machine then
        // costs one round of one side instead of deciding the ratio
        LoadResult? ours = null, theirs = null;
        var rounds = new List<string>();
        for (var round = 0; round < 3; round++)
        {
            var o = await Load.RunAsync(() => VersionCheck(url), concurrency, TimeSpan.FromSeconds(seconds));
            var t = await Load.RunAsync(() => new HttpRequestMessage(HttpMethod.Get, new Uri(nginxUrl, "/ok")), concurrency, TimeSpan.FromSeconds(seconds));
            rounds.Add(string.Create(c, $"{o.PerSecond:0}/{t.PerSecond:0}"));
            if (ours is null || o.PerSecond > ours.PerSecond) { ours = o; }
            if (theirs is null || t.PerSecond > theirs.PerSecond) { theirs = t; }
        }
        results.Add(new("version-check throughput (req/s) vs nginx static 200", ours!.PerSecond, theirs!.PerSecond, ">=", 0.35,
            $"{concurrency} keep-alive HTTPS clients, best of 3 alternating rounds of {seconds} s (ours/nginx: {string.Join(", ", rounds)}); errors {ours.Errors}/{theirs.Errors}; p99 {ours.P99Ms:0.0} ms vs {theirs.P99Ms:0.0} ms"));

        // 2. bundle signature verification (ES256 over a manifest, as ReleaseKeys.Verify) vs openssl speed ecdsap256
        var manifest = RandomNumberGenerator.GetBytes(1024);
        var signature = releaseKey.SignData(manifest, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
        using var publicKey = ECDsa.Create(releaseKey.ExportParameters(false));
        var verifyClock = Stopwatch.StartNew();
        long verifies = 0;
        while (verifyClock.Elapsed.TotalSeconds < seconds)
        {
            if (!publicKey.VerifyData(manifest, signature, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation))
            {
                throw new InvalidOperationException("verification failed");
            }
            verifies++;
        }
        var ourVerify = verifies / verifyClock.Elapsed.TotalSeconds;
        var speed = await Tools.RunAsync("openssl", $"speed -seconds {(int)seconds} -mr ecdsap256");
        var opensslVerify = Tools.ParseOpensslEcdsaVerify(speed);
        results.Add(new("bundle signature verification (verifies/s) vs openssl speed ecdsap256", ourVerify, opensslVerify, ">=", 0.85,
            "ECDSA P-256 SHA-256 over a 1 KiB manifest, one thread, both"));

        // 3. unit download -> SHA-256 -> write vs openssl sha256 and dd on the same data (256 MiB)
        var sha = (await File.ReadAllBytesAsync(artifactPath).ContinueWith(t => Convert.ToHexStringLower(SHA256.HashData(t.Result))));
        var published = Path.Combine(options.DataDirectory, "artifacts", sha);
        File.Copy(artifactPath, published, overwrite: true);
        // the host serves only artifacts an update program offers: offer this one from a pattern no unit is on
        await app.Services.GetRequiredService<TsunaguStore>().Catalogue.UpsertUpdateProgramAsync(new Tsunagu.Server.Data.UpdateProgramRow
        {
            Id = "bench", FromPattern = DemoCatalogue.Pattern2, ToPattern = DemoCatalogue.Pattern1, Importance = 1, Priority = 0,
            ArtifactSha256 = sha, ArtifactSize = artifactSize,
        });
        GC.Collect();
        var rssBefore = Tools.Rss();
        var downloadTarget = Path.Combine(work, "downloaded.bin");
        var cpuBefore = Environment.CpuUsage.TotalTime;
        var downloadClock = Stopwatch.StartNew();
        await using (var file = new FileStream(downloadTarget, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.Asynchronous))
        {
            var (got, length) = await unitClient.DownloadAsync(url, $"{Routes.Artifacts}/{sha}", session.Token, file, artifactSize, CancellationToken.None);
            if (got != sha || length != artifactSize) { throw new InvalidOperationException("download digest mismatch"); }
            await file.FlushAsync();
            file.Flush(flushToDisk: true);
        }
        var downloadSeconds = downloadClock.Elapsed.TotalSeconds;
        var downloadCpu = (Environment.CpuUsage.TotalTime - cpuBefore).TotalSeconds;
        var rssGrowth = Tools.Rss() - rssBefore;
        var opensslClock = Stopwatch.StartNew();
        await Tools.RunAsync("openssl", $"dgst -sha256 {artifactPath}");
        var opensslRate = artifactSize / opensslClock.Elapsed.TotalSeconds;
        var ddClock = Stopwatch.StartNew();
        await Tools.RunAsync("dd", $"if={artifactPath} of={Path.Combine(work, "dd.bin")} bs=1M conv=fsync status=none");
        var ddRate = artifactSize / ddClock.Elapsed.TotalSeconds;
        var ourRate = artifactSize / downloadSeconds;
        var reference = Math.Min(opensslRate, ddRate);
        results.Add(new("unit download->SHA-256->write (MB/s) vs min(openssl sha256, dd)", ourRate / 1e6, reference / 1e6, ">=", 0.85,
            string.Create(c, $"256 MiB over HTTPS from the server; openssl sha256 {opensslRate / 1e6:0} MB/s, dd (fsync) {ddRate / 1e6:0} MB/s; RSS growth {rssGrowth / 1048576.0:0.0} MiB (bounded: two {OverlappedCopy.DefaultChunkSize / 1024} KiB chunks)")));

        // 4. server CPU per GB served vs nginx sendfile: the same 256 MiB fetched 4 times from each, CPU of the serving process
        // (the server shares this process with the client, so its figure is this process's CPU minus a client-only run)
        var clientOnlyCpu = await Load.DownloadCpuAsync(new Uri(nginxUrl, "/files/artifact.bin"), 4, null);
        var nginxCpu = await Load.DownloadCpuAsync(new Uri(nginxUrl, "/files/artifact.bin"), 4, nginx.Id);
        var serverTotal = await Load.DownloadCpuAsync(new Uri(url, $"{Routes.Artifacts}/{sha}"), 4, null, session.Token, pin);
        var gb = 4.0 * artifactSize / 1e9;
        var ourCpuPerGb = Math.Max(0, serverTotal - clientOnlyCpu) / gb;
        var nginxCpuPerGb = nginxCpu / gb;
        results.Add(new("server CPU s per GB served vs nginx sendfile (TLS)", ourCpuPerGb, nginxCpuPerGb, "<=", 1.2,
            string.Create(c, $"4 x 256 MiB each; ours = this process's CPU ({serverTotal:0.00} s) minus the same client fetching from nginx ({clientOnlyCpu:0.00} s); nginx = its worker's CPU; nginx cannot sendfile through TLS without kTLS")));

        await Tools.StopNginxAsync(nginx);

    }
}
