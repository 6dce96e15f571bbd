// Focused timing (not a bench-kit case, not part of run.ts) of the 1:1 one-way path alone: A
// encrypts a 1 KiB message and B processes it, 10,000 times after 3,000 of warm-up, state carried
// forward. Prints µs per message. With PROFILE=<file>, writes a V8 CPU profile of the timed part
// (sampled every 50 µs; synchronous node:crypto jobs such as Ed25519 show as `run`).
//
//   npx tsx --conditions=@coffer/source bench/_message-profile.ts
//   PROFILE=/tmp/message.cpuprofile npx tsx --conditions=@coffer/source bench/_message-profile.ts
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { createTsMlsEngine } from '../src/index.js';
import { mlsPair } from './conversation.js';

const pair = await mlsPair(await createTsMlsEngine({ validateCredential: async () => true }));
const pt = new Uint8Array(1024).fill(7);
async function run(n: number) {
  for (let i = 0; i < n; i++) await pair.send(pt);
}
await run(3000);
const session = process.env.PROFILE ? new Session() : undefined;
session?.connect();
if (session) {
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 50 });
  await session.post('Profiler.start');
}
const n = 10000;
const t0 = performance.now();
await run(n);
const dt = performance.now() - t0;
console.log(`${((dt / n) * 1000).toFixed(1)} µs/msg, ${(n / (dt / 1000)).toFixed(0)} msg/s`);
if (session) {
  const { profile } = await session.post('Profiler.stop');
  writeFileSync(process.env.PROFILE!, JSON.stringify(profile));
}
