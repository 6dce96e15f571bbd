// The patched ts-mls validateRatchetTree (a joiner's check of the whole tree, RFC 9420
// §12.4.3.1) validates the leaves concurrently, so that their signature checks can use every
// core: it must still refuse any bad leaf, report a structural fault, pass on a thrown error,
// and leave no promise unhandled behind an early return.
import { type ClientState, CryptoVerificationError, clientStateDecoder, decode } from 'ts-mls';
import { beforeAll, describe, expect, test } from 'vitest';
// Not exported by ts-mls; imported by path to test the patched function itself.
import {
  validateLeafNodeCredentialAndKeyUniqueness,
  validateRatchetTree,
} from '../../../node_modules/ts-mls/dist/src/clientState.js';
import {
  createCofferCryptoProvider,
  MLS_DEFAULT_CIPHERSUITE,
  type MlsGroup,
} from '../src/index.js';
import { grownGroup } from './_mls-trees.js';

const MEMBERS = 24;
let state: ClientState;
let cs: Awaited<ReturnType<ReturnType<typeof createCofferCryptoProvider>['getCiphersuiteImpl']>>;

beforeAll(async () => {
  const g = await grownGroup(MEMBERS, 'rt');
  const group: MlsGroup = g.creator;
  const decoded = decode(clientStateDecoder, g.engine.exportState(group).subarray(1));
  if (!decoded) throw new Error('state did not decode');
  state = decoded;
  cs = await createCofferCryptoProvider().getCiphersuiteImpl(MLS_DEFAULT_CIPHERSUITE);
}, 60_000);

type Auth = { validateCredential(credential: unknown, key: Uint8Array): Promise<boolean> };
const accept: Auth = { validateCredential: async () => true };
const config = { maximumTotalLifetime: 2n ** 62n, validateLifetimeOnReceive: false };

type Leaf = Extract<ClientState['ratchetTree'][number], { nodeType: 1 }>['leaf'];
const leaves = () =>
  state.ratchetTree.flatMap((n) => (n?.nodeType === 1 ? [(n as { leaf: Leaf }).leaf] : []));
const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(a, b) === 0;

/** The suite with its verify wrapped: counts how many run at once, fails for `bad` keys. */
function watched(bad: readonly Uint8Array[] = [], thrown: readonly Uint8Array[] = []) {
  let now = 0;
  let most = 0;
  const signature = {
    ...cs.signature,
    async verify(publicKey: Uint8Array, message: Uint8Array, sig: Uint8Array) {
      now++;
      most = Math.max(most, now);
      try {
        if (thrown.some((k) => same(k, publicKey))) throw new Error('verifier down');
        const ok = await cs.signature.verify(publicKey, message, sig);
        return ok && !bad.some((k) => same(k, publicKey));
      } finally {
        now--;
      }
    },
  };
  return { suite: { ...cs, signature }, most: () => most };
}

function validate(tree: ClientState['ratchetTree'], suite: typeof cs, auth: Auth = accept) {
  return validateRatchetTree(
    tree,
    state.groupContext,
    config,
    auth,
    state.groupContext.treeHash,
    suite,
  );
}

describe('validateRatchetTree (patched: leaves checked concurrently)', () => {
  test('accepts the intact tree, with the leaf signatures checked at once', async () => {
    expect(leaves()).toHaveLength(MEMBERS - 1);
    const w = watched();
    expect(await validate(state.ratchetTree, w.suite)).toBeUndefined();
    expect(w.most()).toBeGreaterThan(1);
  });

  test('refuses a tree with any leaf whose signature does not verify', async () => {
    for (const i of [0, 7, MEMBERS - 2]) {
      const w = watched([leaves()[i]!.signaturePublicKey]);
      const err = await validate(state.ratchetTree, w.suite);
      expect(err, `leaf ${i}`).toBeInstanceOf(CryptoVerificationError);
      expect(String(err)).toMatch(/leaf node signature/);
    }
  });

  test('refuses a leaf whose credential the application refuses', async () => {
    const refused = leaves()[5]!.signaturePublicKey;
    const auth = {
      validateCredential: async (_c: unknown, key: Uint8Array) => !same(key, refused),
    };
    expect(String(await validate(state.ratchetTree, cs, auth))).toMatch(/credential/i);
  });

  test('passes on an error thrown while a leaf is checked', async () => {
    const w = watched([], [leaves()[3]!.signaturePublicKey]);
    await expect(validate(state.ratchetTree, w.suite)).rejects.toThrow('verifier down');
  });

  test('a structural fault returns at once and leaves no rejection unhandled', async () => {
    // Leaf 9 given leaf 2's HPKE key: "hpke keys not unique", while every signature check
    // already started throws (an unhandled rejection would fail this test run).
    const tree = [...state.ratchetTree];
    const index = tree.findIndex((n, i) => i === 18 && n?.nodeType === 1);
    const leaf = (tree[index] as { leaf: Leaf }).leaf;
    tree[index] = {
      nodeType: 1,
      leaf: { ...leaf, hpkePublicKey: leaves()[2]!.hpkePublicKey },
    } as (typeof tree)[number];
    const w = watched(
      [],
      leaves().map((l) => l.signaturePublicKey),
    );
    expect(String(await validate(tree, w.suite))).toMatch(/hpke keys not unique/);
    await new Promise((resolve) => setTimeout(resolve, 50));
  });

  test('key uniqueness (patched to compare Latin-1 keys): duplicates found, near misses not', async () => {
    const unique = validateLeafNodeCredentialAndKeyUniqueness;
    const leaf = leaves()[1]!;
    expect(await unique(state.ratchetTree, leaf, 1)).toBeUndefined();
    const withLeaf = (index: number, change: Partial<Leaf>) => {
      const tree = [...state.ratchetTree];
      const node = tree[index * 2] as { leaf: Leaf };
      tree[index * 2] = { nodeType: 1, leaf: { ...node.leaf, ...change } } as (typeof tree)[number];
      return tree;
    };
    const other = leaves()[4]!;
    const dupHpke = withLeaf(9, { hpkePublicKey: other.hpkePublicKey });
    expect(String(await unique(dupHpke, leaf, 1))).toMatch(/hpke keys not unique/);
    const dupSig = withLeaf(9, { signaturePublicKey: other.signaturePublicKey });
    expect(String(await unique(dupSig, leaf, 1))).toMatch(/signature keys not unique/);
    // The same keys with their last byte changed (past 0x7f too) are different keys.
    for (const delta of [1, 0x80]) {
      const near = (k: Uint8Array) => {
        const c = k.slice();
        c[31] = (c[31]! + delta) & 0xff;
        return c;
      };
      const tree = withLeaf(9, {
        hpkePublicKey: near(other.hpkePublicKey),
        signaturePublicKey: near(other.signaturePublicKey),
      });
      expect(await unique(tree, leaf, 1)).toBeUndefined();
    }
  });
});
