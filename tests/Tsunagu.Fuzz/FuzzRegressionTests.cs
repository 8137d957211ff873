using System.Text;
using System.Text.Json;
using Tsunagu.Firmware.Services;
using Tsunagu.Hal;
using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;

namespace Tsunagu.Fuzz;

/// <summary>Every input the fuzzers found a crash with, each a named test; the input is also kept in the corpus.</summary>
public class FuzzRegressionTests
{
    private static byte[] CorpusFile(string target, string name) => File.ReadAllBytes(Path.Combine(Program.CorpusDirectory, target, name));

    [Test]
    public void Boot_state_line_with_carriage_returns_before_its_newline_reads_back_as_written()
    {
        // "I\r\r\n\n": the first read kept "I\r" as a line, so the file written from it ("I\r\n...") read back as "I"
        var input = CorpusFile("boot-state", "crash-cr-before-crlf");
        var written = BootStateFile.Parse(Encoding.UTF8.GetString(input)).ToString();
        Assert.That(BootStateFile.Parse(written).ToString(), Is.EqualTo(written));
        Assert.That(written, Does.Not.Contain("\r"), "a carriage return is part of a line end, never of a line");
        Assert.That(FuzzTargets.Get("boot-state").Execute(input), Is.EqualTo(FuzzOutcome.Accepted));
    }

    [TestCase("crash-payload-without-name")]
    [TestCase("crash-payload-without-name-2")]
    [TestCase("crash-payload-without-name-3")]
    public void Manifest_payload_without_a_name_is_refused_as_a_manifest_problem(string file)
    {
        // a payload whose "name" key is misspelt reads as a null name; grouping payloads by name threw ArgumentNullException
        var e = Assert.Throws<BundleCheckException>(() => new BundleHeader(CorpusFile("manifest", file), [], 0).ParseManifest());
        Assert.That(e!.Check, Is.EqualTo(BundleCheck.Manifest));
        Assert.That(e.Message, Does.Contain("payloads: name '' is not a single path segment"));
    }

    [Test]
    public void Manifest_without_payloads_and_steps_is_refused_naming_both()
    {
        // the manifest parsed, then PayloadBytes summed a null list (ArgumentNullException)
        var e = Assert.Throws<BundleCheckException>(() => new BundleHeader(CorpusFile("manifest", "crash-no-payloads-or-steps"), [], 0).ParseManifest());
        Assert.That(e!.Message, Does.Contain("payloads: required").And.Contain("steps: required"));
    }

    [Test]
    public void Manifest_with_null_entries_or_overflowing_sizes_is_refused()
    {
        var valid = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(CorpusFile("manifest", "p1-to-p2.json"))!;
        string With(string key, string json)
        {
            var copy = valid.ToDictionary(k => k.Key, k => k.Value);
            copy[key] = JsonDocument.Parse(json).RootElement;
            return JsonSerializer.Serialize(copy);
        }
        string Refusal(string manifest) =>
            Assert.Throws<BundleCheckException>(() => new BundleHeader(Encoding.UTF8.GetBytes(manifest), [], 0).ParseManifest())!.Message;
        var sha = new string('0', 64);
        Assert.Multiple(() =>
        {
            Assert.That(Refusal(With("payloads", "[null]")), Does.Contain("payloads: an entry is null"));
            Assert.That(Refusal(With("steps", "[null]")), Does.Contain("steps[0]: null"));
            Assert.That(Refusal(With("introducesKeys", "[null]")), Does.Contain("introducesKeys: 'null'"));
            Assert.That(Refusal(With("payloads", $$"""
                [{"name":"a","kind":"script","size":9223372036854775807,"sha256":"{{sha}}"},{"name":"b","kind":"script","size":1,"sha256":"{{sha}}"}]
                """)), Does.Contain("payloads: the sizes add up to more than 2^63 - 1 bytes"));
        });
    }

    [TestCase("crash-entry-size-beyond-stream")]
    [TestCase("crash-entry-skip-beyond-stream")]
    [TestCase("crash-entry-size-overflows")]
    [TestCase("crash-sparse-entry-type")]
    [TestCase("crash-global-attributes-size")]
    public async Task Media_image_with_an_entry_the_tar_reader_cannot_read_is_refused(string file)
    {
        // the tar reader throws ArgumentOutOfRangeException (an entry size past the end of the stream), OverflowException
        // (a base-256 size beyond 64 bits), NotSupportedException (entry type 'S', a GNU sparse file; found by afl-fuzz)
        // or InvalidOperationException (a global extended attributes entry with a size field too large; found by CI's
        // short mutation pass)
        var bytes = CorpusFile("media", file);
        var e = Assert.ThrowsAsync<MediaFormatException>(() => MediaImage.InspectAsync(new MemoryStream(bytes), CancellationToken.None));
        Assert.That(e!.Message, Does.StartWith("not a readable install image"));
        Assert.ThrowsAsync<MediaFormatException>(() => MediaImage.OpenEntryAsync(new MemoryStream(bytes), "bundles/none.tsb", CancellationToken.None));
        await Task.CompletedTask;
    }

    [TestCase("crash-peer-without-public-key", "vpn.peers[0].publicKey")]
    [TestCase("crash-peer-without-allowed-ips", "vpn.peers[0].allowedIps")]
    public void Service_config_peer_field_missing_is_refused_naming_it(string file, string field)
    {
        // null reached Convert.FromBase64String (ArgumentNullException) and string.Split (NullReferenceException).
        // The fuzzer's input also mangled the peer's name, which the validator now refuses first: give the peer a
        // good name so that the missing field is what is judged.
        var json = System.Text.Json.Nodes.JsonNode.Parse(CorpusFile("service-config", file))!;
        json["vpn"]!["peers"]![0]!["name"] = "office";
        var config = JsonSerializer.Deserialize(json.ToJsonString(), ProtocolJson.Default.ServiceConfiguration)!;
        var e = Assert.Throws<InvalidServiceConfigException>(() => ServiceConfigValidator.Validate(config));
        Assert.That(e!.Field, Is.EqualTo(field));
    }

    [TestCase("firewall", "portForwards", "firewall.portForwards[0]")]
    [TestCase("dhcp", "staticLeases", "dhcp.staticLeases[0]")]
    [TestCase("vpn", "peers", "vpn.peers[0]")]
    public void Service_config_null_list_entry_is_refused_naming_it(string section, string list, string field)
    {
        var json = JsonSerializer.Deserialize<Dictionary<string, Dictionary<string, JsonElement>>>(CorpusFile("service-config", "every-service.json"))!;
        json[section][list] = JsonDocument.Parse("[null]").RootElement;
        var config = JsonSerializer.Deserialize(JsonSerializer.Serialize(json), ProtocolJson.Default.ServiceConfiguration)!;
        var e = Assert.Throws<InvalidServiceConfigException>(() => ServiceRenderer.Render(config,
            new ServiceEnvironment(BoardDescription.Simulated, "/run/tsunagu", "/data/services/state")));
        Assert.That(e!.Field, Is.EqualTo(field));
    }
}
