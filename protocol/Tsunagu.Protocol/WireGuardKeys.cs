using System.Security.Cryptography;
using System.Text;

namespace Tsunagu.Protocol;

/// <summary>
/// A unit's WireGuard key pair, derived from its factory secret so that it survives a wipe of `data`: the private key
/// is HKDF-SHA256 (RFC 5869) of the unit secret with an empty salt and the info label <see cref="InfoLabel"/>, clamped
/// as X25519 requires (RFC 7748 section 5); the public key is X25519 of it with the base point 9. The same factory
/// partition always gives the same pair, and the pair is independent of every other use of the secret (a different label).
/// </summary>
public static class WireGuardKeys
{
    /// <summary>The HKDF info label. Changing it changes every unit's key: it is part of the protocol.</summary>
    public const string InfoLabel = "tsunagu/v1/wireguard-private-key";

    public const int KeyBytes = 32;

    /// <summary>The shortest unit secret a key is derived from (a factory secret is 32 bytes).</summary>
    public const int MinSecretBytes = 16;

    /// <summary>The clamped private key of the unit with <paramref name="unitSecret"/>.</summary>
    public static byte[] DerivePrivateKey(ReadOnlySpan<byte> unitSecret)
    {
        if (unitSecret.Length < MinSecretBytes)
        {
            throw new ProtocolException($"the unit secret is {unitSecret.Length} bytes; at least {MinSecretBytes} are required");
        }
        var key = new byte[KeyBytes];
        HKDF.DeriveKey(HashAlgorithmName.SHA256, unitSecret, key, salt: [], info: Encoding.ASCII.GetBytes(InfoLabel));
        Clamp(key);
        return key;
    }

    /// <summary>The public key of <paramref name="privateKey"/> (32 bytes; clamped here whatever the caller gave).</summary>
    public static byte[] PublicKey(ReadOnlySpan<byte> privateKey)
    {
        Span<byte> basePoint = stackalloc byte[KeyBytes];
        basePoint.Clear();
        basePoint[0] = 9;
        return X25519(privateKey, basePoint);
    }

    /// <summary>The key in WireGuard's text form: standard base64, 44 characters.</summary>
    public static string ToText(ReadOnlySpan<byte> key) => Convert.ToBase64String(key);

    /// <summary>Applies RFC 7748's clamping to a 32-byte scalar in place.</summary>
    public static void Clamp(Span<byte> scalar)
    {
        if (scalar.Length != KeyBytes) { throw new ProtocolException($"an X25519 scalar is {KeyBytes} bytes, not {scalar.Length}"); }
        scalar[0] &= 248;
        scalar[31] &= 127;
        scalar[31] |= 64;
    }

    /// <summary>
    /// X25519(k, u) of RFC 7748 section 5: the scalar is clamped, the top bit of u ignored. A constant-time Montgomery
    /// ladder over GF(2^255 - 19) with sixteen 16-bit limbs held in 64-bit integers.
    /// </summary>
    public static byte[] X25519(ReadOnlySpan<byte> scalar, ReadOnlySpan<byte> u)
    {
        if (scalar.Length != KeyBytes || u.Length != KeyBytes)
        {
            throw new ProtocolException($"X25519 takes a {KeyBytes}-byte scalar and a {KeyBytes}-byte u-coordinate");
        }
        Span<byte> k = stackalloc byte[KeyBytes];
        scalar.CopyTo(k);
        Clamp(k);

        var x1 = Field.Decode(u);
        var x2 = Field.One();
        var z2 = new long[Field.Limbs];
        var x3 = (long[])x1.Clone();
        var z3 = Field.One();
        var a = new long[Field.Limbs];
        var aa = new long[Field.Limbs];
        var b = new long[Field.Limbs];
        var bb = new long[Field.Limbs];
        var e = new long[Field.Limbs];
        var c = new long[Field.Limbs];
        var d = new long[Field.Limbs];
        var da = new long[Field.Limbs];
        var cb = new long[Field.Limbs];
        var t = new long[Field.Limbs];
        long swap = 0;
        for (var bit = 254; bit >= 0; bit--)
        {
            long kt = (k[bit >> 3] >> (bit & 7)) & 1;
            swap ^= kt;
            Field.Swap(x2, x3, swap);
            Field.Swap(z2, z3, swap);
            swap = kt;

            Field.Add(a, x2, z2);
            Field.Square(aa, a);
            Field.Sub(b, x2, z2);
            Field.Square(bb, b);
            Field.Sub(e, aa, bb);
            Field.Add(c, x3, z3);
            Field.Sub(d, x3, z3);
            Field.Mul(da, d, a);
            Field.Mul(cb, c, b);
            Field.Add(t, da, cb);
            Field.Square(x3, t);
            Field.Sub(t, da, cb);
            Field.Square(t, t);
            Field.Mul(z3, x1, t);
            Field.Mul(x2, aa, bb);
            Field.Mul(t, Field.A24, e);
            Field.Add(t, t, aa);
            Field.Mul(z2, e, t);
        }
        Field.Swap(x2, x3, swap);
        Field.Swap(z2, z3, swap);
        Field.Invert(t, z2);
        Field.Mul(x2, x2, t);
        var result = Field.Encode(x2);
        CryptographicOperations.ZeroMemory(k);
        return result;
    }

    /// <summary>Arithmetic modulo p = 2^255 - 19; element i of a value weighs 2^(16 i). No branch depends on a value.</summary>
    private static class Field
    {
        public const int Limbs = 16;

        /// <summary>(486662 - 2) / 4 = 121665 = 0x1DB41.</summary>
        public static readonly long[] A24 = [0xDB41, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

        public static long[] One()
        {
            var one = new long[Limbs];
            one[0] = 1;
            return one;
        }

        public static long[] Decode(ReadOnlySpan<byte> bytes)
        {
            var r = new long[Limbs];
            for (var i = 0; i < Limbs; i++)
            {
                r[i] = bytes[2 * i] | ((long)bytes[(2 * i) + 1] << 8);
            }
            r[15] &= 0x7FFF; // RFC 7748: the most significant bit of u is ignored
            return r;
        }

        /// <summary>The canonical little-endian encoding (fully reduced below p).</summary>
        public static byte[] Encode(long[] value)
        {
            var t = (long[])value.Clone();
            Carry(t);
            Carry(t);
            Carry(t);
            var m = new long[Limbs];
            for (var round = 0; round < 2; round++)
            {
                // m = t - p, limb by limb with the borrow; keep m unless it went below zero
                m[0] = t[0] - 0xFFED;
                for (var i = 1; i < 15; i++)
                {
                    m[i] = t[i] - 0xFFFF - ((m[i - 1] >> 16) & 1);
                    m[i - 1] &= 0xFFFF;
                }
                m[15] = t[15] - 0x7FFF - ((m[14] >> 16) & 1);
                m[14] &= 0xFFFF;
                var borrow = (m[15] >> 16) & 1;
                Swap(t, m, 1 - borrow);
            }
            var bytes = new byte[KeyBytes];
            for (var i = 0; i < Limbs; i++)
            {
                bytes[2 * i] = (byte)(t[i] & 0xFF);
                bytes[(2 * i) + 1] = (byte)((t[i] >> 8) & 0xFF);
            }
            return bytes;
        }

        /// <summary>Brings every limb back to 16 bits; what leaves the top limb comes back at the bottom times 38 (2^256 = 38 mod p).</summary>
        private static void Carry(long[] r)
        {
            for (var i = 0; i < Limbs; i++)
            {
                var carry = r[i] >> 16; // arithmetic shift: the floor, also for negative limbs
                r[i] -= carry << 16;
                if (i < Limbs - 1)
                {
                    r[i + 1] += carry;
                }
                else
                {
                    r[0] += 38 * carry;
                }
            }
        }

        /// <summary>Exchanges a and b when <paramref name="swap"/> is 1, leaves them when it is 0, in the same time either way.</summary>
        public static void Swap(long[] a, long[] b, long swap)
        {
            var mask = -swap;
            for (var i = 0; i < Limbs; i++)
            {
                var x = mask & (a[i] ^ b[i]);
                a[i] ^= x;
                b[i] ^= x;
            }
        }

        public static void Add(long[] r, long[] a, long[] b)
        {
            for (var i = 0; i < Limbs; i++) { r[i] = a[i] + b[i]; }
        }

        public static void Sub(long[] r, long[] a, long[] b)
        {
            for (var i = 0; i < Limbs; i++) { r[i] = a[i] - b[i]; }
        }

        public static void Mul(long[] r, long[] a, long[] b)
        {
            Span<long> product = stackalloc long[(2 * Limbs) - 1];
            product.Clear();
            for (var i = 0; i < Limbs; i++)
            {
                for (var j = 0; j < Limbs; j++)
                {
                    product[i + j] += a[i] * b[j];
                }
            }
            for (var i = 0; i < Limbs - 1; i++)
            {
                product[i] += 38 * product[i + Limbs]; // 2^256 = 38 mod p
            }
            for (var i = 0; i < Limbs; i++) { r[i] = product[i]; }
            Carry(r);
            Carry(r);
        }

        public static void Square(long[] r, long[] a) => Mul(r, a, a);

        /// <summary>a^(p - 2) = 1/a (Fermat); p - 2 = 2^255 - 21 has every bit from 254 down set except bits 4 and 2.</summary>
        public static void Invert(long[] r, long[] a)
        {
            var c = (long[])a.Clone();
            for (var bit = 253; bit >= 0; bit--)
            {
                Square(c, c);
                if (bit != 4 && bit != 2)
                {
                    Mul(c, c, a);
                }
            }
            Array.Copy(c, r, Limbs);
        }
    }
}
