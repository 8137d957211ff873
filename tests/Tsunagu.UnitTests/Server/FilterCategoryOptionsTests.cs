using Microsoft.Extensions.Configuration;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server;
using Tsunagu.Server.Catalogue;

namespace Tsunagu.UnitTests.Server;

/// <summary>The content-filter categories a server offers (option FilterCategories) and the rule every stored configuration passes.</summary>
public class FilterCategoryOptionsTests
{
    private static FilterCategoryOption Entry(string? name, string? title) => new() { Name = name, Title = title };

    private static ServerOptions Offering(params FilterCategoryOption?[] entries) => new() { FilterCategories = [.. entries] };

    [Test]
    public void The_option_is_read_like_the_other_list_settings_from_arguments_and_variables()
    {
        // as Program.cs reads its settings
        var options = new ServerOptions();
        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { ["FilterCategories:1:Name"] = "malware", ["FilterCategories:1:Title"] = "Malware and phishing" })
            .AddCommandLine(["--FilterCategories:0:Name", "ads", "--FilterCategories:0:Title", "Advertising"])
            .Build();
        configuration.GetSection("Tsunagu").Bind(options);
        configuration.Bind(options);
        Assert.DoesNotThrow(options.Validate);
        Assert.That(new OfferedCategories(options).All, Is.EqualTo(new[] { ("ads", "Advertising"), ("malware", "Malware and phishing") }));
        Assert.That(new OfferedCategories(new ServerOptions()).All, Is.Empty, "none unless configured");
    }

    [Test]
    public void A_bad_entry_stops_the_start_naming_the_entry()
    {
        var cases = new (ServerOptions Options, string Says)[]
        {
            (Offering(Entry("ads", "Advertising"), Entry("Ads", "Advertising")), "Tsunagu:FilterCategories:1: Name 'Ads' is not a category name"),
            (Offering(Entry(null, "Advertising")), "Tsunagu:FilterCategories:0: Name null is not a category name"),
            (Offering(Entry("ads", "Advertising"), Entry("malware", "Malware"), Entry("ads", "Ads again")), "Tsunagu:FilterCategories:2: Name 'ads' is offered twice"),
            (Offering(Entry("ads", "")), "Tsunagu:FilterCategories:0 (ads): Title '' must be 1 to 64 characters"),
            (Offering(Entry("ads", "   ")), "Tsunagu:FilterCategories:0 (ads): Title"),
            (Offering(Entry("ads", null)), "Tsunagu:FilterCategories:0 (ads): Title null"),
            (Offering(Entry("ads", new string('a', 65))), "Tsunagu:FilterCategories:0 (ads): Title"),
            (Offering(Entry("ads", "Ads\n<script>")), "Tsunagu:FilterCategories:0 (ads): Title"),
            (Offering(Entry("ads", "Advertising"), null), "Tsunagu:FilterCategories:1: empty"),
            (Offering([.. Enumerable.Range(0, OfferedCategories.MaxOffered + 1).Select(i => Entry($"c{i}", $"C{i}"))]), "Tsunagu:FilterCategories: 257 entries; at most 256"),
        };
        foreach (var (options, says) in cases)
        {
            var e = Assert.Throws<ArgumentException>(options.Validate, says)!;
            Assert.That(e.Message, Does.StartWith(says));
            Assert.That(e.Message, Does.Not.Contain('\n'));
        }
        Assert.DoesNotThrow(Offering(Entry("ads", new string('a', 64)), Entry("a", "Ä ✓ any letters")).Validate);
    }

    private static ServiceConfiguration Choosing(IReadOnlyList<string>? categories) =>
        DemoCatalogue.StandardServices with { ContentFilter = DemoCatalogue.StandardServices.ContentFilter with { Categories = categories } };

    [Test]
    public void A_configuration_may_choose_what_is_offered_and_keep_what_it_had()
    {
        var offered = new OfferedCategories(Offering(Entry("ads", "Advertising"), Entry("malware", "Malware")));
        Assert.DoesNotThrow(() => offered.Validate(Choosing(["malware", "ads"]), null));
        Assert.DoesNotThrow(() => offered.Validate(Choosing(null), null));
        var e = Assert.Throws<InvalidServiceConfigException>(() => offered.Validate(Choosing(["ads", "x"]), null))!;
        Assert.That((e.Field, e.Message), Is.EqualTo(("contentFilter.categories[1]", "contentFilter.categories[1]: 'x' is not a category this operator offers; offered: ads, malware")));
        // one the configuration it replaces chose (offered once, no longer) stays; a new one is refused
        Assert.DoesNotThrow(() => offered.Validate(Choosing(["gambling", "ads"]), Choosing(["gambling"])));
        Assert.That(Assert.Throws<InvalidServiceConfigException>(() => offered.Validate(Choosing(["gambling", "adult"]), Choosing(["gambling"])))!.Field,
            Is.EqualTo("contentFilter.categories[1]"));
        // the grammar comes first
        Assert.That(Assert.Throws<InvalidServiceConfigException>(() => offered.Validate(Choosing(["Ads"]), null))!.Message, Does.Contain("is not a category name"));
        var none = new OfferedCategories(new ServerOptions());
        Assert.That(Assert.Throws<InvalidServiceConfigException>(() => none.Validate(Choosing(["ads"]), null))!.Message, Does.EndWith("offered: none"));
    }

    [Test]
    public void A_forms_ticks_keep_the_order_chosen_and_no_list_stays_no_list()
    {
        Assert.That(OfferedCategories.Chosen(["malware", "ads"], ["ads", "adult", "malware"]), Is.EqualTo(new[] { "malware", "ads", "adult" }));
        Assert.That(OfferedCategories.Chosen(null, []), Is.Null);
        Assert.That(OfferedCategories.Chosen(null, null), Is.Null);
        Assert.That(OfferedCategories.Chosen(["ads"], []), Is.Empty);
        Assert.That(OfferedCategories.Chosen(null, ["x", "x", null]), Is.EqualTo(new[] { "x", "" }), "what was sent is kept for the rule to refuse");
        var offered = new OfferedCategories(Offering(Entry("ads", "Advertising")));
        Assert.That(offered.Choices(["gambling", "ads"]), Is.EqualTo(new (string, string?)[] { ("ads", "Advertising"), ("gambling", null) }));
    }

    [Test]
    public void No_list_and_an_empty_list_are_the_same_field_value()
    {
        Assert.That(ServiceConfigFields.Changed(Choosing(null), Choosing([])), Is.Empty);
        Assert.That(ServiceConfigFields.Changed(Choosing(null), Choosing(["ads"])), Is.EqualTo(new[] { "contentFilter.categories" }));
        Assert.That(ServiceConfigFields.IsKnown("contentFilter.categories") && ServiceConfigFields.PortalDefault.Contains("contentFilter.categories"));
    }
}
