using Microsoft.AspNetCore.Http;
using Tsunagu.Server.Apis;

namespace Tsunagu.UnitTests.Server;

/// <summary>The If-Match grammar shared by the unit record and the service configuration: one quoted revision.</summary>
public class IfMatchRevisionTests
{
    private static (long? Revision, string? Error) Read(string? header, long min)
    {
        var http = new DefaultHttpContext();
        if (header is not null) { http.Request.Headers.IfMatch = header; }
        return InputRules.IfMatchRevision(http, min, "a revision");
    }

    [TestCase(null, 1, null)]
    [TestCase("\"3\"", 1, 3L)]
    [TestCase("W/\"3\"", 1, 3L)]
    [TestCase("  \"12\" ", 1, 12L)]
    [TestCase("\"0\"", 0, 0L)]
    public void A_quoted_revision_or_none_is_read(string? header, long min, long? revision) =>
        Assert.That(Read(header, min), Is.EqualTo((revision, (string?)null)));

    [TestCase("3", 1)]
    [TestCase("\"0\"", 1)]
    [TestCase("\"-1\"", 0)]
    [TestCase("\"+1\"", 0)]
    [TestCase("\"1 \"", 0)]
    [TestCase("\"\"", 0)]
    [TestCase("*", 0)]
    [TestCase("\"1\", \"2\"", 0)]
    [TestCase("\"99999999999999999999\"", 0)]
    [TestCase("\"1\u0007\"", 0)]
    public void Anything_else_is_refused_saying_what_was_expected(string header, long min)
    {
        var (revision, error) = Read(header, min);
        Assert.That(revision, Is.Null);
        Assert.That(error, Does.StartWith("If-Match: '").And.EndWith("is not a revision"));
    }
}
