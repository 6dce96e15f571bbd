// RFC 9420 passive-client vectors (mlswg/mls-implementations) end to end: ts-mls joins each
// suite 1 group from its Welcome and follows every epoch's proposals and commit with Coffer's
// crypto provider underneath, and each epoch authenticator must match. Other suites are skipped
// per file (SKIPPED_SUITES), and the test checks exactly those were.
import { fromHex, toBase64url, toHex } from '@coffer/crypto';
import {
  type CiphersuiteImpl,
  type ClientState,
  type Decoder,
  decode,
  joinGroup,
  type KeyPackage,
  type MlsContext,
  type MlsMessage,
  mlsMessageDecoder,
  processMessage,
  type RatchetTree,
  unsafeTestingAuthenticationService,
} from 'ts-mls';
import { beforeAll, describe, expect, test } from 'vitest';
import { createCofferCryptoProvider, MLS_DEFAULT_CIPHERSUITE } from '../src/mls/crypto-provider.js';
import { loadMlsVectors, mlsVectorsAvailable, tsMlsInternal } from './_mls-vectors.js';

/** Suites skipped per file (Coffer implements suite 1); passive-client-random.json is all suite 1. */
const SKIPPED_SUITES: Record<string, number[]> = {
  'passive-client-welcome.json': [2, 3, 4, 5, 6, 7],
  'passive-client-handling-commit.json': [2, 3, 4, 5, 6, 7],
  'passive-client-random.json': [],
};

interface Case {
  cipher_suite: number;
  external_psks: { psk_id: string; psk: string }[];
  key_package: string;
  signature_priv: string;
  encryption_priv: string;
  init_priv: string;
  welcome: string;
  ratchet_tree: string | null;
  initial_epoch_authenticator: string;
  epochs: { proposals: string[]; commit: string; epoch_authenticator: string }[];
}

let cs: CiphersuiteImpl;
let ratchetTreeDecoder: Decoder<RatchetTree>;
beforeAll(async () => {
  cs = await createCofferCryptoProvider().getCiphersuiteImpl(MLS_DEFAULT_CIPHERSUITE);
  ({ ratchetTreeDecoder } = await tsMlsInternal<{ ratchetTreeDecoder: Decoder<RatchetTree> }>(
    'ratchetTree.js',
  ));
});

function message(hex: string): MlsMessage {
  const m = decode(mlsMessageDecoder, fromHex(hex));
  if (!m) throw new Error('vector message does not decode');
  return m;
}

/** base64 (standard, padded) as ts-mls keys external PSKs. */
function base64(bytes: Uint8Array): string {
  const b = toBase64url(bytes).replace(/-/g, '+').replace(/_/g, '/');
  return b + '='.repeat((4 - (b.length % 4)) % 4);
}

async function follow(c: Case): Promise<number> {
  const kp = message(c.key_package);
  const welcome = message(c.welcome);
  if (kp.wireformat !== 5 || welcome.wireformat !== 3) throw new Error('unexpected wire formats');
  const context: MlsContext = {
    cipherSuite: cs,
    // The vectors' credentials are arbitrary test identities.
    authService: unsafeTestingAuthenticationService,
    externalPsks: Object.fromEntries(
      c.external_psks.map((p) => [base64(fromHex(p.psk_id)), fromHex(p.psk)]),
    ),
  };
  let state: ClientState = await joinGroup({
    context,
    welcome: welcome.welcome,
    keyPackage: kp.keyPackage as KeyPackage,
    privateKeys: {
      initPrivateKey: fromHex(c.init_priv),
      hpkePrivateKey: fromHex(c.encryption_priv),
      signaturePrivateKey: fromHex(c.signature_priv),
    },
    ...(c.ratchet_tree
      ? { ratchetTree: decode(ratchetTreeDecoder, fromHex(c.ratchet_tree)) as RatchetTree }
      : {}),
  });
  expect(toHex(state.keySchedule.epochAuthenticator)).toBe(c.initial_epoch_authenticator);
  let epochs = 0;
  for (const epoch of c.epochs) {
    for (const p of epoch.proposals) {
      const m = message(p);
      if (m.wireformat !== 1 && m.wireformat !== 2) throw new Error('proposal is not framed');
      state = (await processMessage({ context, state, message: m })).newState;
    }
    const commit = message(epoch.commit);
    if (commit.wireformat !== 1 && commit.wireformat !== 2) throw new Error('commit is not framed');
    state = (await processMessage({ context, state, message: commit })).newState;
    expect(toHex(state.keySchedule.epochAuthenticator)).toBe(epoch.epoch_authenticator);
    epochs++;
  }
  return epochs;
}

describe.skipIf(!mlsVectorsAvailable)('RFC 9420 passive-client vectors, suite 1', () => {
  for (const file of Object.keys(SKIPPED_SUITES)) {
    test(file, { timeout: 120_000 }, async () => {
      const cases = loadMlsVectors<Case>(file);
      const skipped = cases.filter((c) => c.cipher_suite !== MLS_DEFAULT_CIPHERSUITE);
      expect([...new Set(skipped.map((c) => c.cipher_suite))].sort()).toEqual(SKIPPED_SUITES[file]);
      const failures: string[] = [];
      let ran = 0;
      let epochs = 0;
      for (const [i, c] of cases.entries()) {
        if (c.cipher_suite !== MLS_DEFAULT_CIPHERSUITE) continue;
        ran++;
        try {
          epochs += await follow(c);
        } catch (err) {
          failures.push(`case ${i}: ${String(err).slice(0, 200)}`);
        }
      }
      expect(failures).toEqual([]);
      expect(ran).toBe(cases.length - skipped.length);
      console.info(`${file}: ${ran} suite 1 cases, ${epochs} epochs followed`);
    });
  }
});
