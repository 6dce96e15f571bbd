import {
  type BlindIndexSpec,
  createBlindIndexer,
  DEFAULT_INDEX_BITS,
  type Normalizer,
} from './blind-index.js';
import { FieldsError, type FieldsErrorCode } from './errors.js';
import type { FieldCipher, FieldContext, StoredValue } from './field-cipher.js';
import { type Keyring, primaryVersion } from './keyring.js';
import type { FieldValue } from './value-codec.js';

/** A primary-key value: keyset pagination orders rows by it, and it is the row id in the context. */
export type RowKey = string | number | bigint;

/** One encrypted column of a {@link FieldTable}. */
export interface EncryptedColumnSpec {
  /** The column name, as bound into each value's context (spec/field-v1.md §2). */
  readonly name: string;
  /**
   * Form of new ciphertexts in `encrypt-plaintext` mode; by default the stored value's own form
   * (a string becomes text form, bytes become binary form). Rotation always keeps the form.
   */
  readonly format?: 'text' | 'binary';
  /**
   * Padding block for values this job seals (see `EncryptOptions.padTo`). Rotation keeps a
   * padded value at least as long as it was, with or without this.
   */
  readonly padTo?: number;
  /**
   * `encrypt-plaintext` mode: turns a stored plaintext into the typed value to encrypt (for
   * example `Number` for a number kept in a text column). Default: the stored string or bytes.
   */
  readonly fromPlaintext?: (stored: StoredValue) => FieldValue;
}

/** One row as a {@link FieldTable} hands it to the job. */
export interface FieldRow {
  readonly key: RowKey;
  /** The row's tenant, when the table is multi-tenant (bound into each value's context). */
  readonly tenant?: string;
  /**
   * The stored value of each encrypted column by name (null for SQL NULL, which is left alone)
   * and, in `blind-index` mode, of each shadow index column that exists.
   */
  readonly values: Readonly<Record<string, StoredValue | null | undefined>>;
}

/**
 * The storage seam the job drives: one table, read in primary-key order with keyset pagination
 * (never OFFSET, so a batch costs the same at row 10 and row 10 million), written one row at a
 * time with compare-and-set. Adapters for SQL databases are a few lines of parameterised SQL.
 */
export interface FieldTable {
  /** The table name, as bound into each value's context. */
  readonly name: string;
  readonly columns: readonly EncryptedColumnSpec[];
  /**
   * Up to `limit` rows whose key is greater than `afterKey` (all rows from the first when
   * undefined), in ascending key order: `WHERE pk > ? ORDER BY pk LIMIT ?`.
   */
  readBatch(afterKey: RowKey | undefined, limit: number): Promise<readonly FieldRow[]>;
  /**
   * Sets `changes` on the row `key` only if every column in `expected` still holds the value
   * read (`UPDATE ... SET ... WHERE pk = ? AND col = ? ...`). Returns false, writing nothing, when
   * the row changed or vanished meanwhile.
   */
  writeRow(
    key: RowKey,
    changes: Readonly<Record<string, StoredValue>>,
    expected: Readonly<Record<string, StoredValue>>,
  ): Promise<boolean>;
  /** Optional: the number of rows, for progress bars. */
  countRows?(): Promise<number>;
  /**
   * Optional: runs one batch's writes in one transaction, committing when `work` resolves and
   * rolling back when it rejects. Much faster where each autocommit syncs to disk (SQLite).
   */
  transaction?<T>(work: () => Promise<T>): Promise<T>;
}

/**
 * - `rotate`: re-encrypts every value sealed with a data key older than the primary one.
 * - `encrypt-plaintext`: the migration window; encrypts plaintext values in place, leaving
 *   ciphertexts as they are (each is decrypted once, to prove it opens: after the migration every
 *   value must).
 * - `blind-index`: fills each index's shadow column `<index>_next` with the index computed under
 *   the next index-key version (see {@link ShadowIndexSpec}).
 */
export type ReencryptMode = 'rotate' | 'encrypt-plaintext' | 'blind-index';

/**
 * A blind index to rebuild through a shadow column. Rotating an index key (or changing its bits
 * or normalisers) without downtime:
 *
 * 1. Pin `version` (the current index-key version) in the app's BlindIndexSpec (with the ORM
 *    integrations: `version` in the schema's BlindIndexConfig), so that adding a key does not
 *    switch the app's lookups by itself.
 * 2. Add a nullable column `<index>_next` beside the index column `<index>`.
 * 3. Add the index key: `rotateKey(keyring, provider, kekId, 'index')` (`coffer-fields rotate
 *    --index`), and give every app instance the new keyring.
 * 4. Make the app write both on every insert and update: `<index>` with the pinned version and
 *    `<index>_next` with the new one (with the ORM integrations: declare `next: { version }` in
 *    the schema's BlindIndexConfig, and `encryptRow` writes both).
 * 5. Run this job in `blind-index` mode: it fills `<index>_next` for the rows written before
 *    step 4 (rows that change meanwhile are skipped, the app has written them).
 * 6. Switch lookups to `<index>_next` with the new version; then drop `<index>`, rename
 *    `<index>_next` to `<index>` and pin (or unpin) the new version.
 */
export interface ShadowIndexSpec {
  /** The encrypted column the index is computed from. */
  readonly column: string;
  /** The index's name (bound into its key, as in BlindIndexSpec). */
  readonly name: string;
  /** The index column; default `name`. The shadow column is this with `_next` appended. */
  readonly indexColumn?: string;
  readonly bits?: number;
  readonly normalize?: readonly Normalizer[];
}

/** Values per data-key version, and plaintext values: `{ plaintext: 0, 1: 20, 2: 980 }`. */
export interface VersionCounts {
  readonly plaintext: number;
  readonly [version: number]: number;
}

/** The counts a run has reached; also what a checkpoint stores. */
export interface ReencryptCounts {
  /** Rows read. */
  readonly rowsScanned: number;
  /** Rows written (in a dry run: rows that would be). */
  readonly rowsUpdated: number;
  /** Values re-encrypted, encrypted or indexed (in a dry run: that would be). */
  readonly valuesUpdated: number;
  /** Rows left alone because they changed while the job ran (compare-and-set failed). */
  readonly rowsSkipped: number;
  /**
   * Values per key version: as stored after the job's writes, or as read in a dry run (and in
   * `blind-index` mode, which re-encrypts nothing).
   */
  readonly versions: VersionCounts;
}

/** Progress saved after each batch, so an interrupted run resumes where it stopped. */
export interface ReencryptCheckpoint extends ReencryptCounts {
  readonly format: 'coffer-reencrypt-checkpoint/v1';
  readonly table: string;
  readonly mode: ReencryptMode;
  readonly columns: readonly string[];
  /** The data-key version written (`rotate`, `encrypt-plaintext`) or index-key version filled. */
  readonly target: number;
  /** The last row done; undefined before the first. */
  readonly lastKey?: RowKey;
  /**
   * `blind-index` mode: each index filled (column, name, shadow column, bits, normalisers), so
   * that a run with other indexes does not resume where this one stopped.
   */
  readonly indexes?: readonly string[];
  /** True once the whole table was scanned; a later run starts a new pass. */
  readonly complete: boolean;
}

/** Where checkpoints live: a file, a database row. */
export interface CheckpointStore {
  load(): Promise<ReencryptCheckpoint | undefined>;
  save(checkpoint: ReencryptCheckpoint): Promise<void>;
}

export interface ReencryptOptions {
  readonly fields: FieldCipher;
  readonly table: FieldTable;
  readonly mode: ReencryptMode;
  /** Rows per batch (1 to {@link MAX_BATCH_SIZE}); default 500. */
  readonly batchSize?: number;
  /** Read and count only; write nothing, not even the checkpoint. */
  readonly dryRun?: boolean;
  /** Makes the run resumable; without it an interrupted run starts over (which is safe). */
  readonly checkpoint?: CheckpointStore;
  /** Called after each batch with the counts so far. */
  readonly onProgress?: (progress: ReencryptReport) => void;
  /** Stops the run after the current row; the report then has `complete: false`. */
  readonly signal?: AbortSignal;
  /** Required in `blind-index` mode. */
  readonly blindIndex?: {
    /** The keyring `fields` was made from (its index keys). */
    readonly keyring: Keyring;
    readonly indexes: readonly ShadowIndexSpec[];
    /** Index-key version to fill the shadow columns with; default the newest. */
    readonly version?: number;
  };
}

export interface ReencryptReport extends ReencryptCounts {
  readonly table: string;
  readonly mode: ReencryptMode;
  readonly dryRun: boolean;
  readonly target: number;
  /** False when the run was aborted; run again with the same checkpoint to resume. */
  readonly complete: boolean;
  /** True when this run continued from a saved checkpoint. */
  readonly resumed: boolean;
  readonly lastKey?: RowKey;
}

export interface StatusReport {
  readonly table: string;
  readonly rows: number;
  readonly versions: VersionCounts;
  /** The data-key version new values use. */
  readonly primaryVersion: number;
  /** Values that a `rotate` run would re-encrypt (sealed with an older key). */
  readonly outdated: number;
}

/** One batch is held in memory, decrypted, at a time: keep it bounded. */
export const MAX_BATCH_SIZE = 10_000;
const DEFAULT_BATCH_SIZE = 500;
const SHADOW_SUFFIX = '_next';
const CHECKPOINT_FORMAT = 'coffer-reencrypt-checkpoint/v1';
const OP = 'fields.reencrypt';

const MODES: readonly ReencryptMode[] = ['rotate', 'encrypt-plaintext', 'blind-index'];

/**
 * Re-encrypts one table in batches: key rotation (`rotate`), the plaintext-to-ciphertext
 * migration (`encrypt-plaintext`) or a blind-index rebuild (`blind-index`). Each row is read,
 * every value that needs it is decrypted first and only then re-sealed, and the row is written
 * in one compare-and-set, so a failure never leaves a row half-written and a concurrent update
 * is never overwritten (it is counted in `rowsSkipped`).
 *
 * Resumable: with a `checkpoint`, progress (last key, counts) is saved after every batch and
 * when the run stops (aborted or failed); a new run continues after the last row done. Running
 * again from scratch is harmless: rows already done need no write and get none.
 *
 * @throws {FieldsError} `INVALID_ARGUMENT` for bad options, a checkpoint from another run or an
 *   adapter breaking the {@link FieldTable} contract; `DECRYPTION_FAILED`, `UNKNOWN_KEY`,
 *   `UNSUPPORTED_VERSION`, `PLAINTEXT_VALUE` for a value that does not open (the message names
 *   table, column and row id, never the value), after saving the checkpoint up to the row before.
 * @example
 * const report = await reencrypt({ fields, table, mode: 'rotate', checkpoint: fileStore });
 * if (report.complete) keyring = retireDataKey(keyring, 1, (await status(fields, table)).versions[1] ?? 0);
 */
export async function reencrypt(options: ReencryptOptions): Promise<ReencryptReport> {
  const { table, mode, dryRun = false, signal } = options;
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!MODES.includes(mode))
    throw new FieldsError('INVALID_ARGUMENT', OP, `"mode" expected one of ${MODES.join(', ')}`);
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > MAX_BATCH_SIZE)
    throw new FieldsError(
      'INVALID_ARGUMENT',
      OP,
      `"batchSize" expected an integer from 1 to ${MAX_BATCH_SIZE}`,
    );
  checkTable(table);
  const columns = table.columns.map((c) => c.name);
  const rowWork = rowWorker(options);
  const target = rowWork.target;
  const indexes = mode === 'blind-index' ? indexIdentities(options.blindIndex?.indexes) : undefined;

  const store = dryRun ? undefined : options.checkpoint;
  let saved = await store?.load();
  if (saved?.complete) saved = undefined;
  if (saved) checkResume(saved, { table: table.name, mode, columns, target, indexes });

  const counts = {
    rowsScanned: saved?.rowsScanned ?? 0,
    rowsUpdated: saved?.rowsUpdated ?? 0,
    valuesUpdated: saved?.valuesUpdated ?? 0,
    rowsSkipped: saved?.rowsSkipped ?? 0,
  };
  const versions = new Map<number | 'plaintext', number>();
  for (const [k, n] of Object.entries(saved?.versions ?? {}))
    versions.set(k === 'plaintext' ? k : Number(k), n);
  let lastKey = saved?.lastKey;

  const report = (complete: boolean): ReencryptReport => ({
    table: table.name,
    mode,
    dryRun,
    target,
    complete,
    resumed: saved !== undefined,
    ...counts,
    versions: versionObject(versions),
    ...(lastKey === undefined ? {} : { lastKey }),
  });
  const save = async (complete: boolean) => {
    await store?.save({
      format: CHECKPOINT_FORMAT,
      table: table.name,
      mode,
      columns,
      target,
      ...(lastKey === undefined ? {} : { lastKey }),
      ...(indexes === undefined ? {} : { indexes }),
      complete,
      ...counts,
      versions: versionObject(versions),
    });
  };

  let savedThrough = lastKey;
  for (;;) {
    // Progress is saved after every batch, so stopping here loses nothing.
    if (signal?.aborted) return report(false);
    const rows = await table.readBatch(lastKey, batchSize);
    checkBatch(table.name, rows, lastKey, batchSize);

    // A row that fails stops the batch: the rows before it are kept (committed, checkpointed),
    // so the next run starts at the failing row. If the batch's transaction itself fails, none
    // of the batch is kept, and neither are its counts.
    const start = { lastKey, counts: { ...counts }, versions: new Map(versions) };
    let failure: { error: unknown } | undefined;
    let all = true;
    const work = async () => {
      for (const row of rows) {
        if (signal?.aborted) {
          all = false;
          return;
        }
        let outcome: RowOutcome;
        try {
          outcome = await rowWork.process(row, dryRun);
        } catch (error) {
          failure = { error };
          all = false;
          return;
        }
        counts.rowsScanned++;
        if (outcome.written === 'yes') {
          counts.rowsUpdated++;
          counts.valuesUpdated += outcome.values;
        } else if (outcome.written === 'skipped') counts.rowsSkipped++;
        for (const v of outcome.versions) versions.set(v, (versions.get(v) ?? 0) + 1);
        lastKey = row.key;
      }
    };
    try {
      await (table.transaction && !dryRun ? table.transaction(work) : work());
    } catch (err) {
      lastKey = start.lastKey;
      Object.assign(counts, start.counts);
      versions.clear();
      for (const [k, n] of start.versions) versions.set(k, n);
      throw err;
    }
    if (failure) {
      // A failing store must not hide the row's error.
      if (savedThrough !== lastKey) await save(false).catch(() => undefined);
      throw failure.error;
    }
    const complete = all && rows.length < batchSize;
    await save(complete);
    savedThrough = lastKey;
    options.onProgress?.(report(complete));
    if (complete) return report(true);
  }
}

/**
 * Counts the values of every encrypted column per data-key version (and plaintext values),
 * reading the key version from each ciphertext's header: no key is unwrapped, nothing is
 * decrypted or written. Feed `versions[v]` to `retireDataKey` once a rotation is done (summed
 * over every table that uses the keyring).
 *
 * @throws {FieldsError} `UNSUPPORTED_VERSION` or `DECRYPTION_FAILED` for a value whose header does
 *   not parse (the message names table, column and row id).
 * @example
 * const { versions } = await status(fields, usersTable); // { plaintext: 0, 1: 12, 2: 988 }
 */
export async function status(
  fields: FieldCipher,
  table: FieldTable,
  options: {
    readonly batchSize?: number;
    /** Stops the count (rejecting with the signal's reason). */
    readonly signal?: AbortSignal;
    /** Called after each batch with the rows counted so far. */
    readonly onProgress?: (rows: number) => void;
  } = {},
): Promise<StatusReport> {
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > MAX_BATCH_SIZE)
    throw new FieldsError(
      'INVALID_ARGUMENT',
      'fields.status',
      `"batchSize" expected an integer from 1 to ${MAX_BATCH_SIZE}`,
    );
  checkTable(table);
  const versions = new Map<number | 'plaintext', number>();
  let rows = 0;
  let outdated = 0;
  let after: RowKey | undefined;
  for (;;) {
    options.signal?.throwIfAborted();
    const batch = await table.readBatch(after, batchSize);
    checkBatch(table.name, batch, after, batchSize);
    for (const row of batch) {
      rows++;
      for (const column of table.columns) {
        const stored = row.values[column.name];
        if (stored === null || stored === undefined) continue;
        const v = versionOf(fields, stored, table.name, column.name, row.key, 'fields.status');
        versions.set(v, (versions.get(v) ?? 0) + 1);
        if (typeof v === 'number' && v < fields.primaryVersion) outdated++;
      }
      after = row.key;
    }
    options.onProgress?.(rows);
    if (batch.length < batchSize) break;
  }
  return {
    table: table.name,
    rows,
    versions: versionObject(versions),
    primaryVersion: fields.primaryVersion,
    outdated,
  };
}

/**
 * The name of the shadow column an index is rebuilt into: `<index>_next`.
 *
 * @example shadowColumnOf({ column: 'email', name: 'email_eq' }) // 'email_eq_next'
 */
export function shadowColumnOf(index: ShadowIndexSpec): string {
  return `${index.indexColumn ?? index.name}${SHADOW_SUFFIX}`;
}

/**
 * A checkpoint as JSON text (bigint keys kept exact), for file-backed {@link CheckpointStore}s.
 *
 * @example
 * const store = { load: async () => parseCheckpoint(await readFile(p, 'utf8')), save: async (c) => writeFile(p, serializeCheckpoint(c)) };
 */
export function serializeCheckpoint(checkpoint: ReencryptCheckpoint): string {
  const { lastKey, ...rest } = checkpoint;
  const key = typeof lastKey === 'bigint' ? { bigint: lastKey.toString(10) } : lastKey;
  return `${JSON.stringify({ ...rest, ...(key === undefined ? {} : { lastKey: key }) }, null, 2)}\n`;
}

/**
 * Parses {@link serializeCheckpoint}'s output, strictly.
 *
 * @example const checkpoint = parseCheckpoint(await readFile('users.checkpoint', 'utf8'));
 * @throws {FieldsError} `INVALID_ARGUMENT` for anything malformed; `UNSUPPORTED_VERSION` for a
 *   checkpoint format this version does not know.
 */
export function parseCheckpoint(text: string): ReencryptCheckpoint {
  const op = 'fields.parseCheckpoint';
  const bad = (why: string) =>
    new FieldsError('INVALID_ARGUMENT', op, `invalid checkpoint: ${why}`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw bad('not JSON');
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad('not an object');
  const c = raw as Record<string, unknown>;
  if (typeof c.format === 'string' && c.format.startsWith('coffer-reencrypt-checkpoint/'))
    if (c.format !== CHECKPOINT_FORMAT)
      throw new FieldsError('UNSUPPORTED_VERSION', op, `unsupported checkpoint ${c.format}`);
  if (c.format !== CHECKPOINT_FORMAT) throw bad(`format is not ${CHECKPOINT_FORMAT}`);
  if (typeof c.table !== 'string' || c.table === '') throw bad('table');
  if (!MODES.includes(c.mode as ReencryptMode)) throw bad('mode');
  if (!Array.isArray(c.columns) || !c.columns.every((x) => typeof x === 'string'))
    throw bad('columns');
  if (!isCount(c.target) || c.target < 1) throw bad('target');
  if (typeof c.complete !== 'boolean') throw bad('complete');
  for (const k of ['rowsScanned', 'rowsUpdated', 'valuesUpdated', 'rowsSkipped'] as const)
    if (!isCount(c[k])) throw bad(k);
  const v = c.versions;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('versions');
  const versions: { plaintext: number; [version: number]: number } = { plaintext: 0 };
  for (const [k, n] of Object.entries(v)) {
    if (!isCount(n)) throw bad('versions');
    if (k === 'plaintext') versions.plaintext = n;
    else if (/^[1-9][0-9]{0,9}$/.test(k)) versions[Number(k)] = n;
    else throw bad('versions');
  }
  let lastKey: RowKey | undefined;
  const key = c.lastKey;
  if (typeof key === 'string' || (typeof key === 'number' && Number.isSafeInteger(key)))
    lastKey = key;
  else if (typeof key === 'object' && key !== null && !Array.isArray(key)) {
    const b = (key as { bigint?: unknown }).bigint;
    if (typeof b !== 'string' || !/^-?(0|[1-9][0-9]*)$/.test(b) || Object.keys(key).length !== 1)
      throw bad('lastKey');
    lastKey = BigInt(b);
  } else if (key !== undefined) throw bad('lastKey');
  const indexes = c.indexes;
  if (
    indexes !== undefined &&
    (!Array.isArray(indexes) || !indexes.every((x) => typeof x === 'string'))
  )
    throw bad('indexes');
  return {
    format: CHECKPOINT_FORMAT,
    table: c.table,
    mode: c.mode as ReencryptMode,
    columns: c.columns as string[],
    target: c.target,
    ...(lastKey === undefined ? {} : { lastKey }),
    ...(indexes === undefined ? {} : { indexes: indexes as string[] }),
    complete: c.complete,
    rowsScanned: c.rowsScanned as number,
    rowsUpdated: c.rowsUpdated as number,
    valuesUpdated: c.valuesUpdated as number,
    rowsSkipped: c.rowsSkipped as number,
    versions,
  };
}

// --- internals ---

type VersionKey = number | 'plaintext';

interface RowOutcome {
  readonly written: 'yes' | 'no' | 'skipped';
  readonly values: number;
  readonly versions: readonly VersionKey[];
}

/** The per-row work of one mode, with the target version it writes. */
function rowWorker(options: ReencryptOptions): {
  target: number;
  process(row: FieldRow, dryRun: boolean): Promise<RowOutcome>;
} {
  const { fields, table, mode } = options;
  const ctx = (row: FieldRow, column: string): FieldContext => ({
    ...(row.tenant === undefined ? {} : { tenant: row.tenant }),
    table: table.name,
    column,
    rowId: row.key,
  });

  if (mode === 'blind-index') {
    const bi = options.blindIndex;
    if (!bi || !Array.isArray(bi.indexes) || bi.indexes.length === 0)
      throw new FieldsError(
        'INVALID_ARGUMENT',
        OP,
        '"blindIndex" expected { keyring, indexes: [...] } in blind-index mode',
      );
    const target = bi.version ?? primaryVersion(bi.keyring, 'index');
    if (!bi.keyring.keys.some((k) => k.purpose === 'index' && k.version === target))
      throw new FieldsError('UNKNOWN_KEY', OP, `keyring has no index key version ${target}`);
    for (const index of bi.indexes)
      if (!table.columns.some((c) => c.name === index.column))
        throw new FieldsError(
          'INVALID_ARGUMENT',
          OP,
          `index ${index.name} is on ${index.column}, which is not an encrypted column of ${table.name}`,
        );
    const indexer = createBlindIndexer(bi.keyring, fields);
    return {
      target,
      async process(row, dryRun) {
        const seen: VersionKey[] = [];
        for (const column of table.columns) {
          const stored = row.values[column.name];
          if (stored !== null && stored !== undefined)
            seen.push(versionOf(fields, stored, table.name, column.name, row.key, OP));
        }
        const plain = new Map<string, FieldValue>();
        const changes: Record<string, StoredValue> = {};
        const expected: Record<string, StoredValue> = {};
        for (const index of bi.indexes) {
          const stored = row.values[index.column];
          if (stored === null || stored === undefined) continue;
          let value = plain.get(index.column);
          if (value === undefined) {
            value = await guarded(table.name, index.column, row.key, () =>
              fields.decrypt(stored, ctx(row, index.column)),
            );
            plain.set(index.column, value);
          }
          const spec: BlindIndexSpec = {
            ...(row.tenant === undefined ? {} : { tenant: row.tenant }),
            table: table.name,
            column: index.column,
            name: index.name,
            version: target,
            ...(index.bits === undefined ? {} : { bits: index.bits }),
            ...(index.normalize === undefined ? {} : { normalize: index.normalize }),
          };
          const computed = await guarded(table.name, index.column, row.key, () =>
            indexer.compute(value, spec),
          );
          const shadow = shadowColumnOf(index);
          if (row.values[shadow] === computed) continue;
          changes[shadow] = computed;
          expected[index.column] = stored;
        }
        return write(row, changes, expected, dryRun, seen, seen);
      },
    };
  }

  const target = fields.primaryVersion;
  return {
    target,
    async process(row, dryRun) {
      // First decide and decrypt everything, then seal: a value that fails stops the row
      // before anything of it is written.
      const before: VersionKey[] = [];
      const after: VersionKey[] = [];
      const todo: (
        | { column: EncryptedColumnSpec; stored: StoredValue; value: FieldValue }
        | { column: EncryptedColumnSpec; stored: StoredValue; resealed: StoredValue }
      )[] = [];
      for (const column of table.columns) {
        const stored = row.values[column.name];
        if (stored === null || stored === undefined) continue;
        const v = versionOf(fields, stored, table.name, column.name, row.key, OP);
        before.push(v);
        if (mode === 'rotate' && typeof v === 'number' && v < target) {
          // Sealed again at once (nothing is written before the whole row is ready), keeping a
          // padded value's length: the column's padTo may have changed or be unknown here.
          const resealed = await guarded(table.name, column.name, row.key, () =>
            fields.reseal(stored, ctx(row, column.name), {
              format: typeof stored === 'string' ? 'text' : 'binary',
              ...(column.padTo === undefined ? {} : { padTo: column.padTo }),
            }),
          );
          todo.push({ column, stored, resealed });
          after.push(target);
        } else if (mode === 'encrypt-plaintext' && v === 'plaintext') {
          const value = await guarded(table.name, column.name, row.key, async () =>
            column.fromPlaintext ? column.fromPlaintext(stored) : stored,
          );
          todo.push({ column, stored, value });
          after.push(target);
        } else if (mode === 'encrypt-plaintext') {
          // Every value is read as the app will read it after the migration: a value that looks
          // like a ciphertext but does not open (a damaged one, or a plaintext that merely
          // begins like one, spec/field-v1.md §5) stops the job here rather than stay unreadable.
          await guarded(table.name, column.name, row.key, () =>
            fields.decrypt(stored, ctx(row, column.name), { allowPlaintext: true }),
          );
          after.push(v);
        } else after.push(v);
      }
      const changes: Record<string, StoredValue> = {};
      const expected: Record<string, StoredValue> = {};
      for (const item of todo) {
        const { column, stored } = item;
        if ('resealed' in item) {
          changes[column.name] = item.resealed;
          expected[column.name] = stored;
          continue;
        }
        const { value } = item;
        const format =
          mode === 'encrypt-plaintext' && column.format
            ? column.format
            : typeof stored === 'string'
              ? 'text'
              : 'binary';
        changes[column.name] = await guarded(table.name, column.name, row.key, () =>
          fields.encrypt(value, ctx(row, column.name), {
            format,
            ...(column.padTo === undefined ? {} : { padTo: column.padTo }),
          }),
        );
        expected[column.name] = stored;
      }
      return write(row, changes, expected, dryRun, before, after);
    },
  };

  async function write(
    row: FieldRow,
    changes: Record<string, StoredValue>,
    expected: Record<string, StoredValue>,
    dryRun: boolean,
    before: VersionKey[],
    after: VersionKey[],
  ): Promise<RowOutcome> {
    const values = Object.keys(changes).length;
    if (values === 0) return { written: 'no', values, versions: before };
    if (dryRun) return { written: 'yes', values, versions: before };
    const ok = await table.writeRow(row.key, changes, expected);
    return ok
      ? { written: 'yes', values, versions: after }
      : { written: 'skipped', values: 0, versions: before };
  }
}

function versionOf(
  fields: FieldCipher,
  stored: StoredValue,
  table: string,
  column: string,
  key: RowKey,
  op: string,
): VersionKey {
  try {
    return fields.keyVersionOf(stored) ?? 'plaintext';
  } catch (err) {
    throw located(err, op, table, column, key);
  }
}

async function guarded<T>(
  table: string,
  column: string,
  key: RowKey,
  fn: () => Promise<T>,
): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw located(err, OP, table, column, key);
  }
}

/** The same error code, with the place named: table, column and row id, never the value. */
function located(err: unknown, op: string, table: string, column: string, key: RowKey): unknown {
  if (!FieldsError.is(err)) return err;
  const code: FieldsErrorCode = err.code;
  return new FieldsError(code, op, `${table}.${column} row ${rowLabel(key)}: ${err.message}`, {
    cause: err,
  });
}

/** Ids are not secrets, but they are not ours to print at any length either. */
function rowLabel(key: RowKey): string {
  const text = typeof key === 'string' ? JSON.stringify(key) : key.toString(10);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function checkTable(table: FieldTable): void {
  const ok =
    typeof table === 'object' &&
    table !== null &&
    typeof table.name === 'string' &&
    table.name !== '' &&
    Array.isArray(table.columns) &&
    table.columns.length > 0 &&
    typeof table.readBatch === 'function' &&
    typeof table.writeRow === 'function';
  if (!ok)
    throw new FieldsError(
      'INVALID_ARGUMENT',
      OP,
      '"table" expected { name, columns: [...], readBatch, writeRow }',
    );
  const names = new Set<string>();
  for (const c of table.columns) {
    if (typeof c?.name !== 'string' || c.name === '' || names.has(c.name))
      throw new FieldsError(
        'INVALID_ARGUMENT',
        OP,
        `"table.columns" expected distinct column names, got ${String(c?.name)}`,
      );
    names.add(c.name);
  }
}

/** Keyset pagination goes wrong quietly (a loop, skipped rows) if an adapter errs: check it. */
function checkBatch(
  table: string,
  rows: readonly FieldRow[],
  after: RowKey | undefined,
  limit: number,
): void {
  const bad = (why: string) =>
    new FieldsError('INVALID_ARGUMENT', OP, `${table}: readBatch ${why}`);
  if (!Array.isArray(rows)) throw bad('must return an array');
  if (rows.length > limit) throw bad(`returned ${rows.length} rows, more than the limit ${limit}`);
  const seen = new Set<RowKey>();
  for (const row of rows) {
    const k = row?.key;
    if (!(typeof k === 'string' || typeof k === 'bigint' || Number.isSafeInteger(k)))
      throw bad('returned a row without a string or integer key');
    if (k === after || seen.has(k))
      throw bad('returned a row twice (rows must have keys greater than afterKey, in order)');
    seen.add(k);
  }
}

/** What makes each index of a blind-index run the index it is (a checkpoint records them). */
function indexIdentities(indexes: readonly ShadowIndexSpec[] | undefined): string[] {
  return (indexes ?? []).map((index) =>
    JSON.stringify([
      index.column,
      index.name,
      shadowColumnOf(index),
      index.bits ?? DEFAULT_INDEX_BITS,
      index.normalize ?? [],
    ]),
  );
}

function checkResume(
  saved: ReencryptCheckpoint,
  now: {
    table: string;
    mode: ReencryptMode;
    columns: readonly string[];
    target: number;
    indexes: readonly string[] | undefined;
  },
): void {
  const why =
    saved.table !== now.table
      ? `is for table ${saved.table}`
      : saved.mode !== now.mode
        ? `is for mode ${saved.mode}`
        : saved.columns.join(',') !== now.columns.join(',')
          ? `is for columns ${saved.columns.join(',')}`
          : // After another rotation the rows already done hold an older key: start over.
            saved.mode !== 'encrypt-plaintext' && saved.target !== now.target
            ? `targets key version ${saved.target}, not ${now.target}`
            : // The rows already done hold the other indexes' values (or none).
              now.indexes !== undefined &&
                JSON.stringify(saved.indexes ?? null) !== JSON.stringify(now.indexes)
              ? 'is for other blind indexes (name, column, bits or normalisers)'
              : undefined;
  if (why)
    throw new FieldsError(
      'INVALID_ARGUMENT',
      OP,
      `checkpoint ${why}; remove it to start a new run`,
    );
}

function versionObject(map: ReadonlyMap<VersionKey, number>): VersionCounts {
  const out: { plaintext: number; [version: number]: number } = {
    plaintext: map.get('plaintext') ?? 0,
  };
  const numbers = [...map.keys()].filter((k): k is number => k !== 'plaintext');
  for (const v of numbers.sort((a, b) => a - b)) out[v] = map.get(v) ?? 0;
  return out;
}

function isCount(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}
