using Tsunagu.Firmware.Net;
using Tsunagu.Firmware.Services;
using Tsunagu.Firmware.Storage;
using Tsunagu.Firmware.Updates;
using Tsunagu.Hal;
using Tsunagu.Protocol;

namespace Tsunagu.Firmware.Supervision;

/// <summary>What the states share while the supervisor runs. Only the supervisor's loop touches it.</summary>
public sealed class SupervisorContext(UnitHardware hardware, SupervisorOptions options, TimeProvider time, Random random, Action<string> log)
{
    private readonly SemaphoreSlim _checkSignal = new(0, 1);
    private volatile bool _forcedPending;

    public UnitHardware Hardware { get; } = hardware;
    public SupervisorOptions Options { get; } = options;
    public TimeProvider Time { get; } = time;

    /// <summary>The host's time carried on the monotonic clock (set by each version check); used for bundle expiry.</summary>
    public TrustedClock Clock { get; } = new(time);
    public Random Random { get; } = random;
    public Action<string> Log { get; } = log;

    public FactoryIdentity? Identity { get; set; }
    public byte[] Secret { get; set; } = [];
    public StateStore? Store { get; set; }
    public AppStore? Apps { get; set; }

    /// <summary>Installed applications found damaged at boot (<see cref="AppIntegrity.Check"/>), fetched again when the host is reached.</summary>
    public IReadOnlyList<AppDamage> DamagedApps { get; set; } = [];
    public ServiceApplier? Services { get; set; }
    public UnitClient? Client { get; set; }
    public PushListener? Push { get; set; }

    public SessionResponse? ProvisionalSession { get; set; }
    public UnitSettings? FetchedSettings { get; set; }
    public UnitSettings? Settings { get; set; }
    public SessionResponse? HostSession { get; private set; }

    /// <summary>Monotonic timestamp (<see cref="TimeProvider.GetTimestamp"/>) of when the host session was asked for.</summary>
    public long HostSessionRequestedAt { get; private set; }
    public UpdateOffer? Offer { get; set; }

    /// <summary>An inserted install medium the host has confirmed genuine (patent 0037), or null.</summary>
    public Updates.VerifiedMedium? Medium { get; set; }

    /// <summary>The install pattern the host matched in the last version check (null: none).</summary>
    public string? CurrentPattern { get; set; }

    /// <summary>The unit's wall clock, set from the host's time when it is off (<see cref="SystemClockSync"/>); null: never set.</summary>
    public Hal.ISystemClock? SystemClock { get; set; }

    private long _updateArmedAt;
    private TimeSpan? _updateLimit;

    /// <summary>
    /// Arms the deadline of an update <see cref="BootState"/> found in phase rebooting or checking: unless the update
    /// state takes it over first, <see cref="UpdateOverdue"/> turns true <paramref name="limit"/> after now, on the
    /// monotonic clock. The host plays no part: an OS that cannot reach it is rolled back all the same.
    /// </summary>
    public void ArmUpdateDeadline(TimeSpan limit) => (_updateArmedAt, _updateLimit) = (Time.GetTimestamp(), limit);

    /// <summary>No update waits for its health check (none is unfinished, or the update state has run it).</summary>
    public void DisarmUpdateDeadline() => _updateLimit = null;

    /// <summary>True once an armed update deadline has passed.</summary>
    public bool UpdateOverdue() => _updateLimit is { } limit && Time.GetElapsedTime(_updateArmedAt) >= limit;

    /// <summary>Time left until an armed update deadline passes (zero once it has); null when none is armed.</summary>
    public TimeSpan? UpdateDeadlineLeft() =>
        _updateLimit is { } limit ? (limit - Time.GetElapsedTime(_updateArmedAt)) is var left && left > TimeSpan.Zero ? left : TimeSpan.Zero : null;

    /// <summary>Fault injection for the updater (tests): see <see cref="Updates.UpdateEnvironment.Checkpoint"/>.</summary>
    public Action<string>? UpdateCheckpoint { get; set; }
    public bool ForcedCheck { get; set; }
    public bool ReadyReported { get; set; }

    /// <summary>
    /// The single-use nonce the host handed out in its last answer to a ready report or a steady check: the next periodic
    /// check may prove itself with it in one request (<see cref="SteadyCheckState"/>). Null: none (taken, or not given).
    /// A new nonce (or none) starts the count of <see cref="SteadyCheckFailures"/> again.
    /// </summary>
    public CheckNonce? CheckNonce
    {
        get => _checkNonce;
        set { _checkNonce = value; SteadyCheckFailures = 0; }
    }
    private CheckNonce? _checkNonce;

    /// <summary>
    /// Steady checks with the current nonce that the host answered with a server error other than "busy" (429, 503): at
    /// <see cref="SteadyCheckState.AttemptLimit"/> the unit gives the nonce up and runs the full exchange.
    /// </summary>
    public int SteadyCheckFailures { get; set; }

    /// <summary>Whether this boot's problems (OS slots refused by dm-verity) have reached the host; never reset while the process runs.</summary>
    public bool BootProblemReported { get; set; }
    public int MainLinkFailures { get; set; }
    public int MainLinkRefusals { get; set; }
    public TimeSpan CheckInterval { get; set; } = options.CheckInterval;

    /// <summary>When a deferred update is to be looked at again (host time, UTC); null: nothing deferred, the next check is periodic.</summary>
    public DateTimeOffset? DeferredLookAt { get; set; }
    public string? LastError { get; set; }

    /// <summary>A retry delay the server asked for (Retry-After); the backoff uses it as a floor once.</summary>
    public TimeSpan? RetryAfter { get; set; }

    /// <summary>
    /// Variant 2 (patent 0075): the provisional link is also the main link, by <see cref="SupervisorOptions.SingleLink"/>
    /// or by the factory identity (<see cref="BootstrapInfo.SingleLink"/>, burned for units whose operator is their ISP).
    /// </summary>
    public bool SingleLink => Options.SingleLink || Identity?.Bootstrap.SingleLink == true;

    public FactoryIdentity RequireIdentity() => Identity ?? throw new InvalidOperationException("the factory identity has not been read yet (Boot has not run)");
    public StateStore RequireStore() => Store ?? throw new InvalidOperationException("the state store is not open (Boot has not run)");
    public UnitClient RequireClient() => Client ?? throw new InvalidOperationException("the unit client is not created (Boot has not run)");
    public UnitSettings RequireSettings() => Settings ?? throw new InvalidOperationException("no stored settings (provisioning has not completed)");

    public Uri HostUri => new(RequireSettings().HostServerUrl);

    public string HostToken => HostSession?.Token ?? throw new InvalidOperationException("no host session");

    /// <summary>Keeps a new host session, asked for at monotonic time <paramref name="requestedAt"/>.</summary>
    public void SetHostSession(SessionResponse session, long requestedAt)
    {
        HostSession = session;
        HostSessionRequestedAt = requestedAt;
    }

    /// <summary>Forgets the host session (refused by the server, or the unit starts over): the next use authenticates.</summary>
    public void DropHostSession()
    {
        HostSession = null;
        HostSessionRequestedAt = 0;
    }

    /// <summary>
    /// The validity the host session has left, by the lifetime the server gave it (<c>expiresInSeconds</c>) measured
    /// on the monotonic clock from when it was asked for; no wall clock is involved, so a unit whose clock is off
    /// by hours judges it the same. Zero without a session or without a lifetime from the server.
    /// </summary>
    public TimeSpan HostSessionValidityLeft()
    {
        if (HostSession is not { ExpiresInSeconds: { } seconds } || seconds <= 0)
        {
            return TimeSpan.Zero;
        }
        var left = TimeSpan.FromSeconds(seconds) - Time.GetElapsedTime(HostSessionRequestedAt);
        return left > TimeSpan.Zero ? left : TimeSpan.Zero;
    }

    /// <summary>Set when the server accepted a session token (it answered a call made with it); resets the session backoff.</summary>
    private bool _sessionAccepted;

    public void SessionAccepted() => _sessionAccepted = true;

    public bool TakeSessionAccepted()
    {
        var accepted = _sessionAccepted;
        _sessionAccepted = false;
        return accepted;
    }

    /// <summary>Asks the supervisor to check now (a push, or a local trigger). Coalesces repeated requests.</summary>
    public void RequestCheck(bool forced)
    {
        if (forced) { _forcedPending = true; }
        try { _checkSignal.Release(); }
        catch (SemaphoreFullException) { /* a check is already pending: one is enough */ }
    }

    public Task WaitForCheckRequestAsync(CancellationToken ct) => _checkSignal.WaitAsync(ct);

    /// <summary>
    /// A version check starts: it serves every check asked for until now, so a pending request (a push, or a failed
    /// forced check asking to be retried) is taken with it and does not wake Ready for a second check at once.
    /// Returns whether one of them was forced.
    /// </summary>
    public bool TakeForced()
    {
        _checkSignal.Wait(0);
        var forced = _forcedPending;
        _forcedPending = false;
        return forced;
    }

    /// <summary>The OS running now: the booted slot's, or the PROM's when no slot is booted.</summary>
    public string OsVersion => Hardware.Boot.BootedOsVersion ?? Hardware.Prom.OsVersion;

    public Inventory CurrentInventory() => new(RequireIdentity().HardwareVersion, OsVersion,
        new Dictionary<string, string>(Apps?.Current() ?? new Dictionary<string, string>()),
        Store is null ? null : Updates.BundleInstaller.Counter(Store));

    /// <summary>A server call just succeeded: an applied service configuration waiting for confirmation is confirmed.</summary>
    public async Task ConfirmHostReachedAsync(CancellationToken ct)
    {
        if (Services is { } services)
        {
            await services.ConfirmAsync(ct);
        }
    }

    /// <summary>Records a failure the state carries on past: <see cref="LastError"/> and the log.</summary>
    public void LogError(string what, Exception e)
    {
        LastError = $"{what}: {e.Message}";
        Log(LastError);
    }

    /// <summary>Records a failure (<see cref="LogError"/>) that ends the state, keeps a server's Retry-After for the wait, and returns <paramref name="outcome"/>.</summary>
    public Outcome Fail(Outcome outcome, string what, Exception e)
    {
        LogError(what, e);
        if (e is ServerException { RetryAfter: { } after })
        {
            RetryAfter = after;
        }
        return outcome;
    }

    /// <summary>
    /// What a restart forgets, done by <see cref="BootState"/> on every entry (first start, a restart after an update,
    /// lost data, a factory reset): sessions, settings and the per-run flags. The update offer and pattern are left:
    /// every way to <see cref="StateId.Update"/> goes through a version check, which sets the offer (and the pattern
    /// when it asks the host).
    /// </summary>
    public void StartOver()
    {
        DropHostSession();
        ProvisionalSession = null;
        Settings = FetchedSettings = null;
        ReadyReported = false;
        CheckNonce = null;
        MainLinkFailures = 0;
        MainLinkRefusals = 0;
    }

    /// <summary>
    /// The WAN link was hung up (to dial another account, or to redial a lost line): the unit client's pooled connections
    /// were made over the session that ended, from an address the unit no longer has, so they are closed. Without it the
    /// first request after the switch went out on such a connection, was never answered, and waited for the client's
    /// whole timeout (30 s) before the retry opened a new one.
    /// </summary>
    public void WanSessionEnded() => Client?.DropConnections();

    /// <summary>
    /// Hangs up the WAN link before the unit restarts (the restart command stops nothing on its way): a PPPoE session ends
    /// with pppd's LCP Terminate and the unit's PADT, so the access concentrator frees it at once instead of holding it
    /// until its LCP echo gives up while the restarted unit dials a new one. A hang-up that fails is logged; the restart goes on.
    /// </summary>
    public async Task HangUpBeforeRestartAsync(CancellationToken ct)
    {
        if (!Hardware.Wan.IsUp) { return; }
        try
        {
            await Hardware.Wan.DownAsync(ct);
            WanSessionEnded();
        }
        catch (Exception e) when (!(e is OperationCanceledException && ct.IsCancellationRequested))
        {
            // any failure (a HAL error, a refused permission, a bug): the restart that follows matters more than the hang-up
            Log($"hang-up before the restart failed: {e.GetType().Name}: {e.Message}");
        }
    }

    /// <summary>Closes what holds `data` or a connection open: the push listener, the services, the client, the state store.</summary>
    public async ValueTask ReleaseAsync()
    {
        if (Push is { } push)
        {
            await push.DisposeAsync();
        }
        Services?.Dispose();
        Client?.Dispose();
        Store?.Dispose();
        (Push, Services, Client, Store, Apps) = (null, null, null, null, null);
    }
}
