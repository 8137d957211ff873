using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;

namespace Tsunagu.Server.Security;

/// <summary>The outcome of one password check.</summary>
public enum PasswordVerdict
{
    /// <summary>The password is the account's.</summary>
    Accepted,

    /// <summary>Unknown account or wrong password (the caller cannot tell which).</summary>
    Refused,

    /// <summary>Too many attempts: refused before any hashing; retry after <see cref="PasswordCheck.RetryAfter"/>.</summary>
    Limited,

    /// <summary>As many passwords are being hashed as the server allows at once: refused at once, retry shortly.</summary>
    Busy,
}

public sealed record PasswordCheck(PasswordVerdict Verdict, TimeSpan RetryAfter)
{
    public static readonly PasswordCheck Accepted = new(PasswordVerdict.Accepted, TimeSpan.Zero);
    public static readonly PasswordCheck Refused = new(PasswordVerdict.Refused, TimeSpan.Zero);

    /// <summary>The problem answer of a check that did not accept: 401, 429 or 503, the last two with Retry-After.</summary>
    public RetryAfterResult Problem(string wrong) => Verdict switch
    {
        PasswordVerdict.Limited => new RetryAfterResult(RetryAfter, Problems.Make(StatusCodes.Status429TooManyRequests, ProblemTypes.RateLimited,
            "Too many attempts", "too many password attempts for this account or from this address; retry after the time in Retry-After")),
        PasswordVerdict.Busy => new RetryAfterResult(RetryAfter, Problems.Make(StatusCodes.Status503ServiceUnavailable, ProblemTypes.Overloaded,
            "Server busy", "the server is checking as many passwords as it can at once; retry after the time in Retry-After")),
        _ => new RetryAfterResult(null, Problems.Unauthorized(ProblemTypes.InvalidToken, wrong)),
    };
}

/// <summary>
/// Every password check of the server (API Basic auth, the subscriber token, console and portal sign-in) goes
/// through here. In order: a correct password checked recently is recognised without hashing again; then the
/// attempt is counted against three windows (this account from this address, this address for any account, this
/// account from any address it has never signed in from) and refused with Retry-After before any hashing when one
/// is full; then it waits for no one: when <see cref="ServerOptions.ConcurrentPasswordChecks"/> hashes are running,
/// it is refused at once (503). Unknown accounts are hashed against a dummy, so they take as long as known ones.
/// A success gives its attempt back and marks the address as one the account signs in from, so that guesses from
/// elsewhere never lock the account's owner out.
/// </summary>
public sealed class PasswordGuard
{
    /// <summary>How long a correct password is recognised without hashing it again (Basic auth sends it with every request).</summary>
    public static readonly TimeSpan RecognisedFor = TimeSpan.FromMinutes(5);

    /// <summary>How long an address an account signed in from stays exempt from that account's all-addresses window.</summary>
    public static readonly TimeSpan TrustedSourceFor = TimeSpan.FromDays(30);

    private static readonly TimeSpan Window = TimeSpan.FromMinutes(1);
    private const int MaxEntries = 100_000;

    private readonly ServerOptions _options;
    private readonly TimeProvider _time;
    private readonly SemaphoreSlim _hashing;
    private readonly byte[] _cacheKey = RandomNumberGenerator.GetBytes(32);
    private readonly Lock _lock = new();
    private readonly Dictionary<string, (DateTimeOffset Start, int Count)> _windows = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, DateTimeOffset> _recognised = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, DateTimeOffset> _trustedSources = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Task<PasswordCheck>> _inFlight = new(StringComparer.Ordinal);
    private readonly Lazy<string> _dummy = new(() => PasswordHasher.Hash(Convert.ToBase64String(RandomNumberGenerator.GetBytes(18))));

    public PasswordGuard(ServerOptions options, TimeProvider time)
    {
        _options = options;
        _time = time;
        _hashing = new SemaphoreSlim(options.ConcurrentPasswordChecks, options.ConcurrentPasswordChecks);
    }

    /// <summary>Password hashes running now.</summary>
    public int HashingNow => _options.ConcurrentPasswordChecks - _hashing.CurrentCount;

    /// <summary>Takes one hashing slot if one is free at once; null when all are taken.</summary>
    public IDisposable? TryTakeHashingSlot() => _hashing.Wait(0) ? new Slot(_hashing) : null;

    /// <summary>
    /// Checks <paramref name="password"/> for account <paramref name="name"/> of <paramref name="realm"/> ("operator" or
    /// "subscriber"), from <paramref name="source"/>; <paramref name="storedHash"/> reads the account's hash (null: no such account).
    /// </summary>
    public async Task<PasswordCheck> CheckAsync(string realm, string name, string password, IPAddress? source, Func<string, CancellationToken, Task<string?>> storedHash,
        CancellationToken ct)
    {
        var account = $"{realm}:{name.Trim().ToLowerInvariant()}";
        var from = source?.ToString() ?? "unknown";
        var stored = name.Length is > 0 and <= 256 ? await storedHash(name, ct) : null;
        var key = stored is null ? null : RecognitionKey(realm, name, password, stored);
        var now = _time.GetUtcNow();
        if (key is not null && _recognised.TryGetValue(key, out var until) && until > now)
        {
            return PasswordCheck.Accepted;
        }
        // the same credentials checked at once (a client's burst of requests) share one check: one attempt, one hash
        var flightKey = key ?? $"unknown|{account}|{Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(password)))}";
        var flight = new TaskCompletionSource<PasswordCheck>(TaskCreationOptions.RunContinuationsAsynchronously);
        var running = _inFlight.GetOrAdd(flightKey, flight.Task);
        if (running != flight.Task)
        {
            return await running.WaitAsync(ct);
        }
        try
        {
            var result = await CheckOnceAsync(account, from, password, stored, key, now);
            flight.SetResult(result);
            return result;
        }
        catch (Exception e)
        {
            flight.SetException(e);
            throw;
        }
        finally
        {
            _inFlight.TryRemove(KeyValuePair.Create(flightKey, flight.Task));
        }
    }

    private async Task<PasswordCheck> CheckOnceAsync(string account, string from, string password, string? stored, string? key, DateTimeOffset now)
    {
        var trusted = _trustedSources.TryGetValue($"{account}|{from}", out var trustedUntil) && trustedUntil > now;
        string[] windows = trusted ? [$"pair|{account}|{from}", $"source|{from}"] : [$"pair|{account}|{from}", $"source|{from}", $"account|{account}"];
        int[] limits = [_options.LoginAttemptsPerMinute, _options.PasswordAttemptsPerSourcePerMinute, _options.PasswordAttemptsPerAccountPerMinute];
        if (Reserve(windows, limits, now) is { } wait)
        {
            return new PasswordCheck(PasswordVerdict.Limited, wait);
        }
        bool correct;
        using (var slot = TryTakeHashingSlot())
        {
            if (slot is null)
            {
                Release(windows, now);
                return new PasswordCheck(PasswordVerdict.Busy, TimeSpan.FromSeconds(1));
            }
            // an unknown or disabled account is hashed against the dummy: it takes as long as a known one
            var target = PasswordHasher.IsWellFormed(stored) ? stored! : _dummy.Value;
            correct = await Task.Run(() => PasswordHasher.Verify(password, target) && ReferenceEquals(target, stored));
        }
        if (!correct)
        {
            return PasswordCheck.Refused;
        }
        Release(windows, now);
        now = _time.GetUtcNow();
        if (_recognised.Count > MaxEntries) { Prune(_recognised, now); }
        if (_trustedSources.Count > MaxEntries) { Prune(_trustedSources, now); }
        _recognised[key!] = now + RecognisedFor;
        _trustedSources[$"{account}|{from}"] = now + TrustedSourceFor;
        return PasswordCheck.Accepted;
    }

    private string RecognitionKey(string realm, string name, string password, string stored) =>
        Convert.ToHexString(HMACSHA256.HashData(_cacheKey, Encoding.UTF8.GetBytes($"{realm}\0{name}\0{password}\0{stored}")));

    /// <summary>Counts the attempt in every window, or in none when one is full (then: how long until it empties).</summary>
    private TimeSpan? Reserve(string[] windows, int[] limits, DateTimeOffset now)
    {
        lock (_lock)
        {
            if (_windows.Count > MaxEntries)
            {
                foreach (var stale in _windows.Where(w => w.Value.Start + Window <= now).Select(w => w.Key).ToList()) { _windows.Remove(stale); }
            }
            TimeSpan? wait = null;
            for (var i = 0; i < windows.Length; i++)
            {
                if (_windows.TryGetValue(windows[i], out var w) && w.Start + Window > now && w.Count >= limits[i])
                {
                    var left = w.Start + Window - now;
                    wait = wait is { } other && other > left ? other : left;
                }
            }
            if (wait is not null) { return wait; }
            foreach (var name in windows)
            {
                _windows[name] = _windows.TryGetValue(name, out var w) && w.Start + Window > now ? (w.Start, w.Count + 1) : (now, 1);
            }
            return null;
        }
    }

    /// <summary>Gives an attempt back (a success, or one never checked).</summary>
    private void Release(string[] windows, DateTimeOffset reservedAt)
    {
        lock (_lock)
        {
            foreach (var name in windows)
            {
                if (_windows.TryGetValue(name, out var w) && w.Start <= reservedAt && w.Count > 0) { _windows[name] = (w.Start, w.Count - 1); }
            }
        }
    }

    private static void Prune(ConcurrentDictionary<string, DateTimeOffset> entries, DateTimeOffset now)
    {
        foreach (var stale in entries.Where(e => e.Value <= now).Select(e => e.Key).ToList()) { entries.TryRemove(stale, out _); }
        if (entries.Count > MaxEntries) { entries.Clear(); }
    }

    private sealed class Slot(SemaphoreSlim semaphore) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0) { semaphore.Release(); }
        }
    }
}
