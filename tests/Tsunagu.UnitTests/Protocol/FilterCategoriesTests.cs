using CsCheck;
using Tsunagu.Protocol;

namespace Tsunagu.UnitTests.Protocol;

/// <summary>The content filter's category names and lists (<see cref="FilterCategories"/>).</summary>
public class FilterCategoriesTests
{
    [TestCase("ads", true)]
    [TestCase("adult-content", true)]
    [TestCase("p2p2", true)]
    [TestCase("abcdefghijklmnopqrstuvwxyz012345", true)]
    [TestCase("abcdefghijklmnopqrstuvwxyz0123456", false)]
    [TestCase("", false)]
    [TestCase("2ads", false)]
    [TestCase("-ads", false)]
    [TestCase("Ads", false)]
    [TestCase("ads.domains", false)]
    [TestCase("../ads", false)]
    [TestCase("ads\n", false)]
    [TestCase("ads_x", false)]
    [TestCase(null, false)]
    public void A_category_name_is_a_lower_case_word(string? name, bool valid)
    {
        Assert.That(FilterCategories.IsName(name), Is.EqualTo(valid));
        if (valid)
        {
            Assert.That(FilterCategories.FileName(name!), Is.EqualTo(name + ".domains"));
        }
        else
        {
            Assert.Throws<ArgumentException>(() => FilterCategories.FileName(name!));
        }
    }

    [Test]
    public void A_list_gives_its_domains_lower_cased_once_each_in_file_order_and_skips_comments_and_blank_lines()
    {
        var domains = FilterCategories.Parse("ads.domains", "# the ads list\r\n\nTracker.Example\n  ads.example  \n\t# indented comment\ntracker.example\nx.ads.example");
        Assert.That(domains, Is.EqualTo(new[] { "tracker.example", "ads.example", "x.ads.example" }));
        Assert.That(FilterCategories.Parse("empty.domains", ""), Is.Empty);
    }

    [TestCase("ok.example\nbad domain.example\n", 2, "'bad domain.example'")]
    [TestCase("ok.example\n\naddress=/x/1.2.3.4\n", 3, "'address=/x/1.2.3.4'")]
    [TestCase("ok.example\n*.wild.example\n", 2, "'*.wild.example'")]
    [TestCase("a.example\u0000\n", 1, "is not a domain name")]
    [TestCase("ok.example\n-lead.example", 2, "'-lead.example'")]
    public void A_line_that_is_not_a_domain_refuses_the_whole_list_naming_file_and_line(string text, int line, string shown)
    {
        var e = Assert.Throws<InvalidFilterListException>(() => FilterCategories.Parse("ads.domains", text))!;
        Assert.That(e.Line, Is.EqualTo(line));
        Assert.That(e.File, Is.EqualTo("ads.domains"));
        Assert.That(e.Message, Does.StartWith($"ads.domains:{line}: ").And.Contain(shown));
    }

    [Test]
    public void A_list_longer_than_the_limit_is_refused_and_one_at_the_limit_is_taken()
    {
        var atLimit = string.Join('\n', Enumerable.Range(0, FilterCategories.MaxDomains).Select(i => $"d{i}.example"));
        Assert.That(FilterCategories.Parse("big.domains", atLimit + "\nd0.example"), Has.Count.EqualTo(FilterCategories.MaxDomains));
        var e = Assert.Throws<InvalidFilterListException>(() => FilterCategories.Parse("big.domains", atLimit + "\none-more.example"))!;
        Assert.That(e.Line, Is.EqualTo(FilterCategories.MaxDomains + 1));
        Assert.Throws<InvalidFilterListException>(() => FilterCategories.Parse("huge.domains", new string('a', (int)FilterCategories.MaxBytes + 1)));
    }

    [Test]
    public void Whatever_a_list_holds_every_domain_taken_is_a_domain_name_without_a_control_character()
    {
        Gen.String[Gen.Char["abyzAZ09.-_ #*/=,\n\r\t\0\u0085é"], 0, 200].Sample(text =>
        {
            try
            {
                foreach (var d in FilterCategories.Parse("x.domains", text))
                {
                    Assert.That(ServiceConfigValidator.IsDomainName(d) && !d.Any(char.IsControl) && d == d.ToLowerInvariant(), Is.True, d);
                }
            }
            catch (InvalidFilterListException)
            {
                // refused as a whole: nothing taken
            }
        });
    }
}
