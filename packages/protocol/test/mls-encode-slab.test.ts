// The patched ts-mls `encode` carves small encodings from shared slabs: every encoding must come
// out exactly as if it had its own buffer, however many are made and kept, and none may overlap
// another or see bytes written for another. And the patched `expandWithLabel` (encoder built
// once, label bytes kept up to a bound) still computes RFC 9420 §8's ExpandWithLabel exactly.
import { hkdfExpand, randomBytes } from '@coffer/crypto';
import { describe, expect, test } from 'vitest';
// Not exported by ts-mls; imported by path to test the patched function itself.
import { encode } from '../../../node_modules/ts-mls/dist/src/codec/tlsEncoder.js';
import { varLenDataEncoder } from '../../../node_modules/ts-mls/dist/src/codec/variableLength.js';
import { expandWithLabel } from '../../../node_modules/ts-mls/dist/src/crypto/kdf.js';
import { createCofferCryptoProvider, MLS_DEFAULT_CIPHERSUITE } from '../src/index.js';

/** The TLS variable-length vector by hand (RFC 9420 §2.1.2): a QUIC-style length, then the data. */
function byHand(data: Uint8Array): Uint8Array {
  const n = data.length;
  const head =
    n < 64
      ? [n]
      : n < 16384
        ? [0x40 | (n >> 8), n & 0xff]
        : [0x80 | (n >>> 24), (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
  return Uint8Array.from([...head, ...data]);
}

describe('encode (patched: small encodings share slabs)', () => {
  test('thousands of kept encodings of every size stay exact and disjoint', () => {
    const sizes = [0, 1, 7, 8, 63, 64, 200, 1100, 2040, 2046, 2047, 3000, 20_000];
    const made: { data: Uint8Array; out: Uint8Array }[] = [];
    for (let i = 0; i < 3000; i++) {
      const data = randomBytes(sizes[i % sizes.length]!);
      made.push({ data, out: encode(varLenDataEncoder, data) });
    }
    const ranges = new Map<ArrayBufferLike, [number, number][]>();
    for (const { data, out } of made) {
      expect(Buffer.from(out).equals(Buffer.from(byHand(data)))).toBe(true);
      const list = ranges.get(out.buffer) ?? [];
      list.push([out.byteOffset, out.byteOffset + out.byteLength]);
      ranges.set(out.buffer, list);
    }
    // Some slabs hold many encodings (the point of the patch); no two ranges in one overlap.
    expect(Math.max(...[...ranges.values()].map((l) => l.length))).toBeGreaterThan(10);
    for (const list of ranges.values()) {
      list.sort((a, b) => a[0] - b[0]);
      for (let i = 1; i < list.length; i++)
        expect(list[i]![0]).toBeGreaterThanOrEqual(list[i - 1]![1]);
    }
    // Large encodings keep their own buffer.
    const large = made.find((m) => m.data.length === 20_000)!.out;
    expect(large.byteOffset).toBe(0);
    expect(large.buffer.byteLength).toBe(large.byteLength);
  });

  test('wiping one encoding leaves its neighbours intact', () => {
    const a = encode(varLenDataEncoder, Uint8Array.of(1, 2, 3));
    const b = encode(varLenDataEncoder, Uint8Array.of(4, 5, 6));
    a.fill(0);
    expect([...b]).toEqual([3, 4, 5, 6]);
  });
});

describe('expandWithLabel (patched: one encoder, label bytes kept)', () => {
  test('equals HKDF-Expand(secret, KDFLabel) by hand for more labels than are kept', async () => {
    const cs = await createCofferCryptoProvider().getCiphersuiteImpl(MLS_DEFAULT_CIPHERSUITE);
    const secret = randomBytes(32);
    for (let i = 0; i < 300; i++) {
      const label = `label ${i} ${'é'.repeat(i % 3)}`;
      const context = randomBytes(i % 70);
      const length = 1 + (i % 32);
      const full = new TextEncoder().encode(`MLS 1.0 ${label}`);
      // struct { uint16 length; opaque label<V>; opaque context<V>; } (RFC 9420 §8, §2.1.2)
      const info = Uint8Array.from([
        length >> 8,
        length & 0xff,
        ...byHand(full),
        ...byHand(context),
      ]);
      const want = await hkdfExpand('SHA-256', secret, info, length);
      // Twice: the second call takes the kept label bytes (for the first 256 labels).
      for (let round = 0; round < 2; round++) {
        const got = await expandWithLabel(secret, label, context, length, cs.kdf);
        expect(Buffer.from(got).toString('hex'), `${i}`).toBe(Buffer.from(want).toString('hex'));
      }
    }
  });
});
