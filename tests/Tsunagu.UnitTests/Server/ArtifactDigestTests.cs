using Tsunagu.Server.Data;

namespace Tsunagu.UnitTests.Server;

/// <summary>A digest given by a person or a unit (<see cref="ArtifactStore.ReadDigest"/>): stored in lower case, else a problem naming the value safely.</summary>
public class ArtifactDigestTests
{
    [Test]
    public void No_digest_is_a_problem_naming_the_field()
    {
        var (digest, problem) = ArtifactStore.ReadDigest(null);
        Assert.That(problem, Is.EqualTo("digest: '' is not a SHA-256 in hex"));
        Assert.That(ArtifactStore.IsDigest(digest), Is.False);
    }

    [Test]
    public void Upper_case_hex_is_accepted_and_stored_in_lower_case()
    {
        var given = "ABCDEF0123456789" + new string('A', 48);
        var (digest, problem) = ArtifactStore.ReadDigest(given);
        Assert.That(problem, Is.Null);
        Assert.That(digest, Is.EqualTo(given.ToLowerInvariant()));
        Assert.That(ArtifactStore.IsDigest(digest), Is.True, "as stored: lower case");
    }

    [Test]
    public void Control_characters_are_escaped_in_the_problem()
    {
        var (_, problem) = ArtifactStore.ReadDigest("ab\ncd\u0007\u001b[31m");
        Assert.That(problem, Is.EqualTo("digest: 'ab?cd??[31m' is not a SHA-256 in hex"));
        Assert.That(problem, Has.None.Matches<char>(char.IsControl), "no control character reaches a log or a terminal");
    }

    [Test]
    public void Too_short_or_not_hex_is_a_problem()
    {
        Assert.That(ArtifactStore.ReadDigest(new string('a', 63)).Problem, Is.Not.Null);
        Assert.That(ArtifactStore.ReadDigest(new string('g', 64)).Problem, Is.Not.Null);
        Assert.That(ArtifactStore.ReadDigest(new string('a', 65)).Problem, Is.Not.Null);
    }
}
