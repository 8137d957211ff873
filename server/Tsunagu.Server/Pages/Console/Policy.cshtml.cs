using System.Globalization;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Data;
using Tsunagu.Server.Pages.Shared;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Pages.Console;

/// <summary>
/// The update policy (patent 0048, 0064: what importance 4 and 3 wait for): the policy in force with what each importance
/// does under it, and the form that changes it by <see cref="PolicySettings.SetCheckedAsync"/>, the API's rules, lock and
/// audit entry (<c>settings.update-policy</c>). Every field is read by its grammar first (a fraction, an hour, a time zone
/// id), then the policy as a whole by <see cref="ImportancePolicy.Validate"/>; a refused form is answered 400 (409 for a
/// policy that would hold a running or paused rollout's units forever) with the reason beside the form as it was typed,
/// and nothing is changed.
/// </summary>
[ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager, OperatorRoles.Support, OperatorRoles.Auditor)]
public sealed class PolicyModel(TsunaguStore store) : SessionPageModel("console")
{
    public UpdatePolicy Policy { get; private set; } = UpdatePolicy.Default;

    /// <summary>Why the form was refused (shown with the form as it was typed).</summary>
    public string? Refusal { get; private set; }

    public async Task OnGetAsync() => Policy = await PolicySettings.GetAsync(store, HttpContext.RequestAborted);

    [ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.ReleaseManager)]
    public async Task<IActionResult> OnPostAsync(string? cpu, string? wan, string? host, string? lowStart, string? lowEnd, string? maintenanceStart,
        string? maintenanceEnd, string? zone, CancellationToken ct)
    {
        if (Read(cpu, wan, host, lowStart, lowEnd, maintenanceStart, maintenanceEnd, zone, out var policy) is { } bad) { return await RefuseAsync(bad); }
        try
        {
            ImportancePolicy.Validate(policy);
        }
        catch (ArgumentException e)
        {
            return await RefuseAsync(e.Message);
        }
        try
        {
            await PolicySettings.SetCheckedAsync(store, policy, Who, ct);
        }
        catch (StoreConflictException e)
        {
            return await RefuseAsync(e.Message, conflict: true);
        }
        Notice = "Update policy saved.";
        return RedirectToPage();
    }

    /// <summary>
    /// The form's fields as a policy, or why not, by their grammar only: thresholds written <c>0.5</c> (digits and at
    /// most one point), hours whole numbers of one or two ASCII digits, the time zone empty (the host's) or at most 64
    /// characters; spaces around a value are forgiven, any other character refused. The ranges and whether the zone is
    /// known are <see cref="ImportancePolicy.Validate"/>'s, as for the API.
    /// </summary>
    public static string? Read(string? cpu, string? wan, string? host, string? lowStart, string? lowEnd, string? maintenanceStart, string? maintenanceEnd,
        string? zone, out UpdatePolicy policy)
    {
        policy = UpdatePolicy.Default;
        var fractions = new double[3];
        foreach (var (i, name, text) in new[] { (0, "cpuThreshold", cpu), (1, "wanThreshold", wan), (2, "hostLoadThreshold", host) })
        {
            if (!Fraction(text, out fractions[i])) { return $"{name}: '{InputRules.Quote(text)}' is not a fraction such as 0.5 (above 0, at most 1)"; }
        }
        var hours = new int[4];
        foreach (var (i, name, text) in new[] { (0, "lowWindowStartHour", lowStart), (1, "lowWindowEndHour", lowEnd), (2, "maintenanceStartHour", maintenanceStart), (3, "maintenanceEndHour", maintenanceEnd) })
        {
            if (!Hour(text, out hours[i])) { return $"{name}: '{InputRules.Quote(text)}' is not an hour (a whole number 0-23)"; }
        }
        var id = string.IsNullOrWhiteSpace(zone) ? null : zone.Trim(' ');
        if (id is { Length: > 64 }) { return $"timeZone: '{InputRules.Quote(id)}' is longer than a time zone id (64 characters); leave it empty for the host's"; }
        policy = new UpdatePolicy(fractions[0], fractions[1], hours[0], hours[1], hours[2], hours[3], id, fractions[2]);
        return null;
    }

    private static bool Fraction(string? text, out double value)
    {
        value = 0;
        var t = text?.Trim(' '); // spaces around a value are forgiven, a control character is not
        return t is { Length: > 0 and <= 8 } && t.All(c => c is >= '0' and <= '9' or '.') && t.Count(c => c == '.') <= 1
            && double.TryParse(t, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out value);
    }

    private static bool Hour(string? text, out int value)
    {
        value = 0;
        var t = text?.Trim(' ');
        return t is { Length: > 0 and <= 2 } && t.All(char.IsAsciiDigit) && int.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out value);
    }

    private async Task<PageResult> RefuseAsync(string why, bool conflict = false)
    {
        Response.StatusCode = conflict ? StatusCodes.Status409Conflict : StatusCodes.Status400BadRequest;
        Refusal = "Nothing was changed: " + why;
        await OnGetAsync();
        return Page();
    }
}
