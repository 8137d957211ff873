using System.Net;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;
using Tsunagu.Server.Metrics;
using Tsunagu.Server.Push;
using Tsunagu.Server.Security;
using Tsunagu.Server.Web;

namespace Tsunagu.Server;

/// <summary>Builds and starts the server; used by Program, the demo and the integration tests alike.</summary>
public static class ServerHost
{
    /// <param name="services">Replaces services after the server's own are added (tests: a host load they set).</param>
    public static async Task<WebApplication> BuildAsync(ServerOptions options, string[]? args = null, Action<ILoggingBuilder>? logging = null,
        TimeProvider? time = null, Action<IServiceCollection>? services = null, CancellationToken ct = default)
    {
        options.Validate();
        // content root = where the server's files are (wwwroot), whatever the working directory
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = args ?? [], ContentRootPath = AppContext.BaseDirectory });
        builder.Configuration.AddEnvironmentVariables("TSUNAGU_");
        if (logging is not null)
        {
            logging(builder.Logging);
        }
        var dataDirectory = Path.GetFullPath(options.DataDirectory);
        Directory.CreateDirectory(dataDirectory);
        var certificate = ServerCertificate.LoadOrCreate(Path.Combine(dataDirectory, "tls"));
        var connectionCap = options.MaxConnections
            ?? (DescriptorLimit.Read() is { } descriptors ? Math.Max(64, descriptors - ServerOptions.DescriptorReserve) : null);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.KeepAliveTimeout = TimeSpan.FromSeconds(options.KeepAliveSeconds);
            k.Limits.MaxConcurrentConnections = connectionCap;
            k.Limits.MaxRequestBodySize = options.MaxRequestBodyBytes;
            k.Limits.MinRequestBodyDataRate = new Microsoft.AspNetCore.Server.Kestrel.Core.MinDataRate(options.MinRequestBodyBytesPerSecond, TimeSpan.FromSeconds(5));
            k.Limits.RequestHeadersTimeout = TimeSpan.FromSeconds(10);
            k.Listen(IPAddress.Parse(options.ListenAddress), options.Port, l => l.UseHttps(TlsPolicy.Configure(certificate)));
        });
        // a body that is too large or too slow is the client's fault: its status (413, 408), never a 500
        builder.Services.Configure<ExceptionHandlerOptions>(o =>
        {
            o.StatusCodeSelector = e => e is BadHttpRequestException b ? b.StatusCode : 500;
            o.SuppressDiagnosticsCallback = context => context.Exception is BadHttpRequestException;
        });
        builder.Services.ConfigureHttpJsonOptions(o => o.SerializerOptions.TypeInfoResolverChain.Insert(0, ProtocolJson.Default));
        // a body that does not bind (not JSON, wrong type, too deep) is a 400 whose detail names where it went wrong
        builder.Services.Configure<Microsoft.AspNetCore.Routing.RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        builder.Services.AddProblemDetails(o => o.CustomizeProblemDetails = context =>
        {
            if (context.Exception is BadHttpRequestException bad && context.ProblemDetails.Detail is null)
            {
                context.ProblemDetails.Type = ProblemTypes.Validation;
                context.ProblemDetails.Detail = bad.InnerException is System.Text.Json.JsonException json
                    ? $"body: {json.Path ?? "$"}: not what this endpoint takes ({Apis.InputRules.Quote(json.Message.Split(" Path:")[0])})"
                    : Apis.InputRules.Quote(bad.Message);
            }
        });
        time ??= TimeProvider.System;
        builder.Services.AddSingleton(time);
        builder.Services.AddSingleton(options);
        var database = Database.Parse(options.Database, dataDirectory);
        database.BusyTimeout = options.DatabaseBusyTimeout;
        // start-up step: the schema is brought up to date before anything uses the store
        database.Migrate();
        var unitStore = new TsunaguStore(database, time, Units.Lifecycle.SecretBox.LoadOrCreate(Path.Combine(dataDirectory, "keys")));
        // start-up step: secrets stored in plain text before sealing, or left by an interrupted key rotation, are sealed now
        await Units.Lifecycle.SecretRotation.SealAtStartAsync(unitStore, ct);
        builder.Services.AddSingleton(unitStore);
        builder.Services.AddSingleton<Units.Lifecycle.SecretRotation>();
        builder.Services.AddSingleton<Units.Lifecycle.UnitLifecycle>();
        builder.Services.AddSingleton(new ArtifactStore(Path.Combine(dataDirectory, "artifacts")));
        builder.Services.AddSingleton(new TokenService(TokenService.LoadOrCreateKey(Path.Combine(dataDirectory, "keys")), time));
        builder.Services.AddSingleton(UnitKey.LoadOrCreate(Path.Combine(dataDirectory, "keys")));
        builder.Services.AddSingleton(BrokerKey.LoadOrCreate(Path.Combine(dataDirectory, "keys")));
        builder.Services.AddSingleton<UnitBrokerLogins>();
        builder.Services.AddSingleton<UnitAuthentication>();
        builder.Services.AddSingleton<RefusalAudit>();
        // on PostgreSQL the authentication limits are counted in the database: they hold over every replica
        var sharedCounts = database.Kind == DatabaseKind.Postgres ? unitStore : null;
        builder.Services.AddSingleton(new AttemptCounter(options.AuthAttemptsPerMacPerMinute, time, sharedCounts));
        builder.Services.AddKeyedSingleton(Throttling.SourceAttempts, new AttemptCounter(options.AuthAttemptsPerSourcePerMinute, time, sharedCounts, "source:"));
        builder.Services.AddSingleton<Cluster.ReplicaLease>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<Cluster.ReplicaLease>());
        builder.Services.AddTsunaguThrottling(options, database.Kind, time);
        builder.Services.AddSingleton<Catalogue.CatalogueService>();
        builder.Services.AddSingleton<Units.Registration.UnitRegistration>();
        builder.Services.AddSingleton<Units.ForcedChecks.ForcedCheckService>();
        builder.Services.AddSingleton(new Catalogue.OfferedCategories(options));
        builder.Services.AddSingleton<Units.ServiceConfigs.ServiceConfigService>();
        builder.Services.AddSingleton<Subscribers.SubscriberChanges>();
        builder.Services.AddSingleton<Subscribers.ConfigRetries>();
        builder.Services.AddSingleton(sp => new Fleet.ProcessCpuLoad(sp.GetRequiredService<TimeProvider>()));
        builder.Services.AddSingleton<Fleet.IHostLoad>(sp => sp.GetRequiredService<Fleet.ProcessCpuLoad>());
        builder.Services.AddHostedService(sp => sp.GetRequiredService<Fleet.ProcessCpuLoad>());
        builder.Services.AddSingleton<Fleet.Rollouts.RolloutService>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<Fleet.Rollouts.RolloutService>());
        builder.Services.AddWebSessions(options, Path.Combine(dataDirectory, "keys"), time);
        builder.Services.AddOpenApi("v1", o => o.AddDocumentTransformer((document, _, _) =>
        {
            document.Info = new() { Title = "Tsunagu server", Version = "v1", Description = "Initial setting server, host server and operator API. See docs/protocol.md and docs/operator-api.md." };
            return Task.CompletedTask;
        }).AddTsunaguSecurity());
        builder.Services.AddSingleton<ServerEndpoints>();
        builder.Services.AddSingleton(MqttSettings.Parse(options.Mqtt));
        builder.Services.AddSingleton<EmbeddedBroker>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<EmbeddedBroker>());
        builder.Services.AddSingleton<BrokerLink>();
        builder.Services.AddSingleton<IPushPublisher>(sp => sp.GetRequiredService<BrokerLink>());
        builder.Services.AddHostedService(sp => sp.GetRequiredService<BrokerLink>());
        builder.Services.AddTsunaguMetrics();

        services?.Invoke(builder.Services);
        var app = builder.Build();
        if (options.OperatorName is { } operatorName && options.OperatorPassword is { } operatorPassword)
        {
            var store = app.Services.GetRequiredService<TsunaguStore>();
            // set only when it differs: a new hash would end the operator's tokens and sessions at every start
            if (await store.Accounts.GetOperatorHashAsync(operatorName, ct) is not { } current || !PasswordHasher.Verify(operatorPassword, current))
            {
                await store.Accounts.UpsertOperatorAsync(operatorName, PasswordHasher.Hash(operatorPassword), ct: ct);
                await store.AuditAsync("system", "operator.set", operatorName, "from the server's start-up settings", ct);
            }
        }
        if (options.TrustedProxies.Length > 0)
        {
            var forwarded = new Microsoft.AspNetCore.Builder.ForwardedHeadersOptions { ForwardedHeaders = Microsoft.AspNetCore.HttpOverrides.ForwardedHeaders.XForwardedFor, ForwardLimit = 2 };
            forwarded.KnownProxies.Clear();
            forwarded.KnownIPNetworks.Clear();
            foreach (var proxy in options.TrustedProxies) { forwarded.KnownProxies.Add(IPAddress.Parse(proxy)); }
            app.UseForwardedHeaders(forwarded);
        }
        app.UseRequestMetrics();
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        app.UseWebSecurityHeaders();
        app.UseCrossSiteRequestGuard();
        app.UseStaticFiles();
        app.UseAuthentication();
        app.UseAuthorization();
        app.UseRequestBodiesFirst(options);
        app.UseRateLimiter();
        app.UseBusyDatabaseAnswers();
        app.UseStorageFaultAnswers(dataDirectory);
        if (options.HasRole("initial"))
        {
            app.MapProvisioningApi();
            app.MapAccessPointApi(options);
        }
        if (options.HasRole("host"))
        {
            app.MapHostApi();
        }
        app.MapOperatorApi();
        app.MapCatalogueApi();
        app.MapSettingsApi();
        app.MapMediaApi();
        app.MapAuditApi();
        Fleet.FleetApi.MapFleetApi(app);
        Fleet.Rollouts.RolloutsApi.MapRolloutsApi(app);
        app.MapAccountsApi();
        app.MapOpenApi("/openapi/{documentName}.json");
        app.MapRazorPages();
        app.MapGet("/", () => Results.Redirect("/console"));
        app.MapGet("/healthz", () => Results.Ok(new { status = "ok" }));
        app.MapMetrics(options);
        app.Lifetime.ApplicationStarted.Register(() =>
        {
            var endpoints = app.Services.GetRequiredService<ServerEndpoints>();
            endpoints.HostServerUrl = options.HostServerUrl ?? BaseUrl(app);
            app.Logger.LogInformation("connections: at most {Connections} at once (MaxConnections), idle ones closed after {KeepAlive} s",
                connectionCap?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "unlimited", options.KeepAliveSeconds);
        });
        return app;
    }

    /// <summary>The https:// address the server listens on (after start).</summary>
    public static string BaseUrl(WebApplication app)
    {
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault()
                      ?? throw new InvalidOperationException("the server is not listening yet");
        return address.Replace("0.0.0.0", "127.0.0.1", StringComparison.Ordinal).TrimEnd('/') + "/";
    }
}
