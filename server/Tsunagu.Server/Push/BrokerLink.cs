using System.Collections.Concurrent;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using MQTTnet;
using MQTTnet.Protocol;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;

namespace Tsunagu.Server.Push;

/// <summary>Sends "check now" to units (patent 0053, 0071) and provisions their broker accounts.</summary>
public interface IPushPublisher
{
    /// <summary>The broker address units are told to use, or null when push is disabled.</summary>
    string? BrokerUri { get; }

    Task PublishAsync(string mac, PushMessage message, CancellationToken cancellationToken);

    /// <summary>Makes sure the unit can log in to the broker with its derived password and reach only its topics.</summary>
    Task EnsureUnitAccountAsync(string mac, CancellationToken cancellationToken);
}

/// <summary>The push broker could not do what was asked; the message says what and why.</summary>
public sealed class PushException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The server's own MQTT client on the broker (embedded or Mosquitto): publishes pushes, follows every unit's
/// retained status topic for presence (units set "offline" as their last will), and on Mosquitto manages unit
/// accounts through the dynamic-security control topic.
/// </summary>
public sealed class BrokerLink(ServerOptions options, MqttSettings settings, EmbeddedBroker embedded, UnitKey unitKey, TsunaguStore store,
    ILogger<BrokerLink> log) : IHostedService, IPushPublisher, IAsyncDisposable
{
    private const string ControlTopic = "$CONTROL/dynamic-security/v1";
    private const string ServerRole = "tsunagu-server";
    private readonly ConcurrentDictionary<string, TaskCompletionSource<JsonObject>> _pending = new();
    private IMqttClient? _client;
    private IMqttClient? _control;
    private readonly CancellationTokenSource _stopping = new();
    private int _disposed;

    public string? BrokerUri { get; private set; }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (!options.HasRole("host") || (settings.Embedded && !embedded.Enabled))
        {
            return;
        }
        var (host, port) = settings.Embedded ? (options.ListenAddress, embedded.Port) : (settings.Host, settings.Port);
        // the embedded broker speaks TLS with the server's own certificate: the server's client pins it, as units do
        var pin = settings.Embedded ? TrustAnchor.PinOf(embedded.Certificate!) : null;
        BrokerUri = options.MqttPublicUri ?? (pin is null ? $"mqtt://{host}:{port}" : $"mqtts://{host}:{port}");
        string user, password, clientId;
        if (settings.Embedded)
        {
            (user, password, clientId) = (MqttSettings.ServerClientId, embedded.ServerPassword, MqttSettings.ServerClientId);
        }
        else
        {
            // the admin connection only manages accounts; Mosquitto kicks a client whose roles change, so the
            // server pushes through an account of its own, with a password every replica derives alike
            _control = await ConnectAsync(host, port, null, settings.Username, settings.Password, $"tsunagu-control-{Guid.NewGuid():N}",
                (c, ct) => c.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(ControlTopic + "/response").Build(), ct), cancellationToken);
            password = Base64Url.Encode(System.Security.Cryptography.HMACSHA256.HashData(unitKey.Bytes, Encoding.ASCII.GetBytes("tsunagu/v1/broker-server")));
            await EnsureServerAccountAsync(password, cancellationToken);
            foreach (var unit in store.ListUnits())
            {
                await EnsureUnitAccountAsync(unit.Mac, cancellationToken);
            }
            (user, clientId) = (ServerRole, $"{ServerRole}-{Guid.NewGuid():N}");
        }
        _client = await ConnectAsync(host, port, pin, user, password, clientId,
            (c, ct) => c.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
                .WithTopicFilter($"{PushTopics.Root}/+/status", MqttQualityOfServiceLevel.AtLeastOnce).Build(), ct), cancellationToken);
        log.LogInformation("push: connected to {Broker} ({Kind})", BrokerUri, settings.Embedded ? "embedded" : "Mosquitto dynamic security");
    }

    /// <summary>
    /// Connects, subscribes, and keeps the connection: when the broker drops it (restart, network), it reconnects
    /// with capped, jittered backoff and subscribes again, until the server stops.
    /// </summary>
    private async Task<IMqttClient> ConnectAsync(string host, int port, string? pin, string user, string password, string clientId,
        Func<IMqttClient, CancellationToken, Task> subscribe, CancellationToken ct)
    {
        var client = new MqttClientFactory().CreateMqttClient();
        var builder = new MqttClientOptionsBuilder()
            .WithTcpServer(host, port).WithClientId(clientId).WithCredentials(user, password).WithCleanStart(true)
            .WithTimeout(TimeSpan.FromSeconds(10));
        if (pin is not null)
        {
            builder = builder.WithTlsOptions(t => t.UseTls().WithCertificateValidationHandler(e =>
            {
                if (e.Certificate is null) { return false; }
                using var certificate = X509CertificateLoader.LoadCertificate(e.Certificate.GetRawCertData());
                return TrustAnchor.Matches(certificate, null, [pin]);
            }));
        }
        var options = builder.Build();
        client.ApplicationMessageReceivedAsync += OnMessage;
        var connect = await client.ConnectAsync(options, ct);
        if (connect.ResultCode != MqttClientConnectResultCode.Success)
        {
            client.Dispose();
            throw new PushException($"the broker at {host}:{port} refused the server's login as {user}: {connect.ResultCode}");
        }
        await subscribe(client, ct);
        client.DisconnectedAsync += async e =>
        {
            var attempt = 0;
            while (!_stopping.IsCancellationRequested && !client.IsConnected)
            {
                var delay = TimeSpan.FromMilliseconds(Random.Shared.NextDouble() * Math.Min(30_000, 250 * Math.Pow(2, Math.Min(attempt++, 10))));
                log.LogWarning("push: lost the broker connection as {User} ({Reason}); reconnecting in {Delay:0.0} s", user, e.ReasonString ?? e.Reason.ToString(), delay.TotalSeconds);
                try
                {
                    await Task.Delay(delay, _stopping.Token);
                    if ((await client.ConnectAsync(options, _stopping.Token)).ResultCode == MqttClientConnectResultCode.Success)
                    {
                        await subscribe(client, _stopping.Token);
                        log.LogInformation("push: reconnected to the broker as {User}", user);
                    }
                }
                catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception ex) when (ex is MQTTnet.Exceptions.MqttCommunicationException or InvalidOperationException or OperationCanceledException)
                {
                    log.LogWarning("push: reconnect as {User} failed: {Error}", user, ex.Message);
                }
            }
        };
        return client;
    }

    private Task OnMessage(MqttApplicationMessageReceivedEventArgs e)
    {
        var topic = e.ApplicationMessage.Topic;
        var payload = Encoding.UTF8.GetString(e.ApplicationMessage.Payload);
        if (topic == ControlTopic + "/response")
        {
            if (JsonNode.Parse(payload)?["responses"] is JsonArray responses)
            {
                foreach (var response in responses.OfType<JsonObject>())
                {
                    if (response["correlationData"]?.GetValue<string>() is { } id && _pending.TryRemove(id, out var waiter))
                    {
                        waiter.TrySetResult(response);
                    }
                }
            }
            return Task.CompletedTask;
        }
        var parts = topic.Split('/');
        if (parts.Length == 5 && parts[4] == "status" && MacAddress.TryNormalize(parts[3], out var mac) && payload is Presence.Online or Presence.Offline)
        {
            store.SetPresence(mac, payload == Presence.Online);
        }
        return Task.CompletedTask;
    }

    public async Task PublishAsync(string mac, PushMessage message, CancellationToken cancellationToken)
    {
        var client = _client ?? throw new PushException("push is disabled on this server (no host role, or MqttPort < 0)");
        var push = new MqttApplicationMessageBuilder()
            .WithTopic(PushTopics.Commands(mac))
            .WithPayload(JsonSerializer.SerializeToUtf8Bytes(message, ProtocolJson.Default.PushMessage))
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .WithMessageExpiryInterval(3600)
            .Build();
        // embedded broker: straight into the unit's session when it is connected (see EmbeddedBroker.TryDeliverAsync)
        if (settings.Embedded && await embedded.TryDeliverAsync(UnitCredentials.BrokerClientId(mac), push, cancellationToken))
        {
            return;
        }
        var result = await client.PublishAsync(push, cancellationToken);
        if (!result.IsSuccess)
        {
            throw new PushException($"the broker refused the push to {mac}: {result.ReasonCode} {result.ReasonString}");
        }
    }

    public async Task EnsureUnitAccountAsync(string mac, CancellationToken cancellationToken)
    {
        if (settings.Embedded || _control is null)
        {
            return; // the embedded broker checks unit logins against the derived password directly
        }
        var user = UnitCredentials.BrokerUsername(mac);
        var role = "unit-" + user;
        var password = UnitCredentials.DeriveBrokerPassword(UnitCredentials.DeriveUnitSecret(unitKey.Bytes, mac));
        await CommandAsync(new JsonObject
        {
            ["command"] = "createRole", ["rolename"] = role,
            ["acls"] = new JsonArray(
                Acl("subscribeLiteral", PushTopics.Commands(mac)),
                Acl("publishClientReceive", PushTopics.Commands(mac)),
                Acl("publishClientSend", PushTopics.Status(mac))),
        }, "Role already exists", cancellationToken);
        // An existing account is left alone: its password is derived, so it is already right, and changing it
        // would make Mosquitto disconnect the unit (a reconnect storm on every server start).
        await CommandAsync(new JsonObject
        {
            ["command"] = "createClient", ["username"] = user, ["password"] = password, ["clientid"] = UnitCredentials.BrokerClientId(mac),
            ["roles"] = new JsonArray(new JsonObject { ["rolename"] = role }),
        }, "Client already exists", cancellationToken);
    }

    private async Task EnsureServerAccountAsync(string password, CancellationToken ct)
    {
        await CommandAsync(new JsonObject
        {
            ["command"] = "createRole", ["rolename"] = ServerRole,
            ["acls"] = new JsonArray(
                Acl("publishClientSend", $"{PushTopics.Root}/+/cmd"),
                Acl("subscribePattern", $"{PushTopics.Root}/+/status"),
                Acl("publishClientReceive", $"{PushTopics.Root}/+/status")),
        }, "Role already exists", ct);
        // left alone when it exists: every replica derives the same password, and a change would disconnect the others
        await CommandAsync(new JsonObject
        {
            ["command"] = "createClient", ["username"] = ServerRole, ["password"] = password,
            ["roles"] = new JsonArray(new JsonObject { ["rolename"] = ServerRole }),
        }, "Client already exists", ct);
    }

    private static JsonObject Acl(string type, string topic) => new() { ["acltype"] = type, ["topic"] = topic, ["priority"] = 0, ["allow"] = true };

    /// <summary>Sends one dynamic-security command and waits for its answer; true when it succeeded, false on the tolerated error.</summary>
    private async Task<bool> CommandAsync(JsonObject command, string? toleratedError, CancellationToken ct)
    {
        var id = Guid.NewGuid().ToString("N");
        command["correlationData"] = id;
        var waiter = new TaskCompletionSource<JsonObject>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[id] = waiter;
        try
        {
            var body = new JsonObject { ["commands"] = new JsonArray(command) }.ToJsonString();
            await _control!.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(ControlTopic).WithPayload(body).Build(), ct);
            var response = await waiter.Task.WaitAsync(TimeSpan.FromSeconds(10), ct);
            var error = response["error"]?.GetValue<string>();
            if (error is null) { return true; }
            if (error == toleratedError) { return false; }
            throw new PushException($"Mosquitto dynamic security refused {command["command"]} ({command["username"] ?? command["rolename"]}): {error}");
        }
        catch (TimeoutException e)
        {
            throw new PushException($"Mosquitto did not answer {command["command"]} within 10 s: is the dynamic-security plugin loaded and {settings.Username} its admin?", e);
        }
        finally
        {
            _pending.TryRemove(id, out _);
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _disposed) == 0) { await _stopping.CancelAsync(); }
        foreach (var client in new[] { _client, _control })
        {
            if (client is { IsConnected: true })
            {
                await client.DisconnectAsync(cancellationToken: cancellationToken);
            }
        }
    }

    public ValueTask DisposeAsync()
    {
        // registered under several service types, so disposed more than once
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return ValueTask.CompletedTask;
        }
        _stopping.Cancel();
        _client?.Dispose();
        _control?.Dispose();
        _stopping.Dispose();
        return ValueTask.CompletedTask;
    }
}
