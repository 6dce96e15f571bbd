// One established 1:1 conversation, message by message: A encrypts a 1 KiB message and B
// decrypts it, state carried forward on both sides, exactly as a chat client does. Ours is the
// GroupEngine (ts-mls with Coffer's crypto provider) in a two-member group; the baselines are
// Signal's Double Ratchet (@signalapp/libsignal-client, native Rust) and the same ts-mls engine on
// ts-mls's own default crypto provider (WebCrypto).

import nodeCrypto from 'node:crypto';
import { createRequire } from 'node:module';
import {
  assertEqual,
  assertSameBytes,
  assertTrue,
  type Case,
  type CaseFactory,
  filler,
  KiB,
  loadPeer,
  type Side,
} from '@coffer/bench-kit';
import { utf8Encode } from '@coffer/crypto';
import { defaultCryptoProvider } from 'ts-mls';
import { createTsMlsEngine, type GroupEngine, type MlsGroup } from '../src/index.js';

const MESSAGE = 1 * KiB;
const SECONDS = 0.5;
const PREFIX = 'conversation-1to1/1KiB';

export interface Pair {
  /** A sends to B (or, `back`, B sends to A); returns what the receiver read. */
  send(plaintext: Uint8Array, back?: boolean): Promise<Uint8Array>;
}

/** A two-member MLS group on `engine`; send() = A encrypts, B processes. */
export async function mlsPair(engine: GroupEngine): Promise<Pair> {
  const a = await engine.createKeyPackage({ identity: utf8Encode('a') });
  const b = await engine.createKeyPackage({ identity: utf8Encode('b') });
  let groupA: MlsGroup = await engine.createGroup(utf8Encode('bench'), a);
  const added = await engine.addMembers(groupA, [b.publicKeyPackage]);
  groupA = added.group;
  let groupB = await engine.joinFromWelcome(added.welcome, b);
  return {
    async send(plaintext, back = false) {
      const out = await engine.encrypt(back ? groupB : groupA, plaintext);
      if (back) groupB = out.group;
      else groupA = out.group;
      const r = await engine.process(back ? groupA : groupB, out.message);
      if (back) groupA = r.group;
      else groupB = r.group;
      if (r.result.kind !== 'application') throw new Error('expected an application message');
      return r.result.plaintext;
    },
  };
}

const accept = { validateCredential: async () => true };

/**
 * The primitives one MLS application message needs and nothing else (RFC 9420 §6.3, §9): per
 * side, three HMAC-SHA256 expansions of the sender's ratchet secret (key, nonce, next secret) and
 * two of the sender-data secret over the ciphertext sample; the reuse guard from a pool of
 * randomness; an Ed25519 signature over header, GroupContext and content, verified on receipt;
 * AES-128-GCM of content and signature, and of the sender data. On node:crypto, but Ed25519 on
 * libsodium as @coffer/crypto's node back end does where sodium-native loads (bench/package.json).
 * No framing, no state objects, no key retention: the floor any MLS implementation here pays.
 */
function primitivesPair(): Pair & { ed25519: string } {
  const sodium = libsodiumEd25519();
  const ed25519 = sodium ?? opensslEd25519();
  const groupContext = nodeCrypto.randomBytes(120);
  const header = nodeCrypto.randomBytes(40);
  const senderData = nodeCrypto.randomBytes(32);
  const pool = nodeCrypto.randomBytes(4096);
  let poolAt = 0;
  const first = nodeCrypto.randomBytes(32);
  const secrets = [first, first];
  const expand = (secret: Uint8Array, label: string, context: Uint8Array, length: number) =>
    nodeCrypto
      .createHmac('sha256', secret)
      .update(`MLS 1.0 ${label}`)
      .update(context)
      .update(Uint8Array.of(length, 1))
      .digest()
      .subarray(0, length);
  const ratchet = (side: number, generation: Uint8Array) => {
    const secret = secrets[side]!;
    const key = expand(secret, 'key', generation, 16);
    const nonce = expand(secret, 'nonce', generation, 12);
    secrets[side] = expand(secret, 'secret', generation, 32);
    return { key, nonce };
  };
  const gcm = (seal: boolean, key: Uint8Array, nonce: Uint8Array, data: Uint8Array) => {
    if (seal) {
      const c = nodeCrypto.createCipheriv('aes-128-gcm', key, nonce).setAAD(header);
      return Buffer.concat([c.update(data), c.final(), c.getAuthTag()]);
    }
    const d = nodeCrypto.createDecipheriv('aes-128-gcm', key, nonce).setAAD(header);
    d.setAuthTag(data.subarray(data.length - 16));
    return Buffer.concat([d.update(data.subarray(0, data.length - 16)), d.final()]);
  };
  let generation = 0;
  return {
    ed25519: sodium ? 'libsodium' : 'node:crypto',
    async send(plaintext) {
      const g = Buffer.alloc(4);
      g.writeUInt32BE(generation++);
      // Sender (both sides' ratchets start from one secret, as a group's do).
      const out = ratchet(0, g);
      if (poolAt === pool.length) poolAt = 0;
      const guard = pool.subarray(poolAt, poolAt + 4);
      poolAt += 4;
      for (let i = 0; i < 4; i++) out.nonce[i]! ^= guard[i]!;
      const signature = ed25519.sign(Buffer.concat([header, groupContext, plaintext]));
      const ciphertext = gcm(true, out.key, out.nonce, Buffer.concat([plaintext, signature]));
      const sample = ciphertext.subarray(0, 16);
      const sealedSender = gcm(
        true,
        expand(senderData, 'key', sample, 16),
        expand(senderData, 'nonce', sample, 12),
        Buffer.concat([g, guard, Buffer.alloc(4)]),
      );
      // Receiver.
      const opened = gcm(
        false,
        expand(senderData, 'key', sample, 16),
        expand(senderData, 'nonce', sample, 12),
        sealedSender,
      );
      const into = ratchet(1, opened.subarray(0, 4));
      for (let i = 0; i < 4; i++) into.nonce[i]! ^= opened[4 + i]!;
      const content = gcm(false, into.key, into.nonce, ciphertext);
      const received = content.subarray(0, content.length - 64);
      const tbs = Buffer.concat([header, groupContext, received]);
      if (!ed25519.verify(tbs, content.subarray(content.length - 64)))
        throw new Error('the signature does not verify');
      return received;
    },
  };
}

interface Signer {
  sign(message: Uint8Array): Uint8Array;
  verify(message: Uint8Array, signature: Uint8Array): boolean;
}

function opensslEd25519(): Signer {
  const { privateKey, publicKey } = nodeCrypto.generateKeyPairSync('ed25519');
  return {
    sign: (message) => nodeCrypto.sign(null, message, privateKey),
    verify: (message, signature) => nodeCrypto.verify(null, message, publicKey, signature),
  };
}

/** libsodium's Ed25519 (the node back end's), or undefined where sodium-native does not load. */
function libsodiumEd25519(): Signer | undefined {
  interface Sodium {
    crypto_sign_keypair(publicKey: Uint8Array, secretKey: Uint8Array): void;
    crypto_sign_detached(signature: Uint8Array, message: Uint8Array, secretKey: Uint8Array): void;
    crypto_sign_verify_detached(s: Uint8Array, m: Uint8Array, publicKey: Uint8Array): boolean;
  }
  let sodium: Sodium;
  try {
    sodium = createRequire(import.meta.url)('sodium-native') as Sodium;
  } catch {
    return undefined;
  }
  const publicKey = new Uint8Array(32);
  const secretKey = new Uint8Array(64);
  sodium.crypto_sign_keypair(publicKey, secretKey);
  return {
    sign(message) {
      const signature = new Uint8Array(64);
      sodium.crypto_sign_detached(signature, message, secretKey);
      return signature;
    },
    verify: (message, signature) =>
      sodium.crypto_sign_verify_detached(signature, message, publicKey),
  };
}

async function checkPair(what: string, pair: Pair): Promise<void> {
  for (let i = 0; i < 50; i++) {
    const m = filler(MESSAGE, i);
    assertSameBytes(`${what}: message ${i} arrives intact`, await pair.send(m, i % 3 === 2), m);
  }
}

/** One op = one message; `alternating`: the direction flips every message (a chat's turns). */
function side(label: string, pair: Pair, alternating = false): Side {
  const message = filler(MESSAGE);
  let n = 0;
  return { label, op: () => pair.send(message, alternating && n++ % 2 === 1) };
}

// --- libsignal ---------------------------------------------------------------------------------
// The slice of @signalapp/libsignal-client 0.103 the baseline uses (loaded from bench/node_modules).

type Bytes = Uint8Array<ArrayBuffer>;
interface Key {
  serialize(): Bytes;
}
interface PrivKey extends Key {
  getPublicKey(): Key;
  sign(msg: Bytes): Bytes;
}
interface Signal {
  PrivateKey: { generate(): PrivKey };
  IdentityKeyPair: { generate(): { publicKey: Key; privateKey: PrivKey } };
  KEMKeyPair: { generate(): { getPublicKey(): Key } };
  ProtocolAddress: { new: (name: string, device: number) => unknown };
  PreKeyRecord: { new: (id: number, pub: Key, priv: PrivKey) => unknown };
  SignedPreKeyRecord: {
    new: (id: number, ts: number, pub: Key, priv: PrivKey, sig: Bytes) => unknown;
  };
  KyberPreKeyRecord: { new: (id: number, ts: number, pair: unknown, sig: Bytes) => unknown };
  PreKeyBundle: { new: (...args: unknown[]) => unknown };
  SignalMessage: { deserialize(b: Bytes): unknown };
  PreKeySignalMessage: { deserialize(b: Bytes): unknown };
  SessionStore: abstract new () => object;
  IdentityKeyStore: abstract new () => object;
  PreKeyStore: abstract new () => object;
  SignedPreKeyStore: abstract new () => object;
  KyberPreKeyStore: abstract new () => object;
  processPreKeyBundle(...args: unknown[]): Promise<void>;
  signalEncrypt(...args: unknown[]): Promise<{ serialize(): Bytes; type(): number }>;
  signalDecrypt(...args: unknown[]): Promise<Bytes>;
  signalDecryptPreKey(...args: unknown[]): Promise<Bytes>;
}

/** One party's in-memory stores, keyed by address text. */
function stores(signal: Signal, identity: { publicKey: Key; privateKey: PrivKey }, regId: number) {
  const sessions = new Map<string, unknown>();
  const identities = new Map<string, Key>();
  const prekeys = new Map<number, unknown>();
  const signed = new Map<number, unknown>();
  const kyber = new Map<number, unknown>();
  const name = (a: unknown) => String((a as { toString(): string }).toString());
  const Session = class extends signal.SessionStore {
    async saveSession(a: unknown, r: unknown) {
      sessions.set(name(a), r);
    }
    async getSession(a: unknown) {
      return sessions.get(name(a)) ?? null;
    }
    async getExistingSessions(as: unknown[]) {
      return as.map((a) => sessions.get(name(a)));
    }
  };
  const Identity = class extends signal.IdentityKeyStore {
    async getIdentityKey() {
      return identity.privateKey;
    }
    async getLocalRegistrationId() {
      return regId;
    }
    async saveIdentity(a: unknown, k: Key) {
      identities.set(name(a), k);
      return 0;
    }
    async isTrustedIdentity() {
      return true;
    }
    async getIdentity(a: unknown) {
      return identities.get(name(a)) ?? null;
    }
  };
  const PreKeys = class extends signal.PreKeyStore {
    async savePreKey(id: number, r: unknown) {
      prekeys.set(id, r);
    }
    async getPreKey(id: number) {
      return prekeys.get(id);
    }
    async removePreKey(id: number) {
      prekeys.delete(id);
    }
  };
  const Signed = class extends signal.SignedPreKeyStore {
    async saveSignedPreKey(id: number, r: unknown) {
      signed.set(id, r);
    }
    async getSignedPreKey(id: number) {
      return signed.get(id);
    }
  };
  const Kyber = class extends signal.KyberPreKeyStore {
    async saveKyberPreKey(id: number, r: unknown) {
      kyber.set(id, r);
    }
    async getKyberPreKey(id: number) {
      return kyber.get(id);
    }
    async markKyberPreKeyUsed() {}
  };
  return {
    session: new Session(),
    identity: new Identity(),
    prekeys: new PreKeys(),
    signed: new Signed(),
    kyber: new Kyber(),
    maps: { prekeys, signed, kyber },
  };
}

async function signalPair(signal: Signal): Promise<Pair> {
  const aliceId = signal.IdentityKeyPair.generate();
  const bobId = signal.IdentityKeyPair.generate();
  const alice = stores(signal, aliceId, 1);
  const bob = stores(signal, bobId, 2);
  const aliceAddr = signal.ProtocolAddress.new('alice', 1);
  const bobAddr = signal.ProtocolAddress.new('bob', 1);

  const pre = signal.PrivateKey.generate();
  const spk = signal.PrivateKey.generate();
  const spkSig = bobId.privateKey.sign(spk.getPublicKey().serialize());
  const kem = signal.KEMKeyPair.generate();
  const kemSig = bobId.privateKey.sign(kem.getPublicKey().serialize());
  bob.maps.prekeys.set(1, signal.PreKeyRecord.new(1, pre.getPublicKey(), pre));
  bob.maps.signed.set(2, signal.SignedPreKeyRecord.new(2, 0, spk.getPublicKey(), spk, spkSig));
  bob.maps.kyber.set(3, signal.KyberPreKeyRecord.new(3, 0, kem, kemSig));
  const bundle = signal.PreKeyBundle.new(
    2,
    1,
    1,
    pre.getPublicKey(),
    2,
    spk.getPublicKey(),
    spkSig,
    bobId.publicKey,
    3,
    kem.getPublicKey(),
    kemSig,
  );
  await signal.processPreKeyBundle(bundle, bobAddr, aliceAddr, alice.session, alice.identity);

  // First message (PreKey), then a reply, so both sides hold an established session.
  const first = await signal.signalEncrypt(
    utf8Encode('hi') as Bytes,
    bobAddr,
    aliceAddr,
    alice.session,
    alice.identity,
  );
  assertEqual('first message is a PreKey message', first.type(), 3);
  await signal.signalDecryptPreKey(
    signal.PreKeySignalMessage.deserialize(first.serialize()),
    aliceAddr,
    bobAddr,
    bob.session,
    bob.identity,
    bob.prekeys,
    bob.signed,
    bob.kyber,
  );
  const reply = await signal.signalEncrypt(
    utf8Encode('hello') as Bytes,
    aliceAddr,
    bobAddr,
    bob.session,
    bob.identity,
  );
  await signal.signalDecrypt(
    signal.SignalMessage.deserialize(reply.serialize()),
    bobAddr,
    aliceAddr,
    alice.session,
    alice.identity,
  );
  return {
    async send(plaintext, back = false) {
      const [from, to] = back ? [bob, alice] : [alice, bob];
      const [fromAddr, toAddr] = back ? [bobAddr, aliceAddr] : [aliceAddr, bobAddr];
      const ct = await signal.signalEncrypt(
        plaintext as Bytes,
        toAddr,
        fromAddr,
        from.session,
        from.identity,
      );
      // Sent and received as bytes, as over a network.
      const wire = ct.serialize();
      return signal.signalDecrypt(
        signal.SignalMessage.deserialize(wire),
        fromAddr,
        toAddr,
        to.session,
        to.identity,
      );
    },
  };
}

/** Ours against libsignal's Double Ratchet, one way or with the direction flipping each message. */
function libsignalCase(oursLabel: string, alternating: boolean): CaseFactory {
  const name = `${PREFIX}${alternating ? '-alternating' : ''}/libsignal-double-ratchet`;
  const how = alternating ? ', direction flips every message' : '';
  return {
    name,
    isolate: true,
    async build(): Promise<Case | undefined> {
      const signal = await loadPeer<Signal>('@signalapp/libsignal-client', name, import.meta.url);
      if (!signal) return undefined;
      const ours = await mlsPair(await createTsMlsEngine(accept));
      const theirs = await signalPair(signal);
      return {
        name,
        unit: 'messages/s',
        ours: side(`${oursLabel}${how}`, ours, alternating),
        baseline: side(
          `libsignal-client signalEncrypt+signalDecrypt (Double Ratchet)${how}`,
          theirs,
          alternating,
        ),
        seconds: SECONDS,
        async check() {
          await checkPair('ours', ours);
          await checkPair('libsignal', theirs);
        },
      };
    },
  };
}

export function conversationCases(): CaseFactory[] {
  const oursLabel = 'GroupEngine encrypt+process (ts-mls, Coffer provider), 2-member group';
  return [
    libsignalCase(oursLabel, false),
    libsignalCase(oursLabel, true),
    {
      name: `${PREFIX}/primitives-floor`,
      isolate: true,
      async build(): Promise<Case> {
        const ours = await mlsPair(await createTsMlsEngine(accept));
        const floor = primitivesPair();
        return {
          name: `${PREFIX}/primitives-floor`,
          unit: 'messages/s',
          ours: side(oursLabel, ours),
          baseline: side(
            `the primitives of one MLS message alone on node:crypto (5 HMACs, 2 AES-GCM, Ed25519 sign+verify on ${floor.ed25519}, per side pair)`,
            floor,
          ),
          seconds: SECONDS,
          async check() {
            await checkPair('ours', ours);
            await checkPair('primitives', floor);
          },
        };
      },
    },
    {
      name: `${PREFIX}/ts-mls-default-provider`,
      isolate: true,
      async build(): Promise<Case> {
        const ours = await mlsPair(await createTsMlsEngine(accept));
        const theirs = await mlsPair(
          await createTsMlsEngine({ ...accept, crypto: defaultCryptoProvider }),
        );
        return {
          name: `${PREFIX}/ts-mls-default-provider`,
          unit: 'messages/s',
          ours: side(oursLabel, ours),
          baseline: side('the same engine on ts-mls defaultCryptoProvider (WebCrypto)', theirs),
          seconds: SECONDS,
          goal: { ratio: 1 },
          async check() {
            await checkPair('ours', ours);
            await checkPair('ts-mls default provider', theirs);
            assertTrue('sizes', MESSAGE === 1024);
          },
        };
      },
    },
  ];
}
