// Focused timing (not a bench-kit case) of the relay path: Alice sends, Bob syncs, through an
// in-process server on SQLite. With PROFILE=<file>, a V8 CPU profile of the timed part.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { cofferRelay } from './relay.js';

const relay = await cofferRelay();
const msg = 'x'.repeat(1024);
for (let i = 0; i < 100; i++) {
  await relay.send(msg);
  await relay.receive(1);
}
const session = process.env.PROFILE ? new Session() : undefined;
session?.connect();
if (session) {
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
}
const n = 500;
const t0 = performance.now();
const parts = { send: 0, receive: 0 };
for (let i = 0; i < n; i++) {
  const a = performance.now();
  await relay.send(msg);
  const b = performance.now();
  await relay.receive(1);
  parts.send += b - a;
  parts.receive += performance.now() - b;
}
const dt = performance.now() - t0;
console.log(
  `${(dt / n).toFixed(2)} ms/msg: send ${(parts.send / n).toFixed(2)}, receive ${(parts.receive / n).toFixed(2)}`,
);
if (session) {
  const { profile } = await session.post('Profiler.stop');
  writeFileSync(process.env.PROFILE!, JSON.stringify(profile));
}
await relay.close();
