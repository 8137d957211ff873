using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Tsunagu.Cli.Factory;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// The server's disk fills up (a real tmpfs of a few MiB as its data directory, filled to the last page): writes
/// are answered 507 naming the store, nothing of them is kept, reads and health go on, and once space is freed the
/// same requests succeed without a restart. Needs root (mount), as the system tests do.
/// </summary>
[NonParallelizable]
public class StorageFaultTests
{
    [Test]
    public async Task A_full_disk_answers_507_naming_the_store_keeps_nothing_and_the_server_recovers_when_space_returns()
    {
        Assert.That(Environment.IsPrivilegedProcess, Is.True, "this test mounts a small tmpfs as the server's disk: run it as root");
        var root = TempDirectories.Create("diskfull");
        TestServer.Run("mount", ["-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", root]);
        Microsoft.AspNetCore.Builder.WebApplication? app = null;
        try
        {
            TestServer.DatabaseKind.Value = "sqlite";
            await File.WriteAllTextAsync(Path.Combine(root, "database"), "tsunagu.db");
            await File.WriteAllTextAsync(Path.Combine(root, "mqtt"), "embedded");
            app = await TestServer.BuildServerAsync(root, 0);
            using var releaseKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            await DemoCatalogue.SeedAsync(app.Services.GetRequiredService<TsunaguStore>(), app.Services.GetRequiredService<ArtifactStore>(), releaseKey, TestServer.Password);
            await app.StartAsync();
            var pin = OperatorClient.PinFromPemFile(Path.Combine(root, "server", "tls", ServerCertificate.PemFile));
            using var http = TestServer.PinnedHttp(ServerHost.BaseUrl(app), pin);
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic",
                Convert.ToBase64String(Encoding.UTF8.GetBytes($"{DemoCatalogue.OperatorName}:{TestServer.Password}")));
            var registration = new RegisterUnitRequest("02:54:53:00:0d:01", "DF-0001", DemoCatalogue.HardwareVersion,
                new WanAccount("pppoe", "df-0001@isp.example", "secret"), null, "unit.example", null, null, null, null);
            var artifact = RandomNumberGenerator.GetBytes(1 << 20);

            // every frame SQLite writes from here on needs a new page of the disk
            using (var c = new SqliteConnection($"Data Source={Path.Combine(root, "server", "tsunagu.db")}"))
            {
                c.Open();
                using var checkpoint = c.CreateCommand();
                checkpoint.CommandText = "PRAGMA wal_checkpoint(TRUNCATE)";
                checkpoint.ExecuteNonQuery();
            }
            var filler = Path.Combine(root, "filler");
            var filled = Tsunagu.Cli.Chaos.DiskFiller.Fill(filler);
            TestContext.Out.WriteLine($"filled the disk with {filled / 1024} KiB");

            var refused = await http.PostAsJsonAsync("/api/v1/units", registration, ProtocolJson.Default.RegisterUnitRequest);
            await AssertStorageFull(refused, "database");
            using (var upload = new ByteArrayContent(artifact))
            {
                upload.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
                await AssertStorageFull(await http.PostAsync("/api/v1/artifacts", upload), "data directory");
            }
            Assert.Multiple(async () =>
            {
                Assert.That((await http.GetAsync("/healthz")).StatusCode, Is.EqualTo(HttpStatusCode.OK), "health answers on a full disk");
                Assert.That((await http.GetAsync($"/api/v1/units/{registration.Mac}")).StatusCode, Is.EqualTo(HttpStatusCode.NotFound),
                    "nothing of the refused registration was kept");
                Assert.That(Directory.EnumerateFiles(Path.Combine(root, "server", "artifacts")).Select(Path.GetFileName),
                    Has.None.StartsWith(".upload-").And.None.EqualTo(Convert.ToHexStringLower(SHA256.HashData(artifact))),
                    "nothing of the refused upload was kept");
            });

            File.Delete(filler);
            var registered = await http.PostAsJsonAsync("/api/v1/units", registration, ProtocolJson.Default.RegisterUnitRequest);
            Assert.That((int)registered.StatusCode, Is.InRange(200, 299), await registered.Content.ReadAsStringAsync());
            using (var upload = new ByteArrayContent(artifact))
            {
                upload.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
                var uploaded = await http.PostAsync("/api/v1/artifacts", upload);
                Assert.That(uploaded.StatusCode, Is.EqualTo(HttpStatusCode.Created), await uploaded.Content.ReadAsStringAsync());
            }
            Assert.That((await http.GetAsync($"/api/v1/units/{registration.Mac}")).StatusCode, Is.EqualTo(HttpStatusCode.OK),
                "after space returned, the same registration was kept without a restart");
        }
        finally
        {
            if (app is not null)
            {
                await app.StopAsync();
                await app.DisposeAsync();
            }
            SqliteConnection.ClearAllPools();
            TestServer.Run("umount", ["-l", root]);
            Directory.Delete(root, recursive: true);
        }
    }

    private static async Task AssertStorageFull(HttpResponseMessage response, string resource)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.That((int)response.StatusCode, Is.EqualTo(507), body);
        Assert.That(response.Headers.RetryAfter?.Delta, Is.Not.Null, "a full disk says when to retry");
        var problem = System.Text.Json.JsonSerializer.Deserialize(body, ProtocolJson.Default.ProblemBody);
        Assert.That(problem?.Type, Is.EqualTo(StorageFaults.ProblemType), body);
        Assert.That(problem?.Detail, Does.Contain(resource), body);
    }
}
