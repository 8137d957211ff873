using System.Text.Json;
using Dapper;
using Tsunagu.Protocol;

namespace Tsunagu.Server.Data;

// Operators, subscribers and the contracts that say what a subscriber may change.
public sealed partial class TsunaguStore
{
    // ---- people -------------------------------------------------------------------------------------------

    /// <summary>
    /// Creates an operator (with <paramref name="newRole"/>) or sets their password hash (keeping their role), with
    /// <paramref name="audit"/> (when given) in the same transaction. A disabling goes through <see cref="ChangeOperator"/>.
    /// </summary>
    public void UpsertOperator(string name, string passwordHash, AuditEntry? audit = null, string newRole = Security.OperatorRoles.Administrator) =>
        Write((c, tx) => c.Execute("INSERT INTO operators (name, password_hash, role) VALUES (@name, @passwordHash, @newRole) ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash",
            new { name, passwordHash, newRole }, tx), audit);

    public string? GetOperatorHash(string name)
    {
        using var c = Open();
        return c.QuerySingleOrDefault<string>("SELECT password_hash FROM operators WHERE name = @name", new { name });
    }

    /// <summary>The operator's role; null when there is no such account.</summary>
    public string? GetOperatorRole(string name)
    {
        using var c = Open();
        return c.QuerySingleOrDefault<string>("SELECT role FROM operators WHERE name = @name", new { name });
    }

    /// <summary>Every operator account: name, role, and whether it is enabled (can sign in), by name.</summary>
    public IReadOnlyList<OperatorRow> ListOperators()
    {
        using var c = Open();
        return c.Query<(string Name, string Role, string Hash)>("SELECT name, role, password_hash FROM operators ORDER BY name")
            .Select(o => new OperatorRow(o.Name, o.Role, Security.PasswordHasher.IsWellFormed(o.Hash))).ToList();
    }

    /// <summary>
    /// In one transaction: creates the operator or changes their password hash (<paramref name="passwordHash"/>, when
    /// given; <see cref="Security.PasswordHasher.Disabled"/> disables) and role (<paramref name="role"/>, when given;
    /// a new account needs one), and writes <paramref name="audit"/>; refused with <see cref="StoreConflictException"/>
    /// when it would leave no enabled administrator where there was one. The administrators' rows are locked first (PostgreSQL),
    /// so two administrators demoting each other at once cannot both succeed.
    /// </summary>
    public void ChangeOperator(string name, string? passwordHash, string? role, AuditEntry? audit) => Write((c, tx) =>
    {
        if (_db.Kind == DatabaseKind.Postgres)
        {
            c.Execute("SELECT name FROM operators WHERE role = @admin FOR UPDATE", new { admin = Security.OperatorRoles.Administrator }, tx);
        }
        var before = EnabledAdministrators(c, tx);
        var exists = c.ExecuteScalar<long>("SELECT COUNT(*) FROM operators WHERE name = @name", new { name }, tx) > 0;
        if (!exists)
        {
            var hash = passwordHash ?? throw new ArgumentException("a new operator needs a password", nameof(passwordHash));
            var newRole = role ?? throw new ArgumentException("a new operator needs a role", nameof(role));
            c.Execute("INSERT INTO operators (name, password_hash, role) VALUES (@name, @hash, @newRole)", new { name, hash, newRole }, tx);
        }
        else
        {
            if (passwordHash is not null) { c.Execute("UPDATE operators SET password_hash = @passwordHash WHERE name = @name", new { name, passwordHash }, tx); }
            if (role is not null) { c.Execute("UPDATE operators SET role = @role WHERE name = @name", new { name, role }, tx); }
        }
        if (before > 0 && EnabledAdministrators(c, tx) == 0)
        {
            // the transaction is not committed: nothing changed
            throw new StoreConflictException($"{name} is the last enabled administrator; make another administrator first");
        }
    }, audit);

    private static int EnabledAdministrators(System.Data.Common.DbConnection c, System.Data.Common.DbTransaction tx) =>
        c.Query<string>("SELECT password_hash FROM operators WHERE role = @admin", new { admin = Security.OperatorRoles.Administrator }, tx)
            .Count(Security.PasswordHasher.IsWellFormed);

    /// <summary>Creates a subscriber or sets their password hash, with <paramref name="audit"/> (when given) in the same transaction.</summary>
    public void UpsertSubscriber(string name, string passwordHash, AuditEntry? audit = null) => SetSubscriber(name, passwordHash, null, audit);

    /// <summary>
    /// In one transaction: the subscriber's password hash (when given: creates them or replaces it), their contract
    /// (when given) and <paramref name="audit"/> (when given).
    /// </summary>
    public void SetSubscriber(string name, string? passwordHash, string? contract, AuditEntry? audit) => Write((c, tx) =>
    {
        if (passwordHash is not null)
        {
            c.Execute("INSERT INTO subscribers (name, password_hash) VALUES (@name, @passwordHash) ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash",
                new { name, passwordHash }, tx);
        }
        if (contract is not null)
        {
            c.Execute("UPDATE subscribers SET contract = @contract WHERE name = @name", new { name, contract }, tx);
        }
    }, audit);

    public string? GetSubscriberHash(string name)
    {
        using var c = Open();
        return c.QuerySingleOrDefault<string>("SELECT password_hash FROM subscribers WHERE name = @name", new { name });
    }

    /// <summary>Puts a subscriber on a contract (null: the default contract).</summary>
    public void SetSubscriberContract(string name, string? contract)
    {
        using var c = Open();
        c.Execute("UPDATE subscribers SET contract = @contract WHERE name = @name", new { name, contract });
    }

    /// <summary>The subscriber's contract; null when they are on the default contract or do not exist.</summary>
    public string? GetSubscriberContract(string name)
    {
        using var c = Open();
        return c.QuerySingleOrDefault<string>("SELECT contract FROM subscribers WHERE name = @name", new { name });
    }

    // ---- contracts: what a subscriber may change --------------------------------------------------------

    /// <summary>Creates or replaces a contract, with <paramref name="audit"/> (when given) in the same transaction.</summary>
    public void UpsertContract(string name, IReadOnlyList<string> subscriberFields, AuditEntry? audit = null) =>
        Write((c, tx) => c.Execute("INSERT INTO contracts (name, subscriber_fields) VALUES (@name, @fields) ON CONFLICT(name) DO UPDATE SET subscriber_fields = excluded.subscriber_fields",
            new { name, fields = JsonSerializer.Serialize(subscriberFields.ToList(), ProtocolJson.Default.ListString) }, tx), audit);

    /// <summary>The contract's allow-list of service configuration fields; null when there is no such contract.</summary>
    public IReadOnlyList<string>? GetContract(string name)
    {
        using var c = Open();
        var fields = c.QuerySingleOrDefault<string>("SELECT subscriber_fields FROM contracts WHERE name = @name", new { name });
        return fields is null ? null : JsonSerializer.Deserialize(fields, ProtocolJson.Default.ListString) ?? [];
    }

    public IReadOnlyList<string> ListContracts()
    {
        using var c = Open();
        return c.Query<string>("SELECT name FROM contracts ORDER BY name").ToList();
    }
}
