using Microsoft.Extensions.Time.Testing;
using Tsunagu.Hal;
using Tsunagu.Hal.Linux;
using Tsunagu.Hal.Simulated;

namespace Tsunagu.UnitTests.Hal;

/// <summary>The reset button: the long-press logic, fed by the evdev and GPIO adapters and by the simulated twin.</summary>
public class ResetButtonTests : FakeRootTests
{
    private (EvdevResetButton Button, FakeEventDevice Device, FakeTimeProvider Time, List<string> Opened) EvdevButton()
    {
        Write("input/event0/device/name", "Power Button\n");
        Write("input/event1/device/name", "AT Translated Set 2 keyboard\n");
        Write("input/mouse0/device/name", "ImExPS/2 Generic Explorer Mouse\n");
        var device = new FakeEventDevice();
        var opened = new List<string>();
        var time = new FakeTimeProvider(Start);
        var board = BoardDescription.Parse(BoardDescriptionTests.QemuBoard, "board.json");
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

    // ---- the long-press logic ----

    [Test]
    public async Task Long_press_logic_times_the_hold_and_fires_once_per_press()
    {
        var time = new FakeTimeProvider(Start);
        var detector = new LongPressDetector(TimeSpan.FromSeconds(5), time);
        var wait = detector.WaitAsync(CancellationToken.None);
        detector.Pressed();
        time.Advance(TimeSpan.FromSeconds(4));
        detector.Released();
        time.Advance(TimeSpan.FromSeconds(10));
        Assert.That(wait.IsCompleted, Is.False, "a 4 s press is short");

        detector.Held(); // seen down without its press: timed from now
        time.Advance(TimeSpan.FromSeconds(4.9));
        Assert.That(wait.IsCompleted, Is.False);
        time.Advance(TimeSpan.FromSeconds(0.1));
        await wait.WaitAsync(TimeSpan.FromSeconds(5));

        var next = detector.WaitAsync(CancellationToken.None);
        detector.Held();
        time.Advance(TimeSpan.FromSeconds(30));
        Assert.That(next.IsCompleted, Is.False, "still the same hold: it must be released first");
        detector.Released();
        detector.Pressed(alreadyHeld: TimeSpan.FromSeconds(5)); // a press that has lasted long enough already
        await next.WaitAsync(TimeSpan.FromSeconds(5));

        detector.Released();
        detector.Pressed();
        time.Advance(TimeSpan.FromSeconds(5)); // nobody waits: kept for the next wait, once
        Assert.That(detector.WaitAsync(CancellationToken.None).IsCompletedSuccessfully, Is.True);
        Assert.That(detector.WaitAsync(CancellationToken.None).IsCompleted, Is.False);
    }

    [Test]
    public async Task Simulated_button_held_down_fires_at_the_long_press_time_while_held()
    {
        var time = new FakeTimeProvider(Start);
        var button = new SimulatedResetButton(time, TimeSpan.FromSeconds(5));
        var wait = button.WaitForLongPressAsync(CancellationToken.None);
        button.PressDown();
        time.Advance(TimeSpan.FromSeconds(3));
        button.Release();
        time.Advance(TimeSpan.FromSeconds(3));
        Assert.That(wait.IsCompleted, Is.False, "released after 3 s: short");
        button.PressDown();
        time.Advance(TimeSpan.FromSeconds(5));
        await wait.WaitAsync(TimeSpan.FromSeconds(5));
        var again = button.WaitForLongPressAsync(CancellationToken.None);
        time.Advance(TimeSpan.FromSeconds(20));
        Assert.That(again.IsCompleted, Is.False, "a button kept down fires once");
        button.Release();
        Assert.That(button.Presses, Is.Zero, "only Press counts presses");
    }

    [Test]
    public async Task Long_press_logic_times_from_the_last_bounce_and_a_bounce_during_the_hold_starts_it_again()
    {
        var time = new FakeTimeProvider(Start);
        var detector = new LongPressDetector(TimeSpan.FromSeconds(5), time);
        var bounce = TimeSpan.FromMilliseconds(5);
        var wait = detector.WaitAsync(CancellationToken.None);

        // contact chatter as the button goes down: the hold starts at the last press edge (20 ms)
        detector.Pressed();
        time.Advance(bounce);
        detector.Released();
        time.Advance(bounce);
        detector.Pressed();
        time.Advance(bounce);
        detector.Released();
        time.Advance(bounce);
        detector.Pressed();
        time.Advance(TimeSpan.FromSeconds(5) - TimeSpan.FromMilliseconds(1));
        Assert.That(wait.IsCompleted, Is.False, "5 s after the first edge, but 4.999 s after the last one");
        time.Advance(TimeSpan.FromMilliseconds(1));
        await wait.WaitAsync(TimeSpan.FromSeconds(5));

        // chatter as the button comes up after a long press: short presses, no second long press
        var next = detector.WaitAsync(CancellationToken.None);
        for (var i = 0; i < 3; i++)
        {
            detector.Released();
            time.Advance(bounce);
            detector.Pressed();
            time.Advance(bounce);
        }
        detector.Released();
        time.Advance(TimeSpan.FromMinutes(1));
        Assert.That(next.IsCompleted, Is.False, "the chatter after a long press is not a long press");

        // a release in the middle of a hold (the line must be active without interruption): timed again from the new press
        detector.Pressed();
        time.Advance(TimeSpan.FromSeconds(3));
        detector.Released();
        time.Advance(bounce);
        detector.Pressed();
        time.Advance(TimeSpan.FromSeconds(5) - bounce);
        Assert.That(next.IsCompleted, Is.False, "3 s, a bounce, then 4.995 s: no hold of 5 s");
        time.Advance(bounce);
        await next.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.That(detector.WaitAsync(CancellationToken.None).IsCompleted, Is.False, "one long press per hold, none kept over");
    }

    [Test]
    public async Task Simulated_button_held_across_waits_is_timed_from_the_press_then_again_from_a_wait_after_a_cancelled_one()
    {
        var time = new FakeTimeProvider(Start);
        var button = new SimulatedResetButton(time, TimeSpan.FromSeconds(5));

        // pressed before the wait starts: the hold counts from the press
        button.PressDown();
        time.Advance(TimeSpan.FromSeconds(2));
        var wait = button.WaitForLongPressAsync(CancellationToken.None);
        time.Advance(TimeSpan.FromSeconds(2.9));
        Assert.That(wait.IsCompleted, Is.False);
        time.Advance(TimeSpan.FromSeconds(0.1));
        await wait.WaitAsync(TimeSpan.FromSeconds(5));
        button.Release();

        // the wait is cancelled while the button is down (the supervisor changed state); the next wait sees it still
        // down and times it from its start, as the evdev and GPIO adapters do (autorepeat, polled level)
        button.PressDown();
        using (var cts = new CancellationTokenSource())
        {
            var cancelled = button.WaitForLongPressAsync(cts.Token);
            time.Advance(TimeSpan.FromSeconds(2));
            await cts.CancelAsync();
            Assert.That(async () => await cancelled, Throws.InstanceOf<OperationCanceledException>());
        }
        time.Advance(TimeSpan.FromSeconds(1));
        var next = button.WaitForLongPressAsync(CancellationToken.None);
        time.Advance(TimeSpan.FromSeconds(4.9));
        Assert.That(next.IsCompleted, Is.False, "timed from the new wait, not from the press");
        time.Advance(TimeSpan.FromSeconds(0.1));
        await next.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.That(button.IsDown, Is.True);

        // still down after that long press: the next wait does not fire again until it is released and pressed anew
        var again = button.WaitForLongPressAsync(CancellationToken.None);
        time.Advance(TimeSpan.FromMinutes(1));
        Assert.That(again.IsCompleted, Is.False, "a button kept down fires once");
        button.Release();
        button.PressDown();
        time.Advance(TimeSpan.FromSeconds(5));
        await again.WaitAsync(TimeSpan.FromSeconds(5));
    }

    [Test]
    public async Task A_cancelled_wait_is_forgotten_and_the_next_long_press_goes_to_the_next_wait()
    {
        var button = new SimulatedResetButton();
        using (var cts = new CancellationTokenSource())
        {
            var cancelled = button.WaitForLongPressAsync(cts.Token);
            await cts.CancelAsync();
            Assert.That(async () => await cancelled, Throws.InstanceOf<OperationCanceledException>());
        }
        button.Press(); // nobody waits now: kept
        await button.WaitForLongPressAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(5));
        var next = button.WaitForLongPressAsync(CancellationToken.None);
        Assert.That(next.IsCompleted, Is.False, "one press, one long press");
        button.Press();
        await next.WaitAsync(TimeSpan.FromSeconds(5));
    }
}
