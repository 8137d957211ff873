using Tsunagu.Firmware.Supervision;
using Tsunagu.Hal;
using Tsunagu.Hal.Simulated;

namespace Tsunagu.UnitTests.Supervision;

/// <summary><see cref="SupervisorOptions"/>: defaults are valid, each bad value is refused at start-up naming itself.</summary>
public class SupervisorOptionsTests
{
    [Test]
    public void Defaults_are_valid() => Assert.That(() => new SupervisorOptions().Validate(), Throws.Nothing);

    public static IEnumerable<TestCaseData> Invalid()
    {
        yield return new TestCaseData(new SupervisorOptions { CheckJitter = 1.5 }, "CheckJitter");
        yield return new TestCaseData(new SupervisorOptions { CheckJitter = -0.1 }, "CheckJitter");
        yield return new TestCaseData(new SupervisorOptions { CheckInterval = TimeSpan.Zero }, "CheckInterval");
        yield return new TestCaseData(new SupervisorOptions { MainLinkFailureLimit = 0 }, "MainLinkFailureLimit");
        yield return new TestCaseData(new SupervisorOptions { BackoffBase = TimeSpan.Zero }, "BackoffBase");
        yield return new TestCaseData(new SupervisorOptions { BackoffBase = TimeSpan.FromMinutes(10), BackoffCap = TimeSpan.FromMinutes(1) }, "BackoffCap");
        yield return new TestCaseData(new SupervisorOptions { ConfirmTimeout = TimeSpan.FromSeconds(-1) }, "ConfirmTimeout");
    }

    [TestCaseSource(nameof(Invalid))]
    public void A_bad_value_is_refused_at_start_naming_the_option(SupervisorOptions options, string name)
    {
        var e = Assert.Throws<ArgumentException>(options.Validate);
        Assert.That(e!.Message, Does.Contain(name));
        var prom = Path.Combine(Path.GetTempPath(), "tsunagu-prom-empty");
        DirectoryPromPartition.Build(prom, "test-os", new Dictionary<string, string>());
        var unit = new SimulatedUnit(Path.GetTempPath(), prom);
        Assert.Throws<ArgumentException>(() => _ = new Supervisor(unit.Hardware, options), "the supervisor validates before it starts");
    }
}
