// Cases 3 and 4: X25519 key agreement and Ed25519 sign/verify with prepared keys, against
// node:crypto with cached KeyObjects and (for information) WebCrypto with imported CryptoKeys.
// Ed25519 in the node back end is libsodium's where sodium-native loads: the */libsodium cases
// measure what Coffer's wrapping (policy checks, key handles) costs against calling it directly.
import * as nc from 'node:crypto';
import { assertSameBytes, assertTrue, type CaseFactory, filler } from '@coffer/bench-kit';
import { sodium } from '../src/backend/_sodium.js';
import { ed25519Implementation } from '../src/backend/node.js';
import {
  generateKeyAgreementKeyPair,
  generateSigningKeyPair,
  importKeyAgreementKey,
  importSigningKey,
  importVerifyingKey,
  sign,
  verify,
  x25519,
} from '../src/index.js';

// RFC 8410 DER prefixes, as a developer copies them from the RFC to import raw keys.
const X25519_PKCS8 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const X25519_SPKI = Buffer.from('302a300506032b656e032100', 'hex');
const ED25519_PKCS8 = Buffer.from('302e020100300506032b657004220420', 'hex');
const MESSAGE_LENGTH = 64;

const subtle = globalThis.crypto.subtle;
const ab = (b: Uint8Array): Uint8Array<ArrayBuffer> => Uint8Array.from(b);

async function x25519Setup() {
  const mine = await generateKeyAgreementKeyPair();
  const peer = await generateKeyAgreementKeyPair();
  const key = await importKeyAgreementKey(mine.secretKey);
  const pkcs8 = Buffer.concat([X25519_PKCS8, mine.secretKey]);
  return { mine, peer, key, pkcs8, expected: await x25519(key, peer.publicKey) };
}

async function ed25519Setup() {
  const pair = await generateSigningKeyPair();
  const signingKey = await importSigningKey(pair.secretKey);
  const verifyingKey = await importVerifyingKey(pair.publicKey);
  const message = filler(MESSAGE_LENGTH);
  const pkcs8 = Buffer.concat([ED25519_PKCS8, pair.secretKey]);
  return {
    pair,
    signingKey,
    verifyingKey,
    message,
    pkcs8,
    signature: await sign(signingKey, message),
  };
}

function x25519NodeCase(
  name: string,
  format: 'jwk' | 'spki',
  goal: number | undefined,
): CaseFactory {
  return {
    name,
    async build() {
      const { peer, key, pkcs8, expected } = await x25519Setup();
      const privateKey = nc.createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
      const peerPublicKey =
        format === 'jwk'
          ? () =>
              nc.createPublicKey({
                key: {
                  kty: 'OKP',
                  crv: 'X25519',
                  x: Buffer.from(peer.publicKey).toString('base64url'),
                },
                format: 'jwk',
              })
          : () =>
              nc.createPublicKey({
                key: Buffer.concat([X25519_SPKI, peer.publicKey]),
                format: 'der',
                type: 'spki',
              });
      const baseline = () => nc.diffieHellman({ privateKey, publicKey: peerPublicKey() });
      return {
        name,
        unit: 'ops/s',
        ours: { label: 'x25519 (prepared key)', op: () => x25519(key, peer.publicKey) },
        baseline: {
          label: `node:crypto diffieHellman (cached private KeyObject, createPublicKey ${format} per op)`,
          op: baseline,
        },
        seconds: 0.4,
        goal,
        async check() {
          assertSameBytes(`x25519 vs node (${format})`, expected, baseline());
        },
      };
    },
  };
}

export function curveCases(): CaseFactory[] {
  return [
    // Node 20 has no raw key import: a developer wraps the peer's 32 bytes as a JWK or behind
    // an SPKI DER prefix. The JWK import is the faster of the two (the DER one goes through
    // OpenSSL 3's decoder), so it is the baseline with a goal; the DER row is for information.
    x25519NodeCase('x25519/node', 'jwk', 0.9),
    x25519NodeCase('x25519/node-spki', 'spki', undefined),
    {
      name: 'x25519/webcrypto',
      async build() {
        const { peer, key, pkcs8, expected } = await x25519Setup();
        const privateKey = await subtle.importKey('pkcs8', ab(pkcs8), 'X25519', false, [
          'deriveBits',
        ]);
        const peerRaw = ab(peer.publicKey);
        const baseline = async () => {
          const publicKey = await subtle.importKey('raw', peerRaw, 'X25519', false, []);
          return subtle.deriveBits({ name: 'X25519', public: publicKey }, privateKey, 256);
        };
        return {
          name: 'x25519/webcrypto',
          unit: 'ops/s',
          ours: { label: 'x25519 (prepared key)', op: () => x25519(key, peer.publicKey) },
          baseline: {
            label: 'webcrypto deriveBits X25519 (imported private key, peer importKey per op)',
            op: baseline,
          },
          seconds: 0.4,
          async check() {
            assertSameBytes('x25519 vs webcrypto', expected, new Uint8Array(await baseline()));
          },
        };
      },
    },
    {
      name: 'ed25519-sign/node',
      async build() {
        const { signingKey, message, pkcs8, signature } = await ed25519Setup();
        const privateKey = nc.createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
        const baseline = () => nc.sign(null, message, privateKey);
        return {
          name: 'ed25519-sign/node',
          unit: 'ops/s',
          ours: {
            label: `sign (prepared key, 64 B; ${ed25519Implementation})`,
            op: () => sign(signingKey, message),
          },
          baseline: { label: 'node:crypto sign (cached KeyObject, 64 B)', op: baseline },
          seconds: 0.4,
          goal: 0.9,
          async check() {
            assertSameBytes('ed25519 signatures are deterministic', signature, baseline());
          },
        };
      },
    },
    {
      name: 'ed25519-verify/node',
      async build() {
        const { verifyingKey, message, pkcs8, signature } = await ed25519Setup();
        const publicKey = nc.createPublicKey(
          nc.createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }),
        );
        const baseline = () => nc.verify(null, message, publicKey, signature);
        return {
          name: 'ed25519-verify/node',
          unit: 'ops/s',
          ours: {
            label: `verify (prepared key, 64 B, strict policy; ${ed25519Implementation})`,
            op: () => verify(verifyingKey, message, signature),
          },
          baseline: { label: 'node:crypto verify (cached KeyObject, 64 B)', op: baseline },
          seconds: 0.4,
          goal: 0.9,
          async check() {
            assertTrue('ours verifies', await verify(verifyingKey, message, signature));
            assertTrue('node verifies', baseline());
          },
        };
      },
    },
    ...(sodium ? libsodiumCases(sodium) : []),
    {
      name: 'ed25519-sign/webcrypto',
      async build() {
        const { signingKey, message, pkcs8, signature } = await ed25519Setup();
        const privateKey = await subtle.importKey('pkcs8', ab(pkcs8), 'Ed25519', false, ['sign']);
        const m = ab(message);
        const baseline = () => subtle.sign('Ed25519', privateKey, m);
        return {
          name: 'ed25519-sign/webcrypto',
          unit: 'ops/s',
          ours: { label: 'sign (prepared key, 64 B)', op: () => sign(signingKey, message) },
          baseline: { label: 'webcrypto sign Ed25519 (imported CryptoKey, 64 B)', op: baseline },
          seconds: 0.4,
          async check() {
            assertSameBytes('sign vs webcrypto', signature, new Uint8Array(await baseline()));
          },
        };
      },
    },
    {
      name: 'ed25519-verify/webcrypto',
      async build() {
        const { pair, verifyingKey, message, signature } = await ed25519Setup();
        const publicKey = await subtle.importKey('raw', ab(pair.publicKey), 'Ed25519', false, [
          'verify',
        ]);
        const m = ab(message);
        const s = ab(signature);
        const baseline = () => subtle.verify('Ed25519', publicKey, s, m);
        return {
          name: 'ed25519-verify/webcrypto',
          unit: 'ops/s',
          ours: {
            label: 'verify (prepared key, 64 B, strict policy)',
            op: () => verify(verifyingKey, message, signature),
          },
          baseline: { label: 'webcrypto verify Ed25519 (imported CryptoKey, 64 B)', op: baseline },
          seconds: 0.4,
          async check() {
            assertTrue('webcrypto verifies', await baseline());
          },
        };
      },
    },
  ];
}

/** Ours against sodium-native called directly, with libsodium's own 64-byte secret key. */
function libsodiumCases(lib: NonNullable<typeof sodium>): CaseFactory[] {
  const keys = async () => {
    const setup = await ed25519Setup();
    const publicKey = new Uint8Array(32);
    const secretKey = new Uint8Array(64);
    lib.crypto_sign_seed_keypair(publicKey, secretKey, setup.pair.secretKey);
    return { ...setup, secretKey };
  };
  return [
    {
      name: 'ed25519-sign/libsodium',
      async build() {
        const { signingKey, message, secretKey, signature } = await keys();
        const out = new Uint8Array(64);
        const baseline = () => {
          lib.crypto_sign_detached(out, message, secretKey);
          return out;
        };
        return {
          name: 'ed25519-sign/libsodium',
          unit: 'ops/s',
          ours: { label: 'sign (prepared key, 64 B)', op: () => sign(signingKey, message) },
          baseline: { label: 'sodium-native crypto_sign_detached (64 B)', op: baseline },
          seconds: 0.4,
          async check() {
            assertSameBytes('same signature as libsodium', signature, baseline());
          },
        };
      },
    },
    {
      name: 'ed25519-verify/libsodium',
      async build() {
        const { pair, verifyingKey, message, signature } = await keys();
        const baseline = () => lib.crypto_sign_verify_detached(signature, message, pair.publicKey);
        return {
          name: 'ed25519-verify/libsodium',
          unit: 'ops/s',
          ours: {
            label: 'verify (prepared key, 64 B, strict policy)',
            op: () => verify(verifyingKey, message, signature),
          },
          baseline: { label: 'sodium-native crypto_sign_verify_detached (64 B)', op: baseline },
          seconds: 0.4,
          async check() {
            assertTrue('libsodium verifies', baseline());
          },
        };
      },
    },
  ];
}
