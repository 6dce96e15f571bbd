import { x25519 as nobleX25519 } from '@noble/curves/ed25519.js';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  fromHex,
  generateKeyAgreementKeyPair,
  importKeyAgreementKey,
  x25519,
} from '../src/index.js';
import { codeOf } from './_helpers.js';

describe('x25519', () => {
  test('RFC 7748 §6.1 Diffie-Hellman example', async () => {
    const alice = await importKeyAgreementKey(
      fromHex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'),
    );
    const bob = await importKeyAgreementKey(
      fromHex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb'),
    );
    expect(alice.publicKey).toEqual(
      fromHex('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a'),
    );
    expect(bob.publicKey).toEqual(
      fromHex('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f'),
    );
    const shared = fromHex('4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742');
    expect(await x25519(alice, bob.publicKey)).toEqual(shared);
    expect(await x25519(bob, alice.publicKey)).toEqual(shared);
  });

  test('agreement commutes and matches @noble/curves', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constant(null), async () => {
        const a = await generateKeyAgreementKeyPair();
        const b = await generateKeyAgreementKeyPair();
        const ab = await x25519(await importKeyAgreementKey(a.secretKey), b.publicKey);
        expect(await x25519(await importKeyAgreementKey(b.secretKey), a.publicKey)).toEqual(ab);
        expect(ab).toEqual(nobleX25519.getSharedSecret(a.secretKey, b.publicKey));
      }),
      { numRuns: 20 },
    );
  });

  test('low-order and malformed peer keys are INVALID_KEY', async () => {
    const key = await importKeyAgreementKey((await generateKeyAgreementKeyPair()).secretKey);
    const lowOrder = [
      new Uint8Array(32), // 0
      fromHex('0100000000000000000000000000000000000000000000000000000000000000'), // 1
      fromHex('e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800'), // order 8
      fromHex('ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f'), // p - 1
    ];
    for (const peer of [...lowOrder, new Uint8Array(31), new Uint8Array(33)]) {
      expect(await codeOf(x25519(key, peer))).toBe('INVALID_KEY');
    }
    expect(await codeOf(importKeyAgreementKey(new Uint8Array(16)))).toBe('INVALID_ARGUMENT');
  });
});
