import { fromBase64url, generateAeadKey, toBase64url, wipe } from '@coffer/crypto';
import { concat, uint32be, utf8 } from './_bytes.js';
import { FieldsError } from './errors.js';
import type { KeyProvider } from './key-provider.js';

/** What a keyring key is for: encrypting values, or computing blind indexes (spec §1). */
export type KeyPurpose = 'data' | 'index';

/** One wrapped key. The keyring is JSON: it holds no secret in the clear and may be stored anywhere. */
export interface KeyringEntry {
  readonly purpose: KeyPurpose;
  /** From 1, per purpose; the highest is the one new values use. */
  readonly version: number;
  /** The provider kind and KEK that wrapped it. */
  readonly provider: string;
  readonly kekId: string;
  /** base64url of the provider's wrapped blob. */
  readonly wrapped: string;
  readonly createdAt: string;
}

export interface Keyring {
  readonly format: 'coffer-keyring/v1';
  readonly keys: readonly KeyringEntry[];
}

/** Caps what a keyring file may hold, so a hostile file cannot exhaust memory. */
export const MAX_KEYRING_ENTRIES = 10_000;
const MAX_VERSION = 0xffff_ffff;

/** spec §1: what the provider binds each wrapped key to. */
export function wrapContext(purpose: KeyPurpose, version: number): Uint8Array {
  return concat(utf8(`coffer/v1/keyring\0${purpose}`), uint32be(version));
}

async function wrapNew(
  provider: KeyProvider,
  kekId: string,
  purpose: KeyPurpose,
  version: number,
  now: Date,
): Promise<KeyringEntry> {
  const key = generateAeadKey();
  try {
    const wrapped = await provider.keyOperation({
      op: 'wrap',
      kekId,
      key,
      context: wrapContext(purpose, version),
    });
    return {
      purpose,
      version,
      provider: provider.kind,
      kekId,
      wrapped: toBase64url(wrapped),
      createdAt: now.toISOString(),
    };
  } finally {
    wipe(key);
  }
}

/**
 * A new keyring with data key 1 and index key 1, wrapped by `kekId` in `provider`.
 *
 * @throws {FieldsError} the provider's codes (`UNKNOWN_KEY`, `PROVIDER_UNAVAILABLE`, ...).
 * @example const keyring = await createKeyring(provider, 'kek-2026');
 */
export async function createKeyring(
  provider: KeyProvider,
  kekId: string,
  now = new Date(),
): Promise<Keyring> {
  return {
    format: 'coffer-keyring/v1',
    keys: [
      await wrapNew(provider, kekId, 'data', 1, now),
      await wrapNew(provider, kekId, 'index', 1, now),
    ],
  };
}

/** The highest version of `purpose` (the one new values use). */
export function primaryVersion(keyring: Keyring, purpose: KeyPurpose): number {
  let v = 0;
  for (const k of keyring.keys) if (k.purpose === purpose && k.version > v) v = k.version;
  if (v === 0)
    throw new FieldsError('UNKNOWN_KEY', 'keyring.primary', `keyring has no ${purpose} key`);
  return v;
}

/**
 * Adds a new data (or index) key version; new values use it, old values keep opening with
 * theirs until re-encrypted. Rows are not touched.
 *
 * @example keyring = await rotateKey(keyring, provider, 'kek-2026', 'data');
 */
export async function rotateKey(
  keyring: Keyring,
  provider: KeyProvider,
  kekId: string,
  purpose: KeyPurpose = 'data',
  now = new Date(),
): Promise<Keyring> {
  const version = primaryVersion(keyring, purpose) + 1;
  if (version > MAX_VERSION)
    throw new FieldsError('INVALID_ARGUMENT', 'keyring.rotate', 'key versions exhausted');
  return {
    ...keyring,
    keys: [...keyring.keys, await wrapNew(provider, kekId, purpose, version, now)],
  };
}

/**
 * Master-key rotation: unwraps every key with `from` and wraps it again with `to` under
 * `kekId`. The data keys themselves do not change, so no row is touched.
 *
 * @throws {FieldsError} `DECRYPTION_FAILED` if an entry does not unwrap; provider codes.
 * @example keyring = await rewrapKeyring(keyring, { from: oldProvider, to: hsm, kekId: 'kek-2027' });
 */
export async function rewrapKeyring(
  keyring: Keyring,
  options: { from: KeyProvider; to: KeyProvider; kekId: string },
): Promise<Keyring> {
  const keys: KeyringEntry[] = [];
  for (const entry of keyring.keys) {
    const key = await unwrapEntry(options.from, entry);
    try {
      const context = wrapContext(entry.purpose, entry.version);
      const wrapped = await options.to.keyOperation({
        op: 'wrap',
        kekId: options.kekId,
        key,
        context,
      });
      keys.push({
        ...entry,
        provider: options.to.kind,
        kekId: options.kekId,
        wrapped: toBase64url(wrapped),
      });
    } finally {
      wipe(key);
    }
  }
  return { ...keyring, keys };
}

/**
 * Removes a data key version. Refused while any row still uses it (count them with the
 * re-encryption job's status) and for the primary version.
 *
 * @throws {FieldsError} `KEY_IN_USE` when `rowsUsingIt > 0` or `version` is the primary;
 *   `UNKNOWN_KEY` when there is no such version.
 * @example keyring = retireDataKey(keyring, 1, await countRowsWithKeyVersion(1));
 */
export function retireDataKey(keyring: Keyring, version: number, rowsUsingIt: number): Keyring {
  const op = 'keyring.retire';
  if (!keyring.keys.some((k) => k.purpose === 'data' && k.version === version)) {
    throw new FieldsError('UNKNOWN_KEY', op, `no data key version ${version}`);
  }
  if (version === primaryVersion(keyring, 'data')) {
    throw new FieldsError('KEY_IN_USE', op, `data key ${version} is the primary key; rotate first`);
  }
  if (!Number.isSafeInteger(rowsUsingIt) || rowsUsingIt < 0) {
    throw new FieldsError('INVALID_ARGUMENT', op, '"rowsUsingIt" expected a row count');
  }
  if (rowsUsingIt > 0) {
    throw new FieldsError(
      'KEY_IN_USE',
      op,
      `data key ${version} still encrypts ${rowsUsingIt} rows; re-encrypt them first`,
    );
  }
  return {
    ...keyring,
    keys: keyring.keys.filter((k) => !(k.purpose === 'data' && k.version === version)),
  };
}

/** @internal Unwraps one entry (32 bytes), checking what the provider returns. */
export async function unwrapEntry(provider: KeyProvider, entry: KeyringEntry): Promise<Uint8Array> {
  // A keyring built in code skips parseKeyring's checks: fail as it would, with our code.
  let wrapped: Uint8Array;
  try {
    wrapped = fromBase64url(entry.wrapped);
  } catch {
    throw new FieldsError(
      'INVALID_ARGUMENT',
      'keyring.unwrap',
      `invalid keyring: ${entry.purpose} key version ${entry.version} wrapped key is not base64url`,
    );
  }
  const key = await provider.keyOperation({
    op: 'unwrap',
    kekId: entry.kekId,
    wrapped,
    context: wrapContext(entry.purpose, entry.version),
  });
  if (key.length !== 32)
    throw new FieldsError(
      'PROVIDER_ERROR',
      'keyring.unwrap',
      'provider returned a key of the wrong length',
    );
  return key;
}

/**
 * Parses a keyring from its JSON text, strictly.
 *
 * @throws {FieldsError} `INVALID_ARGUMENT` for anything malformed (the message says what).
 * @example const keyring = parseKeyring(await readFile('keyring.json', 'utf8'));
 */
export function parseKeyring(text: string): Keyring {
  const op = 'keyring.parse';
  const bad = (why: string) => new FieldsError('INVALID_ARGUMENT', op, `invalid keyring: ${why}`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw bad('not JSON');
  }
  const doc = raw as { format?: unknown; keys?: unknown };
  if (typeof raw !== 'object' || raw === null || doc.format !== 'coffer-keyring/v1')
    throw bad('format is not coffer-keyring/v1');
  if (!Array.isArray(doc.keys) || doc.keys.length > MAX_KEYRING_ENTRIES)
    throw bad('keys must be an array');
  const seen = new Set<string>();
  const keys = doc.keys.map((k: unknown, i): KeyringEntry => {
    const e = k as Record<string, unknown>;
    const ok =
      typeof k === 'object' &&
      k !== null &&
      (e.purpose === 'data' || e.purpose === 'index') &&
      Number.isInteger(e.version) &&
      (e.version as number) >= 1 &&
      (e.version as number) <= MAX_VERSION &&
      typeof e.provider === 'string' &&
      typeof e.kekId === 'string' &&
      e.kekId !== '' &&
      typeof e.wrapped === 'string' &&
      typeof e.createdAt === 'string';
    if (!ok) throw bad(`entry ${i} is malformed`);
    try {
      fromBase64url(e.wrapped as string);
    } catch {
      throw bad(`entry ${i} wrapped key is not base64url`);
    }
    const id = `${e.purpose}/${e.version}`;
    if (seen.has(id)) throw bad(`duplicate ${id}`);
    seen.add(id);
    return {
      purpose: e.purpose as KeyPurpose,
      version: e.version as number,
      provider: e.provider as string,
      kekId: e.kekId as string,
      wrapped: e.wrapped as string,
      createdAt: e.createdAt as string,
    };
  });
  const keyring: Keyring = { format: 'coffer-keyring/v1', keys };
  primaryVersion(keyring, 'data');
  return keyring;
}
