/**
 * A key provider whose key-encryption keys live in a PKCS#11 token (an HSM, a smart card, or
 * SoftHSM2 in tests), reached through the `pkcs11js` native addon. Data keys go into the token
 * and come back wrapped with AES-256-GCM; the KEK itself never leaves it.
 *
 * Wrapped key, version 1 (61 bytes):
 *
 * | offset | length | field                                                          |
 * | ------ | ------ | -------------------------------------------------------------- |
 * | 0      | 1      | version, `0x01`                                                |
 * | 1      | 12     | iv, random per wrap                                            |
 * | 13     | 32     | AES-256-GCM ciphertext of the data key, aad = request.context |
 * | 45     | 16     | GCM tag (128 bits)                                             |
 *
 * The GCM operation runs inside the token (CKM_AES_GCM with CK_GCM_PARAMS); this file only
 * frames the bytes.
 */
import { realpath } from 'node:fs/promises';
import { hmac, hmacVerify, randomBytes, wipe } from '@coffer/crypto';
import type { GcmParams, Handle, Mechanism, PKCS11, Template } from 'pkcs11js';
import { FieldsError } from '../errors.js';
import type { KeyOperation, KeyProvider } from '../key-provider.js';

type Pkcs11js = typeof import('pkcs11js');

/** Version byte of the wrapped-key format above; unknown versions fail with UNSUPPORTED_VERSION. */
export const PKCS11_WRAP_VERSION = 0x01;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const DATA_KEY_BYTES = 32;
const CIPHERTEXT_BYTES = DATA_KEY_BYTES + TAG_BYTES;
const WRAPPED_BYTES = 1 + IV_BYTES + CIPHERTEXT_BYTES;
/** Cap on a kekId's UTF-8 length: ids are short names, and a stored record must not be able to
 * send arbitrarily large search templates to the token. */
export const MAX_KEK_ID_BYTES = 128;
/** Cap on `context` (the GCM aad): tokens limit aad size, and table/column/row ids fit easily. */
export const MAX_CONTEXT_BYTES = 4096;
// PKCS#11 3.0 codes that pkcs11js 2.x has no names for (it reports them as CKR_VENDOR_DEFINED).
const CKR_NAMES_3_0: ReadonlyMap<number, string> = new Map([
  [0x1b, 'CKR_ACTION_PROHIBITED'],
  [0x35, 'CKR_AEAD_DECRYPT_FAILED'],
]);

/** How to reach the token. Give `slot` or `tokenLabel` unless the library exposes one token. */
export interface Pkcs11ProviderOptions {
  /** Path of the PKCS#11 module, e.g. `/usr/lib/softhsm/libsofthsm2.so`. */
  readonly library: string;
  /** Slot id as the library reports it (`softhsm2-util --show-slots`), not a list index. */
  readonly slot?: number;
  /** Token label (without the blank padding PKCS#11 adds). */
  readonly tokenLabel?: string;
  /** User PIN; kept in memory to log in again after the token drops the session. */
  readonly pin: string;
}

/** A {@link KeyProvider} backed by a PKCS#11 token, plus KEK creation and shutdown. */
export interface Pkcs11Provider extends KeyProvider {
  readonly kind: 'pkcs11';
  /**
   * {@link KeyProvider.keyOperation} inside the token: AES-256-GCM (CKM_AES_GCM) under the AES
   * key labelled `kekId`, with a random 96-bit IV and `context` as associated data, framed as the
   * version-1 wrapped key described at the top of this file.
   *
   * @throws {FieldsError} `INVALID_ARGUMENT` for a key that is not 32 bytes, an empty kekId or one
   *   over {@link MAX_KEK_ID_BYTES}, a context over {@link MAX_CONTEXT_BYTES}; `UNSUPPORTED_VERSION`
   *   for a wrapped key whose first byte is not 0x01; `DECRYPTION_FAILED` for one that does not
   *   unwrap (wrong length, tampered, other KEK, other context); `UNKNOWN_KEY` when no AES key is
   *   labelled `kekId`; `PROVIDER_UNAVAILABLE` (retryable; the next call opens a new session) when
   *   the token, session or login is gone; `PROVIDER_ERROR` for other PKCS#11 errors, named, and
   *   once the provider is closed.
   * @example
   * const wrapped = await hsm.keyOperation({ op: 'wrap', kekId: 'kek-1', key: dataKey, context });
   * const again = await hsm.keyOperation({ op: 'unwrap', kekId: 'kek-1', wrapped, context });
   */
  keyOperation(request: KeyOperation): Promise<Uint8Array>;
  /**
   * Creates a new KEK inside the token: a persistent AES-256 secret key labelled `kekId` (CKA_LABEL
   * and CKA_ID), sensitive, never extractable, not modifiable, usable only to encrypt and decrypt.
   *
   * @throws {FieldsError} `INVALID_ARGUMENT` when `kekId` is empty, too long, or already labels an
   *   object in the token; `PROVIDER_UNAVAILABLE` (retryable) when the token cannot be reached;
   *   `PROVIDER_ERROR` for anything else the token reports, or when the provider is closed.
   * @example await provider.generateKek('kek-2026-01');
   */
  generateKek(kekId: string): Promise<void>;
  /**
   * Waits for operations in flight, then logs out (when no other provider in this process uses
   * the token), closes the session and, for the last user of the library, finalizes it. Later
   * calls fail with `PROVIDER_ERROR`; closing twice is harmless.
   *
   * @example await provider.close();
   */
  close(): Promise<void>;
}

/**
 * Opens one session on a PKCS#11 token, logs in as the user, and returns a key provider that wraps
 * data keys with AES-256-GCM under KEKs held in the token. KEK handles are looked up by label once
 * and cached. Operations on one provider run one at a time (a PKCS#11 session holds one
 * operation); open several providers for parallelism.
 *
 * @throws {FieldsError} `INVALID_ARGUMENT` for malformed options or when several tokens match;
 *   `PROVIDER_UNAVAILABLE` (retryable) when the library or the pkcs11js addon cannot be loaded, the
 *   token is absent, or the session fails; `PROVIDER_ERROR` (not retryable) for a wrong, locked or
 *   expired PIN (retrying a wrong PIN locks real tokens), when the token lacks CKM_AES_GCM, and
 *   for other PKCS#11 errors.
 * @example
 * const hsm = await createPkcs11Provider({
 *   library: '/usr/lib/softhsm/libsofthsm2.so',
 *   tokenLabel: 'coffer',
 *   pin: process.env.HSM_PIN ?? '',
 * });
 * await hsm.generateKek('kek-1');
 * const wrapped = await hsm.keyOperation({ op: 'wrap', kekId: 'kek-1', key: dataKey, context });
 */
export async function createPkcs11Provider(
  options: Pkcs11ProviderOptions,
): Promise<Pkcs11Provider> {
  const op = 'provider.pkcs11.create';
  checkOptions(op, options);
  let mod: Pkcs11js;
  try {
    // Loaded here, not at import: importing @coffer/fields must work where the addon is not built.
    mod = (await import('pkcs11js')).default;
  } catch (err) {
    throw new FieldsError('PROVIDER_UNAVAILABLE', op, 'cannot load the pkcs11js addon', {
      cause: err,
    });
  }
  const path = await realpath(options.library).catch(() => options.library);
  const lib = acquireLibrary(op, mod, path, options.library);
  let token: TokenState | undefined;
  try {
    const slot = selectSlot(op, lib, options);
    if (!lib.pkcs11.C_GetMechanismList(slot.handle).includes(mod.CKM_AES_GCM)) {
      throw new FieldsError('PROVIDER_ERROR', op, `token in slot ${slot.id} lacks CKM_AES_GCM`);
    }
    token = lib.tokens.get(slot.id) ?? { slot: slot.id, providers: 0, pinTag: undefined };
    lib.tokens.set(slot.id, token);
    token.providers++;
    const provider = new Pkcs11KeyProvider(
      lib,
      slot,
      token,
      options.pin,
      await pinTag(lib, options.pin),
    );
    await provider.connect(op);
    return provider;
  } catch (err) {
    if (token !== undefined) leaveToken(lib, token);
    releaseLibrary(lib);
    throw toFieldsError(op, err);
  }
}

// ---------------------------------------------------------------------------------------------
// The library and login state are process-wide in PKCS#11: dlopen hands every caller the same
// module, C_Initialize may run once, C_Finalize ends every session, and a login belongs to the
// application, not to a session. Providers in one process therefore share this state, counted.

interface SharedLibrary {
  readonly key: string;
  readonly mod: Pkcs11js;
  readonly pkcs11: PKCS11;
  /** False when other code in this process had already initialised the module. */
  readonly ownsInit: boolean;
  /** Keys the PIN tags below; fresh per load, never leaves memory. */
  readonly pinKey: Uint8Array;
  readonly tokens: Map<bigint, TokenState>;
  users: number;
}

interface TokenState {
  readonly slot: bigint;
  providers: number;
  /** HMAC of the PIN that last logged in, so a provider given another PIN is refused even
   * though the token answers CKR_USER_ALREADY_LOGGED_IN without checking it. */
  pinTag: Uint8Array | undefined;
}

interface Slot {
  readonly handle: Handle;
  readonly id: bigint;
  readonly label: string;
}

const libraries = new Map<string, SharedLibrary>();

function acquireLibrary(op: string, mod: Pkcs11js, key: string, given: string): SharedLibrary {
  const shared = libraries.get(key);
  if (shared !== undefined) {
    shared.users++;
    return shared;
  }
  const pkcs11 = new mod.PKCS11();
  try {
    pkcs11.load(given);
  } catch (err) {
    throw new FieldsError('PROVIDER_UNAVAILABLE', op, `cannot load pkcs11 library ${given}`, {
      cause: err,
    });
  }
  let ownsInit = true;
  try {
    // Async calls run on libuv's thread pool, so the module must do its own locking.
    pkcs11.C_Initialize({ flags: mod.CKF_OS_LOCKING_OK });
  } catch (err) {
    const name = ckrName(err);
    if (name !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') {
      ignoreErrors(() => pkcs11.close());
      // Network HSM clients fail here when their server is unreachable: worth a retry.
      throw new FieldsError('PROVIDER_UNAVAILABLE', op, `C_Initialize failed: ${name ?? 'error'}`, {
        cause: err,
      });
    }
    ownsInit = false;
  }
  const lib: SharedLibrary = {
    key,
    mod,
    pkcs11,
    ownsInit,
    pinKey: randomBytes(32),
    tokens: new Map(),
    users: 1,
  };
  libraries.set(key, lib);
  return lib;
}

function releaseLibrary(lib: SharedLibrary): void {
  if (--lib.users > 0) return;
  libraries.delete(lib.key);
  wipe(lib.pinKey);
  if (lib.ownsInit) ignoreErrors(() => lib.pkcs11.C_Finalize());
  ignoreErrors(() => lib.pkcs11.close());
}

/** Returns true when this was the token's last provider in the process (time to log out). */
function leaveToken(lib: SharedLibrary, token: TokenState): boolean {
  if (--token.providers > 0) return false;
  lib.tokens.delete(token.slot);
  return true;
}

function selectSlot(op: string, lib: SharedLibrary, options: Pkcs11ProviderOptions): Slot {
  const { pkcs11, mod } = lib;
  const slots: Slot[] = [];
  for (const handle of pkcs11.C_GetSlotList(true)) {
    const info = pkcs11.C_GetTokenInfo(handle);
    // SoftHSM2 always shows one extra, uninitialised token; it holds no keys.
    if ((info.flags & mod.CKF_TOKEN_INITIALIZED) === 0) continue;
    slots.push({ handle, id: slotId(handle), label: info.label.trimEnd() });
  }
  if (options.slot !== undefined) {
    const wanted = BigInt(options.slot);
    const slot = slots.find((s) => s.id === wanted);
    if (slot === undefined) {
      throw new FieldsError('PROVIDER_UNAVAILABLE', op, `no initialised token in slot ${wanted}`);
    }
    if (options.tokenLabel !== undefined && slot.label !== options.tokenLabel) {
      throw new FieldsError(
        'PROVIDER_UNAVAILABLE',
        op,
        `token in slot ${wanted} is labelled "${slot.label}", expected "${options.tokenLabel}"`,
      );
    }
    return slot;
  }
  const matching =
    options.tokenLabel === undefined ? slots : slots.filter((s) => s.label === options.tokenLabel);
  const what =
    options.tokenLabel === undefined
      ? 'initialised token'
      : `token labelled "${options.tokenLabel}"`;
  if (matching.length === 0) throw new FieldsError('PROVIDER_UNAVAILABLE', op, `no ${what}`);
  if (matching.length > 1) {
    throw new FieldsError(
      'INVALID_ARGUMENT',
      op,
      `${matching.length} slots hold a ${what}: pass "slot" to choose one`,
    );
  }
  return matching[0]!;
}

/** CK_SLOT_ID is a native CK_ULONG; pkcs11js hands it over as its little-endian bytes. */
function slotId(handle: Handle): bigint {
  let id = 0n;
  for (let i = handle.length - 1; i >= 0; i--) id = (id << 8n) | BigInt(handle[i]!);
  return id;
}

async function pinTag(lib: SharedLibrary, pin: string): Promise<Uint8Array> {
  return hmac('SHA-256', lib.pinKey, new TextEncoder().encode(pin));
}

// ---------------------------------------------------------------------------------------------

class Pkcs11KeyProvider implements Pkcs11Provider {
  readonly kind = 'pkcs11';
  readonly #lib: SharedLibrary;
  readonly #slot: Slot;
  readonly #token: TokenState;
  readonly #pin: string;
  readonly #pinTag: Uint8Array;
  /** KEK handles by label; only keys that exist are cached, so it is bounded by the token. */
  readonly #keks = new Map<string, Handle>();
  #session: Handle | undefined;
  /** Tail of the queue that runs this provider's operations one at a time; never rejects. */
  #tail: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(lib: SharedLibrary, slot: Slot, token: TokenState, pin: string, tag: Uint8Array) {
    this.#lib = lib;
    this.#slot = slot;
    this.#token = token;
    this.#pin = pin;
    this.#pinTag = tag;
  }

  connect(op: string): Promise<void> {
    return this.#serial(op, async () => {
      await this.#ensureSession();
    });
  }

  async keyOperation(request: KeyOperation): Promise<Uint8Array> {
    if (typeof request !== 'object' || request === null) {
      throw new FieldsError(
        'INVALID_ARGUMENT',
        'provider.pkcs11.keyOperation',
        '"request" expected an object',
      );
    }
    if (request.op === 'wrap') return this.#wrap(request.kekId, request.key, request.context);
    if (request.op === 'unwrap')
      return this.#unwrap(request.kekId, request.wrapped, request.context);
    throw new FieldsError(
      'INVALID_ARGUMENT',
      'provider.pkcs11.keyOperation',
      '"op" expected wrap or unwrap',
    );
  }

  async #wrap(kekId: string, key: Uint8Array, context: Uint8Array): Promise<Uint8Array> {
    const op = 'provider.pkcs11.wrap';
    checkKekId(op, kekId);
    checkBytes(op, 'key', key, DATA_KEY_BYTES);
    checkBytes(op, 'context', context);
    const { pkcs11 } = this.#lib;
    const iv = randomBytes(IV_BYTES);
    const plain = Buffer.alloc(DATA_KEY_BYTES);
    plain.set(key);
    try {
      const sealed = await this.#withKek(op, kekId, async (session, kek) => {
        pkcs11.C_EncryptInit(session, this.#gcm(iv, context), kek);
        return pkcs11.C_EncryptAsync(session, plain, Buffer.alloc(CIPHERTEXT_BYTES));
      });
      if (sealed.length !== CIPHERTEXT_BYTES) {
        throw new FieldsError(
          'PROVIDER_ERROR',
          op,
          `token returned ${sealed.length} bytes, expected ${CIPHERTEXT_BYTES}`,
        );
      }
      const wrapped = new Uint8Array(WRAPPED_BYTES);
      wrapped[0] = PKCS11_WRAP_VERSION;
      wrapped.set(iv, 1);
      wrapped.set(sealed, 1 + IV_BYTES);
      return wrapped;
    } finally {
      wipe(plain);
    }
  }

  async #unwrap(kekId: string, wrapped: Uint8Array, context: Uint8Array): Promise<Uint8Array> {
    const op = 'provider.pkcs11.unwrap';
    checkKekId(op, kekId);
    checkBytes(op, 'wrapped', wrapped);
    checkBytes(op, 'context', context);
    // Version first, so an unknown version gets its own code whatever its length.
    if (wrapped.length > 0 && wrapped[0] !== PKCS11_WRAP_VERSION) {
      throw new FieldsError(
        'UNSUPPORTED_VERSION',
        op,
        `wrapped key version ${wrapped[0]} is not supported`,
      );
    }
    if (wrapped.length !== WRAPPED_BYTES) throw decryptionFailed(op, kekId);
    const { pkcs11 } = this.#lib;
    const iv = wrapped.subarray(1, 1 + IV_BYTES);
    const sealed = Buffer.from(wrapped.subarray(1 + IV_BYTES));
    const out = Buffer.alloc(CIPHERTEXT_BYTES);
    try {
      const plain = await this.#withKek(op, kekId, async (session, kek) => {
        pkcs11.C_DecryptInit(session, this.#gcm(iv, context), kek);
        try {
          return await pkcs11.C_DecryptAsync(session, sealed, out);
        } catch (err) {
          if (isTagFailure(err)) throw decryptionFailed(op, kekId, err);
          throw err;
        }
      });
      if (plain.length !== DATA_KEY_BYTES) throw decryptionFailed(op, kekId);
      return new Uint8Array(plain);
    } finally {
      wipe(out);
    }
  }

  async generateKek(kekId: string): Promise<void> {
    const op = 'provider.pkcs11.generateKek';
    checkKekId(op, kekId);
    return this.#serial(op, async () => {
      const session = await this.#ensureSession();
      const { pkcs11, mod } = this.#lib;
      if (this.#find(session, [{ type: mod.CKA_LABEL, value: kekId }]).length > 0) {
        throw new FieldsError(
          'INVALID_ARGUMENT',
          op,
          `"kekId" ${kekId} already labels an object in the token`,
        );
      }
      const template: Template = [
        { type: mod.CKA_CLASS, value: mod.CKO_SECRET_KEY },
        { type: mod.CKA_KEY_TYPE, value: mod.CKK_AES },
        { type: mod.CKA_VALUE_LEN, value: DATA_KEY_BYTES },
        { type: mod.CKA_LABEL, value: kekId },
        { type: mod.CKA_ID, value: Buffer.from(kekId, 'utf8') },
        { type: mod.CKA_TOKEN, value: true },
        { type: mod.CKA_PRIVATE, value: true },
        { type: mod.CKA_SENSITIVE, value: true },
        { type: mod.CKA_EXTRACTABLE, value: false },
        // Not modifiable: nobody can relabel it to impersonate another kekId or widen its use.
        { type: mod.CKA_MODIFIABLE, value: false },
        { type: mod.CKA_ENCRYPT, value: true },
        { type: mod.CKA_DECRYPT, value: true },
        { type: mod.CKA_WRAP, value: false },
        { type: mod.CKA_UNWRAP, value: false },
        { type: mod.CKA_SIGN, value: false },
        { type: mod.CKA_VERIFY, value: false },
        { type: mod.CKA_DERIVE, value: false },
      ];
      const handle = await pkcs11.C_GenerateKeyAsync(
        session,
        { mechanism: mod.CKM_AES_KEY_GEN },
        template,
      );
      this.#keks.set(kekId, handle);
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#tail;
    const { pkcs11 } = this.#lib;
    const session = this.#session;
    this.#session = undefined;
    this.#keks.clear();
    const last = leaveToken(this.#lib, this.#token);
    if (session !== undefined) {
      if (last) ignoreErrors(() => pkcs11.C_Logout(session));
      ignoreErrors(() => pkcs11.C_CloseSession(session));
    }
    releaseLibrary(this.#lib);
  }

  /** Runs `fn` after every operation queued before it; maps whatever it throws. */
  #serial<T>(op: string, fn: () => Promise<T>): Promise<T> {
    if (this.#closed)
      return Promise.reject(new FieldsError('PROVIDER_ERROR', op, 'provider is closed'));
    const run = this.#tail.then(fn).catch((err: unknown) => {
      const error = toFieldsError(op, err);
      // The token dropped the session (or the login): open a fresh one on the next call, which is
      // what makes PROVIDER_UNAVAILABLE worth retrying.
      if (error.code === 'PROVIDER_UNAVAILABLE') this.#dropSession();
      throw error;
    });
    this.#tail = run.catch(() => undefined);
    return run;
  }

  async #withKek<T>(
    op: string,
    kekId: string,
    fn: (session: Handle, kek: Handle) => Promise<T>,
  ): Promise<T> {
    return this.#serial(op, async () => {
      const session = await this.#ensureSession();
      const cached = this.#keks.get(kekId);
      try {
        return await fn(session, cached ?? this.#lookup(op, session, kekId));
      } catch (err) {
        // A cached handle can go stale (key destroyed and recreated elsewhere): look it up again,
        // once.
        const name = ckrName(err);
        if (
          cached === undefined ||
          (name !== 'CKR_KEY_HANDLE_INVALID' && name !== 'CKR_OBJECT_HANDLE_INVALID')
        ) {
          throw err;
        }
        this.#keks.delete(kekId);
        return fn(session, this.#lookup(op, session, kekId));
      }
    });
  }

  #lookup(op: string, session: Handle, kekId: string): Handle {
    const { mod } = this.#lib;
    const found = this.#find(session, [
      { type: mod.CKA_CLASS, value: mod.CKO_SECRET_KEY },
      { type: mod.CKA_KEY_TYPE, value: mod.CKK_AES },
      { type: mod.CKA_LABEL, value: kekId },
    ]);
    if (found.length === 0) {
      throw new FieldsError(
        'UNKNOWN_KEY',
        op,
        `no AES key labelled ${kekId} in token "${this.#slot.label}"`,
      );
    }
    if (found.length > 1) {
      throw new FieldsError('PROVIDER_ERROR', op, `more than one AES key is labelled ${kekId}`);
    }
    this.#keks.set(kekId, found[0]!);
    return found[0]!;
  }

  /** Up to two matches: enough to tell none, one and ambiguous apart. */
  #find(session: Handle, template: Template): Handle[] {
    const { pkcs11 } = this.#lib;
    pkcs11.C_FindObjectsInit(session, template);
    try {
      return pkcs11.C_FindObjects(session, 2);
    } finally {
      pkcs11.C_FindObjectsFinal(session);
    }
  }

  #gcm(iv: Uint8Array, context: Uint8Array): Mechanism {
    const { mod } = this.#lib;
    // CK_GCM_PARAMS in the PKCS#11 2.40-errata / 3.0 layout (with ulIvBits). SoftHSM2 2.6 takes
    // this and the older layout alike.
    const parameter: GcmParams = {
      type: mod.CK_PARAMS_GCM,
      iv: Buffer.from(iv),
      ivBits: IV_BYTES * 8,
      aad: Buffer.from(context),
      tagBits: TAG_BYTES * 8,
    };
    return { mechanism: mod.CKM_AES_GCM, parameter };
  }

  async #ensureSession(): Promise<Handle> {
    if (this.#session !== undefined) return this.#session;
    const { pkcs11, mod } = this.#lib;
    const session = pkcs11.C_OpenSession(
      this.#slot.handle,
      mod.CKF_SERIAL_SESSION | mod.CKF_RW_SESSION,
    );
    try {
      try {
        pkcs11.C_Login(session, mod.CKU_USER, this.#pin);
        this.#token.pinTag = this.#pinTag;
      } catch (err) {
        if (ckrName(err) !== 'CKR_USER_ALREADY_LOGGED_IN') throw err;
        const known = this.#token.pinTag;
        if (known !== undefined && !(await samePin(this.#lib, this.#pin, known))) {
          throw new FieldsError(
            'PROVIDER_ERROR',
            'provider.pkcs11.login',
            'CKR_PIN_INCORRECT: the token is logged in with another PIN in this process',
          );
        }
      }
    } catch (err) {
      ignoreErrors(() => pkcs11.C_CloseSession(session));
      throw err;
    }
    this.#session = session;
    this.#keks.clear();
    return session;
  }

  #dropSession(): void {
    const session = this.#session;
    this.#session = undefined;
    if (session !== undefined) ignoreErrors(() => this.#lib.pkcs11.C_CloseSession(session));
  }
}

async function samePin(lib: SharedLibrary, pin: string, tag: Uint8Array): Promise<boolean> {
  return hmacVerify('SHA-256', lib.pinKey, new TextEncoder().encode(pin), tag);
}

// ---------------------------------------------------------------------------------------------
// Errors

/** The CKR_* name of a pkcs11js error, or undefined for anything else. */
function ckrName(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const { message, code } = err as { message?: unknown; code?: unknown };
  if (typeof message !== 'string' || !message.startsWith('CKR_') || typeof code !== 'number') {
    return undefined;
  }
  if (message !== 'CKR_VENDOR_DEFINED' || code >= 0x80000000) return message;
  return CKR_NAMES_3_0.get(code) ?? `CKR_0x${code.toString(16).padStart(8, '0')}`;
}

/**
 * Codes that mean the token, session or login is gone for now; trying again may work. A wrong,
 * locked or expired PIN (CKR_PIN_*) is deliberately not here: it is a configuration error, and
 * retrying it in a loop would lock the PIN on a real HSM.
 */
const UNAVAILABLE_PREFIXES = ['CKR_DEVICE_', 'CKR_SESSION_', 'CKR_TOKEN_NOT_'];
const UNAVAILABLE = new Set([
  'CKR_SLOT_ID_INVALID',
  'CKR_USER_NOT_LOGGED_IN',
  'CKR_USER_PIN_NOT_INITIALIZED',
  'CKR_CRYPTOKI_NOT_INITIALIZED',
  'CKR_FUNCTION_CANCELED',
]);

function isUnavailable(name: string): boolean {
  return UNAVAILABLE.has(name) || UNAVAILABLE_PREFIXES.some((prefix) => name.startsWith(prefix));
}

/** How C_Decrypt reports a GCM tag that does not verify. SoftHSM2 2.6 answers CKR_GENERAL_ERROR
 * (its OpenSSL back end fails the final step), so it counts here; C_DecryptInit errors never do. */
const TAG_FAILURES = new Set([
  'CKR_ENCRYPTED_DATA_INVALID',
  'CKR_ENCRYPTED_DATA_LEN_RANGE',
  'CKR_AEAD_DECRYPT_FAILED',
  'CKR_GENERAL_ERROR',
]);

function isTagFailure(err: unknown): boolean {
  const name = ckrName(err);
  return name !== undefined && TAG_FAILURES.has(name);
}

function decryptionFailed(op: string, kekId: string, cause?: unknown): FieldsError {
  return new FieldsError(
    'DECRYPTION_FAILED',
    op,
    `wrapped key does not unwrap under ${kekId} (tampered, other key or other context)`,
    cause === undefined ? undefined : { cause },
  );
}

function toFieldsError(op: string, err: unknown): FieldsError {
  if (FieldsError.is(err)) return err;
  const name = ckrName(err);
  if (name === undefined) {
    return new FieldsError('PROVIDER_ERROR', op, 'unexpected error from pkcs11js', { cause: err });
  }
  const code = isUnavailable(name) ? 'PROVIDER_UNAVAILABLE' : 'PROVIDER_ERROR';
  return new FieldsError(code, op, name, { cause: err });
}

function ignoreErrors(fn: () => void): void {
  try {
    fn();
  } catch {
    // Best effort while shutting down: the session or module may already be gone.
  }
}

// ---------------------------------------------------------------------------------------------
// Arguments

function checkOptions(op: string, options: Pkcs11ProviderOptions): void {
  if (typeof options !== 'object' || options === null) {
    throw new FieldsError('INVALID_ARGUMENT', op, '"options" expected an object');
  }
  if (typeof options.library !== 'string' || options.library === '') {
    throw new FieldsError('INVALID_ARGUMENT', op, '"library" expected a path');
  }
  if (typeof options.pin !== 'string') {
    throw new FieldsError('INVALID_ARGUMENT', op, '"pin" expected a string');
  }
  if (options.slot !== undefined && (!Number.isSafeInteger(options.slot) || options.slot < 0)) {
    throw new FieldsError('INVALID_ARGUMENT', op, '"slot" expected a non-negative integer');
  }
  if (options.tokenLabel !== undefined && typeof options.tokenLabel !== 'string') {
    throw new FieldsError('INVALID_ARGUMENT', op, '"tokenLabel" expected a string');
  }
}

function checkKekId(op: string, kekId: unknown): asserts kekId is string {
  if (typeof kekId !== 'string' || kekId === '') {
    throw new FieldsError('INVALID_ARGUMENT', op, '"kekId" expected a non-empty string');
  }
  const length = Buffer.byteLength(kekId, 'utf8');
  if (length > MAX_KEK_ID_BYTES) {
    throw new FieldsError(
      'INVALID_ARGUMENT',
      op,
      `"kekId" expected at most ${MAX_KEK_ID_BYTES} bytes, got ${length}`,
    );
  }
}

function checkBytes(
  op: string,
  name: string,
  value: unknown,
  length?: number,
): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new FieldsError('INVALID_ARGUMENT', op, `"${name}" expected a Uint8Array`);
  }
  if (length !== undefined && value.length !== length) {
    throw new FieldsError(
      'INVALID_ARGUMENT',
      op,
      `"${name}" expected ${length} bytes, got ${value.length}`,
    );
  }
  if (name === 'context' && value.length > MAX_CONTEXT_BYTES) {
    throw new FieldsError(
      'INVALID_ARGUMENT',
      op,
      `"context" expected at most ${MAX_CONTEXT_BYTES} bytes, got ${value.length}`,
    );
  }
}
