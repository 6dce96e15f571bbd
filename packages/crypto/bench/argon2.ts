// Case 6: Argon2id at OWASP's minimum (m = 19456 KiB, t = 2, p = 1): hash-wasm (ours) against
// @noble/hashes' pure JavaScript and, for information, a native binding when one is installed.

import { assertSameBytes, type CaseFactory, filler, log } from '@coffer/bench-kit';
import { argon2id as nobleArgon2id } from '@noble/hashes/argon2.js';
import { argon2id } from '../src/index.js';

const PARAMS = { memoryKiB: 19456, iterations: 2, parallelism: 1, length: 32 } as const;

/** The slice of @node-rs/argon2's API used here (it is optional: bench/package.json). */
interface NodeRsArgon2 {
  hashRaw(
    password: Uint8Array,
    options: {
      memoryCost: number;
      timeCost: number;
      parallelism: number;
      outputLen: number;
      salt: Uint8Array;
      algorithm: number;
    },
  ): Promise<Uint8Array>;
}
const NODE_RS_ARGON2ID = 2; // Algorithm.Argon2id (a const enum in its typings)

async function loadNative(): Promise<NodeRsArgon2 | undefined> {
  const name = '@node-rs/argon2'; // not a literal import: the module may be absent
  try {
    return (await import(name)) as NodeRsArgon2;
  } catch (err) {
    log(
      `argon2id/m19456-t2-p1/native: skipped, ${name} is not installed here (${(err as Error).message.split('\n')[0]})`,
    );
    return undefined;
  }
}

function setup() {
  const password = filler(16, 7);
  const salt = filler(16, 9);
  const ours = () => argon2id(password, salt, PARAMS);
  return { password, salt, ours };
}

const OURS_LABEL = 'argon2id (hash-wasm)';

export function argon2Cases(): CaseFactory[] {
  return [
    {
      name: 'argon2id/m19456-t2-p1/noble',
      async build() {
        const { password, salt, ours } = setup();
        const baseline = () =>
          nobleArgon2id(password, salt, {
            t: PARAMS.iterations,
            m: PARAMS.memoryKiB,
            p: 1,
            dkLen: 32,
          });
        return {
          name: 'argon2id/m19456-t2-p1/noble',
          unit: 'ops/s',
          ours: { label: OURS_LABEL, op: ours },
          baseline: { label: '@noble/hashes argon2id (pure JS)', op: baseline },
          seconds: 0.5,
          minOps: 1,
          goal: 0.9,
          async check() {
            assertSameBytes('argon2id ours vs noble', await ours(), baseline());
          },
        };
      },
    },
    {
      name: 'argon2id/m19456-t2-p1/native',
      async build() {
        const native = await loadNative();
        if (!native) return undefined;
        const { password, salt, ours } = setup();
        const baseline = () =>
          native.hashRaw(password, {
            memoryCost: PARAMS.memoryKiB,
            timeCost: PARAMS.iterations,
            parallelism: PARAMS.parallelism,
            outputLen: PARAMS.length,
            salt,
            algorithm: NODE_RS_ARGON2ID,
          });
        return {
          name: 'argon2id/m19456-t2-p1/native',
          unit: 'ops/s',
          ours: { label: OURS_LABEL, op: ours },
          baseline: { label: '@node-rs/argon2 hashRaw (native Rust, information)', op: baseline },
          seconds: 0.5,
          minOps: 1,
          async check() {
            assertSameBytes('argon2id ours vs native', await ours(), await baseline());
          },
        };
      },
    },
  ];
}
