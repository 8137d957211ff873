using Tsunagu.Protocol;

namespace Tsunagu.UnitTests.Protocol;

public class ProtocolTests
{
    private static readonly byte[] UnitKey = Enumerable.Range(1, 32).Select(i => (byte)i).ToArray();

    [TestCase("02:54:53:00:00:01", "02:54:53:00:00:01")]
    [TestCase("02-54-53-0A-0b-FF", "02:54:53:0a:0b:ff")]
    [TestCase("025453000001", "02:54:53:00:00:01")]
    public void Mac_addresses_normalise(string input, string expected) =>
        Assert.That(MacAddress.Normalize(input), Is.EqualTo(expected));

    [TestCase("")]
    [TestCase("02:54:53:00:00")]
    [TestCase("02:54:53:00:00:0g")]
    [TestCase("not a mac")]
    public void Malformed_mac_is_refused_with_the_input_named(string input)
    {
        var e = Assert.Throws<ProtocolException>(() => MacAddress.Normalize(input));
        Assert.That(e!.Message, Does.Contain($"'{input}'"));
    }

    [Test]
    public void Unit_secret_depends_on_key_and_mac_and_not_on_mac_spelling()
    {
        var a = UnitCredentials.DeriveUnitSecret(UnitKey, "02:54:53:00:00:01");
        Assert.Multiple(() =>
        {
            Assert.That(UnitCredentials.DeriveUnitSecret(UnitKey, "025453000001"), Is.EqualTo(a));
            Assert.That(UnitCredentials.DeriveUnitSecret(UnitKey, "02:54:53:00:00:02"), Is.Not.EqualTo(a));
            Assert.That(UnitCredentials.DeriveUnitSecret(UnitKey.Reverse().ToArray(), "02:54:53:00:00:01"), Is.Not.EqualTo(a));
            Assert.That(a, Has.Length.EqualTo(32));
        });
    }

    [Test]
    public void Short_unit_key_is_refused() =>
        Assert.Throws<ProtocolException>(() => UnitCredentials.DeriveUnitSecret(new byte[8], "02:54:53:00:00:01"));

    [Test]
    public void Proof_verifies_only_for_the_same_secret_purpose_mac_challenge_and_nonce()
    {
        const string mac = "02:54:53:00:00:01";
        var secret = UnitCredentials.DeriveUnitSecret(UnitKey, mac);
        var proof = UnitCredentials.ComputeProof(secret, ProofPurpose.Host, mac, "c1", "n1");
        var other = UnitCredentials.DeriveUnitSecret(UnitKey, "02:54:53:00:00:02");
        Assert.Multiple(() =>
        {
            Assert.That(UnitCredentials.VerifyProof(secret, ProofPurpose.Host, mac, "c1", "n1", proof), Is.True);
            Assert.That(UnitCredentials.VerifyProof(other, ProofPurpose.Host, mac, "c1", "n1", proof), Is.False, "another unit's secret");
            Assert.That(UnitCredentials.VerifyProof(secret, ProofPurpose.Provisional, mac, "c1", "n1", proof), Is.False, "another purpose");
            Assert.That(UnitCredentials.VerifyProof(secret, ProofPurpose.Host, mac, "c2", "n1", proof), Is.False, "another challenge");
            Assert.That(UnitCredentials.VerifyProof(secret, ProofPurpose.Host, mac, "c1", "n2", proof), Is.False, "another nonce");
            Assert.That(UnitCredentials.VerifyProof(secret, ProofPurpose.Host, mac, "c1", "n1", "%%%not base64"), Is.False, "garbage");
            Assert.That(proof, Does.Not.Contain(Convert.ToBase64String(secret)), "the secret never appears in the proof");
        });
    }

    [Test]
    public void Base64url_round_trips_every_length()
    {
        for (var n = 0; n < 40; n++)
        {
            var data = Enumerable.Range(0, n).Select(i => (byte)(i * 37 + 250)).ToArray();
            var text = Base64Url.Encode(data);
            Assert.That(text, Does.Not.Contain("=").And.Not.Contain("+").And.Not.Contain("/"));
            Assert.That(Base64Url.Decode(text), Is.EqualTo(data));
        }
    }
}
