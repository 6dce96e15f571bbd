// Focused timing (not a bench-kit case, not part of run.ts) of what group.ts measures at its
// hottest: each of 100 members of a 101-member group processes a self-update commit of member 0,
// commit after commit, state carried forward (`commits`; the first commit, cold, is warm-up), or
// the 1,001st member joins by Welcome after an update (`join`). Prints per-run times and their
// median. With PROFILE=<file>, writes a V8 CPU profile of the timed part only (open it in
// Chrome DevTools or speedscope).
//
//   npx tsx --conditions=@coffer/source bench/_commit-profile.ts commits 5
//   PROFILE=/tmp/join.cpuprofile npx tsx --conditions=@coffer/source bench/_commit-profile.ts join 3
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { utf8Encode } from '@coffer/crypto';
import { createTsMlsEngine, type MlsKeyPackage } from '../src/index.js';

const which = process.argv[2] ?? 'commits';
const reps = Number(process.argv[3] ?? 5);
const engine = await createTsMlsEngine({ validateCredential: async () => true });

const session = process.env.PROFILE ? new Session() : undefined;
session?.connect();
async function profStart() {
  if (session) {
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 100 });
    await session.post('Profiler.start');
  }
}
async function profStop() {
  if (session) {
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(process.env.PROFILE!, JSON.stringify(profile));
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function kps(n: number, tag: string): Promise<MlsKeyPackage[]> {
  const out: MlsKeyPackage[] = [];
  for (let i = 0; i < n; i++)
    out.push(await engine.createKeyPackage({ identity: utf8Encode(`${tag}-${i}`) }));
  return out;
}

if (which === 'commits') {
  const k = await kps(101, 'm');
  const first = await engine.createGroup(utf8Encode('p-101'), k[0]!);
  const added = await engine.addMembers(
    first,
    k.slice(1).map((x) => x.publicKeyPackage),
  );
  const members: Uint8Array[] = [];
  for (const kp of k.slice(1))
    members.push(engine.exportState(await engine.joinFromWelcome(added.welcome, kp)));
  let sender = added.group;
  const commits: Uint8Array[] = [];
  for (let i = 0; i < reps + 1; i++) {
    const out = await engine.selfUpdate(sender);
    sender = out.group;
    commits.push(out.commit);
  }
  // Each rep: every member processes the next commit, carrying state. Rep 0 is warm-up.
  let groups = members.map((s) => engine.importState(s.slice()));
  const perMember: number[] = [];
  for (let c = 0; c < commits.length; c++) {
    if (c === 1) await profStart();
    const t0 = performance.now();
    const next = [];
    for (const g of groups) {
      const r = await engine.process(g, commits[c]!);
      if (r.result.kind !== 'commit' || r.result.epoch !== BigInt(c + 2)) throw new Error('bad');
      next.push(r.group);
    }
    groups = next;
    const ms = (performance.now() - t0) / groups.length;
    if (c > 0) perMember.push(ms);
    console.log(`commit ${c}: ${ms.toFixed(2)} ms/member${c === 0 ? ' (warm-up)' : ''}`);
  }
  await profStop();
  console.log(`median ${median(perMember).toFixed(2)} ms/member`);
} else {
  const k = await kps(1001, 'l');
  let creator = await engine.createGroup(utf8Encode('p-1001'), k[0]!);
  const added = await engine.addMembers(
    creator,
    k.slice(1, 1000).map((x) => x.publicKeyPackage),
  );
  creator = added.group;
  const updater = await engine.joinFromWelcome(added.welcome, k[1]!);
  const update = await engine.selfUpdate(updater);
  creator = (await engine.process(creator, update.commit)).group;
  const welcome = (await engine.addMembers(creator, [k[1000]!.publicKeyPackage])).welcome;
  const times: number[] = [];
  await profStart();
  for (let i = 0; i < reps + 1; i++) {
    const t0 = performance.now();
    const j = await engine.joinFromWelcome(welcome, k[1000]!);
    const ms = performance.now() - t0;
    if (engine.members(j).length !== 1001) throw new Error('bad');
    if (i > 0) times.push(ms);
    console.log(`join ${i}: ${ms.toFixed(1)} ms${i === 0 ? ' (warm-up)' : ''}`);
  }
  await profStop();
  console.log(`median ${median(times).toFixed(1)} ms`);
}
