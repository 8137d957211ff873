namespace Tsunagu.Server.Push;

/// <summary>
/// Which broker carries pushes (`Mqtt` setting, `TSUNAGU_MQTT`): "embedded" (default; MQTTnet inside the
/// server on <see cref="ServerOptions.MqttPort"/>) or "mqtt://ADMIN:PASSWORD@HOST:PORT" for a Mosquitto with the
/// dynamic-security plugin, where the server creates each unit's account and ACL itself.
/// </summary>
public sealed record MqttSettings(bool Embedded, string Host, int Port, string Username, string Password)
{
    public const string ServerClientId = "tsunagu-server";

    public static MqttSettings Parse(string setting)
    {
        if (string.IsNullOrWhiteSpace(setting) || setting.Equals("embedded", StringComparison.OrdinalIgnoreCase))
        {
            return new MqttSettings(true, "", 0, "", "");
        }
        if (!Uri.TryCreate(setting, UriKind.Absolute, out var uri) || uri.Scheme != "mqtt" || string.IsNullOrEmpty(uri.UserInfo) || !uri.UserInfo.Contains(':'))
        {
            throw new ArgumentException($"Tsunagu:Mqtt '{Redact(setting)}' must be 'embedded' or mqtt://ADMIN:PASSWORD@HOST:PORT (a Mosquitto with dynamic security)");
        }
        var colon = uri.UserInfo.IndexOf(':');
        return new MqttSettings(false, uri.Host, uri.Port > 0 ? uri.Port : 1883,
            Uri.UnescapeDataString(uri.UserInfo[..colon]), Uri.UnescapeDataString(uri.UserInfo[(colon + 1)..]));
    }

    private static string Redact(string setting) => setting.Contains('@') ? "mqtt://***@" + setting[(setting.IndexOf('@') + 1)..] : setting;
}
