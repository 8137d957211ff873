using System.Text.Json;
using Tsunagu.Firmware.Storage;
using Tsunagu.Firmware.Supervision;
using Tsunagu.Hal;
using Tsunagu.Hal.Simulated;
using Tsunagu.Protocol;

namespace Tsunagu.UnitTests.Supervision;

/// <summary>The real states over the simulated HAL, for the edges that need no server.</summary>
public class RealStateTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = Path.Combine(Path.GetTempPath(), "tsunagu-states-" + Guid.NewGuid().ToString("N"));

    [TearDown]
    public void TearDown()
    {
        if (Directory.Exists(_dir)) { Directory.Delete(_dir, recursive: true); }
    }

    private async Task<(SimulatedUnit Unit, SupervisorContext Ctx)> NewUnitAsync(SupervisorOptions? options = null, TimeProvider? time = null,
        Action<string>? log = null, bool singleLink = false)
    {
        var unit = SimulatedUnits.New(_dir, applications: new Dictionary<string, string> { ["vcp"] = "1.0.0", ["firewall"] = "1.0.0" });
        await SimulatedUnits.BurnAsync(unit, singleLink);
        var ctx = new SupervisorContext(unit.Hardware, options ?? new SupervisorOptions(), time ?? TimeProvider.System, new Random(1), log ?? (_ => { }));
        return (unit, ctx);
    }

    [Test]
    public async Task Boot_without_settings_restores_factory_software_and_asks_for_provisioning()
    {
        var (unit, ctx) = await NewUnitAsync();
        var outcome = await new BootState().EnterAsync(ctx, CancellationToken.None);
        Assert.That(outcome, Is.EqualTo(Outcome.NeedsProvisioning));
        Assert.That(ctx.Apps!.Current(), Is.EqualTo(new Dictionary<string, string> { ["firewall"] = "1.0.0", ["vcp"] = "1.0.0" }));
        Assert.That(new FileInfo(Path.Combine(unit.Data.Root, "apps", "vcp", "current")).LinkTarget, Is.EqualTo("1.0.0"));
        ctx.Store!.Dispose();
        ctx.Client!.Dispose();
    }

    [Test]
    public async Task Boot_with_stored_settings_for_this_unit_goes_to_main()
    {
        var (_, ctx) = await NewUnitAsync();
        await new BootState().EnterAsync(ctx, CancellationToken.None);
        ctx.Store!.Set(StateKeys.Settings, new UnitSettings("02:54:53:00:00:01", new WanAccount("dhcp"), null, null, null, null, "https://127.0.0.1:1/", null),
            FirmwareJson.Default.UnitSettings);
        Assert.That(await new BootState().EnterAsync(ctx, CancellationToken.None), Is.EqualTo(Outcome.Success));
        Assert.That(ctx.Settings!.HostServerUrl, Is.EqualTo("https://127.0.0.1:1/"));
        ctx.Store!.Dispose();
        ctx.Client!.Dispose();
    }

    [Test]
    public async Task Boot_with_the_hosts_power_on_spread_waits_a_random_part_of_it_before_connecting()
    {
        var time = new TimerCountingClock(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        var lines = new System.Collections.Concurrent.ConcurrentQueue<string>(); // written by the boot's task
        var (_, ctx) = await NewUnitAsync(time: time, log: lines.Enqueue);
        await new BootState().EnterAsync(ctx, CancellationToken.None);
        ctx.Store!.Set(StateKeys.Settings, new UnitSettings("02:54:53:00:00:01", new WanAccount("dhcp"), null, null, null, null, "https://127.0.0.1:1/", null),
            FirmwareJson.Default.UnitSettings);
        ctx.Store.Set(StateKeys.PowerOnSpread, new PowerOnSpread(100), FirmwareJson.Default.PowerOnSpread);
        var expected = TimeSpan.FromSeconds(new Random(1).NextDouble() * 100);

        var due = time.GetUtcNow() + expected;
        bool Waiting() => time.PendingDues.Any(d => (d - due).Duration() < TimeSpan.FromMilliseconds(1));
        var boot = new BootState().EnterAsync(ctx, CancellationToken.None);
        // the clock moves only once the wait's own timer is pending, due at the drawn time (it is made after the line is
        // logged); other timers, made or disposed by this boot or the one before, do not count
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!(lines.Any(l => l.Contains("before connecting")) && Waiting()) && !boot.IsCompleted && DateTime.UtcNow < deadline) { await Task.Delay(20); }
        Assert.That(lines.Last(), Does.Contain("the host's power-on spread is 100 s"));
        Assert.That(Waiting(), Is.True, $"the boot waits on a timer due in the drawn {expected.TotalSeconds:0.0} s");
        time.Advance(expected - TimeSpan.FromMilliseconds(10));
        await Task.Delay(100);
        Assert.That(boot.IsCompleted, Is.False, $"still waiting just before the drawn {expected.TotalSeconds:0.0} s");
        time.Advance(TimeSpan.FromMilliseconds(20));
        Assert.That(await boot.WaitAsync(TimeSpan.FromSeconds(60)), Is.EqualTo(Outcome.Success));
        ctx.Store!.Dispose();
        ctx.Client!.Dispose();
    }

    [Test]
    public async Task Boot_forgets_what_a_restart_forgets_whatever_led_to_it()
    {
        // Boot is entered again in the same process after an update's restart, lost data and a factory reset: it must
        // leave the unit as a fresh start would, or a unit that had reported ready before would not report it again
        var (_, ctx) = await NewUnitAsync();
        var settings = new UnitSettings("02:54:53:00:00:01", new WanAccount("dhcp"), null, null, null, null, "https://127.0.0.1:1/", null);
        var session = new SessionResponse("token", "host", DateTimeOffset.UnixEpoch);
        ctx.SetHostSession(session, 1);
        (ctx.ProvisionalSession, ctx.Settings, ctx.FetchedSettings, ctx.ReadyReported, ctx.MainLinkFailures) = (session, settings, settings, true, 3);

        Assert.That(await new BootState().EnterAsync(ctx, CancellationToken.None), Is.EqualTo(Outcome.NeedsProvisioning));

        Assert.That((ctx.HostSession, ctx.ProvisionalSession, ctx.Settings, ctx.FetchedSettings, ctx.ReadyReported, ctx.MainLinkFailures),
            Is.EqualTo(((SessionResponse?)null, (SessionResponse?)null, (UnitSettings?)null, (UnitSettings?)null, false, 0)));
        await ctx.ReleaseAsync();
    }

    [Test]
    public async Task Factory_reset_releases_data_wipes_it_and_restarts_the_unit_then_boot_provisions_again()
    {
        var (unit, ctx) = await NewUnitAsync();
        await new BootState().EnterAsync(ctx, CancellationToken.None);
        ctx.Store!.Set(StateKeys.Settings, new UnitSettings("02:54:53:00:00:01", new WanAccount("dhcp"), null, null, null, null, "https://127.0.0.1:1/", null),
            FirmwareJson.Default.UnitSettings);
        await unit.Wan.UpAsync(Tsunagu.Hal.LinkRole.Main, new WanAccount("dhcp"), CancellationToken.None);
        var marker = Path.Combine(unit.Data.Root, "left-by-the-subscriber");
        await File.WriteAllTextAsync(marker, "x");
        var boots = unit.Boot.Boots;

        Assert.That(await new FactoryResetState().EnterAsync(ctx, CancellationToken.None), Is.EqualTo(Outcome.Success));

        Assert.That(File.Exists(marker), Is.False, "data was wiped");
        Assert.That(unit.Boot.Boots, Is.EqualTo(boots + 1), "the unit restarted once");
        Assert.That(unit.Wan.IsUp, Is.False);
        Assert.That(new object?[] { ctx.Store, ctx.Client, ctx.Services, ctx.Apps, ctx.Push }, Has.All.Null, "nothing holds data or a connection open");
        Assert.That(await new BootState().EnterAsync(ctx, CancellationToken.None), Is.EqualTo(Outcome.NeedsProvisioning), "the stored settings went with data");
        await ctx.ReleaseAsync();
    }

    [Test]
    public async Task Boot_on_a_corrupt_state_store_formats_data_and_provisions_again()
    {
        var (unit, ctx) = await NewUnitAsync();
        Directory.CreateDirectory(unit.Data.Root);
        var garbage = new byte[64 * 1024];
        new Random(3).NextBytes(garbage);
        await File.WriteAllBytesAsync(Path.Combine(unit.Data.Root, StateStore.FileName), garbage);
        await File.WriteAllTextAsync(Path.Combine(unit.Data.Root, "leftover"), "x");
        var outcome = await new BootState().EnterAsync(ctx, CancellationToken.None);
        Assert.That(outcome, Is.EqualTo(Outcome.NeedsProvisioning));
        Assert.That(File.Exists(Path.Combine(unit.Data.Root, "leftover")), Is.False, "data was formatted");
        Assert.That(ctx.Apps!.Current(), Has.Count.EqualTo(2), "factory software restored after the format");
        ctx.Store!.Dispose();
        ctx.Client!.Dispose();
    }

    [TestCase(true)]
    [TestCase(false)]
    public async Task A_unit_whose_identity_names_its_operator_its_isp_keeps_the_provisional_link_as_the_main_link(bool singleLink)
    {
        var (unit, ctx) = await NewUnitAsync(singleLink: singleLink);
        Assert.That(await new BootState().EnterAsync(ctx, CancellationToken.None), Is.EqualTo(Outcome.NeedsProvisioning));
        Assert.That((ctx.Options.SingleLink, ctx.SingleLink), Is.EqualTo((false, singleLink)), "variant 2 from the factory identity, not the options");
        ctx.Settings = new UnitSettings("02:54:53:00:00:01", new WanAccount("pppoe", "subscriber", "pw2"), null, null, null, null, "https://127.0.0.1:1/", null);
        await unit.Hardware.Wan.UpAsync(Tsunagu.Hal.LinkRole.Provisional, new WanAccount("pppoe", "setup", "pw"), CancellationToken.None);
        var dials = unit.Wan.Attempts.Count;

        var disconnected = await new DisconnectState().EnterAsync(ctx, CancellationToken.None);
        var main = await new MainState().EnterAsync(ctx, CancellationToken.None);

        Assert.That(main, Is.EqualTo(Outcome.Success));
        if (singleLink)
        {
            Assert.That(disconnected, Is.EqualTo(Outcome.NothingToDo), "no hang-up");
            Assert.That(Transitions.Next(StateId.Disconnect, Outcome.NothingToDo), Is.EqualTo(StateId.HostSession), "straight to the host on the same link");
            Assert.That((unit.Wan.IsUp, unit.Wan.Role, unit.Wan.Attempts.Count), Is.EqualTo((true, Tsunagu.Hal.LinkRole.Provisional, dials)),
                "the provisional session is the main link: no second dial");
        }
        else
        {
            Assert.That(disconnected, Is.EqualTo(Outcome.Success));
            Assert.That(unit.Wan.Attempts.Skip(dials), Is.EqualTo(new[] { (Tsunagu.Hal.LinkRole.Main, "pppoe", true) }), "hung up, then the subscriber's account dialled");
            Assert.That(unit.Wan.Role, Is.EqualTo(Tsunagu.Hal.LinkRole.Main));
        }
        ctx.Store!.Dispose();
        ctx.Client!.Dispose();
    }

    [Test]
    public async Task Main_link_failing_N_times_gives_up_to_provisioning_then_counts_afresh()
    {
        var (unit, ctx) = await NewUnitAsync(new SupervisorOptions { MainLinkFailureLimit = 3 });
        ctx.Settings = new UnitSettings("02:54:53:00:00:01", new WanAccount("pppoe", "u", "p"), null, null, null, null, "https://127.0.0.1:1/", null);
        unit.Wan.MainUnavailable = true;
        var main = new MainState();
        var outcomes = new List<Outcome>();
        for (var i = 0; i < 4; i++) { outcomes.Add(await main.EnterAsync(ctx, CancellationToken.None)); }
        Assert.That(outcomes, Is.EqualTo(new[] { Outcome.Retry, Outcome.Retry, Outcome.LinkLost, Outcome.Retry }));
        Assert.That(ctx.LastError, Does.Contain("main link"));
        unit.Wan.MainUnavailable = false;
        Assert.That(await main.EnterAsync(ctx, CancellationToken.None), Is.EqualTo(Outcome.Success));
        Assert.That(unit.Wan.Role, Is.EqualTo(Tsunagu.Hal.LinkRole.Main));
        Assert.That(unit.Wan.Attempts.Last(), Is.EqualTo((Tsunagu.Hal.LinkRole.Main, "pppoe", true)));
    }

    [Test]
    public async Task Main_account_refused_by_the_isp_N_times_goes_back_for_fresh_settings()
    {
        var (unit, ctx) = await NewUnitAsync(new SupervisorOptions { MainLinkFailureLimit = 5, MainLinkRefusalLimit = 3 });
        ctx.Settings = new UnitSettings("02:54:53:00:00:01", new WanAccount("pppoe", "u", "wrong"), null, null, null, null, "https://127.0.0.1:1/", null);
        unit.Wan.IspRefuses = a => a.Password == "wrong";
        var main = new MainState();
        var outcomes = new List<Outcome>();
        for (var i = 0; i < 4; i++) { outcomes.Add(await main.EnterAsync(ctx, CancellationToken.None)); }
        Assert.That(outcomes, Is.EqualTo(new[] { Outcome.Retry, Outcome.Retry, Outcome.IspRefused, Outcome.Retry }), "the refusal limit, not the failure limit");
        Assert.That(ctx.LastError, Does.Contain("refused"));
        Assert.That(Transitions.Next(StateId.Main, Outcome.IspRefused), Is.EqualTo(StateId.Provisional));

        // a failure of another kind between refusals does not reset the count of refusals, a success does
        unit.Wan.FailNextUps(1);
        Assert.That(await main.EnterAsync(ctx, CancellationToken.None), Is.EqualTo(Outcome.Retry));
        Assert.That(await main.EnterAsync(ctx, CancellationToken.None), Is.EqualTo(Outcome.Retry), "refusal 2");
        Assert.That(await main.EnterAsync(ctx, CancellationToken.None), Is.EqualTo(Outcome.IspRefused), "refusal 3: the failure between did not reset the count");
        ctx.Settings = ctx.Settings with { Isp = new WanAccount("pppoe", "u", "fixed") };
        Assert.That(await main.EnterAsync(ctx, CancellationToken.None), Is.EqualTo(Outcome.Success));
        Assert.That(ctx.MainLinkRefusals, Is.Zero);
    }

    [Test]
    public async Task Unreadable_factory_identity_is_retried_not_fatal()
    {
        var (unit, ctx) = await NewUnitAsync();
        await File.WriteAllTextAsync(Path.Combine(unit.Factory.Root, DirectoryFactoryPartition.IdentityFile), "{ not json");
        Assert.That(await new BootState().EnterAsync(ctx, CancellationToken.None), Is.EqualTo(Outcome.Retry));
        Assert.That(ctx.LastError, Does.Contain("identity.json"));
    }

    [Test]
    public void App_store_refuses_names_that_leave_its_directory()
    {
        var apps = new AppStore(_dir);
        Assert.Throws<ArgumentException>(() => apps.Stage("../evil", "1", _dir));
        Assert.Throws<ArgumentException>(() => apps.Switch("vcp", ".."));
        Assert.Throws<InvalidOperationException>(() => apps.Switch("vcp", "9.9.9"));
    }

    [Test]
    public void State_store_round_trips_values_and_survives_reopening()
    {
        Directory.CreateDirectory(_dir);
        using (var store = StateStore.Open(_dir))
        {
            store.Set(StateKeys.AppliedConfig, new AppliedConfig(4, true, null), FirmwareJson.Default.AppliedConfig);
        }
        using (var store = StateStore.Open(_dir))
        {
            Assert.That(store.Get(StateKeys.AppliedConfig, FirmwareJson.Default.AppliedConfig), Is.EqualTo(new AppliedConfig(4, true, null)));
            store.Delete(StateKeys.AppliedConfig);
            Assert.That(store.Get(StateKeys.AppliedConfig, FirmwareJson.Default.AppliedConfig), Is.Null);
        }
        Assert.That(JsonSerializer.Serialize(new AppliedConfig(1, false, "x"), FirmwareJson.Default.AppliedConfig), Does.Contain("\"revision\":1"));
    }
}
