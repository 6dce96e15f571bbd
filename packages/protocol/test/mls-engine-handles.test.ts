// What the engine owes its callers beyond MLS itself: a handle an operation replaced is spent
// (its consumed secrets are wiped, so nothing may derive from it again), outputs own their
// buffers, states never alias the caller's input, a Remove is never hidden from authorizeCommit,
// and ts-mls's own errors come out typed. Each test here but the one on failed operations
// (a guard) failed before the change it covers.
import { utf8Decode, utf8Encode } from '@coffer/crypto';
import {
  type ClientState,
  clientStateDecoder,
  createCommit,
  decode,
  defaultProposalTypes,
  encode,
  type MlsContext,
  makeCustomExtension,
  mlsMessageDecoder,
  mlsMessageEncoder,
  type Proposal,
  wireformats,
} from 'ts-mls';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  createCofferCryptoProvider,
  createTsMlsEngine,
  GROUP_DATA_EXTENSION_TYPE,
  type GroupEngine,
  MLS_DEFAULT_CIPHERSUITE,
  type MlsCommitChange,
  type MlsGroup,
  type MlsKeyPackage,
} from '../src/index.js';
import { codeOf, expectCode } from './_helpers.js';

const text = (s: string) => utf8Encode(s);
let engine: GroupEngine;
let changes: MlsCommitChange[];
beforeAll(async () => {
  changes = [];
  engine = await createTsMlsEngine({
    validateCredential: async () => true,
    authorizeCommit: (change) => {
      changes.push(change);
      return true;
    },
  });
});

async function group(names: string[]): Promise<{ groups: MlsGroup[]; kps: MlsKeyPackage[] }> {
  const kps: MlsKeyPackage[] = [];
  for (const name of names) kps.push(await engine.createKeyPackage({ identity: text(name) }));
  let first = await engine.createGroup(text(`handles-${names.join('-')}`), kps[0]!);
  const added = await engine.addMembers(
    first,
    kps.slice(1).map((kp) => kp.publicKeyPackage),
  );
  first = added.group;
  const rest = [];
  for (const kp of kps.slice(1)) rest.push(await engine.joinFromWelcome(added.welcome, kp));
  return { groups: [first, ...rest], kps };
}

/**
 * A commit of `proposals` made by a modified client: ts-mls called directly on the member's
 * exported state, past the engine's own rules. Returns the encoded MLS message.
 */
async function rawCommit(member: MlsGroup, proposals: Proposal[]): Promise<Uint8Array> {
  const cs = await createCofferCryptoProvider().getCiphersuiteImpl(MLS_DEFAULT_CIPHERSUITE);
  const state = decode(clientStateDecoder, engine.exportState(member).subarray(1)) as ClientState;
  const context: MlsContext = {
    cipherSuite: cs,
    authService: { validateCredential: async () => true },
  };
  const made = await createCommit({ context, state, extraProposals: proposals });
  return encode(mlsMessageEncoder, made.commit);
}

describe('group handles', () => {
  test('a handle an operation replaced is spent: a second encrypt from it is refused', async () => {
    const { groups } = await group(['alice', 'bob']);
    const [alice, bob] = groups as [MlsGroup, MlsGroup];
    const first = await engine.encrypt(alice, text('one'));
    // Before, this ran on the secrets the first encrypt had wiped: a key anyone could derive.
    await expectCode(() => engine.encrypt(alice, text('two')), 'INVALID_ARGUMENT');
    for (const read of [() => engine.exportState(alice), () => engine.members(alice)])
      await expectCode(read, 'INVALID_ARGUMENT');
    const r = await engine.process(bob, first.message);
    expect(r.result.kind).toBe('application');
    // The new handle carries on.
    const next = await engine.encrypt(first.group, text('three'));
    expect((await engine.process(r.group, next.message)).result.kind).toBe('application');
  });

  test('two operations started together on one handle: one runs, the other is refused', async () => {
    const { groups } = await group(['alice', 'bob']);
    const [alice, bob] = groups as [MlsGroup, MlsGroup];
    const results = await Promise.allSettled([
      engine.encrypt(alice, text('a')),
      engine.encrypt(alice, text('b')),
    ]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    const done = results.find((r) => r.status === 'fulfilled');
    const failed = results.find((r) => r.status === 'rejected');
    expect(await codeOf(() => Promise.reject(failed?.reason))).toBe('INVALID_ARGUMENT');
    if (done?.status !== 'fulfilled') throw new Error('unreachable');
    const r = await engine.process(bob, done.value.message);
    expect(r.result.kind).toBe('application');
  });

  test('a failed operation gives the handle back whole', async () => {
    const { groups } = await group(['alice', 'bob']);
    const [alice, bob] = groups as [MlsGroup, MlsGroup];
    await expectCode(() => engine.process(bob, text('garbage')), 'MLS_MESSAGE_REJECTED');
    await expectCode(() => engine.removeMembers(alice, [5]), 'INVALID_ARGUMENT');
    const out = await engine.encrypt(alice, text('still fine'));
    const r = await engine.process(bob, out.message);
    expect(r.result.kind === 'application' && utf8Decode(r.result.plaintext)).toBe('still fine');
  });

  test('exportSecret of a removed member is GROUP_INACTIVE', async () => {
    const { groups } = await group(['alice', 'bob', 'carol']);
    const removal = await engine.removeMembers(groups[0]!, [1]);
    const bob = (await engine.process(groups[1]!, removal.commit)).group;
    expect(bob.active).toBe(false);
    await expectCode(() => engine.exportSecret(bob, 'coffer/test', text(''), 32), 'GROUP_INACTIVE');
  });
});

describe('buffers', () => {
  test('outgoing messages own their buffers (no shared encoding slab behind them)', async () => {
    const { groups } = await group(['alice', 'bob']);
    const out = await engine.encrypt(groups[0]!, text('x'.repeat(900)));
    expect(out.message.byteOffset).toBe(0);
    expect(out.message.buffer.byteLength).toBe(out.message.byteLength);
    const update = await engine.selfUpdate(out.group);
    expect(update.commit.buffer.byteLength).toBe(update.commit.byteLength);
  });

  test("a state never aliases the caller's bytes", async () => {
    const alice = await engine.createKeyPackage({ identity: text('alice') });
    const bob = await engine.createKeyPackage({ identity: text('bob') });
    const kpBytes = bob.publicKeyPackage.slice();
    const created = await engine.createGroup(text('alias'), alice);
    const added = await engine.addMembers(created, [kpBytes]);
    kpBytes.fill(0x41);
    expect(engine.members(added.group).map((m) => utf8Decode(m.identity))).toEqual([
      'alice',
      'bob',
    ]);
  });
});

describe('typed errors', () => {
  test('bytes after a message or a saved state are refused, not ignored', async () => {
    const { groups } = await group(['alice', 'bob']);
    const out = await engine.encrypt(groups[0]!, text('exact'));
    const longer = new Uint8Array(out.message.length + 1);
    longer.set(out.message);
    await expectCode(() => engine.process(groups[1]!, longer), 'MLS_MESSAGE_REJECTED');
    const saved = engine.exportState(out.group);
    const padded = new Uint8Array(saved.length + 1);
    padded.set(saved);
    await expectCode(() => engine.importState(padded), 'INVALID_GROUP_STATE');
    const r = await engine.process(groups[1]!, out.message);
    expect(r.result.kind).toBe('application');
  });

  test('a private key package that does not decode is INVALID_ARGUMENT', async () => {
    const alice = await engine.createKeyPackage({ identity: text('alice') });
    const broken = { ...alice, privateKeyPackage: alice.privateKeyPackage.subarray(0, 10) };
    await expectCode(() => engine.createGroup(text('g'), broken), 'INVALID_ARGUMENT');
  });

  test('encrypt with a leave proposal not yet committed is PROPOSALS_PENDING', async () => {
    const { groups } = await group(['alice', 'bob']);
    const leave = await engine.proposeLeave(groups[1]!);
    const alice = (await engine.process(groups[0]!, leave.message)).group;
    await expectCode(() => engine.encrypt(alice, text('hi')), 'PROPOSALS_PENDING');
    // Committing it clears the way.
    const committed = await engine.selfUpdate(alice);
    await engine.encrypt(committed.group, text('hi'));
  });

  test("withdrawLeave takes back only this member's own request; the others still read it", async () => {
    const { groups } = await group(['alice', 'bob', 'carol']);
    // Carol's request reached Bob; Bob's own request never left (the server refused it).
    const carolLeaves = await engine.proposeLeave(groups[2]!);
    let bob = (await engine.process(groups[1]!, carolLeaves.message)).group;
    bob = (await engine.proposeLeave(bob)).group;
    expect(engine.pendingRemovals(bob).sort()).toEqual([1, 2]);
    const withdrawn = engine.withdrawLeave(bob);
    expect(engine.pendingRemovals(withdrawn)).toEqual([2]);
    await expectCode(async () => engine.withdrawLeave(bob), 'INVALID_ARGUMENT'); // spent
    // Bob commits Carol's request and goes on talking with Alice, past the spent ratchet key.
    const commit = await engine.selfUpdate(withdrawn);
    const alice = (await engine.process(groups[0]!, carolLeaves.message)).group;
    const aliceNext = (await engine.process(alice, commit.commit)).group;
    expect(engine.members(aliceNext).map((m) => m.leafIndex)).toEqual([0, 1]);
    const out = await engine.encrypt(commit.group, text('still here'));
    const got = await engine.process(aliceNext, out.message);
    expect(got.result.kind === 'application' && utf8Decode(got.result.plaintext)).toBe(
      'still here',
    );
  });
});

describe('authorizeCommit sees every Remove', () => {
  test('a Remove and an Add putting the same identity back on the leaf is a removal and an add', async () => {
    const { groups, kps } = await group(['alice', 'bob', 'carol']);
    const [alice, bob] = groups as [MlsGroup, MlsGroup];
    const carolAgain = await engine.createKeyPackage({ identity: text('carol') });
    // Bob's client, modified: one commit removes carol's leaf and adds a new carol package,
    // which lands on the leaf just emptied.
    const kp = decode(mlsMessageDecoder, carolAgain.publicKeyPackage);
    if (kp?.wireformat !== wireformats.mls_key_package) throw new Error('not a key package');
    const commit = await rawCommit(bob, [
      { proposalType: defaultProposalTypes.remove, remove: { removed: 2 } },
      { proposalType: defaultProposalTypes.add, add: { keyPackage: kp.keyPackage } },
    ]);
    changes.length = 0;
    await engine.process(alice, commit);
    const change = changes.at(-1)!;
    expect(change.removed.map((r) => utf8Decode(r.member.identity))).toEqual(['carol']);
    expect(change.added.map((m) => utf8Decode(m.identity))).toEqual(['carol']);
    expect(change.rekeyed).toEqual([]);
    expect(kps).toHaveLength(3);
  });

  test('the member a commit removes is shown the whole change, group data included', async () => {
    const { groups } = await group(['alice', 'bob', 'carol']);
    const [alice, bob] = groups as [MlsGroup, MlsGroup];
    // One commit removes bob and replaces the group data (a rename, for Coffer).
    const commit = await rawCommit(alice, [
      { proposalType: defaultProposalTypes.remove, remove: { removed: 1 } },
      {
        proposalType: defaultProposalTypes.group_context_extensions,
        groupContextExtensions: {
          extensions: [
            makeCustomExtension({
              extensionType: GROUP_DATA_EXTENSION_TYPE,
              extensionData: text('renamed'),
            }),
          ],
        },
      },
    ]);
    changes.length = 0;
    const r = await engine.process(bob, commit);
    expect(r.group.active).toBe(false);
    const change = changes.at(-1)!;
    expect(change.removed.map((x) => utf8Decode(x.member.identity))).toEqual(['bob']);
    expect(change.groupDataAfter && utf8Decode(change.groupDataAfter)).toBe('renamed');
  });
});
