using System.Text.Json;
using System.Text.Json.Serialization;

namespace Tsunagu.Hal;

/// <summary>A board's `board.json` could not be read or lacks a field; the message names the file and the field.</summary>
public sealed class BoardDescriptionException(string message, Exception? inner = null) : HalException(message, isTransient: false, inner);

/// <summary>
/// The board's network ports: <see cref="Wan"/> carries the main link (and the provisional one, unless
/// <see cref="ProvisioningWan"/> names a second WAN port kept for provisioning: the patent's variant 3).
/// </summary>
public sealed record BoardInterfaces(string Wan, string Lan, string Vpn, string? ProvisioningWan = null)
{
    /// <summary>The port the provisional link uses.</summary>
    [JsonIgnore]
    public string ProvisioningPort => ProvisioningWan ?? Wan;
}

/// <summary>The board's cache disk: mounted at <see cref="MountPoint"/>; holds only the cache and may be wiped at any time.</summary>
public sealed record BoardHdd(string MountPoint);

/// <summary>
/// The board can run virus checking (clamd and c-icap) with <see cref="MemoryMegabytes"/> of memory set aside for it: the
/// scan limits, threads and reload mode are derived from it. <see cref="IcapModulesDirectory"/> is where the board's c-icap
/// keeps its modules (Debian's `/usr/lib/&lt;triplet&gt;/c_icap`, so it differs per architecture). Absent: the board runs no
/// virus checking.
/// </summary>
public sealed record BoardVirusScan(int MemoryMegabytes, string IcapModulesDirectory)
{
    public const int MinMemoryMegabytes = 64;
    public const int MaxMemoryMegabytes = 65536;

    /// <summary>An absolute path of letters, digits and `/._-+`: it is written into c-icap's configuration as one token.</summary>
    public static bool IsModulesDirectory(string? path) =>
        !string.IsNullOrEmpty(path) && path.Length <= 255 && path[0] == '/' && !path.Split('/').Contains("..") &&
        path.All(c => char.IsAsciiLetterOrDigit(c) || c is '/' or '.' or '_' or '-' or '+');
}

/// <summary>
/// What differs between boards, as data (`board/&lt;name&gt;/board.json`): interface names, the optional cache disk,
/// and the optional partition layout, LEDs, status indications and buttons. Unknown fields are ignored so the file
/// can grow without breaking older readers; every field added after the first version is optional (an absent list
/// reads as empty). Equality compares the lists and the indications by value.
/// </summary>
public sealed record BoardDescription(string Name, BoardInterfaces Interfaces, BoardHdd? Hdd)
{
    public const string FileName = "board.json";

    /// <summary>The GPT partitions of the unit's disk, in disk order (e.g. prom, factory, slot_a, slot_b, data). Empty: not described.</summary>
    public IReadOnlyList<BoardPartition> Partitions { get; init; } = [];

    /// <summary>Size of the cache disk an image builder creates; null when the board description does not say.</summary>
    public BoardHddDisk? HddDisk { get; init; }

    /// <summary>The status LEDs the board has; indications refer to them by name.</summary>
    public IReadOnlyList<BoardLed> Leds { get; init; } = [];

    /// <summary>
    /// For each <see cref="StatusIndication"/> (key: its name in lower case), the state of each LED. LEDs an indication
    /// does not mention are off while it is shown; an indication absent here leaves the LEDs as they are.
    /// </summary>
    public IReadOnlyDictionary<string, IReadOnlyDictionary<string, LedState>> Indications { get; init; } =
        new Dictionary<string, IReadOnlyDictionary<string, LedState>>();

    /// <summary>The buttons the board has (e.g. `reset`).</summary>
    public IReadOnlyList<BoardButton> Buttons { get; init; } = [];

    /// <summary>The board's hardware watchdog; null when it has none (nothing restarts a hung unit).</summary>
    public BoardWatchdog? Watchdog { get; init; }

    /// <summary>Whether (and with how much memory) the board runs virus checking; null: it does not.</summary>
    public BoardVirusScan? VirusScan { get; init; }

    /// <summary>The LED pattern of <paramref name="indication"/>, or null when the board defines none.</summary>
    public IReadOnlyDictionary<string, LedState>? Pattern(StatusIndication indication) =>
        Indications.TryGetValue(IndicationKey(indication), out var pattern) ? pattern : null;

    /// <summary>The button named <paramref name="name"/>, or null.</summary>
    public BoardButton? Button(string name) => Buttons.FirstOrDefault(b => b.Name == name);

    /// <summary>The key of <paramref name="indication"/> in <see cref="Indications"/>: its name in lower case.</summary>
    public static string IndicationKey(StatusIndication indication) => indication.ToString().ToLowerInvariant();

    /// <summary>Reads a board description from a `board.json` file or from a folder holding one.</summary>
    /// <exception cref="BoardDescriptionException">Missing, unreadable or incomplete.</exception>
    public static BoardDescription Load(string path)
    {
        var file = Directory.Exists(path) ? Path.Combine(path, FileName) : path;
        string json;
        try
        {
            json = File.ReadAllText(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BoardDescriptionException($"{file}: board description unreadable: {e.Message}", e);
        }
        return Parse(json, file);
    }

    /// <summary>Finds a board by name (`&lt;boardsRoot&gt;/&lt;name&gt;/board.json`) or takes <paramref name="nameOrPath"/> as a path.</summary>
    public static BoardDescription Resolve(string nameOrPath, string boardsRoot)
    {
        if (File.Exists(nameOrPath) || Directory.Exists(nameOrPath) && File.Exists(Path.Combine(nameOrPath, FileName)))
        {
            return Load(nameOrPath);
        }
        var byName = Path.Combine(boardsRoot, nameOrPath, FileName);
        if (!File.Exists(byName))
        {
            throw new BoardDescriptionException($"board '{nameOrPath}': neither a board.json path nor a board in {Path.GetFullPath(boardsRoot)}");
        }
        return Load(byName);
    }

    /// <param name="source">Where the text came from, for error messages.</param>
    public static BoardDescription Parse(string json, string source)
    {
        BoardDescription? board;
        try
        {
            board = JsonSerializer.Deserialize(json, BoardJson.Default.BoardDescription);
        }
        catch (JsonException e)
        {
            throw new BoardDescriptionException($"{source}: board description is not valid JSON: {e.Message}", e);
        }
        if (board is null) { throw new BoardDescriptionException($"{source}: board description is empty"); }
        Require(source, "name", board.Name);
        if (board.Interfaces is null) { throw new BoardDescriptionException($"{source}: interfaces: missing"); }
        Interface(source, "interfaces.wan", board.Interfaces.Wan);
        Interface(source, "interfaces.lan", board.Interfaces.Lan);
        Interface(source, "interfaces.vpn", board.Interfaces.Vpn);
        if (board.Interfaces.ProvisioningWan is { } provisioning)
        {
            Interface(source, "interfaces.provisioningWan", provisioning);
            if (provisioning == board.Interfaces.Lan || provisioning == board.Interfaces.Vpn)
            {
                throw new BoardDescriptionException($"{source}: interfaces.provisioningWan: '{provisioning}' is already the LAN or VPN interface");
            }
        }
        if (board.Hdd is not null && (string.IsNullOrEmpty(board.Hdd.MountPoint) || !Path.IsPathRooted(board.Hdd.MountPoint)))
        {
            throw new BoardDescriptionException($"{source}: hdd.mountPoint: '{board.Hdd.MountPoint}' must be an absolute path");
        }
        // "partitions": null and the like read as absent
        board = board with
        {
            Partitions = board.Partitions ?? [],
            Leds = board.Leds ?? [],
            Buttons = board.Buttons ?? [],
            Indications = board.Indications ?? new Dictionary<string, IReadOnlyDictionary<string, LedState>>(),
        };
        ValidatePartitions(source, board);
        ValidateLeds(source, board);
        ValidateButtons(source, board);
        ValidateWatchdog(source, board.Watchdog);
        if (board.VirusScan is { MemoryMegabytes: < BoardVirusScan.MinMemoryMegabytes or > BoardVirusScan.MaxMemoryMegabytes } scan)
        {
            throw new BoardDescriptionException($"{source}: virusScan.memoryMegabytes: {scan.MemoryMegabytes} is outside {BoardVirusScan.MinMemoryMegabytes}..{BoardVirusScan.MaxMemoryMegabytes}");
        }
        if (board.VirusScan is { } virus && !BoardVirusScan.IsModulesDirectory(virus.IcapModulesDirectory))
        {
            throw new BoardDescriptionException($"{source}: virusScan.icapModulesDirectory: '{virus.IcapModulesDirectory}' must be an absolute path of letters, digits and /._-+");
        }
        return board;
    }

    private static void ValidatePartitions(string source, BoardDescription board)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < board.Partitions.Count; i++)
        {
            var p = board.Partitions[i];
            var field = $"partitions[{i}]";
            if (p is null) { throw new BoardDescriptionException($"{source}: {field}: null"); }
            if (string.IsNullOrWhiteSpace(p.Name) || p.Name.Length > 36 || p.Name.Any(c => char.IsWhiteSpace(c) || char.IsControl(c) || c == '/'))
            {
                throw new BoardDescriptionException($"{source}: {field}.name: '{p.Name}' is not a GPT partition name (1..36 characters, no white space or '/')");
            }
            if (p.SizeMiB <= 0) { throw new BoardDescriptionException($"{source}: {field}.sizeMiB: {p.SizeMiB} must be positive (partition '{p.Name}')"); }
            if (!names.Add(p.Name)) { throw new BoardDescriptionException($"{source}: {field}.name: partition '{p.Name}' is declared twice"); }
        }
        if (board.HddDisk is { SizeMiB: <= 0 } disk)
        {
            throw new BoardDescriptionException($"{source}: hddDisk.sizeMiB: {disk.SizeMiB} must be positive");
        }
    }

    private static void ValidateLeds(string source, BoardDescription board)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < board.Leds.Count; i++)
        {
            var led = board.Leds[i];
            var field = $"leds[{i}]";
            if (led is null) { throw new BoardDescriptionException($"{source}: {field}: null"); }
            Require(source, $"{field}.name", led.Name);
            if (!names.Add(led.Name)) { throw new BoardDescriptionException($"{source}: {field}.name: LED '{led.Name}' is declared twice"); }
            if (led.Class is null == led.Gpio is null)
            {
                throw new BoardDescriptionException($"{source}: {field}: LED '{led.Name}' needs exactly one of class (a /sys/class/leds name pattern) and gpio");
            }
            if (led.Class is not null && (led.Class.Length == 0 || led.Class.Contains('/')))
            {
                throw new BoardDescriptionException($"{source}: {field}.class: '{led.Class}' is not a /sys/class/leds name pattern");
            }
            if (led.Gpio is not null) { ValidateGpio(source, $"{field}.gpio", led.Gpio); }
        }
        var known = Enum.GetValues<StatusIndication>().Select(IndicationKey).ToHashSet(StringComparer.Ordinal);
        foreach (var (key, pattern) in board.Indications)
        {
            if (!known.Contains(key))
            {
                throw new BoardDescriptionException($"{source}: indications.{key}: not a status indication (one of {string.Join(", ", known)})");
            }
            if (pattern is null) { throw new BoardDescriptionException($"{source}: indications.{key}: null"); }
            foreach (var (led, state) in pattern)
            {
                if (!names.Contains(led)) { throw new BoardDescriptionException($"{source}: indications.{key}.{led}: LED '{led}' is not declared"); }
                if (!Enum.IsDefined(state)) { throw new BoardDescriptionException($"{source}: indications.{key}.{led}: '{state}' is not on, off or blink"); }
            }
        }
    }

    private static void ValidateButtons(string source, BoardDescription board)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < board.Buttons.Count; i++)
        {
            var button = board.Buttons[i];
            var field = $"buttons[{i}]";
            if (button is null) { throw new BoardDescriptionException($"{source}: {field}: null"); }
            Require(source, $"{field}.name", button.Name);
            if (!names.Add(button.Name)) { throw new BoardDescriptionException($"{source}: {field}.name: button '{button.Name}' is declared twice"); }
            if (button.Evdev is null == button.Gpio is null)
            {
                throw new BoardDescriptionException($"{source}: {field}: button '{button.Name}' needs exactly one source, evdev or gpio");
            }
            if (button.Evdev is { } evdev)
            {
                Require(source, $"{field}.evdev.deviceName", evdev.DeviceName);
                if (evdev.KeyCode is <= 0 or > BoardEvdevKey.MaxKeyCode)
                {
                    throw new BoardDescriptionException($"{source}: {field}.evdev.keyCode: {evdev.KeyCode} is not a Linux key code (1..{BoardEvdevKey.MaxKeyCode})");
                }
            }
            if (button.Gpio is not null) { ValidateGpio(source, $"{field}.gpio", button.Gpio); }
            if (!(button.LongPressSeconds > 0) || double.IsInfinity(button.LongPressSeconds))
            {
                throw new BoardDescriptionException($"{source}: {field}.longPressSeconds: {button.LongPressSeconds} must be a positive number of seconds");
            }
        }
    }

    private static void ValidateWatchdog(string source, BoardWatchdog? watchdog)
    {
        if (watchdog is null) { return; }
        if (string.IsNullOrEmpty(watchdog.Device) || !Path.IsPathRooted(watchdog.Device) || watchdog.Device.Any(char.IsControl))
        {
            throw new BoardDescriptionException($"{source}: watchdog.device: '{watchdog.Device}' must be an absolute device path (e.g. /dev/watchdog)");
        }
        if (watchdog.TimeoutSeconds is < 2 or > BoardWatchdog.MaxTimeoutSeconds)
        {
            throw new BoardDescriptionException($"{source}: watchdog.timeoutSeconds: {watchdog.TimeoutSeconds} must be 2..{BoardWatchdog.MaxTimeoutSeconds}");
        }
        if (watchdog.FeedSeconds < 1 || watchdog.FeedSeconds * 2 > watchdog.TimeoutSeconds)
        {
            throw new BoardDescriptionException(
                $"{source}: watchdog.feedSeconds: {watchdog.FeedSeconds} must be at least 1 and at most half of timeoutSeconds ({watchdog.TimeoutSeconds})");
        }
    }

    private static void ValidateGpio(string source, string field, BoardGpioLine gpio)
    {
        if (gpio.Chip < 0) { throw new BoardDescriptionException($"{source}: {field}.chip: {gpio.Chip} must be 0 or more"); }
        if (gpio.Line < 0) { throw new BoardDescriptionException($"{source}: {field}.line: {gpio.Line} must be 0 or more"); }
    }

    public bool Equals(BoardDescription? other) =>
        other is not null
        && Name == other.Name && Equals(Interfaces, other.Interfaces) && Equals(Hdd, other.Hdd) && Equals(HddDisk, other.HddDisk)
        && Partitions.SequenceEqual(other.Partitions) && Leds.SequenceEqual(other.Leds) && Buttons.SequenceEqual(other.Buttons)
        && Equals(Watchdog, other.Watchdog)
        && Indications.Count == other.Indications.Count
        && Indications.All(kv => other.Indications.TryGetValue(kv.Key, out var o) && o.Count == kv.Value.Count
                                 && kv.Value.All(led => o.TryGetValue(led.Key, out var state) && state == led.Value));

    public override int GetHashCode() => HashCode.Combine(Name, Interfaces, Hdd, HddDisk, Partitions.Count, Leds.Count, Buttons.Count, Indications.Count);

    /// <summary>The simulated board shipped with the HAL (a copy of `board/simulated/board.json`).</summary>
    public static BoardDescription Simulated { get; } = LoadEmbedded("simulated-board.json");

    private static BoardDescription LoadEmbedded(string name)
    {
        using var stream = typeof(BoardDescription).Assembly.GetManifestResourceStream(name)
                           ?? throw new BoardDescriptionException($"resource {name} is missing from {typeof(BoardDescription).Assembly.GetName().Name}");
        using var reader = new StreamReader(stream);
        return Parse(reader.ReadToEnd(), $"resource {name}");
    }

    private static void Require(string source, string field, string? value)
    {
        if (string.IsNullOrWhiteSpace(value)) { throw new BoardDescriptionException($"{source}: {field}: missing"); }
    }

    /// <summary>Linux interface names: 1..15 characters, no '/', no white space.</summary>
    private static void Interface(string source, string field, string? value)
    {
        Require(source, field, value);
        if (value!.Length > 15 || value.Any(c => c == '/' || c == ':' || char.IsWhiteSpace(c)))
        {
            throw new BoardDescriptionException($"{source}: {field}: '{value}' is not a Linux interface name");
        }
    }
}

/// <summary>
/// The board's hardware watchdog: its device (Linux watchdog API), the timeout the supervisor sets, and how often it
/// feeds it. <see cref="Module"/> and <see cref="ModuleOptions"/> are what the boot program loads and arms it with (the
/// driver's own timeout option); the supervisor does not use them.
/// </summary>
public sealed record BoardWatchdog(string Device, int TimeoutSeconds, int FeedSeconds, string? Module = null, string? ModuleOptions = null)
{
    /// <summary>An upper bound no board needs (an hour): a longer timeout would not restart a hung unit in useful time.</summary>
    public const int MaxTimeoutSeconds = 3600;

    public TimeSpan Timeout => TimeSpan.FromSeconds(TimeoutSeconds);

    public TimeSpan FeedInterval => TimeSpan.FromSeconds(FeedSeconds);
}

/// <summary>One GPT partition of the unit's disk: its partition name (what the HAL looks devices up by) and size.</summary>
public sealed record BoardPartition(string Name, long SizeMiB);

/// <summary>The cache disk's size, for image builders.</summary>
public sealed record BoardHddDisk(long SizeMiB);

/// <summary>A raw GPIO line: chip number (`/dev/gpiochipN`), line offset, and whether the line is active low.</summary>
public sealed record BoardGpioLine(int Chip, int Line, bool ActiveLow = false);

/// <summary>
/// A status LED, either a Linux LED class device (<see cref="Class"/>: a glob with `*` and `?` over the entry names
/// of /sys/class/leds, e.g. `input*::numlock`, since input LED numbering varies) or a raw GPIO line.
/// </summary>
public sealed record BoardLed(string Name, string? Class = null, BoardGpioLine? Gpio = null);

/// <summary>What an LED does while an indication is shown.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<LedState>))]
public enum LedState
{
    [JsonStringEnumMemberName("off")] Off,
    [JsonStringEnumMemberName("on")] On,
    [JsonStringEnumMemberName("blink")] Blink,
}

/// <summary>A key of a Linux input device: the device's name (/sys/class/input/eventN/device/name) and the key code (EV_KEY).</summary>
public sealed record BoardEvdevKey(string DeviceName, int KeyCode)
{
    /// <summary>KEY_MAX of linux/input-event-codes.h.</summary>
    public const int MaxKeyCode = 0x2ff;
}

/// <summary>
/// A button, read from an input device key (<see cref="Evdev"/>, as gpio-keys exposes buttons) or a raw GPIO line.
/// <see cref="LongPressSeconds"/>: how long it must be held to count as a long press (default 5).
/// </summary>
public sealed record BoardButton(string Name, BoardEvdevKey? Evdev = null, BoardGpioLine? Gpio = null, double LongPressSeconds = 5)
{
    public const string Reset = "reset";

    public TimeSpan LongPress => TimeSpan.FromSeconds(LongPressSeconds);
}

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web)]
[JsonSerializable(typeof(BoardDescription))]
internal sealed partial class BoardJson : JsonSerializerContext;
