import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  concatBytes,
  fromBase64url,
  fromHex,
  toBase64url,
  toHex,
  utf8Decode,
  utf8Encode,
} from '../src/index.js';
import { codeOf } from './_helpers.js';

const ascii = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
// Node's own encoder as an independent reference, where it exists (not in browsers).
const NodeBuffer = (globalThis as { Buffer?: typeof Buffer }).Buffer;

describe('base64url', () => {
  // RFC 4648 §10 vectors, in the url-safe alphabet without padding.
  const rfc: [string, string][] = [
    ['', ''],
    ['f', 'Zg'],
    ['fo', 'Zm8'],
    ['foo', 'Zm9v'],
    ['foob', 'Zm9vYg'],
    ['fooba', 'Zm9vYmE'],
    ['foobar', 'Zm9vYmFy'],
  ];
  test.each(rfc)('RFC 4648 %j', (plain, encoded) => {
    expect(toBase64url(ascii(plain))).toBe(encoded);
    expect(fromBase64url(encoded)).toEqual(ascii(plain));
  });

  test('url-safe alphabet', () => {
    expect(toBase64url(Uint8Array.of(0xfb, 0xff, 0xbf))).toBe('-_-_');
  });

  test('round trip, and agrees with Node', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const text = toBase64url(bytes);
        if (NodeBuffer) expect(text).toBe(NodeBuffer.from(bytes).toString('base64url'));
        expect(fromBase64url(text)).toEqual(bytes);
      }),
    );
  });

  test.each([
    ['padding', 'Zg=='],
    ['standard alphabet +', 'a+b_'],
    ['standard alphabet /', 'a/b_'],
    ['whitespace', 'Zm9v Yg'],
    ['newline', 'Zm9v\nYg'],
    ['impossible length', 'Zm9vY'],
    ['non-canonical trailing bits (1 byte)', 'Zh'],
    ['non-canonical trailing bits (2 bytes)', 'Zm9'],
    ['non-ascii', 'Zm9vé'],
  ])('rejects %s', async (_name, text) => {
    expect(await codeOf(Promise.resolve().then(() => fromBase64url(text)))).toBe(
      'INVALID_ENCODING',
    );
  });

  test('exactly one text per byte string', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: fc.constantFrom(...'AQgw-_Zz09'.split('')), maxLength: 12 }),
        (text) => {
          let bytes: Uint8Array;
          try {
            bytes = fromBase64url(text);
          } catch {
            return;
          }
          expect(toBase64url(bytes)).toBe(text);
        },
      ),
    );
  });
});

describe('hex', () => {
  test('round trip, lowercase', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
        const text = toHex(bytes);
        if (NodeBuffer) expect(text).toBe(NodeBuffer.from(bytes).toString('hex'));
        expect(fromHex(text)).toEqual(bytes);
      }),
    );
  });
  test.each([
    ['odd', 'abc'],
    ['uppercase', 'AB'],
    ['non-hex', 'zz'],
    ['prefix', '0x00'],
    ['space', 'a b0'],
  ])('rejects %s', async (_name, text) => {
    expect(await codeOf(Promise.resolve().then(() => fromHex(text)))).toBe('INVALID_ENCODING');
  });
});

describe('utf8', () => {
  test('round trip', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (s) => {
        expect(utf8Decode(utf8Encode(s))).toBe(s);
      }),
    );
  });
  test.each([
    ['lone continuation byte', [0x80]],
    ['overlong encoding', [0xc0, 0xaf]],
    ['truncated sequence', [0xe2, 0x82]],
    ['surrogate', [0xed, 0xa0, 0x80]],
  ])('rejects %s', async (_name, bytes) => {
    expect(await codeOf(Promise.resolve().then(() => utf8Decode(Uint8Array.from(bytes))))).toBe(
      'INVALID_ENCODING',
    );
  });
});

test('concatBytes', () => {
  expect(concatBytes(Uint8Array.of(1), new Uint8Array(0), Uint8Array.of(2, 3))).toEqual(
    Uint8Array.of(1, 2, 3),
  );
});
