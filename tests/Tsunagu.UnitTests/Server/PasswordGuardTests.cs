using System.Net;
using Microsoft.Extensions.Time.Testing;
using Tsunagu.Server;
using Tsunagu.Server.Security;

namespace Tsunagu.UnitTests.Server;

/// <summary>
/// Password checks (server/Tsunagu.Server/Security/PasswordGuard.cs): the three windows (account from address,
/// address, account), with fake time, and the hashing slots.
/// </summary>
public class PasswordGuardTests
{
    private const string Password = "correct horse";
    private static readonly Lazy<string> Hash = new(() => PasswordHasher.Hash(Password));
    private static readonly IPAddress A = IPAddress.Parse("192.0.2.1");
    private static readonly IPAddress B = IPAddress.Parse("192.0.2.2");
    private static readonly IPAddress C = IPAddress.Parse("192.0.2.3");
    private static readonly IPAddress D = IPAddress.Parse("192.0.2.4");

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 4, 1, 9, 0, 0, TimeSpan.Zero));

    private static Task<string?> Stored(string name, CancellationToken ct) => Task.FromResult<string?>(name is "alice" or "bob" or "carol" ? Hash.Value : null);

    private PasswordGuard Guard(int pair = 100, int source = 100, int account = 100, int hashing = 4) => new(new ServerOptions
    {
        LoginAttemptsPerMinute = pair,
        PasswordAttemptsPerSourcePerMinute = source,
        PasswordAttemptsPerAccountPerMinute = account,
        ConcurrentPasswordChecks = hashing,
    }, _time);

    private static async Task<PasswordVerdict> Check(PasswordGuard guard, string name, string password, IPAddress from) =>
        (await guard.CheckAsync("operator", name, password, from, Stored, CancellationToken.None)).Verdict;

    [Test]
    public async Task Guesses_at_one_account_from_one_address_are_limited_then_refused_even_with_the_right_password_until_the_window_ends()
    {
        var guard = Guard(pair: 3);
        for (var i = 0; i < 3; i++)
        {
            Assert.That(await Check(guard, "alice", "wrong", A), Is.EqualTo(PasswordVerdict.Refused));
        }
        _time.Advance(TimeSpan.FromSeconds(20));

        var limited = await guard.CheckAsync("operator", "alice", Password, A, Stored, CancellationToken.None);
        Assert.That(limited.Verdict, Is.EqualTo(PasswordVerdict.Limited));
        Assert.That(limited.RetryAfter, Is.EqualTo(TimeSpan.FromSeconds(40)), "until the window that is full ends");
        Assert.That(await Check(guard, "alice", "wrong", B), Is.EqualTo(PasswordVerdict.Refused), "another address has its own window");

        _time.Advance(TimeSpan.FromSeconds(40));
        Assert.That(await Check(guard, "alice", Password, A), Is.EqualTo(PasswordVerdict.Accepted));
    }

    [Test]
    public async Task One_address_trying_many_accounts_is_limited_across_them()
    {
        var guard = Guard(source: 2);
        Assert.That(await Check(guard, "alice", "wrong", A), Is.EqualTo(PasswordVerdict.Refused));
        Assert.That(await Check(guard, "nobody", "wrong", A), Is.EqualTo(PasswordVerdict.Refused), "an unknown account counts as a known one");
        Assert.That(await Check(guard, "bob", Password, A), Is.EqualTo(PasswordVerdict.Limited));
        Assert.That(await Check(guard, "bob", Password, B), Is.EqualTo(PasswordVerdict.Accepted));
    }

    [Test]
    public async Task Guesses_from_many_addresses_limit_the_account_but_never_for_an_address_its_owner_signs_in_from()
    {
        var guard = Guard(account: 2);
        Assert.That(await Check(guard, "alice", Password, A), Is.EqualTo(PasswordVerdict.Accepted));
        // past the time a correct password is recognised without hashing, so the next check from A is a real one
        _time.Advance(PasswordGuard.RecognisedFor + TimeSpan.FromSeconds(1));

        Assert.That(await Check(guard, "alice", "wrong", B), Is.EqualTo(PasswordVerdict.Refused));
        Assert.That(await Check(guard, "alice", "wrong", C), Is.EqualTo(PasswordVerdict.Refused));
        Assert.That(await Check(guard, "alice", Password, D), Is.EqualTo(PasswordVerdict.Limited), "a new address meets the full account window");
        Assert.That(await Check(guard, "alice", Password, A), Is.EqualTo(PasswordVerdict.Accepted), "the owner's address is not locked out");
        Assert.That(await Check(guard, "bob", Password, D), Is.EqualTo(PasswordVerdict.Accepted), "other accounts are not limited");
    }

    [Test]
    public async Task A_success_gives_its_attempt_back()
    {
        var guard = Guard(pair: 2);
        Assert.That(await Check(guard, "alice", "wrong", A), Is.EqualTo(PasswordVerdict.Refused));
        Assert.That(await Check(guard, "alice", Password, A), Is.EqualTo(PasswordVerdict.Accepted));
        Assert.That(await Check(guard, "alice", "wrong again", A), Is.EqualTo(PasswordVerdict.Refused), "one failure counted before it, not two");
        Assert.That(await Check(guard, "alice", "wrong once more", A), Is.EqualTo(PasswordVerdict.Limited));
    }

    [Test]
    public async Task When_every_hashing_slot_is_taken_a_check_is_refused_at_once_and_not_counted()
    {
        var guard = Guard(pair: 1, hashing: 1);
        using (var slot = guard.TryTakeHashingSlot())
        {
            Assert.That(slot, Is.Not.Null);
            Assert.That(guard.TryTakeHashingSlot(), Is.Null);
            var busy = await guard.CheckAsync("operator", "alice", Password, A, Stored, CancellationToken.None);
            Assert.That((busy.Verdict, busy.RetryAfter), Is.EqualTo((PasswordVerdict.Busy, TimeSpan.FromSeconds(1))));
            Assert.That(guard.HashingNow, Is.EqualTo(1));
        }
        Assert.That(guard.HashingNow, Is.Zero);
        Assert.That(await Check(guard, "alice", "wrong", A), Is.EqualTo(PasswordVerdict.Refused), "the busy attempt was given back");
        Assert.That(await Check(guard, "alice", "wrong", A), Is.EqualTo(PasswordVerdict.Limited));
    }
}
