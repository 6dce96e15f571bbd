// One 1:1 conversation end to end through a real server on loopback: client A sends a 1 KiB text
// message with `conversations.send`, client B receives it with `conversations.sync()`, as two
// chat apps do. Ours is the whole Coffer path (SDK → HTTP → @coffer/server → SQLite → HTTP →
// SDK, MLS encryption and local state encrypted at rest on both ends); the baseline is a bare
// relay doing the same delivery job without any of that: a `ws` server on 127.0.0.1 that forwards
// each message from one connected client to the other.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertEqual, type Case, type CaseFactory, KiB } from '@coffer/bench-kit';
import { generateAeadKey, randomBytes } from '@coffer/crypto';
import { createLocalProvider } from '@coffer/fields';
import {
  createLogger,
  createMetrics,
  loadServerSecrets,
  openStorage,
  type RunningServer,
  startServer,
} from '@coffer/server';
import { WebSocket, WebSocketServer } from 'ws';
import {
  type CofferClient,
  type ConversationEvent,
  createClient,
  type KeyStretching,
  memoryStore,
} from '../src/index.js';

const MESSAGE = 1 * KiB;
const SECONDS = 0.5;
/** Messages per sync in the batched rows: a burst a chat app may find on one wake-up. */
const BURST = 10;
const PREFIX = 'relay-1to1/1KiB';

/** Cheap Argon2id for the untimed signups (as the SDK's tests use); messaging never stretches. */
const FAST_HASHING: KeyStretching = {
  'argon2id-custom': { memory: 8, iterations: 1, parallelism: 1 },
};

/** A 1 KiB text (ASCII, so 1 KiB in UTF-8 too), unique per `n`. */
function text(n: number): string {
  const head = `message ${n} `;
  return head + 'x'.repeat(MESSAGE - head.length);
}

/** A delivery path: `send` hands one message to the sender, `receive` waits until B has all. */
interface Relay {
  send(message: string): Promise<void>;
  /** Resolves with what B received since the last call (in order), once `count` arrived. */
  receive(count: number): Promise<string[]>;
  close(): Promise<void>;
}

// ---- ours: a Coffer server and two SDK clients -------------------------------------------------

async function cofferServer(): Promise<{ url: string; close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-sdk-bench-'));
  const provider = await createLocalProvider({ bench: generateAeadKey() });
  const storage = await openStorage({
    sqlitePath: join(dir, 'coffer.sqlite'),
    provider,
    kekId: 'bench',
  });
  const running: RunningServer = await startServer({
    storage,
    ...(await loadServerSecrets(storage)),
    logger: createLogger({ level: 'silent' }),
    metrics: createMetrics({ processMetrics: false }),
    blobs: { dir: join(dir, 'blobs') },
    port: 0,
    host: '127.0.0.1',
  });
  return {
    url: running.url,
    async close() {
      await running.close();
      await storage.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function signedUp(url: string, name: string): Promise<CofferClient> {
  const client = createClient({
    server: url,
    store: memoryStore(),
    storeKey: randomBytes(32),
    opaque: { keyStretching: FAST_HASHING },
  });
  await client.open();
  await client.signup(name, `pw-${name}-long enough`);
  await client.conversations.sync(); // uploads this device's key packages
  return client;
}

const texts = (events: ConversationEvent[]) =>
  events.flatMap((e) => (e.type === 'message' ? [e.message.text ?? ''] : []));

export async function cofferRelay(): Promise<Relay> {
  const server = await cofferServer();
  const suffix = Math.random().toString(36).slice(2, 8);
  const alice = await signedUp(server.url, `alice-${suffix}`);
  const bob = await signedUp(server.url, `bob-${suffix}`);
  const chat = await alice.conversations.direct(`bob-${suffix}`);
  const joined = await bob.conversations.sync();
  assertEqual('bob joined the conversation', joined[0]?.type, 'joined');
  return {
    async send(message) {
      await alice.conversations.send(chat.id, message);
    },
    async receive(count) {
      const got: string[] = [];
      while (got.length < count) got.push(...texts(await bob.conversations.sync()));
      return got;
    },
    async close() {
      await alice.close();
      await bob.close();
      await server.close();
    },
  };
}

// ---- baseline: a bare WebSocket relay ----------------------------------------------------------

async function wsRelay(): Promise<Relay> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => wss.once('listening', resolve));
  const peers: WebSocket[] = [];
  wss.on('connection', (socket) => {
    peers.push(socket);
    socket.on('message', (data, isBinary) => {
      for (const other of peers) if (other !== socket) other.send(data, { binary: isBinary });
    });
  });
  const { port } = wss.address() as { port: number };
  const connect = async () => {
    const socket = new WebSocket(`ws://127.0.0.1:${port}`);
    await new Promise<void>((resolve, reject) => {
      socket.once('open', resolve);
      socket.once('error', reject);
    });
    return socket;
  };
  const a = await connect();
  const b = await connect();
  while (peers.length < 2) await new Promise((r) => setTimeout(r, 1));
  let inbox: string[] = [];
  let waiting: { count: number; resolve: () => void } | undefined;
  b.on('message', (data) => {
    inbox.push(data.toString());
    if (waiting && inbox.length >= waiting.count) waiting.resolve();
  });
  return {
    send: (message) =>
      new Promise<void>((resolve, reject) =>
        a.send(message, (err) => (err ? reject(err) : resolve())),
      ),
    async receive(count) {
      if (inbox.length < count) {
        await new Promise<void>((resolve) => {
          waiting = { count, resolve };
        });
        waiting = undefined;
      }
      const got = inbox;
      inbox = [];
      return got;
    },
    async close() {
      a.close();
      b.close();
      for (const p of peers) p.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

// ---- the cases ---------------------------------------------------------------------------------

/**
 * One op = one message. Every `burst`-th op, B receives everything sent since its last receive
 * and checks it; with burst 1 every message is delivered before the next is sent.
 */
function messenger(relay: Relay, burst: number): () => Promise<void> {
  let n = 0;
  let expected: string[] = [];
  return async () => {
    const message = text(n++);
    await relay.send(message);
    expected.push(message);
    if (expected.length < burst) return;
    const got = await relay.receive(expected.length);
    assertEqual('messages received', got.length, expected.length);
    for (let i = 0; i < got.length; i++) assertEqual('message text', got[i], expected[i]);
    expected = [];
  };
}

const open: Relay[] = [];

/** Closes the servers and clients of the last case built; run.ts calls it after the run. */
export async function closeRelays(): Promise<void> {
  for (const relay of open.splice(0)) await relay.close();
}

function relayCase(name: string, burst: number, label: string): CaseFactory {
  return {
    name,
    async build(): Promise<Case> {
      await closeRelays(); // the previous case's, which the harness is done with
      const ours = await cofferRelay();
      open.push(ours);
      const base = await wsRelay();
      open.push(base);
      const oursOp = messenger(ours, burst);
      const baseOp = messenger(base, burst);
      return {
        name,
        unit: 'messages/s',
        ours: { label, op: oursOp },
        baseline: {
          label: `bare ws relay (ws ${burst === 1 ? 'send, await receipt' : `burst of ${burst}`}), 127.0.0.1`,
          op: baseOp,
        },
        // Check both sides deliver intact, in order, before timing (2 bursts each).
        async check() {
          for (let i = 0; i < 2 * burst; i++) {
            await oursOp();
            await baseOp();
          }
        },
        seconds: SECONDS,
        minOps: burst,
      };
    },
  };
}

export function relayCases(): CaseFactory[] {
  return [
    relayCase(
      `${PREFIX}/send-then-sync`,
      1,
      'Coffer SDK → server (SQLite) → SDK: send, then sync until it arrived',
    ),
    relayCase(
      `${PREFIX}/burst-${BURST}`,
      BURST,
      `Coffer SDK → server (SQLite) → SDK: ${BURST} sends, then sync until all arrived`,
    ),
  ];
}
