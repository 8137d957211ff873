using Microsoft.AspNetCore.Mvc;
using Tsunagu.Server.Catalogue;
using Tsunagu.Server.Data;
using Tsunagu.Server.Pages.Shared;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Pages.Console;

/// <summary>The catalogue (patent figs. 7-8): software, patches by importance, install patterns and their lifecycle, update programs, artifact and install-media digests.</summary>
[ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager, OperatorRoles.Support, OperatorRoles.Auditor)]
public sealed partial class CatalogueModel(TsunaguStore store, CatalogueService catalogue, ArtifactStore artifacts) : SessionPageModel("console")
{
    public IReadOnlyList<SoftwareRow> Software { get; private set; } = [];
    public IReadOnlyList<PatchRow> Patches { get; private set; } = [];
    public IReadOnlyList<Apis.PatternView> Patterns { get; private set; } = [];
    public IReadOnlyList<UpdateProgramRow> Programs { get; private set; } = [];
    public IReadOnlyList<(string Sha256, long Size)> Media { get; private set; } = [];
    public IReadOnlyList<Tsunagu.Protocol.MediaRegistration> GenuineMedia { get; private set; } = [];

    public async Task OnGetAsync()
    {
        Software = await store.Catalogue.ListSoftwareAsync(ct: HttpContext.RequestAborted);
        Patches = await store.Catalogue.ListPatchesAsync(HttpContext.RequestAborted);
        Patterns = (await store.Catalogue.ListPatternsAsync(ct: HttpContext.RequestAborted)).Select(CatalogueService.View).ToList();
        Programs = await store.Catalogue.ListUpdateProgramsAsync(HttpContext.RequestAborted);
        Media = artifacts.List();
        GenuineMedia = await store.Media.ListMediaAsync(HttpContext.RequestAborted);
    }

    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public Task<IActionResult> OnPostVerifyAsync(string id) => ApplyAsync(id, () => catalogue.VerifyAsync(id, Who, "web console", ct: HttpContext.RequestAborted), "verified");

    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public Task<IActionResult> OnPostRetireAsync(string id) => ApplyAsync(id, () => catalogue.RetireAsync(id, Who, "web console", ct: HttpContext.RequestAborted), "retired");

    /// <summary>Registers a genuine install medium by its digest, by the API's rules (<see cref="CatalogueService.CheckMedium"/>).</summary>
    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public async Task<IActionResult> OnPostRegisterMediumAsync(string? digest, string? name)
    {
        var (medium, problem) = CatalogueService.CheckMedium(new Tsunagu.Protocol.MediaRegistration(digest ?? "", name ?? ""));
        if (medium is null)
        {
            Problem = $"Nothing was registered: {problem}";
            return RedirectToPage();
        }
        return await ChangeAsync(() => catalogue.RegisterMediumAsync(medium, Who, HttpContext.RequestAborted), $"Medium {medium.Name} ({medium.Digest}) registered as genuine.", "Nothing was registered");
    }

    /// <summary>Adds catalogued software, by the API's rules (<see cref="CatalogueService.AddSoftwareAsync"/>).</summary>
    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public async Task<IActionResult> OnPostAddSoftwareAsync(string? appId, string? version, string? name, string? requiredHardware, string? requiredOs)
    {
        var row = new SoftwareRow
        {
            AppId = appId?.Trim() ?? "", Version = version?.Trim() ?? "", Name = name?.Trim() ?? "",
            RequiredHardware = string.IsNullOrWhiteSpace(requiredHardware) ? null : requiredHardware.Trim(),
            RequiredOs = string.IsNullOrWhiteSpace(requiredOs) ? null : requiredOs.Trim(),
        };
        return await ChangeAsync(async () => await catalogue.AddSoftwareAsync(row, Who, ct: HttpContext.RequestAborted), $"Software {row.AppId} {row.Version} added.");
    }

    /// <summary>
    /// Creates a draft pattern from one "application=version" per line, by the API's rules
    /// (<see cref="CatalogueService.CreatePatternAsync"/>: every version must be in the catalogue).
    /// </summary>
    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public async Task<IActionResult> OnPostCreatePatternAsync(string? id, string? name, string? hardwareVersion, string? osVersion, string? applications)
    {
        var apps = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in (applications ?? "").Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var eq = line.IndexOf('=');
            if (eq <= 0 || !apps.TryAdd(line[..eq].Trim(), line[(eq + 1)..].Trim()))
            {
                Problem = $"Nothing was created: applications: '{Apis.InputRules.Quote(line)}' is not one application=version (each application once)";
                return RedirectToPage();
            }
        }
        var pattern = new NewPattern(id?.Trim() ?? "", name?.Trim() ?? "", hardwareVersion?.Trim() ?? "", osVersion?.Trim() ?? "", apps);
        return await ChangeAsync(async () => await catalogue.CreatePatternAsync(pattern, Who, HttpContext.RequestAborted), $"Draft pattern {pattern.Id} created; verify it to use it.");
    }

    private async Task<IActionResult> ChangeAsync(Func<Task> change, string done, string nothing = "Nothing was created")
    {
        try
        {
            await change();
            Notice = done;
        }
        catch (Exception e) when (e is CatalogueRuleException or StoreConflictException or KeyNotFoundException)
        {
            Problem = $"{nothing}: {e.Message}";
        }
        return RedirectToPage();
    }

    private async Task<IActionResult> ApplyAsync(string id, Func<Task<PatternRow>> change, string done)
    {
        try
        {
            await change();
            Notice = $"Pattern {id} {done}.";
        }
        catch (Exception e) when (e is CatalogueRuleException or KeyNotFoundException)
        {
            Problem = e.Message;
        }
        return RedirectToPage();
    }
}
