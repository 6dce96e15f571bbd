import { type Column, getTableColumns, getTableName, type Logger, type Table } from 'drizzle-orm';
import {
  type ConvertCustomConfig as PgConvertCustomConfig,
  type PgCustomColumnBuilder,
  customType as pgCustomType,
} from 'drizzle-orm/pg-core';
import {
  type SQLiteCustomColumnBuilder,
  type ConvertCustomConfig as SqliteConvertCustomConfig,
  customType as sqliteCustomType,
} from 'drizzle-orm/sqlite-core';
import { type Binding, createBindingMemory } from './_binding-memory.js';
import {
  type BlindIndexer,
  createRowCodec,
  type EncryptedColumnConfig,
  type EncryptedSchema,
  type EncryptedTableConfig,
  type PlaintextOf,
  type RowCodec,
} from './encrypted-schema.js';
import { FieldsError } from './errors.js';
import type { FieldCipher } from './field-cipher.js';
import type { RowKey } from './reencrypt.js';
import type { FieldValue } from './value-codec.js';

// Why the Drizzle integration looks the way it does. A Drizzle custom type maps one value at a
// time, synchronously (`toDriver`/`fromDriver`), with no row around it: it can neither await a
// key provider nor know which row a value belongs to. Encrypting there would mean a
// context-free ciphertext (not bound to its row) and a blocking key unwrap. So:
// - `encryptRow()` (async) encrypts a row before the query is built, binding each value to the
//   row's primary key (and tenant), and returns it with `Sealed` handles in the encrypted
//   columns. The custom column type accepts nothing else: `toDriver` refuses plaintext, a value
//   sealed for another column, and a value read from the database (writing it back would copy a
//   ciphertext); the TypeScript types refuse them first.
// - `fromDriver` wraps what the database returns in a `Sealed` handle too, and `decryptRow()`
//   (async) opens the handles of a row with that row's own primary key.
// - Drizzle has no query middleware. The one synchronous seam that sees every final statement
//   before it runs, in every driver, is the `Logger` (`drizzle(client, { logger })`): the query
//   guard is a logger that inspects the SQL and throws, which aborts the query. It refuses LIKE,
//   ranges, equality, ORDER BY and GROUP BY on encrypted columns, and writes of anything other
//   than a bound parameter to them (an expression could copy another row's ciphertext), and it
//   checks that each ciphertext goes to the row `encryptRow()` bound it to. It reads SQL text,
//   so it is best effort for hand-written `sql` fragments; the AEAD binding is what makes a
//   moved or copied ciphertext fail to open whatever the SQL was.

declare const sealedBrand: unique symbol;

/**
 * An encrypted column's value in Drizzle: an opaque handle over a ciphertext, produced by
 * `encryptRow()` (for writing) or by reading the column (for `decryptRow()`). It prints as
 * `[sealed table.column]` and refuses JSON serialisation, so it cannot be mistaken for data.
 */
export interface Sealed<T extends FieldValue> {
  readonly table: string;
  readonly column: string;
  /** Type-only: the plaintext type the handle opens to. */
  readonly [sealedBrand]: T;
}

/** A row type with every `Sealed<T>` replaced by `T` (what `decryptRow` returns). */
export type Opened<R> = { [K in keyof R]: R[K] extends infer V ? Unsealed<V> : never };
type Unsealed<V> = V extends Sealed<infer T> ? T : V;

/** What `encryptRow` takes for a table: its insert type with plaintexts in encrypted columns. */
export type PlainInsert<TTable extends Table> = Opened<TTable['$inferInsert']>;

type TableName<S extends EncryptedSchema> = keyof S & string;
type ColumnsOf<S extends EncryptedSchema, T extends keyof S> = S[T]['columns'];
type IndexNames<C> = C extends { readonly blindIndexes: infer B } ? keyof B & string : never;
type DriverOf<C extends EncryptedColumnConfig> = C['format'] extends 'binary' ? Uint8Array : string;
type CustomValues<C extends EncryptedColumnConfig> = {
  data: Sealed<PlaintextOf<C>>;
  driverData: DriverOf<C>;
};

export interface DrizzleFieldsOptions<S extends EncryptedSchema> {
  /** The encrypted tables (see `defineEncryptedSchema`), with database column names. */
  readonly schema: S;
  readonly fields: FieldCipher;
  /** Required when the schema declares blind indexes: `createBlindIndexer(keyring, fields)`. */
  readonly indexer?: BlindIndexer;
}

export interface DrizzleFields<S extends EncryptedSchema> {
  /**
   * The SQLite column of an encrypted column (`text`, or `blob` for the binary format).
   *
   * @example const users = sqliteTable('users', { id: text('id').primaryKey(), email: fields.sqliteColumn('users', 'email') });
   */
  sqliteColumn<T extends TableName<S>, C extends keyof ColumnsOf<S, T> & string>(
    table: T,
    column: C,
  ): SQLiteCustomColumnBuilder<SqliteConvertCustomConfig<C, CustomValues<ColumnsOf<S, T>[C]>>>;
  /**
   * The PostgreSQL column of an encrypted column (`text`, or `bytea` for the binary format).
   *
   * @example const users = pgTable('users', { id: text('id').primaryKey(), email: fields.pgColumn('users', 'email') });
   */
  pgColumn<T extends TableName<S>, C extends keyof ColumnsOf<S, T> & string>(
    table: T,
    column: C,
  ): PgCustomColumnBuilder<PgConvertCustomConfig<C, CustomValues<ColumnsOf<S, T>[C]>>>;
  /**
   * Encrypts a row for `insert().values()` or `update().set()`: the encrypted columns become
   * `Sealed` handles bound to the row's primary key (and tenant), and their blind index columns
   * are filled in. Keys are the table's property names.
   *
   * @throws {FieldsError} `INVALID_ARGUMENT` when the primary key (or tenant) is missing, a
   *   value has the wrong type, a blind index is passed in, or a column of the Drizzle table is
   *   not the encrypted column type; the provider's codes (`PROVIDER_UNAVAILABLE` is
   *   retryable). Nothing has been written when it throws.
   * @example await db.insert(users).values(await fields.encryptRow(users, { id, orgId, email }));
   */
  encryptRow<TTable extends Table>(
    table: TTable,
    row: PlainInsert<TTable>,
  ): Promise<TTable['$inferInsert']>;
  /**
   * Decrypts the `Sealed` values of a row read from `table`, with the row's own primary key (and
   * tenant), which must be selected under the table's property names.
   *
   * @throws {FieldsError} `DECRYPTION_FAILED` (tampered, or moved from another row, column or
   *   tenant); `PLAINTEXT_VALUE` outside a migration window; `UNKNOWN_KEY`; `INVALID_ARGUMENT`
   *   when the primary key or tenant is missing from the row.
   * @example const [user] = await Promise.all((await db.select().from(users)).map((r) => fields.decryptRow(users, r)));
   */
  decryptRow<TTable extends Table, R extends object>(table: TTable, row: R): Promise<Opened<R>>;
  /**
   * The blind index of `value`, to compare with the index column: `eq(users.emailIdx, ...)`.
   * With `next: true`, the index for its shadow column `<index>_next` during a rotation (the
   * index's `next` version, bits and normalisers).
   *
   * @throws {FieldsError} `INVALID_ARGUMENT` for an unknown column or index, a value of the
   *   wrong type, a missing tenant on a tenant table, or `next` on an index without a next
   *   version; the provider's codes.
   */
  blindIndex<T extends TableName<S>, C extends keyof ColumnsOf<S, T> & string>(
    table: T,
    column: C,
    index: IndexNames<ColumnsOf<S, T>[C]>,
    value: PlaintextOf<ColumnsOf<S, T>[C]>,
    options?: { readonly tenant?: RowKey; readonly next?: boolean },
  ): Promise<string>;
  /**
   * The query guard, to pass as Drizzle's logger: it refuses statements that cannot work on
   * encrypted columns (throwing `UNSUPPORTED_OPERATION` before they run), then hands each
   * statement to `logger`, if given.
   *
   * @example const db = drizzle(client, { logger: fields.queryGuard() });
   */
  queryGuard(logger?: Logger): Logger;
}

const OP = 'fields.drizzle';

interface SealedState {
  readonly table: string;
  readonly column: string;
  readonly stored: unknown;
  /** From `encryptRow()` (writable), or read from the database (only decryptable). */
  readonly fresh: boolean;
}

/**
 * Encrypted columns for Drizzle (SQLite and PostgreSQL): column types that take only values
 * sealed by `encryptRow()`, `decryptRow()` for what queries return, blind indexes for lookups,
 * and a query guard for the logger seam. See the comment at the top of this file for why.
 *
 * Rows of encrypted tables need application-chosen primary keys (UUID, ULID): ciphertexts are
 * bound to the row id before the insert. Updates that write encrypted values must pin the row
 * with `eq(table.id, id)` (and the tenant column, on tenant tables).
 *
 * @throws {FieldsError} `INVALID_ARGUMENT` for a malformed schema or a missing indexer.
 * @example
 * const fields = createDrizzleFields({ schema, fields: cipher, indexer: createBlindIndexer(keyring, cipher) });
 * const users = sqliteTable('users', { id: text('id').primaryKey(), email: fields.sqliteColumn('users', 'email'), emailIdx: text('email_idx') });
 * const db = drizzle(sqlite, { logger: fields.queryGuard() });
 * await db.insert(users).values(await fields.encryptRow(users, { id: 'u1', email: 'a@example.com' }));
 * const rows = await Promise.all((await db.select().from(users)).map((r) => fields.decryptRow(users, r)));
 */
export function createDrizzleFields<const S extends EncryptedSchema>(
  options: DrizzleFieldsOptions<S>,
): DrizzleFields<S> {
  const codec = createRowCodec(OP, options.schema, options.fields, options.indexer);
  const states = new WeakMap<object, SealedState>();
  const { remember, bindingOf } = createBindingMemory();

  function seal(table: string, column: string, stored: unknown, fresh: boolean): object {
    const label = `[sealed ${table}.${column}]`;
    const handle = Object.freeze({
      table,
      column,
      toString: () => label,
      toJSON(): never {
        throw new FieldsError(
          'INVALID_ARGUMENT',
          OP,
          `${table}.${column} is a sealed value: decrypt it with decryptRow() before serialising it, ` +
            'and write it only through its encrypted column type',
        );
      },
    });
    states.set(handle, { table, column, stored, fresh });
    return handle;
  }

  function columnParams(table: string, column: string) {
    const config = codec.config(table);
    const c = config && Object.hasOwn(config.columns, column) ? config.columns[column] : undefined;
    if (!c)
      throw new FieldsError(
        'INVALID_ARGUMENT',
        OP,
        `"${table}.${column}" is not an encrypted column of the schema`,
      );
    const binary = (c.format ?? 'text') === 'binary';
    const index = Object.keys(c.blindIndexes ?? {})[0];
    return {
      binary,
      toDriver(value: unknown): never {
        const s = typeof value === 'object' && value !== null ? states.get(value) : undefined;
        if (!s)
          throw new FieldsError(
            'PLAINTEXT_VALUE',
            OP,
            `${table}.${column} is encrypted: it takes only values sealed by encryptRow()` +
              (index === undefined
                ? ''
                : `; to find rows, compare its blind index column ${table}.${index} instead`),
          );
        if (s.table !== table || s.column !== column)
          throw new FieldsError(
            'INVALID_ARGUMENT',
            OP,
            `a value sealed for ${s.table}.${s.column} cannot be written to ${table}.${column}`,
          );
        if (!s.fresh)
          throw new FieldsError(
            'UNSUPPORTED_OPERATION',
            OP,
            `${table}.${column}: a value read from the database cannot be written back (it would ` +
              'copy a ciphertext bound to its row); decrypt it and encrypt the row again',
          );
        return s.stored as never;
      },
      fromDriver: (value: unknown) => seal(table, column, value, false) as never,
    };
  }

  /** The Drizzle table's property name of each database column. */
  function keysOf(op: string, table: Table) {
    const name = getTableName(table);
    const config = codec.config(name);
    if (!config)
      throw new FieldsError(
        'INVALID_ARGUMENT',
        op,
        `table "${name}" has no encrypted columns in the schema`,
      );
    const byName = new Map<string, { key: string; column: Column }>();
    for (const [key, column] of Object.entries(getTableColumns(table) as Record<string, Column>))
      byName.set(column.name, { key, column });
    const key = (column: string) => {
      const found = byName.get(column);
      if (!found)
        throw new FieldsError(
          'INVALID_ARGUMENT',
          op,
          `the Drizzle table "${name}" has no column "${column}"`,
        );
      return found.key;
    };
    return { name, config, byName, key };
  }

  return {
    sqliteColumn(table, column) {
      const p = columnParams(table, column);
      return sqliteCustomType<CustomValues<ColumnsOf<S, typeof table>[typeof column]>>({
        dataType: () => (p.binary ? 'blob' : 'text'),
        toDriver: p.toDriver,
        fromDriver: p.fromDriver,
      })(column);
    },

    pgColumn(table, column) {
      const p = columnParams(table, column);
      return pgCustomType<CustomValues<ColumnsOf<S, typeof table>[typeof column]>>({
        dataType: () => (p.binary ? 'bytea' : 'text'),
        toDriver: p.toDriver,
        fromDriver: p.fromDriver,
      })(column);
    },

    async encryptRow(table, row) {
      const op = `${OP}.encryptRow`;
      if (typeof row !== 'object' || row === null)
        throw new FieldsError('INVALID_ARGUMENT', op, '"row" expected an object');
      const t = keysOf(op, table);
      for (const column of Object.keys(t.config.columns)) {
        const found = t.byName.get(column);
        if (
          found &&
          found.column.columnType !== 'SQLiteCustomColumn' &&
          found.column.columnType !== 'PgCustomColumn'
        )
          throw new FieldsError(
            'INVALID_ARGUMENT',
            op,
            `${t.name}.${column} must be declared with sqliteColumn()/pgColumn() of these fields`,
          );
      }
      const values = row as Record<string, unknown>;
      const get = (column: string) => {
        const found = t.byName.get(column);
        return found && Object.hasOwn(values, found.key) ? values[found.key] : undefined;
      };
      const sealed = await codec.seal(op, t.name, get);
      const out: Record<string, unknown> = { ...values };
      const rowId = codec.keyText(op, 'rowId', sealed.rowId);
      for (const [column, stored] of sealed.values) {
        if (stored === null) {
          out[t.key(column)] = null;
          continue;
        }
        remember(stored, { table: t.name, column, rowId, tenant: sealed.tenant });
        out[t.key(column)] = seal(t.name, column, stored, true);
      }
      for (const [index, hex] of sealed.indexes) out[t.key(index)] = hex;
      return out as (typeof table)['$inferInsert'];
    },

    async decryptRow(table, row) {
      const op = `${OP}.decryptRow`;
      const t = keysOf(op, table);
      const values = row as Record<string, unknown>;
      const keyOf = (column: string | undefined) =>
        column === undefined ? undefined : t.byName.get(column)?.key;
      const pk = keyOf(t.config.primaryKey);
      const tenantKey = keyOf(t.config.tenantColumn);
      const rowId = pk === undefined ? undefined : values[pk];
      const tenant = tenantKey === undefined ? undefined : values[tenantKey];
      const encryptedKeys = new Map<string, string>();
      for (const column of Object.keys(t.config.columns)) {
        const key = keyOf(column);
        if (key !== undefined) encryptedKeys.set(key, column);
      }
      const out: Record<string, unknown> = { ...values };
      const work: Promise<void>[] = [];
      const open = (key: string, column: string, stored: unknown) =>
        work.push(
          codec.open(op, t.name, column, stored, rowId, tenant).then((v) => {
            out[key] = v;
          }),
        );
      for (const [key, value] of Object.entries(values)) {
        const s = typeof value === 'object' && value !== null ? states.get(value) : undefined;
        if (s) {
          if (s.table !== t.name)
            throw new FieldsError(
              'INVALID_ARGUMENT',
              op,
              `"${key}" holds a value of ${s.table}.${s.column}, not of ${t.name}`,
            );
          open(key, s.column, s.stored);
          continue;
        }
        const column = encryptedKeys.get(key);
        if (column === undefined || value === null || value === undefined) continue;
        // A raw read (`db.all(sql...)`) gives the stored value itself; anything else in an
        // encrypted column is a handle from other fields, which cannot be opened here.
        if (typeof value === 'string' || value instanceof Uint8Array) open(key, column, value);
        else
          throw new FieldsError(
            'INVALID_ARGUMENT',
            op,
            `"${key}" (${t.name}.${column}) was not read through these fields' column type`,
          );
      }
      await Promise.all(work);
      return out as Opened<typeof row>;
    },

    blindIndex(table, column, index, value, opts = {}) {
      return codec.blindIndex(
        `${OP}.blindIndex`,
        table,
        column,
        index,
        value,
        opts.tenant,
        opts.next === true,
      );
    },

    queryGuard(logger) {
      const guard = createGuard(codec, bindingOf);
      return {
        logQuery(query: string, params: unknown[]) {
          guard(query, params);
          logger?.logQuery(query, params);
        },
      };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The query guard: a small SQL tokenizer and the checks it runs on each statement.

type TokenKind = 'id' | 'word' | 'str' | 'num' | 'param' | 'op' | 'punct';

interface Token {
  readonly kind: TokenKind;
  /** Identifier text (unquoted), lowercased word, operator or punctuation. */
  readonly text: string;
  /** For parameters: the index into the statement's parameter list (-1 when named). */
  readonly param?: number;
}

const TOKEN =
  /\s+|--[^\n]*|\/\*[\s\S]*?\*\/|'(?:[^']|'')*'|"(?:[^"]|"")*"|`(?:[^`]|``)*`|\$\d+|\$([A-Za-z_]\w*)?\$[\s\S]*?\$\1\$|\?\d*|[:@$][A-Za-z_]\w*|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+|[A-Za-z_][\w$]*|[(),.;]|::|->>|->|#>>|#>|<=>|<>|<=|>=|!=|==|\|\||<<|>>|@>|<@|&&|!~~\*|!~~|~~\*|~~|!~\*|!~|~\*|\?\||\?&|[-+*/%<>=~!@#^&|?[\]]/y;

/** Longest SQL text the guard parses; larger statements (bulk inserts) are checked up to it. */
const MAX_GUARDED_SQL = 1_000_000;

function tokenize(sql: string): Token[] {
  const out: Token[] = [];
  let positional = 0;
  let i = 0;
  const text = sql.length > MAX_GUARDED_SQL ? sql.slice(0, MAX_GUARDED_SQL) : sql;
  while (i < text.length) {
    TOKEN.lastIndex = i;
    const m = TOKEN.exec(text);
    if (!m || m[0].length === 0) {
      // An unterminated quote or a character we do not know: treat the rest as opaque.
      out.push({ kind: 'str', text: text.slice(i) });
      break;
    }
    const t = m[0];
    i += t.length;
    const c = t[0] as string;
    if (/\s/.test(c) || t.startsWith('--') || t.startsWith('/*')) continue;
    if (c === "'" || (c === '$' && t.length > 1 && !/^\$\d/.test(t) && t.endsWith('$')))
      out.push({ kind: 'str', text: t });
    else if (c === '"' || c === '`')
      out.push({ kind: 'id', text: t.slice(1, -1).replaceAll(c + c, c) });
    else if (c === '$' && /^\$\d+$/.test(t))
      out.push({ kind: 'param', text: t, param: Number(t.slice(1)) - 1 });
    else if (c === '?' && /^\?\d*$/.test(t))
      out.push({
        kind: 'param',
        text: t,
        param: t.length > 1 ? Number(t.slice(1)) - 1 : positional++,
      });
    else if ((c === ':' || c === '@' || c === '$') && /^.[A-Za-z_]/.test(t))
      out.push({ kind: 'param', text: t, param: -1 });
    else if (/[0-9]/.test(c) || (c === '.' && t.length > 1)) out.push({ kind: 'num', text: t });
    else if (/[A-Za-z_]/.test(c)) out.push({ kind: 'word', text: t.toLowerCase() });
    else if ('(),.;'.includes(t)) out.push({ kind: 'punct', text: t });
    else out.push({ kind: 'op', text: t });
  }
  // PostgreSQL drivers number their parameters ($1); there `?` is an operator.
  const numbered = out.some((t) => t.kind === 'param' && /^\$\d/.test(t.text));
  return numbered
    ? out.map((t) =>
        t.kind === 'param' && t.text.startsWith('?') ? { kind: 'op', text: t.text } : t,
      )
    : out;
}

/** Words after which `(` opens something other than a function call. */
const NOT_CALLS = new Set([
  'in',
  'values',
  'exists',
  'any',
  'all',
  'some',
  'using',
  'on',
  'as',
  'and',
  'or',
  'not',
  'when',
  'then',
  'else',
  'where',
  'select',
  'from',
  'join',
  'by',
  'set',
  'returning',
  'over',
  'filter',
  'within',
  'into',
  'conflict',
  'is',
  'like',
  'ilike',
  'between',
  'lateral',
  'table',
  'with',
  'case',
  'distinct',
  'union',
  'intersect',
  'except',
  'do',
  'update',
  'insert',
  'key',
  'having',
  'limit',
  'offset',
  'glob',
  'regexp',
  'match',
  'escape',
  'recursive',
  'materialized',
]);
/** Functions whose result does not compute on the value: counting, or packing it for output. */
const PASS_THROUGH = new Set([
  'count',
  'json_build_array',
  'jsonb_build_array',
  'json_build_object',
  'jsonb_build_object',
  'json_agg',
  'jsonb_agg',
  'json_array',
  'json_object',
  'json_group_array',
  'json_group_object',
  'array_agg',
  'row_to_json',
  'to_json',
  'to_jsonb',
]);
const WORD_OPERATORS = new Set([
  'like',
  'ilike',
  'glob',
  'regexp',
  'match',
  'similar',
  'between',
  'in',
  'collate',
]);
const CLAUSES: Record<string, string> = {
  select: 'select',
  from: 'from',
  where: 'where',
  having: 'having',
  set: 'set',
  values: 'values',
  returning: 'returning',
  limit: 'limit',
  offset: 'limit',
  on: 'on',
  join: 'from',
  using: 'from',
  union: 'select',
  intersect: 'select',
  except: 'select',
  window: 'window',
  into: 'into',
  update: 'update',
  do: 'do',
};
/** Words that end a table alias position. */
const NOT_ALIASES = new Set([
  ...Object.keys(CLAUSES),
  'inner',
  'left',
  'right',
  'full',
  'cross',
  'natural',
  'outer',
  'order',
  'group',
  'as',
  'default',
  'lateral',
  'fetch',
  'for',
  'and',
  'or',
  'not',
  'where',
]);

interface Structure {
  /** Innermost enclosing `(` of each token (-1 at top level). */
  readonly opener: number[];
  /** Matching `)` of each `(` (the last token when unbalanced). */
  readonly closer: Map<number, number>;
  /** What each `(` opens. */
  readonly parens: Map<number, 'call' | 'subquery' | 'in' | 'paren'>;
  /** The clause each token is in, within its own parenthesis level. */
  readonly clause: (string | undefined)[];
}

function structure(tokens: readonly Token[]): Structure {
  const opener: number[] = [];
  const closer = new Map<number, number>();
  const parens = new Map<number, 'call' | 'subquery' | 'in' | 'paren'>();
  const clause: (string | undefined)[] = [];
  const stack: { open: number; clause: string | undefined }[] = [{ open: -1, clause: undefined }];
  tokens.forEach((t, i) => {
    const frame = stack[stack.length - 1] as { open: number; clause: string | undefined };
    if (t.kind === 'word') {
      const next = tokens[i + 1];
      if (
        (t.text === 'order' || t.text === 'group' || t.text === 'partition') &&
        next?.text === 'by'
      )
        frame.clause = `${t.text} by`;
      else if (t.text === 'distinct' && next?.text === 'on') frame.clause = 'distinct on';
      else if (
        Object.hasOwn(CLAUSES, t.text) &&
        !(t.text === 'on' && frame.clause === 'distinct on')
      )
        frame.clause = CLAUSES[t.text];
    }
    opener[i] = frame.open;
    clause[i] = frame.clause;
    if (t.text === '(' && t.kind === 'punct') {
      const prev = tokens[i - 1];
      const next = tokens[i + 1];
      const kind =
        next?.kind === 'word' && (next.text === 'select' || next.text === 'with')
          ? 'subquery'
          : prev?.kind === 'word' && prev.text === 'in'
            ? 'in'
            : prev?.kind === 'word' && !NOT_CALLS.has(prev.text)
              ? 'call'
              : 'paren';
      parens.set(i, kind);
      stack.push({ open: i, clause: kind === 'subquery' ? undefined : frame.clause });
    } else if (t.text === ')' && t.kind === 'punct' && stack.length > 1) {
      const top = stack.pop() as { open: number };
      closer.set(top.open, i);
      opener[i] = (stack[stack.length - 1] as { open: number }).open;
    }
  });
  for (const { open } of stack.slice(1)) closer.set(open, tokens.length - 1);
  return { opener, closer, parens, clause };
}

interface GuardRef {
  readonly table: string;
  readonly column: string;
  readonly start: number;
  readonly end: number;
}

function createGuard(codec: RowCodec, bindingOf: (value: unknown) => Binding | undefined) {
  const refuse = (message: string) => new FieldsError('UNSUPPORTED_OPERATION', OP, message);
  const invalid = (message: string) => new FieldsError('INVALID_ARGUMENT', OP, message);
  const names = Object.keys(codec.schema);

  return function guard(sql: string, params: readonly unknown[]): void {
    // Most statements name no encrypted table at all: skip them without tokenizing.
    const lower = sql.toLowerCase();
    if (!names.some((n) => lower.includes(n.toLowerCase()))) return;
    const tokens = tokenize(sql);
    const s = structure(tokens);
    const aliases = tableAliases(tokens);
    if (aliases.size === 0) return;
    // Writes first: a copied ciphertext is best explained as such, not as an `=` operator.
    checkWrites(tokens, s, aliases, params);
    for (const ref of columnRefs(tokens, aliases)) checkUse(tokens, s, ref);
  };

  /** Alias (or name) → table, for the encrypted tables a statement names. */
  function tableAliases(tokens: readonly Token[]): Map<string, string> {
    const out = new Map<string, string>();
    tokens.forEach((t, i) => {
      if (t.kind !== 'id' && t.kind !== 'word') return;
      const table = t.text;
      if (!codec.config(table) || tokens[i + 1]?.text === '.') return;
      const prev = tokens[i - 1];
      const afterSchema = prev?.text === '.' ? tokens[i - 3] : prev;
      // `name(` is a function call, except for the column list of `insert into name (...)`.
      if (tokens[i + 1]?.text === '(' && afterSchema?.text !== 'into') return;
      const position =
        afterSchema?.kind === 'word' &&
        ['from', 'join', 'into', 'update', 'using', 'table'].includes(afterSchema.text);
      const listed =
        afterSchema?.text === ',' &&
        tokens.slice(0, i).some((x) => x.kind === 'word' && x.text === 'from');
      if (!position && !listed) return;
      out.set(table, table);
      let j = i + 1;
      if (tokens[j]?.kind === 'word' && tokens[j]?.text === 'as') j++;
      const alias = tokens[j];
      if (alias && (alias.kind === 'id' || (alias.kind === 'word' && !NOT_ALIASES.has(alias.text))))
        out.set(alias.text, table);
    });
    if (out.size > 0 && tokens.some((t) => t.kind === 'word' && t.text === 'insert')) {
      const into = tokens.findIndex(
        (t, i) => t.text === 'into' && tokens[i - 1]?.text === 'insert',
      );
      const target = tokens[into + 1];
      if (target && codec.config(target.text)) out.set('excluded', target.text);
    }
    return out;
  }

  /** References to encrypted columns (qualified `"t"."c"`, or bare `"c"`). */
  function columnRefs(tokens: readonly Token[], aliases: ReadonlyMap<string, string>): GuardRef[] {
    const refs: GuardRef[] = [];
    const tables = [...new Set(aliases.values())];
    tokens.forEach((t, i) => {
      if (t.kind !== 'id' && t.kind !== 'word') return;
      const prev = tokens[i - 1];
      const next = tokens[i + 1];
      if (next?.text === '.' || next?.text === '(') return;
      if (prev?.text === '.') {
        const qualifier = tokens[i - 2];
        const table = qualifier ? aliases.get(qualifier.text) : undefined;
        if (table && isEncrypted(table, t.text))
          refs.push({ table, column: t.text, start: i - 2, end: i });
        return;
      }
      if (prev?.kind === 'word' && prev.text === 'as') return;
      if (aliases.has(t.text)) return;
      const table = tables.find((tb) => isEncrypted(tb, t.text));
      if (table) refs.push({ table, column: t.text, start: i, end: i });
    });
    return refs;
  }

  function isEncrypted(table: string, column: string): boolean {
    const c = codec.config(table);
    return c !== undefined && Object.hasOwn(c.columns, column);
  }

  /** Refuses a reference used by an operator, a function, or an ordering clause. */
  function checkUse(tokens: readonly Token[], s: Structure, ref: GuardRef): void {
    let start = ref.start;
    let end = ref.end;
    for (;;) {
      // A PostgreSQL cast (`x::text`, `x::varchar(10)`) is part of the expression.
      while (tokens[end + 1]?.text === '::') {
        end += 2;
        if (tokens[end + 1]?.text === '(') end = s.closer.get(end + 1) ?? end;
      }
      const open = s.opener[start] ?? -1;
      if (open < 0) break;
      const kind = s.parens.get(open);
      const close = s.closer.get(open) ?? tokens.length - 1;
      if (kind === 'call') {
        const fn = tokens[open - 1]?.text ?? '';
        if (PASS_THROUGH.has(fn)) return;
        if (fn !== 'cast') throw refused(ref, `the function ${fn}()`);
        start = open - 1;
        end = close;
        continue;
      }
      if (kind === 'in') throw refused(ref, 'the in operator');
      if (kind === 'paren' && open === start - 1 && close === end + 1) {
        start = open;
        end = close;
        continue;
      }
      break;
    }
    const clause = s.clause[start];
    if (
      clause === 'order by' ||
      clause === 'group by' ||
      clause === 'partition by' ||
      clause === 'distinct on'
    )
      throw refused(ref, clause);
    const next = tokens[end + 1];
    const prev = tokens[start - 1];
    const assignment =
      clause === 'set' &&
      start === ref.start &&
      (prev?.text === 'set' || prev?.text === ',') &&
      next?.text === '=';
    if (next?.kind === 'op' && !assignment) throw refused(ref, `the ${next.text} operator`);
    if (next?.kind === 'word') {
      const after = tokens[end + 2];
      if (WORD_OPERATORS.has(next.text)) throw refused(ref, `the ${next.text} operator`);
      if (next.text === 'not' && after && WORD_OPERATORS.has(after.text))
        throw refused(ref, `the not ${after.text} operator`);
      if (next.text === 'is') {
        const nullTest =
          after?.text === 'null' || (after?.text === 'not' && tokens[end + 3]?.text === 'null');
        if (!nullTest) throw refused(ref, 'the is operator');
      }
    }
    if (prev?.kind === 'op') throw refused(ref, `the ${prev.text} operator`);
    if (prev?.kind === 'word' && WORD_OPERATORS.has(prev.text))
      throw refused(ref, `the ${prev.text} operator`);
  }

  function refused(ref: GuardRef, what: string): FieldsError {
    const op = /^the (.*) operator$/.exec(what)?.[1];
    const index = Object.keys(codec.config(ref.table)?.columns[ref.column]?.blindIndexes ?? {})[0];
    const hint =
      op !== undefined && ['=', '==', '!=', '<>', 'in', 'is'].includes(op)
        ? index === undefined
          ? 'declare a blind index for it and compare that'
          : `compare its blind index column ${ref.table}.${index} instead`
        : 'ciphertexts are random, so decrypt the rows and do this in the application';
    return refuse(`${ref.table}.${ref.column} is encrypted: ${what} cannot work on it (${hint})`);
  }

  /** Splits tokens[from..to) at top-level commas (relative to `depthOf`). */
  function split(
    tokens: readonly Token[],
    s: Structure,
    from: number,
    to: number,
  ): [number, number][] {
    const parts: [number, number][] = [];
    const level = s.opener[from] ?? -1;
    let begin = from;
    for (let i = from; i < to; i++)
      if (tokens[i]?.text === ',' && s.opener[i] === level) {
        parts.push([begin, i]);
        begin = i + 1;
      }
    parts.push([begin, to]);
    return parts;
  }

  /** A single written value: a parameter, a literal, null or default. */
  function single(tokens: readonly Token[], params: readonly unknown[], from: number, to: number) {
    if (to - from !== 1) return { kind: 'expression' as const };
    const t = tokens[from] as Token;
    if (t.kind === 'param')
      return t.param !== undefined && t.param >= 0 && t.param < params.length
        ? { kind: 'value' as const, value: params[t.param] }
        : { kind: 'unknown' as const };
    if (t.kind === 'word' && (t.text === 'null' || t.text === 'default'))
      return { kind: 'value' as const, value: null };
    if (t.kind === 'str')
      return { kind: 'value' as const, value: t.text.slice(1, -1).replaceAll("''", "'") };
    if (t.kind === 'num') return { kind: 'value' as const, value: Number(t.text) };
    return { kind: 'expression' as const };
  }

  type Written = ReturnType<typeof single>;

  /** The column a reference names (`"c"`, `"t"."c"`, `"s"."t"."c"`), or undefined. */
  function columnOf(tokens: readonly Token[], from: number, to: number): string | undefined {
    const width = to - from;
    if (width !== 1 && width !== 3 && width !== 5) return undefined;
    for (let n = from + 1; n < to; n += 2) if (tokens[n]?.text !== '.') return undefined;
    const last = tokens[to - 1];
    return last && (last.kind === 'id' || last.kind === 'word') ? last.text : undefined;
  }

  /** INSERT values, UPDATE and ON CONFLICT assignments to encrypted tables. */
  function checkWrites(
    tokens: readonly Token[],
    s: Structure,
    aliases: ReadonlyMap<string, string>,
    params: readonly unknown[],
  ): void {
    /** Where a SET list starting at `from` ends: its clause's end, at its own level. */
    const statementEnd = (from: number) => {
      const level = s.opener[from] ?? -1;
      for (let i = from; i < tokens.length; i++) {
        const t = tokens[i] as Token;
        if (level >= 0 && s.closer.get(level) === i) return i;
        if (s.opener[i] !== level) continue;
        if (
          t.text === ';' ||
          (t.kind === 'word' && ['where', 'returning', 'from', 'on'].includes(t.text))
        )
          return i;
      }
      return tokens.length;
    };
    let insertRows: Map<string, Written>[] = [];
    tokens.forEach((t, i) => {
      if (t.kind !== 'word') return;
      if (t.text === 'into' && tokens[i - 1]?.text === 'insert') {
        const table = aliases.get(tokens[i + 1]?.text ?? '');
        const config = table ? codec.config(table) : undefined;
        if (!table || !config) return;
        let j = i + 2;
        while (
          tokens[j] &&
          tokens[j]?.text !== '(' &&
          tokens[j]?.text !== 'values' &&
          tokens[j]?.text !== 'select'
        )
          j++;
        if (tokens[j]?.text !== '(' || s.parens.get(j) === 'subquery') return;
        const close = s.closer.get(j) ?? tokens.length - 1;
        const columns = split(tokens, s, j + 1, close).map(([a, b]) => columnOf(tokens, a, b));
        const enc = columns.filter(
          (c): c is string => c !== undefined && Object.hasOwn(config.columns, c),
        );
        const after = tokens[close + 1];
        if (after?.text !== 'values') {
          if (
            enc.length > 0 &&
            after &&
            (after.text === 'select' || after.text === 'with' || after.text === '(')
          )
            throw refuse(
              `${table}.${enc[0]} is encrypted: insert ... select cannot fill it (it would copy ciphertexts ` +
                'bound to other rows); encrypt each row with encryptRow()',
            );
          return;
        }
        insertRows = [];
        let k = close + 2;
        while (tokens[k]?.text === '(') {
          const end = s.closer.get(k) ?? tokens.length - 1;
          const row = new Map<string, Written>();
          split(tokens, s, k + 1, end).forEach(([a, b], n) => {
            const column = columns[n];
            if (column !== undefined) row.set(column, single(tokens, params, a, b));
          });
          checkRow(table, config, row, row, 'insert');
          insertRows.push(row);
          k = end + 1;
          if (tokens[k]?.text !== ',') break;
          k++;
        }
        return;
      }
      if (t.text === 'set') {
        const upsert = tokens[i - 1]?.text === 'update' && tokens[i - 2]?.text === 'do';
        const table = upsert ? aliases.get('excluded') : updateTarget(tokens, i, aliases);
        const config = table ? codec.config(table) : undefined;
        if (!table || !config) return;
        const end = statementEnd(i + 1);
        const set = new Map<string, Written>();
        for (const [a, b] of split(tokens, s, i + 1, end)) {
          const eq = tokens.findIndex(
            (x, n) => n >= a && n < b && x.text === '=' && s.opener[n] === s.opener[a],
          );
          if (eq < 0) continue;
          const column = columnOf(tokens, a, eq);
          if (column !== undefined) set.set(column, single(tokens, params, eq + 1, b));
        }
        let pins: Map<string, Written>;
        if (upsert) {
          const target = conflictTarget(tokens, i);
          const writesSecret = [...set.keys()].some((c) => Object.hasOwn(config.columns, c));
          if (writesSecret && (insertRows.length !== 1 || target.join() !== config.primaryKey))
            throw refuse(
              `on conflict do update of encrypted columns of ${table} needs a one-row insert with ` +
                `on conflict (${config.primaryKey}): the values are bound to that row`,
            );
          pins = insertRows[0] ?? new Map();
        } else {
          pins = wherePins(tokens, s, end, params, aliases, table);
        }
        checkRow(table, config, set, pins, 'update');
      }
    });
  }

  /** The encrypted table of `update "t" [alias] set`, if `set` at `i` belongs to one. */
  function updateTarget(tokens: readonly Token[], i: number, aliases: ReadonlyMap<string, string>) {
    for (let j = i - 1; j >= Math.max(0, i - 5); j--) {
      if (tokens[j]?.text === 'update') return aliases.get(tokens[j + 1]?.text ?? '');
      const a = aliases.get(tokens[j]?.text ?? '');
      if (a && tokens[j - 1]?.text === 'update') return a;
    }
    return undefined;
  }

  function conflictTarget(tokens: readonly Token[], setIndex: number): string[] {
    const on = tokens.findLastIndex((t, n) => n < setIndex && t.text === 'conflict');
    if (on < 0 || tokens[on + 1]?.text !== '(') return [];
    const out: string[] = [];
    for (let n = on + 2; n < setIndex && tokens[n]?.text !== ')'; n++) {
      const t = tokens[n] as Token;
      if ((t.kind === 'id' || t.kind === 'word') && tokens[n + 1]?.text !== '.') out.push(t.text);
    }
    return out;
  }

  /** Columns of `table` a WHERE clause pins with top-level `col = value` conjuncts. */
  function wherePins(
    tokens: readonly Token[],
    s: Structure,
    from: number,
    params: readonly unknown[],
    aliases: ReadonlyMap<string, string>,
    table: string,
  ): Map<string, Written> {
    const pins = new Map<string, Written>();
    if (tokens[from]?.text !== 'where') return pins;
    const level = s.opener[from] ?? -1;
    let a = from + 1;
    let b = a;
    for (; b < tokens.length; b++) {
      if (level >= 0 && s.closer.get(level) === b) break;
      const t = tokens[b] as Token;
      if (
        s.opener[b] === level &&
        (t.text === ';' || ['returning', 'order', 'limit'].includes(t.text))
      )
        break;
    }
    // One pair of parentheses around the whole condition (drizzle's and()).
    if (tokens[a]?.text === '(' && s.closer.get(a) === b - 1 && s.parens.get(a) === 'paren') {
      a++;
      b--;
    }
    const inner = s.opener[a] ?? -1;
    const parts: [number, number][] = [];
    let begin = a;
    for (let n = a; n < b; n++) {
      const t = tokens[n] as Token;
      if (s.opener[n] !== inner || t.kind !== 'word') continue;
      if (t.text === 'or') return new Map();
      if (t.text === 'and' && !tokens.slice(begin, n).some((x) => x.text === 'between')) {
        parts.push([begin, n]);
        begin = n + 1;
      }
    }
    parts.push([begin, b]);
    for (const [p, q] of parts) {
      const eq = tokens.findIndex(
        (x, n) => n >= p && n < q && (x.text === '=' || x.text === '==') && s.opener[n] === inner,
      );
      if (eq < 0) continue;
      for (const [l, r] of [
        [
          [p, eq],
          [eq + 1, q],
        ],
        [
          [eq + 1, q],
          [p, eq],
        ],
      ] as const) {
        const [l0, l1] = l;
        const width = l1 - l0;
        const qualifier =
          width === 3 ? aliases.get(tokens[l0]?.text ?? '') : width === 1 ? table : undefined;
        const column = columnOf(tokens, l0, l1);
        const value = single(tokens, params, r[0], r[1]);
        if (qualifier === table && column !== undefined && value.kind === 'value')
          pins.set(column, value);
      }
    }
    return pins;
  }

  function checkRow(
    table: string,
    config: EncryptedTableConfig,
    row: ReadonlyMap<string, Written>,
    keys: ReadonlyMap<string, Written>,
    mode: 'insert' | 'update',
  ): void {
    let writesCiphertext = false;
    for (const [column, w] of row) {
      if (!Object.hasOwn(config.columns, column)) continue;
      if (w.kind === 'expression')
        throw refuse(
          `${table}.${column} is encrypted: only a value from encryptRow() can be written to it ` +
            "(an expression could copy another row's ciphertext)",
        );
      if (w.kind === 'value' && w.value !== null) writesCiphertext = true;
    }
    const keyColumns = [config.primaryKey, ...(config.tenantColumn ? [config.tenantColumn] : [])];
    const keyText = new Map<string, string>();
    for (const k of keyColumns) {
      const w = keys.get(k);
      if (w?.kind === 'value' && w.value !== null && w.value !== undefined)
        keyText.set(k, codec.keyText(OP, `${table}.${k}`, w.value));
    }
    if (mode === 'update')
      for (const k of keyColumns) {
        const w = row.get(k);
        if (!w) continue;
        const same =
          w.kind === 'value' &&
          w.value !== null &&
          keyText.get(k) === codec.keyText(OP, `${table}.${k}`, w.value);
        if (!same)
          throw refuse(
            `changing ${table}.${k} would orphan the row's encrypted values (they are bound to it): ` +
              `pin the row with eq(${k}, value) when writing the same value`,
          );
      }
    if (!writesCiphertext) return;
    for (const k of keyColumns)
      if (!keyText.has(k))
        throw mode === 'insert'
          ? invalid(
              `inserting encrypted values into ${table} needs an explicit ${table}.${k}: they are bound to it`,
            )
          : refuse(
              `an update that writes encrypted values of ${table} must pin one row with eq(${k}, value): the values are bound to it`,
            );
    for (const [column, w] of row) {
      if (w.kind !== 'value' || !Object.hasOwn(config.columns, column)) continue;
      const b = bindingOf(w.value);
      if (!b) continue;
      const elsewhere = b.table !== table || b.column !== column;
      if (
        elsewhere ||
        b.rowId !== keyText.get(config.primaryKey) ||
        b.tenant !== (config.tenantColumn ? keyText.get(config.tenantColumn) : undefined)
      )
        throw invalid(
          `the ciphertext written to ${table}.${column} was encrypted for another ${elsewhere ? 'column' : 'row'}: ` +
            'write the row encryptRow() returned, unchanged',
        );
    }
  }
}
