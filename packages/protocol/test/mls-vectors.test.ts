// RFC 9420 working-group vectors (mlswg/mls-implementations) through Coffer's crypto provider:
// every cipher suite 1 case runs; the other suites are skipped by name below, and the test
// checks that exactly those were skipped.
import { fromHex, toHex } from '@coffer/crypto';
import {
  type CiphersuiteImpl,
  decode,
  type Encoder,
  encode,
  type GroupContext,
  type Hash,
  type Hpke,
  type Kdf,
  type MlsMessage,
  mlsMessageDecoder,
  nodeTypes,
  type PrivateKey,
  type PublicKey,
  type Signature,
} from 'ts-mls';
import { beforeAll, describe, expect, test } from 'vitest';
import { createCofferCryptoProvider, MLS_DEFAULT_CIPHERSUITE } from '../src/mls/crypto-provider.js';
import { loadMlsVectors, mlsVectorsAvailable, tsMlsInternal } from './_mls-vectors.js';

/** Suites whose cases are skipped, in every file: Coffer implements suite 1 only. */
const SKIPPED_SUITES = [2, 3, 4, 5, 6, 7];

interface Labeled {
  refhash(label: string, value: Uint8Array, h: Hash): Promise<Uint8Array>;
  expandWithLabel(s: Uint8Array, l: string, c: Uint8Array, n: number, k: Kdf): Promise<Uint8Array>;
  deriveSecret(s: Uint8Array, l: string, k: Kdf): Promise<Uint8Array>;
  deriveTreeSecret(s: Uint8Array, l: string, g: number, n: number, k: Kdf): Promise<Uint8Array>;
  signWithLabel(key: Uint8Array, l: string, c: Uint8Array, s: Signature): Promise<Uint8Array>;
  verifyWithLabel(
    pub: Uint8Array,
    l: string,
    c: Uint8Array,
    sig: Uint8Array,
    s: Signature,
  ): Promise<boolean>;
  encryptWithLabel(
    pub: PublicKey,
    l: string,
    c: Uint8Array,
    pt: Uint8Array,
    h: Hpke,
  ): Promise<{ ct: Uint8Array; enc: Uint8Array }>;
  decryptWithLabel(
    priv: PrivateKey,
    l: string,
    c: Uint8Array,
    enc: Uint8Array,
    ct: Uint8Array,
    h: Hpke,
  ): Promise<Uint8Array>;
}

let cs: CiphersuiteImpl;
let L: Labeled;
beforeAll(async () => {
  cs = await createCofferCryptoProvider().getCiphersuiteImpl(MLS_DEFAULT_CIPHERSUITE);
  L = {
    ...(await tsMlsInternal<Partial<Labeled>>('crypto/hash.js')),
    ...(await tsMlsInternal<Partial<Labeled>>('crypto/kdf.js')),
    ...(await tsMlsInternal<Partial<Labeled>>('crypto/signature.js')),
    ...(await tsMlsInternal<Partial<Labeled>>('crypto/hpke.js')),
  } as Labeled;
});

const h = fromHex;
const enc = new TextEncoder();

/** Runs `run` on each suite 1 case; checks the rest are exactly the skipped suites. */
async function eachSuite1Case<T extends { cipher_suite: number }>(
  file: string,
  run: (c: T, index: number) => Promise<void>,
): Promise<number> {
  const cases = loadMlsVectors<T>(file);
  const skipped = cases.filter((c) => c.cipher_suite !== MLS_DEFAULT_CIPHERSUITE);
  expect([...new Set(skipped.map((c) => c.cipher_suite))].sort()).toEqual(SKIPPED_SUITES);
  let ran = 0;
  for (const [i, c] of cases.entries()) {
    if (c.cipher_suite !== MLS_DEFAULT_CIPHERSUITE) continue;
    await run(c, i);
    ran++;
  }
  expect(ran).toBe(cases.length - skipped.length);
  expect(ran).toBeGreaterThan(0);
  return ran;
}

describe.skipIf(!mlsVectorsAvailable)('RFC 9420 vectors, suite 1, through our provider', () => {
  test('crypto-basics.json: RefHash, ExpandWithLabel, DeriveSecret, DeriveTreeSecret, SignWithLabel, EncryptWithLabel', async () => {
    interface Case {
      cipher_suite: number;
      ref_hash: { label: string; value: string; out: string };
      expand_with_label: {
        secret: string;
        label: string;
        context: string;
        length: number;
        out: string;
      };
      derive_secret: { secret: string; label: string; out: string };
      derive_tree_secret: {
        secret: string;
        label: string;
        generation: number;
        length: number;
        out: string;
      };
      sign_with_label: {
        priv: string;
        pub: string;
        content: string;
        label: string;
        signature: string;
      };
      encrypt_with_label: {
        priv: string;
        pub: string;
        label: string;
        context: string;
        plaintext: string;
        kem_output: string;
        ciphertext: string;
      };
    }
    await eachSuite1Case<Case>('crypto-basics.json', async (c) => {
      expect(toHex(await L.refhash(c.ref_hash.label, h(c.ref_hash.value), cs.hash))).toBe(
        c.ref_hash.out,
      );
      const e = c.expand_with_label;
      expect(
        toHex(await L.expandWithLabel(h(e.secret), e.label, h(e.context), e.length, cs.kdf)),
      ).toBe(e.out);
      const d = c.derive_secret;
      expect(toHex(await L.deriveSecret(h(d.secret), d.label, cs.kdf))).toBe(d.out);
      const t = c.derive_tree_secret;
      expect(
        toHex(await L.deriveTreeSecret(h(t.secret), t.label, t.generation, t.length, cs.kdf)),
      ).toBe(t.out);

      // Ed25519 is deterministic: our signature must equal the vector's, and both verify.
      const s = c.sign_with_label;
      const sig = await L.signWithLabel(h(s.priv), s.label, h(s.content), cs.signature);
      expect(toHex(sig)).toBe(s.signature);
      expect(
        await L.verifyWithLabel(h(s.pub), s.label, h(s.content), h(s.signature), cs.signature),
      ).toBe(true);
      expect(
        await L.verifyWithLabel(h(s.pub), `${s.label}!`, h(s.content), sig, cs.signature),
      ).toBe(false);

      // HPKE is randomized: open the vector's ciphertext, and round-trip our own.
      const x = c.encrypt_with_label;
      const priv = await cs.hpke.importPrivateKey(h(x.priv));
      const pub = await cs.hpke.importPublicKey(h(x.pub));
      const opened = await L.decryptWithLabel(
        priv,
        x.label,
        h(x.context),
        h(x.kem_output),
        h(x.ciphertext),
        cs.hpke,
      );
      expect(toHex(opened)).toBe(x.plaintext);
      const mine = await L.encryptWithLabel(pub, x.label, h(x.context), h(x.plaintext), cs.hpke);
      const back = await L.decryptWithLabel(
        priv,
        x.label,
        h(x.context),
        mine.enc,
        mine.ct,
        cs.hpke,
      );
      expect(toHex(back)).toBe(x.plaintext);
      // The private key's public half is the vector's (X25519 through @coffer/crypto).
      const derived = await cs.hpke.exportPublicKey(pub);
      expect(toHex(derived)).toBe(x.pub);
    });
  });

  test('key-schedule.json: every epoch secret, external_pub (DeriveKeyPair) and the exporter', async () => {
    interface Epoch {
      group_context: string;
      commit_secret: string;
      psk_secret: string;
      joiner_secret: string;
      welcome_secret: string;
      init_secret: string;
      sender_data_secret: string;
      encryption_secret: string;
      exporter_secret: string;
      epoch_authenticator: string;
      external_secret: string;
      confirmation_key: string;
      membership_key: string;
      resumption_psk: string;
      external_pub: string;
      exporter: { label: string; context: string; length: number; secret: string };
    }
    interface Case {
      cipher_suite: number;
      initial_init_secret: string;
      epochs: Epoch[];
    }
    let epochs = 0;
    await eachSuite1Case<Case>('key-schedule.json', async (c) => {
      let initSecret = h(c.initial_init_secret);
      for (const e of c.epochs) {
        // RFC 9420 §8: the key schedule, as formulas over the provider's KDF.
        const ctx = h(e.group_context);
        const joiner = await L.expandWithLabel(
          await cs.kdf.extract(initSecret, h(e.commit_secret)),
          'joiner',
          ctx,
          cs.kdf.size,
          cs.kdf,
        );
        expect(toHex(joiner)).toBe(e.joiner_secret);
        const member = await cs.kdf.extract(joiner, h(e.psk_secret));
        expect(toHex(await L.deriveSecret(member, 'welcome', cs.kdf))).toBe(e.welcome_secret);
        const epoch = await L.expandWithLabel(member, 'epoch', ctx, cs.kdf.size, cs.kdf);
        const derived: [keyof Epoch, string][] = [
          ['sender_data_secret', 'sender data'],
          ['encryption_secret', 'encryption'],
          ['exporter_secret', 'exporter'],
          ['epoch_authenticator', 'authentication'],
          ['external_secret', 'external'],
          ['confirmation_key', 'confirm'],
          ['membership_key', 'membership'],
          ['resumption_psk', 'resumption'],
          ['init_secret', 'init'],
        ];
        for (const [field, label] of derived) {
          expect(toHex(await L.deriveSecret(epoch, label, cs.kdf)), field).toBe(e[field]);
        }
        const external = await cs.hpke.deriveKeyPair(h(e.external_secret));
        expect(toHex(await cs.hpke.exportPublicKey(external.publicKey))).toBe(e.external_pub);
        // MLS-Exporter(Label, Context, Length) (§8.5).
        const x = e.exporter;
        const exported = await L.expandWithLabel(
          await L.deriveSecret(h(e.exporter_secret), x.label as string, cs.kdf),
          'exported',
          await cs.hash.digest(h(x.context)),
          x.length,
          cs.kdf,
        );
        expect(toHex(exported)).toBe(x.secret);
        initSecret = h(e.init_secret);
        epochs++;
      }
    });
    expect(epochs).toBeGreaterThan(0);
  });

  test('secret-tree.json: sender data keys and every leaf ratchet generation', async () => {
    interface Gen {
      generation: number;
      application_key: string;
      application_nonce: string;
      handshake_key: string;
      handshake_nonce: string;
    }
    interface Case {
      cipher_suite: number;
      encryption_secret: string;
      sender_data: { sender_data_secret: string; ciphertext: string; key: string; nonce: string };
      leaves: Gen[][];
    }
    const sender = await tsMlsInternal<{
      expandSenderDataKey(cs: CiphersuiteImpl, s: Uint8Array, ct: Uint8Array): Promise<Uint8Array>;
      expandSenderDataNonce(
        cs: CiphersuiteImpl,
        s: Uint8Array,
        ct: Uint8Array,
      ): Promise<Uint8Array>;
    }>('sender.js');
    let generations = 0;
    await eachSuite1Case<Case>('secret-tree.json', async (c) => {
      const sd = c.sender_data;
      expect(
        toHex(await sender.expandSenderDataKey(cs, h(sd.sender_data_secret), h(sd.ciphertext))),
      ).toBe(sd.key);
      expect(
        toHex(await sender.expandSenderDataNonce(cs, h(sd.sender_data_secret), h(sd.ciphertext))),
      ).toBe(sd.nonce);
      const n = c.leaves.length;
      for (const [leaf, gens] of c.leaves.entries()) {
        const leafSecret = await treeSecret(h(c.encryption_secret), n, leaf);
        for (const [kind, keyField, nonceField] of [
          ['application', 'application_key', 'application_nonce'],
          ['handshake', 'handshake_key', 'handshake_nonce'],
        ] as const) {
          let secret = await L.expandWithLabel(leafSecret, kind, new Uint8Array(), 32, cs.kdf);
          let at = 0;
          for (const g of gens) {
            for (; at < g.generation; at++) {
              secret = await L.deriveTreeSecret(secret, 'secret', at, 32, cs.kdf);
            }
            const key = await L.deriveTreeSecret(secret, 'key', at, cs.hpke.keyLength, cs.kdf);
            const nonce = await L.deriveTreeSecret(
              secret,
              'nonce',
              at,
              cs.hpke.nonceLength,
              cs.kdf,
            );
            expect(toHex(key), `leaf ${leaf} gen ${at} ${kind}`).toBe(g[keyField]);
            expect(toHex(nonce), `leaf ${leaf} gen ${at} ${kind}`).toBe(g[nonceField]);
            generations++;
          }
        }
      }
    });
    expect(generations).toBeGreaterThan(0);
  });

  test('welcome.json: group secrets (HPKE), group info (AEAD), its signature and confirmation tag', async () => {
    interface Case {
      cipher_suite: number;
      init_priv: string;
      key_package: string;
      signer_pub: string;
      welcome: string;
    }
    const w = await tsMlsInternal<{
      decryptGroupSecrets(
        initPrivateKey: PrivateKey,
        keyPackageRef: Uint8Array,
        welcome: unknown,
        hpke: Hpke,
      ): Promise<{ joinerSecret: Uint8Array; psks: unknown[] } | undefined>;
      decryptGroupInfo(
        welcome: unknown,
        joinerSecret: Uint8Array,
        pskSecret: Uint8Array,
        cs: CiphersuiteImpl,
      ): Promise<unknown>;
    }>('welcome.js');
    const gi = await tsMlsInternal<{
      verifyGroupInfoSignature(gi: unknown, pub: Uint8Array, s: Signature): Promise<boolean>;
      verifyGroupInfoConfirmationTag(
        gi: unknown,
        joinerSecret: Uint8Array,
        pskSecret: Uint8Array,
        cs: CiphersuiteImpl,
      ): Promise<boolean>;
    }>('groupInfo.js');
    const { makeKeyPackageRef } = await import('ts-mls');
    await eachSuite1Case<Case>('welcome.json', async (c) => {
      const kp = decode(mlsMessageDecoder, h(c.key_package)) as MlsMessage;
      const welcome = decode(mlsMessageDecoder, h(c.welcome)) as MlsMessage;
      if (kp.wireformat !== 5 || welcome.wireformat !== 3) throw new Error('wire formats');
      const ref = await makeKeyPackageRef(kp.keyPackage, cs.hash);
      const secrets = await w.decryptGroupSecrets(
        await cs.hpke.importPrivateKey(h(c.init_priv)),
        ref,
        welcome.welcome,
        cs.hpke,
      );
      if (!secrets) throw new Error('group secrets did not open');
      expect(secrets.psks).toEqual([]);
      const psk = new Uint8Array(cs.kdf.size); // no PSKs: psk_secret is all zero (§8.4)
      const info = await w.decryptGroupInfo(welcome.welcome, secrets.joinerSecret, psk, cs);
      expect(info).toBeDefined();
      expect(await gi.verifyGroupInfoSignature(info, h(c.signer_pub), cs.signature)).toBe(true);
      expect(await gi.verifyGroupInfoConfirmationTag(info, secrets.joinerSecret, psk, cs)).toBe(
        true,
      );
      // Another init key cannot open the group secrets.
      const other = await cs.hpke.generateKeyPair();
      await expect(
        w.decryptGroupSecrets(other.privateKey, ref, welcome.welcome, cs.hpke),
      ).rejects.toThrow();
    });
  });

  test('message-protection.json: private application, proposal and commit messages open', async () => {
    interface Case {
      cipher_suite: number;
      group_id: string;
      epoch: number;
      tree_hash: string;
      confirmed_transcript_hash: string;
      signature_pub: string;
      encryption_secret: string;
      sender_data_secret: string;
      proposal: string;
      proposal_priv: string;
      commit: string;
      commit_priv: string;
      application: string;
      application_priv: string;
    }
    const mp = await tsMlsInternal<{
      unprotectPrivateMessage(
        senderDataSecret: Uint8Array,
        msg: unknown,
        secretTree: unknown,
        ratchetTree: unknown[],
        groupContext: GroupContext,
        config: unknown,
        cs: CiphersuiteImpl,
        overrideSignatureKey?: Uint8Array,
      ): Promise<{ content: { content: Record<string, unknown> } }>;
    }>('messageProtection.js');
    const { createSecretTree } = await tsMlsInternal<{
      createSecretTree(leafWidth: number, secret: Uint8Array): unknown;
    }>('secretTree.js');
    const { proposalEncoder } = await tsMlsInternal<{ proposalEncoder: Encoder<unknown> }>(
      'proposal.js',
    );
    const { commitEncoder } = await tsMlsInternal<{ commitEncoder: Encoder<unknown> }>('commit.js');
    const { defaultKeyRetentionConfig } = await import('ts-mls');
    await eachSuite1Case<Case>('message-protection.json', async (c) => {
      const groupContext: GroupContext = {
        version: 1,
        cipherSuite: c.cipher_suite,
        groupId: h(c.group_id),
        epoch: BigInt(c.epoch),
        treeHash: h(c.tree_hash),
        confirmedTranscriptHash: h(c.confirmed_transcript_hash),
        extensions: [],
      };
      const open = async (wire: string) => {
        const msg = decode(mlsMessageDecoder, h(wire)) as MlsMessage;
        if (msg.wireformat !== 2) throw new Error('expected a private message');
        // Test-vectors spec: a secret tree for 2 members; the sender is leaf 1, which must be a
        // member's (non-blank) leaf of the ratchet tree (its key is given: signature_pub).
        const result = await mp.unprotectPrivateMessage(
          h(c.sender_data_secret),
          msg.privateMessage,
          createSecretTree(2, h(c.encryption_secret)),
          [undefined, undefined, { nodeType: nodeTypes.leaf, leaf: {} }],
          groupContext,
          defaultKeyRetentionConfig,
          cs,
          h(c.signature_pub),
        );
        return result.content.content;
      };
      expect(toHex((await open(c.application_priv)).applicationData as Uint8Array)).toBe(
        c.application,
      );
      expect(toHex(encode(proposalEncoder, (await open(c.proposal_priv)).proposal))).toBe(
        c.proposal,
      );
      expect(toHex(encode(commitEncoder, (await open(c.commit_priv)).commit))).toBe(c.commit);
      // Flip one ciphertext bit: the AEAD (our raw AES-GCM) refuses it.
      const tampered = h(c.application_priv);
      tampered[tampered.length - 1]! ^= 1;
      await expect(open(toHex(tampered))).rejects.toThrow();
    });
  });
});

// RFC 9420 §9: the secret tree over the array-based tree of §4.1 (n leaves, a power of two);
// each step down is ExpandWithLabel(secret, "tree", "left" | "right", Nh).
async function treeSecret(root: Uint8Array, leaves: number, leaf: number): Promise<Uint8Array> {
  const level = (x: number): number => {
    let k = 0;
    while (((x >> k) & 1) === 1) k++;
    return k;
  };
  let node = leaves - 1; // root of a full tree of `leaves` leaves
  const target = 2 * leaf;
  let secret = root;
  while (node !== target) {
    const k = level(node);
    const left = node ^ (1 << (k - 1));
    const right = node ^ (3 << (k - 1));
    const goLeft = target < node;
    secret = await L.expandWithLabel(
      secret,
      'tree',
      enc.encode(goLeft ? 'left' : 'right'),
      32,
      cs.kdf,
    );
    node = goLeft ? left : right;
  }
  return secret;
}
