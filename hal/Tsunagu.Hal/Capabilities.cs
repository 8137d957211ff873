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

    /// <summary>
    /// Called on every socket handler a client makes for this network, before its first connection (a client that
    /// closes its pool makes a new one): where a network chooses how sockets connect (a source address), it says so
    /// here, since what <see cref="WrapHandler"/> is given may be a handler that makes socket handlers itself.
    /// </summary>
    void ConfigureSockets(SocketsHttpHandler handler) { }

    /// <exception cref="HalException">No route: the WAN link is down.</exception>
    void EnsureRoute();
}

public enum BootSlot { A, B }

/// <summary>One OS slot as the boot program sees it: the OS version written to it, whether it is committed good, boot tries left.</summary>
public sealed record SlotState(BootSlot Slot, string? OsVersion, bool Good, int TriesLeft);

/// <summary>
/// A/B OS slots with boot counting (RAUC/Mender model). An update writes the inactive slot, activates it for a
/// bounded number of boots, reboots, and marks it good only after the health check; a slot that does not come
/// up within its tries is marked bad and the boot program falls back to the other slot, then to the PROM.
/// </summary>
public interface IBootControl
{
    /// <summary>The slot running now; null when the unit runs the PROM's recovery OS (no good slot).</summary>
    BootSlot? Booted { get; }

    /// <summary>The OS version of the booted slot; null on the PROM.</summary>
    string? BootedOsVersion { get; }

    /// <summary>
    /// The slot the boot program last gave up on (an activated slot that did not come up within its tries), so the
    /// firmware can report "the new OS did not boot"; null when none, and again after <see cref="MarkGood"/>.
    /// </summary>
    BootSlot? LastFailed { get; }

    SlotState Read(BootSlot slot);

    /// <summary>
    /// The slots the boot program refused at this boot because their bytes did not match their recorded root hash
    /// (dm-verity); the firmware reports them. Empty when none (or on a board without verified slots).
    /// </summary>
    IReadOnlyList<BootSlot> VerityFailures => [];

    /// <summary>
    /// The slots the boot program booted without verifying them because no dm-verity root hash was recorded for them or
    /// it could not set up their mapping (the module missing, dmsetup failing): nothing is known about their bytes, so they were not marked bad; the
    /// firmware reports them. Empty when none.
    /// </summary>
    IReadOnlyList<BootSlot> VerityUnchecked => [];

    /// <summary>Marks <paramref name="slot"/> bad, then writes <paramref name="image"/> into it. Refuses the booted slot.</summary>
    /// <exception cref="HalException">Writing failed, or the slot is the booted one.</exception>
    Task WriteAsync(BootSlot slot, Stream image, string osVersion, CancellationToken cancellationToken);

    /// <summary>
    /// Records the dm-verity parameters of the image just written into <paramref name="slot"/> (the boot state's
    /// `a_verity`/`b_verity`, `DATA_BLOCKS:HASH_START_BLOCK:SALT:ROOT_HASH`): the boot program maps the slot through
    /// dm-verity with them and a slot whose bytes differ fails. Null: the image has no hash tree; it boots unverified.
    /// </summary>
    /// <exception cref="HalException">The value is not of that form.</exception>
    void SetVerity(BootSlot slot, string? verity);

    /// <summary>The next boots try <paramref name="slot"/> at most <paramref name="tries"/> times before falling back.</summary>
    void Activate(BootSlot slot, int tries);

    /// <summary>Commits <paramref name="slot"/>: it is the slot every later boot uses.</summary>
    void MarkGood(BootSlot slot);

    /// <summary>The boot program never picks <paramref name="slot"/> again until it is written anew.</summary>
    void MarkBad(BootSlot slot);

    /// <summary>Restarts the unit. On a real board the process ends here; the simulated twin runs the boot program's choice and returns.</summary>
    Task RebootAsync(CancellationToken cancellationToken);
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
    IBootControl Boot,
    IServiceManager Services,
    BoardDescription Board,
    IRemovableMedia? Media = null,
    IResetButton? Reset = null,
    IWatchdog? Watchdog = null);

/// <summary>
/// The board's reset button. The supervisor awaits <see cref="WaitForLongPressAsync"/> in a loop; a long press means
/// "wipe `data` and provision again". Short presses are ignored.
/// </summary>
public interface IResetButton
{
    /// <summary>How long the button must be held for a long press.</summary>
    TimeSpan LongPress { get; }

    /// <summary>
    /// Completes as soon as the button has been held down for <see cref="LongPress"/>, while it is still held (the
    /// user sees the reaction without having to let go). Each long press completes one wait: after a long press the
    /// button must be released before the next one counts, so a button kept down does not fire again.
    /// </summary>
    /// <exception cref="HalException">The button's device is missing or unreadable (not transient when the board lacks it).</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    Task WaitForLongPressAsync(CancellationToken cancellationToken);
}

/// <summary>
/// A removable install medium (patent 0037: a CD-ROM then, a USB stick or image file now). The install image is
/// read raw from <see cref="ImagePath"/> (a block device or a file); nothing is mounted.
/// </summary>
public interface IRemovableMedia
{
    /// <summary>The inserted medium, or null when the slot is empty.</summary>
    string? ImagePath { get; }

    /// <summary>Rejects the medium (ejects it); <see cref="ImagePath"/> is null afterwards.</summary>
    void Eject(string reason);
}
