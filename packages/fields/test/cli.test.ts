import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { openSqlite, type SqliteDatabase } from '../src/_cli-sqlite.js';
import { type CliIo, main } from '../src/cli.js';
import {
  createBlindIndexer,
  createFieldCipher,
  localProviderFromFile,
  parseKeyring,
} from '../src/index.js';
import { parseCheckpoint } from '../src/reencrypt.js';

const dir = mkdtempSync(join(tmpdir(), 'coffer-fields-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const at = (name: string) => join(dir, name);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI in-process with collecting streams. */
async function cli(
  argv: string[],
  options: {
    env?: Record<string, string>;
    tty?: boolean;
    signal?: AbortSignal;
    onStderr?: (s: string) => void;
  } = {},
): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: {
      isTTY: options.tty ?? false,
      columns: 100,
      write: (s: string) => {
        stderr += s;
        options.onStderr?.(s);
      },
    },
    env: options.env ?? {},
    ...(options.signal ? { signal: options.signal } : {}),
  };
  const code = await main(argv, io);
  return { code, stdout, stderr };
}

describe('coffer-fields: keys', () => {
  test('keygen, init, rotate, rewrap; never a key on screen but keygen --env', async () => {
    const kek = at('app.kek');
    const keyring = at('keyring.json');
    const made = await cli(['keygen', '--kek-file', kek]);
    expect(made).toMatchObject({ code: 0, stderr: '' });
    expect(statSync(kek).mode & 0o777).toBe(0o600);
    const kekText = readFileSync(kek, 'utf8').trim();
    expect(kekText).toMatch(/^[A-Za-z0-9_-]{43}$/);

    const again = await cli(['keygen', '--kek-file', kek]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^coffer-fields: error: .*exists; refusing to overwrite/);
    expect(again.stderr).toContain('coffer-fields: hint: choose another path');

    const init = await cli(['init', '--keyring', keyring, '--kek-file', kek, '--json']);
    expect(init.code).toBe(0);
    expect(JSON.parse(init.stdout)).toEqual({ keyring, kekId: 'app.kek', data: 1, index: 1 });
    const ring = parseKeyring(readFileSync(keyring, 'utf8'));
    expect(ring.keys.map((k) => `${k.purpose}/${k.version}/${k.kekId}`)).toEqual([
      'data/1/app.kek',
      'index/1/app.kek',
    ]);
    expect((await cli(['init', '--keyring', keyring, '--kek-file', kek])).stderr).toContain(
      'refusing to replace a keyring',
    );

    expect((await cli(['rotate', '--keyring', keyring, '--kek-file', kek])).code).toBe(0);
    const index = await cli([
      'rotate',
      '--keyring',
      keyring,
      '--kek-file',
      kek,
      '--index',
      '--json',
    ]);
    expect(JSON.parse(index.stdout)).toEqual({ keyring, purpose: 'index', version: 2 });
    expect(
      parseKeyring(readFileSync(keyring, 'utf8')).keys.map((k) => `${k.purpose}/${k.version}`),
    ).toEqual(['data/1', 'index/1', 'data/2', 'index/2']);

    // keygen --env prints the KEK, by design, and says on stderr that it is a secret.
    const env = await cli(['keygen', '--env']);
    expect(env.code).toBe(0);
    const envKek = env.stdout.trim();
    expect(envKek).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(env.stderr).toContain('secret');

    // Master-key rotation to the environment KEK; the old KEK no longer opens the keyring.
    const rewrap = await cli(
      ['rewrap', '--keyring', keyring, '--from-kek-file', kek, '--to-kek-env', 'FIELDS_KEK'],
      { env: { FIELDS_KEK: envKek } },
    );
    expect(rewrap.code).toBe(0);
    expect(rewrap.stdout).toContain('with KEK "FIELDS_KEK"');
    expect(
      parseKeyring(readFileSync(keyring, 'utf8')).keys.every((k) => k.kekId === 'FIELDS_KEK'),
    ).toBe(true);
    const withEnv = await cli(['rotate', '--keyring', keyring, '--kek-env', 'FIELDS_KEK'], {
      env: { FIELDS_KEK: envKek },
    });
    expect(withEnv.code).toBe(0);

    // The old KEK (under the right id) does not unwrap: a clear error and hint.
    const wrong = await cli([
      'rotate',
      '--keyring',
      keyring,
      '--kek-file',
      kek,
      '--kek-id',
      'FIELDS_KEK',
    ]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain(
      'coffer-fields: error: provider.local.unwrap: wrapped key does not unwrap',
    );
    expect(wrong.stderr).toContain('coffer-fields: hint: this KEK did not wrap the keyring');
    // A missing variable.
    const unset = await cli(['rotate', '--keyring', keyring, '--kek-env', 'FIELDS_KEK']);
    expect(unset.code).toBe(1);
    expect(unset.stderr).toContain('environment variable FIELDS_KEK is not set');

    for (const out of [made, again, init, index, rewrap, withEnv, wrong, unset])
      expect(out.stdout + out.stderr).not.toContain(kekText);
    for (const out of [made, again, init, index, rewrap, withEnv, wrong, unset])
      expect(out.stdout + out.stderr).not.toContain(envKek);
  });

  test('plan: recommended bits, false positives and leakage, as text and JSON', async () => {
    const text = await cli(['plan', '--rows', '1000000']);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('recommended 10 to 18');
    expect(text.stdout).toContain('false positives per lookup');
    expect(text.stdout).toContain('what a stolen database reveals');
    const json = await cli(['plan', '--rows', '1000000', '--bits', '24', '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({ rows: 1000000, bits: 24 });
  });
});

describe('coffer-fields: usage errors exit 2 with a clear message', () => {
  test.each([
    [[], 'Usage:'],
    [['frobnicate'], 'error: unknown command frobnicate'],
    [['--keyring', 'x'], 'error: expected a command before --keyring'],
    [['plan'], 'error: missing --rows'],
    [['plan', '--rows', '0'], 'error: --rows expected a positive integer, got 0'],
    [['plan', '--rows', '10', '--bits', '300'], 'error: --bits expected an integer from 8 to 256'],
    [['plan', '--rows', '10', '--keyring', 'k'], 'error: plan does not take --keyring'],
    [['plan', '--rows'], 'error: --rows needs a value'],
    [['plan', '--rows', '1', '--rows', '2'], 'error: --rows given twice'],
    [['plan', '--rows', '1', 'extra'], 'error: unexpected argument extra'],
    [['keygen'], 'error: pass one of --kek-file PATH or --env'],
    [['keygen', '--env', '--kek-file', 'x'], 'error: pass one of --kek-file PATH or --env'],
    [['keygen', '--env=yes'], 'error: --env takes no value'],
    [['init', '--kek-file', 'x'], 'error: missing --keyring'],
    [['init', '--keyring', 'k'], 'error: pass one of --kek-file PATH or --kek-env VAR'],
    [['reencrypt', '--keyring', 'k', '--mode', 'shred'], 'error: --mode expected one of'],
    [['reencrypt', '--keyring', 'k', '--dry-run', '--checkpoint', 'c'], 'not even a checkpoint'],
    [['reencrypt', '--keyring', 'k', '--bits', '16'], 'error: --bits is for --mode blind-index'],
    [['reencrypt', '--keyring', 'k', '--mode', 'blind-index'], 'needs --index-name'],
    [['reencrypt', '--keyring', 'k', '--batch', '0'], 'error: --batch expected an integer from 1'],
  ])('%j', async (argv, message) => {
    const out = await cli(argv);
    expect(out.code).toBe(2);
    expect(out.stdout).toBe('');
    expect(out.stderr).toContain(message);
    if (argv.length) expect(out.stderr).toMatch(/^coffer-fields: error: /);
  });

  test('--help prints the usage, with examples and exit statuses, on stdout', async () => {
    for (const argv of [['--help'], ['-h'], ['help'], ['plan', '--help']]) {
      const out = await cli(argv);
      expect(out.code).toBe(0);
      expect(out.stdout).toContain('Examples:');
      expect(out.stdout).toContain('0 success, 1 error, 2 usage error');
      expect(out.stdout).toContain('the one\n                          command that prints a key');
    }
  });

  test('the launcher runs from source (tsx) and passes exit statuses through', async () => {
    const bin = fileURLToPath(new URL('../bin/coffer-fields.mjs', import.meta.url));
    const run = promisify(execFile);
    const help = await run(process.execPath, [bin, '--help']);
    expect(help.stdout).toContain('Usage:');
    const bad = await run(process.execPath, [bin, 'plan', '--rows', 'x']).catch(
      (err: { code: number; stderr: string }) => err,
    );
    expect(bad).toMatchObject({ code: 2 });
    expect((bad as { stderr: string }).stderr).toContain('coffer-fields: error: --rows');
  });
});

const sqliteProbe = await openSqlite(':memory:', { readonly: false }).catch(() => undefined);
sqliteProbe?.close();
if (!sqliteProbe)
  console.warn('NOTICE: better-sqlite3 unavailable; coffer-fields SQLite tests skipped');

describe.skipIf(!sqliteProbe)('coffer-fields: status and reencrypt on SQLite', () => {
  const kek = at('db.kek');
  const keyring = at('db-keyring.json');
  const dbPath = at('app.db');
  const table = ['--sqlite', dbPath, '--table', 'users', '--primary-key', 'id'];
  const db = () => openSqlite(dbPath, { readonly: false }) as Promise<SqliteDatabase>;

  async function fieldsNow() {
    const ring = parseKeyring(readFileSync(keyring, 'utf8'));
    return createFieldCipher(ring, await localProviderFromFile(kek, 'db.kek'));
  }

  test('migrate plaintext, rotate, re-encrypt with an interruption, rebuild a blind index', async () => {
    expect((await cli(['keygen', '--kek-file', kek])).code).toBe(0);
    expect((await cli(['init', '--keyring', keyring, '--kek-file', kek])).code).toBe(0);
    writeFileSync(dbPath, ''); // an empty file is an empty database
    const d = await db();
    d.prepare(
      'CREATE TABLE users (id INTEGER PRIMARY KEY, org TEXT NOT NULL, email TEXT, note TEXT, email_eq TEXT)',
    ).run();
    const insert = d.prepare('INSERT INTO users (id, org, email, note) VALUES (?, ?, ?, ?)');
    for (let i = 1; i <= 120; i++)
      insert.run(i, i % 2 ? 'acme' : 'globex', ` User${i}@Example.com`, i % 4 ? `note ${i}` : null);
    d.close();
    const cols = [...table, '--columns', 'email,note', '--tenant-column', 'org'];
    const kekArgs = ['--keyring', keyring, '--kek-file', kek];

    const before = await cli(['status', '--keyring', keyring, ...cols, '--json']);
    expect(before.code).toBe(0);
    expect(JSON.parse(before.stdout)).toMatchObject({ rows: 120, versions: { plaintext: 210 } });

    // Dry run: counts, writes nothing.
    const dry = await cli([
      'reencrypt',
      ...kekArgs,
      ...cols,
      '--mode',
      'encrypt-plaintext',
      '--dry-run',
    ]);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain(
      'dry run, nothing written: 120 rows scanned, 120 to be encrypted (210 values)',
    );
    expect(
      JSON.parse((await cli(['status', '--keyring', keyring, ...cols, '--json'])).stdout).versions,
    ).toEqual({
      plaintext: 210,
    });

    const migrate = await cli([
      'reencrypt',
      ...kekArgs,
      ...cols,
      '--mode',
      'encrypt-plaintext',
      '--batch',
      '50',
    ]);
    expect(migrate.code).toBe(0);
    expect(migrate.stdout).toContain('120 rows scanned, 120 encrypted (210 values), 0 skipped');
    expect(migrate.stderr).toContain('coffer-fields: users: 50/120 rows, 50 encrypted');
    expect(migrate.stdout + migrate.stderr).not.toContain('Example.com');

    // Rotate, then re-encrypt, interrupted at the first progress report and resumed.
    expect((await cli(['rotate', ...kekArgs])).code).toBe(0);
    const outdated = await cli(['status', '--keyring', keyring, ...cols]);
    expect(outdated.stdout).toContain('210 values use an older key');
    const checkpoint = at('users.checkpoint');
    const controller = new AbortController();
    const stopped = await cli(
      ['reencrypt', ...kekArgs, ...cols, '--batch', '40', '--checkpoint', checkpoint],
      { signal: controller.signal, onStderr: () => controller.abort() },
    );
    expect(stopped.code).toBe(130);
    expect(stopped.stderr).toContain('interrupted after 40 rows');
    expect(stopped.stderr).toContain(
      `progress is saved in ${checkpoint}; run the same command again`,
    );
    expect(parseCheckpoint(readFileSync(checkpoint, 'utf8'))).toMatchObject({
      lastKey: 40n,
      complete: false,
    });

    const resumed = await cli(
      ['reencrypt', ...kekArgs, ...cols, '--batch', '40', '--checkpoint', checkpoint, '--json'],
      { tty: true },
    );
    expect(resumed.code).toBe(0);
    expect(JSON.parse(resumed.stdout)).toMatchObject({
      complete: true,
      resumed: true,
      rowsScanned: 120,
      rowsUpdated: 120,
      versions: { plaintext: 0, 2: 210 },
      lastKey: '120',
    });
    // On a terminal, a bar redrawn in place.
    expect(resumed.stderr).toContain('\r\x1b[Kusers [');
    expect(resumed.stderr).toMatch(/users \[#+\.*\] +\d+% \d+\/120 rows/);

    const fields = await fieldsNow();
    const rows = (await db()).prepare('SELECT id, org, email, note FROM users').all() as {
      id: number;
      org: string;
      email: string;
      note: string | null;
    }[];
    for (const r of rows) {
      const ctx = (column: string) => ({ tenant: r.org, table: 'users', column, rowId: r.id });
      expect(fields.keyVersionOf(r.email)).toBe(2);
      expect(await fields.decrypt(r.email, ctx('email'))).toBe(` User${r.id}@Example.com`);
      if (r.note !== null) expect(await fields.decrypt(r.note, ctx('note'))).toBe(`note ${r.id}`);
    }

    // Blind index through the shadow column: missing column first, with the fix as a hint.
    expect((await cli(['rotate', ...kekArgs, '--index'])).code).toBe(0);
    const indexArgs = [
      'reencrypt',
      ...kekArgs,
      ...table,
      '--tenant-column',
      'org',
      '--columns',
      'email',
      '--mode',
      'blind-index',
      '--index-name',
      'email_eq',
      '--normalize',
      'trim,casefold',
      '--bits',
      '16',
    ];
    const noShadow = await cli(indexArgs);
    expect(noShadow.code).toBe(1);
    expect(noShadow.stderr).toContain(
      'coffer-fields: hint: add the shadow column first: ALTER TABLE users ADD COLUMN email_eq_next TEXT',
    );
    const d2 = await db();
    d2.prepare('ALTER TABLE users ADD COLUMN email_eq_next TEXT').run();
    d2.close();
    const filled = await cli(indexArgs);
    expect(filled.code).toBe(0);
    expect(filled.stdout).toContain('120 rows scanned, 120 indexed (120 values)');
    const indexer = createBlindIndexer(
      parseKeyring(readFileSync(keyring, 'utf8')),
      await fieldsNow(),
    );
    const row7 = (await db()).prepare('SELECT email_eq_next FROM users WHERE id = 7').get() as {
      email_eq_next: string;
    };
    expect(row7.email_eq_next).toBe(
      await indexer.compute('user7@example.com', {
        tenant: 'acme',
        table: 'users',
        column: 'email',
        name: 'email_eq',
        bits: 16,
        normalize: ['trim', 'casefold'],
        version: 2,
      }),
    );
    expect((await cli(indexArgs)).stdout).toContain('0 indexed');
  });

  test('rotation through the CLI keeps padded lengths', async () => {
    const kekArgs = ['--keyring', keyring, '--kek-file', kek];
    const d = await db();
    d.prepare('CREATE TABLE cards (id INTEGER PRIMARY KEY, pan TEXT)').run();
    const fields = await fieldsNow();
    const insert = d.prepare('INSERT INTO cards (id, pan) VALUES (?, ?)');
    for (let i = 1; i <= 3; i++) {
      const where = { table: 'cards', column: 'pan', rowId: i };
      insert.run(i, await fields.encrypt('4111'.repeat(i), where, { padTo: 256 }));
    }
    const lengths = (x: SqliteDatabase) =>
      (x.prepare('SELECT pan FROM cards ORDER BY id').all() as { pan: string }[]).map(
        (r) => r.pan.length,
      );
    expect(lengths(d)).toEqual([392, 392, 392]);
    d.close();
    expect((await cli(['rotate', ...kekArgs])).code).toBe(0);
    const cards = [
      '--sqlite',
      dbPath,
      '--table',
      'cards',
      '--primary-key',
      'id',
      '--columns',
      'pan',
    ];
    const out = await cli(['reencrypt', ...kekArgs, ...cards, '--json']);
    expect(out.code).toBe(0);
    expect(JSON.parse(out.stdout)).toMatchObject({ rowsUpdated: 3 });
    const after = await db();
    expect(lengths(after)).toEqual([392, 392, 392]);
    const rotated = await fieldsNow();
    const { pan } = after.prepare('SELECT pan FROM cards WHERE id = 2').get() as { pan: string };
    after.close();
    expect(rotated.keyVersionOf(pan)).toBe(rotated.primaryVersion);
    expect(await rotated.decrypt(pan, { table: 'cards', column: 'pan', rowId: 2 })).toBe(
      '41114111',
    );
  });

  test('a value that does not open: exit 1, the row named, a hint, no value printed', async () => {
    const kekArgs = ['--keyring', keyring, '--kek-file', kek];
    const d = await db();
    const { email } = d.prepare('SELECT email FROM users WHERE id = 9').get() as { email: string };
    const tampered = `${email.slice(0, -3)}${email.endsWith('AAA') ? 'BBB' : 'AAA'}`;
    d.prepare('UPDATE users SET email = ? WHERE id = 9').run(tampered);
    d.close();
    expect((await cli(['rotate', ...kekArgs])).code).toBe(0);
    const out = await cli([
      'reencrypt',
      ...kekArgs,
      ...table,
      '--columns',
      'email,note',
      '--tenant-column',
      'org',
      '--checkpoint',
      at('fail.checkpoint'),
    ]);
    expect(out.code).toBe(1);
    expect(out.stderr).toContain(
      'coffer-fields: error: fields.reencrypt: users.email row 9: fields.decrypt: decryption failed',
    );
    expect(out.stderr).toContain('coffer-fields: hint: that value was tampered with');
    expect(out.stderr).toContain('it resumes from');
    expect(out.stderr).not.toContain(tampered.slice(4, 24));
    expect(parseCheckpoint(readFileSync(at('fail.checkpoint'), 'utf8')).lastKey).toBe(8n);

    const missing = await cli(['status', '--keyring', keyring, ...table, '--columns', 'emial']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('coffer-fields: error: table users has no column emial');
    expect(missing.stderr).toContain('hint: its columns are id, org, email, note');
  });
});
