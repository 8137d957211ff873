using System.Net;
using System.Security.Cryptography;
using Tsunagu.Firmware.Net;
using Tsunagu.Protocol;

namespace Tsunagu.UnitTests;

public class UnitClientTests
{
    private sealed class Answer(HttpStatusCode status, string body, TimeSpan? retryAfter) : HttpMessageHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var response = new HttpResponseMessage(status) { Content = new StringContent(body, System.Text.Encoding.UTF8, "application/problem+json") };
            if (retryAfter is { } after) { response.Headers.RetryAfter = new System.Net.Http.Headers.RetryConditionHeaderValue(after); }
            return Task.FromResult(response);
        }
    }

    [TestCase(HttpStatusCode.TooManyRequests, true)]
    [TestCase(HttpStatusCode.ServiceUnavailable, true)]
    [TestCase(HttpStatusCode.BadRequest, false)]
    public void Server_answers_become_typed_errors_carrying_retry_after(HttpStatusCode status, bool transient)
    {
        using var client = new UnitClient(new ScriptedNetwork(new Answer(status, """{"type":"urn:tsunagu:problem:overloaded","detail":"busy now"}""", TimeSpan.FromSeconds(7))), ["pin"]);
        var e = Assert.ThrowsAsync<ServerException>(() => client.GetSettingsAsync(new Uri("https://127.0.0.1:9/"), "t", CancellationToken.None));
        Assert.That(e!.IsTransient, Is.EqualTo(transient));
        Assert.That(e.RetryAfter, Is.EqualTo(TimeSpan.FromSeconds(7)));
        Assert.That(e.Message, Does.Contain("busy now").And.Contain(Routes.ProvisioningSettings));
    }

    [Test]
    public void A_refusal_is_recognised_by_its_problem_type()
    {
        using var client = new UnitClient(new ScriptedNetwork(new Answer(HttpStatusCode.Unauthorized, $$"""{"type":"{{ProblemTypes.UnitRefused}}"}""", null)), ["pin"]);
        var e = Assert.ThrowsAsync<ServerException>(() => client.GetSettingsAsync(new Uri("https://127.0.0.1:9/"), "t", CancellationToken.None));
        Assert.That((e!.IsRefusal, e.IsTransient, e.IsSessionExpired), Is.EqualTo((true, false, false)));
    }

    /// <summary>An artifact response whose body is the given stream.</summary>
    private sealed class Artifact(Stream body) : HttpMessageHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
            Task.FromResult(new HttpResponseMessage(HttpStatusCode.OK) { Content = new StreamContent(body) });
    }

    private static readonly Uri Host = new("https://127.0.0.1:9/");

    [Test]
    public async Task An_artifact_of_several_copy_chunks_is_written_whole_with_its_sha256()
    {
        var content = RandomNumberGenerator.GetBytes(OverlappedCopy.DefaultChunkSize * 3 + 1001);
        using var client = new UnitClient(new ScriptedNetwork(new Artifact(new ScriptedStream(content) { MaxPerRead = 16 * 1024 })), ["pin"]);
        using var file = new MemoryStream();
        var (sha, length) = await client.DownloadAsync(Host, "/a", "t", file, content.Length, CancellationToken.None);
        Assert.That((sha, length), Is.EqualTo((Convert.ToHexStringLower(SHA256.HashData(content)), content.LongLength)));
        Assert.That(file.ToArray(), Is.EqualTo(content));
    }

    [Test]
    public void A_body_longer_than_declared_is_refused_and_nothing_past_the_declared_length_is_written()
    {
        var content = RandomNumberGenerator.GetBytes(OverlappedCopy.DefaultChunkSize * 2 + 10);
        var declared = content.Length - 10;
        using var client = new UnitClient(new ScriptedNetwork(new Artifact(new ScriptedStream(content))), ["pin"]);
        using var file = new MemoryStream();
        var e = Assert.ThrowsAsync<ServerException>(() => client.DownloadAsync(Host, "/a", "t", file, declared, CancellationToken.None));
        Assert.That(e!.Message, Does.Contain($"longer than the declared {declared} bytes"));
        Assert.That(e.IsTransient, Is.False);
        Assert.That(file.Length, Is.LessThanOrEqualTo(declared));
    }

    [Test]
    public void A_stalled_download_ends_when_cancelled()
    {
        var content = RandomNumberGenerator.GetBytes(OverlappedCopy.DefaultChunkSize * 2);
        using var client = new UnitClient(new ScriptedNetwork(new Artifact(new ScriptedStream(content) { BlockAt = 5000 })), ["pin"]);
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        using var file = new MemoryStream();
        Assert.That(async () => await client.DownloadAsync(Host, "/a", "t", file, content.Length, cancel.Token).WaitAsync(TimeSpan.FromSeconds(10)),
            Throws.InstanceOf<OperationCanceledException>());
        Assert.That(file.Length, Is.Zero, "the bytes before the stall are not written once cancelled");
    }
}
