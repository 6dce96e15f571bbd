import { type Hash, nodeTypes } from 'ts-mls';
import { beforeAll, describe, expect, test } from 'vitest';
// Not exported by ts-mls; imported by path to test the patched function itself.
import {
  calculateParentHash,
  verifyParentHashes,
} from '../../../node_modules/ts-mls/dist/src/parentHash.js';
import { grownGroup, type Tree, treeOf } from './_mls-trees.js';

const MEMBERS = 300;
let tree: Tree;
let hash: Hash;

beforeAll(async () => {
  const g = await grownGroup(MEMBERS, 'm');
  const { engine, kps } = g;
  hash = g.hash;
  let creator = g.creator;
  const first1 = await engine.selfUpdate(await engine.joinFromWelcome(g.welcome, kps[1]!));
  creator = (await engine.process(creator, first1.commit)).group;
  let m200 = await engine.joinFromWelcome(g.welcome, kps[200]!);
  m200 = (await engine.process(m200, first1.commit)).group;
  const second = await engine.selfUpdate(m200);
  creator = (await engine.process(creator, second.commit)).group;
  creator = (await engine.addMembers(creator, [kps[MEMBERS - 1]!.publicKeyPackage])).group;
  tree = treeOf(engine, creator);
}, 120_000);

/** RFC 9420 §7.9.2 by the letter: walk up from every leaf; each parent must be reached once. */
async function reference(t: Tree): Promise<boolean> {
  const covered = new Map<number, number>();
  const rootIndex = (1 << Math.floor(Math.log2(t.length))) - 1;
  for (let leaf = 0; leaf < t.length; leaf += 2) {
    let index = leaf;
    let node = t[leaf];
    while (node !== undefined && index !== rootIndex) {
      const [computed, parent] = await calculateParentHash(
        t,
        index as Parameters<typeof calculateParentHash>[1],
        hash,
      );
      const stated =
        node.nodeType === nodeTypes.parent
          ? node.parent.parentHash
          : node.leaf.leafNodeSource === 3 // commit
            ? node.leaf.parentHash
            : undefined;
      if (parent === undefined || stated === undefined) break;
      if (Buffer.compare(Buffer.from(computed), Buffer.from(stated)) !== 0) break;
      covered.set(parent, (covered.get(parent) ?? 0) + 1);
      index = parent;
      node = t[parent];
    }
  }
  return t.every((n, i) => n?.nodeType !== nodeTypes.parent || covered.get(i) === 1);
}

function parentIndices(t: Tree): number[] {
  return t.flatMap((n, i) => (n?.nodeType === nodeTypes.parent ? [i] : []));
}

/** A copy of the tree with the parent node at `index` changed by `edit`. */
function withParent(t: Tree, index: number, edit: (p: ParentOf) => ParentOf): Tree {
  const copy = t.slice();
  const node = copy[index];
  if (node?.nodeType !== nodeTypes.parent) throw new Error('not a parent node');
  copy[index] = { ...node, parent: edit(node.parent) };
  return copy;
}
type ParentOf = Extract<NonNullable<Tree[number]>, { nodeType: typeof nodeTypes.parent }>['parent'];

function flipped(bytes: Uint8Array, at = 0): Uint8Array {
  const out = bytes.slice();
  out[at]! ^= 1;
  return out;
}

describe('verifyParentHashes (patched ts-mls)', () => {
  test('the tree has what the test needs: parents, unmerged leaves, a commit leaf', () => {
    const parents = parentIndices(tree);
    expect(parents.length).toBeGreaterThan(10);
    expect(
      parents.some((i) => (tree[i] as { parent: ParentOf }).parent.unmergedLeaves.length > 0),
    ).toBe(true);
    expect(tree.filter((n, i) => i % 2 === 0 && n !== undefined).length).toBe(MEMBERS);
  });

  test('accepts the real tree, as the reference does', async () => {
    expect(await verifyParentHashes(tree, hash)).toBe(true);
    expect(await reference(tree)).toBe(true);
  }, 60_000);

  test('rejects a tampered parent hash or key at every parent node', async () => {
    for (const index of parentIndices(tree)) {
      const badKey = withParent(tree, index, (p) => ({
        ...p,
        hpkePublicKey: flipped(p.hpkePublicKey, 7),
      }));
      expect(await verifyParentHashes(badKey, hash)).toBe(false);
      // The root's own parent hash is empty: nothing above it to chain to.
      if ((tree[index] as { parent: ParentOf }).parent.parentHash.length === 0) continue;
      const badHash = withParent(tree, index, (p) => ({ ...p, parentHash: flipped(p.parentHash) }));
      expect(await verifyParentHashes(badHash, hash)).toBe(false);
    }
  }, 60_000);

  test('rejects a tampered parent hash in a committer leaf', async () => {
    const copy = tree.slice();
    const leaf = copy[2]; // member 1 committed a self-update
    if (leaf?.nodeType !== nodeTypes.leaf || leaf.leaf.leafNodeSource !== 3) {
      throw new Error('expected a commit leaf at leaf 1');
    }
    copy[2] = { ...leaf, leaf: { ...leaf.leaf, parentHash: flipped(leaf.leaf.parentHash) } };
    expect(await verifyParentHashes(copy, hash)).toBe(false);
    expect(await reference(copy)).toBe(false);
  }, 60_000);

  test('agrees with the reference when unmerged lists change', async () => {
    for (const index of parentIndices(tree).slice(0, 3)) {
      const dropped = withParent(tree, index, (p) => ({ ...p, unmergedLeaves: [] }));
      const extra = withParent(tree, index, (p) => ({
        ...p,
        unmergedLeaves: [...p.unmergedLeaves, 5],
      }));
      for (const t of [dropped, extra]) {
        expect(await verifyParentHashes(t, hash)).toBe(await reference(t));
      }
    }
  }, 120_000);

  test('rejects a changed leaf under a parent (its subtree hash changes)', async () => {
    const copy = tree.slice();
    const leaf = copy[2 * 150];
    if (leaf?.nodeType !== nodeTypes.leaf) throw new Error('expected a leaf');
    copy[2 * 150] = {
      ...leaf,
      leaf: { ...leaf.leaf, hpkePublicKey: flipped(leaf.leaf.hpkePublicKey, 3) },
    };
    expect(await verifyParentHashes(copy, hash)).toBe(false);
    expect(await reference(copy)).toBe(false);
  }, 60_000);
});
