using Tsunagu.Server.Data;
using Tsunagu.Server.Pages.Shared;
using Tsunagu.Server.Security;

namespace Tsunagu.Server.Pages.Console;

[ConsoleAccess(OperatorRoles.Administrator, OperatorRoles.Auditor)]
public sealed class AuditModel(TsunaguStore store) : SessionPageModel("console")
{
    public IReadOnlyList<AuditRow> Entries { get; private set; } = [];
    public string? Actor { get; private set; }
    public string? Target { get; private set; }

    public void OnGet(string? actor, string? target)
    {
        Actor = string.IsNullOrWhiteSpace(actor) ? null : actor.Trim();
        Target = string.IsNullOrWhiteSpace(target) ? null : target.Trim();
        Entries = store.ListAudit(500, Actor, Target);
    }
}
