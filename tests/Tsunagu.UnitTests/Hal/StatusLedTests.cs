using Microsoft.Extensions.Time.Testing;
using Tsunagu.Hal;
using Tsunagu.Hal.Linux;
using Tsunagu.Hal.Simulated;

namespace Tsunagu.UnitTests.Hal;

/// <summary>The status LEDs: the indication and blink logic, over the Linux LED class and GPIO adapters.</summary>
public class StatusLedTests : FakeRootTests
{
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
        using var leds = new StatusLeds(BoardDescription.Parse(BoardDescriptionTests.QemuBoard, "board.json"), new LinuxLedOutputs(Path.Combine(_dir, "leds"), gpio),
            new StatusLedOptions { BlinkHalfPeriod = TimeSpan.FromMilliseconds(400), Log = log.Add }, time);

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
        var leds = new StatusLeds(BoardDescription.Parse(BoardDescriptionTests.QemuBoard, "board.json"), new LinuxLedOutputs(Path.Combine(_dir, "no-leds"), gpio: null),
            new StatusLedOptions { Log = log.Add }, new FakeTimeProvider(Start));
        leds.Show(StatusIndication.Booting);
        leds.Show(StatusIndication.Ready);
        leds.Show(StatusIndication.Booting);
        Assert.That(leds.Current, Is.EqualTo(StatusIndication.Booting));
        Assert.That(log, Has.Count.EqualTo(4), string.Join("\n", log));
        Assert.That(log, Has.Some.Contains("no LED matching 'input*::numlock'").And.Some.Contains("LED 'example-gpio' is a GPIO line but no GPIO access"));

        // the keyboard driver registers its LEDs later: found at the next Show
        FakeLed("input1::numlock", 1, "none");
        var now = new StatusLeds(BoardDescription.Parse(BoardDescriptionTests.QemuBoard, "board.json"), new LinuxLedOutputs(Path.Combine(_dir, "leds")),
            new StatusLedOptions { Log = log.Add }, new FakeTimeProvider(Start));
        now.Show(StatusIndication.Booting);
        Assert.That(Read("leds/input1::numlock/brightness"), Is.EqualTo("1"));
    }

    private static async Task WaitUntil(Func<bool> condition, string? because = null)
    {
        for (var i = 0; i < 500 && !condition(); i++) { await Task.Delay(10); }
        Assert.That(condition(), Is.True, because ?? "condition not reached in 5 s");
    }

    /// <summary>An LED output that records what it was told.</summary>
    private sealed class RecordingLed(string device, bool canBlink, List<string> calls) : ILedOutput
    {
        public string Device { get; } = device;
        public void Set(bool lit) { lock (calls) { calls.Add($"{Device} {(lit ? "on" : "off")}"); } }
        public bool TryBlink(TimeSpan halfPeriod) { lock (calls) { calls.Add($"{Device} try-blink {halfPeriod.TotalMilliseconds}"); } return canBlink; }
    }

    private sealed class RecordingOutputs(List<string> calls) : ILedOutputs
    {
        public IReadOnlyList<ILedOutput> Find(BoardLed led) => [new RecordingLed(led.Name, canBlink: led.Name == "wan", calls)];
    }

    [Test]
    public async Task The_indication_logic_drives_any_led_adapter()
    {
        var calls = new List<string>();
        var time = new FakeTimeProvider(Start);
        using var leds = new StatusLeds(BoardDescription.Parse(BoardDescriptionTests.QemuBoard, "board.json"), new RecordingOutputs(calls),
            new StatusLedOptions { BlinkHalfPeriod = TimeSpan.FromMilliseconds(250) }, time);
        leds.Show(StatusIndication.Error); // power on, status blink, wan blink, example-gpio not mentioned: off
        Assert.That(calls, Is.EqualTo(new[]
        {
            "power on", "status try-blink 250", "status off", "wan try-blink 250", "example-gpio off",
        }), "wan blinks by itself; status is blinked by the logic");
        calls.Clear();
        // each half period toggles the LED once; the loop may not have asked for its next half period yet, so time moves on until it has
        for (var i = 0; i < 500 && Count() < 2; i++)
        {
            time.Advance(TimeSpan.FromMilliseconds(250));
            await Task.Delay(10);
        }
        lock (calls) { Assert.That(calls.Take(2), Is.EqualTo(new[] { "status on", "status off" })); }
        int Count() { lock (calls) { return calls.Count; } }
        leds.Show(StatusIndication.Ready);
        await leds.Blinking;
        calls.Clear();
        time.Advance(TimeSpan.FromSeconds(2));
        Assert.That(calls, Is.Empty, "the blink stops with the indication");
    }

    [Test]
    public void A_simulated_unit_shows_the_board_indications_through_the_same_logic()
    {
        var board = BoardDescription.Parse(BoardDescriptionTests.QemuBoard, "board.json");
        Write("prom/os-version", "tsunagu-os 1.0\n");
        var unit = new SimulatedUnit(Path.Combine(_dir, "unit"), Path.Combine(_dir, "prom"), new FakeTimeProvider(Start), board);
        Assert.That(unit.Hardware.Leds, Is.SameAs(unit.Leds));
        Assert.That(unit.Reset.LongPress, Is.EqualTo(board.Button(BoardButton.Reset)!.LongPress));

        unit.Hardware.Leds.Show(StatusIndication.Provisioning);
        Assert.That(unit.LedOutputs.States(), Is.EquivalentTo(new Dictionary<string, LedState>
        {
            ["power"] = LedState.On, ["status"] = LedState.Blink, ["wan"] = LedState.Off, ["example-gpio"] = LedState.Blink,
        }));
        unit.Hardware.Leds.Show(StatusIndication.Connecting);
        Assert.That(unit.LedOutputs.States(), Is.EquivalentTo(new Dictionary<string, LedState>
        {
            ["power"] = LedState.On, ["status"] = LedState.On, ["wan"] = LedState.Blink, ["example-gpio"] = LedState.Off,
        }), "an LED the pattern does not mention goes off");
        Assert.That(unit.Leds.Current, Is.EqualTo(StatusIndication.Connecting));

        // the simulated board declares no LEDs: the indication is kept, nothing is driven
        var plain = new SimulatedUnit(Path.Combine(_dir, "plain"), Path.Combine(_dir, "prom"), new FakeTimeProvider(Start));
        plain.Hardware.Leds.Show(StatusIndication.Ready);
        Assert.That((plain.Leds.Current, plain.LedOutputs.States().Count), Is.EqualTo((StatusIndication.Ready, 0)));
    }

    [Test]
    public async Task Simulated_leds_that_cannot_blink_by_themselves_are_blinked_on_the_units_clock()
    {
        var time = new FakeTimeProvider(Start);
        var outputs = new SimulatedLedOutputs { CanBlink = false };
        using var leds = new StatusLeds(BoardDescription.Parse(BoardDescriptionTests.QemuBoard, "board.json"), outputs,
            new StatusLedOptions { BlinkHalfPeriod = TimeSpan.FromMilliseconds(500) }, time);
        leds.Show(StatusIndication.Error); // power on, status blink, wan blink
        Assert.That((outputs["status"]!.State, outputs["wan"]!.State, outputs["power"]!.State), Is.EqualTo((LedState.Off, LedState.Off, LedState.On)));
        time.Advance(TimeSpan.FromMilliseconds(499));
        await Task.Delay(20);
        Assert.That(outputs["status"]!.State, Is.EqualTo(LedState.Off), "not before the half period");
        time.Advance(TimeSpan.FromMilliseconds(1));
        await WaitUntil(() => outputs["status"]!.State == LedState.On && outputs["wan"]!.State == LedState.On, "lit after one half period");
        // the loop asks for its next half period after the toggle: time moves on until it has
        for (var i = 0; i < 500 && outputs["status"]!.State == LedState.On; i++)
        {
            time.Advance(TimeSpan.FromMilliseconds(500));
            await Task.Delay(10);
        }
        Assert.That((outputs["status"]!.State, outputs["wan"]!.State), Is.EqualTo((LedState.Off, LedState.Off)), "dark after the next one, together");

        leds.Show(StatusIndication.Ready);
        await leds.Blinking;
        var writes = outputs.States().Keys.Sum(name => outputs[name]!.Writes);
        time.Advance(TimeSpan.FromSeconds(5));
        Assert.That(outputs.States().Keys.Sum(name => outputs[name]!.Writes), Is.EqualTo(writes), "the blink stops with the indication");
        Assert.That(outputs.States().Values, Is.All.EqualTo(LedState.On));
    }
}
