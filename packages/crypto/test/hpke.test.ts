import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  createHpkeRecipient,
  createHpkeSender,
  fromHex,
  generateKeyAgreementKeyPair,
  type HpkeSuite,
  hpkeOpen,
  hpkeSeal,
  utf8Encode,
} from '../src/index.js';
import { codeOf, flipBit } from './_helpers.js';

const SUITES: HpkeSuite[] = [
  'X25519-HKDF-SHA256-AES-128-GCM',
  'X25519-HKDF-SHA256-AES-256-GCM',
  'X25519-HKDF-SHA256-CHACHA20-POLY1305',
];

describe.each(SUITES)('hpke %s', (suite) => {
  test('single-shot round trip for any message, info and aad', async () => {
    const bob = await generateKeyAgreementKeyPair();
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 200 }),
        fc.uint8Array({ maxLength: 40 }),
        fc.uint8Array({ maxLength: 40 }),
        async (pt, info, aad) => {
          const { enc, ciphertext } = await hpkeSeal(bob.publicKey, pt, { suite, info, aad });
          expect(enc.length).toBe(32);
          expect(ciphertext.length).toBe(pt.length + 16);
          expect(await hpkeOpen(bob.secretKey, enc, ciphertext, { suite, info, aad })).toEqual(pt);
        },
      ),
      { numRuns: 15 },
    );
  });

  test('contexts: messages in order, exports agree', async () => {
    const bob = await generateKeyAgreementKeyPair();
    const info = utf8Encode('coffer/v1/test');
    const sender = await createHpkeSender(bob.publicKey, { suite, info });
    const recipient = await createHpkeRecipient(bob.secretKey, sender.enc, { suite, info });
    for (let i = 0; i < 5; i++) {
      const ct = await sender.seal(utf8Encode(`message ${i}`));
      expect(await recipient.open(ct)).toEqual(utf8Encode(`message ${i}`));
    }
    const ctx = utf8Encode('exporter');
    expect(await sender.export(ctx, 32)).toEqual(await recipient.export(ctx, 32));
    // Out of order: the recipient's sequence number no longer matches.
    const late = await sender.seal(utf8Encode('a'));
    await sender.seal(utf8Encode('b'));
    expect(await codeOf(recipient.open(await sender.seal(utf8Encode('c'))))).toBe(
      'DECRYPTION_FAILED',
    );
    expect(await codeOf(recipient.open(late))).toBe('ok');
  });

  test('wrong key, info, aad or tampering is DECRYPTION_FAILED', async () => {
    const bob = await generateKeyAgreementKeyPair();
    const eve = await generateKeyAgreementKeyPair();
    const opts = { suite, info: utf8Encode('i'), aad: utf8Encode('a') };
    const { enc, ciphertext } = await hpkeSeal(bob.publicKey, utf8Encode('secret'), opts);
    const attempts = [
      () => hpkeOpen(eve.secretKey, enc, ciphertext, opts),
      () => hpkeOpen(bob.secretKey, enc, ciphertext, { ...opts, info: utf8Encode('j') }),
      () => hpkeOpen(bob.secretKey, enc, ciphertext, { ...opts, aad: utf8Encode('b') }),
      () => hpkeOpen(bob.secretKey, flipBit(enc, 3), ciphertext, opts),
      () => hpkeOpen(bob.secretKey, enc, flipBit(ciphertext, 9), opts),
      () => hpkeOpen(bob.secretKey, enc.subarray(1), ciphertext, opts),
      () => hpkeOpen(bob.secretKey, enc, ciphertext.subarray(0, 10), opts),
      () => hpkeOpen(bob.secretKey, new Uint8Array(32), ciphertext, opts),
    ];
    for (const attempt of attempts) expect(await codeOf(attempt())).toBe('DECRYPTION_FAILED');
  });
});

describe('hpke arguments', () => {
  test('a low-order or malformed recipient key is INVALID_KEY', async () => {
    for (const pk of [
      new Uint8Array(32),
      fromHex('0100000000000000000000000000000000000000000000000000000000000000'),
      new Uint8Array(31),
    ]) {
      expect(await codeOf(hpkeSeal(pk, new Uint8Array(1)))).toBe('INVALID_KEY');
    }
  });
  test('unknown suites and bad secret keys are INVALID_ARGUMENT', async () => {
    const bob = await generateKeyAgreementKeyPair();
    expect(
      await codeOf(hpkeSeal(bob.publicKey, new Uint8Array(1), { suite: 'P256' as HpkeSuite })),
    ).toBe('INVALID_ARGUMENT');
    expect(await codeOf(hpkeOpen(new Uint8Array(31), new Uint8Array(32), new Uint8Array(17)))).toBe(
      'INVALID_ARGUMENT',
    );
  });
});
