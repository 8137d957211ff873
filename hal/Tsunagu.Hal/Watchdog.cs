namespace Tsunagu.Hal;

/// <summary>
/// The board's hardware watchdog. Once armed it restarts the unit unless it is fed within <see cref="Timeout"/>; it
/// is never disarmed (a supervisor that ends without coming back must lead to a restart, so the boot program can count
/// the try of a new slot and fall back).
/// </summary>
public interface IWatchdog : IDisposable
{
    /// <summary>How long the watchdog waits for the next feed before it restarts the unit.</summary>
    TimeSpan Timeout { get; }

    /// <summary>How often the supervisor feeds it while healthy (well below <see cref="Timeout"/>).</summary>
    TimeSpan FeedInterval { get; }

    /// <summary>Opens the watchdog, sets <see cref="Timeout"/> and feeds it once. A second call does nothing.</summary>
    /// <exception cref="HalException">The device is missing or refuses the timeout.</exception>
    void Arm();

    /// <summary>Resets the countdown to <see cref="Timeout"/>.</summary>
    /// <exception cref="HalException">Not armed, or the device refused the feed.</exception>
    void Feed();
}

/// <summary>
/// Feeds a watchdog every <see cref="IWatchdog.FeedInterval"/> while <c>healthy</c> says so, on a
/// <see cref="TimeProvider"/>. The moment the check fails (or throws) no more feeds are sent; the watchdog then
/// restarts the unit after its timeout unless the check recovers first. A feed the device refuses is logged and tried
/// again at the next interval.
/// </summary>
public static class WatchdogFeeder
{
    /// <summary>Arms <paramref name="watchdog"/> and feeds it until <paramref name="cancellationToken"/> is cancelled.</summary>
    /// <param name="healthy">Null when healthy, else why not (logged once per change).</param>
    /// <exception cref="HalException">The watchdog cannot be armed.</exception>
    public static async Task RunAsync(IWatchdog watchdog, Func<string?> healthy, TimeProvider time, Action<string> log, CancellationToken cancellationToken)
    {
        watchdog.Arm();
        log($"watchdog armed: timeout {watchdog.Timeout.TotalSeconds:0} s, fed every {watchdog.FeedInterval.TotalSeconds:0} s while healthy");
        string? lastProblem = null;
        while (!cancellationToken.IsCancellationRequested)
        {
            string? problem;
            try
            {
                problem = healthy();
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                problem = $"the health check failed: {e.GetType().Name}: {e.Message}";
            }
            if (problem is null)
            {
                try
                {
                    watchdog.Feed();
                    if (lastProblem is not null) { log("watchdog fed again: the supervisor is healthy"); }
                    lastProblem = null;
                }
                catch (HalException e)
                {
                    log($"watchdog feed failed: {e.Message}");
                }
            }
            else if (problem != lastProblem)
            {
                log($"watchdog not fed (the unit restarts in {watchdog.Timeout.TotalSeconds:0} s unless it recovers): {problem}");
                lastProblem = problem;
            }
            try
            {
                await Task.Delay(watchdog.FeedInterval, time, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }
}
