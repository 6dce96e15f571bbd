import { ed25519 } from '@noble/curves/ed25519.js';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  fromHex,
  generateSigningKeyPair,
  importSigningKey,
  importVerifyingKey,
  sign,
  toHex,
  utf8Encode,
  verify,
} from '../src/index.js';
import { codeOf, flipBit } from './_helpers.js';

const L = 2n ** 252n + 27742317777372353535851937790883648493n;

function leBytes(n: bigint, length = 32): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++, n >>= 8n) out[i] = Number(n & 0xffn);
  return out;
}
function leNumber(b: Uint8Array): bigint {
  let n = 0n;
  for (let i = b.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(b[i]!);
  return n;
}

describe('ed25519', () => {
  test('RFC 8032 §7.1 test 1 (empty message)', async () => {
    const seed = fromHex('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60');
    const key = await importSigningKey(seed);
    expect(toHex(key.publicKey)).toBe(
      'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    );
    const sig = await sign(key, new Uint8Array(0));
    expect(toHex(sig)).toBe(
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
    );
    expect(await verify(key.publicKey, new Uint8Array(0), sig)).toBe(true);
  });

  test('round trip, and any bit flip in message, signature or key fails', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), fc.nat(), async (message, n) => {
        const { secretKey, publicKey } = await generateSigningKeyPair();
        const key = await importSigningKey(secretKey);
        const sig = await sign(key, message);
        const verifier = await importVerifyingKey(publicKey);
        expect(await verify(verifier, message, sig)).toBe(true);
        expect(await verify(publicKey, message, sig)).toBe(true);
        expect(await verify(publicKey, message, flipBit(sig, n % 512))).toBe(false);
        expect(await verify(flipBit(publicKey, n % 256), message, sig)).toBe(false);
        if (message.length > 0)
          expect(await verify(publicKey, flipBit(message, n % (message.length * 8)), sig)).toBe(
            false,
          );
      }),
      { numRuns: 30 },
    );
  });

  test('verifications started together (on Node: the thread pool) give the same verdicts', async () => {
    const pair = await generateSigningKeyPair();
    const key = await importSigningKey(pair.secretKey);
    const peer = await importVerifyingKey(pair.publicKey);
    const cases = await Promise.all(
      Array.from({ length: 64 }, async (_, i) => {
        const message = utf8Encode(`message ${i}`);
        const signature = await sign(key, message);
        // Every third: a bit flipped in the signature; every fifth: another message.
        if (i % 3 === 0) signature[i % 64]! ^= 1;
        const checked = i % 5 === 0 ? utf8Encode(`other ${i}`) : message;
        return { checked, signature, valid: i % 3 !== 0 && i % 5 !== 0 };
      }),
    );
    const together = await Promise.all(cases.map((c) => verify(peer, c.checked, c.signature)));
    expect(together).toEqual(cases.map((c) => c.valid));
    const alone: boolean[] = [];
    for (const c of cases) alone.push(await verify(peer, c.checked, c.signature));
    expect(alone).toEqual(together);
  });

  test('signatures agree with @noble/curves (deterministic RFC 8032)', async () => {
    const { secretKey, publicKey } = await generateSigningKeyPair();
    const message = utf8Encode('cross-implementation');
    expect(publicKey).toEqual(ed25519.getPublicKey(secretKey));
    expect(await sign(await importSigningKey(secretKey), message)).toEqual(
      ed25519.sign(message, secretKey),
    );
  });

  test('a malleated signature (S + L) is rejected', async () => {
    const { secretKey, publicKey } = await generateSigningKeyPair();
    const message = utf8Encode('pay 10');
    const sig = await sign(await importSigningKey(secretKey), message);
    const s = leNumber(sig.subarray(32));
    const malleated = sig.slice();
    malleated.set(leBytes(s + L), 32);
    expect(await verify(publicKey, message, malleated)).toBe(false);
  });

  test('small-order and non-canonical public keys are refused at import and never verify', async () => {
    const identity = leBytes(1n);
    const p = 2n ** 255n - 19n;
    const nonCanonicalIdentity = leBytes(p + 1n); // y = 1 encoded as p + 1
    for (const bad of [
      identity,
      nonCanonicalIdentity,
      new Uint8Array(32),
      new Uint8Array(31),
      new Uint8Array(33),
    ]) {
      expect(await codeOf(importVerifyingKey(bad))).toBe('INVALID_KEY');
      expect(await verify(bad, new Uint8Array(0), new Uint8Array(64))).toBe(false);
    }
  });

  test('verify never throws for malformed input', async () => {
    const { publicKey } = await generateSigningKeyPair();
    for (const sig of [
      new Uint8Array(0),
      new Uint8Array(63),
      new Uint8Array(65),
      new Uint8Array(64).fill(0xff),
    ]) {
      expect(await verify(publicKey, new Uint8Array(1), sig)).toBe(false);
    }
  });

  test('caller mistakes are INVALID_ARGUMENT', async () => {
    expect(await codeOf(importSigningKey(new Uint8Array(64)))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(sign({ publicKey: new Uint8Array(32) }, new Uint8Array(0)))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(
      await codeOf(
        verify({ publicKey: new Uint8Array(32) }, new Uint8Array(0), new Uint8Array(64)),
      ),
    ).toBe('INVALID_ARGUMENT');
    expect(
      await codeOf(verify(new Uint8Array(32), 'm' as unknown as Uint8Array, new Uint8Array(64))),
    ).toBe('INVALID_ARGUMENT');
  });

  test('a key of the other kind is INVALID_ARGUMENT on every back end', async () => {
    // The two key types have one shape. Before, the noble back end signed with a verifying key
    // (its public key taken as the seed: a signature anyone could forge) and Node's verify
    // accepted a signing key.
    const { secretKey, publicKey } = await generateSigningKeyPair();
    const signing = await importSigningKey(secretKey);
    const verifying = await importVerifyingKey(publicKey);
    const message = utf8Encode('kinds');
    expect(await codeOf(sign(verifying, message))).toBe('INVALID_ARGUMENT');
    const signature = await sign(signing, message);
    expect(await codeOf(verify(signing, message, signature))).toBe('INVALID_ARGUMENT');
    expect(await verify(verifying, message, signature)).toBe(true);
  });
});
