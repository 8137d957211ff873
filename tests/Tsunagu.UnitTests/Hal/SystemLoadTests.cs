using Microsoft.Extensions.Time.Testing;
using Tsunagu.Hal;
using Tsunagu.Hal.Linux;
using Tsunagu.Hal.Simulated;
using Tsunagu.Protocol;

namespace Tsunagu.UnitTests.Hal;

/// <summary>The system load adapter against fake procfs counters.</summary>
public class SystemLoadTests : FakeRootTests
{
    private void Counters(long user, long system, long idle, long iowait, long rx, long tx)
    {
        Write("proc/stat", $"cpu  {user} 0 {system} {idle} {iowait} 0 0 0 0 0\ncpu0 {user} 0 {system} {idle} {iowait} 0 0 0 0 0\nintr 1 2 3\n");
        Write("proc/net/dev", "Inter-|   Receive                                                |  Transmit\n" +
                              " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n" +
                              "    lo:  999999     10    0    0    0     0          0         0   999999      10    0    0    0     0       0          0\n" +
                              $"  eth0: {rx} 100 0 0 0 0 0 0 {tx} 100 0 0 0 0 0 0\n");
    }

    [Test]
    public void System_load_compares_two_samples_of_the_kernel_counters()
    {
        Counters(user: 1000, system: 500, idle: 8000, iowait: 500, rx: 1_000_000, tx: 2_000_000);
        Write("net/eth0/speed", "100\n");
        var time = new FakeTimeProvider(Start);
        using var load = new LinuxSystemLoad(new LinuxLoadOptions { WanInterface = "eth0", ProcRoot = Path.Combine(_dir, "proc"), NetClassRoot = Path.Combine(_dir, "net") }, time);
        time.Advance(TimeSpan.FromSeconds(2));
        // 2 s: 300 of 400 jiffies busy; 5 MB received = 20 Mb/s of 100
        Counters(user: 1200, system: 600, idle: 8050, iowait: 550, rx: 6_000_000, tx: 2_500_000);
        var reading = load.Read();
        Assert.That(reading.Cpu, Is.EqualTo(0.75).Within(1e-9));
        Assert.That(reading.Wan, Is.EqualTo(0.2).Within(1e-9));

        time.Advance(TimeSpan.FromSeconds(2));
        Counters(user: 1200, system: 600, idle: 9050, iowait: 550, rx: 6_000_000, tx: 2_500_000);
        time.Advance(TimeSpan.FromMinutes(2));
        Assert.That(load.Read(), Is.EqualTo(new UnitLoad(0, 0)), "idle over the last minute");

        File.Delete(Path.Combine(_dir, "net/eth0/speed")); // virtio has no speed: the fallback (100 Mb/s) or the configured capacity
        using var configured = new LinuxSystemLoad(new LinuxLoadOptions { WanInterface = "eth0", ProcRoot = Path.Combine(_dir, "proc"), WanMbps = 1000, NetClassRoot = Path.Combine(_dir, "net") }, time);
        time.Advance(TimeSpan.FromSeconds(1));
        Counters(user: 1200, system: 600, idle: 9050, iowait: 550, rx: 6_000_000, tx: 2_500_000 + 125_000_000);
        Assert.That(configured.Read().Wan, Is.EqualTo(1.0), "1 Gb/s sent on a 1 Gb/s link");
    }

    [Test]
    public void A_reading_is_the_load_of_the_last_minute_not_an_average_since_the_previous_reading()
    {
        Counters(user: 1000, system: 500, idle: 8000, iowait: 500, rx: 0, tx: 0);
        Write("net/eth0/speed", "100\n");
        var time = new FakeTimeProvider(Start);
        using var load = new LinuxSystemLoad(new LinuxLoadOptions { WanInterface = "eth0", ProcRoot = Path.Combine(_dir, "proc"), NetClassRoot = Path.Combine(_dir, "net") }, time);
        Assert.That(load.Read(), Is.EqualTo(new UnitLoad(0, 0)));
        // a day idle (100 jiffies a second), then 30 s fully busy and the WAN at 50 Mb/s of 100: a daily check reads now
        Counters(user: 1000, system: 500, idle: 8000 + 8_640_000, iowait: 500, rx: 0, tx: 0);
        time.Advance(TimeSpan.FromDays(1));
        Counters(user: 1000 + 3000, system: 500, idle: 8000 + 8_640_000, iowait: 500, rx: 30 * 50_000_000L / 8, tx: 0);
        time.Advance(TimeSpan.FromSeconds(30));
        var reading = load.Read();
        Assert.That(reading.Cpu, Is.EqualTo(1.0).Within(1e-9), "the last minute was busy");
        Assert.That(reading.Wan, Is.EqualTo(0.5).Within(0.1), "about 30 s at 50 Mb/s over a window of 30-40 s");
        Assert.That(load.SampleCount, Is.LessThanOrEqualTo(8), "a minute of samples is kept, not a day of them");
    }

    [Test]
    public void A_linux_unit_samples_the_load_on_its_own_clock_and_stops_sampling_when_disposed()
    {
        var time = new FakeTimeProvider(Start);
        Write("prom/os-version", "tsunagu-os 1.0\n");
        var unit = new LinuxUnit(new LinuxUnitOptions
        {
            Board = BoardDescription.Simulated, FactoryRoot = Path.Combine(_dir, "factory"), PromRoot = Path.Combine(_dir, "prom"),
            DataRoot = Path.Combine(_dir, "data"), CmdlinePath = Write("cmdline", "console=ttyS0\n"),
        }, new RecordingRunner(), new SimulatedServiceManager(), time);
        var load = unit.Load!;
        Assert.That(load.SampleCount, Is.EqualTo(1), "the sample taken at construction");
        time.Advance(TimeSpan.FromSeconds(10));
        Assert.That(load.SampleCount, Is.EqualTo(2), "the sampler runs on the unit's TimeProvider");

        time.Advance(TimeSpan.FromSeconds(10));
        Assert.That(load.SampleCount, Is.EqualTo(3), "one sample per interval");

        unit.Dispose();
        // in interval steps, so that a sampler still running would add one per step (it keeps a minute's worth)
        for (var i = 0; i < 12; i++) { time.Advance(TimeSpan.FromSeconds(10)); }
        Assert.That(load.SampleCount, Is.EqualTo(3), "no sample after the unit is disposed: its sampler is stopped");
    }
}
