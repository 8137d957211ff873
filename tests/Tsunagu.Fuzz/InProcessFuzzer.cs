using System.Text;

namespace Tsunagu.Fuzz;

/// <summary>One input that crashed a target: the exception and the bytes.</summary>
public sealed record FuzzCrash(string Signature, Exception Exception, byte[] Input);

/// <summary>What a run did: executions, accepted and refused inputs, and the distinct crashes (by exception type and frame).</summary>
public sealed record FuzzRun(string Target, long Executions, long Accepted, long Refused, IReadOnlyList<FuzzCrash> Crashes, TimeSpan Elapsed);

/// <summary>
/// Mutation fuzzing without instrumentation, for the test suite and machines without afl-fuzz: a seeded random
/// sequence of mutations (bit flips, interesting bytes, dictionary tokens, inserts, deletes, duplicated ranges,
/// splices of two corpus entries) applied to the corpus, for a bounded time or number of executions. The same
/// seed gives the same inputs in the same order.
/// </summary>
public static class InProcessFuzzer
{
    private static readonly byte[] InterestingBytes = [0, 1, 0x7f, 0x80, 0xff, (byte)'"', (byte)'\\', (byte)'{', (byte)'}', (byte)'[', (byte)']',
        (byte)',', (byte)':', (byte)'\n', (byte)'\r', (byte)'=', (byte)'-', (byte)'0', (byte)'9', (byte)'/', (byte)'.', (byte)' '];

    private static readonly byte[][] Tokens = new[]
    {
        "null", "true", "false", "0", "-1", "2147483648", "-2147483649", "9223372036854775807", "-9223372036854775808",
        "18446744073709551616", "1e400", "-0", "0.5", "NaN", "\"\"", "\"NaN\"", "[]", "{}", "[null]", "{\"\":null}", "\"\\u0000\"",
        "\"\\n\"", "\"a\\nb\"", "\\u0000", "\"..\"", "\"/\"", "\"9999-12-31T23:59:59Z\"", "\"0001-01-01T00:00:00Z\"", "\u00e9", "\ufeff",
        ",", "\r\n", "\"\"\"", "=", "==", "a=", "tries=", "primary=a", "pending=b", "ustar", "ustar\000", "00000000000", "77777777777",
    }.Select(Encoding.UTF8.GetBytes).ToArray();

    /// <summary>Runs the corpus once, then mutations of it until <paramref name="budget"/> or <paramref name="maxExecutions"/>.</summary>
    public static FuzzRun Run(FuzzTarget target, IReadOnlyList<byte[]> corpus, int seed, TimeSpan budget, long maxExecutions = long.MaxValue)
    {
        var random = new Random(seed);
        var crashes = new Dictionary<string, FuzzCrash>(StringComparer.Ordinal);
        var pool = corpus.Count > 0 ? corpus.ToList() : [[]];
        long executions = 0, accepted = 0, refused = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();

        void Execute(byte[] input)
        {
            executions++;
            try
            {
                if (target.Execute(input) == FuzzOutcome.Accepted) { accepted++; } else { refused++; }
            }
            catch (Exception e)
            {
                var signature = Signature(e);
                crashes.TryAdd(signature, new FuzzCrash(signature, e, input));
            }
        }

        foreach (var input in pool)
        {
            Execute(input);
        }
        while (executions < maxExecutions && clock.Elapsed < budget)
        {
            var input = Mutate(pool[random.Next(pool.Count)], pool, random);
            Execute(input);
        }
        return new FuzzRun(target.Name, executions, accepted, refused, crashes.Values.ToList(), clock.Elapsed);
    }

    /// <summary>The exception's type and the first frame that throws it: one crash per bug, not per input.</summary>
    public static string Signature(Exception e)
    {
        var frame = e.StackTrace?.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.Length > 0) ?? "";
        return $"{e.GetType().FullName} {frame}";
    }

    public static byte[] Mutate(byte[] original, IReadOnlyList<byte[]> pool, Random random)
    {
        var data = new List<byte>(original);
        var count = 1 + random.Next(random.Next(2) == 0 ? 2 : 8);
        for (var i = 0; i < count; i++)
        {
            var at = data.Count == 0 ? 0 : random.Next(data.Count);
            switch (random.Next(10))
            {
                case 0 when data.Count > 0:
                    data[at] ^= (byte)(1 << random.Next(8));
                    break;
                case 1 when data.Count > 0:
                    data[at] = InterestingBytes[random.Next(InterestingBytes.Length)];
                    break;
                case 2 when data.Count > 0:
                    data[at] = (byte)random.Next(256);
                    break;
                case 3:
                    data.InsertRange(at, Tokens[random.Next(Tokens.Length)]);
                    break;
                case 4 when data.Count > 0:
                {
                    // a token in place of what is there (often a JSON value)
                    var token = Tokens[random.Next(Tokens.Length)];
                    data.RemoveRange(at, Math.Min(data.Count - at, 1 + random.Next(token.Length + 4)));
                    data.InsertRange(at, token);
                    break;
                }
                case 5 when data.Count > 0:
                    data.RemoveRange(at, Math.Min(data.Count - at, 1 + random.Next(16)));
                    break;
                case 6 when data.Count > 0:
                {
                    var length = Math.Min(data.Count - at, 1 + random.Next(64));
                    data.InsertRange(random.Next(data.Count + 1), data.GetRange(at, length));
                    break;
                }
                case 7:
                {
                    var other = pool[random.Next(pool.Count)];
                    if (other.Length == 0) { break; }
                    var from = random.Next(other.Length);
                    var length = Math.Min(other.Length - from, 1 + random.Next(128));
                    data.InsertRange(at, other.AsSpan(from, length).ToArray());
                    break;
                }
                case 8 when data.Count > 0:
                    data.RemoveRange(at, data.Count - at);
                    break;
                default:
                    data.Insert(at, (byte)random.Next(256));
                    break;
            }
        }
        return data.ToArray();
    }

    /// <summary>The corpus of a target: every file under <paramref name="corpusRoot"/>/TARGET/, in name order.</summary>
    public static IReadOnlyList<(string Name, byte[] Bytes)> Corpus(string corpusRoot, string target)
    {
        var dir = Path.Combine(corpusRoot, target);
        return Directory.Exists(dir)
            ? Directory.GetFiles(dir).Order(StringComparer.Ordinal).Select(f => (Path.GetFileName(f), File.ReadAllBytes(f))).ToList()
            : [];
    }
}
