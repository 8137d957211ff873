using System.Runtime.InteropServices;
using Tsunagu.Hal.Storage;

namespace Tsunagu.UnitTests.Hal;

/// <summary>
/// The open(2) flag the directory fsync uses is the target architecture's: a supervisor built for arm64 with x86_64's
/// O_DIRECTORY asked for O_DIRECT and every directory sync failed with EINVAL (the qemu-arm64 board never left Boot).
/// </summary>
public sealed class PosixFileSystemTests
{
    [TestCase(Architecture.X64, 0x10000)]
    [TestCase(Architecture.Arm64, 0x4000)]
    [TestCase(Architecture.Arm, 0x4000)]
    public void O_DIRECTORY_is_the_architectures_own(Architecture architecture, int flag) =>
        Assert.That(PosixFileSystem.DirectoryFlag(architecture), Is.EqualTo(flag));

    [Test]
    public void A_directory_syncs_on_this_host()
    {
        var dir = Directory.CreateTempSubdirectory("tsunagu-fsync-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "entry"), "x");
            Assert.DoesNotThrow(() => PosixFileSystem.Instance.SyncDirectory(dir));
            Assert.Throws<IOException>(() => PosixFileSystem.Instance.SyncDirectory(Path.Combine(dir, "missing")), "a missing directory is an error");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
