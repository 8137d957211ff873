using Tsunagu.Hal;

namespace Tsunagu.UnitTests.Hal;

/// <summary>The board description: partitions, LEDs, indications and buttons, and its validation.</summary>
public class BoardDescriptionTests : FakeRootTests
{
    internal const string QemuBoard = """
        {
          "name": "qemu-x86_64",
          "interfaces": { "wan": "eth0", "lan": "eth1", "vpn": "wg0" },
          "hdd": { "mountPoint": "/hdd" },
          "partitions": [ {"name":"prom","sizeMiB":96}, {"name":"factory","sizeMiB":1}, {"name":"slot_a","sizeMiB":64},
                          {"name":"slot_b","sizeMiB":64}, {"name":"data","sizeMiB":128} ],
          "hddDisk": { "sizeMiB": 256 },
          "leds": [ {"name":"power","class":"input*::numlock"}, {"name":"status","class":"input*::capslock"},
                    {"name":"wan","class":"input*::scrolllock"}, {"name":"example-gpio","gpio":{"chip":0,"line":17,"activeLow":true}} ],
          "indications": {
            "booting": {"power":"on","status":"off","wan":"off"},
            "provisioning": {"power":"on","status":"blink","wan":"off","example-gpio":"blink"},
            "connecting": {"power":"on","status":"on","wan":"blink"},
            "updating": {"power":"blink","status":"on","wan":"on"},
            "ready": {"power":"on","status":"on","wan":"on","example-gpio":"on"},
            "error": {"power":"on","status":"blink","wan":"blink"}
          },
          "buttons": [ {"name":"reset","evdev":{"deviceName":"AT Translated Set 2 keyboard","keyCode":88},"longPressSeconds":5},
                       {"name":"wps","gpio":{"chip":0,"line":4,"activeLow":true}} ]
        }
        """;

    [Test]
    public void Board_description_reads_partitions_leds_indications_and_buttons()
    {
        var board = BoardDescription.Parse(QemuBoard, "board.json");
        Assert.That(board.Partitions.Select(p => $"{p.Name}:{p.SizeMiB}"), Is.EqualTo(new[] { "prom:96", "factory:1", "slot_a:64", "slot_b:64", "data:128" }));
        Assert.That(board.HddDisk, Is.EqualTo(new BoardHddDisk(256)));
        Assert.That(board.Leds[0], Is.EqualTo(new BoardLed("power", "input*::numlock")));
        Assert.That(board.Leds[3], Is.EqualTo(new BoardLed("example-gpio", null, new BoardGpioLine(0, 17, true))));
        Assert.That(board.Pattern(StatusIndication.Provisioning)!["status"], Is.EqualTo(LedState.Blink));
        Assert.That(board.Pattern(StatusIndication.Booting)!["power"], Is.EqualTo(LedState.On));
        var reset = board.Button(BoardButton.Reset)!;
        Assert.That(reset.Evdev, Is.EqualTo(new BoardEvdevKey("AT Translated Set 2 keyboard", 88)));
        Assert.That(reset.LongPress, Is.EqualTo(TimeSpan.FromSeconds(5)));
        Assert.That(board.Button("wps")!.LongPressSeconds, Is.EqualTo(5), "longPressSeconds defaults to 5");
        Assert.That(BoardDescription.Parse(QemuBoard, "again"), Is.EqualTo(board), "equality compares the lists by value");
    }

    [Test]
    public void Board_description_without_the_new_fields_still_reads()
    {
        var board = BoardDescription.Parse("""{"name":"old","interfaces":{"wan":"eth0","lan":"eth1","vpn":"wg0"},"hdd":null,"leds":null}""", "old.json");
        Assert.That(board.Partitions, Is.Empty);
        Assert.That(board.Leds, Is.Empty);
        Assert.That(board.Buttons, Is.Empty);
        Assert.That(board.Pattern(StatusIndication.Ready), Is.Null);
        Assert.That(BoardDescription.Simulated.Leds, Is.Empty);
        Assert.That((board.Interfaces.ProvisioningWan, board.Interfaces.ProvisioningPort), Is.EqualTo(((string?)null, "eth0")), "one WAN port serves both links");
    }

    [Test]
    public void A_second_wan_port_can_serve_provisioning()
    {
        var board = BoardDescription.Parse("""{"name":"two","interfaces":{"wan":"eth0","lan":"eth1","vpn":"wg0","provisioningWan":"eth2"}}""", "two.json");
        Assert.That((board.Interfaces.Wan, board.Interfaces.ProvisioningPort), Is.EqualTo(("eth0", "eth2")));
        var e = Assert.Throws<BoardDescriptionException>(() => BoardDescription.Parse(
            """{"name":"two","interfaces":{"wan":"eth0","lan":"eth1","vpn":"wg0","provisioningWan":"eth1"}}""", "two.json"));
        Assert.That(e!.Message, Does.Contain("interfaces.provisioningWan: 'eth1' is already the LAN"));
    }

    private const string Base = """ "name":"x","interfaces":{"wan":"eth0","lan":"eth1","vpn":"wg0"} """;

    [TestCase("""{"leds":[{"name":"status","class":"input*::capslock"}],"indications":{"ready":{"status":"on","wan":"on"}}}""", "indications.ready.wan: LED 'wan' is not declared")]
    [TestCase("""{"leds":[{"name":"status"}]}""", "leds[0]: LED 'status' needs exactly one of class")]
    [TestCase("""{"leds":[{"name":"status","class":"a","gpio":{"chip":0,"line":1}}]}""", "leds[0]: LED 'status' needs exactly one of class")]
    [TestCase("""{"leds":[{"name":"s","class":"a"},{"name":"s","class":"b"}]}""", "leds[1].name: LED 's' is declared twice")]
    [TestCase("""{"leds":[{"name":"s","class":"a"}],"indications":{"sleeping":{"s":"on"}}}""", "indications.sleeping: not a status indication")]
    [TestCase("""{"partitions":[{"name":"data","sizeMiB":0}]}""", "partitions[0].sizeMiB: 0 must be positive")]
    [TestCase("""{"partitions":[{"name":"data","sizeMiB":1},{"name":"data","sizeMiB":2}]}""", "partitions[1].name: partition 'data' is declared twice")]
    [TestCase("""{"hddDisk":{"sizeMiB":-1}}""", "hddDisk.sizeMiB: -1 must be positive")]
    [TestCase("""{"buttons":[{"name":"reset"}]}""", "buttons[0]: button 'reset' needs exactly one source")]
    [TestCase("""{"buttons":[{"name":"reset","gpio":{"chip":0,"line":4},"longPressSeconds":0}]}""", "buttons[0].longPressSeconds: 0 must be a positive")]
    [TestCase("""{"buttons":[{"name":"reset","evdev":{"deviceName":"kbd","keyCode":0}}]}""", "buttons[0].evdev.keyCode: 0 is not a Linux key code")]
    [TestCase("""{"buttons":[{"name":"reset","gpio":{"chip":0,"line":-4}}]}""", "buttons[0].gpio.line: -4 must be 0 or more")]
    public void Invalid_board_extension_names_the_file_and_field(string extra, string expected)
    {
        var json = "{" + Base + "," + extra.Trim()[1..];
        var e = Assert.Throws<BoardDescriptionException>(() => BoardDescription.Parse(json, "board.json"));
        Assert.That(e!.Message, Does.StartWith("board.json: ").And.Contain(expected));
    }

    [Test]
    public void Unknown_led_state_is_refused()
    {
        var json = "{" + Base + """, "leds":[{"name":"s","class":"a"}],"indications":{"ready":{"s":"flash"}}}""";
        var e = Assert.Throws<BoardDescriptionException>(() => BoardDescription.Parse(json, "board.json"));
        Assert.That(e!.Message, Does.StartWith("board.json: board description is not valid JSON").And.Contain("indications.ready"));
    }
}
