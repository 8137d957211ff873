using Tsunagu.Hal;
using Tsunagu.Hal.Linux;

namespace Tsunagu.UnitTests.Hal;

/// <summary>The data partition adapter against a fake mount.</summary>
public class DataPartitionTests : FakeRootTests
{
    [Test]
    public async Task Data_partition_must_be_mounted_and_writable()
    {
        var root = Path.Combine(_dir, "data");
        Directory.CreateDirectory(root);
        var escaped = root.Replace(" ", "\\040");
        var mountinfo = Write("mountinfo", $"22 1 253:0 / / rw,relatime - ext4 /dev/vda2 rw\n30 22 253:5 / {escaped} rw,noatime - ext4 /dev/vda5 rw\n");
        var data = new LinuxDataPartition(new LinuxDataOptions { Root = root, MountInfoPath = mountinfo });
        await data.EnsureReadyAsync(CancellationToken.None);
        Assert.That(Directory.EnumerateFileSystemEntries(root), Is.Empty, "the probe file is gone");

        var unmounted = new LinuxDataPartition(new LinuxDataOptions { Root = Path.Combine(_dir, "other"), MountInfoPath = mountinfo });
        Directory.CreateDirectory(unmounted.Root);
        var e = Assert.ThrowsAsync<HalException>(() => unmounted.EnsureReadyAsync(CancellationToken.None));
        Assert.That(e!.Message, Does.Contain("not mounted").And.Contain(mountinfo));
        var absent = new LinuxDataPartition(new LinuxDataOptions { Root = Path.Combine(_dir, "absent"), MountInfoPath = null });
        e = Assert.ThrowsAsync<HalException>(() => absent.EnsureReadyAsync(CancellationToken.None));
        Assert.That(e!.Message, Does.Contain("absent: the data partition's mount point does not exist"));
    }

    [Test]
    public async Task Format_erases_everything_under_the_mount_point_only()
    {
        var root = Path.Combine(_dir, "data");
        Write("data/state.db", "x");
        Write("data/apps/web/1.0/VERSION", "1.0");
        Write("data/lost+found/.keep", "");
        Write("outside/precious", "keep me");
        File.CreateSymbolicLink(Path.Combine(root, "link"), Path.Combine(_dir, "outside"));
        var data = new LinuxDataPartition(new LinuxDataOptions { Root = root, MountInfoPath = null });
        await data.FormatAsync(CancellationToken.None);
        Assert.That(Directory.Exists(root), Is.True);
        Assert.That(Directory.EnumerateFileSystemEntries(root).Select(Path.GetFileName), Is.EqualTo(new[] { "lost+found" }));
        Assert.That(Read("outside/precious"), Is.EqualTo("keep me"), "a link is removed, not followed");
        await data.EnsureReadyAsync(CancellationToken.None);
    }
}
