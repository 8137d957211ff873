using Tsunagu.Protocol;

namespace Tsunagu.Hal;

/// <summary>A hardware capability failed; <see cref="IsTransient"/> says whether trying again can help.</summary>
public class HalException(string message, bool isTransient, Exception? inner = null) : Exception(message, inner)
{
    public bool IsTransient { get; } = isTransient;
}

/// <summary>The read-only partitions: the per-unit `factory` identity and the common `prom` contents.</summary>
public interface IFactoryPartition
{
    /// <exception cref="HalException">The partition is missing or its identity unreadable.</exception>
    Task<FactoryIdentity> ReadIdentityAsync(CancellationToken cancellationToken);
}

/// <summary>The software shipped in the PROM: the OS version and the factory application trees.</summary>
public interface IPromPartition
{
    string OsVersion { get; }

    /// <summary>Factory application versions, and for each the directory holding its tree.</summary>
    IReadOnlyList<PromApplication> FactoryApplications { get; }
}

public sealed record PromApplication(string Name, string Version, string TreePath);

public enum LinkRole { Provisional, Main }

/// <summary>A WAN link worker (netifd proto model): set up, tear down, report loss. Never blocks forever.</summary>
public interface IWanLink
{
    bool IsUp { get; }
    LinkRole? Role { get; }
    string? Address { get; }

    /// <summary>Completes when the link that is up now is lost; a fresh task after each <see cref="UpAsync"/>.</summary>
    Task LinkLost { get; }

    /// <exception cref="HalException">The link could not be set up (IsTransient when a retry may succeed).</exception>
    Task UpAsync(LinkRole role, WanAccount account, CancellationToken cancellationToken);

    Task DownAsync(CancellationToken cancellationToken);
}

/// <summary>The writable `data` partition (the patent's flash).</summary>
public interface IDataPartition
{
    /// <summary>Mount point; the state store, settings, applications and service configuration live under it.</summary>
    string Root { get; }

    /// <summary>Makes sure the partition is usable, creating an empty file system if it has none.</summary>
    Task EnsureReadyAsync(CancellationToken cancellationToken);

    /// <summary>Erases everything on the partition (factory reset, or recovery from corruption).</summary>
    Task FormatAsync(CancellationToken cancellationToken);
}

/// <summary>CPU and network utilisation, for importance decisions.</summary>
public interface ISystemLoad
{
    UnitLoad Read();
}

public enum StatusIndication { Booting, Provisioning, Connecting, Updating, Ready, Error }

/// <summary>Status LEDs; the mapping of an indication to LEDs and patterns is per board.</summary>
public interface IStatusLeds
{
    void Show(StatusIndication indication);
}

/// <summary>
/// Where the unit's HTTP and MQTT traffic goes out. On Linux it is the kernel's routing over the link that is
/// up; the simulation refuses traffic while no link is up.
/// </summary>
public interface INetworkAccess
{
    HttpMessageHandler WrapHandler(HttpMessageHandler inner);

    /// <exception cref="HalException">No route: the WAN link is down.</exception>
    void EnsureRoute();
}

/// <summary>All capabilities of one unit, and the board description they were built for.</summary>
public sealed record UnitHardware(
    IFactoryPartition Factory,
    IPromPartition Prom,
    IWanLink Wan,
    IDataPartition Data,
    ISystemLoad Load,
    IStatusLeds Leds,
    INetworkAccess Network,
    IServiceManager Services,
    BoardDescription Board);
