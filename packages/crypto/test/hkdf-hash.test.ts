import { hkdf as nobleHkdf } from '@noble/hashes/hkdf.js';
import { hmac as nobleHmac } from '@noble/hashes/hmac.js';
import {
  sha256 as nobleSha256,
  sha384 as nobleSha384,
  sha512 as nobleSha512,
} from '@noble/hashes/sha2.js';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  constantTimeEqual,
  fromHex,
  type HashName,
  hkdf,
  hkdfExpand,
  hkdfExtract,
  hmac,
  hmacVerify,
  randomBytes,
  sha256,
  sha512,
  utf8Encode,
  wipe,
} from '../src/index.js';
import { codeOf, flipBit } from './_helpers.js';

const NOBLE = { 'SHA-256': nobleSha256, 'SHA-384': nobleSha384, 'SHA-512': nobleSha512 } as const;
const HASHES = Object.keys(NOBLE) as HashName[];

describe('hashes', () => {
  test('FIPS 180-2 "abc"', async () => {
    expect(await sha256(utf8Encode('abc'))).toEqual(
      fromHex('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'),
    );
    expect(await sha512(utf8Encode('abc'))).toEqual(
      fromHex(
        'ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f',
      ),
    );
  });

  // Sizes either side of the web back end's switch from @noble to WebCrypto (8 KiB).
  test.each([0, 1, 64, 8191, 8192, 100_000])(
    'sha256/sha512 of %i bytes match @noble/hashes',
    async (size) => {
      const data = randomBytes(size);
      expect(await sha256(data)).toEqual(nobleSha256(data));
      expect(await sha512(data)).toEqual(nobleSha512(data));
    },
  );

  test.each(HASHES)('HMAC-%s matches @noble/hashes, verifies in constant time', async (hash) => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 1, maxLength: 200 }),
        fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.constant(randomBytes(9000))),
        async (key, data) => {
          const tag = await hmac(hash, key, data);
          expect(tag).toEqual(nobleHmac(NOBLE[hash], key, data));
          expect(await hmacVerify(hash, key, data, tag)).toBe(true);
          expect(await hmacVerify(hash, key, data, flipBit(tag, 5))).toBe(false);
          expect(await hmacVerify(hash, key, data, tag.subarray(1))).toBe(false);
        },
      ),
      { numRuns: 20 },
    );
  });

  test('hmac refuses an empty key and unknown hashes', async () => {
    expect(await codeOf(hmac('SHA-256', new Uint8Array(0), new Uint8Array(1)))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(await codeOf(hmac('MD5' as HashName, new Uint8Array(1), new Uint8Array(1)))).toBe(
      'INVALID_ARGUMENT',
    );
  });
});

describe('hkdf', () => {
  test('RFC 5869 A.1 through extract and expand', async () => {
    const ikm = new Uint8Array(22).fill(0x0b);
    const salt = fromHex('000102030405060708090a0b0c');
    const info = fromHex('f0f1f2f3f4f5f6f7f8f9');
    const prk = await hkdfExtract('SHA-256', salt, ikm);
    expect(prk).toEqual(
      fromHex('077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5'),
    );
    expect(await hkdfExpand('SHA-256', prk, info, 42)).toEqual(
      fromHex(
        '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865',
      ),
    );
  });

  test.each(HASHES)(
    'labelled %s derivation is HKDF with info = label || 0x00 || context',
    async (hash) => {
      await fc.assert(
        fc.asyncProperty(
          fc.uint8Array({ maxLength: 64 }),
          fc.uint8Array({ maxLength: 32 }),
          fc.uint8Array({ maxLength: 40 }),
          fc.integer({ min: 1, max: 300 }),
          async (ikm, salt, context, length) => {
            const got = await hkdf(ikm, {
              label: 'coffer/v1/test-key',
              salt,
              context,
              length,
              hash,
            });
            const info = new Uint8Array([...utf8Encode('coffer/v1/test-key'), 0, ...context]);
            expect(got).toEqual(nobleHkdf(NOBLE[hash], ikm, salt, info, length));
            const prk = await hkdfExtract(hash, salt, ikm);
            expect(await hkdfExpand(hash, prk, info, length)).toEqual(got);
          },
        ),
        { numRuns: 20 },
      );
    },
  );

  test('labels must be coffer/v<n>/<purpose>', async () => {
    const ikm = randomBytes(32);
    for (const label of ['coffer/v1/field-key', 'coffer/v2/backup', 'coffer/v1/stream/chunk-key']) {
      expect(await codeOf(hkdf(ikm, { label, length: 32 }))).toBe('ok');
    }
    for (const label of [
      '',
      'field-key',
      'coffer/v1/',
      'coffer/v0/x',
      'coffer/V1/x',
      'coffer/v1/Field',
      'coffer/v1/a b',
      'coffer/v1/a\u0000b',
      'coffer/v1/-x',
    ]) {
      expect(await codeOf(hkdf(ikm, { label, length: 32 }))).toBe('INVALID_ARGUMENT');
    }
  });

  test('different labels or contexts give unrelated keys', async () => {
    const ikm = randomBytes(32);
    const a = await hkdf(ikm, { label: 'coffer/v1/a', length: 32 });
    expect(await hkdf(ikm, { label: 'coffer/v1/b', length: 32 })).not.toEqual(a);
    expect(
      await hkdf(ikm, { label: 'coffer/v1/a', length: 32, context: Uint8Array.of(0) }),
    ).not.toEqual(a);
  });

  test('output length limits', async () => {
    const ikm = randomBytes(32);
    expect(await codeOf(hkdf(ikm, { label: 'coffer/v1/x', length: 0 }))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(hkdf(ikm, { label: 'coffer/v1/x', length: 255 * 32 + 1 }))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(await codeOf(hkdf(ikm, { label: 'coffer/v1/x', length: 255 * 32 }))).toBe('ok');
    expect(await codeOf(hkdfExpand('SHA-256', new Uint8Array(31), new Uint8Array(0), 32))).toBe(
      'INVALID_ARGUMENT',
    );
  });
});

describe('utilities', () => {
  test('constantTimeEqual', () => {
    expect(constantTimeEqual(Uint8Array.of(1, 2), Uint8Array.of(1, 2))).toBe(true);
    expect(constantTimeEqual(Uint8Array.of(1, 2), Uint8Array.of(1, 3))).toBe(false);
    expect(constantTimeEqual(Uint8Array.of(1, 2), Uint8Array.of(1))).toBe(false);
    expect(constantTimeEqual(new Uint8Array(0), new Uint8Array(0))).toBe(true);
  });
  test('randomBytes', async () => {
    expect(randomBytes(0).length).toBe(0);
    expect(randomBytes(100_000).length).toBe(100_000);
    expect(randomBytes(32)).not.toEqual(randomBytes(32));
    expect(await codeOf(Promise.resolve().then(() => randomBytes(-1)))).toBe('INVALID_ARGUMENT');
  });
  test('wipe zeroes every buffer', () => {
    const a = Uint8Array.of(1, 2, 3);
    const b = Uint8Array.of(4);
    wipe(a, b);
    expect([...a, ...b]).toEqual([0, 0, 0, 0]);
  });
});
