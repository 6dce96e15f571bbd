import { createKeyedHmacSha256, hkdf, type KeyedHmacSha256, toHex } from '@coffer/crypto';
import { concat, nameLp } from './_bytes.js';
import { FieldsError } from './errors.js';
import type { FieldCipher } from './field-cipher.js';
import { type Keyring, primaryVersion } from './keyring.js';
import { encodeValue, type FieldValue } from './value-codec.js';

/** Applied to string values before hashing, in the order given. */
export type Normalizer = 'trim' | 'casefold' | 'nfc';

export interface BlindIndexSpec {
  readonly tenant?: string;
  readonly table: string;
  readonly column: string;
  /** The index's name; several indexes on one column are independent. */
  readonly name: string;
  /** Output bits, 8 to 256; default 32. Use {@link planBlindIndex} to choose. */
  readonly bits?: number;
  readonly normalize?: readonly Normalizer[];
  /** Index key version; default the newest (a shadow column computes the next one). */
  readonly version?: number;
}

export const DEFAULT_INDEX_BITS = 32;
const LABEL = 'coffer/v1/blind-index';

// No prototype: a name such as 'toString' or 'constructor' finds nothing (see normalized).
const NORMALIZERS: Readonly<Record<string, ((s: string) => string) | undefined>> = Object.freeze(
  Object.assign(Object.create(null) as Record<string, (s: string) => string>, {
    trim: (s: string) => s.trim(),
    casefold: (s: string) => s.toLowerCase(),
    nfc: (s: string) => s.normalize('NFC'),
  }),
);
const NORMALIZER_NAMES: readonly Normalizer[] = ['trim', 'casefold', 'nfc'];

/** `v` through the spec's normalisers, in order; an unknown name is INVALID_ARGUMENT. */
function normalized(op: string, v: string, names: readonly Normalizer[] | undefined): string {
  if (names === undefined) return v;
  if (!Array.isArray(names))
    throw new FieldsError('INVALID_ARGUMENT', op, '"normalize" expected an array of names');
  for (const n of names) {
    const f = typeof n === 'string' ? NORMALIZERS[n] : undefined;
    if (!f)
      throw new FieldsError(
        'INVALID_ARGUMENT',
        op,
        `"normalize" expected names among ${NORMALIZER_NAMES.join(', ')}`,
      );
    v = f(v);
  }
  return v;
}

/**
 * Blind indexes for equality search over encrypted columns: HMAC-SHA256 under a per-column,
 * per-index key derived from the keyring's index key (never the encryption key), truncated to
 * `bits` (spec/field-v1.md §6). Pass several values for a compound index.
 *
 * @example
 * const index = createBlindIndexer(keyring, fields);
 * const emailIdx = await index.compute('Alice@Example.com', { table: 'users', column: 'email', name: 'email_eq', normalize: ['trim', 'casefold'] });
 */
export function createBlindIndexer(keyring: Keyring, fields: FieldCipher) {
  /** Index keys by [version, table, column, name], as HMACs keyed once (their pads pre-hashed). */
  const keys = new Map<string, Promise<KeyedHmacSha256>>();
  const ready = new Map<string, KeyedHmacSha256>();
  const newest = () => primaryVersion(keyring, 'index');
  // Scratch space for one computation at a time (it is synchronous), wiped after each.
  let scratch = Buffer.alloc(256);
  const tag = new Uint8Array(32);
  /** The last spec's resolved parts: a loop over one column pays for them once. */
  let last:
    | {
        table: string;
        column: string;
        name: string;
        tenant: string | undefined;
        version: number;
        /** The index key's HKDF context (spec §6): lp(table) || lp(column) || lp(name). */
        context: Uint8Array;
        id: string;
        tenantPart: Uint8Array;
      }
    | undefined;

  function partsOf(op: string, spec: BlindIndexSpec) {
    const version = spec.version ?? newest();
    const memo = last;
    if (
      memo &&
      memo.table === spec.table &&
      memo.column === spec.column &&
      memo.name === spec.name &&
      memo.tenant === spec.tenant &&
      memo.version === version
    )
      return memo;
    const context = concat(
      nameLp(op, 'table', spec.table),
      nameLp(op, 'column', spec.column),
      nameLp(op, 'name', spec.name),
    );
    last = {
      table: spec.table,
      column: spec.column,
      name: spec.name,
      tenant: spec.tenant,
      version,
      context,
      id: `${version}\0${toHex(context)}`,
      tenantPart:
        spec.tenant === undefined
          ? Uint8Array.of(0)
          : concat(Uint8Array.of(1), nameLp(op, 'tenant', spec.tenant)),
    };
    return last;
  }

  function indexKey(parts: { id: string; version: number; context: Uint8Array }) {
    let p = keys.get(parts.id);
    if (!p) {
      p = fields
        .keyBytes('index', parts.version)
        .then((root) => hkdf(root, { label: LABEL, length: 32, context: parts.context }))
        .then((key) => {
          const mac = createKeyedHmacSha256(key);
          key.fill(0);
          ready.set(parts.id, mac);
          return mac;
        });
      keys.set(parts.id, p);
      // A failed key (provider down) is not kept: the next call tries again.
      p.catch(() => keys.delete(parts.id));
    }
    return p;
  }

  /** The spec's bits, checked (its normalisers are checked as they run: see normalized). */
  function checkBits(op: string, spec: BlindIndexSpec): number {
    checkSpec(op, spec);
    const bits = spec.bits ?? DEFAULT_INDEX_BITS;
    if (!Number.isInteger(bits) || bits < 8 || bits > 256) {
      throw new FieldsError('INVALID_ARGUMENT', op, '"bits" expected an integer from 8 to 256');
    }
    return bits;
  }

  /** spec §6: the framed message, HMAC under the index key, truncated to `bits`, as hex. */
  function indexWith(
    op: string,
    mac: KeyedHmacSha256,
    tenantPart: Uint8Array,
    value: FieldValue | readonly FieldValue[],
    spec: BlindIndexSpec,
    bits: number,
  ): string {
    let message: Uint8Array;
    if (typeof value === 'string') {
      // One value, a string: the whole message written into the indexer's scratch buffer.
      const v = normalized(op, value, spec.normalize);
      const tp = tenantPart;
      const size = tp.length + 6 + Buffer.byteLength(v, 'utf8');
      if (scratch.length < size) scratch = Buffer.alloc(Math.max(size, 2 * scratch.length));
      scratch.set(tp, 0);
      scratch.writeUInt32BE(size - tp.length - 4, tp.length);
      scratch[tp.length + 4] = 0x01;
      scratch[tp.length + 5] = 0;
      scratch.write(v, tp.length + 6, 'utf8');
      message = scratch.subarray(0, size);
    } else {
      const values = Array.isArray(value)
        ? (value as readonly FieldValue[])
        : [value as FieldValue];
      // Normalisers run on strings only; the names are checked even when none is (spec §6).
      normalized(op, '', spec.normalize);
      const parts: Uint8Array[] = [tenantPart];
      try {
        for (let v of values) {
          if (typeof v === 'string') v = normalized(op, v, spec.normalize);
          const encoded = encodeValue(op, v);
          const len = new Uint8Array(4);
          new DataView(len.buffer).setUint32(0, encoded.length);
          parts.push(len, encoded);
        }
        message = concat(...parts);
      } finally {
        // encodeValue writes strings into Node's shared Buffer pool, where they would outlive
        // this call (field-cipher wipes its plaintexts for the same reason): wipe every part.
        for (let i = 1; i < parts.length; i++) parts[i]!.fill(0);
      }
    }
    try {
      mac.mac(message, tag);
    } finally {
      // The message holds the (normalised) value: do not leave it in memory.
      message.fill(0);
    }
    const length = Math.ceil(bits / 8);
    if (bits % 8 !== 0) tag[length - 1]! &= (0xff << (8 - (bits % 8))) & 0xff;
    const hex = toHex(tag.subarray(0, length));
    tag.fill(0);
    return hex;
  }

  return {
    /**
     * The blind index of `value` (or of several values, for a compound index), as lowercase hex.
     *
     * @throws {FieldsError} `INVALID_ARGUMENT` for bad bits, names or normalisers; provider codes.
     */
    async compute(
      value: FieldValue | readonly FieldValue[],
      spec: BlindIndexSpec,
    ): Promise<string> {
      const op = 'fields.blindIndex';
      const bits = checkBits(op, spec);
      const parts = partsOf(op, spec);
      const mac = ready.get(parts.id) ?? (await indexKey(parts));
      return indexWith(op, mac, parts.tenantPart, value, spec, bits);
    },

    /**
     * {@link compute} without a promise, for synchronous hooks and hot loops: the index key must
     * have been loaded by {@link preload} (or an earlier `compute` of the same index).
     *
     * @throws {FieldsError} as `compute`; `UNSUPPORTED_OPERATION` when the key is not loaded.
     * @example await index.preload([spec]); const idx = index.computeSync('a@example.com', spec);
     */
    computeSync(value: FieldValue | readonly FieldValue[], spec: BlindIndexSpec): string {
      const op = 'fields.blindIndexSync';
      const bits = checkBits(op, spec);
      const parts = partsOf(op, spec);
      const mac = ready.get(parts.id);
      if (!mac)
        throw new FieldsError(
          'UNSUPPORTED_OPERATION',
          op,
          `the index key of ${spec.table}.${spec.column} ${spec.name} (version ${parts.version}) is not loaded; await preload([spec]) first`,
        );
      return indexWith(op, mac, parts.tenantPart, value, spec, bits);
    },

    /**
     * Derives and keeps the keys of these indexes (the newest version, or the spec's), so that
     * {@link computeSync} can serve them.
     *
     * @throws {FieldsError} provider codes when the index key cannot be unwrapped.
     */
    async preload(specs: readonly BlindIndexSpec[]): Promise<void> {
      const op = 'fields.blindIndexPreload';
      if (!Array.isArray(specs))
        throw new FieldsError('INVALID_ARGUMENT', op, '"specs" expected an array of index specs');
      for (const spec of specs) checkSpec(op, spec);
      await Promise.all(specs.map((spec) => indexKey(partsOf(op, spec))));
    },
  };
}

function checkSpec(op: string, spec: unknown): asserts spec is BlindIndexSpec {
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec))
    throw new FieldsError('INVALID_ARGUMENT', op, '"spec" expected { table, column, name }');
}

export interface BlindIndexPlan {
  readonly rows: number;
  readonly bits: number;
  /** Expected rows that share one index value, were every value distinct: N / 2^bits. */
  readonly rowsPerIndexValue: number;
  /** Expected non-matching rows a lookup returns (to be filtered by decrypting): (N - 1) / 2^bits. */
  readonly falsePositivesPerLookup: number;
  /** The range of bits that keeps at least 2 rows per index value and at most `maxCandidates` false positives. */
  readonly recommended: { readonly min: number; readonly max: number } | undefined;
  /** Plain-language statements of what a stolen database reveals through this index. */
  readonly leaks: readonly string[];
}

/**
 * Sizes a blind index for an expected row count, the way CipherSweet's planner does: too many
 * bits and each index value pins down one row (the index leaks exact equality); too few and
 * every lookup returns many rows to decrypt and discard.
 *
 * @example planBlindIndex({ rows: 1_000_000 }) // recommended bits, false-positive rate, leakage
 */
export function planBlindIndex(options: {
  rows: number;
  bits?: number;
  maxCandidates?: number;
}): BlindIndexPlan {
  const op = 'fields.planBlindIndex';
  const { rows, maxCandidates = 1000 } = options;
  if (!Number.isSafeInteger(rows) || rows < 1)
    throw new FieldsError('INVALID_ARGUMENT', op, '"rows" expected a positive integer');
  if (!Number.isSafeInteger(maxCandidates) || maxCandidates < 1)
    throw new FieldsError('INVALID_ARGUMENT', op, '"maxCandidates" expected a positive integer');
  const max = Math.floor(Math.log2(rows / 2));
  const min = Math.max(8, Math.ceil(Math.log2(rows / maxCandidates)));
  const recommended = max >= min && max >= 8 ? { min, max: Math.min(max, 256) } : undefined;
  const bits = options.bits ?? recommended?.max ?? Math.max(8, Math.min(256, max));
  if (!Number.isInteger(bits) || bits < 8 || bits > 256)
    throw new FieldsError('INVALID_ARGUMENT', op, '"bits" expected an integer from 8 to 256');
  const rowsPerIndexValue = rows / 2 ** bits;
  const falsePositivesPerLookup = (rows - 1) / 2 ** bits;
  const leaks = [
    'which rows share a value (equal normalised values always have equal indexes), and so how often each value occurs',
    rowsPerIndexValue < 2
      ? `with ${bits} bits and ${rows} rows most index values belong to a single row: the index nearly identifies values across rows; use at most ${Math.max(8, max)} bits to keep collisions as cover`
      : `about ${rowsPerIndexValue.toFixed(1)} rows share each index value, so an index match alone does not prove two rows are equal`,
    'with the index key (a stolen key provider), a guessed value can be confirmed: blind indexes on low-entropy data (booleans, small enums, birth years) are dictionaries',
  ];
  return { rows, bits, rowsPerIndexValue, falsePositivesPerLookup, recommended, leaks };
}
