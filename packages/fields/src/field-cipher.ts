import {
  type AeadKey,
  CryptoError,
  decrypt,
  encrypt,
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
   *
   * @throws {FieldsError} as {@link FieldCipher.decrypt} and {@link FieldCipher.encrypt}.
   */
  refresh(
    stored: StoredValue,
    context: FieldContext,
    options?: EncryptOptions & DecryptOptions,
  ): Promise<StoredValue>;
  /** The data-key version that sealed `stored`, or undefined for a plaintext value. */
  keyVersionOf(stored: StoredValue): number | undefined;
  /** The data-key version new values use. */
  readonly primaryVersion: number;
  /** @internal The 32-byte key of a keyring entry, unwrapped once and cached. */
  keyBytes(purpose: KeyPurpose, version: number): Promise<Uint8Array>;
}

const TEXT_PREFIX = 'cf1:';
const BINARY_MAGIC = 0xcf;
const FORMAT_VERSION = 0x01;
const CONTEXT_VERSION = 0x01;
const FIELD_KEY_LABEL = 'coffer/v1/field-key';

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
  const prefixes = new Map<string, Uint8Array>();

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

  let lastKey:
    | { version: number; table: string; column: string; key: Promise<AeadKey>; ready?: AeadKey }
    | undefined;

  /** The column key: the last one used is kept resolved, so the hot path awaits nothing. */
  function columnKey(version: number, table: string, column: string): AeadKey | Promise<AeadKey> {
    const last = lastKey;
    if (last && last.version === version && last.table === table && last.column === column) {
      return last.ready ?? last.key;
    }
    const key = columnKeyUncached(version, table, column);
    const entry: NonNullable<typeof lastKey> = { version, table, column, key };
    lastKey = entry;
    key.then(
      (ready) => {
        entry.ready = ready;
      },
      () => {
        if (lastKey === entry) lastKey = undefined;
      },
    );
    return key;
  }

  function columnKeyUncached(version: number, table: string, column: string): Promise<AeadKey> {
    // Unambiguous: a name may contain NUL, so a NUL-joined key could name two columns.
    const id = JSON.stringify([version, table, column]);
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
          return await importAeadKey(raw, { id: uint32be(version) });
        } finally {
          raw.fill(0);
        }
      })();
      columnKeys.set(id, p);
      p.catch(() => columnKeys.delete(id));
    }
    return p;
  }

  /** spec §2: 0x01 || tenant_flag || [lp(tenant)] || lp(table) || lp(column) || lp(row_id) */
  let last: { tenant?: string; table: string; column: string; prefix: Uint8Array } | undefined;

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
      const fresh = concat(head, nameLp(op, 'table', table), nameLp(op, 'column', column));
      const id = String.fromCharCode(...fresh);
      prefix = prefixes.get(id) ?? fresh;
      prefixes.set(id, prefix);
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

  async function encryptValue(
    value: FieldValue,
    ctx: FieldContext,
    options: EncryptOptions = {},
  ): Promise<StoredValue> {
    const op = 'fields.encrypt';
    const aad = bindingContext(op, ctx);
    const plaintext = encodeValue(op, value, options.padTo);
    const pending = columnKey(primary, ctx.table, ctx.column);
    const key = pending instanceof Promise ? await pending : pending;
    let envelope: Uint8Array;
    try {
      envelope = await encrypt(key, plaintext, { context: aad });
    } finally {
      // The encoded value may sit in Node's Buffer pool (value-codec fast path): wipe it.
      plaintext.fill(0);
    }
    if (options.format === 'binary') {
      const out = new Uint8Array(2 + envelope.length);
      out[0] = BINARY_MAGIC;
      out[1] = FORMAT_VERSION;
      out.set(envelope, 2);
      return out;
    }
    if (options.format !== undefined && options.format !== 'text') {
      throw new FieldsError('INVALID_ARGUMENT', op, '"format" expected text or binary');
    }
    return TEXT_PREFIX + bytesToBase64url(envelope);
  }

  return {
    primaryVersion: primary,
    keyBytes,
    encrypt: encryptValue as FieldCipher['encrypt'],

    async decrypt(stored, ctx, options = {}) {
      const op = 'fields.decrypt';
      const parsed = parse(op, stored);
      if ('plaintext' in parsed) {
        if (options.allowPlaintext) return parsed.plaintext;
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
      const pending = columnKey(version, ctx.table, ctx.column);
      const key = pending instanceof Promise ? await pending : pending;
      let plaintext: Uint8Array;
      try {
        plaintext = await decrypt(key, parsed.envelope, { context: aad });
      } catch (err) {
        if (CryptoError.is(err))
          throw new FieldsError('DECRYPTION_FAILED', op, 'decryption failed');
        throw err;
      }
      try {
        return decodeValue(op, plaintext);
      } finally {
        plaintext.fill(0);
      }
    },

    async refresh(stored, ctx, options = {}) {
      const version = this.keyVersionOf(stored);
      if (version === primary) return stored;
      const value = await this.decrypt(stored, ctx, options);
      const format = options.format ?? (typeof stored === 'string' ? 'text' : 'binary');
      return encryptValue(value, ctx, { ...options, format });
    },

    keyVersionOf(stored) {
      const parsed = parse('fields.keyVersionOf', stored);
      return 'plaintext' in parsed
        ? undefined
        : versionOfEnvelope('fields.keyVersionOf', parsed.envelope);
    },
  };
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
