import * as crypto from '@coffer/crypto';
import { concatBytes, randomBytes, sha256 } from '@coffer/crypto';
import fc from 'fast-check';
import { beforeEach, describe, expect, test, vi } from 'vitest';
import {
  BACKUP_FORMAT,
  createBackup,
  decodeBackup,
  generateKeyPair,
  generateRecoveryCode,
  MAX_BACKUP_LENGTH,
  type ManifestBody,
  newAccountId,
  openBackup,
  ProtocolError,
  rewrapBackup,
  WRAPPED_KEY_LENGTH,
} from '../src/index.js';
import { account, codeOf, expectCode, flipBit } from './_helpers.js';

// Spies on the primitives that touch keys, to show that a backup the manifest does not commit to
// is refused before any key is derived or used. The real functions run underneath.
vi.mock('@coffer/crypto', async (importOriginal) => {
  const real = await importOriginal<typeof import('@coffer/crypto')>();
  return {
    ...real,
    hkdf: vi.fn(real.hkdf),
    decrypt: vi.fn(real.decrypt),
    importAeadKey: vi.fn(real.importAeadKey),
  };
});
const keyUse = () =>
  vi.mocked(crypto.hkdf).mock.calls.length +
  vi.mocked(crypto.decrypt).mock.calls.length +
  vi.mocked(crypto.importAeadKey).mock.calls.length;
beforeEach(() => vi.clearAllMocks());

async function refusedBeforeAnyKey(run: () => Promise<unknown>, code = 'BACKUP_MISMATCH') {
  vi.clearAllMocks();
  let err: unknown;
  try {
    await run();
  } catch (e) {
    err = e;
  }
  expect(ProtocolError.is(err) ? err.code : err).toBe(code);
  expect(keyUse()).toBe(0);
}

const manifestFor = (body: ManifestBody, hash: Uint8Array, version = 1) =>
  ({ ...body, backupHash: hash, backupVersion: version }) as ManifestBody;

describe('createBackup / openBackup (spec §5)', () => {
  test('opens with the export key and with the recovery code', async () => {
    const a = await account();
    expect(a.backup.version).toBe(1);
    expect(a.backup.hash).toEqual(await sha256(a.backup.backup));
    const byPassword = await openBackup(a.backup.backup, {
      manifest: a.firstBody,
      exportKey: a.exportKey,
    });
    expect(byPassword.identitySeed).toEqual(a.identity.seed);
    const byCode = await openBackup(a.backup.backup, {
      manifest: a.firstBody,
      recoveryCode: a.recoveryCode,
    });
    expect(byCode.identitySeed).toEqual(a.identity.seed);
    const d = decodeBackup(a.backup.backup);
    expect(d).toMatchObject({ accountId: a.accountId, version: 1 });
    expect(d.passwordWrap).toHaveLength(WRAPPED_KEY_LENGTH);
    expect(d.recoveryWrap).toHaveLength(WRAPPED_KEY_LENGTH);
  });

  test('round trip for any export key of at least 32 bytes and any seed (fast-check)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 32, maxLength: 128 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        async (exportKey, seed) => {
          const accountId = newAccountId();
          const recoveryCode = generateRecoveryCode();
          const pair = await crypto.importSigningKey(seed);
          const sealed = await createBackup({
            accountId,
            exportKey,
            recoveryCode,
            secrets: { identitySeed: seed },
          });
          const manifest = {
            accountId,
            backupVersion: 1,
            backupHash: sealed.hash,
            identityKey: pair.publicKey,
          } as ManifestBody;
          const opened = await openBackup(sealed.backup, { manifest, exportKey });
          expect(opened.identitySeed).toEqual(seed);
        },
      ),
      { numRuns: 25 },
    );
  });

  test('a hostile server is caught before any key is used', async () => {
    const a = await account();
    // The spies do see key use when a backup is opened.
    vi.clearAllMocks();
    await openBackup(a.backup.backup, { manifest: a.firstBody, exportKey: a.exportKey });
    expect(keyUse()).toBeGreaterThan(3);
    const b = await account();
    const opts = { manifest: a.firstBody, exportKey: a.exportKey };
    // Another account's backup.
    await refusedBeforeAnyKey(() => openBackup(b.backup.backup, opts));
    // A tampered backup: every flipped byte of it.
    for (let i = 0; i < a.backup.backup.length; i += 7) {
      await refusedBeforeAnyKey(() => openBackup(flipBit(a.backup.backup, i * 8), opts));
    }
    await refusedBeforeAnyKey(() => openBackup(a.backup.backup.subarray(1), opts));
    await refusedBeforeAnyKey(() =>
      openBackup(concatBytes(a.backup.backup, Uint8Array.of(0)), opts),
    );
    // An older version, after a password change.
    const newExportKey = randomBytes(64);
    const v2 = await rewrapBackup(a.backup.backup, { ...opts, newExportKey });
    const m2 = manifestFor(a.firstBody, v2.hash, 2);
    await refusedBeforeAnyKey(() =>
      openBackup(a.backup.backup, { manifest: m2, exportKey: a.exportKey }),
    );
    // A manifest committing to the bytes but naming another version or account.
    const wrongVersion = manifestFor(a.firstBody, a.backup.hash, 2);
    await refusedBeforeAnyKey(() =>
      openBackup(a.backup.backup, { ...opts, manifest: wrongVersion }),
    );
    const wrongAccount = { ...b.firstBody, backupHash: a.backup.hash } as ManifestBody;
    await refusedBeforeAnyKey(() =>
      openBackup(a.backup.backup, { ...opts, manifest: wrongAccount }),
    );
    // A manifest without a backup.
    const none = { ...a.firstBody, backupVersion: 0, backupHash: new Uint8Array(32) };
    await refusedBeforeAnyKey(() => openBackup(a.backup.backup, { ...opts, manifest: none }));
  });

  test('wrong password or code, and committed damage, are DECRYPTION_FAILED', async () => {
    const a = await account();
    await expectCode(
      () => openBackup(a.backup.backup, { manifest: a.firstBody, exportKey: randomBytes(64) }),
      'DECRYPTION_FAILED',
    );
    await expectCode(
      () =>
        openBackup(a.backup.backup, {
          manifest: a.firstBody,
          recoveryCode: generateRecoveryCode(),
        }),
      'DECRYPTION_FAILED',
    );
    // Damage the manifest commits to (only the identity holder could sign that): every byte of
    // the sealed parts.
    const d = decodeBackup(a.backup.backup);
    const start = a.backup.backup.length - d.secrets.length - 4 - WRAPPED_KEY_LENGTH * 2 - 4;
    for (let i = start; i < a.backup.backup.length; i++) {
      const damaged = flipBit(a.backup.backup, i * 8 + 3);
      const header =
        i < start + 2 ||
        (i >= start + 2 + WRAPPED_KEY_LENGTH && i < start + 4 + WRAPPED_KEY_LENGTH);
      const tailLength =
        i >= a.backup.backup.length - d.secrets.length - 4 &&
        i < a.backup.backup.length - d.secrets.length;
      const manifest = manifestFor(a.firstBody, await sha256(damaged));
      const got = await codeOf(() => openBackup(damaged, { manifest, exportKey: a.exportKey }));
      if (header || tailLength) expect(got, `byte ${i}`).toBe('INVALID_BACKUP');
      else if (i >= start + 4 + WRAPPED_KEY_LENGTH && i < start + 4 + 2 * WRAPPED_KEY_LENGTH)
        expect(got, `recovery wrap byte ${i}`).toBe('ok'); // not the wrap this caller opens
      else expect(got, `byte ${i}`).toBe('DECRYPTION_FAILED');
    }
  });

  test('a seed that is not the manifest identity is IDENTITY_MISMATCH', async () => {
    const a = await account();
    const other = await generateKeyPair();
    const manifest = { ...a.firstBody, identityKey: other.publicKey };
    await expectCode(
      () => openBackup(a.backup.backup, { manifest, exportKey: a.exportKey }),
      'IDENTITY_MISMATCH',
    );
  });

  test('caller mistakes are INVALID_ARGUMENT', async () => {
    const a = await account();
    const m = a.firstBody;
    const bad: [Uint8Array, Record<string, unknown>][] = [
      [a.backup.backup, { manifest: m }],
      [a.backup.backup, { manifest: m, exportKey: a.exportKey, recoveryCode: a.recoveryCode }],
      [a.backup.backup, { manifest: m, exportKey: new Uint8Array(31) }],
      [a.backup.backup, { manifest: m, recoveryCode: { text: '', bytes: new Uint8Array(19) } }],
      [a.backup.backup, { manifest: { ...m, accountId: 'x' }, exportKey: a.exportKey }],
      [
        a.backup.backup,
        { manifest: { ...m, backupHash: new Uint8Array(3) }, exportKey: a.exportKey },
      ],
      ['x' as unknown as Uint8Array, { manifest: m, exportKey: a.exportKey }],
    ];
    for (const [backup, options] of bad) {
      await expectCode(() => openBackup(backup, options as never), 'INVALID_ARGUMENT');
    }
    const good = {
      accountId: a.accountId,
      exportKey: a.exportKey,
      recoveryCode: a.recoveryCode,
      secrets: { identitySeed: a.identity.seed },
    };
    await expectCode(
      () => createBackup({ ...good, exportKey: new Uint8Array(31) }),
      'INVALID_ARGUMENT',
    );
    await expectCode(() => createBackup({ ...good, accountId: 'alice' }), 'INVALID_ARGUMENT');
    await expectCode(
      () => createBackup({ ...good, secrets: { identitySeed: new Uint8Array(31) } }),
      'INVALID_ARGUMENT',
    );
    expect((await createBackup({ ...good, exportKey: new Uint8Array(32) })).version).toBe(1);
  });
});

describe('rewrapBackup', () => {
  test('password change: version + 1, recovery wrap copied, old password no longer opens', async () => {
    const a = await account();
    const newExportKey = randomBytes(64);
    const v2 = await rewrapBackup(a.backup.backup, {
      manifest: a.firstBody,
      exportKey: a.exportKey,
      newExportKey,
    });
    expect(v2.version).toBe(2);
    expect(v2.secrets.identitySeed).toEqual(a.identity.seed);
    expect(v2.hash).toEqual(await sha256(v2.backup));
    const before = decodeBackup(a.backup.backup);
    const after = decodeBackup(v2.backup);
    expect(after.recoveryWrap).toEqual(before.recoveryWrap);
    expect(after.passwordWrap).not.toEqual(before.passwordWrap);
    expect(after.secrets).not.toEqual(before.secrets);
    const m2 = manifestFor(a.firstBody, v2.hash, 2);
    expect(
      (await openBackup(v2.backup, { manifest: m2, exportKey: newExportKey })).identitySeed,
    ).toEqual(a.identity.seed);
    expect(
      (await openBackup(v2.backup, { manifest: m2, recoveryCode: a.recoveryCode })).identitySeed,
    ).toEqual(a.identity.seed);
    await expectCode(
      () => openBackup(v2.backup, { manifest: m2, exportKey: a.exportKey }),
      'DECRYPTION_FAILED',
    );
  });

  test('recovery: rewrap with the code, then again with the new password', async () => {
    const a = await account();
    const k2 = randomBytes(64);
    const v2 = await rewrapBackup(a.backup.backup, {
      manifest: a.firstBody,
      recoveryCode: a.recoveryCode,
      newExportKey: k2,
    });
    const m2 = manifestFor(a.firstBody, v2.hash, 2);
    const v3 = await rewrapBackup(v2.backup, {
      manifest: m2,
      exportKey: k2,
      newExportKey: randomBytes(32),
    });
    expect(v3.version).toBe(3);
  });

  test('checks as openBackup does, and the new export key first', async () => {
    const a = await account();
    const b = await account();
    await refusedBeforeAnyKey(() =>
      rewrapBackup(b.backup.backup, {
        manifest: a.firstBody,
        exportKey: a.exportKey,
        newExportKey: randomBytes(64),
      }),
    );
    await refusedBeforeAnyKey(
      () =>
        rewrapBackup(a.backup.backup, {
          manifest: a.firstBody,
          exportKey: a.exportKey,
          newExportKey: new Uint8Array(8),
        }),
      'INVALID_ARGUMENT',
    );
  });
});

describe('decodeBackup (spec §5.3)', () => {
  test('strict', async () => {
    const a = await account();
    const bytes = a.backup.backup;
    const d = decodeBackup(bytes);
    expect(d.secrets.length).toBeGreaterThan(45);
    const version2 = bytes.slice();
    version2[0] = 2;
    await expectCode(() => decodeBackup(version2), 'UNSUPPORTED_VERSION');
    expect(bytes[0]).toBe(BACKUP_FORMAT);
    await expectCode(() => decodeBackup(new Uint8Array(0)), 'INVALID_BACKUP');
    await expectCode(() => decodeBackup(concatBytes(bytes, Uint8Array.of(0))), 'INVALID_BACKUP');
    for (let n = 1; n < bytes.length; n += 3)
      await expectCode(() => decodeBackup(bytes.subarray(0, n)), 'INVALID_BACKUP');
    const v0 = bytes.slice();
    v0.set([0, 0, 0, 0], 24);
    await expectCode(() => decodeBackup(v0), 'INVALID_BACKUP');
    const shortWrap = bytes.slice();
    shortWrap[29] = WRAPPED_KEY_LENGTH - 1;
    await expectCode(() => decodeBackup(shortWrap), 'INVALID_BACKUP');
    const badAccount = bytes.slice();
    badAccount[2] = 0x3d; // '='
    await expectCode(() => decodeBackup(badAccount), 'INVALID_BACKUP');
    await expectCode(
      () => decodeBackup(concatBytes(Uint8Array.of(1), new Uint8Array(MAX_BACKUP_LENGTH))),
      'INVALID_BACKUP',
    );
    await expectCode(() => decodeBackup('x' as never), 'INVALID_ARGUMENT');
  });

  test('random bytes only ever fail with INVALID_BACKUP (fast-check)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (tail) => {
        try {
          decodeBackup(concatBytes(Uint8Array.of(1), tail));
        } catch (err) {
          expect(ProtocolError.is(err, 'INVALID_BACKUP')).toBe(true);
        }
      }),
    );
  });
});
