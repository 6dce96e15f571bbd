import { concatBytes, randomBytes, toBase64url, utf8Encode } from '@coffer/crypto';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { u32, u64 } from '../src/_bytes.js';
import {
  type DeviceEntry,
  decodeManifestBody,
  encodeManifestBody,
  generateKeyPair,
  MAX_DEVICES,
  MAX_MANIFEST_BODY_LENGTH,
  MAX_MANIFEST_CHAIN,
  type ManifestBody,
  manifestFromJson,
  manifestHash,
  manifestToJson,
  nextManifestBody,
  PROTOCOL_ERROR_CODES,
  ProtocolError,
  signManifest,
  sortDevices,
  verifyManifest,
  verifyManifestChain,
} from '../src/index.js';
import {
  account,
  codeOf,
  device,
  expectCode,
  flipBit,
  signRaw,
  successor,
  ZERO32,
} from './_helpers.js';

// ---- arbitraries ----

const FORBIDDEN = /[\p{Cc}\p{Cs}]/u;
const validName = (s: string) =>
  !FORBIDDEN.test(s) &&
  s.normalize('NFC') === s &&
  utf8Encode(s).length >= 1 &&
  utf8Encode(s).length <= 64;

const nameArb = fc
  .string({ unit: 'binary', minLength: 1, maxLength: 20 })
  .map((s) => s.normalize('NFC'))
  .filter(validName);
const timeArb = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const idArb = fc.uint8Array({ minLength: 16, maxLength: 16 }).map(toBase64url);
const keyArb = fc.uint8Array({ minLength: 32, maxLength: 32 });
const nonZero32 = keyArb.filter((b) => b.some((x) => x !== 0));
const entryArb = fc.record({ id: idArb, signingKey: keyArb, name: nameArb, addedAt: timeArb });
const devicesArb = fc
  .uniqueArray(entryArb, {
    minLength: 1,
    maxLength: MAX_DEVICES,
    selector: (d) => d.id,
  })
  .filter((ds) => new Set(ds.map((d) => toBase64url(d.signingKey))).size === ds.length)
  .map(sortDevices);
const bodyArb: fc.Arbitrary<ManifestBody> = fc
  .record({
    accountId: idArb,
    seq: fc.integer({ min: 1, max: 0xffffffff }),
    prevSeed: nonZero32,
    identityKey: keyArb,
    backupVersion: fc.integer({ min: 0, max: 0xffffffff }),
    hashSeed: nonZero32,
    issuedAt: timeArb,
    devices: devicesArb,
  })
  .map(({ prevSeed, hashSeed, ...r }) => ({
    ...r,
    prev: r.seq === 1 ? ZERO32 : prevSeed,
    backupHash: r.backupVersion === 0 ? ZERO32 : hashSeed,
  }));

// A body encoder with no checks, for building bodies the real one refuses.
function rawBody(b: {
  format?: number;
  accountId?: Uint8Array;
  seq: number;
  prev: Uint8Array;
  identityKey: Uint8Array;
  backupVersion: number;
  backupHash: Uint8Array;
  issuedAt: Uint8Array;
  count?: number;
  entries: Uint8Array[];
}): Uint8Array {
  const account = b.accountId ?? utf8Encode('AAAAAAAAAAAAAAAAAAAAAA');
  return concatBytes(
    Uint8Array.of(b.format ?? 1, account.length),
    account,
    u32(b.seq),
    b.prev,
    b.identityKey,
    u32(b.backupVersion),
    b.backupHash,
    b.issuedAt,
    Uint8Array.of(b.count ?? b.entries.length),
    ...b.entries,
  );
}
function rawEntry(id: number, key: number, name: Uint8Array, addedAt = u64(1)): Uint8Array {
  return concatBytes(
    new Uint8Array(16).fill(id),
    new Uint8Array(32).fill(key),
    Uint8Array.of(name.length),
    name,
    addedAt,
  );
}
const goodRaw = {
  seq: 1,
  prev: ZERO32,
  identityKey: new Uint8Array(32).fill(7),
  backupVersion: 1,
  backupHash: new Uint8Array(32).fill(9),
  issuedAt: u64(5),
  entries: [rawEntry(1, 1, utf8Encode('a')), rawEntry(2, 2, utf8Encode('b'))],
};

describe('manifest body encoding (spec §3.1)', () => {
  test('encode/decode round trip (fast-check)', () => {
    fc.assert(
      fc.property(bodyArb, (body) => {
        const bytes = encodeManifestBody(body);
        expect(bytes.length).toBeLessThanOrEqual(MAX_MANIFEST_BODY_LENGTH);
        const decoded = decodeManifestBody(bytes);
        expect(decoded).toEqual({ ...body, devices: body.devices.map((d) => ({ ...d })) });
        expect(encodeManifestBody(decoded)).toEqual(bytes);
      }),
      { numRuns: 200 },
    );
  });

  test('the hand-built reference body decodes', () => {
    const body = decodeManifestBody(rawBody(goodRaw));
    expect(body.devices.map((d) => d.name)).toEqual(['a', 'b']);
    expect(body.accountId).toBe('AAAAAAAAAAAAAAAAAAAAAA');
  });

  test('the largest body is exactly MAX_MANIFEST_BODY_LENGTH', async () => {
    const name = 'x'.repeat(64);
    const devices = sortDevices(
      Array.from({ length: MAX_DEVICES }, (_, i) => ({
        id: toBase64url(new Uint8Array(16).fill(i)),
        signingKey: new Uint8Array(32).fill(i),
        name,
        addedAt: Number.MAX_SAFE_INTEGER,
      })),
    );
    const a = await account();
    const bytes = encodeManifestBody({ ...a.firstBody, devices });
    expect(bytes.length).toBe(MAX_MANIFEST_BODY_LENGTH);
    expect(decodeManifestBody(bytes).devices).toHaveLength(MAX_DEVICES);
  });

  test('the decoder refuses every broken rule', () => {
    const bad: [string, Uint8Array, string][] = [
      ['format 2', rawBody({ ...goodRaw, format: 2 }), 'UNSUPPORTED_VERSION'],
      ['format 0', rawBody({ ...goodRaw, format: 0 }), 'UNSUPPORTED_VERSION'],
      ['empty', new Uint8Array(0), 'INVALID_MANIFEST'],
      ['trailing byte', concatBytes(rawBody(goodRaw), Uint8Array.of(0)), 'INVALID_MANIFEST'],
      [
        'account id 21 chars',
        rawBody({ ...goodRaw, accountId: utf8Encode('A'.repeat(21)) }),
        'INVALID_MANIFEST',
      ],
      [
        'non-canonical account id',
        rawBody({ ...goodRaw, accountId: utf8Encode(`${'A'.repeat(21)}B`) }),
        'INVALID_MANIFEST',
      ],
      [
        'account id not b64url',
        rawBody({ ...goodRaw, accountId: utf8Encode(`${'A'.repeat(21)}=`) }),
        'INVALID_MANIFEST',
      ],
      ['seq 0', rawBody({ ...goodRaw, seq: 0 }), 'INVALID_MANIFEST'],
      [
        'seq 1 with prev',
        rawBody({ ...goodRaw, prev: new Uint8Array(32).fill(1) }),
        'INVALID_MANIFEST',
      ],
      ['seq 2 with zero prev', rawBody({ ...goodRaw, seq: 2 }), 'INVALID_MANIFEST'],
      ['backup 0 with hash', rawBody({ ...goodRaw, backupVersion: 0 }), 'INVALID_MANIFEST'],
      ['backup 1 without hash', rawBody({ ...goodRaw, backupHash: ZERO32 }), 'INVALID_MANIFEST'],
      ['issuedAt 2^53', rawBody({ ...goodRaw, issuedAt: u64(2 ** 53) }), 'INVALID_MANIFEST'],
      [
        'issuedAt 2^64-1',
        rawBody({ ...goodRaw, issuedAt: new Uint8Array(8).fill(255) }),
        'INVALID_MANIFEST',
      ],
      ['no devices', rawBody({ ...goodRaw, entries: [] }), 'INVALID_MANIFEST'],
      ['count 65', rawBody({ ...goodRaw, count: 65 }), 'INVALID_MANIFEST'],
      ['count larger than entries', rawBody({ ...goodRaw, count: 3 }), 'INVALID_MANIFEST'],
      ['count smaller than entries', rawBody({ ...goodRaw, count: 1 }), 'INVALID_MANIFEST'],
      [
        'unsorted',
        rawBody({ ...goodRaw, entries: [goodRaw.entries[1]!, goodRaw.entries[0]!] }),
        'INVALID_MANIFEST',
      ],
      [
        'duplicate id',
        rawBody({
          ...goodRaw,
          entries: [rawEntry(1, 1, utf8Encode('a')), rawEntry(1, 2, utf8Encode('b'))],
        }),
        'INVALID_MANIFEST',
      ],
      [
        'duplicate key',
        rawBody({
          ...goodRaw,
          entries: [rawEntry(1, 1, utf8Encode('a')), rawEntry(2, 1, utf8Encode('b'))],
        }),
        'INVALID_MANIFEST',
      ],
      [
        'empty name',
        rawBody({ ...goodRaw, entries: [rawEntry(1, 1, new Uint8Array(0))] }),
        'INVALID_MANIFEST',
      ],
      [
        '65-byte name',
        rawBody({ ...goodRaw, entries: [rawEntry(1, 1, utf8Encode('x'.repeat(65)))] }),
        'INVALID_MANIFEST',
      ],
      [
        'name not NFC',
        rawBody({ ...goodRaw, entries: [rawEntry(1, 1, utf8Encode('e\u0301'))] }),
        'INVALID_MANIFEST',
      ],
      [
        'name with C0',
        rawBody({ ...goodRaw, entries: [rawEntry(1, 1, utf8Encode('a\nb'))] }),
        'INVALID_MANIFEST',
      ],
      [
        'name with DEL',
        rawBody({ ...goodRaw, entries: [rawEntry(1, 1, utf8Encode('a\u007f'))] }),
        'INVALID_MANIFEST',
      ],
      [
        'name with C1',
        rawBody({ ...goodRaw, entries: [rawEntry(1, 1, utf8Encode('a\u0085'))] }),
        'INVALID_MANIFEST',
      ],
      [
        'name invalid utf-8',
        rawBody({ ...goodRaw, entries: [rawEntry(1, 1, Uint8Array.of(0xc3, 0x28))] }),
        'INVALID_MANIFEST',
      ],
      [
        'name encoded surrogate',
        rawBody({ ...goodRaw, entries: [rawEntry(1, 1, Uint8Array.of(0xed, 0xa0, 0x80))] }),
        'INVALID_MANIFEST',
      ],
      [
        'addedAt 2^53',
        rawBody({ ...goodRaw, entries: [rawEntry(1, 1, utf8Encode('a'), u64(2 ** 53))] }),
        'INVALID_MANIFEST',
      ],
      [
        'too long',
        concatBytes(Uint8Array.of(1), new Uint8Array(MAX_MANIFEST_BODY_LENGTH)),
        'INVALID_MANIFEST',
      ],
    ];
    for (const [name, bytes, code] of bad) {
      let got = 'ok';
      try {
        decodeManifestBody(bytes);
      } catch (err) {
        got = ProtocolError.is(err) ? err.code : String(err);
      }
      expect(got, name).toBe(code);
    }
  });

  test('every truncation of a valid body is refused', () => {
    const bytes = rawBody(goodRaw);
    for (let n = 0; n < bytes.length; n++) {
      expect(() => decodeManifestBody(bytes.subarray(0, n))).toThrow(ProtocolError);
    }
  });

  test('random bytes only ever fail with a typed error (fast-check)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        try {
          decodeManifestBody(concatBytes(Uint8Array.of(1), bytes));
        } catch (err) {
          expect(ProtocolError.is(err, 'INVALID_MANIFEST')).toBe(true);
        }
      }),
    );
  });

  test('the encoder refuses what it would have to repair, naming the argument', async () => {
    const a = await account();
    const [d1, d2] = sortDevices([await device('one'), await device('two')]) as [
      DeviceEntry,
      DeviceEntry,
    ];
    const base = { ...a.firstBody, devices: [d1, d2] };
    expect(() => encodeManifestBody(base)).not.toThrow();
    const cases: [Partial<ManifestBody>, RegExp][] = [
      [{ devices: [d2, d1] }, /"devices" expected ids sorted/],
      [{ devices: [d1, d1] }, /"devices" expected ids sorted by bytes and unique/],
      [{ devices: [d1, { ...d2, signingKey: d1.signingKey }] }, /unique signing keys/],
      [{ devices: [] }, /"devices" expected 1 to 64 entries/],
      [
        { devices: [{ ...d1, name: 'x'.repeat(65) }] },
        /"devices\[0\].name" expected 1 to 64 bytes of UTF-8/,
      ],
      [{ devices: [{ ...d1, name: '' }] }, /"devices\[0\].name"/],
      [{ devices: [{ ...d1, name: 'e\u0301' }] }, /NFC/],
      [{ devices: [{ ...d1, name: 'a\uD800' }] }, /"devices\[0\].name"/],
      [{ devices: [{ ...d1, id: 'nope' }] }, /"devices\[0\].id" expected/],
      [{ devices: [{ ...d1, addedAt: -1 }] }, /"devices\[0\].addedAt"/],
      [
        { devices: [{ ...d1, signingKey: new Uint8Array(31) }] },
        /"devices\[0\].signingKey" expected 32 bytes/,
      ],
      [{ accountId: 'alice' }, /"accountId" expected/],
      [{ seq: 0 }, /"seq"/],
      [{ seq: 1.5 }, /"seq"/],
      [{ seq: 2 }, /"prev" expected 32 zero bytes exactly when seq is 1/],
      [{ prev: new Uint8Array(31) }, /"prev" expected 32 bytes/],
      [{ identityKey: new Uint8Array(33) }, /"identityKey"/],
      [{ backupVersion: 0 }, /"backupHash" expected 32 zero bytes/],
      [{ backupVersion: 2 ** 32 }, /"backupVersion"/],
      [{ issuedAt: 2 ** 53 }, /"issuedAt"/],
    ];
    for (const [change, message] of cases) {
      let err: unknown;
      try {
        encodeManifestBody({ ...base, ...change });
      } catch (e) {
        err = e;
      }
      expect(ProtocolError.is(err, 'INVALID_ARGUMENT'), String(message)).toBe(true);
      expect((err as Error).message).toMatch(message);
    }
    expect(() => encodeManifestBody(null as unknown as ManifestBody)).toThrow(/"body"/);
  });

  test('sortDevices orders by id bytes, not by b64url text', () => {
    // "_" (63) sorts after "A" (0) in bytes but before "a" in ASCII.
    const low = { id: toBase64url(new Uint8Array(16)), signingKey: ZERO32, name: 'a', addedAt: 0 };
    const high = {
      id: toBase64url(new Uint8Array(16).fill(0xff)),
      signingKey: ZERO32,
      name: 'b',
      addedAt: 0,
    };
    const mid = {
      id: toBase64url(new Uint8Array(16).fill(0x68)),
      signingKey: ZERO32,
      name: 'c',
      addedAt: 0,
    };
    expect(high.id < mid.id).toBe(true); // text order would put "_" first
    expect(sortDevices([high, mid, low]).map((d) => d.name)).toEqual(['a', 'c', 'b']);
    expect(() => sortDevices([{ ...low, id: 'x' }])).toThrow(/"devices\[0\].id"/);
  });
});

describe('signing and wire form (spec §3.2)', () => {
  test('JSON round trip', async () => {
    const a = await account();
    const json = manifestToJson(a.first);
    expect(JSON.parse(JSON.stringify(json))).toEqual(json);
    expect(manifestFromJson(json)).toEqual(a.first);
    expect(await manifestHash(a.first)).toHaveLength(32);
  });

  test('manifestFromJson is strict', async () => {
    const a = await account();
    const json = manifestToJson(a.first);
    const bad: unknown[] = [
      null,
      'x',
      [],
      { body: json.body },
      { ...json, extra: 1 },
      { body: 1, signature: json.signature },
      { body: '', signature: json.signature },
      { body: `${json.body}=`, signature: json.signature },
      { body: json.body, signature: json.signature.slice(0, -1) },
      { body: json.body, signature: toBase64url(new Uint8Array(65)) },
      {
        body: toBase64url(new Uint8Array(MAX_MANIFEST_BODY_LENGTH + 1)),
        signature: json.signature,
      },
    ];
    for (const b of bad) await expectCode(() => manifestFromJson(b), 'INVALID_MANIFEST');
  });

  test('signManifest refuses a key that is not the body identity', async () => {
    const a = await account();
    const other = await generateKeyPair();
    await expectCode(() => signManifest(other.signingKey, a.firstBody), 'INVALID_ARGUMENT');
  });
});

describe('verifyManifest (spec §3.3)', () => {
  test('accepts the first manifest and its successors', async () => {
    const a = await account();
    expect(await verifyManifest(a.first, { accountId: a.accountId })).toEqual(
      decodeManifestBody(a.first.body),
    );
    const second = await successor(a, a.first, {
      devices: sortDevices([...a.firstBody.devices, await device('Phone')]),
    });
    const body = await verifyManifest(second, { accountId: a.accountId, trusted: a.first });
    expect(body.seq).toBe(2);
    expect(body.prev).toEqual(await manifestHash(a.first));
    // The same manifest again is accepted as is.
    expect((await verifyManifest(second, { accountId: a.accountId, trusted: second })).seq).toBe(2);
  });

  test('rollback, forks, gap', async () => {
    const a = await account();
    const id = a.accountId;
    const s2 = await successor(a, a.first, {
      devices: sortDevices([...a.firstBody.devices, await device('B')]),
    });
    const s2b = await successor(a, a.first, {
      devices: sortDevices([...a.firstBody.devices, await device('C')]),
    });
    const s3 = await successor(a, s2);
    const s3b = await successor(a, s2b);
    await expectCode(
      () => verifyManifest(a.first, { accountId: id, trusted: s2 }),
      'MANIFEST_ROLLBACK',
    );
    await expectCode(() => verifyManifest(s2b, { accountId: id, trusted: s2 }), 'MANIFEST_FORK');
    await expectCode(() => verifyManifest(s3b, { accountId: id, trusted: s2 }), 'MANIFEST_FORK');
    await expectCode(() => verifyManifest(s3, { accountId: id, trusted: a.first }), 'MANIFEST_GAP');
    // No trusted state: a later seq needs a chain from seq 1, or a pinned identity key.
    await expectCode(() => verifyManifest(s3, { accountId: id }), 'MANIFEST_GAP');
    const pinned = { accountId: id, identityKey: a.identity.publicKey };
    expect((await verifyManifest(s3, pinned)).seq).toBe(3);
  });

  test('wrong account, wrong identity, bad signature', async () => {
    const a = await account();
    const b = await account();
    await expectCode(() => verifyManifest(b.first, { accountId: a.accountId }), 'ACCOUNT_MISMATCH');
    await expectCode(
      () => verifyManifest(a.first, { accountId: a.accountId, identityKey: b.identity.publicKey }),
      'IDENTITY_MISMATCH',
    );
    // A forged successor under a new key, correctly chained: the trusted manifest pins the key.
    const mallory = await generateKeyPair();
    const forged = await successor(a, a.first, {}, mallory);
    await expectCode(
      () => verifyManifest(forged, { accountId: a.accountId, trusted: a.first }),
      'IDENTITY_MISMATCH',
    );
    const foreignSig = { body: a.first.body, signature: b.first.signature };
    await expectCode(() => verifyManifest(foreignSig, { accountId: a.accountId }), 'BAD_SIGNATURE');
    const shortSig = { body: a.first.body, signature: a.first.signature.subarray(0, 63) };
    await expectCode(() => verifyManifest(shortSig, { accountId: a.accountId }), 'BAD_SIGNATURE');
  });

  test('checks run in the order of §3.3', async () => {
    const a = await account();
    const b = await account();
    const id = a.accountId;
    // 1 before 2: an unknown format under a good signature.
    const v2 = a.first.body.slice();
    v2[0] = 2;
    await expectCode(
      async () => verifyManifest(await signRaw(a.identity, v2), { accountId: id }),
      'UNSUPPORTED_VERSION',
    );
    // 2 before 3: another account's body with a bad signature.
    const bad = { body: b.first.body, signature: a.first.signature };
    await expectCode(() => verifyManifest(bad, { accountId: id }), 'BAD_SIGNATURE');
    // 3 before 4: another account under another identity.
    await expectCode(
      () => verifyManifest(b.first, { accountId: id, identityKey: a.identity.publicKey }),
      'ACCOUNT_MISMATCH',
    );
    // 4 before 5: a rollback by another identity.
    const s2 = await successor(a, a.first);
    const mallory = await generateKeyPair();
    const old = await signManifest(mallory.signingKey, {
      ...a.firstBody,
      identityKey: mallory.publicKey,
    });
    await expectCode(
      () => verifyManifest(old, { accountId: id, trusted: s2 }),
      'IDENTITY_MISMATCH',
    );
  });

  test('every flipped bit of body or signature fails with a typed verification error', async () => {
    const a = await account();
    const s2 = await successor(a, a.first);
    const allowed = new Set(PROTOCOL_ERROR_CODES.filter((c) => c !== 'INVALID_ARGUMENT'));
    const expected = { accountId: a.accountId, trusted: a.first };
    for (let bit = 0; bit < s2.body.length * 8; bit++) {
      const code = await codeOf(() =>
        verifyManifest({ ...s2, body: flipBit(s2.body, bit) }, expected),
      );
      expect(allowed.has(code as never), `body bit ${bit}: ${code}`).toBe(true);
    }
    for (let bit = 0; bit < 512; bit++) {
      const flipped = { ...s2, signature: flipBit(s2.signature, bit) };
      expect(await codeOf(() => verifyManifest(flipped, expected)), `sig bit ${bit}`).toBe(
        'BAD_SIGNATURE',
      );
    }
  });

  test('caller mistakes are INVALID_ARGUMENT', async () => {
    const a = await account();
    const b = await account();
    const cases: [unknown, unknown][] = [
      [a.first, { accountId: 'alice' }],
      [a.first, null],
      [a.first, { accountId: a.accountId, identityKey: new Uint8Array(31) }],
      [
        a.first,
        {
          accountId: a.accountId,
          trusted: { body: new Uint8Array(3), signature: new Uint8Array(64) },
        },
      ],
      [a.first, { accountId: a.accountId, trusted: b.first }],
      [a.first, { accountId: a.accountId, trusted: a.first, identityKey: b.identity.publicKey }],
      [{ body: 'x', signature: 'y' }, { accountId: a.accountId }],
    ];
    for (const [m, e] of cases) {
      await expectCode(() => verifyManifest(m as never, e as never), 'INVALID_ARGUMENT');
    }
  });
});

describe('verifyManifestChain', () => {
  test('verifies a history from seq 1 or from a trusted manifest', async () => {
    const a = await account();
    const chain = [a.first];
    for (let i = 0; i < 4; i++) chain.push(await successor(a, chain[chain.length - 1]!));
    expect((await verifyManifestChain(chain, { accountId: a.accountId })).seq).toBe(5);
    const fromTrusted = await verifyManifestChain(chain.slice(2), {
      accountId: a.accountId,
      trusted: chain[1],
    });
    expect(fromTrusted.seq).toBe(5);
    expect((await verifyManifestChain([], { accountId: a.accountId, trusted: chain[2] })).seq).toBe(
      3,
    );
    await expectCode(() => verifyManifestChain([], { accountId: a.accountId }), 'INVALID_ARGUMENT');
    await expectCode(
      () => verifyManifestChain([chain[0]!, chain[1]!, chain[3]!], { accountId: a.accountId }),
      'MANIFEST_GAP',
    );
    await expectCode(
      () => verifyManifestChain(chain.slice(1), { accountId: a.accountId }),
      'MANIFEST_GAP',
    );
    await expectCode(
      () => verifyManifestChain([chain[0]!, chain[2]!, chain[1]!], { accountId: a.accountId }),
      'MANIFEST_GAP',
    );
    await expectCode(
      () => verifyManifestChain(chain.slice(0, 2), { accountId: a.accountId, trusted: chain[3] }),
      'MANIFEST_ROLLBACK',
    );
    const tooLong = Array.from({ length: MAX_MANIFEST_CHAIN + 1 }, () => a.first);
    await expectCode(
      () => verifyManifestChain(tooLong, { accountId: a.accountId }),
      'INVALID_ARGUMENT',
    );
  });

  test('the first element pins the identity for the rest', async () => {
    const a = await account();
    const mallory = await generateKeyPair();
    const forged = await successor(a, a.first, {}, mallory);
    await expectCode(
      () => verifyManifestChain([a.first, forged], { accountId: a.accountId }),
      'IDENTITY_MISMATCH',
    );
  });
});

describe('nextManifestBody', () => {
  test('keeps account and identity, chains, applies changes', async () => {
    const a = await account();
    const before = Date.now();
    const body = await nextManifestBody(a.first, { backupVersion: 2, backupHash: randomBytes(32) });
    expect(body.seq).toBe(2);
    expect(body.accountId).toBe(a.accountId);
    expect(body.identityKey).toEqual(a.identity.publicKey);
    expect(body.prev).toEqual(await manifestHash(a.first));
    expect(body.devices).toEqual(a.firstBody.devices);
    expect(body.issuedAt).toBeGreaterThanOrEqual(before);
    expect((await nextManifestBody(a.first, { issuedAt: 42 })).issuedAt).toBe(42);
  });

  test('refuses what would not encode', async () => {
    const a = await account();
    const [x, y] = sortDevices([await device('x'), await device('y')]) as [
      DeviceEntry,
      DeviceEntry,
    ];
    await expectCode(() => nextManifestBody(a.first, { devices: [y, x] }), 'INVALID_ARGUMENT');
    await expectCode(() => nextManifestBody(a.first, { backupVersion: 0 }), 'INVALID_ARGUMENT');
    await expectCode(() => nextManifestBody(a.first, { issuedAt: -1 }), 'INVALID_ARGUMENT');
    await expectCode(
      () => nextManifestBody({ body: new Uint8Array(1), signature: new Uint8Array(64) }, {}),
      'INVALID_ARGUMENT',
    );
  });
});
