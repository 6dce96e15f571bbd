import crypto from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';

const counts: Record<string, number> = {};
const time: Record<string, number> = {};
for (const name of [
  'sign',
  'verify',
  'createHmac',
  'createCipheriv',
  'createDecipheriv',
  'randomFillSync',
  'createSecretKey',
  'createPrivateKey',
  'createPublicKey',
  'hkdfSync',
  'createHash',
  'diffieHellman',
]) {
  const orig = (crypto as any)[name];
  (crypto as any)[name] = function (...args: unknown[]) {
    counts[name] = (counts[name] ?? 0) + 1;
    const t = performance.now();
    const r = orig.apply(this, args);
    time[name] = (time[name] ?? 0) + performance.now() - t;
    return r;
  };
}
syncBuiltinESMExports();
const { utf8Encode } = await import('@coffer/crypto');
const { createTsMlsEngine } = await import('../src/index.js');
const engine = await createTsMlsEngine({ validateCredential: async () => true });
const a = await engine.createKeyPackage({ identity: utf8Encode('a') });
const b = await engine.createKeyPackage({ identity: utf8Encode('b') });
let groupA = await engine.createGroup(utf8Encode('bench'), a);
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
for (let i = 0; i < 500; i++) await one();
for (const k of Object.keys(counts)) {
  counts[k] = 0;
  time[k] = 0;
}
const N = 2000;
const t = performance.now();
for (let i = 0; i < N; i++) await one();
const total = ((performance.now() - t) * 1000) / N;
console.log('per message µs', total.toFixed(0));
for (const k of Object.keys(counts))
  console.log(
    k.padEnd(18),
    (counts[k]! / N).toFixed(2),
    'calls',
    ((time[k]! * 1000) / N).toFixed(1),
    'µs',
  );
