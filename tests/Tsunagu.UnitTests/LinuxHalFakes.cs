using System.Threading.Channels;
using Tsunagu.Hal;
using Tsunagu.Hal.Linux;

namespace Tsunagu.UnitTests;

/// <summary>Records every command; answers with a result chosen by <see cref="Respond"/> (default: exit 0, no output).</summary>
internal sealed class RecordingRunner : ICommandRunner
{
    public List<string> Commands { get; } = [];
    public Func<CommandLine, CommandResult?>? Respond { get; set; }

    public Task<CommandResult> RunAsync(CommandLine command, CommandOptions? options, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (Commands) { Commands.Add(command.ToString()); }
        return Task.FromResult(Respond?.Invoke(command) ?? new CommandResult(command, 0, "", "", false));
    }

    /// <summary>Daemons started, in order; each is a <see cref="FakeDaemon"/> the test ends.</summary>
    public List<FakeDaemon> Daemons { get; } = [];

    /// <summary>Called for each daemon started (e.g. to play the event script's part).</summary>
    public Action<FakeDaemon>? OnStart { get; set; }

    public IRunningCommand Start(CommandLine command, CommandOptions? options)
    {
        var daemon = new FakeDaemon(command, options);
        lock (Commands)
        {
            Commands.Add(command.ToString());
            Daemons.Add(daemon);
        }
        OnStart?.Invoke(daemon);
        return daemon;
    }
}

/// <summary>A started program that runs until the test ends it (<see cref="Exit"/>) or it is stopped.</summary>
internal sealed class FakeDaemon(CommandLine command, CommandOptions? options) : IRunningCommand
{
    private readonly TaskCompletionSource<int> _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public CommandLine Command { get; } = command;
    public CommandOptions? Options { get; } = options;
    public int ProcessId => 4242;
    public Task<int> Exited => _exited.Task;
    public string Output { get; set; } = "";
    public bool Stopped { get; private set; }

    public void Exit(int code) => _exited.TrySetResult(code);
    public string RecentOutput() => Output;

    public Task StopAsync(TimeSpan grace, CancellationToken cancellationToken)
    {
        Stopped = true;
        _exited.TrySetResult(143);
        return Task.CompletedTask;
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

/// <summary>GPIO lines in memory: outputs written, inputs set by the test (or computed).</summary>
internal sealed class FakeGpio : IGpioLines
{
    public Dictionary<(int Chip, int Line), bool> Levels { get; } = [];
    public List<(int Chip, int Line, bool High)> Writes { get; } = [];
    public Func<int, int, bool>? Input { get; set; }

    public void Write(int chip, int line, bool high)
    {
        lock (Writes)
        {
            Writes.Add((chip, line, high));
            Levels[(chip, line)] = high;
        }
    }

    public bool Read(int chip, int line)
    {
        lock (Writes) { return Input?.Invoke(chip, line) ?? Levels.GetValueOrDefault((chip, line)); }
    }

    public void Dispose() { }
}

/// <summary>
/// An input event device fed by the test: <see cref="Send"/> queues records; <see cref="ReadsStarted"/> counts the
/// reader's reads, so a test knows when the adapter has handled what was sent and waits for more.
/// </summary>
internal sealed class FakeEventDevice : Stream
{
    private readonly Channel<byte[]> _chunks = Channel.CreateUnbounded<byte[]>();
    private int _reads;
    private byte[]? _rest;

    public int ReadsStarted => Volatile.Read(ref _reads);

    /// <summary>One `struct input_event` (64-bit layout).</summary>
    public static byte[] Event(ushort type, ushort code, int value)
    {
        var record = new byte[EvdevResetButton.EventSize];
        BitConverter.TryWriteBytes(record.AsSpan(0, 8), 1_700_000_000L);
        BitConverter.TryWriteBytes(record.AsSpan(record.Length - 8, 2), type);
        BitConverter.TryWriteBytes(record.AsSpan(record.Length - 6, 2), code);
        BitConverter.TryWriteBytes(record.AsSpan(record.Length - 4, 4), value);
        return record;
    }

    /// <summary>A key event followed by EV_SYN, as the kernel sends them.</summary>
    public void Key(ushort code, int value) => Send([.. Event(1, code, value), .. Event(0, 0, 0)]);

    public void Send(byte[] bytes) => _chunks.Writer.TryWrite(bytes);

    /// <summary>Sends a key event and waits until the adapter has handled it and reads again.</summary>
    public async Task KeyHandledAsync(ushort code, int value)
    {
        var reads = ReadsStarted;
        Key(code, value);
        await WaitForReadsAsync(reads);
    }

    public void End() => _chunks.Writer.TryComplete();

    /// <summary>Waits until the reader has asked for more than <paramref name="reads"/> reads: everything sent before was handled.</summary>
    public async Task WaitForReadsAsync(int reads)
    {
        for (var i = 0; i < 500 && ReadsStarted <= reads; i++) { await Task.Delay(10); }
        Assert.That(ReadsStarted, Is.GreaterThan(reads), "the adapter did not come back for more events");
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _reads);
        if (_rest is null)
        {
            if (!await _chunks.Reader.WaitToReadAsync(cancellationToken)) { return 0; }
            _rest = await _chunks.Reader.ReadAsync(cancellationToken);
        }
        var n = Math.Min(buffer.Length, _rest.Length);
        _rest.AsSpan(0, n).CopyTo(buffer.Span);
        _rest = n == _rest.Length ? null : _rest[n..];
        return n;
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

/// <summary>A stream that only reads (no length, no seeking), like an image arriving over the network.</summary>
internal sealed class ForwardOnlyStream(Stream inner) : Stream
{
    public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);
    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => inner.ReadAsync(buffer, cancellationToken);
    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

/// <summary>
/// A temporary directory standing in for the roots a Linux adapter reads (sysfs, procfs, /dev, data), created
/// for each test and removed after it; <see cref="Write"/> and <see cref="Read"/> take paths relative to it.
/// </summary>
public abstract class FakeRootTests
{
    protected static readonly DateTimeOffset Start = new(2030, 1, 1, 0, 0, 0, TimeSpan.Zero);
    protected string _dir = "";

    [SetUp]
    public void CreateRoot()
    {
        _dir = Path.Combine(Path.GetTempPath(), "tsunagu-fakeroot-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    [TearDown]
    public void RemoveRoot() => Directory.Delete(_dir, recursive: true);

    protected string Write(string relative, string content)
    {
        var path = Path.Combine(_dir, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, content);
        return path;
    }

    protected string Read(string relative) => File.ReadAllText(Path.Combine(_dir, relative));
}
