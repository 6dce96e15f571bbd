import {
  concatBytes,
  constantTimeEqual,
  decrypt,
  encrypt,
  fromBase64url,
  hkdf,
  importAeadKey,
  randomBytes,
  sha256,
  toBase64url,
  utf8Decode,
  utf8Encode,
  wipe,
} from '@coffer/crypto';
import { byteReader, isIntIn, lp8, MAX_U32, u16, u32 } from './_bytes.js';
import { assertBytes, assertObject, invalidArgument, ProtocolError } from './errors.js';
import { ID_TEXT_LENGTH, isId } from './ids.js';
import { keyPairFromSeed, PUBLIC_KEY_LENGTH, SEED_LENGTH } from './key-pair.js';
import { HASH_LENGTH, type ManifestBody } from './manifest-body.js';
import { codeBytes, type RecoveryCode, recoveryKey } from './recovery-code.js';

/** spec §5.3: the first byte of every encoded backup. */
export const BACKUP_FORMAT = 0x01;
/** spec §5.1: the `v` of the secrets JSON this release reads and writes. */
export const SECRETS_VERSION = 1;
/** spec §5.1: the secrets JSON is at most 64 KiB. */
export const MAX_SECRETS_LENGTH = 65_536;
/** OPAQUE's export key is 64 bytes; anything of at least 32 bytes is accepted. */
export const MIN_EXPORT_KEY_LENGTH = 32;
/** A cap on caller input only: HKDF takes any length, but no export key is this long. */
export const MAX_EXPORT_KEY_LENGTH = 1024;

const BACKUP_KEY_LENGTH = 32;
// spec §5.2 key ids; they are written into each envelope's header.
const KID_PASSWORD = 'backup-password';
const KID_RECOVERY = 'backup-recovery';
const KID_SECRETS = 'backup-secrets';
// envelope v1 with AES-256-GCM: version, suite, kid_len, kid, 12-byte nonce, ct, 16-byte tag.
const overhead = (kid: string) => 3 + kid.length + 12 + 16;
/** spec §5.3: a wrapped backup key (either wrap) is exactly 78 bytes. */
export const WRAPPED_KEY_LENGTH = overhead(KID_PASSWORD) + BACKUP_KEY_LENGTH;
/** spec §5.3: the sealed secrets are at most 64 KiB plus the envelope's 45 bytes. */
export const MAX_SEALED_SECRETS_LENGTH = MAX_SECRETS_LENGTH + overhead(KID_SECRETS);
/** The largest encoded backup (spec §5.3); anything longer is refused unread. */
export const MAX_BACKUP_LENGTH =
  1 +
  1 +
  ID_TEXT_LENGTH +
  4 +
  2 +
  WRAPPED_KEY_LENGTH +
  2 +
  WRAPPED_KEY_LENGTH +
  4 +
  MAX_SEALED_SECRETS_LENGTH;

/** What a backup protects (spec §5.1). */
export interface AccountSecrets {
  /** The identity key's 32-byte Ed25519 seed. */
  readonly identitySeed: Uint8Array;
}

/** The fields of an encoded backup (spec §5.3), still sealed. */
export interface DecodedBackup {
  readonly accountId: string;
  readonly version: number;
  readonly passwordWrap: Uint8Array;
  readonly recoveryWrap: Uint8Array;
  readonly secrets: Uint8Array;
}

/** A backup ready to upload, with the hash its manifest must commit to. */
export interface SealedBackup {
  readonly backup: Uint8Array;
  /** SHA-256 of `backup`: the manifest's `backupHash`. */
  readonly hash: Uint8Array;
  /** The manifest's `backupVersion`. */
  readonly version: number;
}

interface OpenOptions {
  readonly manifest: ManifestBody;
  readonly exportKey?: Uint8Array;
  readonly recoveryCode?: RecoveryCode;
}

/**
 * Decodes a backup strictly (spec §5.3) without opening anything: for the server, which checks
 * the account and version of what it stores, and for {@link openBackup}.
 *
 * @throws {ProtocolError} `UNSUPPORTED_VERSION` for a format byte other than 1; `INVALID_BACKUP`
 *   for any broken rule (lengths, version 0, trailing bytes); `INVALID_ARGUMENT` when `bytes` is
 *   not a Uint8Array.
 * @example const { accountId, version } = decodeBackup(upload);
 */
export function decodeBackup(bytes: Uint8Array): DecodedBackup {
  const op = 'backup.decode';
  if (!(bytes instanceof Uint8Array)) throw invalidArgument(op, '"bytes" expected a Uint8Array');
  const fail = (): never => {
    throw new ProtocolError('INVALID_BACKUP', op, 'malformed backup');
  };
  if (bytes.length === 0) fail();
  if (bytes[0] !== BACKUP_FORMAT) {
    throw new ProtocolError('UNSUPPORTED_VERSION', op, `unsupported backup format ${bytes[0]}`);
  }
  if (bytes.length > MAX_BACKUP_LENGTH) fail();
  const r = byteReader(bytes, fail);
  r.u8();
  const accountId = String.fromCharCode(...r.lp8());
  if (!isId(accountId)) fail();
  const version = r.u32();
  if (version < 1) fail();
  const passwordWrap = r.take(r.u16() === WRAPPED_KEY_LENGTH ? WRAPPED_KEY_LENGTH : fail());
  const recoveryWrap = r.take(r.u16() === WRAPPED_KEY_LENGTH ? WRAPPED_KEY_LENGTH : fail());
  const secretsLength = r.u32();
  if (secretsLength <= overhead(KID_SECRETS) || secretsLength > MAX_SEALED_SECRETS_LENGTH) fail();
  const secrets = r.take(secretsLength);
  r.end();
  return Object.freeze({ accountId, version, passwordWrap, recoveryWrap, secrets });
}

/**
 * Makes an account's first backup at signup (spec §5): a fresh random backup key BK, version 1,
 * BK wrapped under the password key (from OPAQUE's export key) and under the recovery key, and
 * the secrets sealed under BK. Commit `hash` and `version` in the first manifest.
 *
 * @throws {ProtocolError} `INVALID_ARGUMENT` for an accountId that is not an id, an export key
 *   under 32 bytes, a recovery code that is not 20 bytes, or a seed that is not 32 bytes.
 * @example
 * const sealed = await createBackup({ accountId, exportKey, recoveryCode,
 *   secrets: { identitySeed: identity.seed } });
 */
export async function createBackup(options: {
  readonly accountId: string;
  readonly exportKey: Uint8Array;
  readonly recoveryCode: RecoveryCode;
  readonly secrets: AccountSecrets;
}): Promise<SealedBackup> {
  const op = 'backup.create';
  assertObject(op, 'options', options);
  const { accountId, exportKey, recoveryCode, secrets } = options;
  if (!isId(accountId))
    throw invalidArgument(op, '"accountId" expected b64url of 16 bytes (22 characters)');
  assertExportKey(op, 'exportKey', exportKey);
  codeBytes(op, recoveryCode);
  assertObject(op, 'secrets', secrets);
  assertBytes(op, 'secrets.identitySeed', secrets.identitySeed, SEED_LENGTH);
  const bk = randomBytes(BACKUP_KEY_LENGTH);
  const rk = await recoveryKey(op, recoveryCode, accountId);
  const plaintext = encodeSecrets(secrets);
  try {
    const recoveryWrap = await seal(rk, KID_RECOVERY, bk, recoveryContext(accountId));
    return await sealBackup(accountId, 1, bk, exportKey, recoveryWrap, plaintext);
  } finally {
    wipe(bk, rk, plaintext);
  }
}

/**
 * Opens a backup that a verified manifest commits to, with the export key (password login) or
 * the recovery code, checking in the order of spec §5.4: the backup's SHA-256, account and
 * version against the manifest, then the wrap and the secrets, then that the seed's public key is
 * the manifest's identity key. Nothing from the backup is returned before all of these pass.
 *
 * @throws {ProtocolError} `BACKUP_MISMATCH` when the manifest does not commit to this backup (a
 *   server handing back another account's, an older or a tampered backup); `DECRYPTION_FAILED`
 *   for a wrong password or code or any damage to the sealed parts; `INVALID_BACKUP` /
 *   `UNSUPPORTED_VERSION` for committed bytes or secrets this release cannot read;
 *   `IDENTITY_MISMATCH` when the seed is not the manifest's identity; `INVALID_ARGUMENT` unless
 *   exactly one of `exportKey` and `recoveryCode` is given.
 * @example
 * const body = await verifyManifest(manifest, { accountId });
 * const { identitySeed } = await openBackup(backup, { manifest: body, exportKey });
 */
export async function openBackup(
  backup: Uint8Array,
  options: OpenOptions,
): Promise<AccountSecrets> {
  const opened = await openInner('backup.open', backup, options);
  wipe(opened.bk, opened.plaintext);
  return opened.secrets;
}

/**
 * A new version of a backup, for a password change or a recovery (spec §5.4): opened as by
 * {@link openBackup} (with the old export key or the recovery code), then version + 1, a new
 * password wrap under `newExportKey`, the recovery wrap copied, and the same secrets plaintext
 * sealed again under the same BK (fields this release does not know are kept). Commit `hash` and
 * `version` in the next manifest.
 *
 * @throws {ProtocolError} the codes of {@link openBackup}; `INVALID_ARGUMENT` also for a
 *   `newExportKey` under 32 bytes, or a manifest at backup version 2^32 − 1 (refused before the
 *   backup is opened). On any failure the opened seed is wiped.
 * @example
 * const next = await rewrapBackup(backup, { manifest: body, recoveryCode, newExportKey });
 * const nextBody = await nextManifestBody(manifest, { backupVersion: next.version, backupHash: next.hash });
 */
export async function rewrapBackup(
  backup: Uint8Array,
  options: OpenOptions & { readonly newExportKey: Uint8Array },
): Promise<SealedBackup & { readonly secrets: AccountSecrets }> {
  const op = 'backup.rewrap';
  assertObject(op, 'options', options);
  assertExportKey(op, 'newExportKey', options.newExportKey);
  // spec §5.3: the version is a u32, so the last one has no successor. openInner requires the
  // backup's version to equal the manifest's, so refuse it here, before any secret is opened.
  if ((options.manifest as Partial<ManifestBody> | null | undefined)?.backupVersion === MAX_U32)
    throw invalidArgument(op, 'the backup is at the last version');
  const opened = await openInner(op, backup, options);
  const { decoded, bk, plaintext } = opened;
  try {
    if (decoded.version === MAX_U32) throw invalidArgument(op, 'the backup is at the last version');
    const sealed = await sealBackup(
      decoded.accountId,
      decoded.version + 1,
      bk,
      options.newExportKey,
      decoded.recoveryWrap,
      plaintext,
    );
    return Object.freeze({ ...sealed, secrets: opened.secrets });
  } catch (err) {
    // The seed goes to the caller only with a new backup; on any failure nobody else will wipe it.
    wipe(opened.secrets.identitySeed);
    throw err;
  } finally {
    wipe(bk, plaintext);
  }
}

interface Opened {
  readonly decoded: DecodedBackup;
  readonly bk: Uint8Array;
  readonly plaintext: Uint8Array;
  readonly secrets: AccountSecrets;
}

async function openInner(op: string, backup: Uint8Array, options: OpenOptions): Promise<Opened> {
  // Caller mistakes first, before anything from the backup is looked at.
  if (!(backup instanceof Uint8Array)) throw invalidArgument(op, '"backup" expected a Uint8Array');
  assertObject(op, 'options', options);
  const { manifest, exportKey, recoveryCode } = options;
  assertManifest(op, manifest);
  if ((exportKey === undefined) === (recoveryCode === undefined))
    throw invalidArgument(op, 'expected exactly one of "exportKey" and "recoveryCode"');
  if (exportKey !== undefined) assertExportKey(op, 'exportKey', exportKey);
  else codeBytes(op, recoveryCode!);
  const mismatch = (why: string) => new ProtocolError('BACKUP_MISMATCH', op, why);

  // spec §5.4, first: the manifest commits to exactly these bytes, this account and version.
  if (manifest.backupVersion === 0) throw mismatch('the manifest commits to no backup');
  if (!constantTimeEqual(await sha256(backup), manifest.backupHash))
    throw mismatch('backup hash differs from the manifest');
  let decoded: DecodedBackup;
  try {
    decoded = decodeBackup(backup);
  } catch (err) {
    if (ProtocolError.is(err)) throw new ProtocolError(err.code, op, 'malformed backup');
    throw err;
  }
  if (decoded.accountId !== manifest.accountId || decoded.version !== manifest.backupVersion)
    throw mismatch('backup account or version differs from the manifest');

  // Then the wrap this caller has a key for, and the secrets: DECRYPTION_FAILED for anything.
  const { accountId, version } = decoded;
  const unwrapKey = exportKey
    ? await passwordKey(exportKey, accountId)
    : await recoveryKey(op, recoveryCode!, accountId);
  let bk: Uint8Array | undefined;
  let plaintext: Uint8Array | undefined;
  try {
    bk = exportKey
      ? await open(
          op,
          unwrapKey,
          KID_PASSWORD,
          decoded.passwordWrap,
          passwordContext(accountId, version),
        )
      : await open(op, unwrapKey, KID_RECOVERY, decoded.recoveryWrap, recoveryContext(accountId));
    if (bk.length !== BACKUP_KEY_LENGTH)
      throw new ProtocolError('DECRYPTION_FAILED', op, 'decryption failed');
    plaintext = await open(
      op,
      bk,
      KID_SECRETS,
      decoded.secrets,
      secretsContext(accountId, version),
    );
    const secrets = decodeSecrets(op, plaintext);
    // Last: the seed must be the identity the manifest names.
    const pair = await keyPairFromSeed(secrets.identitySeed);
    const same = constantTimeEqual(pair.publicKey, manifest.identityKey);
    wipe(pair.seed);
    if (!same) {
      wipe(secrets.identitySeed);
      throw new ProtocolError('IDENTITY_MISMATCH', op, 'backup seed is not the manifest identity');
    }
    return { decoded, bk, plaintext, secrets };
  } catch (err) {
    if (bk) wipe(bk);
    if (plaintext) wipe(plaintext);
    throw err;
  } finally {
    wipe(unwrapKey);
  }
}

/** Encodes a backup of `version` around a copied or new recovery wrap (spec §5.2, §5.3). */
async function sealBackup(
  accountId: string,
  version: number,
  bk: Uint8Array,
  exportKey: Uint8Array,
  recoveryWrap: Uint8Array,
  plaintext: Uint8Array,
): Promise<SealedBackup> {
  const pk = await passwordKey(exportKey, accountId);
  try {
    const passwordWrap = await seal(pk, KID_PASSWORD, bk, passwordContext(accountId, version));
    const secrets = await seal(bk, KID_SECRETS, plaintext, secretsContext(accountId, version));
    const backup = concatBytes(
      Uint8Array.of(BACKUP_FORMAT),
      lp8(utf8Encode(accountId)),
      u32(version),
      u16(passwordWrap.length),
      passwordWrap,
      u16(recoveryWrap.length),
      recoveryWrap,
      u32(secrets.length),
      secrets,
    );
    return Object.freeze({ backup, hash: await sha256(backup), version });
  } finally {
    wipe(pk);
  }
}

/** spec §5.2: password key = hkdf(exportKey, "coffer/v1/backup", utf8(accountId), 32). */
function passwordKey(exportKey: Uint8Array, accountId: string): Promise<Uint8Array> {
  return hkdf(exportKey, {
    label: 'coffer/v1/backup',
    length: BACKUP_KEY_LENGTH,
    context: utf8Encode(accountId),
  });
}

// spec §5.2 contexts (associated data).
const passwordContext = (accountId: string, version: number) =>
  concatBytes(lp8(utf8Encode(accountId)), u32(version), utf8Encode('password'));
const recoveryContext = (accountId: string) =>
  concatBytes(lp8(utf8Encode(accountId)), utf8Encode('recovery'));
const secretsContext = (accountId: string, version: number) =>
  concatBytes(lp8(utf8Encode(accountId)), u32(version), utf8Encode('secrets'));

async function seal(
  key: Uint8Array,
  kid: string,
  plaintext: Uint8Array,
  context: Uint8Array,
): Promise<Uint8Array> {
  return encrypt(await importAeadKey(key, { id: kid }), plaintext, { context });
}

async function open(
  op: string,
  key: Uint8Array,
  kid: string,
  envelope: Uint8Array,
  context: Uint8Array,
): Promise<Uint8Array> {
  const aeadKey = await importAeadKey(key, { id: kid });
  try {
    return await decrypt(aeadKey, envelope, { context });
  } catch {
    // A wrong version byte inside a committed envelope is damage too: one answer for all.
    throw new ProtocolError('DECRYPTION_FAILED', op, 'decryption failed');
  }
}

/** spec §5.1: `{"v":1,"identitySeed":"<b64url of 32 bytes>"}`. */
function encodeSecrets(secrets: AccountSecrets): Uint8Array {
  return utf8Encode(
    JSON.stringify({ v: SECRETS_VERSION, identitySeed: toBase64url(secrets.identitySeed) }),
  );
}

/** spec §5.1: other `v` is UNSUPPORTED_VERSION, a malformed seed INVALID_BACKUP; unknown fields are ignored. */
function decodeSecrets(op: string, plaintext: Uint8Array): AccountSecrets {
  const fail = (): never => {
    throw new ProtocolError('INVALID_BACKUP', op, 'malformed backup secrets');
  };
  if (plaintext.length > MAX_SECRETS_LENGTH) fail();
  let json: unknown;
  try {
    json = JSON.parse(utf8Decode(plaintext));
  } catch {
    fail();
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return fail();
  const { v, identitySeed } = json as Record<string, unknown>;
  if (!isIntIn(v, 0, Number.MAX_SAFE_INTEGER)) fail();
  if (v !== SECRETS_VERSION)
    throw new ProtocolError('UNSUPPORTED_VERSION', op, `unsupported backup secrets version ${v}`);
  if (typeof identitySeed !== 'string' || identitySeed.length !== 43) return fail();
  let seed: Uint8Array | undefined;
  try {
    seed = fromBase64url(identitySeed);
  } catch {
    fail();
  }
  if (seed?.length !== SEED_LENGTH) return fail();
  return Object.freeze({ identitySeed: seed });
}

function assertExportKey(op: string, name: string, key: unknown): asserts key is Uint8Array {
  assertBytes(op, name, key, MIN_EXPORT_KEY_LENGTH, MAX_EXPORT_KEY_LENGTH);
}

function assertManifest(op: string, manifest: unknown): asserts manifest is ManifestBody {
  assertObject(op, 'manifest', manifest);
  if (!isId(manifest.accountId)) throw invalidArgument(op, '"manifest.accountId" expected an id');
  if (!isIntIn(manifest.backupVersion, 0, MAX_U32))
    throw invalidArgument(op, '"manifest.backupVersion" expected an integer from 0 to 2^32 - 1');
  assertBytes(op, 'manifest.backupHash', manifest.backupHash, HASH_LENGTH);
  assertBytes(op, 'manifest.identityKey', manifest.identityKey, PUBLIC_KEY_LENGTH);
}
