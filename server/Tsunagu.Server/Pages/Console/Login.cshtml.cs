using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Pages.Shared;
using Tsunagu.Server.Web;

namespace Tsunagu.Server.Pages.Console;

public sealed class LoginModel(TsunaguStore store, Security.PasswordGuard guard)
    : LoginPageModel("console", WebSessions.OperatorScheme, TokenScope.Operator, store.Accounts.GetOperatorHashAsync, store, guard);
