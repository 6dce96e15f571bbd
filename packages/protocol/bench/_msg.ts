import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { utf8Encode } from '@coffer/crypto';
import { createTsMlsEngine, type MlsGroup } from '../src/index.js';

const engine = await createTsMlsEngine({ validateCredential: async () => true });
const a = await engine.createKeyPackage({ identity: utf8Encode('a') });
const b = await engine.createKeyPackage({ identity: utf8Encode('b') });
let groupA: MlsGroup = await engine.createGroup(utf8Encode('bench'), a);
const added = await engine.addMembers(groupA, [b.publicKeyPackage]);
groupA = added.group;
let groupB = await engine.joinFromWelcome(added.welcome, b);
const msg = new Uint8Array(1024).fill(65);
async function one() {
  const out = await engine.encrypt(groupA, msg);
  groupA = out.group;
  const r = await engine.process(groupB, out.message);
  groupB = r.group;
}
for (let i = 0; i < 2000; i++) await one();
const session = new Session();
session.connect();
if (process.env.PROFILE) {
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 100 });
  await session.post('Profiler.start');
}
const t = performance.now();
let n = 0;
while (performance.now() - t < 5000) {
  await one();
  n++;
}
console.log((n / ((performance.now() - t) / 1000)).toFixed(0), 'msg/s');
if (process.env.PROFILE) {
  const { profile } = await session.post('Profiler.stop');
  writeFileSync(process.env.PROFILE, JSON.stringify(profile));
}
