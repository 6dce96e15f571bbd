// Case 1: envelope seal+open (encrypt then decrypt) against the same job written by hand.
import * as nc from 'node:crypto';
import {
  assertSameBytes,
  type CaseFactory,
  filler,
  KiB,
  MiB,
  type Side,
  sizeLabel,
} from '@coffer/bench-kit';
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { type AeadSuite, decrypt, encrypt, generateAeadKey, importAeadKey } from '../src/index.js';

const TAG = 16;

/** AES-256-GCM as a developer writes it with node:crypto: iv || ct || tag. */
function rawAesGcm(key: Buffer): { seal(p: Uint8Array): Buffer; open(b: Buffer): Buffer } {
  return {
    seal(plaintext) {
      const iv = nc.randomBytes(12);
      const c = nc.createCipheriv('aes-256-gcm', key, iv);
      return Buffer.concat([iv, c.update(plaintext), c.final(), c.getAuthTag()]);
    },
    open(sealed) {
      const d = nc.createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12));
      d.setAuthTag(sealed.subarray(sealed.length - TAG));
      const plaintext = d.update(sealed.subarray(12, sealed.length - TAG));
      d.final();
      return plaintext;
    },
  };
}

/** XChaCha20-Poly1305 as a developer writes it with @noble/ciphers: nonce || ct || tag. */
function rawXChaCha(key: Uint8Array): {
  seal(p: Uint8Array): Uint8Array;
  open(b: Uint8Array): Uint8Array;
} {
  return {
    seal(plaintext) {
      const nonce = nc.randomBytes(24);
      const ct = xchacha20poly1305(key, nonce).encrypt(plaintext);
      const out = new Uint8Array(24 + ct.length);
      out.set(nonce, 0);
      out.set(ct, 24);
      return out;
    },
    open(sealed) {
      return xchacha20poly1305(key, sealed.subarray(0, 24)).decrypt(sealed.subarray(24));
    },
  };
}

const SUITES: { suite: AeadSuite; slug: string }[] = [
  { suite: 'AES-256-GCM', slug: 'aes-256-gcm' },
  { suite: 'XChaCha20-Poly1305', slug: 'xchacha20-poly1305' },
];

export function aeadCases(): CaseFactory[] {
  const out: CaseFactory[] = [];
  for (const { suite, slug } of SUITES) {
    for (const size of [64, KiB, MiB]) {
      const name = `aead-seal-open/${slug}/${sizeLabel(size)}`;
      out.push({
        name,
        async build() {
          const raw = generateAeadKey();
          const key = await importAeadKey(raw, { suite, id: 'k1' });
          const plaintext = filler(size);
          let baseline: Side;
          let rawOpen: (b: Uint8Array) => Uint8Array | undefined;
          if (suite === 'AES-256-GCM') {
            const r = rawAesGcm(Buffer.from(raw));
            baseline = {
              label: 'node:crypto aes-256-gcm (randomBytes iv, createCipheriv/createDecipheriv)',
              op: () => r.open(r.seal(plaintext)),
            };
            // The same hand-written code opens our envelope once its header is stripped and
            // passed as AAD: evidence that both sides do the same AEAD job.
            rawOpen = (env) => {
              const h = 3 + env[2]!;
              const d = nc.createDecipheriv(
                'aes-256-gcm',
                Buffer.from(raw),
                env.subarray(h, h + 12),
              );
              d.setAAD(env.subarray(0, h));
              d.setAuthTag(env.subarray(env.length - TAG));
              const p = d.update(env.subarray(h + 12, env.length - TAG));
              d.final();
              return p;
            };
          } else {
            const r = rawXChaCha(Uint8Array.from(raw));
            baseline = {
              label: '@noble/ciphers xchacha20poly1305 (random 24-byte nonce)',
              op: () => r.open(r.seal(plaintext)),
            };
            rawOpen = (env) => {
              const h = 3 + env[2]!;
              return xchacha20poly1305(raw, env.subarray(h, h + 24), env.subarray(0, h)).decrypt(
                env.subarray(h + 24),
              );
            };
          }
          const ours: Side = {
            label: `encrypt+decrypt (${suite})`,
            op: async () => decrypt(key, await encrypt(key, plaintext)),
          };
          return {
            name,
            unit: size >= MiB ? 'MiB/s' : 'ops/s',
            bytesPerOp: size,
            ours,
            baseline,
            seconds: size >= MiB ? 0.6 : 0.4,
            goal: size >= KiB ? 0.9 : undefined,
            async check() {
              const env = await encrypt(key, plaintext);
              assertSameBytes(`${name}: ours round trip`, await decrypt(key, env), plaintext);
              assertSameBytes(
                `${name}: raw opens ours`,
                rawOpen(env) ?? new Uint8Array(0),
                plaintext,
              );
              assertSameBytes(
                `${name}: baseline round trip`,
                baseline.op() as Uint8Array,
                plaintext,
              );
            },
          };
        },
      });
    }
  }
  return out;
}
