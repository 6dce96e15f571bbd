// createRawAead against Wycheproof's AES-GCM and ChaCha20-Poly1305 files: every case the raw
// AEAD can express (128/256-bit AES keys, 96-bit nonces, 128-bit tags) runs through the public
// API on each back end; the others are counted and must be refused at the argument check.
import { describe, expect, test } from 'vitest';
import { toHex } from '../src/encoding.js';
import { CryptoError } from '../src/errors.js';
import { createRawAead, type RawAeadAlgorithm } from '../src/raw-aead.js';
import { hex, loadVectors, vectorsAvailable } from './_vectors.js';

interface AeadFile {
  numberOfTests: number;
  testGroups: {
    ivSize: number;
    keySize: number;
    tagSize: number;
    tests: {
      tcId: number;
      result: 'valid' | 'invalid' | 'acceptable';
      key: string;
      iv: string;
      aad: string;
      msg: string;
      ct: string;
      tag: string;
    }[];
  }[];
}

function algorithmFor(file: string, keySize: number): RawAeadAlgorithm | undefined {
  if (file.startsWith('chacha')) return 'ChaCha20-Poly1305';
  if (keySize === 128) return 'AES-128-GCM';
  if (keySize === 256) return 'AES-256-GCM';
  return undefined; // AES-192: not offered
}

describe.skipIf(!vectorsAvailable)('createRawAead: wycheproof', () => {
  for (const file of ['aes_gcm_test.json', 'chacha20_poly1305_test.json']) {
    test(file, async () => {
      const data = loadVectors<AeadFile>(`wycheproof/${file}`);
      const failures: string[] = [];
      let run = 0;
      let notExpressible = 0;
      for (const group of data.testGroups) {
        const algorithm = algorithmFor(file, group.keySize);
        for (const t of group.tests) {
          if (!algorithm || group.ivSize !== 96 || group.tagSize !== 128) {
            // Another key size, nonce size or tag size cannot be passed to the raw AEAD at all.
            notExpressible++;
            continue;
          }
          run++;
          const aead = await createRawAead(hex(t.key), algorithm);
          const sealed = hex(t.ct + t.tag);
          const iv = hex(t.iv);
          const aad = hex(t.aad);
          try {
            if (t.result === 'valid') {
              if (toHex(await aead.seal(iv, hex(t.msg), aad)) !== toHex(sealed))
                failures.push(`tcId ${t.tcId}: seal differs`);
              if (toHex(await aead.open(iv, sealed, aad)) !== t.msg.toLowerCase())
                failures.push(`tcId ${t.tcId}: open differs`);
            } else {
              await aead.open(iv, sealed, aad);
              failures.push(`tcId ${t.tcId}: accepted an invalid ciphertext`);
            }
          } catch (err) {
            if (!(t.result === 'invalid' && CryptoError.is(err, 'DECRYPTION_FAILED')))
              failures.push(`tcId ${t.tcId}: threw ${String(err)}`);
          }
        }
      }
      expect(failures).toEqual([]);
      expect(run + notExpressible).toBe(data.numberOfTests);
      expect(run).toBeGreaterThan(100);
    });
  }
});

describe('createRawAead: arguments', () => {
  test('refuses wrong key lengths, unknown algorithms and non-12-byte nonces', async () => {
    const codeOf = async (fn: () => Promise<unknown>) => {
      try {
        await fn();
        return 'ok';
      } catch (err) {
        return CryptoError.is(err) ? err.code : String(err);
      }
    };
    expect(await codeOf(() => createRawAead(new Uint8Array(32), 'AES-128-GCM'))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(
      await codeOf(() => createRawAead(new Uint8Array(16), 'AES-192-GCM' as RawAeadAlgorithm)),
    ).toBe('INVALID_ARGUMENT');
    const aead = await createRawAead(new Uint8Array(16).fill(7), 'AES-128-GCM');
    expect(await codeOf(() => aead.seal(new Uint8Array(8), new Uint8Array(1)))).toBe(
      'INVALID_ARGUMENT',
    );
    const sealed = await aead.seal(new Uint8Array(12), new Uint8Array(3), Uint8Array.of(1));
    expect(sealed.length).toBe(3 + 16);
    expect(await aead.open(new Uint8Array(12), sealed, Uint8Array.of(1))).toEqual(
      new Uint8Array(3),
    );
    expect(await codeOf(() => aead.open(new Uint8Array(12), sealed))).toBe('DECRYPTION_FAILED');
    expect(await codeOf(() => aead.open(new Uint8Array(12), sealed.subarray(0, 15)))).toBe(
      'DECRYPTION_FAILED',
    );
  });
});

describe('createRawAead: the key it keeps', () => {
  test("is its own copy: changing or wiping the caller's key afterwards changes nothing", async () => {
    for (const algorithm of ['AES-128-GCM', 'AES-256-GCM', 'ChaCha20-Poly1305'] as const) {
      const length = algorithm === 'AES-128-GCM' ? 16 : 32;
      const key = new Uint8Array(length).fill(9);
      const nonce = new Uint8Array(12).fill(1);
      const aead = await createRawAead(key, algorithm);
      const sealed = await aead.seal(nonce, new Uint8Array([1, 2, 3]));
      key.fill(0);
      expect(toHex(await aead.open(nonce, sealed))).toBe('010203');
      const again = await createRawAead(new Uint8Array(length).fill(9), algorithm);
      expect(toHex(await again.seal(nonce, new Uint8Array([1, 2, 3])))).toBe(toHex(sealed));
      await expect(
        (await createRawAead(key, algorithm)).open(nonce, sealed),
      ).rejects.toBeInstanceOf(CryptoError);
    }
  });
});
