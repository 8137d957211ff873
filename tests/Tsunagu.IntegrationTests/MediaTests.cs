using Microsoft.Extensions.DependencyInjection;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;

namespace Tsunagu.IntegrationTests;

/// <summary>Local install media (patent 0037): the host vouches for genuine media; the unit installs from them.</summary>
[NonParallelizable]
public class MediaTests
{
    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    private static async Task<(string Image, string Digest, string ArtifactPath)> MakeImage(TestServer server, string name)
    {
        var program = (await server.Store.Catalogue.GetUpdateProgramAsync(DemoCatalogue.UpdateId))!;
        var artifact = server.App.Services.GetRequiredService<ArtifactStore>().PathOf(program.ArtifactSha256)!;
        var image = Path.Combine(server.Root, name + ".img");
        await using (var stream = File.Create(image))
        {
            await MediaImage.WriteAsync(stream, name, [artifact], DateTimeOffset.UtcNow, CancellationToken.None);
        }
        await using var read = File.OpenRead(image);
        var (_, digest) = await MediaImage.InspectAsync(read, CancellationToken.None);
        return (image, digest, artifact);
    }

    [Test]
    public async Task A_genuine_medium_is_installed_from_without_downloading()
    {
        await using var server = await TestServer.StartAsync();
        var (image, digest, artifact) = await MakeImage(server, "field-kit");
        using var client = server.Operator();
        await client.SendJsonAsync(HttpMethod.Post, Routes.Media, new MediaRegistration(digest, "field kit 1"), CancellationToken.None);
        File.Move(artifact, artifact + ".gone"); // the host can no longer serve the bundle: only the medium has it

        var unit = (await server.AddUnitsAsync(1))[0];
        unit.Hardware.Media.Insert(image);
        server.Fleet.Start(unit);
        await server.WaitReadyAsync(unit);

        Assert.That((await server.Store.Units.GetUnitAsync(unit.Mac))!.Pattern, Is.EqualTo(DemoCatalogue.Pattern2));
        Assert.That(server.Log.Any(l => l.Contains("reading the bundle from install medium 'field-kit'")), Is.True);
        Assert.That(unit.Hardware.Media.ImagePath, Is.EqualTo(image), "a genuine medium stays in");
        Assert.That((await server.Store.ListAuditAsync(50)).Any(a => a.Action == "media.accepted" && a.Target == digest), Is.True);
    }

    [Test]
    public async Task A_medium_the_host_does_not_know_is_ejected_and_the_update_is_downloaded()
    {
        await using var server = await TestServer.StartAsync();
        var (image, digest, _) = await MakeImage(server, "unknown-kit");
        var unit = (await server.AddUnitsAsync(1))[0];
        unit.Hardware.Media.Insert(image);
        server.Fleet.Start(unit);
        await server.WaitReadyAsync(unit);

        Assert.That(unit.Hardware.Media.ImagePath, Is.Null);
        Assert.That(unit.Hardware.Media.EjectedBecause, Does.Contain("not genuine"));
        Assert.That((await server.Store.Units.GetUnitAsync(unit.Mac))!.Pattern, Is.EqualTo(DemoCatalogue.Pattern2), "updated from the host instead");
        Assert.That(server.Log.Any(l => l.Contains("from install medium")), Is.False);
        Assert.That((await server.Store.ListAuditAsync(50)).Any(a => a.Action == "media.rejected" && a.Target == digest), Is.True);
    }

    [Test]
    public async Task A_tampered_copy_of_a_genuine_medium_is_ejected()
    {
        await using var server = await TestServer.StartAsync();
        var (image, digest, _) = await MakeImage(server, "kit");
        using var client = server.Operator();
        await client.SendJsonAsync(HttpMethod.Post, Routes.Media, new MediaRegistration(digest, "kit"), CancellationToken.None);
        var bytes = await File.ReadAllBytesAsync(image);
        bytes[600] ^= 0x01; // inside the index entry: the medium still reads, but its contents changed
        var tampered = Path.Combine(server.Root, "tampered.img");
        await File.WriteAllBytesAsync(tampered, bytes);

        var unit = (await server.AddUnitsAsync(1))[0];
        unit.Hardware.Media.Insert(tampered);
        server.Fleet.Start(unit);
        await server.WaitReadyAsync(unit);
        Assert.That(unit.Hardware.Media.EjectedBecause, Does.Contain("not genuine").Or.Contain("unreadable"));
        Assert.That(server.Log.Any(l => l.Contains("from install medium")), Is.False);

        var malformed = Assert.ThrowsAsync<Tsunagu.Cli.Factory.OperatorApiException>(() =>
            client.SendJsonAsync(HttpMethod.Post, Routes.Media, new MediaRegistration("not-a-digest", "bad"), CancellationToken.None));
        Assert.That((malformed!.Status, malformed.Message.Contains("'not-a-digest' is not a SHA-256")), Is.EqualTo((400, true)));
        var unnamed = Assert.ThrowsAsync<Tsunagu.Cli.Factory.OperatorApiException>(() =>
            client.SendJsonAsync(HttpMethod.Post, Routes.Media, new MediaRegistration(new string('a', 64), " "), CancellationToken.None));
        Assert.That(unnamed!.Message, Does.Contain("name: required"));
        using var http = server.PinnedHttp();
        var session = await new Tsunagu.Firmware.Net.UnitClient(new PassThrough(), [server.Pin]).AuthenticateAsync(new Uri(server.Url),
            ProofPurpose.Host, server.Identity(1), Convert.FromBase64String(server.Identity(1).UnitSecret), CancellationToken.None);
        using var check = new HttpRequestMessage(HttpMethod.Post, Routes.MediaCheck) { Content = System.Net.Http.Json.JsonContent.Create(new MediaCheckRequest("xyz")) };
        check.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", session.Token);
        var badCheck = await http.SendAsync(check);
        Assert.That(badCheck.StatusCode, Is.EqualTo(System.Net.HttpStatusCode.BadRequest));
        Assert.That(await badCheck.Content.ReadAsStringAsync(), Does.Contain("digest: 'xyz' is not a SHA-256"));

        var duplicate = Assert.ThrowsAsync<Tsunagu.Cli.Factory.OperatorApiException>(() =>
            client.SendJsonAsync(HttpMethod.Post, Routes.Media, new MediaRegistration(digest, "again"), CancellationToken.None));
        Assert.That(duplicate!.Status, Is.EqualTo(409));
    }

    private sealed class PassThrough : Tsunagu.Hal.INetworkAccess
    {
        public HttpMessageHandler WrapHandler(HttpMessageHandler inner) => inner;
        public void EnsureRoute() { }
    }
}
