// Tree hashes (RFC 9420 §7.8) after patches/ts-mls+2.0.0-rc.10.patch, which remembers the hash of
// each leaf and parent node object (with the leaf index or child hashes it was computed from), so
// a commit hashes only the nodes it changed: on a 120-member tree and on trees derived from it the
// way commits derive them (a copied array, new node objects where nodes change, the rest shared),
// every subtree's hash equals a from-scratch reference, whatever was hashed before.
import { sha256 } from '@coffer/crypto';
import { encode, type Hash, nodeTypes } from 'ts-mls';
import { beforeAll, describe, expect, test } from 'vitest';
// Not exported by ts-mls; imported by path to test the patched function itself.
import { treeHash, treeHashInputEncoder } from '../../../node_modules/ts-mls/dist/src/treeHash.js';
import { grownGroup, type Tree, treeOf } from './_mls-trees.js';

type Node = Tree[number];
type NodeIndex = Parameters<typeof treeHash>[1];

const MEMBERS = 120;
let tree: Tree;
let hash: Hash;

beforeAll(async () => {
  const g = await grownGroup(MEMBERS, 't');
  const { engine, kps } = g;
  hash = g.hash;
  let creator = g.creator;
  const update = await engine.selfUpdate(await engine.joinFromWelcome(g.welcome, kps[7]!));
  creator = (await engine.process(creator, update.commit)).group;
  creator = (await engine.addMembers(creator, [kps[MEMBERS - 1]!.publicKeyPackage])).group;
  tree = treeOf(engine, creator);
}, 120_000);

function level(index: number): number {
  let k = 0;
  while (((index >> k) & 1) === 1) k++;
  return k;
}

/** RFC 9420 §7.8 by the letter, nothing remembered. */
async function reference(t: Tree, index: number): Promise<Uint8Array> {
  const k = level(index);
  if (k === 0) {
    const node = t[index];
    const leafNode = node?.nodeType === nodeTypes.leaf ? node.leaf : undefined;
    return sha256(
      encode(treeHashInputEncoder, { nodeType: nodeTypes.leaf, leafIndex: index / 2, leafNode }),
    );
  }
  const node = t[index];
  const parentNode = node?.nodeType === nodeTypes.parent ? node.parent : undefined;
  const leftHash = await reference(t, index ^ (1 << (k - 1)));
  const rightHash = await reference(t, index ^ (3 << (k - 1)));
  return sha256(
    encode(treeHashInputEncoder, { nodeType: nodeTypes.parent, parentNode, leftHash, rightHash }),
  );
}

function rootOf(t: Tree): number {
  return (1 << Math.floor(Math.log2(t.length))) - 1;
}

/** Every subtree's hash, patched against reference. */
async function expectAllAgree(t: Tree): Promise<void> {
  for (let i = 0; i < t.length; i++) {
    const got = await treeHash(t, i as NodeIndex, hash);
    expect(Buffer.from(got).toString('hex'), `node ${i}`).toBe(
      Buffer.from(await reference(t, i)).toString('hex'),
    );
  }
}

/** A copy of a node object with one byte of its HPKE key flipped: same place, other content. */
function altered(node: NonNullable<Node>): NonNullable<Node> {
  if (node.nodeType === nodeTypes.leaf) {
    const hpkePublicKey = node.leaf.hpkePublicKey.slice();
    hpkePublicKey[0] = (hpkePublicKey[0] ?? 0) ^ 1;
    return { ...node, leaf: { ...node.leaf, hpkePublicKey } };
  }
  const hpkePublicKey = node.parent.hpkePublicKey.slice();
  hpkePublicKey[0] = (hpkePublicKey[0] ?? 0) ^ 1;
  return { ...node, parent: { ...node.parent, hpkePublicKey } };
}

describe('tree hash with remembered node hashes', () => {
  test('the tree has blank parents, parent nodes and an unmerged leaf', () => {
    const parents = tree.filter((n) => n?.nodeType === nodeTypes.parent);
    expect(parents.length).toBeGreaterThan(3);
    expect(
      parents.some((n) => n?.nodeType === nodeTypes.parent && n.parent.unmergedLeaves.length > 0),
    ).toBe(true);
    expect(tree.some((n, i) => i % 2 === 1 && n === undefined)).toBe(true);
  });

  test('every subtree agrees with the reference, twice (the second time from memory)', async () => {
    await expectAllAgree(tree);
    await expectAllAgree(tree);
  });

  test('trees sharing nodes with hashed ones agree after every kind of change', async () => {
    // A fixed pseudo-random sequence of changes, each on a copy of the previous tree, as commits
    // make them; the earlier trees must still hash as before.
    let seed = 0x2545f491;
    const next = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    const trees: Tree[] = [tree];
    let current = tree;
    for (let step = 0; step < 24; step++) {
      const t = current.slice();
      const i = next(t.length);
      const node = t[i];
      switch (step % 4) {
        case 0: // new content in place
          if (node !== undefined) t[i] = altered(node);
          break;
        case 1: // blanked
          t[i] = undefined;
          break;
        case 2: {
          // a leaf node moved to another (blank or not) leaf position: same object, other index
          const from = 2 * next(t.length >> 1);
          const to = 2 * next(t.length >> 1);
          if (from !== to) {
            t[to] = t[from];
            t[from] = undefined;
          }
          break;
        }
        default: {
          // a parent's unmerged leaves changed
          const p = 2 * next(t.length >> 1) + 1;
          const parent = t[p];
          if (parent?.nodeType === nodeTypes.parent) {
            t[p] = { ...parent, parent: { ...parent.parent, unmergedLeaves: [] } };
          }
        }
      }
      trees.push(t);
      current = t;
      const root = rootOf(t) as NodeIndex;
      expect(Buffer.from(await treeHash(t, root, hash)).toString('hex'), `step ${step}`).toBe(
        Buffer.from(await reference(t, root)).toString('hex'),
      );
    }
    for (const t of [trees[0]!, trees[5]!, current]) await expectAllAgree(t);
  });

  test('a returned hash is the caller’s to modify', async () => {
    const root = rootOf(tree) as NodeIndex;
    const first = await treeHash(tree, root, hash);
    first.fill(0);
    expect(await treeHash(tree, root, hash)).toEqual(await reference(tree, root));
  });
});
