import { argon2id as nobleArgon2id } from '@noble/hashes/argon2.js';
import fc from 'fast-check';
import { argon2id as wasmArgon2id } from 'hash-wasm';
import { describe, expect, test } from 'vitest';
import { argon2id, fromHex, randomBytes, utf8Encode } from '../src/index.js';
import { codeOf } from './_helpers.js';

// hash-wasm (what we ship) is checked against @noble/hashes (an independent, audited
// implementation), and @noble against RFC 9106's own test vector, which needs secret and
// associated-data inputs that hash-wasm does not take.

describe('argon2id', () => {
  test('RFC 9106 §5.3 vector (through @noble/hashes, the reference for the cross-check)', () => {
    const tag = nobleArgon2id(new Uint8Array(32).fill(1), new Uint8Array(16).fill(2), {
      t: 3,
      m: 32,
      p: 4,
      key: new Uint8Array(8).fill(3),
      personalization: new Uint8Array(12).fill(4),
      dkLen: 32,
    });
    expect(tag).toEqual(
      fromHex('0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659'),
    );
  });

  test('hash-wasm agrees with @noble/hashes on random inputs and small parameters', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 1, maxLength: 40 }),
        fc.uint8Array({ minLength: 8, maxLength: 32 }),
        fc.uint8Array({ maxLength: 16 }),
        fc.record({
          t: fc.integer({ min: 1, max: 3 }),
          p: fc.integer({ min: 1, max: 4 }),
          dkLen: fc.integer({ min: 4, max: 64 }),
        }),
        async (password, salt, secret, { t, p, dkLen }) => {
          const m = 8 * p + 16;
          const ours = await wasmArgon2id({
            password,
            salt,
            secret,
            iterations: t,
            parallelism: p,
            memorySize: m,
            hashLength: dkLen,
            outputType: 'binary',
          });
          expect(ours).toEqual(nobleArgon2id(password, salt, { t, m, p, dkLen, key: secret }));
        },
      ),
      { numRuns: 25 },
    );
  });

  test('argon2id maps its parameters as documented', async () => {
    const password = utf8Encode('correct horse battery staple');
    const salt = randomBytes(16);
    const params = { memoryKiB: 19456, iterations: 1, parallelism: 1, length: 32 };
    const ours = await argon2id(password, salt, params);
    expect(ours).toEqual(nobleArgon2id(password, salt, { t: 1, m: 19456, p: 1, dkLen: 32 }));
    expect(await argon2id(password, salt, params)).toEqual(ours);
    expect(await argon2id(utf8Encode('correct horse battery stapler'), salt, params)).not.toEqual(
      ours,
    );
  });

  test('refuses weak or absurd parameters', async () => {
    const pw = utf8Encode('pw');
    const salt = randomBytes(16);
    for (const [s, params] of [
      [randomBytes(15), {}],
      ['empty-password', {}],
      [salt, { memoryKiB: 1024 }],
      [salt, { memoryKiB: 8 * 1024 * 1024 }],
      [salt, { iterations: 0 }],
      [salt, { parallelism: 0 }],
      [salt, { length: 8 }],
      [salt, { iterations: 1.5 }],
    ] as const) {
      const password = s === 'empty-password' ? new Uint8Array(0) : pw;
      expect(await codeOf(argon2id(password, s === 'empty-password' ? salt : s, params))).toBe(
        'INVALID_ARGUMENT',
      );
    }
  });
});
