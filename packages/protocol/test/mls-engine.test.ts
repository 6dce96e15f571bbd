// The GroupEngine over ts-mls with Coffer's crypto provider: groups of two and three, messages
// every way, a self-update, a removal, state export/import, and what an attacker or a stale
// state gets (typed errors).
import { generateSigningKeyPair, utf8Decode, utf8Encode } from '@coffer/crypto';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  createTsMlsEngine,
  type GroupEngine,
  MLS_STATE_VERSION,
  type MlsGroup,
  type MlsKeyPackage,
} from '../src/index.js';
import { codeOf, expectCode, flipBit } from './_helpers.js';

let engine: GroupEngine;
beforeAll(async () => {
  // Tests accept every credential; Coffer checks device manifests here.
  engine = await createTsMlsEngine({ validateCredential: async () => true });
});

const text = (s: string) => utf8Encode(s);

interface Member {
  name: string;
  kp: MlsKeyPackage;
  group?: MlsGroup;
}

async function member(name: string): Promise<Member> {
  return { name, kp: await engine.createKeyPackage({ identity: text(name) }) };
}

/** `from` sends `message`; every other member in `to` processes it and must read it. */
async function send(from: Member, to: Member[], message: string): Promise<void> {
  const out = await engine.encrypt(from.group!, text(message));
  from.group = out.group;
  for (const m of to) {
    const r = await engine.process(m.group!, out.message);
    m.group = r.group;
    expect(r.result.kind).toBe('application');
    if (r.result.kind === 'application') {
      expect(utf8Decode(r.result.plaintext)).toBe(message);
      expect(utf8Decode(r.result.sender.identity)).toBe(from.name);
      expect(r.result.sender.leafIndex).toBe(from.group!.ownLeafIndex);
    }
  }
}

/** Delivers a commit to each member in `to`. */
async function deliverCommit(commit: Uint8Array, to: Member[]): Promise<void> {
  for (const m of to) {
    const r = await engine.process(m.group!, commit);
    m.group = r.group;
    expect(r.result.kind).toBe('commit');
  }
}

async function twoMembers(): Promise<[Member, Member]> {
  const alice = await member('alice');
  const bob = await member('bob');
  alice.group = await engine.createGroup(text('conversation-1'), alice.kp);
  const added = await engine.addMembers(alice.group, [bob.kp.publicKeyPackage]);
  alice.group = added.group;
  bob.group = await engine.joinFromWelcome(added.welcome, bob.kp);
  return [alice, bob];
}

describe('mls engine', () => {
  test('two members: join by welcome, messages both ways, same epoch and members', async () => {
    const [alice, bob] = await twoMembers();
    expect(alice.group!.epoch).toBe(1n);
    expect(bob.group!.epoch).toBe(1n);
    expect(bob.group!.ownLeafIndex).toBe(1);
    expect(engine.members(bob.group!).map((m) => utf8Decode(m.identity))).toEqual(['alice', 'bob']);
    await send(alice, [bob], 'hello bob');
    await send(bob, [alice], 'hello alice');
    for (let i = 0; i < 5; i++) await send(alice, [bob], `burst ${i}`);
    await send(bob, [alice], 'caught up');
  });

  test('inspectKeyPackage reads identity, key and the end of the MLS lifetime', async () => {
    const before = Date.now();
    const alice = await member('alice');
    const seen = await engine.inspectKeyPackage(alice.kp.publicKeyPackage);
    expect(utf8Decode(seen.identity)).toBe('alice');
    expect(seen.signaturePublicKey).toHaveLength(32);
    // ts-mls's default lifetime: 1,314,000 s (about 15 days) from when it was made.
    const end = seen.notAfter.getTime();
    expect(end).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 + 1_314_000_000);
    expect(end).toBeLessThanOrEqual(Date.now() + 1_314_000_000);
  });

  test('exportSecret: members of an epoch agree, and it changes with epoch, label and context', async () => {
    const [alice, bob] = await twoMembers();
    const ctx = text('group-1');
    const a = await engine.exportSecret(alice.group!, 'coffer/test', ctx, 32);
    expect(a).toHaveLength(32);
    expect(await engine.exportSecret(bob.group!, 'coffer/test', ctx, 32)).toEqual(a);
    expect(await engine.exportSecret(bob.group!, 'coffer/other', ctx, 32)).not.toEqual(a);
    expect(await engine.exportSecret(bob.group!, 'coffer/test', text('group-2'), 32)).not.toEqual(
      a,
    );
    const update = await engine.selfUpdate(bob.group!);
    bob.group = update.group;
    await deliverCommit(update.commit, [alice]);
    const next = await engine.exportSecret(alice.group!, 'coffer/test', ctx, 32);
    expect(next).not.toEqual(a);
    expect(await engine.exportSecret(bob.group!, 'coffer/test', ctx, 32)).toEqual(next);
    for (const bad of [
      () => engine.exportSecret(alice.group!, '', ctx, 32),
      () => engine.exportSecret(alice.group!, 'x', ctx, 0),
      () => engine.exportSecret(alice.group!, 'x', 'ctx' as unknown as Uint8Array, 32),
    ])
      await expectCode(bad, 'INVALID_ARGUMENT');
  });

  test('messages out of order open once each, with their sender', async () => {
    const [alice, bob] = await twoMembers();
    const m1 = await engine.encrypt(alice.group!, text('one'));
    const m2 = await engine.encrypt(m1.group, text('two'));
    alice.group = m2.group;
    const r2 = await engine.process(bob.group!, m2.message);
    const r1 = await engine.process(r2.group, m1.message);
    bob.group = r1.group;
    for (const [r, body] of [
      [r2, 'two'],
      [r1, 'one'],
    ] as const) {
      expect(r.result.kind).toBe('application');
      if (r.result.kind !== 'application') continue;
      expect(utf8Decode(r.result.plaintext)).toBe(body);
      expect(r.result.sender.leafIndex).toBe(0);
    }
    await expectCode(() => engine.process(bob.group!, m1.message), 'MLS_MESSAGE_REJECTED');
    await send(bob, [alice], 'in order again');
  });

  test('a message from the previous epoch that arrives after the commit opens, with its sender', async () => {
    const [alice, bob] = await twoMembers();
    // Bob sends at epoch 1; before alice reads it, alice commits a self-update (epoch 2).
    const late = await engine.encrypt(bob.group!, text('sent before the update'));
    bob.group = late.group;
    const updated = await engine.selfUpdate(alice.group!);
    alice.group = updated.group;
    await deliverCommit(updated.commit, [bob]);
    const r = await engine.process(alice.group!, late.message);
    alice.group = r.group;
    expect(r.result.kind).toBe('application');
    if (r.result.kind === 'application') {
      expect(utf8Decode(r.result.plaintext)).toBe('sent before the update');
      expect(utf8Decode(r.result.sender.identity)).toBe('bob');
      expect(r.result.sender.leafIndex).toBe(1);
    }
    await expectCode(() => engine.process(alice.group!, late.message), 'MLS_MESSAGE_REJECTED');
    await send(alice, [bob], 'after the late one');
  });

  test('application messages carry authenticated data', async () => {
    const [alice, bob] = await twoMembers();
    const out = await engine.encrypt(alice.group!, text('body'), text('header'));
    const r = await engine.process(bob.group!, out.message);
    expect(r.result.kind).toBe('application');
    if (r.result.kind === 'application')
      expect(utf8Decode(r.result.authenticatedData)).toBe('header');
  });

  test('three members: add, messages from each, self-update, removal', async () => {
    const [alice, bob] = await twoMembers();
    const carol = await member('carol');
    const added = await engine.addMembers(alice.group!, [carol.kp.publicKeyPackage]);
    alice.group = added.group;
    await deliverCommit(added.commit, [bob]);
    carol.group = await engine.joinFromWelcome(added.welcome, carol.kp);
    expect([alice, bob, carol].map((m) => m.group!.epoch)).toEqual([2n, 2n, 2n]);

    await send(alice, [bob, carol], 'from alice');
    await send(bob, [alice, carol], 'from bob');
    await send(carol, [alice, bob], 'from carol');

    // Self-update by bob: a new epoch, and new leaf keys for bob.
    const before = engine.members(alice.group!).find((m) => m.leafIndex === 1)!;
    const updated = await engine.selfUpdate(bob.group!);
    bob.group = updated.group;
    await deliverCommit(updated.commit, [alice, carol]);
    expect([alice, bob, carol].map((m) => m.group!.epoch)).toEqual([3n, 3n, 3n]);
    const after = engine.members(alice.group!).find((m) => m.leafIndex === 1)!;
    expect(after.signaturePublicKey).toEqual(before.signaturePublicKey);
    await send(carol, [alice, bob], 'after the update');

    // Carol removes bob: bob learns it, can send nothing more, and reads nothing new.
    const removed = await engine.removeMembers(carol.group!, [1]);
    carol.group = removed.group;
    await deliverCommit(removed.commit, [alice]);
    // What bob had before: a removed member may keep it and try to read on.
    const bobBefore = engine.exportState(bob.group!);
    const bobSees = await engine.process(bob.group!, removed.commit);
    expect(bobSees.result).toEqual({ kind: 'commit', epoch: bobSees.group.epoch, removed: true });
    expect(bobSees.group.active).toBe(false);
    await expectCode(() => engine.encrypt(bobSees.group, text('still here?')), 'GROUP_INACTIVE');
    expect(engine.members(alice.group!).map((m) => utf8Decode(m.identity))).toEqual([
      'alice',
      'carol',
    ]);
    const secret = await engine.encrypt(alice.group!, text('bob must not read this'));
    alice.group = secret.group;
    await expectCode(
      () => engine.process(engine.importState(bobBefore), secret.message),
      'MLS_MESSAGE_REJECTED',
    );
    await expectCode(() => engine.process(bobSees.group, secret.message), 'GROUP_INACTIVE');
    // The handle the removal replaced is spent.
    await expectCode(() => engine.process(bob.group!, secret.message), 'INVALID_ARGUMENT');
    const r = await engine.process(carol.group!, secret.message);
    expect(r.result.kind).toBe('application');
  });

  test('tampered, replayed, truncated and foreign messages are MLS_MESSAGE_REJECTED', async () => {
    const [alice, bob] = await twoMembers();
    const out = await engine.encrypt(alice.group!, text('once'));
    alice.group = out.group;
    // Tampering anywhere in the last 64 bytes (ciphertext and tag) is rejected.
    for (let bit = (out.message.length - 64) * 8; bit < out.message.length * 8; bit += 61) {
      await expectCode(
        () => engine.process(bob.group!, flipBit(out.message, bit)),
        'MLS_MESSAGE_REJECTED',
      );
    }
    await expectCode(
      () => engine.process(bob.group!, out.message.subarray(0, out.message.length - 1)),
      'MLS_MESSAGE_REJECTED',
    );
    await expectCode(() => engine.process(bob.group!, text('garbage')), 'MLS_MESSAGE_REJECTED');
    const first = await engine.process(bob.group!, out.message);
    expect(first.result.kind).toBe('application');
    bob.group = first.group;
    // The same message again: its key is gone.
    await expectCode(() => engine.process(bob.group!, out.message), 'MLS_MESSAGE_REJECTED');
    // A message of another group with the same members' identities.
    const [other] = await twoMembers();
    const foreign = await engine.encrypt(other.group!, text('elsewhere'));
    await expectCode(() => engine.process(bob.group!, foreign.message), 'MLS_MESSAGE_REJECTED');
    // A welcome is not a message; a key package is not a welcome.
    const carol = await member('carol');
    const added = await engine.addMembers(alice.group!, [carol.kp.publicKeyPackage]);
    await expectCode(() => engine.process(bob.group!, added.welcome), 'MLS_MESSAGE_REJECTED');
    await expectCode(
      () => engine.joinFromWelcome(carol.kp.publicKeyPackage, carol.kp),
      'MLS_MESSAGE_REJECTED',
    );
    // A welcome for someone else's key package.
    const dave = await member('dave');
    await expectCode(() => engine.joinFromWelcome(added.welcome, dave.kp), 'MLS_MESSAGE_REJECTED');
    // A key package with a flipped bit in its signature.
    const kp = carol.kp.publicKeyPackage;
    await expectCode(
      () => engine.addMembers(added.group, [flipBit(kp, (kp.length - 1) * 8)]),
      'MLS_MESSAGE_REJECTED',
    );
  });

  test('a refused credential is MLS_MESSAGE_REJECTED', async () => {
    const strict = await createTsMlsEngine({
      validateCredential: async (identity) => utf8Decode(identity) !== 'mallory',
    });
    const alice = await strict.createKeyPackage({ identity: text('alice') });
    const mallory = await strict.createKeyPackage({ identity: text('mallory') });
    const group = await strict.createGroup(text('g'), alice);
    await expectCode(
      () => strict.addMembers(group, [mallory.publicKeyPackage]),
      'MLS_MESSAGE_REJECTED',
    );
  });

  test('a key package can reuse a device signing key', async () => {
    const device = await generateSigningKeyPair();
    const kp = await engine.createKeyPackage({ identity: text('device'), signatureKey: device });
    const group = await engine.createGroup(text('g'), kp);
    expect(engine.members(group)[0]!.signaturePublicKey).toEqual(device.publicKey);
    const other = await generateSigningKeyPair();
    await expectCode(
      () =>
        engine.createKeyPackage({
          identity: text('device'),
          signatureKey: { secretKey: device.secretKey, publicKey: other.publicKey },
        }),
      'INVALID_ARGUMENT',
    );
  });

  test('exported state imports and carries on; bad bytes are typed errors', async () => {
    const [alice, bob] = await twoMembers();
    await send(alice, [bob], 'before export');
    const saved = engine.exportState(bob.group!);
    expect(saved[0]).toBe(MLS_STATE_VERSION);
    bob.group = engine.importState(saved);
    await send(alice, [bob], 'after import');
    await send(bob, [alice], 'reply after import');
    // Another engine instance reads it too (state is plain bytes).
    const other = await createTsMlsEngine({ validateCredential: async () => true });
    const again = other.importState(saved);
    expect(again.epoch).toBe(bob.group!.epoch);

    const future = saved.slice();
    future[0] = 2;
    await expectCode(() => engine.importState(future), 'UNSUPPORTED_VERSION');
    await expectCode(() => engine.importState(saved.subarray(0, 100)), 'INVALID_GROUP_STATE');
    await expectCode(() => engine.importState(new Uint8Array(0)), 'INVALID_ARGUMENT');
  });

  test("importing never ties the state to the caller's bytes: the same saved bytes import twice", async () => {
    const [alice, bob] = await twoMembers();
    const saved = engine.exportState(bob.group!);
    const copy = saved.slice();
    const out = await engine.encrypt(alice.group!, text('once'));
    alice.group = out.group;
    // Processing wipes consumed secrets; that must not reach `saved`.
    await engine.process(engine.importState(saved), out.message);
    expect(saved).toEqual(copy);
    const second = await engine.process(engine.importState(saved), out.message);
    expect(second.result.kind).toBe('application');
  });

  test('caller mistakes are INVALID_ARGUMENT', async () => {
    const [alice] = await twoMembers();
    expect(
      await codeOf(() =>
        createTsMlsEngine({} as unknown as Parameters<typeof createTsMlsEngine>[0]),
      ),
    ).toBe('INVALID_ARGUMENT');
    await expectCode(
      () => engine.createKeyPackage({ identity: new Uint8Array(0) }),
      'INVALID_ARGUMENT',
    );
    await expectCode(() => engine.addMembers(alice.group!, []), 'INVALID_ARGUMENT');
    await expectCode(() => engine.removeMembers(alice.group!, [7]), 'INVALID_ARGUMENT');
    await expectCode(() => engine.removeMembers(alice.group!, [0]), 'INVALID_ARGUMENT');
    await expectCode(
      () => engine.encrypt({ ...alice.group! } as MlsGroup, text('x')),
      'INVALID_ARGUMENT',
    );
  });
});
