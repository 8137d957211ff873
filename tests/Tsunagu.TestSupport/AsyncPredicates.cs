namespace Tsunagu.IntegrationTests;

/// <summary>LINQ's All, Where and Select for conditions and projections that read the (asynchronous) store, one item at a time.</summary>
public static class AsyncPredicates
{
    public static async Task<bool> AllAsync<T>(this IEnumerable<T> items, Func<T, Task<bool>> predicate)
    {
        foreach (var item in items)
        {
            if (!await predicate(item)) { return false; }
        }
        return true;
    }

    public static async Task<List<T>> WhereAsync<T>(this IEnumerable<T> items, Func<T, Task<bool>> predicate)
    {
        var kept = new List<T>();
        foreach (var item in items)
        {
            if (await predicate(item)) { kept.Add(item); }
        }
        return kept;
    }

    public static async Task<List<TResult>> SelectAsync<T, TResult>(this IEnumerable<T> items, Func<T, Task<TResult>> selector)
    {
        var results = new List<TResult>();
        foreach (var item in items) { results.Add(await selector(item)); }
        return results;
    }
}
