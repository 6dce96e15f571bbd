import {
  type AeadKey,
  aeadIsSynchronous,
  CryptoError,
  decrypt,
  decryptSync,
  encrypt,
  encryptSync,
  hkdf,
  importAeadKey,
  readEnvelopeHeader,
} from '@coffer/crypto';
import { concat, lp, MAX_ROW_ID_BYTES, nameLp, uint32be } from './_bytes.js';
import { FieldsError } from './errors.js';
import type { KeyProvider } from './key-provider.js';
import { type KeyPurpose, type Keyring, primaryVersion, unwrapEntry } from './keyring.js';
import { decodeValue, encodeValue, type FieldValue } from './value-codec.js';

/** Where a value lives: what its ciphertext is bound to (spec/field-v1.md §2). */
export interface FieldContext {
  /** Optional tenant (organisation, workspace); a ciphertext opens only in its own. */
  readonly tenant?: string;
  readonly table: string;
  readonly column: string;
  /** The row's primary key: a string, a safe integer or a bigint. */
  readonly rowId: string | number | bigint;
}

export interface EncryptOptions {
  /** `text` (default) for text columns, `binary` for bytea/blob columns. */
  readonly format?: 'text' | 'binary';
  /** Pad the plaintext to a multiple of this many bytes (8 to 4096), hiding exact lengths. */
  readonly padTo?: number;
}

export interface DecryptOptions {
  /**
   * Inside an explicit migration window only: a value that is not a Coffer ciphertext is
   * returned as the plaintext it is. Outside it, such a value is `PLAINTEXT_VALUE`.
   */
  readonly allowPlaintext?: boolean;
}

/** A stored value: text-form ciphertext, binary-form ciphertext, or (in migrations) plaintext. */
export type StoredValue = string | Uint8Array;

export interface FieldCipher {
  /**
   * Encrypts `value` for the place `context` names, with the newest data key.
   *
   * @throws {FieldsError} `INVALID_ARGUMENT` for a bad context or value; provider codes when the
   *   data key cannot be unwrapped (`PROVIDER_UNAVAILABLE` is retryable).
   */
  encrypt(
    value: FieldValue,
    context: FieldContext,
    options: EncryptOptions & { format: 'binary' },
  ): Promise<Uint8Array>;
  encrypt(
    value: FieldValue,
    context: FieldContext,
    options?: EncryptOptions & { format?: 'text' },
  ): Promise<string>;
  encrypt(value: FieldValue, context: FieldContext, options?: EncryptOptions): Promise<StoredValue>;
  /**
   * Decrypts a stored value for the place `context` names.
   *
   * @throws {FieldsError} `DECRYPTION_FAILED` (tampered, truncated, moved to another
   *   tenant/table/column/row, wrong key); `UNSUPPORTED_VERSION`; `UNKNOWN_KEY` (the keyring lacks
   *   its key version); `PLAINTEXT_VALUE` (not a ciphertext, outside a migration window).
   */
  decrypt(
    stored: StoredValue,
    context: FieldContext,
    options?: DecryptOptions,
  ): Promise<FieldValue>;
  /**
   * Lazy rotation on write: re-encrypts `stored` with the primary data key when an older version
   * sealed it (or, inside a migration window, when it is still plaintext), and returns it
   * unchanged otherwise. Call it for the encrypted columns of every row you write back.
   * A padded value stays padded to at least its old length (rounded up to `padTo`, if given),
   * so rotating never shortens what padding hid.
   *
   * @throws {FieldsError} as {@link FieldCipher.decrypt} and {@link FieldCipher.encrypt}.
   */
  refresh(
    stored: StoredValue,
    context: FieldContext,
    options?: EncryptOptions & DecryptOptions,
  ): Promise<StoredValue>;
  /**
   * Derives and caches the keys of these columns, for every data-key version in the keyring, so
   * that {@link FieldCipher.encryptSync} and {@link FieldCipher.decryptSync} can serve them.
   * The async methods load keys on first use by themselves.
   *
   * @throws {FieldsError} provider codes when a data key cannot be unwrapped.
   * @example await fields.preload([{ table: 'users', column: 'email' }]);
   */
  preload(
    columns: ReadonlyArray<{ readonly table: string; readonly column: string }>,
  ): Promise<void>;
  /**
   * {@link FieldCipher.encrypt} without a promise, for synchronous hooks (an ORM's value
   * transformer) and hot loops. The same ciphertext format; the column must be preloaded.
   *
   * @throws {FieldsError} as {@link FieldCipher.encrypt}; `UNSUPPORTED_OPERATION` when the
   *   column was not preloaded, or where the platform's AEAD is asynchronous only (browsers).
   * @example const stored = fields.encryptSync('alice@example.com', { table: 'users', column: 'email', rowId: 42 });
   */
  encryptSync(
    value: FieldValue,
    context: FieldContext,
    options: EncryptOptions & { format: 'binary' },
  ): Uint8Array;
  encryptSync(
    value: FieldValue,
    context: FieldContext,
    options?: EncryptOptions & { format?: 'text' },
  ): string;
  encryptSync(value: FieldValue, context: FieldContext, options?: EncryptOptions): StoredValue;
  /**
   * {@link FieldCipher.decrypt} without a promise; see {@link FieldCipher.encryptSync}.
   *
   * @throws {FieldsError} as {@link FieldCipher.decrypt}; `UNSUPPORTED_OPERATION` as
   *   {@link FieldCipher.encryptSync}.
   * @example const email = fields.decryptSync(stored, { table: 'users', column: 'email', rowId: 42 });
   */
  decryptSync(stored: StoredValue, context: FieldContext, options?: DecryptOptions): FieldValue;
  /** The data-key version that sealed `stored`, or undefined for a plaintext value. */
  keyVersionOf(stored: StoredValue): number | undefined;
  /** The data-key version new values use. */
  readonly primaryVersion: number;
  /** @internal The 32-byte key of a keyring entry, unwrapped once and cached. */
  keyBytes(purpose: KeyPurpose, version: number): Promise<Uint8Array>;
  /**
   * @internal {@link FieldCipher.refresh} whatever the key version (rotation jobs decide that
   * themselves): decrypts and seals with the primary key, never shorter-padded than before.
   */
  reseal(
    stored: StoredValue,
    context: FieldContext,
    options?: EncryptOptions & DecryptOptions,
  ): Promise<StoredValue>;
}

const TEXT_PREFIX = 'cf1:';
const BINARY_MAGIC = 0xcf;
const FORMAT_VERSION = 0x01;
const CONTEXT_VERSION = 0x01;
const FIELD_KEY_LABEL = 'coffer/v1/field-key';
const SYNC_AEAD = aeadIsSynchronous();
const BINARY_FRAME = Uint8Array.of(BINARY_MAGIC, FORMAT_VERSION);

/**
 * A field cipher over a keyring. Keys are unwrapped by the provider on first use and kept in
 * memory, with the per-column keys derived from them: one provider call per key version, never
 * one per record.
 *
 * @example
 * const fields = createFieldCipher(keyring, provider);
 * const stored = await fields.encrypt('alice@example.com', { table: 'users', column: 'email', rowId: 42 });
 * const email = await fields.decrypt(stored, { table: 'users', column: 'email', rowId: 42 });
 */
export function createFieldCipher(keyring: Keyring, provider: KeyProvider): FieldCipher {
  const primary = primaryVersion(keyring, 'data');
  const unwrapped = new Map<string, Promise<Uint8Array>>();
  const columnKeys = new Map<string, Promise<AeadKey>>();

  function keyBytes(purpose: KeyPurpose, version: number): Promise<Uint8Array> {
    const id = `${purpose}/${version}`;
    let p = unwrapped.get(id);
    if (!p) {
      const entry = keyring.keys.find((k) => k.purpose === purpose && k.version === version);
      if (!entry)
        return Promise.reject(
          new FieldsError(
            'UNKNOWN_KEY',
            'fields.key',
            `keyring has no ${purpose} key version ${version}`,
          ),
        );
      p = unwrapEntry(provider, entry);
      unwrapped.set(id, p);
      // A failed unwrap (provider down) is not cached: the next call tries again.
      p.catch(() => unwrapped.delete(id));
    }
    return p;
  }

  /** Column keys ready for use; the last one used is kept aside, so the hot path looks up nothing. */
  const readyKeys = new Map<string, AeadKey>();
  let lastKey: { version: number; table: string; column: string; key: AeadKey } | undefined;

  /** The column key if it has been derived already (no await). */
  function readyColumnKey(version: number, table: string, column: string): AeadKey | undefined {
    const last = lastKey;
    if (last && last.version === version && last.table === table && last.column === column) {
      return last.key;
    }
    const key = readyKeys.get(columnKeyId(version, table, column));
    if (key) lastKey = { version, table, column, key };
    return key;
  }

  function columnKey(version: number, table: string, column: string): Promise<AeadKey> {
    const id = columnKeyId(version, table, column);
    let p = columnKeys.get(id);
    if (!p) {
      p = (async () => {
        const dataKey = await keyBytes('data', version);
        const op = 'fields.columnKey';
        // spec §1: K = HKDF-SHA256(D_v, info = "coffer/v1/field-key" || 0x00 || lp(t) || lp(c))
        const raw = await hkdf(dataKey, {
          label: FIELD_KEY_LABEL,
          length: 32,
          context: concat(nameLp(op, 'table', table), nameLp(op, 'column', column)),
        });
        try {
          const key = await importAeadKey(raw, { id: uint32be(version) });
          readyKeys.set(id, key);
          return key;
        } finally {
          raw.fill(0);
        }
      })();
      columnKeys.set(id, p);
      p.catch(() => columnKeys.delete(id));
    }
    return p;
  }

  /** The column key for a synchronous call, which cannot wait for a provider. */
  function loadedColumnKey(op: string, version: number, ctx: FieldContext): AeadKey {
    if (!SYNC_AEAD)
      throw new FieldsError(
        'UNSUPPORTED_OPERATION',
        op,
        'synchronous encryption is not available on this platform; use encrypt/decrypt',
      );
    const key = readyColumnKey(version, ctx.table, ctx.column);
    if (!key)
      throw new FieldsError(
        'UNSUPPORTED_OPERATION',
        op,
        `keys of ${ctx.table}.${ctx.column} (version ${version}) are not loaded; await preload([{ table, column }]) first`,
      );
    return key;
  }

  /**
   * spec §2: 0x01 || tenant_flag || [lp(tenant)] || lp(table) || lp(column) || lp(row_id)
   *
   * Only the last place's prefix is kept: a loop over one column (the measured hot path, see
   * bench/) reuses it, and nothing grows with the number of places a caller names, however many
   * (a map of every tenant/table/column ever seen would, even for values that fail to open).
   */
  let last: { tenant?: string; table: string; column: string; prefix: Uint8Array } | undefined;
  /** Where text-form values are sealed before their base64url is taken (ciphertext only). */
  const sealed = new Uint8Array(4096);

  function bindingContext(op: string, ctx: FieldContext): Uint8Array {
    if (typeof ctx !== 'object' || ctx === null)
      throw new FieldsError('INVALID_ARGUMENT', op, '"context" expected { table, column, rowId }');
    const { tenant, table, column } = ctx;
    let prefix: Uint8Array;
    if (last && last.table === table && last.column === column && last.tenant === tenant) {
      prefix = last.prefix;
    } else {
      const head =
        tenant === undefined
          ? Uint8Array.of(CONTEXT_VERSION, 0)
          : concat(Uint8Array.of(CONTEXT_VERSION, 1), nameLp(op, 'tenant', tenant));
      prefix = concat(head, nameLp(op, 'table', table), nameLp(op, 'column', column));
      last = { tenant, table, column, prefix };
    }
    const rowId = rowIdText(op, ctx.rowId);
    const n = rowId.length;
    if (n <= 0x7f) {
      const out = new Uint8Array(prefix.length + 2 + n);
      out.set(prefix, 0);
      let o = prefix.length;
      out[o++] = 0;
      out[o++] = n;
      for (let i = 0; i < n; i++) {
        const c = rowId.charCodeAt(i);
        if (c > 0x7f) return concat(prefix, lp(op, 'rowId', rowId, MAX_ROW_ID_BYTES));
        out[o++] = c;
      }
      return out;
    }
    return concat(prefix, lp(op, 'rowId', rowId, MAX_ROW_ID_BYTES));
  }

  function parse(
    op: string,
    stored: StoredValue,
  ): { envelope: Uint8Array } | { plaintext: StoredValue } {
    if (typeof stored === 'string') {
      if (stored.startsWith(TEXT_PREFIX)) {
        try {
          return { envelope: base64urlToBytes(stored.slice(TEXT_PREFIX.length)) };
        } catch {
          throw new FieldsError('DECRYPTION_FAILED', op, 'decryption failed');
        }
      }
      if (/^cf[0-9]:/.test(stored))
        throw new FieldsError(
          'UNSUPPORTED_VERSION',
          op,
          `unsupported field format ${stored.slice(0, 3)}`,
        );
      return { plaintext: stored };
    }
    if (stored instanceof Uint8Array) {
      if (stored[0] !== BINARY_MAGIC) return { plaintext: stored };
      if (stored[1] !== FORMAT_VERSION)
        throw new FieldsError(
          'UNSUPPORTED_VERSION',
          op,
          `unsupported field format version ${stored[1] ?? 'none'}`,
        );
      return { envelope: stored.subarray(2) };
    }
    throw new FieldsError('INVALID_ARGUMENT', op, '"stored" expected a string or Uint8Array');
  }

  function versionOfEnvelope(op: string, envelope: Uint8Array): number {
    if (envelope[0] === 1 && envelope[1] === 1 && envelope[2] === 4 && envelope.length >= 35) {
      return (
        ((envelope[3]! << 24) | (envelope[4]! << 16) | (envelope[5]! << 8) | envelope[6]!) >>> 0
      );
    }
    let keyId: Uint8Array;
    try {
      keyId = readEnvelopeHeader(envelope).keyId;
    } catch {
      throw new FieldsError('DECRYPTION_FAILED', op, 'decryption failed');
    }
    if (keyId.length !== 4) throw new FieldsError('DECRYPTION_FAILED', op, 'decryption failed');
    return new DataView(keyId.buffer, keyId.byteOffset, 4).getUint32(0);
  }

  /** Envelope → stored form; the format is checked before anything is sealed. */
  function checkFormat(op: string, format: EncryptOptions['format']): void {
    if (format !== undefined && format !== 'text' && format !== 'binary')
      throw new FieldsError('INVALID_ARGUMENT', op, '"format" expected text or binary');
  }

  /** Seals `plaintext`; the binary form's two-byte tag is written in front as the frame. */
  function seal(
    key: AeadKey,
    plaintext: Uint8Array,
    aad: Uint8Array,
    format: EncryptOptions['format'],
  ) {
    if (format === 'binary')
      return encryptSync(key, plaintext, { context: aad, frame: BINARY_FRAME });
    // The text form is the envelope's base64url, made at once: seal into one reused buffer.
    return (
      TEXT_PREFIX + bytesToBase64url(encryptSync(key, plaintext, { context: aad, into: sealed }))
    );
  }

  async function sealAsync(
    key: AeadKey,
    plaintext: Uint8Array,
    aad: Uint8Array,
    format: EncryptOptions['format'],
  ): Promise<StoredValue> {
    if (SYNC_AEAD) return seal(key, plaintext, aad, format);
    if (format === 'binary') return encrypt(key, plaintext, { context: aad, frame: BINARY_FRAME });
    return TEXT_PREFIX + bytesToBase64url(await encrypt(key, plaintext, { context: aad }));
  }

  async function encryptValue(
    value: FieldValue,
    ctx: FieldContext,
    options: EncryptOptions = {},
    minLength?: number,
  ): Promise<StoredValue> {
    const op = 'fields.encrypt';
    checkFormat(op, options.format);
    const aad = bindingContext(op, ctx);
    const plaintext = encodeValue(op, value, options.padTo, minLength);
    try {
      const key =
        readyColumnKey(primary, ctx.table, ctx.column) ??
        (await columnKey(primary, ctx.table, ctx.column));
      return await sealAsync(key, plaintext, aad, options.format);
    } finally {
      // The encoded value may sit in Node's Buffer pool (value-codec fast path): wipe it.
      plaintext.fill(0);
    }
  }

  function encryptValueSync(
    value: FieldValue,
    ctx: FieldContext,
    options: EncryptOptions = {},
  ): StoredValue {
    const op = 'fields.encryptSync';
    checkFormat(op, options.format);
    const aad = bindingContext(op, ctx);
    const key = loadedColumnKey(op, primary, ctx);
    const plaintext = encodeValue(op, value, options.padTo);
    try {
      return seal(key, plaintext, aad, options.format);
    } finally {
      plaintext.fill(0);
    }
  }

  /** What decrypting `stored` needs, or the plaintext itself inside a migration window. */
  function openable(
    op: string,
    stored: StoredValue,
    ctx: FieldContext,
    options: DecryptOptions,
  ): { envelope: Uint8Array; aad: Uint8Array; version: number } | { value: StoredValue } {
    const parsed = parse(op, stored);
    if ('plaintext' in parsed) {
      if (options.allowPlaintext) return { value: parsed.plaintext };
      throw new FieldsError(
        'PLAINTEXT_VALUE',
        op,
        `${ctx?.table}.${ctx?.column} holds a value that is not encrypted`,
      );
    }
    const aad = bindingContext(op, ctx);
    const version = versionOfEnvelope(op, parsed.envelope);
    if (!keyring.keys.some((k) => k.purpose === 'data' && k.version === version)) {
      throw new FieldsError('UNKNOWN_KEY', op, `keyring has no data key version ${version}`);
    }
    return { envelope: parsed.envelope, aad, version };
  }

  function decoded(op: string, plaintext: Uint8Array): FieldValue {
    try {
      return decodeValue(op, plaintext);
    } finally {
      plaintext.fill(0);
    }
  }

  function failed(op: string, err: unknown): unknown {
    return CryptoError.is(err)
      ? new FieldsError('DECRYPTION_FAILED', op, 'decryption failed')
      : err;
  }

  /** The plaintext bytes of an openable envelope (the caller wipes them). */
  async function openEnvelope(
    op: string,
    o: { envelope: Uint8Array; aad: Uint8Array; version: number },
    ctx: FieldContext,
  ): Promise<Uint8Array> {
    const key =
      readyColumnKey(o.version, ctx.table, ctx.column) ??
      (await columnKey(o.version, ctx.table, ctx.column));
    try {
      return SYNC_AEAD
        ? decryptSync(key, o.envelope, { context: o.aad })
        : await decrypt(key, o.envelope, { context: o.aad });
    } catch (err) {
      throw failed(op, err);
    }
  }

  /**
   * Decrypts and seals again under the primary key. A padded plaintext keeps at least its length
   * (spec §3: the pad flag is inside the plaintext), whatever `padTo` says now: rotation must
   * not reveal a value's length that padding hid.
   */
  async function resealValue(
    stored: StoredValue,
    ctx: FieldContext,
    options: EncryptOptions & DecryptOptions,
  ): Promise<StoredValue> {
    // Failures to open read as decrypt's (jobs and the CLI name them so).
    const op = 'fields.decrypt';
    const format = options.format ?? (typeof stored === 'string' ? 'text' : 'binary');
    const sealOptions: EncryptOptions = {
      format,
      ...(options.padTo === undefined ? {} : { padTo: options.padTo }),
    };
    const o = openable(op, stored, ctx, options);
    if ('value' in o) return encryptValue(o.value, ctx, sealOptions);
    const plaintext = await openEnvelope(op, o, ctx);
    const paddedLength = plaintext[1] === 1 ? plaintext.length : undefined;
    return encryptValue(decoded(op, plaintext), ctx, sealOptions, paddedLength);
  }

  return {
    primaryVersion: primary,
    keyBytes,
    encrypt: encryptValue as FieldCipher['encrypt'],
    encryptSync: encryptValueSync as FieldCipher['encryptSync'],

    async decrypt(stored, ctx, options = {}) {
      const op = 'fields.decrypt';
      const o = openable(op, stored, ctx, options);
      if ('value' in o) return o.value;
      // Inline rather than through openEnvelope: one await fewer on the measured hot path.
      const key =
        readyColumnKey(o.version, ctx.table, ctx.column) ??
        (await columnKey(o.version, ctx.table, ctx.column));
      let plaintext: Uint8Array;
      try {
        plaintext = SYNC_AEAD
          ? decryptSync(key, o.envelope, { context: o.aad })
          : await decrypt(key, o.envelope, { context: o.aad });
      } catch (err) {
        throw failed(op, err);
      }
      return decoded(op, plaintext);
    },

    decryptSync(stored, ctx, options = {}) {
      const op = 'fields.decryptSync';
      const o = openable(op, stored, ctx, options);
      if ('value' in o) return o.value;
      const key = loadedColumnKey(op, o.version, ctx);
      let plaintext: Uint8Array;
      try {
        plaintext = decryptSync(key, o.envelope, { context: o.aad });
      } catch (err) {
        throw failed(op, err);
      }
      return decoded(op, plaintext);
    },

    async preload(columns) {
      const op = 'fields.preload';
      if (!Array.isArray(columns))
        throw new FieldsError('INVALID_ARGUMENT', op, '"columns" expected [{ table, column }]');
      const versions = keyring.keys.filter((k) => k.purpose === 'data').map((k) => k.version);
      const pending: Promise<AeadKey>[] = [];
      for (const entry of columns) {
        if (typeof entry !== 'object' || entry === null)
          throw new FieldsError('INVALID_ARGUMENT', op, '"columns" expected [{ table, column }]');
        const { table, column } = entry;
        // Validates the names as encryption does (bindingContext checks them).
        bindingContext(op, { table, column, rowId: 1 });
        for (const v of versions) pending.push(columnKey(v, table, column));
      }
      await Promise.all(pending);
    },

    async refresh(stored, ctx, options = {}) {
      const version = this.keyVersionOf(stored);
      if (version === primary) return stored;
      return resealValue(stored, ctx, options);
    },

    reseal(stored, ctx, options = {}) {
      return resealValue(stored, ctx, options);
    },

    keyVersionOf(stored) {
      const parsed = parse('fields.keyVersionOf', stored);
      return 'plaintext' in parsed
        ? undefined
        : versionOfEnvelope('fields.keyVersionOf', parsed.envelope);
    },
  };
}

/** Unambiguous: a name may contain NUL, so a NUL-joined id could name two columns. */
function columnKeyId(version: number, table: string, column: string): string {
  return JSON.stringify([version, table, column]);
}

function rowIdText(op: string, rowId: unknown): string {
  if (typeof rowId === 'string' && rowId.length > 0) return rowId;
  if (typeof rowId === 'number' && Number.isSafeInteger(rowId)) return String(rowId);
  if (typeof rowId === 'bigint') return rowId.toString(10);
  throw new FieldsError(
    'INVALID_ARGUMENT',
    op,
    '"rowId" expected a non-empty string, a safe integer or a bigint',
  );
}

function bytesToBase64url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}
function base64urlToBytes(text: string): Uint8Array {
  const bytes = Buffer.from(text, 'base64url');
  if (bytes.toString('base64url') !== text) throw new Error('non-canonical base64url');
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
