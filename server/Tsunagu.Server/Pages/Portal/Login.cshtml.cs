using Tsunagu.Protocol;
using Tsunagu.Server.Data;
using Tsunagu.Server.Pages.Shared;
using Tsunagu.Server.Web;

namespace Tsunagu.Server.Pages.Portal;

public sealed class LoginModel(TsunaguStore store, Security.PasswordGuard guard)
    : LoginPageModel("portal", WebSessions.SubscriberScheme, TokenScope.Subscriber, store.Accounts.GetSubscriberHashAsync, store, guard);
