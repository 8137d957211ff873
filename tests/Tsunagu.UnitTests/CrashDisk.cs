using Tsunagu.Hal.Storage;

namespace Tsunagu.UnitTests;

/// <summary>How a power cut treats the writes and directory changes that were not yet synced.</summary>
public enum CutMode
{
    /// <summary>Every unsynced write and directory change is lost.</summary>
    Lost,

    /// <summary>Every unsynced write and directory change reached the disk, in order (what a process crash leaves).</summary>
    Kept,

    /// <summary>The unsynced changes before the last write reached the disk in order; the last write only its first half, in whole sectors.</summary>
    Torn,

    /// <summary>Only the last write reached the disk, none of the unsynced changes before it (the disk or the page cache wrote out of order).</summary>
    Reordered,
}

/// <summary>What survives a power cut: each path's entry (a file's bytes or a link's target).</summary>
public sealed class DiskImage
{
    internal DiskImage(Dictionary<string, int> names, Dictionary<int, CrashDisk.Node> nodes)
    {
        Names = names;
        Nodes = nodes;
    }

    internal Dictionary<string, int> Names { get; }
    internal Dictionary<int, CrashDisk.Node> Nodes { get; }
}

/// <summary>One way the disk can look after a power cut after operation <see cref="Cut"/> (that many operations done).</summary>
public sealed record CutImage(int Cut, string After, CutMode Mode, DiskImage Image);

/// <summary>
/// A disk model for power-cut tests, under <see cref="IDurableFileSystem"/>. It records, in order, every write,
/// length change and fsync of a file, and every directory change (file created, link created, rename, deletion)
/// and directory sync; <see cref="Cuts"/> then yields, for a cut after each of those operations, the images a real
/// power cut could leave: synced content survives; unsynced writes and directory changes are lost
/// (<see cref="CutMode.Lost"/>), kept (<see cref="CutMode.Kept"/>), kept up to a torn last write
/// (<see cref="CutMode.Torn"/>, at <see cref="SectorSize"/> granularity), or lost but for the last write
/// (<see cref="CutMode.Reordered"/>). A file's fsync makes its content durable,
/// not its name: a new name, a rename or a deletion is durable only once its directory is synced.
/// </summary>
public sealed class CrashDisk : IDurableFileSystem
{
    public const int SectorSize = 512;

    internal sealed class Node
    {
        public byte[] Bytes = [];
        public string? LinkTarget;

        public Node Clone() => new() { Bytes = (byte[])Bytes.Clone(), LinkTarget = LinkTarget };

        public void Write(long offset, byte[] data, int count)
        {
            var end = offset + count;
            if (end > Bytes.Length) { Array.Resize(ref Bytes, (int)end); }
            Array.Copy(data, 0, Bytes, offset, count);
        }

        public void SetLength(long length)
        {
            var old = Bytes.Length;
            Array.Resize(ref Bytes, (int)length);
            if (length > old) { Array.Clear(Bytes, old, (int)length - old); }
        }
    }

    private abstract record Op;
    private sealed record WriteOp(int Node, long Offset, byte[] Data) : Op;
    private sealed record LengthOp(int Node, long Length) : Op;
    private sealed record SyncOp(int Node) : Op;
    private sealed record EntryOp(string Directory, string What, IReadOnlyList<(string Path, int? Node)> Changes) : Op;
    private sealed record DirSyncOp(string Directory) : Op;

    private readonly Lock _lock = new();
    private readonly Dictionary<string, int> _names;
    private readonly Dictionary<int, Node> _nodes;
    private DiskImage _base;
    private readonly List<Op> _ops = [];
    private int _nextNode;

    public CrashDisk() : this(new DiskImage([], [])) { }

    /// <summary>A disk powered on with <paramref name="image"/> on it (the image is not changed).</summary>
    public CrashDisk(DiskImage image)
    {
        _base = Copy(image);
        _names = new Dictionary<string, int>(image.Names);
        _nodes = image.Nodes.ToDictionary(n => n.Key, n => n.Value.Clone());
        _nextNode = _nodes.Count == 0 ? 1 : _nodes.Keys.Max() + 1;
    }

    /// <summary>Operations recorded since the disk was powered on or <see cref="Settle"/>d.</summary>
    public int Operations { get { lock (_lock) { return _ops.Count; } } }

    public int Writes { get { lock (_lock) { return _ops.Count(o => o is WriteOp or LengthOp or EntryOp); } } }

    public int Syncs { get { lock (_lock) { return _ops.Count(o => o is SyncOp or DirSyncOp); } } }

    /// <summary>Everything as it is now becomes durable, and the record starts afresh (the setup of a test is not cut).</summary>
    public void Settle()
    {
        lock (_lock)
        {
            _base = new DiskImage(new Dictionary<string, int>(_names), _nodes.ToDictionary(n => n.Key, n => n.Value.Clone()));
            _ops.Clear();
        }
    }

    /// <summary>The target of the link at <paramref name="path"/> as the running system sees it, or null.</summary>
    public string? ReadLink(string path)
    {
        lock (_lock) { return _names.TryGetValue(path, out var n) ? _nodes[n].LinkTarget : null; }
    }

    public static string? ReadLink(DiskImage image, string path) => image.Names.TryGetValue(path, out var n) ? image.Nodes[n].LinkTarget : null;

    public static IEnumerable<string> Paths(DiskImage image) => image.Names.Keys;

    public bool FileExists(string path)
    {
        lock (_lock) { return _names.ContainsKey(path); }
    }

    public Stream OpenFile(string path)
    {
        lock (_lock)
        {
            if (!_names.TryGetValue(path, out var node))
            {
                node = NewNode(new Node());
                Record(new EntryOp(DirectoryOf(path), $"create {path}", [(path, node)]));
            }
            else if (_nodes[node].LinkTarget is not null)
            {
                throw new IOException($"{path} is a symbolic link");
            }
            return new CrashStream(this, node);
        }
    }

    public void SyncFile(string path)
    {
        lock (_lock)
        {
            if (!_names.TryGetValue(path, out var node)) { throw new IOException($"cannot sync {path}: no such file"); }
            Record(new SyncOp(node));
        }
    }

    public void CreateSymbolicLink(string path, string target)
    {
        lock (_lock)
        {
            if (_names.ContainsKey(path)) { throw new IOException($"{path} exists"); }
            var node = NewNode(new Node { LinkTarget = target });
            Record(new EntryOp(DirectoryOf(path), $"symlink {path} -> {target}", [(path, node)]));
        }
    }

    public void Rename(string source, string destination)
    {
        lock (_lock)
        {
            if (!_names.TryGetValue(source, out var node)) { throw new IOException($"cannot rename {source}: no such file"); }
            var directory = DirectoryOf(source);
            if (directory != DirectoryOf(destination)) { throw new NotSupportedException("the model renames within one directory"); }
            Record(new EntryOp(directory, $"rename {source} -> {destination}", [(destination, node), (source, null)]));
        }
    }

    public void DeleteFile(string path)
    {
        lock (_lock)
        {
            if (_names.ContainsKey(path)) { Record(new EntryOp(DirectoryOf(path), $"delete {path}", [(path, null)])); }
        }
    }

    public void SyncDirectory(string path)
    {
        lock (_lock) { Record(new DirSyncOp(path.TrimEnd('/'))); }
    }

    /// <summary>
    /// For a cut after each recorded operation, the images a power cut could leave there: <see cref="CutMode.Lost"/>
    /// and <see cref="CutMode.Kept"/> after every operation, <see cref="CutMode.Torn"/> after every write, and
    /// <see cref="CutMode.Reordered"/> after every write that follows other unsynced changes.
    /// </summary>
    public IEnumerable<CutImage> Cuts()
    {
        Op[] ops;
        lock (_lock) { ops = [.. _ops]; }
        var durable = Copy(_base);
        var pending = new List<Op>();
        for (var i = 0; i < ops.Length; i++)
        {
            var op = ops[i];
            switch (op)
            {
                case SyncOp sync:
                    Apply(durable, pending.Where(p => p is WriteOp w && w.Node == sync.Node || p is LengthOp l && l.Node == sync.Node));
                    pending.RemoveAll(p => p is WriteOp w && w.Node == sync.Node || p is LengthOp l && l.Node == sync.Node);
                    break;
                case DirSyncOp dirSync:
                    Apply(durable, pending.Where(p => p is EntryOp e && e.Directory == dirSync.Directory));
                    pending.RemoveAll(p => p is EntryOp e && e.Directory == dirSync.Directory);
                    break;
                default:
                    pending.Add(op);
                    break;
            }
            var after = Describe(op);
            yield return new CutImage(i + 1, after, CutMode.Lost, Copy(durable));
            if (pending.Count > 0)
            {
                var kept = Copy(durable);
                Apply(kept, pending);
                yield return new CutImage(i + 1, after, CutMode.Kept, kept);
            }
            if (op is WriteOp write)
            {
                var torn = Copy(durable);
                Apply(torn, pending.Take(pending.Count - 1));
                var keep = (int)(Math.Max(0, ((write.Offset + write.Data.Length / 2) / SectorSize * SectorSize) - write.Offset));
                torn.Nodes[write.Node].Write(write.Offset, write.Data, keep);
                yield return new CutImage(i + 1, after, CutMode.Torn, torn);
                if (pending.Count > 1)
                {
                    var last = Copy(durable);
                    Apply(last, [write]);
                    yield return new CutImage(i + 1, after, CutMode.Reordered, last);
                }
            }
        }
    }

    private static string Describe(Op op) => op switch
    {
        WriteOp w => $"write node {w.Node} at {w.Offset}, {w.Data.Length} bytes",
        LengthOp l => $"set length of node {l.Node} to {l.Length}",
        SyncOp s => $"fsync node {s.Node}",
        EntryOp e => e.What,
        DirSyncOp d => $"fsync directory {d.Directory}",
        _ => op.ToString(),
    };

    private static void Apply(DiskImage image, IEnumerable<Op> ops)
    {
        foreach (var op in ops)
        {
            switch (op)
            {
                case WriteOp w:
                    NodeOf(image, w.Node).Write(w.Offset, w.Data, w.Data.Length);
                    break;
                case LengthOp l:
                    NodeOf(image, l.Node).SetLength(l.Length);
                    break;
                case EntryOp e:
                    foreach (var (path, node) in e.Changes)
                    {
                        if (node is { } n) { image.Names[path] = n; } else { image.Names.Remove(path); }
                    }
                    break;
            }
        }
    }

    private static Node NodeOf(DiskImage image, int node)
    {
        if (!image.Nodes.TryGetValue(node, out var n)) { image.Nodes[node] = n = new Node(); }
        return n;
    }

    private static DiskImage Copy(DiskImage image) =>
        new(new Dictionary<string, int>(image.Names), image.Nodes.ToDictionary(n => n.Key, n => n.Value.Clone()));

    private int NewNode(Node node)
    {
        var id = _nextNode++;
        _nodes[id] = node;
        // the content of a node the base image does not know starts empty (a link's target is part of its entry)
        _base.Nodes[id] = new Node { LinkTarget = node.LinkTarget };
        return id;
    }

    private void Record(Op op)
    {
        _ops.Add(op);
        switch (op)
        {
            case WriteOp w: _nodes[w.Node].Write(w.Offset, w.Data, w.Data.Length); break;
            case LengthOp l: _nodes[l.Node].SetLength(l.Length); break;
            case EntryOp e:
                foreach (var (path, node) in e.Changes)
                {
                    if (node is { } n) { _names[path] = n; } else { _names.Remove(path); }
                }
                break;
        }
    }

    private static string DirectoryOf(string path) => Path.GetDirectoryName(path) ?? "/";

    private sealed class CrashStream(CrashDisk disk, int node) : Stream
    {
        private long _position;

        public override bool CanRead => true;
        public override bool CanSeek => true;
        public override bool CanWrite => true;
        public override long Length { get { lock (disk._lock) { return disk._nodes[node].Bytes.Length; } } }
        public override long Position { get => _position; set => _position = value; }

        public override void Flush()
        {
            lock (disk._lock) { disk.Record(new SyncOp(node)); }
        }

        public override int Read(byte[] buffer, int offset, int count)
        {
            lock (disk._lock)
            {
                var bytes = disk._nodes[node].Bytes;
                var n = (int)Math.Max(0, Math.Min(count, bytes.Length - _position));
                Array.Copy(bytes, _position, buffer, offset, n);
                _position += n;
                return n;
            }
        }

        public override long Seek(long offset, SeekOrigin origin) => _position = origin switch
        {
            SeekOrigin.Begin => offset,
            SeekOrigin.Current => _position + offset,
            _ => Length + offset,
        };

        public override void SetLength(long value)
        {
            lock (disk._lock) { disk.Record(new LengthOp(node, value)); }
        }

        public override void Write(byte[] buffer, int offset, int count)
        {
            if (count == 0) { return; }
            lock (disk._lock)
            {
                disk.Record(new WriteOp(node, _position, buffer.AsSpan(offset, count).ToArray()));
                _position += count;
            }
        }
    }
}
