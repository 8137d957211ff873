using System.Text.Json.Serialization.Metadata;
using LiteDB;
using LiteDB.Engine;
using Tsunagu.Hal.Storage;
using JsonSerializer = System.Text.Json.JsonSerializer;

namespace Tsunagu.Firmware.Storage;

/// <summary>The state store on `data` could not be opened or read: the partition must be rebuilt.</summary>
public sealed class StateStoreCorruptException(string path, Exception inner)
    : Exception($"state store {path} is unreadable: {inner.Message}", inner)
{
    public string Path { get; } = path;
}

/// <summary>
/// The unit's durable state on the `data` partition (LiteDB, journaled: each write is atomic). Values are
/// protocol records stored as JSON under a key, so the store needs no reflection-based mapping: it talks to
/// LiteDB's engine with documents directly (what <c>LiteDatabase</c> does underneath for a direct connection),
/// which keeps LiteDB's object mapper out of the firmware binary.
/// </summary>
public sealed class StateStore : IDisposable
{
    public const string FileName = "state.db";

    /// <summary>LiteDB's journal (write-ahead log) beside <see cref="FileName"/>; the name LiteDB itself gives it.</summary>
    public const string LogFileName = "state-log.db";

    private const string Collection = "values";
    private readonly LiteEngine _db;
    private readonly Stream _data;
    private readonly Stream _log;

    private StateStore(string path, LiteEngine db, Stream data, Stream log)
    {
        Path = path;
        _db = db;
        _data = data;
        _log = log;
    }

    public string Path { get; }

    /// <summary>
    /// Opens (or creates) the store in <paramref name="dataRoot"/>. The store opens its two files itself through
    /// <paramref name="files"/> (default: the real file system) and hands them to LiteDB as streams, whose Flush()
    /// is fsync(2); a file it created is made durable by syncing <paramref name="dataRoot"/>.
    /// </summary>
    /// <exception cref="StateStoreCorruptException">The file exists but cannot be opened as a store.</exception>
    public static StateStore Open(string dataRoot, IDurableFileSystem? files = null)
    {
        files ??= PosixFileSystem.Instance;
        var path = System.IO.Path.Combine(dataRoot, FileName);
        var logPath = System.IO.Path.Combine(dataRoot, LogFileName);
        Stream? data = null, log = null;
        try
        {
            var created = !files.FileExists(path) | !files.FileExists(logPath);
            data = files.OpenFile(path);
            log = files.OpenFile(logPath);
            if (created)
            {
                files.SyncDirectory(dataRoot);
            }
            var db = new LiteEngine(new EngineSettings { DataStream = data, LogStream = log });
            var store = new StateStore(path, db, data, log);
            try
            {
                // read the whole collection so a corrupt file fails here, not later
                using var all = db.Query(Collection, new Query());
                while (all.Read()) { }
            }
            catch
            {
                store.Dispose();
                throw;
            }
            return store;
        }
        catch (Exception e) when (IsCorruption(e))
        {
            data?.Dispose();
            log?.Dispose();
            throw new StateStoreCorruptException(path, e);
        }
    }

    public T? Get<T>(string key, JsonTypeInfo<T> type) where T : class
    {
        try
        {
            var byKey = new Query();
            byKey.Where.Add(Query.EQ("_id", key));
            using var found = _db.Query(Collection, byKey);
            return found.Read() ? JsonSerializer.Deserialize(found.Current["json"].AsString, type) : null;
        }
        catch (Exception e) when (IsCorruption(e))
        {
            throw new StateStoreCorruptException($"{Path} (key {key})", e);
        }
    }

    /// <summary>
    /// A damaged file makes LiteDB throw whatever its parser trips on (LiteException, out-of-range dates, casts...);
    /// each of them means the same thing here: the store cannot be trusted and `data` must be rebuilt.
    /// </summary>
    private static bool IsCorruption(Exception e) => e is not (OutOfMemoryException or OperationCanceledException or UnauthorizedAccessException);

    public void Set<T>(string key, T value, JsonTypeInfo<T> type)
    {
        var json = JsonSerializer.Serialize(value, type);
        _db.Upsert(Collection, [new BsonDocument { ["_id"] = key, ["json"] = json }], BsonAutoId.ObjectId);
        Commit();
    }

    public void Delete(string key)
    {
        _db.Delete(Collection, [new BsonValue(key)]);
        Commit();
    }

    /// <summary>
    /// Copies the journal into the data file (LiteDB's checkpoint: data written and synced, journal truncated),
    /// then syncs the journal so its truncation is on the disk before the next write overwrites its start: a disk
    /// that wrote that new page without the truncation would leave a journal LiteDB cannot read.
    /// </summary>
    private void Commit()
    {
        _db.Checkpoint();
        _log.Flush();
    }

    public void Dispose()
    {
        try
        {
            _db.Dispose();
        }
        finally
        {
            _data.Dispose();
            _log.Dispose();
        }
    }
}

/// <summary>Keys of the values the supervisor keeps in the state store.</summary>
public static class StateKeys
{
    public const string Settings = "settings";
    public const string PendingUpdate = "pending-update";
    public const string AppliedConfig = "applied-config";
    public const string BundleCounter = "bundle-counter";
    public const string TrustedKeys = "trusted-keys";
    public const string ServiceTransaction = "service-transaction";
    public const string PendingConfirm = "pending-confirm";
    public const string ConfirmedConfig = "confirmed-config";
    public const string PowerOnSpread = "power-on-spread";
}
