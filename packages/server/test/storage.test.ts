// The storage layer against real SQLite and PostgreSQL: one suite, run on each.
import { randomBytes } from 'node:crypto';
import { generateAeadKey } from '@coffer/crypto';
import { createLocalProvider, FieldsError } from '@coffer/fields';
import { Migrator, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { storageMigrations } from '../src/storage/_migrations.js';
import { openStorage } from '../src/storage/open.js';
import {
  type NewAccount,
  type NewSession,
  type Storage,
  StorageConflictError,
} from '../src/storage/types.js';
import {
  createTestDatabase,
  postgresAvailable,
  type TestDatabase,
  type TestDialect,
} from './_db.js';

const postgres = await postgresAvailable();
const DIALECTS: TestDialect[] = ['sqlite', 'postgres'];
const DAY = 86_400_000;

const rand = (n: number) => new Uint8Array(randomBytes(n));
/** A 22-character b64url id, as account and device ids are (account-v1 §1). */
const newId = () => randomBytes(16).toString('base64url');
const newUsername = () => `u${randomBytes(6).toString('hex')}`;

function newSession(accountId: string, overrides: Partial<NewSession> = {}): NewSession {
  const now = Date.now();
  return {
    tokenHash: rand(32),
    accountId,
    deviceId: newId(),
    kind: 'session',
    createdAt: now,
    expiresAt: now + 30 * DAY,
    authAt: now,
    ...overrides,
  };
}

function newAccount(username: string, overrides: Partial<NewAccount> = {}): NewAccount {
  const accountId = overrides.accountId ?? newId();
  return {
    accountId,
    username,
    opaqueRecord: rand(192),
    manifest: { seq: 1, body: rand(150), signature: rand(64) },
    backup: { version: 1, data: rand(300) },
    recoveryVerifier: rand(32),
    session: newSession(accountId),
    ...overrides,
  };
}

/** Awaits `run` and checks it failed with StorageConflictError(`what`). */
async function conflict(
  run: Promise<unknown>,
  what: StorageConflictError['what'],
): Promise<StorageConflictError> {
  const err = await run.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected a conflict on ${what}`).toBeInstanceOf(StorageConflictError);
  expect((err as StorageConflictError).what).toBe(what);
  return err as StorageConflictError;
}

/** Of settled promises, how many were fulfilled; every rejection must be a conflict on `what`. */
function onlyOneWins(
  results: PromiseSettledResult<unknown>[],
  what: StorageConflictError['what'],
): void {
  const won = results.filter((r) => r.status === 'fulfilled');
  expect(won).toHaveLength(1);
  for (const r of results) {
    if (r.status === 'rejected') {
      expect(r.reason).toBeInstanceOf(StorageConflictError);
      expect((r.reason as StorageConflictError).what).toBe(what);
    }
  }
}

describe.each(DIALECTS)('storage on %s', (dialect) => {
  const suite = dialect === 'postgres' && !postgres ? describe.skip : describe;

  suite('', () => {
    let tdb: TestDatabase;
    let storage: Storage;

    beforeAll(async () => {
      tdb = await createTestDatabase(dialect, 'storage');
      storage = await tdb.open();
    });
    afterAll(async () => {
      await tdb?.dispose();
    });

    describe('open', () => {
      test('reports its dialect and answers ping', async () => {
        expect(storage.dialect).toBe(dialect);
        await storage.ping();
      });

      test('opening again is a no-op for migrations and reads the same keyring', async () => {
        const a = newAccount(newUsername());
        await storage.accounts.create(a);
        const again = await tdb.open();
        expect(await again.accounts.get(a.accountId)).toMatchObject({ username: a.username });
        const migrations = await sql<{
          name: string;
        }>`select name from kysely_migration`.execute(tdb.raw());
        expect(migrations.rows.map((r) => r.name)).toEqual([
          '0001_initial',
          '0002_key_packages',
          '0003_delivery',
          '0004_blobs',
          '0005_delivery_limits',
          '0006_retired_accounts',
          '0007_link_refusal',
          '0008_u32_columns',
          '0009_throttle_idle',
        ]);
        const keyrings = await tdb.raw().selectFrom('coffer_keyring').selectAll().execute();
        expect(keyrings).toHaveLength(1);
        // Only wrapped keys: every entry names its KEK and has no field holding a raw key.
        const keyring = JSON.parse(keyrings[0]!.keyring) as { keys: Record<string, unknown>[] };
        for (const entry of keyring.keys)
          expect(Object.keys(entry).sort()).toEqual(
            ['createdAt', 'kekId', 'provider', 'purpose', 'version', 'wrapped'].sort(),
          );
      });

      test('a database at 0001 upgrades to 0002, and the new table works', async () => {
        const old = await createTestDatabase(dialect, 'storage_upgrade');
        try {
          // Kysely's migrator on the raw connection, stopped after the first migration.
          const all = await storageMigrations(dialect).getMigrations();
          const first = new Migrator({
            db: old.raw(),
            provider: { getMigrations: async () => ({ '0001_initial': all['0001_initial']! }) },
            ...(old.pgSchema ? { migrationTableSchema: old.pgSchema } : {}),
          });
          expect((await first.migrateToLatest()).error).toBeUndefined();
          // open() runs only what is pending (0002) on the 0001 database.
          const before = await old.open();
          const a = newAccount(newUsername());
          await before.accounts.create(a);
          await before.keyPackages.add(
            a.accountId,
            'd'.repeat(22),
            { keyPackages: [rand(40)] },
            { cap: 10, manifestSeq: 1 },
          );
          const after = await old.open();
          expect(await after.accounts.get(a.accountId)).toMatchObject({ username: a.username });
          expect(await after.keyPackages.count(a.accountId, 'd'.repeat(22))).toEqual({
            available: 1,
            lastResort: false,
          });
        } finally {
          await old.dispose();
        }
      });

      test('two instances opening a fresh database at once agree on everything', async () => {
        const fresh = await createTestDatabase(dialect, 'storage_race');
        try {
          const [a, b] = await Promise.all([fresh.open(), fresh.open()]);
          const secret = rand(32);
          expect(await a.secrets.putIfAbsent('opaque-server-setup', secret)).toEqual(secret);
          expect(await b.secrets.get('opaque-server-setup')).toEqual(secret);
          const acc = newAccount(newUsername());
          await b.accounts.create(acc);
          expect(await a.accounts.findByUsername(acc.username)).toMatchObject({
            accountId: acc.accountId,
            opaqueRecord: acc.opaqueRecord,
          });
        } finally {
          await fresh.dispose();
        }
      });

      // SQLite only (defined, not skipped, for the other dialect: CI allows no skips).
      const sqliteOnly = dialect === 'sqlite' ? test : () => {};
      sqliteOnly('opens with either sync mode and refuses any other', async () => {
        for (const sqliteSync of ['normal', 'full'] as const) {
          const s = await openStorage({ ...tdb.options, sqlitePath: ':memory:', sqliteSync });
          try {
            expect(await s.accounts.usernameTaken('nobody')).toBe(false);
          } finally {
            await s.close();
          }
        }
        await expect(
          openStorage({ ...tdb.options, sqlitePath: ':memory:', sqliteSync: 'off' as 'full' }),
        ).rejects.toThrow(/sqliteSync/);
      });

      sqliteOnly('an in-memory SQLite database works', async () => {
        const memory = await openStorage({ ...tdb.options, sqlitePath: ':memory:' });
        try {
          const a = newAccount(newUsername());
          await memory.accounts.create(a);
          expect(await memory.accounts.usernameTaken(a.username)).toBe(true);
          expect(await storage.accounts.usernameTaken(a.username)).toBe(false);
        } finally {
          await memory.close();
        }
      });

      test('a provider without the keyring KEK cannot open the database', async () => {
        const other = await createLocalProvider({ kek1: generateAeadKey() });
        const err = await tdb.open({ provider: other }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(FieldsError.is(err)).toBe(true);
      });

      test('bad options are refused by name', async () => {
        const { provider } = tdb;
        await expect(openStorage({ provider, kekId: 'kek1' })).rejects.toThrow(/exactly one/);
        await expect(
          openStorage({ provider, kekId: 'kek1', sqlitePath: ':memory:', url: 'postgres://x' }),
        ).rejects.toThrow(/exactly one/);
        await expect(openStorage({ provider, kekId: '', sqlitePath: ':memory:' })).rejects.toThrow(
          /"kekId"/,
        );
        await expect(
          openStorage({ provider, kekId: 'kek1', url: 'postgres://x', pgSchema: 'Bad;schema' }),
        ).rejects.toThrow(/"pgSchema"/);
      });
    });

    describe('accounts', () => {
      test('create, then get, findByUsername, usernameTaken, recoveryVerifier', async () => {
        const before = Date.now();
        const a = newAccount(`Ada.Lovelace${randomBytes(2).toString('hex')}`);
        await storage.accounts.create(a);
        const normalized = a.username.toLowerCase();
        const got = await storage.accounts.get(a.accountId);
        expect(got).toEqual({
          accountId: a.accountId,
          username: a.username,
          createdAt: expect.any(Number),
        });
        expect(got!.createdAt).toBeGreaterThanOrEqual(before);
        expect(await storage.accounts.usernameTaken(normalized)).toBe(true);
        expect(await storage.accounts.usernameTaken(newUsername())).toBe(false);
        expect(await storage.accounts.findByUsername(normalized)).toEqual({
          ...got,
          opaqueRecord: a.opaqueRecord,
        });
        expect(await storage.accounts.findByUsername(newUsername())).toBeUndefined();
        expect(await storage.accounts.findLogin(normalized)).toEqual({
          accountId: a.accountId,
          opaqueRecord: a.opaqueRecord,
        });
        expect(await storage.accounts.findLogin(newUsername())).toBeUndefined();
        expect(await storage.accounts.recoveryVerifier(a.accountId)).toEqual(a.recoveryVerifier);
        expect(await storage.accounts.recoveryVerifier(newId())).toBeUndefined();
        expect(await storage.accounts.get(newId())).toBeUndefined();
        expect(await storage.manifests.latest(a.accountId)).toEqual(a.manifest);
        expect(await storage.manifests.latestSeq(a.accountId)).toBe(a.manifest.seq);
        expect(await storage.manifests.latestSeq(newId())).toBeUndefined();
        expect(await storage.backups.get(a.accountId)).toEqual(a.backup);
        expect(await storage.sessions.get(a.session.tokenHash)).toEqual(a.session);
      });

      test('uses the clock it was given for createdAt', async () => {
        const clocked = await tdb.open({ now: () => 1_700_000_000_000 });
        const a = newAccount(newUsername());
        await clocked.accounts.create(a);
        expect((await storage.accounts.get(a.accountId))?.createdAt).toBe(1_700_000_000_000);
      });

      test('a taken username or account id is a conflict that names which', async () => {
        const a = newAccount(newUsername());
        await storage.accounts.create(a);
        const err = await conflict(
          storage.accounts.create(newAccount(a.username.toUpperCase())),
          'username',
        );
        expect(err.message).not.toContain(a.username);
        expect(err.message).toBe('conflict on username');
        await conflict(
          storage.accounts.create(newAccount(newUsername(), { accountId: a.accountId })),
          'accountId',
        );
      });

      test('of two concurrent signups for one name exactly one wins (one instance)', async () => {
        for (let round = 0; round < 5; round++) {
          const name = newUsername();
          const results = await Promise.allSettled([
            storage.accounts.create(newAccount(name)),
            storage.accounts.create(newAccount(name)),
            storage.accounts.create(newAccount(name)),
          ]);
          onlyOneWins(results, 'username');
        }
      });

      test('of two concurrent signups for one name exactly one wins (two instances)', async () => {
        const [a, b] = await Promise.all([tdb.open(), tdb.open()]);
        for (let round = 0; round < 5; round++) {
          const name = newUsername();
          const results = await Promise.allSettled([
            a.accounts.create(newAccount(name)),
            b.accounts.create(newAccount(name)),
          ]);
          onlyOneWins(results, 'username');
        }
      });

      test('a failure late in the transaction leaves nothing behind', async () => {
        const first = newAccount(newUsername());
        await storage.accounts.create(first);
        // The session is the last insert: a duplicate token hash fails after the account row,
        // the manifest and the backup are in.
        const second = newAccount(newUsername());
        const failing: NewAccount = {
          ...second,
          session: newSession(second.accountId, { tokenHash: first.session.tokenHash }),
        };
        await conflict(storage.accounts.create(failing), 'other');
        expect(await storage.accounts.get(second.accountId)).toBeUndefined();
        expect(await storage.accounts.usernameTaken(second.username)).toBe(false);
        expect(await storage.manifests.latest(second.accountId)).toBeUndefined();
        expect(await storage.backups.get(second.accountId)).toBeUndefined();
        expect(await storage.accounts.recoveryVerifier(second.accountId)).toBeUndefined();
        const raw = tdb.raw();
        for (const table of ['accounts', 'manifests', 'backups', 'sessions'] as const) {
          const rows = await raw
            .selectFrom(table)
            .select('account_id')
            .where('account_id', '=', second.accountId)
            .execute();
          expect(rows, table).toHaveLength(0);
        }
        // The name and id are free again.
        await storage.accounts.create(second);
        expect(await storage.accounts.usernameTaken(second.username)).toBe(true);
      });

      test('delete removes everything of the account and nothing else', async () => {
        const gone = newAccount(newUsername());
        const kept = newAccount(newUsername());
        await storage.accounts.create(gone);
        await storage.accounts.create(kept);
        const now = Date.now();
        const extra = newSession(gone.accountId);
        await storage.sessions.create(extra);
        await storage.manifests.append(gone.accountId, {
          seq: 2,
          body: rand(9),
          signature: rand(64),
        });
        const linkId = newId();
        await storage.links.create({ linkId, accountId: gone.accountId, expiresAt: now + 60_000 });
        const loginId = newId();
        await storage.logins.put(loginId, {
          accountId: gone.accountId,
          serverLoginState: rand(64),
          expiresAt: now + 60_000,
        });

        await storage.accounts.delete(gone.accountId);

        expect(await storage.accounts.get(gone.accountId)).toBeUndefined();
        expect(await storage.accounts.usernameTaken(gone.username)).toBe(false);
        expect(await storage.accounts.findByUsername(gone.username)).toBeUndefined();
        expect(await storage.accounts.recoveryVerifier(gone.accountId)).toBeUndefined();
        expect(await storage.sessions.get(gone.session.tokenHash)).toBeUndefined();
        expect(await storage.sessions.get(extra.tokenHash)).toBeUndefined();
        expect(await storage.manifests.latest(gone.accountId)).toBeUndefined();
        expect(await storage.manifests.history(gone.accountId, 0, 100)).toEqual([]);
        expect(await storage.backups.get(gone.accountId)).toBeUndefined();
        expect(await storage.links.get(linkId, now)).toBeUndefined();
        expect(await storage.logins.take(loginId, now)).toBeUndefined();
        const raw = tdb.raw();
        for (const table of [
          'accounts',
          'manifests',
          'backups',
          'sessions',
          'links',
          'login_states',
        ] as const) {
          const rows = await raw
            .selectFrom(table)
            .select('account_id')
            .where('account_id', '=', gone.accountId)
            .execute();
          expect(rows, table).toHaveLength(0);
        }
        expect(await storage.accounts.get(kept.accountId)).toMatchObject({
          username: kept.username,
        });
        expect(await storage.sessions.get(kept.session.tokenHash)).toEqual(kept.session);
        expect(await storage.manifests.latest(kept.accountId)).toEqual(kept.manifest);
        // Deleting again, or an unknown account, is not an error.
        await storage.accounts.delete(gone.accountId);
      });

      test('changePassword replaces record, manifest and backup together', async () => {
        const a = newAccount(newUsername());
        await storage.accounts.create(a);
        const change = {
          opaqueRecord: rand(192),
          manifest: { seq: 2, body: rand(150), signature: rand(64) },
          backup: { version: 2, data: rand(310) },
        };
        await storage.accounts.changePassword(a.accountId, change);
        expect((await storage.accounts.findByUsername(a.username))?.opaqueRecord).toEqual(
          change.opaqueRecord,
        );
        expect(await storage.manifests.latest(a.accountId)).toEqual(change.manifest);
        expect(await storage.manifests.latestSeq(a.accountId)).toBe(2);
        expect(await storage.backups.get(a.accountId)).toEqual(change.backup);
        // The session is kept (a password change with a session keeps the token).
        expect(await storage.sessions.get(a.session.tokenHash)).toEqual(a.session);

        // A stale seq changes nothing at all.
        const stale = {
          opaqueRecord: rand(192),
          manifest: { seq: 2, body: rand(150), signature: rand(64) },
          backup: { version: 3, data: rand(310) },
        };
        await conflict(storage.accounts.changePassword(a.accountId, stale), 'manifestSeq');
        expect((await storage.accounts.findByUsername(a.username))?.opaqueRecord).toEqual(
          change.opaqueRecord,
        );
        expect(await storage.manifests.latest(a.accountId)).toEqual(change.manifest);
        expect(await storage.manifests.latestSeq(a.accountId)).toBe(2);
        expect(await storage.backups.get(a.accountId)).toEqual(change.backup);
      });

      test('a ciphertext moved to another row does not open', async () => {
        const a = newAccount(newUsername());
        const b = newAccount(newUsername());
        await storage.accounts.create(a);
        await storage.accounts.create(b);
        const raw = tdb.raw();
        const row = await raw
          .selectFrom('accounts')
          .select(['username', 'opaque_record'])
          .where('account_id', '=', a.accountId)
          .executeTakeFirstOrThrow();
        await raw
          .updateTable('accounts')
          .set({ username: row.username, opaque_record: row.opaque_record })
          .where('account_id', '=', b.accountId)
          .execute();
        const err = await storage.accounts.get(b.accountId).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(FieldsError.is(err, 'DECRYPTION_FAILED')).toBe(true);
      });
    });

    describe('manifests', () => {
      test('append checks seq, replaces the backup and revokes devices, in one go', async () => {
        const a = newAccount(newUsername());
        await storage.accounts.create(a);
        const revoked = newId();
        const stays = newId();
        const r1 = newSession(a.accountId, { deviceId: revoked });
        const r2 = newSession(a.accountId, { deviceId: revoked });
        const s1 = newSession(a.accountId, { deviceId: stays });
        const noDevice = newSession(a.accountId, { deviceId: null, kind: 'recovery' });
        for (const s of [r1, r2, s1, noDevice]) await storage.sessions.create(s);

        const m2 = { seq: 2, body: rand(200), signature: rand(64) };
        await conflict(storage.manifests.append(a.accountId, { ...m2, seq: 3 }), 'manifestSeq');
        await conflict(storage.manifests.append(a.accountId, { ...m2, seq: 1 }), 'manifestSeq');
        await conflict(storage.manifests.append(newId(), m2), 'manifestSeq');

        const backup = { version: 2, data: rand(400) };
        await storage.manifests.append(a.accountId, m2, { backup, revokedDeviceIds: [revoked] });
        expect(await storage.manifests.latest(a.accountId)).toEqual(m2);
        expect(await storage.backups.get(a.accountId)).toEqual(backup);
        expect(await storage.sessions.get(r1.tokenHash)).toBeUndefined();
        expect(await storage.sessions.get(r2.tokenHash)).toBeUndefined();
        expect(await storage.sessions.get(s1.tokenHash)).toEqual(s1);
        expect(await storage.sessions.get(noDevice.tokenHash)).toEqual(noDevice);
        expect(await storage.sessions.get(a.session.tokenHash)).toEqual(a.session);

        // Without options the backup stays.
        const m3 = { seq: 3, body: rand(200), signature: rand(64) };
        await storage.manifests.append(a.accountId, m3, { revokedDeviceIds: [] });
        expect(await storage.backups.get(a.accountId)).toEqual(backup);

        // A failed append revokes nothing.
        await conflict(
          storage.manifests.append(a.accountId, m3, { revokedDeviceIds: [stays] }),
          'manifestSeq',
        );
        expect(await storage.sessions.get(s1.tokenHash)).toEqual(s1);

        expect(await storage.manifests.history(a.accountId, 0, 100)).toEqual([a.manifest, m2, m3]);
        expect(await storage.manifests.history(a.accountId, 1, 1)).toEqual([m2]);
        expect(await storage.manifests.history(a.accountId, 3, 100)).toEqual([]);
        expect(await storage.manifests.history(a.accountId, 0, 0)).toEqual([]);
        expect(await storage.manifests.latest(newId())).toBeUndefined();
      });

      test('of concurrent appends for one seq exactly one wins', async () => {
        const [x, y] = await Promise.all([tdb.open(), tdb.open()]);
        const a = newAccount(newUsername());
        await storage.accounts.create(a);
        for (let seq = 2; seq < 6; seq++) {
          const candidates = [x, y, storage].map(() => ({
            seq,
            body: rand(100),
            signature: rand(64),
          }));
          const results = await Promise.allSettled([
            x.manifests.append(a.accountId, candidates[0]!),
            y.manifests.append(a.accountId, candidates[1]!),
            storage.accounts.changePassword(a.accountId, {
              opaqueRecord: rand(192),
              manifest: candidates[2]!,
              backup: { version: seq, data: rand(20) },
            }),
          ]);
          onlyOneWins(results, 'manifestSeq');
          const winner = results.findIndex((r) => r.status === 'fulfilled');
          expect(await storage.manifests.latest(a.accountId)).toEqual(candidates[winner]);
        }
      });
    });

    describe('sessions', () => {
      test('create, get, delete, deleteExpired', async () => {
        const a = newAccount(newUsername());
        await storage.accounts.create(a);
        const now = Date.now();
        const recovery = newSession(a.accountId, {
          kind: 'recovery',
          deviceId: null,
          expiresAt: now + 600_000,
        });
        await storage.sessions.create(recovery);
        expect(await storage.sessions.get(recovery.tokenHash)).toEqual(recovery);
        await conflict(storage.sessions.create(recovery), 'other');

        const old1 = newSession(a.accountId, { expiresAt: now - 5 });
        const old2 = newSession(a.accountId, { expiresAt: now });
        await storage.sessions.create(old1);
        await storage.sessions.create(old2);
        expect(await storage.sessions.deleteExpired(now)).toBe(2);
        expect(await storage.sessions.get(old1.tokenHash)).toBeUndefined();
        expect(await storage.sessions.get(old2.tokenHash)).toBeUndefined();
        expect(await storage.sessions.get(recovery.tokenHash)).toEqual(recovery);
        expect(await storage.sessions.deleteExpired(now)).toBe(0);

        await storage.sessions.delete(recovery.tokenHash);
        expect(await storage.sessions.get(recovery.tokenHash)).toBeUndefined();
        await storage.sessions.delete(recovery.tokenHash);
        expect(await storage.sessions.get(rand(32))).toBeUndefined();
      });
    });

    describe('login states', () => {
      test('take is one use and ignores expired states', async () => {
        const a = newAccount(newUsername());
        await storage.accounts.create(a);
        const now = Date.now();
        const known = {
          accountId: a.accountId,
          serverLoginState: rand(96),
          expiresAt: now + 60_000,
        };
        const unknown = { accountId: null, serverLoginState: rand(96), expiresAt: now + 60_000 };
        const [k, u] = [newId(), newId()];
        await storage.logins.put(k, known);
        await storage.logins.put(u, unknown);
        expect(await storage.logins.take(k, now)).toEqual({
          accountId: a.accountId,
          serverLoginState: known.serverLoginState,
        });
        expect(await storage.logins.take(k, now)).toBeUndefined();
        expect(await storage.logins.take(u, now)).toEqual({
          accountId: null,
          serverLoginState: unknown.serverLoginState,
        });

        const late = newId();
        await storage.logins.put(late, { ...unknown, expiresAt: now + 1000 });
        expect(await storage.logins.take(late, now + 1000)).toBeUndefined();
        expect(await storage.logins.take(late, now)).toBeUndefined();
      });

      test('deleteExpired removes abandoned states only', async () => {
        const old = [newId(), newId()];
        for (const [i, loginId] of old.entries())
          await storage.logins.put(loginId, {
            accountId: null,
            serverLoginState: rand(32),
            expiresAt: 1000 * (i + 1),
          });
        const live = newId();
        await storage.logins.put(live, {
          accountId: null,
          serverLoginState: rand(32),
          expiresAt: 3000,
        });
        expect(await storage.logins.deleteExpired?.(2000)).toBe(2);
        expect(await storage.logins.take(live, 2000)).toBeDefined();
      });

      test('of concurrent takes exactly one gets the state', async () => {
        const other = await tdb.open();
        const loginId = newId();
        const state = {
          accountId: null,
          serverLoginState: rand(96),
          expiresAt: Date.now() + 60_000,
        };
        await storage.logins.put(loginId, state);
        const now = Date.now();
        const got = await Promise.all([
          storage.logins.take(loginId, now),
          other.logins.take(loginId, now),
          storage.logins.take(loginId, now),
        ]);
        expect(got.filter((g) => g !== undefined)).toEqual([
          { accountId: null, serverLoginState: state.serverLoginState },
        ]);
      });
    });

    describe('throttle', () => {
      test('get, put (insert and update), clear', async () => {
        const key = rand(32);
        expect(await storage.throttle.get(key)).toBeUndefined();
        await storage.throttle.put(key, { failures: 1, notBefore: 0 });
        expect(await storage.throttle.get(key)).toEqual({ failures: 1, notBefore: 0 });
        const later = { failures: 7, notBefore: Date.now() + 4_000 };
        await storage.throttle.put(key, later);
        expect(await storage.throttle.get(key)).toEqual(later);
        expect(await storage.throttle.get(rand(32))).toBeUndefined();
        await storage.throttle.clear(key);
        expect(await storage.throttle.get(key)).toBeUndefined();
        await storage.throttle.clear(key);
      });

      test('update: several keys in one read-modify-write, concurrent updates never lost', async () => {
        const a = rand(32);
        const b = rand(32);
        const bump = (cur: { failures: number } | undefined) => ({
          failures: (cur?.failures ?? 0) + 1,
          notBefore: 5,
        });
        await Promise.all(Array.from({ length: 20 }, () => storage.throttle.update([a, b], bump)));
        expect(await storage.throttle.get(a)).toEqual({ failures: 20, notBefore: 5 });
        expect(await storage.throttle.get(b)).toEqual({ failures: 20, notBefore: 5 });
        const seen: number[] = [];
        await storage.throttle.update([a, b], (cur, i) => {
          seen.push(i);
          return i === 0 ? null : { failures: cur!.failures - 1, notBefore: cur!.notBefore };
        });
        expect(seen).toEqual([0, 1]);
        expect(await storage.throttle.get(a)).toBeUndefined();
        expect(await storage.throttle.get(b)).toEqual({ failures: 19, notBefore: 5 });
      });

      test('deleteIdle removes the states idle since before the cut, and only those', async () => {
        const idle = [rand(32), rand(32)];
        const recent = rand(32);
        const t = Date.now();
        await storage.throttle.put(idle[0]!, { failures: 9, notBefore: t - 3_000 });
        await storage.throttle.put(idle[1]!, { failures: 1, notBefore: t - 2_001 });
        await storage.throttle.put(recent, { failures: 9, notBefore: t - 2_000 });
        expect(await storage.throttle.deleteIdle?.(t - 2_000)).toBeGreaterThanOrEqual(2);
        for (const key of idle) expect(await storage.throttle.get(key)).toBeUndefined();
        expect(await storage.throttle.get(recent)).toEqual({ failures: 9, notBefore: t - 2_000 });
      });
    });

    describe('links', () => {
      test('create once, request once, respond, expire, delete', async () => {
        const a = newAccount(newUsername());
        await storage.accounts.create(a);
        const now = Date.now();
        const linkId = newId();
        const link = { linkId, accountId: a.accountId, expiresAt: now + 60_000 };
        await storage.links.create(link);
        await conflict(storage.links.create(link), 'link');
        expect(await storage.links.get(linkId, now)).toEqual({
          ...link,
          request: null,
          response: null,
          refused: false,
        });

        const request = { sealed: rand(120), pickupHash: rand(32) };
        expect(await storage.links.setRequest(linkId, request, now)).toBe(true);
        expect(
          await storage.links.setRequest(linkId, { sealed: rand(120), pickupHash: rand(32) }, now),
        ).toBe(false);
        expect((await storage.links.get(linkId, now))?.request).toEqual(request);

        const response = {
          sealed: rand(200),
          token: randomBytes(32).toString('base64url'),
          expiresAt: now + 30 * DAY,
        };
        await storage.links.setResponse(linkId, response);
        expect(await storage.links.get(linkId, now)).toEqual({
          ...link,
          request,
          response,
          refused: false,
        });

        expect(await storage.links.get(linkId, link.expiresAt)).toBeUndefined();
        expect(await storage.links.setRequest(newId(), request, now)).toBe(false);
        await storage.links.delete(linkId);
        expect(await storage.links.get(linkId, now)).toBeUndefined();
      });

      test('deleteExpired removes expired links only', async () => {
        const a = newAccount(newUsername());
        await storage.accounts.create(a);
        const [x, y, live] = [newId(), newId(), newId()];
        await storage.links.create({ linkId: x, accountId: a.accountId, expiresAt: 1000 });
        await storage.links.create({ linkId: y, accountId: a.accountId, expiresAt: 2000 });
        await storage.links.create({ linkId: live, accountId: a.accountId, expiresAt: 3000 });
        expect(await storage.links.deleteExpired?.(2000)).toBe(2);
        expect(await storage.links.get(live, 2000)).toMatchObject({ linkId: live });
        expect(await storage.links.get(x, 0)).toBeUndefined();
      });

      test('an expired link takes no request, and concurrent requests: one wins', async () => {
        const a = newAccount(newUsername());
        await storage.accounts.create(a);
        const now = Date.now();
        const expired = newId();
        await storage.links.create({ linkId: expired, accountId: a.accountId, expiresAt: now });
        const req = () => ({ sealed: rand(64), pickupHash: rand(32) });
        expect(await storage.links.setRequest(expired, req(), now)).toBe(false);

        const other = await tdb.open();
        const linkId = newId();
        await storage.links.create({ linkId, accountId: a.accountId, expiresAt: now + 60_000 });
        const won = await Promise.all([
          storage.links.setRequest(linkId, req(), now),
          other.links.setRequest(linkId, req(), now),
          storage.links.setRequest(linkId, req(), now),
        ]);
        expect(won.filter(Boolean)).toHaveLength(1);
      });
    });

    describe('secrets', () => {
      test('first writer wins, also when racing', async () => {
        const name = `setup-${newId()}`;
        expect(await storage.secrets.get(name)).toBeUndefined();
        const first = rand(64);
        expect(await storage.secrets.putIfAbsent(name, first)).toEqual(first);
        expect(await storage.secrets.putIfAbsent(name, rand(64))).toEqual(first);
        expect(await storage.secrets.get(name)).toEqual(first);

        const other = await tdb.open();
        const raced = `setup-${newId()}`;
        const [x, y] = await Promise.all([
          storage.secrets.putIfAbsent(raced, rand(64)),
          other.secrets.putIfAbsent(raced, rand(64)),
        ]);
        expect(x).toEqual(y);
      });
    });
  });
});
