using System.Text.Json;
using Dapper;
using Tsunagu.Protocol;

namespace Tsunagu.Server.Data;

// Operators, subscribers and the contracts that say what a subscriber may change.
public sealed partial class TsunaguStore
{
    // ---- people -------------------------------------------------------------------------------------------

    /// <summary>Creates an operator or sets their password hash, with <paramref name="audit"/> (when given) in the same transaction.</summary>
    public void UpsertOperator(string name, string passwordHash, AuditEntry? audit = null) =>
        Write((c, tx) => c.Execute("INSERT INTO operators (name, password_hash) VALUES (@name, @passwordHash) ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash",
            new { name, passwordHash }, tx), audit);

    public string? GetOperatorHash(string name)
    {
        using var c = Open();
        return c.QuerySingleOrDefault<string>("SELECT password_hash FROM operators WHERE name = @name", new { name });
    }

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
