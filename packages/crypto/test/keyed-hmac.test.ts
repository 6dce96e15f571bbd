// The fixed-key HMAC-SHA256 equals the back end's HMAC (node:crypto, WebCrypto or noble's
// one-shot) for every key and message length around the block boundaries, however often it is
// reused; Wycheproof's cases run in wycheproof.test.ts.
import { describe, expect, it } from 'vitest';
import { CryptoError, createKeyedHmacSha256, hmac, randomBytes, toHex } from '../src/index.js';

describe('createKeyedHmacSha256', () => {
  it('matches RFC 4231 test case 2', () => {
    const mac = createKeyedHmacSha256(new TextEncoder().encode('Jefe'));
    expect(toHex(mac.mac(new TextEncoder().encode('what do ya want for nothing?')))).toBe(
      '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
    );
  });

  it('equals hmac() for keys and messages of every length around a block, reused', async () => {
    for (const keyLength of [1, 16, 32, 63, 64, 65, 131]) {
      const key = randomBytes(keyLength);
      const mac = createKeyedHmacSha256(key);
      for (let length = 0; length <= 200; length++) {
        const data = randomBytes(length);
        const want = toHex(await hmac('SHA-256', key, data));
        expect(toHex(mac.mac(data)), `${keyLength}/${length}`).toBe(want);
      }
      // Outputs are fresh arrays: an earlier result is not overwritten by a later call.
      const first = mac.mac(Uint8Array.of(1));
      const copy = toHex(first);
      mac.mac(Uint8Array.of(2));
      expect(toHex(first)).toBe(copy);
      // Into a caller's array: the same value, in that very array.
      const out = new Uint8Array(32);
      expect(mac.mac(Uint8Array.of(1), out)).toBe(out);
      expect(toHex(out)).toBe(copy);
    }
  });

  it('refuses an empty key, non-bytes, and any use after destroy', () => {
    expect(() => createKeyedHmacSha256(new Uint8Array(0))).toThrow(CryptoError);
    expect(() => createKeyedHmacSha256('key' as unknown as Uint8Array)).toThrow(CryptoError);
    const mac = createKeyedHmacSha256(randomBytes(32));
    expect(() => mac.mac('x' as unknown as Uint8Array)).toThrow(CryptoError);
    expect(() => mac.mac(new Uint8Array(1), new Uint8Array(31))).toThrow(/32 bytes/);
    mac.destroy();
    expect(() => mac.mac(new Uint8Array(1))).toThrow(/destroyed/);
  });
});
