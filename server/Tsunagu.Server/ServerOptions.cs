namespace Tsunagu.Server;

/// <summary>Settings of the server (section "Tsunagu" of the configuration, or TSUNAGU_* variables).</summary>
public sealed class ServerOptions
{
    /// <summary>Where the database, keys, certificate and artifacts live.</summary>
    public string DataDirectory { get; set; } = ".tsunagu/server";

    /// <summary>Loopback address and port to serve HTTPS on; port 0 picks a free one.</summary>
    public string ListenAddress { get; set; } = "127.0.0.1";
    public int Port { get; set; } = 8443;

    /// <summary>Roles this process plays (patent 0027): "initial", "host", or "initial,host" (both).</summary>
    public string Roles { get; set; } = "initial,host";

    private string[] RoleList => Roles.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);

    /// <summary>An operator account made or reset at start-up (`TSUNAGU_OPERATORNAME` + `TSUNAGU_OPERATORPASSWORD`).</summary>
    public string? OperatorName { get; set; }
    public string? OperatorPassword { get; set; }

    /// <summary>SQLite file (relative to <see cref="DataDirectory"/>) unless a connection string is given.</summary>
    public string Database { get; set; } = "tsunagu.db";

    /// <summary>URL units are told to use for the host server; defaults to this server's own address.</summary>
    public string? HostServerUrl { get; set; }

    /// <summary>Embedded MQTT broker's TLS port (the server's certificate) on <see cref="ListenAddress"/>; 0 picks a free one; -1 disables push.</summary>
    public int MqttPort { get; set; } = 8883;

    /// <summary>Embedded broker's plain MQTT port, off unless set (-1); 0 picks a free one. Units are told the TLS port.</summary>
    public int MqttPlainPort { get; set; } = -1;

    /// <summary>Embedded broker: seconds from accepting a connection to the last byte of its CONNECT (TLS handshake included).</summary>
    public int MqttConnectTimeoutSeconds { get; set; } = 10;

    /// <summary>Embedded broker: largest packet (remaining length, bytes) before login and from a unit; a larger one ends the connection after its header.</summary>
    public int MqttMaxPacketBytes { get; set; } = 4096;

    /// <summary>Embedded broker: connections held at once, logged in or not (unset: the descriptor limit less <see cref="DescriptorReserve"/>, at least 64).</summary>
    public long? MqttMaxConnections { get; set; }

    /// <summary>Embedded broker: connections held at once from one source address (connections from the server's own address are not counted here).</summary>
    public int MqttMaxConnectionsPerSource { get; set; } = 256;

    /// <summary>Embedded broker: largest payload of a retained message (and of a last will) from a unit.</summary>
    public int MqttMaxRetainedBytes { get; set; } = 256;

    /// <summary>Embedded broker: new connections a source address may open, per second (token bucket; <see cref="MqttConnectBurstPerSource"/> at once).</summary>
    public double MqttConnectsPerSourcePerSecond { get; set; } = 5;
    public int MqttConnectBurstPerSource { get; set; } = 50;

    /// <summary>Embedded broker: largest MQTT keep-alive a unit may ask for (0, "never", is refused), so a silent unit's slot is freed within 1.5 times this.</summary>
    public int MqttMaxKeepAliveSeconds { get; set; } = 300;

    /// <summary>A unit's broker password (in its host session answer) is valid for between half and one and a half of this (see docs/security.md).</summary>
    public TimeSpan BrokerPasswordLifetime { get; set; } = TimeSpan.FromHours(6);

    /// <summary>"embedded" (default) or mqtt://ADMIN:PASSWORD@HOST:PORT for a Mosquitto with dynamic security.</summary>
    public string Mqtt { get; set; } = "embedded";

    /// <summary>Broker address units are told to use, when it differs from what the server connects to.</summary>
    public string? MqttPublicUri { get; set; }

    /// <summary>Release public keys (SPKI, base64); when given, an update program's bundle must be signed by one of them.</summary>
    public string[] ReleasePublicKeys { get; set; } = [];

    public TimeSpan ChallengeLifetime { get; set; } = TimeSpan.FromMinutes(1);
    public TimeSpan ProvisionalTokenLifetime { get; set; } = TimeSpan.FromMinutes(5);
    public TimeSpan HostTokenLifetime { get; set; } = TimeSpan.FromMinutes(30);
    public TimeSpan OperatorTokenLifetime { get; set; } = TimeSpan.FromHours(1);
    public TimeSpan SubscriberTokenLifetime { get; set; } = TimeSpan.FromMinutes(30);

    /// <summary>Period units are told to re-check at (S600-S800).</summary>
    public int CheckIntervalSeconds { get; set; } = 86400;

    /// <summary>
    /// Units wait a random 0..this many seconds after a power-on before they connect (sent with every version check,
    /// kept by the unit). 0: no wait. Size it to the fleet: units / the units per second the server can bring back
    /// (docs/performance.md, reconnect storm).
    /// </summary>
    public int PowerOnSpreadSeconds { get; set; }

    /// <summary>Tries a failed service configuration change gets in all (patent 0070): the first and the host's retries.</summary>
    public int ConfigRetryAttempts { get; set; } = 3;

    /// <summary>The host retries a failed change once the unit is healthy again and this long (doubled per attempt) has passed since it failed.</summary>
    public int ConfigRetryBackoffSeconds { get; set; } = 60;

    /// <summary>How often the rollout engine looks at every active rollout (seconds): the longest a crossed threshold waits to act.</summary>
    public double RolloutTickSeconds { get; set; } = 5;

    /// <summary>Authentication attempts one unit (MAC) may make per minute: per process on SQLite, over every replica on PostgreSQL.</summary>
    public int AuthAttemptsPerMacPerMinute { get; set; } = 30;

    /// <summary>Authentication attempts one source address may make per minute (generous: many units share a NAT); over every replica on PostgreSQL.</summary>
    public int AuthAttemptsPerSourcePerMinute { get; set; } = 60_000;

    /// <summary>Password attempts per minute for one account from one source address (API Basic auth, subscriber token, console, portal).</summary>
    public int LoginAttemptsPerMinute { get; set; } = 10;

    /// <summary>Password attempts per minute from one source address, whatever the account.</summary>
    public int PasswordAttemptsPerSourcePerMinute { get; set; } = 30;

    /// <summary>Password attempts per minute for one account from addresses it has not signed in from (its owner's are exempt).</summary>
    public int PasswordAttemptsPerAccountPerMinute { get; set; } = 100;

    /// <summary>Passwords hashed at once (PBKDF2, 100,000 iterations each); one more is answered 503 at once. Unset: half the cores, at least 1.</summary>
    public int ConcurrentPasswordChecks { get; set; } = Math.Max(1, Environment.ProcessorCount / 2);

    /// <summary>Largest request body (bytes) unless a route allows more (bulk registration 16 MB, artifact upload 4 GB).</summary>
    public long MaxRequestBodyBytes { get; set; } = 1024 * 1024;

    /// <summary>Largest body of a unit's or an unauthenticated request (unit challenge, session and reports, subscriber token).</summary>
    public long MaxUnitRequestBodyBytes { get; set; } = 64 * 1024;

    /// <summary>How long a client may take to send a whole request body (bulk tables and artifacts excepted); it is read before the request takes a concurrency place.</summary>
    public double RequestBodyTimeoutSeconds { get; set; } = 15;

    /// <summary>Slowest request body accepted (bytes per second, after a 5 s grace); slower connections are closed.</summary>
    public int MinRequestBodyBytesPerSecond { get; set; } = 1024;

    /// <summary>Refused unit authentications of one MAC from one address are written to the audit log once per period, then as one count.</summary>
    public TimeSpan RefusalAuditPeriod { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>How long a console or portal session lasts at most, however active (the cookie also expires after the token lifetime idle).</summary>
    public TimeSpan WebSessionAbsoluteLifetime { get; set; } = TimeSpan.FromHours(12);

    /// <summary>Requests served at once; beyond it up to <see cref="RequestQueueLimit"/> wait, the rest get 503 + Retry-After.</summary>
    /// <remarks>Unset: 64 on SQLite (one writer at a time: more only queues inside the database), 512 on PostgreSQL.</remarks>
    public int? MaxConcurrentRequests { get; set; }

    /// <summary>SQLite: how long a write waits for the writer's lock before the request gets 503 + Retry-After.</summary>
    public TimeSpan DatabaseBusyTimeout { get; set; } = TimeSpan.FromSeconds(10);

    public int ConcurrencyFor(Data.DatabaseKind database) => MaxConcurrentRequests ?? (database == Data.DatabaseKind.Sqlite ? 64 : 512);
    public int RequestQueueLimit { get; set; } = 2048;

    /// <summary>
    /// How long a request may wait in that queue; after it, 503 + Retry-After. Keep it well below the units' 30 s
    /// request timeout, so the server never works on an answer its caller has stopped waiting for.
    /// </summary>
    public double RequestQueueTimeoutSeconds { get; set; } = 5;

    /// <summary>
    /// Connections Kestrel keeps open at once (unset: the process's descriptor limit less <see cref="DescriptorReserve"/>,
    /// read from /proc/self/limits, and at least 64). Past it a new connection is closed at once, which a unit treats like any failure
    /// to connect (backoff and retry), instead of running out of descriptors, which stops accepting altogether.
    /// </summary>
    public long? MaxConnections { get; set; }

    /// <summary>Descriptors kept for the database, artifacts, logs and the broker when <see cref="MaxConnections"/> is unset.</summary>
    public const int DescriptorReserve = 1024;

    /// <summary>How long an idle keep-alive connection stays open (Kestrel's default is 130 s; units hang up after 15 s idle).</summary>
    public int KeepAliveSeconds { get; set; } = 30;

    /// <summary>Bearer token a Prometheus scraper presents for GET /metrics (at least 32 characters); unset: no /metrics (docs/metrics.md).</summary>
    public string? MetricsToken { get; set; }

    /// <summary>
    /// Bearer token the provisioning access point's RADIUS server presents to look up a unit's access password
    /// (<c>GET /api/v1/access-point/accounts/{user}</c>, docs/lab.md; at least 32 characters); unset: no such route.
    /// </summary>
    public string? AccessPointToken { get; set; }

    /// <summary>Addresses of proxies (the load balancer) whose X-Forwarded-For names the client; empty: the connection's peer is the client.</summary>
    public string[] TrustedProxies { get; set; } = [];

    /// <summary>
    /// When set (e.g. "/internal/artifacts/"), an authorized artifact download is answered with X-Accel-Redirect to this
    /// prefix plus the digest, and nginx in front sends the file; unset, the server sends it itself.
    /// </summary>
    public string? ArtifactRedirectPrefix { get; set; }

    /// <summary>
    /// The content-filter categories this operator offers (one entry per index: <c>--FilterCategories:0:Name ads
    /// --FilterCategories:0:Title Advertising</c>); configurations may choose only these (docs/services.md). Empty: none.
    /// </summary>
    public List<Catalogue.FilterCategoryOption?> FilterCategories { get; set; } = [];

    /// <summary>PostgreSQL: lifetime of the lease that picks the replica doing once-only work; another replica takes over within it when the holder dies.</summary>
    public int OnceOnlyLeaseSeconds { get; set; } = 30;

    public bool HasRole(string role) => RoleList.Contains(role, StringComparer.OrdinalIgnoreCase);

    public void Validate()
    {
        if (RoleList.Length == 0 || RoleList.Any(r => r is not ("initial" or "host")))
        {
            throw new ArgumentException($"Tsunagu:Roles must be 'initial', 'host' or 'initial,host' (was '{Roles}')");
        }
        if ((OperatorName is null) != (OperatorPassword is null) || OperatorPassword is { Length: < 8 })
        {
            throw new ArgumentException("Tsunagu:OperatorName and OperatorPassword go together, and the password needs at least 8 characters");
        }
        if (Port is < 0 or > 65535) { throw new ArgumentException($"Tsunagu:Port {Port} is not a port number"); }
        if (MqttPort is < -1 or > 65535 || MqttPlainPort is < -1 or > 65535)
        {
            throw new ArgumentException($"Tsunagu:MqttPort and MqttPlainPort must be -1 (off), 0 (a free one) or a port number (were {MqttPort}, {MqttPlainPort})");
        }
        if (CheckIntervalSeconds < 1) { throw new ArgumentException($"Tsunagu:CheckIntervalSeconds must be positive (was {CheckIntervalSeconds})"); }
        if (!(RolloutTickSeconds is >= 0.05 and <= 3600)) { throw new ArgumentException($"Tsunagu:RolloutTickSeconds must be 0.05..3600 (was {RolloutTickSeconds})"); }
        if (ConfigRetryAttempts is < 1 or > 10 || ConfigRetryBackoffSeconds is < 0 or > 86400)
        {
            throw new ArgumentException($"Tsunagu:ConfigRetryAttempts must be 1..10 and ConfigRetryBackoffSeconds 0..86400 (were {ConfigRetryAttempts}, {ConfigRetryBackoffSeconds})");
        }
        if (PowerOnSpreadSeconds is < 0 or > 3600) { throw new ArgumentException($"Tsunagu:PowerOnSpreadSeconds must be 0..3600 (was {PowerOnSpreadSeconds})"); }
        if (PasswordAttemptsPerSourcePerMinute < 1 || PasswordAttemptsPerAccountPerMinute < 1 || ConcurrentPasswordChecks < 1 || WebSessionAbsoluteLifetime <= TimeSpan.Zero
            || RefusalAuditPeriod <= TimeSpan.Zero || MaxRequestBodyBytes < 1024 || MaxUnitRequestBodyBytes < 1024 || MinRequestBodyBytesPerSecond < 1
            || RequestBodyTimeoutSeconds is <= 0 or > 3600 || double.IsNaN(RequestBodyTimeoutSeconds))
        {
            throw new ArgumentException("Tsunagu: PasswordAttemptsPerSourcePerMinute, PasswordAttemptsPerAccountPerMinute, ConcurrentPasswordChecks, WebSessionAbsoluteLifetime, RefusalAuditPeriod, MinRequestBodyBytesPerSecond and RequestBodyTimeoutSeconds (at most 3600) must be positive, MaxRequestBodyBytes and MaxUnitRequestBodyBytes at least 1024");
        }
        if (AuthAttemptsPerMacPerMinute < 1 || LoginAttemptsPerMinute < 1 || AuthAttemptsPerSourcePerMinute < 1 || MaxConcurrentRequests is < 1 || RequestQueueLimit < 0)
        {
            throw new ArgumentException("Tsunagu: AuthAttemptsPerMacPerMinute, AuthAttemptsPerSourcePerMinute, LoginAttemptsPerMinute and MaxConcurrentRequests must be positive, RequestQueueLimit not negative");
        }
        if (RequestQueueTimeoutSeconds is <= 0 or > 300 || double.IsNaN(RequestQueueTimeoutSeconds))
        {
            throw new ArgumentException($"Tsunagu:RequestQueueTimeoutSeconds must be more than 0 and at most 300 (was {RequestQueueTimeoutSeconds})");
        }
        if (MqttConnectTimeoutSeconds is < 1 or > 300) { throw new ArgumentException($"Tsunagu:MqttConnectTimeoutSeconds must be 1..300 (was {MqttConnectTimeoutSeconds})"); }
        if (MqttMaxPacketBytes is < 256 or > 268_435_455) { throw new ArgumentException($"Tsunagu:MqttMaxPacketBytes must be 256..268435455 (was {MqttMaxPacketBytes})"); }
        if (MqttMaxConnections is < 1 || MqttMaxConnectionsPerSource < 1)
        {
            throw new ArgumentException($"Tsunagu:MqttMaxConnections and MqttMaxConnectionsPerSource must be positive (were {MqttMaxConnections}, {MqttMaxConnectionsPerSource})");
        }
        if (MqttMaxRetainedBytes < 1 || MqttMaxRetainedBytes > MqttMaxPacketBytes)
        {
            throw new ArgumentException($"Tsunagu:MqttMaxRetainedBytes must be 1..MqttMaxPacketBytes (was {MqttMaxRetainedBytes})");
        }
        if (!(MqttConnectsPerSourcePerSecond > 0) || MqttConnectBurstPerSource < 1 || MqttMaxKeepAliveSeconds is < 1 or > 65535
            || BrokerPasswordLifetime < TimeSpan.FromSeconds(2) || BrokerPasswordLifetime > TimeSpan.FromDays(30))
        {
            throw new ArgumentException($"Tsunagu: MqttConnectsPerSourcePerSecond and MqttConnectBurstPerSource must be positive, MqttMaxKeepAliveSeconds 1..65535, BrokerPasswordLifetime 2 s..30 days (were {MqttConnectsPerSourcePerSecond}, {MqttConnectBurstPerSource}, {MqttMaxKeepAliveSeconds}, {BrokerPasswordLifetime})");
        }
        if (MaxConnections is < 1) { throw new ArgumentException($"Tsunagu:MaxConnections must be positive (was {MaxConnections})"); }
        if (KeepAliveSeconds is < 1 or > 3600) { throw new ArgumentException($"Tsunagu:KeepAliveSeconds must be 1..3600 (was {KeepAliveSeconds})"); }
        foreach (var (name, value) in new[] { (nameof(MetricsToken), MetricsToken), (nameof(AccessPointToken), AccessPointToken) })
        {
            if (value is not null && (value.Trim().Length < 32 || value.Length > 512 || value.Trim() != value || value.Any(char.IsControl)))
            {
                throw new ArgumentException($"Tsunagu:{name} must be 32 to 512 characters, without control characters or surrounding spaces");
            }
        }
        if (TrustedProxies.FirstOrDefault(p => !System.Net.IPAddress.TryParse(p, out _)) is { } proxy)
        {
            throw new ArgumentException($"Tsunagu:TrustedProxies must be IP addresses ('{Apis.InputRules.Quote(proxy)}' is not)");
        }
        if (ArtifactRedirectPrefix is { } prefix && (prefix.Length is < 2 or > 128 || prefix[0] != '/' || prefix[^1] != '/'
            || prefix.Any(ch => !(char.IsAsciiLetterOrDigit(ch) || ch is '/' or '-' or '_' or '.')) || prefix.Contains("..", StringComparison.Ordinal)))
        {
            throw new ArgumentException($"Tsunagu:ArtifactRedirectPrefix must be a path that starts and ends with '/', of letters, digits, '/', '-', '_' and '.' (no '..'); was '{Apis.InputRules.Quote(prefix)}'");
        }
        if (Catalogue.OfferedCategories.Problem(FilterCategories) is { } categories) { throw new ArgumentException(categories); }
        if (OnceOnlyLeaseSeconds is < 3 or > 3600) { throw new ArgumentException($"Tsunagu:OnceOnlyLeaseSeconds must be 3..3600 (was {OnceOnlyLeaseSeconds})"); }
        if (!System.Net.IPAddress.TryParse(ListenAddress, out _)) { throw new ArgumentException($"Tsunagu:ListenAddress '{ListenAddress}' is not an IP address"); }
    }
}
