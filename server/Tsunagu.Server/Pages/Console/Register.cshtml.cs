using System.ComponentModel.DataAnnotations;
using Microsoft.AspNetCore.Mvc;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Pages.Shared;
using Tsunagu.Server.Security;
using Tsunagu.Server.Units.Registration;

namespace Tsunagu.Server.Pages.Console;

public sealed class UnitForm
{
    [Required, Display(Name = "MAC address")] public string Mac { get; set; } = "";
    [Required, Display(Name = "Serial number")] public string Serial { get; set; } = "";
    [Required, Display(Name = "Hardware version")] public string HardwareVersion { get; set; } = "r1";
    [Required, Display(Name = "ISP connection")] public string IspMethod { get; set; } = "pppoe";
    [Display(Name = "ISP account")] public string? IspUsername { get; set; }
    [DataType(DataType.Password), Display(Name = "ISP password")] public string? IspPassword { get; set; }
    [Display(Name = "IP address")] public string? IpAddress { get; set; }
    [Display(Name = "Gateway")] public string? IspGateway { get; set; }
    [Display(Name = "Name servers")] public string? IspDns { get; set; }
    [Display(Name = "Domain")] public string? Domain { get; set; }
    [Display(Name = "VPN")] public string? Vpn { get; set; }
    [Display(Name = "Global IP")] public string? GlobalIp { get; set; }
    [Display(Name = "Subscriber")] public string? Subscriber { get; set; }
    [Display(Name = "Target pattern")] public string? TargetPattern { get; set; }
}

/// <summary>Registration of units into the device management table: one by form, or a CSV file with errors per row.</summary>
[ConsoleAccess(OperatorRoles.Administrator)]
public sealed class RegisterModel(TsunaguStore store, UnitRegistration registration) : SessionPageModel("console")
{
    [BindProperty] public UnitForm Form { get; set; } = new();
    public IReadOnlyList<PatternRow> Patterns { get; private set; } = [];
    public BulkCheck? Bulk { get; private set; }
    public int BulkRegistered { get; private set; }
    public string CsvColumns => string.Join(',', DeviceTable.Columns);

    public async Task OnGetAsync() => Patterns = await store.Catalogue.ListPatternsAsync(PatternStatus.Verified, ct: HttpContext.RequestAborted);

    [ConsoleAccess(OperatorRoles.Administrator)]
    public async Task<IActionResult> OnPostOneAsync()
    {
        Patterns = await store.Catalogue.ListPatternsAsync(PatternStatus.Verified, ct: HttpContext.RequestAborted);
        if (!ModelState.IsValid)
        {
            Response.StatusCode = StatusCodes.Status400BadRequest;
            return Page();
        }
        var request = new RegisterUnitRequest(Form.Mac, Form.Serial, Form.HardwareVersion,
            new WanAccount(Form.IspMethod, Blank(Form.IspUsername), Blank(Form.IspPassword), null, Blank(Form.IspGateway),
                UnitRegistration.NameServers(Form.IspDns)),
            Blank(Form.IpAddress), Blank(Form.Domain), Blank(Form.Vpn), Blank(Form.GlobalIp), Blank(Form.TargetPattern), Blank(Form.Subscriber));
        var (unit, error, conflict) = await registration.RegisterAsync(request, Who, HttpContext.RequestAborted);
        if (unit is null)
        {
            // the form comes back with what was typed and the error naming the field; nothing was stored
            Response.StatusCode = conflict ? StatusCodes.Status409Conflict : StatusCodes.Status400BadRequest;
            ModelState.AddModelError("", error!);
            return Page();
        }
        Notice = $"Registered {unit.Mac}.";
        return Redirect($"/console/units/{unit.Mac}");
    }

    [ConsoleAccess(OperatorRoles.Administrator)]
    public async Task<IActionResult> OnPostCsvAsync(IFormFile? table)
    {
        Patterns = await store.Catalogue.ListPatternsAsync(PatternStatus.Verified, ct: HttpContext.RequestAborted);
        ModelState.Clear();
        if (table is null || table.Length == 0)
        {
            ModelState.AddModelError("table", "Choose a CSV file of the device management table.");
            return Page();
        }
        if (table.Length > 10 * 1024 * 1024)
        {
            ModelState.AddModelError("table", "The file is larger than 10 MB; split it.");
            return Page();
        }
        using var reader = new StreamReader(table.OpenReadStream());
        var text = await reader.ReadToEndAsync(HttpContext.RequestAborted);
        Bulk = await registration.CheckBulkAsync(text, HttpContext.RequestAborted);
        if (Bulk.CanCommit)
        {
            try
            {
                await registration.CommitBulkAsync(Bulk, Who, HttpContext.RequestAborted);
                BulkRegistered = Bulk.Valid.Count;
            }
            catch (Data.StoreConflictException e)
            {
                ModelState.AddModelError("table", e.Message);
            }
        }
        return Page();
    }
}
