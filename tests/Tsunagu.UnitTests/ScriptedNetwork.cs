using Tsunagu.Hal;

namespace Tsunagu.UnitTests;

/// <summary>A unit's network whose every request is answered by <paramref name="host"/>: no socket, no route.</summary>
internal sealed class ScriptedNetwork(HttpMessageHandler host) : INetworkAccess
{
    public HttpMessageHandler WrapHandler(HttpMessageHandler inner)
    {
        inner.Dispose();
        return host;
    }

    public void EnsureRoute() { }
}
