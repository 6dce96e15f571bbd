import type {
  AliasNode,
  BinaryOperationNode,
  ColumnNode,
  ColumnType,
  ColumnUpdateNode,
  DeleteQueryNode,
  FunctionNode,
  InsertQueryNode,
  KyselyPlugin,
  OperationNode,
  PluginTransformQueryArgs,
  PluginTransformResultArgs,
  QueryId,
  QueryResult,
  ReferenceNode,
  RootOperationNode,
  SelectionNode,
  SelectQueryNode,
  TableNode,
  UnknownRow,
  UpdateQueryNode,
  ValueNode,
  ValuesNode,
  WhereNode,
} from 'kysely';
import { type Binding, createBindingMemory } from './_binding-memory.js';
import {
  type BlindIndexer,
  createRowCodec,
  type EncryptedColumnConfig,
  type EncryptedSchema,
  type EncryptedTableConfig,
  indexColumnsOf,
  type PlaintextOf,
  type RowCodec,
} from './encrypted-schema.js';
import { FieldsError } from './errors.js';
import type { FieldCipher } from './field-cipher.js';
import type { RowKey } from './reencrypt.js';
import type { FieldValue } from './value-codec.js';

// Why the plugin is split the way it is. Kysely's `transformQuery` is synchronous and encryption
// is not (the key provider may be an HSM across the network), so the plugin cannot encrypt
// values as they pass. Encrypting in the plugin would also have no row to bind to: a WHERE
// value or an INSERT ... SELECT has no primary key. So:
// - writes are encrypted before the query is built, by `encryptRow()`, which needs the row's
//   primary key (and tenant) and so always binds ciphertexts to their row (spec §2);
// - `transformQuery` only inspects the operation tree, and refuses what cannot work on a
//   ciphertext (LIKE, ranges, ORDER BY, equality on the column itself, functions over it) and
//   any write of something that is not a ciphertext from `encryptRow()`: a plaintext, or an
//   expression that could copy another row's ciphertext. It never rewrites the query;
// - `transformResult`, which is async, decrypts the encrypted columns of returned rows with the
//   primary key (and tenant) of the same row, planned from the query's select list.
// Raw SQL text (`sql` fragments) cannot be inspected; the AEAD binding is what makes a
// ciphertext that was moved or copied fail to open whatever the SQL was.

declare const ciphertextBrand: unique symbol;

/**
 * A ciphertext produced by `encryptRow()`: a `cf1:` string for text columns, bytes for binary
 * ones. The brand keeps plaintext out of encrypted columns at compile time; the plugin checks
 * it again at run time.
 */
export type Ciphertext<F extends 'text' | 'binary' = 'text'> = (F extends 'binary'
  ? Uint8Array
  : string) & { readonly [ciphertextBrand]: F };

/**
 * The Kysely column type of an encrypted column: selects give the plaintext (the plugin
 * decrypts), inserts and updates take only ciphertexts from `encryptRow()`.
 *
 * @example
 * interface UsersTable { id: string; email: Encrypted<string>; email_idx: string; avatar: Encrypted<Uint8Array | null, 'binary'> }
 */
export type Encrypted<
  T extends FieldValue | null,
  F extends 'text' | 'binary' = 'text',
> = ColumnType<T, Ciphertext<F> | Extract<T, null>, Ciphertext<F> | Extract<T, null>>;

type TableName<S extends EncryptedSchema> = keyof S & string;
type ColumnsOf<S extends EncryptedSchema, T extends keyof S> = S[T]['columns'];
type NullPart<V> = V extends null ? null : never;
type FormatOf<C extends EncryptedColumnConfig> = C['format'] extends 'binary' ? 'binary' : 'text';
type IndexNames<C> = C extends { readonly blindIndexes: infer B } ? keyof B & string : never;
/** The shadow columns (`<index>_next`) of the indexes that declare a `next` version. */
type ShadowNames<C> = C extends { readonly blindIndexes: infer B }
  ? {
      [K in keyof B & string]: B[K] extends { readonly next: object } ? `${K}_next` : never;
    }[keyof B & string]
  : never;

/** A row as given to `encryptRow`: plaintexts of the declared types, anything else as is. */
export type PlainRow<S extends EncryptedSchema, T extends keyof S> = {
  readonly [C in keyof ColumnsOf<S, T>]?: PlaintextOf<ColumnsOf<S, T>[C]> | null;
} & Readonly<Record<string, unknown>>;

/** What `encryptRow` returns: ciphertexts in the encrypted columns, plus their blind indexes. */
export type EncryptedRow<S extends EncryptedSchema, T extends keyof S, R> = {
  -readonly [K in keyof R]: K extends keyof ColumnsOf<S, T>
    ? Ciphertext<FormatOf<ColumnsOf<S, T>[K]>> | NullPart<R[K]>
    : R[K];
} & {
  -readonly [K in keyof R & keyof ColumnsOf<S, T> as
    | IndexNames<ColumnsOf<S, T>[K]>
    | ShadowNames<ColumnsOf<S, T>[K]>]: string | NullPart<R[K]>;
};

/** A row with its encrypted columns decrypted (what `decryptRow` returns). */
export type DecryptedRow<S extends EncryptedSchema, T extends keyof S, R> = {
  [K in keyof R]: K extends keyof ColumnsOf<S, T>
    ? PlaintextOf<ColumnsOf<S, T>[K]> | NullPart<R[K]>
    : R[K];
};

export interface KyselyFieldsOptions<S extends EncryptedSchema> {
  /** The encrypted tables (see `defineEncryptedSchema`), with column names as Kysely sees them. */
  readonly schema: S;
  readonly fields: FieldCipher;
  /** Required when the schema declares blind indexes: `createBlindIndexer(keyring, fields)`. */
  readonly indexer?: BlindIndexer;
}

/** The Kysely plugin plus the helpers that encrypt before a query is built. */
export interface KyselyFieldsPlugin<S extends EncryptedSchema> extends KyselyPlugin {
  /**
   * Encrypts the encrypted columns of a row for an insert or update, binding each ciphertext
   * to the row's primary key (and tenant), and computes their blind index columns. Other
   * columns are returned as they are.
   *
   * @throws {FieldsError} `INVALID_ARGUMENT` when the primary key (or tenant) is missing, a
   *   value has the wrong type, or a blind index column is passed in; the provider's codes
   *   (`PROVIDER_UNAVAILABLE` is retryable). Nothing has been written when it throws.
   * @example
   * await db.insertInto('users').values(await plugin.encryptRow('users', { id, org_id, email })).execute();
   */
  encryptRow<T extends TableName<S>, R extends PlainRow<S, T>>(
    table: T,
    row: R,
  ): Promise<EncryptedRow<S, T, R>>;
  /**
   * The blind index of `value` for `where(indexColumn, '=', ...)` lookups. Tenant tables need
   * the tenant: an index is bound to it. With `next: true`, the index for its shadow column
   * `<index>_next` during a rotation (the index's `next` version, bits and normalisers).
   *
   * @throws {FieldsError} `INVALID_ARGUMENT` for an unknown column or index, a value of the
   *   wrong type, a missing tenant, or `next` on an index without a next version; the
   *   provider's codes.
   * @example
   * db.selectFrom('users').selectAll().where('email_idx', '=', await plugin.blindIndex('users', 'email', 'email_idx', 'alice@example.com', { tenant: org }))
   */
  blindIndex<T extends TableName<S>, C extends keyof ColumnsOf<S, T> & string>(
    table: T,
    column: C,
    index: IndexNames<ColumnsOf<S, T>[C]>,
    value: PlaintextOf<ColumnsOf<S, T>[C]>,
    options?: { readonly tenant?: RowKey; readonly next?: boolean },
  ): Promise<string>;
  /**
   * Decrypts the encrypted columns of a row read without the plugin (a raw `sql` query), keyed
   * by column name; the row must hold the primary key (and tenant).
   *
   * @throws {FieldsError} as reading through the plugin does (`DECRYPTION_FAILED`,
   *   `PLAINTEXT_VALUE`, `UNKNOWN_KEY`, `INVALID_ARGUMENT` for a missing key column).
   */
  decryptRow<T extends TableName<S>, R extends Readonly<Record<string, unknown>>>(
    table: T,
    row: R,
  ): Promise<DecryptedRow<S, T, R>>;
}

/** A table as a query names it: by alias, or by its own name. */
interface Instance {
  readonly name: string;
  readonly table: string | undefined;
  readonly config: EncryptedTableConfig | undefined;
}

interface Scope {
  readonly instances: Map<string, Instance>;
  readonly parent: Scope | undefined;
}

interface ColumnRef {
  readonly instance: Instance;
  readonly column: string;
}

/** How to decrypt one table's columns in a result row (by output column name). */
interface TablePlan {
  readonly table: string;
  readonly primaryKey: string;
  readonly tenant: string | undefined;
  readonly columns: { readonly output: string; readonly column: string }[];
}

/** A value written to a column: a literal, the column default, or an expression. */
type Written =
  | { readonly kind: 'literal'; readonly value: unknown }
  | { readonly kind: 'default' }
  | { readonly kind: 'expression' };

const OP = 'fields.kysely';
const EQUALITY = new Set([
  '=',
  '==',
  '!=',
  '<>',
  'in',
  'not in',
  'is distinct from',
  'is not distinct from',
]);

/**
 * A Kysely plugin for encrypted columns (see the comment at the top of this file for the
 * design): it refuses queries that cannot work on ciphertexts, checks that only ciphertexts from
 * `encryptRow()` are written, and decrypts returned rows with their own primary key.
 *
 * Rows of encrypted tables need application-chosen primary keys (UUID, ULID): a ciphertext is
 * bound to its row id, which an auto-increment column only knows after the insert (insert the
 * row without encrypted values, then update it, if ids must be generated by the database).
 * Updates that write encrypted values must pin the row with `where(primaryKey, '=', id)` (and
 * the tenant column, on tenant tables).
 *
 * @throws {FieldsError} `INVALID_ARGUMENT` for a malformed schema or a missing indexer.
 * @example
 * const plugin = createKyselyFieldsPlugin({ schema, fields, indexer: createBlindIndexer(keyring, fields) });
 * const db = new Kysely<DB>({ dialect, plugins: [plugin] });
 * await db.insertInto('users').values(await plugin.encryptRow('users', { id: 'u1', org_id: 'o1', email: 'a@example.com' })).execute();
 * const user = await db.selectFrom('users').select(['id', 'org_id', 'email']).where('email_idx', '=', await plugin.blindIndex('users', 'email', 'email_idx', 'a@example.com', { tenant: 'o1' })).executeTakeFirst();
 */
export function createKyselyFieldsPlugin<const S extends EncryptedSchema>(
  options: KyselyFieldsOptions<S>,
): KyselyFieldsPlugin<S> {
  const codec = createRowCodec(OP, options.schema, options.fields, options.indexer);
  const plans = new WeakMap<QueryId, TablePlan[]>();
  const { remember, bindingOf } = createBindingMemory();

  const analyzer = createAnalyzer(codec, bindingOf);

  async function openRow(plan: readonly TablePlan[], row: UnknownRow): Promise<UnknownRow> {
    const out: Record<string, unknown> = { ...row };
    const work: Promise<void>[] = [];
    for (const t of plan) {
      const rowId = row[t.primaryKey];
      const tenant = t.tenant === undefined ? undefined : row[t.tenant];
      for (const c of t.columns) {
        const stored = row[c.output];
        if (stored === null || stored === undefined) continue;
        work.push(
          codec.open(OP, t.table, c.column, stored, rowId, tenant).then((v) => {
            out[c.output] = v;
          }),
        );
      }
    }
    await Promise.all(work);
    return out;
  }

  return {
    transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
      const plan = analyzer.root(args.node);
      if (plan.length > 0) plans.set(args.queryId, plan);
      return args.node;
    },

    async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
      const plan = plans.get(args.queryId);
      if (!plan || args.result.rows.length === 0) return args.result;
      const rows = await Promise.all(args.result.rows.map((row) => openRow(plan, row)));
      return { ...args.result, rows };
    },

    async encryptRow(table, row) {
      const op = `${OP}.encryptRow`;
      if (typeof row !== 'object' || row === null)
        throw new FieldsError('INVALID_ARGUMENT', op, '"row" expected an object');
      const get = (column: string) => (Object.hasOwn(row, column) ? row[column] : undefined);
      const sealed = await codec.seal(op, table, get);
      const out: Record<string, unknown> = { ...row };
      const rowId = codec.keyText(op, 'rowId', sealed.rowId);
      for (const [column, stored] of sealed.values) {
        out[column] = stored;
        if (stored !== null) remember(stored, { table, column, rowId, tenant: sealed.tenant });
      }
      for (const [index, hex] of sealed.indexes) out[index] = hex;
      return out as EncryptedRow<S, typeof table, typeof row>;
    },

    blindIndex(table, column, index, value, options = {}) {
      return codec.blindIndex(
        `${OP}.blindIndex`,
        table,
        column,
        index,
        value,
        options.tenant,
        options.next === true,
      );
    },

    async decryptRow(table, row) {
      const op = `${OP}.decryptRow`;
      const config = codec.config(table);
      if (!config)
        throw new FieldsError('INVALID_ARGUMENT', op, `table "${table}" has no encrypted columns`);
      const columns = Object.keys(config.columns).filter((c) => Object.hasOwn(row, c));
      const plan: TablePlan = {
        table,
        primaryKey: config.primaryKey,
        tenant: config.tenantColumn,
        columns: columns.map((column) => ({ output: column, column })),
      };
      return (await openRow([plan], row)) as DecryptedRow<S, typeof table, typeof row>;
    },
  };
}

/** The query inspection, separate from the plugin's state. */
function createAnalyzer(codec: RowCodec, bindingOf: (value: unknown) => Binding | undefined) {
  const refuse = (message: string) => new FieldsError('UNSUPPORTED_OPERATION', OP, message);
  const invalid = (message: string) => new FieldsError('INVALID_ARGUMENT', OP, message);

  function instanceOf(node: OperationNode, scope: Scope): Instance | undefined {
    if (node.kind === 'TableNode') {
      const table = tableName(node as TableNode);
      return { name: table, table, config: codec.config(table) };
    }
    if (node.kind === 'AliasNode') {
      const { node: inner, alias } = node as AliasNode;
      const name = identifier(alias);
      if (inner.kind === 'TableNode') {
        const table = tableName(inner as TableNode);
        return { name: name ?? table, table, config: codec.config(table) };
      }
      // A derived table or table function: its columns are whatever the inner query says.
      walk(inner, scope, 'a derived table');
      return name === undefined ? undefined : { name, table: undefined, config: undefined };
    }
    walk(node, scope, 'a table expression');
    return undefined;
  }

  function newScope(parent: Scope | undefined, tables: readonly OperationNode[]): Scope {
    const scope: Scope = { instances: new Map(), parent };
    for (const t of tables) {
      const inst = instanceOf(t, scope);
      if (inst) scope.instances.set(inst.name, inst);
    }
    return scope;
  }

  /** Which table's column a reference names (only tables we know the columns of). */
  function resolve(node: OperationNode, scope: Scope): ColumnRef | undefined {
    let column: string;
    let qualifier: string | undefined;
    if (node.kind === 'ColumnNode') {
      column = (node as ColumnNode).column.name;
    } else if (node.kind === 'ReferenceNode') {
      const ref = node as ReferenceNode;
      if (ref.column.kind !== 'ColumnNode') return undefined;
      column = ref.column.column.name;
      qualifier = ref.table ? tableName(ref.table) : undefined;
    } else {
      return undefined;
    }
    for (let s: Scope | undefined = scope; s; s = s.parent) {
      if (qualifier !== undefined) {
        const inst = s.instances.get(qualifier);
        if (inst) return { instance: inst, column };
        continue;
      }
      // Unqualified: the database resolves it in the innermost scope that has the column; we
      // only know our tables' columns, so take the first of ours that has it.
      for (const inst of s.instances.values())
        if (inst.config && knows(inst.config, column)) return { instance: inst, column };
    }
    return undefined;
  }

  function knows(config: EncryptedTableConfig, column: string): boolean {
    return (
      column === config.primaryKey ||
      column === config.tenantColumn ||
      Object.hasOwn(config.columns, column) ||
      Object.values(config.columns).some((c) => indexColumnsOf(c).includes(column))
    );
  }

  function encrypted(ref: ColumnRef | undefined): EncryptedColumnConfig | undefined {
    const cols = ref?.instance.config?.columns;
    return cols && ref && Object.hasOwn(cols, ref.column) ? cols[ref.column] : undefined;
  }

  function refuseOn(ref: ColumnRef, role: string): FieldsError {
    const table = ref.instance.table as string;
    const name = `${table}.${ref.column}`;
    const op = /^the (.*) operator$/.exec(role)?.[1];
    let hint: string;
    if (op !== undefined && EQUALITY.has(op)) {
      const index = Object.keys(encrypted(ref)?.blindIndexes ?? {})[0];
      hint =
        index === undefined
          ? 'declare a blind index for it and compare that'
          : `compare its blind index column ${table}.${index} with blindIndex() instead`;
    } else if (role === 'a subquery') {
      hint = 'only the outermost select list is decrypted; select it there';
    } else {
      hint = 'ciphertexts are random, so decrypt the rows and do this in the application';
    }
    return refuse(`${name} is encrypted: ${role} cannot work on it (${hint})`);
  }

  /** Visits an expression; `role` says what it is used for (undefined: read as a plain value). */
  function walk(node: OperationNode, scope: Scope, role: string | undefined): void {
    switch (node.kind) {
      case 'ReferenceNode':
      case 'ColumnNode': {
        const ref = resolve(node, scope);
        if (role !== undefined && ref && encrypted(ref)) throw refuseOn(ref, role);
        return;
      }
      case 'SelectQueryNode':
      case 'InsertQueryNode':
      case 'UpdateQueryNode':
      case 'DeleteQueryNode':
      case 'MergeQueryNode':
        statement(node, scope, false);
        return;
      case 'BinaryOperationNode': {
        const b = node as BinaryOperationNode;
        const op = operatorName(b.operator);
        // `IS NULL` / `IS NOT NULL` is the one test that works on a ciphertext column.
        const nullTest =
          (op === 'is' || op === 'is not') && (isNull(b.leftOperand) || isNull(b.rightOperand));
        const r = nullTest ? undefined : `the ${op} operator`;
        walk(b.leftOperand, scope, r);
        walk(b.operator, scope, r);
        walk(b.rightOperand, scope, r);
        return;
      }
      case 'UnaryOperationNode': {
        const u = node as OperationNode & { operator: OperationNode; operand: OperationNode };
        const op = operatorName(u.operator);
        walk(
          u.operand,
          scope,
          op === 'exists' || op === 'not exists' ? role : `the ${op} operator`,
        );
        return;
      }
      case 'FunctionNode':
      case 'AggregateFunctionNode': {
        const f = node as FunctionNode & { aggregated?: readonly OperationNode[] };
        const name = f.func.toLowerCase();
        // count() reads nothing but nullness; every other function would compute on ciphertext.
        const r = name === 'count' ? undefined : `the function ${f.func}()`;
        for (const arg of f.arguments ?? f.aggregated ?? []) walk(arg, scope, r);
        walkChildren(node, scope, role, ['arguments', 'aggregated']);
        return;
      }
      case 'OrderByItemNode':
        walkChildren(node, scope, 'order by');
        return;
      case 'GroupByItemNode':
        walkChildren(node, scope, 'group by');
        return;
      case 'PartitionByItemNode':
        walkChildren(node, scope, 'partition by');
        return;
      case 'WhereNode':
        walkChildren(node, scope, 'a where clause');
        return;
      case 'HavingNode':
        walkChildren(node, scope, 'a having clause');
        return;
      case 'OnNode':
        walkChildren(node, scope, 'a join condition');
        return;
      case 'CastNode':
        walkChildren(node, scope, 'a cast');
        return;
      case 'CollateNode':
        walkChildren(node, scope, 'a collation');
        return;
      case 'CaseNode':
      case 'WhenNode':
        walkChildren(node, scope, 'a case expression');
        return;
      case 'JSONReferenceNode':
        walkChildren(node, scope, 'a JSON path');
        return;
      case 'TupleNode':
        walkChildren(node, scope, role ?? 'a tuple');
        return;
      case 'RawNode':
        walkChildren(node, scope, 'raw sql');
        return;
      case 'SelectionNode':
      case 'ReturningNode':
        // Selections reached here belong to a nested query: not decrypted.
        walkChildren(node, scope, 'a subquery');
        return;
      default:
        walkChildren(node, scope, role);
    }
  }

  function walkChildren(
    node: OperationNode,
    scope: Scope,
    role: string | undefined,
    skip: readonly string[] = [],
  ): void {
    for (const [key, value] of Object.entries(node)) {
      if (key === 'kind' || skip.includes(key)) continue;
      if (Array.isArray(value)) {
        for (const v of value) if (isNode(v)) walk(v, scope, role);
      } else if (isNode(value)) {
        walk(value, scope, role);
      }
    }
  }

  function statement(node: OperationNode, parent: Scope | undefined, top: boolean): TablePlan[] {
    switch (node.kind) {
      case 'SelectQueryNode':
        return select(node as SelectQueryNode, parent, top);
      case 'InsertQueryNode':
        return insert(node as InsertQueryNode, parent, top);
      case 'UpdateQueryNode':
        return update(node as UpdateQueryNode, parent, top);
      case 'DeleteQueryNode':
        return remove(node as DeleteQueryNode, parent, top);
      case 'MergeQueryNode': {
        const into = instanceOf((node as OperationNode & { into: OperationNode }).into, {
          instances: new Map(),
          parent,
        });
        if (into?.config)
          throw refuse(
            `merge into ${into.table} is not supported: it has encrypted columns; use insert and update`,
          );
        walkChildren(node, { instances: new Map(), parent }, undefined, ['into']);
        return [];
      }
      default:
        return [];
    }
  }

  function walkWith(node: { readonly with?: OperationNode }, parent: Scope | undefined) {
    if (node.with) walk(node.with, { instances: new Map(), parent }, undefined);
  }

  function select(node: SelectQueryNode, parent: Scope | undefined, top: boolean): TablePlan[] {
    walkWith(node, parent);
    const tables = [...(node.from?.froms ?? []), ...(node.joins ?? []).map((j) => j.table)];
    const scope = newScope(parent, tables);
    for (const j of node.joins ?? []) if (j.on) walk(j.on, scope, undefined);
    walkChildren(node, scope, 'a query modifier', [
      'with',
      'from',
      'joins',
      'selections',
      'distinctOn',
    ]);
    if (node.distinctOn) for (const d of node.distinctOn) walk(d, scope, 'distinct on');
    // Planned last, so that a query that cannot work is refused before a missing key column.
    if (top) return outputs(node.selections ?? [], scope);
    for (const s of node.selections ?? []) walk(s, scope, undefined);
    return [];
  }

  /** Plans the decryption of a top-level select list (or returning list). */
  function outputs(selections: readonly SelectionNode[], scope: Scope): TablePlan[] {
    const seen = new Map<string, ColumnRef | undefined>();
    const add = (output: string, ref: ColumnRef | undefined) => {
      if (seen.has(output)) {
        const before = seen.get(output);
        if (relevant(before) || relevant(ref))
          throw refuse(
            `the result has two columns named "${output}" and one is needed to decrypt ` +
              `${(ref ?? before)?.instance.table}: alias one of them`,
          );
      }
      seen.set(output, ref);
    };
    const addAll = (inst: Instance) => {
      const c = inst.config as EncryptedTableConfig;
      add(c.primaryKey, { instance: inst, column: c.primaryKey });
      if (c.tenantColumn) add(c.tenantColumn, { instance: inst, column: c.tenantColumn });
      for (const column of Object.keys(c.columns)) add(column, { instance: inst, column });
    };
    for (const { selection } of selections) {
      if (selection.kind === 'SelectAllNode') {
        const ours = [...scope.instances.values()].filter((i) => i.config);
        if (ours.length > 0 && scope.instances.size > 1)
          throw refuse(
            `select * over a join is ambiguous for encrypted table ${ours[0]?.table}: ` +
              'select its columns (and its primary key) explicitly',
          );
        if (ours[0]) addAll(ours[0]);
        continue;
      }
      if (
        selection.kind === 'ReferenceNode' &&
        (selection as ReferenceNode).column.kind === 'SelectAllNode'
      ) {
        const t = (selection as ReferenceNode).table;
        const inst = t ? findInstance(scope, tableName(t)) : undefined;
        if (inst?.config) addAll(inst);
        continue;
      }
      let node: OperationNode = selection;
      let output: string | undefined;
      if (selection.kind === 'AliasNode') {
        node = (selection as AliasNode).node;
        output = identifier((selection as AliasNode).alias);
      }
      if (node.kind === 'ReferenceNode' || node.kind === 'ColumnNode') {
        const ref = resolve(node, scope);
        output ??= columnName(node);
        if (output !== undefined) add(output, ref);
        continue;
      }
      walk(node, scope, 'a computed column');
      if (output !== undefined) add(output, undefined);
    }
    const byInstance = new Map<Instance, TablePlan>();
    for (const [output, ref] of seen) {
      if (!ref || !encrypted(ref)) continue;
      const inst = ref.instance;
      const c = inst.config as EncryptedTableConfig;
      let plan = byInstance.get(inst);
      if (!plan) {
        const find = (column: string | undefined) =>
          column === undefined
            ? undefined
            : [...seen].find(([, r]) => r?.instance === inst && r.column === column)?.[0];
        const primaryKey = find(c.primaryKey);
        const tenant = find(c.tenantColumn);
        if (primaryKey === undefined)
          throw invalid(
            `select ${inst.name}.${c.primaryKey} together with ${inst.table}.${ref.column}: ` +
              'encrypted values are bound to their row and are decrypted with its primary key',
          );
        if (c.tenantColumn !== undefined && tenant === undefined)
          throw invalid(
            `select ${inst.name}.${c.tenantColumn} together with ${inst.table}.${ref.column}: ` +
              'encrypted values are bound to their tenant',
          );
        plan = { table: inst.table as string, primaryKey, tenant, columns: [] };
        byInstance.set(inst, plan);
      }
      plan.columns.push({ output, column: ref.column });
    }
    return [...byInstance.values()];
  }

  function relevant(ref: ColumnRef | undefined): boolean {
    const c = ref?.instance.config;
    return (
      c !== undefined &&
      ref !== undefined &&
      (ref.column === c.primaryKey ||
        ref.column === c.tenantColumn ||
        Object.hasOwn(c.columns, ref.column))
    );
  }

  function returning(
    node: { readonly returning?: OperationNode },
    scope: Scope,
    top: boolean,
  ): TablePlan[] {
    if (!node.returning) return [];
    const selections = (node.returning as OperationNode & { selections: readonly SelectionNode[] })
      .selections;
    if (top) return outputs(selections, scope);
    for (const s of selections) walk(s, scope, 'a subquery');
    return [];
  }

  function insert(node: InsertQueryNode, parent: Scope | undefined, top: boolean): TablePlan[] {
    walkWith(node, parent);
    const scope = newScope(parent, node.into ? [node.into] : []);
    const target = [...scope.instances.values()][0];
    const config = target?.config;
    const columns = (node.columns ?? []).map((c) => c.column.name);
    const rows: Map<string, Written>[] = [];
    if (node.values?.kind === 'ValuesNode') {
      for (const item of (node.values as ValuesNode).values) {
        const row = new Map<string, Written>();
        columns.forEach((column, i) => {
          if (item.kind === 'PrimitiveValueListNode') {
            row.set(column, { kind: 'literal', value: item.values[i] });
            return;
          }
          const v = (item as OperationNode & { values: readonly OperationNode[] }).values[i];
          row.set(column, written(v));
          if (v && v.kind !== 'ValueNode' && v.kind !== 'DefaultInsertValueNode')
            walk(v, scope, undefined);
        });
        rows.push(row);
      }
    } else if (node.values) {
      const enc = config && target ? columns.filter((c) => Object.hasOwn(config.columns, c)) : [];
      if (enc.length > 0)
        throw refuse(
          `${target?.table}.${enc[0]} is encrypted: insert ... select cannot fill it (it would copy ` +
            'ciphertexts bound to other rows); encrypt each row with encryptRow()',
        );
      walk(node.values, scope, undefined);
    }
    if (config && target) for (const row of rows) checkWrite(target, config, row, 'insert', row);
    if (node.onConflict) {
      const oc = node.onConflict;
      const excluded: Instance = { name: 'excluded', table: target?.table, config };
      const conflictScope: Scope = { instances: new Map(scope.instances), parent };
      conflictScope.instances.set('excluded', excluded);
      for (const c of oc.columns ?? []) walk(c, conflictScope, 'an on conflict target');
      if (oc.indexExpression) walk(oc.indexExpression, conflictScope, 'an on conflict target');
      if (oc.indexWhere) walk(oc.indexWhere, conflictScope, undefined);
      if (oc.updateWhere) walk(oc.updateWhere, conflictScope, undefined);
      if (oc.updates && config && target) {
        const set = updates(oc.updates, conflictScope);
        const targetsKey = (oc.columns ?? []).map((c) => c.column.name);
        const writesSecret = [...set.keys()].some((c) => Object.hasOwn(config.columns, c));
        if (writesSecret && (rows.length !== 1 || targetsKey.join() !== config.primaryKey))
          throw refuse(
            `on conflict do update of encrypted columns of ${target.table} needs a one-row insert ` +
              `with on conflict (${config.primaryKey}): the values are bound to that row`,
          );
        checkWrite(target, config, set, 'update', rows[0] ?? new Map());
      } else if (oc.updates) {
        updates(oc.updates, conflictScope);
      }
    }
    if (node.onDuplicateKey) {
      const set = updates(
        (node.onDuplicateKey as OperationNode & { updates: readonly ColumnUpdateNode[] }).updates,
        scope,
      );
      if (config && target && [...set.keys()].some((c) => Object.hasOwn(config.columns, c)))
        throw refuse(
          `on duplicate key update of encrypted columns of ${target.table} is not supported`,
        );
    }
    return returning(node, scope, top);
  }

  function update(node: UpdateQueryNode, parent: Scope | undefined, top: boolean): TablePlan[] {
    walkWith(node, parent);
    const tables = [
      ...(node.table ? [node.table] : []),
      ...(node.from?.froms ?? []),
      ...(node.joins ?? []).map((j) => j.table),
    ];
    const scope = newScope(parent, tables);
    for (const j of node.joins ?? []) if (j.on) walk(j.on, scope, undefined);
    if (node.where) walk(node.where, scope, undefined);
    const target = node.table ? [...scope.instances.values()][0] : undefined;
    const set = updates(node.updates ?? [], scope);
    if (target?.config)
      checkWrite(target, target.config, set, 'update', pinned(node.where, target, scope));
    walkChildren(node, scope, 'a query modifier', [
      'with',
      'table',
      'from',
      'joins',
      'where',
      'updates',
      'returning',
    ]);
    return returning(node, scope, top);
  }

  function remove(node: DeleteQueryNode, parent: Scope | undefined, top: boolean): TablePlan[] {
    walkWith(node, parent);
    const using = (node.using as (OperationNode & { tables: readonly OperationNode[] }) | undefined)
      ?.tables;
    const tables = [
      ...node.from.froms,
      ...(using ?? []),
      ...(node.joins ?? []).map((j) => j.table),
    ];
    const scope = newScope(parent, tables);
    for (const j of node.joins ?? []) if (j.on) walk(j.on, scope, undefined);
    walkChildren(node, scope, 'a query modifier', ['with', 'from', 'using', 'joins', 'returning']);
    return returning(node, scope, top);
  }

  /** The columns an update's SET list writes, and what it writes to each. */
  function updates(list: readonly ColumnUpdateNode[], scope: Scope): Map<string, Written> {
    const set = new Map<string, Written>();
    for (const u of list) {
      const column = columnName(u.column);
      if (column === undefined) {
        walk(u.column, scope, 'an update target');
        continue;
      }
      set.set(column, written(u.value));
      if (u.value.kind !== 'ValueNode') walk(u.value, scope, undefined);
    }
    return set;
  }

  /** Literal values a WHERE clause pins columns of `target` to (`col = value` conjuncts). */
  function pinned(
    where: WhereNode | undefined,
    target: Instance,
    scope: Scope,
  ): Map<string, Written> {
    const out = new Map<string, Written>();
    const visit = (node: OperationNode) => {
      if (node.kind === 'AndNode') {
        const a = node as OperationNode & { left: OperationNode; right: OperationNode };
        visit(a.left);
        visit(a.right);
      } else if (node.kind === 'ParensNode') {
        visit((node as OperationNode & { node: OperationNode }).node);
      } else if (node.kind === 'BinaryOperationNode') {
        const b = node as BinaryOperationNode;
        const op = operatorName(b.operator);
        if (op !== '=' && op !== '==') return;
        for (const [l, r] of [
          [b.leftOperand, b.rightOperand],
          [b.rightOperand, b.leftOperand],
        ] as const) {
          const ref = resolve(l, scope);
          if (ref?.instance === target && r.kind === 'ValueNode')
            out.set(ref.column, { kind: 'literal', value: (r as ValueNode).value });
        }
      }
    };
    if (where) visit(where.where);
    return out;
  }

  /**
   * Checks one row written to an encrypted table: only ciphertexts (or null) in encrypted
   * columns, blind indexes written with their column, the key columns present and unchanged,
   * and ciphertexts that `encryptRow()` bound to this row.
   */
  function checkWrite(
    target: Instance,
    config: EncryptedTableConfig,
    row: ReadonlyMap<string, Written>,
    mode: 'insert' | 'update',
    keys: ReadonlyMap<string, Written>,
  ): void {
    const table = target.table as string;
    let writesCiphertext = false;
    for (const [column, w] of row) {
      const c = Object.hasOwn(config.columns, column) ? config.columns[column] : undefined;
      if (!c || w.kind === 'default') continue;
      if (w.kind === 'expression')
        throw refuse(
          `${table}.${column} is encrypted: only a value from encryptRow() can be written to it ` +
            "(an expression could copy another row's ciphertext)",
        );
      if (w.value !== null) {
        if (codec.ciphertextVersion(w.value) === undefined)
          throw new FieldsError(
            'PLAINTEXT_VALUE',
            OP,
            `refusing to write a value that is not encrypted to ${table}.${column}: encrypt the row with encryptRow()`,
          );
        const binary = (c.format ?? 'text') === 'binary';
        if (binary !== w.value instanceof Uint8Array)
          throw invalid(
            `${table}.${column} stores ${binary ? 'binary' : 'text'} ciphertexts; this one is ${binary ? 'text' : 'binary'}`,
          );
        writesCiphertext = true;
      }
      for (const index of indexColumnsOf(c))
        if (!row.has(index))
          throw invalid(
            `${table}.${index} must be written together with ${table}.${column}: write the row encryptRow() returned`,
          );
    }
    for (const column of row.keys()) {
      const owner = codec.indexOwner(table, column);
      if (owner !== undefined && row.get(column)?.kind !== 'default' && !row.has(owner))
        throw invalid(
          `${table}.${column} is the blind index of ${table}.${owner}: write them together`,
        );
    }
    const keyColumns = [config.primaryKey, ...(config.tenantColumn ? [config.tenantColumn] : [])];
    const keyValues = new Map<string, string>();
    for (const k of keyColumns) {
      const w = keys.get(k);
      if (w?.kind === 'literal' && w.value !== null && w.value !== undefined)
        keyValues.set(k, codec.keyText(OP, `${table}.${k}`, w.value));
    }
    if (mode === 'update') {
      for (const k of keyColumns) {
        const w = row.get(k);
        if (!w) continue;
        const same =
          w.kind === 'literal' &&
          keyValues.has(k) &&
          w.value !== null &&
          codec.keyText(OP, `${table}.${k}`, w.value) === keyValues.get(k);
        if (!same)
          throw refuse(
            `changing ${table}.${k} would orphan the row's encrypted values (they are bound to it): ` +
              `pin the row with where('${k}', '=', value) when writing the same value`,
          );
      }
    }
    if (!writesCiphertext) return;
    for (const k of keyColumns)
      if (!keyValues.has(k))
        throw mode === 'insert'
          ? invalid(
              `inserting encrypted values into ${table} needs an explicit ${table}.${k}: they are bound ` +
                'to it (choose ids in the application, e.g. UUID or ULID)',
            )
          : refuse(
              `an update that writes encrypted values of ${table} must pin one row with ` +
                `where('${k}', '=', value): the values are bound to it`,
            );
    const rowId = keyValues.get(config.primaryKey);
    const tenant = config.tenantColumn ? keyValues.get(config.tenantColumn) : undefined;
    for (const [column, w] of row) {
      if (w.kind !== 'literal' || !Object.hasOwn(config.columns, column)) continue;
      const b = bindingOf(w.value);
      if (!b) continue;
      const elsewhere = b.table !== table || b.column !== column;
      if (elsewhere || b.rowId !== rowId || b.tenant !== tenant)
        throw invalid(
          `the ciphertext written to ${table}.${column} was encrypted for another ${elsewhere ? 'column' : 'row'}: ` +
            'write the row encryptRow() returned, unchanged',
        );
    }
  }

  return {
    root(node: RootOperationNode): TablePlan[] {
      return statement(node, undefined, true);
    },
  };
}

function written(node: OperationNode | undefined): Written {
  if (!node || node.kind === 'DefaultInsertValueNode') return { kind: 'default' };
  if (node.kind === 'ValueNode') return { kind: 'literal', value: (node as ValueNode).value };
  return { kind: 'expression' };
}

function findInstance(scope: Scope, name: string): Instance | undefined {
  for (let s: Scope | undefined = scope; s; s = s.parent) {
    const inst = s.instances.get(name);
    if (inst) return inst;
  }
  return undefined;
}

function isNode(value: unknown): value is OperationNode {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { kind?: unknown }).kind === 'string'
  );
}

function isNull(node: OperationNode): boolean {
  return node.kind === 'ValueNode' && (node as ValueNode).value === null;
}

function operatorName(node: OperationNode): string {
  return node.kind === 'OperatorNode'
    ? String((node as OperationNode & { operator: unknown }).operator)
    : 'custom';
}

function tableName(node: TableNode): string {
  return node.table.identifier.name;
}

function identifier(node: OperationNode): string | undefined {
  return node.kind === 'IdentifierNode'
    ? (node as OperationNode & { name: string }).name
    : undefined;
}

function columnName(node: OperationNode): string | undefined {
  if (node.kind === 'ColumnNode') return (node as ColumnNode).column.name;
  if (node.kind === 'ReferenceNode') {
    const c = (node as ReferenceNode).column;
    return c.kind === 'ColumnNode' ? c.column.name : undefined;
  }
  return undefined;
}
