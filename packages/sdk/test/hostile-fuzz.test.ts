// A randomized hostile server, seeded: two accounts' worth of devices (alice on two devices, bob,
// carol) in a 1:1 conversation and a 3-member group. Round after round a seeded PRNG has
// someone send, rename, or sync through a fetch that tampers with what the server answers:
// queue entries bit-flipped, truncated, dropped, duplicated, swapped, or with another groupId,
// epoch, seq, kind, sender or cursor; whole answers 500/503/429, garbage or wrong-shaped JSON,
// cut bodies, connections reset before or after the server acted. Sends and renames go to the
// honest server (what tampering does to a device shows in what it can do next). Commits happen
// along the way: renames, key renewals every 4 messages, rejoins.
//
// Invariants, checked after every round:
// - every error that leaves the SDK is an SdkError (never a TypeError or RangeError), and no
//   promise rejection goes unhandled;
// - `sync` does not throw for tampered entries: it reports them as typed `error` events. The
//   exceptions are page-level breaches the SDK documents as thrown: cursors repeated or out of
//   order (QUEUE_ORDER) and entries of the wrong JSON shape (MALFORMED_RESPONSE); a broken
//   answer as a whole fails it as NETWORK, SERVER_ERROR, RATE_LIMITED or PROTOCOL_VIOLATION;
// - no plaintext is delivered twice as new, none is made up, and each is attributed to the
//   device (and conversation) that sent it;
// - a send or rename (to the honest server) succeeds, whatever was done to the device before;
// - at the end, with the server honest again, a fresh message from each device reaches every
//   other device of the conversation, and all agree on epoch and members: the clients recover
//   by themselves (resync where MLS allows). See `recover` for the one loss MLS imposes.
//
// What it found (fixed; the minimized case is in "cases the fuzz found"): a device whose copy
// of a commit was dropped could not send or commit at all while the other members were silent.
//
// Replay a failure with COFFER_FUZZ_SEED=<seed printed> (COFFER_FUZZ_ROUNDS=<n> for more rounds,
// COFFER_FUZZ_LOG=1 to print every round); CI runs the fixed seeds below.
import { fromBase64url, toBase64url } from '@coffer/crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { CofferClient, ConversationEvent, FetchLike } from '../src/index.js';
import { SdkError } from '../src/index.js';
import { fuzzFailure, printLog, prng, type Rng, watchUnhandled } from './_fuzz.js';
import { type TestServer, testClient, testServer, username } from './_server.js';

const SEEDS = process.env.COFFER_FUZZ_SEED
  ? [Number(process.env.COFFER_FUZZ_SEED)]
  : [0xc0ffee, 1, 2];
const ROUNDS = Number(process.env.COFFER_FUZZ_ROUNDS ?? 400);

let server: TestServer;
beforeAll(async () => {
  server = await testServer();
});
afterAll(async () => {
  await server.close();
});

interface QueueEntry {
  cursor: number;
  groupId: string;
  seq: number;
  epoch: number;
  kind: string;
  sender: { accountId: string; deviceId: string };
  message: string;
}

/** What the hostile server does to the requests of one sync. */
type Tamper =
  | { kind: 'entries'; op: EntryOp }
  | { kind: 'http'; fault: HttpFault; at: number; forward: boolean };

const ENTRY_OPS = [
  'flip',
  'truncate',
  'drop',
  'duplicate',
  'swap',
  'groupId',
  'epoch',
  'seq',
  'kind',
  'sender',
  'cursor',
  'repeat',
  'shape',
] as const;
type EntryOp = (typeof ENTRY_OPS)[number];
/** Entry changes that break the page itself (its cursor order, its JSON shape): thrown. */
const PAGE_OPS: ReadonlySet<EntryOp> = new Set(['cursor', 'repeat', 'shape']);

const HTTP_FAULTS = ['500', '503', '429', 'garbage', 'wrong-shape', 'cut', 'stream', 'reset'];
type HttpFault = (typeof HTTP_FAULTS)[number];
/** What a broken answer may fail a sync with. */
const HTTP_CODES: ReadonlySet<string> = new Set([
  'NETWORK',
  'SERVER_ERROR',
  'RATE_LIMITED',
  'PROTOCOL_VIOLATION',
]);

interface Device {
  readonly label: string;
  readonly name: string;
  readonly accountId: string;
  readonly deviceId: string;
  readonly client: CofferClient;
  /** The hostile server's plan for this device's requests, while set. */
  tamper: Tamper | undefined;
  /** What the tampering did (for the log). */
  did: string[];
  /** Requests made while tampering (the target of an HTTP fault is counted in these). */
  requests: number;
  /** Texts this device received as new messages. */
  readonly received: Set<string>;
  /** The last queue entries the server gave it while tampering (for duplicates). */
  readonly delivered: QueueEntry[];
  /** Conversations it reported `resynced` for (rejoined by an external commit). */
  readonly resynced: Set<string>;
}

const password = (name: string) => `pw-${name}-long enough`;

function flipBit(b64: string, rng: Rng): string {
  const bytes = fromBase64url(b64);
  if (bytes.length === 0) return b64;
  const i = rng.int(bytes.length);
  bytes[i] = (bytes[i] as number) ^ (1 << rng.int(8));
  return toBase64url(bytes);
}

/** A device of its own whose queue the test can filter (each GET /v1/queue page). */
async function plainUser(prefix: string, options: Parameters<typeof testClient>[1] = {}) {
  const name = username(prefix);
  const filter: { fn?: (entries: QueueEntry[]) => QueueEntry[] } = {};
  const fetch: FetchLike = async (url, init) => {
    const res = await server.fetch(url, init);
    if (!filter.fn || (init.method ?? 'GET') !== 'GET' || !url.includes('/v1/queue?')) return res;
    const page = (await res.clone().json()) as { messages: QueueEntry[] };
    return Response.json({ ...page, messages: filter.fn(page.messages) });
  };
  const client = await testClient({ fetch }, options);
  const { account } = await client.signup(name, password(name));
  await client.conversations.sync();
  return { name, client, account, filter };
}

describe('cases the fuzz found', () => {
  // Found by seed 0xc0ffee: a device whose copy of a commit the server dropped (or garbled, or
  // let expire) stays at the old epoch. Its sends met EPOCH_CONFLICT, the catch-up brought
  // nothing (the commit was gone), and after 5 tries the send failed with CONFLICT — and so
  // every send after it, for as long as no other member happened to write (only a message of a
  // later epoch made it rejoin). Now a conflict that a catch-up does not resolve makes it rejoin
  // from the sealed GroupInfo, as a message of a later epoch does, and the send goes through.
  test('a device that missed a commit can still send while the others are silent', async () => {
    const alice = await plainUser('alice', { conversations: { selfUpdateAfterMessages: 1 } });
    const bob = await plainUser('bob');
    const { id } = await alice.client.conversations.direct(bob.name);
    await bob.client.conversations.sync();
    // Alice's message is followed by her key renewal (a commit): the server keeps that commit
    // from Bob for good (as it drops an entry past its retention), and Alice says nothing more.
    await alice.client.conversations.send(id, 'hello');
    let withheld: number | undefined;
    bob.filter.fn = (entries) =>
      entries.filter((e) => {
        if (e.kind === 'commit' && withheld === undefined) withheld = e.cursor;
        return e.cursor !== withheld;
      });
    const seen = await bob.client.conversations.sync();
    expect(seen.flatMap((e) => (e.type === 'message' ? [e.message.text] : []))).toEqual(['hello']);
    expect(withheld).toBeDefined();
    await bob.client.conversations.send(id, 'still here');
    const got = await alice.client.conversations.sync();
    expect(got.flatMap((e) => (e.type === 'message' ? [e.message.text] : []))).toEqual([
      'still here',
    ]);
    expect(got.filter((e) => e.type === 'error')).toEqual([]);
  });
});

describe('a randomized hostile server', () => {
  test.each(SEEDS)(
    'every failure is typed and the devices recover (seed %i)',
    async (SEED) => {
      const rng = prng(SEED);
      const log: string[] = [];
      const watch = watchUnhandled();
      const { unhandled } = watch;

      /** What each sent text is: who sent it, where. */
      const sent = new Map<string, { deviceId: string; accountId: string; conversation: string }>();
      let conversations: { id: string; members: Device[] }[] = [];
      let devices: Device[] = [];

      const makeFetch = (device: () => Device | undefined): FetchLike => {
        return async (url, init) => {
          const d = device();
          const t = d?.tamper;
          if (!d || !t) return server.fetch(url, init);
          const n = d.requests++;
          const isQueue = (init.method ?? 'GET') === 'GET' && url.includes('/v1/queue?');
          if (t.kind === 'http' && n === t.at) {
            d.did.push(
              `${t.fault}${t.forward ? ' after' : ''} on ${init.method ?? 'GET'} ${new URL(url).pathname}`,
            );
            const res = t.forward ? await server.fetch(url, init) : undefined;
            const json = (status: number, body: string) =>
              new Response(body, { status, headers: { 'content-type': 'application/json' } });
            switch (t.fault) {
              case '500':
                return json(500, '{"error":{"code":"INTERNAL","message":"boom"}}');
              case '503':
                return json(503, '{"error":{"code":"UNAVAILABLE","message":"later"}}');
              case '429':
                return new Response('{"error":{"code":"RATE_LIMITED","message":"slow"}}', {
                  status: 429,
                  headers: { 'content-type': 'application/json', 'retry-after': '1' },
                });
              case 'garbage':
                return json(200, rng.pick(['{"messages":[', 'not json', '\u0000\u00ff', '']));
              case 'wrong-shape':
                return json(
                  200,
                  rng.pick([
                    '[]',
                    'null',
                    '"text"',
                    '{"messages":"x","more":true}',
                    '{"messages":[{"cursor":-1}],"more":false}',
                    '{"messages":[{"cursor":1e300,"groupId":7}]}',
                    '{"epoch":-3,"groupInfo":12,"seq":"x","keyPackages":{}}',
                  ]),
                );
              case 'cut': {
                const text = res ? await res.text() : '{"messages":[{"cursor":1,"groupId":"';
                return json(200, text.slice(0, Math.max(1, rng.int(text.length))));
              }
              case 'stream': {
                const text = res ? await res.text() : '{"messages":[';
                const body = new ReadableStream<Uint8Array>({
                  start(controller) {
                    controller.enqueue(new TextEncoder().encode(text.slice(0, text.length >> 1)));
                    controller.error(new TypeError('terminated'));
                  },
                });
                return new Response(body, { status: 200 });
              }
              default:
                throw new TypeError('fetch failed: connection reset');
            }
          }
          const res = await server.fetch(url, init);
          if (t.kind !== 'entries' || !isQueue || !res.ok || d.did.length > 0) return res;
          const page = (await res.clone().json()) as { messages: QueueEntry[]; more: boolean };
          if (page.messages.length === 0) return res;
          const messages = tamperEntries(page.messages, t.op, d);
          d.delivered.push(...page.messages);
          d.delivered.splice(0, d.delivered.length - 50);
          return Response.json({ ...page, messages });
        };
      };

      /** Applies `op` to one page of entries (records what it did in `d.did`). */
      const tamperEntries = (entries: QueueEntry[], op: EntryOp, d: Device): QueueEntry[] => {
        const out = entries.map((e) => ({ ...e, sender: { ...e.sender } }));
        const i = rng.int(out.length);
        const e = out[i] as QueueEntry;
        const others = devices.filter((x) => x !== d);
        d.did.push(`${op} #${i} (${e.kind}, cursor ${e.cursor}, of ${out.length})`);
        switch (op) {
          case 'flip':
            e.message = flipBit(e.message, rng);
            break;
          case 'truncate': {
            const bytes = fromBase64url(e.message);
            e.message = toBase64url(bytes.slice(0, 1 + rng.int(Math.max(1, bytes.length - 1))));
            break;
          }
          case 'drop':
            out.splice(i, 1);
            break;
          case 'duplicate': {
            // Cursors of one queue are consecutive, so a copy takes the cursor of another entry,
            // which is dropped: a later one of this page, or (for a page of one) the copy is an
            // entry this device was given before, delivered again. Never a cursor past the page:
            // the entry that gets it later would be skipped unseen, a drop nobody could notice.
            const j = i + 1 + rng.int(out.length - i);
            const earlier = d.delivered[rng.int(d.delivered.length)];
            if (j < out.length) out[j] = { ...e, cursor: (out[j] as QueueEntry).cursor };
            else if (earlier) out[i] = { ...earlier, cursor: e.cursor };
            break;
          }
          case 'swap': {
            // Delivery order changed, cursors kept ascending.
            const j = rng.int(out.length);
            const a = out[i] as QueueEntry;
            const b = out[j] as QueueEntry;
            out[i] = { ...b, cursor: a.cursor };
            out[j] = { ...a, cursor: b.cursor };
            break;
          }
          case 'groupId': {
            const other = conversations.find((c) => c.id !== e.groupId)?.id;
            e.groupId =
              rng.chance(0.7) && other
                ? other
                : toBase64url(Uint8Array.from({ length: 16 }, () => rng.int(256)));
            break;
          }
          case 'epoch':
            e.epoch = rng.pick([
              0,
              Math.max(0, e.epoch - 1),
              e.epoch + 1,
              e.epoch + 2 + rng.int(5),
            ]);
            break;
          case 'seq':
            e.seq = rng.pick([0, Math.max(0, e.seq - 1), e.seq + 1, e.seq + 1000]);
            break;
          case 'kind':
            e.kind = rng.pick(
              ['application', 'commit', 'proposal', 'welcome'].filter((k) => k !== e.kind),
            );
            break;
          case 'sender': {
            const to = rng.chance(0.2) ? d : rng.pick(others);
            e.sender = { accountId: to.accountId, deviceId: to.deviceId };
            break;
          }
          case 'cursor': {
            // Another value that looks like one of this page's cursors (never one past the page:
            // a cursor the server makes up far ahead makes the device skip everything up to it,
            // which a server could as well do by withholding; nothing a client can undo).
            const prev = out[i - 1]?.cursor ?? e.cursor - 1;
            e.cursor = rng.pick([
              prev,
              Math.max(0, e.cursor - 2),
              out[out.length - 1]?.cursor ?? e.cursor,
            ]);
            break;
          }
          case 'repeat':
            out.splice(i + 1, 0, { ...e });
            break;
          case 'shape': {
            const bad = rng.pick([
              { message: 12 },
              { message: '***' },
              { cursor: -1 },
              { cursor: 2 ** 60 },
              { epoch: 'one' },
              { sender: null },
              { groupId: null },
            ]);
            Object.assign(e, bad);
            break;
          }
        }
        return out;
      };

      /** A device of `name` on a fresh home: signed up (`first` absent) or logged in. */
      const device = async (label: string, name: string, first?: Device): Promise<Device> => {
        let self: Device | undefined;
        const client = await testClient(
          { fetch: makeFetch(() => self) },
          { conversations: { selfUpdateAfterMessages: 4 } },
        );
        const account = first
          ? await client.login(name, password(name))
          : (await client.signup(name, password(name))).account;
        self = {
          label,
          name,
          accountId: account.accountId,
          deviceId: account.deviceId,
          client,
          tamper: undefined,
          did: [],
          requests: 0,
          received: new Set(),
          delivered: [],
          resynced: new Set(),
        };
        await client.conversations.sync();
        return self;
      };
      const signup = (label: string) => device(label, username(label));
      const secondDevice = (first: Device, label: string) => device(label, first.name, first);

      const fail = (message: string): never => {
        throw new Error(message);
      };

      /** Checks what one sync (or send's catch-up) of `d` reported. */
      const checkEvents = (d: Device, events: ConversationEvent[]) => {
        for (const e of events) {
          if (e.type === 'error') {
            if (!(e.error instanceof SdkError))
              fail(`${d.label}: an error event that is no SdkError`);
            continue;
          }
          if (e.type === 'resynced') d.resynced.add(e.conversation.id);
          if (e.type !== 'message') continue;
          const text = e.message.text ?? '';
          const origin = sent.get(text);
          if (!origin) fail(`${d.label}: a message nobody sent: ${JSON.stringify(text)}`);
          if (d.received.has(text)) fail(`${d.label}: ${text} delivered twice as new`);
          d.received.add(text);
          if (e.message.sender.deviceId === d.deviceId)
            fail(`${d.label}: its own ${text} delivered to it`);
          if (
            e.message.sender.deviceId !== origin?.deviceId ||
            e.message.sender.accountId !== origin?.accountId
          ) {
            fail(`${d.label}: ${text} attributed to another sender`);
          }
          if (e.message.conversationId !== origin?.conversation) {
            fail(`${d.label}: ${text} attributed to another conversation`);
          }
        }
      };

      const notes = (events: ConversationEvent[]) =>
        events
          .map((e) =>
            e.type === 'error'
              ? `error:${e.error.detail ?? e.error.code}`
              : e.type === 'message'
                ? `message:${e.message.text}`
                : e.type,
          )
          .join(' ');

      /** A caught error must be an SdkError; returns its description. */
      const typed = (d: Device, what: string, err: unknown): SdkError => {
        if (!(err instanceof SdkError)) {
          const e = err as Error;
          fail(`${d.label} ${what} threw ${e?.name}: ${e?.message}\n${e?.stack ?? ''}`);
        }
        return err as SdkError;
      };

      const syncOnce = async (d: Device, tamper: Tamper | undefined): Promise<string> => {
        d.tamper = tamper;
        d.did = [];
        d.requests = 0;
        try {
          const events = await d.client.conversations.sync();
          checkEvents(d, events);
          return `ok [${d.did.join('; ')}] ${notes(events)}`;
        } catch (err) {
          const e = typed(d, 'sync', err);
          const did = `[${d.did.join('; ')}]`;
          // Only an answer the server broke as a whole may fail a sync: tampered entries are
          // reported as events (a page that breaks the queue's order or shape is the exception).
          const why = `${e.code}/${e.detail ?? e.serverCode ?? ''} (${e.message}) ${did}`;
          if (!tamper || d.did.length === 0) fail(`${d.label}: sync failed, honest server: ${why}`);
          if (tamper?.kind === 'entries') {
            const page =
              PAGE_OPS.has(tamper.op) &&
              e.code === 'PROTOCOL_VIOLATION' &&
              (e.detail === 'QUEUE_ORDER' || e.detail === 'MALFORMED_RESPONSE');
            if (!page) fail(`${d.label}: sync threw for tampered entries: ${why}`);
          } else if (!HTTP_CODES.has(e.code)) {
            fail(`${d.label}: sync threw an unexpected code for a broken answer: ${why}`);
          }
          // The kept events are taken now, as an app does: they must pass the same checks.
          d.tamper = undefined;
          const kept = await d.client.conversations.unreported();
          checkEvents(d, kept);
          return `threw ${e.code}/${e.detail ?? e.serverCode ?? ''} ${did} kept: ${notes(kept)}`;
        } finally {
          d.tamper = undefined;
        }
      };

      let counter = 0;
      const send = async (d: Device, conversation: { id: string }, tag: string) => {
        const text = `${tag}:${d.label}:${counter++}`;
        // Known before the send: one whose outcome is unknown may still arrive.
        sent.set(text, {
          deviceId: d.deviceId,
          accountId: d.accountId,
          conversation: conversation.id,
        });
        try {
          await d.client.conversations.send(conversation.id, text);
          return `sent ${text}`;
        } catch (err) {
          // Sends go to an honest server (only syncs are tampered with): one that fails is a
          // device that could not recover from what the server did before.
          const e = typed(d, 'send', err);
          return fail(`${d.label}: send ${text} threw ${e.code}/${e.detail ?? e.serverCode ?? ''}`);
        }
      };

      let round = -1;
      try {
        // Setup, honest.
        const alice = await signup('alice');
        const bob = await signup('bob');
        const carol = await signup('carol');
        const alice2 = await secondDevice(alice, 'alice2');
        devices = [alice, alice2, bob, carol];
        await alice.client.conversations.sync(); // adds alice2 to nothing yet, sees its manifest
        const chat = await alice.client.conversations.direct(bob.name);
        const team = await alice.client.conversations.create({
          name: 'T',
          members: [bob.name, carol.name],
        });
        for (let i = 0; i < 3; i++) for (const d of devices) await syncOnce(d, undefined);
        conversations = [
          { id: chat.id, members: [alice, alice2, bob] },
          { id: team.id, members: devices },
        ];
        for (const c of conversations) {
          for (const d of c.members) {
            const info = await d.client.conversations.get(c.id);
            expect(info.members.map((m) => m.deviceId).sort(), d.label).toEqual(
              c.members.map((m) => m.deviceId).sort(),
            );
          }
        }

        for (round = 0; round < ROUNDS; round++) {
          const r = rng.next();
          let line: string;
          if (r < 0.35) {
            const c = rng.pick(conversations);
            const d = rng.pick(c.members);
            line = `${d.label} ${c === conversations[0] ? 'chat' : 'team'}: ${await send(d, c, `r${round}`)}`;
          } else if (r < 0.38) {
            const d = rng.pick([alice, alice2]);
            try {
              await d.client.conversations.rename(team.id, `T${round}`);
              line = `${d.label} renamed`;
            } catch (err) {
              const e = typed(d, 'rename', err);
              line = fail(`${d.label} rename threw ${e.code}/${e.detail ?? e.serverCode ?? ''}`);
            }
          } else {
            const d = rng.pick(devices);
            const p = rng.next();
            const tamper: Tamper | undefined =
              p < 0.3
                ? undefined
                : p < 0.75
                  ? { kind: 'entries', op: rng.pick(ENTRY_OPS) }
                  : {
                      kind: 'http',
                      fault: rng.pick(HTTP_FAULTS),
                      at: rng.int(4),
                      forward: rng.chance(0.5),
                    };
            line = `${d.label} sync ${tamper ? JSON.stringify(tamper) : 'honest'}: ${await syncOnce(d, tamper)}`;
          }
          log.push(`${round} ${line}`);
          if (unhandled.length > 0) fail(`unhandled rejection: ${String(unhandled[0])}`);
        }

        // The server is honest from here on.
        round = ROUNDS;
        for (let i = 0; i < 3; i++) {
          for (const d of devices) log.push(`settle ${d.label}: ${await syncOnce(d, undefined)}`);
        }
        await recover(conversations, log, send, syncOnce);
        if (unhandled.length > 0) fail(`unhandled rejection: ${String(unhandled[0])}`);
        printLog(log);
      } catch (err) {
        throw fuzzFailure('hostile fuzz', SEED, round, log, err);
      } finally {
        watch.stop();
        for (const d of devices) await d.client.close();
      }
    },
    120_000,
  );
});

/**
 * Each device sends one fresh message to each of its conversations (sends must succeed), then
 * every device syncs twice; every other member device must read each probe. One exception, by
 * design: a device that had fallen behind (a commit dropped or garbled for it) learns so only
 * from an entry of a later epoch or from its own send, and rejoins then by an external commit;
 * what the others sent in the epoch before its rejoin stays unreadable to it (MLS gives a
 * rejoined leaf no keys of earlier epochs). So in the first probe round a probe may be lost only
 * to a device that rejoined that conversation in that round; the second round must deliver
 * every probe everywhere. Then every device agrees on each conversation's epoch and members.
 */
async function recover(
  conversations: { id: string; members: Device[] }[],
  log: string[],
  send: (d: Device, c: { id: string }, tag: string) => Promise<string>,
  syncOnce: (d: Device, t: undefined) => Promise<string>,
): Promise<void> {
  const devices = [...new Set(conversations.flatMap((c) => c.members))];
  for (let attempt = 0; attempt < 2; attempt++) {
    for (const d of devices) d.resynced.clear();
    const probes: { text: string; from: Device; c: { id: string; members: Device[] } }[] = [];
    for (const c of conversations) {
      for (const d of c.members) {
        const line = await send(d, c, `probe${attempt}`);
        log.push(`probe ${d.label}: ${line}`);
        probes.push({ text: line.split(' ')[1] ?? '', from: d, c });
      }
    }
    for (let i = 0; i < 2; i++) {
      for (const d of devices) log.push(`probe sync ${d.label}: ${await syncOnce(d, undefined)}`);
    }
    const missing = probes.flatMap((p) =>
      p.c.members
        .filter((m) => m !== p.from && !m.received.has(p.text))
        .map((m) => ({ m, p, say: `${m.label} lacks ${p.text}` })),
    );
    if (missing.length > 0) log.push(`probe round ${attempt}: ${missing.map((x) => x.say)}`);
    const unexplained = missing.filter(({ m, p }) => attempt > 0 || !m.resynced.has(p.c.id));
    if (unexplained.length > 0) {
      throw new Error(`the devices did not recover: ${unexplained.map((x) => x.say).join(', ')}`);
    }
    if (missing.length === 0) break;
  }
  for (const c of conversations) {
    const views = await Promise.all(c.members.map((d) => d.client.conversations.get(c.id)));
    const expected = c.members.map((d) => d.deviceId).sort();
    for (const [i, v] of views.entries()) {
      const who = c.members[i]?.label;
      expect(v.active, `${who} active`).toBe(true);
      expect(v.epoch, `${who} at the others' epoch`).toBe(views[0]?.epoch);
      expect(v.members.map((m) => m.deviceId).sort(), `${who}'s members`).toEqual(expected);
    }
  }
}
