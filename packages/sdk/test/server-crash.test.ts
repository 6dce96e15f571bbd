// The server dies mid-conversation. The real server process (tsx, `@coffer/source`) over a
// SQLite file with COFFER_SQLITE_SYNC=full; two SDK clients over real HTTP in a 1:1. The server
// is SIGKILLed once right after a send returned and twice while sends (and a sync) are in flight,
// then restarted on the same data directory and port. The clients carry on by themselves (the
// test loop only waits out NETWORK errors while the server is down): every message whose send
// returned is received exactly once, in order, and both histories agree. A send that failed may
// or may not have reached the server (its answer was lost): it shows up at most once.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  type CofferClient,
  type ConversationMessage,
  type FetchLike,
  SdkError,
} from '../src/index.js';
import { testClient, username } from './_server.js';

const repoRoot = fileURLToPath(new URL('../../..', import.meta.url));
const main = fileURLToPath(new URL('../../server/src/main.ts', import.meta.url));

interface ServerProcess {
  readonly child: ChildProcess;
  readonly url: Promise<string>;
  readonly exit: Promise<unknown>;
  stderr(): string;
}

/** `npm start`'s server as a child process; `url` resolves once it listens. */
function startServer(dataDir: string, port: number): ServerProcess {
  const child = spawn(process.execPath, ['--conditions=@coffer/source', '--import', 'tsx', main], {
    cwd: repoRoot,
    env: {
      ...process.env,
      COFFER_DATA_DIR: dataDir,
      COFFER_SQLITE_SYNC: 'full',
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      DATABASE_URL: '',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  let onData = () => {};
  child.stderr!.on('data', (d) => {
    stderr += d;
    onData();
  });
  const exit = new Promise((r) => child.on('exit', (code, signal) => r(signal ?? code)));
  const url = new Promise<string>((resolve, reject) => {
    onData = () => {
      const m = /listening on (http:\/\/[0-9.]+:\d+)/.exec(stderr);
      if (m) resolve(m[1]!);
    };
    void exit.then(() => reject(new Error(`the server exited before listening: ${stderr}`)));
  });
  url.catch(() => {});
  return { child, url, exit, stderr: () => stderr };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `fn` again while it fails with NETWORK (the server is down or restarting). */
async function whileDown<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!SdkError.is(err, 'NETWORK') || attempt >= 100) throw err;
      await sleep(100);
    }
  }
}

interface Side {
  readonly label: string;
  readonly name: string;
  readonly client: CofferClient;
  /** Every message its syncs returned, in order. */
  readonly received: ConversationMessage[];
  /** Texts of sends that returned, in order; and of sends that failed. */
  readonly sent: string[];
  readonly failed: Set<string>;
  /** MESSAGES_MISSING reports this side got (each for failed sends of the peer). */
  gaps: number;
  /** Set by the test: called as each message POST of this side leaves. */
  onPost?: () => void;
}

describe('the server killed mid-conversation (real process, SQLite sync=full)', () => {
  let dir: string;
  let server: ServerProcess;
  let port = 0;
  let url = '';
  let alice: Side;
  let bob: Side;

  async function restart() {
    server = startServer(dir, port);
    url = await server.url;
    if (port !== 0) expect(url).toBe(`http://127.0.0.1:${port}`);
  }

  async function kill() {
    server.child.kill('SIGKILL');
    expect(await server.exit).toBe('SIGKILL');
  }

  async function side(label: string): Promise<Side> {
    const s: Side = {
      label,
      name: username(label),
      client: undefined as unknown as CofferClient,
      received: [],
      sent: [],
      failed: new Set(),
      gaps: 0,
    };
    const fetch: FetchLike = (u, init) => {
      if (init.method === 'POST' && /\/v1\/groups\/[^/]+\/messages$/.test(new URL(u).pathname))
        s.onPost?.();
      return globalThis.fetch(u, init);
    };
    const client = await testClient({ fetch }, { server: url, timeoutMs: 10_000 });
    await client.signup(s.name, `pw-${s.name}-long enough`);
    return Object.assign(s, { client });
  }

  async function sync(s: Side) {
    const events = await whileDown(() => s.client.conversations.sync());
    for (const e of events) {
      // A send that died with the server may or may not have arrived; one that did not leaves a
      // gap in the sender's numbering, reported as MESSAGES_MISSING. Nothing else is expected.
      if (e.type === 'error' && e.error.detail === 'MESSAGES_MISSING') {
        s.gaps += 1;
        continue;
      }
      if (e.type === 'error') throw new Error(`${s.label}: ${e.error.code} ${e.error.message}`);
      if (e.type === 'message') s.received.push(e.message);
    }
    return events;
  }

  /** A send; its outcome recorded (returned: `sent`; threw NETWORK: `failed`). */
  async function send(s: Side, id: string, text: string): Promise<boolean> {
    try {
      const m = await s.client.conversations.send(id, text);
      expect(m.text).toBe(text);
      s.sent.push(text);
      return true;
    } catch (err) {
      if (!SdkError.is(err, 'NETWORK')) throw err;
      s.failed.add(text);
      return false;
    }
  }

  /** A send that must go through: waits out the restart, a new text for each attempt. */
  async function sendSurely(s: Side, id: string, text: string) {
    for (let attempt = 1; !(await send(s, id, `${text} #${attempt}`)); attempt++) {
      if (attempt >= 100) throw new Error(`${s.label} cannot send`);
      await sleep(100);
    }
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'coffer-sdk-crash-'));
    await restart();
    port = Number(new URL(url).port);
    alice = await side('alice');
    bob = await side('bob');
    await sync(alice);
    await sync(bob);
  }, 30_000);
  afterAll(async () => {
    if (server?.child.exitCode === null && server.child.signalCode === null) {
      server.child.kill('SIGTERM');
      await server.exit;
    }
    await alice?.client.close();
    await bob?.client.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('every message whose send returned arrives exactly once, in order', {
    timeout: 60_000,
  }, async () => {
    const chat = await alice.client.conversations.direct(bob.name);
    await sync(bob);

    // A plain exchange first.
    for (let i = 1; i <= 3; i++) await sendSurely(alice, chat.id, `a${i}`);
    await sync(bob);
    for (let i = 1; i <= 2; i++) await sendSurely(bob, chat.id, `b${i}`);
    await sync(alice);

    // Crash 1: right after a send returned, before the other side fetched it.
    expect(await send(alice, chat.id, 'a4 before the crash')).toBe(true);
    await kill();
    // While the server is down: both fail with NETWORK, nothing is lost or half-done.
    expect(await send(bob, chat.id, 'b3 while down')).toBe(false);
    await expect(bob.client.conversations.sync()).rejects.toSatisfy((e) =>
      SdkError.is(e, 'NETWORK'),
    );
    await restart();
    await sync(bob);
    await sendSurely(bob, chat.id, 'b4 after the restart');
    await sync(alice);
    await sendSurely(alice, chat.id, 'a5 after the restart');

    // Crash 2 and 3: killed while one side has a burst of sends in flight (its 3rd message POST
    // has just left) and the other side syncs at the same time.
    for (const [from, to] of [
      [alice, bob],
      [bob, alice],
    ] as const) {
      // Own messages enter a history when sent, others' when fetched: take turns, so that both
      // histories have the same order.
      await sync(from);
      let killed: Promise<void> | undefined;
      let posts = 0;
      from.onPost = () => {
        if (++posts === 3) killed = sleep(2).then(kill);
      };
      const burst = Array.from({ length: 6 }, (_, i) =>
        send(from, chat.id, `${from.label} burst ${i} ${Math.random().toString(36).slice(2, 6)}`),
      );
      const syncing = to.client.conversations.sync().then(
        (events) => {
          for (const e of events) if (e.type === 'message') to.received.push(e.message);
        },
        (err: unknown) => {
          if (!SdkError.is(err, 'NETWORK')) throw err;
        },
      );
      const outcomes = await Promise.all(burst);
      await syncing;
      from.onPost = undefined;
      expect(killed, 'the server was killed mid-burst').toBeDefined();
      await killed;
      expect(outcomes.filter((ok) => !ok).length).toBeGreaterThan(0);
      await restart();
      await sync(to);
      await sendSurely(to, chat.id, `${to.label} after the crash in ${from.label}'s burst`);
      await sync(from);
      await sendSurely(from, chat.id, `${from.label} after the crash in its burst`);
    }

    // Everyone settles: sync both until a round brings nothing.
    for (let round = 0; ; round++) {
      const news = (await sync(alice)).length + (await sync(bob)).length;
      if (news === 0) break;
      expect(round).toBeLessThan(5);
    }

    for (const [me, peer] of [
      [alice, bob],
      [bob, alice],
    ] as const) {
      const got = me.received.filter((m) => !m.own).map((m) => m.text ?? '');
      // What the peer's returned sends said, exactly once each and in order; besides them only
      // failed sends (their fate unknown to the peer), each at most once.
      expect(got.filter((t) => !peer.failed.has(t))).toEqual(peer.sent);
      expect(new Set(got).size).toBe(got.length);
      for (const t of got) expect(peer.sent.includes(t) || peer.failed.has(t)).toBe(true);
      expect(me.received.every((m) => !m.own)).toBe(true);
      expect(me.gaps).toBeLessThanOrEqual(peer.failed.size);
    }
    const aliceHistory = await alice.client.conversations.history(chat.id, { limit: 1000 });
    const bobHistory = await bob.client.conversations.history(chat.id, { limit: 1000 });
    const failed = new Set([...alice.failed, ...bob.failed]);
    const view = (h: ConversationMessage[]) =>
      h
        .filter((m) => !failed.has(m.text ?? ''))
        .map((m) => `${m.sender.accountId}:${m.id}:${m.text}`);
    expect(view(aliceHistory)).toEqual(view(bobHistory));
    for (const [me, history] of [
      [alice, aliceHistory],
      [bob, bobHistory],
    ] as const) {
      // Returned sends are confirmed; sends that failed on the way stay, marked unconfirmed
      // (they may have arrived); sends the down server refused the connection for are not kept.
      expect(history.filter((m) => m.own && !m.unconfirmed).map((m) => m.text)).toEqual(me.sent);
      const unconfirmed = history.filter((m) => m.unconfirmed).map((m) => m.text ?? '');
      expect(unconfirmed.every((t) => me.failed.has(t))).toBe(true);
    }
    expect(server.stderr()).not.toMatch(/"level":(50|60)/);
  });
});
