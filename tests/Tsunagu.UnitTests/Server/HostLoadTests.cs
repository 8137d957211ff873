using Microsoft.Extensions.Time.Testing;
using Tsunagu.Server.Fleet;

namespace Tsunagu.UnitTests.Server;

/// <summary>The host's own load (server/Tsunagu.Server/Fleet/HostLoad.cs) on virtual time: the last minute's CPU use, not longer.</summary>
public class HostLoadTests
{
    [Test]
    public void The_load_is_the_last_minutes_cpu_use_of_all_cores()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 4, 1, 9, 0, 0, TimeSpan.Zero));
        var cpu = TimeSpan.Zero;
        var load = new ProcessCpuLoad(time, () => cpu, processors: 2);
        Assert.That(load.Current(), Is.Zero, "one sample: nothing to average yet");

        // ten busy minutes (both cores full), sampled every 5 s as the background loop does
        for (var i = 0; i < 120; i++) { time.Advance(ProcessCpuLoad.Spacing); cpu += ProcessCpuLoad.Spacing * 2; load.Sample(); }
        Assert.That(load.Current(), Is.EqualTo(1.0).Within(1e-9));
        // then idle: half a minute later the last minute was half busy; a minute later, idle
        for (var i = 0; i < 6; i++) { time.Advance(ProcessCpuLoad.Spacing); load.Sample(); }
        Assert.That(load.Current(), Is.EqualTo(0.5).Within(0.1));
        for (var i = 0; i < 7; i++) { time.Advance(ProcessCpuLoad.Spacing); load.Sample(); }
        Assert.That(load.Current(), Is.Zero.Within(1e-9), "the busy minutes before the last one do not count");

        // one of the two cores busy for the last minute: half
        for (var i = 0; i < 12; i++) { time.Advance(ProcessCpuLoad.Spacing); cpu += ProcessCpuLoad.Spacing; load.Sample(); }
        Assert.That(load.Current(), Is.EqualTo(0.5).Within(1e-9));
    }

    [Test]
    public void Readings_in_between_samples_add_none_and_a_pause_in_sampling_reads_the_time_since_the_last()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 4, 1, 9, 0, 0, TimeSpan.Zero));
        var cpu = TimeSpan.Zero;
        var reads = 0;
        var load = new ProcessCpuLoad(time, () => { reads++; return cpu; }, processors: 1);
        load.Sample();
        for (var i = 0; i < 10; i++) { load.Current(); }
        Assert.That(reads, Is.EqualTo(1), "within the spacing a reading takes no new sample");
        time.Advance(TimeSpan.FromMinutes(10));
        cpu += TimeSpan.FromMinutes(10);
        Assert.That(load.Current(), Is.EqualTo(1.0).Within(1e-9), "after a pause: the time since the last sample");
        Assert.That(reads, Is.EqualTo(2));
    }
}
