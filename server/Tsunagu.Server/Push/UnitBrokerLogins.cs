using Tsunagu.Protocol;

namespace Tsunagu.Server.Push;

/// <summary>
/// Issues a unit's short-lived broker password with each host session (<see cref="BrokerPassword"/>): the embedded
/// broker checks it on CONNECT by itself; on Mosquitto the server sets it on the unit's account first
/// (<see cref="BrokerLink.SetUnitPasswordAsync"/>), so the unit can log in as soon as it has the answer.
/// </summary>
public sealed class UnitBrokerLogins(ServerOptions options, BrokerKey key, BrokerLink link, TimeProvider time, ILogger<UnitBrokerLogins> log)
{
    /// <summary>The password for <paramref name="mac"/> and the seconds it is valid from now.</summary>
    public async Task<(string Password, long ExpiresInSeconds)> IssueAsync(string mac, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var expires = BrokerPassword.ExpiryFor(now, options.BrokerPasswordLifetime);
        var (brokerKey, keyId) = key.Current;
        var password = BrokerPassword.Issue(brokerKey, mac, expires);
        try
        {
            await link.SetUnitPasswordAsync(mac, password, expires, keyId, ct);
        }
        catch (PushException e)
        {
            // the session stands (pushes are an optimisation); the unit's login is refused and it asks again later
            log.LogWarning("unit {Mac}: its broker password was not set on the broker now: {Error}", mac, e.Message);
        }
        return (password, (long)(expires - now).TotalSeconds);
    }
}
