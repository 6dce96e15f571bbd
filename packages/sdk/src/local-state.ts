import {
  type AeadKey,
  decrypt,
  encrypt,
  hkdf,
  importAeadKey,
  toBase64url,
  utf8Decode,
  utf8Encode,
  wipe,
} from '@coffer/crypto';
import type { SignedManifest } from '@coffer/protocol';
import { array, asObject, bytes, int, type JsonObject, ShapeError, str } from './_json.js';
import { SdkError } from './errors.js';
import { checkRecordName, type LocalStore } from './local-store.js';

// What a client keeps on its device, one encrypted record per kind (README "What is stored
// locally"):
//
//   index              usernames this home has used → account ids
//   account/<id>       this home's device for the account (id, signing seed) and the newest
//                      verified manifest; kept after logout so a later login reuses the device
//                      and still catches a rolled-back manifest
//   session            the logged-in account: token, expiry and the identity seed; deleted on
//                      logout
//
// Each record is `encrypt(K, utf8(json), context = utf8(name))` with K derived from the caller's
// store key, so a record moved to another name, or a record from another store, does not open.

/** Version of the JSON inside every record; old versions are read, never written. */
const RECORD_VERSION = 1;
const STORE_KEY_LENGTH = 32;
const STORE_KEY_LABEL = 'coffer/v1/sdk-local-store';
/** Bounds the index a tampered-with (but authentic, because older) store could grow. */
const MAX_INDEXED_ACCOUNTS = 1000;

/**
 * The logged-in account of this home.
 *
 * @example
 * const session: SessionRecord | undefined = await state.readSession();
 */
export interface SessionRecord {
  readonly accountId: string;
  readonly token: string;
  readonly expiresAt: number;
  /** The account's identity key seed (account secret, spec account-v1 §5.1). */
  readonly identitySeed: Uint8Array;
}

/**
 * This home's device for one account, and what it last verified about the account.
 *
 * @example
 * const account: AccountRecord | undefined = await state.findAccount('alice');
 */
export interface AccountRecord {
  readonly accountId: string;
  /** Normalised username. */
  readonly username: string;
  readonly deviceId: string;
  /** Seed of this device's Ed25519 signing key; never leaves the device. */
  readonly deviceSeed: Uint8Array;
  /** The newest manifest this home verified for the account. */
  readonly manifest?: SignedManifest;
}

/**
 * Encrypted, authenticated records over a {@link LocalStore}. Every read either returns what
 * this store key wrote under that name or throws `STORE_CORRUPT`.
 *
 * @example
 * ```ts
 * const state = await openLocalState(memoryStore(), storeKey);
 * const session = await state.readSession();
 * ```
 */
export interface LocalState {
  readSession(): Promise<SessionRecord | undefined>;
  writeSession(session: SessionRecord): Promise<void>;
  deleteSession(): Promise<void>;
  readAccount(accountId: string): Promise<AccountRecord | undefined>;
  /** Writes the account record and indexes its username. */
  writeAccount(account: AccountRecord): Promise<void>;
  /** The device this home has for `username` (normalised), if any. */
  findAccount(username: string): Promise<AccountRecord | undefined>;
  /** Forgets the account entirely (after deleting it on the server). */
  forgetAccount(accountId: string): Promise<void>;
  /** @internal An encrypted JSON record of another part of the SDK (conversations). */
  readRecord(name: string): Promise<JsonObject | undefined>;
  /** @internal Writes such a record atomically. */
  writeRecord(name: string, fields: Record<string, unknown>): Promise<void>;
  /** @internal Deletes such a record. */
  deleteRecord(name: string): Promise<void>;
}

/**
 * Derives the record key from `storeKey` and returns the record layer over `store`.
 *
 * @throws {SdkError} `INVALID_ARGUMENT` when `storeKey` is not 32 bytes.
 * @example const state = await openLocalState(store, storeKey);
 */
export async function openLocalState(store: LocalStore, storeKey: Uint8Array): Promise<LocalState> {
  const op = 'localState.open';
  const io = typedStore(store);
  if (!(storeKey instanceof Uint8Array) || storeKey.length !== STORE_KEY_LENGTH) {
    throw new SdkError(
      'INVALID_ARGUMENT',
      op,
      `"storeKey" expected ${STORE_KEY_LENGTH} bytes, got ${storeKey instanceof Uint8Array ? storeKey.length : typeof storeKey}`,
    );
  }
  const raw = await hkdf(storeKey, { label: STORE_KEY_LABEL, length: 32 });
  const key = await importAeadKey(raw, { id: 'sdk-store' });
  wipe(raw);
  const records = recordLayer(io, key);

  const readIndex = async (): Promise<Map<string, string>> => {
    const obj = await records.read('index');
    const map = new Map<string, string>();
    if (!obj) return map;
    return records.parse('index', () => {
      const entries = array(obj, 'accounts');
      if (entries.length > MAX_INDEXED_ACCOUNTS) throw new ShapeError('index too long');
      for (const e of entries) {
        const entry = asObject(e, 'index entry');
        map.set(str(entry, 'username'), str(entry, 'accountId'));
      }
      return map;
    });
  };
  const writeIndex = (map: Map<string, string>) =>
    records.write('index', {
      accounts: [...map].map(([username, accountId]) => ({ username, accountId })),
    });

  const state: LocalState = {
    async readSession() {
      const obj = await records.read('session');
      if (!obj) return undefined;
      return records.parse('session', () => ({
        accountId: str(obj, 'accountId'),
        token: str(obj, 'token'),
        expiresAt: int(obj, 'expiresAt'),
        identitySeed: bytes(obj, 'identitySeed', 32),
      }));
    },
    async writeSession(s) {
      await records.write('session', {
        accountId: s.accountId,
        token: s.token,
        expiresAt: s.expiresAt,
        identitySeed: toBase64url(s.identitySeed),
      });
    },
    async deleteSession() {
      await io.delete('session');
    },
    async readAccount(accountId) {
      const name = accountRecordName(accountId);
      const obj = await records.read(name);
      if (!obj) return undefined;
      const account = records.parse(name, () => parseAccount(obj));
      if (account.accountId !== accountId) {
        throw new SdkError('STORE_CORRUPT', 'localState.read', `record ${name} is corrupt`);
      }
      return account;
    },
    async writeAccount(a) {
      await records.write(accountRecordName(a.accountId), {
        accountId: a.accountId,
        username: a.username,
        deviceId: a.deviceId,
        deviceSeed: toBase64url(a.deviceSeed),
        ...(a.manifest
          ? {
              manifest: {
                body: toBase64url(a.manifest.body),
                signature: toBase64url(a.manifest.signature),
              },
            }
          : {}),
      });
      const index = await readIndex();
      if (index.get(a.username) !== a.accountId) {
        index.set(a.username, a.accountId);
        await writeIndex(index);
      }
    },
    async findAccount(username) {
      const index = await readIndex();
      const accountId = index.get(username);
      return accountId === undefined ? undefined : state.readAccount(accountId);
    },
    readRecord: (name) => records.read(name),
    writeRecord: (name, fields) => records.write(name, fields),
    async deleteRecord(name) {
      checkRecordName('localState.delete', name);
      await io.delete(name);
    },
    async forgetAccount(accountId) {
      const index = await readIndex();
      let changed = false;
      for (const [username, id] of index) {
        if (id === accountId) {
          index.delete(username);
          changed = true;
        }
      }
      if (changed) await writeIndex(index);
      await io.delete(accountRecordName(accountId));
    },
  };
  return state;
}

/**
 * The caller's store with its own failures typed: an adapter throws what its platform throws
 * (IndexedDB a DOMException for a full quota, a keystore its own errors), and every error that
 * leaves the SDK is an SdkError — here STORE_UNAVAILABLE, the adapter's error as its cause.
 */
function typedStore(store: LocalStore): Pick<LocalStore, 'get' | 'put' | 'delete'> {
  const typed =
    <A extends unknown[], T>(operation: string, call: (...args: A) => Promise<T>) =>
    async (...args: A): Promise<T> => {
      try {
        return await call(...args);
      } catch (err) {
        if (err instanceof SdkError) throw err;
        throw new SdkError('STORE_UNAVAILABLE', operation, 'the local store failed', {
          cause: err,
        });
      }
    };
  return {
    get: typed('localStore.get', (name: string) => store.get(name)),
    put: typed('localStore.put', (name: string, value: Uint8Array) => store.put(name, value)),
    delete: typed('localStore.delete', (name: string) => store.delete(name)),
  };
}

function accountRecordName(accountId: string): string {
  return `account/${accountId}`;
}

function parseAccount(obj: JsonObject): AccountRecord {
  const base = {
    accountId: str(obj, 'accountId'),
    username: str(obj, 'username'),
    deviceId: str(obj, 'deviceId'),
    deviceSeed: bytes(obj, 'deviceSeed', 32),
  };
  if (obj.manifest === undefined) return base;
  const m = asObject(obj.manifest, 'manifest');
  return { ...base, manifest: { body: bytes(m, 'body'), signature: bytes(m, 'signature') } };
}

interface RecordLayer {
  read(name: string): Promise<JsonObject | undefined>;
  write(name: string, fields: Record<string, unknown>): Promise<void>;
  /** Runs a reader over a record, turning shape errors into STORE_CORRUPT. */
  parse<T>(name: string, reader: () => T): T;
}

function recordLayer(store: Pick<LocalStore, 'get' | 'put'>, key: AeadKey): RecordLayer {
  const corrupt = (name: string, cause?: unknown) =>
    new SdkError('STORE_CORRUPT', 'localState.read', `record ${name} is corrupt`, { cause });
  const parse = <T>(name: string, reader: () => T): T => {
    try {
      return reader();
    } catch (err) {
      throw err instanceof ShapeError ? corrupt(name, err) : err;
    }
  };
  return {
    parse,
    async read(name) {
      checkRecordName('localState.read', name);
      const sealed = await store.get(name);
      if (sealed === undefined) return undefined;
      let obj: JsonObject;
      try {
        const plain = await decrypt(key, sealed, { context: utf8Encode(name) });
        let parsed: unknown;
        try {
          parsed = JSON.parse(utf8Decode(plain));
        } catch {
          // Not the parser's error: its message quotes the decrypted record.
          throw new Error('a record that is not JSON');
        } finally {
          wipe(plain);
        }
        obj = asObject(parsed, 'record');
      } catch (err) {
        throw corrupt(name, err);
      }
      // spec-like rule for our own records: unknown versions fail loudly, never guessed at.
      if (obj.v !== RECORD_VERSION) throw corrupt(name);
      return obj;
    },
    async write(name, fields) {
      checkRecordName('localState.write', name);
      const plain = utf8Encode(JSON.stringify({ v: RECORD_VERSION, ...fields }));
      const sealed = await encrypt(key, plain, { context: utf8Encode(name) });
      wipe(plain);
      await store.put(name, sealed);
    },
  };
}
