namespace Tsunagu.Fuzz;

/// <summary>
/// The short pass of `make test`: the whole corpus (seeds and every crash ever found) through every target,
/// then a few seconds of in-process mutation per target. `make fuzz` runs the same targets under afl-fuzz.
/// </summary>
public class FuzzTests
{
    /// <summary>Seconds of mutation per target (TSUNAGU_FUZZ_SECONDS overrides).</summary>
    private static double Seconds =>
        double.TryParse(Environment.GetEnvironmentVariable("TSUNAGU_FUZZ_SECONDS"), System.Globalization.CultureInfo.InvariantCulture, out var s) ? s : 3;

    private static IEnumerable<string> Targets() => FuzzTargets.All.Select(t => t.Name);

    [Test]
    public void Every_target_has_a_corpus_with_an_accepted_input()
    {
        Assert.Multiple(() =>
        {
            foreach (var target in FuzzTargets.All)
            {
                var corpus = InProcessFuzzer.Corpus(Program.CorpusDirectory, target.Name);
                Assert.That(corpus, Is.Not.Empty, $"corpus/{target.Name}");
                Assert.That(corpus.Count(c => target.Execute(c.Bytes) == FuzzOutcome.Accepted), Is.Positive,
                    $"corpus/{target.Name}: no seed is accepted, so mutations start from refusals only");
            }
        });
    }

    [TestCaseSource(nameof(Targets))]
    public void Corpus_replays_without_a_crash(string name)
    {
        var target = FuzzTargets.Get(name);
        var corpus = InProcessFuzzer.Corpus(Program.CorpusDirectory, name);
        Assert.Multiple(() =>
        {
            foreach (var (file, bytes) in corpus)
            {
                Assert.DoesNotThrow(() => target.Execute(bytes), $"corpus/{name}/{file}");
            }
        });
    }

    [TestCaseSource(nameof(Targets))]
    public void Mutations_of_the_corpus_never_crash(string name)
    {
        var target = FuzzTargets.Get(name);
        var corpus = InProcessFuzzer.Corpus(Program.CorpusDirectory, name).Select(c => c.Bytes).ToList();
        var seed = TestContext.CurrentContext.Random.Next();
        var run = InProcessFuzzer.Run(target, corpus, seed, TimeSpan.FromSeconds(Seconds), maxExecutions: 2_000_000);
        TestContext.Out.WriteLine($"{name}: {run.Executions} executions in {run.Elapsed.TotalSeconds:F1} s (seed {seed}): " +
                                  $"{run.Accepted} accepted, {run.Refused} refused, {run.Crashes.Count} crash(es)");
        Assert.That(run.Executions, Is.GreaterThan(corpus.Count), "mutations ran, not only the corpus");
        Assert.That(run.Crashes.Select(c => $"{c.Signature}: {c.Exception.Message} (input base64 {Convert.ToBase64String(c.Input)})"), Is.Empty,
            $"{name}: crashes (seed {seed}); save each input under corpus/{name}/ as a regression");
    }
}
