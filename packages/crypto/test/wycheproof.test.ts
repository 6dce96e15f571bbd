// Runs, unchanged, every case of the Wycheproof files Coffer's primitives are checked against
// (C2SP/wycheproof testvectors_v1, in ../shared/vectors/wycheproof; formats in its schemas/).
// Each file gets one test that loops over all its cases and collects every failing tcId, so a
// failure report names them all at once. The vitest projects run this file once per back end.

import { describe, expect, test } from 'vitest';
import { backend } from '#backend';
import type { AeadAlgorithm, HashName } from '../src/backend/types.js';
import { toHex } from '../src/encoding.js';
import { CryptoError } from '../src/errors.js';
import { HASH_LENGTH, hmac, hmacVerify } from '../src/hash.js';
import { hkdfExpand, hkdfExtract, hkdfRaw } from '../src/hkdf.js';
import { importKeyAgreementKey, x25519 } from '../src/key-agreement.js';
import { createKeyedHmacSha256 } from '../src/keyed-hmac.js';
import { importSigningKey, sign, verify } from '../src/signature.js';
import { hex, loadVectors, vectorsAvailable } from './_vectors.js';

type Result = 'valid' | 'invalid' | 'acceptable';

interface TestCase {
  tcId: number;
  comment: string;
  flags: string[];
  result: Result;
}

interface VectorFile<G> {
  algorithm: string;
  numberOfTests: number;
  testGroups: G[];
}

interface AeadGroup {
  ivSize: number;
  keySize: number;
  tagSize: number;
  tests: (TestCase & {
    key: string;
    iv: string;
    aad: string;
    msg: string;
    ct: string;
    tag: string;
  })[];
}

interface HkdfGroup {
  keySize: number;
  tests: (TestCase & { ikm: string; salt: string; info: string; size: number; okm: string })[];
}

interface MacGroup {
  keySize: number;
  tagSize: number;
  tests: (TestCase & { key: string; msg: string; tag: string })[];
}

interface XdhGroup {
  curve: string;
  tests: (TestCase & { public: string; private: string; shared: string })[];
}

interface EddsaGroup {
  publicKey: { curve: string; pk: string };
  tests: (TestCase & { msg: string; sig: string })[];
}

/** Cases run per file, for the summary test at the end. */
const casesRun = new Map<string, number>();

function load<G>(file: string): VectorFile<G> {
  return loadVectors<VectorFile<G>>(`wycheproof/${file}`);
}

function allCases<G extends { tests: T[] }, T>(data: VectorFile<G>): number {
  return data.testGroups.reduce((n, g) => n + g.tests.length, 0);
}

function describeError(err: unknown): string {
  if (CryptoError.is(err)) return `CryptoError ${err.code}`;
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

/** Runs `fn`; returns undefined when it threw a CryptoError with `code`, else what happened. */
async function expectCryptoError(
  code: string,
  fn: () => Promise<unknown>,
): Promise<string | undefined> {
  try {
    await fn();
    return `expected CryptoError ${code}, got a result`;
  } catch (err) {
    return CryptoError.is(err) && err.code === code
      ? undefined
      : `expected CryptoError ${code}, got ${describeError(err)}`;
  }
}

const isAllZero = (b: Uint8Array): boolean => b.every((x) => x === 0);

// --- AEADs -------------------------------------------------------------------------------------

const AEAD_FILES: readonly { file: string; algorithm: AeadAlgorithm }[] = [
  { file: 'aes_gcm_test.json', algorithm: 'AES-GCM' },
  { file: 'chacha20_poly1305_test.json', algorithm: 'ChaCha20-Poly1305' },
  { file: 'xchacha20_poly1305_test.json', algorithm: 'XChaCha20-Poly1305' },
];

/** Inclusive range of tcIds. */
function range(first: number, last: number): number[] {
  return Array.from({ length: last - first + 1 }, (_, i) => first + i);
}

/**
 * Which vitest project this is: the back end's name under Node, or `chromium` for the
 * crypto:chromium project (the web back end in headless Chromium, whose WebCrypto differs from
 * Node's). Known failures are keyed by it.
 */
type Project = 'node' | 'web' | 'noble' | 'chromium';
const PROJECT: Project =
  typeof navigator !== 'undefined' && /Chrome\//.test(navigator.userAgent)
    ? 'chromium'
    : backend.name;

/**
 * The only Wycheproof cases allowed to fail, by project (back end), file and tcId, each with its
 * reason. `affects` states what every listed case has in common, and the test checks each listed
 * case against it: a non-standard IV (Coffer itself only ever uses 96-bit nonces, 192-bit for
 * XChaCha20-Poly1305) or a 192-bit AES key (Coffer uses AES-256 only). The test also asserts
 * that the cases failing on a project are exactly its entries, so the list can neither grow
 * silently nor go stale (an entry for a fixed bug fails until it is removed).
 */
const KNOWN_FAILURES: readonly {
  projects: readonly Project[];
  file: string;
  affects: 'non-standard IV' | 'AES-192 key';
  tcIds: readonly number[];
  reason: string;
}[] = [
  {
    projects: ['node'],
    file: 'aes_gcm_test.json',
    affects: 'non-standard IV',
    tcIds: [268, 272, 276],
    reason: 'node:crypto AES-GCM refuses a 257-byte IV',
  },
  {
    projects: ['web'],
    file: 'aes_gcm_test.json',
    affects: 'non-standard IV',
    tcIds: [68, 69, 70, ...range(277, 286), ...range(299, 310)],
    reason: "Node's WebCrypto AES-GCM refuses IVs shorter than 12 bytes (1 to 10 bytes here)",
  },
  {
    projects: ['web'],
    file: 'aes_gcm_test.json',
    affects: 'non-standard IV',
    tcIds: [268, 276],
    reason: "Node's WebCrypto AES-GCM refuses IVs longer than 128 bytes (257 bytes here)",
  },
  {
    projects: ['noble'],
    file: 'aes_gcm_test.json',
    affects: 'non-standard IV',
    tcIds: [...range(277, 284), ...range(287, 294), ...range(299, 306)],
    reason: '@noble/ciphers gcm refuses IVs shorter than 8 bytes (1 to 6 bytes here)',
  },
  {
    projects: ['web', 'chromium'],
    file: 'aes_gcm_test.json',
    affects: 'non-standard IV',
    tcIds: range(287, 294),
    reason:
      "AES-192 keys go to @noble/ciphers (Chromium's WebCrypto has none), which refuses " +
      'IVs shorter than 8 bytes (1 to 6 bytes here)',
  },
];

/** The raw AEAD layer produces and takes 16-byte tags only. */
const AEAD_TAG_BITS = 128;

async function runAeadCase(
  algorithm: AeadAlgorithm,
  group: AeadGroup,
  t: AeadGroup['tests'][number],
): Promise<string | undefined> {
  const expectedSealed = hex(t.ct + t.tag);
  const msg = hex(t.msg);
  if (group.tagSize !== AEAD_TAG_BITS) {
    // A tag of another size cannot even be expressed at the raw layer (it always appends and
    // checks 16 bytes), so such a case is rejected by construction; a valid one would be a gap.
    return t.result === 'valid' ? `valid case with a ${group.tagSize}-bit tag` : undefined;
  }
  const key = await backend.aeadKey(algorithm, hex(t.key));
  const iv = hex(t.iv);
  const aad = hex(t.aad);
  if (t.result === 'valid') {
    const sealed = await backend.aeadSeal(key, iv, msg, aad);
    if (toHex(sealed) !== toHex(expectedSealed)) return 'seal: ct||tag differs';
    const opened = await backend.aeadOpen(key, iv, expectedSealed, aad);
    if (!opened) return 'open: rejected a valid ciphertext';
    if (toHex(opened) !== t.msg.toLowerCase()) return 'open: plaintext differs';
    return undefined;
  }
  // Invalid (wrong tag, nonce of a size the algorithm does not define, ...): open must reject.
  const opened = await backend.aeadOpen(key, iv, expectedSealed, aad);
  return opened === undefined ? undefined : 'open: accepted an invalid ciphertext';
}

// --- the tests ---------------------------------------------------------------------------------

describe.skipIf(!vectorsAvailable)(`wycheproof (${backend.name} back end, ${PROJECT})`, () => {
  const knownHere = KNOWN_FAILURES.filter((k) => k.projects.includes(PROJECT));
  const knownIds = (file: string): number[] =>
    knownHere
      .filter((k) => k.file === file)
      .flatMap((k) => k.tcIds)
      .sort((a, b) => a - b);
  const knownFailed: string[] = [];

  for (const { file, algorithm } of AEAD_FILES) {
    test(`${file}: seal and open`, async () => {
      const data = load<AeadGroup>(file);
      const failures: string[] = [];
      const known = knownIds(file);
      const knownFailedHere: number[] = [];
      let run = 0;
      for (const group of data.testGroups) {
        for (const t of group.tests) {
          run++;
          let problem: string | undefined;
          try {
            problem = await runAeadCase(algorithm, group, t);
          } catch (err) {
            problem = `threw ${describeError(err)}`;
          }
          const entry = knownHere.find((k) => k.file === file && k.tcIds.includes(t.tcId));
          const listed = entry !== undefined;
          const standardIv = group.ivSize === (algorithm === 'XChaCha20-Poly1305' ? 192 : 96);
          if (entry?.affects === 'non-standard IV' && standardIv)
            failures.push(`tcId ${t.tcId}: listed for its IV size, but its IV is standard`);
          if (entry?.affects === 'AES-192 key' && group.keySize !== 192)
            failures.push(
              `tcId ${t.tcId}: listed for its AES-192 key, but has ${group.keySize} bits`,
            );
          if (problem === undefined) continue;
          if (listed) knownFailedHere.push(t.tcId);
          else failures.push(`tcId ${t.tcId} (${t.result}, ivSize ${group.ivSize}): ${problem}`);
        }
      }
      casesRun.set(file, run);
      for (const tcId of knownFailedHere) knownFailed.push(`${file} ${tcId}`);
      expect(failures).toEqual([]);
      // Exactly the listed cases failed: a listed case that now passes must leave the list.
      expect(knownFailedHere.sort((a, b) => a - b)).toEqual(known);
      expect(run).toBe(data.numberOfTests);
      expect(run).toBe(allCases(data));
    });
  }

  test('AEAD known failures (printed once)', () => {
    const lines = knownHere.map(
      (k) => `  ${PROJECT} ${k.file} tcId ${k.tcIds.join(', ')}: ${k.reason}`,
    );
    console.info(
      lines.length === 0
        ? `wycheproof AEAD known failures on ${PROJECT}: none`
        : `wycheproof AEAD known failures on ${PROJECT}:\n${lines.join('\n')}`,
    );
    // The AEAD tests above saw exactly these failures (each also asserted it per file).
    const expected = AEAD_FILES.flatMap(({ file }) => knownIds(file).map((id) => `${file} ${id}`));
    expect(knownFailed.sort()).toEqual(expected.sort());
  });

  // --- HKDF ------------------------------------------------------------------------------------

  const HKDF_FILES: readonly { file: string; hash: HashName }[] = [
    { file: 'hkdf_sha256_test.json', hash: 'SHA-256' },
    { file: 'hkdf_sha384_test.json', hash: 'SHA-384' },
    { file: 'hkdf_sha512_test.json', hash: 'SHA-512' },
  ];

  for (const { file, hash } of HKDF_FILES) {
    test(`${file}: hkdfRaw, and hkdfExtract + hkdfExpand`, async () => {
      const data = load<HkdfGroup>(file);
      const failures: string[] = [];
      let run = 0;
      let invalid = 0;
      for (const group of data.testGroups) {
        for (const t of group.tests) {
          run++;
          const ikm = hex(t.ikm);
          const salt = hex(t.salt);
          const info = hex(t.info);
          const problems: string[] = [];
          try {
            if (t.result === 'valid') {
              const okm = toHex(await hkdfRaw('test.hkdf', hash, ikm, salt, info, t.size));
              if (okm !== t.okm.toLowerCase()) problems.push('hkdfRaw: okm differs');
              const prk = await hkdfExtract(hash, salt, ikm);
              const okm2 = toHex(await hkdfExpand(hash, prk, info, t.size));
              if (okm2 !== t.okm.toLowerCase()) problems.push('extract+expand: okm differs');
            } else {
              // The only invalid cases are output sizes above 255 × HashLen.
              invalid++;
              const raw = await expectCryptoError('INVALID_ARGUMENT', () =>
                hkdfRaw('test.hkdf', hash, ikm, salt, info, t.size),
              );
              if (raw) problems.push(`hkdfRaw: ${raw}`);
              const prk = await hkdfExtract(hash, salt, ikm);
              const exp = await expectCryptoError('INVALID_ARGUMENT', () =>
                hkdfExpand(hash, prk, info, t.size),
              );
              if (exp) problems.push(`hkdfExpand: ${exp}`);
            }
          } catch (err) {
            problems.push(`threw ${describeError(err)}`);
          }
          for (const p of problems) failures.push(`tcId ${t.tcId} (${t.result}): ${p}`);
        }
      }
      casesRun.set(file, run);
      expect(failures).toEqual([]);
      expect(invalid).toBeGreaterThan(0);
      expect(run).toBe(data.numberOfTests);
    });
  }

  // --- HMAC ------------------------------------------------------------------------------------

  const HMAC_FILES: readonly { file: string; hash: HashName }[] = [
    { file: 'hmac_sha256_test.json', hash: 'SHA-256' },
    { file: 'hmac_sha384_test.json', hash: 'SHA-384' },
    { file: 'hmac_sha512_test.json', hash: 'SHA-512' },
  ];

  for (const { file, hash } of HMAC_FILES) {
    test(`${file}: hmac (truncated tags compared by prefix) and hmacVerify`, async () => {
      const data = load<MacGroup>(file);
      const failures: string[] = [];
      let run = 0;
      let verifyChecks = 0;
      let keyedChecks = 0;
      for (const group of data.testGroups) {
        const tagLength = group.tagSize / 8;
        const fullLength = tagLength === HASH_LENGTH[hash];
        for (const t of group.tests) {
          run++;
          const key = hex(t.key);
          const msg = hex(t.msg);
          const given = t.tag.toLowerCase();
          try {
            // The public hmac refuses an empty key by policy (INVALID_ARGUMENT); such a case (none
            // in the current files) is computed by the back end directly instead.
            const full =
              key.length === 0 ? await backend.hmac(hash, key, msg) : await hmac(hash, key, msg);
            const prefix = toHex(full.subarray(0, tagLength));
            // The fixed-key form must agree with the one-shot HMAC on every case.
            if (hash === 'SHA-256' && key.length > 0) {
              keyedChecks++;
              if (toHex(createKeyedHmacSha256(key).mac(msg)) !== toHex(full))
                failures.push(`tcId ${t.tcId}: createKeyedHmacSha256 differs`);
            }
            // A MAC is rejected when the tag computed (truncated to tagSize) differs from it.
            if (t.result === 'valid' && prefix !== given)
              failures.push(`tcId ${t.tcId}: tag differs`);
            if (t.result === 'invalid' && prefix === given)
              failures.push(`tcId ${t.tcId}: invalid tag matches`);
            if (key.length > 0) {
              // hmacVerify takes full-length tags only: a truncated tag is refused even when it
              // is a correct prefix (hash.ts), so it must return true exactly for the valid
              // full-length cases.
              verifyChecks++;
              const ok = await hmacVerify(hash, key, msg, hex(t.tag));
              if (ok !== (fullLength && t.result === 'valid'))
                failures.push(
                  `tcId ${t.tcId} (${t.result}, ${group.tagSize}-bit tag): hmacVerify returned ${ok}`,
                );
            }
          } catch (err) {
            failures.push(`tcId ${t.tcId}: threw ${describeError(err)}`);
          }
        }
      }
      casesRun.set(file, run);
      expect(failures).toEqual([]);
      expect(verifyChecks).toBeGreaterThan(0);
      if (hash === 'SHA-256') expect(keyedChecks).toBe(verifyChecks);
      expect(run).toBe(data.numberOfTests);
    });
  }

  // --- X25519 ----------------------------------------------------------------------------------

  test('x25519_test.json: importKeyAgreementKey + x25519', async () => {
    const data = load<XdhGroup>('x25519_test.json');
    const failures: string[] = [];
    const tally = { valid: 0, invalid: 0, acceptableZero: 0, acceptableShared: 0 };
    let run = 0;
    for (const group of data.testGroups) {
      expect(group.curve).toBe('curve25519');
      for (const t of group.tests) {
        run++;
        const shared = hex(t.shared);
        const zero = isAllZero(shared);
        if (zero !== t.flags.includes('ZeroSharedSecret'))
          failures.push(`tcId ${t.tcId}: vector's ZeroSharedSecret flag does not match shared`);
        let outcome: unknown;
        let threw = false;
        try {
          const key = await importKeyAgreementKey(hex(t.private));
          outcome = await x25519(key, hex(t.public));
        } catch (err) {
          threw = true;
          outcome = err;
        }
        const got = threw ? describeError(outcome) : toHex(outcome as Uint8Array);
        if (t.result === 'invalid') {
          tally.invalid++;
          if (!threw || !CryptoError.is(outcome))
            failures.push(`tcId ${t.tcId} (invalid): expected CryptoError, got ${got}`);
        } else if (zero) {
          // RFC 7748 §6.1 allows rejecting an all-zero output and RFC 9180 §7.1.4 requires it:
          // Coffer throws INVALID_KEY for every low-order public key.
          tally.acceptableZero++;
          if (!threw || !CryptoError.is(outcome, 'INVALID_KEY'))
            failures.push(
              `tcId ${t.tcId} (${t.result}, all-zero): expected INVALID_KEY, got ${got}`,
            );
        } else {
          // Valid, and acceptable cases with a non-zero result (twist points, non-canonical u that
          // RFC 7748 reduces mod p after masking the top bit): exactly the given shared secret.
          if (t.result === 'valid') tally.valid++;
          else tally.acceptableShared++;
          if (got !== t.shared.toLowerCase())
            failures.push(`tcId ${t.tcId} (${t.result}): expected ${t.shared}, got ${got}`);
        }
      }
    }
    casesRun.set('x25519_test.json', run);
    expect(failures).toEqual([]);
    expect(tally.valid).toBeGreaterThan(0);
    expect(tally.acceptableZero).toBeGreaterThan(0);
    expect(tally.acceptableShared).toBeGreaterThan(0);
    expect(run).toBe(data.numberOfTests);
  });

  // --- Ed25519 ---------------------------------------------------------------------------------

  // The v1 files carry public keys only. These seeds are published with their public keys: the
  // four from RFC 8032 §7.1 (TEST 1, 2, 3 and 1024) and the key of Wycheproof's own signature
  // groups (shipped as "sk" in its earlier eddsa_test.json). The test derives each public key
  // again, so a wrong seed here fails rather than being skipped.
  const ED25519_SEEDS: Readonly<Record<string, string>> = {
    d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a:
      '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
    '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c':
      '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
    fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025:
      'c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7',
    '278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e':
      'f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5',
    '7d4d0e7f6153a69b6242b522abbee685fda4420f8834b108c3bdae369ef549fa':
      'add4bb8103785baf9ac534258e8aaf65f5f1adb5ef5f3df19bb80ab989c4d64b',
  };

  test('ed25519_test.json: verify, and sign where the seed is known', async () => {
    const data = load<EddsaGroup>('ed25519_test.json');
    const failures: string[] = [];
    const seedsUsed = new Set<string>();
    let run = 0;
    let signed = 0;
    for (const group of data.testGroups) {
      expect(group.publicKey.curve).toBe('edwards25519');
      const pkHex = group.publicKey.pk.toLowerCase();
      const pk = hex(pkHex);
      const seed = ED25519_SEEDS[pkHex];
      const signingKey = seed === undefined ? undefined : await importSigningKey(hex(seed));
      if (signingKey) {
        seedsUsed.add(pkHex);
        if (toHex(signingKey.publicKey) !== pkHex)
          failures.push(`group ${pkHex}: seed gives public key ${toHex(signingKey.publicKey)}`);
      }
      for (const t of group.tests) {
        run++;
        const msg = hex(t.msg);
        const sig = hex(t.sig);
        try {
          const ok = await verify(pk, msg, sig);
          if (ok !== (t.result === 'valid'))
            failures.push(`tcId ${t.tcId} (${t.result}, ${t.flags.join(',')}): verify ${ok}`);
          if (signingKey && t.result === 'valid') {
            signed++;
            const mine = toHex(await sign(signingKey, msg));
            if (mine !== t.sig.toLowerCase()) failures.push(`tcId ${t.tcId}: signature differs`);
          }
        } catch (err) {
          failures.push(`tcId ${t.tcId}: threw ${describeError(err)}`);
        }
      }
    }
    casesRun.set('ed25519_test.json', run);
    expect(failures).toEqual([]);
    // Every listed seed matched a group of the file, and produced signatures to compare.
    expect([...seedsUsed].sort()).toEqual(Object.keys(ED25519_SEEDS).sort());
    expect(signed).toBeGreaterThan(0);
    expect(run).toBe(data.numberOfTests);
  });

  // --- summary ---------------------------------------------------------------------------------

  test('every file ran cases', () => {
    const files = [
      'x25519_test.json',
      'ed25519_test.json',
      ...AEAD_FILES.map((f) => f.file),
      ...HKDF_FILES.map((f) => f.file),
      ...HMAC_FILES.map((f) => f.file),
    ];
    const lines = files.map((f) => `  ${f}: ${casesRun.get(f) ?? 0}`);
    console.info(
      `wycheproof cases run on the ${backend.name} back end (${PROJECT}):\n${lines.join('\n')}`,
    );
    for (const f of files) expect(casesRun.get(f) ?? 0, f).toBeGreaterThan(0);
  });
});
