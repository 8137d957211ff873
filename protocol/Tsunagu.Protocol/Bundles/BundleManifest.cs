using System.Text.Json;
using System.Text.Json.Serialization;

namespace Tsunagu.Protocol.Bundles;

/// <summary>
/// The signed description of an update program (docs/bundles.md): what it applies to, what it installs, in
/// which order, and for each payload its size and SHA-256. The unit checks all of it before anything runs.
/// </summary>
public sealed record BundleManifest(
    int Format,
    string BundleId,
    long Version,
    IReadOnlyList<string> FromPatterns,
    string ToPattern,
    BundleCompatibility Compatibility,
    int Importance,
    DateTimeOffset CreatedAt,
    DateTimeOffset ExpiresAt,
    IReadOnlyList<BundlePayload> Payloads,
    IReadOnlyList<BundleStep> Steps,
    IReadOnlyList<string>? IntroducesKeys = null,
    IReadOnlyList<string>? RetiresKeys = null)
{
    public const int CurrentFormat = 1;

    /// <summary>Problems a message names (<see cref="DescribeProblems"/>); the rest are counted.</summary>
    public const int ShownProblems = 20;

    /// <summary>
    /// <paramref name="problems"/> as one message: the first <see cref="ShownProblems"/> joined by "; ", then "and N more"
    /// (a list of ten thousand bad files is not a message of ten thousand lines).
    /// </summary>
    public static string DescribeProblems(IReadOnlyList<string> problems) => problems.Count <= ShownProblems
        ? string.Join("; ", problems)
        : $"{string.Join("; ", problems.Take(ShownProblems))}; and {problems.Count - ShownProblems} more";

    /// <summary>Every rule the manifest breaks (empty when it is well formed); each names the field.</summary>
    public IReadOnlyList<string> Problems()
    {
        var problems = new List<string>();
        void Require(bool ok, string problem) { if (!ok) { problems.Add(problem); } }
        Require(Format == CurrentFormat, $"format: {Format} is not supported (expected {CurrentFormat})");
        Require(IsSegment(BundleId), $"bundleId: '{BundleId}' is not a single path segment");
        Require(Version >= 1, $"version: {Version} must be at least 1");
        Require(FromPatterns is { Count: > 0 } && FromPatterns.All(p => !string.IsNullOrWhiteSpace(p)), "fromPatterns: at least one non-empty pattern is required");
        Require(!string.IsNullOrWhiteSpace(ToPattern), "toPattern: required");
        Require(FromPatterns is null || !FromPatterns.Contains(ToPattern), $"toPattern: '{ToPattern}' is also a from-pattern");
        Require(Compatibility is { Boards.Count: > 0, HardwareVersions.Count: > 0, OsVersions.Count: > 0 },
            "compatibility: boards, hardwareVersions and osVersions each need at least one entry");
        Require(Importance is >= 1 and <= 5, $"importance: {Importance} is outside 1..5");
        Require(ExpiresAt > CreatedAt, $"expiresAt: {ExpiresAt:O} is not after createdAt {CreatedAt:O}");
        Require(Payloads is not null, "payloads: required");
        Require(Steps is not null, "steps: required");
        // JSON may leave entries and names null despite the contract: they are problems, never crashes
        var payloads = (Payloads ?? []).Where(p => p is not null).ToList();
        Require(payloads.Count == (Payloads ?? []).Count, "payloads: an entry is null");
        var names = new HashSet<string>(StringComparer.Ordinal);
        long total = 0;
        foreach (var p in payloads)
        {
            Require(IsSegment(p.Name), $"payloads: name '{p.Name}' is not a single path segment");
            Require(p.Name is null || names.Add(p.Name), $"payloads: name '{p.Name}' appears twice");
            Require(p.Size <= long.MaxValue - total, "payloads: the sizes add up to more than 2^63 - 1 bytes");
            total = p.Size > 0 && p.Size <= long.MaxValue - total ? total + p.Size : total;
            Require(p.Size >= 0, $"payloads.{p.Name}.size: {p.Size} is negative");
            Require(p.Sha256 is { Length: 64 } && p.Sha256.All(char.IsAsciiHexDigitLower), $"payloads.{p.Name}.sha256: not 64 lower-case hex digits");
            switch (p.Kind)
            {
                case PayloadKinds.Application:
                    Require(IsSegment(p.Application) && IsSegment(p.Version), $"payloads.{p.Name}: an application payload needs application and version (single path segments)");
                    FileProblems(p, problems);
                    break;
                case PayloadKinds.OsImage:
                    Require(!string.IsNullOrWhiteSpace(p.Version), $"payloads.{p.Name}: an OS image needs the OS version it installs");
                    foreach (var problem in p.Verity?.Problems() ?? [])
                    {
                        problems.Add($"payloads.{p.Name}.verity.{problem}");
                    }
                    // an image of one block has no tree (its root hash is that block's digest): the tree may be empty. Counted
                    // in whole blocks, both counts bounded by the payload's blocks first: any value is a problem, not an overflow
                    Require(p.Verity is null || (p.Verity.DataBlocks <= p.Size / OsVerity.BlockSize && p.Verity.HashStartBlock <= p.Size / OsVerity.BlockSize &&
                                                 p.Verity.HashStartBlock + (p.Verity.DataBlocks > 1 ? 1 : 0) <= p.Size / OsVerity.BlockSize),
                        $"payloads.{p.Name}.verity: the hash tree starts past the image's {p.Size} bytes");
                    break;
                case PayloadKinds.Script:
                    break;
                case PayloadKinds.Signatures:
                    Require(SignatureDatabases.IsName(p.Name), $"payloads.{p.Name}: a signatures payload is named as its ClamAV database file ({SignatureDatabases.NameRule})");
                    Require(p.Size is >= 1 and <= SignatureDatabases.MaxBytes, $"payloads.{p.Name}.size: a signature database is 1..{SignatureDatabases.MaxBytes} bytes");
                    Require(p.Application is null && p.Version is null, $"payloads.{p.Name}: a signatures payload has no application or version");
                    break;
                default:
                    problems.Add($"payloads.{p.Name}.kind: '{p.Kind}' is not one of {string.Join(", ", PayloadKinds.All)}");
                    break;
            }
        }
        foreach (var p in payloads.Where(p => p.Kind != PayloadKinds.OsImage && p.Verity is not null))
        {
            problems.Add($"payloads.{p.Name}.verity: only an OS image has a hash tree");
        }
        foreach (var p in payloads.Where(p => p.Kind != PayloadKinds.Application && p.Files is not null))
        {
            problems.Add($"payloads.{p.Name}.files: only an application lists files");
        }
        Require(payloads.Count(p => p.Kind == PayloadKinds.OsImage) <= 1, "payloads: at most one OS image per bundle");
        var byName = payloads.Where(p => p.Name is not null).GroupBy(p => p.Name).ToDictionary(g => g.Key, g => g.First());
        var used = new HashSet<string>(StringComparer.Ordinal);
        var signatureSteps = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < (Steps ?? []).Count; i++)
        {
            var s = Steps![i];
            if (s is null)
            {
                problems.Add($"steps[{i}]: null");
                continue;
            }
            if (!byName.TryGetValue(s.Payload ?? "", out var payload))
            {
                problems.Add($"steps[{i}]: payload '{s.Payload}' is not in payloads");
                continue;
            }
            used.Add(payload.Name);
            var expectedKind = s.Action switch
            {
                StepActions.InstallApplication => PayloadKinds.Application,
                StepActions.InstallOs => PayloadKinds.OsImage,
                StepActions.RunScript => PayloadKinds.Script,
                StepActions.InstallSignatures => PayloadKinds.Signatures,
                _ => null,
            };
            Require(expectedKind is not null, $"steps[{i}].action: '{s.Action}' is not one of {string.Join(", ", StepActions.All)}");
            Require(s.Action != StepActions.InstallSignatures || signatureSteps.Add(payload.Name), $"steps[{i}]: signatures '{payload.Name}' are installed twice");
            Require(s.Action != StepActions.InstallSignatures || s is { Phase: null, TimeoutSeconds: null }, $"steps[{i}]: a signatures step has no phase or timeout");
            Require(expectedKind is null || expectedKind == payload.Kind, $"steps[{i}]: action {s.Action} cannot use payload '{payload.Name}' of kind {payload.Kind}");
            Require(s.Action != StepActions.RunScript || ScriptPhases.All.Contains(s.Phase), $"steps[{i}].phase: '{s.Phase}' is not one of {string.Join(", ", ScriptPhases.All)}");
            Require(s.TimeoutSeconds is null or (>= 1 and <= 3600), $"steps[{i}].timeoutSeconds: {s.TimeoutSeconds} is outside 1..3600");
        }
        foreach (var unused in byName.Keys.Where(n => !used.Contains(n)))
        {
            problems.Add($"payloads.{unused}: no step uses it");
        }
        foreach (var key in IntroducesKeys ?? [])
        {
            Require(key is not null && ReleaseKeys.TryParse(key, out _), $"introducesKeys: '{Shorten(key ?? "null")}' is not a P-256 public key (SPKI, base64)");
        }
        return problems;
    }

    /// <summary>At most this many files in one application's <see cref="BundlePayload.Files"/>.</summary>
    public const int MaxApplicationFiles = 10_000;

    /// <summary>
    /// An application payload's file list, when it has one, lists every regular file of its tree once: a relative path of
    /// valid segments, a size, a digest (<see cref="FileListRules"/>, the rules a unit's seal keeps its own list to). A
    /// payload without one (a bundle built before file lists) is valid: its tar's digest is signed, and the unit keeps the
    /// list of the tree it unpacked from the verified tar (docs/bundles.md section 9).
    /// </summary>
    private static void FileProblems(BundlePayload p, List<string> problems)
    {
        if (p.Files is null)
        {
            return;
        }
        foreach (var (_, detail) in FileListRules.Problems(p.Files))
        {
            problems.Add($"payloads.{p.Name}.files: {detail}");
        }
    }

    /// <summary>A path inside an application tree: segments joined by '/', each a single path segment, no control characters.</summary>
    public static bool IsRelativePath(string? value) =>
        !string.IsNullOrEmpty(value) && value.Length <= 1024 && !value.Any(char.IsControl) &&
        value.Split('/').All(segment => !string.IsNullOrWhiteSpace(segment) && segment is not ("." or "..") && segment.IndexOf('\\') < 0);

    /// <summary>Total length in bytes of all payloads (of a manifest without <see cref="Problems"/>).</summary>
    public long PayloadBytes => Payloads.Sum(p => p.Size);

    private static bool IsSegment(string? value) =>
        !string.IsNullOrWhiteSpace(value) && value is not ("." or "..") && !value.StartsWith('.') &&
        value.IndexOfAny(['/', '\\', '\0']) < 0 && value.Length <= 128;

    private static string Shorten(string s) => s.Length <= 24 ? s : s[..24] + "...";
}

/// <summary>Which units a bundle may be installed on.</summary>
public sealed record BundleCompatibility(IReadOnlyList<string> Boards, IReadOnlyList<string> HardwareVersions, IReadOnlyList<string> OsVersions);

/// <summary>One payload: its bytes follow the manifest in the bundle, in manifest order.</summary>
/// <remarks>
/// An application payload lists in <see cref="Files"/> every regular file of its tree with its size and SHA-256, so
/// the unit can check the installed tree against the signed manifest long after the tar is gone (docs/bundles.md); a
/// bundle built before file lists has none, and the unit checks the tree against the list it made at install.
/// An OS image may carry its dm-verity hash tree after the image (<see cref="Verity"/>: where it is and its root
/// hash); the unit records it for the slot it writes and the boot program maps the slot through dm-verity.
/// </remarks>
public sealed record BundlePayload(string Name, string Kind, long Size, string Sha256, string? Application = null, string? Version = null,
    IReadOnlyList<BundleFile>? Files = null, OsVerity? Verity = null);

/// <summary>One regular file of an application tree: its path relative to the tree ('/' separated), size and SHA-256.</summary>
public sealed record BundleFile(string Path, long Size, string Sha256);

/// <summary>One step of the install, in order: install an application tree or an OS image, or run a script in a phase.</summary>
public sealed record BundleStep(string Action, string Payload, string? Phase = null, int? TimeoutSeconds = null);

public static class PayloadKinds
{
    /// <summary>An application tree as an uncompressed tar (regular files and directories only).</summary>
    public const string Application = "app";

    /// <summary>An OS image for the inactive slot.</summary>
    public const string OsImage = "os";

    /// <summary>An executable run under the script contract.</summary>
    public const string Script = "script";

    /// <summary>A ClamAV signature database, named as its file (<see cref="SignatureDatabases.IsName"/>), installed for clamd.</summary>
    public const string Signatures = "signatures";

    public static readonly IReadOnlyList<string> All = [Application, OsImage, Script, Signatures];
}

/// <summary>The grammar of a ClamAV signature database carried by a bundle (docs/bundles.md).</summary>
public static partial class SignatureDatabases
{
    /// <summary>The largest database accepted (ClamAV's full main database is about 160 MB).</summary>
    public const long MaxBytes = 512L * 1024 * 1024;

    public const string NameRule = "lower-case letters, digits, '._-', at most 64 characters, ending in a ClamAV database extension";

    /// <summary>A database file name: lower-case letters, digits, '.', '_', '-' and one of ClamAV's database extensions; no path, no "..".</summary>
    public static bool IsName(string? name) => name is { Length: <= 64 } && Name().IsMatch(name) && !name.Contains("..", StringComparison.Ordinal);

    [System.Text.RegularExpressions.GeneratedRegex(@"^[a-z0-9][a-z0-9._-]*\.(hdb|hsb|mdb|msb|ndb|ldb|cdb|fp|sfp|ign2|cvd|cld|cud)\z")]
    private static partial System.Text.RegularExpressions.Regex Name();
}

public static class StepActions
{
    public const string InstallApplication = "install-app";
    public const string InstallOs = "install-os";
    public const string RunScript = "run-script";

    /// <summary>Installs a signatures payload into clamd's database (in the switch phase; rolled back with the bundle).</summary>
    public const string InstallSignatures = "install-signatures";

    public static readonly IReadOnlyList<string> All = [InstallApplication, InstallOs, RunScript, InstallSignatures];
}

/// <summary>When a script runs (docs/bundles.md, the script contract).</summary>
public static class ScriptPhases
{
    public const string PreInstall = "pre-install";
    public const string PostInstall = "post-install";
    public const string Health = "health";
    public const string Rollback = "rollback";
    public static readonly IReadOnlyList<string> All = [PreInstall, PostInstall, Health, Rollback];
}

/// <summary>One signature over the manifest bytes: which release key, which algorithm, the value (base64).</summary>
public sealed record BundleSignature(string KeyId, string Algorithm, string Value)
{
    public const string Es256 = "ES256";
}

/// <summary>The last bundle a unit committed: anti-rollback counter (docs/bundles.md).</summary>
public sealed record BundleCounter(long Version, string BundleId);

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, WriteIndented = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(BundleManifest))]
[JsonSerializable(typeof(List<BundleSignature>))]
[JsonSerializable(typeof(BundleCounter))]
public sealed partial class BundleJson : JsonSerializerContext;
