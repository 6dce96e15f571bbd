import * as crypto from '@coffer/crypto';
import {
  concatBytes,
  encrypt,
  hkdf,
  importAeadKey,
  randomBytes,
  sha256,
  toBase64url,
  utf8Encode,
} from '@coffer/crypto';
import { beforeEach, describe, expect, test, vi } from 'vitest';
import {
  BACKUP_FORMAT,
  decodeBackup,
  generateKeyPair,
  type ManifestBody,
  rewrapBackup,
} from '../src/index.js';
import { account, codeOf } from './_helpers.js';

// Records every buffer the primitives below hand to the protocol code, so a test can check that
// no copy of a secret is left behind where the code is meant to wipe it. The real functions run.
vi.mock('@coffer/crypto', async (importOriginal) => {
  const real = await importOriginal<typeof import('@coffer/crypto')>();
  return {
    ...real,
    fromBase64url: vi.fn(real.fromBase64url),
    randomBytes: vi.fn(real.randomBytes),
    encrypt: vi.fn(real.encrypt),
  };
});
beforeEach(() => vi.clearAllMocks());

const returned = (fn: (...args: never[]) => unknown): Uint8Array[] =>
  vi
    .mocked(fn)
    .mock.results.filter((r) => r.type === 'return')
    .map((r) => r.value as Uint8Array);
const holds = (buffers: Uint8Array[], secret: Uint8Array): boolean =>
  buffers.some((b) => b.length === secret.length && b.every((x, i) => x === secret[i]));

const MAX_U32 = 0xffffffff;
const lp8 = (b: Uint8Array) => concatBytes(Uint8Array.of(b.length), b);
const u32 = (n: number) => {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n);
  return out;
};
const u16 = (n: number) => Uint8Array.of(n >> 8, n & 0xff);

/** A backup of any version, built from spec §5.2 and §5.3 alone (createBackup only makes v1). */
async function backupAtVersion(
  accountId: string,
  version: number,
  exportKey: Uint8Array,
  identitySeed: Uint8Array,
): Promise<Uint8Array> {
  const id = utf8Encode(accountId);
  const bk = randomBytes(32);
  const pk = await hkdf(exportKey, { label: 'coffer/v1/backup', length: 32, context: id });
  const passwordWrap = await encrypt(await importAeadKey(pk, { id: 'backup-password' }), bk, {
    context: concatBytes(lp8(id), u32(version), utf8Encode('password')),
  });
  // Nobody opens it here: any 78-byte envelope under the right key id will do.
  const recoveryWrap = await encrypt(
    await importAeadKey(randomBytes(32), { id: 'backup-recovery' }),
    randomBytes(32),
    { context: concatBytes(lp8(id), utf8Encode('recovery')) },
  );
  const secrets = await encrypt(
    await importAeadKey(bk, { id: 'backup-secrets' }),
    utf8Encode(JSON.stringify({ v: 1, identitySeed: toBase64url(identitySeed) })),
    { context: concatBytes(lp8(id), u32(version), utf8Encode('secrets')) },
  );
  return concatBytes(
    Uint8Array.of(BACKUP_FORMAT),
    lp8(id),
    u32(version),
    u16(passwordWrap.length),
    passwordWrap,
    u16(recoveryWrap.length),
    recoveryWrap,
    u32(secrets.length),
    secrets,
  );
}

describe('rewrapBackup at the last version (spec §5.3: version is a u32)', () => {
  test('is refused, and leaves no copy of the identity seed behind', async () => {
    const a = await account();
    const backup = await backupAtVersion(a.accountId, MAX_U32, a.exportKey, a.identity.seed);
    expect(decodeBackup(backup).version).toBe(MAX_U32);
    const manifest: ManifestBody = {
      ...a.firstBody,
      backupVersion: MAX_U32,
      backupHash: await sha256(backup),
    };
    vi.clearAllMocks();
    const code = await codeOf(() =>
      rewrapBackup(backup, { manifest, exportKey: a.exportKey, newExportKey: randomBytes(64) }),
    );
    expect(code).toBe('INVALID_ARGUMENT');
    // The seed decoded from the secrets never reaches the caller on this path: it must be wiped.
    expect(holds(returned(crypto.fromBase64url), a.identity.seed)).toBe(false);
  });
});

describe('rewrapBackup failing after the backup opened', () => {
  test('wipes the identity seed it will not return', async () => {
    const a = await account();
    vi.clearAllMocks();
    // The first seal of the rewrap (the new password wrap) fails, as a primitive may.
    vi.mocked(crypto.encrypt).mockRejectedValueOnce(new Error('boom'));
    await expect(
      rewrapBackup(a.backup.backup, {
        manifest: a.firstBody,
        exportKey: a.exportKey,
        newExportKey: randomBytes(64),
      }),
    ).rejects.toThrow('boom');
    expect(vi.mocked(crypto.fromBase64url)).toHaveBeenCalled();
    expect(holds(returned(crypto.fromBase64url), a.identity.seed)).toBe(false);
  });
});

describe('generateKeyPair', () => {
  test('leaves no second copy of the fresh seed behind', async () => {
    vi.clearAllMocks();
    const pair = await generateKeyPair();
    // The caller wipes pair.seed when done; the random buffer it was copied from must not outlive it.
    expect(holds(returned(crypto.randomBytes), pair.seed)).toBe(false);
  });
});
