using System.Security.Cryptography;
using Tsunagu.Server.Data;

namespace Tsunagu.Server.Units.Lifecycle;

/// <summary>The secrets key could not be rotated; the message says why.</summary>
public sealed class SecretRotationException(string message) : Exception(message);

/// <summary>
/// Sealing of the device management table's secrets at start-up and rotation of the secrets key
/// (<see cref="SecretBox"/>). Rotation: a new key is written as <c>secrets.key.next</c>; every row is resealed under it
/// in one transaction; the new key is renamed over <c>secrets.key</c>; rows sealed under the old key meanwhile are
/// resealed; the old key is forgotten. A crash at any step leaves every row openable at the next start, which reseals
/// under the key <c>secrets.key</c> holds then (<see cref="SealAtStartAsync"/>).
/// </summary>
public sealed class SecretRotation(TsunaguStore store, ILogger<SecretRotation> log)
{
    private readonly SemaphoreSlim _gate = new(1, 1);

    /// <summary>
    /// Start-up step: seals plain-text rows (from before sealing) and rows of an interrupted rotation under the current
    /// key, then removes a rotation's leftover key file. Returns the number of rows sealed.
    /// </summary>
    public static async Task<int> SealAtStartAsync(TsunaguStore store, CancellationToken ct = default)
    {
        var box = store.Secrets;
        var current = box.CurrentId;
        var n = await store.Lifecycle.ResealSecretsAsync((mac, plain, sealedValue) => plain is not null || SecretBox.KeyIdOf(sealedValue) != current
            ? box.Seal(mac, UnitLifecycleStore.IspPasswordField, plain ?? box.Open(mac, UnitLifecycleStore.IspPasswordField, sealedValue))
            : null, null, ct);
        if (box.KeyPath is { } path && File.Exists(path + SecretBox.NextSuffix))
        {
            File.Delete(path + SecretBox.NextSuffix);
        }
        box.Forget();
        return n;
    }

    /// <summary>Makes a new secrets key and reseals every row under it; returns the new key's id and the rows resealed.</summary>
    public async Task<(string KeyId, int Resealed)> RotateAsync(string actor, CancellationToken ct = default)
    {
        var box = store.Secrets;
        var path = box.KeyPath ?? throw new SecretRotationException("this server has no secrets key file to rotate (it runs with a key of its own process)");
        await _gate.WaitAsync(ct);
        try
        {
            var key = RandomNumberGenerator.GetBytes(32);
            var id = SecretBox.IdOf(key);
            var oldId = box.CurrentId;
            SecretBox.WriteKeyFile(path + SecretBox.NextSuffix, key);
            box.AddKey(key);
            string Reseal(string mac, string? plain, string? sealedValue) =>
                SecretBox.SealWith(key, id, mac, UnitLifecycleStore.IspPasswordField, plain ?? box.Open(mac, UnitLifecycleStore.IspPasswordField, sealedValue)!);
            var n = await store.Lifecycle.ResealSecretsAsync((mac, plain, sealedValue) => Reseal(mac, plain, sealedValue),
                new AuditEntry(actor, "secrets.rotate", id, $"from key {oldId}"), ct);
            File.Move(path + SecretBox.NextSuffix, path, overwrite: true);
            box.MakeCurrent(key);
            // rows written while the first pass ran were sealed under the old key
            await store.Lifecycle.ResealSecretsAsync((mac, plain, sealedValue) => plain is not null || SecretBox.KeyIdOf(sealedValue) != id ? Reseal(mac, plain, sealedValue) : null, null, ct);
            box.Forget();
            log.LogInformation("secrets key rotated: {Old} -> {New}, {Count} row(s) resealed", oldId, id, n);
            return (id, n);
        }
        finally
        {
            _gate.Release();
        }
    }
}
