using System.Net;
using Tsunagu.Firmware.Net;
using Tsunagu.Firmware.Updates;

namespace Tsunagu.UnitTests.Updates;

/// <summary>
/// The post-update health check tells "the new software is broken" from "the host is unreachable": only the first
/// spends the health window; the second is waited out for a bounded time. Virtual time: every probe interval passes at once.
/// </summary>
public partial class UpdaterTests
{
    private static readonly UpdateOptions Defaults = new();

    /// <summary>A probe that answers by the virtual time since the install began probing.</summary>
    private static Func<CancellationToken, Task<HealthReading>> ProbeBy(VirtualTime time, Func<TimeSpan, HealthReading> at, List<TimeSpan> probes)
    {
        long? first = null;
        return _ =>
        {
            first ??= time.GetTimestamp();
            var since = time.GetElapsedTime(first.Value);
            probes.Add(since);
            return Task.FromResult(at(since));
        };
    }

    [Test]
    public async Task A_host_outage_longer_than_the_health_window_does_not_roll_back_software_that_passes_its_own_checks()
    {
        var b = await BuildAsync(_key);
        var time = new VirtualTime(DateTimeOffset.UtcNow);
        var probes = new List<TimeSpan>();
        var outage = Defaults.HealthWindow * 5;
        var health = ProbeBy(time, since => since < outage ? HealthReading.Unreachable("host unreachable: connection refused") : HealthReading.Healthy, probes);
        var result = await Installer(new MemorySource(b.Bytes), health: health, options: Defaults, time: time).RunAsync(b.Offer, CancellationToken.None);

        Assert.That(result.Status, Is.EqualTo(InstallStatus.Committed), result.Report?.Error);
        Assert.That(_apps.Current(), Is.EqualTo(Pattern2));
        Assert.That(BundleInstaller.Counter(_store)!.Version, Is.EqualTo(2));
        Assert.That(_log, Has.None.Contains("rolling back"));
        Assert.That(probes.Last(), Is.GreaterThanOrEqualTo(outage), "committed only once the host answered");
        // probing stays at its interval throughout the outage: no tight loop
        Assert.That(time.Delays, Is.All.EqualTo(Defaults.HealthProbeInterval));
        Assert.That(probes, Has.Count.EqualTo((int)(outage / Defaults.HealthProbeInterval) + 1));
    }

    [Test]
    public async Task A_host_that_stays_unreachable_is_waited_for_the_grace_then_the_update_is_rolled_back_saying_why()
    {
        var b = await BuildAsync(_key);
        var time = new VirtualTime(DateTimeOffset.UtcNow);
        var probes = new List<TimeSpan>();
        var health = ProbeBy(time, _ => HealthReading.Unreachable("host unreachable: the WAN link is down"), probes);
        var result = await Installer(new MemorySource(b.Bytes), health: health, options: Defaults, time: time).RunAsync(b.Offer, CancellationToken.None);

        Assert.That(result.Status, Is.EqualTo(InstallStatus.Failed));
        Assert.That(result.Report!.Error, Does.Contain("the host stayed unreachable for").And.Contain("the WAN link is down"));
        Assert.That(probes.Last(), Is.InRange(Defaults.HostUnreachableGrace - Defaults.HealthProbeInterval, Defaults.HostUnreachableGrace),
            "the wait is bounded by the grace, and uses it");
        Assert.That(_apps.Current(), Is.EqualTo(Pattern1));
        Assert.That(BundleInstaller.Counter(_store), Is.Null, "nothing committed");
    }

    [Test]
    public async Task A_software_fault_after_a_host_outage_gets_the_whole_health_window_and_no_more_then_rolls_back()
    {
        var b = await BuildAsync(_key);
        var time = new VirtualTime(DateTimeOffset.UtcNow);
        var probes = new List<TimeSpan>();
        var outage = TimeSpan.FromMinutes(5);
        var health = ProbeBy(time, since => since < outage
            ? HealthReading.Unreachable("host unreachable: timeout")
            : HealthReading.Fault("services: revision 3 is applied but services/current points to 2"), probes);
        var result = await Installer(new MemorySource(b.Bytes), health: health, options: Defaults, time: time).RunAsync(b.Offer, CancellationToken.None);

        Assert.That(result.Status, Is.EqualTo(InstallStatus.Failed));
        Assert.That(result.Report!.Error, Does.StartWith("health check failed within 120s").And.Contain("services: revision 3"));
        var faulty = probes.Last() - outage;
        Assert.That(faulty, Is.InRange(Defaults.HealthWindow - 2 * Defaults.HealthProbeInterval, Defaults.HealthWindow),
            "the software's fault was given the health window, not less (the outage did not spend it) and not more");
        Assert.That(_apps.Current(), Is.EqualTo(Pattern1));
    }

    [Test]
    public void A_failed_request_to_the_host_is_unreachable_when_transient_and_the_softwares_fault_when_refused()
    {
        Assert.That(HealthReading.FromHostError(new ServerException("GET /healthz: connection refused", isTransient: true)).Verdict,
            Is.EqualTo(HealthVerdict.HostUnreachable));
        Assert.That(HealthReading.FromHostError(new ServerException("GET /healthz: 503", isTransient: true, HttpStatusCode.ServiceUnavailable)).Verdict,
            Is.EqualTo(HealthVerdict.HostUnreachable));
        var refused = HealthReading.FromHostError(new ServerException("GET /healthz: 400 bad request", isTransient: false, HttpStatusCode.BadRequest));
        Assert.That(refused.Verdict, Is.EqualTo(HealthVerdict.SoftwareFault));
        Assert.That(refused.Reason, Does.Contain("400 bad request"));
    }
}
