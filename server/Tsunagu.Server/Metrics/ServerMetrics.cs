using Prometheus;

namespace Tsunagu.Server.Metrics;

/// <summary>
/// The server's event counters and request latencies, in a registry of this server's own (not the process-wide default,
/// so two servers in one process never mix their numbers). Event sites call one method each; the gauges computed from the
/// store are in <see cref="FleetGauges"/>. Names and meanings: docs/metrics.md.
/// </summary>
public sealed class ServerMetrics
{
    /// <summary>Label values of <c>tsunagu_unit_refusals_total</c>.</summary>
    public static class RefusalReasons
    {
        public const string NotRegistered = "not_registered";
        public const string WrongProof = "wrong_proof";
        public const string BadChallenge = "bad_challenge";
        public const string RateLimited = "rate_limited";
    }

    /// <summary>Label values of <c>tsunagu_checkins_total</c>.</summary>
    public static class CheckResults
    {
        public const string UpToDate = "up_to_date";
        public const string Offered = "update_offered";
        public const string Deferred = "update_deferred";
        public const string OffPattern = "off_pattern";

        /// <summary>A steady check answered "nothing to do" (recorded as a ready report).</summary>
        public const string Steady = "steady";

        /// <summary>A steady check answered "something changed": the unit runs the full exchange.</summary>
        public const string SteadyChanged = "steady_changed";
    }

    /// <summary>Route label of a request no endpoint answered (static files, unknown paths): never the raw path.</summary>
    public const string NoRoute = "none";

    private readonly Counter _checkins, _authentications, _refusals, _pushes, _resendFailures, _subscriptionsRefused, _updateReports, _configReports;
    private readonly Histogram _requests;

    public ServerMetrics()
    {
        Registry = Prometheus.Metrics.NewCustomRegistry();
        var factory = Prometheus.Metrics.WithCustomRegistry(Registry);
        _checkins = factory.CreateCounter("tsunagu_checkins_total", "Version checks (check-ins) of units answered, by result.", "result");
        _authentications = factory.CreateCounter("tsunagu_unit_authentications_total", "Unit session requests decided, by purpose (provisional, host) and result (accepted, refused).", "purpose", "result");
        _refusals = factory.CreateCounter("tsunagu_unit_refusals_total", "Unit authentications refused, by reason.", "reason");
        _pushes = factory.CreateCounter("tsunagu_pushes_total", "Forced-check pushes: sent (handed to the broker), undelivered (could not be handed over; sent again later), delivered (acknowledged by the unit).", "result");
        _resendFailures = factory.CreateCounter("tsunagu_push_resends_failed_total", "Resends of undelivered forced checks the broker link could not hand over (the broker refused the unit's topic, or the link broke); also counted as undelivered pushes. The check stays pending and is sent again at the next sweep.");
        _subscriptionsRefused = factory.CreateCounter("tsunagu_broker_subscriptions_refused_total", "Subscriptions of the server's broker link the broker refused (reason code 0x80 or above, e.g. its ACL denies the filter); each drops that connection, which is made again with backoff.");
        _updateReports = factory.CreateCounter("tsunagu_update_reports_total", "Update results by outcome (success, failure): reported by units, and failures the host finds (a unit back on the old pattern after reporting its install).", "outcome");
        _configReports = factory.CreateCounter("tsunagu_config_reports_total", "Service configuration results reported by units, by outcome (success, failure).", "outcome");
        _requests = factory.CreateHistogram("tsunagu_http_request_duration_seconds", "HTTP requests, by route template, method and status code.",
            new HistogramConfiguration { LabelNames = ["route", "method", "code"], Buckets = Histogram.ExponentialBuckets(0.001, 2, 15) });
        foreach (var result in new[] { CheckResults.UpToDate, CheckResults.Offered, CheckResults.Deferred, CheckResults.OffPattern, CheckResults.Steady, CheckResults.SteadyChanged }) { _checkins.WithLabels(result); }
        foreach (var reason in new[] { RefusalReasons.NotRegistered, RefusalReasons.WrongProof, RefusalReasons.BadChallenge, RefusalReasons.RateLimited }) { _refusals.WithLabels(reason); }
        foreach (var result in new[] { "sent", "undelivered", "delivered" }) { _pushes.WithLabels(result); }
        foreach (var outcome in new[] { "success", "failure" }) { _updateReports.WithLabels(outcome); _configReports.WithLabels(outcome); }
    }

    public CollectorRegistry Registry { get; }

    public void CheckIn(string result) => _checkins.WithLabels(result).Inc();

    /// <summary>Counts a steady check by its answer (<see cref="CheckResults.Steady"/> or <see cref="CheckResults.SteadyChanged"/>).</summary>
    public void SteadyCheck(bool steady) => CheckIn(steady ? CheckResults.Steady : CheckResults.SteadyChanged);

    public void UnitAuthenticated(string purpose) => _authentications.WithLabels(purpose, "accepted").Inc();

    public void UnitRefused(string purpose, string reason)
    {
        _authentications.WithLabels(purpose, "refused").Inc();
        _refusals.WithLabels(reason).Inc();
    }

    public void PushSent() => _pushes.WithLabels("sent").Inc();

    public void PushUndelivered() => _pushes.WithLabels("undelivered").Inc();

    public void PushesDelivered(int count) => _pushes.WithLabels("delivered").Inc(count);

    /// <summary>A resend of an undelivered check failed (it was counted as an undelivered push as well).</summary>
    public void PushResendFailed() => _resendFailures.Inc();

    /// <summary>The broker refused a subscription of the server's broker link (the connection is dropped and made again).</summary>
    public void BrokerSubscriptionRefused() => _subscriptionsRefused.Inc();

    public void UpdateReported(bool success) => _updateReports.WithLabels(success ? "success" : "failure").Inc();

    public void ConfigReported(bool success) => _configReports.WithLabels(success ? "success" : "failure").Inc();

    /// <summary>Records a request; a method outside the standard ones is labelled "other" (a client chooses it).</summary>
    public void Request(string route, string method, int status, TimeSpan elapsed) =>
        _requests.WithLabels(route, KnownMethod(method), status.ToString(System.Globalization.CultureInfo.InvariantCulture)).Observe(elapsed.TotalSeconds);

    private static string KnownMethod(string method) => method switch
    {
        "GET" or "POST" or "PUT" or "PATCH" or "DELETE" or "HEAD" or "OPTIONS" => method,
        _ => "other",
    };
}
