import { hkdf, hmac, toHex } from '@coffer/crypto';
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

const NORMALIZERS: Record<Normalizer, (s: string) => string> = {
  trim: (s) => s.trim(),
  casefold: (s) => s.toLowerCase(),
  nfc: (s) => s.normalize('NFC'),
};

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
  const keys = new Map<string, Promise<Uint8Array>>();
  const newest = () => primaryVersion(keyring, 'index');
  let last:
    | {
        table: string;
        column: string;
        name: string;
        tenant: string | undefined;
        specVersion: number | undefined;
        key: Promise<Uint8Array>;
        tenantPart: Uint8Array;
      }
    | undefined;

  function indexKey(op: string, spec: BlindIndexSpec, version: number): Promise<Uint8Array> {
    const id = JSON.stringify([version, spec.table, spec.column, spec.name]);
    let p = keys.get(id);
    if (!p) {
      const context = concat(
        nameLp(op, 'table', spec.table),
        nameLp(op, 'column', spec.column),
        nameLp(op, 'name', spec.name),
      );
      p = fields
        .keyBytes('index', version)
        .then((root) => hkdf(root, { label: LABEL, length: 32, context }));
      keys.set(id, p);
      p.catch(() => keys.delete(id));
    }
    return p;
  }

  return {
    /**
     * The blind index of `value` (or of several values, for a compound index), as lowercase hex.
     *
     * @throws {FieldsError} `INVALID_ARGUMENT` for bad bits or names; provider codes.
     */
    async compute(
      value: FieldValue | readonly FieldValue[],
      spec: BlindIndexSpec,
    ): Promise<string> {
      const op = 'fields.blindIndex';
      const bits = spec.bits ?? DEFAULT_INDEX_BITS;
      if (!Number.isInteger(bits) || bits < 8 || bits > 256) {
        throw new FieldsError('INVALID_ARGUMENT', op, '"bits" expected an integer from 8 to 256');
      }
      let memo = last;
      if (
        !memo ||
        !(
          memo.table === spec.table &&
          memo.column === spec.column &&
          memo.name === spec.name &&
          memo.tenant === spec.tenant &&
          memo.specVersion === spec.version
        )
      ) {
        const version = spec.version ?? newest();
        memo = {
          table: spec.table,
          column: spec.column,
          name: spec.name,
          tenant: spec.tenant,
          specVersion: spec.version,
          key: indexKey(op, spec, version),
          tenantPart:
            spec.tenant === undefined
              ? Uint8Array.of(0)
              : concat(Uint8Array.of(1), nameLp(op, 'tenant', spec.tenant)),
        };
        last = memo;
        // A failed key (provider down) is not kept: the next call tries again.
        const failed = memo;
        failed.key.catch(() => {
          if (last === failed) last = undefined;
        });
      }
      const key = await memo.key;
      let message: Uint8Array;
      if (typeof value === 'string') {
        // One value, a string: the whole message written into one pooled buffer.
        let v = value;
        for (const n of spec.normalize ?? []) v = NORMALIZERS[n](v);
        const tp = memo.tenantPart;
        const length = Buffer.byteLength(v, 'utf8');
        const buf = Buffer.allocUnsafe(tp.length + 6 + length);
        buf.set(tp, 0);
        buf.writeUInt32BE(2 + length, tp.length);
        buf[tp.length + 4] = 0x01;
        buf[tp.length + 5] = 0;
        buf.write(v, tp.length + 6, 'utf8');
        message = buf;
      } else {
        const values = Array.isArray(value)
          ? (value as readonly FieldValue[])
          : [value as FieldValue];
        const parts: Uint8Array[] = [memo.tenantPart];
        for (let v of values) {
          if (typeof v === 'string')
            for (const n of spec.normalize ?? []) v = NORMALIZERS[n](v as string);
          const encoded = encodeValue(op, v);
          const len = new Uint8Array(4);
          new DataView(len.buffer).setUint32(0, encoded.length);
          parts.push(len, encoded);
        }
        message = concat(...parts);
      }
      const mac = await hmac('SHA-256', key, message);
      // The message holds the (normalised) value: do not leave it in the Buffer pool.
      message.fill(0);
      const out = mac.subarray(0, Math.ceil(bits / 8));
      if (bits % 8 !== 0) out[out.length - 1]! &= (0xff << (8 - (bits % 8))) & 0xff;
      return toHex(out);
    },
  };
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
