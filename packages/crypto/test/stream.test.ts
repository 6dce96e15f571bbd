import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  type AeadSuite,
  createEncryptStream,
  generateAeadKey,
  importAeadKey,
  MAX_CHUNKS,
  randomBytes,
  streamDecrypt,
  streamEncrypt,
  utf8Encode,
} from '../src/index.js';
import { codeOf, collect, flipBit, readableOf, streamThrough } from './_helpers.js';

const S = 1024; // the smallest chunk size keeps these tests fast
const SUITES: AeadSuite[] = ['AES-256-GCM', 'XChaCha20-Poly1305'];
const SIZES = [0, 1, S - 1, S, S + 1, 2 * S, 2 * S + 7, 5 * S];

async function encryptPiecewise(
  key: Awaited<ReturnType<typeof importAeadKey>>,
  data: Uint8Array,
  piece: number,
  context?: Uint8Array,
) {
  return collect(
    readableOf(data, piece).pipeThrough(
      createEncryptStream(key, { chunkSize: S, ...(context ? { context } : {}) }),
    ),
  );
}

describe.each(SUITES)('stream %s', (suite) => {
  test.each(SIZES)('round trip of %i bytes through both APIs, any way round', async (size) => {
    const key = await importAeadKey(generateAeadKey(), { suite, id: 'f' });
    const data = randomBytes(size);
    const context = utf8Encode('attachment/1');
    const oneShot = await streamEncrypt(key, data, { chunkSize: S, context });
    const chunks = Math.max(1, Math.ceil(size / S));
    expect(oneShot.length).toBe(4 + 1 + 32 + size + 16 * chunks);
    const piecewise = await encryptPiecewise(key, data, 100, context);
    expect(piecewise.length).toBe(oneShot.length);
    for (const sealed of [oneShot, piecewise]) {
      expect(await streamDecrypt(key, sealed, { context })).toEqual(data);
      expect(await collect(await streamThrough(key, sealed, { context }, 77))).toEqual(data);
    }
  });

  test('property: any payload, any input splitting', async () => {
    const key = await importAeadKey(generateAeadKey(), { suite });
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 4 * S }),
        fc.integer({ min: 1, max: 3000 }),
        fc.integer({ min: 1, max: 3000 }),
        async (data, inPiece, outPiece) => {
          const sealed = await encryptPiecewise(key, data, inPiece);
          expect(await collect(await streamThrough(key, sealed, {}, outPiece))).toEqual(data);
        },
      ),
      { numRuns: 40 },
    );
  });

  test('every single bit flip in a 2-chunk stream is rejected, by both decoders', async () => {
    const key = await importAeadKey(generateAeadKey(), { suite, id: 'k' });
    const sealed = await streamEncrypt(key, randomBytes(S + 10), { chunkSize: S });
    let rejected = 0;
    for (let bit = 0; bit < sealed.length * 8; bit++) {
      const bad = flipBit(sealed, bit);
      const want = bit < 8 ? 'UNSUPPORTED_VERSION' : 'DECRYPTION_FAILED';
      expect(await codeOf(streamDecrypt(key, bad))).toBe(want);
      // The TransformStream is slower; check it on every byte's first bit.
      if (bit % 8 === 0)
        expect(await codeOf(collect(await streamThrough(key, bad, {}, 500)))).toBe(want);
      rejected++;
    }
    expect(rejected).toBe(sealed.length * 8);
  });

  test('truncation at every length is rejected', async () => {
    const key = await importAeadKey(generateAeadKey(), { suite });
    const sealed = await streamEncrypt(key, randomBytes(2 * S), { chunkSize: S });
    for (let n = 0; n < sealed.length; n++) {
      const want = n === 0 ? 'UNSUPPORTED_VERSION' : 'DECRYPTION_FAILED';
      expect(await codeOf(streamDecrypt(key, sealed.subarray(0, n)))).toBe(want);
      if (n % 97 === 0 || n === sealed.length - 1 || n === sealed.length - S - 16) {
        expect(
          await codeOf(collect(await streamThrough(key, sealed.subarray(0, n), {}, 256))),
        ).toBe(want);
      }
    }
  });

  test('chunks of another stream under the same key do not splice in', async () => {
    const key = await importAeadKey(generateAeadKey(), { suite });
    const a = await streamEncrypt(key, randomBytes(3 * S), { chunkSize: S });
    const b = await streamEncrypt(key, randomBytes(3 * S), { chunkSize: S });
    const header = 37;
    const spliced = a.slice();
    spliced.set(b.subarray(header + S + 16, header + 2 * (S + 16)), header + S + 16);
    expect(await codeOf(streamDecrypt(key, spliced))).toBe('DECRYPTION_FAILED');
  });

  test('wrong key, key id or context', async () => {
    const raw = generateAeadKey();
    const key = await importAeadKey(raw, { suite, id: 'a' });
    const sealed = await streamEncrypt(key, randomBytes(100), { context: utf8Encode('c1') });
    expect(
      await codeOf(
        streamDecrypt(await importAeadKey(generateAeadKey(), { suite, id: 'a' }), sealed, {
          context: utf8Encode('c1'),
        }),
      ),
    ).toBe('DECRYPTION_FAILED');
    expect(
      await codeOf(
        streamDecrypt(await importAeadKey(raw, { suite, id: 'b' }), sealed, {
          context: utf8Encode('c1'),
        }),
      ),
    ).toBe('DECRYPTION_FAILED');
    expect(await codeOf(streamDecrypt(key, sealed, { context: utf8Encode('c2') }))).toBe(
      'DECRYPTION_FAILED',
    );
  });
});

describe('stream arguments and limits', () => {
  test('chunk size must be a power of two in range', async () => {
    const key = await importAeadKey(generateAeadKey());
    for (const chunkSize of [0, 512, 1000, 3000, 2 ** 25, Number.NaN]) {
      expect(await codeOf(streamEncrypt(key, new Uint8Array(1), { chunkSize }))).toBe(
        'INVALID_ARGUMENT',
      );
    }
    expect(await codeOf(streamEncrypt(key, new Uint8Array(1), { chunkSize: 2 ** 24 }))).toBe('ok');
  });

  test('the chunk cap is 2^32', () => {
    expect(MAX_CHUNKS).toBe(2 ** 32);
  });

  test('a non-byte chunk errors the encrypting stream with INVALID_ARGUMENT', async () => {
    const key = await importAeadKey(generateAeadKey());
    const input = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue('text' as unknown as Uint8Array);
        c.close();
      },
    });
    expect(await codeOf(collect(input.pipeThrough(createEncryptStream(key))))).toBe(
      'INVALID_ARGUMENT',
    );
  });

  test('default chunk size is 64 KiB', async () => {
    const key = await importAeadKey(generateAeadKey());
    const sealed = await streamEncrypt(key, new Uint8Array(1));
    expect(sealed[2]).toBe(16);
  });
});
