using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Tsunagu.Demo;
using Tsunagu.Protocol;
using Tsunagu.Server.Apis;
using Tsunagu.Server.Catalogue;
using Tsunagu.Server.Data;
using Tsunagu.Server.Security;
using Tsunagu.Server.Web;

namespace Tsunagu.IntegrationTests;

/// <summary>
/// Operator roles on the API and the console. The role matrix is generated from the server's OpenAPI document: every
/// operator operation must carry a role decision (and the one this test's table expects), and is called as every role;
/// exactly the roles it does not allow get 403, and a refused call changes nothing in the database.
/// </summary>
[NonParallelizable]
public class RoleTests
{
    private const string A = OperatorRoles.Administrator, R = OperatorRoles.ReleaseManager, S = OperatorRoles.Support, U = OperatorRoles.Auditor;

    /// <summary>The reviewed decisions: operation -> the roles that may call it. A new operator endpoint needs a row here and a decision in code.</summary>
    private static readonly Dictionary<string, string[]> Expected = new()
    {
        ["GET /api/v1/units"] = [A, R, S, U],
        ["GET /api/v1/units/{mac}"] = [A, R, S, U],
        ["POST /api/v1/units"] = [A],
        ["POST /api/v1/units/bulk"] = [A],
        ["PUT /api/v1/units/{mac}/target-pattern"] = [A, R],
        ["GET /api/v1/units/{mac}/update-window"] = [A, R, S, U],
        ["PUT /api/v1/units/{mac}/update-window"] = [A, R],
        ["GET /api/v1/units/{mac}/tags"] = [A, R, S, U],
        ["PUT /api/v1/units/{mac}/tags"] = [A, R],
        ["GET /api/v1/tags"] = [A, R, S, U],
        ["GET /api/v1/tags/{tag}/units"] = [A, R, S, U],
        ["GET /api/v1/groups"] = [A, R, S, U],
        ["GET /api/v1/groups/{name}"] = [A, R, S, U],
        ["POST /api/v1/groups"] = [A, R],
        ["DELETE /api/v1/groups/{name}"] = [A, R],
        ["PUT /api/v1/groups/{name}/window"] = [A, R],
        ["GET /api/v1/rollouts"] = [A, R, S, U],
        ["GET /api/v1/rollouts/{name}"] = [A, R, S, U],
        ["GET /api/v1/rollouts/{name}/returns"] = [A, R, S, U],
        ["GET /api/v1/rollouts/{name}/never-offered"] = [A, R, S, U],
        ["POST /api/v1/rollouts"] = [A, R],
        ["POST /api/v1/rollouts/{name}/pause"] = [A, R],
        ["POST /api/v1/rollouts/{name}/resume"] = [A, R],
        ["POST /api/v1/rollouts/{name}/abort"] = [A, R],
        ["POST /api/v1/rollouts/emergency-stop"] = [A, R, S],
        ["GET /api/v1/units/{mac}/service-config"] = [A, R, S, U],
        ["PUT /api/v1/units/{mac}/service-config"] = [A, S],
        ["POST /api/v1/units/check"] = [A, R, S],
        ["GET /api/v1/units/check/{id}"] = [A, R, S, U],
        ["GET /api/v1/units/{mac}/record"] = [A, R, S, U],
        ["PATCH /api/v1/units/{mac}/record"] = [A],
        ["GET /api/v1/units/{mac}/revisions"] = [A, R, S, U],
        ["POST /api/v1/units/{mac}/decommission"] = [A],
        ["DELETE /api/v1/units/{mac}"] = [A],
        ["POST /api/v1/units/{mac}/replace"] = [A],
        ["POST /api/v1/units/{mac}/transfer-subscriber"] = [A, S],
        ["POST /api/v1/secrets/rotate"] = [A],
        ["GET /api/v1/software"] = [A, R, S, U],
        ["POST /api/v1/software"] = [A, R],
        ["GET /api/v1/patches"] = [A, R, S, U],
        ["POST /api/v1/patches"] = [A, R],
        ["PUT /api/v1/patches/{id}"] = [A, R],
        ["DELETE /api/v1/patches/{id}"] = [A, R],
        ["PUT /api/v1/software/{appId}/{version}"] = [A, R],
        ["DELETE /api/v1/software/{appId}/{version}"] = [A, R],
        ["DELETE /api/v1/patterns/{id}"] = [A, R],
        ["GET /api/v1/patterns"] = [A, R, S, U],
        ["GET /api/v1/patterns/{id}"] = [A, R, S, U],
        ["POST /api/v1/patterns"] = [A, R],
        ["POST /api/v1/patterns/{id}/verify"] = [A, R],
        ["POST /api/v1/patterns/{id}/retire"] = [A, R],
        ["GET /api/v1/update-programs"] = [A, R, S, U],
        ["POST /api/v1/update-programs"] = [A, R],
        ["DELETE /api/v1/update-programs/{id}"] = [A, R],
        ["POST /api/v1/artifacts"] = [A, R],
        ["GET /api/v1/service-configs"] = [A, R, S, U],
        ["GET /api/v1/service-configs/{name}"] = [A, R, S, U],
        ["PUT /api/v1/service-configs/{name}"] = [A, R],
        ["DELETE /api/v1/service-configs/{name}"] = [A, R],
        ["GET /api/v1/contracts"] = [A, R, S, U],
        ["GET /api/v1/contracts/{name}"] = [A, R, S, U],
        ["PUT /api/v1/contracts/{name}"] = [A],
        ["DELETE /api/v1/contracts/{name}"] = [A],
        ["GET /api/v1/media"] = [A, R, S, U],
        ["POST /api/v1/media"] = [A, R],
        ["DELETE /api/v1/media/{digest}"] = [A, R],
        ["GET /api/v1/settings/update-policy"] = [A, R, S, U],
        ["PUT /api/v1/settings/update-policy"] = [A, R],
        ["GET /api/v1/audit"] = [A, U],
        ["POST /api/v1/operator/token"] = [A, R, S, U],
        ["GET /api/v1/operators"] = [A, U],
        ["POST /api/v1/operators"] = [A],
        ["PUT /api/v1/operators/{name}/role"] = [A],
        ["POST /api/v1/operators/{name}/disable"] = [A],
        ["POST /api/v1/subscribers"] = [A, S],
        ["POST /api/v1/subscribers/{name}/disable"] = [A, S],
    };

    /// <summary>The account of each role the tests act as (the demo's operator, an administrator, sets them up).</summary>
    private static readonly Dictionary<string, string> Accounts = new()
    {
        [A] = "role-admin", [R] = "role-release", [S] = "role-support", [U] = "role-auditor",
    };

    private const string AccountPassword = "a role test password";

    [SetUp]
    public void SetUp() => TestServer.DatabaseKind.Value = "sqlite";

    private static AuthenticationHeaderValue Basic(string user, string password) =>
        new("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}")));

    private static async Task<TestServer> StartWithRolesAsync()
    {
        var server = await TestServer.StartAsync();
        using var client = server.Operator();
        foreach (var (role, name) in Accounts)
        {
            await client.SendJsonAsync(HttpMethod.Post, "/api/v1/operators", new NewOperator(name, AccountPassword, role), CancellationToken.None);
        }
        // the targets of the {name} operations: accounts no test signs in with
        await client.SendJsonAsync(HttpMethod.Post, "/api/v1/operators", new NewOperator("victim", AccountPassword, U), CancellationToken.None);
        await client.SendJsonAsync(HttpMethod.Post, "/api/v1/subscribers", new NewSubscriber("victim", AccountPassword), CancellationToken.None);
        return server;
    }

    [Test]
    public async Task Every_operator_operation_in_the_OpenAPI_document_refuses_exactly_the_roles_it_does_not_allow_and_a_refusal_changes_nothing()
    {
        TestServer.Configure.Value = o => { o.LoginAttemptsPerMinute = 1_000_000; o.PasswordAttemptsPerSourcePerMinute = 1_000_000; o.PasswordAttemptsPerAccountPerMinute = 1_000_000; };
        await using var server = await StartWithRolesAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var http = server.PinnedHttp();
        var document = JsonNode.Parse(await http.GetStringAsync("/openapi/v1.json"))!;
        var failures = new List<string>();
        var seen = new HashSet<string>();
        var refused = 0;
        var admitted = 0;

        foreach (var (template, item) in document["paths"]!.AsObject())
        {
            foreach (var (verb, operation) in item!.AsObject())
            {
                var security = operation!["security"]?.ToJsonString() ?? "";
                if (!security.Contains("operatorBasic", StringComparison.Ordinal)) { continue; }
                var key = $"{verb.ToUpperInvariant()} {template}";
                seen.Add(key);
                var declared = operation[OpenApiSecurity.RolesExtension]?.AsArray().Select(r => r!.GetValue<string>()).ToArray();
                if (declared is null || declared.Length == 0)
                {
                    failures.Add($"{key}: no role decision (AllowRoles on the endpoint)");
                    continue;
                }
                if (!Expected.TryGetValue(key, out var expected))
                {
                    failures.Add($"{key}: declares {string.Join(", ", declared)} but the reviewed table of this test has no row for it");
                    continue;
                }
                if (!declared.Order().SequenceEqual(expected.Order()))
                {
                    failures.Add($"{key}: declares {string.Join(", ", declared)}, the reviewed table says {string.Join(", ", expected)}");
                }
                var contentType = operation["requestBody"]?["content"]?.AsObject().Select(c => c.Key).FirstOrDefault();
                var path = Regex.Replace(template, "\\{([^}]+)\\}", m => m.Groups[1].Value switch
                {
                    "mac" => mac,
                    "name" => "victim",
                    _ => "nope",
                });
                // the refused roles first, against an unchanged database; then the allowed ones (which may change it)
                foreach (var role in OperatorRoles.All.OrderBy(r => expected.Contains(r)))
                {
                    using var request = new HttpRequestMessage(new HttpMethod(verb.ToUpperInvariant()), path);
                    request.Headers.Authorization = Basic(Accounts[role], AccountPassword);
                    request.Headers.Add(CrossSiteRequests.ClientHeader, "role-test");
                    request.Content = contentType switch
                    {
                        null => null,
                        "text/csv" => new StringContent("mac,serial\n", Encoding.UTF8, contentType),
                        "application/json" => new StringContent("{}", Encoding.UTF8, contentType),
                        _ => new ByteArrayContent([1, 2, 3]) { Headers = { ContentType = new MediaTypeHeaderValue(contentType) } },
                    };
                    var before = HostileInputTests.Snapshot(server);
                    using var response = await http.SendAsync(request);
                    var status = (int)response.StatusCode;
                    var body = await response.Content.ReadAsStringAsync();
                    if (!expected.Contains(role))
                    {
                        refused++;
                        if (status != 403 || !body.Contains(ProblemTypes.RoleNotAllowed, StringComparison.Ordinal))
                        {
                            failures.Add($"{key} as {role}: {status} {body}, expected 403 {ProblemTypes.RoleNotAllowed}");
                        }
                        if (HostileInputTests.Snapshot(server) != before) { failures.Add($"{key} as {role}: refused, but the database changed"); }
                    }
                    else
                    {
                        admitted++;
                        if (status is 401 or 403 || status >= 500) { failures.Add($"{key} as {role}: {status} {body}, expected the role to be admitted"); }
                    }
                }
            }
        }
        failures.AddRange(Expected.Keys.Except(seen).Select(k => $"{k}: in the reviewed table but not an operator operation of the document"));
        Assert.That(failures, Is.Empty, string.Join("\n", failures));
        Assert.That(seen, Has.Count.EqualTo(Expected.Count), "the walk reached every operator operation");
        Assert.That(refused, Is.GreaterThan(50), "refusals were checked");
        Assert.That(admitted, Is.GreaterThan(50), "admissions were checked");
    }

    [Test]
    public async Task A_changed_role_counts_at_once_for_passwords_and_tokens_alike()
    {
        await using var server = await StartWithRolesAsync();
        using var http = server.PinnedHttp();
        using var admin = server.Operator();
        var token = (await (await Send(http, HttpMethod.Post, "/api/v1/operator/token", Basic(Accounts[U], AccountPassword))).Content.ReadFromJsonAsync<TokenResponse>())!.Token;
        var bearer = new AuthenticationHeaderValue("Bearer", token);
        Assert.That((await Send(http, HttpMethod.Get, "/api/v1/audit", bearer)).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await Send(http, HttpMethod.Post, "/api/v1/patterns/pattern-1/retire", bearer)).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));

        await admin.SendJsonAsync(HttpMethod.Put, $"/api/v1/operators/{Accounts[U]}/role", new RoleRequest(R), CancellationToken.None);
        Assert.That((await Send(http, HttpMethod.Get, "/api/v1/audit", bearer)).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden), "the token now carries a release manager");
        Assert.That((await Send(http, HttpMethod.Get, "/api/v1/audit", Basic(Accounts[U], AccountPassword))).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That((await Send(http, HttpMethod.Get, "/api/v1/update-programs", bearer)).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        var audit = await server.Store.ListAuditAsync(5, DemoCatalogue.OperatorName, Accounts[U]);
        Assert.That(audit.Select(a => (a.Action, a.Detail)), Does.Contain(("operator.role", $"{U} -> {R}")));
    }

    [Test]
    public async Task Accounts_get_the_role_given_new_ones_default_to_auditor_and_an_unknown_role_is_refused()
    {
        await using var server = await StartWithRolesAsync();
        using var admin = server.Operator();
        await admin.SendJsonAsync(HttpMethod.Post, "/api/v1/operators", new NewSubscriber("no-role", AccountPassword), CancellationToken.None);
        var before = HostileInputTests.Snapshot(server);
        var unknown = Assert.ThrowsAsync<Tsunagu.Cli.Factory.OperatorApiException>(() =>
            admin.SendJsonAsync(HttpMethod.Post, "/api/v1/operators", new NewOperator("root", AccountPassword, "root"), CancellationToken.None));
        Assert.That(unknown!.Status, Is.EqualTo(400));
        Assert.That(unknown.Message, Does.Contain("role: 'root' is not a role"));
        var badRole = Assert.ThrowsAsync<Tsunagu.Cli.Factory.OperatorApiException>(() =>
            admin.SendJsonAsync(HttpMethod.Put, "/api/v1/operators/victim/role", new RoleRequest("Administrator"), CancellationToken.None));
        Assert.That(badRole!.Status, Is.EqualTo(400));
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "refused role changes change nothing");

        // a password reset keeps the role
        await admin.SendJsonAsync(HttpMethod.Post, "/api/v1/operators", new NewOperator(Accounts[S], "another role test password"), CancellationToken.None);
        var listed = System.Text.Json.JsonSerializer.Deserialize<List<OperatorView>>(
            await admin.SendAsync(HttpMethod.Get, "/api/v1/operators", null, CancellationToken.None), System.Text.Json.JsonSerializerOptions.Web)!;
        Assert.That(listed.Single(o => o.Name == "no-role").Role, Is.EqualTo(U), "least privilege for an account made without a role");
        Assert.That(listed.Single(o => o.Name == Accounts[S]).Role, Is.EqualTo(S));
        Assert.That(listed.Single(o => o.Name == DemoCatalogue.OperatorName).Role, Is.EqualTo(A));
    }

    [Test]
    public async Task No_operator_raises_their_own_role_and_the_last_administrator_is_neither_demoted_nor_disabled()
    {
        await using var server = await StartWithRolesAsync();
        using var http = server.PinnedHttp();
        var support = Basic(Accounts[S], AccountPassword);
        var before = HostileInputTests.Snapshot(server);
        foreach (var (method, path, body) in new (HttpMethod, string, object)[]
                 {
                     (HttpMethod.Put, $"/api/v1/operators/{Accounts[S]}/role", new RoleRequest(A)),
                     (HttpMethod.Post, "/api/v1/operators", new NewOperator(Accounts[S], AccountPassword, A)),
                     (HttpMethod.Post, "/api/v1/operators", new NewOperator("support-friend", AccountPassword, A)),
                 })
        {
            var response = await Send(http, method, path, support, body);
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Forbidden), $"{method} {path}");
        }
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before));
        Assert.That(await server.Store.Accounts.GetOperatorRoleAsync(Accounts[S]), Is.EqualTo(S));

        // an administrator cannot change their own role either (no lock-out by mistake)
        var self = await Send(http, HttpMethod.Put, $"/api/v1/operators/{Accounts[A]}/role", Basic(Accounts[A], AccountPassword), new RoleRequest(U));
        Assert.That(self.StatusCode, Is.EqualTo(HttpStatusCode.Conflict));

        // leave one enabled administrator (role-admin): the demo operator is disabled by it
        var admin = Basic(Accounts[A], AccountPassword);
        Assert.That((await Send(http, HttpMethod.Post, $"/api/v1/operators/{DemoCatalogue.OperatorName}/disable", admin)).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        // the last one: the store refuses whoever asks (here directly, as another administrator's request would)
        before = HostileInputTests.Snapshot(server);
        Assert.ThrowsAsync<Tsunagu.Server.Data.StoreConflictException>(async () => await server.Store.Accounts.ChangeOperatorAsync(Accounts[A], null, U, new("test", "operator.role", Accounts[A], null)));
        Assert.ThrowsAsync<Tsunagu.Server.Data.StoreConflictException>(async () => await server.Store.Accounts.ChangeOperatorAsync(Accounts[A], PasswordHasher.Disabled(), null, new("test", "operator.disable", Accounts[A], null)));
        Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), "a refused change leaves the account and the audit log as they were");
        Assert.That(await server.Store.Accounts.GetOperatorRoleAsync(Accounts[A]), Is.EqualTo(A));

        // with a second administrator again, the first may be demoted, by the other
        Assert.That((await Send(http, HttpMethod.Put, "/api/v1/operators/victim/role", admin, new RoleRequest(A))).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await Send(http, HttpMethod.Put, $"/api/v1/operators/{Accounts[A]}/role", Basic("victim", AccountPassword), new RoleRequest(U))).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(await server.Store.Accounts.GetOperatorRoleAsync(Accounts[A]), Is.EqualTo(U));
    }

    [Test]
    public async Task Two_administrators_demoting_or_disabling_each_other_at_once_never_leave_none()
    {
        TestServer.Configure.Value = o => { o.LoginAttemptsPerMinute = 1_000_000; o.PasswordAttemptsPerSourcePerMinute = 1_000_000; o.PasswordAttemptsPerAccountPerMinute = 1_000_000; };
        await using var server = await StartWithRolesAsync();
        using var http = server.PinnedHttp();
        // only role-admin and victim are administrators (and enabled)
        await server.Store.Accounts.ChangeOperatorAsync("victim", null, A, null);
        await server.Store.Accounts.ChangeOperatorAsync(DemoCatalogue.OperatorName, null, S, null);
        var outcomes = new List<string>();
        var made = 0;
        for (var round = 0; round < 20; round++)
        {
            var disable = round % 2 == 1;
            Task<HttpResponseMessage> Against(string actor, string target) => disable
                ? Send(http, HttpMethod.Post, $"/api/v1/operators/{target}/disable", Basic(actor, AccountPassword))
                : Send(http, HttpMethod.Put, $"/api/v1/operators/{target}/role", Basic(actor, AccountPassword), new RoleRequest(S));
            var answers = await Task.WhenAll(Against(Accounts[A], "victim"), Against("victim", Accounts[A]));
            var statuses = answers.Select(a => (int)a.StatusCode).Order().ToList();
            outcomes.Add(string.Join("/", statuses));
            var administrators = (await server.Store.Accounts.ListOperatorsAsync()).Count(o => o.Role == A && o.Enabled);
            // 503: the server was busy (database or password checks) and changed nothing; the caller retries
            Assert.That(statuses.All(s => s is 200 or 401 or 403 or 409 or 503), $"round {round}: {string.Join("/", statuses)}");
            Assert.That(statuses.Count(s => s == 200), Is.LessThanOrEqualTo(1), $"round {round}: at most one of the two changes is made");
            Assert.That(administrators, Is.EqualTo(2 - statuses.Count(s => s == 200)), $"round {round}: {string.Join("/", statuses)}");
            made += statuses.Count(s => s == 200);
            // back to two enabled administrators for the next round
            await server.Store.Accounts.ChangeOperatorAsync(Accounts[A], PasswordHasher.Hash(AccountPassword), A, null);
            await server.Store.Accounts.ChangeOperatorAsync("victim", PasswordHasher.Hash(AccountPassword), A, null);
        }
        TestContext.Out.WriteLine(string.Join(" ", outcomes));
        Assert.That(made, Is.GreaterThan(5), "most rounds made one of the two changes");
    }

    [Test]
    public void Every_console_page_and_action_has_a_role_decision()
    {
        var pages = typeof(ConsoleAccessFilter).Assembly.GetTypes()
            .Where(t => ConsoleAccessFilter.IsConsolePage(t) && t.IsSubclassOf(typeof(Microsoft.AspNetCore.Mvc.RazorPages.PageModel)) && !t.IsAbstract).ToList();
        var missing = new List<string>();
        var handlers = 0;
        foreach (var page in pages.Where(p => !p.IsSubclassOf(typeof(Tsunagu.Server.Pages.Shared.LoginPageModel))))
        {
            foreach (var method in page.GetMethods().Where(m => m.DeclaringType == page && Regex.IsMatch(m.Name, "^On(Get|Post|Put|Delete|Patch)")))
            {
                handlers++;
                var verb = Regex.Match(method.Name, "^On(Get|Post|Put|Delete|Patch)").Groups[1].Value.ToUpperInvariant();
                if (ConsoleAccessFilter.Decision(page, method, verb) is null) { missing.Add($"{page.Name}.{method.Name}"); }
            }
        }
        Assert.That(pages, Has.Count.GreaterThanOrEqualTo(6), "the console's pages were found");
        Assert.That(handlers, Is.GreaterThanOrEqualTo(8), "and their handlers");
        Assert.That(missing, Is.Empty, "console handlers without a ConsoleAccess decision");
    }

    [Test]
    public async Task The_console_refuses_and_hides_what_each_role_may_not_use()
    {
        await using var server = await StartWithRolesAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        using var admin = server.Operator();
        await admin.SendJsonAsync(HttpMethod.Post, "/api/v1/patterns",
            new NewPattern("pattern-3", "p3", DemoCatalogue.HardwareVersion, DemoCatalogue.OsVersion,
                new Dictionary<string, string> { ["cache-manager"] = "1.0.0", ["firewall"] = "1.0.0", ["vcp"] = "1.2.0" }), CancellationToken.None);
        var sessions = new Dictionary<string, HttpClient>();
        foreach (var (role, name) in Accounts) { sessions[role] = await ConsoleSession(server, name, AccountPassword); }
        try
        {
            async Task Refused(string role, HttpMethod method, string path, Dictionary<string, string>? form = null)
            {
                var before = HostileInputTests.Snapshot(server);
                HttpResponseMessage response;
                if (method == HttpMethod.Get)
                {
                    response = await sessions[role].GetAsync(path);
                }
                else
                {
                    var fields = new Dictionary<string, string>(form ?? []) { ["__csrf"] = await Csrf(sessions[role]) };
                    response = await sessions[role].PostAsync(path, new FormUrlEncodedContent(fields));
                }
                Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Forbidden), $"{role} {method} {path}: {await response.Content.ReadAsStringAsync()}");
                Assert.That(await response.Content.ReadAsStringAsync(), Does.Contain($"Your role ({role})"));
                Assert.That(HostileInputTests.Snapshot(server), Is.EqualTo(before), $"{role} {method} {path}: refused, but the database changed");
            }

            // release manager: no audit log, no registration
            var release = await sessions[R].GetStringAsync("/console");
            Assert.That(release, Does.Not.Contain("href=\"/console/audit\"").And.Not.Contain("href=\"/console/register\""));
            await Refused(R, HttpMethod.Get, "/console/audit");
            await Refused(R, HttpMethod.Get, "/console/register");
            await Refused(R, HttpMethod.Post, "/console/register?handler=One", new()
            {
                ["Form.Mac"] = "02:54:53:00:09:99", ["Form.Serial"] = "RM-1", ["Form.HardwareVersion"] = "r1", ["Form.IspMethod"] = "dhcp",
            });
            Assert.That(await server.Store.Units.GetUnitAsync("02:54:53:00:09:99"), Is.Null);

            // support: sees the catalogue, cannot verify a pattern
            var catalogue = await sessions[S].GetStringAsync("/console/catalogue");
            Assert.That(catalogue, Does.Contain("pattern-3").And.Not.Contain("aria-label=\"Verify pattern-3\""));
            await Refused(S, HttpMethod.Post, "/console/catalogue?handler=Verify&id=pattern-3");
            Assert.That((await server.Store.Catalogue.GetPatternAsync("pattern-3"))!.Status, Is.EqualTo(PatternStatus.Draft));

            // auditor: reads the unit and the audit log, cannot make the unit check now
            var unit = await sessions[U].GetStringAsync($"/console/units/{mac}");
            Assert.That(unit, Does.Contain(mac).And.Not.Contain("id=\"check-now\""));
            Assert.That((await sessions[U].GetAsync("/console/audit")).StatusCode, Is.EqualTo(HttpStatusCode.OK));
            await Refused(U, HttpMethod.Post, $"/console/units/{mac}?handler=Check", new() { ["importance"] = "5" });
            await Refused(U, HttpMethod.Post, "/console/catalogue?handler=Retire&id=pattern-1");
            Assert.That(await server.Store.PushChecks.ListPushChecksForUnitAsync(mac, 10), Is.Empty);

            // administrator: sees and may do all of it (the same form as refused above works for them)
            var home = await sessions[A].GetStringAsync("/console");
            Assert.That(home, Does.Contain("href=\"/console/audit\"").And.Contain("href=\"/console/register\""));
            Assert.That(await sessions[A].GetStringAsync("/console/catalogue"), Does.Contain("aria-label=\"Verify pattern-3\""));
            var verified = await sessions[A].PostAsync("/console/catalogue?handler=Verify&id=pattern-3",
                new FormUrlEncodedContent(new Dictionary<string, string> { ["__csrf"] = await Csrf(sessions[A]) }));
            Assert.That(verified.StatusCode, Is.EqualTo(HttpStatusCode.Redirect));
            Assert.That((await server.Store.Catalogue.GetPatternAsync("pattern-3"))!.Status, Is.EqualTo(PatternStatus.Verified));
        }
        finally
        {
            foreach (var session in sessions.Values) { session.Dispose(); }
        }
    }

    /// <summary>The antiforgery token of the session's pages (every console page carries one in its log out form).</summary>
    internal static async Task<string> Csrf(HttpClient session) =>
        WebUtility.HtmlDecode(Regex.Match(await session.GetStringAsync("/console/catalogue"), "name=\"__csrf\"[^>]*value=\"([^\"]+)\"").Groups[1].Value);

    /// <summary>Posts a console form to <paramref name="url"/> with the session's anti-forgery token.</summary>
    internal static Task<HttpResponseMessage> PostForm(HttpClient session, string url, params (string Key, string Value)[] form) =>
        PostForm(session, url, form.Select(f => new KeyValuePair<string, string>(f.Key, f.Value)));

    /// <summary>Posts a console form's <paramref name="form"/> fields to <paramref name="url"/> with the session's anti-forgery token.</summary>
    internal static async Task<HttpResponseMessage> PostForm(HttpClient session, string url, IEnumerable<KeyValuePair<string, string>> form)
    {
        var fields = form.Append(new("__csrf", await Csrf(session)));
        return await session.PostAsync(url, new FormUrlEncodedContent(fields));
    }

    /// <summary>Signs in to the console with the log in form; returns a client holding the session cookie.</summary>
    internal static async Task<HttpClient> ConsoleSession(TestServer server, string name, string password)
    {
        var http = new HttpClient(new SocketsHttpHandler
        {
            CookieContainer = new CookieContainer(), AllowAutoRedirect = false,
            SslOptions = { RemoteCertificateValidationCallback = TrustAnchor.Validator([server.Pin]) },
        })
        { BaseAddress = new Uri(server.Url) };
        var page = await http.GetStringAsync("/console/login");
        string Field(string pattern) => Regex.Match(page, pattern).Groups[1].Value;
        var posted = await http.PostAsync("/console/login", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            [Field("name=\"([^\"]*Name)\"")] = name,
            [Field("name=\"([^\"]*Password)\"")] = password,
            ["__csrf"] = WebUtility.HtmlDecode(Field("name=\"__csrf\"[^>]*value=\"([^\"]+)\"")),
        }));
        Assert.That(posted.StatusCode, Is.EqualTo(HttpStatusCode.Redirect), $"{name} signs in to the console");
        return http;
    }

    private static async Task<HttpResponseMessage> Send(HttpClient http, HttpMethod method, string path, AuthenticationHeaderValue auth, object? body = null)
    {
        using var request = new HttpRequestMessage(method, path);
        request.Headers.Authorization = auth;
        request.Headers.Add(CrossSiteRequests.ClientHeader, "role-test");
        if (body is not null) { request.Content = JsonContent.Create(body, body.GetType()); }
        return await http.SendAsync(request);
    }
}
