using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.DependencyInjection;
using Tsunagu.Demo;
using Tsunagu.Firmware.Services;
using Tsunagu.Firmware.Supervision;
using Tsunagu.IntegrationTests;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Units.Lifecycle;
using Tsunagu.Server.Units.ServiceConfigs;

namespace Tsunagu.SystemTests.Qemu;

/// <summary>
/// The ISP lab (docs/lab.md): a unit whose only network is a QEMU socket link to the access network guest
/// (pppoe-server and pppd from Debian, sessions authenticated and accounted by FreeRADIUS through pppd's radius.so),
/// which routes its PPPoE sessions to the server on the host. The unit dials the provisioning access point with its
/// factory PPP account (the MAC and the password derived from it with the operator's unit key; the access point's
/// RADIUS server asks the initial setting server for that password, so the key stays there), fetches its settings,
/// hangs up, dials the subscriber's account and reports Ready; a unit with a wrong factory password is refused by the
/// RADIUS server and the access concentrator; a line that goes dead under a Ready unit is found by LCP echo and redialled;
/// a LAN PC on the unit's LAN port takes a lease from the unit, reaches the lab's internet by name through it, and is
/// refused a domain of the unit's content filter; a password the operator changes in the table reaches the unit, and a
/// wrong one sends it back to provisioning until the table is fixed; a DHCP main link renews its lease, and a static
/// one comes up with the table's gateway and name server; a LAN PC's repeated fetch is served by the unit's cache; a
/// LAN PC's virus download is refused, and new signatures sent by a forced check refuse a new one with nothing restarted.
/// </summary>
[TestFixture, NonParallelizable]
public sealed partial class IspLabTests
{
    // TCG guests on a shared machine: generous; the measured times are printed and recorded in docs/lab.md
    private static readonly TimeSpan IspBoot = TimeSpan.FromMinutes(4);
    private static readonly TimeSpan BootToReady = TimeSpan.FromMinutes(10);

    private QemuLab _lab = null!;

    [OneTimeSetUp]
    public async Task StartLab()
    {
        IspGuest.RequireImage();
        _lab = await QemuLab.StartAsync();
    }

    [OneTimeTearDown]
    public async Task StopLab() => await _lab.DisposeAsync();

    [Test]
    public async Task A_pppoe_unit_provisions_over_the_access_point_with_its_derived_password_then_dials_the_subscriber_account_and_is_ready()
    {
        const int index = 21;
        var mac = QemuLab.MacOf(index);
        var factoryUser = UnitCredentials.AccessUsername(mac);
        var factoryPassword = UnitCredentials.DeriveAccessPassword(_lab.UnitKeyBytes, mac);
        var subscriber = new WanAccount("pppoe", "taro.yamada@isp.example", "subscriber-secret-0042");
        var clock = Stopwatch.StartNew();
        // the ISP's own accounts hold only the subscriber's: the factory account is looked up on the initial setting server
        await using var isp = await IspGuest.StartAsync(_lab, "isp21", [(subscriber.Username!, subscriber.Password!)]);
        await isp.WaitReadyAsync(IspBoot);
        var ispBoot = clock.Elapsed;
        await using var unit = await _lab.AddUnitAsync(index, LabCatalogue.Pattern1, isp: subscriber, provisional: new WanAccount("pppoe"));
        unit.WanSocket = isp.AccessEndpoint;
        clock.Restart();
        unit.PowerOn();
        await unit.WaitReadyAsync(LabCatalogue.Pattern1, BootToReady, async () => (await _lab.UnitAsync(mac))?.WanAddress is not null);
        var toReady = clock.Elapsed;
        TestContext.Out.WriteLine($"ISP guest boot: {ispBoot.TotalSeconds:0.0} s; unit power-on to Ready over PPPoE: {toReady.TotalSeconds:0.0} s");

        // the access concentrator's side: the provisioning session with the factory account, ended, then the subscriber's
        var events = isp.Events();
        var up = events.Where(e => e.Kind == "up").ToList();
        var down = events.Where(e => e.Kind == "down").ToList();
        Assert.That(up.Select(e => e.Peer), Is.EqualTo(new[] { factoryUser, subscriber.Username }),
            $"two sessions, provisioning first, then the subscriber's\n--- ISP ---\n{isp.Console()}");
        Assert.That(events.Where(e => e.Kind == "refused"), Is.Empty, "no account was refused");
        var provisioningDown = down.SingleOrDefault(e => e.Peer == factoryUser);
        Assert.That(provisioningDown, Is.Not.Null, "the unit hung up the provisioning session");
        Assert.That(events.IndexOf(provisioningDown!), Is.LessThan(events.IndexOf(up[1])), "hung up before dialling the subscriber's account");
        Assert.That(down.Where(e => e.Peer == subscriber.Username), Is.Empty, "the subscriber's session stays up");

        // FreeRADIUS: both accounts accepted, nothing refused; accounting Start and Stop of the provisioning session,
        // then Start of the subscriber's, each with the address the session got
        var radius = isp.Radius();
        Assert.That(radius.Where(r => r.Kind == "Access-Accept").Select(r => r.User), Is.EqualTo(new[] { factoryUser, subscriber.Username }),
            $"RADIUS accepted the factory account, then the subscriber's\n--- ISP ---\n{isp.Console()}");
        Assert.That(radius.Where(r => r.Kind == "Access-Reject"), Is.Empty, "RADIUS refused nothing");
        // the factory account's password came from the initial setting server (the unit key stayed there); the
        // subscriber's name was never sent to it
        var lookups = isp.AccessPointLookups();
        // one dial, one lookup; a RADIUS retransmission of a slow request under load may add one or two, never a loop
        Assert.That(lookups, Has.Count.InRange(1, 3).And.All.EqualTo((factoryUser, "200")), $"lookups for the factory account only, each answered\n--- ISP ---\n{isp.Console()}");
        Assert.That(_lab.AccessPointRequests.Where(r => r.Path.EndsWith("/" + factoryUser, StringComparison.Ordinal)).Select(r => r.Status),
            Is.EqualTo(Enumerable.Repeat(200, lookups.Count)), "the server answered each of the access point's lookups with the password");
        Assert.That(_lab.AccessPointRequests.Where(r => r.Path.Contains("isp.example", StringComparison.Ordinal)), Is.Empty, "the subscriber's account stays at the ISP");
        var accounting = radius.Where(r => r.Kind is "Start" or "Stop").ToList();
        Assert.That(accounting.Select(r => (r.Kind, r.User)), Is.EqualTo(new[]
        {
            ("Start", factoryUser),
            ("Stop", factoryUser),
            ("Start", subscriber.Username!),
        }), $"the accounting records of the two sessions, in order\n--- ISP ---\n{isp.Console()}");
        Assert.That(accounting.Where(r => r.Kind == "Start").Select(r => r.Address), Is.EqualTo(new[] { up[0].Remote, up[1].Remote }),
            "each Start carries the address of its session");

        // the server's side: the unit reached it only through the ISP, and reported the subscriber session's address
        var row = (await _lab.UnitAsync(mac))!;
        Assert.That(row.WanAddress, Is.EqualTo(up[1].Remote), "the unit reports the address of its subscriber PPPoE session");
        Assert.That(_lab.ProvisioningRequests, Is.Not.Empty, "the unit fetched its settings from the initial setting server");
        Assert.That(await unit.ShellAsync("ip addr show dev ppp0"),
            Does.Contain(up[1].Remote), "the unit's session is on ppp0 with that address");
        Assert.That(await unit.ShellAsync("ip route show default"), Does.Contain("dev ppp0"), "its default route is the session");
        var console = unit.FullConsole();
        // the host session over the subscriber's session succeeds at its first attempt: no request went out on a
        // connection left from the provisional session (which is never answered and waited out the 30 s timeout)
        Assert.That(FailedHostContacts(console), Is.Empty, $"no failed host contact after the switch\n--- unit ---\n{console}");
        Assert.That(Occurrences(console, "--> HostSession"), Is.EqualTo(1), "one host session attempt: Main --Success--> HostSession, no retry");
        Assert.That(console, Does.Not.Contain(factoryPassword), "the derived password never reaches the console");
        Assert.That(isp.Console(), Does.Not.Contain(factoryPassword), "nor the access point's log");
    }

    [Test]
    public async Task A_unit_with_a_wrong_factory_password_is_refused_by_the_access_concentrator_gets_nothing_and_backs_off()
    {
        const int index = 22;
        var mac = QemuLab.MacOf(index);
        var factoryUser = UnitCredentials.AccessUsername(mac);
        // the ISP's accounts do not hold the factory account: its RADIUS server gets the right password from the
        // initial setting server, and the unit's answer does not match it
        await using var isp = await IspGuest.StartAsync(_lab, "isp22", [("someone", "secret-0001")]);
        await isp.WaitReadyAsync(IspBoot);
        // burned with a password the operator's key does not give (a unit of another operator, or a bad burn)
        var wrong = new WanAccount("pppoe", factoryUser, "not-the-derived-password-0000");
        await using var unit = await _lab.AddUnitAsync(index, LabCatalogue.Pattern1, isp: new WanAccount("pppoe", "someone", "secret-0001"), provisional: wrong);
        unit.WanSocket = isp.AccessEndpoint;
        var requestsBefore = _lab.ProvisioningRequests.Count;
        unit.PowerOn();
        await isp.WaitAsync(() => isp.Events().Any(e => e.Kind == "refused"), BootToReady, "the first refusal of the factory account");
        // Window: the supervisor's backoff on the provisional link (floor 1 s plus up to 2^n s, cap 5 min; Retry keeps it
        // growing) makes 8 to 10 refusals in 120 s; more than 16 would need 16 waits and dials within 120 s, so with
        // dials of 3 s the random parts of the waits from the seventh on (up to 64 s, 128 s, 256 s, then the 300 s cap)
        // within 56 s together: below 1e-12. A backoff that never grew (waits of 1-2 s) would make 1 + 120 / (1.5 + dial):
        // 27 with dials of 3 s, still 18 with dials of 5.5 s.
        var window = TimeSpan.FromSeconds(120);
        await Task.Delay(window);
        var events = isp.Events();
        var radius = isp.Radius();
        var refused = events.Count(e => e.Kind == "refused" && e.Peer == factoryUser);
        TestContext.Out.WriteLine($"refusals of {factoryUser} in the first {window.TotalSeconds:0} s after the first: {refused}");
        Assert.That(refused, Is.InRange(2, 16), $"the unit retries, with backoff\n--- ISP ---\n{isp.Console()}");
        // every refusal is FreeRADIUS's answer (its Access-Reject is logged before pppd's refusal line; one more may be in flight)
        var rejects = radius.Count(r => r.Kind == "Access-Reject" && r.User == factoryUser);
        Assert.That(rejects, Is.InRange(refused, refused + 1), "each refusal is a RADIUS Access-Reject");
        Assert.That(radius.Where(r => r.Kind != "Access-Reject"), Is.Empty, "RADIUS accepted nothing and accounted no session");
        var lookups = isp.AccessPointLookups().Where(l => l.User == factoryUser).ToList();
        Assert.That(lookups.Select(l => l.Status).Distinct(), Is.EqualTo(new[] { "200" }), "the server knew the unit and gave its password each time");
        Assert.That(lookups.Count, Is.InRange(rejects - 1, rejects + 1), "one lookup per attempt (one may be in flight)");
        Assert.That(events.Where(e => e.Kind == "up"), Is.Empty, "no session ever came up");
        Assert.That(_lab.ProvisioningRequests.Count, Is.EqualTo(requestsBefore), "the unit reached nothing: the server got no provisioning request");
        Assert.That((await _lab.UnitAsync(mac))!.State, Is.Not.EqualTo(UnitStates.Ready));
        Assert.That(unit.FullConsole(), Does.Contain("refused the Provisional PPPoE account"), "the unit knows it was refused (pppd exit 19)");
        Assert.That(unit.FullConsole(), Does.Not.Contain("not-the-derived-password"), "the password never reaches the console");
    }

    [Test]
    public async Task A_line_that_goes_dead_under_a_ready_unit_is_found_by_lcp_echo_and_the_unit_redials_and_is_ready_again()
    {
        const int index = 23;
        var mac = QemuLab.MacOf(index);
        var factoryUser = UnitCredentials.AccessUsername(mac);
        var subscriber = new WanAccount("pppoe", "hanako.sato@isp.example", "subscriber-secret-0077");
        await using var isp = await IspGuest.StartAsync(_lab, "isp23", [(subscriber.Username!, subscriber.Password!)]);
        await isp.WaitReadyAsync(IspBoot);
        await using var unit = await _lab.AddUnitAsync(index, LabCatalogue.Pattern1, isp: subscriber, provisional: new WanAccount("pppoe"));
        unit.WanSocket = isp.AccessEndpoint;
        unit.PowerOn();
        await unit.WaitReadyAsync(LabCatalogue.Pattern1, BootToReady, async () => (await _lab.UnitAsync(mac))?.WanAddress is not null);
        var eventsBefore = isp.Events().Count;
        var radiusBefore = isp.Radius().Count;
        var consoleBefore = unit.Console().Length;

        // the access concentrator's side of the session freezes (no LCP Terminate, no PADT, no answer): only LCP echo can
        // tell the unit
        var clock = Stopwatch.StartNew();
        var droppedAt = DateTimeOffset.UtcNow;
        await isp.ShellAsync($"isp-drop-session {subscriber.Username}");
        await isp.WaitAsync(() => isp.Events().Any(e => e.Kind == "dropped" && e.Peer == subscriber.Username), TimeSpan.FromSeconds(30), "the dropped session");
        string UnitSince() => unit.Console()[consoleBefore..];
        await unit.WaitAsync(() => UnitSince().Contains("Ready --LinkLost--> Main", StringComparison.Ordinal), TimeSpan.FromMinutes(3),
            "the unit finding the dead line (Ready --LinkLost--> Main)");
        var detected = clock.Elapsed;
        // Ready again on the unit after a new host session, and the unit tells the host so (its state was Configuring
        // since the version check of the new session)
        await unit.WaitAsync(() => UnitSince().Contains("--> Ready", StringComparison.Ordinal), BootToReady, "Ready again after the redial");
        await unit.WaitAsync(async () => (await _lab.UnitAsync(mac))?.State == UnitStates.Ready, TimeSpan.FromMinutes(2), "the host seeing the unit Ready again");
        var ready = clock.Elapsed;
        TestContext.Out.WriteLine($"line dropped: found by the unit after {detected.TotalSeconds:0.0} s, Ready again after {ready.TotalSeconds:0.0} s");

        // LCP echo every 10 s, 3 unanswered: the unit cannot know before 20 s (nothing else tells it), and knows well before 3 min
        Assert.That(detected, Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(20)), "found by unanswered LCP echo requests, not by a goodbye");
        var after = isp.Events().Skip(eventsBefore).ToList();
        var radius = isp.Radius().Skip(radiusBefore).ToList();
        var redials = after.Where(e => e.Kind == "up" && e.Peer == subscriber.Username).ToList();
        var requests = radius.Count(r => r.Kind is "Access-Accept" or "Access-Reject");
        TestContext.Out.WriteLine($"after the drop: {redials.Count} session(s), {requests} RADIUS request(s)");
        Assert.That(redials, Is.Not.Empty, $"the unit dialled its subscriber account again\n--- ISP ---\n{isp.Console()}");
        Assert.That(requests, Is.InRange(1, 3), $"the redials are bounded: no dial loop\n--- ISP ---\n{isp.Console()}");
        Assert.That(after.Where(e => e.Kind == "up" && e.Peer == factoryUser), Is.Empty, "the unit kept its settings: no provisioning session");
        Assert.That(after.Where(e => e.Kind == "refused"), Is.Empty);
        Assert.That(radius.Where(r => r.Kind == "Start").Select(r => (r.User, r.Address)), Is.EqualTo(new[] { (subscriber.Username!, redials[^1].Remote) }),
            "one accounting Start, for the new session");
        Assert.That(radius.Where(r => r.Kind == "Stop"), Is.Empty, "the dead session was never stopped by its concentrator (it is frozen)");
        Assert.That(UnitSince(), Does.Contain("Main --Success--> HostSession"), "a new host session over the new line");
        var lastSeen = (await _lab.UnitAsync(mac))!.LastSeen;
        Assert.That(lastSeen, Is.Not.Null);
        Assert.That(DateTimeOffset.Parse(lastSeen!, CultureInfo.InvariantCulture), Is.GreaterThan(droppedAt), "the host heard from the unit after the drop");
        Assert.That(await unit.ShellAsync("ip addr show dev ppp0"), Does.Contain(redials[^1].Remote), "the unit's ppp0 carries the new session");
    }

    [Test]
    public async Task A_password_the_operator_changes_in_the_table_reaches_the_unit_which_redials_and_a_wrong_one_sends_it_back_to_provisioning_until_the_table_is_fixed()
    {
        const int index = 27;
        var mac = QemuLab.MacOf(index);
        var factoryUser = UnitCredentials.AccessUsername(mac);
        var subscriber = new WanAccount("pppoe", "saburo.ito@isp.example", "subscriber-secret-0101");
        const string changed = "subscriber-secret-0202";
        const string typo = "subscriber-secret-0220";
        var refusalLimit = new SupervisorOptions().MainLinkRefusalLimit;
        await using var isp = await IspGuest.StartAsync(_lab, "isp27", [(subscriber.Username!, subscriber.Password!)]);
        await isp.WaitReadyAsync(IspBoot);
        await using var unit = await _lab.AddUnitAsync(index, LabCatalogue.Pattern1, isp: subscriber, provisional: new WanAccount("pppoe"));
        unit.WanSocket = isp.AccessEndpoint;
        unit.PowerOn();
        await unit.WaitReadyAsync(LabCatalogue.Pattern1, BootToReady, async () => (await _lab.UnitAsync(mac))?.WanAddress is not null);
        var revision = (await _lab.UnitAsync(mac))!.SettingsRevision;

        // 1. The subscriber's password changes at the ISP (the session up stays up), and the operator writes the new one
        // into the table: a forced check tells the unit, which fetches its settings again and redials with it
        var (events, radius, console) = (isp.Events().Count, isp.Radius().Count, unit.Console().Length);
        // (the script waits for FreeRADIUS to stop and to listen again: up to 70 s)
        Assert.That(await isp.ShellAsync($"isp-set-password {subscriber.Username} {changed}", TimeSpan.FromSeconds(90)),
            Does.EndWith($"isp: password of {subscriber.Username} changed"));
        Assert.That(await SetIspPasswordAsync(mac, changed), Is.EqualTo(revision + 1), "the edit raises the settings revision");
        var clock = Stopwatch.StartNew();
        await _lab.ForceCheckAsync(mac);
        await ReadyAgainAsync(unit, mac, console, "--SettingsChanged--> Provisional");
        TestContext.Out.WriteLine($"password changed: the unit redialled and was Ready again {clock.Elapsed.TotalSeconds:0.0} s after the forced check");
        var redial = new[] { "down " + subscriber.Username, "up " + factoryUser, "down " + factoryUser, "up " + subscriber.Username };
        var after = await SettledEventsAsync(isp, events, factoryUser, subscriber.Username!, redial.Length);
        Assert.That(Dials(after, factoryUser, subscriber.Username!), Is.EqualTo(redial),
            $"the old session hung up, settings fetched on the provisioning access point, then the subscriber's account dialled\n--- ISP ---\n{isp.Console()}");
        Assert.That(after.Where(e => e.Kind == "refused"), Is.Empty, "the new password was accepted at the first dial");
        Assert.That(isp.Radius().Skip(radius).Where(r => r.Kind is "Access-Accept" or "Access-Reject").Select(r => (r.Kind, r.User)),
            Is.EqualTo(new[] { ("Access-Accept", factoryUser), ("Access-Accept", subscriber.Username!) }), "RADIUS accepted the factory account, then the new password");
        await AssertOnSessionAsync(unit, mac, after.Last(e => e.Kind == "up").Remote!);

        // 2. A wrong password in the table (a typo): the ISP refuses each dial; after MainLinkRefusalLimit refusals the unit
        // fetches fresh settings on the provisioning access point (it cannot reach the host over a refused line). The
        // operator fixes the table once the first refusal is seen; the unit learns the fix at its next fetch. (When that
        // fetch came before the fix, it takes one more round of refusals: the rounds are counted, not assumed.)
        (events, radius, console) = (isp.Events().Count, isp.Radius().Count, unit.Console().Length);
        Assert.That(await SetIspPasswordAsync(mac, typo), Is.EqualTo(revision + 2));
        clock.Restart();
        await _lab.ForceCheckAsync(mac);
        await isp.WaitAsync(() => isp.Events().Skip(events).Any(e => e.Kind == "refused"), BootToReady, "the first refusal of the wrong password");
        Assert.That(await SetIspPasswordAsync(mac, changed), Is.EqualTo(revision + 3));
        await ReadyAgainAsync(unit, mac, console, "--IspRefused--> Provisional");
        var recovered = clock.Elapsed;
        var since = unit.Console()[console..];
        var rounds = Occurrences(since, "--IspRefused--> Provisional");
        // a refused dial whose refusal the unit's pppd did not report (exit 19: the concentrator's hang-up reached it
        // before the CHAP failure, as on a loaded machine) is a failed attempt of the main link to the unit, counted
        // towards MainLinkFailureLimit instead: one more dial in that round
        var failedAttempts = since.Split('\n').Where(l => l.Contains("main link (attempt ", StringComparison.Ordinal)).ToList();
        foreach (var line in failedAttempts) { TestContext.Out.WriteLine($"unit: {line.Trim()}"); }
        var dialCount = 3 + rounds * (refusalLimit + 2) + failedAttempts.Count + 1;
        after = await SettledEventsAsync(isp, events, factoryUser, subscriber.Username!, dialCount);
        var refusals = after.Count(e => e.Kind == "refused" && e.Peer == subscriber.Username);
        TestContext.Out.WriteLine($"wrong password: {refusals} refusal(s) in {rounds} round(s), {failedAttempts.Count} of them not reported as a refusal by pppd; " +
                                  $"Ready again {recovered.TotalSeconds:0.0} s after the forced check");
        Assert.That(rounds, Is.InRange(1, 2), $"one round of refusals (two when the fetch came before the fix)\n--- ISP ---\n{isp.Console()}");
        // (a failed attempt may also be a dial that failed before the account was asked for: at most one refused dial each)
        Assert.That(refusals, Is.InRange(rounds * refusalLimit, rounds * refusalLimit + failedAttempts.Count),
            $"every refused dial is one the unit counted: MainLinkRefusalLimit refusals a round, and failed attempts\n--- ISP ---\n{isp.Console()}");
        Assert.That(since, Does.Not.Contain("Main --LinkLost-->"), "no round ended by failed attempts alone");
        // the whole story at the access concentrator, in order: settings fetched (with the typo), then each round of
        // refusals ends in a fetch on the provisioning access point, then the fixed password
        var shape = string.Concat(Dials(after, factoryUser, subscriber.Username!).Select(d =>
            d == "down " + subscriber.Username ? "d" : d == "up " + subscriber.Username ? "u" : d == "refused " + subscriber.Username ? "r"
            : d == "up " + factoryUser ? "U" : d == "down " + factoryUser ? "D" : "?"));
        Assert.That(shape, Does.Match($"^dUD(r{{{refusalLimit},}}UD){{{rounds}}}u$"),
            $"the dials, in order (d/u: the subscriber's session down/up, r refused, U/D the factory account's up/down)\n--- ISP ---\n{isp.Console()}");
        var answers = isp.Radius().Skip(radius).Where(r => r.Kind is "Access-Accept" or "Access-Reject").ToList();
        Assert.That(answers.Count(r => r.Kind == "Access-Reject" && r.User == subscriber.Username), Is.EqualTo(refusals), "each refusal is a RADIUS Access-Reject");
        Assert.That(answers.Where(r => r.Kind == "Access-Reject").Select(r => r.User), Has.All.EqualTo(subscriber.Username), "the factory account was never refused");
        Assert.That(answers[^1], Is.EqualTo(new IspGuest.RadiusEvent("Access-Accept", subscriber.Username!, null)), "the fixed password was accepted");
        Assert.That(Occurrences(since, "main link refused by the ISP (refusal "), Is.EqualTo(rounds * (refusalLimit - 1)),
            "the unit counted each refusal pppd reported; the last of a round sent it back to provisioning, once");
        await AssertOnSessionAsync(unit, mac, after.Last(e => e.Kind == "up").Remote!);
        var full = unit.FullConsole();
        foreach (var password in new[] { subscriber.Password!, changed, typo })
        {
            Assert.That(full, Does.Not.Contain(password), "no password reaches the unit's console");
            Assert.That(isp.Console(), Does.Not.Contain(password), "nor the access concentrator's log");
        }
    }

    [Test]
    public async Task A_dhcp_main_link_keeps_and_renews_its_lease_and_a_static_one_the_operator_sets_comes_up_with_its_gateway_and_name_server()
    {
        const int index = 28;
        const string staticAddress = "10.65.0.7";
        var mac = QemuLab.MacOf(index);
        var factoryUser = UnitCredentials.AccessUsername(mac);
        // an ISP whose line carries IP straight (IPoE: DHCP, or a fixed address); the provisioning access point is PPPoE
        await using var isp = await IspGuest.StartAsync(_lab, "isp28", [], ipoe: true);
        await isp.WaitReadyAsync(IspBoot);
        await using var unit = await _lab.AddUnitAsync(index, LabCatalogue.Pattern1, isp: new WanAccount("dhcp"), provisional: new WanAccount("pppoe"));
        unit.WanSocket = isp.AccessEndpoint;
        var clock = Stopwatch.StartNew();
        unit.PowerOn();
        await unit.WaitReadyAsync(LabCatalogue.Pattern1, BootToReady, async () => (await _lab.UnitAsync(mac))?.WanAddress is not null);
        TestContext.Out.WriteLine($"unit power-on to Ready over DHCP (provisioned over PPPoE): {clock.Elapsed.TotalSeconds:0.0} s");

        // provisioned over the access point's PPPoE, hung up, then a lease on the same port
        var provisioning = new[] { "up " + factoryUser, "down " + factoryUser };
        Assert.That(Dials(await SettledEventsAsync(isp, 0, factoryUser, factoryUser, provisioning.Length), factoryUser, factoryUser), Is.EqualTo(provisioning),
            $"one provisioning session, hung up; the main link is no PPPoE session\n--- ISP ---\n{isp.Console()}");
        // the lease: up to its first DHCPACK (on a slow machine the renewal, 60 s later, may already follow it)
        var dhcp = isp.Dhcp(mac);
        var bound = dhcp.FindIndex(e => e.Kind == "DHCPACK");
        Assert.That(bound, Is.GreaterThan(0), $"a lease given\n--- ISP ---\n{isp.Console()}");
        var lease = dhcp[bound].Address!;
        Assert.That(lease, Does.StartWith("10.65.0."));
        Assert.That(int.Parse(lease["10.65.0.".Length..], CultureInfo.InvariantCulture), Is.InRange(100, 119), $"{lease}: an address of the ISP's range");
        // a DHCPDISCOVER or two (one more when an answer was late), an offer, the request and its acknowledgement
        Assert.That(dhcp.Take(bound + 1).Select(e => e.Kind).Distinct(), Is.EqualTo(new[] { "DHCPDISCOVER", "DHCPOFFER", "DHCPREQUEST", "DHCPACK" }),
            "the lease asked for in DHCP's order");
        Assert.That((await _lab.UnitAsync(mac))!.WanAddress, Is.EqualTo(lease), "the host has the lease's address");
        Assert.That(await unit.ShellAsync("ip -4 addr show dev eth0"), Does.Contain($"inet {lease}/24"));
        Assert.That(await unit.ShellAsync("ip route show default"), Does.Contain($"via {IspGuest.IpoeRouter} dev eth0"), "the lease's router is the default route");
        Assert.That(await unit.ShellAsync("cat /etc/resolv.conf"), Does.Contain($"nameserver {IspGuest.DnsAddress}"), "the lease's name server");

        // the lease (120 s) is renewed at half its time by the same client, and the link stays up (the unit never leaves
        // Ready). The unit's client says when it renewed (its script writes "renew ADDRESS" once it has handled the
        // acknowledgement); the ISP's log alone cannot: a DHCPREQUEST sent again while the first acknowledgement was late
        // (a busy machine) has a second DHCPACK for the same address before the renewal, 60 s after the lease
        var consoleAtReady = unit.Console().Length;
        await unit.WaitAsync(async () => await unit.ShellAsync("cat /run/tsunagu/dhcp.state") == $"renew {lease}", TimeSpan.FromMinutes(4),
            "the unit's DHCP client renewing its lease");
        // since the lease: only requests and acknowledgements of the same address, never a new lease
        var renewal = isp.Dhcp(mac).Skip(bound + 1).ToList();
        Assert.That(renewal.Where(e => e.Kind == "DHCPACK"), Is.Not.Empty, $"the ISP acknowledged the renewal\n--- ISP ---\n{isp.Console()}");
        Assert.That(renewal.Where(e => e != new IspGuest.DhcpEvent("DHCPREQUEST", lease, mac) && e != new IspGuest.DhcpEvent("DHCPACK", lease, mac)), Is.Empty,
            $"a renewal of the same address, no new DHCPDISCOVER\n--- ISP ---\n{isp.Console()}");
        Assert.That(unit.Console()[consoleAtReady..], Does.Not.Contain("--LinkLost-->"), "the link stayed up through the renewal");
        Assert.That(await unit.ShellAsync("ip -4 addr show dev eth0"), Does.Contain($"inet {lease}/24"));

        // the operator gives the unit a fixed address (a contract with one): a forced check, the settings fetched again on
        // the access point, and the static link comes up with the table's address, gateway and name server
        var console = unit.Console().Length;
        var dhcpBefore = isp.Dhcp(mac).Count;
        await EditUnitAsync(mac, new UnitEditRequest(IspMethod: "static", IpAddress: staticAddress + "/24", IspGateway: IspGuest.IpoeRouter, IspDns: [IspGuest.DnsAddress]));
        clock.Restart();
        await _lab.ForceCheckAsync(mac);
        await ReadyAgainAsync(unit, mac, console, "--SettingsChanged--> Provisional");
        TestContext.Out.WriteLine($"DHCP to static: Ready again {clock.Elapsed.TotalSeconds:0.0} s after the forced check");
        Assert.That((await _lab.UnitAsync(mac))!.WanAddress, Is.EqualTo(staticAddress), "the host has the static address");
        Assert.That(await unit.ShellAsync("ip -4 addr show dev eth0"), Does.Contain($"inet {staticAddress}/24").And.Not.Contain(lease), "the static address, the lease's gone");
        Assert.That(await unit.ShellAsync("ip route show default"), Does.Contain($"via {IspGuest.IpoeRouter} dev eth0"));
        Assert.That(await unit.ShellAsync("cat /etc/resolv.conf"), Is.EqualTo($"nameserver {IspGuest.DnsAddress}"), "the table's name server only");
        Assert.That(await unit.ShellAsync("pidof udhcpc || echo none"), Is.EqualTo("none"), "no DHCP client runs for a static link");
        var twice = new[] { "up " + factoryUser, "down " + factoryUser, "up " + factoryUser, "down " + factoryUser };
        Assert.That(Dials(await SettledEventsAsync(isp, 0, factoryUser, factoryUser, twice.Length), factoryUser, factoryUser), Is.EqualTo(twice),
            "the settings fetched again on the access point, hung up");
        // the name server is used: a name resolved on the unit is asked of the lab's DNS server from the static address
        // (its log line may come a moment after the answer)
        Assert.That(await unit.ShellAsync($"nslookup -type=a {IspGuest.WebServerName}"), Does.Contain(InternetAddress));
        await isp.WaitAsync(() => isp.DnsQueries().Any(q => q.Name == IspGuest.WebServerName && q.From == staticAddress), TimeSpan.FromSeconds(30),
            "the lab's DNS server logging the unit's query from its static address");
        Assert.That(isp.Dhcp(mac).Skip(dhcpBefore).Where(e => e.Kind is "DHCPDISCOVER" or "DHCPREQUEST"), Is.Empty, "the static link asked no DHCP server");
    }

    [Test]
    public async Task A_unit_whose_operator_is_its_isp_keeps_its_one_pppoe_session_from_provisioning_to_ready()
    {
        const int index = 29;
        var mac = QemuLab.MacOf(index);
        var factoryUser = UnitCredentials.AccessUsername(mac);
        var factoryPassword = UnitCredentials.DeriveAccessPassword(_lab.UnitKeyBytes, mac);
        // variant 2 (patent 0075): the operator is the ISP, so its RADIUS server holds the unit's account, and the
        // session reaches everything (not a walled garden); the table's account is the same one
        var account = new WanAccount("pppoe", factoryUser, factoryPassword);
        await using var isp = await IspGuest.StartAsync(_lab, "isp29", [(factoryUser, factoryPassword)]);
        await isp.WaitReadyAsync(IspBoot);
        await using var unit = await _lab.AddUnitAsync(index, LabCatalogue.Pattern1, isp: account, provisional: new WanAccount("pppoe"), singleLink: true);
        unit.WanSocket = isp.AccessEndpoint;
        var clock = Stopwatch.StartNew();
        unit.PowerOn();
        await unit.WaitReadyAsync(LabCatalogue.Pattern1, BootToReady, async () => (await _lab.UnitAsync(mac))?.WanAddress is not null);
        TestContext.Out.WriteLine($"variant 2: unit power-on to Ready over one PPPoE session: {clock.Elapsed.TotalSeconds:0.0} s");

        var events = isp.Events();
        Assert.That(events.Select(e => (e.Kind, e.Peer, e.Access)), Is.EqualTo(new[] { ("up", factoryUser, (string?)"internet") }),
            $"one session, never hung up, reaching everything\n--- ISP ---\n{isp.Console()}");
        var radius = isp.Radius();
        Assert.That(radius.Select(r => (r.Kind, r.User)), Is.EqualTo(new[] { ("Access-Accept", factoryUser), ("Start", factoryUser) }),
            "one authentication and one accounting Start: no Stop, no second session");
        Assert.That(isp.AccessPointLookups(), Is.Empty, "the ISP knew the account itself");
        var (padr, padt) = await isp.DiscoveryReceivedAsync();
        // (a PADR whose answer was late is sent again: the one session is proven by the events and RADIUS above)
        Assert.That(padr, Is.GreaterThanOrEqualTo(1), "a session asked for (PADR)");
        Assert.That(padt, Is.Zero, "no session hung up (PADT)");
        var console = unit.FullConsole();
        Assert.That(console, Does.Contain("Disconnect --NothingToDo--> HostSession"), "the provisional session is kept for the host");
        Assert.That(console, Does.Not.Contain("--> Main"), "no second dial");
        Assert.That(console, Does.Not.Contain(factoryPassword), "the derived password never reaches the console");
        Assert.That((await _lab.UnitAsync(mac))!.WanAddress, Is.EqualTo(events[0].Remote), "the host has the session's address");
        Assert.That(await unit.ShellAsync("ip route show default"), Does.Contain("dev ppp0"));

        // the push reaches the unit over that session (the broker is outside any walled garden): a forced check runs
        var mark = unit.Console().Length;
        await _lab.ForceCheckAsync(mac);
        await ReadyAgainAsync(unit, mac, mark, "Ready --CheckDue-->");
        Assert.That(isp.Events(), Has.Count.EqualTo(1), "still the one session");
    }

    [Test]
    public async Task A_unit_with_a_slow_line_kept_for_provisioning_provisions_over_it_while_its_main_port_is_down_then_dials_the_subscriber_on_the_main_port()
    {
        const int index = 31;
        var mac = QemuLab.MacOf(index);
        var factoryUser = UnitCredentials.AccessUsername(mac);
        var subscriber = new WanAccount("pppoe", "jiro.suzuki@isp.example", "subscriber-secret-0031");
        // variant 3 (patent 0077): the unit's board has a second WAN port on a slow line kept for provisioning
        // (board/qemu-x86_64/variants/dual-wan.json: eth2); the ISP has an access concentrator on each line
        await using var isp = await IspGuest.StartAsync(_lab, "isp31", [(subscriber.Username!, subscriber.Password!)], slowLine: true);
        await isp.WaitReadyAsync(IspBoot);
        Assert.That(isp.Console(), Does.Contain("slow line: access concentrator tsunagu-lab-isp-slow"), "the ISP has the slow line");
        await using var unit = await _lab.AddUnitAsync(index, LabCatalogue.Pattern1, isp: subscriber, provisional: new WanAccount("pppoe"));
        (unit.WanSocket, unit.ProvisioningSocket, unit.BoardVariant, unit.StartPaused) = (isp.AccessEndpoint, isp.SlowEndpoint, "dual-wan", true);
        var requestsBefore = _lab.ProvisioningRequests.Count;
        unit.PowerOn();
        // the main port's link is down before the unit runs (QEMU waits for `cont`), and stays down until it has its settings
        await WaitForAsync(() => File.Exists(Path.Combine(unit.Directory, "monitor.sock")), TimeSpan.FromSeconds(30), "QEMU's monitor");
        Assert.That(await unit.MonitorAsync("set_link wan off"), Does.Not.Contain("rror"), "the main port's link taken down");
        var clock = Stopwatch.StartNew();
        await unit.MonitorAsync("cont");
        await isp.WaitAsync(() => isp.Events().Any(e => e.Kind == "down" && e.Peer == factoryUser), BootToReady, "the provisional session, ended");
        var provisioned = clock.Elapsed;
        Assert.That(unit.FullConsole(), Does.Contain("tsunagud-run: board /etc/tsunagu/boards/dual-wan.json"), "the unit runs as the board's dual-WAN variant");
        Assert.That(_lab.ProvisioningRequests.Count, Is.GreaterThan(requestsBefore), "the unit fetched its settings over the slow line");
        Assert.That(await _lab.UnitAsync(mac), Is.Not.Null.And.Property(nameof(UnitRow.State)).Not.EqualTo(UnitStates.Ready), "not Ready without its main link");

        clock.Restart();
        Assert.That(await unit.MonitorAsync("set_link wan on"), Does.Not.Contain("rror"));
        await unit.WaitReadyAsync(LabCatalogue.Pattern1, BootToReady, async () => (await _lab.UnitAsync(mac))?.WanAddress is not null);
        TestContext.Out.WriteLine($"variant 3: power-on to settings over the slow line (and hung up): {provisioned.TotalSeconds:0.0} s; main port's link up to Ready: {clock.Elapsed.TotalSeconds:0.0} s");

        // the access concentrators' side: the factory account on the slow line (walled garden), hung up, then the
        // subscriber's on the main line (the internet); nothing else
        var events = isp.Events();
        Assert.That(events.Where(e => e.Kind == "up").Select(e => (e.Peer, e.Line, e.Access)), Is.EqualTo(new[]
        {
            (factoryUser, (string?)"slow", (string?)"garden"),
            (subscriber.Username!, "access", "internet"),
        }), $"provisioning on the slow line, the subscriber on the main one\n--- ISP ---\n{isp.Console()}");
        var provisional = events.Single(e => e.Kind == "up" && e.Peer == factoryUser);
        Assert.That(IPAddress.Parse(provisional.Remote!).GetAddressBytes()[3], Is.InRange(40, 47), "the provisional session's address is from the slow line's pool");
        Assert.That(events.Where(e => e.Kind == "down").Select(e => (e.Peer, e.Line)), Is.EqualTo(new[] { (factoryUser, (string?)"slow") }),
            "the provisional session hung up, the subscriber's stays");
        Assert.That(events.Where(e => e.Kind == "refused"), Is.Empty);
        var main = events.Single(e => e.Kind == "up" && e.Peer == subscriber.Username);
        Assert.That(events.IndexOf(events.Single(e => e.Kind == "down")), Is.LessThan(events.IndexOf(main)), "hung up before the main line's session");
        Assert.That(await isp.ShellAsync("nft list table netdev isp-slow"), Does.Match(@"counter packets [1-9]\d* bytes \d+ comment ""PADR from a unit"""),
            "the slow line's access concentrator was asked for the session");

        // the unit's side: the subscriber's session on ppp0 over eth0 carries the default route; the slow line's ppp1 is gone
        Assert.That((await _lab.UnitAsync(mac))!.WanAddress, Is.EqualTo(main.Remote));
        Assert.That(await unit.ShellAsync("ip addr show dev ppp0"), Does.Contain(main.Remote));
        Assert.That(await unit.ShellAsync("ip route show default"), Does.Contain("dev ppp0"));
        var interfaces = (await unit.ShellAsync("ls /sys/class/net")).Split((char[])[' ', '\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries);
        Assert.That(interfaces, Does.Contain("eth2").And.Contain("ppp0").And.Not.Contain("ppp1"), "the slow line's port is there, its session's interface (ppp1) gone");
        Assert.That(FailedHostContacts(unit.FullConsole()), Is.Empty, $"no failed host contact\n--- unit ---\n{unit.FullConsole()}");
    }

    [Test]
    public async Task A_unit_whose_provisional_link_is_ipoe_takes_a_lease_fetches_its_settings_lets_the_lease_go_and_dials_its_subscriber_account()
    {
        const int index = 32;
        var mac = QemuLab.MacOf(index);
        var factoryUser = UnitCredentials.AccessUsername(mac);
        var subscriber = new WanAccount("pppoe", "saburo.tanaka@isp.example", "subscriber-secret-0032");
        // the provisioning access point is IP straight on the line (IPoE: DHCP), the subscriber's ISP PPPoE on the same line
        await using var isp = await IspGuest.StartAsync(_lab, "isp32", [(subscriber.Username!, subscriber.Password!)], ipoe: true);
        await isp.WaitReadyAsync(IspBoot);
        await using var unit = await _lab.AddUnitAsync(index, LabCatalogue.Pattern1, isp: subscriber, provisional: new WanAccount("dhcp"));
        unit.WanSocket = isp.AccessEndpoint;
        var requestsBefore = _lab.ProvisioningRequests.Count;
        var clock = Stopwatch.StartNew();
        unit.PowerOn();
        await unit.WaitReadyAsync(LabCatalogue.Pattern1, BootToReady, async () => (await _lab.UnitAsync(mac))?.WanAddress is not null);
        TestContext.Out.WriteLine($"unit power-on to Ready over PPPoE (provisioned over IPoE): {clock.Elapsed.TotalSeconds:0.0} s");

        // the provisional link: a lease of the ISP's IPoE range, asked for in DHCP's order
        var dhcp = isp.Dhcp(mac);
        var bound = dhcp.FindIndex(e => e.Kind == "DHCPACK");
        Assert.That(bound, Is.GreaterThan(0), $"a lease given\n--- ISP ---\n{isp.Console()}");
        var lease = dhcp[bound].Address!;
        Assert.That(lease, Does.StartWith("10.65.0."));
        Assert.That(int.Parse(lease["10.65.0.".Length..], CultureInfo.InvariantCulture), Is.InRange(100, 119), $"{lease}: an address of the ISP's range");
        Assert.That(dhcp.Take(bound + 1).Select(e => e.Kind).Distinct(), Is.EqualTo(new[] { "DHCPDISCOVER", "DHCPOFFER", "DHCPREQUEST", "DHCPACK" }));
        Assert.That(_lab.ProvisioningRequests.Count, Is.GreaterThan(requestsBefore), "the unit fetched its settings over the lease");

        // then one PPPoE session, the subscriber's; the factory account never dialled nor looked up
        var events = isp.Events();
        Assert.That(events.Select(e => (e.Kind, e.Peer, e.Access)), Is.EqualTo(new[] { ("up", subscriber.Username!, (string?)"internet") }),
            $"one session, the subscriber's\n--- ISP ---\n{isp.Console()}");
        Assert.That(isp.Radius().Select(r => r.User).Distinct(), Is.EqualTo(new[] { subscriber.Username }), "RADIUS saw only the subscriber's account");
        Assert.That(isp.AccessPointLookups(), Is.Empty, "no factory account was looked up");
        Assert.That(isp.Console(), Does.Not.Contain(factoryUser), "the factory account never reached the ISP");

        // the unit let the lease go: no address of it on the port, no DHCP client, the session's address and route
        var row = (await _lab.UnitAsync(mac))!;
        Assert.That(row.WanAddress, Is.EqualTo(events[0].Remote), "the host has the session's address, not the lease's");
        Assert.That(await unit.ShellAsync("ip -4 addr show dev eth0"), Does.Not.Contain(lease), "the lease's address is gone from the port");
        Assert.That((await unit.ShellAsync("pidof udhcpc; echo end")).Trim(), Is.EqualTo("end"), "no DHCP client runs");
        Assert.That(await unit.ShellAsync("ip route show default"), Does.Contain("dev ppp0").And.Not.Contain(IspGuest.IpoeRouter), "the default route is the session");
        Assert.That(FailedHostContacts(unit.FullConsole()), Is.Empty, $"no failed host contact\n--- unit ---\n{unit.FullConsole()}");
    }

    /// <summary>Waits for <paramref name="condition"/> on the host side (a file QEMU makes), polling.</summary>
    private static async Task WaitForAsync(Func<bool> condition, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) { Assert.Fail($"no {what} within {timeout.TotalSeconds:0} s"); }
            await Task.Delay(100);
        }
    }

    [Test]
    public async Task A_lan_pc_fetching_an_object_twice_gets_the_second_from_the_units_cache_and_the_unit_reports_the_hit()
    {
        LanPc.RequireImage();
        const int index = 30;
        const string path = "/clip.txt";
        var mac = QemuLab.MacOf(index);
        var subscriber = new WanAccount("pppoe", "goro.yamamoto@isp.example", "subscriber-secret-0030");
        // the demo's services with the cache on (the board has a cache disk) and the lab's DNS server upstream
        var services = DemoCatalogue.StandardServices with { Dns = new DnsConfig("home.arpa", [IspGuest.DnsAddress]), Cache = new CacheConfig(true, 64) };
        await using var isp = await IspGuest.StartAsync(_lab, "isp30", [(subscriber.Username!, subscriber.Password!)]);
        await using var pc = LanPc.Start(_lab, "lanpc30");
        await isp.WaitReadyAsync(IspBoot);
        await pc.WaitBootedAsync(IspBoot);
        await using var unit = await _lab.AddUnitAsync(index, LabCatalogue.Pattern1, isp: subscriber, provisional: new WanAccount("pppoe"));
        await _lab.App.Services.GetRequiredService<ServiceConfigService>().AssignAsync(mac, services, "qemu-lab", CancellationToken.None);
        unit.WanSocket = isp.AccessEndpoint;
        unit.LanSocket = pc.LanEndpoint;
        unit.PowerOn();
        await unit.WaitReadyAsync(LabCatalogue.Pattern1, BootToReady, async () => (await _lab.UnitAsync(mac))?.WanAddress is not null);
        var lease = await pc.WaitLeaseAsync(TimeSpan.FromMinutes(2));
        Assert.That(await unit.ShellAsync("pidof squid >/dev/null && echo running"), Is.EqualTo("running"), "the cache runs");

        // an object on the lab's internet last modified long ago: without Cache-Control or Expires, squid's heuristic
        // (20% of its age, at most 3 days) keeps it fresh for the whole test, so a repeat is served from the cache
        var made = (await isp.ShellAsync($"seq 1 8000 > /srv/www{path} && touch -d '2024-01-01 00:00:00' /srv/www{path} && wc -c < /srv/www{path} && md5sum < /srv/www{path} | cut -d' ' -f1")).Split('\n');
        Assert.That(made, Has.Length.EqualTo(2), $"the object's size and digest at the origin: {string.Join(" | ", made)}");
        var (size, origin) = (long.Parse(made[0].Trim(), CultureInfo.InvariantCulture), made[1]);
        Assert.That(origin, Does.Match("^[0-9a-f]{32}$"), "the object's digest at the origin");
        var reported = (await _lab.UnitAsync(mac))!;
        var (hitsBefore, savedBefore) = (reported.CacheHits ?? 0, reported.CacheBytesSaved ?? 0);

        var url = $"http://{IspGuest.WebServerName}{path}";
        var first = await FetchDigestAsync(pc, url);
        Assert.That(first, Is.EqualTo(("0", origin)), "the first fetch: the object, whole");
        // the origin logs a request as it reads it: the line is there by the time the page was received, or a moment later
        await isp.WaitAsync(() => isp.OriginRequests(path) >= 1, TimeSpan.FromSeconds(30), "the first fetch at the origin");
        var second = await FetchDigestAsync(pc, url);
        Assert.That(second, Is.EqualTo(("0", origin)), "the second fetch: the same object");

        // the unit reports its cache's counters to the host with its next check: one hit, the object's bytes saved
        var mark = unit.Console().Length;
        await _lab.ForceCheckAsync(mac);
        await ReadyAgainAsync(unit, mac, mark, "Ready --CheckDue-->");
        await unit.WaitAsync(async () => (await _lab.UnitAsync(mac))?.CacheHits > hitsBefore, TimeSpan.FromMinutes(1), "the host recording the cache's hit");
        // read after all that, so a late log line of a second request would be counted
        Assert.That(isp.OriginRequests(path), Is.EqualTo(1), $"the second fetch never reached the origin: the unit's cache served it\n--- ISP ---\n{isp.Console()}");
        reported = (await _lab.UnitAsync(mac))!;
        TestContext.Out.WriteLine($"cache: {reported.CacheRequests} requests, {reported.CacheHits} hits, {reported.CacheBytesServed} bytes served, {reported.CacheBytesSaved} saved");
        Assert.That(reported.CacheHits - hitsBefore, Is.EqualTo(1), "one hit: the second fetch");
        // squid counts the reply it sent from the cache (the object and its headers) in whole kilobytes
        Assert.That(reported.CacheBytesSaved - savedBefore, Is.InRange(size / 1024 * 1024, size + 2048), $"the object's {size} bytes came from the cache once");

        // HTTPS passes through untouched: the PC's TLS session ends at the origin (its own certificate answers), each of two
        // fetches reaches the origin (nothing cached), and squid never sees them (its request counter moves only by the
        // reads of it: the cache manager's page is itself a request, so two reads with nothing between give that step)
        var squidBefore = await SquidRequestsAsync(unit, lease.Router);
        var squidRequests = await SquidRequestsAsync(unit, lease.Router);
        var readStep = squidRequests - squidBefore;
        Assert.That(readStep, Is.InRange(0, 1), "a read of squid's counters is at most one request");
        Assert.That(await pc.TlsPeerAsync(InternetAddress, IspGuest.WebServerName), Is.EqualTo(await isp.TlsFingerprintAsync()).And.StartsWith("sha256 Fingerprint="),
            "the certificate the PC sees is the origin's");
        var secure = $"https://{IspGuest.WebServerName}{path}";
        Assert.That(await FetchDigestAsync(pc, secure), Is.EqualTo(("0", origin)), "the first HTTPS fetch: the object, whole");
        Assert.That(await FetchDigestAsync(pc, secure), Is.EqualTo(("0", origin)), "the second HTTPS fetch: the same object");
        await isp.WaitAsync(() => isp.OriginTlsRequests(path) >= 2, TimeSpan.FromSeconds(30), "both HTTPS fetches at the origin");
        Assert.That(isp.OriginTlsRequests(path), Is.EqualTo(2), "each HTTPS fetch reached the origin once");
        Assert.That(await SquidRequestsAsync(unit, lease.Router), Is.EqualTo(squidRequests + readStep), "squid saw none of the HTTPS traffic");
        Assert.That(isp.OriginRequests(path), Is.EqualTo(1), "and the plain HTTP origin still saw only the first fetch");
    }

    [Test]
    public async Task A_lan_pc_is_refused_a_virus_download_gets_a_clean_one_and_new_signatures_sent_by_a_forced_check_refuse_a_new_virus_with_nothing_restarted()
    {
        LanPc.RequireImage();
        const int index = 33;
        var mac = QemuLab.MacOf(index);
        var subscriber = new WanAccount("pppoe", "rokuro.sasaki@isp.example", "subscriber-secret-0033");
        // the cache on (downloads take squid's path) and virus checking on; the board runs it (board.json virusScan)
        var services = DemoCatalogue.StandardServices with
        {
            Dns = new DnsConfig("home.arpa", [IspGuest.DnsAddress]),
            Cache = new CacheConfig(true, 64),
            VirusScan = new VirusScanConfig(true),
        };
        await using var isp = await IspGuest.StartAsync(_lab, "isp33", [(subscriber.Username!, subscriber.Password!)]);
        await using var pc = LanPc.Start(_lab, "lanpc33");
        await isp.WaitReadyAsync(IspBoot);
        await pc.WaitBootedAsync(IspBoot);
        // the unit's pattern carries the lab's first signatures: its first version check installs them, and clamd, c-icap
        // and squid run with them (until they are there virus checking waits: ServiceReloadSafetyTests)
        await using var unit = await _lab.AddUnitAsync(index, LabCatalogue.SignaturesPattern, isp: subscriber, provisional: new WanAccount("pppoe"));
        await _lab.App.Services.GetRequiredService<ServiceConfigService>().AssignAsync(mac, services, "qemu-lab", CancellationToken.None);
        unit.WanSocket = isp.AccessEndpoint;
        unit.LanSocket = pc.LanEndpoint;
        var clock = Stopwatch.StartNew();
        unit.PowerOn();
        await unit.WaitReadyAsync(LabCatalogue.SignaturesPattern, BootToReady, async () => (await _lab.UnitAsync(mac))?.WanAddress is not null);
        var toReady = clock.Elapsed;
        await pc.WaitLeaseAsync(TimeSpan.FromMinutes(2));
        var first = LabCatalogue.FirstSignatures.Keys.Single();
        Assert.That(unit.Console(), Does.Contain($"signatures: {first} installed"), $"the first signatures came with the unit's pattern\n--- unit ---\n{unit.Console()}");
        var pids = await ServicePidsAsync(unit);
        Assert.That(pids.Values, Has.All.Not.Empty, $"clamd, c-icap, squid and dnsmasq run: {string.Join(", ", pids)}");
        var idle = await unit.ShellAsync("sed -n 's/^VmRSS:[[:space:]]*//p' /proc/$(pidof clamd)/status");
        TestContext.Out.WriteLine($"clamd's resident memory at idle with the lab's signatures: {idle}; power-on to Ready: {toReady.TotalSeconds:0.0} s");

        // the lab's internet offers the EICAR file, a clean file, and three files only the new signatures know: one to pass
        // before them, one to be refused after (squid keeps what it checked, and new signatures do not purge its cache,
        // docs/services.md), both within squid's ICAP preview, and a larger one (13.9 kB, the marker at its end)
        var eicar = Convert.ToBase64String(LabCatalogue.Eicar);
        var made = await isp.ShellAsync($"echo {eicar} | base64 -d > /srv/www/eicar.com && seq 1 40000 > /srv/www/clean.txt && " +
            $"(echo 'the virus of the week:'; echo {LabCatalogue.NewVirusMarker}) > /srv/www/weekly-1.txt && (echo 'it again:'; echo {LabCatalogue.NewVirusMarker}) > /srv/www/weekly-2.txt && " +
            $"(seq 1 3000; echo {LabCatalogue.NewVirusMarker}) > /srv/www/weekly-3.txt && md5sum /srv/www/clean.txt /srv/www/weekly-1.txt | cut -d' ' -f1");
        var digests = made.Split('\n');
        Assert.That(digests, Has.Length.EqualTo(2).And.All.Match("^[0-9a-f]{32}$"), $"the files' digests at the origin: {made}");
        var url = $"http://{IspGuest.WebServerName}";

        var refused = await RawGetAsync(pc, "/eicar.com");
        TestContext.Out.WriteLine($"LAN PC, EICAR: {refused[..Math.Min(600, refused.Length)]}");
        Assert.That(refused, Does.StartWith("HTTP/1.1 403").And.Contain(LabCatalogue.EicarVirusName),
            $"the EICAR download is refused with a page naming the virus\n--- unit ---\n{unit.Console()}");
        // the origin logs a request as it reads it: the line is there by the time the page was received, or a moment later
        await isp.WaitAsync(() => isp.OriginRequests("/eicar.com") >= 1, TimeSpan.FromSeconds(30), "the EICAR request at the origin");
        Assert.That(isp.OriginRequests("/eicar.com"), Is.EqualTo(1), "the origin sent it: the unit refused it on the way");
        Assert.That(await FetchDigestAsync(pc, $"{url}/clean.txt"), Is.EqualTo(("0", digests[0])), "a clean download passes whole");
        Assert.That(await FetchDigestAsync(pc, $"{url}/weekly-1.txt"), Is.EqualTo(("0", digests[1])), "the new virus passes the first signatures");

        // a new virus: the operator publishes signatures that know it (an update program of importance 5 with the database
        // alone) and forces a check on the unit, which installs them while its services keep running
        clock.Restart();
        await _lab.Store.Units.SetTargetPatternAsync(mac, LabCatalogue.NewSignaturesPattern);
        await _lab.ForceCheckAsync(mac);
        await unit.WaitReadyAsync(LabCatalogue.NewSignaturesPattern, TimeSpan.FromMinutes(5));
        var toNew = clock.Elapsed;
        var second = LabCatalogue.NewSignatures.Keys.Single();
        var installed = unit.Console().Split('\n').Where(l => l.Contains($"signatures: {second} installed", StringComparison.Ordinal)).ToList();
        Assert.That(installed, Has.Count.EqualTo(1).And.All.Contain("clamd reloaded 2 signatures"),
            $"clamd reloaded both databases without a restart\n--- unit ---\n{unit.Console()}");
        var again = await RawGetAsync(pc, "/weekly-2.txt");
        Assert.That(again, Does.StartWith("HTTP/1.1 403").And.Contain(LabCatalogue.NewVirusName),
            $"the new virus is refused now\n{again[..Math.Min(600, again.Length)]}\n--- clamd's log ---\n" +
            await unit.ShellAsync("tail -n 25 \"$(sed -n 's/^LogFile //p' /data/services/current/clamd.conf)\"; tail -n 15 \"$(sed -n 's/^ServerLog //p' /data/services/current/c-icap.conf)\""));
        // beyond the preview c-icap has answered squid's headers before the scan ends: the PC gets a 200 and the
        // connection ends without any of the body (its last line, the marker, never arrives)
        var larger = await RawGetAsync(pc, "/weekly-3.txt");
        TestContext.Out.WriteLine($"LAN PC, the larger new virus: {larger}");
        Assert.That(larger, Does.StartWith("HTTP/1.1 200").And.Contain("Content-Length: 13923"), $"the headers reach the PC\n{larger}");
        // the console trims the answer's end: with no body, the blank line after the headers is gone too
        var blank = larger.IndexOf("\n\n", StringComparison.Ordinal);
        Assert.That(blank < 0 ? "" : larger[(blank + 2)..].Trim(), Is.Empty, $"none of the larger file's body reaches the PC\n{larger}");
        Assert.That(await unit.ShellAsync("grep -c 'VIRUS DETECTED: " + LabCatalogue.NewVirusName + ".*weekly-3.txt' \"$(sed -n 's/^ServerLog //p' /data/services/current/c-icap.conf)\""),
            Is.EqualTo("1"), "c-icap found it");
        Assert.That(await RawGetAsync(pc, "/eicar.com"), Does.StartWith("HTTP/1.1 403").And.Contain(LabCatalogue.EicarVirusName), "the first signatures still apply");
        Assert.That(await FetchDigestAsync(pc, $"{url}/clean.txt"), Is.EqualTo(("0", digests[0])), "clean downloads still pass");
        // nothing restarted: the same processes, the one PPPoE session
        Assert.That(await ServicePidsAsync(unit), Is.EqualTo(pids), "clamd, c-icap, squid and dnsmasq are the processes they were before the signatures");
        Assert.That(isp.Events().Where(e => e.Peer == subscriber.Username).Select(e => e.Kind), Is.EqualTo(new[] { "up" }), "no redial");
        TestContext.Out.WriteLine($"forced check to Ready with the new signatures (installed and loaded by clamd): {toNew.TotalSeconds:0.0} s; " +
            $"the unit's log: {installed.Single().Trim()}");
    }

    /// <summary>
    /// Measures (make test-long; not part of make test): a LAN PC's download of a 4 MiB file from the lab's internet
    /// through the unit on four paths, three times each, in one run: past no service (the origin's second port, which the
    /// unit's firewall does not send to squid), through squid and the virus check (each fetch a new name: a miss), through
    /// squid alone (virus checking turned off by a new configuration), and from squid's cache (a hit). Prints each path's
    /// median time and its ratio to the path past no service. Every download arrives whole (the origin's MD5).
    /// </summary>
    [Test, Category("long")]
    public async Task Throughput_of_a_lan_download_past_no_service_through_the_cache_and_the_virus_check_and_from_the_cache()
    {
        LanPc.RequireImage();
        const int index = 34;
        var mac = QemuLab.MacOf(index);
        var subscriber = new WanAccount("pppoe", "shichiro.ueda@isp.example", "subscriber-secret-0034");
        var withVirusCheck = DemoCatalogue.StandardServices with
        {
            Dns = new DnsConfig("home.arpa", [IspGuest.DnsAddress]),
            Cache = new CacheConfig(true, 64),
            VirusScan = new VirusScanConfig(true),
        };
        await using var isp = await IspGuest.StartAsync(_lab, "isp34", [(subscriber.Username!, subscriber.Password!)]);
        await using var pc = LanPc.Start(_lab, "lanpc34");
        await isp.WaitReadyAsync(IspBoot);
        await pc.WaitBootedAsync(IspBoot);
        await using var unit = await _lab.AddUnitAsync(index, LabCatalogue.SignaturesPattern, isp: subscriber, provisional: new WanAccount("pppoe"));
        var configs = _lab.App.Services.GetRequiredService<ServiceConfigService>();
        await configs.AssignAsync(mac, withVirusCheck, "qemu-lab", CancellationToken.None);
        unit.WanSocket = isp.AccessEndpoint;
        unit.LanSocket = pc.LanEndpoint;
        unit.PowerOn();
        await unit.WaitReadyAsync(LabCatalogue.SignaturesPattern, BootToReady, async () => (await _lab.UnitAsync(mac))?.WanAddress is not null);
        var lease = await pc.WaitLeaseAsync(TimeSpan.FromMinutes(2));
        Assert.That(await unit.ShellAsync("pidof clamd >/dev/null && pidof squid >/dev/null && echo running"), Is.EqualTo("running"));

        // 4 MiB of random bytes (nothing compresses or matches a signature), under each name a fetch needs, and the
        // origin's second port, which only NAT stands between
        const long size = 4L * 1024 * 1024;
        var digest = await isp.ShellAsync($"head -c {size} /dev/urandom > /srv/www/big.bin && for i in 1 2 3 4 5 6; do ln /srv/www/big.bin /srv/www/big-$i.bin; done && " +
            $"httpd -p {InternetAddress}:8080 -h /srv/www && md5sum < /srv/www/big.bin | cut -d' ' -f1");
        Assert.That(digest, Does.Match("^[0-9a-f]{32}$"), $"the file at the origin: {digest}");

        async Task<double> Fetch(string path, int port)
        {
            // timed in the PC by its uptime (centiseconds), so the console's round trip is not counted
            var output = await pc.ShellAsync($"a=$(cut -d' ' -f1 /proc/uptime); wget -q -O /tmp/big --header 'Host: {IspGuest.WebServerName}' http://{InternetAddress}:{port}{path}; " +
                "rc=$?; b=$(cut -d' ' -f1 /proc/uptime); echo \"$rc $a $b $(md5sum < /tmp/big | cut -d' ' -f1)\"; rm -f /tmp/big", TimeSpan.FromMinutes(5));
            var fields = output.Split(' ');
            Assert.That(fields, Has.Length.EqualTo(4), $"{path} on port {port}: {output}");
            Assert.That((fields[0], fields[3]), Is.EqualTo(("0", digest)), $"{path} on port {port} arrives whole");
            return double.Parse(fields[2], CultureInfo.InvariantCulture) - double.Parse(fields[1], CultureInfo.InvariantCulture);
        }
        static double Median(List<double> times) => times.Order().ElementAt(times.Count / 2);

        List<double> plain = [], checkedMiss = [], cacheMiss = [], cacheHit = [];
        for (var i = 1; i <= 3; i++)
        {
            plain.Add(await Fetch("/big.bin", 8080));
            checkedMiss.Add(await Fetch($"/big-{i}.bin", 80));
        }
        // virus checking off: a new configuration, applied when the unit is told of it
        var mark = unit.Console().Length;
        await configs.AssignAsync(mac, withVirusCheck with { VirusScan = new VirusScanConfig(false) }, "qemu-lab", CancellationToken.None);
        await unit.WaitAsync(async () => unit.Console()[mark..].Contains(" applied in ", StringComparison.Ordinal)
                && await unit.ShellAsync("pidof clamd c-icap; pidof squid >/dev/null && echo squid") == "squid", TimeSpan.FromMinutes(3),
            "the configuration without virus checking applied: clamd and c-icap stopped, squid running");
        var squidBefore = CacheStatistics.Parse(await unit.ShellAsync($"wget -q -O - http://{lease.Router}:3128{CacheStatistics.CountersPath}"));
        for (var i = 4; i <= 6; i++)
        {
            plain.Add(await Fetch("/big.bin", 8080));
            cacheMiss.Add(await Fetch($"/big-{i}.bin", 80));
            cacheHit.Add(await Fetch($"/big-{i}.bin", 80));
        }
        var squidAfter = CacheStatistics.Parse(await unit.ShellAsync($"wget -q -O - http://{lease.Router}:3128{CacheStatistics.CountersPath}"));
        var reference = Median(plain);
        string Row(string name, List<double> times) =>
            $"{name}: median {Median(times):0.00} s ({size / 1048576.0 / Median(times):0.00} MiB/s), ratio to no service {Median(times) / reference:0.00} (runs {string.Join(", ", times.Select(t => t.ToString("0.00", CultureInfo.InvariantCulture)))})";
        TestContext.Out.WriteLine(string.Join('\n', Row("past no service", plain), Row("cache and virus check (miss)", checkedMiss),
            Row("cache alone (miss)", cacheMiss), Row("from the cache (hit)", cacheHit)));
        var (requests, hits) = (squidAfter.Requests - squidBefore.Requests, squidAfter.Hits - squidBefore.Hits);
        TestContext.Out.WriteLine($"squid over the cache-alone phase: {requests} requests (the counters page's own read included), {hits} hits");
        Assert.That(hits, Is.EqualTo(3), "each repeat was a hit");
        Assert.That(isp.OriginRequests("/big-4.bin") + isp.OriginRequests("/big-5.bin") + isp.OriginRequests("/big-6.bin"), Is.EqualTo(3), "the repeats never reached the origin");
    }

    /// <summary>The process ids of the services a signature update must not restart, by name (empty when one is not running).</summary>
    private static async Task<Dictionary<string, string>> ServicePidsAsync(QemuUnit unit)
    {
        string[] names = ["clamd", "c-icap", "squid", "dnsmasq"];
        var output = await unit.ShellAsync(string.Join("; ", names.Select(n => $"echo \"{n}=$(pidof {n})\"")));
        return output.Split('\n').Select(l => l.Split('=', 2)).Where(p => p.Length == 2 && names.Contains(p[0])).ToDictionary(p => p[0], p => p[1].Trim());
    }

    /// <summary>
    /// A plain HTTP GET of <paramref name="path"/> at the lab's web server from the LAN PC (busybox nc): the status line,
    /// headers and body as received, refusals included. The request side stays open until nc ends (squid closes a
    /// connection whose client half-closed it, its default), and nc ends when the answer is complete (HTTP/1.0); at most 60 s.
    /// </summary>
    private static Task<string> RawGetAsync(LanPc pc, string path) =>
        pc.ShellAsync($"rm -f /tmp/raw; (printf 'GET {path} HTTP/1.0\\r\\nHost: {IspGuest.WebServerName}\\r\\n\\r\\n'; sleep 60) | nc -w 30 {InternetAddress} 80 > /tmp/raw & " +
            "i=0; while [ $i -lt 600 ] && { pidof nc >/dev/null || [ ! -s /tmp/raw ]; }; do sleep 0.1; i=$((i + 1)); done; tr -d '\\r' < /tmp/raw", TimeSpan.FromSeconds(90));

    /// <summary>squid's count of client requests (its cache manager's <c>client_http.requests</c>), asked on the unit at its LAN address.</summary>
    private static async Task<long> SquidRequestsAsync(QemuUnit unit, string lanAddress)
    {
        // 3128: the unit's proxy port (ServiceEnvironment.CachePort), where the cache manager answers the unit itself
        var text = await unit.ShellAsync($"wget -q -O - http://{lanAddress}:3128{CacheStatistics.CountersPath}");
        return CacheStatistics.Parse(text).Requests;
    }

    /// <summary>Fetches <paramref name="url"/> on the PC (lan-pc-fetch) into a file: its exit code and the body's MD5, without sending the body over the console.</summary>
    private static async Task<(string Exit, string Digest)> FetchDigestAsync(LanPc pc, string url)
    {
        var output = await pc.ShellAsync($"lan-pc-fetch '{url}' > /tmp/fetched; echo $?; sed 1d /tmp/fetched | md5sum | cut -d' ' -f1", TimeSpan.FromSeconds(90));
        var lines = output.Split('\n');
        return lines.Length == 2 ? (lines[0], lines[1]) : throw new IOException($"LAN PC: not an exit code and a digest: {output}");
    }

    /// <summary>The operator edits the unit's ISP password in the table; returns the settings revision after it.</summary>
    private async Task<long> SetIspPasswordAsync(string mac, string password)
    {
        await EditUnitAsync(mac, new UnitEditRequest(IspPassword: password));
        return (await _lab.UnitAsync(mac))!.SettingsRevision;
    }

    /// <summary>The operator edits the unit's row at its current revision (GET record, then PATCH with If-Match), as `tsunagu units edit` does.</summary>
    private async Task EditUnitAsync(string mac, UnitEditRequest edit)
    {
        using var op = _lab.Operator();
        var path = $"{Routes.Units}/{mac}/record";
        var record = JsonSerializer.Deserialize<UnitRecordView>(await op.SendAsync(HttpMethod.Get, path, null, CancellationToken.None), JsonSerializerOptions.Web)!;
        await op.SendJsonAsync(HttpMethod.Patch, path, edit, CancellationToken.None, $"\"{record.Revision.ToString(CultureInfo.InvariantCulture)}\"");
    }

    /// <summary>
    /// The access concentrator's events since the first <paramref name="from"/>, once it has logged at least
    /// <paramref name="count"/> dials of the two accounts (its console may lag the unit's: a hang-up is logged when its
    /// pppd has ended), or after 30 s.
    /// </summary>
    private static Task<List<IspGuest.SessionEvent>> SettledEventsAsync(IspGuest isp, int from, string factoryUser, string subscriberUser, int count) =>
        IspGuest.SettledAsync(() => Task.FromResult(isp.Events().Skip(from).ToList()), e => Dials(e, factoryUser, subscriberUser).Count >= count, TimeSpan.FromSeconds(30));

    /// <summary>
    /// Waits for the unit to leave Ready by <paramref name="transition"/> (in its console after
    /// <paramref name="consoleFrom"/>) and reach Ready after it, on the unit and on the host.
    /// </summary>
    private async Task ReadyAgainAsync(QemuUnit unit, string mac, int consoleFrom, string transition)
    {
        string Since() => unit.Console()[consoleFrom..];
        await unit.WaitAsync(() => Since().Contains(transition, StringComparison.Ordinal), BootToReady, $"the unit's {transition}");
        await unit.WaitAsync(() => Since() is var s && s.IndexOf("--> Ready", s.IndexOf(transition, StringComparison.Ordinal), StringComparison.Ordinal) >= 0,
            BootToReady, $"Ready after {transition}");
        await unit.WaitAsync(async () => (await _lab.UnitAsync(mac))?.State == UnitStates.Ready, TimeSpan.FromMinutes(2), "the host seeing the unit Ready again");
    }

    /// <summary>The unit's session on ppp0 is the one the access concentrator gave <paramref name="remote"/>, and the host has that address.</summary>
    private async Task AssertOnSessionAsync(QemuUnit unit, string mac, string remote)
    {
        Assert.That(await unit.ShellAsync("ip addr show dev ppp0"), Does.Contain(remote), "the unit's ppp0 carries the new session");
        Assert.That((await _lab.UnitAsync(mac))!.WanAddress, Is.EqualTo(remote), "the host has the new session's address");
    }

    /// <summary>The sessions up and down and the refusals of the two accounts, as "KIND PEER", in order.</summary>
    private static List<string> Dials(IEnumerable<IspGuest.SessionEvent> events, string factoryUser, string subscriberUser) =>
        [.. events.Where(e => e.Kind is "up" or "down" or "refused" && (e.Peer == factoryUser || e.Peer == subscriberUser)).Select(e => $"{e.Kind} {e.Peer}")];

    /// <summary>The unit's log lines of a failed contact with the host (HostSession's errors and its retries).</summary>
    private static List<string> FailedHostContacts(string console) =>
        console.Split('\n').Where(l => l.Contains("host authentication:", StringComparison.Ordinal)
                                        || l.Contains("HostSession --Retry--> HostSession", StringComparison.Ordinal)).ToList();

    private static int Occurrences(string text, string what)
    {
        var count = 0;
        for (var i = text.IndexOf(what, StringComparison.Ordinal); i >= 0; i = text.IndexOf(what, i + what.Length, StringComparison.Ordinal)) { count++; }
        return count;
    }

    /// <summary>The lab's "internet" web server (in the access network guest, isp-run.sh) and what it serves.</summary>
    private const string InternetAddress = "198.51.100.80";
    private const string InternetContent = "tsunagu lab internet";

    // an HTTP/1.0 GET through busybox nc (the image's static busybox wget crashes: exit 139); the server closes the connection
    private static string FetchInternetPage(int timeoutSeconds) =>
        $"printf 'GET /index.html HTTP/1.0\\r\\nHost: {InternetAddress}\\r\\n\\r\\n' | nc -w {timeoutSeconds} {InternetAddress} 80 2>&1; echo exit=$?";

    [Test]
    public async Task The_provisional_session_reaches_only_the_initial_setting_server_the_subscriber_session_the_internet_and_each_hang_up_frees_its_session_at_once()
    {
        const int index = 24;
        var mac = QemuLab.MacOf(index);
        var factoryUser = UnitCredentials.AccessUsername(mac);
        var subscriber = new WanAccount("pppoe", "jiro.suzuki@isp.example", "subscriber-secret-0024");
        await using var isp = await IspGuest.StartAsync(_lab, "isp24", [(subscriber.Username!, subscriber.Password!)]);
        await isp.WaitReadyAsync(IspBoot);
        await using var unit = await _lab.AddUnitAsync(index, LabCatalogue.Pattern1, isp: subscriber, provisional: new WanAccount("pppoe"));
        unit.WanSocket = isp.AccessEndpoint;
        var clock = Stopwatch.StartNew();

        // the initial setting server holds the unit's provisioning requests: the unit stays on its provisional session
        var hold = _lab.HoldProvisioning();
        (long Padr, long Padt) discoveryBefore;
        try
        {
            var requestsBefore = _lab.ProvisioningRequests.Count;
            unit.PowerOn();
            await isp.WaitAsync(() => isp.Events().Any(e => e.Kind == "up" && e.Peer == factoryUser), BootToReady, "the provisional session");
            // the initial setting server is reachable over the provisional session: the unit's request arrived (and is held)
            await unit.WaitAsync(() => _lab.ProvisioningRequests.Count > requestsBefore, TimeSpan.FromMinutes(3),
                "a provisioning request over the provisional session");
            var provisional = isp.Events().Single(e => e.Kind == "up" && e.Peer == factoryUser);
            Assert.That(provisional.Access, Is.EqualTo("garden"), "the access point's session is in the walled garden");
            Assert.That(await unit.ShellAsync($"ip route get {InternetAddress}"), Does.Contain("dev ppp0"),
                "the unit routes the internet over its provisional session");
            var dropsBefore = await isp.GardenDropsAsync();
            var fetch = await unit.ShellAsync(FetchInternetPage(10), TimeSpan.FromSeconds(90));
            var mqtt = await unit.ShellAsync($"nc -w 10 10.0.2.100 {_lab.MqttPort} </dev/null 2>&1; echo exit=$?", TimeSpan.FromSeconds(90));
            var dropsAfter = await isp.GardenDropsAsync();
            TestContext.Out.WriteLine($"provisional session: wget: {fetch}; nc to the broker: {mqtt}; walled garden drops {dropsBefore} -> {dropsAfter}");
            Assert.That(fetch, Does.Not.Contain(InternetContent).And.Not.Contain("exit=0"), "the internet is out of the provisional session's reach");
            Assert.That(mqtt, Does.Not.Contain("exit=0"), "so is the host's broker");
            Assert.That(dropsAfter, Is.GreaterThan(dropsBefore), "the walled garden dropped them (not a missing route)");
            Assert.That(unit.FullConsole(), Does.Not.Contain("--> Ready"), "the unit was still provisioning");
            discoveryBefore = await isp.DiscoveryReceivedAsync();
        }
        finally
        {
            hold.Dispose();
        }
        await unit.WaitReadyAsync(LabCatalogue.Pattern1, BootToReady, async () => (await _lab.UnitAsync(mac))?.WanAddress is not null);
        TestContext.Out.WriteLine($"power-on to Ready (provisioning held for the checks): {clock.Elapsed.TotalSeconds:0.0} s");

        // the subscriber's session reaches the internet (and the host: the unit is Ready over it)
        var events = isp.Events();
        var main = events.Single(e => e.Kind == "up" && e.Peer == subscriber.Username);
        Assert.That(main.Access, Is.EqualTo("internet"), "the subscriber ISP's session is not in the walled garden");
        var page = await unit.ShellAsync(FetchInternetPage(30), TimeSpan.FromSeconds(90));
        Assert.That(page, Does.Contain(InternetContent).And.Contain("exit=0"), "the subscriber session reaches the lab's internet");

        // the provisional session: the unit said goodbye (LCP Terminate-Request, PADT), so its concentrator ended it
        // before the unit dialled again, and not by LCP echo (nothing else would have told it)
        var provisionalDown = events.FindIndex(e => e.Kind == "down" && e.Peer == factoryUser);
        Assert.That(provisionalDown, Is.GreaterThanOrEqualTo(0).And.LessThan(events.IndexOf(main)),
            $"the provisional session ended before the subscriber's began\n--- ISP ---\n{isp.Console()}");
        var goodbyes = isp.Console().Split('\n').Where(l => l.Contains("terminated", StringComparison.Ordinal) || l.Contains("PADT", StringComparison.Ordinal)).ToList();
        TestContext.Out.WriteLine("the concentrator's log of the hang-up:\n" + string.Join('\n', goodbyes));
        Assert.That(isp.Console(), Does.Not.Contain("No response to"), "no session was ended by LCP echo");
        var discoveryReady = await isp.DiscoveryReceivedAsync();
        TestContext.Out.WriteLine($"PADR, PADT from the unit: {discoveryBefore} on the provisional session, {discoveryReady} once Ready");
        Assert.That(discoveryReady.Padr, Is.GreaterThan(discoveryBefore.Padr), "the counters see the unit's discovery: a PADR for the subscriber's session");
        Assert.That(discoveryReady.Padt, Is.GreaterThan(discoveryBefore.Padt), "the unit sent a PADT when it hung up the provisional session");
        // the concentrator holds one session, the subscriber's: one pppd, one session file
        Assert.That((await isp.ShellAsync("pidof pppd")).Split(' ', StringSplitOptions.RemoveEmptyEntries), Has.Length.EqualTo(1),
            "the concentrator freed the provisional session: one pppd left");
        Assert.That(await isp.ShellAsync("ls /run/isp/sessions"), Is.EqualTo(subscriber.Username + ".pid"));

        // the unit shuts down: it hangs up its subscriber session on the way, and the concentrator frees it
        var radiusBefore = isp.Radius().Count;
        await unit.ShellAsync("sh -c '(sleep 1; poweroff) </dev/null >/dev/null 2>&1 &'");
        await isp.WaitAsync(() => isp.Events().Any(e => e.Kind == "down" && e.Peer == subscriber.Username), TimeSpan.FromMinutes(3),
            "the subscriber's session ending when the unit shuts down");
        await isp.WaitAsync(() => isp.Radius().Skip(radiusBefore).Any(r => r.Kind == "Stop"), TimeSpan.FromSeconds(60), "the accounting Stop");
        // init's own stop (SIGTERM to all, one second, SIGKILL) is too short for a hang-up on a busy unit: the stop script
        // ends the supervisor and waits for pppd before it, whatever the machine's load
        await unit.WaitAsync(() => unit.Console().Contains("The system is going down", StringComparison.Ordinal), TimeSpan.FromSeconds(60), "init's kill-all");
        var stopped = unit.Console().IndexOf("rcK: supervisor stopped, links hung up", StringComparison.Ordinal);
        Assert.That(stopped, Is.GreaterThanOrEqualTo(0).And.LessThan(unit.Console().IndexOf("The system is going down", StringComparison.Ordinal)),
            $"the stop script hung up before init's kill-all\n--- unit ---\n{unit.Console()[^Math.Min(4000, unit.Console().Length)..]}");
        Assert.That(isp.Console(), Does.Not.Contain("No response to"), "ended by the unit's goodbye, not by LCP echo");
        // the accounting Stop is written before pppd has exited, and the counter read may come before the frame's: both settle
        Assert.That(await IspGuest.SettledAsync(() => isp.ShellAsync("pidof pppd; echo pids=$?"), p => p.EndsWith("pids=1", StringComparison.Ordinal), TimeSpan.FromSeconds(30)),
            Does.EndWith("pids=1"), "no session left on the concentrator");
        Assert.That((await IspGuest.SettledAsync(isp.DiscoveryReceivedAsync, d => d.Padt > discoveryReady.Padt, TimeSpan.FromSeconds(30))).Padt,
            Is.GreaterThan(discoveryReady.Padt), "the unit sent a PADT as it shut down");
        Assert.That(isp.Radius().Skip(radiusBefore).Select(r => (r.Kind, r.User)), Is.EqualTo(new[] { ("Stop", subscriber.Username!) }),
            "one accounting Stop, the subscriber's");
        TestContext.Out.WriteLine($"whole test: {clock.Elapsed.TotalSeconds:0.0} s after power-on\n--- ISP ---\n{isp.Console()}");
    }

    [Test]
    public async Task An_update_reboot_hangs_up_the_pppoe_session_first_so_the_concentrator_never_holds_a_stale_session_for_the_unit()
    {
        const int index = 25;
        var mac = QemuLab.MacOf(index);
        var factoryUser = UnitCredentials.AccessUsername(mac);
        var subscriber = new WanAccount("pppoe", "saburo.ito@isp.example", "subscriber-secret-0025");
        await using var isp = await IspGuest.StartAsync(_lab, "isp25", [(subscriber.Username!, subscriber.Password!)]);
        await isp.WaitReadyAsync(IspBoot);
        // pattern qemu-2: the unit updates its OS from the host and restarts into it
        await using var unit = await _lab.AddUnitAsync(index, LabCatalogue.Pattern2, isp: subscriber, provisional: new WanAccount("pppoe"));
        unit.WanSocket = isp.AccessEndpoint;
        var clock = Stopwatch.StartNew();
        unit.PowerOn();
        await unit.WaitReadyAsync(LabCatalogue.Pattern2, BootToReady, async () => (await _lab.UnitAsync(mac))?.WanAddress is not null);
        TestContext.Out.WriteLine($"power-on to Ready on {LabCatalogue.Pattern2} over PPPoE (update and its reboot included): {clock.Elapsed.TotalSeconds:0.0} s");
        var console = unit.Console();
        Assert.That(console, Does.Contain("restarting the unit").And.Contain("Tsunagu OS tsunagu-os 1.1 (b)"), "the unit restarted into the update");

        // the concentrator's sessions of the unit, in order: provisioning, subscriber before the restart, subscriber after
        // it; at no point two at once: each one ended (ip-down) before the next one began
        var events = isp.Events().Where(e => e.Kind is "up" or "down").ToList();
        Assert.That(events.Where(e => e.Kind == "up").Select(e => e.Peer), Is.EqualTo(new[] { factoryUser, subscriber.Username, subscriber.Username }),
            $"three sessions: provisioning, then the subscriber's before and after the restart\n--- ISP ---\n{isp.Console()}");
        var open = 0;
        var most = 0;
        foreach (var e in events)
        {
            open += e.Kind == "up" ? 1 : -1;
            most = Math.Max(most, open);
        }
        Assert.That(most, Is.EqualTo(1), $"never two sessions of the unit at once on the concentrator\n--- ISP ---\n{isp.Console()}");
        Assert.That(open, Is.EqualTo(1), "one session up now, the one after the restart");
        Assert.That(isp.Console(), Does.Not.Contain("No response to"), "no session was ended by the concentrator's LCP echo");
        // the accounting: the session before the restart was stopped by the unit's hang-up, not lost by the carrier
        var stops = isp.Console().Split('\n').Where(l => l.Contains("radius: accounting Stop user=" + subscriber.Username + " ", StringComparison.Ordinal)).ToList();
        Assert.That(stops, Has.Count.EqualTo(1), "one accounting Stop of the subscriber's sessions, the one before the restart");
        Assert.That(stops[0], Does.Not.Contain("cause=Lost-Carrier"), "the unit hung it up: it was not found dead");
        // the unit's PADTs: one for the provisional session, one for the subscriber's session before the restart
        var discovery = await IspGuest.SettledAsync(isp.DiscoveryReceivedAsync, d => d.Padt >= 2, TimeSpan.FromSeconds(30));
        TestContext.Out.WriteLine($"PADR, PADT from the unit: {discovery}; the stop before the restart: {stops[0]}");
        Assert.That(discovery.Padt, Is.EqualTo(2), "a PADT at the provisional hang-up and one before the restart");
        // what the concentrator holds now: one pppd, one session file, the subscriber's
        Assert.That((await isp.ShellAsync("pidof pppd")).Split(' ', StringSplitOptions.RemoveEmptyEntries), Has.Length.EqualTo(1),
            "the concentrator holds exactly one session for the unit");
        Assert.That(await isp.ShellAsync("ls /run/isp/sessions"), Is.EqualTo(subscriber.Username + ".pid"));
        // and the host session after each switch of session succeeded at its first attempt
        Assert.That(FailedHostContacts(console), Is.Empty, $"no failed host contact\n--- unit ---\n{console}");
        Assert.That(await unit.ShellAsync("ip addr show dev ppp0"), Does.Contain(events[^1].Remote), "the unit's ppp0 carries the new session");
    }

    [Test]
    public async Task A_lan_pc_takes_a_lease_from_the_unit_resolves_the_lab_internet_through_it_is_reached_by_a_vpn_peer_also_after_a_wipe_and_is_refused_a_filtered_domain_and_a_category_once_its_list_arrives()
    {
        LanPc.RequireImage();
        const int index = 26;
        var mac = QemuLab.MacOf(index);
        var subscriber = new WanAccount("pppoe", "shiro.kato@isp.example", "subscriber-secret-0026");
        // the unit's services: a LAN and a lease of their own (not the demo's defaults, so the lease shows this
        // configuration), the lab's DNS server as upstream, ads.example on the content filter and the category malware
        // chosen; the lab's DNS server answers ads.example and malware.example as it answers www.lab.example
        var lan = new DhcpConfig("192.168.77.1", 24, "192.168.77.50", "192.168.77.59", "1h", []);
        // and the VPN, with one roaming peer: the lab's internet (the access network guest), with a key of its own
        var peerKey = RandomNumberGenerator.GetBytes(32);
        WireGuardKeys.Clamp(peerKey);
        var services = DemoCatalogue.StandardServices with
        {
            Dhcp = lan,
            Dns = new DnsConfig("lab.home.arpa", [IspGuest.DnsAddress]),
            ContentFilter = new ContentFilterConfig(true, [FilteredName], null, [Category]),
            Vpn = new VpnConfig(true, VpnPort, "10.99.0.1/24", [new VpnPeer("lab peer", WireGuardKeys.ToText(WireGuardKeys.PublicKey(peerKey)), "10.99.0.2/32", null)]),
        };
        var clock = Stopwatch.StartNew();
        // both guests boot at once; the PC's port listens from its start, the unit's LAN port connects to it
        await using var isp = await IspGuest.StartAsync(_lab, "isp26", [(subscriber.Username!, subscriber.Password!)]);
        await using var pc = LanPc.Start(_lab, "lanpc26");
        // a second PC on the same LAN (the unit's port and both PCs on one switch): connection sharing, both through the
        // unit's one PPPoE session
        await using var pc2 = LanPc.Start(_lab, "lanpc26b", SecondPcMac);
        await isp.WaitReadyAsync(IspBoot);
        await pc.WaitBootedAsync(IspBoot);
        await pc2.WaitBootedAsync(IspBoot);
        var guestsUp = clock.Elapsed;
        await using var unit = await _lab.AddUnitAsync(index, LabCatalogue.Pattern1, isp: subscriber, provisional: new WanAccount("pppoe"));
        await _lab.App.Services.GetRequiredService<ServiceConfigService>().AssignAsync(mac, services, "qemu-lab", CancellationToken.None);
        unit.WanSocket = isp.AccessEndpoint;
        unit.LanSocket = $"{pc.LanEndpoint} {pc2.LanEndpoint}";
        clock.Restart();
        unit.PowerOn();
        await unit.WaitReadyAsync(LabCatalogue.Pattern1, BootToReady, async () => (await _lab.UnitAsync(mac)) is { WanAddress: not null, VpnPublicKey: not null });
        var toReady = clock.Elapsed;
        // the unit's DHCP server runs from its services, before Ready; the PC asks every 8 s or less until it answers
        var lease = await pc.WaitLeaseAsync(TimeSpan.FromMinutes(2));
        var toLease = clock.Elapsed;
        var lease2 = await pc2.WaitLeaseAsync(TimeSpan.FromMinutes(2));
        var wan = (await _lab.UnitAsync(mac))!.WanAddress!;

        // the lease: an address of the configured range, the unit as gateway and DNS server, the configured domain and time
        Assert.That(Ipv4(lease.Address), Is.InRange(Ipv4(lan.RangeStart), Ipv4(lan.RangeEnd)), $"an address of the configured range\n--- LAN PC ---\n{pc.Console()}");
        Assert.That((lease.PrefixLength, lease.Router, lease.Server, lease.Domain, lease.Seconds), Is.EqualTo((lan.PrefixLength, lan.LanAddress, lan.LanAddress, "lab.home.arpa", 3600)),
            "the unit's DHCP server, the unit as gateway, the configured domain and lease time");
        Assert.That(lease.Dns, Is.EqualTo(new[] { lan.LanAddress }), "the unit is the PC's DNS server");
        Assert.That(pc.Leases(), Has.Count.EqualTo(1), "one lease, kept");
        Assert.That(Ipv4(lease2.Address), Is.InRange(Ipv4(lan.RangeStart), Ipv4(lan.RangeEnd)).And.Not.EqualTo(Ipv4(lease.Address)),
            $"the second PC: another address of the range\n--- LAN PC 2 ---\n{pc2.Console()}");
        Assert.That(lease2.Router, Is.EqualTo(lan.LanAddress), "the second PC's gateway: the unit");
        Assert.That(lease2.Dns, Is.EqualTo(new[] { lan.LanAddress }), "the second PC's DNS server: the unit");
        Assert.That(pc2.Leases(), Has.Count.EqualTo(1), "the second PC: one lease, kept");
        // the unit's side: its dnsmasq holds that lease for the PC's MAC, and forwards to the lab's DNS server
        var dnsmasq = await unit.ShellAsync("conf=$(tr '\\0' '\\n' < /proc/$(pidof dnsmasq)/cmdline | tail -n 1); grep -E '^(server|address)=' \"$conf\"; echo leases:; cat \"$(sed -n 's/^dhcp-leasefile=//p' \"$conf\")\"");
        Assert.That(dnsmasq, Does.Contain($"server={IspGuest.DnsAddress}").And.Contain($"address=/{FilteredName}/"), "the unit's dnsmasq has the configured upstream and filter");
        var leases = dnsmasq[(dnsmasq.IndexOf("leases:", StringComparison.Ordinal) + "leases:".Length)..].Split('\n', StringSplitOptions.RemoveEmptyEntries);
        // (MAC and address only: both PCs ask as host "lan-pc", and dnsmasq gives a name to one lease only)
        Assert.That(leases.Select(l => l.Split(' ')[1..3]), Is.EquivalentTo(new[] { new[] { LanPc.Mac, lease.Address }, new[] { SecondPcMac, lease2.Address } }),
            $"the unit leased each PC its address\n{dnsmasq}");

        // the web server's name, resolved by the unit (which asked the lab's DNS server from its WAN address), and its
        // page, fetched by both PCs at once
        var pages = await Task.WhenAll(pc.FetchAsync($"http://{IspGuest.WebServerName}/"), pc2.FetchAsync($"http://{IspGuest.WebServerName}/"));
        foreach (var page in pages)
        {
            TestContext.Out.WriteLine($"LAN PC: {page.Output}");
            Assert.That((page.Exit, page.Address), Is.EqualTo((0, InternetAddress)), $"resolved by the unit to the lab's web server\n{page.Output}");
            Assert.That(page.Page, Is.EqualTo(InternetContent), "the page of the lab's internet, through the unit's NAT");
        }
        // the unit translated each PC's connection: its connection tracking holds them, from each PC's address to the web
        // server, with the answer addressed to the unit's session address (the lab's ISP has no route to the LAN)
        var conntrack = await unit.ShellAsync("cat /proc/net/nf_conntrack");
        foreach (var address in new[] { lease.Address, lease2.Address })
        {
            var translated = ConntrackWeb().Matches(conntrack).Where(m => m.Groups[1].Value == address).Select(m => m.Groups[2].Value).ToList();
            Assert.That(translated, Is.Not.Empty.And.All.EqualTo(wan), $"the unit's NAT: {address} -> {InternetAddress}:80, answered to {wan}\n{conntrack}");
        }
        Assert.That(isp.Events().Where(e => e.Peer == subscriber.Username).Select(e => e.Kind), Is.EqualTo(new[] { "up" }),
            $"one subscriber session carried both PCs, up throughout\n--- ISP ---\n{isp.Console()}");
        Assert.That(await isp.ShellAsync($"ip route get {lease.Address}"), Does.Contain("dev uplink"), "the LAN's addresses mean nothing to the ISP");
        await isp.WaitAsync(() => isp.DnsQueries().Any(q => q.Name == IspGuest.WebServerName), TimeSpan.FromSeconds(30), "the unit's query on the lab's DNS server");
        Assert.That(isp.DnsQueries().Where(q => q.Name == IspGuest.WebServerName).Select(q => q.From).Distinct(), Is.EqualTo(new[] { wan }),
            "the unit's dnsmasq forwarded the name from its subscriber session's address");

        // the filtered domain: the unit answers NXDOMAIN itself, and the PC fetches nothing
        var filtered = await pc.FetchAsync($"http://{FilteredName}/");
        TestContext.Out.WriteLine($"LAN PC: {filtered.Output}");
        Assert.That((filtered.Exit, filtered.Refusal), Is.EqualTo((1, "NXDOMAIN")), $"the unit refuses the filtered domain\n{filtered.Output}");
        Assert.That(filtered.Page, Is.Empty);
        // and it never asked upstream: a name of its own, asked after it through the unit, reaches the lab's DNS server
        // (the unit forwards in the order asked, the server logs in the order received); by then no query for the
        // filtered name has come, however often the PC's resolver asked again
        var barrier = $"barrier-{Guid.NewGuid():N}.lab.example";
        var unknown = await pc.FetchAsync($"http://{barrier}/");
        Assert.That((unknown.Exit, unknown.Refusal), Is.EqualTo((1, "NXDOMAIN")), $"the lab's DNS server does not know {barrier}\n{unknown.Output}");
        await isp.WaitAsync(() => isp.DnsQueries().Any(q => q.Name == barrier && q.From == wan), TimeSpan.FromSeconds(30), $"the unit's forwarded query for {barrier}");
        Assert.That(isp.DnsQueries().Where(q => q.Name == FilteredName), Is.Empty, $"the unit never asked for {FilteredName}\n--- ISP ---\n{isp.Console()}");
        // yet the lab's internet knows the name: the unit's own shell, asking the lab's DNS server itself, is answered
        var direct = await unit.ShellAsync($"nslookup -type=a -timeout=20 {FilteredName} {IspGuest.DnsAddress}");
        Assert.That(direct, Does.Contain($"Address: {InternetAddress}"), $"the lab's DNS server answers {FilteredName}\n{direct}");
        await isp.WaitAsync(() => isp.DnsQueries().Any(q => q.Name == FilteredName), TimeSpan.FromSeconds(30), "the unit shell's query on the lab's DNS server");
        Assert.That(pc.Leases(), Has.Count.EqualTo(1), "still the one lease");

        // the VPN: the peer in the lab's internet sets up its tunnel with what the host shows of the unit (its public key and
        // endpoint, from its ready report) and reaches the first PC through it, by the PC's LAN address
        var shown = (await _lab.UnitAsync(mac))!;
        var lanNetwork = $"{IPNetwork.Parse($"{lan.LanAddress}/{lan.PrefixLength}").BaseAddress}/{lan.PrefixLength}";
        // (the host's endpoint is the address the ready report came from: in the lab the server is reached by QEMU's guestfwd,
        // so that is the loopback, and the peer takes the WAN address the unit reported with the port the host shows)
        Assert.That((shown.WanAddress, shown.VpnListenPort), Is.EqualTo((wan, (long?)VpnPort)), "the host shows the unit's session address and VPN port");
        var endpoint = $"{shown.WanAddress}:{shown.VpnListenPort}";
        var tunnel = await isp.ShellAsync(
            $"echo {WireGuardKeys.ToText(peerKey)} > /tmp/wgpeer.key && ip link add wgpeer type wireguard && " +
            $"wg set wgpeer private-key /tmp/wgpeer.key peer {shown.VpnPublicKey} endpoint {endpoint} allowed-ips 10.99.0.1/32,{lanNetwork} && " +
            $"ip address add 10.99.0.2/24 dev wgpeer && ip link set wgpeer up && ip route add {lanNetwork} dev wgpeer && " +
            $"ping -c 3 -W 10 {lease.Address}; echo rc=$?; wg show wgpeer latest-handshakes; wg show wgpeer transfer", TimeSpan.FromSeconds(90));
        TestContext.Out.WriteLine($"VPN peer: {tunnel}");
        Assert.That(tunnel, Does.Contain("rc=0").And.Contain($"from {lease.Address}"), $"the peer reaches the LAN PC through the tunnel\n{tunnel}\n--- unit ---\n{unit.Console()}");
        Assert.That(isp.Events().Where(e => e.Peer == subscriber.Username).Select(e => e.Kind), Is.EqualTo(new[] { "up" }), "the tunnel rides the one session");

        // the chosen category: pattern 1 carries no category lists, so it refuses nothing yet, says so, and its domain resolves
        Assert.That(await unit.ShellAsync($"grep '^# category' \"$(tr '\\0' '\\n' < /proc/$(pidof dnsmasq)/cmdline | tail -n 1)\""),
            Does.StartWith($"# category {Category}: nothing refused: no list on this unit"), "the unit's dnsmasq says why the category refuses nothing");
        var unlisted = await pc.FetchAsync($"http://{CategoryName}/");
        Assert.That((unlisted.Exit, unlisted.Address), Is.EqualTo((0, InternetAddress)), $"no list yet: {CategoryName} resolves\n{unlisted.Output}");
        // the operator's lists, an update program of their own (no OS, no restart), sent by a forced check: the unit
        // installs them and refuses the category's domain from then on, its one PPPoE session kept throughout
        clock.Restart();
        await _lab.Store.Units.SetTargetPatternAsync(mac, LabCatalogue.ListsPattern);
        await _lab.ForceCheckAsync(mac);
        await unit.WaitReadyAsync(LabCatalogue.ListsPattern, TimeSpan.FromMinutes(5));
        var toLists = clock.Elapsed;
        Assert.That(unit.Console(), Does.Contain($"refreshed (update {LabCatalogue.ListsUpdate} installed)"), "the services were refreshed after the update");
        var listed = await pc.FetchAsync($"http://{CategoryName}/");
        TestContext.Out.WriteLine($"LAN PC: {listed.Output}");
        Assert.That((listed.Exit, listed.Refusal), Is.EqualTo((1, "NXDOMAIN")), $"the category's domain is refused once its list is installed\n{listed.Output}\n--- unit ---\n{unit.Console()}");
        var other = await pc.FetchAsync($"http://{IspGuest.WebServerName}/");
        Assert.That((other.Exit, other.Page), Is.EqualTo((0, InternetContent)), $"other names still resolve\n{other.Output}");
        Assert.That(isp.Events().Where(e => e.Peer == subscriber.Username).Select(e => e.Kind), Is.EqualTo(new[] { "up" }),
            $"no restart and no redial for the lists\n--- ISP ---\n{isp.Console()}");

        // `data` wiped while the unit is off: the recovery OS rebuilds it, the unit provisions again over the access point,
        // dials its subscriber account and gets its services back from the host. Its WireGuard key is derived from the
        // factory secret, so the host shows the same key, and the peer, with its own configuration kept and pointed at the
        // endpoint the host shows now (a new session may have a new address), reaches the LAN PC through the tunnel again
        var beforeWipe = (await _lab.UnitAsync(mac))!;
        await unit.PowerOffAsync();
        unit.CorruptPartition("data");
        clock.Restart();
        unit.PowerOn();
        await unit.WaitAsync(() => unit.Console().Contains("starting the recovery OS from prom: data unreadable"), TimeSpan.FromSeconds(90),
            "the boot program's fall back to the recovery OS");
        await unit.WaitReadyAsync(LabCatalogue.ListsPattern, BootToReady, async () =>
            (await _lab.UnitAsync(mac)) is { WanAddress: not null, VpnPublicKey: not null } u && u.VpnReportedAt != beforeWipe.VpnReportedAt);
        var toRecovered = clock.Elapsed;
        var recovered = (await _lab.UnitAsync(mac))!;
        Assert.That(unit.Console(), Does.Contain("rebuilding data"), "the recovery OS rebuilt data");
        Assert.That(isp.Events().Count(e => e.Peer == subscriber.Username && e.Kind == "up"), Is.EqualTo(2), $"a new subscriber session after the recovery\n--- ISP ---\n{isp.Console()}");
        Assert.That((recovered.VpnPublicKey, recovered.VpnListenPort), Is.EqualTo((shown.VpnPublicKey, (long?)VpnPort)), "the host shows the same public key and port after the wipe");
        // The peer still holds the session of its last handshake, which the restarted unit no longer knows: WireGuard sends
        // on it until no answer for 15 s (keepalive 10 s + rekey 5 s) makes it start a new handshake (the session is younger
        // than WireGuard's 120 s rekey time here). So the peer pings until the PC answers (60 s at most) and the time that
        // took is written out
        var again = await isp.ShellAsync(
            $"wg set wgpeer peer {recovered.VpnPublicKey} endpoint {recovered.WanAddress}:{recovered.VpnListenPort} && start=$(date +%s) && rc=1 && " +
            $"while [ $(( $(date +%s) - start )) -lt 60 ]; do if ping -c 1 -W 2 {lease.Address}; then rc=0; break; fi; sleep 1; done; " +
            "echo rc=$rc waited=$(( $(date +%s) - start )); wg show wgpeer latest-handshakes", TimeSpan.FromSeconds(120));
        TestContext.Out.WriteLine($"VPN peer after the wipe: {again}");
        Assert.That(again, Does.Contain("rc=0").And.Contain($"from {lease.Address}"),
            $"the same peer reaches the LAN PC through the tunnel after the wipe\n{again}\n--- unit ---\n{unit.Console()}");
        Assert.That(Handshake(again), Is.GreaterThan(Handshake(tunnel)), "through a new handshake with the key the host showed before the wipe");
        TestContext.Out.WriteLine($"ISP guest and LAN PC up: {guestsUp.TotalSeconds:0.0} s; unit power-on to Ready over PPPoE: {toReady.TotalSeconds:0.0} s, to the PC's lease: {toLease.TotalSeconds:0.0} s; " +
            $"forced check to Ready with the category lists: {toLists.TotalSeconds:0.0} s; power-on after the wipe of data to Ready: {toRecovered.TotalSeconds:0.0} s");
    }

    /// <summary>The time (seconds since 1970) of the peer's latest handshake, from `wg show wgpeer latest-handshakes` in a shell's output.</summary>
    private static long Handshake(string output)
    {
        var match = Regex.Match(output, @"=\t(\d+)\s*$", RegexOptions.Multiline);
        Assert.That(match.Success, Is.True, $"a latest-handshakes line in\n{output}");
        return long.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>On the content filter of test 6's unit, and a name the lab's DNS server answers.</summary>
    private const string FilteredName = "ads.example";

    /// <summary>Test 6's unit's WireGuard port.</summary>
    private const int VpnPort = 51820;

    /// <summary>The category test 6's unit chooses, and a name on its list (<see cref="LabCatalogue.FilterLists"/>) that the lab's DNS server answers.</summary>
    private const string Category = "malware";
    private const string CategoryName = "malware.example";

    /// <summary>The MAC of the second LAN PC of the connection-sharing test.</summary>
    private const string SecondPcMac = "52:54:00:1a:00:02";

    /// <summary>A connection to the lab's web server in /proc/net/nf_conntrack: the original source and the reply's destination.</summary>
    [GeneratedRegex(@"src=(\S+) dst=198\.51\.100\.80 sport=\d+ dport=80 src=198\.51\.100\.80 dst=(\S+) sport=80 ")]
    private static partial Regex ConntrackWeb();

    private static uint Ipv4(string address) => System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(System.Net.IPAddress.Parse(address).GetAddressBytes());
}

/// <summary>One access network guest of the ISP lab (isp-run.sh beside this file), with its console (the access concentrator's log).</summary>
public sealed partial class IspGuest : LabGuest
{
    private IspGuest(string directory, int accessPort, int? slowPort, IReadOnlyDictionary<string, string> environment)
        : base("isp-run.sh", environment, directory, "ISP guest")
    {
        AccessEndpoint = Loopback(accessPort);
        SlowEndpoint = slowPort is { } port ? Loopback(port) : null;
    }

    private static string Loopback(int port) => $"127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}";

    public static string ImageDirectory => Path.Combine(QemuLab.RepositoryRoot, "out", "isp-lab");

    /// <summary>The lab's DNS server (dnsmasq in the guest, isp-run.sh's DNS_IP; the DNS server its sessions are given).</summary>
    public const string DnsAddress = "192.0.2.53";

    /// <summary>The name the lab's DNS server gives the lab's "internet" web server (isp-run.sh's INTERNET_NAMES).</summary>
    public const string WebServerName = "www.lab.example";

    public string AccessEndpoint { get; }

    /// <summary>The slow line kept for provisioning (isp-run.sh SLOW_PORT), when the guest has one: a unit's provisioning port connects here.</summary>
    public string? SlowEndpoint { get; }

    /// <summary>Fails the test (never skips it) when the guest's image is missing.</summary>
    public static void RequireImage() => RequireImage(ImageDirectory, "isp-lab-image");

    /// <summary>With IPoE (isp-run.sh IPOE=on): the ISP's address on the access port, the units' router.</summary>
    public const string IpoeRouter = "10.65.0.1";

    /// <summary>
    /// Boots a guest whose RADIUS server accepts <paramref name="accounts"/> (CHAP), linked to the lab's server; with
    /// <paramref name="ipoe"/>, its access port also carries IP straight (DHCP from 10.65.0.100-119, router
    /// <see cref="IpoeRouter"/>), as a fibre line without PPPoE does; with <paramref name="slowLine"/>, a second access
    /// port (<see cref="SlowEndpoint"/>), a slow line with its own access concentrator (the patent's variant 3).
    /// </summary>
    public static async Task<IspGuest> StartAsync(QemuLab lab, string name, IReadOnlyList<(string User, string Password)> accounts, bool ipoe = false, bool slowLine = false)
    {
        var dir = QemuLab.NewGuestDirectory(lab, name);
        var file = Path.Combine(dir, "accounts");
        foreach (var (user, password) in accounts)
        {
            Assert.That(WanAccountGrammar.Problem(new WanAccount("pppoe", user, password)), Is.Null);
            // the lab's accounts file is USER PASSWORD a line, written into FreeRADIUS's users as quoted values (which
            // expand %{...}): the guest refuses a space or a % the WAN grammar would allow
            Assert.That(user + password, Does.Not.Contain(' ').And.Not.Contain('%'), "an account the ISP lab can hold");
        }
        await File.WriteAllTextAsync(file, string.Concat(accounts.Select(a => $"{a.User} {a.Password}\n")));
        var port = TestServer.FreePort();
        int? slow = slowLine ? TestServer.FreePort() : null;
        return new IspGuest(dir, port, slow, new Dictionary<string, string>
        {
            ["SLOW_PORT"] = slow?.ToString(CultureInfo.InvariantCulture) ?? "",
            ["ACCESS_PORT"] = port.ToString(CultureInfo.InvariantCulture),
            ["ACCOUNTS"] = file,
            ["ISP_DIR"] = ImageDirectory,
            ["SERVER_PORT"] = lab.Port.ToString(CultureInfo.InvariantCulture),
            ["MQTT_PORT"] = lab.MqttPort.ToString(CultureInfo.InvariantCulture),
            ["ACCESS_POINT_TOKEN"] = QemuLab.AccessPointToken,
            ["SERVER_CERT"] = lab.CertificatePath,
            ["IPOE"] = ipoe ? "on" : "",
        });
    }

    /// <summary>Waits for the access concentrator (the guest's init prints a line when pppoe-server runs).</summary>
    public Task WaitReadyAsync(TimeSpan timeout) =>
        WaitAsync(() => Console().Contains("isp: access concentrator", StringComparison.Ordinal), timeout, "the access concentrator");

    /// <summary>
    /// Reads <paramref name="read"/> until <paramref name="settled"/> holds or <paramref name="timeout"/> passes, and returns
    /// the last reading: for what the guest settles a moment after the event waited for (a pppd still exiting).
    /// </summary>
    public static async Task<T> SettledAsync<T>(Func<Task<T>> read, Func<T, bool> settled, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        var value = await read();
        while (!settled(value) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(500);
            value = await read();
        }
        return value;
    }

    /// <summary>
    /// One thing the access concentrator logged about a session: up, down (the ip-up/ip-down hooks), refused (pppd),
    /// dropped (isp-drop-session).
    /// </summary>
    /// <param name="Access">For "up": what the session may reach, "internet" (a subscriber ISP's account) or "garden" (the provisioning access point's: only the initial setting server).</param>
    /// <param name="Line">For "up" and "down": the access port the session is on, "access" or "slow" (<see cref="SlowEndpoint"/>).</param>
    public sealed record SessionEvent(string Kind, string Peer, string? Remote, string? Access = null, string? Line = null);

    /// <summary>The packets the walled garden dropped so far (the counters of its rules in `nft list table ip isp`).</summary>
    public async Task<long> GardenDropsAsync()
    {
        var table = await ShellAsync("nft list table ip isp");
        var counters = GardenCounter().Matches(table);
        if (counters.Count != 2) { throw new IOException($"ISP guest: not the walled garden's two rules in\n{table}"); }
        return counters.Sum(m => long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture));
    }

    /// <summary>The PADRs (session requests) and PADTs (hang-ups) the access port received so far (counters in the guest's `netdev` table).</summary>
    public async Task<(long Padr, long Padt)> DiscoveryReceivedAsync()
    {
        var table = await ShellAsync("nft list table netdev isp-access");
        var counters = DiscoveryCounter().Matches(table).ToDictionary(m => m.Groups[2].Value, m => long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture));
        if (!counters.TryGetValue("PADR", out var padr) || !counters.TryGetValue("PADT", out var padt))
        {
            throw new IOException($"ISP guest: no PADR and PADT counters in\n{table}");
        }
        return (padr, padt);
    }

    /// <summary>The sessions' events in the order logged.</summary>
    public List<SessionEvent> Events()
    {
        var events = new List<SessionEvent>();
        foreach (var line in Console().Split('\n'))
        {
            if (Hook().Match(line) is { Success: true } hook)
            {
                events.Add(new SessionEvent(hook.Groups[1].Value, hook.Groups[2].Value, hook.Groups[3].Value,
                    hook.Groups[5].Success ? hook.Groups[5].Value : null, hook.Groups[4].Success ? hook.Groups[4].Value : null));
            }
            else if (Refusal().Match(line) is { Success: true } refusal)
            {
                events.Add(new SessionEvent("refused", refusal.Groups[1].Value, null));
            }
            else if (Dropped().Match(line) is { Success: true } dropped)
            {
                events.Add(new SessionEvent("dropped", dropped.Groups[1].Value, null));
            }
        }
        return events;
    }

    /// <summary>One line FreeRADIUS wrote: its answer (Access-Accept, Access-Reject) or an accounting record (Start, Stop).</summary>
    public sealed record RadiusEvent(string Kind, string User, string? Address);

    /// <summary>FreeRADIUS's answers and accounting records, in the order logged.</summary>
    public List<RadiusEvent> Radius()
    {
        var events = new List<RadiusEvent>();
        foreach (var line in Console().Split('\n'))
        {
            if (RadiusAnswer().Match(line) is { Success: true } answer)
            {
                events.Add(new RadiusEvent(answer.Groups[1].Value, answer.Groups[2].Value, null));
            }
            else if (RadiusAccounting().Match(line) is { Success: true } record)
            {
                events.Add(new RadiusEvent(record.Groups[1].Value, record.Groups[2].Value, record.Groups[3].Value));
            }
        }
        return events;
    }

    /// <summary>FreeRADIUS's lookups of a unit's password on the initial setting server: the user name and the HTTP status (none: no answer).</summary>
    public List<(string User, string Status)> AccessPointLookups() =>
        Console().Split('\n').Select(l => AccessPointLine().Match(l)).Where(m => m.Success).Select(m => (m.Groups[1].Value, m.Groups[2].Value)).ToList();

    /// <summary>How many requests for <paramref name="path"/> reached the lab's internet web server (its `url:` log lines).</summary>
    public int OriginRequests(string path) =>
        Console().Split('\n').Count(l => l.EndsWith($": url:{path}", StringComparison.Ordinal) || l.EndsWith($": url:{path}\r", StringComparison.Ordinal));

    /// <summary>How many HTTPS requests for <paramref name="path"/> reached the lab's internet (openssl s_server's `FILE:` lines, no leading slash).</summary>
    public int OriginTlsRequests(string path) =>
        Console().Split('\n').Count(l => l.TrimEnd('\r').EndsWith($"FILE:{path.TrimStart('/')}", StringComparison.Ordinal));

    /// <summary>The SHA-256 fingerprint of the lab internet's own HTTPS certificate, as <c>openssl x509 -fingerprint -sha256</c> prints it.</summary>
    public Task<string> TlsFingerprintAsync() => ShellAsync("openssl x509 -in /etc/lab-tls/cert.pem -noout -fingerprint -sha256");

    /// <summary>One message of the IPoE DHCP server (dnsmasq): DHCPDISCOVER, DHCPOFFER, DHCPREQUEST, DHCPACK... with the address (none for a discover) and the client's MAC.</summary>
    public sealed record DhcpEvent(string Kind, string? Address, string Mac);

    /// <summary>What the IPoE DHCP server logged about <paramref name="mac"/>, in order.</summary>
    public List<DhcpEvent> Dhcp(string mac) =>
        Console().Split('\n').Select(l => DhcpLine().Match(l)).Where(m => m.Success && m.Groups[3].Value == mac)
            .Select(m => new DhcpEvent(m.Groups[1].Value, m.Groups[2].Success ? m.Groups[2].Value : null, m.Groups[3].Value)).ToList();

    /// <summary>One query the lab's DNS server received: its type (A, AAAA...), the name and the address it came from.</summary>
    public sealed record DnsQuery(string Type, string Name, string From);

    /// <summary>
    /// The queries the lab's DNS server logged (dnsmasq's log-queries) that came from outside the guest, in the order
    /// received (the guest's own check of its DNS server at start, from <see cref="DnsAddress"/>, is left out).
    /// </summary>
    public List<DnsQuery> DnsQueries() =>
        Console().Split('\n').Select(l => DnsQueryLine().Match(l)).Where(m => m.Success)
            .Select(m => new DnsQuery(m.Groups[1].Value, m.Groups[2].Value, m.Groups[3].Value)).Where(q => q.From != DnsAddress).ToList();

    [GeneratedRegex(@"dnsmasq-dhcp\[\d+\]: (DHCP[A-Z]+)\(access\) (?:(\d{1,3}(?:\.\d{1,3}){3}) )?([0-9a-f]{2}(?::[0-9a-f]{2}){5})")]
    private static partial Regex DhcpLine();

    [GeneratedRegex(@"isp: session (up|down) peer=(\S*) remote=(\S+)(?:.* line=(\S+))?(?:.* access=(\S+))?")]
    private static partial Regex Hook();

    [GeneratedRegex("pppd\\[\\d+\\]: Peer \"?([^\" ]+)\"? failed CHAP authentication")]
    private static partial Regex Refusal();

    [GeneratedRegex(@"counter packets (\d+) bytes \d+ drop comment ""walled garden""")]
    private static partial Regex GardenCounter();

    [GeneratedRegex(@"counter packets (\d+) bytes \d+ comment ""(PADR|PADT) from a unit""")]
    private static partial Regex DiscoveryCounter();

    [GeneratedRegex(@"isp: session dropped peer=(\S+)")]
    private static partial Regex Dropped();

    [GeneratedRegex(@"radius: (Access-Accept|Access-Reject) user=(\S*)")]
    private static partial Regex RadiusAnswer();

    [GeneratedRegex(@"radius: accounting (Start|Stop) user=(\S*) session=\S* address=(\S+)")]
    private static partial Regex RadiusAccounting();

    [GeneratedRegex(@"dnsmasq(?:\[\d+\])?: query\[(\w+)\] (\S+) from (\S+)")]
    private static partial Regex DnsQueryLine();

    [GeneratedRegex(@"radius: access point user=(\S*) status=(\S+)")]
    private static partial Regex AccessPointLine();
}
