// Large groups, member by member: what one member pays to join a 101-member group by Welcome, to
// decrypt one 1 KiB application message and to process one commit (a self-update by another
// member), and what a new member pays to join a 1,001-member group after an update. Ours is the
// GroupEngine (ts-mls with Coffer's crypto provider); the baseline is the same engine on ts-mls's
// own default crypto provider (WebCrypto), fed the same bytes from states that start equal
// (exported from ours, imported into it). Groups are built before timing: one add commit with
// all key packages, so building never counts.
import {
  assertEqual,
  assertSameBytes,
  assertTrue,
  type Case,
  type CaseFactory,
  cycle,
  filler,
  KiB,
  log,
  type Side,
} from '@coffer/bench-kit';
import { utf8Encode } from '@coffer/crypto';
import { defaultCryptoProvider } from 'ts-mls';
import { createTsMlsEngine, type GroupEngine, type MlsKeyPackage } from '../src/index.js';

const MESSAGE = 1 * KiB;
const accept = { validateCredential: async () => true };
const OURS = 'GroupEngine (ts-mls, Coffer provider)';
const BASELINE = 'the same engine on ts-mls defaultCryptoProvider (WebCrypto)';

interface Engines {
  ours: GroupEngine;
  baseline: GroupEngine;
}

async function engines(): Promise<Engines> {
  return {
    ours: await createTsMlsEngine(accept),
    baseline: await createTsMlsEngine({ ...accept, crypto: defaultCryptoProvider }),
  };
}

async function keyPackages(engine: GroupEngine, n: number, tag: string): Promise<MlsKeyPackage[]> {
  const out: MlsKeyPackage[] = [];
  for (let i = 0; i < n; i++) {
    out.push(await engine.createKeyPackage({ identity: utf8Encode(`${tag}-${i}`) }));
  }
  return out;
}

// --- 101 members -------------------------------------------------------------------------------

const SMALL = 101;
const SMALL_PREFIX = `group-${SMALL}`;

/**
 * A group of 101: member 0 created it and added the other 100 in one commit. Each case imports
 * its own copies of the states: using a state wipes the secrets it consumed, in the old handle
 * too, and importState keeps views into the bytes it is given (so those are copied as well).
 */
interface Group101 {
  engines: Engines;
  keyPackages: MlsKeyPackage[];
  welcome: Uint8Array;
  /** Exported state of member 0, which sends the messages and commits (epoch 1). */
  sender: Uint8Array;
  /** Exported states of members 1..100 right after joining (epoch 1). */
  members: Uint8Array[];
}

let group101: Promise<Group101> | undefined;

/** Built once per run and shared by the 101-member cases. */
function buildGroup101(): Promise<Group101> {
  group101 ??= (async () => {
    const started = performance.now();
    const e = await engines();
    const kps = await keyPackages(e.ours, SMALL, 'm');
    const first = await e.ours.createGroup(utf8Encode('bench-101'), kps[0]!);
    const added = await e.ours.addMembers(
      first,
      kps.slice(1).map((k) => k.publicKeyPackage),
    );
    const members: Uint8Array[] = [];
    for (const kp of kps.slice(1)) {
      members.push(e.ours.exportState(await e.ours.joinFromWelcome(added.welcome, kp)));
    }
    log(`  (built the ${SMALL}-member group in ${Math.round(performance.now() - started)} ms)`);
    return {
      engines: e,
      keyPackages: kps,
      welcome: added.welcome,
      sender: e.ours.exportState(added.group),
      members,
    };
  })();
  return group101;
}

/**
 * Member after member processes one message after another, each carrying its state forward as a
 * client does: op k is member 1 + (k mod 100) processing message ⌊k / 100⌋. The messages are
 * made beforehand by member 0 (`next` makes more if a run outlasts them) and shared by both sides.
 */
function roundRobin(
  label: string,
  engine: GroupEngine,
  states: readonly Uint8Array[],
  messages: Uint8Array[],
  next: () => Promise<void>,
  expect: (result: Awaited<ReturnType<GroupEngine['process']>>['result'], index: number) => void,
): Side & { processed(): number } {
  const groups = states.map((s) => engine.importState(s.slice()));
  let member = 0;
  let message = 0;
  let processed = 0;
  return {
    label,
    processed: () => processed,
    async op() {
      if (message === messages.length) await next();
      const out = await engine.process(groups[member]!, messages[message]!);
      expect(out.result, message);
      groups[member] = out.group;
      processed++;
      member++;
      if (member === groups.length) {
        member = 0;
        message++;
      }
    },
  };
}

function smallCases(): CaseFactory[] {
  const join = `${SMALL_PREFIX}/join-welcome`;
  const app = `${SMALL_PREFIX}/1KiB-message-per-member`;
  const commit = `${SMALL_PREFIX}/commit-per-member`;
  return [
    {
      name: join,
      async build(): Promise<Case> {
        const g = await buildGroup101();
        const joiners = g.keyPackages.slice(1);
        const side = (label: string, engine: GroupEngine): Side => {
          const nextJoiner = cycle(joiners);
          return { label, op: () => engine.joinFromWelcome(g.welcome, nextJoiner()) };
        };
        return {
          name: join,
          unit: 'member-joins/s',
          ours: side(`${OURS} joinFromWelcome`, g.engines.ours),
          baseline: side(`${BASELINE} joinFromWelcome`, g.engines.baseline),
          seconds: 0.5,
          goal: { ratio: 1 },
          async check() {
            for (const engine of [g.engines.ours, g.engines.baseline]) {
              const joined = await engine.joinFromWelcome(g.welcome, joiners[42]!);
              assertEqual('joined with 101 members', engine.members(joined).length, SMALL);
              assertEqual('at leaf 43', joined.ownLeafIndex, 43);
            }
          },
        };
      },
    },
    {
      name: app,
      async build(): Promise<Case> {
        const g = await buildGroup101();
        const engine = g.engines.ours;
        let sender = engine.importState(g.sender.slice());
        const messages: Uint8Array[] = [];
        const plaintext = (i: number) => filler(MESSAGE, i);
        const more = async (n: number) => {
          for (let i = 0; i < n; i++) {
            const out = await engine.encrypt(sender, plaintext(messages.length));
            sender = out.group;
            messages.push(out.message);
          }
        };
        await more(400);
        const expect = (result: { kind: string }, index: number) => {
          if (result.kind !== 'application')
            throw new Error(`message ${index} was not application`);
        };
        const make = (label: string, e: GroupEngine) =>
          roundRobin(label, e, g.members, messages, () => more(1), expect);
        const ours = make(`${OURS} process`, engine);
        const baseline = make(`${BASELINE} process`, g.engines.baseline);
        return {
          name: app,
          unit: 'member-decrypts/s',
          ours,
          baseline,
          seconds: 0.5,
          goal: { ratio: 1 },
          async check() {
            // Every member reads the first message intact, from the right sender.
            for (const e of [engine, g.engines.baseline]) {
              for (const state of g.members) {
                const r = await e.process(e.importState(state.slice()), messages[0]!);
                if (r.result.kind !== 'application') throw new Error('expected an application');
                assertSameBytes('1 KiB arrives intact', r.result.plaintext, plaintext(0));
                assertEqual('sent by member 0', r.result.sender.leafIndex, 0);
              }
            }
            assertTrue('sizes', MESSAGE === 1024 && g.members.length === SMALL - 1);
          },
        };
      },
    },
    {
      name: commit,
      async build(): Promise<Case> {
        const g = await buildGroup101();
        const engine = g.engines.ours;
        let sender = engine.importState(g.sender.slice());
        const commits: Uint8Array[] = [];
        const more = async (n: number) => {
          for (let i = 0; i < n; i++) {
            const out = await engine.selfUpdate(sender);
            sender = out.group;
            commits.push(out.commit);
          }
        };
        const started = performance.now();
        await more(32);
        log(`  (32 self-updates by member 0 in ${Math.round(performance.now() - started)} ms)`);
        const expect = (
          result: { kind: string; epoch?: bigint; removed?: boolean },
          index: number,
        ) => {
          // Commit i moves the group from epoch i + 1 to i + 2 (epoch 1 is after the adds).
          if (result.kind !== 'commit' || result.epoch !== BigInt(index + 2) || result.removed) {
            throw new Error(`commit ${index} was not processed as expected`);
          }
        };
        const make = (label: string, e: GroupEngine) =>
          roundRobin(label, e, g.members, commits, () => more(1), expect);
        const ours = make(`${OURS} process`, engine);
        const baseline = make(`${BASELINE} process`, g.engines.baseline);
        return {
          name: commit,
          unit: 'member-commits/s',
          ours,
          baseline,
          seconds: 0.5,
          // The goal: at most 3 ms per member to process a commit at 101 members.
          goal: { ratio: 1, value: 1000 / 3 },
          async check() {
            // After the commit, members are in the new epoch together: one's message reaches another.
            for (const e of [engine, g.engines.baseline]) {
              const a = await e.process(e.importState(g.members[99]!.slice()), commits[0]!);
              const b = await e.process(e.importState(g.members[49]!.slice()), commits[0]!);
              assertEqual('epoch 2', a.group.epoch, 2n);
              const sent = await e.encrypt(a.group, filler(MESSAGE));
              const got = await e.process(b.group, sent.message);
              if (got.result.kind !== 'application') throw new Error('expected an application');
              assertSameBytes('message after the commit', got.result.plaintext, filler(MESSAGE));
            }
          },
        };
      },
    },
  ];
}

// --- 1,001 members -----------------------------------------------------------------------------

const LARGE = 1001;
const LARGE_NAME = `group-${LARGE}/join-welcome-after-update`;

function largeCases(): CaseFactory[] {
  return [
    {
      name: LARGE_NAME,
      async build(): Promise<Case> {
        const started = performance.now();
        const e = await engines();
        const kps = await keyPackages(e.ours, LARGE, 'l');
        const joiner = kps[LARGE - 1]!;
        // 1,000 members from one add commit (no UpdatePath, so no parent nodes yet) ...
        let creator = await e.ours.createGroup(utf8Encode('bench-1001'), kps[0]!);
        const added = await e.ours.addMembers(
          creator,
          kps.slice(1, LARGE - 1).map((k) => k.publicKeyPackage),
        );
        creator = added.group;
        // ... then a self-update by member 1, which fills its direct path with parent nodes whose
        // parent hashes a joiner must verify, ...
        const updater = await e.ours.joinFromWelcome(added.welcome, kps[1]!);
        const update = await e.ours.selfUpdate(updater);
        creator = (await e.ours.process(creator, update.commit)).group;
        // ... then member 0 adds the 1,001st member, whose join is timed.
        const welcome = (await e.ours.addMembers(creator, [joiner.publicKeyPackage])).welcome;
        log(`  (built the ${LARGE}-member group in ${Math.round(performance.now() - started)} ms)`);
        const side = (label: string, engine: GroupEngine): Side => ({
          label,
          op: () => engine.joinFromWelcome(welcome, joiner),
        });
        return {
          name: LARGE_NAME,
          unit: 'joins/s',
          ours: side(`${OURS} joinFromWelcome`, e.ours),
          baseline: side(`${BASELINE} joinFromWelcome`, e.baseline),
          seconds: 1,
          // The goal: a join at 1,001 members in under 200 ms.
          goal: { ratio: 1, value: 5 },
          async check() {
            for (const engine of [e.ours, e.baseline]) {
              const joined = await engine.joinFromWelcome(welcome, joiner);
              assertEqual('joined with 1,001 members', engine.members(joined).length, LARGE);
              assertEqual('at the last leaf', joined.ownLeafIndex, LARGE - 1);
              assertEqual('epoch 3', joined.epoch, 3n);
            }
          },
        };
      },
    },
  ];
}

export function groupCases(): CaseFactory[] {
  return [...smallCases(), ...largeCases()];
}
