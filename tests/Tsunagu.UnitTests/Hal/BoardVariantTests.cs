using System.Diagnostics;
using System.Text.Json.Nodes;
using Tsunagu.Hal;

namespace Tsunagu.UnitTests.Hal;

/// <summary>
/// Board variants (board/&lt;name&gt;/variants/): image/board-variant.sh writes each whole (the board's description with
/// the variant's ports) into the OS image, and the unit's board-path picks one by the kernel command line's
/// tsunagu.board=, falling back to the board's own description for anything else.
/// </summary>
public class BoardVariantTests
{
    private string _dir = "";

    [SetUp]
    public void CreateDirectory() => _dir = Directory.CreateTempSubdirectory("tsunagu-board-variant-").FullName;

    [TearDown]
    public void RemoveDirectory() => Directory.Delete(_dir, recursive: true);

    private static string Root => BoardAndRunnerTests.RepositoryRoot();

    public static IEnumerable<string> Variants() =>
        Directory.EnumerateDirectories(Path.Combine(BoardAndRunnerTests.RepositoryRoot(), "board"))
            .SelectMany(b => Directory.Exists(Path.Combine(b, "variants")) ? Directory.EnumerateFiles(Path.Combine(b, "variants"), "*.json") : [])
            .Select(f => Path.GetRelativePath(BoardAndRunnerTests.RepositoryRoot(), f)).Order(StringComparer.Ordinal);

    [Test]
    public void There_is_a_variant_to_check() => Assert.That(Variants(), Does.Contain(Path.Combine("board", "qemu-x86_64", "variants", "dual-wan.json")));

    [TestCaseSource(nameof(Variants))]
    public void Each_variant_is_its_board_with_the_variants_ports_and_reads_as_a_board(string variant)
    {
        var board = Path.Combine(Path.GetDirectoryName(Path.GetDirectoryName(variant))!, "board.json");
        var (code, output, error) = Run("bash", "image/board-variant.sh", board, variant);
        Assert.That(code, Is.Zero, error);
        var merged = JsonNode.Parse(output)!.AsObject();
        var own = JsonNode.Parse(File.ReadAllText(Path.Combine(Root, board)))!.AsObject();
        var ports = JsonNode.Parse(File.ReadAllText(Path.Combine(Root, variant)))!["interfaces"]!;
        Assert.That(JsonNode.DeepEquals(merged["interfaces"], ports), "the variant's ports");
        foreach (var (key, value) in own.Where(p => p.Key != "interfaces"))
        {
            Assert.That(JsonNode.DeepEquals(merged[key], value), $"{key}: the board's own");
        }
        Assert.That(merged.Select(p => p.Key).Order(), Is.EqualTo(own.Select(p => p.Key).Order()), "nothing added or left out");
        var description = BoardDescription.Parse(output, variant);
        Assert.That(description.Name, Is.EqualTo(own["name"]!.GetValue<string>()), "the same board: the name the factory identity and bundles use");
    }

    [Test]
    public void The_dual_wan_variant_keeps_its_third_port_for_provisioning()
    {
        var (code, output, error) = Run("bash", "image/board-variant.sh", "board/qemu-x86_64/board.json", "board/qemu-x86_64/variants/dual-wan.json");
        Assert.That(code, Is.Zero, error);
        var board = BoardDescription.Parse(output, "dual-wan.json");
        Assert.That((board.Interfaces.Wan, board.Interfaces.Lan, board.Interfaces.ProvisioningWan, board.Interfaces.ProvisioningPort),
            Is.EqualTo(("eth0", "eth1", (string?)"eth2", "eth2")));
    }

    [TestCase("dual-wan.json", """{"name":"other","interfaces":{"wan":"eth0","lan":"eth1","vpn":"wg0"}}""", "holds only \"interfaces\" (it has: interfaces name)")]
    [TestCase("dual-wan.json", """{"partitions":[]}""", "holds only \"interfaces\" (it has: partitions)")]
    [TestCase("dual-wan.json", """[1]""", "not a JSON object")]
    [TestCase("dual-wan.json", """{"interfaces":{"wan":"eth0","vpn":"wg0"}}""", "interfaces: an object with wan, lan and vpn")]
    [TestCase("dual-wan.json", """{"interfaces":"eth0"}""", "interfaces: an object with wan, lan and vpn")]
    [TestCase("dual-wan.json", """{"interfaces":{"wan":"eth0","lan":"eth1","vpn":"wg0","provisoningWan":"eth2"}}""", "and nothing else")]
    [TestCase("dual-wan.json", """{"interfaces":{"wan":"eth0","lan":"eth1","vpn":"wg0","provisioningWan":2}}""", "optionally provisioningWan (strings)")]
    [TestCase("dual-wan.json", "{", "not a JSON object")]
    [TestCase("Dual_WAN.json", """{"interfaces":{"wan":"eth0","lan":"eth1","vpn":"wg0"}}""", "a variant's file name is 1-32 lower-case letters")]
    [TestCase("-x.json", """{"interfaces":{"wan":"eth0","lan":"eth1","vpn":"wg0"}}""", "a variant's file name is 1-32 lower-case letters")]
    public void A_variant_that_is_more_or_less_than_other_ports_is_refused_and_nothing_is_written(string name, string json, string problem)
    {
        var variant = Path.Combine(_dir, name);
        File.WriteAllText(variant, json);
        var (code, output, error) = Run("bash", "image/board-variant.sh", "board/qemu-x86_64/board.json", variant);
        Assert.That(code, Is.Not.Zero);
        Assert.That(error, Does.Contain(variant).And.Contain(problem));
        Assert.That(output, Is.Empty, "no description is written");
    }

    [TestCase("console=ttyS0 tsunagu.board=dual-wan quiet", "boards/dual-wan.json", "")]
    [TestCase("console=ttyS0 quiet", "board.json", "")]
    [TestCase("tsunagu.board=absent", "board.json", "this image has no board variant 'absent'")]
    [TestCase("tsunagu.board=../board", "board.json", "tsunagu.board='../board' is not a variant's name")]
    [TestCase("tsunagu.board=*", "board.json", "tsunagu.board='*' is not a variant's name")]
    [TestCase("tsunagu.board=", "board.json", "tsunagu.board='' is not a variant's name")]
    [TestCase("tsunagu.board=dual-wan-", "board.json", "is not a variant's name")]
    [TestCase("tsunagu.board=DUAL", "board.json", "is not a variant's name")]
    public void The_unit_runs_with_the_variant_its_command_line_names_and_its_own_board_otherwise(string cmdline, string expected, string complaint)
    {
        var etc = Path.Combine(_dir, "etc");
        Directory.CreateDirectory(Path.Combine(etc, "boards"));
        File.WriteAllText(Path.Combine(etc, "board.json"), "{}");
        File.WriteAllText(Path.Combine(etc, "boards", "dual-wan.json"), "{}");
        File.WriteAllText(Path.Combine(_dir, "cmdline"), cmdline + "\n");
        var (code, output, error) = Run("sh", ["rootfs/overlay/usr/lib/tsunagu/board-path"],
            new Dictionary<string, string> { ["TSUNAGU_CMDLINE"] = Path.Combine(_dir, "cmdline"), ["TSUNAGU_ETC"] = etc });
        Assert.That(code, Is.Zero, error);
        Assert.That(output.Trim(), Is.EqualTo(Path.Combine(etc, expected)));
        if (complaint.Length == 0) { Assert.That(error, Is.Empty); }
        else { Assert.That(error, Does.Contain(complaint).And.Contain($"using {Path.Combine(etc, "board.json")}")); }
    }

    private static (int Code, string Output, string Error) Run(string program, params string[] args) => Run(program, args, null);

    private static (int Code, string Output, string Error) Run(string program, string[] args, IReadOnlyDictionary<string, string>? environment)
    {
        var start = new ProcessStartInfo(program, args) { WorkingDirectory = Root, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var (key, value) in environment ?? new Dictionary<string, string>()) { start.Environment[key] = value; }
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, output.Result, error);
    }
}
