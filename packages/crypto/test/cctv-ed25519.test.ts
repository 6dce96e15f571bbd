// Coffer's Ed25519 verification policy against the 914 edge cases of C2SP/CCTV ed25519
// (../shared/vectors/cctv/ed25519vectors.json: non-canonical encodings, small-order points,
// cofactor). The file has no single right answer; Coffer's policy (top of src/signature.ts) is
// libsodium's, so every verdict must equal libsodium's, which nobody here wrote. The vitest
// projects run this file once per back end.

import { ED25519_TORSION_SUBGROUP, ed25519 } from '@noble/curves/ed25519.js';
import sodium from 'libsodium-wrappers';
import { beforeAll, describe, expect, test } from 'vitest';
import { backend } from '#backend';
import { toHex, utf8Encode } from '../src/encoding.js';
import { generateSigningKeyPair, pointIsAcceptable, verify } from '../src/signature.js';
import { hex, loadVectors, vectorsAvailable } from './_vectors.js';

interface CctvCase {
  number: number;
  /** Public key A, hex. */
  key: string;
  /** Signature R || S, hex. */
  sig: string;
  /** The message as a UTF-8 string. */
  msg: string;
  /** null for the one case without any flag. */
  flags: string[] | null;
}

/** The number of the 914 cases libsodium 1.0.22 (libsodium-wrappers 0.8.4) accepts. */
const EXPECTED_ACCEPTED = 43;

/** Flags that by themselves mean Coffer rejects (small-order or non-canonical A or R). */
const REJECTING_FLAGS = ['low_order_A', 'low_order_R', 'non_canonical_A', 'non_canonical_R'];

// L = 2^252 + 27742317777372353535851937790883648493, the order of the base point.
const L = 2n ** 252n + 27742317777372353535851937790883648493n;

function leToBigint(bytes: Uint8Array): bigint {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]!);
  return n;
}

function bigintToLe(n: bigint, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = Number((n >> BigInt(8 * i)) & 0xffn);
  return out;
}

function libsodiumVerify(sig: Uint8Array, msg: Uint8Array, pk: Uint8Array): boolean {
  try {
    return sodium.crypto_sign_verify_detached(sig, msg, pk);
  } catch {
    return false;
  }
}

describe.skipIf(!vectorsAvailable)(`CCTV Ed25519 (${backend.name} back end)`, () => {
  beforeAll(async () => {
    await sodium.ready;
  });

  test('every verdict equals libsodium, and the policy rules hold', async () => {
    const cases = loadVectors<CctvCase[]>('cctv/ed25519vectors.json');
    const mismatches: string[] = [];
    const ruleBreaks: string[] = [];
    const accepted: number[] = [];
    let sodiumAccepted = 0;
    let ruleRejected = 0;
    let highS = 0;
    for (const c of cases) {
      const pk = hex(c.key);
      const sig = hex(c.sig);
      const msg = utf8Encode(c.msg);
      const flags = c.flags ?? [];
      const ours = await verify(pk, msg, sig);
      const theirs = libsodiumVerify(sig, msg, pk);
      if (ours) accepted.push(c.number);
      if (theirs) sodiumAccepted++;
      if (ours !== theirs) {
        const side = ours
          ? 'Coffer accepts, libsodium rejects'
          : 'libsodium accepts, Coffer rejects';
        mismatches.push(`#${c.number} [${flags.join(',')}]: ${side}`);
      }
      // Rules that follow from the policy alone, whatever libsodium says. The file has no flag for
      // S >= L (none of its signatures has one), so S is checked from the bytes.
      const sOutOfRange = leToBigint(sig.subarray(32)) >= L;
      if (sOutOfRange) highS++;
      if (sOutOfRange || flags.some((f) => REJECTING_FLAGS.includes(f))) {
        ruleRejected++;
        if (ours) ruleBreaks.push(`#${c.number} [${flags.join(',')}] accepted`);
      }
    }
    console.info(
      `CCTV Ed25519 on ${backend.name}: ${cases.length} cases, Coffer accepts ${accepted.length}, ` +
        `libsodium accepts ${sodiumAccepted}, ${mismatches.length} differ; ` +
        `${ruleRejected} must be rejected by flags (${highS} with S >= L)`,
    );
    expect(cases.length).toBe(914);
    expect(mismatches).toEqual([]);
    expect(ruleBreaks).toEqual([]);
    expect(ruleRejected).toBeGreaterThan(0);
    expect(sodiumAccepted).toBe(EXPECTED_ACCEPTED);
    expect(accepted.length).toBe(EXPECTED_ACCEPTED);
  });

  test('S + L in place of S is rejected (malleability; the file has no S >= L case)', async () => {
    const cases = loadVectors<CctvCase[]>('cctv/ed25519vectors.json');
    const failures: string[] = [];
    let checked = 0;
    for (const c of cases) {
      const pk = hex(c.key);
      const sig = hex(c.sig);
      const msg = utf8Encode(c.msg);
      if (!libsodiumVerify(sig, msg, pk)) continue;
      // S < L < 2^253, so S + L still fits in 32 bytes and is the same scalar mod L.
      const malleated = sig.slice();
      malleated.set(bigintToLe(leToBigint(sig.subarray(32)) + L, 32), 32);
      checked++;
      if (await verify(pk, msg, malleated)) failures.push(`#${c.number}: Coffer accepts S + L`);
      if (libsodiumVerify(malleated, msg, pk))
        failures.push(`#${c.number}: libsodium accepts S + L`);
    }
    expect(failures).toEqual([]);
    expect(checked).toBe(EXPECTED_ACCEPTED);
  });
});

describe(`pointIsAcceptable and the small-order table (${backend.name} back end)`, () => {
  const withSignFlipped = (encoded: Uint8Array): Uint8Array => {
    const out = encoded.slice();
    out[31] = out[31]! ^ 0x80;
    return out;
  };

  test('rejects the eight torsion points, with either sign bit', () => {
    // @noble/curves lists the 8 points of the torsion subgroup E[8] as encodings.
    const torsion = ED25519_TORSION_SUBGROUP.map((h) => hex(h));
    expect(torsion).toHaveLength(8);
    // Their y-coordinates (sign bit cleared) are the five distinct values of SMALL_ORDER_Y:
    // 0 and 1 and p - 1 and the two of order 8.
    const ys = new Set(
      torsion.map((p) => toHex(Uint8Array.of(...p.subarray(0, 31), p[31]! & 0x7f))),
    );
    expect(ys.size).toBe(5);
    const failures: string[] = [];
    for (const p of torsion) {
      // Each is of small order (a sanity check of the list itself).
      if (!ed25519.Point.fromBytes(p).multiplyUnsafe(8n).is0())
        failures.push(`${toHex(p)} not of order dividing 8`);
      if (pointIsAcceptable(p)) failures.push(`${toHex(p)} accepted`);
      const flipped = withSignFlipped(p);
      if (pointIsAcceptable(flipped)) failures.push(`${toHex(flipped)} (sign flipped) accepted`);
    }
    expect(failures).toEqual([]);
  });

  test('rejects every non-canonical encoding (y >= p), with either sign bit', () => {
    // y = p + k for k = 0..18 are the 19 values in [p, 2^255); p and p + 1 encode small-order y.
    const p = 2n ** 255n - 19n;
    const failures: string[] = [];
    for (let k = 0n; k < 19n; k++) {
      const encoded = bigintToLe(p + k, 32);
      if (pointIsAcceptable(encoded)) failures.push(`y = p + ${k} accepted`);
      if (pointIsAcceptable(withSignFlipped(encoded)))
        failures.push(`y = p + ${k}, sign set, accepted`);
    }
    expect(failures).toEqual([]);
  });

  test('accepts the base point and 1000 random public keys', async () => {
    expect(pointIsAcceptable(ed25519.Point.BASE.toBytes())).toBe(true);
    const rejected: string[] = [];
    for (let i = 0; i < 1000; i++) {
      const { publicKey } = await generateSigningKeyPair();
      if (!pointIsAcceptable(publicKey)) rejected.push(toHex(publicKey));
    }
    expect(rejected).toEqual([]);
  });
});
