using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Push;
using Tsunagu.Server.Units.ForcedChecks;

namespace Tsunagu.Server.Subscribers;

/// <summary>
/// Patent 0070: when a unit could not apply a configuration change (a subscriber's or the operator's), it stays on its
/// last good configuration and the host keeps the failed revision; once the unit reports itself healthy again (ready),
/// the host retries the change as a new revision (same document, attempt n of <see cref="ServerOptions.ConfigRetryAttempts"/>),
/// after a backoff that doubles per attempt, and tells the unit at once. The last attempt's outcome is final.
/// </summary>
public sealed class ConfigRetries(TsunaguStore store, ForcedCheckService checks, IPushPublisher push, ServerOptions options, TimeProvider time,
    ILogger<ConfigRetries> log)
{
    public const string RetryActor = "host:retry";

    /// <summary>The wait before attempt <paramref name="next"/> (2, 3, ...): the backoff, doubled for each attempt after the second.</summary>
    public TimeSpan Backoff(long next) => TimeSpan.FromSeconds(options.ConfigRetryBackoffSeconds * Math.Pow(2, Math.Max(0, next - 2)));

    /// <summary>
    /// Called after a unit's ready report: retries its newest revision when that one failed, has attempts left and its
    /// backoff has passed. Returns the new revision, or null when nothing was due.
    /// </summary>
    public async Task<long?> AfterReadyAsync(string mac, CancellationToken ct)
    {
        if (await store.ConfigRetries.RetryableUnitConfigAsync(mac, options.ConfigRetryAttempts, ct) is not { } newest)
        {
            return null;
        }
        var failedAt = newest.UpdatedAt is { } at
            ? DateTimeOffset.Parse(at, System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AssumeUniversal)
            : time.GetUtcNow();
        if (time.GetUtcNow() - failedAt < Backoff(newest.Attempt + 1))
        {
            return null;
        }
        var attempt = newest.Attempt + 1;
        var revision = await store.ConfigRetries.AddUnitConfigRetryAsync(newest, r => new AuditEntry(RetryActor, "unit.service-config.retry", mac,
            $"revision {r} retries revision {newest.RetryOf ?? newest.Revision} (attempt {attempt} of {options.ConfigRetryAttempts}) after: {newest.Error}"), ct);
        if (revision is null)
        {
            return null; // another replica retried it first
        }
        log.LogInformation("unit {Mac}: configuration revision {Failed} failed; retrying as revision {Revision} (attempt {Attempt} of {Max})",
            mac, newest.Revision, revision, attempt, options.ConfigRetryAttempts);
        if (push.BrokerUri is not null)
        {
            try
            {
                await checks.SendAsync(RetryActor, [mac], 5, PushReasons.Config, ct);
            }
            catch (PushException e)
            {
                log.LogWarning("unit {Mac}: push after the configuration retry failed ({Error}); it takes it at its next check", mac, e.Message);
            }
        }
        return revision;
    }

    /// <summary>
    /// Cancels the further attempts of the unit's newest revision (it failed with attempts left, or is a retry not yet
    /// applied) when it is the subscriber's own change (never the provider's), audited as <c>unit.service-config.retry-cancel</c> by <paramref name="actor"/>. Null when nothing was to be cancelled.
    /// </summary>
    public async Task<long?> CancelAsync(string mac, string actor, CancellationToken ct = default)
    {
        var revision = await store.ConfigRetries.CancelUnitConfigRetryAsync(mac, options.ConfigRetryAttempts, actor, r => new AuditEntry(actor, "unit.service-config.retry-cancel", mac,
            $"revision {r.Revision} ({r.Status}, attempt {r.Attempt} of {options.ConfigRetryAttempts}): no further attempt"), SubscriberChanges.Origin, ct);
        if (revision is not null)
        {
            log.LogInformation("unit {Mac}: further attempts of configuration revision {Revision} cancelled by {Actor}", mac, revision, actor);
        }
        return revision;
    }

    /// <summary>Whether <paramref name="newest"/> (the unit's newest revision) has attempts that <see cref="CancelAsync"/> would stop.</summary>
    public bool Cancellable(UnitConfigRow? newest) => newest is not null && newest.Origin == SubscriberChanges.Origin
        && newest.RetryCancelledAt is null && newest.Attempt < options.ConfigRetryAttempts
        && (newest.Status == ConfigStatus.Failed || (newest.Status == ConfigStatus.Provisional && newest.Attempt > 1));

    /// <summary>
    /// What a revision's state means now, for people: its status; for a failure the retry to come, "retrying (attempt n of m)",
    /// or the final outcome (given up after the last attempt, or cancelled); for a retry its attempt and how it ended.
    /// <paramref name="newest"/>: whether it is the unit's newest revision (only that one is retried).
    /// </summary>
    public static string Describe(UnitConfigRow revision, bool newest, int maxAttempts) => revision switch
    {
        { Status: ConfigStatus.Failed, RetryCancelledAt: not null } =>
            $"failed; further attempts cancelled by {revision.RetryCancelledBy} after attempt {revision.Attempt} of {maxAttempts} (final)",
        { RetryCancelledAt: not null } =>
            $"{revision.Status} (attempt {revision.Attempt} of {maxAttempts}); no attempt after this one: cancelled by {revision.RetryCancelledBy}",
        { Status: ConfigStatus.Failed } when newest && revision.Attempt < maxAttempts =>
            $"failed; retrying (attempt {revision.Attempt + 1} of {maxAttempts}) once the unit is ready again",
        { Status: ConfigStatus.Failed } when revision.Attempt >= maxAttempts => $"failed on the last attempt ({revision.Attempt} of {maxAttempts}); not retried again (final)",
        { Status: ConfigStatus.Provisional, Attempt: > 1 } => $"retrying (attempt {revision.Attempt} of {maxAttempts}) revision {revision.RetryOf}",
        { Status: ConfigStatus.Failed, Attempt: > 1 } => $"failed; retry of revision {revision.RetryOf} (attempt {revision.Attempt} of {maxAttempts})",
        { Attempt: > 1 } => $"{revision.Status} on attempt {revision.Attempt} of {maxAttempts} (retry of revision {revision.RetryOf})",
        _ => revision.Status,
    };
}
