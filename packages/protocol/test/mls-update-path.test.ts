// RFC 9420 §12.4 / §17.4 ("Path Required"): a commit that covers a Remove, an Update or a
// GroupContextExtensions proposal carries an UpdatePath, so its commit secret is fresh. ts-mls
// 2.0.0-rc.10 asked for a path only with two or more Removes or Updates; a one-member removal
// then had a zero commit secret, and the removed member, who holds the old init secret, derived
// the new epoch's secrets from the commit it is sent. Our ts-mls patch applies the RFC's rule
// (patches/ts-mls+2.0.0-rc.10.patch); these tests fail without it.
import { utf8Encode } from '@coffer/crypto';
import { type ClientState, clientStateDecoder, decode, type Kdf } from 'ts-mls';
import { beforeAll, describe, expect, test } from 'vitest';
// Not exported by ts-mls; imported by path to derive an epoch the way an attacker would.
import { initializeEpoch } from '../../../node_modules/ts-mls/dist/src/keySchedule.js';
import {
  createCofferCryptoProvider,
  createTsMlsEngine,
  type GroupEngine,
  MLS_DEFAULT_CIPHERSUITE,
  type MlsGroup,
  type MlsKeyPackage,
} from '../src/index.js';

let engine: GroupEngine;
let kdf: Kdf;
beforeAll(async () => {
  engine = await createTsMlsEngine({ validateCredential: async () => true });
  kdf = (await createCofferCryptoProvider().getCiphersuiteImpl(MLS_DEFAULT_CIPHERSUITE)).kdf;
});

/**
 * What a removed member computes for the epoch of its removal if the commit secret is zero (no
 * UpdatePath): its old init secret, the new GroupContext (public to it: it has the commit), no
 * PSK. Returns the exporter secret, as hex.
 */
async function zeroCommitSecretGuess(removed: MlsGroup, after: MlsGroup): Promise<string> {
  const zeroes = new Uint8Array(kdf.size);
  const guess = await initializeEpoch(
    stateOf(removed).keySchedule.initSecret,
    zeroes,
    stateOf(after).groupContext,
    zeroes,
    kdf,
  );
  return Buffer.from(guess.keySchedule.exporterSecret).toString('hex');
}

/** The whole ts-mls state behind a handle, as the engine persists it (version byte first). */
function stateOf(group: MlsGroup): ClientState {
  const bytes = engine.exportState(group);
  const state = decode(clientStateDecoder, bytes.subarray(1));
  if (!state) throw new Error('state does not decode');
  return state;
}

/** The secrets of the epoch a state is in, as hex, to compare members' views. */
function epochSecrets(group: MlsGroup): string[] {
  const { keySchedule } = stateOf(group);
  return [keySchedule.exporterSecret, keySchedule.initSecret, keySchedule.senderDataSecret].map(
    (s) => Buffer.from(s).toString('hex'),
  );
}

async function threeMembers(): Promise<MlsGroup[]> {
  const kps: MlsKeyPackage[] = [];
  for (const name of ['alice', 'bob', 'carol'])
    kps.push(await engine.createKeyPackage({ identity: utf8Encode(name) }));
  let alice = await engine.createGroup(utf8Encode('path-required'), kps[0]!);
  const added = await engine.addMembers(alice, [
    kps[1]!.publicKeyPackage,
    kps[2]!.publicKeyPackage,
  ]);
  alice = added.group;
  const bob = await engine.joinFromWelcome(added.welcome, kps[1]!);
  const carol = await engine.joinFromWelcome(added.welcome, kps[2]!);
  return [alice, bob, carol];
}

describe('commits that need an UpdatePath carry one', () => {
  test('a removed member cannot derive the epoch that removes it', async () => {
    const [alice, bob, carol] = await threeMembers();
    const removal = await engine.removeMembers(alice!, [1]);
    const carolAfter = (await engine.process(carol!, removal.commit)).group;
    const members = epochSecrets(removal.group);
    expect(epochSecrets(carolAfter)).toEqual(members);
    expect(await zeroCommitSecretGuess(bob!, carolAfter)).not.toBe(members[0]);
    // The removed member learns of its removal, and its state derives nothing of the new epoch.
    const bobAfter = await engine.process(bob!, removal.commit);
    expect(bobAfter.group.active).toBe(false);
    for (const [i, secret] of epochSecrets(bobAfter.group).entries())
      expect(secret, `secret ${i} of the removed member`).not.toBe(members[i]);
  });

  test('a member who left by proposal cannot derive the epoch that commits it', async () => {
    const [alice, bob, carol] = await threeMembers();
    const leave = await engine.proposeLeave(bob!);
    const aliceSaw = (await engine.process(alice!, leave.message)).group;
    const carolSaw = (await engine.process(carol!, leave.message)).group;
    const commit = await engine.selfUpdate(aliceSaw);
    const carolAfter = (await engine.process(carolSaw, commit.commit)).group;
    const members = epochSecrets(commit.group);
    expect(epochSecrets(carolAfter)).toEqual(members);
    expect(await zeroCommitSecretGuess(leave.group, carolAfter)).not.toBe(members[0]);
    const bobAfter = await engine.process(leave.group, commit.commit);
    expect(bobAfter.group.active).toBe(false);
    for (const [i, secret] of epochSecrets(bobAfter.group).entries())
      expect(secret, `secret ${i} of the member who left`).not.toBe(members[i]);
  });

  test('a rename (GroupContextExtensions only) carries a path: the committer gets new leaf keys', async () => {
    const [alice, bob] = await threeMembers();
    const before = stateOf(alice!).ratchetTree[0];
    const renamed = await engine.updateGroupData(alice!, utf8Encode('new name'));
    const after = stateOf(renamed.group).ratchetTree[0];
    expect(before?.nodeType === 1 && after?.nodeType === 1).toBe(true);
    if (before?.nodeType === 1 && after?.nodeType === 1)
      expect(after.leaf.hpkePublicKey).not.toEqual(before.leaf.hpkePublicKey);
    const bobAfter = (await engine.process(bob!, renamed.commit)).group;
    expect(epochSecrets(bobAfter)).toEqual(epochSecrets(renamed.group));
  });
});
