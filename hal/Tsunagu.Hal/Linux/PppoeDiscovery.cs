using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;

namespace Tsunagu.Hal.Linux;

/// <summary>One PPPoE session as the kernel lists it (/proc/net/pppoe): its id and the access concentrator's MAC.</summary>
public readonly record struct PppoeSession(ushort Id, byte[] PeerMac)
{
    public override string ToString() => $"session {Id} with {Convert.ToHexString(PeerMac)}";
}

/// <summary>
/// Sends the PADT (PPPoE Active Discovery Terminate, RFC 2516 5.5) that tells the access concentrator a session is
/// over. Debian's pppd 2.4.9 PPPoE plugin sends none when it hangs up (it closed its discovery socket after PADS), so
/// the concentrator would free the session only when its own pppd gives up.
/// </summary>
public interface IPppoeTerminator
{
    /// <summary>Sends a PADT for <paramref name="session"/> out of <paramref name="ethernetInterface"/>.</summary>
    /// <exception cref="HalException">The frame could not be sent (transient: the port may be gone).</exception>
    void SendPadt(string ethernetInterface, PppoeSession session);
}

/// <summary>The kernel's PPPoE sessions (/proc/net/pppoe) and a raw AF_PACKET socket for the PADT.</summary>
public sealed partial class LinuxPppoeTerminator : IPppoeTerminator
{
    private const int AfPacket = 17, SockRaw = 3;
    private const ushort EtherTypeDiscovery = 0x8863;
    private const byte VersionType = 0x11, CodePadt = 0xa7;

    private readonly string _sysClassNet;

    public LinuxPppoeTerminator(string sysClassNet = "/sys/class/net") => _sysClassNet = sysClassNet;

    /// <summary>
    /// The session on <paramref name="ethernetInterface"/> in the kernel's list (<paramref name="table"/>: the text of
    /// /proc/net/pppoe, lines "ID MAC DEVICE" under a header), or null if there is none or more than one. The kernel
    /// prints the id as the 16-bit field in network order read as a host integer (%08X): on a little-endian machine the
    /// bytes are swapped back.
    /// </summary>
    public static PppoeSession? Parse(string table, string ethernetInterface, bool littleEndian)
    {
        PppoeSession? found = null;
        foreach (var line in table.Split('\n').Skip(1))
        {
            var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length != 3 || fields[2] != ethernetInterface) { continue; }
            if (!uint.TryParse(fields[0], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var raw) || raw > ushort.MaxValue) { continue; }
            var mac = fields[1].Split(':');
            if (mac.Length != 6 || mac.Any(b => b.Length != 2 || !byte.TryParse(b, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out _))) { continue; }
            if (found is not null) { return null; } // two sessions on one port: not ours to guess
            var id = littleEndian ? BinaryPrimitives.ReverseEndianness((ushort)raw) : (ushort)raw;
            found = new PppoeSession(id, mac.Select(b => byte.Parse(b, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture)).ToArray());
        }
        return found is { Id: not 0 } ? found : null;
    }

    /// <summary>The PADT frame: Ethernet header (to the peer, from us, type 0x8863), version/type 0x11, code 0xa7, the session, no tags.</summary>
    public static byte[] Frame(byte[] ownMac, PppoeSession session)
    {
        var frame = new byte[20];
        session.PeerMac.CopyTo(frame, 0);
        ownMac.CopyTo(frame, 6);
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(12), EtherTypeDiscovery);
        frame[14] = VersionType;
        frame[15] = CodePadt;
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(16), session.Id);
        return frame; // length 0: no tags
    }

    public void SendPadt(string ethernetInterface, PppoeSession session)
    {
        byte[] ownMac;
        int index;
        try
        {
            ownMac = Convert.FromHexString(File.ReadAllText(Path.Combine(_sysClassNet, ethernetInterface, "address")).Trim().Replace(":", "", StringComparison.Ordinal));
            index = int.Parse(File.ReadAllText(Path.Combine(_sysClassNet, ethernetInterface, "ifindex")).Trim(), CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            throw new HalException($"{ethernetInterface}: cannot read the port's MAC and index for a PADT: {e.Message}", isTransient: true, e);
        }
        if (ownMac.Length != 6) { throw new HalException($"{ethernetInterface}: the port's MAC is not 6 bytes", isTransient: false); }
        var frame = Frame(ownMac, session);
        var fd = Socket(AfPacket, SockRaw, BinaryPrimitives.ReverseEndianness(EtherTypeDiscovery));
        if (fd < 0) { throw new HalException($"{ethernetInterface}: no packet socket for a PADT (errno {Marshal.GetLastPInvokeError()})", isTransient: true); }
        try
        {
            // struct sockaddr_ll: family, protocol (network order), ifindex, hatype, pkttype, halen, addr[8]
            var address = new byte[20];
            BinaryPrimitives.WriteUInt16LittleEndian(address, AfPacket);
            BinaryPrimitives.WriteUInt16BigEndian(address.AsSpan(2), EtherTypeDiscovery);
            MemoryMarshal.Write(address.AsSpan(4), in index);
            address[11] = 6;
            session.PeerMac.CopyTo(address, 12);
            if (SendTo(fd, frame, frame.Length, 0, address, address.Length) != frame.Length)
            {
                throw new HalException($"{ethernetInterface}: the PADT for {session} was not sent (errno {Marshal.GetLastPInvokeError()})", isTransient: true);
            }
        }
        finally
        {
            _ = Close(fd);
        }
    }

    [LibraryImport("libc", EntryPoint = "socket", SetLastError = true)]
    private static partial int Socket(int domain, int type, int protocol);

    [LibraryImport("libc", EntryPoint = "sendto", SetLastError = true)]
    private static partial nint SendTo(int fd, byte[] buffer, nint length, int flags, byte[] address, int addressLength);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
