using Tsunagu.Server.Data;

namespace Tsunagu.IntegrationTests;

/// <summary>How a race test knows its competitor is blocked by the transaction the test holds, not merely slow.</summary>
internal static class StoreSeam
{
    /// <summary>
    /// Starts <paramref name="start"/> and returns its task once it waits for the transaction the test holds: the store
    /// method <paramref name="storeMethod"/> must first reach the beginning of its transaction
    /// (<see cref="TsunaguStore.TransactionBeginning"/>), after every read it makes before it. On SQLite that is the wait:
    /// the transaction cannot begin while the test holds the write lock. On PostgreSQL the transaction begins and then
    /// waits for a lock, so it also waits until a backend of the test's database waits for a lock.
    /// </summary>
    public static async Task<Task<T>> StartBlocked<T>(TsunaguStore store, Database database, string storeMethod, Func<Task<T>> start,
        Func<Task<T>, Task<string>> describe)
    {
        var reached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnBeginning(string method)
        {
            if (method == storeMethod) { reached.TrySetResult(); }
        }
        store.TransactionBeginning += OnBeginning;
        Task<T> task;
        try
        {
            task = start();
            var first = await Task.WhenAny(task, reached.Task, Task.Delay(TimeSpan.FromSeconds(60)));
            if (first == task) { Assert.Fail($"it finished before it reached the transaction of {storeMethod}: {await describe(task)}"); }
            Assert.That(reached.Task.IsCompleted, $"it never reached the transaction of {storeMethod}");
        }
        finally
        {
            store.TransactionBeginning -= OnBeginning;
        }
        if (database.Kind != DatabaseKind.Postgres) { return task; }
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            using (var c = database.Open())
            using (var q = c.CreateCommand())
            {
                q.CommandText = "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'";
                if (Convert.ToInt64(await q.ExecuteScalarAsync(), System.Globalization.CultureInfo.InvariantCulture) > 0) { return task; }
            }
            if (task.IsCompleted) { Assert.Fail($"it finished while the other transaction was open: {await describe(task)}"); }
            Assert.That(DateTime.UtcNow, Is.LessThan(deadline), "it never waited for the other transaction's lock");
            await Task.Delay(20);
        }
    }

    /// <summary>
    /// Holds the first call of the store method <paramref name="storeMethod"/> at the beginning of its transaction (after
    /// every read it makes before it) until the returned hold is released or disposed: the seam is synchronous, so the
    /// request waits on its own thread, holding no lock, while the test makes a conflicting change.
    /// </summary>
    public static Hold HoldAt(TsunaguStore store, string storeMethod) => new(store, storeMethod);

    public sealed class Hold : IDisposable
    {
        private readonly TsunaguStore _store;
        private readonly string _method;
        private readonly ManualResetEventSlim _release = new();
        private readonly TaskCompletionSource _reached = new(TaskCreationOptions.RunContinuationsAsynchronously);

        internal Hold(TsunaguStore store, string method)
        {
            (_store, _method) = (store, method);
            _store.TransactionBeginning += OnBeginning;
        }

        /// <summary>Completes when the held call has reached its transaction's beginning.</summary>
        public Task Reached => _reached.Task;

        private void OnBeginning(string method)
        {
            if (method != _method || !_reached.TrySetResult()) { return; }
            if (!_release.Wait(TimeSpan.FromSeconds(120))) { throw new TimeoutException($"{method} was held and never released"); }
        }

        public void Release() => _release.Set();

        public void Dispose()
        {
            _store.TransactionBeginning -= OnBeginning;
            _release.Set();
            _release.Dispose();
        }
    }
}
