using System.Security.Cryptography;
using System.Text;
using Tsunagu.Hal;

namespace Tsunagu.IntegrationTests;

/// <summary>Virus checking as the build host has it installed (Debian's clamav-daemon, c-icap and its virus_scan module).</summary>
public static class HostVirusScan
{
    /// <summary>The EICAR anti-virus test file: harmless, and every engine's agreed test of detection.</summary>
    public static readonly byte[] Eicar = Encoding.ASCII.GetBytes(@"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*");

    /// <summary>A signature database line (ClamAV's `.hdb`: MD5, size, name) that finds the EICAR file as <paramref name="name"/>.</summary>
    public static string EicarHashSignature(string name) => $"{Convert.ToHexStringLower(MD5.HashData(Eicar))}:{Eicar.Length}:{name}\n";

    /// <summary>A body-pattern signature (ClamAV's `.ndb`) that finds <paramref name="marker"/> anywhere in a file.</summary>
    public static string MarkerSignature(string name, string marker) => $"{name}:0:*:{Convert.ToHexStringLower(Encoding.ASCII.GetBytes(marker))}\n";

    /// <summary>The host's c-icap modules directory (`/usr/lib/&lt;triplet&gt;/c_icap`); fails the test when c-icap's virus_scan module is not installed.</summary>
    public static string IcapModulesDirectory()
    {
        var found = Directory.GetDirectories("/usr/lib").Select(d => Path.Combine(d, "c_icap")).FirstOrDefault(d => File.Exists(Path.Combine(d, "virus_scan.so")));
        if (found is null)
        {
            Assert.Fail("c-icap's virus_scan module is not installed (apt-get install c-icap libc-icap-mod-virus-scan)");
        }
        return found!;
    }

    /// <summary>The board's virus checking with <paramref name="memoryMegabytes"/> and the host's c-icap modules.</summary>
    public static BoardVirusScan Board(int memoryMegabytes = 256) => new(memoryMegabytes, IcapModulesDirectory());
}
