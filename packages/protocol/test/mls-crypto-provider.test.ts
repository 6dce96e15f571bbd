// Coffer's ts-mls crypto provider beyond the MLS vectors (mls-vectors.test.ts): DeriveKeyPair
// against RFC 9180's own vectors, HPKE seal/open and secret export round trips, the fallback
// for other suites, and that the engine really runs on it.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fromHex, hkdfExpand, toHex, utf8Encode } from '@coffer/crypto';
import { type CiphersuiteImpl, type CryptoProvider, ciphersuites } from 'ts-mls';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  createCofferCryptoProvider,
  createTsMlsEngine,
  MLS_DEFAULT_CIPHERSUITE,
} from '../src/index.js';
import { mlsVectorsAvailable, VECTORS_DIR } from './_mls-vectors.js';

let cs: CiphersuiteImpl;
beforeAll(async () => {
  cs = await createCofferCryptoProvider().getCiphersuiteImpl(MLS_DEFAULT_CIPHERSUITE);
});

describe('coffer mls crypto provider', () => {
  test.skipIf(!mlsVectorsAvailable)(
    'deriveKeyPair matches RFC 9180 DeriveKeyPair for DHKEM(X25519, HKDF-SHA256)',
    async () => {
      interface Hpke {
        mode: number;
        kem_id: number;
        ikmR: string;
        ikmE: string;
        skRm: string;
        pkRm: string;
        pkEm: string;
        skEm: string;
      }
      const all = JSON.parse(
        readFileSync(resolve(VECTORS_DIR, 'hpke/rfc9180_test-vectors_5f503c5.json'), 'utf8'),
      ) as Hpke[];
      const x25519 = all.filter((v) => v.kem_id === 0x20);
      expect(x25519.length).toBeGreaterThan(0);
      for (const v of x25519) {
        for (const [ikm, sk, pk] of [
          [v.ikmR, v.skRm, v.pkRm],
          [v.ikmE, v.skEm, v.pkEm],
        ] as const) {
          const pair = await cs.hpke.deriveKeyPair(fromHex(ikm));
          expect(toHex(await cs.hpke.exportPrivateKey(pair.privateKey))).toBe(sk);
          expect(toHex(await cs.hpke.exportPublicKey(pair.publicKey))).toBe(pk);
        }
      }
    },
  );

  test('HPKE seal/open and secret export round-trip; a wrong key or aad is refused', async () => {
    const a = await cs.hpke.generateKeyPair();
    const b = await cs.hpke.generateKeyPair();
    const info = utf8Encode('info');
    const sealed = await cs.hpke.seal(a.publicKey, utf8Encode('hi'), info, utf8Encode('aad'));
    expect(
      await cs.hpke.open(a.privateKey, sealed.enc, sealed.ct, info, utf8Encode('aad')),
    ).toEqual(utf8Encode('hi'));
    await expect(
      cs.hpke.open(b.privateKey, sealed.enc, sealed.ct, info, utf8Encode('aad')),
    ).rejects.toThrow();
    await expect(cs.hpke.open(a.privateKey, sealed.enc, sealed.ct, info)).rejects.toThrow();
    const exported = await cs.hpke.exportSecret(a.publicKey, utf8Encode('ctx'), 32, info);
    expect(
      await cs.hpke.importSecret(a.privateKey, utf8Encode('ctx'), exported.enc, 32, info),
    ).toEqual(exported.secret);
    // Keys survive an export/import round trip.
    const again = await cs.hpke.importPrivateKey(await cs.hpke.exportPrivateKey(a.privateKey));
    expect(await cs.hpke.open(again, sealed.enc, sealed.ct, info, utf8Encode('aad'))).toEqual(
      utf8Encode('hi'),
    );
    await expect(cs.hpke.importPublicKey(new Uint8Array(31))).rejects.toThrow();
  });

  test('rng: 4-byte reuse guards and 32-byte secrets, every one different', () => {
    // 500 four-byte values: a chance collision is about 1 in 34,000 runs.
    const seen = new Set<string>();
    for (let i = 0; i < 500; i++) {
      for (const length of [4, 32]) {
        const bytes = cs.rng.randomBytes(length);
        expect(bytes).toHaveLength(length);
        seen.add(toHex(bytes));
      }
    }
    expect(seen.size).toBe(1000);
  });

  test('signatures: keygen, sign, verify; a bad key or signature verifies false', async () => {
    const { signKey, publicKey } = await cs.signature.keygen();
    expect(signKey.length).toBe(32);
    const sig = await cs.signature.sign(signKey, utf8Encode('m'));
    expect(await cs.signature.verify(publicKey, utf8Encode('m'), sig)).toBe(true);
    expect(await cs.signature.verify(publicKey, utf8Encode('n'), sig)).toBe(false);
    expect(await cs.signature.verify(new Uint8Array(32), utf8Encode('m'), sig)).toBe(false);
    expect(await cs.signature.verify(publicKey, utf8Encode('m'), sig.subarray(1))).toBe(false);
  });

  test('kdf.expand: its one-block path is HKDF-Expand (RFC 5869 A.1) and matches hkdfExpand', async () => {
    // RFC 5869 Appendix A.1 (test case 1): PRK, info and the first 32 bytes of OKM.
    const prk = fromHex('077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5');
    const info = fromHex('f0f1f2f3f4f5f6f7f8f9');
    const okm =
      '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865';
    expect(toHex(await cs.kdf.expand(prk, info, 32))).toBe(okm.slice(0, 64));
    expect(toHex(await cs.kdf.expand(prk, info, 42))).toBe(okm);
    for (const length of [1, 12, 16, 31, 32, 33, 64]) {
      for (const i of [new Uint8Array(0), info]) {
        expect(toHex(await cs.kdf.expand(prk, i, length))).toBe(
          toHex(await hkdfExpand('SHA-256', prk, i, length)),
        );
      }
    }
    // Bad input is refused as hkdfExpand refuses it.
    await expect(cs.kdf.expand(prk.subarray(0, 31), info, 16)).rejects.toThrow();
    await expect(cs.kdf.expand(prk, info, 0)).rejects.toThrow();
  });

  test('other suites come from the fallback provider', async () => {
    const asked: number[] = [];
    const fallback: CryptoProvider = {
      async getCiphersuiteImpl(id) {
        asked.push(id);
        return { ...cs, id };
      },
    };
    const provider = createCofferCryptoProvider({ fallback });
    expect((await provider.getCiphersuiteImpl(1)).id).toBe(1);
    const suite3 = ciphersuites.MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519;
    expect((await provider.getCiphersuiteImpl(suite3)).id).toBe(suite3);
    expect(asked).toEqual([suite3]);
    // Without a fallback, ts-mls's default answers.
    const dflt = await createCofferCryptoProvider().getCiphersuiteImpl(2);
    expect(dflt.id).toBe(2);
  });

  test('the engine runs on the provider it is given', async () => {
    const calls = { aead: 0, sign: 0 };
    const counting: CryptoProvider = {
      async getCiphersuiteImpl(id) {
        const inner = await createCofferCryptoProvider().getCiphersuiteImpl(id);
        return {
          ...inner,
          hpke: {
            ...inner.hpke,
            encryptAead: (...args) => {
              calls.aead++;
              return inner.hpke.encryptAead(...args);
            },
          },
          signature: {
            ...inner.signature,
            sign: (...args) => {
              calls.sign++;
              return inner.signature.sign(...args);
            },
          },
        };
      },
    };
    const engine = await createTsMlsEngine({
      crypto: counting,
      validateCredential: async () => true,
    });
    const kp = await engine.createKeyPackage({ identity: utf8Encode('a') });
    const group = await engine.createGroup(utf8Encode('g'), kp);
    const before = { ...calls };
    await engine.encrypt(group, utf8Encode('x'));
    // One message: content and sender data sealed, content signed.
    expect(calls.aead - before.aead).toBe(2);
    expect(calls.sign - before.sign).toBe(1);
  });
});
