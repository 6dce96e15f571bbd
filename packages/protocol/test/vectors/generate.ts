// Generates account-v1.json from ../../spec/account-v1.md, independently of src/: every byte is
// built here by hand with node:crypto (Ed25519 through a PKCS#8 DER prefix, HKDF with
// info = label || 0x00 || context, the AES-256-GCM envelope of packages/crypto/spec/envelope-v1.md
// with fixed nonces), so the fixtures test the implementation against a second reading of the
// spec instead of echoing it. Deterministic: seeds, keys and nonces come from SHA-256 of fixed
// labels, so a re-run writes an identical file.
//
//   npx tsx packages/protocol/test/vectors/generate.ts
//
// The committed JSON is a fixture kept forever: once released, a vector is never changed or
// removed, only added to (old manifests and backups must always verify and open).
import {
  createCipheriv,
  createHash,
  createPrivateKey,
  createPublicKey,
  hkdfSync,
  sign,
} from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const out = dirname(fileURLToPath(import.meta.url));

// ---- bytes ----

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const utf8 = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'));
const cat = (...parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));
const b64url = (b: Uint8Array) => Buffer.from(b).toString('base64url');
const sha256 = (b: Uint8Array) => new Uint8Array(createHash('sha256').update(b).digest());
const zeros = (n: number) => new Uint8Array(n);
function det(label: string, length: number): Uint8Array {
  const bytes = Buffer.alloc(length);
  for (let i = 0, o = 0; o < length; i++, o += 32) {
    createHash('sha256').update(`coffer-vectors/account-v1/${label}/${i}`).digest().copy(bytes, o);
  }
  return new Uint8Array(bytes);
}
function u16(n: number) {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return new Uint8Array(b);
}
function u32(n: number) {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return new Uint8Array(b);
}
function u64(n: number | bigint) {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return new Uint8Array(b);
}
const lp8 = (b: Uint8Array) => cat(Uint8Array.of(b.length), b);
function flip(b: Uint8Array, i: number, bit = 0): Uint8Array {
  const c = b.slice();
  c[i]! ^= 1 << bit;
  return c;
}

// ---- primitives, by hand ----

// RFC 8410 PKCS#8 for Ed25519: SEQUENCE { version 0, AlgorithmIdentifier 1.3.101.112, OCTET STRING { OCTET STRING seed } }.
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
function ed25519(seed: Uint8Array) {
  const key = createPrivateKey({
    key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]),
    format: 'der',
    type: 'pkcs8',
  });
  const spki = createPublicKey(key).export({ format: 'der', type: 'spki' });
  return {
    seed,
    publicKey: new Uint8Array(spki.subarray(spki.length - 32)),
    sign: (m: Uint8Array) => new Uint8Array(sign(null, m, key)),
  };
}
type Keys = ReturnType<typeof ed25519>;

function hkdf(ikm: Uint8Array, label: string, context: Uint8Array, length = 32): Uint8Array {
  const info = cat(utf8(label), Uint8Array.of(0), context);
  return new Uint8Array(hkdfSync('sha256', ikm, new Uint8Array(0), info, length));
}

// packages/crypto/spec/envelope-v1.md: header = 0x01 || suite 0x01 (AES-256-GCM) || kid_len || kid;
// envelope = header || nonce(12) || ct || tag; aad = header || context.
function envelope(
  key: Uint8Array,
  kid: string,
  nonce: Uint8Array,
  pt: Uint8Array,
  ctx: Uint8Array,
) {
  const header = cat(Uint8Array.of(0x01, 0x01, utf8(kid).length), utf8(kid));
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(cat(header, ctx));
  return cat(header, nonce, c.update(pt), c.final(), c.getAuthTag());
}

// Crockford base32, most significant bit first (spec §4).
const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
function base32(bytes: Uint8Array): string {
  let bits = '';
  for (const b of bytes) bits += b.toString(2).padStart(8, '0');
  let s = '';
  for (let i = 0; i < bits.length; i += 5) s += CROCKFORD[Number.parseInt(bits.slice(i, i + 5), 2)];
  return s;
}
const groups = (s: string) => s.match(/.{4}/g)!.join('-');

// ---- spec §3: manifests ----

interface Device {
  id: Uint8Array;
  signingKey: Uint8Array;
  name: Uint8Array;
  addedAt: number | bigint;
}
interface Body {
  format?: number;
  accountId: string;
  seq: number;
  prev: Uint8Array;
  identityKey: Uint8Array;
  backupVersion: number;
  backupHash: Uint8Array;
  issuedAt: number | bigint;
  count?: number;
  devices: Device[];
}
function body(b: Body): Uint8Array {
  return cat(
    Uint8Array.of(b.format ?? 0x01),
    lp8(utf8(b.accountId)),
    u32(b.seq),
    b.prev,
    b.identityKey,
    u32(b.backupVersion),
    b.backupHash,
    u64(b.issuedAt),
    Uint8Array.of(b.count ?? b.devices.length),
    ...b.devices.map((d) => cat(d.id, d.signingKey, lp8(d.name), u64(d.addedAt))),
  );
}
const SIG_PREFIX = cat(utf8('coffer/v1/device-manifest'), Uint8Array.of(0));
const signed = (k: Keys, bytes: Uint8Array) => ({
  body: hex(bytes),
  signature: hex(k.sign(cat(SIG_PREFIX, bytes))),
});
function fields(b: Body) {
  return {
    accountId: b.accountId,
    seq: b.seq,
    prev: hex(b.prev),
    identityKey: hex(b.identityKey),
    backupVersion: b.backupVersion,
    backupHash: hex(b.backupHash),
    issuedAt: Number(b.issuedAt),
    devices: b.devices.map((d) => ({
      id: b64url(d.id),
      signingKey: hex(d.signingKey),
      name: Buffer.from(d.name).toString('utf8'),
      addedAt: Number(d.addedAt),
    })),
  };
}

const identity = ed25519(det('identity-seed', 32));
const mallory = ed25519(det('mallory-seed', 32));
const accountId = b64url(det('account-id', 16));
const otherAccountId = b64url(det('other-account-id', 16));
const devices: Device[] = ['laptop', 'phone', 'tablet']
  .map((n, i) => ({
    id: det(`device-id/${n}`, 16),
    signingKey: ed25519(det(`device-seed/${n}`, 32)).publicKey,
    name: utf8(['Laptop', 'Pixel 8 — work', 'iPad de Zoé'][i]!),
    addedAt: 1_700_000_000_000 + i,
  }))
  .sort((a, b) => Buffer.compare(a.id, b.id));
const T = 1_700_000_100_000;

// ---- spec §4: recovery code ----

const recoveryBytes = det('recovery-code', 20);
const recoveryText = groups(base32(recoveryBytes));
const recoveryKey = (id: string) => hkdf(recoveryBytes, 'coffer/v1/recovery', utf8(id));

// ---- spec §5: backups ----

const BK = det('backup-key', 32);
const exportKey = det('export-key', 64);
const exportKey2 = det('export-key-2', 64);
const passwordKey = (k: Uint8Array, id: string) => hkdf(k, 'coffer/v1/backup', utf8(id));
const pwCtx = (id: string, v: number) => cat(lp8(utf8(id)), u32(v), utf8('password'));
const rcCtx = (id: string) => cat(lp8(utf8(id)), utf8('recovery'));
const scCtx = (id: string, v: number) => cat(lp8(utf8(id)), u32(v), utf8('secrets'));
const secretsJson = (seed: Uint8Array) => JSON.stringify({ v: 1, identitySeed: b64url(seed) });

interface BackupParts {
  format?: number;
  accountId: string;
  version: number;
  passwordWrap: Uint8Array;
  recoveryWrap: Uint8Array;
  secrets: Uint8Array;
  passwordWrapLength?: number;
}
function encodeBackup(p: BackupParts): Uint8Array {
  return cat(
    Uint8Array.of(p.format ?? 0x01),
    lp8(utf8(p.accountId)),
    u32(p.version),
    u16(p.passwordWrapLength ?? p.passwordWrap.length),
    p.passwordWrap,
    u16(p.recoveryWrap.length),
    p.recoveryWrap,
    u32(p.secrets.length),
    p.secrets,
  );
}
function makeBackup(o: {
  accountId?: string;
  version?: number;
  exportKey?: Uint8Array;
  json?: string;
  pwCtxVersion?: number;
  tag: string;
}): BackupParts {
  const id = o.accountId ?? accountId;
  const v = o.version ?? 1;
  return {
    accountId: id,
    version: v,
    passwordWrap: envelope(
      passwordKey(o.exportKey ?? exportKey, id),
      'backup-password',
      det(`${o.tag}/n1`, 12),
      BK,
      pwCtx(id, o.pwCtxVersion ?? v),
    ),
    recoveryWrap: envelope(
      recoveryKey(id),
      'backup-recovery',
      det(`${o.tag}/n2`, 12),
      BK,
      rcCtx(id),
    ),
    secrets: envelope(
      BK,
      'backup-secrets',
      det(`${o.tag}/n3`, 12),
      utf8(o.json ?? secretsJson(identity.seed)),
      scCtx(id, v),
    ),
  };
}
/** A manifest body (unsigned: openBackup takes a verified body) committing to `backup`. */
function committing(
  backup: Uint8Array,
  o: { version?: number; accountId?: string; identityKey?: Uint8Array; hash?: Uint8Array } = {},
) {
  return hex(
    body({
      accountId: o.accountId ?? accountId,
      seq: 1,
      prev: zeros(32),
      identityKey: o.identityKey ?? identity.publicKey,
      backupVersion: o.version ?? 1,
      backupHash: o.hash ?? sha256(backup),
      issuedAt: T,
      devices,
    }),
  );
}

// ---- spec §6: link code ----

const linkBytes = det('link-code', 15);
const linkSymbols = base32(linkBytes);
const linkId = linkSymbols.slice(0, 8);
const linkSecret = linkBytes.slice(5);
const linkKey = hkdf(linkSecret, 'coffer/v1/link', utf8(linkId));

// ---- vectors ----

function manifestVectors() {
  const first: Body = {
    accountId,
    seq: 1,
    prev: zeros(32),
    identityKey: identity.publicKey,
    backupVersion: 1,
    backupHash: det('backup-hash', 32),
    issuedAt: T,
    devices: devices.slice(0, 1),
  };
  const firstBytes = body(first);
  const second: Body = { ...first, seq: 2, prev: sha256(firstBytes), issuedAt: T + 1, devices };
  const secondBytes = body(second);
  const maxName: Body = {
    ...first,
    devices: [{ ...devices[0]!, name: utf8('n'.repeat(64)), addedAt: 2 ** 53 - 1 }],
    issuedAt: 2 ** 53 - 1,
    backupVersion: 0xffffffff,
  };
  const noBackup: Body = { ...first, backupVersion: 0, backupHash: zeros(32) };
  const ok = [
    ['first', 'seq 1, one device, backup version 1', first],
    [
      'second',
      'seq 2 chained to "first", three devices sorted by id bytes, non-ASCII names',
      second,
    ],
    ['no-backup', 'backupVersion 0 with a zero hash', noBackup],
    ['limits', '64-byte name, largest timestamps and backup version', maxName],
  ] as const;
  const encode = ok.map(([id, description, b]) => {
    const bytes = body(b);
    return {
      id,
      description,
      identitySeed: hex(identity.seed),
      fields: fields(b),
      ...signed(identity, bytes),
      hash: hex(sha256(bytes)),
      expect: 'ok',
    };
  });

  const d0 = devices[0]!;
  const d1 = devices[1]!;
  const broken: [string, string, Body, string][] = [
    ['format-2', 'format byte 2', { ...first, format: 2 }, 'UNSUPPORTED_VERSION'],
    [
      'unsorted',
      'devices not sorted by id bytes',
      { ...second, devices: [d1, d0] },
      'INVALID_MANIFEST',
    ],
    [
      'duplicate-id',
      'two entries with one id',
      { ...second, devices: [d0, { ...d0, signingKey: d1.signingKey }] },
      'INVALID_MANIFEST',
    ],
    [
      'duplicate-key',
      'two devices with one signing key',
      { ...second, devices: [d0, { ...d1, signingKey: d0.signingKey }] },
      'INVALID_MANIFEST',
    ],
    [
      'name-nfd',
      'name not in NFC (e + combining acute)',
      { ...first, devices: [{ ...d0, name: utf8('Zoe\u0301') }] },
      'INVALID_MANIFEST',
    ],
    [
      'name-del',
      'name with U+007F',
      { ...first, devices: [{ ...d0, name: utf8('a\u007f') }] },
      'INVALID_MANIFEST',
    ],
    [
      'name-c1',
      'name with U+0085',
      { ...first, devices: [{ ...d0, name: utf8('a\u0085') }] },
      'INVALID_MANIFEST',
    ],
    [
      'name-65',
      '65-byte name',
      { ...first, devices: [{ ...d0, name: utf8('n'.repeat(65)) }] },
      'INVALID_MANIFEST',
    ],
    [
      'name-empty',
      'empty name',
      { ...first, devices: [{ ...d0, name: new Uint8Array(0) }] },
      'INVALID_MANIFEST',
    ],
    [
      'seq1-prev',
      'seq 1 with a nonzero prev',
      { ...first, prev: det('x', 32) },
      'INVALID_MANIFEST',
    ],
    [
      'seq2-zero-prev',
      'seq 2 with a zero prev',
      { ...second, prev: zeros(32) },
      'INVALID_MANIFEST',
    ],
    ['seq-0', 'seq 0', { ...first, seq: 0 }, 'INVALID_MANIFEST'],
    [
      'backup0-hash',
      'backupVersion 0 with a nonzero hash',
      { ...first, backupVersion: 0 },
      'INVALID_MANIFEST',
    ],
    [
      'backup1-zero',
      'backupVersion 1 with a zero hash',
      { ...first, backupHash: zeros(32) },
      'INVALID_MANIFEST',
    ],
    ['issued-2^53', 'issuedAt 2^53', { ...first, issuedAt: 2n ** 53n }, 'INVALID_MANIFEST'],
    [
      'added-2^64',
      'addedAt 2^64 - 1',
      { ...first, devices: [{ ...d0, addedAt: 2n ** 64n - 1n }] },
      'INVALID_MANIFEST',
    ],
    ['count-0', 'no devices', { ...first, devices: [] }, 'INVALID_MANIFEST'],
    [
      'count-short',
      'deviceCount one more than the entries',
      { ...first, count: 2 },
      'INVALID_MANIFEST',
    ],
    [
      'account-21',
      'accountId of 21 characters',
      { ...first, accountId: accountId.slice(1) },
      'INVALID_MANIFEST',
    ],
    [
      'account-noncanonical',
      'accountId with nonzero trailing bits',
      { ...first, accountId: `${accountId.slice(0, 21)}B` },
      'INVALID_MANIFEST',
    ],
  ];
  const decode = broken.map(([id, description, b, expect]) => ({
    id,
    description,
    ...signed(identity, body(b)),
    expect,
  }));
  decode.push({
    id: 'trailing',
    description: 'one byte after the last entry',
    ...signed(identity, cat(firstBytes, Uint8Array.of(0))),
    expect: 'INVALID_MANIFEST',
  });
  decode.push({
    id: 'truncated',
    description: 'last byte missing',
    ...signed(identity, firstBytes.subarray(0, -1)),
    expect: 'INVALID_MANIFEST',
  });

  // spec §3.3 against a verifier's state.
  const s1 = signed(identity, firstBytes);
  const s2 = signed(identity, secondBytes);
  const fork2 = body({ ...second, devices: devices.slice(0, 2) });
  const s2b = signed(identity, fork2);
  const third = body({ ...second, seq: 3, prev: sha256(secondBytes), issuedAt: T + 2 });
  const thirdOnFork = body({ ...second, seq: 3, prev: sha256(fork2), issuedAt: T + 2 });
  const forged2 = body({ ...second, identityKey: mallory.publicKey });
  const otherAccount = body({ ...first, accountId: otherAccountId });
  const pk = hex(identity.publicKey);
  const sig = Buffer.from(s2.signature, 'hex');
  const verify = [
    ['v-first', 'seq 1, nothing trusted', s1, { accountId }, 'ok'],
    ['v-next', 'seq 2 after trusted seq 1', s2, { accountId, trusted: s1 }, 'ok'],
    ['v-same', 'the trusted manifest itself', s2, { accountId, trusted: s2 }, 'ok'],
    [
      'v-pinned',
      'seq 2 with nothing trusted but the identity pinned',
      s2,
      { accountId, identityKey: pk },
      'ok',
    ],
    [
      'v-rollback',
      'seq 1 after trusted seq 2',
      s1,
      { accountId, trusted: s2 },
      'MANIFEST_ROLLBACK',
    ],
    [
      'v-fork-same-seq',
      'another body at the trusted seq',
      s2b,
      { accountId, trusted: s2 },
      'MANIFEST_FORK',
    ],
    [
      'v-fork-next',
      'seq 3 chained to another seq 2',
      signed(identity, thirdOnFork),
      { accountId, trusted: s2 },
      'MANIFEST_FORK',
    ],
    [
      'v-gap',
      'seq 3 after trusted seq 1',
      signed(identity, third),
      { accountId, trusted: s1 },
      'MANIFEST_GAP',
    ],
    ['v-gap-untrusted', 'seq 2 with nothing trusted or pinned', s2, { accountId }, 'MANIFEST_GAP'],
    [
      'v-account',
      'a manifest of another account',
      signed(identity, otherAccount),
      { accountId },
      'ACCOUNT_MISMATCH',
    ],
    [
      'v-identity-pinned',
      'signed by another identity than the pinned one',
      signed(mallory, body({ ...first, identityKey: mallory.publicKey })),
      { accountId, identityKey: pk },
      'IDENTITY_MISMATCH',
    ],
    [
      'v-identity-trusted',
      'a correctly chained successor under a new identity key',
      signed(mallory, forged2),
      { accountId, trusted: s1 },
      'IDENTITY_MISMATCH',
    ],
    [
      'v-sig-flip',
      'one bit of the signature flipped',
      { ...s2, signature: hex(flip(sig, 10)) },
      { accountId, trusted: s1 },
      'BAD_SIGNATURE',
    ],
    [
      'v-sig-s-plus-l',
      'S + L: the malleable twin of a valid signature',
      { ...s2, signature: hex(addL(sig)) },
      { accountId, trusted: s1 },
      'BAD_SIGNATURE',
    ],
    [
      'v-sig-other',
      'signature over the body by another key',
      { ...s2, signature: signed(mallory, secondBytes).signature },
      { accountId, trusted: s1 },
      'BAD_SIGNATURE',
    ],
    [
      'v-body-flip',
      'one bit of the body flipped (a device name)',
      { ...s2, body: hex(flip(secondBytes, secondBytes.length - 12)) },
      { accountId, trusted: s1 },
      'BAD_SIGNATURE',
    ],
    [
      'v-sig-unprefixed',
      'signature over the body alone, without the label',
      { ...s2, signature: hex(identity.sign(secondBytes)) },
      { accountId, trusted: s1 },
      'BAD_SIGNATURE',
    ],
  ].map(([id, description, manifest, expected, expect]) => ({
    id,
    description,
    manifest,
    expected,
    expect,
  }));
  return { encode, decode, verify };
}

/** S + L (little-endian), still < 2^256: valid under a cofactored, non-strict verifier. */
function addL(signature: Buffer): Uint8Array {
  const L = 2n ** 252n + 27742317777372353535851937790883648493n;
  const s = BigInt(`0x${Buffer.from(signature.subarray(32)).reverse().toString('hex')}`) + L;
  const le = Buffer.from(s.toString(16).padStart(64, '0'), 'hex').reverse();
  return cat(signature.subarray(0, 32), le);
}

function recoveryVectors() {
  const proof = hkdf(recoveryBytes, 'coffer/v1/recovery-auth', new Uint8Array(0));
  const derive = [
    {
      id: 'derive',
      description: 'display text, proof, verifier and recovery key of one code',
      bytes: hex(recoveryBytes),
      text: recoveryText,
      accountId,
      proof: hex(proof),
      verifier: hex(sha256(proof)),
      recoveryKey: hex(recoveryKey(accountId)),
      expect: 'ok',
    },
  ];
  const plain = recoveryText.replaceAll('-', '');
  const ones = '1111-1111-1111-1111-1111-1111-1111-1111';
  const zeroText = '0000-0000-0000-0000-0000-0000-0000-0000';
  const parse = [
    ['canonical', recoveryText, hex(recoveryBytes)],
    ['lower-case', recoveryText.toLowerCase(), hex(recoveryBytes)],
    ['no-dashes', plain, hex(recoveryBytes)],
    ['spaces', ` ${plain.match(/.{4}/g)!.join(' ')}  `, hex(recoveryBytes)],
    ['tab-newline', `${plain.slice(0, 16)}\t${plain.slice(16)}\r\n`, hex(recoveryBytes)],
    ['o-for-zero', zeroText.replaceAll('0', 'O'), hex(zeros(20))],
    ['o-lower', zeroText.replaceAll('0', 'o'), hex(zeros(20))],
    ['i-l-for-one', ones.replace('1111', 'IiLl'), '0842108421'.repeat(4)],
    ['all-z', 'ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ', hex(new Uint8Array(20).fill(0xff))],
    ['too-short', plain.slice(1), 'INVALID_RECOVERY_CODE'],
    ['too-long', `${plain}0`, 'INVALID_RECOVERY_CODE'],
    ['u', `${plain.slice(1)}U`, 'INVALID_RECOVERY_CODE'],
    ['punctuation', `${plain.slice(0, 31)}.`, 'INVALID_RECOVERY_CODE'],
    ['underscore-separator', plain.match(/.{4}/g)!.join('_'), 'INVALID_RECOVERY_CODE'],
    ['non-ascii', `${plain.slice(0, 31)}é`, 'INVALID_RECOVERY_CODE'],
    ['empty', '', 'INVALID_RECOVERY_CODE'],
  ].map(([id, input, result]) => ({
    id,
    input,
    ...(result!.startsWith('INVALID') ? { expect: result } : { bytes: result, expect: 'ok' }),
  }));
  return { derive, parse };
}

function backupVectors() {
  const v1 = makeBackup({ tag: 'v1' });
  const v1Bytes = encodeBackup(v1);
  const v2 = makeBackup({ tag: 'v2', version: 2, exportKey: exportKey2 });
  // A rewrap copies the recovery wrap: version 2 carries version 1's.
  const v2Bytes = encodeBackup({ ...v2, recoveryWrap: v1.recoveryWrap });
  const other = encodeBackup(makeBackup({ tag: 'other', accountId: otherAccountId }));
  const unknownField = encodeBackup(
    makeBackup({
      tag: 'unknown',
      json: JSON.stringify({ identitySeed: b64url(identity.seed), audienceKeys: [1, 2], v: 1 }),
    }),
  );
  const v2Secrets = encodeBackup(
    makeBackup({ tag: 'sv2', json: JSON.stringify({ v: 2, identitySeed: b64url(identity.seed) }) }),
  );
  const noSeed = encodeBackup(makeBackup({ tag: 'noseed', json: JSON.stringify({ v: 1 }) }));
  const shortSeed = encodeBackup(
    makeBackup({
      tag: 'shortseed',
      json: JSON.stringify({ v: 1, identitySeed: b64url(identity.seed.subarray(1)) }),
    }),
  );
  const notJson = encodeBackup(makeBackup({ tag: 'notjson', json: 'v=1' }));
  const wrongCtx = encodeBackup(makeBackup({ tag: 'ctx', pwCtxVersion: 2 }));
  const malloryBackup = encodeBackup(
    makeBackup({ tag: 'mallory', json: secretsJson(mallory.seed) }),
  );
  const format2 = cat(Uint8Array.of(2), v1Bytes.subarray(1));
  const shortWrap = encodeBackup({ ...v1, passwordWrap: v1.passwordWrap.subarray(0, 77) });
  const tampered = v1Bytes.slice();
  tampered[tampered.length - 1]! ^= 1;
  const seed = hex(identity.seed);
  const pw = { unlock: 'password', exportKey: hex(exportKey) };
  const rc = { unlock: 'recovery', recoveryCode: recoveryText };
  const rows: [string, string, Uint8Array, string, Record<string, string>, string][] = [
    ['password', 'version 1 opened with the export key', v1Bytes, committing(v1Bytes), pw, 'ok'],
    ['recovery', 'version 1 opened with the recovery code', v1Bytes, committing(v1Bytes), rc, 'ok'],
    [
      'v2-password',
      'version 2 (after a password change) with the new export key',
      v2Bytes,
      committing(v2Bytes, { version: 2 }),
      { unlock: 'password', exportKey: hex(exportKey2) },
      'ok',
    ],
    [
      'v2-recovery',
      'version 2 with the recovery code (the copied recovery wrap)',
      v2Bytes,
      committing(v2Bytes, { version: 2 }),
      rc,
      'ok',
    ],
    [
      'v2-old-password',
      'version 2 with the old export key',
      v2Bytes,
      committing(v2Bytes, { version: 2 }),
      pw,
      'DECRYPTION_FAILED',
    ],
    [
      'unknown-field',
      'secrets JSON with an unknown field, keys in another order',
      unknownField,
      committing(unknownField),
      pw,
      'ok',
    ],
    [
      'wrong-export-key',
      'another export key',
      v1Bytes,
      committing(v1Bytes),
      { unlock: 'password', exportKey: hex(exportKey2) },
      'DECRYPTION_FAILED',
    ],
    [
      'other-account',
      "another account's backup handed back",
      other,
      committing(v1Bytes),
      pw,
      'BACKUP_MISMATCH',
    ],
    [
      'other-account-committed',
      "another account's backup under a manifest of this account committing its hash",
      other,
      committing(other),
      pw,
      'BACKUP_MISMATCH',
    ],
    [
      'older-version',
      'version 1 where the manifest commits to version 2',
      v1Bytes,
      committing(v2Bytes, { version: 2 }),
      pw,
      'BACKUP_MISMATCH',
    ],
    [
      'version-mismatch',
      'the manifest commits to these bytes but names version 2',
      v1Bytes,
      committing(v1Bytes, { version: 2 }),
      pw,
      'BACKUP_MISMATCH',
    ],
    [
      'tampered',
      'last byte flipped, the manifest committing to the original',
      tampered,
      committing(v1Bytes),
      pw,
      'BACKUP_MISMATCH',
    ],
    [
      'tampered-committed',
      'last byte flipped, the manifest committing to the result',
      tampered,
      committing(tampered),
      pw,
      'DECRYPTION_FAILED',
    ],
    [
      'wrap-context',
      'password wrap sealed with the version 2 context',
      wrongCtx,
      committing(wrongCtx),
      pw,
      'DECRYPTION_FAILED',
    ],
    [
      'wrap-context-recovery',
      'the same backup opens by recovery code (its wrap is fine)',
      wrongCtx,
      committing(wrongCtx),
      rc,
      'ok',
    ],
    [
      'secrets-v2',
      'secrets JSON with v 2',
      v2Secrets,
      committing(v2Secrets),
      pw,
      'UNSUPPORTED_VERSION',
    ],
    [
      'secrets-no-seed',
      'secrets JSON without identitySeed',
      noSeed,
      committing(noSeed),
      pw,
      'INVALID_BACKUP',
    ],
    [
      'secrets-short-seed',
      'identitySeed of 31 bytes',
      shortSeed,
      committing(shortSeed),
      pw,
      'INVALID_BACKUP',
    ],
    [
      'secrets-not-json',
      'secrets that are not JSON',
      notJson,
      committing(notJson),
      pw,
      'INVALID_BACKUP',
    ],
    [
      'identity',
      "a seed that is not the manifest's identity",
      malloryBackup,
      committing(malloryBackup),
      pw,
      'IDENTITY_MISMATCH',
    ],
    [
      'format-2',
      'format byte 2, committed',
      format2,
      committing(format2),
      pw,
      'UNSUPPORTED_VERSION',
    ],
    [
      'short-wrap',
      'a 77-byte password wrap, committed',
      shortWrap,
      committing(shortWrap),
      pw,
      'INVALID_BACKUP',
    ],
  ];
  return rows.map(([id, description, backup, manifestBody, unlock, expect]) => ({
    id,
    description,
    accountId,
    backup: hex(backup),
    manifestBody,
    ...unlock,
    ...(expect === 'ok' ? { identitySeed: seed } : {}),
    expect,
  }));
}

function linkVectors() {
  const code = {
    id: 'code',
    description: 'display text, QR payload, link id, secret and link key of one code',
    bytes: hex(linkBytes),
    text: groups(linkSymbols),
    qr: `coffer-link:1:${linkSymbols}`,
    linkId,
    secret: hex(linkSecret),
    linkKey: hex(linkKey),
    expect: 'ok',
  };
  const parse = [
    ['text', code.text, 'ok'],
    ['qr', code.qr, 'ok'],
    ['qr-upper', code.qr.toUpperCase(), 'ok'],
    ['lower-spaces', code.text.toLowerCase().replaceAll('-', ' '), 'ok'],
    ['qr-v2', `coffer-link:2:${linkSymbols}`, 'UNSUPPORTED_VERSION'],
    ['short', linkSymbols.slice(1), 'INVALID_LINK_CODE'],
    ['recovery-length', recoveryText, 'INVALID_LINK_CODE'],
  ].map(([id, input, expect]) => ({
    id,
    input,
    ...(expect === 'ok' ? { bytes: hex(linkBytes) } : {}),
    expect,
  }));

  const deviceSeed = det('device-seed/new', 32);
  const request = {
    deviceId: b64url(det('device-id/new', 16)),
    signingKey: b64url(ed25519(deviceSeed).publicKey),
    name: 'Zoé’s phone',
  };
  const response = {
    accountId,
    username: 'Zoe.Martin',
    identitySeed: b64url(identity.seed),
    manifestSeq: 4,
  };
  const seal = (tag: string, kid: string, ctx: string, json: unknown, key = linkKey) =>
    hex(
      envelope(
        key,
        kid,
        det(`link/${tag}`, 12),
        utf8(typeof json === 'string' ? json : JSON.stringify(json)),
        utf8(ctx),
      ),
    );
  const req = (
    tag: string,
    json: unknown = { v: 1, ...request },
    kid = 'link-request',
    ctx = 'request',
    key = linkKey,
  ) => seal(tag, kid, ctx, json, key);
  const res = (
    tag: string,
    json: unknown = { v: 1, ...response },
    kid = 'link-response',
    ctx = 'response',
  ) => seal(tag, kid, ctx, json);
  const wrongKey = hkdf(linkSecret, 'coffer/v1/link', utf8(linkId.toLowerCase()));
  const otherSecretKey = hkdf(det('other-link-secret', 10), 'coffer/v1/link', utf8(linkId));
  const rows: [string, string, 'request' | 'response', string, string][] = [
    ['request', 'a request', 'request', req('r1'), 'ok'],
    ['response', 'a response', 'response', res('s1'), 'ok'],
    [
      'request-unknown-field',
      'a request with a field this version does not know',
      'request',
      req('r2', { ...request, v: 1, platform: 'android' }),
      'ok',
    ],
    [
      'request-other-secret',
      'sealed under another code with the same link id',
      'request',
      req('r3', undefined, undefined, undefined, otherSecretKey),
      'DECRYPTION_FAILED',
    ],
    [
      'request-linkid-context',
      'link key derived with the link id in lower case',
      'request',
      req('r4', undefined, undefined, undefined, wrongKey),
      'DECRYPTION_FAILED',
    ],
    [
      'request-as-response',
      'a request opened as a response',
      'response',
      req('r5'),
      'DECRYPTION_FAILED',
    ],
    [
      'response-as-request',
      'a response opened as a request',
      'request',
      res('s2'),
      'DECRYPTION_FAILED',
    ],
    [
      'request-context',
      'request key id with the response context',
      'request',
      req('r6', undefined, 'link-request', 'response'),
      'DECRYPTION_FAILED',
    ],
    [
      'request-v2',
      'a request with v 2',
      'request',
      req('r7', { ...request, v: 2 }),
      'UNSUPPORTED_VERSION',
    ],
    [
      'request-not-json',
      'a plaintext that is not JSON',
      'request',
      req('r8', 'hello'),
      'DECRYPTION_FAILED',
    ],
    [
      'request-name-nfd',
      'a device name not in NFC',
      'request',
      req('r9', { v: 1, ...request, name: 'Zoe\u0301' }),
      'DECRYPTION_FAILED',
    ],
    [
      'request-bad-device-id',
      'a deviceId of 15 bytes',
      'request',
      req('r10', { v: 1, ...request, deviceId: b64url(det('short', 15)) }),
      'DECRYPTION_FAILED',
    ],
    [
      'response-short-seed',
      'an identity seed of 31 bytes',
      'response',
      res('s3', { v: 1, ...response, identitySeed: b64url(identity.seed.subarray(1)) }),
      'DECRYPTION_FAILED',
    ],
    [
      'response-seq-0',
      'manifestSeq 0',
      'response',
      res('s4', { v: 1, ...response, manifestSeq: 0 }),
      'DECRYPTION_FAILED',
    ],
    [
      'response-bad-username',
      'a username outside spec §1',
      'response',
      res('s5', { v: 1, ...response, username: 'z' }),
      'DECRYPTION_FAILED',
    ],
  ];
  const tampered = Buffer.from(req('r1'), 'hex');
  tampered[tampered.length - 1]! ^= 0x80;
  rows.push([
    'request-tag',
    'the last bit of the tag flipped',
    'request',
    hex(tampered),
    'DECRYPTION_FAILED',
  ]);
  const messages = rows.map(([id, description, direction, sealed, expect]) => ({
    id,
    description,
    code: code.text,
    direction,
    sealed,
    ...(expect === 'ok'
      ? direction === 'request'
        ? { request: { ...request, signingKey: hex(Buffer.from(request.signingKey, 'base64url')) } }
        : { response: { ...response, identitySeed: hex(identity.seed) } }
      : {}),
    expect,
  }));
  return { code: [code], parse, messages };
}

const file = {
  format: 'coffer account formats v1 (packages/protocol/spec/account-v1.md)',
  generator: 'packages/protocol/test/vectors/generate.ts',
  notes:
    'Hex for bytes unless a field is named as text. expect: "ok" or the ProtocolError code. Envelopes use fixed nonces, so they are "opens to" vectors; Ed25519 is deterministic, so manifests are also "signs to". Backup manifestBody is an unsigned body, as openBackup takes a verified one. recoveryKey and linkKey are intermediates, checked through the backups and link messages that use them.',
  manifest: manifestVectors(),
  recoveryCode: recoveryVectors(),
  backup: backupVectors(),
  link: linkVectors(),
};
writeFileSync(join(out, 'account-v1.json'), `${JSON.stringify(file, null, 2)}\n`);
console.log('wrote account-v1.json');
