using Microsoft.Extensions.Time.Testing;
using Tsunagu.Hal;
using Tsunagu.Hal.Linux;
using Tsunagu.Hal.Simulated;
using Tsunagu.Protocol;

namespace Tsunagu.UnitTests;

/// <summary>The board description's LEDs, indications, buttons and partitions, and the Linux adapters against fake sysfs, devices and tools.</summary>
public class LinuxHalTests : FakeRootTests
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


    // ---- board.json ----

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

    // ---- LEDs ----

    private string FakeLed(string name, int max, string triggers)
    {
        var dir = Path.Combine(_dir, "leds", name);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "max_brightness"), $"{max}\n");
        File.WriteAllText(Path.Combine(dir, "brightness"), "0\n");
        File.WriteAllText(Path.Combine(dir, "trigger"), triggers + "\n");
        return dir;
    }

    [Test]
    public async Task Class_leds_follow_the_indication_with_timer_and_software_blink()
    {
        FakeLed("input3::numlock", 1, "none [kbd-numlock] kbd-capslock timer");
        FakeLed("input3::capslock", 255, "none [kbd-capslock]"); // no timer trigger: blinked in software
        var scroll = FakeLed("input3::scrolllock", 1, "none kbd-scrolllock timer heartbeat");
        File.WriteAllText(Path.Combine(scroll, "delay_on"), "500");
        File.WriteAllText(Path.Combine(scroll, "delay_off"), "500");
        FakeLed("input4::kana", 1, "none");
        var gpio = new FakeGpio();
        var time = new FakeTimeProvider(Start);
        var log = new List<string>();
        using var leds = new LedClassStatusLeds(BoardDescription.Parse(QemuBoard, "board.json"), gpio,
            new LedClassOptions { LedsRoot = Path.Combine(_dir, "leds"), BlinkHalfPeriod = TimeSpan.FromMilliseconds(400), Log = log.Add }, time);

        leds.Show(StatusIndication.Provisioning); // power on, status blink, wan off, example-gpio blink
        Assert.That(Read("leds/input3::numlock/brightness"), Is.EqualTo("1"));
        Assert.That(Read("leds/input3::numlock/trigger"), Is.EqualTo("none"), "the kernel's default trigger is cleared");
        Assert.That(Read("leds/input3::capslock/brightness"), Is.EqualTo("0"));
        Assert.That(Read("leds/input3::scrolllock/brightness"), Is.EqualTo("0"));
        Assert.That(gpio.Levels[(0, 17)], Is.True, "active-low GPIO LED off = line high");

        time.Advance(TimeSpan.FromMilliseconds(400));
        await WaitUntil(() => Read("leds/input3::capslock/brightness") == "255");
        Assert.That(gpio.Levels[(0, 17)], Is.False, "the GPIO LED blinks with the same software loop");
        time.Advance(TimeSpan.FromMilliseconds(400));
        await WaitUntil(() => Read("leds/input3::capslock/brightness") == "0");

        leds.Show(StatusIndication.Connecting); // status on, wan blink (timer trigger), example-gpio not mentioned: off
        await leds.Blinking;
        Assert.That(Read("leds/input3::capslock/brightness"), Is.EqualTo("255"));
        Assert.That(Read("leds/input3::scrolllock/trigger"), Is.EqualTo("timer"));
        Assert.That(Read("leds/input3::scrolllock/delay_on"), Is.EqualTo("400"));
        Assert.That(Read("leds/input3::scrolllock/delay_off"), Is.EqualTo("400"));
        Assert.That(gpio.Levels[(0, 17)], Is.True);
        var writes = gpio.Writes.Count;
        time.Advance(TimeSpan.FromSeconds(2));
        Assert.That(gpio.Writes, Has.Count.EqualTo(writes), "the software blink stopped with the indication");

        leds.Show(StatusIndication.Ready);
        Assert.That(Read("leds/input3::scrolllock/trigger"), Is.EqualTo("none"), "leaving the timer trigger");
        Assert.That(Read("leds/input3::scrolllock/brightness"), Is.EqualTo("1"));
        Assert.That(gpio.Levels[(0, 17)], Is.False, "active-low GPIO LED on = line low");
        Assert.That(Read("leds/input4::kana/brightness"), Is.EqualTo("0\n"), "LEDs the board does not name are left alone");
        Assert.That(log, Is.Empty);
    }

    [Test]
    public void Missing_leds_are_logged_once_and_never_throw()
    {
        var log = new List<string>();
        var leds = new LedClassStatusLeds(BoardDescription.Parse(QemuBoard, "board.json"), gpio: null,
            new LedClassOptions { LedsRoot = Path.Combine(_dir, "no-leds"), Log = log.Add }, new FakeTimeProvider(Start));
        leds.Show(StatusIndication.Booting);
        leds.Show(StatusIndication.Ready);
        leds.Show(StatusIndication.Booting);
        Assert.That(leds.Current, Is.EqualTo(StatusIndication.Booting));
        Assert.That(log, Has.Count.EqualTo(4), string.Join("\n", log));
        Assert.That(log, Has.Some.Contains("no LED matching 'input*::numlock'").And.Some.Contains("LED 'example-gpio' is a GPIO line but no GPIO access"));

        // the keyboard driver registers its LEDs later: found at the next Show
        FakeLed("input1::numlock", 1, "none");
        var now = new LedClassStatusLeds(BoardDescription.Parse(QemuBoard, "board.json"), null,
            new LedClassOptions { LedsRoot = Path.Combine(_dir, "leds"), Log = log.Add }, new FakeTimeProvider(Start));
        now.Show(StatusIndication.Booting);
        Assert.That(Read("leds/input1::numlock/brightness"), Is.EqualTo("1"));
    }

    private static async Task WaitUntil(Func<bool> condition, string? because = null)
    {
        for (var i = 0; i < 500 && !condition(); i++) { await Task.Delay(10); }
        Assert.That(condition(), Is.True, because ?? "condition not reached in 5 s");
    }

    // ---- reset button ----

    private (EvdevResetButton Button, FakeEventDevice Device, FakeTimeProvider Time, List<string> Opened) EvdevButton()
    {
        Write("input/event0/device/name", "Power Button\n");
        Write("input/event1/device/name", "AT Translated Set 2 keyboard\n");
        Write("input/mouse0/device/name", "ImExPS/2 Generic Explorer Mouse\n");
        var device = new FakeEventDevice();
        var opened = new List<string>();
        var time = new FakeTimeProvider(Start);
        var board = BoardDescription.Parse(QemuBoard, "board.json");
        var button = (EvdevResetButton)ResetButtons.FromBoard(board, null, new EvdevButtonOptions
        {
            SysInputRoot = Path.Combine(_dir, "input"),
            DevInputRoot = "/dev/input-test",
            OpenDevice = path => { opened.Add(path); return device; },
        }, time: time)!;
        return (button, device, time, opened);
    }

    [Test]
    public async Task Evdev_long_press_fires_while_held_at_the_configured_time()
    {
        var (button, device, time, opened) = EvdevButton();
        Assert.That(EvdevResetButton.EventSize, Is.EqualTo(24));
        var wait = button.WaitForLongPressAsync(CancellationToken.None);
        Assert.That(opened, Is.EqualTo(new[] { "/dev/input-test/event1" }));
        await device.WaitForReadsAsync(0);

        await device.KeyHandledAsync(30, 1); // another key: ignored
        await device.KeyHandledAsync(88, 1);
        time.Advance(TimeSpan.FromSeconds(4.9));
        await device.KeyHandledAsync(88, 2); // autorepeat while held
        Assert.That(wait.IsCompleted, Is.False, "4.9 s is not a long press");
        time.Advance(TimeSpan.FromSeconds(0.1));
        await wait.WaitAsync(TimeSpan.FromSeconds(5));
    }

    [Test]
    public async Task Evdev_short_press_is_ignored_and_a_held_button_fires_once()
    {
        var (button, device, time, _) = EvdevButton();
        var wait = button.WaitForLongPressAsync(CancellationToken.None);
        await device.WaitForReadsAsync(0);
        await device.KeyHandledAsync(88, 1);
        time.Advance(TimeSpan.FromSeconds(2));
        await device.KeyHandledAsync(88, 0);
        time.Advance(TimeSpan.FromSeconds(10));
        await Task.Delay(50);
        Assert.That(wait.IsCompleted, Is.False, "a 2 s press is short");

        await device.KeyHandledAsync(88, 1);
        time.Advance(TimeSpan.FromSeconds(5));
        await wait.WaitAsync(TimeSpan.FromSeconds(5));

        // still held: autorepeats do not make a second long press until the key is released and pressed again
        var reads = device.ReadsStarted;
        var next = button.WaitForLongPressAsync(CancellationToken.None);
        await device.WaitForReadsAsync(reads);
        await device.KeyHandledAsync(88, 2);
        time.Advance(TimeSpan.FromSeconds(6));
        await device.KeyHandledAsync(88, 2);
        Assert.That(next.IsCompleted, Is.False);
        await device.KeyHandledAsync(88, 0);
        await device.KeyHandledAsync(88, 1);
        time.Advance(TimeSpan.FromSeconds(5));
        await next.WaitAsync(TimeSpan.FromSeconds(5));
    }

    [Test]
    public async Task Evdev_button_reports_a_missing_device_and_a_vanished_one()
    {
        var (button, device, _, _) = EvdevButton();
        var wait = button.WaitForLongPressAsync(CancellationToken.None);
        device.End();
        var gone = Assert.ThrowsAsync<HalException>(() => wait);
        Assert.That(gone!.IsTransient, Is.True);

        var other = new EvdevResetButton(new BoardButton("reset", new BoardEvdevKey("gpio-keys", 0x198)),
            new EvdevButtonOptions { SysInputRoot = Path.Combine(_dir, "input") });
        var e = Assert.ThrowsAsync<HalException>(() => other.WaitForLongPressAsync(CancellationToken.None));
        Assert.That(e!.Message, Does.Contain("no input device named 'gpio-keys'").And.Contain("event1 'AT Translated Set 2 keyboard'"));
        Assert.That(e.IsTransient, Is.False);

        using var cts = new CancellationTokenSource();
        var (button2, device2, _, _) = EvdevButton();
        var cancelled = button2.WaitForLongPressAsync(cts.Token);
        await device2.WaitForReadsAsync(0);
        await cts.CancelAsync();
        Assert.That(async () => await cancelled, Throws.InstanceOf<OperationCanceledException>());
    }

    [Test]
    public async Task Gpio_button_needs_an_uninterrupted_hold()
    {
        var time = new VirtualTime(Start);
        // active low: pressed while the line is low; a 2 s press at 1 s, long ones from 10 s to 30 s and from 40 s
        var gpio = new FakeGpio
        {
            Input = (chip, line) =>
            {
                Assert.That((chip, line), Is.EqualTo((0, 4)));
                var t = (time.GetUtcNow() - Start).TotalSeconds;
                return !(t is >= 1 and < 3 or >= 10 and < 30 or >= 40 and < 50);
            },
        };
        var button = new GpioResetButton(new BoardButton("reset", Gpio: new BoardGpioLine(0, 4, ActiveLow: true), LongPressSeconds: 5), gpio,
            new GpioButtonOptions { PollInterval = TimeSpan.FromMilliseconds(100) }, time);
        await button.WaitForLongPressAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.That((time.GetUtcNow() - Start).TotalSeconds, Is.EqualTo(15).Within(0.15));
        await button.WaitForLongPressAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.That((time.GetUtcNow() - Start).TotalSeconds, Is.EqualTo(45).Within(0.15), "held until 30 s, which does not count again; the next press from 40 s does");
    }

    [Test]
    public async Task Simulated_reset_button_fires_on_press()
    {
        var button = new SimulatedResetButton();
        var wait = button.WaitForLongPressAsync(CancellationToken.None);
        Assert.That(wait.IsCompleted, Is.False);
        button.ShortPress();
        Assert.That(wait.IsCompleted, Is.False);
        button.Press();
        await wait.WaitAsync(TimeSpan.FromSeconds(5));
        button.Press(); // before anyone waits: the next wait sees it
        await button.WaitForLongPressAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(5));
        Assert.That(button.Presses, Is.EqualTo(2));
    }
}
