// The node back end's two Ed25519 implementations, libsodium (sodium-native) and node:crypto
// (OpenSSL), against each other: the same keys and signatures from the same seeds, the same
// verdicts on every CCTV edge case that passes Coffer's policy, inline and on the thread pool.
// Runs in crypto:node and crypto:node-openssl (vitest.config.ts), which also run the whole suite
// on the implementation each names.

import nodeCrypto from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { sodium } from '../../src/backend/_sodium.js';
import {
  type Ed25519,
  ed25519Implementation,
  opensslEd25519,
  sodiumEd25519,
} from '../../src/backend/node.js';
import type { KeyHandle } from '../../src/backend/types.js';
import { utf8Encode } from '../../src/encoding.js';
import { pointIsAcceptable, scalarIsCanonical } from '../../src/signature.js';
import { hex, loadVectors, vectorsAvailable } from '../_vectors.js';

const wanted = import.meta.env.COFFER_ED25519;
// sodium-native ships binaries for Linux, macOS, Windows and Android on x64 and arm64; elsewhere
// the back end uses node:crypto, which crypto:node-openssl tests. Under CI it must be there.
const sodiumMissing = sodium === undefined && process.env.CI !== 'true';
if (sodiumMissing) {
  console.warn(
    'NOTICE: sodium-native has no working binary here; libsodium Ed25519 tests skipped ' +
      '(the node back end signs with node:crypto)',
  );
}

test.skipIf(sodiumMissing && wanted === 'libsodium')(
  'Ed25519 runs on the implementation this project names',
  () => {
    expect(['libsodium', 'node:crypto']).toContain(wanted);
    expect(ed25519Implementation).toBe(wanted);
  },
);

describe.skipIf(sodiumMissing)('libsodium and node:crypto agree', () => {
  const libsodium = (): Ed25519 => sodiumEd25519(sodium!);
  const sign = async (impl: Ed25519, seed: Uint8Array, message: Uint8Array) => {
    const key = await impl.ed25519PrivateKey(seed);
    return { publicKey: key.publicKey, signature: await impl.ed25519Sign(key.handle, message) };
  };
  const verifyBoth = async (impl: Ed25519, pk: Uint8Array, msg: Uint8Array, sig: Uint8Array) => {
    const handle = (await impl.ed25519PublicKey(pk)) as KeyHandle;
    const pool = impl.ed25519VerifyInPool;
    if (!pool) throw new Error('no pool verification');
    return [await impl.ed25519Verify(handle, msg, sig), await pool(handle, msg, sig)];
  };

  test('same public keys and signatures from the same seeds; each verifies the other', async () => {
    const lengths = [0, 1, 31, 32, 64, 1024, 4099];
    for (let i = 0; i < 60; i++) {
      const seed = new Uint8Array(nodeCrypto.randomBytes(32));
      const message = new Uint8Array(nodeCrypto.randomBytes(lengths[i % lengths.length]!));
      const ours = await sign(libsodium(), seed, message);
      const theirs = await sign(opensslEd25519, seed, message);
      expect(ours.publicKey).toEqual(theirs.publicKey);
      expect(ours.signature).toEqual(theirs.signature);
      for (const impl of [libsodium(), opensslEd25519]) {
        expect(await verifyBoth(impl, ours.publicKey, message, ours.signature)).toEqual([
          true,
          true,
        ]);
        const forged = ours.signature.slice();
        forged[i % 64]! ^= 1 << (i % 8);
        const verdicts = await verifyBoth(impl, ours.publicKey, message, forged);
        // A flipped bit in R or S can leave S >= L or a rejected R, which src/signature.ts
        // refuses before any back end; whatever gets through must fail.
        expect(verdicts).toEqual([false, false]);
        if (message.length > 0) {
          const altered = message.slice();
          altered[0]! ^= 1;
          expect(await verifyBoth(impl, ours.publicKey, altered, ours.signature)).toEqual([
            false,
            false,
          ]);
        }
      }
    }
  });

  test('RFC 8032 §7.1 TEST 3 (a two-byte message)', async () => {
    const seed = hex('c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7');
    const { publicKey, signature } = await sign(libsodium(), seed, hex('af82'));
    expect(publicKey).toEqual(
      hex('fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025'),
    );
    expect(signature).toEqual(
      hex(
        '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac' +
          '18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a',
      ),
    );
  });

  describe.skipIf(!vectorsAvailable)('CCTV edge cases', () => {
    test('every case Coffer policy lets through gets one verdict from all three paths', async () => {
      const cases = loadVectors<{ number: number; key: string; sig: string; msg: string }[]>(
        'cctv/ed25519vectors.json',
      );
      const differing: string[] = [];
      let checked = 0;
      let accepted = 0;
      for (const c of cases) {
        const pk = hex(c.key);
        const sig = hex(c.sig);
        const msg = utf8Encode(c.msg);
        const passes =
          pointIsAcceptable(pk) &&
          pointIsAcceptable(sig.subarray(0, 32)) &&
          scalarIsCanonical(sig.subarray(32));
        if (!passes) continue;
        checked++;
        const [inline, pool] = await verifyBoth(libsodium(), pk, msg, sig);
        const [openssl] = await verifyBoth(opensslEd25519, pk, msg, sig);
        if (inline) accepted++;
        if (inline !== pool || inline !== openssl)
          differing.push(`#${c.number}: libsodium ${inline}, pool ${pool}, openssl ${openssl}`);
      }
      expect(differing).toEqual([]);
      expect(checked).toBeGreaterThan(40);
      expect(accepted).toBe(43);
    });
  });
});
