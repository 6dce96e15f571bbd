// Shared by the tests of the patched ts-mls tree functions (mls-parent-hash, mls-tree-hash): a
// group of `size` members built with one add commit, and the ratchet tree of a group state.
import { utf8Encode } from '@coffer/crypto';
import { type ClientState, clientStateDecoder, decode, type Hash } from 'ts-mls';
import {
  createCofferCryptoProvider,
  createTsMlsEngine,
  type GroupEngine,
  MLS_DEFAULT_CIPHERSUITE,
  type MlsGroup,
  type MlsKeyPackage,
} from '../src/index.js';

export type Tree = ClientState['ratchetTree'];

export interface GrownGroup {
  readonly engine: GroupEngine;
  readonly hash: Hash;
  /** Key packages of members 0 … size-1; the last one is not added yet. */
  readonly kps: MlsKeyPackage[];
  /** The creator after adding members 1 … size-2. */
  readonly creator: MlsGroup;
  /** The Welcome of that add. */
  readonly welcome: Uint8Array;
}

/** A group of `size - 1` members made by one add commit, with one key package left over. */
export async function grownGroup(size: number, label: string): Promise<GrownGroup> {
  const engine = await createTsMlsEngine({ validateCredential: async () => true });
  const hash = (await createCofferCryptoProvider().getCiphersuiteImpl(MLS_DEFAULT_CIPHERSUITE))
    .hash;
  const kps: MlsKeyPackage[] = [];
  for (let i = 0; i < size; i++) {
    kps.push(await engine.createKeyPackage({ identity: utf8Encode(`${label}${i}`) }));
  }
  const first = await engine.createGroup(utf8Encode(label), kps[0] as MlsKeyPackage);
  const added = await engine.addMembers(
    first,
    kps.slice(1, size - 1).map((k) => k.publicKeyPackage),
  );
  return { engine, hash, kps, creator: added.group, welcome: added.welcome };
}

/** The ratchet tree of a group state, decoded from its export. */
export function treeOf(engine: GroupEngine, group: MlsGroup): Tree {
  const state = decode(clientStateDecoder, engine.exportState(group).subarray(1));
  if (!state) throw new Error('state did not decode');
  return state.ratchetTree;
}
