using CsCheck;
using Tsunagu.Protocol;

namespace Tsunagu.UnitTests.Protocol;

/// <summary>The WAN account grammar the server and the unit both apply.</summary>
public class WanAccountGrammarTests
{
    [TestCase("pppoe", "user@isp.example", "pw", null, null)]
    [TestCase("PPPoE", "0123456789ab", "a b~c!", null, null)]
    [TestCase("dhcp", null, null, null, null)]
    [TestCase("static", null, null, "192.0.2.9/24", "192.0.2.1")]
    [TestCase("static", null, null, "203.0.113.7", "203.0.113.1")]
    public void Well_formed_accounts_pass(string method, string? user, string? password, string? address, string? gateway) =>
        Assert.That(WanAccountGrammar.Problem(new WanAccount(method, user, password, address, gateway, ["192.0.2.53"])), Is.Null);

    [TestCase("pppoe", "user", null, null, null, "password: required")]
    [TestCase("pppoe", "us\ter", "pw", null, null, "username:")]
    [TestCase("pppoe", "user", "p\"w", null, null, "password:")]
    [TestCase("static", null, null, "192.0.2.9", null, "gateway: required")]
    [TestCase("static", null, null, "192.0.2.9/0", "192.0.2.1", "address:")]
    [TestCase("static", null, null, "192.0.2.09", "192.0.2.1", "address:")]
    [TestCase("static", null, null, "192.0.2.9/24", "::1", "gateway:")]
    [TestCase("isdn", null, null, null, null, "method:")]
    public void Malformed_accounts_say_which_field(string method, string? user, string? password, string? address, string? gateway, string problem) =>
        Assert.That(WanAccountGrammar.Problem(new WanAccount(method, user, password, address, gateway)), Does.StartWith(problem));

    [Test]
    public void Too_many_or_bad_name_servers_are_refused()
    {
        Assert.That(WanAccountGrammar.Problem(new WanAccount("dhcp", Dns: ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"])), Does.StartWith("dns:"));
        Assert.That(WanAccountGrammar.Problem(new WanAccount("dhcp", Dns: ["192.0.2.1 ; rm"])), Does.StartWith("dns:"));
    }

    // a regular expression's '$' also matches before a final line feed: the grammar must end at the end of the text
    [TestCase("pppoe", "user@isp.example\n", "pw", null, null, "username:")]
    [TestCase("static", null, null, "192.0.2.9\n", "192.0.2.1", "address:")]
    [TestCase("static", null, null, "192.0.2.9/24", "192.0.2.1\n", "gateway:")]
    public void A_final_line_feed_is_refused(string method, string? user, string? password, string? address, string? gateway, string problem)
    {
        Assert.That(WanAccountGrammar.Problem(new WanAccount(method, user, password, address, gateway)), Does.StartWith(problem));
        Assert.That(WanAccountGrammar.Problem(new WanAccount("static", null, null, "192.0.2.9", "192.0.2.1", ["192.0.2.53\n"])), Does.StartWith("dns:"));
    }

    [Test]
    public void No_accepted_field_holds_a_control_character_a_quote_or_a_backslash() =>
        Gen.String.Sample(s =>
        {
            var account = new WanAccount("pppoe", "u" + s, "p" + s);
            var bad = s.Any(c => char.IsControl(c) || c is '"' or '\\' || c > '~');
            return !bad || WanAccountGrammar.Problem(account) is not null;
        });
}

/// <summary>The provisioning PPP password the factory derives from the MAC with the operator's unit key (patent 0055).</summary>
public class AccessPasswordTests
{
    private static readonly byte[] Key = Enumerable.Range(1, 32).Select(i => (byte)i).ToArray();

    [Test]
    public void It_is_fixed_per_key_and_mac_and_unrelated_to_the_unit_secret()
    {
        var mac = "02:00:5e:10:00:01";
        var password = UnitCredentials.DeriveAccessPassword(Key, mac);
        Assert.That(password, Has.Length.EqualTo(UnitCredentials.AccessPasswordLength));
        Assert.That(UnitCredentials.DeriveAccessPassword(Key, "02-00-5E-10-00-01"), Is.EqualTo(password), "any spelling of the MAC");
        Assert.That(UnitCredentials.DeriveAccessPassword(Key, "02:00:5e:10:00:02"), Is.Not.EqualTo(password));
        var otherKey = Key.ToArray();
        otherKey[0] ^= 1;
        Assert.That(UnitCredentials.DeriveAccessPassword(otherKey, mac), Is.Not.EqualTo(password));
        var secret = Base64Url.Encode(UnitCredentials.DeriveUnitSecret(Key, mac));
        Assert.That(secret, Does.Not.StartWith(password[..8]), "a different label: the password does not reveal the unit secret");
        Assert.That(WanAccountGrammar.Problem(new WanAccount("pppoe", UnitCredentials.AccessUsername(mac), password)), Is.Null);
        Assert.That(UnitCredentials.AccessUsername(mac), Is.EqualTo("02005e100001"));
        Assert.Throws<ProtocolException>(() => UnitCredentials.DeriveAccessPassword(Key.AsSpan(0, 8), mac));
    }
}
