// Local state at rest: encrypted, bound to record names, and tamper-evident.
import { mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromBase64url, fromHex, randomBytes, toBase64url, utf8Encode } from '@coffer/crypto';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { type LocalStore, memoryStore, SdkError } from '../src/index.js';
import { type AccountRecord, openLocalState } from '../src/local-state.js';
import { fileStore, openNodeHome } from '../src/node.js';

const accountId = toBase64url(randomBytes(16));
const account: AccountRecord = {
  accountId,
  username: 'alice',
  deviceId: toBase64url(randomBytes(16)),
  deviceSeed: randomBytes(32),
  manifest: { body: randomBytes(120), signature: randomBytes(64) },
};
const session = {
  accountId,
  token: toBase64url(randomBytes(32)),
  expiresAt: 1_900_000_000_000,
  identitySeed: randomBytes(32),
};

function corrupt(err: unknown): boolean {
  return SdkError.is(err, 'STORE_CORRUPT');
}

function contains(haystack: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(haystack).includes(Buffer.from(needle));
}

describe('local state', () => {
  it('round-trips session and account records and finds accounts by username', async () => {
    const state = await openLocalState(memoryStore(), randomBytes(32));
    expect(await state.readSession()).toBeUndefined();
    await state.writeAccount(account);
    await state.writeSession(session);
    expect(await state.readSession()).toEqual(session);
    expect(await state.readAccount(accountId)).toEqual(account);
    expect(await state.findAccount('alice')).toEqual(account);
    expect(await state.findAccount('bob')).toBeUndefined();
    await state.deleteSession();
    expect(await state.readSession()).toBeUndefined();
    await state.forgetAccount(accountId);
    expect(await state.findAccount('alice')).toBeUndefined();
  });

  it('stores nothing in the clear', async () => {
    const store = memoryStore();
    const state = await openLocalState(store, randomBytes(32));
    await state.writeAccount(account);
    await state.writeSession(session);
    for (const name of ['session', `account/${accountId}`, 'index']) {
      const bytes = (await store.get(name))!;
      expect(bytes).toBeDefined();
      for (const secret of [
        utf8Encode(session.token),
        session.identitySeed,
        account.deviceSeed,
        utf8Encode('alice'),
        utf8Encode(toBase64url(session.identitySeed)),
      ]) {
        expect(contains(bytes, secret)).toBe(false);
      }
    }
  });

  it('refuses tampered records, records under another name and another store key', async () => {
    const store = memoryStore();
    const key = randomBytes(32);
    const state = await openLocalState(store, key);
    await state.writeAccount(account);
    await state.writeSession(session);
    const sealed = (await store.get('session'))!;

    await fc.assert(
      fc.asyncProperty(
        fc.nat(sealed.length - 1),
        fc.integer({ min: 1, max: 255 }),
        async (i, x) => {
          const bad = sealed.slice();
          bad[i] = bad[i]! ^ x;
          await store.put('session', bad);
          await expect(state.readSession()).rejects.toSatisfy(corrupt);
        },
      ),
      { numRuns: 40 },
    );
    await store.put('session', sealed.subarray(0, sealed.length - 1));
    await expect(state.readSession()).rejects.toSatisfy(corrupt);

    // The account record moved into the session's place does not open there.
    await store.put('session', (await store.get(`account/${accountId}`))!);
    await expect(state.readSession()).rejects.toSatisfy(corrupt);

    await store.put('session', sealed);
    expect(await state.readSession()).toEqual(session);
    const other = await openLocalState(store, randomBytes(32));
    await expect(other.readSession()).rejects.toSatisfy(corrupt);
    await expect(other.findAccount('alice')).rejects.toSatisfy(corrupt);
  });

  it('wants a 32-byte store key', async () => {
    await expect(openLocalState(memoryStore(), randomBytes(31))).rejects.toSatisfy((e) =>
      SdkError.is(e, 'INVALID_ARGUMENT'),
    );
  });
});

describe('stores', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  });
  async function tempDir(): Promise<string> {
    const d = await mkdtemp(join(tmpdir(), 'coffer-sdk-'));
    dirs.push(d);
    return d;
  }

  async function roundTrip(store: LocalStore) {
    await fc.assert(
      fc.asyncProperty(
        fc.stringMatching(/^[\x21-\x7e]{1,100}$/),
        fc.uint8Array({ maxLength: 300 }),
        async (name, value) => {
          await store.put(name, value);
          expect(await store.get(name)).toEqual(value);
          await store.delete(name);
          expect(await store.get(name)).toBeUndefined();
          await store.delete(name);
        },
      ),
      { numRuns: 50 },
    );
  }

  it('memoryStore round-trips and copies values', async () => {
    const store = memoryStore();
    await roundTrip(store);
    const value = Uint8Array.of(1, 2, 3);
    await store.put('x', value);
    value[0] = 9;
    expect(await store.get('x')).toEqual(Uint8Array.of(1, 2, 3));
    await expect(store.put('', value)).rejects.toSatisfy((e) => SdkError.is(e, 'INVALID_ARGUMENT'));
    await expect(store.get('a b')).rejects.toSatisfy((e) => SdkError.is(e, 'INVALID_ARGUMENT'));
  });

  it('fileStore round-trips with private files and leaves no temporary files', async () => {
    const dir = join(await tempDir(), 'state');
    const store = fileStore(dir);
    await roundTrip(store);
    await store.put('account/AbC', Uint8Array.of(1));
    await store.put('account/abc', Uint8Array.of(2));
    expect(await store.get('account/AbC')).toEqual(Uint8Array.of(1));
    expect(await store.get('account/abc')).toEqual(Uint8Array.of(2));
    const files = await readdir(dir);
    expect(files.every((f) => f.endsWith('.rec'))).toBe(true);
    expect(files.length).toBe(2);
    if (process.platform !== 'win32') {
      expect((await stat(dir)).mode & 0o777).toBe(0o700);
      for (const f of files) expect((await stat(join(dir, f))).mode & 0o777).toBe(0o600);
    }
  });

  it('openNodeHome makes the store key once and reuses it', async () => {
    const dir = join(await tempDir(), 'home');
    const first = await openNodeHome(dir);
    expect(first.storeKey.length).toBe(32);
    const again = await openNodeHome(dir);
    expect(again.storeKey).toEqual(first.storeKey);
    if (process.platform !== 'win32') {
      expect((await stat(join(dir, 'store.key'))).mode & 0o777).toBe(0o600);
      expect((await stat(dir)).mode & 0o777).toBe(0o700);
    }
    const state = await openLocalState(first.store, first.storeKey);
    await state.writeSession(session);
    expect(await (await openLocalState(again.store, again.storeKey)).readSession()).toEqual(
      session,
    );
    // The record file on disk holds no token.
    const files = await readdir(join(dir, 'state'));
    const onDisk = await readFile(join(dir, 'state', files[0]!));
    expect(contains(onDisk, utf8Encode(session.token))).toBe(false);

    await writeFile(join(dir, 'store.key'), randomBytes(31));
    await expect(openNodeHome(dir)).rejects.toSatisfy(corrupt);
  });

  it('an open deletes temporary key files a crash left, not one being placed now', async () => {
    const dir = join(await tempDir(), 'home');
    await openNodeHome(dir);
    const old = join(dir, 'store.key.0123456789ab.tmp');
    const fresh = join(dir, 'store.key.ba9876543210.tmp');
    const other = join(dir, 'store.key.notes.tmp');
    for (const f of [old, fresh, other]) await writeFile(f, new Uint8Array(32), { mode: 0o600 });
    const hourAgo = new Date(Date.now() - 3600_000);
    await utimes(old, hourAgo, hourAgo);
    await utimes(other, hourAgo, hourAgo);
    await openNodeHome(dir);
    expect((await readdir(dir)).sort()).toEqual(
      ['store.key', 'store.key.ba9876543210.tmp', 'store.key.notes.tmp'].sort(),
    );
  });

  it('concurrent first opens agree on one key, and none reads it half written', async () => {
    // A key file created empty and then written let an opener read 0 bytes (STORE_CORRUPT)
    // about once in 150 races here: many races, so that comes up.
    const base = await tempDir();
    for (let i = 0; i < 200; i++) {
      const dir = join(base, `race-${i}`);
      const homes = await Promise.all([openNodeHome(dir), openNodeHome(dir), openNodeHome(dir)]);
      expect(homes[1]!.storeKey).toEqual(homes[0]!.storeKey);
      expect(homes[2]!.storeKey).toEqual(homes[0]!.storeKey);
    }
  });
});

describe('stored state fixtures (kept forever)', () => {
  it('reads the records of format v1 (test/fixtures/local-state-v1.json)', async () => {
    const fixture = JSON.parse(
      await readFile(new URL('./fixtures/local-state-v1.json', import.meta.url), 'utf8'),
    ) as {
      storeKey: string;
      records: Record<string, string>;
      expect: {
        session: { accountId: string; token: string; expiresAt: number; identitySeed: string };
        account: {
          accountId: string;
          username: string;
          deviceId: string;
          deviceSeed: string;
          manifest: { body: string; signature: string };
        };
      };
    };
    const store = memoryStore();
    for (const [name, value] of Object.entries(fixture.records)) {
      await store.put(name, fromBase64url(value));
    }
    const state = await openLocalState(store, fromHex(fixture.storeKey));
    const session = await state.readSession();
    expect(session && { ...session, identitySeed: toBase64url(session.identitySeed) }).toEqual(
      fixture.expect.session,
    );
    const account = await state.findAccount(fixture.expect.account.username);
    expect(
      account && {
        ...account,
        deviceSeed: toBase64url(account.deviceSeed),
        manifest: account.manifest && {
          body: toBase64url(account.manifest.body),
          signature: toBase64url(account.manifest.signature),
        },
      },
    ).toEqual(fixture.expect.account);
  });
});
