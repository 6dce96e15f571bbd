// Case 5: single-shot HPKE (base mode, default suite) against @hpke/core used directly.

import { assertSameBytes, type CaseFactory, filler, KiB } from '@coffer/bench-kit';
import { Aes128Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from '@hpke/core';
import {
  DEFAULT_HPKE_SUITE,
  generateKeyAgreementKeyPair,
  hpkeOpen,
  hpkeSeal,
} from '../src/index.js';

const MESSAGE_LENGTH = KiB;

async function setup() {
  if (DEFAULT_HPKE_SUITE !== 'X25519-HKDF-SHA256-AES-128-GCM') {
    throw new Error(
      `bench baseline expects the default suite to be AES-128-GCM, not ${DEFAULT_HPKE_SUITE}`,
    );
  }
  const recipient = await generateKeyAgreementKeyPair();
  const plaintext = filler(MESSAGE_LENGTH);
  const suite = new CipherSuite({
    kem: new DhkemX25519HkdfSha256(),
    kdf: new HkdfSha256(),
    aead: new Aes128Gcm(),
  });
  const ours = async () => {
    const { enc, ciphertext } = await hpkeSeal(recipient.publicKey, plaintext);
    return hpkeOpen(recipient.secretKey, enc, ciphertext);
  };
  return { recipient, plaintext, suite, ours };
}

export function hpkeCases(): CaseFactory[] {
  return [
    {
      name: 'hpke-seal-open/x25519-aes128gcm/1KiB',
      async build() {
        const { recipient, plaintext, suite, ours } = await setup();
        // Same job as hpkeSeal/hpkeOpen: keys arrive as bytes, so each op deserializes them.
        const baseline = async () => {
          const recipientPublicKey = await suite.kem.deserializePublicKey(recipient.publicKey);
          const { enc, ct } = await suite.seal({ recipientPublicKey }, plaintext);
          const recipientKey = await suite.kem.deserializePrivateKey(recipient.secretKey);
          return new Uint8Array(await suite.open({ recipientKey, enc }, ct));
        };
        return {
          name: 'hpke-seal-open/x25519-aes128gcm/1KiB',
          unit: 'ops/s',
          ours: { label: 'hpkeSeal+hpkeOpen (default suite)', op: ours },
          baseline: {
            label: '@hpke/core CipherSuite seal+open (keys deserialized per op)',
            op: baseline,
          },
          seconds: 0.5,
          goal: 0.9,
          async check() {
            assertSameBytes('hpke ours', await ours(), plaintext);
            assertSameBytes('hpke baseline', await baseline(), plaintext);
          },
        };
      },
    },
    {
      name: 'hpke-seal-open/x25519-aes128gcm/1KiB/cached-keys',
      async build() {
        const { recipient, plaintext, suite, ours } = await setup();
        // For information: what a caller that keeps deserialized keys saves.
        const recipientPublicKey = await suite.kem.deserializePublicKey(recipient.publicKey);
        const recipientKey = await suite.kem.deserializePrivateKey(recipient.secretKey);
        const baseline = async () => {
          const { enc, ct } = await suite.seal({ recipientPublicKey }, plaintext);
          return new Uint8Array(await suite.open({ recipientKey, enc }, ct));
        };
        return {
          name: 'hpke-seal-open/x25519-aes128gcm/1KiB/cached-keys',
          unit: 'ops/s',
          ours: { label: 'hpkeSeal+hpkeOpen (default suite)', op: ours },
          baseline: {
            label: '@hpke/core CipherSuite seal+open (keys deserialized once)',
            op: baseline,
          },
          seconds: 0.5,
          async check() {
            assertSameBytes('hpke baseline (cached keys)', await baseline(), plaintext);
          },
        };
      },
    },
  ];
}
