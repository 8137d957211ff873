using CsCheck;
using Tsunagu.Protocol;

namespace Tsunagu.UnitTests.Protocol;

/// <summary>Short-lived broker passwords (<see cref="BrokerPassword"/>): expiry windows, and what is refused.</summary>
public class BrokerPasswordTests
{
    private static Gen<byte[]> Bytes(int count) => Gen.Int.Select(seed =>
    {
        var bytes = new byte[count];
        new Random(seed).NextBytes(bytes);
        return bytes;
    });

    private static readonly Gen<byte[]> Key = Bytes(32);
    private static readonly Gen<string> Mac = Bytes(6).Select(b => string.Join(':', b.Select(x => x.ToString("x2"))));
    private static readonly Gen<DateTimeOffset> Now = Gen.Long[946_684_800, 4_102_444_800].Select(DateTimeOffset.FromUnixTimeSeconds);
    private static readonly Gen<TimeSpan> Lifetime = Gen.Int[2, 30 * 86_400].Select(s => TimeSpan.FromSeconds(s));

    [Test]
    public void A_password_is_valid_between_half_and_one_and_a_half_lifetimes_and_the_same_within_a_half_lifetime() =>
        Gen.Select(Now, Lifetime, Gen.Double[0, 1]).Sample((now, lifetime, f) =>
        {
            var expiry = BrokerPassword.ExpiryFor(now, lifetime);
            var left = expiry - now;
            var seconds = (long)lifetime.TotalSeconds;
            Assert.That(left.TotalSeconds, Is.GreaterThan(seconds - seconds / 2 - 1).And.LessThanOrEqualTo(seconds + seconds / 2 + 1));
            Assert.That(expiry.ToUnixTimeSeconds() % seconds, Is.EqualTo(0), "aligned, so every replica issues the same expiry");
            // later in the same window of issue times: the same expiry
            var windowStart = expiry.ToUnixTimeSeconds() - seconds - seconds / 2;
            var later = DateTimeOffset.FromUnixTimeSeconds(windowStart + (long)(f * (seconds - 1)));
            Assert.That(BrokerPassword.ExpiryFor(later, lifetime), Is.EqualTo(expiry), $"issued at {later} vs {now}");
        });

    [Test]
    public void A_password_is_good_only_for_its_mac_its_key_and_before_its_expiry() =>
        Gen.Select(Key, Key, Mac, Mac, Now, Gen.Int[1, 100_000]).Sample((key, otherKey, mac, otherMac, now, valid) =>
        {
            var expiry = now.AddSeconds(valid);
            var password = BrokerPassword.Issue(key, mac, expiry);
            Assert.That(BrokerPassword.Check(key, mac, password, now), Is.Null);
            Assert.That(BrokerPassword.Check(key, mac.ToUpperInvariant().Replace(':', '-'), password, now), Is.Null, "any spelling of the MAC");
            Assert.That(BrokerPassword.Check(key, mac, password, expiry), Is.Not.Null, "at its expiry");
            if (MacAddress.Normalize(otherMac) != MacAddress.Normalize(mac))
            {
                Assert.That(BrokerPassword.Check(key, otherMac, password, now), Is.Not.Null, "another unit");
            }
            if (!otherKey.AsSpan().SequenceEqual(key))
            {
                Assert.That(BrokerPassword.Check(otherKey, mac, password, now), Is.Not.Null, "another key");
            }
            Assert.That(BrokerPassword.ExpiryOf(password), Is.EqualTo(DateTimeOffset.FromUnixTimeSeconds(expiry.ToUnixTimeSeconds())));
        });

    [Test]
    public void Any_change_to_a_password_is_refused() =>
        Gen.Select(Key, Mac, Now, Gen.Int[0, 1000], Gen.Char["0123456789.-_abcxyzABCXYZv"]).Sample((key, mac, now, at, c) =>
        {
            var password = BrokerPassword.Issue(key, mac, now.AddDays(1));
            var i = at % password.Length;
            var changed = password[..i] + c + password[(i + 1)..];
            if (changed == password) { return; }
            // a changed expiry digit may still parse, but the HMAC no longer matches; anything else does not parse
            Assert.That(BrokerPassword.Check(key, mac, changed, now), Is.Not.Null, changed);
        });

    [Test]
    public void Another_spelling_of_the_same_hmac_is_refused()
    {
        var key = Enumerable.Range(0, 32).Select(i => (byte)i).ToArray();
        var now = DateTimeOffset.FromUnixTimeSeconds(1_700_000_000);
        var password = BrokerPassword.Issue(key, "02:00:00:00:00:01", now.AddDays(1));
        // 32 bytes are 43 base64url characters: the last one carries 4 bits and 2 unused ones
        const string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        var last = alphabet.IndexOf(password[^1]);
        var respelled = password[..^1] + alphabet[last ^ 1];
        Assert.That(BrokerPassword.Check(key, "02:00:00:00:00:01", password, now), Is.Null);
        Assert.That(BrokerPassword.Check(key, "02:00:00:00:00:01", respelled, now), Is.Not.Null, respelled);
    }

    [TestCase(null)]
    [TestCase("")]
    [TestCase("v1")]
    [TestCase("v1..")]
    [TestCase("v1.-5.AAAA")]
    [TestCase("v1.99999999999999999999.AAAA")]
    [TestCase("v2.4102444800.AAAA")]
    [TestCase("v1.4102444800.!!!")]
    [TestCase("v1.4102444800.A")]
    [TestCase("v1.٤١٠٢٤٤٤٨٠٠.AAAA")]
    public void Malformed_passwords_are_refused_without_throwing(string? password) =>
        Assert.That(BrokerPassword.Check(new byte[32], "02:54:53:00:00:01", password, DateTimeOffset.UnixEpoch), Is.Not.Null);

    [Test]
    public void A_password_longer_than_the_limit_is_refused() =>
        Assert.That(BrokerPassword.Check(new byte[32], "02:54:53:00:00:01", new string('A', BrokerPassword.MaxLength + 1), DateTimeOffset.UnixEpoch), Is.Not.Null);
}
