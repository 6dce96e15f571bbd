// Two processes on one client home: the file store's lock makes their operations take turns,
// so they never move one MLS state forward twice (key reuse) or lose each other's writes.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from '@coffer/crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  type ConversationEvent,
  type FetchLike,
  type LocalStore,
  memoryStore,
  SdkError,
} from '../src/index.js';
import { fileStore, openNodeHome } from '../src/node.js';
import { type TestServer, testClient, testServer, username } from './_server.js';

/** This boot's id where the kernel tells it (Linux); the pid-reuse checks need it. */
const bootId = (() => {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
})();

/** The pid of a process that has exited. */
function deadPid(): string {
  return spawnSync(process.execPath, [
    '-e',
    'process.stdout.write(String(process.pid))',
  ]).stdout.toString();
}

/** The store's lock, or 'waiting' when it is still not taken after `ms`. */
async function lockWithin(store: LocalStore, ms: number) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const waiting = new Promise<'waiting'>((resolve) => {
    timer = setTimeout(() => resolve('waiting'), ms);
  });
  const attempt = store.lock?.('test');
  const result = await Promise.race([attempt, waiting]);
  clearTimeout(timer);
  return { result, attempt };
}

let server: TestServer;
let dir: string;
beforeAll(async () => {
  server = await testServer();
  dir = mkdtempSync(join(tmpdir(), 'coffer-home-lock-'));
});
afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

const texts = (events: ConversationEvent[]) =>
  events.flatMap((e) => (e.type === 'message' ? [e.message.text] : []));

describe('one home, two clients', () => {
  test('concurrent sends from two clients of one home all arrive, in turn', async () => {
    const home = join(dir, 'alice');
    const { store, storeKey } = await openNodeHome(home);
    const a1 = await testClient(server, { store, storeKey });
    const alice = username('alice');
    await a1.signup(alice, `pw-${alice}-long enough`);
    await a1.conversations.sync();
    const bob = username('bob');
    const b = await testClient(server);
    await b.signup(bob, `pw-${bob}-long enough`);
    await b.conversations.sync();
    const chat = await a1.conversations.direct(bob);
    await b.conversations.sync();

    // A second client (another process, as far as the store can tell) on the same home.
    const again = await openNodeHome(home);
    const a2 = await testClient(server, { store: again.store, storeKey: again.storeKey });
    const sends: Promise<unknown>[] = [];
    for (let i = 0; i < 8; i++) {
      sends.push(a1.conversations.send(chat.id, `one-${i}`));
      sends.push(a2.conversations.send(chat.id, `two-${i}`));
    }
    await Promise.all(sends);
    const events = await b.conversations.sync();
    expect(events.filter((e) => e.type === 'error')).toEqual([]);
    expect(texts(events).sort()).toEqual(
      [...Array(8).keys()].flatMap((i) => [`one-${i}`, `two-${i}`]).sort(),
    );
    expect(await a1.conversations.history(chat.id, { limit: 100 })).toHaveLength(16);
  });

  test('a lock left by a process that died is taken over; a live one is waited for', async () => {
    const stateDir = join(dir, 'stale');
    const store = fileStore(stateDir);
    await store.put('x', new Uint8Array([1]));
    // The pid of a process that has exited.
    const dead = deadPid();
    writeFileSync(join(stateDir, 'lock'), `${dead} deadbeef`);
    const release = await store.lock?.('test');
    expect(release).toBeTypeOf('function');
    let second = false;
    const waiting = store.lock?.('test').then((r) => {
      second = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(second).toBe(false);
    await release?.();
    const next = await waiting;
    expect(second).toBe(true);
    await next?.();
  });

  test('a password change in one process leaves the other logged in, with the new session', async () => {
    const home = join(dir, 'password');
    const one = await openNodeHome(home);
    const a = await testClient(server, { store: one.store, storeKey: one.storeKey });
    const name = username('carol');
    const { account } = await a.signup(name, 'pw-old-long enough');
    const two = await openNodeHome(home);
    const b = await testClient(server, { store: two.store, storeKey: two.storeKey });
    await b.changePassword('pw-old-long enough', 'pw-new-long enough');
    // A's token was ended by B's change: A takes the session B stored instead of calling
    // itself revoked and deleting it.
    expect((await a.devices.list()).map((d) => d.id)).toEqual([account.deviceId]);
    expect(await a.whoami()).toEqual(account);
    const three = await openNodeHome(home);
    const fresh = await testClient(server, { store: three.store, storeKey: three.storeKey });
    expect(await fresh.whoami()).toEqual(account);
    for (const c of [a, b, fresh]) await c.close();
  });

  test('a logout in one process logs the other out without calling the device revoked', async () => {
    const home = join(dir, 'logout');
    const one = await openNodeHome(home);
    const a = await testClient(server, { store: one.store, storeKey: one.storeKey });
    const name = username('dave');
    const { account } = await a.signup(name, 'pw-dave-long enough');
    const two = await openNodeHome(home);
    const b = await testClient(server, { store: two.store, storeKey: two.storeKey });
    await b.logout();
    await expect(a.devices.list()).rejects.toSatisfy((e) => SdkError.is(e, 'NOT_LOGGED_IN'));
    expect(await a.whoami()).toBeUndefined();
    // And a login there is seen here: the home holds one session, whoever made it.
    await b.login(name, 'pw-dave-long enough');
    expect(await a.whoami()).toEqual(account);
    expect((await a.devices.list()).map((d) => d.id)).toEqual([account.deviceId]);
    for (const c of [a, b]) await c.close();
  });

  test('without a lock, a token replaced during a call is retried once, and the stored session kept', async () => {
    // A store with no lock (memoryStore's own, dropped): B's password change lands while A's
    // request is in flight.
    const { lock: _, ...store } = memoryStore();
    const storeKey = randomBytes(32);
    let during: (() => Promise<void>) | undefined;
    const fetch: FetchLike = async (url, init) => {
      const run = during;
      during = undefined;
      await run?.();
      return server.fetch(url, init);
    };
    const a = await testClient(server, { store, storeKey: storeKey.slice(), fetch });
    const name = username('erin');
    const { account } = await a.signup(name, 'pw-old-long enough');
    const b = await testClient(server, { store, storeKey: storeKey.slice() });
    during = () => b.changePassword('pw-old-long enough', 'pw-new-long enough');
    expect((await a.devices.list()).map((d) => d.id)).toEqual([account.deviceId]);
    const fresh = await testClient(server, { store, storeKey: storeKey.slice() });
    expect(await fresh.whoami()).toEqual(account);
    for (const c of [a, b, fresh]) await c.close();
  });
});

describe('stale home locks', () => {
  const lockedStore = async (name: string, content: string | Uint8Array, ageS = 0) => {
    const stateDir = join(dir, name);
    const store = fileStore(stateDir);
    await store.put('x', new Uint8Array([1]));
    const file = join(stateDir, 'lock');
    writeFileSync(file, content);
    if (ageS > 0) {
      const then = Date.now() / 1000 - ageS;
      utimesSync(file, then, then);
    }
    return { store, file };
  };

  test('an empty or unreadable lock is taken over once a few seconds old, not before', async () => {
    // What a power loss leaves of a lock that was never flushed: nothing, or zeros.
    for (const [name, content] of [
      ['empty-old', ''],
      ['zeros-old', new Uint8Array(24)],
    ] as const) {
      const { store } = await lockedStore(name, content, 60);
      const { result } = await lockWithin(store, 2000);
      expect(result, name).toBeTypeOf('function');
      if (typeof result === 'function') await result();
    }
    // Just made: its writer may be about to write it.
    const { store, file } = await lockedStore('empty-new', '');
    const { result, attempt } = await lockWithin(store, 300);
    expect(result).toBe('waiting');
    rmSync(file);
    await (await attempt)?.();
  });

  test.skipIf(!bootId)(
    'a lock of an earlier boot, or of a pid now reused, is taken over',
    async () => {
      for (const [name, content] of [
        ['earlier-boot', `${process.pid} 0123456789abcdef 00000000-0000-0000-0000-000000000000 -`],
        // Our own pid, alive, but "started" at another time: the holder died and the pid moved on.
        ['reused-pid', `${process.pid} 0123456789abcdef ${bootId} 1`],
      ] as const) {
        const { store } = await lockedStore(name, content);
        const { result } = await lockWithin(store, 2000);
        expect(result, name).toBeTypeOf('function');
        if (typeof result === 'function') await result();
      }
    },
  );

  test.skipIf(!bootId)(
    'a lock taken in another pid namespace (another container) is waited for, whatever its pid shows here',
    async () => {
      // Our own pid "started" at another time would be taken over in our namespace (above);
      // from another namespace the same numbers say nothing about the holder.
      const { store, file } = await lockedStore(
        'other-ns',
        `${process.pid} 0123456789abcdef ${bootId} 1 1`,
      );
      const { result, attempt } = await lockWithin(store, 300);
      expect(result).toBe('waiting');
      rmSync(file);
      await (await attempt)?.();
    },
  );

  test.skipIf(!bootId)(
    'a lock records the holder pid, boot id, start time and pid namespace',
    async () => {
      const { store, file } = await lockedStore('fields', '');
      rmSync(file);
      const release = await store.lock?.('test');
      const [pid, nonce, boot, start, ns] = readFileSync(file, 'utf8').split(' ');
      expect(pid).toBe(String(process.pid));
      expect(nonce).toMatch(/^[0-9a-f]{16}$/);
      expect(boot).toBe(bootId);
      expect(start).toMatch(/^[0-9]+$/);
      expect(ns).toMatch(/^[0-9]+$/);
      // A second store of this process sees the holder alive with that start time: it waits.
      const { result, attempt } = await lockWithin(fileStore(join(dir, 'fields')), 300);
      expect(result).toBe('waiting');
      await release?.();
      await (await attempt)?.();
    },
  );

  test('many takers of locks left by dead holders: never two holders at once', async () => {
    // Six contenders on one home, in this process; a third of the holders "die" holding the
    // lock (its file rewritten to name an exited pid), and some of those leave a dead takeover
    // lock as well, so the others keep taking over stale locks together. Inside, each checks it is alone and moves a counter file forward.
    const { store, file } = await lockedStore('many-takers', '');
    rmSync(file);
    const dead = deadPid();
    const counter = join(dir, 'many-takers', 'counter');
    writeFileSync(counter, '0');
    let inside = 0;
    let overlaps = 0;
    let turns = 0;
    const contender = async (n: number) => {
      for (let i = 0; i < 12; i++) {
        const release = await store.lock?.(`taker ${n}`);
        inside++;
        if (inside > 1) overlaps++;
        const value = Number(readFileSync(counter, 'utf8'));
        await new Promise((r) => setTimeout(r, 1));
        writeFileSync(counter, String(value + 1));
        turns++;
        inside--;
        if ((n + i) % 3 === 0) {
          writeFileSync(file, `${dead} deadbeef${n}x${i}`);
          // Every other time, a taker "died" during a takeover too (never over a live one).
          if (i % 2 === 0) {
            try {
              writeFileSync(`${file}.takeover`, `${dead} cafe${n}x${i}`, { flag: 'wx' });
            } catch {}
          }
        } else await release?.();
      }
    };
    await Promise.all([...Array(6).keys()].map(contender));
    expect(overlaps).toBe(0);
    expect(turns).toBe(72);
    expect(readFileSync(counter, 'utf8')).toBe('72');
  });

  test('a lock that cannot be deleted is an error, not an endless wait', async () => {
    const { store, file } = await lockedStore('undeletable', '');
    rmSync(file);
    mkdirSync(file);
    const then = Date.now() / 1000 - 60;
    utimesSync(file, then, then);
    const started = Date.now();
    const err = await store.lock?.('test').catch((e) => e);
    expect(SdkError.is(err, 'STORE_UNAVAILABLE')).toBe(true);
    expect(err.message).toMatch(/EISDIR|EPERM/);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  test('a stale lock is taken over only by the holder of the takeover lock', async () => {
    const dead = deadPid();
    const { store, file } = await lockedStore('takeover', `${dead} deadbeef`);
    // A live taker (this process) is taking it over: wait for it.
    writeFileSync(`${file}.takeover`, `${process.pid} cafe`);
    const { result, attempt } = await lockWithin(store, 300);
    expect(result).toBe('waiting');
    expect(readFileSync(file, 'utf8')).toBe(`${dead} deadbeef`);
    // That taker died: its takeover lock is stale too, and both are taken over.
    writeFileSync(`${file}.takeover`, `${dead} cafe`);
    const release = await attempt;
    expect(release).toBeTypeOf('function');
    expect(readFileSync(file, 'utf8').split(' ')[0]).toBe(String(process.pid));
    await release?.();
    expect(() => readFileSync(`${file}.takeover`)).toThrow();
  });
});
