// The body validators and the pieces routes build on: strict b64url, ids, counts, usernames,
// throttle delays, fake OPAQUE identifiers, token hashing, the event hub.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ServerError } from '../src/errors.js';
import { createEventHub } from '../src/event-hub.js';
import {
  bytesField,
  decodeB64url,
  idField,
  manifestField,
  parseCount,
  parseJsonObject,
  stringField,
} from '../src/http/validate.js';
import { fakeIdentifier } from '../src/opaque.js';
import { newToken, tokenHash } from '../src/sessions.js';
import { ACCOUNT_MAX_DELAY_MS, ADDRESS_MAX_DELAY_MS, throttleDelay } from '../src/throttle.js';
import { parseUsername } from '../src/username.js';

const code = (f: () => unknown) => {
  try {
    f();
  } catch (err) {
    if (ServerError.is(err)) return err.code;
    throw err;
  }
  return 'ok';
};

describe('validators', () => {
  it('decode only canonical b64url of the right size', () => {
    expect(decodeB64url('AAEC', 'x', 'op', { exact: 3 })).toEqual(new Uint8Array([0, 1, 2]));
    for (const bad of ['AAE=', 'AA EC', 'AA+C', 'AA/C', 'A', 7, null, 'AAECAw'])
      expect(
        code(() => decodeB64url(bad, 'x', 'op', { exact: 3 })),
        String(bad),
      ).toBe('BAD_REQUEST');
    expect(code(() => decodeB64url('', 'x', 'op', { min: 1, max: 4 }))).toBe('BAD_REQUEST');
    // Non-canonical trailing bits: 'AAF' and 'AAE' would both decode to [0, 1].
    expect(code(() => decodeB64url('AAE', 'x', 'op', { exact: 2 }))).toBe('ok');
    expect(code(() => decodeB64url('AAF', 'x', 'op', { exact: 2 }))).toBe('BAD_REQUEST');
    expect(code(() => decodeB64url('A'.repeat(10_000), 'x', 'op', { max: 4 }))).toBe('BAD_REQUEST');
  });

  it('round-trips any bytes within limits', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 64 }), (bytes) => {
        const text = Buffer.from(bytes).toString('base64url');
        expect(decodeB64url(text, 'x', 'op', { max: 64 })).toEqual(bytes);
      }),
    );
  });

  it('read fields by name, own properties only', () => {
    const obj = parseJsonObject(
      new TextEncoder().encode('{"__proto__":{"a":"x"},"s":"abc"}'),
      'op',
    );
    expect(stringField(obj, 's', 'op', 3)).toBe('abc');
    expect(code(() => stringField(obj, 's', 'op', 2))).toBe('BAD_REQUEST');
    expect(code(() => stringField(obj, 'a', 'op', 9))).toBe('BAD_REQUEST');
    expect(code(() => stringField(obj, 'toString', 'op', 9))).toBe('BAD_REQUEST');
    expect(code(() => bytesField({}, 'b', 'op', { exact: 1 }))).toBe('BAD_REQUEST');
    expect(code(() => idField({ id: 'A'.repeat(22) }, 'id', 'op'))).toBe('ok');
    expect(code(() => idField({ id: 'A'.repeat(21) }, 'id', 'op'))).toBe('BAD_REQUEST');
    expect(code(() => manifestField({ m: [] }, 'm', 'op'))).toBe('BAD_REQUEST');
    expect(code(() => manifestField({ m: { body: 'AA', signature: 'AA' } }, 'm', 'op'))).toBe(
      'BAD_REQUEST',
    );
  });

  it('parse counts canonically', () => {
    expect(parseCount('0', 'n', 'op', 10)).toBe(0);
    expect(parseCount('10', 'n', 'op', 10)).toBe(10);
    for (const bad of ['', '01', '-1', '+1', '1.0', '11', ' 1', '1e1', undefined])
      expect(
        code(() => parseCount(bad, 'n', 'op', 10)),
        String(bad),
      ).toBe('BAD_REQUEST');
  });

  it('normalise usernames per account-v1 §1', () => {
    expect(parseUsername(' Ali.ce_1 ', 'op')).toEqual({
      display: 'Ali.ce_1',
      normalized: 'ali.ce_1',
    });
    // NFC first: a decomposed Kelvin sign K becomes K, then k.
    expect(parseUsername('\u212Aate', 'op').normalized).toBe('kate');
    expect(code(() => parseUsername('ab', 'op'))).toBe('INVALID_USERNAME');
    expect(code(() => parseUsername(3, 'op'))).toBe('BAD_REQUEST');
  });
});

describe('building blocks', () => {
  it('space throttled attempts 2^(n-5) s from the 5th failure, capped', () => {
    expect([1, 4, 5, 6, 7, 10].map((n) => throttleDelay(n, ADDRESS_MAX_DELAY_MS))).toEqual([
      0, 0, 1000, 2000, 4000, 32_000,
    ]);
    expect(throttleDelay(100, ACCOUNT_MAX_DELAY_MS)).toBe(60_000);
    expect(throttleDelay(100, ADDRESS_MAX_DELAY_MS)).toBe(15 * 60_000);
  });

  it('make a stable, keyed, id-shaped fake identifier per name', async () => {
    const k1 = new Uint8Array(32).fill(1);
    const k2 = new Uint8Array(32).fill(2);
    const a = await fakeIdentifier(k1, 'mallory');
    expect(a).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(await fakeIdentifier(k1, 'mallory')).toBe(a);
    expect(await fakeIdentifier(k1, 'mallorz')).not.toBe(a);
    expect(await fakeIdentifier(k2, 'mallory')).not.toBe(a);
  });

  it('hash tokens, refusing anything that is not one', async () => {
    const { token, tokenHash: hash } = await newToken();
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(await tokenHash(token)).toEqual(hash);
    expect(await tokenHash(`${token}A`)).toBeUndefined();
    expect(await tokenHash(`${token.slice(0, 42)}B`)).toBeUndefined(); // non-canonical last char
  });

  it('fan out events per account and unsubscribe', () => {
    const hub = createEventHub();
    const got: string[] = [];
    const off = hub.subscribe('a', (e) => got.push(`1:${e.type}`));
    hub.subscribe('a', () => {
      throw new Error('a broken listener');
    });
    hub.subscribe('b', (e) => got.push(`b:${e.type}`));
    hub.publish('a', { type: 'manifest', seq: 2, revokedDeviceIds: [] });
    off();
    off();
    hub.publish('a', { type: 'deleted' });
    expect(got).toEqual(['1:manifest']);
    expect(hub.size).toBe(2);
  });
});

describe('client address keys', () => {
  it('group IPv6 by /64 and unmap IPv4', async () => {
    const { addressKey } = await import('../src/client-address.js');
    expect(addressKey('192.0.2.1')).toBe('192.0.2.1');
    expect(addressKey('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(addressKey('2001:db8:1:2:3:4:5:6')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8:1:2::9')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey('unknown')).toBe('unknown');
  });
});
