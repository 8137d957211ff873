namespace Tsunagu.Server.Apis;

/// <summary>
/// The grammar of what the API stores: identifiers (ids, application names, versions) are short ASCII tokens that are
/// safe in a URL path, a header and a file name; free text is bounded and has no control characters; every check runs
/// before anything is written.
/// </summary>
public static class InputRules
{
    public const int MaxIdentifier = 64;
    public const int MaxText = 256;

    /// <summary>1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit.</summary>
    public static bool IsIdentifier([System.Diagnostics.CodeAnalysis.NotNullWhen(true)] string? value) =>
        value is { Length: > 0 and <= MaxIdentifier } && char.IsAsciiLetterOrDigit(value[0]) &&
        value.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-');

    /// <summary>Non-empty text of at most <paramref name="max"/> characters without control characters or line separators.</summary>
    public static bool IsText([System.Diagnostics.CodeAnalysis.NotNullWhen(true)] string? value, int max = MaxText) =>
        !string.IsNullOrWhiteSpace(value) && value.Length <= max &&
        !value.Any(c => char.IsControl(c) || c is '\u2028' or '\u2029' || char.IsSurrogate(c) && !char.IsSurrogatePair(value, value.IndexOf(c)));

    /// <summary>Null or empty (absent), or <see cref="IsText"/>.</summary>
    public static bool IsOptionalText(string? value, int max = MaxText) => string.IsNullOrEmpty(value) || IsText(value, max);

    /// <summary>A DNS name: dot-separated labels of letters, digits and hyphens, at most 253 characters.</summary>
    public static bool IsDomainName(string? name) =>
        name is { Length: > 0 and <= 253 } &&
        name.Split('.').All(l => l.Length is > 0 and <= 63 && l.All(c => char.IsAsciiLetterOrDigit(c) || c == '-') && l[0] != '-' && l[^1] != '-');

    /// <summary>A value as an error message may quote it: at most 64 characters, control characters shown as '?'.</summary>
    public static string Quote(string? value) =>
        value is null ? "" : new string(value.Take(64).Select(c => char.IsControl(c) ? '?' : c).ToArray()) + (value.Length > 64 ? "..." : "");

    public static string Identifier(string field) => $"{field}: required, 1-{MaxIdentifier} of A-Z a-z 0-9 . _ - (starting with a letter or digit)";

    public static string Text(string field, int max = MaxText) => $"{field}: at most {max} characters, no control characters";

    /// <summary>
    /// An If-Match header holding one revision as its ETag (<c>"3"</c> or <c>W/"3"</c>, at least <paramref name="min"/>):
    /// the revision; nothing when there is no header; or the problem, saying it is not <paramref name="what"/>.
    /// </summary>
    public static (long? Revision, string? Error) IfMatchRevision(Microsoft.AspNetCore.Http.HttpContext http, long min, string what)
    {
        var header = http.Request.Headers.IfMatch.ToString().Trim();
        if (header.Length == 0) { return (null, null); }
        var tag = header.StartsWith("W/", StringComparison.Ordinal) ? header[2..] : header;
        return tag.Length is > 2 and <= 22 && tag[0] == '"' && tag[^1] == '"' &&
               long.TryParse(tag.AsSpan(1, tag.Length - 2), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var r) && r >= min
            ? (r, null)
            : (null, $"If-Match: '{Quote(header)}' is not {what}");
    }

    /// <summary>
    /// An If-Match header holding a document's digest as its ETag (<c>"&lt;64 lower-case hex digits&gt;"</c>, or with
    /// <c>W/</c>): the digest; nothing when there is no header; or the problem, saying it is not <paramref name="what"/>.
    /// </summary>
    public static (string? Digest, string? Error) IfMatchDigest(Microsoft.AspNetCore.Http.HttpContext http, string what)
    {
        var header = http.Request.Headers.IfMatch.ToString().Trim();
        if (header.Length == 0) { return (null, null); }
        var tag = header.StartsWith("W/", StringComparison.Ordinal) ? header[2..] : header;
        return tag.Length == 66 && tag[0] == '"' && tag[^1] == '"' && IsSha256Hex(tag[1..^1])
            ? (tag[1..^1], null)
            : (null, $"If-Match: '{Quote(header)}' is not {what}");
    }

    /// <summary>A SHA-256 written as the server writes digests: 64 lower-case hex digits.</summary>
    public static bool IsSha256Hex(string? text) => text is { Length: 64 } && text.All(char.IsAsciiHexDigitLower);

    /// <summary>The ETag of a stored document: its digest, quoted.</summary>
    public static string DigestETag(string digest) => $"\"{digest}\"";
}
