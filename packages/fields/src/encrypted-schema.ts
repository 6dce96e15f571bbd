import type { createBlindIndexer, Normalizer } from './blind-index.js';
import { FieldsError } from './errors.js';
import type { FieldCipher, FieldContext, StoredValue } from './field-cipher.js';
import type { RowKey } from './reencrypt.js';
import { type FieldType, type FieldValue, type JsonValue, typeOf } from './value-codec.js';

/** One blind index of an encrypted column, stored in its own column (spec/field-v1.md §6). */
export interface BlindIndexConfig {
  /** Output bits, 8 to 256 (default 32). Size it with `planBlindIndex`. */
  readonly bits?: number;
  /** Applied to string values before hashing, in this order. */
  readonly normalize?: readonly Normalizer[];
  /**
   * Index-key version of this index; default the keyring's newest. Pin it before adding an
   * index key (`rotateKey(…, 'index')`): unpinned, the new key would switch both writes and
   * lookups to it at once, and lookups would miss every row indexed before.
   */
  readonly version?: number;
  /**
   * The shadow index of a rotation in progress (the steps are in `ShadowIndexSpec`'s TSDoc):
   * `encryptRow` also writes the column `<index>_next`, computed under `next.version` (with
   * `next.bits` and `next.normalize`, by default this index's), and `blindIndex(…, { next:
   * true })` computes lookups against it.
   */
  readonly next?: NextBlindIndexConfig;
}

/** The index a rotation moves to, written to the shadow column `<index>_next`. */
export interface NextBlindIndexConfig {
  /** Index-key version of the shadow column. */
  readonly version: number;
  /** Output bits of the shadow column; default the index's own. */
  readonly bits?: number;
  /** Normalisers of the shadow column; default the index's own. */
  readonly normalize?: readonly Normalizer[];
}

/** Suffix of a rotation's shadow index column (as `shadowColumnOf` names it for `reencrypt`). */
const SHADOW_SUFFIX = '_next';

/**
 * @internal The columns that hold the blind indexes of one encrypted column: each index's
 * column and, during a rotation, its shadow column `<index>_next`.
 */
export function indexColumnsOf(c: EncryptedColumnConfig): string[] {
  const out: string[] = [];
  for (const [index, ix] of Object.entries(c.blindIndexes ?? {})) {
    out.push(index);
    if (ix?.next !== undefined) out.push(`${index}${SHADOW_SUFFIX}`);
  }
  return out;
}

/** How one encrypted column is stored. */
export interface EncryptedColumnConfig {
  /** The type of the plaintext; values of any other type are refused on write. */
  readonly type: FieldType;
  /** `text` (default) for text columns, `binary` for bytea/blob columns. */
  readonly format?: 'text' | 'binary';
  /** Pad plaintexts to a multiple of this many bytes (8 to 4096), hiding exact lengths. */
  readonly padTo?: number;
  /**
   * Blind indexes of this column, keyed by the name of the column that stores each one. That
   * name is also the index's name in its key derivation: renaming the column means recomputing
   * the index.
   */
  readonly blindIndexes?: Readonly<Record<string, BlindIndexConfig>>;
  /**
   * Migration window: while true, a value read from this column that is not a Coffer ciphertext
   * is returned as it is (spec §5.1) instead of failing with `PLAINTEXT_VALUE`. Writes are
   * always encrypted.
   */
  readonly migrating?: boolean;
}

/** The encrypted columns of one table and the columns their ciphertexts are bound to. */
export interface EncryptedTableConfig {
  /** The primary-key column: every ciphertext is bound to the row's value of it (spec §2). */
  readonly primaryKey: string;
  /** The tenant column, when rows belong to tenants: ciphertexts are bound to its value too. */
  readonly tenantColumn?: string;
  /** Encrypted columns by column name (as the database names them). */
  readonly columns: Readonly<Record<string, EncryptedColumnConfig>>;
}

/** Encrypted tables by table name: the one description both ORM integrations work from. */
export type EncryptedSchema = Readonly<Record<string, EncryptedTableConfig>>;

/** The JavaScript type of each field type. */
export interface FieldTypeMap {
  string: string;
  number: number;
  bigint: bigint;
  boolean: boolean;
  date: Date;
  json: JsonValue;
  bytes: Uint8Array;
}

/** The plaintext type of an encrypted column's configuration. */
export type PlaintextOf<C extends EncryptedColumnConfig> = FieldTypeMap[C['type']];

/** What the ORM integrations need of `createBlindIndexer(keyring, fields)`. */
export type BlindIndexer = Pick<ReturnType<typeof createBlindIndexer>, 'compute'>;

const FIELD_TYPES: readonly FieldType[] = [
  'string',
  'number',
  'bigint',
  'boolean',
  'date',
  'json',
  'bytes',
];
const NORMALIZERS: readonly Normalizer[] = ['trim', 'casefold', 'nfc'];

/**
 * Checks an encrypted-schema description and returns it unchanged, keeping its literal types
 * (so column types flow into `encryptRow`, `blindIndex` and the Drizzle column types).
 *
 * @throws {FieldsError} `INVALID_ARGUMENT` naming the table and column that is malformed.
 * @example
 * const schema = defineEncryptedSchema({
 *   users: {
 *     primaryKey: 'id',
 *     tenantColumn: 'org_id',
 *     columns: {
 *       email: { type: 'string', padTo: 32, blindIndexes: { email_idx: { bits: 32, normalize: ['trim', 'casefold'] } } },
 *       avatar: { type: 'bytes', format: 'binary' },
 *     },
 *   },
 * });
 */
export function defineEncryptedSchema<const S extends EncryptedSchema>(schema: S): S {
  checkSchema('fields.defineEncryptedSchema', schema);
  return schema;
}

/** @internal Validates a schema; the ORM integrations call it again on what they are given. */
export function checkSchema(op: string, schema: EncryptedSchema): void {
  const bad = (why: string) => new FieldsError('INVALID_ARGUMENT', op, why);
  if (typeof schema !== 'object' || schema === null) throw bad('"schema" expected an object');
  for (const [table, config] of Object.entries(schema)) {
    if (table === '') throw bad('table names must be non-empty');
    if (typeof config !== 'object' || config === null)
      throw bad(`"${table}" expected { primaryKey, columns }`);
    const { primaryKey, tenantColumn, columns } = config;
    if (typeof primaryKey !== 'string' || primaryKey === '')
      throw bad(`"${table}.primaryKey" expected a column name`);
    if (tenantColumn !== undefined && (typeof tenantColumn !== 'string' || tenantColumn === ''))
      throw bad(`"${table}.tenantColumn" expected a column name`);
    if (tenantColumn === primaryKey)
      throw bad(`"${table}.tenantColumn" must differ from the primary key`);
    if (typeof columns !== 'object' || columns === null || Object.keys(columns).length === 0)
      throw bad(`"${table}.columns" expected at least one encrypted column`);
    const taken = new Set([primaryKey, ...(tenantColumn === undefined ? [] : [tenantColumn])]);
    for (const column of Object.keys(columns)) {
      if (column === '' || taken.has(column))
        throw bad(`"${table}.${column}" cannot be encrypted: it is the primary key or tenant`);
      taken.add(column);
    }
    for (const [column, c] of Object.entries(columns)) {
      const name = `${table}.${column}`;
      if (typeof c !== 'object' || c === null || !FIELD_TYPES.includes(c.type))
        throw bad(`"${name}.type" expected one of ${FIELD_TYPES.join(', ')}`);
      if (c.format !== undefined && c.format !== 'text' && c.format !== 'binary')
        throw bad(`"${name}.format" expected text or binary`);
      if (
        c.padTo !== undefined &&
        (!Number.isInteger(c.padTo) || (c.padTo as number) < 8 || (c.padTo as number) > 4096)
      )
        throw bad(`"${name}.padTo" expected an integer from 8 to 4096`);
      if (c.migrating !== undefined && typeof c.migrating !== 'boolean')
        throw bad(`"${name}.migrating" expected a boolean`);
      for (const [index, ix] of Object.entries(c.blindIndexes ?? {})) {
        if (index === '' || taken.has(index))
          throw bad(`blind index column "${table}.${index}" clashes with another column`);
        taken.add(index);
        if (typeof ix !== 'object' || ix === null)
          throw bad(`"${table}.${index}" expected { bits?, normalize?, version?, next? }`);
        checkIndexParts(bad, `${table}.${index}`, ix);
        if (ix.next !== undefined) {
          const shadow = `${index}${SHADOW_SUFFIX}`;
          if (typeof ix.next !== 'object' || ix.next === null || ix.next.version === undefined)
            throw bad(`"${table}.${index}.next" expected { version, bits?, normalize? }`);
          checkIndexParts(bad, `${table}.${index}.next`, ix.next);
          if (taken.has(shadow) || Object.hasOwn(columns, shadow))
            throw bad(`shadow index column "${table}.${shadow}" clashes with another column`);
          taken.add(shadow);
        }
      }
    }
  }
}

/** bits, normalize and version of an index or of its shadow, as {@link checkSchema} accepts them. */
function checkIndexParts(
  bad: (why: string) => FieldsError,
  name: string,
  ix: { readonly bits?: unknown; readonly normalize?: unknown; readonly version?: unknown },
): void {
  const { bits, normalize, version } = ix;
  if (
    bits !== undefined &&
    (!Number.isInteger(bits) || (bits as number) < 8 || (bits as number) > 256)
  )
    throw bad(`"${name}.bits" expected an integer from 8 to 256`);
  if (normalize !== undefined && !Array.isArray(normalize))
    throw bad(`"${name}.normalize" expected an array of ${NORMALIZERS.join(', ')}`);
  for (const n of (normalize as unknown[] | undefined) ?? [])
    if (!NORMALIZERS.includes(n as Normalizer))
      throw bad(`"${name}.normalize" expected ${NORMALIZERS.join(', ')}`);
  if (
    version !== undefined &&
    (!Number.isInteger(version) || (version as number) < 1 || (version as number) > 0xffffffff)
  )
    throw bad(`"${name}.version" expected an index-key version (an integer from 1)`);
}

/** @internal The ciphertexts and blind indexes `seal` computed for one row. */
export interface SealedColumns {
  /** Encrypted column name → ciphertext, or null for a null value. */
  readonly values: ReadonlyMap<string, StoredValue | null>;
  /** Blind index column name → index (lowercase hex), or null for a null value. */
  readonly indexes: ReadonlyMap<string, string | null>;
  /** What the values were bound to. */
  readonly rowId: RowKey;
  readonly tenant: string | undefined;
}

/** @internal The ORM-independent half of both integrations. */
export interface RowCodec {
  readonly schema: EncryptedSchema;
  /** The table's configuration, or undefined for a table without encrypted columns. */
  config(table: string): EncryptedTableConfig | undefined;
  /** The encrypted column a blind index column belongs to. */
  indexOwner(table: string, indexColumn: string): string | undefined;
  /**
   * Encrypts the encrypted columns present in a row (`get` reads a column by its database
   * name; undefined means absent) and computes their blind indexes.
   */
  seal(op: string, table: string, get: (column: string) => unknown): Promise<SealedColumns>;
  /** Decrypts one stored value of `table.column`, bound to `rowId` and `tenant`. */
  open(
    op: string,
    table: string,
    column: string,
    stored: unknown,
    rowId: unknown,
    tenant: unknown,
  ): Promise<unknown>;
  blindIndex(
    op: string,
    table: string,
    column: string,
    index: string,
    value: unknown,
    tenant: unknown,
    next?: boolean,
  ): Promise<string>;
  /** The data-key version of a ciphertext, or undefined when `value` is not one (spec §5). */
  ciphertextVersion(value: unknown): number | undefined;
  /** Canonical text of a row key (spec §2), as the binding context encodes it. */
  keyText(op: string, what: string, value: unknown): string;
}

/** @internal */
export function createRowCodec(
  op: string,
  schema: EncryptedSchema,
  fields: FieldCipher,
  indexer: BlindIndexer | undefined,
): RowCodec {
  checkSchema(op, schema);
  if (typeof fields?.encrypt !== 'function')
    throw new FieldsError('INVALID_ARGUMENT', op, '"fields" expected a FieldCipher');
  const owners = new Map<string, Map<string, string>>();
  for (const [table, config] of Object.entries(schema)) {
    const m = new Map<string, string>();
    for (const [column, c] of Object.entries(config.columns))
      for (const index of indexColumnsOf(c)) m.set(index, column);
    if (m.size > 0 && indexer === undefined)
      throw new FieldsError(
        'INVALID_ARGUMENT',
        op,
        `"indexer" is required: ${table} declares blind indexes (createBlindIndexer(keyring, fields))`,
      );
    owners.set(table, m);
  }

  const config = (table: string) =>
    Object.hasOwn(schema, table) ? (schema[table] as EncryptedTableConfig) : undefined;

  function tableConfig(op: string, table: string): EncryptedTableConfig {
    const c = config(table);
    if (!c)
      throw new FieldsError('INVALID_ARGUMENT', op, `table "${table}" has no encrypted columns`);
    return c;
  }

  function columnConfig(op: string, table: string, column: string): EncryptedColumnConfig {
    const t = tableConfig(op, table);
    if (!Object.hasOwn(t.columns, column))
      throw new FieldsError('INVALID_ARGUMENT', op, `"${table}.${column}" is not encrypted`);
    return t.columns[column] as EncryptedColumnConfig;
  }

  function keyText(op: string, what: string, value: unknown): string {
    if (typeof value === 'string' && value !== '') return value;
    if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value);
    if (typeof value === 'bigint') return value.toString(10);
    throw new FieldsError(
      'INVALID_ARGUMENT',
      op,
      `"${what}" expected a non-empty string, a safe integer or a bigint, got ${typeName(value)}`,
    );
  }

  function tenantOf(op: string, table: string, t: EncryptedTableConfig, value: unknown) {
    if (t.tenantColumn === undefined) return undefined;
    if (value === undefined || value === null)
      throw new FieldsError(
        'INVALID_ARGUMENT',
        op,
        `"${table}.${t.tenantColumn}" (the tenant) is required: encrypted values are bound to it`,
      );
    return keyText(op, `${table}.${t.tenantColumn}`, value);
  }

  function rowIdOf(op: string, table: string, t: EncryptedTableConfig, value: unknown): RowKey {
    if (value === undefined || value === null)
      throw new FieldsError(
        'INVALID_ARGUMENT',
        op,
        `"${table}.${t.primaryKey}" (the primary key) is required: encrypted values are bound to ` +
          'their row, so ids must be chosen by the application (UUID, ULID) before encrypting',
      );
    keyText(op, `${table}.${t.primaryKey}`, value);
    return value as RowKey;
  }

  function checkType(op: string, name: string, c: EncryptedColumnConfig, value: unknown) {
    if (!typeMatches(c, value))
      throw new FieldsError(
        'INVALID_ARGUMENT',
        op,
        `"${name}" expected ${c.type}, got ${typeName(value)}`,
      );
  }

  function ciphertextVersion(value: unknown): number | undefined {
    if (typeof value !== 'string' && !(value instanceof Uint8Array)) return undefined;
    try {
      return fields.keyVersionOf(value);
    } catch {
      // Magic present but malformed or of another version: not something we would write.
      return undefined;
    }
  }

  async function blindIndex(
    op: string,
    table: string,
    column: string,
    index: string,
    value: unknown,
    tenant: unknown,
    next = false,
  ): Promise<string> {
    const t = tableConfig(op, table);
    const c = columnConfig(op, table, column);
    const ix = c.blindIndexes?.[index];
    if (!ix || !Object.hasOwn(c.blindIndexes ?? {}, index))
      throw new FieldsError(
        'INVALID_ARGUMENT',
        op,
        `"${table}.${column}" has no blind index "${index}"`,
      );
    if (next && ix.next === undefined)
      throw new FieldsError(
        'INVALID_ARGUMENT',
        op,
        `"${table}.${column}" index "${index}" has no next version: declare next: { version } to rotate it`,
      );
    // The shadow column shares the index's name (its key derivation), not its version, bits or
    // normalisers (README: blind-index rotation; reencrypt's ShadowIndexSpec).
    const bits = next ? (ix.next?.bits ?? ix.bits) : ix.bits;
    const normalize = next ? (ix.next?.normalize ?? ix.normalize) : ix.normalize;
    const version = next ? ix.next?.version : ix.version;
    checkType(op, `${table}.${column}`, c, value);
    if (t.tenantColumn === undefined && tenant !== undefined)
      throw new FieldsError(
        'INVALID_ARGUMENT',
        op,
        `"tenant" given, but ${table} has no tenant column`,
      );
    return (indexer as BlindIndexer).compute(value as FieldValue, {
      table,
      column,
      name: index,
      ...(bits === undefined ? {} : { bits }),
      ...(normalize === undefined ? {} : { normalize }),
      ...(version === undefined ? {} : { version }),
      ...(t.tenantColumn === undefined ? {} : { tenant: tenantOf(op, table, t, tenant) }),
    });
  }

  return {
    schema,
    config,
    ciphertextVersion,
    keyText,
    blindIndex,
    indexOwner: (table, indexColumn) => owners.get(table)?.get(indexColumn),

    async seal(op, table, get) {
      const t = tableConfig(op, table);
      for (const index of owners.get(table)?.keys() ?? [])
        if (get(index) !== undefined)
          throw new FieldsError(
            'INVALID_ARGUMENT',
            op,
            `"${table}.${index}" is a blind index: encryptRow computes it, do not pass it`,
          );
      const rowId = rowIdOf(op, table, t, get(t.primaryKey));
      const tenantValue = t.tenantColumn === undefined ? undefined : get(t.tenantColumn);
      const tenant = tenantOf(op, table, t, tenantValue);
      const values = new Map<string, StoredValue | null>();
      const indexes = new Map<string, string | null>();
      const work: Promise<void>[] = [];
      for (const [column, c] of Object.entries(t.columns)) {
        const value = get(column);
        if (value === undefined) continue;
        if (value === null) {
          values.set(column, null);
          for (const ix of indexColumnsOf(c)) indexes.set(ix, null);
          continue;
        }
        checkType(op, `${table}.${column}`, c, value);
        const ctx: FieldContext = {
          table,
          column,
          rowId,
          ...(tenant === undefined ? {} : { tenant }),
        };
        const options = {
          format: c.format ?? 'text',
          ...(c.padTo === undefined ? {} : { padTo: c.padTo }),
        };
        work.push(
          fields.encrypt(value as FieldValue, ctx, options).then((stored) => {
            values.set(column, stored);
          }),
        );
        for (const [ix, ixc] of Object.entries(c.blindIndexes ?? {})) {
          work.push(
            blindIndex(op, table, column, ix, value, tenantValue).then((hex) => {
              indexes.set(ix, hex);
            }),
          );
          // A rotation in progress: the shadow column is written with every row, so that it is
          // complete once `reencrypt` in blind-index mode has filled the rows written before.
          if (ixc.next !== undefined)
            work.push(
              blindIndex(op, table, column, ix, value, tenantValue, true).then((hex) => {
                indexes.set(`${ix}${SHADOW_SUFFIX}`, hex);
              }),
            );
        }
      }
      await Promise.all(work);
      return { values, indexes, rowId, tenant };
    },

    async open(op, table, column, stored, rowId, tenant) {
      if (stored === null || stored === undefined) return null;
      const t = tableConfig(op, table);
      const c = columnConfig(op, table, column);
      const migrating = c.migrating === true;
      if (typeof stored !== 'string' && !(stored instanceof Uint8Array)) {
        // SQLite keeps whatever type was written; only a migration window lets it through.
        if (migrating) return stored;
        throw new FieldsError(
          'PLAINTEXT_VALUE',
          op,
          `${table}.${column} holds a value that is not encrypted`,
        );
      }
      if (migrating && !isSealed(fields, stored)) return stored;
      if (rowId === undefined || rowId === null)
        throw new FieldsError(
          'INVALID_ARGUMENT',
          op,
          `"${table}.${t.primaryKey}" is missing from a row holding ${table}.${column}: select it too ` +
            '(encrypted values are bound to their row)',
        );
      const ctx: FieldContext = {
        table,
        column,
        rowId: rowIdOf(op, table, t, rowId),
        ...(t.tenantColumn === undefined ? {} : { tenant: tenantOf(op, table, t, tenant) }),
      };
      const value = await fields.decrypt(stored, ctx, { allowPlaintext: migrating });
      if (!typeMatches(c, value))
        throw new FieldsError(
          'INVALID_ARGUMENT',
          op,
          `${table}.${column} holds ${typeName(value)} but the schema declares ${c.type}`,
        );
      return value;
    },
  };
}

/** True when `stored` carries the ciphertext magic (spec §5.1), whatever its version. */
function isSealed(fields: FieldCipher, stored: StoredValue): boolean {
  try {
    return fields.keyVersionOf(stored) !== undefined;
  } catch {
    return true;
  }
}

/** A JSON column holds any JSON value; every other column exactly its declared type. */
function typeMatches(c: EncryptedColumnConfig, value: unknown): boolean {
  const actual = typeOf(value as FieldValue);
  return c.type === 'json'
    ? actual !== 'bigint' && actual !== 'date' && actual !== 'bytes'
    : actual === c.type;
}

/** Names a value's type for messages, never its content. */
function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (value instanceof Uint8Array) return 'bytes';
  if (value instanceof Date) return 'Date';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}
