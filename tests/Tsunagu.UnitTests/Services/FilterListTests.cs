using Tsunagu.Firmware.Services;
using Tsunagu.Firmware.Storage;
using Tsunagu.Hal.Simulated;
using Tsunagu.Protocol;

namespace Tsunagu.UnitTests.Services;

/// <summary>
/// The content filter's categories on the unit: the lists of the installed application filter-lists rendered into
/// dnsmasq's configuration, and the services refreshed when an update changes the lists.
/// </summary>
public class FilterListTests
{
    private string _root = "";
    private string _lists = "";
    private StateStore _store = null!;
    private SimulatedServiceManager _manager = null!;
    private readonly List<string> _log = [];

    [SetUp]
    public void SetUp()
    {
        _root = Path.Combine(Path.GetTempPath(), "tsunagu-filter-" + Guid.NewGuid().ToString("N"));
        _lists = Path.Combine(_root, "apps", FilterCategories.Application, "current");
        Directory.CreateDirectory(_lists);
        _store = StateStore.Open(_root);
        _manager = new SimulatedServiceManager();
        _log.Clear();
    }

    [TearDown]
    public void TearDown()
    {
        _store.Dispose();
        Directory.Delete(_root, recursive: true);
    }

    private ServiceEnvironment Environment => ServiceConfigTests.WithHdd with
    {
        RunDirectory = Path.Combine(_root, "run"),
        StateDirectory = Path.Combine(_root, "state"),
        FilterListDirectory = _lists,
    };

    private static ServiceConfiguration Choosing(params string[] categories) =>
        ServiceConfigTests.Valid() with { ContentFilter = new ContentFilterConfig(true, ["own.example"], null, categories) };

    private void List(string category, string text) => File.WriteAllText(Path.Combine(_lists, category + ".domains"), text);

    private string Dnsmasq(ServiceConfiguration config) => ServiceRenderer.Render(config, Environment)[ServiceRenderer.Dnsmasq];

    private static string[] Refused(string dnsmasq) =>
        dnsmasq.Split('\n').Where(l => l.StartsWith("address=/", StringComparison.Ordinal)).Select(l => l["address=/".Length..^1]).ToArray();

    [Test]
    public void The_domains_of_each_chosen_category_and_the_subscribers_own_are_refused_and_an_unchosen_category_is_not()
    {
        List("ads", "# advertising\ntracker.example\nAds.Example\n");
        List("malware", "malware.example\n");
        List("gambling", "casino.example\n");
        var dnsmasq = Dnsmasq(Choosing("malware", "ads"));
        Assert.That(Refused(dnsmasq), Is.EqualTo(new[] { "own.example", "malware.example", "tracker.example", "ads.example" }));
        Assert.That(dnsmasq, Does.Contain("# category malware: 1 domains\n").And.Contain("# category ads: 2 domains\n"));
        var dir = Path.Combine(_root, "check");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, ServiceRenderer.Dnsmasq), dnsmasq);
        DaemonTools.Require().Check(dir, [ServiceRenderer.Dnsmasq]);
    }

    [Test]
    public void With_the_filter_off_no_category_is_refused()
    {
        List("ads", "tracker.example\n");
        var config = Choosing("ads");
        Assert.That(Refused(Dnsmasq(config with { ContentFilter = config.ContentFilter with { Enabled = false } })), Is.Empty);
    }

    [Test]
    public void A_category_without_a_list_or_with_a_bad_one_refuses_nothing_and_says_why_while_the_rest_is_rendered()
    {
        List("ads", "tracker.example\n");
        List("broken", "fine.example\nnot a domain\naddress=/evil/1.2.3.4\n");
        var dnsmasq = Dnsmasq(Choosing("missing", "broken", "ads"));
        Assert.That(Refused(dnsmasq), Is.EqualTo(new[] { "own.example", "tracker.example" }), "nothing of the bad list, not even its good line");
        Assert.That(dnsmasq, Does.Contain("# category missing: nothing refused: no list on this unit (the application filter-lists has no missing.domains)\n"));
        Assert.That(dnsmasq, Does.Contain("# category broken: nothing refused: list refused: broken.domains:2: 'not a domain' is not a domain name\n"));
        var noLists = Environment with { FilterListDirectory = null };
        Assert.That(Refused(ServiceRenderer.Render(Choosing("ads"), noLists)[ServiceRenderer.Dnsmasq]), Is.EqualTo(new[] { "own.example" }));
    }

    [Test]
    public void Lists_that_would_together_pass_the_limit_refuse_the_one_that_passes_it_and_keep_the_others()
    {
        static string Domains(string prefix, int count) => string.Join('\n', Enumerable.Range(0, count).Select(i => $"{prefix}{i}.example"));
        // each list within its own limit, together at the limit but for ten domains
        var rest = FilterCategories.MaxDomainsChosen - 2 * FilterCategories.MaxDomains - 10;
        List("a", Domains("a", FilterCategories.MaxDomains));
        List("b", Domains("b", FilterCategories.MaxDomains));
        List("c", Domains("c", rest));
        List("small", Domains("s", 10));
        List("extra", Domains("e", 11));
        var lists = FilterLists.Load(_lists, ["a", "b", "c", "extra", "small"]);
        Assert.That(lists.Select(l => l.Domains?.Count).ToArray(), Is.EqualTo(new int?[] { FilterCategories.MaxDomains, FilterCategories.MaxDomains, rest, null, 10 }),
            "a, b, c and small together are at the limit; extra would pass it");
        Assert.That(lists[3].Problem, Does.Contain($"its 11 domains and the {FilterCategories.MaxDomainsChosen - 10} of the categories before it are more than {FilterCategories.MaxDomainsChosen}"));
    }

    [Test]
    public void A_list_file_larger_than_the_limit_is_refused_unread()
    {
        using (var file = File.Create(Path.Combine(_lists, "huge.domains")))
        {
            file.SetLength(FilterCategories.MaxBytes + 1);
        }
        var list = FilterLists.Load(_lists, ["huge"]).Single();
        Assert.That((list.Domains, list.Problem), Is.EqualTo(((IReadOnlyList<string>?)null, $"huge.domains refused: {FilterCategories.MaxBytes + 1} bytes; at most {FilterCategories.MaxBytes}")));
    }

    [Test]
    public async Task A_refresh_with_the_configuration_in_force_unreadable_leaves_every_service_running_as_it_is()
    {
        using var applier = new ServiceApplier(_root, _manager, Environment, _store, TimeProvider.System, _log.Add, TimeSpan.Zero);
        await applier.StartAsync(CancellationToken.None);
        await applier.ApplyAsync(1, Choosing("ads"), CancellationToken.None);
        var running = _manager.Running.ToList();
        File.WriteAllText(Path.Combine(applier.Root, "current", "configuration.json"), "{ not json");
        List("ads", "tracker.example\n");
        _manager.Events.Clear();
        await applier.RefreshAsync("update u1 installed", CancellationToken.None);
        Assert.That(_manager.Events, Is.Empty, "nothing stopped, started or restarted: no fall back to the fail-closed firewall");
        Assert.That(_manager.Running, Is.EqualTo(running));
        Assert.That(_log, Has.Some.Contains("services: refresh (update u1 installed) skipped: the configuration in force is unreadable"));
    }

    [Test]
    public void A_refusal_that_quotes_control_characters_stays_one_comment_line()
    {
        List("ads", "ok.example\nx\u2028server=6.6.6.6\n");
        var dnsmasq = Dnsmasq(Choosing("ads"));
        var comment = dnsmasq.Split('\n').Single(l => l.StartsWith("# category ads:", StringComparison.Ordinal));
        Assert.That(comment, Does.Contain("nothing refused: list refused: ads.domains:2:"));
        Assert.That(dnsmasq.Split('\n').Where(l => !l.StartsWith('#')), Has.None.Contains("6.6.6.6"));
        Assert.That(dnsmasq.Where(c => c != '\n').Any(RenderGuard.IsLineBreaking), Is.False);
    }

    [Test]
    public async Task An_update_that_changes_a_list_restarts_dnsmasq_alone_with_the_new_domains_and_one_that_does_not_touches_nothing()
    {
        using var applier = new ServiceApplier(_root, _manager, Environment, _store, TimeProvider.System, _log.Add, TimeSpan.Zero);
        await applier.StartAsync(CancellationToken.None);
        await applier.ApplyAsync(1, Choosing("ads"), CancellationToken.None);
        var file = Path.Combine(applier.Root, "current", ServiceRenderer.Dnsmasq);
        Assert.That(Refused(File.ReadAllText(file)), Is.EqualTo(new[] { "own.example" }), "no list yet");

        // the update installs the list: the revision in force is rendered again and only dnsmasq restarts (it reads its configuration at start)
        List("ads", "tracker.example\n");
        _manager.Events.Clear();
        await applier.RefreshAsync("update u1 installed", CancellationToken.None);
        Assert.That(_manager.Events, Is.EqualTo(new[] { "restart dnsmasq" }));
        Assert.That(Refused(File.ReadAllText(file)), Is.EqualTo(new[] { "own.example", "tracker.example" }));
        Assert.That(applier.CurrentRevision(), Is.EqualTo(1), "the same revision, rendered again");
        Assert.That(Directory.GetFiles(Path.Combine(applier.Root, "rev-1"), "*.new"), Is.Empty);
        Assert.That(_log, Has.Some.Contains("services: dnsmasq.conf of revision 1 rendered again"));
        Assert.That(_log, Has.Some.Contains("services: revision 1 refreshed (update u1 installed)"));

        // nothing the rendering reads changed: nothing is written or reloaded
        var written = File.GetLastWriteTimeUtc(file);
        _manager.Events.Clear();
        await applier.RefreshAsync("update u2 installed", CancellationToken.None);
        Assert.That(_manager.Events, Is.Empty);
        Assert.That(File.GetLastWriteTimeUtc(file), Is.EqualTo(written));

        // rolled back: the list is gone again, and so are its domains
        File.Delete(Path.Combine(_lists, "ads.domains"));
        await applier.RefreshAsync("update u1 rolled back", CancellationToken.None);
        Assert.That(Refused(File.ReadAllText(file)), Is.EqualTo(new[] { "own.example" }));
    }

    [Test]
    public async Task A_restart_after_the_lists_changed_starts_dnsmasq_with_the_new_ones()
    {
        using (var applier = new ServiceApplier(_root, _manager, Environment, _store, TimeProvider.System, _log.Add, TimeSpan.Zero))
        {
            await applier.StartAsync(CancellationToken.None);
            await applier.ApplyAsync(1, Choosing("ads"), CancellationToken.None);
        }
        // an update wrote the list and the unit lost power before the services were refreshed
        List("ads", "tracker.example\n");
        _manager = new SimulatedServiceManager();
        using var booted = new ServiceApplier(_root, _manager, Environment, _store, TimeProvider.System, _log.Add, TimeSpan.Zero);
        await booted.StartAsync(CancellationToken.None);
        Assert.That(Refused(File.ReadAllText(Path.Combine(booted.Root, "current", ServiceRenderer.Dnsmasq))), Is.EqualTo(new[] { "own.example", "tracker.example" }));
        Assert.That(_manager.Running, Does.Contain("dnsmasq"));
    }

    [Test]
    public async Task Refreshing_without_a_configuration_in_force_keeps_the_fail_closed_firewall()
    {
        using var applier = new ServiceApplier(_root, _manager, Environment, _store, TimeProvider.System, _log.Add, TimeSpan.Zero);
        await applier.StartAsync(CancellationToken.None);
        _manager.Events.Clear();
        await applier.RefreshAsync("update u1 installed", CancellationToken.None);
        Assert.That(_manager.Events, Is.Empty);
        Assert.That(_manager.Running, Is.EqualTo(new[] { "firewall" }));
    }
}
