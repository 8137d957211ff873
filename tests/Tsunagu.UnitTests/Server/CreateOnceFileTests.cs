using System.Security.Cryptography.X509Certificates;
using Tsunagu.Server.Push;
using Tsunagu.Server.Security;
using Tsunagu.Server.Units.Lifecycle;

namespace Tsunagu.UnitTests.Server;

/// <summary>
/// The keys and the certificate the server makes at its first start, shared by replicas that start on one data
/// directory: the first file written is everyone's, whoever starts at the same moment.
/// </summary>
public class CreateOnceFileTests
{
    private string _root = "";

    [SetUp]
    public void SetUp()
    {
        _root = Path.Combine(Path.GetTempPath(), "tsunagu-once-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(_root);
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_root, recursive: true);

    [Test]
    public void A_writer_that_finds_the_file_already_there_keeps_it_and_takes_its_bytes()
    {
        // the moment of the race made certain: another replica published between this one's look and its move
        var path = Path.Combine(_root, "broker.key");
        var first = Enumerable.Repeat((byte)1, 32).ToArray();
        File.WriteAllBytes(path, first);
        var taken = CreateOnceFile.Publish(path, Enumerable.Repeat((byte)2, 32).ToArray());
        Assert.That(taken, Is.EqualTo(first), "the winner's bytes");
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(first), "not replaced");
        Assert.That(Directory.GetFiles(_root), Is.EqualTo(new[] { path }), "no temporary file left");

        var fresh = Path.Combine(_root, "token.key");
        var made = Enumerable.Repeat((byte)3, 32).ToArray();
        Assert.That(CreateOnceFile.Publish(fresh, made, UnixFileMode.UserRead | UnixFileMode.UserWrite), Is.EqualTo(made));
        if (!OperatingSystem.IsWindows())
        {
            Assert.That(File.GetUnixFileMode(fresh), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite), "only its owner reads a key");
        }
    }

    [Test]
    public async Task Replicas_starting_at_once_on_one_directory_all_get_the_same_keys_and_certificate()
    {
        for (var round = 0; round < 10; round++)
        {
            var directory = Path.Combine(_root, $"round{round}");
            using var start = new Barrier(6);
            var replicas = await Task.WhenAll(Enumerable.Range(0, 6).Select(_ => Task.Run(() =>
            {
                start.SignalAndWait();
                var broker = BrokerKey.LoadOrCreate(Path.Combine(directory, "keys")).Current.Id;
                var token = Convert.ToHexString(TokenService.LoadOrCreateKey(Path.Combine(directory, "keys")));
                var secrets = SecretBox.LoadOrCreate(Path.Combine(directory, "keys")).CurrentId;
                using var certificate = ServerCertificate.LoadOrCreate(Path.Combine(directory, "tls"));
                return (broker, token, secrets, certificate.Thumbprint);
            })));
            Assert.That(replicas.Distinct().Count(), Is.EqualTo(1), $"round {round}: one broker key, token key, secrets key and certificate for all:\n{string.Join("\n", replicas)}");
            var pem = X509Certificate2.CreateFromPem(File.ReadAllText(Path.Combine(directory, "tls", ServerCertificate.PemFile)));
            Assert.That(pem.Thumbprint, Is.EqualTo(replicas[0].Thumbprint), "the PEM units pin is the certificate every replica presents");
            Assert.That(Directory.GetFiles(directory, "*.tmp", SearchOption.AllDirectories), Is.Empty);
        }
    }
}
