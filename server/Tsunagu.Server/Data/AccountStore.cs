using System.Text.Json;
using Dapper;
using Tsunagu.Protocol;

namespace Tsunagu.Server.Data;

/// <summary>Operators, subscribers and the contracts that say what a subscriber may change.</summary>
public sealed class AccountStore
{
    private readonly TsunaguStore _store;

    internal AccountStore(TsunaguStore store) => _store = store;

    // ---- people -------------------------------------------------------------------------------------------

    /// <summary>
    /// Creates an operator (with <paramref name="newRole"/>) or sets their password hash (keeping their role), with
    /// <paramref name="audit"/> (when given) in the same transaction. A disabling goes through <see cref="ChangeOperatorAsync"/>.
    /// </summary>
    public async Task UpsertOperatorAsync(string name, string passwordHash, AuditEntry? audit = null, string newRole = Security.OperatorRoles.Administrator, CancellationToken ct = default) =>
        await _store.WriteAsync(async (c, tx) => await c.ExecuteAsync(new CommandDefinition("INSERT INTO operators (name, password_hash, role) VALUES (@name, @passwordHash, @newRole) ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash",
            new { name, passwordHash, newRole }, tx, cancellationToken: ct)), audit, ct);

    public async Task<string?> GetOperatorHashAsync(string name, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.QuerySingleOrDefaultAsync<string>(new CommandDefinition("SELECT password_hash FROM operators WHERE name = @name", new { name }, cancellationToken: ct));
    }

    /// <summary>The operator's role; null when there is no such account.</summary>
    public async Task<string?> GetOperatorRoleAsync(string name, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.QuerySingleOrDefaultAsync<string>(new CommandDefinition("SELECT role FROM operators WHERE name = @name", new { name }, cancellationToken: ct));
    }

    /// <summary>Every operator account: name, role, and whether it is enabled (can sign in), by name.</summary>
    public async Task<IReadOnlyList<OperatorRow>> ListOperatorsAsync(CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await c.QueryAsync<(string Name, string Role, string Hash)>(new CommandDefinition("SELECT name, role, password_hash FROM operators ORDER BY name", cancellationToken: ct)))
            .Select(o => new OperatorRow(o.Name, o.Role, Security.PasswordHasher.IsWellFormed(o.Hash))).ToList();
    }

    /// <summary>
    /// In one transaction: creates the operator or changes their password hash (<paramref name="passwordHash"/>, when
    /// given; <see cref="Security.PasswordHasher.Disabled"/> disables) and role (<paramref name="role"/>, when given;
    /// a new account needs one), and writes <paramref name="audit"/>; refused with <see cref="StoreConflictException"/>
    /// when it would leave no enabled administrator where there was one. The administrators' rows are locked first (PostgreSQL),
    /// so two administrators demoting each other at once cannot both succeed.
    /// </summary>
    public async Task ChangeOperatorAsync(string name, string? passwordHash, string? role, AuditEntry? audit, CancellationToken ct = default) => await _store.WriteAsync(async (c, tx) =>
    {
        if (_store.Database.Kind == DatabaseKind.Postgres)
        {
            await c.ExecuteAsync(new CommandDefinition("SELECT name FROM operators WHERE role = @admin FOR UPDATE", new { admin = Security.OperatorRoles.Administrator }, tx, cancellationToken: ct));
        }
        var before = await EnabledAdministratorsAsync(c, tx, ct);
        var exists = await c.ExecuteScalarAsync<long>(new CommandDefinition("SELECT COUNT(*) FROM operators WHERE name = @name", new { name }, tx, cancellationToken: ct)) > 0;
        if (!exists)
        {
            var hash = passwordHash ?? throw new ArgumentException("a new operator needs a password", nameof(passwordHash));
            var newRole = role ?? throw new ArgumentException("a new operator needs a role", nameof(role));
            await c.ExecuteAsync(new CommandDefinition("INSERT INTO operators (name, password_hash, role) VALUES (@name, @hash, @newRole)", new { name, hash, newRole }, tx, cancellationToken: ct));
        }
        else
        {
            if (passwordHash is not null) { await c.ExecuteAsync(new CommandDefinition("UPDATE operators SET password_hash = @passwordHash WHERE name = @name", new { name, passwordHash }, tx, cancellationToken: ct)); }
            if (role is not null) { await c.ExecuteAsync(new CommandDefinition("UPDATE operators SET role = @role WHERE name = @name", new { name, role }, tx, cancellationToken: ct)); }
        }
        if (before > 0 && await EnabledAdministratorsAsync(c, tx, ct) == 0)
        {
            // the transaction is not committed: nothing changed
            throw new StoreConflictException($"{name} is the last enabled administrator; make another administrator first");
        }
    }, audit, ct);

    private static async Task<int> EnabledAdministratorsAsync(System.Data.Common.DbConnection c, System.Data.Common.DbTransaction tx, CancellationToken ct) =>
        (await c.QueryAsync<string>(new CommandDefinition("SELECT password_hash FROM operators WHERE role = @admin", new { admin = Security.OperatorRoles.Administrator }, tx, cancellationToken: ct)))
            .Count(Security.PasswordHasher.IsWellFormed);

    /// <summary>Creates a subscriber or sets their password hash, with <paramref name="audit"/> (when given) in the same transaction.</summary>
    public async Task UpsertSubscriberAsync(string name, string passwordHash, AuditEntry? audit = null, CancellationToken ct = default) => await SetSubscriberAsync(name, passwordHash, null, audit, ct);

    /// <summary>
    /// In one transaction: the subscriber's password hash (when given: creates them or replaces it), their contract
    /// (when given) and <paramref name="audit"/> (when given).
    /// </summary>
    public async Task SetSubscriberAsync(string name, string? passwordHash, string? contract, AuditEntry? audit, CancellationToken ct = default) => await _store.WriteAsync(async (c, tx) =>
    {
        if (passwordHash is not null)
        {
            await c.ExecuteAsync(new CommandDefinition("INSERT INTO subscribers (name, password_hash) VALUES (@name, @passwordHash) ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash",
                new { name, passwordHash }, tx, cancellationToken: ct));
        }
        if (contract is not null)
        {
            await c.ExecuteAsync(new CommandDefinition("UPDATE subscribers SET contract = @contract WHERE name = @name", new { name, contract }, tx, cancellationToken: ct));
        }
    }, audit, ct);

    public async Task<string?> GetSubscriberHashAsync(string name, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.QuerySingleOrDefaultAsync<string>(new CommandDefinition("SELECT password_hash FROM subscribers WHERE name = @name", new { name }, cancellationToken: ct));
    }

    /// <summary>Puts a subscriber on a contract (null: the default contract).</summary>
    public async Task SetSubscriberContractAsync(string name, string? contract, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        await c.ExecuteAsync(new CommandDefinition("UPDATE subscribers SET contract = @contract WHERE name = @name", new { name, contract }, cancellationToken: ct));
    }

    /// <summary>The subscriber's contract; null when they are on the default contract or do not exist.</summary>
    public async Task<string?> GetSubscriberContractAsync(string name, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.QuerySingleOrDefaultAsync<string>(new CommandDefinition("SELECT contract FROM subscribers WHERE name = @name", new { name }, cancellationToken: ct));
    }

    // ---- contracts: what a subscriber may change --------------------------------------------------------

    /// <summary>Creates or replaces a contract, with <paramref name="audit"/> (when given) in the same transaction.</summary>
    public async Task UpsertContractAsync(string name, IReadOnlyList<string> subscriberFields, AuditEntry? audit = null, CancellationToken ct = default) =>
        await _store.WriteAsync(async (c, tx) => await c.ExecuteAsync(new CommandDefinition("INSERT INTO contracts (name, subscriber_fields) VALUES (@name, @fields) ON CONFLICT(name) DO UPDATE SET subscriber_fields = excluded.subscriber_fields",
            new { name, fields = JsonSerializer.Serialize(subscriberFields.ToList(), ProtocolJson.Default.ListString) }, tx, cancellationToken: ct)), audit, ct);

    /// <summary>The contract's allow-list of service configuration fields; null when there is no such contract.</summary>
    public async Task<IReadOnlyList<string>?> GetContractAsync(string name, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        var fields = await c.QuerySingleOrDefaultAsync<string>(new CommandDefinition("SELECT subscriber_fields FROM contracts WHERE name = @name", new { name }, cancellationToken: ct));
        return fields is null ? null : JsonSerializer.Deserialize(fields, ProtocolJson.Default.ListString) ?? [];
    }

    /// <summary>A contract's allow-list as stored (JSON), with its digest; null when there is no such contract.</summary>
    public async Task<NamedDocument?> GetContractDocumentAsync(string name, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return await c.QuerySingleOrDefaultAsync<NamedDocument>(new CommandDefinition("SELECT name, subscriber_fields AS document FROM contracts WHERE name = @name", new { name }, cancellationToken: ct));
    }

    /// <summary>The contracts by name, each allow-list as stored (JSON).</summary>
    public async Task<IReadOnlyList<NamedDocument>> ListContractDocumentsAsync(CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        return (await c.QueryAsync<NamedDocument>(new CommandDefinition("SELECT name, subscriber_fields AS document FROM contracts ORDER BY name", cancellationToken: ct))).ToList();
    }

    /// <summary>How many subscribers each contract has (a subscriber without one is on the default contract).</summary>
    public async Task<IReadOnlyDictionary<string, long>> CountSubscribersByContractAsync(string defaultContract, CancellationToken ct = default)
    {
        await using var c = await _store.OpenAsync(ct);
        var rows = await c.QueryAsync<(string Contract, long Count)>(new CommandDefinition(
            "SELECT COALESCE(contract, @defaultContract) AS contract, COUNT(*) AS n FROM subscribers GROUP BY COALESCE(contract, @defaultContract)", new { defaultContract }, cancellationToken: ct));
        return rows.ToDictionary(r => r.Contract, r => r.Count, StringComparer.Ordinal);
    }

    /// <summary>
    /// Creates (<paramref name="expectedDigest"/> null: only when the name is free) or changes (only while its stored
    /// allow-list is the one the change was made from) a contract, with its audit entry, in one transaction.
    /// </summary>
    /// <exception cref="StoreConflictException">The name is taken (create), gone or changed since (change); nothing was written.</exception>
    public Task PutContractCheckedAsync(string name, IReadOnlyList<string> subscriberFields, string? expectedDigest, AuditEntry audit, CancellationToken ct = default) =>
        _store.ServiceConfigs.PutNamedCheckedAsync("contracts", "subscriber_fields", "contract", name, JsonSerializer.Serialize(subscriberFields.ToList(), ProtocolJson.Default.ListString), expectedDigest, audit, ct);

    /// <summary>
    /// Deletes a contract no subscriber is on, other than <paramref name="defaultContract"/> (the one of subscribers
    /// without a contract), with its audit entry; with <paramref name="expectedDigest"/>, only while its allow-list is still
    /// that one. The subscribers are counted in the transaction that deletes it.
    /// </summary>
    /// <exception cref="KeyNotFoundException">No contract has that name.</exception>
    /// <exception cref="StoreConflictException">It is the default, subscribers are on it, or it changed since; nothing was written.</exception>
    public Task DeleteContractAsync(string name, string defaultContract, string? expectedDigest, AuditEntry audit, CancellationToken ct = default) =>
        _store.ServiceConfigs.DeleteNamedCheckedAsync("contracts", "subscriber_fields", "contract", name, expectedDigest, audit, async (c, tx) =>
        {
            if (name == defaultContract) { return $"contract {name} is the one of every subscriber without a contract"; }
            var on = await c.ExecuteScalarAsync<long>(new CommandDefinition("SELECT COUNT(*) FROM subscribers WHERE contract = @name", new { name }, tx, cancellationToken: ct));
            return on > 0 ? $"contract {name} has {on} subscriber(s): put them on another contract first" : null;
        }, ct);
}
