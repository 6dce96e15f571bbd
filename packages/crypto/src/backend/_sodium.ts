// libsodium's Ed25519, through sodium-native's prebuilt binaries (no install script, no
// compiler: the package ships one binary per platform and picks it when it is required). On this
// project's machines it signs 1.6x and verifies 2x faster than OpenSSL 3.0 (which node:crypto
// uses), and MLS signs and verifies every application message (RFC 9420 §6.1), so this is most of
// an MLS message's cost. Where no binary loads (a platform without a prebuild), the node back end
// keeps node:crypto for Ed25519: both implement the same RFC 8032 signature and, behind
// src/signature.ts's policy checks, reach the same verdicts (libsodium's policy is Coffer's).
//
// The root vitest.config.ts runs the crypto suite a second time with this module replaced by
// _sodium-absent.ts, so the node:crypto path stays tested.
import { createRequire } from 'node:module';

/** The slice of sodium-native's API the node back end uses. */
export interface Sodium {
  crypto_sign_seed_keypair(publicKey: Uint8Array, secretKey: Uint8Array, seed: Uint8Array): void;
  crypto_sign_detached(signature: Uint8Array, message: Uint8Array, secretKey: Uint8Array): void;
  crypto_sign_verify_detached(
    signature: Uint8Array,
    message: Uint8Array,
    publicKey: Uint8Array,
  ): boolean;
}

function load(): Sodium | undefined {
  try {
    const sodium = createRequire(import.meta.url)('sodium-native') as Sodium;
    // A binary that loads but does not sign (a broken build) must not be used: one RFC 8032
    // test vector (§7.1, TEST 1) decides.
    const seed = Uint8Array.from(
      Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex'),
    );
    const publicKey = new Uint8Array(32);
    const secretKey = new Uint8Array(64);
    sodium.crypto_sign_seed_keypair(publicKey, secretKey, seed);
    const signature = new Uint8Array(64);
    sodium.crypto_sign_detached(signature, new Uint8Array(0), secretKey);
    const expected =
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b';
    if (Buffer.from(signature).toString('hex') !== expected) return undefined;
    if (!sodium.crypto_sign_verify_detached(signature, new Uint8Array(0), publicKey))
      return undefined;
    return sodium;
  } catch {
    return undefined;
  }
}

export const sodium: Sodium | undefined = load();
