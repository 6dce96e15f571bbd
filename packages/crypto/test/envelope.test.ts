import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { backend } from '#backend';
import {
  type AeadSuite,
  aeadIsSynchronous,
  decrypt,
  decryptSync,
  encrypt,
  encryptSync,
  generateAeadKey,
  importAeadKey,
  readEnvelopeHeader,
  toHex,
  utf8Encode,
} from '../src/index.js';
import { codeOf, flipBit } from './_helpers.js';

const SUITES: AeadSuite[] = ['AES-256-GCM', 'XChaCha20-Poly1305'];

describe.each(SUITES)('envelope %s', (suite) => {
  test('round trip for any plaintext, key id and context', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 300 }),
        fc.uint8Array({ maxLength: 64 }),
        fc.uint8Array({ maxLength: 80 }),
        async (plaintext, id, context) => {
          const key = await importAeadKey(generateAeadKey(), { suite, id });
          const envelope = await encrypt(key, plaintext, { context });
          expect(envelope.length).toBe(
            3 + id.length + (suite === 'AES-256-GCM' ? 12 : 24) + plaintext.length + 16,
          );
          expect(await decrypt(key, envelope, { context })).toEqual(plaintext);
          const header = readEnvelopeHeader(envelope);
          expect(header).toEqual({ version: 1, suite, keyId: id });
        },
      ),
      { numRuns: 60 },
    );
  });

  test('every single bit flip anywhere is rejected', async () => {
    const key = await importAeadKey(generateAeadKey(), { suite, id: 'k1' });
    const context = utf8Encode('t/c/1');
    const envelope = await encrypt(key, utf8Encode('short secret'), { context });
    const outcomes = new Map<string, number>();
    for (let bit = 0; bit < envelope.length * 8; bit++) {
      const code = await codeOf(decrypt(key, flipBit(envelope, bit), { context }));
      outcomes.set(code, (outcomes.get(code) ?? 0) + 1);
      // Only the version byte may say anything but DECRYPTION_FAILED.
      expect(code).toBe(bit < 8 ? 'UNSUPPORTED_VERSION' : 'DECRYPTION_FAILED');
    }
    expect(outcomes.get('DECRYPTION_FAILED')).toBe(envelope.length * 8 - 8);
  });

  test('random bit flips in random envelopes are rejected', async () => {
    const key = await importAeadKey(generateAeadKey(), { suite, id: 'k' });
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 100 }), fc.nat(), async (plaintext, n) => {
        const envelope = await encrypt(key, plaintext);
        const code = await codeOf(decrypt(key, flipBit(envelope, n % (envelope.length * 8))));
        expect(['DECRYPTION_FAILED', 'UNSUPPORTED_VERSION']).toContain(code);
      }),
      { numRuns: 100 },
    );
  });

  test('every truncation is rejected', async () => {
    const key = await importAeadKey(generateAeadKey(), { suite, id: 'k1' });
    const envelope = await encrypt(key, utf8Encode('truncate me'));
    for (let n = 0; n < envelope.length; n++) {
      expect(await codeOf(decrypt(key, envelope.subarray(0, n)))).toBe(
        n === 0 ? 'UNSUPPORTED_VERSION' : 'DECRYPTION_FAILED',
      );
    }
  });

  test('wrong key, key id, suite or context fail the same way', async () => {
    const raw = generateAeadKey();
    const key = await importAeadKey(raw, { suite, id: 'k1' });
    const envelope = await encrypt(key, utf8Encode('x'), { context: utf8Encode('row 1') });
    const otherSuite = suite === 'AES-256-GCM' ? 'XChaCha20-Poly1305' : 'AES-256-GCM';
    const row1 = { context: utf8Encode('row 1') };
    const attempts = [
      async () =>
        decrypt(await importAeadKey(generateAeadKey(), { suite, id: 'k1' }), envelope, row1),
      async () => decrypt(await importAeadKey(raw, { suite, id: 'k2' }), envelope, row1),
      async () =>
        decrypt(await importAeadKey(raw, { suite: otherSuite, id: 'k1' }), envelope, row1),
      () => decrypt(key, envelope, { context: utf8Encode('row 2') }),
      () => decrypt(key, envelope),
    ];
    for (const attempt of attempts) expect(await codeOf(attempt())).toBe('DECRYPTION_FAILED');
  });

  test('a frame is written in front of the envelope and is not part of it', async () => {
    const key = await importAeadKey(generateAeadKey(), { suite, id: 'k1' });
    const frame = Uint8Array.of(0xcf, 0x01);
    const context = utf8Encode('row 1');
    const framed = await encrypt(key, utf8Encode('framed'), { context, frame });
    expect(framed.subarray(0, 2)).toEqual(frame);
    expect(await decrypt(key, framed.subarray(2), { context })).toEqual(utf8Encode('framed'));
    expect(await codeOf(decrypt(key, framed, { context }))).toBe('UNSUPPORTED_VERSION');
  });

  test('nonces are fresh: equal inputs give different envelopes', async () => {
    const key = await importAeadKey(generateAeadKey(), { suite });
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) seen.add(toHex(await encrypt(key, utf8Encode('same'))));
    expect(seen.size).toBe(200);
  });
});

describe('synchronous envelopes', () => {
  const runtime = aeadIsSynchronous() ? 'available' : 'refused';

  test(`encryptSync/decryptSync are ${runtime} on this back end`, async () => {
    const key = await importAeadKey(generateAeadKey(), { id: 'k1' });
    const context = utf8Encode('users/7/email');
    if (!aeadIsSynchronous()) {
      expect(() => encryptSync(key, utf8Encode('x'))).toThrow(
        expect.objectContaining({ code: 'UNSUPPORTED_RUNTIME' }),
      );
      expect(() => decryptSync(key, new Uint8Array(40))).toThrow(
        expect.objectContaining({ code: 'UNSUPPORTED_RUNTIME' }),
      );
      return;
    }
    // Interchangeable with the async API: each opens what the other sealed.
    const plaintext = utf8Encode('same format, no promise');
    const sealed = encryptSync(key, plaintext, { context });
    expect(sealed).toBeInstanceOf(Uint8Array);
    expect(await decrypt(key, sealed, { context })).toEqual(plaintext);
    expect(decryptSync(key, await encrypt(key, plaintext, { context }), { context })).toEqual(
      plaintext,
    );
    // The same failures, thrown instead of rejected.
    const fail = (f: () => unknown) => {
      try {
        f();
      } catch (err) {
        return (err as { code: string }).code;
      }
      return 'no error';
    };
    expect(fail(() => decryptSync(key, sealed, { context: utf8Encode('users/8/email') }))).toBe(
      'DECRYPTION_FAILED',
    );
    expect(fail(() => decryptSync(key, flipBit(sealed, 8 * sealed.length - 1), { context }))).toBe(
      'DECRYPTION_FAILED',
    );
    expect(fail(() => decryptSync(key, sealed.subarray(0, 20), { context }))).toBe(
      'DECRYPTION_FAILED',
    );
    expect(fail(() => decryptSync(key, Uint8Array.of(2, 1, 0), { context }))).toBe(
      'UNSUPPORTED_VERSION',
    );
    expect(fail(() => encryptSync(key, 'text' as unknown as Uint8Array))).toBe('INVALID_ARGUMENT');
  });

  test('encryptSync into a reused array: the same envelopes, every one opening', async () => {
    if (!aeadIsSynchronous()) return;
    const key = await importAeadKey(generateAeadKey(), { id: 'k1' });
    const context = utf8Encode('users/7/notes');
    const into = new Uint8Array(256).fill(0xaa);
    const seen = new Set<string>();
    for (const length of [0, 1, 100, 200, 256, 1000]) {
      const plaintext = utf8Encode('n'.repeat(length));
      const sealed = encryptSync(key, plaintext, { context, into });
      // Large enough: a view of `into` (Node); too small, or another back end: its own array.
      const inPlace = sealed.buffer === into.buffer;
      if (inPlace) expect(sealed.byteOffset).toBe(0);
      if (sealed.length > into.length) expect(inPlace).toBe(false);
      else if (backend.name === 'node') expect(inPlace).toBe(true);
      expect(decryptSync(key, sealed, { context })).toEqual(plaintext);
      expect(await decrypt(key, sealed.slice(), { context })).toEqual(plaintext);
      seen.add(toHex(sealed));
    }
    expect(seen.size).toBe(6);
    expect(() =>
      encryptSync(key, utf8Encode('x'), { into: 'no' as unknown as Uint8Array }),
    ).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});

describe('envelope arguments', () => {
  test('caller mistakes are INVALID_ARGUMENT, naming the argument', async () => {
    const key = await importAeadKey(generateAeadKey());
    const bad = async (p: Promise<unknown>, name: string) => {
      await expect(p).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
        message: expect.stringContaining(`"${name}"`),
      });
    };
    await bad(importAeadKey(new Uint8Array(31)), 'bytes');
    await bad(importAeadKey(generateAeadKey(), { id: new Uint8Array(65) }), 'id');
    await bad(importAeadKey(generateAeadKey(), { suite: 'AES-128-GCM' as AeadSuite }), 'suite');
    await bad(encrypt({ suite: 'AES-256-GCM', id: new Uint8Array(0) }, new Uint8Array(1)), 'key');
    await bad(encrypt(key, 'text' as unknown as Uint8Array), 'plaintext');
    await bad(
      decrypt(key, new Uint8Array(40), { context: 'x' as unknown as Uint8Array }),
      'context',
    );
  });

  test('the key object does not expose the key bytes', async () => {
    const raw = generateAeadKey();
    const key = await importAeadKey(raw, { id: 'k' });
    expect(Object.keys(key).sort()).toEqual(['id', 'suite']);
    expect(JSON.stringify(key)).not.toContain(toHex(raw));
    raw.fill(0); // the key keeps its own copy
    const envelope = await encrypt(key, utf8Encode('still works'));
    expect(await decrypt(key, envelope)).toEqual(utf8Encode('still works'));
  });

  test('readEnvelopeHeader rejects non-envelopes', async () => {
    expect(
      await codeOf(Promise.resolve().then(() => readEnvelopeHeader(Uint8Array.of(2, 1, 0)))),
    ).toBe('UNSUPPORTED_VERSION');
    expect(
      await codeOf(Promise.resolve().then(() => readEnvelopeHeader(Uint8Array.of(1, 9, 0)))),
    ).toBe('DECRYPTION_FAILED');
    expect(
      await codeOf(Promise.resolve().then(() => readEnvelopeHeader(Uint8Array.of(1, 1, 0)))),
    ).toBe('DECRYPTION_FAILED');
  });
});
