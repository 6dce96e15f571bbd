// RFC 9180 HPKE known answers (../shared/vectors/hpke/rfc9180_test-vectors_5f503c5.json, the
// RFC's own file) for the suites Coffer ships: base mode, DHKEM(X25519, HKDF-SHA256),
// HKDF-SHA256, with AES-128-GCM, AES-256-GCM or ChaCha20-Poly1305 (HPKE_SUITE_IDS in
// src/hpke.ts). Every other entry is skipped, listed once with its reason.

import { describe, expect, test } from 'vitest';
import { backend } from '#backend';
import { toHex } from '../src/encoding.js';
import { CryptoError } from '../src/errors.js';
import {
  createHpkeRecipient,
  createHpkeSenderWith,
  HPKE_SUITE_IDS,
  type HpkeSuite,
} from '../src/hpke.js';
import { hex, loadVectors, vectorsAvailable } from './_vectors.js';

interface HpkeVector {
  mode: number;
  kem_id: number;
  kdf_id: number;
  aead_id: number;
  info: string;
  ikmE: string;
  skRm: string;
  pkRm: string;
  enc: string;
  encryptions: { aad: string; ct: string; nonce: string; pt: string }[];
  exports: { exporter_context: string; L: number; exported_value: string }[];
}

const FILE = 'hpke/rfc9180_test-vectors_5f503c5.json';
const BASE_MODE = 0;

// RFC 9180 §5 and §7 names, for the list of skipped entries.
const MODES: Record<number, string> = { 0: 'base', 1: 'psk', 2: 'auth', 3: 'auth_psk' };
const KEMS: Record<number, string> = {
  16: 'DHKEM(P-256, HKDF-SHA256)',
  17: 'DHKEM(P-384, HKDF-SHA384)',
  18: 'DHKEM(P-521, HKDF-SHA512)',
  32: 'DHKEM(X25519, HKDF-SHA256)',
  33: 'DHKEM(X448, HKDF-SHA512)',
};
const KDFS: Record<number, string> = { 1: 'HKDF-SHA256', 2: 'HKDF-SHA384', 3: 'HKDF-SHA512' };
const AEADS: Record<number, string> = {
  1: 'AES-128-GCM',
  2: 'AES-256-GCM',
  3: 'ChaCha20Poly1305',
  65535: 'export-only',
};

/** The shipped suite an entry is for, or why it is skipped. */
function classify(v: HpkeVector): { suite: HpkeSuite } | { reason: string } {
  if (v.mode !== BASE_MODE) {
    return { reason: `mode ${v.mode} (${MODES[v.mode] ?? '?'}): not a mode Coffer ships` };
  }
  const suite = (Object.keys(HPKE_SUITE_IDS) as HpkeSuite[]).find((name) => {
    const ids = HPKE_SUITE_IDS[name];
    return ids.kem === v.kem_id && ids.kdf === v.kdf_id && ids.aead === v.aead_id;
  });
  if (suite) return { suite };
  const ship = Object.values(HPKE_SUITE_IDS);
  let part = `AEAD ${AEADS[v.aead_id] ?? hex4(v.aead_id)}`;
  if (!ship.some((ids) => ids.kem === v.kem_id)) part = `KEM ${KEMS[v.kem_id] ?? hex4(v.kem_id)}`;
  else if (!ship.some((ids) => ids.kdf === v.kdf_id))
    part = `KDF ${KDFS[v.kdf_id] ?? hex4(v.kdf_id)}`;
  return { reason: `base mode, ${part}: not a suite Coffer ships` };
}

const hex4 = (n: number): string => `0x${n.toString(16).padStart(4, '0')}`;

function flipBit(bytes: Uint8Array, bit: number): Uint8Array {
  const copy = bytes.slice();
  copy[bit >> 3] = copy[bit >> 3]! ^ (1 << (bit & 7));
  return copy;
}

/** undefined when `fn` rejects with CryptoError DECRYPTION_FAILED, else what happened. */
async function decryptionFails(fn: () => Promise<unknown>): Promise<string | undefined> {
  try {
    await fn();
    return 'opened';
  } catch (err) {
    if (CryptoError.is(err, 'DECRYPTION_FAILED')) return undefined;
    return CryptoError.is(err) ? `CryptoError ${err.code}` : String(err);
  }
}

describe.skipIf(!vectorsAvailable)(`RFC 9180 HPKE vectors (${backend.name} back end)`, () => {
  const load = (): HpkeVector[] => loadVectors<HpkeVector[]>(FILE);
  const shipped = (): { v: HpkeVector; suite: HpkeSuite }[] =>
    load().flatMap((v) => {
      const c = classify(v);
      return 'suite' in c ? [{ v, suite: c.suite }] : [];
    });

  test('entries of the suites Coffer ships: enc, every seal, open and export', async () => {
    const vectors = load();
    const failures: string[] = [];
    // Skipped entries by reason, each listed as (mode, kem, kdf, aead).
    const skipped = new Map<string, string[]>();
    const ran: string[] = [];
    let sealed = 0;
    let exported = 0;
    for (const v of vectors) {
      const c = classify(v);
      if ('reason' in c) {
        const ids = `(${v.mode}, ${hex4(v.kem_id)}, ${hex4(v.kdf_id)}, ${hex4(v.aead_id)})`;
        skipped.set(c.reason, [...(skipped.get(c.reason) ?? []), ids]);
        continue;
      }
      const { suite } = c;
      ran.push(suite);
      const info = hex(v.info);
      const where = (what: string) => `${suite}: ${what}`;
      const sender = await createHpkeSenderWith(hex(v.pkRm), { suite, info }, hex(v.ikmE));
      if (toHex(sender.enc) !== v.enc.toLowerCase()) failures.push(where('enc differs'));
      // Seal in sequence: the i-th seal uses sequence number i (the vector's nonces).
      for (const [i, e] of v.encryptions.entries()) {
        sealed++;
        const ct = toHex(await sender.seal(hex(e.pt), hex(e.aad)));
        if (ct !== e.ct.toLowerCase()) failures.push(where(`seal #${i} differs`));
      }
      const recipient = await createHpkeRecipient(hex(v.skRm), hex(v.enc), { suite, info });
      for (const [i, e] of v.encryptions.entries()) {
        try {
          const pt = toHex(await recipient.open(hex(e.ct), hex(e.aad)));
          if (pt !== e.pt.toLowerCase()) failures.push(where(`open #${i}: plaintext differs`));
        } catch (err) {
          // The sequence number did not advance: later ciphertexts cannot open either.
          failures.push(where(`open #${i} threw ${String(err)} (later opens not attempted)`));
          break;
        }
      }
      for (const [i, x] of v.exports.entries()) {
        exported++;
        const context = hex(x.exporter_context);
        if (toHex(await sender.export(context, x.L)) !== x.exported_value.toLowerCase())
          failures.push(where(`sender export #${i} differs`));
        if (toHex(await recipient.export(context, x.L)) !== x.exported_value.toLowerCase())
          failures.push(where(`recipient export #${i} differs`));
      }
    }
    const skippedCount = [...skipped.values()].reduce((n, list) => n + list.length, 0);
    const lines = [...skipped].map(
      ([reason, list]) => `  ${reason}: ${list.length} entries: ${list.join(' ')}`,
    );
    console.info(
      `RFC 9180 vectors on ${backend.name}: ran ${ran.length} (${ran.join(', ')}), ` +
        `${sealed} seals/opens, ${exported} exports; skipped ${skippedCount} ` +
        '(mode, kem, kdf, aead):\n' +
        lines.join('\n'),
    );
    expect(failures).toEqual([]);
    expect(ran.sort()).toEqual(Object.keys(HPKE_SUITE_IDS).sort());
    expect(ran).toHaveLength(3);
    expect(sealed).toBeGreaterThan(0);
    expect(exported).toBeGreaterThan(0);
    expect(ran.length + skippedCount).toBe(vectors.length);
  });

  test('a flipped bit in enc, ct, aad or info makes open throw DECRYPTION_FAILED', async () => {
    const failures: string[] = [];
    let checks = 0;
    const entries = shipped();
    expect(entries).toHaveLength(3);
    for (const { v, suite } of entries) {
      const skRm = hex(v.skRm);
      const enc = hex(v.enc);
      const info = hex(v.info);
      const [first, second] = v.encryptions;
      if (!first || !second) throw new Error('vector entry with fewer than two encryptions');
      const ct = hex(first.ct);
      const aad = hex(first.aad);
      const pt = first.pt.toLowerCase();
      const expectFailure = async (what: string, fn: () => Promise<unknown>) => {
        checks++;
        const problem = await decryptionFails(fn);
        if (problem) failures.push(`${suite}: ${what}: ${problem}`);
      };
      const openFirst = async (e: Uint8Array, i: Uint8Array, c: Uint8Array, a: Uint8Array) =>
        (await createHpkeRecipient(skRm, e, { suite, info: i })).open(c, a);

      // Every bit of enc, including bit 255, which X25519 itself ignores (RFC 7748 §5) but
      // which changes the KEM context and so the key schedule.
      for (let bit = 0; bit < enc.length * 8; bit++)
        await expectFailure(`enc bit ${bit}`, () => openFirst(flipBit(enc, bit), info, ct, aad));
      // Bits of the ciphertext body and of the tag (its last 16 bytes).
      for (const bit of [0, 7, 8 * (ct.length - 17) + 3, 8 * (ct.length - 16), ct.length * 8 - 1])
        await expectFailure(`ct bit ${bit}`, () => openFirst(enc, info, flipBit(ct, bit), aad));
      for (let bit = 0; bit < aad.length * 8; bit += 5)
        await expectFailure(`aad bit ${bit}`, () => openFirst(enc, info, ct, flipBit(aad, bit)));
      for (let bit = 0; bit < info.length * 8; bit += 7)
        await expectFailure(`info bit ${bit}`, () => openFirst(enc, flipBit(info, bit), ct, aad));
      // Out of order: the second ciphertext under sequence number 0.
      await expectFailure('second ct opened first', () =>
        openFirst(enc, info, hex(second.ct), hex(second.aad)),
      );
      // A failed open does not advance the sequence: the genuine first ciphertext still opens.
      const recipient = await createHpkeRecipient(skRm, enc, { suite, info });
      await expectFailure('tampered ct before the genuine one', () =>
        recipient.open(flipBit(ct, 0), aad),
      );
      if (toHex(await recipient.open(ct, aad)) !== pt)
        failures.push(`${suite}: genuine ct after a failed open: plaintext differs`);
    }
    expect(failures).toEqual([]);
    expect(checks).toBeGreaterThan(3 * 256);
  });
});
