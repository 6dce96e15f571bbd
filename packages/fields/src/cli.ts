import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { generateAeadKey, toBase64url } from '@coffer/crypto';
import { createFile, fileCheckpointStore, replaceFile } from './_cli-files.js';
import { type CliWriter, createProgress } from './_cli-progress.js';
import { openSqlite, type SqliteDatabase, sqliteFieldTable, tableColumns } from './_cli-sqlite.js';
import { type BlindIndexPlan, type Normalizer, planBlindIndex } from './blind-index.js';
import { FieldsError } from './errors.js';
import { createFieldCipher } from './field-cipher.js';
import type { KeyProvider } from './key-provider.js';
import {
  createKeyring,
  type Keyring,
  parseKeyring,
  primaryVersion,
  rewrapKeyring,
  rotateKey,
} from './keyring.js';
import { generateKekFile, localProviderFromEnv, localProviderFromFile } from './providers/local.js';
import {
  type FieldTable,
  MAX_BATCH_SIZE,
  type ReencryptMode,
  type ReencryptReport,
  reencrypt,
  type ShadowIndexSpec,
  type StatusReport,
  status,
  type VersionCounts,
} from './reencrypt.js';

export type { CliWriter } from './_cli-progress.js';

/** What `main` reads and writes: the process's own streams, or collectors in tests. */
export interface CliIo {
  readonly stdout: CliWriter;
  readonly stderr: CliWriter;
  /** Environment variables (`--kek-env VAR` reads one). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Aborted on Ctrl-C: `reencrypt` saves its checkpoint and stops; `status` stops. */
  readonly signal?: AbortSignal;
}

/** Exit statuses, as the usage text documents them. */
export const EXIT = { ok: 0, error: 1, usage: 2, interrupted: 130 } as const;

const NAME = 'coffer-fields';

export const USAGE = `${NAME}: keys, key rotation and re-encryption for @coffer/fields

Usage:
  ${NAME} keygen (--kek-file PATH | --env)
  ${NAME} init --keyring PATH KEK
  ${NAME} rotate --keyring PATH KEK [--index]
  ${NAME} rewrap --keyring PATH FROM-KEK TO-KEK
  ${NAME} plan --rows N [--bits B] [--max-candidates C]
  ${NAME} status --keyring PATH DATABASE
  ${NAME} reencrypt --keyring PATH KEK DATABASE [--mode MODE] [--dry-run] [--batch N]
                [--checkpoint PATH]

Keys:
  keygen --kek-file PATH  Write a new key-encryption key (KEK) to PATH, mode 0600. Never
                          overwrites a file.
  keygen --env            Print a new KEK on standard output, to store in a secrets manager
                          and pass as an environment variable. By design this is the one
                          command that prints a key; nothing else prints keys or values.
  init                    Create a keyring: data key 1 and index key 1, wrapped by the KEK.
  rotate                  Add a data key version (with --index: an index key version). New
                          values use it; move old rows with reencrypt.
  rewrap                  Master-key rotation: wrap every key with another KEK. Rows do not
                          change. Keep the old KEK until every app instance has the new keyring.

  KEK is --kek-file PATH or --kek-env VAR (a variable holding a KEK from keygen --env), and
  --kek-id ID, the KEK's name in the keyring (default: the file or variable name for init,
  the keyring's own afterwards). FROM-KEK and TO-KEK are the same with --from-/--to- prefixes.

Blind indexes:
  plan                    Size a blind index for N rows: recommended bits, false positives
                          per lookup, and what a stolen database learns from it.

Database (SQLite, through the better-sqlite3 package):
  status                  Count values per data-key version. Reads ciphertext headers only:
                          no KEK needed, nothing written.
  reencrypt               Re-encrypt in batches, resumable:
    --mode rotate             values sealed with an older data key (default)
    --mode encrypt-plaintext  plaintext values, in place (the migration window)
    --mode blind-index        fill the shadow column <index>_next under the newest index key:
                              --index-name NAME [--index-column COLUMN] [--bits B]
                              [--normalize trim,casefold,nfc] [--index-version V]
    --dry-run                 read, decrypt and count; write nothing
    --batch N                 rows per batch (default 500)
    --checkpoint PATH         save progress after every batch; run again to resume

  DATABASE is --sqlite PATH --table NAME --primary-key COLUMN --columns A,B
  [--tenant-column COLUMN]. Values are bound to table, column, row id (and tenant) exactly as
  the app binds them: use the same names.

Output:
  --json                  the result as JSON on standard output
  -h, --help              this text
  Progress and errors go to standard error: "${NAME}: error: ..." and, where the likely fix
  is known, "${NAME}: hint: ...".

Exit status:
  0 success, 1 error, 2 usage error, 130 interrupted (reencrypt saved its checkpoint).

Examples:
  $ ${NAME} keygen --kek-file fields.kek
  $ ${NAME} init --keyring keyring.json --kek-file fields.kek
  $ ${NAME} plan --rows 2000000
  $ ${NAME} rotate --keyring keyring.json --kek-file fields.kek
  $ ${NAME} reencrypt --keyring keyring.json --kek-file fields.kek --sqlite app.db \\
      --table users --primary-key id --columns email,phone --checkpoint users.checkpoint
  $ ${NAME} status --keyring keyring.json --sqlite app.db --table users \\
      --primary-key id --columns email,phone --json
  $ export COFFER_FIELDS_KEK="$(${NAME} keygen --env)"
  $ ${NAME} rewrap --keyring keyring.json --from-kek-file fields.kek \\
      --to-kek-env COFFER_FIELDS_KEK
`;

// --- arguments ---

type OptionType = 'string' | 'boolean';
type Values = Readonly<Record<string, string | boolean | undefined>>;

const KEK_OPTIONS = { 'kek-file': 'string', 'kek-env': 'string', 'kek-id': 'string' } as const;
const DB_OPTIONS = {
  sqlite: 'string',
  table: 'string',
  'primary-key': 'string',
  columns: 'string',
  'tenant-column': 'string',
  batch: 'string',
} as const;

interface Command {
  readonly synopsis: string;
  readonly options: Readonly<Record<string, OptionType>>;
  run(values: Values, io: CliIo): Promise<number>;
}

const COMMANDS: Readonly<Record<string, Command>> = {
  keygen: {
    synopsis: `${NAME} keygen (--kek-file PATH | --env)`,
    options: { 'kek-file': 'string', env: 'boolean' },
    run: keygen,
  },
  init: {
    synopsis: `${NAME} init --keyring PATH (--kek-file PATH | --kek-env VAR) [--kek-id ID]`,
    options: { keyring: 'string', ...KEK_OPTIONS },
    run: init,
  },
  rotate: {
    synopsis: `${NAME} rotate --keyring PATH (--kek-file PATH | --kek-env VAR) [--index]`,
    options: { keyring: 'string', ...KEK_OPTIONS, index: 'boolean' },
    run: rotate,
  },
  rewrap: {
    synopsis: `${NAME} rewrap --keyring PATH (--from-kek-file PATH | --from-kek-env VAR) (--to-kek-file PATH | --to-kek-env VAR) [--to-kek-id ID]`,
    options: {
      keyring: 'string',
      'from-kek-file': 'string',
      'from-kek-env': 'string',
      'from-kek-id': 'string',
      'to-kek-file': 'string',
      'to-kek-env': 'string',
      'to-kek-id': 'string',
    },
    run: rewrap,
  },
  plan: {
    synopsis: `${NAME} plan --rows N [--bits B] [--max-candidates C]`,
    options: { rows: 'string', bits: 'string', 'max-candidates': 'string' },
    run: plan,
  },
  status: {
    synopsis: `${NAME} status --keyring PATH --sqlite PATH --table NAME --primary-key COLUMN --columns A,B`,
    options: { keyring: 'string', ...DB_OPTIONS },
    run: statusCommand,
  },
  reencrypt: {
    synopsis: `${NAME} reencrypt --keyring PATH (--kek-file PATH | --kek-env VAR) --sqlite PATH --table NAME --primary-key COLUMN --columns A,B [--mode MODE] [--dry-run] [--batch N] [--checkpoint PATH]`,
    options: {
      keyring: 'string',
      ...KEK_OPTIONS,
      ...DB_OPTIONS,
      mode: 'string',
      'dry-run': 'boolean',
      checkpoint: 'string',
      'index-name': 'string',
      'index-column': 'string',
      'index-version': 'string',
      bits: 'string',
      normalize: 'string',
    },
    run: reencryptCommand,
  },
};

/** A failure with its exit status and, where the likely fix is known, a hint. */
class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    readonly hint?: string,
  ) {
    super(message);
  }
}

const usageError = (message: string, hint?: string) => new CliError(message, EXIT.usage, hint);
const failure = (message: string, hint?: string) => new CliError(message, EXIT.error, hint);

function parse(command: string, spec: Command, argv: readonly string[]): Values {
  const options: Record<string, { type: OptionType; short?: string }> = {
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  };
  for (const [name, type] of Object.entries(spec.options)) options[name] = { type };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: [...argv], options, strict: true, tokens: true });
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    const message = err instanceof Error ? err.message : '';
    const flag = /'(--?[^' <]+)/.exec(message)?.[1] ?? '';
    const hint = `usage: ${spec.synopsis}`;
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION')
      throw usageError(`${command} does not take ${flag}`, hint);
    if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL')
      throw usageError(`unexpected argument ${/'([^']*)'/.exec(message)?.[1] ?? ''}`, hint);
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE')
      throw usageError(
        options[flag.replace(/^-+/, '')]?.type === 'boolean'
          ? `${flag} takes no value`
          : `${flag} needs a value`,
        hint,
      );
    throw usageError(message, hint);
  }
  const seen = new Set<string>();
  for (const token of parsed.tokens ?? []) {
    if (token.kind !== 'option') continue;
    if (seen.has(token.name)) throw usageError(`--${token.name} given twice`);
    seen.add(token.name);
  }
  return parsed.values as Values;
}

function str(values: Values, name: string): string | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '') throw usageError(`--${name} needs a value`);
  return v;
}

function required(values: Values, name: string, synopsis: string): string {
  const v = str(values, name);
  if (v === undefined) throw usageError(`missing --${name}`, `usage: ${synopsis}`);
  return v;
}

function integer(values: Values, name: string, min: number, max: number): number | undefined {
  const text = str(values, name);
  if (text === undefined) return undefined;
  const n = /^[0-9]{1,16}$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw usageError(
      max === Number.MAX_SAFE_INTEGER
        ? `--${name} expected a positive integer, got ${text}`
        : `--${name} expected an integer from ${min} to ${max}, got ${text}`,
    );
  return n;
}

function list(text: string, name: string): string[] {
  const items = text.split(',').map((s) => s.trim());
  if (items.some((s) => s === '')) throw usageError(`--${name} expected a comma-separated list`);
  if (new Set(items).size !== items.length) throw usageError(`--${name} lists an item twice`);
  return items;
}

// --- output ---

function printJson(io: CliIo, value: unknown): void {
  io.stdout.write(
    `${JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString(10) : v), 2)}\n`,
  );
}

function versionLines(versions: VersionCounts, primary: number): string[] {
  const lines = [`  plaintext     ${versions.plaintext}`];
  for (const [k, n] of Object.entries(versions)) {
    if (k === 'plaintext') continue;
    const v = Number(k);
    const note =
      v === primary ? '  primary' : v < primary ? '  older key' : '  newer than this keyring';
    lines.push(`  version ${k.padEnd(5)} ${n}${note}`);
  }
  return lines;
}

// --- keys ---

async function readKeyring(path: string): Promise<Keyring> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw failure(
      `cannot read keyring ${path}`,
      `create one with: ${NAME} init --keyring ${path} --kek-file PATH`,
    );
  }
  return parseKeyring(text);
}

/** The KEK id the keyring records: one, or the caller must say which. */
function keyringKekId(keyring: Keyring, explicit: string | undefined, flag: string): string {
  if (explicit !== undefined) return explicit;
  const ids = [...new Set(keyring.keys.map((k) => k.kekId))];
  if (ids.length === 1) return ids[0]!;
  throw usageError(
    `the keyring's keys are wrapped by several KEKs (${ids.join(', ')})`,
    `pass ${flag} ID`,
  );
}

function requireLocal(keyring: Keyring): void {
  const other = keyring.keys.find((k) => k.provider !== 'local');
  if (other)
    throw failure(
      `the keyring's keys are wrapped by a ${other.provider} provider; ${NAME} holds local KEKs only`,
      'use the library with that provider (rewrapKeyring moves keys between providers)',
    );
}

/** A local provider from --<prefix>kek-file or --<prefix>kek-env, with its KEK id. */
async function kekProvider(
  values: Values,
  io: CliIo,
  prefix: '' | 'from-' | 'to-',
  kekId: (defaultId: string) => string,
): Promise<{ provider: KeyProvider; kekId: string }> {
  const file = str(values, `${prefix}kek-file`);
  const variable = str(values, `${prefix}kek-env`);
  if ((file === undefined) === (variable === undefined))
    throw usageError(
      `pass one of --${prefix}kek-file PATH or --${prefix}kek-env VAR`,
      prefix === 'to-' || values.keyring === undefined
        ? `create a KEK with: ${NAME} keygen --kek-file PATH`
        : 'the KEK that wrapped the keyring (at init, or at the last rewrap)',
    );
  if (file !== undefined) {
    const id = kekId(basename(file));
    return { provider: await localProviderFromFile(file, id), kekId: id };
  }
  const id = kekId(variable as string);
  return {
    provider: await localProviderFromEnv(variable as string, id, { ...io.env }),
    kekId: id,
  };
}

async function keygen(values: Values, io: CliIo): Promise<number> {
  const path = str(values, 'kek-file');
  if ((path === undefined) === (values.env !== true))
    throw usageError('pass one of --kek-file PATH or --env', `usage: ${COMMANDS.keygen!.synopsis}`);
  if (path !== undefined) {
    try {
      await generateKekFile(path);
    } catch (err) {
      if (FieldsError.is(err) && err.message.includes('refusing to overwrite'))
        throw failure(err.message, 'choose another path; a KEK is never overwritten');
      throw err;
    }
    if (values.json) printJson(io, { kekFile: path });
    else
      io.stdout.write(
        `wrote a new KEK to ${path} (mode 0600); back it up: without it the data is lost\n`,
      );
    return EXIT.ok;
  }
  const kek = generateAeadKey();
  try {
    const text = toBase64url(kek);
    if (values.json) printJson(io, { kek: text });
    else io.stdout.write(`${text}\n`);
  } finally {
    kek.fill(0);
  }
  io.stderr.write(
    `${NAME}: the KEK printed is a secret: store it in your secrets manager, never in the repository\n`,
  );
  return EXIT.ok;
}

async function init(values: Values, io: CliIo): Promise<number> {
  const path = required(values, 'keyring', COMMANDS.init!.synopsis);
  const explicit = str(values, 'kek-id');
  const { provider, kekId } = await kekProvider(values, io, '', (d) => explicit ?? d);
  const keyring = await createKeyring(provider, kekId);
  try {
    await createFile(path, `${JSON.stringify(keyring, null, 2)}\n`);
  } catch (err) {
    if ((err as { code?: unknown }).code === 'EEXIST')
      throw failure(
        `${path} exists; refusing to replace a keyring`,
        `add a key version with: ${NAME} rotate --keyring ${path} ...`,
      );
    throw failure(`cannot write ${path}`);
  }
  if (values.json) printJson(io, { keyring: path, kekId, data: 1, index: 1 });
  else
    io.stdout.write(
      `created keyring ${path}: data key 1, index key 1, wrapped by KEK "${kekId}"\n`,
    );
  return EXIT.ok;
}

async function rotate(values: Values, io: CliIo): Promise<number> {
  const path = required(values, 'keyring', COMMANDS.rotate!.synopsis);
  const keyring = await readKeyring(path);
  requireLocal(keyring);
  const explicit = str(values, 'kek-id');
  const { provider, kekId } = await kekProvider(values, io, '', () =>
    keyringKekId(keyring, explicit, '--kek-id'),
  );
  const purpose = values.index === true ? 'index' : 'data';
  // Unwrap the newest key first: a wrong KEK must fail here, not leave a keyring with keys
  // under two KEKs.
  await createFieldCipher(keyring, provider).keyBytes(purpose, primaryVersion(keyring, purpose));
  const next = await rotateKey(keyring, provider, kekId, purpose);
  await saveKeyring(path, next);
  const version = primaryVersion(next, purpose);
  if (values.json) printJson(io, { keyring: path, purpose, version });
  else if (purpose === 'data')
    io.stdout.write(
      `added data key ${version} to ${path}; give every app instance the new keyring, then move old rows with: ${NAME} reencrypt --mode rotate ...\n`,
    );
  else
    io.stdout.write(
      `added index key ${version} to ${path}; rebuild indexes through <index>_next: ${NAME} reencrypt --mode blind-index ...\n`,
    );
  return EXIT.ok;
}

/** Replaces the keyring file at once and durably; a failure names the file and the cause. */
async function saveKeyring(path: string, keyring: unknown): Promise<void> {
  try {
    await replaceFile(path, `${JSON.stringify(keyring, null, 2)}\n`);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    throw failure(
      `cannot write ${path} (${typeof code === 'string' ? code : 'i/o error'}); the keyring there is unchanged`,
    );
  }
}

async function rewrap(values: Values, io: CliIo): Promise<number> {
  const path = required(values, 'keyring', COMMANDS.rewrap!.synopsis);
  const keyring = await readKeyring(path);
  requireLocal(keyring);
  const fromId = str(values, 'from-kek-id');
  const toId = str(values, 'to-kek-id');
  const from = await kekProvider(values, io, 'from-', () =>
    keyringKekId(keyring, fromId, '--from-kek-id'),
  );
  const to = await kekProvider(values, io, 'to-', (d) => toId ?? d);
  const next = await rewrapKeyring(keyring, {
    from: from.provider,
    to: to.provider,
    kekId: to.kekId,
  });
  await saveKeyring(path, next);
  if (values.json) printJson(io, { keyring: path, kekId: to.kekId, keys: next.keys.length });
  else
    io.stdout.write(
      `rewrapped ${next.keys.length} keys in ${path} with KEK "${to.kekId}"; keep the old KEK until every app instance has this keyring\n`,
    );
  return EXIT.ok;
}

// --- blind-index planning ---

async function plan(values: Values, io: CliIo): Promise<number> {
  const rows = integer(values, 'rows', 1, Number.MAX_SAFE_INTEGER);
  if (rows === undefined) throw usageError('missing --rows', `usage: ${COMMANDS.plan!.synopsis}`);
  const bits = integer(values, 'bits', 8, 256);
  const maxCandidates = integer(values, 'max-candidates', 1, Number.MAX_SAFE_INTEGER);
  const result: BlindIndexPlan = planBlindIndex({
    rows,
    ...(bits === undefined ? {} : { bits }),
    ...(maxCandidates === undefined ? {} : { maxCandidates }),
  });
  if (values.json) {
    printJson(io, result);
    return EXIT.ok;
  }
  const r = result.recommended;
  const lines = [
    `blind index for ${rows} rows`,
    `  bits                        ${result.bits}  (${r ? `recommended ${r.min} to ${r.max}` : result.rowsPerIndexValue < 2 ? 'too few rows: even 8 bits gives most rows an index value of their own' : 'no size keeps 2 rows per index value within --max-candidates false positives'})`,
    `  rows per index value        ${result.rowsPerIndexValue.toPrecision(3)}`,
    `  false positives per lookup  ${result.falsePositivesPerLookup.toPrecision(3)}  (decrypted and discarded)`,
    'what a stolen database reveals through this index:',
    ...result.leaks.map((l) => `  - ${l}`),
  ];
  io.stdout.write(`${lines.join('\n')}\n`);
  return EXIT.ok;
}

// --- database ---

interface OpenedTable {
  readonly db: SqliteDatabase;
  readonly table: FieldTable;
  readonly columns: readonly string[];
}

async function openTable(
  values: Values,
  synopsis: string,
  readonly: boolean,
  extraColumns: readonly string[] = [],
): Promise<OpenedTable> {
  const path = required(values, 'sqlite', synopsis);
  const name = required(values, 'table', synopsis);
  const primaryKey = required(values, 'primary-key', synopsis);
  const columns = list(required(values, 'columns', synopsis), 'columns');
  const tenantColumn = str(values, 'tenant-column');
  const db = await openSqlite(path, { readonly });
  if (!db)
    throw failure(
      'SQLite support needs the better-sqlite3 package, which is not installed (or not built)',
      'npm install better-sqlite3 (or npm rebuild better-sqlite3 when it is installed)',
    );
  try {
    const existing = tableColumns(db, name);
    if (existing.length === 0) throw failure(`${path} has no table ${name}`);
    const wanted = [primaryKey, ...(tenantColumn ? [tenantColumn] : []), ...columns];
    for (const c of [...wanted, ...extraColumns])
      if (!existing.includes(c))
        throw failure(
          `table ${name} has no column ${c}`,
          extraColumns.includes(c)
            ? `add the shadow column first: ALTER TABLE ${name} ADD COLUMN ${c} TEXT`
            : `its columns are ${existing.join(', ')}`,
        );
    const table = sqliteFieldTable(db, {
      table: name,
      primaryKey,
      columns: columns.map((c) => ({ name: c })),
      ...(tenantColumn ? { tenantColumn } : {}),
      extraColumns,
    });
    return { db, table, columns };
  } catch (err) {
    db.close();
    throw err;
  }
}

/** status reads headers only: a provider that refuses makes sure of it. */
const NO_PROVIDER: KeyProvider = {
  kind: 'none',
  keyOperation: () =>
    Promise.reject(
      new FieldsError('UNSUPPORTED_OPERATION', 'cli.status', 'status reads key versions only'),
    ),
};

async function statusCommand(values: Values, io: CliIo): Promise<number> {
  const synopsis = COMMANDS.status!.synopsis;
  const keyring = await readKeyring(required(values, 'keyring', synopsis));
  const batch = integer(values, 'batch', 1, MAX_BATCH_SIZE);
  const { db, table } = await openTable(values, synopsis, true);
  try {
    const fields = createFieldCipher(keyring, NO_PROVIDER);
    const progress = createProgress(io.stderr, table.name, await table.countRows?.());
    let report: StatusReport;
    try {
      report = await status(fields, table, {
        ...(batch === undefined ? {} : { batchSize: batch }),
        ...(io.signal ? { signal: io.signal } : {}),
        onProgress: (rows) => progress.update(rows, ''),
      });
    } finally {
      progress.end();
    }
    if (values.json) printJson(io, report);
    else {
      const lines = [
        `${report.table}: ${report.rows} rows; values per data-key version:`,
        ...versionLines(report.versions, report.primaryVersion),
      ];
      if (report.outdated > 0)
        lines.push(
          `${report.outdated} values use an older key: move them with ${NAME} reencrypt --mode rotate`,
        );
      if (report.versions.plaintext > 0)
        lines.push(
          `${report.versions.plaintext} values are not encrypted: ${NAME} reencrypt --mode encrypt-plaintext`,
        );
      io.stdout.write(`${lines.join('\n')}\n`);
    }
    return EXIT.ok;
  } finally {
    db.close();
  }
}

const MODES: readonly ReencryptMode[] = ['rotate', 'encrypt-plaintext', 'blind-index'];
const NORMALIZERS: readonly Normalizer[] = ['trim', 'casefold', 'nfc'];
const INDEX_ONLY = ['index-name', 'index-column', 'index-version', 'bits', 'normalize'];

async function reencryptCommand(values: Values, io: CliIo): Promise<number> {
  const synopsis = COMMANDS.reencrypt!.synopsis;
  const keyringPath = required(values, 'keyring', synopsis);
  const mode = (str(values, 'mode') ?? 'rotate') as ReencryptMode;
  if (!MODES.includes(mode)) throw usageError(`--mode expected one of ${MODES.join(', ')}`);
  const dryRun = values['dry-run'] === true;
  const checkpointPath = str(values, 'checkpoint');
  if (dryRun && checkpointPath !== undefined)
    throw usageError('--dry-run writes nothing, not even a checkpoint: drop --checkpoint');
  const batch = integer(values, 'batch', 1, MAX_BATCH_SIZE);

  let index: ShadowIndexSpec | undefined;
  let indexVersion: number | undefined;
  if (mode === 'blind-index') {
    const name = str(values, 'index-name');
    if (name === undefined)
      throw usageError('--mode blind-index needs --index-name NAME', `usage: ${synopsis}`);
    const columns = list(required(values, 'columns', synopsis), 'columns');
    if (columns.length !== 1)
      throw usageError(
        '--mode blind-index takes one column in --columns: the one the index is computed from',
      );
    const bits = integer(values, 'bits', 8, 256);
    const normalizeText = str(values, 'normalize');
    const normalize = normalizeText === undefined ? [] : list(normalizeText, 'normalize');
    for (const n of normalize)
      if (!NORMALIZERS.includes(n as Normalizer))
        throw usageError(`--normalize expected some of ${NORMALIZERS.join(',')}, got ${n}`);
    const indexColumn = str(values, 'index-column');
    index = {
      column: columns[0]!,
      name,
      ...(indexColumn === undefined ? {} : { indexColumn }),
      ...(bits === undefined ? {} : { bits }),
      ...(normalize.length ? { normalize: normalize as Normalizer[] } : {}),
    };
    indexVersion = integer(values, 'index-version', 1, 0xffff_ffff);
  } else {
    const stray = INDEX_ONLY.find((o) => values[o] !== undefined);
    if (stray) throw usageError(`--${stray} is for --mode blind-index only`);
  }

  const keyring = await readKeyring(keyringPath);
  requireLocal(keyring);
  const explicit = str(values, 'kek-id');
  const { provider } = await kekProvider(values, io, '', () =>
    keyringKekId(keyring, explicit, '--kek-id'),
  );
  const fields = createFieldCipher(keyring, provider);
  // Fail on a wrong KEK before touching the database.
  await fields.keyBytes('data', fields.primaryVersion);

  const shadow = index ? [`${index.indexColumn ?? index.name}_next`] : [];
  const { db, table } = await openTable(values, synopsis, dryRun, shadow);
  const label = `${table.name}${dryRun ? ' (dry run)' : ''}`;
  try {
    const total = await table.countRows?.();
    const progress = createProgress(io.stderr, label, total);
    const verb = {
      rotate: 're-encrypted',
      'encrypt-plaintext': 'encrypted',
      'blind-index': 'indexed',
    }[mode];
    let report: ReencryptReport;
    try {
      report = await reencrypt({
        fields,
        table,
        mode,
        dryRun,
        ...(batch === undefined ? {} : { batchSize: batch }),
        ...(checkpointPath === undefined
          ? {}
          : { checkpoint: fileCheckpointStore(checkpointPath) }),
        ...(io.signal ? { signal: io.signal } : {}),
        ...(index
          ? {
              blindIndex: {
                keyring,
                indexes: [index],
                ...(indexVersion === undefined ? {} : { version: indexVersion }),
              },
            }
          : {}),
        onProgress: (p) =>
          progress.update(p.rowsScanned, `${p.rowsUpdated} ${dryRun ? `to be ${verb}` : verb}`),
      });
    } catch (err) {
      progress.end();
      if (!FieldsError.is(err) || err.operation !== 'fields.reencrypt') throw err;
      const hint = hintFor(err, mode);
      const aValue = /DECRYPTION_FAILED|UNKNOWN_KEY|UNSUPPORTED_VERSION|PLAINTEXT_VALUE/.test(
        err.code,
      );
      throw failure(
        err.message,
        aValue && checkpointPath
          ? `${hint ?? 'fix that row'}; then run the same command again: it resumes from ${checkpointPath}`
          : hint,
      );
    }
    progress.end();

    if (values.json) printJson(io, report);
    else {
      const done = dryRun
        ? `dry run, nothing written: ${report.rowsScanned} rows scanned, ${report.rowsUpdated} to be ${verb} (${report.valuesUpdated} values)`
        : `${report.rowsScanned} rows scanned, ${report.rowsUpdated} ${verb} (${report.valuesUpdated} values), ${report.rowsSkipped} skipped (changed meanwhile)`;
      const lines = [`${table.name}: ${done}`];
      if (mode !== 'blind-index') {
        lines.push(
          `values per data-key version${dryRun ? ' (as read)' : ''}:`,
          ...versionLines(report.versions, fields.primaryVersion),
        );
      }
      io.stdout.write(`${lines.join('\n')}\n`);
    }
    if (!report.complete) {
      io.stderr.write(`${NAME}: interrupted after ${report.rowsScanned} rows\n`);
      io.stderr.write(
        checkpointPath
          ? `${NAME}: hint: progress is saved in ${checkpointPath}; run the same command again to resume\n`
          : `${NAME}: hint: pass --checkpoint PATH to make runs resumable (running again from the start is safe)\n`,
      );
      return EXIT.interrupted;
    }
    if (report.rowsSkipped > 0 && !values.json)
      io.stderr.write(
        `${NAME}: hint: ${report.rowsSkipped} rows changed while the job ran and were left alone; run again to check them\n`,
      );
    return EXIT.ok;
  } finally {
    db.close();
  }
}

// --- errors ---

/** The likely fix for a library error, where we know it. */
function hintFor(err: FieldsError, mode?: ReencryptMode): string | undefined {
  const m = err.message;
  if (err.operation.startsWith('provider.local') && err.code === 'DECRYPTION_FAILED')
    return 'this KEK did not wrap the keyring: pass the KEK used at init (or at the last rewrap)';
  if (err.code === 'UNKNOWN_KEY' && /no KEK/.test(m))
    return 'pass --kek-id with the KEK id the keyring records';
  if (/looks like a KEK itself/.test(m))
    return 'pass the name of the variable that holds the KEK (--kek-env VAR), or the path of its file (--kek-file PATH), never the KEK';
  if (/cannot read key file/.test(m)) return `create a KEK with: ${NAME} keygen --kek-file PATH`;
  if (/environment variable .* is not set/.test(m))
    return `set it from your secrets manager (a new KEK: ${NAME} keygen --env)`;
  if (err.operation === 'keyring.parse') return `is this a keyring written by ${NAME} init?`;
  if (err.operation === 'fields.parseCheckpoint')
    return 'the checkpoint file is damaged: remove it to start over (that is safe)';
  if (/checkpoint .*remove it/.test(m))
    return 'use the checkpoint with the run it belongs to, or remove it to start over (that is safe)';
  const located = err.operation === 'fields.reencrypt' || err.operation === 'fields.status';
  if (
    located &&
    mode === 'encrypt-plaintext' &&
    /DECRYPTION_FAILED|UNSUPPORTED_VERSION/.test(err.code)
  )
    return 'that value is either a damaged ciphertext or a plaintext that merely begins like one (bytes 0xCF, or text "cf" digit ":"), which no reader can tell apart: encrypt that row through the app, or restore it';
  if (err.code === 'DECRYPTION_FAILED' && located)
    return 'that value was tampered with, copied from another row or column, or sealed with another keyring: restore it or set it to NULL';
  if (err.code === 'UNKNOWN_KEY' && located)
    return 'the keyring lacks the key that value needs: use a keyring that still holds it';
  if (err.code === 'PLAINTEXT_VALUE')
    return `encrypt plaintext values first: ${NAME} reencrypt --mode encrypt-plaintext ...`;
  return undefined;
}

/**
 * The `coffer-fields` command line, in-process: parses `argv` (without node and the script),
 * runs the command and returns the exit status (0 ok, 1 error, 2 usage, 130 interrupted).
 * Results go to `io.stdout`, progress and errors to `io.stderr`; nothing calls process.exit.
 *
 * @example process.exitCode = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env });
 */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined) {
    io.stderr.write(USAGE);
    return EXIT.usage;
  }
  if (command === '-h' || command === '--help' || command === 'help') {
    io.stdout.write(USAGE);
    return EXIT.ok;
  }
  const spec = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
  try {
    if (!spec)
      throw usageError(
        command.startsWith('-')
          ? `expected a command before ${command}`
          : `unknown command ${command}`,
        `commands: ${Object.keys(COMMANDS).join(', ')}; see ${NAME} --help`,
      );
    const values = parse(command, spec, rest);
    if (values.help) {
      io.stdout.write(USAGE);
      return EXIT.ok;
    }
    return await spec.run(values, io);
  } catch (err) {
    return report(err, io);
  }
}

function report(err: unknown, io: CliIo): number {
  const say = (kind: 'error' | 'hint', text: string) =>
    io.stderr.write(`${NAME}: ${kind}: ${text}\n`);
  if (err instanceof CliError) {
    say('error', err.message);
    if (err.hint) say('hint', err.hint);
    return err.exitCode;
  }
  if (io.signal?.aborted && (err as { name?: unknown })?.name === 'AbortError') {
    say('error', 'interrupted');
    return EXIT.interrupted;
  }
  if (FieldsError.is(err)) {
    say('error', err.message);
    const hint = hintFor(err);
    if (hint) say('hint', hint);
    return EXIT.error;
  }
  // Our own messages never hold keys or values; a foreign error's message is shown as it is
  // (SQLite's name tables and columns, not bound values).
  say('error', err instanceof Error ? err.message : String(err));
  return EXIT.error;
}
